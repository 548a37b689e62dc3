// Package dkimsign signs outgoing mail with DKIM (RFC 6376, RFC 8463) using
// the keys under data_dir/dkim, and makes new keys for `postyard dkim keygen`.
//
// Keys are PEM files named DOMAIN.SELECTOR.key (PKCS#8, or PKCS#1 for RSA as
// OpenDKIM writes them). A message from a domain is signed once per key of
// that domain, so a domain with an RSA and an ed25519 key gets both
// signatures (RFC 8463 §3 recommends the pair while verifiers catch up).
//
// Signed header fields follow RFC 6376 §5.4.1; From is oversigned (listed
// once more than it occurs, §5.4.2) so that a second From cannot be added
// without breaking the signature, and so are Subject, To, Cc, Date,
// Message-ID and Reply-To. Canonicalization is relaxed/relaxed, which
// survives the whitespace changes relays commonly make.
package dkimsign

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// headerKeys are the fields signed; fields that are usually present once
// appear twice (oversigned).
var headerKeys = []string{
	"From", "From",
	"Reply-To", "Reply-To",
	"Subject", "Subject",
	"Date", "Date",
	"To", "To",
	"Cc", "Cc",
	"Message-ID", "Message-ID",
	"In-Reply-To", "References",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"List-Unsubscribe", "List-Unsubscribe-Post",
}

// Key is one signing key.
type Key struct {
	Domain   string
	Selector string
	Signer   crypto.Signer
	Path     string
}

// Algorithm is "rsa" or "ed25519".
func (k Key) Algorithm() string {
	if _, ok := k.Signer.Public().(ed25519.PublicKey); ok {
		return "ed25519"
	}
	return "rsa"
}

// Keys are the signing keys of a data directory, reread when the directory
// changes (so `dkim keygen` takes effect without a restart).
type Keys struct {
	dir string

	mu      sync.Mutex
	modTime time.Time
	checked time.Time
	byDom   map[string][]Key
}

// Open reads the keys in dir (a missing dir means no keys).
func Open(dir string) (*Keys, error) {
	k := &Keys{dir: dir}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *Keys) reload() error {
	st, err := os.Stat(k.dir)
	if errors.Is(err, os.ErrNotExist) {
		k.byDom, k.modTime = nil, time.Time{}
		return nil
	}
	if err != nil {
		return fmt.Errorf("dkim keys: %w", err)
	}
	names, err := filepath.Glob(filepath.Join(k.dir, "*.key"))
	if err != nil {
		return fmt.Errorf("dkim keys: %w", err)
	}
	byDom := make(map[string][]Key)
	for _, p := range names {
		key, err := LoadKey(p)
		if err != nil {
			return err
		}
		byDom[key.Domain] = append(byDom[key.Domain], key)
	}
	k.byDom, k.modTime = byDom, st.ModTime()
	return nil
}

// For returns the keys of domain (case-insensitive), rereading the directory
// when it changed (checked at most once a second).
func (k *Keys) For(domain string) ([]Key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if now := time.Now(); now.Sub(k.checked) > time.Second {
		k.checked = now
		st, err := os.Stat(k.dir)
		if (err == nil && !st.ModTime().Equal(k.modTime)) || (err != nil && k.byDom != nil) {
			if err := k.reload(); err != nil {
				return nil, err
			}
		}
	}
	return k.byDom[strings.ToLower(domain)], nil
}

// LoadKey reads a key file named DOMAIN.SELECTOR.key.
func LoadKey(path string) (Key, error) {
	base := strings.TrimSuffix(filepath.Base(path), ".key")
	// The selector is the last label: domains have dots, selectors may not.
	i := strings.LastIndexByte(base, '.')
	if i <= 0 || i == len(base)-1 {
		return Key{}, fmt.Errorf("dkim key %s: name must be DOMAIN.SELECTOR.key", path)
	}
	domain, selector := strings.ToLower(base[:i]), base[i+1:]
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("dkim key %s: %w", path, err)
	}
	signer, err := parseKey(b)
	if err != nil {
		return Key{}, fmt.Errorf("dkim key %s: %w", path, err)
	}
	return Key{Domain: domain, Selector: selector, Signer: signer, Path: path}, nil
}

func parseKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		switch k := k.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		}
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
}

// Sign returns the DKIM-Signature header fields (each ending in CRLF) for msg
// signed with every key of domain; nil when the domain has no key.
func (k *Keys) Sign(domain string, msg []byte) ([]byte, error) {
	return k.SignReader(domain, bytes.NewReader(msg))
}

// SignReader is Sign for a message read from r, which is read once (all
// keys sign in the same pass) and not at all when the domain has no key.
func (k *Keys) SignReader(domain string, r io.Reader) ([]byte, error) {
	keys, err := k.For(domain)
	if err != nil || len(keys) == 0 {
		return nil, err
	}
	// RSA first: verifiers that stop at the first signature they understand
	// should meet the one they all understand.
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b Key) int { return strings.Compare(b.Algorithm(), a.Algorithm()) })
	signers := make([]*dkim.Signer, 0, len(keys))
	writers := make([]io.Writer, 0, len(keys))
	closed := 0 // signers[:closed] are closed; a second Close would block
	defer func() {
		for _, s := range signers[closed:] {
			_ = s.Close() // ends its goroutine
		}
	}()
	for _, key := range keys {
		s, err := dkim.NewSigner(&dkim.SignOptions{
			Domain: key.Domain, Selector: key.Selector, Signer: key.Signer,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             headerKeys,
		})
		if err != nil {
			return nil, fmt.Errorf("dkim sign for %s: %w", domain, err)
		}
		signers = append(signers, s)
		writers = append(writers, s)
	}
	if _, err := io.Copy(io.MultiWriter(writers...), r); err != nil {
		return nil, fmt.Errorf("dkim sign for %s: %w", domain, err)
	}
	var out bytes.Buffer
	for _, s := range signers {
		closed++
		if err := s.Close(); err != nil {
			return nil, fmt.Errorf("dkim sign for %s: %w", domain, err)
		}
		out.WriteString(s.Signature())
	}
	return out.Bytes(), nil
}

// Generate makes a new key for domain and selector ("rsa2048" or "ed25519"),
// writes it to dir/DOMAIN.SELECTOR.key (refusing to overwrite one) and
// returns the path and the DNS TXT record to publish.
func Generate(dir, domain, selector, algorithm string) (path, name, txt string, err error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if !validLabelSeq(domain) || !strings.Contains(domain, ".") && domain != "localhost" {
		return "", "", "", fmt.Errorf("invalid domain %q", domain)
	}
	if !validLabelSeq(selector) || strings.Contains(selector, ".") {
		return "", "", "", fmt.Errorf("invalid selector %q: letters, digits and hyphens only", selector)
	}
	var priv crypto.Signer
	var pubB64, kType string
	switch algorithm {
	case "rsa2048", "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return "", "", "", err
		}
		der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			return "", "", "", err
		}
		priv, pubB64, kType = k, base64.StdEncoding.EncodeToString(der), "rsa"
	case "ed25519":
		pub, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return "", "", "", err
		}
		// RFC 8463 §4.2: the raw 32-byte public key, not a SubjectPublicKeyInfo.
		priv, pubB64, kType = k, base64.StdEncoding.EncodeToString(pub), "ed25519"
	default:
		return "", "", "", fmt.Errorf("unknown algorithm %q: rsa2048 or ed25519", algorithm)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", "", err
	}
	path = filepath.Join(dir, domain+"."+selector+".key")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return "", "", "", fmt.Errorf("%s exists: remove it first or choose another --selector", path)
	}
	if err != nil {
		return "", "", "", err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return "", "", "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return "", "", "", err
	}
	if err := f.Close(); err != nil {
		return "", "", "", err
	}
	return path, selector + "._domainkey." + domain, "v=DKIM1; k=" + kType + "; p=" + pubB64, nil
}

// PublicRecord returns the TXT record value that publishes key.
func PublicRecord(key Key) (string, error) {
	switch pub := key.Signer.Public().(type) {
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	}
	return "", errors.New("unsupported key type")
}

func validLabelSeq(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
