package dnsmx_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postyard-mail/postyard/dnsmx"
	"github.com/postyard-mail/postyard/internal/dnstest"
)

const zone = `
$TTL 300
example.com.        IN SOA ns.example.com. hostmaster.example.com. 1 3600 600 86400 120
example.com.        IN MX 20 mx2.example.com.
example.com.        IN MX 10 mx1.example.com.
example.com.        IN MX 30 mx3.example.com.
mx1.example.com.    IN A 127.0.0.2
mx2.example.com.    IN A 127.0.0.3
mx2.example.com.    IN AAAA ::1
mx3.example.com.    IN AAAA ::2

equal.example.      IN MX 10 a.equal.example.
equal.example.      IN MX 10 b.equal.example.
equal.example.      IN MX 10 c.equal.example.
equal.example.      IN MX 5 first.equal.example.
equal.example.      IN MX 20 x.equal.example.
equal.example.      IN MX 20 y.equal.example.

implicit.example.   IN A 127.0.0.5
implicit6.example.  IN AAAA ::5
nohost.example.     IN TXT "no MX, no address"
null.example.       IN MX 0 .
nullmixed.example.  IN MX 0 .
nullmixed.example.  IN MX 10 real.nullmixed.example.
servfail.example.   IN MX 10 mx.servfail.example.
cname.example.      IN CNAME example.com.
loop1.example.      IN CNAME loop2.example.
loop2.example.      IN CNAME loop1.example.
xn--bcher-kva.example. IN MX 10 mx.xn--bcher-kva.example.
UPPER.example.      IN MX 10 MX.UPPER.example.
implicitfail.example. IN TXT "A fails"

txt.example.        IN TXT "v=spf1 " "ip4:192.0.2.0/24 " "-all"
txt.example.        IN TXT "second record"
escaped.example.    IN TXT "quote\" backslash\\ tab\009 utf8 \195\169 end"
1.2.0.192.in-addr.arpa. IN PTR host.example.com.
1.2.0.192.in-addr.arpa. IN PTR Other.Example.NET.
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. IN PTR v6.example.com.
www.example.com.    IN CNAME host.example.com.
host.example.com.   IN A 192.0.2.1
host.example.com.   IN AAAA 2001:db8::1
`

// newClient returns a Client asking srv, with short timeouts and one
// attempt so that injected timeouts cost little.
func newClient(t testing.TB, srv *dnstest.Server, mod ...func(*dnsmx.Options)) *dnsmx.Client {
	t.Helper()
	opts := dnsmx.Options{Upstream: srv.Addr, Timeout: 300 * time.Millisecond, Attempts: 1}
	for _, m := range mod {
		m(&opts)
	}
	c, err := dnsmx.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reverse is an injected shuffle that reverses, so equal preferences come
// out in a known, changed order.
func reverse(n int, swap func(i, j int)) {
	for i := range n / 2 {
		swap(i, n-1-i)
	}
}

func hosts(mxs []dnsmx.MX) string {
	var s []string
	for _, mx := range mxs {
		h := fmt.Sprintf("%d:%s", mx.Pref, mx.Host)
		if mx.Implicit {
			h += "(implicit)"
		}
		s = append(s, h)
	}
	return strings.Join(s, " ")
}

type errKind int

const (
	noErr errKind = iota
	permanent
	temporary
)

func checkErr(t *testing.T, err error, kind errKind, is error) {
	t.Helper()
	switch kind {
	case noErr:
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	case permanent:
		if err == nil || dnsmx.IsTemporary(err) {
			t.Fatalf("want a permanent error, got %v", err)
		}
	case temporary:
		if err == nil || !dnsmx.IsTemporary(err) {
			t.Fatalf("want a temporary error, got %v", err)
		}
	}
	if is != nil && !errors.Is(err, is) {
		t.Fatalf("error %v is not %v", err, is)
	}
	var e *dnsmx.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T is not a *dnsmx.Error", err)
	}
}

func TestLookupMX(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	srv.Fail("servfail.example", dns.TypeMX, dnstest.ServFail)
	srv.Fail("refused.example", dns.TypeMX, dnstest.Refused)
	srv.Fail("timeout.example", 0, dnstest.Timeout)
	srv.Fail("implicitfail.example", dns.TypeA, dnstest.ServFail)
	srv.Fail("implicitfail.example", dns.TypeAAAA, dnstest.ServFail)
	c := newClient(t, srv, func(o *dnsmx.Options) { o.Shuffle = reverse })
	ctx := t.Context()

	tests := []struct {
		name   string
		domain string
		want   string
		kind   errKind
		is     error
	}{
		{"sorted by preference", "example.com", "10:mx1.example.com 20:mx2.example.com 30:mx3.example.com", noErr, nil},
		{"final dot and case", "Example.COM.", "10:mx1.example.com 20:mx2.example.com 30:mx3.example.com", noErr, nil},
		{"equal preferences shuffled per group", "equal.example", "5:first.equal.example 10:c.equal.example 10:b.equal.example 10:a.equal.example 20:y.equal.example 20:x.equal.example", noErr, nil},
		{"implicit MX from A", "implicit.example", "0:implicit.example(implicit)", noErr, nil},
		{"implicit MX from AAAA", "implicit6.example", "0:implicit6.example(implicit)", noErr, nil},
		{"CNAME followed", "cname.example", "10:mx1.example.com 20:mx2.example.com 30:mx3.example.com", noErr, nil},
		{"host names lower-cased", "upper.example", "10:mx.upper.example", noErr, nil},
		{"IDN domain", "bücher.example", "10:mx.xn--bcher-kva.example", noErr, nil},
		{"null MX beside real hosts is ignored", "nullmixed.example", "10:real.nullmixed.example", noErr, nil},
		{"null MX", "null.example", "", permanent, dnsmx.ErrNullMX},
		{"NXDOMAIN", "nonexistent.example", "", permanent, dnsmx.ErrNotFound},
		{"no MX and no address", "nohost.example", "", permanent, dnsmx.ErrNoMailHost},
		{"CNAME loop", "loop1.example", "", permanent, dnsmx.ErrCNAMELoop},
		{"bad name", "exa mple..com", "", permanent, dnsmx.ErrBadName},
		{"empty name", "", "", permanent, dnsmx.ErrBadName},
		{"SERVFAIL", "servfail.example", "", temporary, dnsmx.ErrServerFailure},
		{"REFUSED", "refused.example", "", temporary, dnsmx.ErrServerFailure},
		{"timeout", "timeout.example", "", temporary, nil},
		{"implicit MX lookup fails", "implicitfail.example", "", temporary, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mxs, err := c.LookupMX(ctx, tc.domain)
			checkErr(t, err, tc.kind, tc.is)
			if got := hosts(mxs); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestTimeoutIsTimeout(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	srv.Fail("example.com", 0, dnstest.Timeout)
	c := newClient(t, srv)
	_, err := c.LookupMX(t.Context(), "example.com")
	var e *dnsmx.Error
	if !errors.As(err, &e) || !e.Timeout() || !e.Temporary() || e.Type != "MX" || e.Name != "example.com" {
		t.Fatalf("want a temporary timeout *Error for MX example.com, got %#v", err)
	}
}

func TestShuffleDefaultIsRandom(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	c := newClient(t, srv)
	seen := map[string]bool{}
	for range 200 {
		mxs, err := c.LookupMX(t.Context(), "equal.example")
		if err != nil {
			t.Fatal(err)
		}
		if mxs[0].Host != "first.equal.example" || mxs[4].Pref != 20 {
			t.Fatalf("shuffle crossed preference groups: %s", hosts(mxs))
		}
		seen[hosts(mxs[1:4])] = true
	}
	// 3! = 6 orders; 200 draws miss one with probability < 6·(5/6)^200.
	if len(seen) != 6 {
		t.Errorf("saw %d of 6 orders of the equal-preference group", len(seen))
	}
}

func TestCNAMEAcrossQueries(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	srv.SetCNAMEChasing(false)
	c := newClient(t, srv)
	mxs, err := c.LookupMX(t.Context(), "cname.example")
	if err != nil {
		t.Fatal(err)
	}
	if got := hosts(mxs); got != "10:mx1.example.com 20:mx2.example.com 30:mx3.example.com" {
		t.Errorf("got %s", got)
	}
	if n := srv.Queries("example.com", dns.TypeMX); n != 1 {
		t.Errorf("target asked %d times, want 1", n)
	}
	if _, err := c.LookupMX(t.Context(), "loop1.example"); !errors.Is(err, dnsmx.ErrCNAMELoop) {
		t.Errorf("loop across queries: %v", err)
	}
}

func TestLookupIP(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	srv.Fail("mx2.example.com", dns.TypeAAAA, dnstest.ServFail)
	srv.Add("broken.example. IN TXT x")
	srv.Fail("broken.example", dns.TypeA, dnstest.ServFail)
	c := newClient(t, srv)
	tests := []struct {
		network, host string
		want          string
		kind          errKind
		is            error
	}{
		{"ip", "host.example.com", "[192.0.2.1 2001:db8::1]", noErr, nil},
		{"ip", "www.example.com", "[192.0.2.1 2001:db8::1]", noErr, nil},
		{"ip4", "host.example.com", "[192.0.2.1]", noErr, nil},
		{"ip6", "host.example.com", "[2001:db8::1]", noErr, nil},
		{"ip6", "mx1.example.com", "[]", noErr, nil},                      // NODATA
		{"ip", "nohost.example", "[]", noErr, nil},                        // NODATA for both
		{"ip", "mx2.example.com", "[127.0.0.3]", noErr, nil},              // AAAA fails, A answers
		{"ip", "broken.example", "[]", temporary, dnsmx.ErrServerFailure}, // A fails, AAAA empty
		{"ip", "nonexistent.example", "[]", permanent, dnsmx.ErrNotFound},
		{"ip4", "nonexistent.example", "[]", permanent, dnsmx.ErrNotFound},
		{"ipx", "host.example.com", "[]", permanent, nil},
	}
	for _, tc := range tests {
		t.Run(tc.network+" "+tc.host, func(t *testing.T) {
			addrs, err := c.LookupIP(t.Context(), tc.network, tc.host)
			if tc.network == "ipx" {
				if err == nil {
					t.Fatal("unknown network accepted")
				}
				return
			}
			checkErr(t, err, tc.kind, tc.is)
			if got := fmt.Sprint(addrs); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	addrs, err := c.LookupAddrs(t.Context(), "host.example.com")
	if err != nil || len(addrs) != 2 {
		t.Errorf("LookupAddrs: %v %v", addrs, err)
	}
}

func TestLookupTXT(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	c := newClient(t, srv)
	txts, err := c.LookupTXT(t.Context(), "txt.example")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"v=spf1 ip4:192.0.2.0/24 -all", "second record"}
	if !slices.Equal(txts, want) {
		t.Errorf("got %q, want %q", txts, want)
	}
	txts, err = c.LookupTXT(t.Context(), "escaped.example")
	if err != nil {
		t.Fatal(err)
	}
	if want := "quote\" backslash\\ tab\t utf8 é end"; len(txts) != 1 || txts[0] != want {
		t.Errorf("got %q, want %q", txts, want)
	}
	txts, err = c.LookupTXT(t.Context(), "example.com")
	if err != nil || len(txts) != 0 {
		t.Errorf("NODATA: %q %v", txts, err)
	}
	_, err = c.LookupTXT(t.Context(), "nonexistent.example")
	checkErr(t, err, permanent, dnsmx.ErrNotFound)
}

func TestLookupPTR(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	c := newClient(t, srv)
	for _, tc := range []struct {
		addr string
		want string
	}{
		{"192.0.2.1", "[host.example.com other.example.net]"},
		{"::ffff:192.0.2.1", "[host.example.com other.example.net]"},
		{"2001:db8::1", "[v6.example.com]"},
	} {
		names, err := c.LookupPTR(t.Context(), netip.MustParseAddr(tc.addr))
		if err != nil {
			t.Fatalf("%s: %v", tc.addr, err)
		}
		if got := fmt.Sprint(names); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.addr, got, tc.want)
		}
	}
	_, err := c.LookupPTR(t.Context(), netip.MustParseAddr("192.0.2.99"))
	checkErr(t, err, permanent, dnsmx.ErrNotFound)
	_, err = c.LookupPTR(t.Context(), netip.Addr{})
	checkErr(t, err, permanent, dnsmx.ErrBadName)
}

// clock is an injected cache clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestCache(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone+`
short.example. 30 IN A 127.0.0.7
chain.example. 600 IN CNAME short.example.
long.example. 86400 IN A 127.0.0.8
nosoa.test. IN A 127.0.0.9
`)
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := newClient(t, srv, func(o *dnsmx.Options) { o.Now = clk.now })
	ctx := t.Context()

	// ask looks name up and says how many queries reached the server for it.
	ask := func(name string, qtype uint16) int {
		t.Helper()
		switch qtype {
		case dns.TypeA:
			_, _ = c.LookupIP(ctx, "ip4", name)
		case dns.TypeMX:
			_, _ = c.LookupMXRecords(ctx, name)
		case dns.TypeTXT:
			_, _ = c.LookupTXT(ctx, name)
		}
		return srv.Queries(name, qtype)
	}

	t.Run("positive until TTL", func(t *testing.T) {
		if n := ask("mx1.example.com", dns.TypeA); n != 1 {
			t.Fatalf("first: %d queries", n)
		}
		clk.advance(299 * time.Second)
		if n := ask("mx1.example.com", dns.TypeA); n != 1 {
			t.Fatalf("before TTL: %d queries", n)
		}
		clk.advance(time.Second)
		if n := ask("mx1.example.com", dns.TypeA); n != 2 {
			t.Fatalf("at TTL: %d queries", n)
		}
	})
	t.Run("CNAME chain cached for the smallest TTL", func(t *testing.T) {
		ask("chain.example", dns.TypeA)
		clk.advance(29 * time.Second)
		if n := ask("chain.example", dns.TypeA); n != 1 {
			t.Fatalf("before TTL: %d queries", n)
		}
		clk.advance(time.Second)
		if n := ask("chain.example", dns.TypeA); n != 2 {
			t.Fatalf("after the A's TTL: %d queries", n)
		}
	})
	t.Run("TTL capped", func(t *testing.T) {
		ask("long.example", dns.TypeA)
		clk.advance(dnsmx.DefaultMaxTTL)
		if n := ask("long.example", dns.TypeA); n != 2 {
			t.Fatalf("after MaxTTL: %d queries", n)
		}
	})
	t.Run("NXDOMAIN for the SOA minimum", func(t *testing.T) {
		ask("gone.example.com", dns.TypeA)
		clk.advance(119 * time.Second)
		if n := ask("gone.example.com", dns.TypeA); n != 1 {
			t.Fatalf("before negative TTL: %d queries", n)
		}
		clk.advance(time.Second)
		if n := ask("gone.example.com", dns.TypeA); n != 2 {
			t.Fatalf("after negative TTL: %d queries", n)
		}
	})
	t.Run("NODATA cached", func(t *testing.T) {
		ask("mx1.example.com", dns.TypeTXT)
		if n := ask("mx1.example.com", dns.TypeTXT); n != 1 {
			t.Fatalf("NODATA asked again: %d queries", n)
		}
	})
	t.Run("negative answer capped", func(t *testing.T) {
		srv.Add("capped.example. IN SOA ns. h. 1 1 1 1 86400")
		ask("x.capped.example", dns.TypeTXT)
		clk.advance(dnsmx.DefaultMaxNegative)
		if n := ask("x.capped.example", dns.TypeTXT); n != 2 {
			t.Fatalf("after MaxNegativeTTL: %d queries", n)
		}
	})
	t.Run("SERVFAIL not cached", func(t *testing.T) {
		srv.Fail("mx3.example.com", 0, dnstest.ServFail)
		ask("mx3.example.com", dns.TypeTXT)
		srv.Fail("mx3.example.com", 0, dnstest.NoFault)
		if n := ask("mx3.example.com", dns.TypeTXT); n != 2 {
			t.Fatalf("after SERVFAIL: %d queries", n)
		}
	})
	t.Run("answers change after expiry", func(t *testing.T) {
		mxs, _ := c.LookupMXRecords(ctx, "example.com")
		srv.Set("example.com. 300 IN MX 1 changed.example.com.")
		mxs2, _ := c.LookupMXRecords(ctx, "example.com")
		if hosts(mxs) != hosts(mxs2) {
			t.Fatalf("cached answer changed before expiry: %s", hosts(mxs2))
		}
		clk.advance(300 * time.Second)
		mxs3, _ := c.LookupMXRecords(ctx, "example.com")
		if hosts(mxs3) != "1:changed.example.com" {
			t.Fatalf("after expiry: %s", hosts(mxs3))
		}
	})
}

func TestCacheBounded(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	c := newClient(t, srv, func(o *dnsmx.Options) { o.CacheSize = 2 })
	ctx := t.Context()
	for _, h := range []string{"mx1.example.com", "mx2.example.com", "mx1.example.com", "mx3.example.com", "mx2.example.com", "mx1.example.com"} {
		if _, err := c.LookupIP(ctx, "ip4", h); err != nil {
			t.Fatal(err)
		}
	}
	// LRU of 2: mx1 (miss), mx2 (miss), mx1 (hit), mx3 (miss, evicts mx2),
	// mx2 (miss, evicts mx1), mx1 (miss).
	for h, want := range map[string]int{"mx1.example.com": 2, "mx2.example.com": 2, "mx3.example.com": 1} {
		if n := srv.Queries(h, dns.TypeA); n != want {
			t.Errorf("%s: %d queries, want %d", h, n, want)
		}
	}

	off := newClient(t, srv, func(o *dnsmx.Options) { o.CacheSize = -1 })
	srv.ResetLog()
	for range 3 {
		if _, err := off.LookupTXT(ctx, "txt.example"); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Queries("txt.example", dns.TypeTXT); n != 3 {
		t.Errorf("cache disabled: %d queries, want 3", n)
	}
}

func TestConcurrentLookupsShareOneQuery(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	c := newClient(t, srv)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := c.LookupMX(t.Context(), "example.com"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := srv.Queries("example.com", dns.TypeMX); n != 1 {
		t.Errorf("%d MX queries for 50 concurrent lookups, want 1", n)
	}
}

func TestEDNS0AndTCPFallback(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	var big []string
	for i := range 60 {
		big = append(big, fmt.Sprintf(`big.example. IN TXT "record %02d ......................................"`, i))
	}
	srv.Set(big...)
	srv.Fail("example.com", dns.TypeMX, dnstest.Truncate)
	c := newClient(t, srv)

	txts, err := c.LookupTXT(t.Context(), "big.example")
	if err != nil || len(txts) != 60 {
		t.Fatalf("big TXT: %d records, %v", len(txts), err)
	}
	mxs, err := c.LookupMX(t.Context(), "example.com")
	if err != nil || len(mxs) != 3 {
		t.Fatalf("truncated MX: %v, %v", mxs, err)
	}
	var got []string
	for _, q := range srv.QueryLog() {
		if q.Name == "big.example." || q.Name == "example.com." {
			got = append(got, fmt.Sprintf("%s %s edns=%v/%d", q.Name, q.Proto, q.EDNS, q.UDPSize))
		}
	}
	want := []string{
		"big.example. udp edns=true/1232",
		"big.example. tcp edns=true/1232",
		"example.com. udp edns=true/1232",
		"example.com. tcp edns=true/1232",
	}
	if !slices.Equal(got, want) {
		t.Errorf("queries\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestServerFailover(t *testing.T) {
	t.Parallel()
	dead := dnstest.Start(t, "")
	dead.Fail("example.com", 0, dnstest.Timeout)
	failing := dnstest.Start(t, "")
	failing.Fail("example.com", 0, dnstest.ServFail)
	good := dnstest.Start(t, zone)
	c, err := dnsmx.New(dnsmx.Options{Servers: []string{dead.Addr, failing.Addr, good.Addr}, Timeout: 200 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	mxs, err := c.LookupMX(t.Context(), "example.com")
	if err != nil || len(mxs) != 3 {
		t.Fatalf("%v %v", mxs, err)
	}
	if dead.Queries("example.com", 0) != 1 || failing.Queries("example.com", 0) != 1 {
		t.Errorf("servers not asked in order")
	}

	c, err = dnsmx.New(dnsmx.Options{Servers: []string{dead.Addr}, Timeout: 100 * time.Millisecond, Attempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.LookupMX(t.Context(), "example.com"); !dnsmx.IsTemporary(err) {
		t.Fatalf("want temporary, got %v", err)
	}
	if n := dead.Queries("example.com", dns.TypeMX); n != 1+3 {
		t.Errorf("%d queries to a dead server, want 1 earlier + 3 attempts", n)
	}
}

func TestContextCanceled(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	c := newClient(t, srv)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.LookupMX(ctx, "example.com")
	checkErr(t, err, temporary, context.Canceled)
	if n := srv.Queries("example.com", 0); n != 0 {
		t.Errorf("%d queries after cancel", n)
	}

	srv.Fail("slow.example", 0, dnstest.Timeout)
	c = newClient(t, srv, func(o *dnsmx.Options) { o.Timeout = 10 * time.Second })
	ctx, cancel = context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.LookupTXT(ctx, "slow.example")
	checkErr(t, err, temporary, nil)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the context deadline was not obeyed: %v", d)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("# comment\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := dnsmx.New(dnsmx.Options{ResolvConf: conf})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.Servers()); got != "[192.0.2.53:53 [2001:db8::53]:53]" {
		t.Errorf("servers from resolv.conf: %s", got)
	}
	for in, want := range map[string]string{
		"127.0.0.1:5353": "[127.0.0.1:5353]",
		"192.0.2.1":      "[192.0.2.1:53]",
		"[::1]:5300":     "[[::1]:5300]",
		"::1":            "[[::1]:53]",
	} {
		c, err := dnsmx.New(dnsmx.Options{Upstream: in})
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := fmt.Sprint(c.Servers()); got != want {
			t.Errorf("%s: servers %s, want %s", in, got, want)
		}
	}

	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(empty, []byte("search example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []dnsmx.Options{
		{ResolvConf: filepath.Join(dir, "missing.conf")},
		{ResolvConf: empty},
		{Upstream: ":53"},
	} {
		if _, err := dnsmx.New(opts); err == nil {
			t.Errorf("%+v accepted", opts)
		}
	}
}

func BenchmarkLookupMXCached(b *testing.B) {
	srv := dnstest.Start(b, zone)
	c := newClient(b, srv)
	ctx := b.Context()
	if _, err := c.LookupMX(ctx, "example.com"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.LookupMX(ctx, "example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupTXTCached(b *testing.B) {
	srv := dnstest.Start(b, zone)
	c := newClient(b, srv)
	ctx := b.Context()
	if _, err := c.LookupTXT(ctx, "txt.example"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.LookupTXT(ctx, "txt.example"); err != nil {
			b.Fatal(err)
		}
	}
}
