package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/postyard-mail/postyard/internal/cid"
	"github.com/postyard-mail/postyard/internal/connlimit"
)

// state is the session state of RFC 1939 §3.
type state uint8

const (
	stateAuthorization state = iota
	stateTransaction
	stateUpdate
)

func (s state) String() string {
	switch s {
	case stateAuthorization:
		return "AUTHORIZATION"
	case stateTransaction:
		return "TRANSACTION"
	case stateUpdate:
		return "UPDATE"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// stateSet is a set of states in which a command is valid.
type stateSet uint8

func states(ss ...state) stateSet {
	var set stateSet
	for _, s := range ss {
		set |= 1 << s
	}
	return set
}

func (set stateSet) has(s state) bool { return set&(1<<s) != 0 }

// handshakeTimeout bounds a TLS handshake (implicit TLS or STLS).
const handshakeTimeout = 30 * time.Second

// conn is one POP3 session.
type conn struct {
	srv    *Server            // set by newConn; read-only
	cid    string             // set by newConn; read-only
	log    *slog.Logger       // set by newConn; read-only; carries cid
	ctx    context.Context    // set by newConn; ends when the session is closed
	cancel context.CancelFunc // set by newConn; called by close
	remote string             // set by newConn; the peer address, for logs

	// loopback says the peer is on 127.0.0.0/8 or ::1; set by newConn.
	loopback bool

	mu     sync.Mutex // guards nc (when read from other goroutines), idle, closed
	nc     net.Conn   // the connection; replaced by STLS (under mu)
	idle   bool       // waiting for a command: Shutdown may close it now
	closed bool       // close has run

	// The fields below belong to the session goroutine alone.
	r            *bufio.Reader // reads nc; Reset by STLS
	w            *bufio.Writer // writes nc through deadlineWriter; Reset by STLS
	isTLS        bool          // nc is a *tls.Conn (implicit TLS or after STLS)
	state        state
	pendingUser  string    // the name of a USER awaiting its PASS
	authFailures int       // failed logins so far
	badCommands  int       // -ERR replies to malformed, unknown or misplaced commands
	executed     int       // commands executed (a first command that is not POP3 drops the session)
	secretLine   bool      // the next line read is a SASL response: keep it out of the trace
	user         string    // canonical user address, once logged in
	drop         *maildrop // the locked maildrop, in TRANSACTION and UPDATE
}

func newConn(s *Server, nc net.Conn) *conn {
	log, id := cid.With(s.log)
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:      s,
		cid:      id,
		log:      log,
		ctx:      ctx,
		cancel:   cancel,
		remote:   nc.RemoteAddr().String(),
		loopback: connlimit.IsLoopback(nc),
		nc:       nc,
	}
	_, c.isTLS = nc.(*tls.Conn)
	c.r = bufio.NewReaderSize(nc, maxLine)
	c.w = bufio.NewWriterSize(deadlineWriter{c}, 32<<10)
	return c
}

// deadlineWriter writes to the session's current connection, each write
// bounded by writeTimeout, so a client that stops reading is dropped.
type deadlineWriter struct{ c *conn }

func (d deadlineWriter) Write(p []byte) (int, error) {
	_ = d.c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	return d.c.nc.Write(p)
}

// close ends the session's connection; safe from any goroutine, idempotent.
func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		_ = c.nc.Close()
		c.cancel()
	}
}

// closeIfIdle closes the connection if it waits for a command; a busy session
// notices the shutdown before it reads its next command.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	idle := c.idle
	c.mu.Unlock()
	if idle {
		c.close()
	}
}

// setIdle marks the session as waiting for a command (or not). It returns
// false when it should not wait because the server is shutting down.
func (c *conn) setIdle(idle bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if idle && (c.srv.sessions.Closing() || c.closed) {
		return false
	}
	c.idle = idle
	return true
}

// serve runs the session until QUIT, an error, a timeout or shutdown.
func (c *conn) serve() {
	start := time.Now()
	defer c.srv.sessions.Done(c)
	defer c.close()
	defer c.releaseMaildrop()
	defer func() {
		if r := recover(); r != nil {
			c.srv.panics.Add(1)
			c.log.Error("pop3 session panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()

	c.log.Debug("pop3 connection", "remote", c.remote, "tls", c.isTLS)
	if tc, ok := c.nc.(*tls.Conn); ok {
		if err := c.handshake(tc); err != nil {
			c.log.Info("pop3 TLS handshake failed", "remote", c.remote, "err", err)
			return
		}
	}
	c.reply("+OK " + c.srv.opts.Hostname + " Postyard POP3 server ready")
	for {
		line, err := c.readCommandLine()
		if err != nil {
			c.endOnReadError(err)
			break
		}
		if !c.execute(line) {
			break
		}
	}
	c.releaseMaildrop()
	if c.w.Flush() == nil && !c.srv.sessions.Closing() {
		c.lingeringClose()
	}
	c.log.Debug("pop3 connection closed", "user", c.user, "duration", time.Since(start).Round(time.Millisecond))
}

// lingerTimeout bounds the wait for the client to close after the server has.
const lingerTimeout = 2 * time.Second

// lingeringClose half-closes the connection and reads what the client still
// sends for a moment before the full close: closing a socket with unread input
// makes the kernel send a reset, which can destroy the last reply before the
// client has read it (net/http's closeWriteAndWait does the same).
func (c *conn) lingeringClose() {
	type closeWriter interface{ CloseWrite() error }
	nc := c.nc
	for {
		if cw, ok := nc.(closeWriter); ok {
			if cw.CloseWrite() != nil {
				return
			}
			break
		}
		u, ok := nc.(interface{ Unwrap() net.Conn })
		if !ok {
			return
		}
		nc = u.Unwrap()
	}
	if !c.setIdle(true) { // Shutdown may cut the wait short
		return
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.CopyN(io.Discard, c.nc, 64<<10)
}

func (c *conn) handshake(tc *tls.Conn) error {
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	err := tc.HandshakeContext(c.ctx)
	_ = tc.SetDeadline(time.Time{})
	return err
}

// Errors of readLine.
var (
	errShutdown    = errors.New("server shutting down")
	errLineTooLong = errors.New("line too long")
)

// longLineError is a command line over MaxCommandLine but within maxLine:
// answered with -ERR, the session goes on.
type longLineError struct{ n int }

func (e longLineError) Error() string {
	return fmt.Sprintf("command line of %d octets is longer than %d", e.n, MaxCommandLine)
}

// readCommandLine reads one command line, answering -ERR to (and skipping)
// lines over MaxCommandLine.
func (c *conn) readCommandLine() (string, error) {
	for {
		line, err := c.readLine()
		var long longLineError
		if errors.As(err, &long) {
			c.log.Info("pop3 command line too long", "octets", long.n)
			if !c.replyError(badf("command line too long (%d octets; the limit is %d)", long.n, MaxCommandLine)) {
				return "", errEnd // too many bad commands: answered and dropped
			}
			continue
		}
		return line, err
	}
}

// readLine reads one line, without its line end (CRLF or a bare LF). Replies
// are flushed first unless pipelined input is already waiting (RFC 2449 §6.6).
func (c *conn) readLine() (string, error) {
	if c.r.Buffered() == 0 {
		if err := c.w.Flush(); err != nil {
			return "", err
		}
	}
	if !c.setIdle(true) {
		return "", errShutdown
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.idleTimeout))
	b, err := c.r.ReadSlice('\n')
	c.setIdle(false)
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	n := len(b)
	b = b[:n-1]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	line := string(b)
	if c.secretLine {
		c.secretLine = false
		c.trace("C: <SASL response hidden>")
	} else {
		c.trace("C: " + redact(line))
	}
	if n > MaxCommandLine {
		return line, longLineError{n}
	}
	return line, nil
}

// endOnReadError says goodbye, when there is something to say, to a session
// whose next command could not be read.
func (c *conn) endOnReadError(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errEnd):
	case errors.Is(err, errShutdown) || c.srv.sessions.Closing():
		c.log.Debug("pop3 session closed by shutdown")
	case errors.Is(err, errLineTooLong):
		c.log.Info("pop3 line too long: dropping the connection", "limit", maxLine)
		c.reply(fmt.Sprintf("-ERR line too long (over %d octets): closing the connection", maxLine))
	case errors.As(err, &ne) && ne.Timeout():
		c.log.Info("pop3 autologout after inactivity", "idle_timeout", c.srv.idleTimeout)
		c.reply(fmt.Sprintf("-ERR autologout: idle for more than %s", c.srv.idleTimeout))
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
		c.log.Debug("pop3 client closed the connection")
	default:
		c.log.Info("pop3 read failed", "err", err)
	}
}

// redact hides passwords and SASL responses from the transcript.
func redact(line string) string {
	verb, rest, _ := strings.Cut(line, " ")
	switch strings.ToUpper(verb) {
	case "PASS":
		return verb + " <hidden>"
	case "AUTH":
		mech, resp, _ := strings.Cut(rest, " ")
		if resp != "" {
			return verb + " " + mech + " <hidden>"
		}
	}
	return line
}

func (c *conn) trace(msg string) {
	if c.log.Enabled(c.ctx, LevelTrace) {
		c.log.Log(c.ctx, LevelTrace, msg)
	}
}

// reply writes one response line (buffered until the next read).
func (c *conn) reply(line string) {
	c.trace("S: " + line)
	_, _ = c.w.WriteString(line)
	_, _ = c.w.WriteString("\r\n")
}

// ok writes a positive single-line response.
func (c *conn) ok(format string, args ...any) {
	c.reply("+OK " + fmt.Sprintf(format, args...))
}

// dataLine writes one line of a multi-line response (no dot-stuffing: for
// lines that never start with ".").
func (c *conn) dataLine(line string) {
	_, _ = c.w.WriteString(line)
	_, _ = c.w.WriteString("\r\n")
}

// endData ends a multi-line response.
func (c *conn) endData() { _, _ = c.w.WriteString(".\r\n") }

// replyErr is a negative response (RFC 1939 -ERR, with an RFC 2449 response code).
type replyErr struct {
	code string // "AUTH", "IN-USE", "SYS/TEMP", "SYS/PERM" or ""
	text string
	bad  bool // a malformed, unknown or misplaced command: counts toward maxBadCommands
	drop bool // close the connection after the reply
}

func (e *replyErr) Error() string { return e.line() }

func (e *replyErr) line() string {
	if e.code != "" {
		return "-ERR [" + e.code + "] " + e.text
	}
	return "-ERR " + e.text
}

// errorf is a negative response about a valid command that cannot be done.
func errorf(format string, args ...any) *replyErr {
	return &replyErr{text: fmt.Sprintf(format, args...)}
}

// badf is a negative response to a command that should not have been sent.
func badf(format string, args ...any) *replyErr {
	return &replyErr{text: fmt.Sprintf(format, args...), bad: true}
}

// codef is a negative response with a response code.
func codef(code, format string, args ...any) *replyErr {
	return &replyErr{code: code, text: fmt.Sprintf(format, args...)}
}

// errEnd ends the session after the reply already written (QUIT).
var errEnd = errors.New("session ends")

// dropError ends the session without a reply: the connection failed, or a
// multi-line response cannot be completed.
type dropError struct{ err error }

func (e dropError) Error() string { return e.err.Error() }
func (e dropError) Unwrap() error { return e.err }

// handler runs one command in a state its entry allows.
type handler func(c *conn, cmd Command) error

// command is one entry of the command table.
type command struct {
	states stateSet // the states in which it is valid
	run    handler
}

var (
	authOnly  = states(stateAuthorization)
	transOnly = states(stateTransaction)
	authTrans = states(stateAuthorization, stateTransaction)
)

// commands is the command table (read-only).
var commands = map[string]command{
	"CAPA": {authTrans, (*conn).cmdCapa}, // RFC 2449 §5
	"QUIT": {authTrans, (*conn).cmdQuit}, // RFC 1939 §5, §6
	"USER": {authOnly, (*conn).cmdUser},  // RFC 1939 §7
	"PASS": {authOnly, (*conn).cmdPass},  // RFC 1939 §7
	"AUTH": {authOnly, (*conn).cmdAuth},  // RFC 5034
	"STLS": {authOnly, (*conn).cmdStls},  // RFC 2595 §4
	"STAT": {transOnly, (*conn).cmdStat}, // RFC 1939 §5
	"LIST": {transOnly, (*conn).cmdList}, // RFC 1939 §5
	"RETR": {transOnly, (*conn).cmdRetr}, // RFC 1939 §5
	"DELE": {transOnly, (*conn).cmdDele}, // RFC 1939 §5
	"NOOP": {transOnly, (*conn).cmdNoop}, // RFC 1939 §5
	"RSET": {transOnly, (*conn).cmdRset}, // RFC 1939 §5
	"TOP":  {transOnly, (*conn).cmdTop},  // RFC 1939 §7
	"UIDL": {transOnly, (*conn).cmdUidl}, // RFC 1939 §7
}

// execute runs one command line and reports whether the session goes on.
func (c *conn) execute(line string) bool {
	first := c.executed == 0
	c.executed++
	cmd, err := ParseCommand(line)
	if err != nil {
		if first {
			return c.replyError(&replyErr{text: "this is a POP3 server: " + err.Error(), drop: true})
		}
		return c.replyError(badf("%v", err))
	}
	entry, ok := commands[cmd.Verb]
	if !ok {
		if first {
			// Not a POP3 client (an HTTP or SMTP request sent here?): drop it
			// before it can make us echo anything (cross-protocol attacks).
			return c.replyError(&replyErr{text: fmt.Sprintf("unknown command %q: this is a POP3 server", cmd.Verb), drop: true})
		}
		return c.replyError(badf("unknown command %q", cmd.Verb))
	}
	if !entry.states.has(c.state) {
		hint := ""
		if c.state == stateAuthorization {
			hint = " (log in first)"
		}
		return c.replyError(badf("%s is not valid in the %s state%s", cmd.Verb, c.state, hint))
	}
	return c.replyError(entry.run(c, cmd))
}

// replyError turns a handler's result into the reply (EXAMPLES 9) and
// reports whether the session goes on.
func (c *conn) replyError(err error) bool {
	if err == nil {
		return true
	}
	if errors.Is(err, errEnd) {
		return false
	}
	var drop dropError
	if errors.As(err, &drop) {
		var ne net.Error
		if !errors.As(drop.err, &ne) && !errors.Is(drop.err, net.ErrClosed) && !errors.Is(drop.err, io.EOF) {
			c.log.Error("pop3 session dropped", "err", drop.err)
		} else {
			c.log.Debug("pop3 connection failed", "err", drop.err)
		}
		return false
	}
	var re *replyErr
	if !errors.As(err, &re) {
		c.log.Error("pop3 command failed", "err", err)
		re = codef("SYS/TEMP", "internal server error, try again later (cid %s)", c.cid)
	}
	if re.bad {
		c.badCommands++
		if c.badCommands >= maxBadCommands {
			c.log.Info("pop3 too many bad commands: dropping the connection", "count", c.badCommands)
			re = &replyErr{code: re.code, text: re.text + "; too many bad commands, closing the connection", drop: true}
		}
	}
	c.reply(re.line())
	return !re.drop
}
