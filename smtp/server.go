package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/config"
	"github.com/postyard-mail/postyard/delivery"
	"github.com/postyard-mail/postyard/internal/cid"
	"github.com/postyard-mail/postyard/internal/connlimit"
)

// maxLineLength bounds command lines and, because go-smtp applies one limit
// to both, lines of DATA. RFC 5321 allows 1000 octets; real mail sometimes
// has longer lines (Postfix accepts any length), so the limit is generous.
const maxLineLength = 64 << 10

// Defaults for zero values in config.SMTP.
const (
	defaultCommandTimeout = 5 * time.Minute // RFC 5321 §4.5.3.2.7
	defaultDataTimeout    = 3 * time.Minute // RFC 5321 §4.5.3.2.5
	// tarpitFree rejected RCPTs of a connection go without delay.
	tarpitFree = 3
	// maxTarpit caps the delay of one rejected RCPT.
	maxTarpit = 30 * time.Second
)

// Kind is the service a session belongs to.
type Kind int

const (
	// KindMX is the inbound MX (port 25): no AUTH, local recipients only.
	KindMX Kind = iota
	// KindSubmission is message submission (587/465, NewSubmission): AUTH
	// required, and a logged-in client may send to outside addresses
	// through the outbound queue.
	KindSubmission
)

func (k Kind) String() string {
	if k == KindSubmission {
		return "submission"
	}
	return "mx"
}

// Directory is what sessions need from the account directory
// (*accounts.Directory).
type Directory interface {
	IsLocalDomain(domain string) bool
	Resolve(addr string) (accounts.Resolution, error)
}

var _ Directory = (*accounts.Directory)(nil)

// Deliverer is what sessions need from local delivery (*delivery.Local).
type Deliverer interface {
	NewSpool() *delivery.Spool
	Deliver(ctx context.Context, env *delivery.Envelope, body *delivery.Spool) error
}

var _ Deliverer = (*delivery.Local)(nil)

// Options configures New.
type Options struct {
	// Config holds the limits and timeouts ([smtp] of the config file).
	// Zero limits mean no limit; zero timeouts mean the RFC 5321 values.
	Config config.SMTP
	// Hostname is the name in the greeting and in Received headers.
	Hostname  string
	Directory Directory
	Deliverer Deliverer
	// TLSConfig enables STARTTLS; nil disables it.
	TLSConfig *tls.Config
	Logger    *slog.Logger
	// Checker judges MX mail (SPF, DKIM, DMARC) at the end of DATA; nil
	// turns the checks off.
	Checker Checker
	// CheckTimeout bounds the checks of one message; 0 means 30 s.
	CheckTimeout time.Duration
}

// Server is the inbound SMTP service. Serve may be called for several
// listeners; Shutdown stops them all.
type Server struct {
	kind        Kind
	hostname    string
	dir         Directory
	deliverer   Deliverer
	logger      *slog.Logger
	maxSize     int64
	cmdTimeout  time.Duration
	dataTimeout time.Duration
	maxErrors   int
	tarpit      time.Duration
	maxConns    int
	maxPerIP    int

	// Inbound checks (auth.go); checker is nil when they are off.
	checker      Checker
	checkTimeout time.Duration

	// queuesRemote: the deliverer queues outside recipients (aliases
	// forwarding outside, submission); sub is set on submission only
	// (submission.go); tlsConfig serves implicit-TLS listeners (tls.go).
	queuesRemote bool
	sub          *submission
	tlsConfig    *tls.Config

	srv *gosmtp.Server

	// ctx is the context of deliveries; cancelled when Shutdown gives up waiting.
	ctx    context.Context
	cancel context.CancelFunc

	closing  chan struct{} // closed when Shutdown begins
	inflight sync.WaitGroup
	panics   atomic.Int64

	mu        sync.Mutex // guards the fields below
	stopping  bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
}

// New returns an inbound MX service.
func New(opts Options) (*Server, error) {
	if opts.Directory == nil || opts.Deliverer == nil {
		return nil, errors.New("smtp: Directory and Deliverer are required")
	}
	if opts.Hostname == "" {
		return nil, errors.New("smtp: Hostname is required")
	}
	cfg := opts.Config
	s := &Server{
		kind:        KindMX,
		hostname:    opts.Hostname,
		dir:         opts.Directory,
		deliverer:   opts.Deliverer,
		logger:      opts.Logger,
		maxSize:     int64(cfg.MaxMessageSize),
		cmdTimeout:  cfg.CommandTimeout.D(),
		dataTimeout: cfg.DataTimeout.D(),
		maxErrors:   cfg.MaxErrors,
		tarpit:      cfg.TarpitDelay.D(),
		maxConns:    cfg.MaxConnections,
		maxPerIP:    cfg.MaxConnectionsPerIP,
		closing:     make(chan struct{}),
		listeners:   make(map[net.Listener]struct{}),
		conns:       make(map[*conn]struct{}),
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.cmdTimeout <= 0 {
		s.cmdTimeout = defaultCommandTimeout
	}
	if s.dataTimeout <= 0 {
		s.dataTimeout = defaultDataTimeout
	}
	s.checker, s.checkTimeout = opts.Checker, opts.CheckTimeout
	if s.checkTimeout <= 0 {
		s.checkTimeout = defaultCheckTimeout
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	srv := gosmtp.NewServer(s)
	srv.Domain = opts.Hostname
	srv.MaxMessageBytes = s.maxSize
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = maxLineLength
	// Read deadlines are set by conn.Read (command or data timeout, renewed
	// on every read); go-smtp's ReadTimeout would stay fixed during DATA.
	srv.ReadTimeout = 0
	srv.WriteTimeout = s.cmdTimeout
	srv.TLSConfig = opts.TLSConfig
	srv.EnableSMTPUTF8 = true
	// DSN is not advertised: honouring NOTIFY=SUCCESS means sending a
	// "delivered" DSN, which needs the outbound queue (issue 8). Without the
	// keyword, a DSN-aware client reports "relayed" itself (RFC 3461 §4.1).
	srv.EnableDSN = false
	srv.ErrorLog = errorLog{s}
	s.srv = srv
	if rd, ok := opts.Deliverer.(RemoteDeliverer); ok && rd.QueuesRemote() {
		s.queuesRemote = true
	}
	s.tlsConfig = opts.TLSConfig
	return s, nil
}

// Panics is the number of panics recovered in sessions (tests fail on any).
func (s *Server) Panics() int64 { return s.panics.Load() }

// Serve accepts connections on l until l is closed or Shutdown is called;
// it returns nil after Shutdown. l must be a plain listener (STARTTLS only).
func (s *Server) Serve(l net.Listener) error {
	ll := &listener{Listener: connlimit.Wrap(plainBelowTLS{l}, s.maxConns, s.maxPerIP, s.rejectBusy), s: s}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		_ = l.Close()
		return nil
	}
	s.listeners[ll] = struct{}{}
	s.mu.Unlock()

	err := s.srv.Serve(ll)
	s.mu.Lock()
	delete(s.listeners, ll)
	stopping := s.stopping
	s.mu.Unlock()
	if stopping {
		return nil
	}
	return err
}

// Shutdown stops accepting, tells idle sessions "421" and closes them, lets
// sessions in a mail transaction finish it (each is closed after the reply
// that ends it) until ctx ends, then closes whatever is left and returns
// ctx.Err(). Deliveries under way at that moment stop before their next copy
// and are undone (the client got no 250).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.stopping {
		s.stopping = true
		close(s.closing)
	}
	for l := range s.listeners {
		_ = l.Close()
	}
	s.mu.Unlock()

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		conns := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		if len(conns) == 0 {
			s.inflight.Wait()
			return nil
		}
		for _, c := range conns {
			if !c.isBusy() {
				c.goodbye()
			}
		}
		select {
		case <-ctx.Done():
			s.cancel()
			_ = s.srv.Close() // go-smtp closes its conns and sessions
			for _, c := range conns {
				_ = c.Close()
			}
			waitTimeout(&s.inflight, 5*time.Second)
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

func (s *Server) shuttingDown() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// rejectBusy answers a connection over the connection limits.
func (s *Server) rejectBusy(c net.Conn, reason string) {
	s.logger.Info("connection refused", "remote", c.RemoteAddr().String(), "reason", reason)
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if isImplicitTLS(c) && s.tlsConfig != nil {
		tc := tls.Server(c, s.tlsConfig)
		defer tc.Close()
		c = tc
	}
	_, _ = fmt.Fprintf(c, "421 4.7.0 %s Error: %s, try again later\r\n", s.hostname, reason)
	_ = c.Close()
}

// NewSession implements gosmtp.Backend: called at the first EHLO/HELO of a
// connection and again after STARTTLS.
func (s *Server) NewSession(sc *gosmtp.Conn) (gosmtp.Session, error) {
	c := connOf(sc.Conn())
	if c == nil {
		s.logger.Error("session on an untracked connection", "remote", sc.Conn().RemoteAddr().String())
		r, _ := toReply(errInternal(), "")
		return nil, r
	}
	c.beginSession(sc.Conn())
	if s.shuttingDown() {
		c.closeAfterWrite.Store(true)
		r, _ := toReply(errShuttingDown(), c.cid)
		return nil, r
	}
	_, isTLS := sc.TLSConnectionState()
	c.log.Debug("session", "kind", s.kind.String(), "helo", sc.Hostname(), "tls", isTLS)
	sess := &session{srv: s, c: c, sc: sc, kind: s.kind}
	if s.sub != nil {
		return submissionSession{sess}, nil // offers AUTH (sasl.go)
	}
	return sess, nil
}

// listener registers every accepted connection.
type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := l.s.track(nc)
		if !isImplicitTLS(nc) {
			return c, nil
		}
		if l.s.tlsConfig == nil {
			c.log.Error("implicit-TLS connection without a TLS configuration")
			_ = c.Close()
			continue
		}
		// TLS on top of conn, so go-smtp sees a *tls.Conn (tls.go).
		tc := tls.Server(c, l.s.tlsConfig)
		c.mu.Lock()
		c.implicitTLS = tc
		c.mu.Unlock()
		return tc, nil
	}
}

func (s *Server) track(nc net.Conn) *conn {
	c := &conn{Conn: nc, srv: s, remoteIP: connlimit.RemoteIP(nc), start: time.Now()}
	c.log, c.cid = cid.With(s.logger)
	c.log = c.log.With("remote", c.remoteIP.String())
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	c.log.Debug("connect")
	return c
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// errorLog receives go-smtp's internal messages: recovered panics (counted,
// logged as errors) and connection errors (debug).
type errorLog struct{ s *Server }

func (e errorLog) Printf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.HasPrefix(msg, "panic") {
		e.s.panics.Add(1)
		e.s.logger.Error("panic in SMTP session", "detail", msg)
		return
	}
	e.s.logger.Debug("go-smtp", "msg", strings.TrimSpace(msg))
}

func (e errorLog) Println(v ...any) { e.Printf("%s", fmt.Sprintln(v...)) }
