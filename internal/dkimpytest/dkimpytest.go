// Package dkimpytest signs and verifies test messages with dkimpy (Debian's
// python3-dkim), an implementation independent of ours, so that our DKIM
// verifier (mailauth, smtp) meets signatures it did not make, and our signer
// (delivery/dkimsign, the relay) meets a verifier it did not write.
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
	"strconv"
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

// verifyScript verifies every DKIM-Signature of stdin, asking the DNS
// server at argv host, port for the keys; it prints how many passed.
const verifyScript = `
import sys, dkim, dns.resolver
r = dns.resolver.Resolver(configure=False)
r.nameservers = [sys.argv[1]]
r.port = int(sys.argv[2])
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    ans = r.resolve(name, "TXT", lifetime=timeout)
    return b"".join(b"".join(rr.strings) for rr in ans)
msg = sys.stdin.buffer.read()
head = msg.split(b"\r\n\r\n", 1)[0]
n = sum(1 for l in head.split(b"\r\n") if l.lower().startswith(b"dkim-signature:"))
d = dkim.DKIM(msg)
for i in range(n):
    if not d.verify(idx=i, dnsfunc=dnsfunc):
        print("signature", i, "fails")
        sys.exit(1)
print(n)
`

// Verify checks every DKIM signature of msg with dkimpy, which fetches the
// keys from the DNS server at dnsAddr ("127.0.0.1:PORT", e.g. an
// internal/dnstest server), and fails the test unless all want of them
// verify. It skips the test when python3-dkim is not installed.
func Verify(t testing.TB, dnsAddr, msg string, want int) {
	t.Helper()
	py := Python(t, "import dkim, dns.resolver")
	host, port, _ := strings.Cut(dnsAddr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", verifyScript, host, port)
	cmd.Stdin = strings.NewReader(msg)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("dkimpy: %v\n%s%s\nmessage:\n%s", err, out.String(), errOut.String(), msg)
	}
	if got := strings.TrimSpace(out.String()); got != strconv.Itoa(want) {
		t.Fatalf("dkimpy verified %s signatures, want %d", got, want)
	}
}
