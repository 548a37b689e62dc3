package dkimpytest_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postyard-mail/postyard/internal/dkimpytest"
)

const msg = "From: a@example.test\r\nTo: b@example.org\r\nSubject: hi\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.test>\r\n\r\nbody\r\n"

// TestSignVerifies: what dkimpy signs, go-msgauth verifies against the key.
func TestSignVerifies(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, rec string
		key       crypto.Signer
	}{
		{"rsa", "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(rsaPub), rsaKey},
		{"ed25519", "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edPub), edKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			signed := dkimpytest.Sign(t, msg, "example.test", "s1", tc.key)
			vs, err := dkim.VerifyWithOptions(strings.NewReader(signed), &dkim.VerifyOptions{
				LookupTXT: func(name string) ([]string, error) {
					if name != "s1._domainkey.example.test" {
						t.Errorf("lookup of %s", name)
					}
					return []string{tc.rec}, nil
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.test" {
				t.Fatalf("verifications %+v", vs)
			}
		})
	}
}
