package smtp_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/config"
	"github.com/postyard-mail/postyard/delivery"
	"github.com/postyard-mail/postyard/delivery/deliverytest"
	"github.com/postyard-mail/postyard/delivery/queue"
	"github.com/postyard-mail/postyard/internal/testcert"
	"github.com/postyard-mail/postyard/internal/testlog"
	"github.com/postyard-mail/postyard/smtp"
)

// fakeDir is a recording directory: users and aliases of example.test and
// example.org, resolved like accounts.Directory does (+tag, domain case).
type fakeDir struct {
	mu      sync.Mutex
	domains map[string]bool
	users   map[string]bool
	aliases map[string]accounts.Resolution
	fail    error // returned by Resolve when set
	lookups int
}

var _ smtp.Directory = (*fakeDir)(nil)

func newFakeDir() *fakeDir {
	d := &fakeDir{
		domains: map[string]bool{"example.test": true, "example.org": true},
		users:   map[string]bool{},
		aliases: map[string]accounts.Resolution{
			"team@example.test":    {Local: []string{"alice@example.test", "bob@example.test"}},
			"forward@example.test": {Remote: []string{"someone@elsewhere.example"}},
			"mixed@example.test":   {Local: []string{"alice@example.test"}, Remote: []string{"x@elsewhere.example"}},
		},
	}
	for _, u := range []string{"alice", "bob", "carol", "jöran"} {
		d.users[u+"@example.test"] = true
	}
	for i := 1; i <= 100; i++ {
		d.users[fmt.Sprintf("user%d@example.test", i)] = true
	}
	return d
}

func (d *fakeDir) IsLocalDomain(domain string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.domains[strings.ToLower(domain)]
}

func (d *fakeDir) Resolve(addr string) (accounts.Resolution, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lookups++
	if d.fail != nil {
		return accounts.Resolution{}, d.fail
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return accounts.Resolution{}, accounts.ErrBadAddress
	}
	local, domain := addr[:at], strings.ToLower(addr[at+1:])
	if !d.domains[domain] {
		return accounts.Resolution{}, accounts.ErrNotLocal
	}
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	a := strings.ToLower(local) + "@" + domain
	if d.users[a] {
		return accounts.Resolution{Local: []string{a}}, nil
	}
	if r, ok := d.aliases[a]; ok {
		return r, nil
	}
	return accounts.Resolution{}, accounts.ErrNoSuchUser
}

// testServer is a running smtp.Server on 127.0.0.1 with a MemStore behind it.
type testServer struct {
	addr  string
	srv   *smtp.Server
	store *deliverytest.MemStore
	dir   *fakeDir
	opts  smtp.Options
}

type serverOption func(*smtp.Options)

func baseConfig() config.SMTP {
	return config.SMTP{
		MaxMessageSize:      config.Size(1 << 20),
		MaxRecipients:       10,
		CommandTimeout:      config.Duration(10 * time.Second),
		DataTimeout:         config.Duration(10 * time.Second),
		MaxConnections:      50,
		MaxConnectionsPerIP: 50,
		MaxErrors:           20,
		TarpitDelay:         config.Duration(time.Millisecond),
	}
}

func startServer(t testing.TB, opts ...serverOption) *testServer {
	t.Helper()
	store, local := memLocal(t)
	return startServerWith(t, store, local, opts...)
}

// memLocal is local delivery into a new in-memory store.
func memLocal(t testing.TB) (*deliverytest.MemStore, *delivery.Local) {
	t.Helper()
	store := deliverytest.NewMemStore()
	local, err := delivery.NewLocal(delivery.LocalOptions{Store: store, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return store, local
}

// openQueue is an outbound queue in a new temporary directory.
func openQueue(t testing.TB) *queue.Queue {
	t.Helper()
	q, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// serveUntilCleanup serves every listener; at cleanup it shuts srv down and
// fails the test if a Serve does not return nil in time or a session
// panicked.
func serveUntilCleanup(t testing.TB, srv *smtp.Server, listeners ...net.Listener) {
	served := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { served <- srv.Serve(l) }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		for range listeners {
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(3 * time.Second):
				t.Error("Serve did not return after Shutdown")
			}
		}
		if n := srv.Panics(); n != 0 {
			t.Errorf("%d panics recovered in sessions", n)
		}
	})
}

func startServerWith(t testing.TB, store *deliverytest.MemStore, d smtp.Deliverer, opts ...serverOption) *testServer {
	t.Helper()
	dir := newFakeDir()
	o := smtp.Options{
		Config:    baseConfig(),
		Hostname:  "mx.example.test",
		Directory: dir,
		Deliverer: d,
		TLSConfig: testTLSConfig(t),
		Logger:    loggerFor(t),
	}
	for _, f := range opts {
		f(&o)
	}
	srv, err := smtp.New(o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveUntilCleanup(t, srv, l)
	return &testServer{addr: l.Addr().String(), srv: srv, store: store, dir: dir, opts: o}
}

// loggerFor logs to the test log in tests and a discarding logger in benchmarks.
func loggerFor(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	return testlog.New(t, slog.LevelDebug)
}

var (
	certOnce sync.Once
	certPair tls.Certificate
	certErr  error
)

// testTLSConfig is a server config with a throw-away self-signed certificate.
func testTLSConfig(t testing.TB) *tls.Config {
	certOnce.Do(func() {
		c, err := testcert.Generate("mx.example.test")
		if err != nil {
			certErr = err
			return
		}
		certPair = c.Server.Certificates[0]
	})
	if certErr != nil {
		t.Fatal(certErr)
	}
	return &tls.Config{Certificates: []tls.Certificate{certPair}}
}

// rawClient speaks SMTP line by line, for exact replies (EXAMPLES 21).
type rawClient struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	rc := &rawClient{t: t, c: c, r: bufio.NewReader(c)}
	rc.expect(220)
	return rc
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	_ = rc.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := rc.c.Write([]byte(s)); err != nil {
		rc.t.Fatalf("write %q: %v", s, err)
	}
}

// readReply reads one (possibly multi-line) reply: its code and its text
// lines without the code.
func (rc *rawClient) readReply() (int, []string, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	var lines []string
	for {
		line, err := rc.r.ReadString('\n')
		if err != nil {
			return 0, lines, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 {
			return 0, lines, fmt.Errorf("short reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return 0, lines, fmt.Errorf("bad reply line %q", line)
		}
		lines = append(lines, line[4:])
		if line[3] == ' ' {
			return code, lines, nil
		}
	}
}

// expect reads a reply and checks its code; it returns the last line's text.
func (rc *rawClient) expect(code int) string {
	rc.t.Helper()
	got, lines, err := rc.readReply()
	if err != nil {
		rc.t.Fatalf("reading reply (want %d): %v", code, err)
	}
	text := strings.Join(lines, "\n")
	if got != code {
		rc.t.Fatalf("reply %d %q, want %d", got, text, code)
	}
	return lines[len(lines)-1]
}

// cmd sends one command line and checks the reply code.
func (rc *rawClient) cmd(line string, code int) string {
	rc.t.Helper()
	rc.send(line + "\r\n")
	return rc.expect(code)
}

// expectClosed checks that the server closed the connection.
func (rc *rawClient) expectClosed() {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := rc.r.ReadString('\n'); err == nil {
		rc.t.Fatalf("connection still open; read %q", line)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		rc.t.Fatal("connection still open after 5 s")
	}
}

// message is a small valid message.
func message(subject string) string {
	return "From: sender@remote.example\r\nTo: alice@example.test\r\nSubject: " + subject + "\r\n\r\nHello.\r\n"
}

// testClientTLS trusts any certificate: the test servers' are self-signed.
func testClientTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, ServerName: "mx.example.test"} //nolint:gosec // loopback test server
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

// startTLS upgrades the connection (STARTTLS) and says EHLO again.
func (rc *rawClient) startTLS() {
	rc.t.Helper()
	rc.cmd("STARTTLS", 220)
	tc := tls.Client(rc.c, testClientTLS())
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		rc.t.Fatalf("TLS handshake: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	rc.c, rc.r = tc, bufio.NewReader(tc)
	rc.cmd("EHLO client.test", 250)
}
