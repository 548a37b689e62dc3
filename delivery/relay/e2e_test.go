package relay_test

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postyard-mail/postyard/internal/dkimpytest"
	"github.com/postyard-mail/postyard/internal/dnstest"
	"github.com/postyard-mail/postyard/internal/testenv"
)

// End-to-end tests of submission, the queue and the relay: the real binary
// (internal/testenv), a test DNS server with two MX hosts for remote.test on
// 127.0.0.2 (preference 10) and 127.0.0.3 (20), go-smtp receivers as those
// MX hosts, and delivery.remote_port set to their common port.

// e2e is one running server with its DNS and remote MX hosts.
type e2e struct {
	env  *testenv.Env
	dns  *dnstest.Server
	mx1  *receiver // nil when the preferred MX is down
	mx2  *receiver
	port int
}

const (
	alicePW = "alice secret"
	bobPW   = "bob secret"
	carolPW = "carol secret"
)

func startE2E(t *testing.T, mx1Up bool, config map[string]any) *e2e {
	t.Helper()
	l2, l3, port := listenPair(t)
	e := &e2e{port: port, dns: dnstest.Start(t, zone)}
	if mx1Up {
		e.mx1 = startReceiver(t, l2)
	} else {
		l2.Close() // connections to the preferred MX are refused
	}
	e.mx2 = startReceiver(t, l3)
	cfg := map[string]any{
		"delivery.remote_port": port,
		"delivery.retry":       []string{"1s"},
		// The limit test sends 5 messages as carol; others stay below.
		"submission.max_messages_per_hour": 5,
	}
	for k, v := range config {
		cfg[k] = v
	}
	e.env = testenv.Start(t, testenv.Options{DNS: e.dns, Config: cfg})
	e.env.AddUser(t, "alice@example.test", alicePW)
	e.env.AddUser(t, "bob@example.test", bobPW)
	e.env.AddUser(t, "carol@example.test", carolPW)
	return e
}

// dial logs in on the submission port (loopback: no TLS needed).
func (e *e2e) dial(t *testing.T, user, pw string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(e.env.Submission)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", user, pw)); err != nil {
		t.Fatalf("AUTH as %s: %v", user, err)
	}
	return c
}

// send runs one transaction and returns the SMTP error, if any.
func send(c *smtp.Client, from string, to []string, msg string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, rc := range to {
		if err := c.Rcpt(rc, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	return w.Close()
}

func codeOf(err error) string {
	if se, ok := err.(*smtp.SMTPError); ok {
		return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gotFor returns the messages a receiver got for rcpt.
func gotFor(rv *receiver, rcpt string) []received {
	var out []received
	for _, m := range rv.got() {
		for _, r := range m.rcpts {
			if strings.EqualFold(r, rcpt) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// inbox reads the messages of a user's INBOX from the store on disk.
func (e *e2e) inbox(t *testing.T, user string) []string {
	t.Helper()
	local, domain, _ := strings.Cut(user, "@")
	var out []string
	for _, sub := range []string{"new", "cur"} {
		names, _ := filepath.Glob(filepath.Join(e.env.DataDir, "mail", domain, local, sub, "*"))
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err == nil {
				out = append(out, string(b))
			}
		}
	}
	return out
}

func (e *e2e) waitDSN(t *testing.T, user, want string) string {
	t.Helper()
	var dsn string
	waitFor(t, 15*time.Second, "a DSN with "+want+" in "+user+"'s INBOX", func() bool {
		for _, m := range e.inbox(t, user) {
			if strings.Contains(m, want) && strings.Contains(m, "report-type=delivery-status") {
				dsn = m
				return true
			}
		}
		return false
	})
	return dsn
}

func TestE2ESubmissionAndRelay(t *testing.T) {
	e := startE2E(t, false, nil)
	// DKIM keys made with the CLI, published in the test DNS.
	for _, k := range []struct{ selector, alg string }{{"default", "rsa2048"}, {"ed", "ed25519"}} {
		stdout, stderr, code := e.env.CLI(t, "dkim", "keygen", "example.test", "--selector", k.selector, "--algorithm", k.alg)
		if code != 0 {
			t.Fatalf("dkim keygen: exit %d: %s", code, stderr)
		}
		e.dns.Add(strings.TrimSpace(stdout))
	}

	t.Run("unauthenticated submission refused", func(t *testing.T) {
		c, err := smtp.Dial(e.env.Submission)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail("alice@example.test", nil); codeOf(err) != "530 5.7.0" {
			t.Fatalf("MAIL without AUTH: %v", err)
		}
		if err := c.Auth(sasl.NewPlainClient("", "alice@example.test", "wrong")); codeOf(err) != "535 5.7.8" {
			t.Fatalf("AUTH with a wrong password: %v", err)
		}
	})

	t.Run("user cannot send as another", func(t *testing.T) {
		c := e.dial(t, "alice@example.test", alicePW)
		if err := c.Mail("bob@example.test", nil); codeOf(err) != "553 5.7.1" {
			t.Fatalf("MAIL FROM bob as alice: %v", err)
		}
		c.Reset()
		err := send(c, "alice@example.test", []string{"x@remote.test"}, "From: Bob <bob@example.test>\r\nSubject: spoof\r\n\r\nhi\r\n")
		if codeOf(err) != "553 5.7.1" {
			t.Fatalf("header From bob as alice: %v", err)
		}
	})

	t.Run("preferred MX down, delivered through the other, DKIM verifies", func(t *testing.T) {
		c := e.dial(t, "alice@example.test", alicePW)
		msg := "From: Alice <alice@example.test>\r\nTo: Dave <dave@remote.test>\r\nSubject: signed\r\n\r\nHello  Dave,\r\n.a dot line\r\n"
		if err := send(c, "alice@example.test", []string{"dave@remote.test"}, msg); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 15*time.Second, "mx2 to get the message", func() bool { return len(gotFor(e.mx2, "dave@remote.test")) == 1 })
		got := gotFor(e.mx2, "dave@remote.test")[0]
		if got.from != "alice@example.test" {
			t.Errorf("envelope sender %q", got.from)
		}
		for _, want := range []string{"\r\nMessage-ID: <", "\r\nDate: ", "with ESMTPA id", "\r\n.a dot line\r\n"} {
			if !strings.Contains(got.data, want) {
				t.Errorf("relayed copy lacks %q:\n%s", want, got.data)
			}
		}
		dkimpytest.Verify(t, e.dns.Addr, got.data, 2)
		if q := e.queueLen(t); q != 0 {
			t.Errorf("%d entries still queued", q)
		}
	})

	t.Run("550 gives a DSN in the sender's INBOX", func(t *testing.T) {
		e.mx2.setReply(func(rcpt string) *smtp.SMTPError {
			if strings.HasPrefix(rcpt, "nobody@") {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		})
		defer e.mx2.setReply(nil)
		c := e.dial(t, "alice@example.test", alicePW)
		if err := send(c, "alice@example.test", []string{"nobody@remote.test"}, "From: alice@example.test\r\nSubject: to nobody\r\n\r\nhi\r\n"); err != nil {
			t.Fatal(err)
		}
		dsn := e.waitDSN(t, "alice@example.test", "Final-Recipient: rfc822; nobody@remote.test")
		for _, want := range []string{"Return-Path: <>", "Status: 5.1.1", "Remote-MTA: dns; mx2.remote.test", "Subject: to nobody"} {
			if !strings.Contains(dsn, want) {
				t.Errorf("DSN lacks %q:\n%s", want, dsn)
			}
		}
	})

	t.Run("null MX gives an immediate DSN", func(t *testing.T) {
		c := e.dial(t, "alice@example.test", alicePW)
		if err := send(c, "alice@example.test", []string{"x@nullmx.test"}, "From: alice@example.test\r\nSubject: to null mx\r\n\r\nhi\r\n"); err != nil {
			t.Fatal(err)
		}
		dsn := e.waitDSN(t, "alice@example.test", "Final-Recipient: rfc822; x@nullmx.test")
		if !strings.Contains(dsn, "Status: 5.1.10") {
			t.Errorf("DSN:\n%s", dsn)
		}
	})

	t.Run("sending limit", func(t *testing.T) {
		c := e.dial(t, "carol@example.test", carolPW)
		for i := range 5 {
			if err := send(c, "carol@example.test", []string{"bob@example.test"}, "From: carol@example.test\r\n\r\nmessage "+strconv.Itoa(i)+"\r\n"); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		if err := c.Mail("carol@example.test", nil); codeOf(err) != "450 4.7.1" {
			t.Fatalf("sixth message in the hour: %v", err)
		}
		if n := len(e.inbox(t, "bob@example.test")); n != 5 {
			t.Errorf("bob has %d messages, want 5", n)
		}
	})

	t.Run("implicit TLS submission", func(t *testing.T) {
		c, err := smtp.DialTLS(e.env.SubmissionTLS, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test certificate
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Auth(sasl.NewPlainClient("", "bob@example.test", bobPW)); err != nil {
			t.Fatal(err)
		}
		if err := send(c, "bob@example.test", []string{"erin@remote.test"}, "From: bob@example.test\r\nSubject: over TLS\r\n\r\nhi\r\n"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 15*time.Second, "mx2 to get the message", func() bool { return len(gotFor(e.mx2, "erin@remote.test")) == 1 })
		if got := gotFor(e.mx2, "erin@remote.test")[0].data; !strings.Contains(got, "with ESMTPSA id") {
			t.Errorf("Received of the TLS submission:\n%s", got)
		}
	})

	t.Run("alias forwarding outside on the MX", func(t *testing.T) {
		if _, stderr, code := e.env.CLI(t, "alias", "add", "fwd@example.test", "frank@remote.test", "bob@example.test"); code != 0 {
			t.Fatalf("alias add: %s", stderr)
		}
		c, err := smtp.Dial(e.env.SMTP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := send(c, "someone@sender.test", []string{"fwd@example.test"}, "From: someone@sender.test\r\nSubject: forwarded\r\n\r\nhi\r\n"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 15*time.Second, "mx2 to get the forwarded copy", func() bool { return len(gotFor(e.mx2, "frank@remote.test")) == 1 })
		if got := gotFor(e.mx2, "frank@remote.test")[0]; got.from != "someone@sender.test" {
			t.Errorf("forwarded with envelope sender %q, want the original", got.from)
		}
		if err := send(c, "someone@sender.test", []string{"x@remote.test"}, "Subject: relay?\r\n\r\nhi\r\n"); codeOf(err) != "554 5.7.1" {
			t.Errorf("MX relays for an outsider: %v", err)
		}
	})
}

func (e *e2e) queueLen(t *testing.T) int {
	t.Helper()
	_, stderr, code := e.env.CLI(t, "queue", "list")
	if code != 0 {
		t.Fatalf("queue list: %s", stderr)
	}
	var n int
	fmt.Sscanf(stderr, "%d message", &n)
	return n
}

// TestE2EKillDuringRelay: messages accepted by submission survive a SIGKILL
// of the server in the middle of relaying them to slow MX hosts; after a
// restart every one arrives. Duplicates can only be messages whose data the
// remote had taken when the kill came, before our bookkeeping saw the 250:
// at most one per delivery in flight (concurrency_per_domain).
func TestE2EKillDuringRelay(t *testing.T) {
	const (
		n           = 60
		concurrency = 4
	)
	e := startE2E(t, true, map[string]any{
		"delivery.concurrency_per_domain":  concurrency,
		"submission.max_messages_per_hour": 1000,
	})
	for _, rv := range []*receiver{e.mx1, e.mx2} {
		rv.mu.Lock()
		rv.dataDelay = 40 * time.Millisecond
		rv.mu.Unlock()
	}
	c := e.dial(t, "alice@example.test", alicePW)
	for i := range n {
		msg := fmt.Sprintf("From: alice@example.test\r\nSubject: crash %d\r\nX-Seq: %d\r\n\r\nbody %d\r\n", i, i, i)
		if err := send(c, "alice@example.test", []string{fmt.Sprintf("r%d@remote.test", i)}, msg); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	c.Close()
	total := func() int { return len(e.mx1.got()) + len(e.mx2.got()) }
	waitFor(t, 20*time.Second, "the relay to be under way", func() bool { return total() >= 8 })
	e.env.Kill()
	before := total()
	if before >= n {
		t.Fatalf("all %d delivered before the kill; the test proves nothing", n)
	}
	e.env.Restart(t)
	seen := func() map[int]int {
		m := map[int]int{}
		for _, rv := range []*receiver{e.mx1, e.mx2} {
			for _, msg := range rv.got() {
				var seq int
				if i := strings.Index(msg.data, "\r\nX-Seq: "); i >= 0 {
					fmt.Sscanf(msg.data[i+len("\r\nX-Seq: "):], "%d", &seq)
					m[seq]++
				}
			}
		}
		return m
	}
	waitFor(t, 30*time.Second, "every message to arrive after the restart", func() bool { return len(seen()) == n })
	time.Sleep(300 * time.Millisecond) // let stragglers land before counting
	dups := 0
	for seq, k := range seen() {
		if k > 1 {
			dups += k - 1
			t.Logf("message %d arrived %d times", seq, k)
		}
	}
	t.Logf("%d of %d delivered before the kill, %d duplicates after the restart", before, n, dups)
	if dups > concurrency {
		t.Errorf("%d duplicates, more than the %d deliveries that can be in flight", dups, concurrency)
	}
	if q := e.queueLen(t); q != 0 {
		t.Errorf("%d entries still queued", q)
	}
	if strings.Count(e.env.Logs(), "postyard started") != 2 {
		t.Error("the server did not restart")
	}
}
