package imap_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/imap"
	"github.com/postyard-mail/postyard/internal/testcert"
	"github.com/postyard-mail/postyard/maildir"
)

const (
	testDomain = "example.test"
	alice      = "alice@example.test"
	bob        = "bob@example.test"
	password   = "correct horse"
	// ioTimeout bounds every network wait of the tests.
	ioTimeout = 10 * time.Second
)

// testServer is a Server on 127.0.0.1 with a real store and accounts.
type testServer struct {
	srv       *imap.Server
	store     *maildir.Store
	dataDir   string
	addr      string // plain (STARTTLS) listener
	tlsAddr   string // implicit TLS listener
	clientTLS *tls.Config
	serverTLS *tls.Config
	log       *testLog
	wg        sync.WaitGroup // Serve calls
	t         testing.TB
}

// testLog collects the server's log lines for the test output and for
// assertions.
type testLog struct {
	t  testing.TB
	mu sync.Mutex
	b  strings.Builder
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	return len(p), nil
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServer starts a server with users alice and bob ({PLAIN} hashes keep
// logins cheap in tests); mod adjusts the options.
func startServer(t testing.TB, mod func(*imap.Options)) *testServer {
	t.Helper()
	dir := t.TempDir()
	passwd := fmt.Sprintf("%s:{PLAIN}%s\n%s:{PLAIN}%s\n", alice, password, bob, password)
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd), 0o600); err != nil {
		t.Fatal(err)
	}
	tl := &testLog{t: t}
	logger := slog.New(slog.NewTextHandler(tl, &slog.HandlerOptions{Level: slog.LevelDebug}))
	accts, err := accounts.Open(dir, []string{testDomain}, logger)
	if err != nil {
		t.Fatal(err)
	}
	store, err := maildir.New(filepath.Join(dir, "mail"), logger)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, clientTLS := testCerts(t)
	opts := imap.Options{
		Hostname:         "mail.example.test",
		Accounts:         accts,
		Store:            store,
		TLSConfig:        serverTLS,
		Logger:           logger,
		MaxMessageSize:   1 << 20,
		AuthFailureDelay: 10 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	srv, err := imap.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: srv, store: store, dataDir: dir, clientTLS: clientTLS, serverTLS: serverTLS, log: tl, t: t}
	ts.addr = ts.listen(false, false)
	ts.tlsAddr = ts.listen(false, true)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		ts.wg.Wait()
		if n := srv.Panics(); n > 0 {
			t.Errorf("%d session panics recovered; log:\n%s", n, tl.String())
		}
		_ = store.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", tl.String())
		}
	})
	return ts
}

// listen serves one more listener on 127.0.0.1: with remote, its
// connections claim to come from 192.0.2.7 (so they are not loopback); with
// implicitTLS, it is a TLS listener.
func (ts *testServer) listen(remote, implicitTLS bool) string {
	ts.t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ts.t.Fatal(err)
	}
	var l net.Listener = raw
	if remote {
		l = remoteListener{l}
	}
	if implicitTLS {
		l = tls.NewListener(l, ts.serverTLS)
	}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		if err := ts.srv.Serve(l); err != nil {
			ts.t.Errorf("Serve: %v", err)
		}
	}()
	return raw.Addr().String()
}

// remoteListener makes connections look like they come from elsewhere.
type remoteListener struct{ net.Listener }

func (l remoteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}
}

// testCerts makes a self-signed certificate for mail.example.test and
// 127.0.0.1 and a client config that trusts it.
func testCerts(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	c := testcert.New(t, "mail.example.test", "127.0.0.1")
	return c.Server, c.Client
}

// mailbox opens a mailbox of a user directly in the store.
func (ts *testServer) mailbox(t testing.TB, user, name string) *maildir.Mailbox {
	t.Helper()
	u, err := ts.store.User(user)
	if err != nil {
		t.Fatal(err)
	}
	m, err := u.Mailbox(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// deliver puts a message into a user's mailbox the way local delivery does.
func (ts *testServer) deliver(t testing.TB, user, mailbox, msg string) uint32 {
	t.Helper()
	uid, err := ts.mailbox(t, user, mailbox).Deliver(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

// client dials the plain listener and logs in (loopback counts as secure).
func (ts *testServer) client(t testing.TB, user string, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	if opts == nil {
		opts = &imapclient.Options{}
	}
	opts.Dialer = &net.Dialer{Timeout: ioTimeout}
	c, err := imapclient.DialInsecure(ts.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// rawConn is a line-level client for exact protocol checks.
type rawConn struct {
	t   testing.TB
	c   net.Conn
	br  *bufio.Reader
	tag int
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
	r.readLine() // greeting
	return r
}

func newRaw(t testing.TB, c net.Conn) *rawConn {
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) readLine() string {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (got %q)", err, line)
	}
	return strings.TrimRight(line, "\r\n")
}

// tryReadLine reads a line or reports the error (for checks of closing).
func (r *rawConn) tryReadLine(timeout time.Duration) (string, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(timeout))
	line, err := r.br.ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

func (r *rawConn) write(s string) {
	r.t.Helper()
	_ = r.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// cmd sends one command and returns the untagged lines (literals inlined
// as they come) and the tagged completion line without the tag.
func (r *rawConn) cmd(format string, args ...any) (untagged []string, status string) {
	r.t.Helper()
	r.tag++
	tag := fmt.Sprintf("t%d", r.tag)
	r.write(tag + " " + fmt.Sprintf(format, args...) + "\r\n")
	return r.readUntil(tag)
}

func (r *rawConn) readUntil(tag string) (untagged []string, status string) {
	r.t.Helper()
	for {
		line := r.readLine()
		if rest, ok := strings.CutPrefix(line, tag+" "); ok {
			return untagged, rest
		}
		// Read literals so the next line is a response line again.
		for {
			i := strings.LastIndex(line, "{")
			if i < 0 || !strings.HasSuffix(line, "}") {
				break
			}
			var n int
			if _, err := fmt.Sscanf(strings.TrimPrefix(line[i:], "{"), "%d}", &n); err != nil {
				break
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(r.br, buf); err != nil {
				r.t.Fatalf("reading literal: %v", err)
			}
			line += string(buf) + r.readLine()
		}
		untagged = append(untagged, line)
	}
}

// expectOK runs a command and fails unless it completes with OK.
func (r *rawConn) expectOK(format string, args ...any) []string {
	r.t.Helper()
	u, st := r.cmd(format, args...)
	if !strings.HasPrefix(st, "OK") {
		r.t.Fatalf("%s: got %q, untagged %q", fmt.Sprintf(format, args...), st, u)
	}
	return u
}

func (r *rawConn) login(user string) {
	r.t.Helper()
	r.expectOK("LOGIN %s %q", user, password)
}

// testMessage builds a small message.
func testMessage(subject, body string) string {
	return "From: Carol <carol@example.org>\r\n" +
		"To: alice@example.test\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", "-") + "@example.org>\r\n" +
		"\r\n" + body + "\r\n"
}
