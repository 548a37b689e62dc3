package imap

import (
	"container/list"
	"sync"

	"github.com/emersion/go-imap/v2"

	"github.com/postyard-mail/postyard/maildir"
)

// contentCacheEntries bounds the content cache (a few hundred bytes each).
const contentCacheEntries = 20000

// contentCache remembers what FETCH derives from a message's content:
// ENVELOPE and BODYSTRUCTURE. A message's content never changes under its
// UID, so this is not a copy of mailbox state (flags, counts): it spares
// opening and scanning the file when a client lists a folder page again,
// as Dovecot's index cache does. Shared by all sessions, LRU-bounded.
type contentCache struct {
	mu  sync.Mutex // guards ll and m
	max int
	ll  *list.List // of *cacheEntry, most recently used first
	m   map[cacheKey]*list.Element
}

// cacheKey names one message: the mailbox instance (the store makes a new
// one when a mailbox is renamed or re-created) and UIDVALIDITY, UID.
type cacheKey struct {
	mbox        *maildir.Mailbox
	uidValidity uint32
	uid         uint32
}

// cacheEntry's values are read-only once stored.
type cacheEntry struct {
	key cacheKey
	env *imap.Envelope
	bs  imap.BodyStructure
}

func newContentCache(max int) *contentCache {
	return &contentCache{max: max, ll: list.New(), m: make(map[cacheKey]*list.Element)}
}

// get returns what is known of k (nil for what is not).
func (c *contentCache) get(k cacheKey) (*imap.Envelope, imap.BodyStructure) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return nil, nil
	}
	c.ll.MoveToFront(e)
	ce := e.Value.(*cacheEntry)
	return ce.env, ce.bs
}

// put records env and bs (either may be nil) for k.
func (c *contentCache) put(k cacheKey, env *imap.Envelope, bs imap.BodyStructure) {
	if env == nil && bs == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		ce := e.Value.(*cacheEntry)
		if env != nil {
			ce.env = env
		}
		if bs != nil {
			ce.bs = bs
		}
		c.ll.MoveToFront(e)
		return
	}
	c.m[k] = c.ll.PushFront(&cacheEntry{key: k, env: env, bs: bs})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.m, last.Value.(*cacheEntry).key)
	}
}
