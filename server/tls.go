package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/postyard-mail/postyard/config"
)

const (
	// selfSignedValidity stays under the 825 days Apple clients accept for a
	// TLS server certificate.
	selfSignedValidity = 825 * 24 * time.Hour
	// selfSignedRenewBefore: a generated certificate this close to its end is
	// replaced at start-up.
	selfSignedRenewBefore = 30 * 24 * time.Hour
)

// certHolder serves the current certificate to every TLS handshake. SIGHUP
// calls reload, which swaps the pair atomically: handshakes after it see the
// new certificate, connections already open keep theirs.
type certHolder struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// newCertHolder loads the pair named by [tls], or when none is configured the
// self-signed pair under data_dir/tls, generating it first if it is missing
// or about to expire.
func newCertHolder(cfg *config.Config, logger *slog.Logger) (*certHolder, error) {
	h := &certHolder{certFile: cfg.TLS.Cert, keyFile: cfg.TLS.Key}
	if h.certFile == "" && h.keyFile == "" {
		dir := filepath.Join(cfg.DataDir, "tls")
		h.certFile, h.keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		generated, err := ensureSelfSigned(dir, h.certFile, h.keyFile, cfg.Hostname)
		if err != nil {
			return nil, err
		}
		if generated {
			logger.Info("generated a self-signed TLS certificate", "cert", h.certFile, "key", h.keyFile, "hostname", cfg.Hostname)
		}
	}
	if err := h.reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// reload reads the pair again; on error the previous one stays in use.
func (h *certHolder) reload() error {
	c, err := tls.LoadX509KeyPair(h.certFile, h.keyFile)
	if err != nil {
		return fmt.Errorf("tls: loading %s and %s: %w", h.certFile, h.keyFile, err)
	}
	h.cert.Store(&c)
	return nil
}

// GetCertificate is the tls.Config hook.
func (h *certHolder) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return h.cert.Load(), nil
}

// notAfter is the expiry of the current certificate.
func (h *certHolder) notAfter() time.Time {
	c := h.cert.Load()
	if c == nil || c.Leaf == nil {
		return time.Time{}
	}
	return c.Leaf.NotAfter
}

// ensureSelfSigned makes sure certFile and keyFile hold a usable pair,
// generating one when either file is missing or the certificate expires
// within selfSignedRenewBefore. A pair that exists but does not load is an
// error: it may be the admin's, and is not overwritten.
func ensureSelfSigned(dir, certFile, keyFile, hostname string) (generated bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("tls: %w", err)
	}
	_, errC := os.Stat(certFile)
	_, errK := os.Stat(keyFile)
	if errC == nil && errK == nil {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return false, fmt.Errorf("tls: the pair under %s does not load (remove it to have a new one generated): %w", dir, err)
		}
		if c.Leaf != nil && time.Until(c.Leaf.NotAfter) > selfSignedRenewBefore {
			return false, nil
		}
	} else if (errC != nil && !errors.Is(errC, fs.ErrNotExist)) || (errK != nil && !errors.Is(errK, fs.ErrNotExist)) {
		return false, fmt.Errorf("tls: %w", errors.Join(errC, errK))
	}
	certPEM, keyPEM, err := selfSigned(hostname, time.Now())
	if err != nil {
		return false, err
	}
	// The key first: a crash between the two leaves a pair that does not
	// match, which the next start reports instead of silently serving.
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return false, fmt.Errorf("tls: %w", err)
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return false, fmt.Errorf("tls: %w", err)
	}
	return true, nil
}

// selfSigned returns a PEM certificate and PKCS#8 key (ECDSA P-256) for
// hostname, localhost, 127.0.0.1 and ::1.
func selfSigned(hostname string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("tls: serial: %w", err)
	}
	if hostname == "" {
		hostname = "localhost"
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname, Organization: []string{"Postyard self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, name := range []string{hostname, "localhost"} {
		if ip := net.ParseIP(name); ip != nil {
			if !ip.IsLoopback() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if len(tmpl.DNSNames) == 0 || tmpl.DNSNames[0] != name {
			tmpl.DNSNames = append(tmpl.DNSNames, name)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: creating certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// writeFileAtomic writes data to a temporary file beside name, syncs it,
// renames it into place and syncs the directory.
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
