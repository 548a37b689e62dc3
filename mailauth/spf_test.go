package mailauth_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postyard-mail/postyard/dnsmx"
	"github.com/postyard-mail/postyard/internal/dnstest"
	"github.com/postyard-mail/postyard/mailauth"
)

// spfZone is the DNS of the SPF table: each sender domain's TXT record is
// set per case in the table; these are the names the mechanisms point at.
const spfZone = `
$TTL 300
mail.example.net.   IN A    192.0.2.10
mail.example.net.   IN AAAA 2001:db8::10
mx1.example.net.    IN A    192.0.2.20
mx2.example.net.    IN A    192.0.2.21
mx2.example.net.    IN AAAA 2001:db8::21
example.net.        IN MX 10 mx1.example.net.
example.net.        IN MX 20 mx2.example.net.
example.net.        IN A    192.0.2.30
example.net.        IN TXT  "v=spf1 ip4:192.0.2.128/25 -all"
other.example.      IN TXT  "v=spf1 ip4:198.51.100.7 ~all"
neutral.example.    IN TXT  "v=spf1 ?all"
nospf.example.      IN TXT  "just text"
broken.example.     IN TXT  "v=spf1 frobnicate -all"
10.2.0.192.in-addr.arpa. IN PTR mail.example.net.
11.2.0.192.in-addr.arpa. IN PTR liar.example.net.
liar.example.net.   IN A    192.0.2.99
allowed.192.0.2.50.list.example. IN A 127.0.0.2
exp.example.        IN TXT  "%{i} is not one of %{d}'s designated mail servers"
self.example.       IN TXT  "v=spf1 a mx -all"
self.example.       IN A    192.0.2.30
self.example.       IN MX 10 mx1.example.net.
`

func spfResolver(t testing.TB, srv *dnstest.Server) dnsmx.Resolver {
	t.Helper()
	r, err := dnsmx.New(dnsmx.Options{Upstream: srv.Addr, Timeout: 200 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSPFTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		record   string // TXT of test.example, "" for none
		ip       string
		mailFrom string // default user@test.example
		helo     string // default mail.example.net
		want     string
		reason   string // a substring of the reason, "" to skip
	}{
		// Results of plain mechanisms.
		{"ip4 pass", "v=spf1 ip4:192.0.2.0/24 -all", "192.0.2.1", "", "", "pass", "ip4:192.0.2.0/24"},
		{"ip4 fail", "v=spf1 ip4:192.0.2.0/24 -all", "198.51.100.1", "", "", "fail", "-all"},
		{"softfail", "v=spf1 ip4:192.0.2.0/24 ~all", "198.51.100.1", "", "", "softfail", ""},
		{"neutral by ?all", "v=spf1 ip4:192.0.2.0/24 ?all", "198.51.100.1", "", "", "neutral", ""},
		{"neutral by default", "v=spf1 ip4:192.0.2.0/24", "198.51.100.1", "", "", "neutral", "no mechanism matched"},
		{"qualifier on a match", "v=spf1 -ip4:192.0.2.1 +all", "192.0.2.1", "", "", "fail", ""},
		{"case-insensitive", "V=SPF1 IP4:192.0.2.1 -ALL", "192.0.2.1", "", "", "pass", ""},
		{"ip6 pass", "v=spf1 ip6:2001:db8::/32 -all", "2001:db8::5", "", "", "pass", ""},
		{"ip6 does not match IPv4", "v=spf1 ip6:::/0 -all", "192.0.2.1", "", "", "fail", ""},
		{"ip4 does not match IPv6", "v=spf1 ip4:0.0.0.0/0 -all", "2001:db8::5", "", "", "fail", ""},
		{"IPv4-mapped client is IPv4", "v=spf1 ip4:192.0.2.1 -all", "::ffff:192.0.2.1", "", "", "pass", ""},
		{"a of the domain", "", "192.0.2.30", "user@self.example", "", "pass", "matched a of self.example"},
		{"a:host", "v=spf1 a:mail.example.net -all", "192.0.2.10", "", "", "pass", ""},
		{"a:host IPv6", "v=spf1 a:mail.example.net -all", "2001:db8::10", "", "", "pass", ""},
		{"a/cidr", "v=spf1 a:mail.example.net/24 -all", "192.0.2.200", "", "", "pass", ""},
		{"a//cidr6", "v=spf1 a:mail.example.net//64 -all", "2001:db8::ffff", "", "", "pass", ""},
		{"a no match", "v=spf1 a:mail.example.net -all", "192.0.2.11", "", "", "fail", ""},
		{"mx", "v=spf1 mx:example.net -all", "192.0.2.21", "", "", "pass", ""},
		{"mx IPv6", "v=spf1 mx:example.net -all", "2001:db8::21", "", "", "pass", ""},
		{"mx of the domain", "", "192.0.2.20", "user@self.example", "", "pass", "matched mx of self.example"},
		{"mx no match", "v=spf1 mx:example.net -all", "192.0.2.30", "", "", "fail", ""},
		{"ptr validated", "v=spf1 ptr:example.net -all", "192.0.2.10", "", "", "pass", ""},
		{"ptr not validated", "v=spf1 ptr:example.net -all", "192.0.2.11", "", "", "fail", ""},
		{"exists with macro", "v=spf1 exists:allowed.%{i}.list.example -all", "192.0.2.50", "", "", "pass", ""},
		{"exists no", "v=spf1 exists:allowed.%{i}.list.example -all", "192.0.2.51", "", "", "fail", ""},
		{"include pass", "v=spf1 include:other.example -all", "198.51.100.7", "", "", "pass", ""},
		{"include softfail does not match", "v=spf1 include:other.example -all", "198.51.100.8", "", "", "fail", ""},
		{"include none is permerror", "v=spf1 include:nospf.example -all", "198.51.100.8", "", "", "permerror", "no SPF record"},
		{"include permerror", "v=spf1 include:broken.example -all", "198.51.100.8", "", "", "permerror", ""},
		{"redirect", "v=spf1 redirect=example.net", "192.0.2.129", "", "", "pass", ""},
		{"redirect fail", "v=spf1 redirect=example.net", "192.0.2.1", "", "", "fail", ""},
		{"redirect to none is permerror", "v=spf1 redirect=nospf.example", "192.0.2.1", "", "", "permerror", ""},
		{"redirect ignored after a match", "v=spf1 ip4:192.0.2.1 redirect=example.net", "192.0.2.1", "", "", "pass", ""},
		{"none: no record", "", "192.0.2.1", "", "", "none", ""},
		{"none: only other TXT", "not spf", "192.0.2.1", "", "", "none", ""},
		{"none: v=spf10", "v=spf10 -all", "192.0.2.1", "", "", "none", ""},
		{"none: domain does not exist", "", "192.0.2.1", "user@nonexistent.example", "", "none", ""},
		{"none: single-label domain", "", "192.0.2.1", "user@localhost", "", "none", ""},

		// permerror.
		{"unknown mechanism", "v=spf1 frob -all", "192.0.2.1", "", "", "permerror", "unknown mechanism"},
		{"bad ip4", "v=spf1 ip4:192.0.2.300 -all", "192.0.2.1", "", "", "permerror", ""},
		{"bad cidr", "v=spf1 ip4:192.0.2.0/33 -all", "192.0.2.1", "", "", "permerror", ""},
		{"two redirects", "v=spf1 redirect=a.example redirect=b.example", "192.0.2.1", "", "", "permerror", "second redirect"},
		{"bad macro", "v=spf1 exists:%{q}.example -all", "192.0.2.1", "", "", "permerror", "macro"},
		{"domain without top label", "v=spf1 a:localhost -all", "192.0.2.1", "", "", "permerror", "top label"},
		{"include loop hits the lookup limit", "v=spf1 include:test.example -all", "192.0.2.1", "", "", "permerror", "more than 10"},
		{"eleven lookups", "v=spf1 a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net -all", "198.51.100.1", "", "", "permerror", "more than 10"},
		{"ten lookups are fine", "v=spf1 a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net -all", "198.51.100.1", "", "", "fail", ""},
		{"match before the limit", "v=spf1 ip4:198.51.100.1 a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net a:mail.example.net -all", "198.51.100.1", "", "", "pass", ""},
		{"ip4 does not count", "v=spf1 ip4:1.1.1.1 ip4:1.1.1.2 ip4:1.1.1.3 ip4:1.1.1.4 ip4:1.1.1.5 ip4:1.1.1.6 ip4:1.1.1.7 ip4:1.1.1.8 ip4:1.1.1.9 ip4:1.1.1.10 ip4:1.1.1.11 ip4:1.1.1.12 -all", "198.51.100.1", "", "", "fail", ""},
		{"two void lookups are fine", "v=spf1 a:void1.example a:void2.example -all", "192.0.2.1", "", "", "fail", ""},
		{"third void lookup", "v=spf1 a:void1.example a:void2.example exists:void3.example -all", "192.0.2.1", "", "", "permerror", "void"},
		{"NODATA counts as void", "v=spf1 mx:mail.example.net mx:mx1.example.net a:nospf.example -all", "192.0.2.1", "", "", "permerror", "void"},

		// temperror.
		{"timeout in a", "v=spf1 a:timeout.example -all", "192.0.2.1", "", "", "temperror", ""},
		{"SERVFAIL in mx", "v=spf1 mx:servfail.example -all", "192.0.2.1", "", "", "temperror", ""},
		{"timeout in include", "v=spf1 include:timeout.example -all", "192.0.2.1", "", "", "temperror", ""},
		{"timeout in exists", "v=spf1 exists:timeout.example -all", "192.0.2.1", "", "", "temperror", ""},
		{"SERVFAIL in ptr is no match", "v=spf1 ptr:servfail.example ip4:192.0.2.1 -all", "192.0.2.1", "", "", "pass", ""},
		{"timeout of the record itself", "", "192.0.2.1", "user@timeout.example", "", "temperror", ""},
		{"timeout after a match does not matter", "v=spf1 ip4:192.0.2.1 a:timeout.example -all", "192.0.2.1", "", "", "pass", ""},

		// HELO identity for the null sender.
		{"null sender checks HELO", "", "192.0.2.10", "<>", "mail.example.net", "pass", "matched a of mail.example.net"},
		{"null sender HELO fail", "", "192.0.2.99", "<>", "mail.example.net", "fail", ""},
		{"null sender HELO pass", "", "192.0.2.1", "<>", "test.example", "pass", ""},
		{"macros for the null sender", "", "192.0.2.1", "<>", "helo.example", "pass", ""},
	}
	srv := dnstest.Start(t, spfZone)
	srv.Fail("timeout.example", 0, dnstest.Timeout)
	srv.Fail("servfail.example", 0, dnstest.ServFail)
	srv.Set(`mail.example.net. IN TXT "v=spf1 a -all"`)
	srv.Set(`helo.example. IN TXT "v=spf1 exists:%{l}.%{o}.%{h}.check.example -all"`,
		`postmaster.helo.example.helo.example.check.example. IN A 127.0.0.2`)

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Each case has its own domain, so cases can run together.
			domain := strings.NewReplacer(" ", "-", ":", "", "/", "", "=", "", ",", "").Replace(tc.name) + ".test.example"
			record := strings.ReplaceAll(tc.record, "include:test.example", "include:"+domain)
			if tc.record != "" {
				srv.Set(domain + `. IN TXT "` + record + `"`)
			}
			if tc.helo == "test.example" {
				tc.helo = domain
				srv.Set(domain + `. IN TXT "v=spf1 ip4:192.0.2.1 -all"`)
			}
			from := tc.mailFrom
			switch from {
			case "":
				from = "user@" + domain
			case "<>":
				from = ""
			}
			helo := tc.helo
			if helo == "" {
				helo = "mail.example.net"
			}
			res := mailauth.CheckSPF(t.Context(), spfResolver(t, srv), mailauth.SPFInput{
				IP: netip.MustParseAddr(tc.ip), HELO: helo, MailFrom: from,
			})
			if string(res.Result) != tc.want {
				t.Fatalf("result %s (%s), want %s", res.Result, res.Reason, tc.want)
			}
			if !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("reason %q does not say %q", res.Reason, tc.reason)
			}
			if from == "" {
				if res.Identity != "helo" || res.Domain != strings.ToLower(helo) || res.Sender != "postmaster@"+helo {
					t.Errorf("null sender: identity %q domain %q sender %q", res.Identity, res.Domain, res.Sender)
				}
			} else if res.Identity != "mailfrom" {
				t.Errorf("identity %q", res.Identity)
			}
		})
	}
}

func TestSPFExplanation(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, spfZone)
	srv.Set(`e.example. IN TXT "v=spf1 -all exp=exp.example"`,
		`bad.example. IN TXT "v=spf1 -all exp=nothere.example"`,
		`crlf.example. IN TXT "v=spf1 -all exp=crlfexp.example"`,
		`crlfexp.example. IN TXT "line\013\010Injected: header"`)
	r := spfResolver(t, srv)
	for _, tc := range []struct{ domain, want string }{
		{"e.example", "192.0.2.1 is not one of e.example's designated mail servers"},
		{"bad.example", "SPF policy of bad.example does not permit this sender"},
		{"crlf.example", "SPF policy of crlf.example does not permit this sender"},
	} {
		res := mailauth.CheckSPF(t.Context(), r, mailauth.SPFInput{IP: netip.MustParseAddr("192.0.2.1"), HELO: "h.example", MailFrom: "u@" + tc.domain})
		if res.Result != "fail" || res.Explanation != tc.want {
			t.Errorf("%s: %s %q, want fail %q", tc.domain, res.Result, res.Explanation, tc.want)
		}
	}
}

func TestSPFQueryCount(t *testing.T) {
	t.Parallel()
	// A record that includes a chain of 10 includes: each costs one
	// lookup term; the server sees exactly the TXT queries, no more.
	srv := dnstest.Start(t, "")
	for i := range 10 {
		srv.Add(dnsName(i) + ` IN TXT "v=spf1 include:` + dnsName(i+1) + ` -all"`)
	}
	srv.Add(dnsName(10) + ` IN TXT "v=spf1 ip4:192.0.2.1 -all"`)
	r := spfResolver(t, srv)
	res := mailauth.CheckSPF(t.Context(), r, mailauth.SPFInput{IP: netip.MustParseAddr("192.0.2.1"), HELO: "h.example", MailFrom: "u@" + dnsName(0)})
	if res.Result != "pass" {
		t.Fatalf("10 includes: %s (%s)", res.Result, res.Reason)
	}
	if n := len(srv.QueryLog()); n != 11 {
		t.Errorf("%d queries, want 11", n)
	}
	srv.Set(dnsName(10) + ` IN TXT "v=spf1 include:` + dnsName(11) + ` -all"`)
	srv.Add(dnsName(11) + ` IN TXT "v=spf1 ip4:192.0.2.1 -all"`)
	r = spfResolver(t, srv)
	if res := mailauth.CheckSPF(t.Context(), r, mailauth.SPFInput{IP: netip.MustParseAddr("192.0.2.1"), HELO: "h.example", MailFrom: "u@" + dnsName(0)}); res.Result != "permerror" {
		t.Fatalf("11 includes: %s (%s)", res.Result, res.Reason)
	}
	if n := srv.Queries(dnsName(11), dns.TypeTXT); n != 0 {
		t.Errorf("the 11th include was looked up")
	}
}

func dnsName(i int) string { return "n" + string(rune('a'+i)) + ".chain.example." }

func TestParseSPF(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string // canonical String(), or "" for a syntax error
	}{
		{"v=spf1", "v=spf1"},
		{"v=spf1 ", "v=spf1"},
		{"v=spf1  +a  -mx ~ptr ?all", "v=spf1 a -mx ~ptr ?all"},
		{"V=SPF1 A:Example.COM/24//64 MX/30", "v=spf1 a:Example.COM/24//64 mx/30"},
		{"v=spf1 ip4:192.0.2.1/24 ip6:2001:DB8::1/48 ip4:192.0.2.1", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/48 ip4:192.0.2.1"},
		{"v=spf1 include:_spf.example.com exists:%{ir}.%{l1r+-}._spf.%{d} -all", "v=spf1 include:_spf.example.com exists:%{ir}.%{l1r+-}._spf.%{d} -all"},
		{"v=spf1 redirect=_spf.example.com exp=explain.%{d} foo=bar", "v=spf1 redirect=_spf.example.com exp=explain.%{d} foo=bar"},
		{"v=spf1 a:%{d}", "v=spf1 a:%{d}"},
		{"v=spf1 a:foo.example.", "v=spf1 a:foo.example."},
		{"v=spf1 a:foo.123-4", "v=spf1 a:foo.123-4"},
		{"v=spf1 ptr:%%", "v=spf1 ptr:%%"},
		{"v=spf1 x-unknown.mod_1=%{s}", "v=spf1 x-unknown.mod_1=%{s}"},
		{"v=spf1 -all moo=", "v=spf1 -all moo="},
		// Errors.
		{"v=spf1 a:foo", ""},
		{"v=spf1 a:foo.123", ""},
		{"v=spf1 a:foo.-bar", ""},
		{"v=spf1 all:foo.example", ""},
		{"v=spf1 include", ""},
		{"v=spf1 include:", ""},
		{"v=spf1 exists", ""},
		{"v=spf1 ip4", ""},
		{"v=spf1 ip4:192.0.2.1/032", ""},
		{"v=spf1 ip4:2001:db8::1", ""},
		{"v=spf1 ip6:192.0.2.1", ""},
		{"v=spf1 ip6:fe80::1%eth0", ""},
		{"v=spf1 ip6:::1/129", ""},
		{"v=spf1 a/33", ""},
		{"v=spf1 a//129", ""},
		{"v=spf1 a:", ""},
		{"v=spf1 a-all", ""},
		{"v=spf1 mx:example.com:80", ""},
		{"v=spf1 exists:%{c}.example.com", ""},
		{"v=spf1 exists:%{d0}.example.com", ""},
		{"v=spf1 exists:%{x}.example.com", ""},
		{"v=spf1 exists:%{d.example.com", ""},
		{"v=spf1 exists:%d.example.com", ""},
		{"v=spf1 exists:100%.example.com", ""},
		{"v=spf1 foo=%{q}", ""},
		{"v=spf1 redirect=", ""},
		{"v=spf1 exp=a.example exp=b.example", ""},
		{"v=spf1 a:exa mple.com", ""},
		{"v=spf1 a:ex\u00e4mple.com", ""},
		{"v=spf1 1foo=bar", ""},
		{"v=spf", ""},
		{"v=spf1-all", ""},
		{"spf1 -all", ""},
	}
	for _, tc := range tests {
		rec, err := mailauth.ParseSPF(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%q: accepted as %q", tc.in, rec)
		case tc.want != "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.want != "" && rec.String() != tc.want:
			t.Errorf("%q: got %q, want %q", tc.in, rec, tc.want)
		}
	}
}

// FuzzParseSPF: no panic; what parses prints canonically and that text
// parses to the same record (round trip).
func FuzzParseSPF(f *testing.F) {
	for _, s := range []string{
		"v=spf1 -all",
		"v=spf1 a mx ptr ip4:192.0.2.0/24 ip6:2001:db8::/32 include:_spf.example.com ~all",
		"v=spf1 a:%{d}/24//64 exists:%{ir}.%{l1r+-}._spf.%{d} redirect=%{o} exp=%{H}.x.example x=%-%_%%",
		"v=spf1 mx:foo.example//0 ?ptr:bar.example.",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := mailauth.ParseSPF(s)
		if err != nil {
			return
		}
		text := rec.String()
		again, err := mailauth.ParseSPF(text)
		if err != nil {
			t.Fatalf("%q → %q does not parse: %v", s, text, err)
		}
		if again.String() != text {
			t.Fatalf("%q → %q → %q", s, text, again.String())
		}
	})
}
