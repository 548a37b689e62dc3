package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postyard-mail/postyard/internal/dnstest"
	"github.com/postyard-mail/postyard/internal/testenv"
)

// dnsCheckZone publishes everything right for good.test, served by
// mail.good.test; bare.test has nothing but a name.
const dnsCheckZone = `
good.test.                     IN MX  10 mail.good.test.
good.test.                     IN TXT "v=spf1 mx -all"
mail.good.test.                IN A   192.0.2.25
25.2.0.192.in-addr.arpa.       IN PTR mail.good.test.
_dmarc.good.test.              IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@good.test"
_mta-sts.good.test.            IN TXT "v=STSv1; id=20261123"
_smtp._tls.good.test.          IN TXT "v=TLSRPTv1; rua=mailto:tls@good.test"
bare.test.                     IN A   192.0.2.99
`

// TestE2EDNSCheck runs `postyard dns check` as a user does, against the
// loopback test DNS named in the config: the key made by `dkim keygen` and
// published makes a good domain pass (exit 0); a domain missing its
// records gets exit 1, a one-line reason on stderr, and the exact records
// to publish; a DNS timeout is a failure that says to try again.
func TestE2EDNSCheck(t *testing.T) {
	t.Parallel()
	dns := dnstest.Start(t, dnsCheckZone)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "postyard.toml")
	doc := fmt.Sprintf("hostname = \"mail.good.test\"\ndata_dir = %q\ndomains = [\"good.test\", \"bare.test\"]\n\n[dns]\nresolver = %q\ntimeout = \"300ms\"\n",
		filepath.Join(dir, "data"), dns.Addr)
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return testenv.Run(t, dir, "", append(args, "--config", cfg)...)
	}

	out, errOut, code := run("dkim", "keygen", "good.test", "--algorithm", "ed25519")
	if code != 0 || !strings.HasPrefix(out, "default._domainkey.good.test. IN TXT ") {
		t.Fatalf("dkim keygen: exit %d\n%s%s", code, out, errOut)
	}
	dns.Add(strings.TrimSpace(out))

	out, errOut, code = run("dns", "check", "good.test")
	if code != 0 || errOut != "" {
		t.Fatalf("dns check good.test: exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"MX            ok       10 mail.good.test\n",
		"SPF           ok       v=spf1 mx -all\n",
		"DKIM default  ok       default._domainkey.good.test matches our key\n",
		"DMARC         ok       v=DMARC1; p=reject; rua=mailto:dmarc@good.test\n",
		"PTR 192.0.2.25  ok",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("dns check good.test: no line %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "missing") || strings.Contains(out, "warn") {
		t.Errorf("dns check good.test: not all ok:\n%s", out)
	}

	out, errOut, code = run("dns", "check", "bare.test")
	if code != 1 {
		t.Fatalf("dns check bare.test: exit %d, want 1\n%s%s", code, out, errOut)
	}
	if lines := strings.Split(strings.TrimSpace(errOut), "\n"); len(lines) != 1 || !strings.Contains(errOut, "required records missing or wrong for bare.test") {
		t.Errorf("stderr is not the one-line reason:\n%s", errOut)
	}
	for _, want := range []string{
		"fix:     bare.test. IN MX 10 mail.good.test.",
		`fix:     bare.test. IN TXT "v=spf1 a:mail.good.test mx -all"`,
		"fix:     postyard dkim keygen bare.test --selector default",
		`fix:     _dmarc.bare.test. IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@bare.test"`,
		`fix:     _mta-sts.bare.test. IN TXT "v=STSv1; id=1"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dns check bare.test: no %q in\n%s", want, out)
		}
	}

	dns.Fail("_dmarc.good.test.", 0, dnstest.Timeout)
	out, errOut, code = run("dns", "check", "good.test")
	if code != 1 || !strings.Contains(out, "try again") {
		t.Errorf("dns check with a DNS timeout: exit %d, want 1 and \"try again\"\n%s%s", code, out, errOut)
	}
}
