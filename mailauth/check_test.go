package mailauth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/postyard-mail/postyard/dnsmx"
	"github.com/postyard-mail/postyard/internal/dnstest"
	"github.com/postyard-mail/postyard/mailauth"
)

const checkZone = `
example.org.              IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.example.org.       IN TXT "v=DMARC1; p=reject"
quarantine.example.       IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.quarantine.example. IN TXT "v=DMARC1; p=quarantine"
monitor.example.          IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.monitor.example.   IN TXT "v=DMARC1; p=none"
nodmarc.example.          IN TXT "v=spf1 ip4:192.0.2.1 -all"
slowspf.example.          IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.slowspf.example.   IN TXT "v=DMARC1; p=reject"
slowdmarc.example.        IN TXT "v=spf1 ip4:192.0.2.1 -all"
mail.example.org.         IN TXT "v=spf1 ip4:192.0.2.1 -all"
`

func message(from string, extra ...string) string {
	return strings.Join(extra, "") +
		"From: " + from + "\r\n" +
		"To: bob@example.com\r\n" +
		"Subject: test\r\n" +
		"\r\n" +
		"Hello.\r\n"
}

func newChecker(t testing.TB, zone string, policy mailauth.Policy) (*mailauth.Checker, *dnstest.Server) {
	t.Helper()
	srv := dnstest.Start(t, zone)
	r, err := dnsmx.New(dnsmx.Options{Upstream: srv.Addr, Timeout: 200 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return mailauth.New(mailauth.Options{Hostname: "mx.example.com", Resolver: r, Policy: policy}), srv
}

func TestCheck(t *testing.T) {
	t.Parallel()
	c, srv := newChecker(t, checkZone, mailauth.Policy{})
	srv.Fail("slowspf.example", 0, dnstest.Timeout)
	srv.Fail("_dmarc.slowdmarc.example", 0, dnstest.Timeout)
	rk, _ := testKeys()
	srv.Add(txtRecord("sel._domainkey.example.org.", dkimTXT(t, rk)))

	tests := []struct {
		name     string
		ip       string
		mailFrom string
		msg      string
		spf      string
		dmarc    string
		action   mailauth.Action
		header   []string // substrings of the header field
	}{
		{"aligned SPF pass", "192.0.2.1", "alice@example.org", message("alice@example.org"), "pass", "pass", mailauth.Accept,
			[]string{"Authentication-Results: mx.example.com;\r\n\tspf=pass smtp.mailfrom=alice@example.org;\r\n\tdkim=none;\r\n\tdmarc=pass reason=\"p=reject\" header.from=example.org\r\n"}},
		{"spoofed From, p=reject", "198.51.100.1", "alice@example.org", message("alice@example.org"), "fail", "fail", mailauth.Reject,
			[]string{"spf=fail reason=\"matched -all of example.org\"", "dmarc=fail reason=\"p=reject dis=reject\""}},
		{"spoofed From, p=quarantine", "198.51.100.1", "x@quarantine.example", message("x@quarantine.example"), "fail", "fail", mailauth.Quarantine, nil},
		{"spoofed From, p=none", "198.51.100.1", "x@monitor.example", message("x@monitor.example"), "fail", "fail", mailauth.Accept, nil},
		{"no DMARC record", "198.51.100.1", "x@nodmarc.example", message("x@nodmarc.example"), "fail", "none", mailauth.Accept, []string{"dmarc=none"}},
		{"SPF of another domain does not align", "192.0.2.1", "bounce@nodmarc.example", message("alice@example.org"), "pass", "fail", mailauth.Reject, nil},
		{"DKIM aligns where SPF fails", "198.51.100.1", "alice@example.org",
			goSign(t, message("alice@example.org"), "example.org", "sel", rk), "fail", "pass", mailauth.Accept,
			[]string{"dkim=pass header.d=example.org header.i=@example.org"}},
		{"SPF timeout could pass: 451", "198.51.100.1", "x@slowspf.example", message("x@slowspf.example"), "temperror", "fail", mailauth.TempFail, []string{"spf=temperror"}},
		{"DMARC timeout: 451", "192.0.2.1", "x@slowdmarc.example", message("x@slowdmarc.example"), "pass", "temperror", mailauth.TempFail, []string{"dmarc=temperror"}},
		{"null sender: HELO identity aligns", "192.0.2.1", "", message("alice@example.org"), "pass", "pass", mailauth.Accept,
			[]string{"spf=pass smtp.helo=mail.example.org"}},
		{"two From fields", "192.0.2.1", "alice@example.org", message("alice@example.org", "From: bob@example.org\r\n"), "pass", "permerror", mailauth.Reject, nil},
		{"no From field", "192.0.2.1", "alice@example.org", "Subject: x\r\n\r\nbody\r\n", "pass", "none", mailauth.Accept, nil},
		{"forged header is not trusted", "198.51.100.1", "alice@example.org",
			message("alice@example.org", "Authentication-Results: mx.example.com; dmarc=pass header.from=example.org\r\n"), "fail", "fail", mailauth.Reject, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.Check(t.Context(), mailauth.Input{
				ClientIP: netip.MustParseAddr(tc.ip), HELO: "mail.example.org", MailFrom: tc.mailFrom,
				Message: strings.NewReader(tc.msg),
			})
			if err != nil {
				t.Fatal(err)
			}
			if string(res.SPF.Result) != tc.spf || string(res.DMARC.Result) != tc.dmarc || res.Verdict.Action != tc.action {
				t.Fatalf("spf=%s dmarc=%s (%s) verdict=%v (%s); want spf=%s dmarc=%s verdict=%v",
					res.SPF.Result, res.DMARC.Result, res.DMARC.Reason, res.Verdict.Action, res.Verdict.Reason, tc.spf, tc.dmarc, tc.action)
			}
			h := res.HeaderField()
			for _, want := range tc.header {
				if !strings.Contains(h, want) {
					t.Errorf("header field\n%s\ndoes not contain\n%s", h, want)
				}
			}
			// The field parses back (go-msgauth/authres) to the same results.
			name, value, ok := strings.Cut(strings.TrimSuffix(h, "\r\n"), ":")
			if !ok || name != "Authentication-Results" {
				t.Fatalf("bad field %q", h)
			}
			id, parsed, err := authres.Parse(strings.NewReplacer("\r\n", "").Replace(value))
			if err != nil || id != "mx.example.com" || len(parsed) != len(res.AuthResults()) {
				t.Errorf("parse back: id %q, %d results, %v", id, len(parsed), err)
			}
		})
	}
}

// TestCheckOwnResults: Check counts the incoming Authentication-Results
// fields that claim our authserv-id, so the caller knows to Rewrite.
func TestCheckOwnResults(t *testing.T) {
	t.Parallel()
	c, _ := newChecker(t, checkZone, mailauth.Policy{})
	tests := []struct {
		name  string
		extra []string
		want  int
	}{
		{"none", nil, 0},
		{"another host's", []string{"Authentication-Results: upstream.example.net; spf=pass\r\n"}, 0},
		{"ours", []string{"Authentication-Results: mx.example.com; dmarc=pass\r\n"}, 1},
		{"ours, folded, other case, comment first", []string{"authentication-results: (forged)\r\n MX.Example.COM;\r\n\tdkim=pass\r\n"}, 1},
		{"two of ours among others", []string{
			"Authentication-Results: mx.example.com; spf=pass\r\n",
			"Authentication-Results: upstream.example.net; spf=pass\r\n",
			"Authentication-Results: \"mx.example.com\"; dkim=pass\r\n",
		}, 2},
		{"a prefix of ours is not ours", []string{"Authentication-Results: mx.example.com.evil.example; spf=pass\r\n"}, 0},
	}
	for _, tc := range tests {
		res, err := c.Check(t.Context(), mailauth.Input{ClientIP: netip.MustParseAddr("192.0.2.1"), HELO: "h.example",
			MailFrom: "a@example.org", Message: strings.NewReader(message("a@example.org", tc.extra...))})
		if err != nil || res.OwnResults != tc.want {
			t.Errorf("%s: OwnResults %d, want %d (%v)", tc.name, res.OwnResults, tc.want, err)
		}
	}
}

func TestCheckPolicy(t *testing.T) {
	t.Parallel()
	in := func() mailauth.Input {
		return mailauth.Input{ClientIP: netip.MustParseAddr("198.51.100.1"), HELO: "h.example", MailFrom: "x@example.org", Message: strings.NewReader(message("x@example.org"))}
	}
	c, _ := newChecker(t, checkZone, mailauth.Policy{RecordDMARCOnly: true})
	res, err := c.Check(t.Context(), in())
	if err != nil || res.Verdict.Action != mailauth.Accept || res.DMARC.Result != "fail" {
		t.Errorf("record only: %v %v %v", res.Verdict, res.DMARC.Result, err)
	}
	c, _ = newChecker(t, checkZone, mailauth.Policy{RecordDMARCOnly: true, RejectSPFFail: true})
	res, err = c.Check(t.Context(), in())
	if err != nil || res.Verdict.Action != mailauth.Reject || res.Verdict.Code != 550 || res.Verdict.Enhanced != [3]int{5, 7, 23} {
		t.Errorf("SPF fail rejected: %+v %v", res.Verdict, err)
	}
	if !strings.Contains(res.Verdict.Reason, "does not permit") {
		t.Errorf("reason %q lacks the SPF explanation", res.Verdict.Reason)
	}
}

func TestCheckErrors(t *testing.T) {
	t.Parallel()
	c, _ := newChecker(t, checkZone, mailauth.Policy{})
	broken := io.MultiReader(strings.NewReader(message("a@example.org")), iotest.ErrReader(errors.New("disk on fire")))
	_, err := c.Check(t.Context(), mailauth.Input{ClientIP: netip.MustParseAddr("192.0.2.1"), HELO: "h.example", MailFrom: "a@example.org", Message: broken})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("read error: %v", err)
	}
	huge := "X-Big: " + strings.Repeat("x", mailauth.MaxHeaderSize) + "\r\n\r\n"
	_, err = c.Check(t.Context(), mailauth.Input{ClientIP: netip.MustParseAddr("192.0.2.1"), HELO: "h.example", MailFrom: "a@example.org", Message: strings.NewReader(huge)})
	if !errors.Is(err, mailauth.ErrHeaderTooLarge) {
		t.Errorf("huge header: %v", err)
	}
}

func TestRewrite(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("line of the body\r\n", 10000)
	msg := "Received: from a\r\n" +
		"Authentication-Results: mx.example.com; dmarc=pass header.from=example.org\r\n" +
		"Authentication-Results: upstream.example.net; spf=pass\r\n" +
		"DKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=abc\r\n" +
		"From: a@example.org\r\n" +
		"\r\n" + body
	ours := "Authentication-Results: mx.example.com;\r\n\tspf=fail smtp.mailfrom=a@example.org\r\n"
	var out bytes.Buffer
	if err := mailauth.Rewrite(&out, strings.NewReader(msg), "MX.example.com", ours); err != nil {
		t.Fatal(err)
	}
	want := ours +
		"Received: from a\r\n" +
		"Authentication-Results: upstream.example.net; spf=pass\r\n" +
		"DKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=abc\r\n" +
		"From: a@example.org\r\n" +
		"\r\n" + body
	if out.String() != want {
		t.Errorf("got\n%.400s\nwant\n%.400s", out.String(), want)
	}

	out.Reset()
	if err := mailauth.Rewrite(&out, strings.NewReader("Subject: no body"), "mx.example.com"); err != nil || out.String() != "Subject: no body\r\n\r\n" {
		t.Errorf("no body: %q %v", out.String(), err)
	}
}

// ExampleChecker_Check shows the calls the SMTP layer makes at the end of
// DATA: check, act on the verdict, and deliver with our header on top.
func ExampleChecker_Check() {
	srv, err := dnstest.Listen(`
example.org.        IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.example.org. IN TXT "v=DMARC1; p=reject"
`)
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	resolver, err := dnsmx.New(dnsmx.Options{Upstream: srv.Addr})
	if err != nil {
		panic(err)
	}
	checker := mailauth.New(mailauth.Options{Hostname: "mx.example.com", Resolver: resolver})

	msg := "From: alice@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"
	res, err := checker.Check(context.Background(), mailauth.Input{
		ClientIP: netip.MustParseAddr("192.0.2.1"),
		HELO:     "mail.example.org",
		MailFrom: "alice@example.org",
		Message:  strings.NewReader(msg),
	})
	if err != nil {
		panic(err) // the message could not be read: 451
	}
	switch res.Verdict.Action {
	case mailauth.Reject, mailauth.TempFail:
		fmt.Printf("%d %d.%d.%d %s\n", res.Verdict.Code, res.Verdict.Enhanced[0], res.Verdict.Enhanced[1], res.Verdict.Enhanced[2], res.Verdict.Reason)
		return
	case mailauth.Quarantine:
		fmt.Println("deliver to Junk")
	}
	var delivered bytes.Buffer
	if err := mailauth.Rewrite(&delivered, strings.NewReader(msg), "mx.example.com", res.HeaderField()); err != nil {
		panic(err)
	}
	fmt.Print(strings.ReplaceAll(delivered.String(), "\r\n", "\n"))
	// Output:
	// Authentication-Results: mx.example.com;
	// 	spf=pass smtp.mailfrom=alice@example.org;
	// 	dkim=none;
	// 	dmarc=pass reason="p=reject" header.from=example.org
	// From: alice@example.org
	// Subject: hi
	//
	// Hello.
}

func BenchmarkCheck(b *testing.B) {
	rk, _ := testKeys()
	c, srv := newChecker(b, checkZone+`
example.org. IN MX 10 mx.example.org.
mx.example.org. IN A 192.0.2.1
_spf.example.org. IN TXT "v=spf1 mx a:mail.example.org ip4:198.51.100.0/24 -all"
`, mailauth.Policy{})
	srv.Set(`example.org. IN TXT "v=spf1 include:_spf.example.org -all"`)
	srv.Add(txtRecord("sel._domainkey.example.org.", dkimTXT(b, rk)))
	body := strings.Repeat("A body line of a typical length for an email message.\r\n", 100)
	for _, bc := range []struct {
		name string
		msg  string
		dkim int
	}{
		{"unsigned", message("alice@example.org") + body, 0},
		{"dkim-rsa2048", goSign(b, message("alice@example.org")+body, "example.org", "sel", rk), 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := func() mailauth.Input {
				return mailauth.Input{ClientIP: netip.MustParseAddr("198.51.100.7"), HELO: "mail.example.org", MailFrom: "alice@example.org", Message: strings.NewReader(bc.msg)}
			}
			res, err := c.Check(b.Context(), in())
			if err != nil || res.SPF.Result != "pass" || len(res.DKIM) != bc.dkim || bc.dkim > 0 && res.DKIM[0].Result != "pass" || res.DMARC.Result != "pass" {
				b.Fatalf("warm-up: %+v %v", res, err)
			}
			queries := len(srv.QueryLog())
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Check(b.Context(), in()); err != nil {
					b.Fatal(err)
				}
			}
			if n := len(srv.QueryLog()); n != queries {
				b.Fatalf("%d DNS queries during the benchmark: the cache missed", n-queries)
			}
		})
	}
}
