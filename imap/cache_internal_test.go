package imap

import (
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/postyard-mail/postyard/maildir"
)

func TestContentCache(t *testing.T) {
	c := newContentCache(2)
	mb := &maildir.Mailbox{}
	k := func(uid uint32) cacheKey { return cacheKey{mbox: mb, uidValidity: 7, uid: uid} }
	env := func(s string) *imap.Envelope { return &imap.Envelope{Subject: s} }
	bs := &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain"}

	c.put(k(1), env("one"), nil)
	c.put(k(1), nil, bs) // merges
	if e, b := c.get(k(1)); e == nil || e.Subject != "one" || b != bs {
		t.Fatalf("merged entry: %v %v", e, b)
	}
	if e, _ := c.get(cacheKey{mbox: mb, uidValidity: 8, uid: 1}); e != nil {
		t.Fatal("another UIDVALIDITY hit the cache")
	}
	if e, _ := c.get(cacheKey{mbox: &maildir.Mailbox{}, uidValidity: 7, uid: 1}); e != nil {
		t.Fatal("another mailbox instance hit the cache")
	}
	c.put(k(2), env("two"), nil)
	c.get(k(1))                    // 1 is now the most recent
	c.put(k(3), env("three"), nil) // evicts 2
	if e, _ := c.get(k(2)); e != nil {
		t.Error("least recently used entry not evicted")
	}
	if e, _ := c.get(k(1)); e == nil {
		t.Error("recently used entry evicted")
	}
	c.put(k(4), nil, nil)
	if e, b := c.get(k(4)); e != nil || b != nil {
		t.Error("an empty entry was stored")
	}
}
