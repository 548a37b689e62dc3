package pop3_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/config"
	"github.com/postyard-mail/postyard/internal/testcert"
	"github.com/postyard-mail/postyard/internal/testlog"
	"github.com/postyard-mail/postyard/maildir"
	"github.com/postyard-mail/postyard/pop3"
)

// Test users. alice's password has a space: PASS takes the rest of the line.
const (
	alice   = "alice@example.test"
	alicePW = "alice secret"
	bob     = "bob@example.test"
	bobPW   = "bob-pw"
)

const ioTimeout = 10 * time.Second

// env is a POP3 server on two loopback listeners (plain and implicit TLS)
// over a real store and account directory in a temporary data dir.
type env struct {
	t         testing.TB
	dataDir   string
	store     *maildir.Store
	srv       *pop3.Server
	plain     string      // address of the plain listener (STLS)
	implicit  string      // address of the implicit-TLS listener
	clientTLS *tls.Config // trusts the server's certificate
	certFile  string      // the certificate in PEM, for external clients
}

type envOption func(*envSetup)

type envSetup struct {
	dataDir  string                // "" for a new temporary one
	insecure bool                  // loopback does not count as secure
	mods     []func(*pop3.Options) // applied over the defaults
}

func withOptions(f func(*pop3.Options)) envOption {
	return func(s *envSetup) { s.mods = append(s.mods, f) }
}

// insecureLoopback makes the test's 127.0.0.1 client look like a remote one
// without TLS.
func insecureLoopback() envOption { return func(s *envSetup) { s.insecure = true } }

// onDataDir runs the server over an existing data dir (a restart).
func onDataDir(dir string) envOption { return func(s *envSetup) { s.dataDir = dir } }

// newEnv starts a server; it is shut down at cleanup, and the test fails if
// a session panicked or Serve returned an error.
func newEnv(t testing.TB, options ...envOption) *env {
	t.Helper()
	var setup envSetup
	for _, o := range options {
		o(&setup)
	}
	e := &env{t: t, dataDir: setup.dataDir}
	if e.dataDir == "" {
		e.dataDir = t.TempDir()
	}
	logger := testlog.New(t, pop3.LevelTrace) // a failing test shows the transcript

	passwd := alice + ":{PLAIN}" + alicePW + "\n" + bob + ":{PLAIN}" + bobPW + "\n"
	if err := os.WriteFile(filepath.Join(e.dataDir, "passwd"), []byte(passwd), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, err := accounts.Open(e.dataDir, []string{"example.test"}, logger)
	if err != nil {
		t.Fatalf("accounts.Open: %v", err)
	}
	e.store = openStore(t, e.dataDir, logger)

	cert := testcert.New(t, "localhost", "mail.example.test", "127.0.0.1")
	serverTLS := cert.Server
	e.clientTLS = cert.Client
	e.certFile = filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(e.certFile, cert.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}

	opts := pop3.Options{
		Hostname:         "mail.example.test",
		Config:           config.POP3{IdleTimeout: config.Duration(time.Minute)},
		Security:         config.Security{MaxAuthFailures: 3},
		Accounts:         dir,
		Store:            e.store,
		TLS:              serverTLS,
		Logger:           logger,
		AuthFailureDelay: time.Millisecond,
	}
	for _, f := range setup.mods {
		f(&opts)
	}
	e.srv, err = pop3.New(opts)
	if err != nil {
		t.Fatalf("pop3.New: %v", err)
	}
	if setup.insecure {
		pop3.SetLoopbackSecure(e.srv, false)
	}

	plain := listen(t)
	implicit := tls.NewListener(listen(t), serverTLS)
	e.plain, e.implicit = plain.Addr().String(), implicit.Addr().String()
	var wg sync.WaitGroup
	serveErrs := make(chan error, 2)
	for _, l := range []net.Listener{plain, implicit} {
		wg.Add(1)
		go func() { defer wg.Done(); serveErrs <- e.srv.Serve(l) }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		wg.Wait()
		close(serveErrs)
		for err := range serveErrs {
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
		if n := pop3.Panics(e.srv); n > 0 {
			t.Errorf("%d POP3 sessions panicked (see the log)", n)
		}
	})
	return e
}

func openStore(t testing.TB, dataDir string, logger *slog.Logger) *maildir.Store {
	t.Helper()
	store, err := maildir.New(filepath.Join(dataDir, "mail"), logger)
	if err != nil {
		t.Fatalf("maildir.New: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return store
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// inbox returns a user's INBOX in the env's store.
func (e *env) inbox(user string) *maildir.Mailbox {
	e.t.Helper()
	u, err := e.store.User(user)
	if err != nil {
		e.t.Fatalf("store.User(%s): %v", user, err)
	}
	m, err := u.Mailbox("INBOX")
	if err != nil {
		e.t.Fatalf("Mailbox(INBOX): %v", err)
	}
	return m
}

// deliver stores msg (CRLF line ends) in user's INBOX and returns its UID.
func (e *env) deliver(user, msg string) uint32 {
	e.t.Helper()
	uid, err := e.inbox(user).Deliver(strings.NewReader(msg))
	if err != nil {
		e.t.Fatalf("Deliver: %v", err)
	}
	return uid
}

// testMessage is a small message with a numbered subject.
func testMessage(subject string, bodyLines ...string) string {
	var b strings.Builder
	b.WriteString("From: sender@example.org\r\nTo: alice@example.test\r\nSubject: " + subject + "\r\n")
	b.WriteString("Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.org>\r\n\r\n")
	for _, l := range bodyLines {
		b.WriteString(l + "\r\n")
	}
	return b.String()
}

// client is a raw POP3 client for exact replies.
type client struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func (e *env) dial(t testing.TB) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", e.plain, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, nc)
}

func (e *env) dialTLS(t testing.TB) *client {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: ioTimeout}, Config: e.clientTLS}
	nc, err := d.DialContext(context.Background(), "tcp", e.implicit)
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, nc)
}

func newClient(t testing.TB, nc net.Conn) *client {
	t.Helper()
	c := &client{t: t, nc: nc, r: bufio.NewReader(nc)}
	t.Cleanup(func() { _ = nc.Close() })
	if g := c.readLine(); !strings.HasPrefix(g, "+OK mail.example.test Postyard POP3 server ready") {
		t.Fatalf("greeting %q", g)
	}
	return c
}

func (c *client) send(line string) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c.nc, line+"\r\n"); err != nil {
		c.t.Fatalf("sending %q: %v", line, err)
	}
}

func (c *client) readLine() string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading a reply: %v (got %q)", err, line)
	}
	if !strings.HasSuffix(line, "\r\n") {
		c.t.Fatalf("reply %q does not end in CRLF", line)
	}
	return strings.TrimSuffix(line, "\r\n")
}

// cmd sends a command and returns the first line of the reply.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	return c.readLine()
}

// ok sends a command that must succeed and returns the text after "+OK".
func (c *client) ok(line string) string {
	c.t.Helper()
	reply := c.cmd(line)
	if reply != "+OK" && !strings.HasPrefix(reply, "+OK ") {
		c.t.Fatalf("%q: got %q, want +OK", line, reply)
	}
	return strings.TrimPrefix(strings.TrimPrefix(reply, "+OK"), " ")
}

// multi reads the body of a multi-line reply, undoing the dot-stuffing.
func (c *client) multi() []string {
	c.t.Helper()
	var lines []string
	for {
		l := c.readLine()
		if l == "." {
			return lines
		}
		lines = append(lines, strings.TrimPrefix(l, "."))
	}
}

func (c *client) login(user, pw string) string {
	c.t.Helper()
	c.ok("USER " + user)
	return c.ok("PASS " + pw)
}

// expectClosed checks that the server closes the connection with nothing more to say.
func (c *client) expectClosed() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := c.r.ReadString('\n')
	if err == nil || line != "" {
		c.t.Fatalf("connection still open: read %q, %v", line, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open after %s", ioTimeout)
	}
}

// quit ends a session cleanly and waits until the server has closed it (and
// so has released the maildrop).
func (c *client) quit() string {
	c.t.Helper()
	text := c.ok("QUIT")
	c.expectClosed()
	return text
}
