package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/postyard-mail/postyard/internal/cid"
)

// The placeholder serves a protocol whose front end is not built yet: it
// greets, answers QUIT (SMTP, POP3) or LOGOUT (IMAP), and refuses every
// other command with a "not yet implemented" error naming the connection id.

const (
	placeholderIdleTimeout = 5 * time.Minute
	placeholderMaxLine     = 4096 // longer lines end the session
	placeholderMaxErrors   = 10   // refused commands before the session ends
)

// lineProto is the behaviour of one line-based placeholder protocol.
type lineProto struct {
	greeting func(hostname string) string
	// reply answers one command line (without CRLF); quit ends the session.
	reply func(line, id, hostname string) (out string, quit bool)
	// goodbye is written to sessions still open at shutdown ("" for none).
	goodbye func(hostname string) string
	// tooLong is written before closing a session whose line is too long.
	tooLong string
}

var smtpPlaceholder = lineProto{
	greeting: func(h string) string { return "220 " + h + " ESMTP Postyard\r\n" },
	reply: func(line, id, h string) (string, bool) {
		if strings.EqualFold(strings.TrimSpace(line), "QUIT") {
			return "221 2.0.0 " + h + " closing connection\r\n", true
		}
		return "502 5.5.1 Not yet implemented (cid " + id + ")\r\n", false
	},
	goodbye: func(h string) string { return "421 4.3.2 " + h + " Service shutting down\r\n" },
	tooLong: "500 5.5.2 Line too long\r\n",
}

var imapPlaceholder = lineProto{
	greeting: func(string) string { return "* OK [CAPABILITY IMAP4rev1] Postyard ready\r\n" },
	reply: func(line, id, _ string) (string, bool) {
		tag, rest, ok := strings.Cut(line, " ")
		if !ok || !validIMAPTag(tag) {
			return "* BAD Missing or invalid tag (cid " + id + ")\r\n", false
		}
		cmd, _, _ := strings.Cut(rest, " ")
		if strings.EqualFold(cmd, "LOGOUT") {
			return "* BYE Postyard logging out\r\n" + tag + " OK LOGOUT completed\r\n", true
		}
		return tag + " BAD Not yet implemented (cid " + id + ")\r\n", false
	},
	goodbye: func(string) string { return "* BYE Server shutting down\r\n" },
	tooLong: "* BYE Line too long\r\n",
}

var pop3Placeholder = lineProto{
	greeting: func(string) string { return "+OK Postyard ready\r\n" },
	reply: func(line, id, _ string) (string, bool) {
		if strings.EqualFold(strings.TrimSpace(line), "QUIT") {
			return "+OK Postyard signing off\r\n", true
		}
		return "-ERR Not yet implemented (cid " + id + ")\r\n", false
	},
	// POP3 has no unsolicited responses: a session at shutdown is just closed.
	goodbye: func(string) string { return "" },
	tooLong: "-ERR Line too long\r\n",
}

// validIMAPTag reports whether tag is an IMAP tag: ASTRING-CHARs except "+" (RFC 9051 §9).
func validIMAPTag(tag string) bool {
	if tag == "" {
		return false
	}
	for _, r := range tag {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`(){%*"\+]`, r) {
			return false
		}
	}
	return true
}

// placeholder is a line-based Service.
type placeholder struct {
	proto    string
	p        lineProto
	hostname string
	logger   *slog.Logger

	mu        sync.Mutex // guards the fields below
	listeners map[net.Listener]struct{}
	sessions  map[*phSession]struct{}
	closing   bool
	wg        sync.WaitGroup // one per running session
}

var _ Service = (*placeholder)(nil)

func newPlaceholder(proto string, p lineProto, d *deps) *placeholder {
	return &placeholder{
		proto: proto, p: p, hostname: d.cfg.Hostname, logger: d.log(proto),
		listeners: make(map[net.Listener]struct{}), sessions: make(map[*phSession]struct{}),
	}
}

// Serve accepts connections on l until l is closed.
func (s *placeholder) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return l.Close()
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if temporaryAcceptError(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logger.Warn("accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("%s: accept: %w", s.proto, err)
		}
		backoff = 0
		sess := &phSession{conn: c}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			_ = c.Close()
			continue
		}
		s.sessions[sess] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(sess)
	}
}

// temporaryAcceptError reports accept errors worth retrying after a pause:
// running out of descriptors or memory, or a connection aborted before accept.
func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Shutdown stops accepting, tells the sessions still open goodbye and closes them.
// Placeholder sessions hold no transaction, so there is nothing to drain.
func (s *placeholder) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		_ = l.Close()
	}
	for sess := range s.sessions {
		sess.close(s.p.goodbye(s.hostname))
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// phSession is one placeholder connection.
type phSession struct {
	conn net.Conn   // set at accept; closing it ends the read loop
	wmu  sync.Mutex // serializes writes of the session and of Shutdown
}

func (c *phSession) write(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if s == "" {
		return nil
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := c.conn.Write([]byte(s))
	return err
}

// close writes last (best effort, bounded) and closes the connection.
func (c *phSession) close(last string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if last != "" {
		_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.conn.Write([]byte(last))
	}
	_ = c.conn.Close()
}

func (s *placeholder) serveConn(sess *phSession) {
	defer s.wg.Done()
	logger, id := cid.With(s.logger)
	logger = logger.With("remote", sess.conn.RemoteAddr().String(), "tls", isTLS(sess.conn))
	start := time.Now()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
		_ = sess.conn.Close()
		logger.Info("connection closed", "duration", time.Since(start).Round(time.Millisecond))
	}()
	defer func() {
		if r := recover(); r != nil {
			logger.Error("panic in session", "panic", r)
		}
	}()
	logger.Info("connection opened", "placeholder", true)
	if tc, ok := sess.conn.(*tls.Conn); ok {
		_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.Handshake(); err != nil {
			logger.Info("TLS handshake failed", "err", err)
			return
		}
	}
	if err := sess.write(s.p.greeting(s.hostname)); err != nil {
		logger.Info("write failed", "err", err)
		return
	}
	r := bufio.NewReaderSize(sess.conn, placeholderMaxLine)
	errs := 0
	for {
		_ = sess.conn.SetReadDeadline(time.Now().Add(placeholderIdleTimeout))
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			logger.Info("line too long; closing")
			_ = sess.write(s.p.tooLong)
			return
		}
		if err != nil {
			if len(line) > 0 || !isClosedOrEOF(err) {
				logger.Info("read failed", "err", err)
			}
			return
		}
		text := strings.TrimRight(string(line), "\r\n")
		out, quit := s.p.reply(text, id, s.hostname)
		logger.Debug("command", "verb", verb(text), "quit", quit)
		if err := sess.write(out); err != nil {
			logger.Info("write failed", "err", err)
			return
		}
		if quit {
			return
		}
		if errs++; errs >= placeholderMaxErrors {
			logger.Info("too many refused commands; closing")
			return
		}
	}
}

// verb is the first word or two of a command line, for the log (never arguments,
// which may hold credentials).
func verb(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return ""
	}
	v := strings.ToUpper(f[0])
	if len(f) > 1 && len(v) <= 8 {
		v += " " + strings.ToUpper(f[1]) // an IMAP tag then its command
	}
	if len(v) > 32 {
		v = v[:32]
	}
	return v
}

func isTLS(c net.Conn) bool {
	_, ok := c.(*tls.Conn)
	return ok
}

func isClosedOrEOF(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}

// httpPlaceholder answers every request with 404 until the autoconfig
// front end exists.
type httpPlaceholder struct {
	srv *http.Server
}

var _ Service = (*httpPlaceholder)(nil)

func newHTTPPlaceholder(proto string, d *deps) *httpPlaceholder {
	logger := d.log(proto)
	type cidKey struct{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := r.Context().Value(cidKey{}).(string)
		logger.Info("request", cid.Key, id, "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "status", http.StatusNotFound)
		http.NotFound(w, r)
	})
	return &httpPlaceholder{srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelInfo),
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, cidKey{}, cid.New())
		},
	}}
}

func (s *httpPlaceholder) Serve(l net.Listener) error {
	if err := s.srv.Serve(l); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

func (s *httpPlaceholder) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	return err
}
