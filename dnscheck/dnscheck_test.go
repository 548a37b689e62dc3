package dnscheck_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/dnscheck"
	"github.com/postyard-mail/postyard/dnsmx"
	"github.com/postyard-mail/postyard/internal/dnstest"
)

const ourKey = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="

// goodZone publishes everything right for example.org served by
// mail.example.org.
const goodZone = `
example.org.                     IN MX  10 mail.example.org.
example.org.                     IN TXT "v=spf1 mx a:mail.example.org -all"
mail.example.org.                IN A   192.0.2.25
mail.example.org.                IN AAAA 2001:db8::25
25.2.0.192.in-addr.arpa.         IN PTR mail.example.org.
5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. IN PTR mail.example.org.
default._domainkey.example.org.  IN TXT "v=DKIM1; k=ed25519; " "p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
_dmarc.example.org.              IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.org"
_mta-sts.example.org.            IN TXT "v=STSv1; id=20260101"
_smtp._tls.example.org.          IN TXT "v=TLSRPTv1; rua=mailto:tls@example.org"
`

func run(t *testing.T, srv *dnstest.Server, in dnscheck.Input) ([]dnscheck.Finding, string) {
	t.Helper()
	r, err := dnsmx.New(dnsmx.Options{Upstream: srv.Addr, Timeout: 200 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	fs := dnscheck.Check(t.Context(), r, in)
	var b bytes.Buffer
	if err := dnscheck.Write(&b, fs); err != nil {
		t.Fatal(err)
	}
	return fs, b.String()
}

func input() dnscheck.Input {
	return dnscheck.Input{Domain: "example.org", Hostname: "mail.example.org", Selector: "default",
		Keys:         []dnscheck.DKIMKey{{Selector: "default", Record: ourKey}},
		LocalDomains: []string{"example.net", "Example.ORG."}}
}

func statuses(fs []dnscheck.Finding) string {
	var s []string
	for _, f := range fs {
		s = append(s, f.Check+"="+f.Status.String())
	}
	return strings.Join(s, " ")
}

func TestAllGood(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, goodZone)
	fs, out := run(t, srv, input())
	want := "MX=ok SPF=ok DKIM default=ok DMARC=ok A/AAAA=ok PTR 192.0.2.25=ok PTR 2001:db8::25=ok MTA-STS=ok TLS-RPT=ok"
	if got := statuses(fs); got != want {
		t.Errorf("got  %s\nwant %s\n%s", got, want, out)
	}
	if dnscheck.Failed(fs) != 0 || strings.Contains(out, "fix:") {
		t.Errorf("all good, but:\n%s", out)
	}
}

func TestProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*dnstest.Server)
		in     func(*dnscheck.Input)
		check  string // the finding's Check
		status string
		fix    string // substring of the output
	}{
		{"no MX", func(s *dnstest.Server) { s.Remove("example.org", 15) }, nil,
			"MX", "missing", "example.org. IN MX 10 mail.example.org."},
		{"null MX", func(s *dnstest.Server) { s.Set("example.org. IN MX 0 .") }, nil,
			"MX", "missing", "null MX"},
		{"MX elsewhere", func(s *dnstest.Server) {
			s.Set("example.org. IN MX 10 mx.provider.example.", "mx.provider.example. IN A 198.51.100.1")
		}, nil, "MX", "warn", "not this server"},
		{"MX is another name of ours", func(s *dnstest.Server) {
			s.Set("example.org. IN MX 10 mx.example.org.", "mx.example.org. IN A 192.0.2.25")
		}, nil, "MX", "ok", ""},
		{"no SPF", func(s *dnstest.Server) { s.Set(`example.org. IN TXT "google-site-verification=x"`) }, nil,
			"SPF", "missing", `example.org. IN TXT "v=spf1 a:mail.example.org mx -all"`},
		{"two SPF", func(s *dnstest.Server) { s.Add(`example.org. IN TXT "v=spf1 -all"`) }, nil,
			"SPF", "missing", "2 SPF records"},
		{"SPF syntax error", func(s *dnstest.Server) { s.Set(`example.org. IN TXT "v=spf1 mx -al"`) }, nil,
			"SPF", "missing", "SPF syntax error"},
		{"SPF does not cover us", func(s *dnstest.Server) { s.Set(`example.org. IN TXT "v=spf1 ip4:198.51.100.0/24 -all"`) }, nil,
			"SPF", "missing", "gives fail for 192.0.2.25"},
		{"no DKIM record", func(s *dnstest.Server) { s.Remove("default._domainkey.example.org", 0) }, nil,
			"DKIM default", "missing", `default._domainkey.example.org. IN TXT "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="`},
		{"other DKIM key", func(s *dnstest.Server) {
			s.Set(`default._domainkey.example.org. IN TXT "v=DKIM1; k=ed25519; p=AAAAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="`)
		}, nil, "DKIM default", "missing", "not ours"},
		{"no key of ours", nil, func(in *dnscheck.Input) { in.Keys = nil }, "DKIM default", "missing", "postyard dkim keygen example.org --selector default"},
		{"no DMARC", func(s *dnstest.Server) { s.Remove("_dmarc.example.org", 0) }, nil,
			"DMARC", "missing", `_dmarc.example.org. IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org"`},
		{"DMARC p=none", func(s *dnstest.Server) { s.Set(`_dmarc.example.org. IN TXT "v=DMARC1; p=none"`) }, nil,
			"DMARC", "warn", "only monitors"},
		{"no host address", func(s *dnstest.Server) { s.Remove("mail.example.org", 0) }, nil,
			"A/AAAA", "missing", "mail.example.org. IN A"},
		{"wrong PTR", func(s *dnstest.Server) { s.Set("25.2.0.192.in-addr.arpa. IN PTR host-25.isp.example.") }, nil,
			"PTR 192.0.2.25", "missing", "set its reverse DNS (PTR) to mail.example.org"},
		{"no PTR", func(s *dnstest.Server) { s.Remove("25.2.0.192.in-addr.arpa", 0) }, nil,
			"PTR 192.0.2.25", "missing", "no reverse DNS"},
		{"no MTA-STS", func(s *dnstest.Server) { s.Remove("_mta-sts.example.org", 0) }, nil,
			"MTA-STS", "warn", `_mta-sts.example.org. IN TXT "v=STSv1; id=1"`},
		{"no TLS-RPT", func(s *dnstest.Server) { s.Remove("_smtp._tls.example.org", 0) }, nil,
			"TLS-RPT", "warn", `_smtp._tls.example.org. IN TXT "v=TLSRPTv1; rua=mailto:postmaster@example.org"`},
		{"DNS timeout", func(s *dnstest.Server) { s.Fail("_dmarc.example.org", 0, dnstest.Timeout) }, nil,
			"DMARC", "missing", "try again"},
		{"SPF +all", func(s *dnstest.Server) { s.Set(`example.org. IN TXT "v=spf1 mx +all"`) }, nil,
			"SPF", "missing", "+all lets any host on the internet send as example.org"},
		{"SPF all without qualifier", func(s *dnstest.Server) { s.Set(`example.org. IN TXT "v=spf1 mx all"`) }, nil,
			"SPF", "missing", "not +all"},
		{"SPF ?all", func(s *dnstest.Server) { s.Set(`example.org. IN TXT "v=spf1 mx ?all"`) }, nil,
			"SPF", "warn", "other hosts get neutral"},
		{"SPF without all", func(s *dnstest.Server) { s.Set(`example.org. IN TXT "v=spf1 mx"`) }, nil,
			"SPF", "warn", "end the record with -all"},
		{"SPF ~all", func(s *dnstest.Server) { s.Set(`example.org. IN TXT "v=spf1 mx ~all"`) }, nil,
			"SPF", "ok", ""},
		{"SPF redirect", func(s *dnstest.Server) {
			s.Set(`example.org. IN TXT "v=spf1 redirect=_spf.example.org"`)
			s.Add(`_spf.example.org. IN TXT "v=spf1 a:mail.example.org -all"`)
		}, nil, "SPF", "ok", ""},
		{"DMARC pct=25", func(s *dnstest.Server) { s.Set(`_dmarc.example.org. IN TXT "v=DMARC1; p=reject; pct=25"`) }, nil,
			"DMARC", "warn", "pct=25 applies p=reject to only 25% of failing mail"},
		{"revoked DKIM key", func(s *dnstest.Server) { s.Set(`default._domainkey.example.org. IN TXT "v=DKIM1; k=ed25519; p="`) }, nil,
			"DKIM default", "missing", "revoked"},
		{"private host address", func(s *dnstest.Server) {
			s.Set("mail.example.org. IN A 10.1.2.25")
			s.Add("25.2.1.10.in-addr.arpa. IN PTR mail.example.org.")
		}, nil, "A/AAAA", "warn", "10.1.2.25 cannot be reached from the internet"},
		{"not one of our domains", nil, func(in *dnscheck.Input) { in.LocalDomains = []string{"example.net"} },
			"Domain", "missing", `add "example.org" to domains in the config`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := dnstest.Start(t, goodZone)
			if tc.change != nil {
				tc.change(srv)
			}
			in := input()
			if tc.in != nil {
				tc.in(&in)
			}
			fs, out := run(t, srv, in)
			var found *dnscheck.Finding
			for i := range fs {
				if fs[i].Check == tc.check {
					found = &fs[i]
				} else if fs[i].Status != dnscheck.OK && !(tc.check == "A/AAAA" && strings.HasPrefix(fs[i].Check, "SPF")) {
					t.Errorf("%s is %s too:\n%s", fs[i].Check, fs[i].Status, out)
				}
			}
			if found == nil {
				t.Fatalf("no %s finding:\n%s", tc.check, out)
			}
			if found.Status.String() != tc.status || !strings.Contains(out, tc.fix) {
				t.Errorf("%s: %s, want %s with %q:\n%s", tc.check, found.Status, tc.status, tc.fix, out)
			}
			if want := tc.status == "missing"; (dnscheck.Failed(fs) > 0) != want {
				t.Errorf("Failed = %d", dnscheck.Failed(fs))
			}
		})
	}
}

// TestHostname: a hostname that cannot be public is its own finding,
// with the config change to make.
func TestHostname(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, goodZone)
	for _, host := range []string{"localhost", "mail", "mx.localdomain", "mail.internal"} {
		in := input()
		in.Hostname = host
		fs, out := run(t, srv, in)
		if fs[0].Check != "Hostname" || fs[0].Status != dnscheck.Missing || !strings.Contains(out, `set hostname = "mail.example.org"`) {
			t.Errorf("%s: first finding %s %s:\n%s", host, fs[0].Check, fs[0].Status, out)
		}
	}
	fs, out := run(t, srv, input())
	for _, f := range fs {
		if f.Check == "Hostname" || f.Check == "Domain" {
			t.Errorf("finding %s for a good config:\n%s", f.Check, out)
		}
	}
}

func TestWrite(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	err := dnscheck.Write(&b, []dnscheck.Finding{
		{Check: "MX", Status: dnscheck.OK, Detail: "10 mail.example.org"},
		{Check: "DKIM default", Status: dnscheck.Missing, Detail: "no key", Fix: "line one\nline two"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(
		"MX            ok       10 mail.example.org\n",
		"DKIM default  missing  no key\n",
		"              fix:     line one\n",
		"                       line two\n")
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
