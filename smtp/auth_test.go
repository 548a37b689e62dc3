package smtp_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postyard-mail/postyard/config"
	"github.com/postyard-mail/postyard/dnsmx"
	"github.com/postyard-mail/postyard/internal/dnstest"
	"github.com/postyard-mail/postyard/mailauth"
	"github.com/postyard-mail/postyard/smtp"
)

// authZone publishes sender domains for the inbound checks; the test
// clients connect from 127.0.0.1.
const authZone = `
pass.example.               IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.pass.example.        IN TXT "v=DMARC1; p=reject"
reject.example.             IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.reject.example.      IN TXT "v=DMARC1; p=reject"
quarantine.example.         IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.quarantine.example.  IN TXT "v=DMARC1; p=quarantine"
spffail.example.            IN TXT "v=spf1 ip4:192.0.2.1 -all"
signed.example.             IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.signed.example.      IN TXT "v=DMARC1; p=reject"
slow.example.               IN TXT "v=spf1 ip4:127.0.0.1 -all"
`

// authEnv is a test DNS server, a checker resolving through it, and a key
// published for signed.example (selector "s1").
type authEnv struct {
	dns *dnstest.Server
	key ed25519.PrivateKey
}

func newAuthEnv(t testing.TB) *authEnv {
	t.Helper()
	srv := dnstest.Start(t, authZone)
	srv.Fail("_dmarc.slow.example.", 0, dnstest.Timeout)
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv.Add(`s1._domainkey.signed.example. IN TXT "v=DKIM1; k=ed25519; p=` + base64.StdEncoding.EncodeToString(pub) + `"`)
	return &authEnv{dns: srv, key: key}
}

// checking turns the checks on, with policy p, a DNS timeout of 200 ms per
// query and a check timeout of checkTimeout (0: the default).
func (a *authEnv) checking(t testing.TB, p mailauth.Policy, checkTimeout time.Duration) serverOption {
	t.Helper()
	r, err := dnsmx.New(dnsmx.Options{Upstream: a.dns.Addr, Timeout: 200 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := mailauth.New(mailauth.Options{Hostname: "mx.example.test", Resolver: r, Policy: p})
	return func(o *smtp.Options) { o.Checker, o.CheckTimeout = c, checkTimeout }
}

// sign signs msg for signed.example with go-msgauth.
func (a *authEnv) sign(t testing.TB, msg string) string {
	t.Helper()
	var b bytes.Buffer
	if err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{Domain: "signed.example", Selector: "s1", Signer: a.key,
		HeaderKeys: []string{"From", "To", "Subject"}}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func fromMessage(from, subject string, extra ...string) string {
	return strings.Join(extra, "") + "From: <" + from + ">\r\nTo: alice@example.test\r\nSubject: " + subject + "\r\n\r\nHello.\r\n"
}

// TestAuthChecks: the verdicts of mailauth become replies and folders at
// the end of DATA, and a delivered message carries exactly one
// Authentication-Results field of ours, after the trace fields.
func TestAuthChecks(t *testing.T) {
	t.Parallel()
	a := newAuthEnv(t)
	ts := startServer(t, a.checking(t, mailauth.Policy{}, 0))
	const arStart = "Authentication-Results: mx.example.test;\r\n\tspf="
	tests := []struct {
		name     string
		from     string // MAIL FROM, and the From field's address
		msg      string // default: fromMessage(from, name)
		code     int
		enh      string
		folder   string   // where the copy lands when delivered
		contains []string // in the delivered copy
		lacks    []string
	}{
		{name: "aligned SPF pass", from: "bob@pass.example", code: 250, folder: "INBOX",
			contains: []string{arStart + "pass smtp.mailfrom=bob@pass.example;\r\n\tdkim=none;\r\n\tdmarc=pass reason=\"p=reject\" header.from=pass.example\r\n"}},
		{name: "DMARC p=reject fails", from: "bob@reject.example", code: 550, enh: "5.7.1"},
		{name: "DMARC p=quarantine fails", from: "bob@quarantine.example", code: 250, folder: "Junk",
			contains: []string{arStart + "fail", "dmarc=fail reason=\"p=quarantine dis=quarantine\""}},
		{name: "SPF fail alone is recorded", from: "bob@spffail.example", code: 250, folder: "INBOX",
			contains: []string{arStart + "fail reason=", "dmarc=none"}},
		{name: "DKIM aligned where SPF fails", from: "bob@signed.example",
			msg: a.sign(t, fromMessage("bob@signed.example", "signed")), code: 250, folder: "INBOX",
			contains: []string{arStart + "fail", "dkim=pass header.d=signed.example", "dmarc=pass"}},
		{name: "DKIM broken by a changed body", from: "bob@signed.example",
			msg: strings.Replace(a.sign(t, fromMessage("bob@signed.example", "signed")), "Hello.", "Hello!", 1), code: 550, enh: "5.7.1"},
		{name: "DMARC DNS timeout", from: "bob@slow.example", code: 451, enh: "4.4.3"},
		{name: "forged results removed, others kept", from: "bob@pass.example",
			msg: fromMessage("bob@pass.example", "forged",
				"Authentication-Results: mx.example.test; dmarc=pass header.from=reject.example\r\n",
				"Authentication-Results: upstream.example.net; spf=pass\r\n",
				"Authentication-Results: (comment) MX.EXAMPLE.TEST;\r\n dkim=pass\r\n"),
			code: 250, folder: "INBOX",
			contains: []string{"Authentication-Results: upstream.example.net; spf=pass\r\n", arStart + "pass"},
			lacks:    []string{"dmarc=pass header.from=reject.example", "MX.EXAMPLE.TEST", "(comment)"}},
		{name: "unaligned MAIL FROM", from: "bob@pass.example", msg: fromMessage("ceo@reject.example", "spoof"), code: 550, enh: "5.7.1"},
		// Past the spool's memory limit: checked and rewritten from files.
		{name: "large signed message with a forged result", from: "bob@signed.example",
			msg: a.sign(t, strings.Replace(fromMessage("bob@signed.example", "large",
				"Authentication-Results: mx.example.test; dmarc=pass\r\n"), "Hello.\r\n", strings.Repeat("A line of a large body.\r\n", 25000), 1)),
			code: 250, folder: "INBOX", contains: []string{"dkim=pass header.d=signed.example", "dmarc=pass reason="}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			user := fmt.Sprintf("user%d@example.test", i+1)
			msg := tc.msg
			if msg == "" {
				msg = fromMessage(tc.from, tc.name)
			}
			o := runGoSMTP(t, ts.addr, transaction{from: tc.from, rcpt: user, data: msg})
			if o.dataCode != tc.code || (tc.enh != "" && o.dataEnh != tc.enh) {
				t.Fatalf("end of DATA: %d %s %s, want %d %s", o.dataCode, o.dataEnh, o.dataText, tc.code, tc.enh)
			}
			total := len(ts.store.Messages(user, "INBOX")) + len(ts.store.Messages(user, "Junk"))
			if tc.code != 250 {
				if total != 0 {
					t.Fatalf("%d copies stored after %d", total, tc.code)
				}
				return
			}
			got := ts.store.Messages(user, tc.folder)
			if len(got) != 1 || total != 1 {
				t.Fatalf("%d copies in %s, %d in all; want 1", len(got), tc.folder, total)
			}
			stored := string(got[0].Body)
			hdr, _, _ := strings.Cut(stored, "\r\n\r\n")
			if n := strings.Count(strings.ToLower(hdr), "authentication-results: mx.example.test"); n != 1 {
				t.Errorf("%d Authentication-Results fields of ours, want 1:\n%s", n, hdr)
			}
			if !strings.HasPrefix(stored, "Return-Path: ") || strings.Index(stored, "Received: ") > strings.Index(stored, arStart) {
				t.Errorf("our field is not right after the trace fields:\n%s", hdr)
			}
			if !strings.HasSuffix(stored, strings.SplitN(msg, "\r\n\r\n", 2)[1]) {
				t.Errorf("body changed:\n%s", stored)
			}
			for _, want := range tc.contains {
				if !strings.Contains(stored, want) {
					t.Errorf("delivered copy lacks %q:\n%s", want, hdr)
				}
			}
			for _, bad := range tc.lacks {
				if strings.Contains(stored, bad) {
					t.Errorf("delivered copy still has %q:\n%s", bad, hdr)
				}
			}
		})
	}
}

// TestAuthPolicy: [auth] spf_fail = "reject" refuses an SPF fail with
// 550 5.7.23; dmarc = "record" delivers a DMARC p=reject failure, recorded.
func TestAuthPolicy(t *testing.T) {
	t.Parallel()
	a := newAuthEnv(t)
	ts := startServer(t, a.checking(t, mailauth.Policy{RejectSPFFail: true, RecordDMARCOnly: true}, 0))
	o := runGoSMTP(t, ts.addr, transaction{from: "bob@spffail.example", rcpt: "alice@example.test", data: fromMessage("bob@spffail.example", "x")})
	if o.dataCode != 550 || o.dataEnh != "5.7.23" || !strings.HasPrefix(o.dataText, "SPF: ") {
		t.Errorf("SPF fail: %d %s %s, want 550 5.7.23", o.dataCode, o.dataEnh, o.dataText)
	}
	// Signed, so SPF fails but the DMARC record-only path is what is tested.
	msg := strings.Replace(a.sign(t, fromMessage("bob@signed.example", "y")), "Hello.", "Changed.", 1)
	ts2 := startServer(t, a.checking(t, mailauth.Policy{RecordDMARCOnly: true}, 0))
	o = runGoSMTP(t, ts2.addr, transaction{from: "bob@signed.example", rcpt: "alice@example.test", data: msg})
	if o.dataCode != 250 {
		t.Fatalf("DMARC record only: %d %s %s, want 250", o.dataCode, o.dataEnh, o.dataText)
	}
	got := ts2.store.Messages("alice@example.test", "INBOX")
	if len(got) != 1 || !strings.Contains(string(got[0].Body), "dmarc=fail") {
		t.Errorf("DMARC record only: %d copies in INBOX, want 1 with dmarc=fail", len(got))
	}
}

// TestAuthCheckTimeout: checks that outlast the check timeout give 451,
// not a pass, and the client can go on in the same session.
func TestAuthCheckTimeout(t *testing.T) {
	t.Parallel()
	a := newAuthEnv(t)
	r, err := dnsmx.New(dnsmx.Options{Upstream: a.dns.Addr, Timeout: 10 * time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := mailauth.New(mailauth.Options{Hostname: "mx.example.test", Resolver: r})
	ts := startServer(t, func(o *smtp.Options) { o.Checker, o.CheckTimeout = c, 300*time.Millisecond })
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.test", 250)
	rc.cmd("MAIL FROM:<bob@slow.example>", 250)
	rc.cmd("RCPT TO:<alice@example.test>", 250)
	rc.cmd("DATA", 354)
	began := time.Now()
	rc.send(fromMessage("bob@slow.example", "slow") + ".\r\n")
	if text := rc.expect(451); !strings.Contains(text, "4.4.3") {
		t.Errorf("reply %q, want 4.4.3", text)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("the reply took %v, want about the 300 ms check timeout", d)
	}
	rc.cmd("RSET", 250)
	rc.cmd("MAIL FROM:<bob@pass.example>", 250)
	rc.cmd("RCPT TO:<alice@example.test>", 250)
	rc.cmd("DATA", 354)
	rc.send(fromMessage("bob@pass.example", "fast") + ".\r\n")
	rc.expect(250)
	if n := len(ts.store.Messages("alice@example.test", "INBOX")); n != 1 {
		t.Errorf("%d messages in INBOX, want 1", n)
	}
}

// TestAuthBDAT: the checks run at the end of BDAT ... LAST too.
func TestAuthBDAT(t *testing.T) {
	t.Parallel()
	a := newAuthEnv(t)
	ts := startServer(t, a.checking(t, mailauth.Policy{}, 0))
	for _, tc := range []struct {
		from string
		code int
	}{{"bob@reject.example", 550}, {"bob@pass.example", 250}, {"bob@quarantine.example", 250}} {
		rc := dialRaw(t, ts.addr)
		rc.cmd("EHLO client.test", 250)
		rc.cmd("MAIL FROM:<"+tc.from+">", 250)
		rc.cmd("RCPT TO:<carol@example.test>", 250)
		msg := fromMessage(tc.from, "bdat")
		half := len(msg) / 2
		rc.send("BDAT " + strconv.Itoa(half) + "\r\n" + msg[:half])
		rc.expect(250)
		rc.send("BDAT " + strconv.Itoa(len(msg)-half) + " LAST\r\n" + msg[half:])
		rc.expect(tc.code)
		rc.cmd("QUIT", 221)
	}
	if n, j := len(ts.store.Messages("carol@example.test", "INBOX")), len(ts.store.Messages("carol@example.test", "Junk")); n != 1 || j != 1 {
		t.Errorf("%d in INBOX, %d in Junk; want 1 and 1", n, j)
	}
}

// TestAuthHeaderTooLarge: a header section the checks will not buffer is
// refused with 552 5.3.4.
func TestAuthHeaderTooLarge(t *testing.T) {
	t.Parallel()
	a := newAuthEnv(t)
	ts := startServer(t, a.checking(t, mailauth.Policy{}, 0), func(o *smtp.Options) { o.Config.MaxMessageSize = config.Size(4 << 20) })
	var b strings.Builder
	for b.Len() <= mailauth.MaxHeaderSize {
		b.WriteString("X-Filler: " + strings.Repeat("x", 900) + "\r\n")
	}
	o := runGoSMTP(t, ts.addr, transaction{from: "bob@pass.example", rcpt: "alice@example.test", data: fromMessage("bob@pass.example", "big", b.String())})
	if o.dataCode != 552 || o.dataEnh != "5.3.4" {
		t.Errorf("end of DATA: %d %s %s, want 552 5.3.4", o.dataCode, o.dataEnh, o.dataText)
	}
}

// TestAuthOff: without a Checker nothing is checked or added.
func TestAuthOff(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	o := runGoSMTP(t, ts.addr, transaction{from: "bob@reject.example", rcpt: "alice@example.test", data: fromMessage("bob@reject.example", "x")})
	got := ts.store.Messages("alice@example.test", "INBOX")
	if o.dataCode != 250 || len(got) != 1 || strings.Contains(string(got[0].Body), "Authentication-Results") {
		t.Errorf("%d, %d copies; want 250 and one copy without Authentication-Results", o.dataCode, len(got))
	}
}

// fakeChecker returns a fixed result or error, and records the inputs.
type fakeChecker struct {
	res mailauth.Result
	err error
	mu  sync.Mutex
	got []mailauth.Input
}

func (f *fakeChecker) Check(_ context.Context, in mailauth.Input) (mailauth.Result, error) {
	b, _ := io.ReadAll(in.Message)
	in.Message = bytes.NewReader(b)
	f.mu.Lock()
	f.got = append(f.got, in)
	f.mu.Unlock()
	return f.res, f.err
}

// TestAuthCheckerFaults: a checker that cannot read the message, or that
// recommends a reply of the wrong class, gets 451 4.3.0 and nothing is
// delivered; the checker sees the client's address, HELO, MAIL FROM and the
// message as received.
func TestAuthCheckerFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fc   *fakeChecker
		code int
		enh  string
	}{
		{"read error", &fakeChecker{err: errors.New("disk on fire")}, 451, "4.3.0"},
		{"reject with a 2xx code", &fakeChecker{res: mailauth.Result{Verdict: mailauth.Verdict{Action: mailauth.Reject, Code: 250, Enhanced: [3]int{2, 0, 0}}}}, 451, "4.3.0"},
		{"tempfail with mismatched classes", &fakeChecker{res: mailauth.Result{Verdict: mailauth.Verdict{Action: mailauth.TempFail, Code: 451, Enhanced: [3]int{5, 7, 1}}}}, 451, "4.3.0"},
		{"reject as given", &fakeChecker{res: mailauth.Result{Verdict: mailauth.Verdict{Action: mailauth.Reject, Code: 554, Enhanced: [3]int{5, 7, 1}, Reason: "no"}}}, 554, "5.7.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, func(o *smtp.Options) { o.Checker = tc.fc })
			msg := fromMessage("bob@pass.example", "fault")
			o := runGoSMTP(t, ts.addr, transaction{from: "bob@pass.example", rcpt: "alice@example.test", data: msg})
			if o.dataCode != tc.code || o.dataEnh != tc.enh {
				t.Errorf("end of DATA: %d %s %s, want %d %s", o.dataCode, o.dataEnh, o.dataText, tc.code, tc.enh)
			}
			if n := ts.store.Total(); n != 0 {
				t.Errorf("%d copies delivered", n)
			}
			tc.fc.mu.Lock()
			defer tc.fc.mu.Unlock()
			if len(tc.fc.got) != 1 {
				t.Fatalf("%d checks, want 1", len(tc.fc.got))
			}
			in := tc.fc.got[0]
			b, _ := io.ReadAll(in.Message)
			if in.ClientIP.String() != "127.0.0.1" || in.HELO != "gosmtp.client.test" || in.MailFrom != "bob@pass.example" || string(b) != msg {
				t.Errorf("checker got %v %q %q %q", in.ClientIP, in.HELO, in.MailFrom, b)
			}
		})
	}
}
