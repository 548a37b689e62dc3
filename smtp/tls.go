package smtp

import (
	"crypto/tls"
	"net"
)

// Implicit TLS (RFC 8314, port 465): the server hands Serve a listener made
// by tls.NewListener, whose connections are *tls.Conn over the TCP
// connection. conn must sit below TLS (it renews deadlines and closes after
// a final reply at the byte level, and connOf finds it under a tls.Conn),
// and go-smtp must see a *tls.Conn to know the session is encrypted. So
// plainBelowTLS takes such a connection apart before the handshake (nothing
// has been read or written yet: tls.Conn handshakes lazily), the listener
// tracks the plain connection as a conn, and puts a new tls.Server with
// the same configuration on top of it (listener.Accept).

// plainBelowTLS returns the connection below each *tls.Conn accepted from
// its listener, marked as implicitTLSConn.
type plainBelowTLS struct{ net.Listener }

func (l plainBelowTLS) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*tls.Conn); ok {
		return implicitTLSConn{tc.NetConn()}, nil
	}
	return nc, nil
}

// implicitTLSConn is a plain connection that TLS must be started on at once.
type implicitTLSConn struct{ net.Conn }

// Unwrap returns the underlying connection.
func (c implicitTLSConn) Unwrap() net.Conn { return c.Conn }

// isImplicitTLS reports whether nc, or a connection it wraps, is an
// implicitTLSConn.
func isImplicitTLS(nc net.Conn) bool {
	for {
		if _, ok := nc.(implicitTLSConn); ok {
			return true
		}
		u, ok := nc.(interface{ Unwrap() net.Conn })
		if !ok {
			return false
		}
		nc = u.Unwrap()
	}
}
