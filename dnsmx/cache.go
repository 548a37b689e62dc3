package dnsmx

import (
	"container/list"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// answer is what one query produced: the rcode (NOERROR or NXDOMAIN; other
// rcodes are errors and never cached) and the answer section. It is shared
// between callers once cached and must not be modified.
type answer struct {
	rcode int
	rrs   []dns.RR
}

type cacheKey struct {
	name  string // lower-case FQDN
	qtype uint16
}

type cacheEntry struct {
	key     cacheKey
	ans     *answer
	expires time.Time
}

// cache is a bounded LRU of answers, each kept until its TTL runs out
// (RFC 1035 §7.4 for positive answers, RFC 2308 §5 for negative ones).
type cache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *cacheEntry, most recently used at the front
	byKey map[cacheKey]*list.Element
}

func newCache(max int) *cache {
	return &cache{max: max, order: list.New(), byKey: make(map[cacheKey]*list.Element)}
}

// get returns the unexpired answer for k.
func (c *cache) get(k cacheKey, now time.Time) (*answer, bool) {
	if c.max <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[k]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.byKey, k)
		return nil, false
	}
	c.order.MoveToFront(el)
	return e.ans, true
}

// put stores a for ttl, evicting the least recently used entry when full.
func (c *cache) put(k cacheKey, a *answer, ttl time.Duration, now time.Time) {
	if c.max <= 0 || ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &cacheEntry{key: k, ans: a, expires: now.Add(ttl)}
	if el, ok := c.byKey[k]; ok {
		el.Value = e
		c.order.MoveToFront(el)
		return
	}
	c.byKey[k] = c.order.PushFront(e)
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*cacheEntry).key)
	}
}

// ttlOf is how long a response may be cached: the smallest TTL of the
// answer section for data, the SOA's min(TTL, MINIMUM) for a negative answer
// (RFC 2308 §5; none without an SOA), capped by maxPos and maxNeg.
func ttlOf(r *dns.Msg, positive bool, maxPos, maxNeg time.Duration) time.Duration {
	if positive {
		minTTL := uint32(1<<32 - 1)
		for _, rr := range r.Answer {
			minTTL = min(minTTL, rr.Header().Ttl)
		}
		return min(time.Duration(minTTL)*time.Second, maxPos)
	}
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second, maxNeg)
		}
	}
	return 0
}
