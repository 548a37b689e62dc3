package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Reply is one SMTP reply of a remote server.
type Reply struct {
	Code int    // 250, 451, 550, ...
	Text string // enhanced code and text, lines joined by "; "
}

// Permanent reports a 5xx reply.
func (r Reply) Permanent() bool { return r.Code >= 500 }

// OK reports a 2xx reply.
func (r Reply) OK() bool { return r.Code >= 200 && r.Code < 300 }

func (r Reply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Text) }

// replyError is a failure of the whole session or transaction that carries the
// remote reply (a connection-level error has Code 0).
type replyError struct {
	Stage string // "greeting", "EHLO", "MAIL", "DATA", ...
	Reply Reply
	Err   error
}

func (e *replyError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Stage, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Stage, e.Reply)
}

func (e *replyError) Unwrap() error { return e.Err }

// Permanent reports whether retrying cannot help.
func (e *replyError) Permanent() bool { return e.Err == nil && e.Reply.Permanent() }

// client is a minimal SMTP client for relaying: EHLO, opportunistic
// STARTTLS, AUTH PLAIN (smarthost), and transactions with PIPELINING
// (RFC 2920) when offered. It exists because go-smtp's client cannot ask for
// STARTTLS only when the server offers it, and reports only the first failing
// recipient of a pipelined batch.
type client struct {
	conn    net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	ext     map[string]string
	host    string // remote host name (for TLS SNI and logs)
	tls     bool
	timeout time.Duration
	// used counts transactions, so connections are not reused forever.
	used     int
	lastUsed time.Time
	// reused: taken from the pool; the next transaction starts with RSET,
	// which also tells whether the connection still works.
	reused bool
	// stopped: the relay is shutting down; every read and write fails at
	// once and the connection is not pooled again (set by stopOn).
	stopped atomic.Bool
}

// stopOn makes the transactions on c fail at once when ctx ends (shutdown);
// call the returned function when the transaction is over.
func (c *client) stopOn(ctx context.Context) (release func()) {
	stop := context.AfterFunc(ctx, func() {
		c.stopped.Store(true)
		_ = c.conn.SetDeadline(time.Unix(1, 0))
	})
	return func() { stop() }
}

// errStale is a cached connection that turned out to be closed (the RSET
// before the transaction got no reply): the caller redials.
var errStale = errors.New("cached connection is gone")

// maxReplyLines bounds a multi-line reply so a hostile server cannot make us
// read forever.
const maxReplyLines = 100

func newClient(ctx context.Context, conn net.Conn, host, helo string, tlsConf *tls.Config, timeout time.Duration) (*client, error) {
	c := &client{conn: conn, host: host, timeout: timeout}
	c.r = bufio.NewReaderSize(conn, 4096)
	c.w = bufio.NewWriterSize(conn, 32*1024)
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	rep, err := c.read()
	if err != nil {
		return nil, &replyError{Stage: "greeting", Err: err}
	}
	if !rep.OK() {
		return nil, &replyError{Stage: "greeting", Reply: rep}
	}
	if err := c.ehlo(helo); err != nil {
		return nil, err
	}
	if _, ok := c.ext["STARTTLS"]; ok && tlsConf != nil {
		rep, err := c.cmd("STARTTLS")
		if err != nil {
			return nil, &replyError{Stage: "STARTTLS", Err: err}
		}
		if rep.Code == 220 {
			tc := tlsConf.Clone()
			if tc.ServerName == "" {
				tc.ServerName = host
			}
			tconn := tls.Client(conn, tc)
			if err := tconn.HandshakeContext(ctx); err != nil {
				return nil, &replyError{Stage: "STARTTLS", Err: err}
			}
			c.conn = tconn
			c.r = bufio.NewReaderSize(tconn, 4096)
			c.w = bufio.NewWriterSize(tconn, 32*1024)
			c.tls = true
			if err := c.ehlo(helo); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

func (c *client) ehlo(helo string) error {
	rep, lines, err := c.cmdLines("EHLO " + helo)
	if err != nil {
		return &replyError{Stage: "EHLO", Err: err}
	}
	if !rep.OK() {
		return &replyError{Stage: "EHLO", Reply: rep}
	}
	c.ext = make(map[string]string)
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

func (c *client) deadline() {
	if c.stopped.Load() {
		_ = c.conn.SetDeadline(time.Unix(1, 0))
		return
	}
	if c.timeout > 0 {
		_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	}
}

// read reads one possibly multi-line reply.
func (c *client) read() (Reply, error) {
	rep, _, err := c.readLines()
	return rep, err
}

func (c *client) readLines() (Reply, []string, error) {
	var texts []string
	for i := 0; i < maxReplyLines; i++ {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return Reply{}, nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return Reply{}, nil, fmt.Errorf("malformed reply %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 {
			return Reply{}, nil, fmt.Errorf("malformed reply %q", line)
		}
		more := len(line) > 3 && line[3] == '-'
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		texts = append(texts, text)
		if !more {
			return Reply{Code: code, Text: strings.Join(texts, "; ")}, texts, nil
		}
	}
	return Reply{}, nil, errors.New("reply has too many lines")
}

func (c *client) cmd(line string) (Reply, error) {
	rep, _, err := c.cmdLines(line)
	return rep, err
}

func (c *client) cmdLines(line string) (Reply, []string, error) {
	c.deadline()
	if _, err := c.w.WriteString(line + "\r\n"); err != nil {
		return Reply{}, nil, err
	}
	if err := c.w.Flush(); err != nil {
		return Reply{}, nil, err
	}
	return c.readLines()
}

// auth performs AUTH PLAIN (RFC 4616) with an initial response.
func (c *client) auth(user, pass string) error {
	if !c.tls {
		return &replyError{Stage: "AUTH", Err: errors.New("smarthost offers no STARTTLS; refusing to send the password in clear")}
	}
	resp := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	rep, err := c.cmd("AUTH PLAIN " + resp)
	if err != nil {
		return &replyError{Stage: "AUTH", Err: err}
	}
	if rep.Code != 235 {
		return &replyError{Stage: "AUTH", Reply: rep}
	}
	return nil
}

// send runs one transaction: MAIL, RCPT for each recipient, DATA. It returns
// one reply per recipient (the RCPT refusal, or the reply to the data). An
// error means the transaction failed as a whole (MAIL refused, connection
// lost); the connection should then be dropped unless it is a *replyError
// at the MAIL stage.
func (c *client) send(from string, rcpts []string, size int64, msg io.Reader) ([]Reply, error) {
	c.deadline()
	mail := "MAIL FROM:<" + from + ">"
	if _, ok := c.ext["8BITMIME"]; ok {
		mail += " BODY=8BITMIME"
	}
	if _, ok := c.ext["SIZE"]; ok && size > 0 {
		mail += " SIZE=" + strconv.FormatInt(size, 10)
	}
	_, pipelining := c.ext["PIPELINING"]
	replies := make([]Reply, len(rcpts))
	reused := c.reused
	c.reused = false
	if reused && !pipelining {
		if err := c.reset(); err != nil {
			return nil, fmt.Errorf("%w: %v", errStale, err)
		}
	}
	if pipelining {
		// RFC 2920 §3.1: MAIL, the RCPTs and DATA go in one batch, after
		// the RSET of a reused connection (RSET may be pipelined too).
		if reused {
			c.w.WriteString("RSET\r\n")
		}
		c.w.WriteString(mail + "\r\n")
		for _, r := range rcpts {
			c.w.WriteString("RCPT TO:<" + r + ">\r\n")
		}
		c.w.WriteString("DATA\r\n")
		if err := c.w.Flush(); err != nil {
			if reused {
				return nil, fmt.Errorf("%w: %v", errStale, err)
			}
			return nil, err
		}
		if reused {
			if rrep, err := c.read(); err != nil || !rrep.OK() {
				return nil, fmt.Errorf("%w: RSET: %v %v", errStale, rrep, err)
			}
		}
		mrep, err := c.read()
		if err != nil {
			return nil, err
		}
		accepted := 0
		for i := range rcpts {
			if replies[i], err = c.read(); err != nil {
				return nil, err
			}
			if replies[i].OK() {
				accepted++
			}
		}
		drep, err := c.read()
		if err != nil {
			return nil, err
		}
		if !mrep.OK() {
			return nil, &replyError{Stage: "MAIL", Reply: mrep}
		}
		if accepted == 0 {
			if drep.Code == 354 { // a server that said 354 with no recipient wants a body
				c.w.WriteString(".\r\n")
				_ = c.w.Flush()
				_, _ = c.read()
			}
			return replies, nil
		}
		if drep.Code != 354 {
			return nil, &replyError{Stage: "DATA", Reply: drep}
		}
	} else {
		rep, err := c.cmd(mail)
		if err != nil {
			return nil, err
		}
		if !rep.OK() {
			return nil, &replyError{Stage: "MAIL", Reply: rep}
		}
		accepted := 0
		for i, r := range rcpts {
			if replies[i], err = c.cmd("RCPT TO:<" + r + ">"); err != nil {
				return nil, err
			}
			if replies[i].OK() {
				accepted++
			}
		}
		if accepted == 0 {
			if _, err := c.cmd("RSET"); err != nil {
				return nil, err
			}
			return replies, nil
		}
		rep, err = c.cmd("DATA")
		if err != nil {
			return nil, err
		}
		if rep.Code != 354 {
			return nil, &replyError{Stage: "DATA", Reply: rep}
		}
	}
	if err := writeDotStuffed(c.w, msg, c.deadline); err != nil {
		return nil, err
	}
	c.deadline()
	rep, err := c.read()
	if err != nil {
		return nil, err
	}
	for i := range replies {
		if replies[i].OK() {
			replies[i] = rep
		}
	}
	c.used++
	c.lastUsed = time.Now()
	return replies, nil
}

// reset prepares a cached connection for the next transaction.
func (c *client) reset() error {
	rep, err := c.cmd("RSET")
	if err != nil {
		return err
	}
	if !rep.OK() {
		return &replyError{Stage: "RSET", Reply: rep}
	}
	return nil
}

func (c *client) quit() {
	_ = c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.cmd("QUIT")
	_ = c.conn.Close()
}

// msgReaders are writeDotStuffed's buffers, reused across messages.
var msgReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// writeDotStuffed sends the message with CRLF line ends, leading dots doubled,
// and the final ".\r\n" (RFC 5321 §4.5.2). extend pushes the deadline on.
func writeDotStuffed(w *bufio.Writer, msg io.Reader, extend func()) error {
	br := msgReaders.Get().(*bufio.Reader)
	br.Reset(msg)
	defer func() { br.Reset(nil); msgReaders.Put(br) }()
	lineStart := true
	for n := 0; ; n++ {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if n%1024 == 0 {
				extend()
			}
			if lineStart && line[0] == '.' {
				w.WriteByte('.')
			}
			full := line[len(line)-1] == '\n'
			if full {
				line = line[:len(line)-1]
				if len(line) > 0 && line[len(line)-1] == '\r' {
					line = line[:len(line)-1]
				}
			}
			w.Write(line)
			if full {
				w.WriteString("\r\n")
			}
			lineStart = full
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if !lineStart {
		w.WriteString("\r\n")
	}
	w.WriteString(".\r\n")
	return w.Flush()
}
