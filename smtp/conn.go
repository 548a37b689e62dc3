package smtp

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// conn is one client connection, below go-smtp: go-smtp reads and writes it
// (through a tls.Conn after STARTTLS). It holds what outlives go-smtp's
// sessions (STARTTLS replaces the session) and implements, at the byte
// level, what go-smtp has no hook for: timeouts renewed on every read, with
// the data timeout during DATA/BDAT; closing the connection right after a
// given reply; and saying goodbye to an idle client at shutdown.
type conn struct {
	net.Conn // the accepted connection (connlimit's, which frees its slot on Close)

	// Set at accept, read-only after.
	srv      *Server
	cid      string
	remoteIP netip.Addr
	start    time.Time
	log      *slog.Logger

	// Flags shared by go-smtp's goroutine, the BDAT Data goroutine and Shutdown.
	inData          atomic.Bool  // a message is being received: reads use the data timeout
	closeAfterWrite atomic.Bool  // close once the next reply is written (set before it)
	abortReads      atomic.Bool  // reads fail at once: the connection is being closed
	errors          atomic.Int32 // 4xx/5xx replies of ours (max_errors)

	// Touched only by go-smtp's goroutine of this connection (RCPT), one
	// command at a time.
	rejectedRcpts int // for the tarpit
	messages      int // messages received, for queue ids
	authFailures  int // failed AUTH attempts (submission)

	mu       sync.Mutex // guards top, sessions, busy and implicitTLS
	top      net.Conn   // what go-smtp writes to: this conn, or the tls.Conn over it (set by NewSession, cleared by Logout)
	sessions int        // sessions begun (a second one follows STARTTLS)
	busy     bool       // in a mail transaction (MAIL given until its end); Shutdown waits for it
	// implicitTLS is the tls.Conn over this conn on an implicit-TLS
	// listener (set at accept), nil otherwise.
	implicitTLS *tls.Conn

	goodbyeOnce sync.Once
	closeOnce   sync.Once
}

// connOf finds our conn below a go-smtp connection.
func connOf(nc net.Conn) *conn {
	switch v := nc.(type) {
	case *conn:
		return v
	case *tls.Conn:
		return connOf(v.NetConn())
	}
	return nil
}

func (c *conn) Read(p []byte) (int, error) {
	if c.abortReads.Load() {
		return 0, net.ErrClosed
	}
	d := c.srv.cmdTimeout
	if c.inData.Load() {
		d = c.srv.dataTimeout
	}
	if err := c.Conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.closeAfterWrite.Load() {
		c.finish()
	}
	return n, err
}

// finish ends the connection after a final reply: no more reads (go-smtp's
// loop then ends and closes the connection) and a FIN to the client now.
func (c *conn) finish() {
	c.abortReads.Store(true)
	if cw, ok := unwrapConn(c.Conn).(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

func unwrapConn(nc net.Conn) net.Conn {
	for {
		u, ok := nc.(interface{ Unwrap() net.Conn })
		if !ok {
			return nc
		}
		nc = u.Unwrap()
	}
}

func (c *conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.abortReads.Store(true)
		err = c.Conn.Close()
		c.srv.untrack(c)
		c.log.Debug("disconnect", "duration", time.Since(c.start).Round(time.Millisecond).String())
	})
	return err
}

func (c *conn) beginSession(nc net.Conn) {
	c.mu.Lock()
	c.top = nc
	c.sessions++
	c.mu.Unlock()
}

func (c *conn) endSession() {
	c.mu.Lock()
	c.top = nil
	c.busy = false
	c.mu.Unlock()
}

func (c *conn) setBusy(b bool) {
	c.mu.Lock()
	c.busy = b
	c.mu.Unlock()
}

func (c *conn) isBusy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.busy
}

// goodbye tells an idle client that the service is going away and closes
// the connection (Shutdown). go-smtp's read then fails and its loop ends.
func (c *conn) goodbye() {
	c.goodbyeOnce.Do(func() {
		c.mu.Lock()
		top, sessions, implicitTLS := c.top, c.sessions, c.implicitTLS
		c.mu.Unlock()
		if top == nil && sessions == 0 {
			top = c.Conn // before the first EHLO: plain text
			if implicitTLS != nil {
				top = implicitTLS // or TLS from the start
			}
		}
		// top is nil between STARTTLS and the next EHLO: the TLS state is
		// go-smtp's alone then, so the connection just closes.
		if top != nil {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = fmt.Fprintf(top, "421 4.3.2 %s Service shutting down, try again later\r\n", c.srv.hostname)
		}
		// Reads stop only after the 421 is out: a TLS connection reading a
		// record (go-smtp's loop) would otherwise see the aborted read, close
		// the connection and leave the client without its reply.
		c.abortReads.Store(true)
		_ = c.Close()
	})
}
