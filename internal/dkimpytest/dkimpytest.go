// Package dkimpytest signs test messages with dkimpy (Debian's
// python3-dkim), an implementation independent of ours, so that the DKIM
// verifiers of mailauth and the inbound checks of smtp are tested against
// signatures they did not make themselves.
package dkimpytest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Python returns a python3 that can run imports (e.g. "import dkim"):
// Debian's /usr/bin/python3 first (it sees python3-dkim; pyenv's python3
// on PATH does not), then the python3 on PATH. It skips the test when
// neither can (CI installs python3-dkim and python3-nacl).
func Python(t testing.TB, imports string) string {
	t.Helper()
	candidates := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		if exec.Command(p, "-c", imports).Run() == nil {
			return p
		}
	}
	t.Skipf("no python3 can %q (Debian python3-dkim, python3-nacl; CI installs them)", imports)
	return ""
}

// signScript signs stdin: argv selector, domain, key file, algorithm.
const signScript = `
import sys, dkim
sel, dom, keyfile, algo = sys.argv[1:5]
msg = sys.stdin.buffer.read()
key = open(keyfile, 'rb').read()
sig = dkim.sign(msg, sel.encode(), dom.encode(), key,
                include_headers=[b'from', b'to', b'subject', b'date', b'message-id'],
                signature_algorithm=algo.encode())
sys.stdout.buffer.write(sig + msg)
`

// Sign returns msg with a DKIM-Signature by dkimpy for domain and selector
// (headers From, To, Subject, Date, Message-ID) with an RSA (rsa-sha256) or
// ed25519 (ed25519-sha256) key. It skips the test when python3-dkim (and,
// for ed25519, python3-nacl) is not installed; CI installs them.
func Sign(t testing.TB, msg, domain, selector string, key crypto.Signer) string {
	t.Helper()
	var keyData []byte
	algo, modules := "rsa-sha256", "import dkim"
	switch k := key.(type) {
	case *rsa.PrivateKey:
		keyData = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	case ed25519.PrivateKey:
		keyData = []byte(base64.StdEncoding.EncodeToString(k.Seed()))
		algo, modules = "ed25519-sha256", "import dkim, nacl"
	default:
		t.Fatalf("dkimpytest: unsupported key type %T", key)
	}
	py := Python(t, modules)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, keyData, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", signScript, selector, domain, keyFile, algo)
	cmd.Stdin = strings.NewReader(msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy: %v: %s", err, stderr.String())
	}
	if !strings.HasPrefix(string(out), "DKIM-Signature:") {
		t.Fatalf("dkimpy output does not start with a signature: %.100q", out)
	}
	return string(out)
}
