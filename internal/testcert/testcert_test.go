package testcert_test

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/internal/testcert"
)

// handshake dials a TLS listener serving c.Server on loopback with c.Client
// expecting serverName, and returns the client's handshake error.
func handshake(t *testing.T, c *testcert.Cert, serverName string) error {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", c.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		sc, err := l.Accept()
		if err != nil {
			return
		}
		_ = sc.SetDeadline(time.Now().Add(10 * time.Second))
		_ = sc.(*tls.Conn).Handshake()
		sc.Close()
	}()
	cfg := c.Client.Clone()
	cfg.ServerName = serverName
	cc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", l.Addr().String(), cfg)
	if err != nil {
		return err
	}
	return cc.Close()
}

// TestHandshake: the client config trusts the server config for every name
// and for no other, and the written files load as a key pair.
func TestHandshake(t *testing.T) {
	c := testcert.New(t, "mail.example.test", "localhost", "127.0.0.1")
	for _, name := range []string{"mail.example.test", "localhost", "127.0.0.1"} {
		if err := handshake(t, c, name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := handshake(t, c, "other.example.test"); err == nil {
		t.Error("handshake for a name the certificate lacks succeeded")
	}
	if c.Client.ServerName != "mail.example.test" {
		t.Errorf("ServerName %q, want the first name", c.Client.ServerName)
	}
	certFile, keyFile := c.WriteDir(t, t.TempDir(), "x")
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Errorf("written pair: %v", err)
	}
}

func TestNoNames(t *testing.T) {
	c := testcert.New(t)
	if cn := c.Server.Certificates[0].Leaf.Subject.CommonName; cn != "test" {
		t.Errorf("common name %q, want test", cn)
	}
}
