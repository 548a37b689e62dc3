package smtp_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/config"
	"github.com/postyard-mail/postyard/delivery"
	"github.com/postyard-mail/postyard/delivery/deliverytest"
	"github.com/postyard-mail/postyard/delivery/dkimsign"
	"github.com/postyard-mail/postyard/delivery/queue"
	"github.com/postyard-mail/postyard/smtp"
)

// fakeAccounts logs users in with fixed passwords and lets a user send as
// the addresses that resolve to them through fakeDir (own, +tag, aliases).
type fakeAccounts struct {
	dir *fakeDir
	pw  map[string]string
}

func (a *fakeAccounts) Authenticate(login, password string) (string, error) {
	u := strings.ToLower(login)
	if p, ok := a.pw[u]; ok && p == password {
		return u, nil
	}
	return "", accounts.ErrAuthFailed
}

func (a *fakeAccounts) CanSendAs(user, from string) bool {
	res, err := a.dir.Resolve(from)
	if err != nil {
		return false
	}
	for _, l := range res.Local {
		if l == user {
			return true
		}
	}
	return false
}

// fakeClock is the sending limits' clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// subServer is a running submission service with a MemStore and a real
// queue behind a delivery.Router.
type subServer struct {
	addr    string // plain listener (STARTTLS)
	tlsAddr string // implicit TLS
	srv     *smtp.Server
	store   *deliverytest.MemStore
	queue   *queue.Queue
	clock   *fakeClock
	dkimTXT map[string]string // TXT records of the DKIM keys, by name
}

type subOption func(*smtp.SubmissionOptions)

// fakeRemote makes the listener's connections report 192.0.2.10 as the
// client address: a connection from outside, on loopback.
type fakeRemote struct{ net.Listener }

func (l fakeRemote) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 40000}
}

func startSubmission(t testing.TB, outside bool, opts ...subOption) *subServer {
	t.Helper()
	store, local := memLocal(t)
	q := openQueue(t)
	keyDir := t.TempDir()
	txt := map[string]string{}
	for sel, alg := range map[string]string{"rsa": "rsa2048", "ed": "ed25519"} {
		_, name, rec, err := dkimsign.Generate(keyDir, "example.test", sel, alg)
		if err != nil {
			t.Fatal(err)
		}
		txt[name] = rec
	}
	keys, err := dkimsign.Open(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := newFakeDir()
	clock := &fakeClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	o := smtp.SubmissionOptions{
		SMTP:             baseConfig(),
		Submission:       config.Submission{MaxRecipients: 5},
		Security:         config.Security{MaxAuthFailures: 3},
		Hostname:         "mail.example.test",
		Directory:        dir,
		Accounts:         &fakeAccounts{dir: dir, pw: map[string]string{"alice@example.test": "alicepw", "bob@example.test": "bobpw"}},
		Deliverer:        delivery.NewRouter(local, q, nil),
		Signer:           keys,
		TLSConfig:        testTLSConfig(t),
		Logger:           loggerFor(t),
		AuthFailureDelay: time.Millisecond,
		Now:              clock.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	srv, err := smtp.NewSubmission(o)
	if err != nil {
		t.Fatal(err)
	}
	var plain net.Listener
	plain, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rawTLS, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr, tlsAddr := plain.Addr().String(), rawTLS.Addr().String()
	if outside {
		plain, rawTLS = fakeRemote{plain}, fakeRemote{rawTLS}
	}
	implicit := tls.NewListener(rawTLS, o.TLSConfig) // as the server makes them
	serveUntilCleanup(t, srv, plain, implicit)
	return &subServer{addr: addr, tlsAddr: tlsAddr, srv: srv, store: store, queue: q, clock: clock, dkimTXT: txt}
}

func plainAuth(user, pw string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pw))
}

// ehloCaps says EHLO and returns the extension lines.
func (rc *rawClient) ehloCaps() string {
	rc.t.Helper()
	rc.send("EHLO client.test\r\n")
	code, lines, err := rc.readReply()
	if err != nil || code != 250 {
		rc.t.Fatalf("EHLO: %d %v %v", code, lines, err)
	}
	return strings.Join(lines[1:], "\n")
}

// expectEnh reads a reply and checks its code and enhanced code.
func (rc *rawClient) expectEnh(code int, enh string) string {
	rc.t.Helper()
	got := rc.expect(code)
	if !strings.HasPrefix(got, enh+" ") {
		rc.t.Fatalf("reply %d %q, want enhanced code %s", code, got, enh)
	}
	return got
}

func (rc *rawClient) cmdEnh(line string, code int, enh string) string {
	rc.t.Helper()
	rc.send(line + "\r\n")
	return rc.expectEnh(code, enh)
}

func (rc *rawClient) data(msg string, code int, enh string) string {
	rc.t.Helper()
	rc.cmd("DATA", 354)
	rc.send(msg + ".\r\n")
	return rc.expectEnh(code, enh)
}

func TestSubmissionAuthRequired(t *testing.T) {
	ss := startSubmission(t, false)
	rc := dialRaw(t, ss.addr)
	caps := rc.ehloCaps()
	if !strings.Contains(caps, "AUTH PLAIN LOGIN") || !strings.Contains(caps, "STARTTLS") || !strings.Contains(caps, "LIMITS RCPTMAX=5") {
		t.Fatalf("EHLO on loopback:\n%s", caps)
	}
	rc.cmdEnh("MAIL FROM:<alice@example.test>", 530, "5.7.0")
	rc.cmdEnh("RCPT TO:<bob@remote.example>", 502, "5.5.1") // go-smtp's reply
	rc.cmd(plainAuth("alice@example.test", "alicepw"), 235)
	rc.cmd("MAIL FROM:<alice@example.test>", 250)
	rc.cmd("RCPT TO:<bob@remote.example>", 250)
}

func TestSubmissionAuthFailures(t *testing.T) {
	ss := startSubmission(t, false)
	rc := dialRaw(t, ss.addr)
	rc.ehloCaps()
	rc.cmdEnh(plainAuth("alice@example.test", "wrong"), 535, "5.7.8")
	rc.cmdEnh(plainAuth("nobody@example.test", "x"), 535, "5.7.8")
	// PLAIN with another authorization identity is refused.
	rc.cmdEnh("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("bob@example.test\x00alice@example.test\x00alicepw")), 421, "4.7.0")
	rc.expectClosed()

	// A good login after failures works, below the limit.
	rc = dialRaw(t, ss.addr)
	rc.ehloCaps()
	rc.cmdEnh(plainAuth("alice@example.test", "wrong"), 535, "5.7.8")
	rc.cmd(plainAuth("alice@example.test", "alicepw"), 235)
	rc.cmdEnh(plainAuth("alice@example.test", "alicepw"), 503, "5.5.1")
}

func TestSubmissionAuthLogin(t *testing.T) {
	ss := startSubmission(t, false)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	t.Run("challenges", func(t *testing.T) {
		rc := dialRaw(t, ss.addr)
		rc.ehloCaps()
		if got := rc.cmd("AUTH LOGIN", 334); got != b64("Username:") {
			t.Fatalf("first challenge %q", got)
		}
		if got := rc.cmd(b64("alice@example.test"), 334); got != b64("Password:") {
			t.Fatalf("second challenge %q", got)
		}
		rc.cmd(b64("alicepw"), 235)
	})
	t.Run("initial response", func(t *testing.T) {
		rc := dialRaw(t, ss.addr)
		rc.ehloCaps()
		rc.cmd("AUTH LOGIN "+b64("alice@example.test"), 334)
		rc.cmdEnh(b64("bad"), 535, "5.7.8")
	})
	t.Run("cancelled", func(t *testing.T) {
		rc := dialRaw(t, ss.addr)
		rc.ehloCaps()
		rc.cmd("AUTH LOGIN", 334)
		rc.cmd("*", 501)
		rc.cmdEnh("AUTH CRAM-MD5", 504, "5.5.4")
	})
	t.Run("go-smtp client", func(t *testing.T) {
		c, err := gosmtp.Dial(ss.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Auth(sasl.NewLoginClient("bob@example.test", "bobpw")); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSubmissionPlaintextPolicy: from a non-loopback address, AUTH is
// neither offered nor accepted without TLS unless allow_plaintext_auth.
func TestSubmissionPlaintextPolicy(t *testing.T) {
	t.Run("refused in clear", func(t *testing.T) {
		ss := startSubmission(t, true)
		rc := dialRaw(t, ss.addr)
		if caps := rc.ehloCaps(); strings.Contains(caps, "AUTH") {
			t.Fatalf("AUTH offered in clear to an outside client:\n%s", caps)
		}
		rc.cmdEnh(plainAuth("alice@example.test", "alicepw"), 538, "5.7.11")
		rc.cmdEnh("AUTH LOGIN", 538, "5.7.11")
		rc.cmdEnh("MAIL FROM:<alice@example.test>", 530, "5.7.0")
		rc.startTLS()
		rc.send("EHLO client.test\r\n") // startTLS said EHLO already; once more to see the caps
		code, lines, _ := rc.readReply()
		if code != 250 || !strings.Contains(strings.Join(lines, "\n"), "AUTH PLAIN LOGIN") {
			t.Fatalf("after STARTTLS: %d %q", code, lines)
		}
		rc.cmd(plainAuth("alice@example.test", "alicepw"), 235)
	})
	t.Run("allowed by the config", func(t *testing.T) {
		ss := startSubmission(t, true, func(o *smtp.SubmissionOptions) { o.Security.AllowPlaintextAuth = true })
		rc := dialRaw(t, ss.addr)
		if caps := rc.ehloCaps(); !strings.Contains(caps, "AUTH PLAIN LOGIN") {
			t.Fatalf("AUTH not offered with allow_plaintext_auth:\n%s", caps)
		}
		rc.cmd(plainAuth("alice@example.test", "alicepw"), 235)
	})
	t.Run("implicit TLS", func(t *testing.T) {
		ss := startSubmission(t, true)
		rc := dialTLS(t, ss.tlsAddr)
		caps := rc.ehloCaps()
		if !strings.Contains(caps, "AUTH PLAIN LOGIN") || strings.Contains(caps, "STARTTLS") {
			t.Fatalf("EHLO on implicit TLS:\n%s", caps)
		}
		rc.cmd(plainAuth("alice@example.test", "alicepw"), 235)
	})
}

func dialTLS(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, testClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	rc := &rawClient{t: t, c: c, r: bufio.NewReader(c)}
	rc.expect(220)
	return rc
}

func login(t *testing.T, addr, user, pw string) *rawClient {
	t.Helper()
	rc := dialRaw(t, addr)
	rc.ehloCaps()
	rc.cmd(plainAuth(user, pw), 235)
	return rc
}

func TestSubmissionSenderOwnership(t *testing.T) {
	ss := startSubmission(t, false)
	rc := login(t, ss.addr, "alice@example.test", "alicepw")
	tests := []struct {
		from string
		code int
		enh  string
	}{
		{"bob@example.test", 553, "5.7.1"},
		{"", 553, "5.7.1"},
		{"alice@remote.example", 553, "5.7.1"},
		{"forward@example.test", 553, "5.7.1"}, // an alias that is not hers
		{"alice+lists@example.test", 250, "2.0.0"},
		{"team@example.test", 250, "2.0.0"}, // an alias that includes her
		{"Alice@Example.Test", 250, "2.0.0"},
	}
	for _, tt := range tests {
		rc.cmdEnh("MAIL FROM:<"+tt.from+">", tt.code, tt.enh)
		if tt.code == 250 {
			rc.cmd("RSET", 250)
		}
	}
	// The header From is checked as well, at the end of DATA.
	rc.cmd("MAIL FROM:<alice@example.test>", 250)
	rc.cmd("RCPT TO:<carol@example.test>", 250)
	rc.data("From: Bob <bob@example.test>\r\nSubject: x\r\n\r\nhi\r\n", 553, "5.7.1")
	rc.cmd("MAIL FROM:<alice@example.test>", 250)
	rc.cmd("RCPT TO:<carol@example.test>", 250)
	rc.data("From: Alice <alice@example.test>, bob@example.test\r\nSender: alice@example.test\r\n\r\nhi\r\n", 553, "5.7.1")
	rc.cmd("MAIL FROM:<alice@example.test>", 250)
	rc.cmd("RCPT TO:<carol@example.test>", 250)
	rc.data("From: Alice <alice@example.test\r\n\r\nhi\r\n", 550, "5.6.0")
	if n := len(ss.store.Messages("carol@example.test", "INBOX")); n != 0 {
		t.Fatalf("%d messages delivered despite the refusals", n)
	}
	rc.cmd("MAIL FROM:<alice@example.test>", 250)
	rc.cmd("RCPT TO:<carol@example.test>", 250)
	rc.data("From: =?utf-8?q?Al=C3=AFce?= <alice+x@example.test>\r\n\r\nhi\r\n", 250, "2.0.0")
}

func TestSubmissionMessagePrepared(t *testing.T) {
	ss := startSubmission(t, false)
	rc := login(t, ss.addr, "alice@example.test", "alicepw")
	rc.cmd("MAIL FROM:<alice@example.test>", 250)
	rc.cmd("RCPT TO:<carol@example.test>", 250)
	rc.cmd("RCPT TO:<Dave@Remote.Example>", 250)
	rc.cmd("RCPT TO:<team@example.test>", 250)
	reply := rc.data("From: Alice <alice@example.test>\r\nTo: dave@remote.example\r\nSubject: signed\r\n\r\nHello  Dave.\r\n", 250, "2.0.0")
	if !strings.Contains(reply, "delivered as ") || !strings.Contains(reply, "queued as ") {
		t.Fatalf("250 text %q", reply)
	}
	local := ss.store.Messages("carol@example.test", "INBOX")
	if len(local) != 1 || len(ss.store.Messages("bob@example.test", "INBOX")) != 1 {
		t.Fatalf("local copies: carol %d, bob %d", len(local), len(ss.store.Messages("bob@example.test", "INBOX")))
	}
	envs, _ := ss.queue.List()
	if len(envs) != 1 || envs[0].User != "alice@example.test" || envs[0].From != "alice@example.test" ||
		len(envs[0].Recipients) != 1 || envs[0].Recipients[0].Addr != "Dave@Remote.Example" {
		t.Fatalf("queue: %+v", envs)
	}
	f, err := ss.queue.OpenMessage(envs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	queued, _ := io.ReadAll(f)
	f.Close()
	for name, msg := range map[string][]byte{"local": local[0].Body, "queued": queued} {
		s := string(msg)
		for _, want := range []string{"with ESMTPA id ", "\r\nMessage-ID: <", "\r\nDate: ", "\r\nDKIM-Signature: a=rsa-sha256;", "\r\nDKIM-Signature: a=ed25519-sha256;"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s copy lacks %q:\n%s", name, want, s)
			}
		}
		verifs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
			LookupTXT: func(domain string) ([]string, error) { return []string{ss.dkimTXT[domain]}, nil },
		})
		if err != nil || len(verifs) != 2 {
			t.Fatalf("%s copy: %d verifications, %v", name, len(verifs), err)
		}
		for _, v := range verifs {
			if v.Err != nil || v.Domain != "example.test" {
				t.Errorf("%s copy: signature d=%s: %v", name, v.Domain, v.Err)
			}
		}
	}
	// A message with its own Message-ID and Date keeps them, unsigned
	// fields are not added twice.
	rc.cmd("MAIL FROM:<alice@example.test>", 250)
	rc.cmd("RCPT TO:<carol@example.test>", 250)
	rc.data("From: alice@example.test\r\nDate: Fri, 1 May 2026 10:00:00 +0000\r\nMessage-ID: <mine@example.test>\r\n\r\nx\r\n", 250, "2.0.0")
	second := string(ss.store.Messages("carol@example.test", "INBOX")[1].Body)
	if strings.Count(second, "\nMessage-ID:") != 1 || strings.Count(second, "\nDate:") != 1 {
		t.Errorf("fields added although present:\n%s", second)
	}
	// No From at all: the envelope sender is added.
	rc.cmd("MAIL FROM:<alice@example.test>", 250)
	rc.cmd("RCPT TO:<carol@example.test>", 250)
	rc.data("Subject: no from\r\n\r\nx\r\n", 250, "2.0.0")
	if third := string(ss.store.Messages("carol@example.test", "INBOX")[2].Body); !strings.Contains(third, "\r\nFrom: <alice@example.test>\r\n") {
		t.Errorf("no From added:\n%s", third)
	}
}

func TestSubmissionLimits(t *testing.T) {
	ss := startSubmission(t, false, func(o *smtp.SubmissionOptions) {
		o.Submission.MaxMessagesPerHour = 2
		o.Submission.MaxMessagesPerDay = 3
	})
	rc := login(t, ss.addr, "alice@example.test", "alicepw")
	send := func() {
		t.Helper()
		rc.cmd("MAIL FROM:<alice@example.test>", 250)
		rc.cmd("RCPT TO:<carol@example.test>", 250)
		rc.data("From: alice@example.test\r\n\r\nx\r\n", 250, "2.0.0")
	}
	send()
	send()
	rc.cmdEnh("MAIL FROM:<alice@example.test>", 450, "4.7.1")
	// Bob has limits of his own.
	rb := login(t, ss.addr, "bob@example.test", "bobpw")
	rb.cmd("MAIL FROM:<bob@example.test>", 250)
	ss.clock.Advance(61 * time.Minute)
	send()
	if got := rc.cmdEnh("MAIL FROM:<alice@example.test>", 450, "4.7.1"); !strings.Contains(got, "per day") {
		t.Fatalf("day limit reply %q", got)
	}
	ss.clock.Advance(23 * time.Hour)
	send()
	// Recipients per message (submission.max_recipients = 5).
	rc.cmd("MAIL FROM:<alice@example.test>", 250)
	for i := range 6 {
		if i < 5 {
			rc.cmd("RCPT TO:<user"+string(rune('1'+i))+"@example.test>", 250)
		} else {
			rc.cmdEnh("RCPT TO:<user9@example.test>", 452, "4.5.3")
		}
	}
}

// TestSubmissionImplicitTLS: a whole transaction over the implicit-TLS
// listener; the Received field names the TLS and the login.
func TestSubmissionImplicitTLS(t *testing.T) {
	ss := startSubmission(t, false)
	c, err := gosmtp.DialTLS(ss.tlsAddr, testClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "alice@example.test", "alicepw")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("alice@example.test", []string{"carol@example.test", "x@remote.example"},
		strings.NewReader("From: alice@example.test\r\nSubject: tls\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	msgs := ss.store.Messages("carol@example.test", "INBOX")
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Body), "(using TLSv1.3") || !strings.Contains(string(msgs[0].Body), "with ESMTPSA id") {
		t.Fatalf("delivered: %+v", msgs)
	}
	if envs, _ := ss.queue.List(); len(envs) != 1 {
		t.Fatalf("queued %d, want 1", len(envs))
	}
}

// TestSubmissionShutdownImplicitTLS: an idle client on the implicit-TLS
// port reads the 421 goodbye inside TLS.
func TestSubmissionShutdownImplicitTLS(t *testing.T) {
	ss := startSubmission(t, false)
	rc := dialTLS(t, ss.tlsAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	go ss.srv.Shutdown(ctx)
	rc.expectEnh(421, "4.3.2")
}

// TestMXForwardsThroughQueue: on the MX, an alias's outside targets are
// queued with the original envelope sender; its local targets delivered.
func TestMXForwardsThroughQueue(t *testing.T) {
	store, local := memLocal(t)
	q := openQueue(t)
	ts := startServerWith(t, store, delivery.NewRouter(local, q, nil))
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.test", 250)
	rc.cmd("MAIL FROM:<sender@remote.example>", 250)
	rc.cmd("RCPT TO:<mixed@example.test>", 250)
	rc.cmd("RCPT TO:<forward@example.test>", 250)
	rc.cmdEnh("RCPT TO:<someone@elsewhere.example>", 554, "5.7.1") // still no open relay
	rc.data(message("fwd"), 250, "2.0.0")
	envs, _ := q.List()
	if len(envs) != 1 || envs[0].From != "sender@remote.example" || envs[0].User != "" || len(envs[0].Recipients) != 2 {
		t.Fatalf("queue: %+v", envs)
	}
	if n := len(store.Messages("alice@example.test", "INBOX")); n != 1 {
		t.Fatalf("alice got %d", n)
	}
	// Only outside targets: queued, nothing local.
	rc.cmd("MAIL FROM:<>", 250)
	rc.cmd("RCPT TO:<forward@example.test>", 250)
	if got := rc.data(message("bounce fwd"), 250, "2.0.0"); !strings.Contains(got, "queued as") {
		t.Fatalf("reply %q", got)
	}
}

func TestNewSubmissionNeedsQueue(t *testing.T) {
	_, local := memLocal(t)
	_, err := smtp.NewSubmission(smtp.SubmissionOptions{SMTP: baseConfig(), Hostname: "h", Directory: newFakeDir(),
		Accounts: &fakeAccounts{}, Deliverer: delivery.NewRouter(local, nil, nil)})
	if err == nil || !strings.Contains(err.Error(), "outbound queue") {
		t.Fatalf("NewSubmission without a queue: %v", err)
	}
	if _, err := smtp.NewSubmission(smtp.SubmissionOptions{}); err == nil {
		t.Fatal("NewSubmission with nothing succeeded")
	}
}
