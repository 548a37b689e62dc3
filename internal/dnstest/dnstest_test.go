package dnstest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postyard-mail/postyard/internal/dnstest"
)

const zone = `
$TTL 120
example.com.          IN SOA ns.example.com. hostmaster.example.com. 1 3600 600 86400 30
example.com.          IN MX  10 mx1.example.com.
example.com.          IN MX  20 mx2.example.com.
mx1.example.com.      IN A   127.0.0.2
mx2.example.com.   60 IN A   127.0.0.3
mx2.example.com.      IN AAAA ::1
www.example.com.      IN CNAME web.example.com.
web.example.com.      IN A   127.0.0.4
alias.example.com.    IN CNAME www.example.com.
a.b.deep.example.com. IN TXT "deep"
*.wild.example.com.   IN TXT "wildcard"
host.wild.example.com. IN TXT "exact"
`

func exchange(t *testing.T, proto, addr, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: proto, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", proto, name, dns.TypeToString[qtype], err)
	}
	return r
}

func answers(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	return out
}

func TestAnswers(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		answer []string
		soa    bool // a negative answer carries an SOA
	}{
		{"MX", "example.com", dns.TypeMX, dns.RcodeSuccess, []string{
			"example.com. 120 IN MX 10 mx1.example.com.",
			"example.com. 120 IN MX 20 mx2.example.com.",
		}, false},
		{"case-insensitive", "EXAMPLE.Com", dns.TypeMX, dns.RcodeSuccess, []string{
			"example.com. 120 IN MX 10 mx1.example.com.",
			"example.com. 120 IN MX 20 mx2.example.com.",
		}, false},
		{"explicit TTL", "mx2.example.com", dns.TypeA, dns.RcodeSuccess, []string{"mx2.example.com. 60 IN A 127.0.0.3"}, false},
		{"AAAA", "mx2.example.com", dns.TypeAAAA, dns.RcodeSuccess, []string{"mx2.example.com. 120 IN AAAA ::1"}, false},
		{"NODATA", "mx1.example.com", dns.TypeAAAA, dns.RcodeSuccess, nil, true},
		{"NXDOMAIN", "nope.example.com", dns.TypeA, dns.RcodeNameError, nil, true},
		{"empty non-terminal", "b.deep.example.com", dns.TypeTXT, dns.RcodeSuccess, nil, true},
		{"CNAME chased", "alias.example.com", dns.TypeA, dns.RcodeSuccess, []string{
			"alias.example.com. 120 IN CNAME www.example.com.",
			"www.example.com. 120 IN CNAME web.example.com.",
			"web.example.com. 120 IN A 127.0.0.4",
		}, false},
		{"CNAME asked", "www.example.com", dns.TypeCNAME, dns.RcodeSuccess, []string{"www.example.com. 120 IN CNAME web.example.com."}, false},
		{"wildcard", "x.wild.example.com", dns.TypeTXT, dns.RcodeSuccess, []string{`x.wild.example.com. 120 IN TXT "wildcard"`}, false},
		{"wildcard deeper", "y.x.wild.example.com", dns.TypeTXT, dns.RcodeSuccess, []string{`y.x.wild.example.com. 120 IN TXT "wildcard"`}, false},
		{"exact beats wildcard", "host.wild.example.com", dns.TypeTXT, dns.RcodeSuccess, []string{`host.wild.example.com. 120 IN TXT "exact"`}, false},
		{"wildcard stops at closest encloser", "z.host.wild.example.com", dns.TypeTXT, dns.RcodeNameError, nil, true},
		{"other zone", "example.org", dns.TypeA, dns.RcodeNameError, nil, true},
	}
	for _, tc := range tests {
		for _, proto := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+proto, func(t *testing.T) {
				r := exchange(t, proto, srv.Addr, tc.qname, tc.qtype, 0)
				if r.Rcode != tc.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if !r.Authoritative {
					t.Errorf("answer not authoritative")
				}
				if got := answers(r); fmt.Sprint(got) != fmt.Sprint(tc.answer) {
					t.Errorf("answer\n%q\nwant\n%q", got, tc.answer)
				}
				if tc.soa != (len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA) {
					t.Errorf("authority %v, want SOA: %v", r.Ns, tc.soa)
				}
			})
		}
	}
}

func TestNegativeSOA(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	r := exchange(t, "udp", srv.Addr, "nope.example.com", dns.TypeA, 0)
	if soa := r.Ns[0].(*dns.SOA); soa.Minttl != 30 || soa.Hdr.Name != "example.com." {
		t.Errorf("SOA of the enclosing zone expected, got %v", soa)
	}
	r = exchange(t, "udp", srv.Addr, "example.net", dns.TypeA, 0)
	if soa := r.Ns[0].(*dns.SOA); soa.Minttl != 60 || soa.Hdr.Name != "." {
		t.Errorf("synthesized SOA expected, got %v", soa)
	}
}

func TestRuntimeChanges(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	srv.Set(`example.com. 30 IN MX 5 new.example.com.`)
	if got := answers(exchange(t, "udp", srv.Addr, "example.com", dns.TypeMX, 0)); fmt.Sprint(got) != "[example.com. 30 IN MX 5 new.example.com.]" {
		t.Errorf("after Set: %q", got)
	}
	srv.Add(`example.com. 30 IN MX 6 new2.example.com.`)
	if got := answers(exchange(t, "udp", srv.Addr, "example.com", dns.TypeMX, 0)); len(got) != 2 {
		t.Errorf("after Add: %q", got)
	}
	srv.Remove("example.com", dns.TypeMX)
	if r := exchange(t, "udp", srv.Addr, "example.com", dns.TypeMX, 0); len(r.Answer) != 0 || r.Rcode != dns.RcodeSuccess {
		t.Errorf("after Remove MX: %v", r)
	}
	srv.Remove("mx1.example.com", 0)
	if r := exchange(t, "udp", srv.Addr, "mx1.example.com", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Errorf("after Remove all: rcode %d", r.Rcode)
	}
	srv.SetZone(`only.example. IN A 127.0.0.9`)
	if r := exchange(t, "udp", srv.Addr, "web.example.com", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Errorf("after SetZone: rcode %d", r.Rcode)
	}
	srv.SetCNAMEChasing(false)
	srv.Add(`c.example. IN CNAME only.example.`)
	if got := answers(exchange(t, "udp", srv.Addr, "c.example", dns.TypeA, 0)); fmt.Sprint(got) != "[c.example. 300 IN CNAME only.example.]" {
		t.Errorf("without chasing: %q", got)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	srv.Fail("mx1.example.com", 0, dnstest.ServFail)
	srv.Fail("mx2.example.com", dns.TypeAAAA, dnstest.Refused)
	srv.Fail("web.example.com", dns.TypeA, dnstest.Timeout)
	srv.Fail("example.com", dns.TypeMX, dnstest.Truncate)

	if r := exchange(t, "udp", srv.Addr, "mx1.example.com", dns.TypeA, 0); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("ServFail: rcode %d", r.Rcode)
	}
	if r := exchange(t, "udp", srv.Addr, "mx2.example.com", dns.TypeAAAA, 0); r.Rcode != dns.RcodeRefused {
		t.Errorf("Refused: rcode %d", r.Rcode)
	}
	if r := exchange(t, "udp", srv.Addr, "mx2.example.com", dns.TypeA, 0); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("fault for AAAA leaked to A: %v", r)
	}
	for _, proto := range []string{"udp", "tcp"} {
		m := new(dns.Msg)
		m.SetQuestion("web.example.com.", dns.TypeA)
		c := &dns.Client{Net: proto, Timeout: 200 * time.Millisecond}
		if _, _, err := c.Exchange(m, srv.Addr); err == nil {
			t.Errorf("Timeout over %s: got an answer", proto)
		}
	}
	r := exchange(t, "udp", srv.Addr, "example.com", dns.TypeMX, 1232)
	if !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("Truncate over UDP: TC=%v answers=%d", r.Truncated, len(r.Answer))
	}
	r = exchange(t, "tcp", srv.Addr, "example.com", dns.TypeMX, 1232)
	if r.Truncated || len(r.Answer) != 2 {
		t.Errorf("Truncate over TCP: TC=%v answers=%d", r.Truncated, len(r.Answer))
	}
	srv.Fail("mx1.example.com", 0, dnstest.NoFault)
	if r := exchange(t, "udp", srv.Addr, "mx1.example.com", dns.TypeA, 0); r.Rcode != dns.RcodeSuccess {
		t.Errorf("cleared fault: rcode %d", r.Rcode)
	}
}

func TestTruncationBySize(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, "")
	var lines []string
	for i := range 40 {
		lines = append(lines, fmt.Sprintf(`big.example. IN TXT "record number %02d padded to be somewhat long........"`, i))
	}
	srv.Set(lines...)
	if r := exchange(t, "udp", srv.Addr, "big.example", dns.TypeTXT, 0); !r.Truncated {
		t.Errorf("no TC without EDNS0 (%d answers)", len(r.Answer))
	}
	if r := exchange(t, "udp", srv.Addr, "big.example", dns.TypeTXT, 4096); r.Truncated || len(r.Answer) != 40 {
		t.Errorf("EDNS0 4096: TC=%v answers=%d", r.Truncated, len(r.Answer))
	}
	if r := exchange(t, "tcp", srv.Addr, "big.example", dns.TypeTXT, 0); r.Truncated || len(r.Answer) != 40 {
		t.Errorf("TCP: TC=%v answers=%d", r.Truncated, len(r.Answer))
	}
}

func TestQueryLog(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, zone)
	exchange(t, "udp", srv.Addr, "example.com", dns.TypeMX, 1232)
	exchange(t, "tcp", srv.Addr, "Example.com", dns.TypeMX, 0)
	exchange(t, "udp", srv.Addr, "example.com", dns.TypeA, 0)
	if n := srv.Queries("example.com", dns.TypeMX); n != 2 {
		t.Errorf("MX queries %d, want 2", n)
	}
	if n := srv.Queries("EXAMPLE.COM.", 0); n != 3 {
		t.Errorf("all queries %d, want 3", n)
	}
	want := []dnstest.Query{
		{Name: "example.com.", Type: dns.TypeMX, Proto: "udp", EDNS: true, UDPSize: 1232},
		{Name: "example.com.", Type: dns.TypeMX, Proto: "tcp"},
		{Name: "example.com.", Type: dns.TypeA, Proto: "udp"},
	}
	if got := srv.QueryLog(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("log\n%v\nwant\n%v", got, want)
	}
	srv.ResetLog()
	if n := len(srv.QueryLog()); n != 0 {
		t.Errorf("after reset: %d", n)
	}
}

func TestListenBadZone(t *testing.T) {
	t.Parallel()
	if _, err := dnstest.Listen("example.com. IN MX notanumber"); err == nil {
		t.Fatal("bad zone accepted")
	}
	s, err := dnstest.Listen("")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestAddRR(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, "")
	srv.AddRR(&dns.TXT{
		Hdr: dns.RR_Header{Name: "With Space.Example.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
		Txt: []string{"a", "b"},
	})
	r := exchange(t, "udp", srv.Addr, `with\032space.example.`, dns.TypeTXT, 0)
	if got := answers(r); fmt.Sprint(got) != `[with\ space.example. 60 IN TXT "a" "b"]` {
		t.Errorf("got %q", got)
	}
}
