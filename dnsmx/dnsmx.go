// Package dnsmx is Postyard's DNS client: MX, A/AAAA, TXT and PTR lookups
// for the relay (where to deliver) and for mailauth (SPF, DKIM, DMARC).
//
// It asks a configured upstream recursive resolver ([dns] resolver: the
// servers of /etc/resolv.conf, or one "HOST:PORT") with miekg/dns.
//
// Implemented:
//   - RFC 5321 §5.1: MX records sorted by preference, hosts of equal
//     preference shuffled; no MX records → the domain itself as an implicit
//     MX of preference 0 when it has an A or AAAA record.
//   - RFC 7505: a null MX ("MX 0 .") is ErrNullMX, permanent; the relay
//     bounces with 5.1.10 at once.
//   - RFC 1034 §3.6.2 / RFC 2181 §10.1: CNAME chains are followed, within an
//     answer and across queries, up to maxCNAME links.
//   - RFC 1035 §7.4 and RFC 2308: positive and negative answers cached for
//     their TTL (capped), in a bounded LRU; SERVFAIL and timeouts never
//     cached.
//   - RFC 6891: EDNS0 with a 1232-byte buffer (the DNS Flag Day 2020 value);
//     a FORMERR answer to EDNS0 is retried without it. RFC 7766: a truncated
//     UDP answer is retried over TCP.
//
// Errors are *Error: Temporary() for timeouts, network errors, SERVFAIL and
// REFUSED (retry later / temperror), NotFound() for NXDOMAIN. A name that
// exists but has no record of the type asked (NODATA) is no error: the
// lookup returns an empty list. SPF counts both as "void lookups".
//
// Names may be given with or without the final dot, in any case, and as
// U-labels (converted to A-labels, IDNA2008 lookup profile); names returned
// are lower-case A-labels without the final dot.
package dnsmx

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"
)

// Resolver is what the relay and mailauth need from DNS. *Client implements
// it; tests pass a *Client pointed at internal/dnstest.
type Resolver interface {
	// LookupMX returns where mail for domain goes: its MX hosts sorted by
	// preference, equal preferences shuffled, or the implicit MX. Null MX
	// → ErrNullMX; no such domain → ErrNotFound; neither MX nor address →
	// ErrNoMailHost.
	LookupMX(ctx context.Context, domain string) ([]MX, error)
	// LookupMXRecords returns the MX records as published, sorted by
	// preference, without implicit MX or null-MX handling (SPF "mx"
	// mechanism, RFC 7208 §5.4). A null MX comes back as host ".".
	LookupMXRecords(ctx context.Context, domain string) ([]MX, error)
	// LookupAddrs returns the IPv4 then the IPv6 addresses of host.
	LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error)
	// LookupIP returns the addresses of host of network "ip4" (A), "ip6"
	// (AAAA) or "ip" (both, as LookupAddrs).
	LookupIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	// LookupTXT returns one string per TXT record, its character-strings
	// concatenated without separator (RFC 7208 §3.3).
	LookupTXT(ctx context.Context, name string) ([]string, error)
	// LookupPTR returns the names of addr (its in-addr.arpa/ip6.arpa PTRs).
	LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error)
}

var _ Resolver = (*Client)(nil)

// MX is one mail exchanger of a domain.
type MX struct {
	Host string // lower-case, no final dot; "." for a null MX
	Pref uint16
	// Implicit is set when the domain has no MX records and Host is the
	// domain itself (RFC 5321 §5.1).
	Implicit bool
}

// Defaults of Options.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultAttempts      = 2
	DefaultCacheSize     = 10000
	DefaultMaxTTL        = time.Hour
	DefaultMaxNegative   = 5 * time.Minute
	DefaultResolvConf    = "/etc/resolv.conf"
	ednsBufferSize       = 1232
	maxCNAME             = 8
	maxNameLength        = 253
	maxAnswerRecordsUsed = 100
)

// Options configures a Client. The zero value asks the servers of
// /etc/resolv.conf with the defaults above.
type Options struct {
	// Upstream is "" for the nameservers of ResolvConf, or "HOST:PORT"
	// (or "HOST", port 53) of one recursive resolver.
	Upstream string
	// Servers, when set, are the "HOST:PORT"s asked in turn, instead of
	// Upstream or ResolvConf.
	Servers []string
	// ResolvConf is the file read when Upstream is "". Default
	// /etc/resolv.conf.
	ResolvConf string
	// Timeout bounds each query attempt to one server. Default 5 s.
	Timeout time.Duration
	// Attempts is the number of rounds over the servers. Default 2.
	Attempts int
	// CacheSize bounds the number of cached answers; negative disables the
	// cache. Default 10000.
	CacheSize int
	// MaxTTL caps how long a positive answer is cached. Default 1 h.
	MaxTTL time.Duration
	// MaxNegativeTTL caps how long NXDOMAIN/NODATA is cached. Default 5 min.
	MaxNegativeTTL time.Duration
	// Now is the clock of the cache. Default time.Now.
	Now func() time.Time
	// Shuffle reorders MX hosts of equal preference. Default rand.Shuffle.
	Shuffle func(n int, swap func(i, j int))
}

// Client is a caching DNS client. It is safe for concurrent use.
type Client struct {
	servers        []string
	attempts       int
	timeout        time.Duration
	maxTTL, maxNeg time.Duration
	now            func() time.Time
	shuffle        func(n int, swap func(i, j int))
	udp, tcp       *dns.Client
	cache          *cache

	mu       sync.Mutex
	inflight map[cacheKey]*call
}

// call is one query in flight, shared by concurrent askers of the same
// question.
type call struct {
	done chan struct{}
	ans  *answer
	err  error
}

// New makes a Client from opts.
func New(opts Options) (*Client, error) {
	c := &Client{
		attempts: cmp.Or(opts.Attempts, DefaultAttempts),
		timeout:  cmp.Or(opts.Timeout, DefaultTimeout),
		maxTTL:   cmp.Or(opts.MaxTTL, DefaultMaxTTL),
		maxNeg:   cmp.Or(opts.MaxNegativeTTL, DefaultMaxNegative),
		now:      opts.Now,
		shuffle:  opts.Shuffle,
		inflight: make(map[cacheKey]*call),
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.shuffle == nil {
		c.shuffle = rand.Shuffle
	}
	size := cmp.Or(opts.CacheSize, DefaultCacheSize)
	c.cache = newCache(size)

	switch {
	case len(opts.Servers) > 0:
		for _, s := range opts.Servers {
			addr, err := upstreamAddr(s)
			if err != nil {
				return nil, err
			}
			c.servers = append(c.servers, addr)
		}
	case opts.Upstream != "":
		addr, err := upstreamAddr(opts.Upstream)
		if err != nil {
			return nil, err
		}
		c.servers = []string{addr}
	default:
		path := cmp.Or(opts.ResolvConf, DefaultResolvConf)
		conf, err := dns.ClientConfigFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("dnsmx: reading %s: %w", path, err)
		}
		for _, s := range conf.Servers {
			c.servers = append(c.servers, net.JoinHostPort(s, conf.Port))
		}
		if len(c.servers) == 0 {
			return nil, fmt.Errorf("dnsmx: %s lists no nameserver", path)
		}
	}
	c.udp = &dns.Client{Net: "udp", Timeout: c.timeout, UDPSize: ednsBufferSize}
	c.tcp = &dns.Client{Net: "tcp", Timeout: c.timeout}
	return c, nil
}

// upstreamAddr checks "HOST:PORT" or "HOST" and returns "HOST:PORT".
func upstreamAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: a bare host or IPv6 address.
		host, port = strings.Trim(s, "[]"), "53"
	}
	if host == "" || port == "" {
		return "", fmt.Errorf("dnsmx: resolver %q: want HOST:PORT", s)
	}
	return net.JoinHostPort(host, port), nil
}

// Servers returns the upstream servers asked, in order.
func (c *Client) Servers() []string { return slices.Clone(c.servers) }

// normalize turns a name into a lower-case A-label FQDN for asking, and the
// display form without the final dot.
func normalize(name string) (fqdn string, err error) {
	n := strings.TrimSuffix(name, ".")
	for i := 0; i < len(n); i++ {
		if n[i] >= 0x80 {
			n, err = idna.Lookup.ToASCII(n)
			if err != nil {
				return "", ErrBadName
			}
			break
		}
	}
	n = strings.ToLower(n)
	if n == "" || len(n) > maxNameLength {
		return "", ErrBadName
	}
	if _, ok := dns.IsDomainName(n); !ok || strings.Contains(n, "..") {
		return "", ErrBadName
	}
	if strings.IndexFunc(n, unusual) >= 0 {
		// Bring names with spaces and other odd bytes (SPF macros can
		// make them) into the escaped form miekg/dns unpacks answers to,
		// so questions, answers and cache keys compare equal.
		var buf [256]byte
		off, err := dns.PackDomainName(n+".", buf[:], 0, nil, false)
		if err != nil {
			return "", ErrBadName
		}
		canon, _, err := dns.UnpackDomainName(buf[:off], 0)
		if err != nil {
			return "", ErrBadName
		}
		return strings.ToLower(canon), nil
	}
	return n + ".", nil
}

func unusual(r rune) bool {
	return !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '.' || r == '_' || r == '*')
}

func display(fqdn string) string {
	if fqdn == "." {
		return "."
	}
	return strings.ToLower(strings.TrimSuffix(fqdn, "."))
}

// resolve returns the records of type qtype at name, following CNAMEs.
// NODATA gives (nil, nil).
func (c *Client) resolve(ctx context.Context, typ, name string, qtype uint16) ([]dns.RR, error) {
	qname, err := normalize(name)
	if err != nil {
		return nil, &Error{Type: typ, Name: name, Err: err}
	}
	for range maxCNAME {
		ans, err := c.query(ctx, qname, qtype)
		if err != nil {
			return nil, wrapErr(typ, name, err)
		}
		rrs, next, err := extract(ans, qname, qtype)
		if err != nil {
			return nil, &Error{Type: typ, Name: name, Err: err}
		}
		if next == "" {
			return rrs, nil
		}
		qname = next
	}
	return nil, &Error{Type: typ, Name: name, Err: ErrCNAMELoop}
}

// extract walks the CNAME chain of an answer from qname and returns the
// records of type qtype at its end, or the name to ask next when the chain
// leaves the answer. NXDOMAIN (for the end of the chain) is ErrNotFound.
func extract(ans *answer, qname string, qtype uint16) (rrs []dns.RR, next string, err error) {
	target := qname
	if qtype != dns.TypeCNAME {
		for hops := 0; ; hops++ {
			moved := false
			for _, rr := range ans.rrs {
				if cn, ok := rr.(*dns.CNAME); ok && strings.EqualFold(cn.Hdr.Name, target) {
					target = cn.Target
					moved = true
					break
				}
			}
			if !moved {
				break
			}
			if hops == maxCNAME || strings.EqualFold(target, qname) {
				return nil, "", ErrCNAMELoop
			}
		}
	}
	for _, rr := range ans.rrs {
		h := rr.Header()
		if h.Rrtype == qtype && h.Class == dns.ClassINET && strings.EqualFold(h.Name, target) {
			rrs = append(rrs, rr)
			if len(rrs) == maxAnswerRecordsUsed {
				break
			}
		}
	}
	switch {
	case len(rrs) > 0:
		return rrs, "", nil
	case ans.rcode == dns.RcodeNameError:
		return nil, "", ErrNotFound
	case !strings.EqualFold(target, qname):
		if _, ok := dns.IsDomainName(target); !ok {
			return nil, "", ErrBadName
		}
		return nil, strings.ToLower(dns.Fqdn(target)), nil
	}
	return nil, "", nil
}

func wrapErr(typ, name string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		// A copy: the error of a shared query is seen by several callers.
		ne := *e
		ne.Type, ne.Name = typ, name
		return &ne
	}
	return &Error{Type: typ, Name: name, Err: err}
}

// query answers one question from the cache or the upstream, sharing a
// query in flight with concurrent askers.
func (c *Client) query(ctx context.Context, qname string, qtype uint16) (*answer, error) {
	k := cacheKey{qname, qtype}
	if a, ok := c.cache.get(k, c.now()); ok {
		return a, nil
	}
	c.mu.Lock()
	if cl, ok := c.inflight[k]; ok {
		c.mu.Unlock()
		select {
		case <-cl.done:
			return cl.ans, cl.err
		case <-ctx.Done():
			return nil, &Error{Err: ctx.Err(), temporary: true, timeout: true}
		}
	}
	cl := &call{done: make(chan struct{})}
	c.inflight[k] = cl
	c.mu.Unlock()

	cl.ans, cl.err = c.exchange(ctx, qname, qtype)

	c.mu.Lock()
	delete(c.inflight, k)
	c.mu.Unlock()
	close(cl.done)
	return cl.ans, cl.err
}

// exchange asks the upstream servers in turn, attempts rounds, and caches
// a definite answer (NOERROR or NXDOMAIN).
func (c *Client) exchange(ctx context.Context, qname string, qtype uint16) (*answer, error) {
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	m.RecursionDesired = true
	m.SetEdns0(ednsBufferSize, false)

	var lastErr error
	timedOut := false
	for range c.attempts {
		for _, server := range c.servers {
			if err := ctx.Err(); err != nil {
				return nil, &Error{Err: err, temporary: true, timeout: true}
			}
			r, err := c.ask(ctx, m, server)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					timedOut = true
				}
				lastErr = err
				continue
			}
			switch r.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				a := &answer{rcode: r.Rcode, rrs: r.Answer}
				positive := r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0
				c.cache.put(cacheKey{qname, qtype}, a, ttlOf(r, positive, c.maxTTL, c.maxNeg), c.now())
				return a, nil
			default:
				lastErr = fmt.Errorf("%w: %s from %s", ErrServerFailure, dns.RcodeToString[r.Rcode], server)
			}
		}
	}
	if ctx.Err() != nil {
		timedOut = true
	}
	return nil, &Error{Err: lastErr, temporary: true, timeout: timedOut}
}

// ask sends m to one server over UDP, then over TCP when the answer is
// truncated, and without EDNS0 when the server does not understand it.
func (c *Client) ask(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, _, err := c.udp.ExchangeContext(ctx, m, server)
	if err == nil && r.Rcode == dns.RcodeFormatError && r.IsEdns0() == nil {
		// RFC 6891 §7: a server that does not know EDNS0 may answer FORMERR.
		plain := m.Copy()
		plain.Extra = nil
		r, _, err = c.udp.ExchangeContext(ctx, plain, server)
		m = plain
	}
	if err == nil && r.Truncated {
		r, _, err = c.tcp.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		return nil, err
	}
	if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, m.Question[0].Name) ||
		r.Question[0].Qtype != m.Question[0].Qtype {
		return nil, fmt.Errorf("answer from %s does not match the question", server)
	}
	return r, nil
}

// LookupMX implements Resolver.
func (c *Client) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	mxs, err := c.LookupMXRecords(ctx, domain)
	if err != nil {
		return nil, err
	}
	if len(mxs) == 0 {
		// RFC 5321 §5.1: no MX → the domain itself, if it has an address.
		addrs, err := c.LookupIP(ctx, "ip", domain)
		if err != nil {
			return nil, wrapErr("MX", domain, err)
		}
		if len(addrs) == 0 {
			return nil, &Error{Type: "MX", Name: domain, Err: ErrNoMailHost}
		}
		fqdn, _ := normalize(domain)
		return []MX{{Host: display(fqdn), Implicit: true}}, nil
	}
	mxs, err = usableMX(mxs)
	if err != nil {
		return nil, &Error{Type: "MX", Name: domain, Err: err}
	}
	// RFC 5321 §5.1: hosts of equal preference in random order.
	for i := 0; i < len(mxs); {
		j := i + 1
		for j < len(mxs) && mxs[j].Pref == mxs[i].Pref {
			j++
		}
		if j-i > 1 {
			group := mxs[i:j]
			c.shuffle(len(group), func(a, b int) { group[a], group[b] = group[b], group[a] })
		}
		i = j
	}
	return mxs, nil
}

// usableMX drops null-MX entries from a sorted list; a list of only those is
// ErrNullMX. RFC 7505 §3 forbids a null MX beside others; when a domain has
// both anyway, the real hosts are used.
func usableMX(mxs []MX) ([]MX, error) {
	if len(mxs) == 0 {
		return nil, nil
	}
	out := mxs[:0:0]
	for _, mx := range mxs {
		if mx.Host != "." {
			out = append(out, mx)
		}
	}
	if len(out) == 0 {
		return nil, ErrNullMX
	}
	return out, nil
}

// LookupMXRecords implements Resolver.
func (c *Client) LookupMXRecords(ctx context.Context, domain string) ([]MX, error) {
	rrs, err := c.resolve(ctx, "MX", domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	return mxFromRRs(rrs), nil
}

func mxFromRRs(rrs []dns.RR) []MX {
	mxs := make([]MX, 0, len(rrs))
	for _, rr := range rrs {
		if mx, ok := rr.(*dns.MX); ok {
			mxs = append(mxs, MX{Host: display(mx.Mx), Pref: mx.Preference})
		}
	}
	slices.SortStableFunc(mxs, func(a, b MX) int { return cmp.Compare(a.Pref, b.Pref) })
	return mxs
}

// LookupAddrs implements Resolver.
func (c *Client) LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	return c.LookupIP(ctx, "ip", host)
}

// LookupIP implements Resolver.
func (c *Client) LookupIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	switch network {
	case "ip4":
		return c.lookupAddrs(ctx, "A", host, dns.TypeA)
	case "ip6":
		return c.lookupAddrs(ctx, "AAAA", host, dns.TypeAAAA)
	case "ip":
	default:
		return nil, fmt.Errorf("dnsmx: LookupIP: unknown network %q", network)
	}
	var v6 []netip.Addr
	var err6 error
	done := make(chan struct{})
	go func() {
		defer close(done)
		v6, err6 = c.lookupAddrs(ctx, "AAAA", host, dns.TypeAAAA)
	}()
	v4, err4 := c.lookupAddrs(ctx, "A", host, dns.TypeA)
	<-done
	switch {
	case err4 == nil && err6 == nil:
		return append(v4, v6...), nil
	case IsNotFound(err4) || IsNotFound(err6):
		// The name does not exist, whatever the other type said.
		if IsNotFound(err4) {
			return nil, err4
		}
		return nil, err6
	case err4 == nil && len(v4) > 0:
		return v4, nil // AAAA failed, but there is somewhere to go
	case err6 == nil && len(v6) > 0:
		return v6, nil
	case err4 != nil:
		return nil, err4
	}
	return nil, err6
}

func (c *Client) lookupAddrs(ctx context.Context, typ, host string, qtype uint16) ([]netip.Addr, error) {
	rrs, err := c.resolve(ctx, typ, host, qtype)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, rr := range rrs {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A
		case *dns.AAAA:
			ip = rr.AAAA
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		if qtype == dns.TypeA {
			a = a.Unmap()
		}
		out = append(out, a)
	}
	return out, nil
}

// LookupTXT implements Resolver.
func (c *Client) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := c.resolve(ctx, "TXT", name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if txt, ok := rr.(*dns.TXT); ok {
			var b strings.Builder
			for _, s := range txt.Txt {
				b.WriteString(unescapeTXT(s))
			}
			out = append(out, b.String())
		}
	}
	return out, nil
}

// unescapeTXT undoes the presentation escaping that miekg/dns applies to
// character-strings when it unpacks them (`\"`, `\\`, and `\DDD` for bytes
// outside printable ASCII), giving the bytes that were on the wire.
func unescapeTXT(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch != '\\' || i+1 >= len(s) {
			b = append(b, ch)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if v <= 255 {
				b = append(b, byte(v))
				i += 3
				continue
			}
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// LookupPTR implements Resolver.
func (c *Client) LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error) {
	if !addr.IsValid() {
		return nil, &Error{Type: "PTR", Name: addr.String(), Err: ErrBadName}
	}
	arpa, err := dns.ReverseAddr(addr.Unmap().String())
	if err != nil {
		return nil, &Error{Type: "PTR", Name: addr.String(), Err: ErrBadName}
	}
	rrs, err := c.resolve(ctx, "PTR", arpa, dns.TypePTR)
	if err != nil {
		return nil, wrapErr("PTR", addr.String(), err)
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if p, ok := rr.(*dns.PTR); ok {
			out = append(out, display(p.Ptr))
		}
	}
	return out, nil
}
