package server

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/config"
)

func leafOf(t *testing.T, h *certHolder) *x509.Certificate {
	t.Helper()
	c, err := h.GetCertificate(nil)
	if err != nil || c == nil || c.Leaf == nil {
		t.Fatalf("GetCertificate = %v, %v", c, err)
	}
	return c.Leaf
}

func TestSelfSignedGeneratedOnceAndReused(t *testing.T) {
	dataDir := t.TempDir()
	cfg := &config.Config{Hostname: "mail.example.test", DataDir: dataDir}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	h1, err := newCertHolder(cfg, discard)
	if err != nil {
		t.Fatal(err)
	}
	leaf := leafOf(t, h1)
	if want := []string{"mail.example.test", "localhost"}; !slices.Equal(leaf.DNSNames, want) {
		t.Errorf("DNS SANs %v, want %v", leaf.DNSNames, want)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"127.0.0.1", "::1"}; !slices.Equal(ips, want) {
		t.Errorf("IP SANs %v, want %v", ips, want)
	}
	if err := leaf.VerifyHostname("mail.example.test"); err != nil {
		t.Error(err)
	}
	if d := time.Until(leaf.NotAfter); d < 800*24*time.Hour || d > 826*24*time.Hour {
		t.Errorf("validity ends in %v", d)
	}
	keyFile := filepath.Join(dataDir, "tls", "key.pem")
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem mode %v, want 0600", fi.Mode().Perm())
	}
	fi, err = os.Stat(filepath.Join(dataDir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("tls/ mode %v, want 0700", fi.Mode().Perm())
	}

	h2, err := newCertHolder(cfg, discard)
	if err != nil {
		t.Fatal(err)
	}
	if leafOf(t, h2).SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatal("second start generated a new certificate instead of reusing the first")
	}
}

func TestSelfSignedRenewedNearExpiry(t *testing.T) {
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := selfSigned("mail.example.test", time.Now().Add(-selfSignedValidity+24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "cert.pem"), certPEM)
	writeFile(t, filepath.Join(dir, "key.pem"), keyPEM)
	h, err := newCertHolder(&config.Config{Hostname: "mail.example.test", DataDir: dataDir}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(leafOf(t, h).NotAfter); d < selfSignedRenewBefore {
		t.Fatalf("a certificate expiring in %v was kept", d)
	}
}

func TestSelfSignedBrokenPairIsAnErrorNotOverwritten(t *testing.T) {
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "cert.pem"), []byte("not a certificate"))
	writeFile(t, filepath.Join(dir, "key.pem"), []byte("not a key"))
	if _, err := newCertHolder(&config.Config{Hostname: "h", DataDir: dataDir}, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
		t.Fatal("a broken pair was accepted")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "cert.pem")); string(b) != "not a certificate" {
		t.Fatal("a broken pair was overwritten")
	}
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCertReloadReachesNewHandshakesOnly checks that a reload swaps the
// certificate for new TLS connections while one already open keeps working.
func TestCertReloadReachesNewHandshakesOnly(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	certPEM, keyPEM, err := selfSigned("one.example.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, certPEM)
	writeFile(t, keyFile, keyPEM)
	h, err := newCertHolder(&config.Config{Hostname: "x", DataDir: dir, TLS: config.TLS{Cert: certFile, Key: keyFile}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: h.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	dial := func() (*tls.Conn, string) {
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		return c, c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	old, cn := dial()
	defer old.Close()
	if cn != "one.example.test" {
		t.Fatalf("first certificate CN %q", cn)
	}
	certPEM, keyPEM, err = selfSigned("two.example.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, certPEM)
	writeFile(t, keyFile, keyPEM)
	if err := h.reload(); err != nil {
		t.Fatal(err)
	}
	c2, cn := dial()
	c2.Close()
	if cn != "two.example.test" {
		t.Fatalf("after reload CN %q, want two.example.test", cn)
	}
	echo(t, old)

	// A broken file keeps the current pair.
	writeFile(t, certFile, []byte("garbage"))
	if err := h.reload(); err == nil {
		t.Fatal("reload of a broken certificate succeeded")
	}
	c3, cn := dial()
	c3.Close()
	if cn != "two.example.test" {
		t.Fatalf("after a failed reload CN %q, want two.example.test", cn)
	}
}

func echo(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatalf("old connection: %v", err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("old connection echo %q, %v", buf, err)
	}
}
