package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/config"
	"github.com/postyard-mail/postyard/internal/connset"
	"github.com/postyard-mail/postyard/maildir"
)

// LevelTrace is the slog level of the command transcript (below Debug).
const LevelTrace = slog.LevelDebug - 4

// Defaults used when the config leaves a value at zero.
const (
	DefaultIdleTimeout      = 10 * time.Minute // RFC 1939 §3
	DefaultMaxAuthFailures  = 3
	DefaultAuthFailureDelay = time.Second
	maxAuthFailureDelay     = 16 * time.Second
	maxBadCommands          = 10 // -ERR replies to bad commands before the session is dropped
	shutdownPoll            = 20 * time.Millisecond
	writeTimeout            = 5 * time.Minute // a client that reads nothing for this long is dropped
)

// Authenticator checks logins; *accounts.Directory is one.
type Authenticator interface {
	// Authenticate returns the canonical user address, or an error wrapping
	// accounts.ErrAuthFailed for bad credentials.
	Authenticate(login, password string) (string, error)
}

var _ Authenticator = (*accounts.Directory)(nil)

// mailbox is what a session needs of its maildrop; *maildir.Mailbox is one.
type mailbox interface {
	Snapshot() (*maildir.Snapshot, error)
	Open(uid uint32) (io.ReadSeekCloser, maildir.Message, error)
	Expunge(uids []uint32) ([]uint32, error)
	StoreFlags(uids []uint32, op maildir.FlagOp, flags []string, unchangedSince uint64) ([]maildir.Message, []uint32, error)
}

var _ mailbox = (*maildir.Mailbox)(nil)

// Options configure a Server.
type Options struct {
	// Hostname is named in the greeting.
	Hostname string
	// Config is the [pop3] section (idle_timeout; the connection limits are
	// applied by whoever builds the listeners).
	Config config.POP3
	// Security holds allow_plaintext_auth and max_auth_failures.
	Security config.Security
	// Accounts checks passwords (an *accounts.Directory).
	Accounts Authenticator
	// Store holds the maildrops (each user's INBOX).
	Store *maildir.Store
	// TLS is used for STLS on plain listeners; nil means STLS is not offered.
	// Connections from implicit-TLS listeners arrive as *tls.Conn.
	TLS *tls.Config
	// Logger receives every log line; nil discards them.
	Logger *slog.Logger
	// AuthFailureDelay is the wait before answering the first failed login;
	// it doubles with each further failure (up to 16s). 0 means 1s.
	AuthFailureDelay time.Duration
}

// Server is a POP3 service. Serve may run on several listeners at once.
type Server struct {
	opts        Options
	idleTimeout time.Duration
	maxFailures int
	authDelay   time.Duration
	log         *slog.Logger

	// openInbox opens a user's maildrop; set by New, replaced by tests.
	openInbox func(user string) (mailbox, error)
	// loopbackSecure says a loopback peer counts as secure for passwords
	// (DESIGN §2); tests turn it off to see the refusals.
	loopbackSecure bool

	sessions connset.Set[*conn] // listeners and sessions; closing once Shutdown begins
	stop     chan struct{}      // closed by Shutdown: ends waits that are not I/O (auth failure delays)
	panics   atomic.Int64       // sessions that panicked (recovered)

	mu    sync.Mutex        // guards locks
	locks map[string]string // locked maildrops: user → cid of the holder

	// bufs holds RETR/TOP read buffers (*[]byte of streamBufSize), so an
	// idle session holds none.
	bufs sync.Pool
}

// New checks the options and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Accounts == nil {
		return nil, errors.New("pop3: Options.Accounts is nil")
	}
	if opts.Store == nil {
		return nil, errors.New("pop3: Options.Store is nil")
	}
	if opts.Hostname == "" {
		return nil, errors.New("pop3: Options.Hostname is empty")
	}
	s := &Server{
		opts:           opts,
		idleTimeout:    opts.Config.IdleTimeout.D(),
		maxFailures:    opts.Security.MaxAuthFailures,
		authDelay:      opts.AuthFailureDelay,
		log:            opts.Logger,
		loopbackSecure: true,
		locks:          make(map[string]string),
		stop:           make(chan struct{}),
	}
	s.bufs.New = func() any { b := make([]byte, streamBufSize); return &b }
	if s.idleTimeout <= 0 {
		s.idleTimeout = DefaultIdleTimeout
	}
	if s.maxFailures <= 0 {
		s.maxFailures = DefaultMaxAuthFailures
	}
	if s.authDelay <= 0 {
		s.authDelay = DefaultAuthFailureDelay
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	store := opts.Store
	s.openInbox = func(user string) (mailbox, error) {
		u, err := store.User(user)
		if err != nil {
			return nil, err
		}
		return u.Mailbox("INBOX")
	}
	return s, nil
}

// Serve accepts connections on l until l is closed or Shutdown is called,
// and then returns nil; other accept failures are returned. Connections that are *tls.Conn (an implicit-TLS listener) start secure.
func (s *Server) Serve(l net.Listener) error {
	if !s.sessions.AddListener(l) {
		_ = l.Close()
		return nil
	}
	defer s.sessions.RemoveListener(l)

	err := connset.Accept(l, func(err error, _ time.Duration) bool {
		// Temporary accept failure (e.g. out of descriptors): back off as net/http does.
		return !s.sessions.Closing() && connset.IsTimeout(err)
	}, func(nc net.Conn) {
		c := newConn(s, nc)
		if !s.sessions.Add(c) {
			_ = nc.Close()
			return
		}
		go c.serve()
	})
	if err != nil && !s.sessions.Closing() {
		return fmt.Errorf("pop3: accept on %s: %w", l.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting, closes sessions waiting for a command at once
// (POP3 has no unsolicited goodbye; a session closed without QUIT changes
// nothing), lets sessions busy with a command (a RETR, the expunge of a QUIT)
// finish it, and closes whatever is left when ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	conns, first := s.sessions.Close()
	if first {
		close(s.stop)
	}
	for _, c := range conns {
		c.closeIfIdle()
	}

	done := s.sessions.Drained()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	for _, c := range s.sessions.Conns() {
		c.close()
	}
	<-done
	return ctx.Err()
}

// lock takes the maildrop lock of user for the session cid.
func (s *Server) lock(user, cid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, held := s.locks[user]; held {
		return false
	}
	s.locks[user] = cid
	return true
}

func (s *Server) unlock(user string) {
	s.mu.Lock()
	delete(s.locks, user)
	s.mu.Unlock()
}
