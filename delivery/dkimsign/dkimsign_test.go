package dkimsign_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postyard-mail/postyard/delivery/dkimsign"
	"github.com/postyard-mail/postyard/internal/dkimpytest"
	"github.com/postyard-mail/postyard/internal/dnstest"
)

const msg = "From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: hi\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\nMessage-ID: <1@example.test>\r\n\r\nHello  Bob.\r\n"

// keysFor makes an RSA and an ed25519 key and returns the TXT records by name.
func keysFor(t *testing.T, dir string) map[string]string {
	t.Helper()
	txt := map[string]string{}
	for sel, alg := range map[string]string{"rsa1": "rsa2048", "ed1": "ed25519"} {
		_, name, rec, err := dkimsign.Generate(dir, "Example.test", sel, alg)
		if err != nil {
			t.Fatal(err)
		}
		txt[name] = rec
	}
	return txt
}

func TestSignBothAlgorithmsVerify(t *testing.T) {
	dir := t.TempDir()
	txt := keysFor(t, dir)
	keys, err := dkimsign.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := keys.Sign("example.test", []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(sig, []byte("DKIM-Signature:")); n != 2 {
		t.Fatalf("%d signatures, want 2:\n%s", n, sig)
	}
	if !bytes.Contains(sig, []byte("from:from")) && !bytes.Contains(sig, []byte("From:From")) {
		t.Errorf("From is not oversigned: %s", sig)
	}
	signed := append(sig, msg...)
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return []string{txt[name]}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range verifs {
		if v.Err != nil {
			t.Errorf("signature d=%s failed: %v", v.Domain, v.Err)
		}
	}
	// A changed body and an added From break every signature.
	for name, tampered := range map[string]string{
		"body":        strings.Replace(string(signed), "Hello", "Jello", 1),
		"second From": "From: mallory@evil.test\r\n" + string(signed),
	} {
		verifs, err := dkim.VerifyWithOptions(strings.NewReader(tampered), &dkim.VerifyOptions{
			LookupTXT: func(name string) ([]string, error) { return []string{txt[name]}, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range verifs {
			if v.Err == nil {
				t.Errorf("%s: signature still verifies", name)
			}
		}
	}
	if sig, err := keys.Sign("other.test", []byte(msg)); err != nil || sig != nil {
		t.Errorf("domain without a key: %q, %v", sig, err)
	}
}

// TestDkimpyVerifies checks our signatures with an independent implementation
// (Debian's python3-dkim), which reads the keys from a loopback DNS server.
func TestDkimpyVerifies(t *testing.T) {
	dir := t.TempDir()
	txt := keysFor(t, dir)
	var zone strings.Builder
	for name, rec := range txt {
		fmt.Fprintf(&zone, "%s. 300 IN TXT %q\n", name, rec)
	}
	srv := dnstest.Start(t, zone.String())
	keys, _ := dkimsign.Open(dir)
	sig, err := keys.Sign("example.test", []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	dkimpytest.Verify(t, srv.Addr, string(sig)+msg, 2)
}

func TestGenerateRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ domain, sel, alg string }{
		{"../etc", "x", "ed25519"},
		{"example.test", "a/b", "ed25519"},
		{"example.test", "a.b", "ed25519"},
		{"example.test", "x", "dsa"},
	} {
		if _, _, _, err := dkimsign.Generate(dir, c.domain, c.sel, c.alg); err == nil {
			t.Errorf("Generate(%q, %q, %q) succeeded", c.domain, c.sel, c.alg)
		}
	}
	if _, _, _, err := dkimsign.Generate(dir, "example.test", "s", "ed25519"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := dkimsign.Generate(dir, "example.test", "s", "ed25519"); err == nil {
		t.Error("Generate overwrote an existing key")
	}
}
