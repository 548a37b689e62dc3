// Package connlimit caps concurrent connections of a listener, in total and
// per client IP, the way Postfix's anvil and Dovecot's login limits do. A
// connection over a limit is handed to a protocol-specific reject function
// (which writes "421 ..." or "-ERR ..." and closes it) instead of the server.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
)

// RejectFunc answers and closes a connection refused for being over a limit.
type RejectFunc func(c net.Conn, reason string)

// Listener wraps a net.Listener with connection limits; 0 means no limit.
type Listener struct {
	net.Listener
	total, perIP int
	reject       RejectFunc

	mu    sync.Mutex // guards count and byIP
	count int
	byIP  map[netip.Addr]int
}

// Wrap returns l limited to total connections and perIP per client address.
func Wrap(l net.Listener, total, perIP int, reject RejectFunc) *Listener {
	return &Listener{Listener: l, total: total, perIP: perIP, reject: reject, byIP: make(map[netip.Addr]int)}
}

// Accept returns the next connection within the limits; refused ones are
// answered by the reject function in their own goroutine and never returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := RemoteIP(c)
		if reason := l.admit(ip); reason != "" {
			if l.reject != nil {
				go l.reject(c, reason)
			} else {
				_ = c.Close()
			}
			continue
		}
		return &conn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *Listener) admit(ip netip.Addr) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total > 0 && l.count >= l.total {
		return "too many connections"
	}
	if l.perIP > 0 && l.byIP[ip] >= l.perIP {
		return "too many connections from your address"
	}
	l.count++
	l.byIP[ip]++
	return ""
}

func (l *Listener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count--
	if l.byIP[ip] <= 1 {
		delete(l.byIP, ip)
	} else {
		l.byIP[ip]--
	}
}

// Active returns the number of admitted connections still open.
func (l *Listener) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count
}

// conn releases its slot exactly once, on the first Close.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Unwrap returns the underlying connection (for TLS state and addresses).
func (c *conn) Unwrap() net.Conn { return c.Conn }

// RemoteIP is the client address of c, unmapped from IPv4-in-IPv6.
func RemoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// IsLoopback reports whether c comes from 127.0.0.0/8 or ::1: such a
// connection counts as secure for plaintext authentication.
func IsLoopback(c net.Conn) bool {
	return RemoteIP(c).IsLoopback()
}
