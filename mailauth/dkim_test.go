package mailauth_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postyard-mail/postyard/dnsmx"
	"github.com/postyard-mail/postyard/internal/dkimpytest"
	"github.com/postyard-mail/postyard/internal/dnstest"
	"github.com/postyard-mail/postyard/mailauth"
)

// testKeys returns the RSA key of testdata (generating 2048-bit keys takes
// seconds on a busy machine; this one signs nothing but test messages) and
// an ed25519 key made once per test binary.
var testKeys = sync.OnceValues(func() (*rsa.PrivateKey, ed25519.PrivateKey) {
	data, err := os.ReadFile("testdata/test-only-rsa2048.pem")
	if err != nil {
		panic(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		panic("testdata/test-only-rsa2048.pem: no PEM block")
	}
	rk, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		panic(err)
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return rk, ek
})

// dkimTXT is the key record to publish for a key.
func dkimTXT(t testing.TB, key crypto.Signer) string {
	t.Helper()
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	t.Fatalf("key type %T", key)
	return ""
}

// txtRecord is zone-file text for a TXT record, split into 255-byte strings.
func txtRecord(name, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, `"`+value[:255]+`"`)
		value = value[255:]
	}
	parts = append(parts, `"`+value+`"`)
	return name + " 300 IN TXT " + strings.Join(parts, " ")
}

const testMessage = "From: Alice <alice@example.org>\r\n" +
	"To: bob@example.com\r\n" +
	"Subject: DKIM test\r\n" +
	"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n" +
	"Message-ID: <dkim-test@example.org>\r\n" +
	"\r\n" +
	"Hello Bob,\r\n" +
	"this message is signed.\r\n"

// goSign signs msg with go-msgauth, as Postyard's submission does.
func goSign(t testing.TB, msg, domain, selector string, key crypto.Signer) string {
	t.Helper()
	var b bytes.Buffer
	err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{
		Domain:                 domain,
		Selector:               selector,
		Signer:                 key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             []string{"From", "From", "To", "Subject", "Date", "Message-ID"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// dkimEnv is a DNS server with the test keys published and a checker.
type dkimEnv struct {
	srv     *dnstest.Server
	checker *mailauth.Checker
	rsaKey  *rsa.PrivateKey
	edKey   ed25519.PrivateKey
}

func newDKIMEnv(t testing.TB) *dkimEnv {
	t.Helper()
	rk, ek := testKeys()
	srv := dnstest.Start(t, strings.Join([]string{
		txtRecord("rsa._domainkey.example.org.", dkimTXT(t, rk)),
		txtRecord("ed._domainkey.example.org.", dkimTXT(t, ek)),
		txtRecord("rsa._domainkey.other.example.", dkimTXT(t, rk)),
		txtRecord("revoked._domainkey.example.org.", "v=DKIM1; k=rsa; p="),
		`example.org. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
		`_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject"`,
	}, "\n"))
	r, err := dnsmx.New(dnsmx.Options{Upstream: srv.Addr, Timeout: 200 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return &dkimEnv{
		srv:     srv,
		checker: mailauth.New(mailauth.Options{Hostname: "mx.example.com", Resolver: r}),
		rsaKey:  rk,
		edKey:   ek,
	}
}

func (e *dkimEnv) check(t testing.TB, msg string) mailauth.Result {
	t.Helper()
	res, err := e.checker.Check(t.Context(), mailauth.Input{
		ClientIP: netip.MustParseAddr("198.51.100.1"), // not in SPF: DKIM alone decides DMARC
		HELO:     "mail.example.org",
		MailFrom: "alice@example.org",
		Message:  strings.NewReader(msg),
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func dkimSummary(res mailauth.Result) string {
	var s []string
	for _, d := range res.DKIM {
		s = append(s, string(d.Result)+":"+d.Domain)
	}
	return strings.Join(s, " ")
}

func TestDKIM(t *testing.T) {
	t.Parallel()
	e := newDKIMEnv(t)
	tamperBody := func(m string) string { return strings.Replace(m, "is signed", "is forged", 1) }
	tamperSubject := func(m string) string { return strings.Replace(m, "Subject: DKIM test", "Subject: DKIM test!", 1) }
	tamperFrom := func(m string) string {
		return strings.Replace(m, "From: Alice <alice@example.org>", "From: Mallory <alice@example.org>", 1)
	}
	addFrom := func(m string) string {
		return strings.Replace(m, "To: bob", "From: mallory@example.org\r\nTo: bob", 1)
	}
	keep := func(m string) string { return m }

	type signer func(t *testing.T, msg, domain, selector string, key crypto.Signer) string
	goSigner := func(t *testing.T, msg, domain, selector string, key crypto.Signer) string {
		return goSign(t, msg, domain, selector, key)
	}
	for _, s := range []struct {
		name string
		sign signer
	}{{"go-msgauth", goSigner}, {"dkimpy", func(t *testing.T, msg, domain, selector string, key crypto.Signer) string {
		return dkimpytest.Sign(t, msg, domain, selector, key)
	}}} {
		for _, k := range []struct {
			name     string
			selector string
			key      crypto.Signer
		}{{"rsa", "rsa", e.rsaKey}, {"ed25519", "ed", e.edKey}} {
			signed := s.sign(t, testMessage, "example.org", k.selector, k.key)
			for _, tc := range []struct {
				name   string
				change func(string) string
				want   string
				dmarc  string
			}{
				{"pass", keep, "pass:example.org", "pass"},
				{"changed body", tamperBody, "fail:example.org", "fail"},
				{"changed subject", tamperSubject, "fail:example.org", "fail"},
				{"changed From", tamperFrom, "fail:example.org", "fail"},
				{"added From", addFrom, "fail:example.org", "permerror"},
			} {
				t.Run(s.name+"/"+k.name+"/"+tc.name, func(t *testing.T) {
					res := e.check(t, tc.change(signed))
					if got := dkimSummary(res); got != tc.want {
						t.Fatalf("dkim %s (%+v), want %s", got, res.DKIM, tc.want)
					}
					if string(res.DMARC.Result) != tc.dmarc {
						t.Errorf("dmarc %s (%s), want %s", res.DMARC.Result, res.DMARC.Reason, tc.dmarc)
					}
				})
			}
		}
	}
}

func TestDKIMOtherCases(t *testing.T) {
	t.Parallel()
	e := newDKIMEnv(t)
	e.srv.Fail("slow._domainkey.example.org", 0, dnstest.Timeout)
	tests := []struct {
		name string
		msg  func() string
		want string
	}{
		{"unsigned", func() string { return testMessage }, ""},
		{"no key published", func() string { return goSign(t, testMessage, "example.org", "missing", e.rsaKey) }, "permerror:example.org"},
		{"revoked key", func() string { return goSign(t, testMessage, "example.org", "revoked", e.rsaKey) }, "permerror:example.org"},
		{"key lookup times out", func() string { return goSign(t, testMessage, "example.org", "slow", e.rsaKey) }, "temperror:example.org"},
		{"wrong key type", func() string { return goSign(t, testMessage, "example.org", "ed", e.rsaKey) }, "permerror:example.org"},
		{"two signatures, each verified", func() string {
			m := goSign(t, testMessage, "example.org", "rsa", e.rsaKey)
			return goSign(t, m, "other.example", "rsa", e.rsaKey)
		}, "pass:other.example pass:example.org"},
		{"a good and a bad signature", func() string {
			m := goSign(t, testMessage, "example.org", "missing", e.rsaKey)
			return goSign(t, m, "example.org", "ed", e.edKey)
		}, "pass:example.org permerror:example.org"},
		{"malformed signature", func() string { return "DKIM-Signature: v=1; garbage\r\n" + testMessage }, "permerror:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := e.check(t, tc.msg())
			if got := dkimSummary(res); got != tc.want {
				t.Fatalf("dkim %q (%+v), want %q", got, res.DKIM, tc.want)
			}
			h := res.HeaderField()
			if tc.want == "" && !strings.Contains(h, "dkim=none") {
				t.Errorf("unsigned message, header %q", h)
			}
		})
	}
}
