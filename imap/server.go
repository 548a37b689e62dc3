package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postyard-mail/postyard/internal/cid"
	"github.com/postyard-mail/postyard/internal/connlimit"
	"github.com/postyard-mail/postyard/internal/connset"
	"github.com/postyard-mail/postyard/maildir"
)

// Authenticator checks a login; *accounts.Directory is one.
type Authenticator interface {
	// Authenticate returns the canonical user address, or an error
	// (accounts.ErrAuthFailed) for a bad login or password.
	Authenticate(login, password string) (string, error)
}

// Options configure a Server. Store, Accounts and Logger are required.
type Options struct {
	// Hostname names the server in the greeting-time log lines.
	Hostname string
	// IdleTimeout is the autologout timer of an authenticated session,
	// between commands and in IDLE (imap.idle_timeout). 0 means 30 minutes.
	IdleTimeout time.Duration
	// MaxConnectionsPerUser caps concurrent logged-in sessions of one user;
	// 0 means no limit.
	MaxConnectionsPerUser int
	// AllowPlaintextAuth permits LOGIN and AUTHENTICATE on unencrypted,
	// non-loopback connections (security.allow_plaintext_auth).
	AllowPlaintextAuth bool
	// MaxMessageSize caps an APPEND literal (smtp.max_message_size). 0 means
	// go-imap's own limit (100 MiB).
	MaxMessageSize int64
	// MaxAuthFailures failed logins close the connection
	// (security.max_auth_failures). 0 means 3.
	MaxAuthFailures int
	// AuthFailureDelay is the wait after the first failed login; it doubles
	// with each further failure, up to 16 times its value. 0 means 1 s.
	AuthFailureDelay time.Duration

	Accounts Authenticator
	Store    *maildir.Store
	// TLSConfig serves STARTTLS on plain connections; nil disables STARTTLS.
	TLSConfig *tls.Config
	Logger    *slog.Logger
}

// goImapIdleThreshold separates go-imap's autologout read deadline (35 min)
// from its short per-command deadlines (30 s, 5 min for literals); see
// conn.SetReadDeadline.
const goImapIdleThreshold = 20 * time.Minute

// goImapAppendLimit is imapserver's fixed APPEND literal limit when the
// session does not implement SessionAppendLimit (it does not: see Append).
const goImapAppendLimit = 100 << 20

// Server is the IMAP service: Serve once per listener (plain or implicit
// TLS), Shutdown once.
type Server struct {
	opts Options
	log  *slog.Logger
	caps imap.CapSet

	// panics counts panics recovered by go-imap in sessions.
	panics atomic.Int64
	// cache holds ENVELOPE and BODYSTRUCTURE of recently fetched messages.
	cache *contentCache

	// sessions tracks listeners and connections; closing once Shutdown begins.
	sessions connset.Set[*conn]

	mu    sync.Mutex     // guards users
	users map[string]int // logged-in sessions per user address
}

// New returns a Server; it does not listen yet.
func New(opts Options) (*Server, error) {
	if opts.Store == nil || opts.Accounts == nil || opts.Logger == nil {
		return nil, errors.New("imap: Options.Store, Accounts and Logger are required")
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.MaxAuthFailures <= 0 {
		opts.MaxAuthFailures = 3
	}
	if opts.AuthFailureDelay <= 0 {
		opts.AuthFailureDelay = time.Second
	}
	if opts.MaxMessageSize <= 0 || opts.MaxMessageSize > goImapAppendLimit {
		opts.MaxMessageSize = goImapAppendLimit
	}
	caps := imap.CapSet{}
	for _, c := range []imap.Cap{
		imap.CapIMAP4rev1, imap.CapIMAP4rev2,
		imap.CapNamespace, imap.CapUIDPlus, imap.CapESearch, imap.CapSearchRes,
		imap.CapListExtended, imap.CapListStatus, imap.CapMove, imap.CapStatusSize,
		imap.CapBinary, imap.CapChildren, imap.CapSpecialUse, imap.CapLiteralPlus,
		imap.CapUnauthenticate,
	} {
		caps[c] = struct{}{}
	}
	return &Server{
		opts:  opts,
		log:   opts.Logger,
		caps:  caps,
		cache: newContentCache(contentCacheEntries),
		users: make(map[string]int),
	}, nil
}

// Panics returns how many session panics were recovered (tests fail on any).
func (s *Server) Panics() int64 { return s.panics.Load() }

// Serve accepts connections on l until l is closed or Shutdown is called,
// and then returns nil (also when Shutdown came before Serve).
// A connection that is a *tls.Conn counts as encrypted (implicit TLS).
func (s *Server) Serve(l net.Listener) error {
	if !s.sessions.AddListener(l) {
		// Shutdown came first: l is closed as Shutdown would have closed it,
		// and Serve returns as it does for a listener closed later.
		_ = l.Close()
		return nil
	}
	defer s.sessions.RemoveListener(l)
	// Every accept failure but a closed listener (EMFILE, ECONNABORTED) is
	// worth retrying, with connset's growing pause.
	return connset.Accept(l, func(err error, pause time.Duration) bool {
		s.log.Warn("imap: accept failed", "err", err, "retry_in", pause)
		return true
	}, s.serveConn)
}

// serveConn hands one connection to its own go-imap server value, which is
// how each connection gets its own logger (with cid) and its own rule for
// plaintext authentication. It returns at once: go-imap serves the
// connection in its goroutine, and conn.Close releases it.
func (s *Server) serveConn(c net.Conn) {
	log, id := cid.With(s.log)
	_, isTLS := c.(*tls.Conn)
	cn := &conn{Conn: c, srv: s, idleTimeout: s.opts.IdleTimeout}
	if !s.track(cn) {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write([]byte("* BYE [UNAVAILABLE] Server shutting down\r\n"))
		_ = c.Close()
		return
	}
	sess := &session{srv: s, conn: cn, log: log, connLog: log, cid: id}
	cn.sess = sess
	opts := &imapserver.Options{
		NewSession: func(ic *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			cn.setIMAPConn(ic)
			return sess, nil, nil
		},
		Caps:   s.caps,
		Logger: libLogger{log: log, panics: &s.panics},
		// go-imap sees our wrapper, not the *tls.Conn, so "already TLS" is
		// told through InsecureAuth; after STARTTLS go-imap sees its own
		// *tls.Conn and allows authentication by itself.
		InsecureAuth: isTLS || s.opts.AllowPlaintextAuth || connlimit.IsLoopback(c),
	}
	if !isTLS {
		opts.TLSConfig = s.opts.TLSConfig
	}
	log.Debug("imap: connection", "remote", c.RemoteAddr().String(), "tls", isTLS)
	// Serve takes the one connection, starts its goroutine, and returns
	// when the single-connection listener reports closed.
	_ = imapserver.New(opts).Serve(&oneConnListener{c: cn})
}

func (s *Server) track(c *conn) bool { return s.sessions.Add(c) }

func (s *Server) untrack(c *conn) { s.sessions.Done(c) }

// acquireUser counts a logged-in session of user; false if over the limit.
func (s *Server) acquireUser(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.opts.MaxConnectionsPerUser; n > 0 && s.users[user] >= n {
		return false
	}
	s.users[user]++
	return true
}

func (s *Server) releaseUser(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[user] <= 1 {
		delete(s.users, user)
	} else {
		s.users[user]--
	}
}

// Shutdown stops accepting, tells every session "* BYE" as soon as it is
// between commands (a command in progress finishes and gets its tagged
// reply first), waits for the sessions to end until ctx is done, and then
// closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	conns, _ := s.sessions.Close()
	for _, c := range conns {
		c.requestBye("[UNAVAILABLE] Server shutting down")
	}
	done := s.sessions.Drained()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	for _, c := range s.sessions.Conns() {
		_ = c.Close()
	}
	<-done
	return fmt.Errorf("imap: shutdown: %w", ctx.Err())
}

// oneConnListener yields one connection, then reports itself closed.
type oneConnListener struct {
	c    net.Conn
	done bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if l.done {
		return nil, net.ErrClosed
	}
	l.done = true
	return l.c, nil
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.c.LocalAddr() }

// libLogger routes go-imap's Printf logging into slog with the connection's cid.
type libLogger struct {
	log    *slog.Logger
	panics *atomic.Int64
}

func (l libLogger) Printf(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	switch {
	case strings.HasPrefix(format, "panic"):
		l.panics.Add(1)
		l.log.Error("imap: recovered panic", "detail", msg)
	case strings.HasPrefix(format, "failed to read command"),
		strings.HasPrefix(format, "failed to write greeting"):
		// A client that went away or timed out.
		l.log.Debug("imap: connection ended", "detail", msg)
	default:
		l.log.Warn("imap: " + msg)
	}
}

// conn wraps each client connection. It maps go-imap's fixed 35-minute
// autologout deadline to imap.idle_timeout; it says "* BYE" at the first
// moment the session waits for the client (shutdown, too many failed
// logins) rather than in the middle of a command; and it coalesces writes
// while a command runs: go-imap flushes after every response line, which
// for FETCH 1:* of a large mailbox is one write(2) per message.
type conn struct {
	net.Conn
	srv         *Server       // set at creation
	idleTimeout time.Duration // set at creation
	sess        *session      // set once before go-imap starts

	mu      sync.Mutex // guards the fields below
	ic      *imapserver.Conn
	reading bool   // blocked in Read
	busy    bool   // a session method is running
	bye     string // text of a requested BYE, "" if none
	byeSent bool
	// idleDeadline: the read deadline now set is the autologout one;
	// expired: it passed, the connection is done.
	idleDeadline bool
	expired      bool
	closed       bool
	closeErr     error

	wmu       sync.Mutex // guards buffering, wbuf and writes to Conn
	buffering int        // holds on write coalescing (see hold)
	wbuf      *[]byte    // pending output while buffering, from writeBufs
}

// Write coalescing limits.
const (
	writeBufSize = 64 << 10
	// flushTimeout bounds one write of coalesced output; go-imap's own
	// per-response deadlines do not apply to it.
	flushTimeout = 5 * time.Minute
)

var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, writeBufSize); return &b }}

// hold starts coalescing writes until the returned function is called;
// holds nest. Output is flushed when the last hold ends, when the buffer
// is full, and before every read.
func (c *conn) hold() func() {
	c.wmu.Lock()
	c.buffering++
	c.wmu.Unlock()
	return func() {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		c.buffering--
		if c.buffering == 0 {
			_ = c.flushLocked()
		}
	}
}

// Write buffers while a hold is on, else writes through.
func (c *conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.buffering == 0 {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	if c.wbuf == nil {
		c.wbuf = writeBufs.Get().(*[]byte)
	}
	*c.wbuf = append(*c.wbuf, p...)
	if len(*c.wbuf) >= writeBufSize {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// flushLocked writes the pending output and gives the buffer back.
func (c *conn) flushLocked() error {
	if c.wbuf == nil {
		return nil
	}
	var err error
	if len(*c.wbuf) > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(flushTimeout))
		_, err = c.Conn.Write(*c.wbuf)
		_ = c.Conn.SetWriteDeadline(time.Time{})
	}
	*c.wbuf = (*c.wbuf)[:0]
	writeBufs.Put(c.wbuf)
	c.wbuf = nil
	return err
}

func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

// SetWriteDeadline applies go-imap's per-response deadlines to direct
// writes only: coalesced output has its own (flushTimeout).
func (c *conn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.buffering > 0 {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) setIMAPConn(ic *imapserver.Conn) {
	c.mu.Lock()
	c.ic = ic
	c.mu.Unlock()
}

func (c *conn) imapConn() *imapserver.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ic
}

// Read marks the connection as waiting for the client; a requested BYE is
// sent now unless a command is running. When the autologout deadline
// passes, it says BYE and fails every later read: go-imap would otherwise
// read once more under its 30-second command deadline.
func (c *conn) Read(b []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	if c.expired {
		c.mu.Unlock()
		return 0, os.ErrDeadlineExceeded
	}
	c.reading = true
	c.maybeByeLocked()
	c.mu.Unlock()
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.reading = false
	if err != nil && c.idleDeadline && errors.Is(err, os.ErrDeadlineExceeded) {
		c.expired = true
		sayBye := !c.byeSent
		c.byeSent = true
		ic := c.ic
		c.mu.Unlock()
		if c.sess != nil {
			c.sess.log.Info("imap: autologout", "idle_timeout", c.idleTimeout)
		}
		if sayBye && ic != nil {
			// Only authenticated sessions get the autologout deadline, so
			// go-imap holds no write lock of ours here (AUTHENTICATE does).
			_ = ic.Bye("Autologout; idle for too long")
		}
		return n, err
	}
	c.mu.Unlock()
	return n, err
}

// SetReadDeadline replaces go-imap's autologout deadline by IdleTimeout.
func (c *conn) SetReadDeadline(t time.Time) error {
	idle := !t.IsZero() && time.Until(t) > goImapIdleThreshold
	if idle {
		t = time.Now().Add(c.idleTimeout)
	}
	c.mu.Lock()
	c.idleDeadline = idle
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// Close closes the connection once and releases its slot in the server.
func (c *conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.closeErr
	}
	c.closed = true
	// No flush: output still held belongs to a command cut short, and a
	// flush could block on a client that does not read.
	c.closeErr = c.Conn.Close()
	err := c.closeErr
	c.mu.Unlock()
	c.srv.untrack(c)
	return err
}

// setBusy marks a session method as running (true) or done (false).
func (c *conn) setBusy(busy bool) {
	c.mu.Lock()
	c.busy = busy
	c.mu.Unlock()
}

// requestBye asks for "* BYE text" and a close at the next wait for the client.
func (c *conn) requestBye(text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bye == "" {
		c.bye = text
	}
	c.maybeByeLocked()
}

// maybeByeLocked sends a requested BYE when the session is idle. It runs in
// its own goroutine: go-imap holds its write lock during an AUTHENTICATE
// exchange while it reads, and Bye needs that lock.
func (c *conn) maybeByeLocked() {
	if c.bye == "" || c.byeSent || c.busy || !c.reading || c.closed {
		return
	}
	c.byeSent = true
	ic, text := c.ic, c.bye
	go func() {
		if ic == nil {
			_ = c.Close()
			return
		}
		if err := ic.Bye(text); err != nil {
			_ = c.Close()
		}
	}()
}
