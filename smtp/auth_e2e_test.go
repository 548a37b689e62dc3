package smtp_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/postyard-mail/postyard/internal/dkimpytest"
	"github.com/postyard-mail/postyard/internal/dnstest"
	"github.com/postyard-mail/postyard/internal/testenv"
)

// readMaildir returns the messages in dir/new, by file name.
func readMaildir(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// TestE2EInboundAuth runs the real binary with the loopback test DNS as its
// resolver and sends over SMTP from 127.0.0.1: a dkimpy-signed message from
// a domain whose SPF allows 127.0.0.1 passes SPF, DKIM and DMARC, and a
// forged Authentication-Results for our hostname is gone from the delivered
// copy; a DMARC p=reject failure is refused with 550 5.7.1; a p=quarantine
// failure lands in .Junk/new; a DNS timeout gives 451 4.4.3; our own
// domain forged on port 25 is refused by its DMARC policy, while the same
// From submitted by the logged-in user is delivered unchecked.
func TestE2EInboundAuth(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dns := dnstest.Start(t, `
pass.test.              IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.pass.test.       IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
reject.test.            IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.reject.test.     IN TXT "v=DMARC1; p=reject"
quarantine.test.        IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.quarantine.test. IN TXT "v=DMARC1; p=quarantine"
slow.test.              IN TXT "v=spf1 ip4:127.0.0.1 -all"
example.test.           IN TXT "v=spf1 ip4:192.0.2.25 -all"
_dmarc.example.test.    IN TXT "v=DMARC1; p=reject"
`)
	dns.Add(`py._domainkey.pass.test. IN TXT "v=DKIM1; k=ed25519; p=` + base64.StdEncoding.EncodeToString(pub) + `"`)
	dns.Fail("_dmarc.slow.test.", 0, dnstest.Timeout)
	env := testenv.Start(t, testenv.Options{DNS: dns, Config: map[string]any{"dns.timeout": "300ms"}})
	env.AddUser(t, "alice@example.test", "secret-password")
	waitFor(t, func() bool {
		return runGoSMTP(t, env.SMTP, transaction{from: "a@remote.example", rcpt: "alice@example.test"}).rcptCode == 250
	})
	inbox := filepath.Join(env.DataDir, "mail", "example.test", "alice")
	junk := filepath.Join(inbox, ".Junk")
	ours := "Authentication-Results: " + env.Hostname + ";"

	msg := func(from, subject string, extra ...string) string {
		return strings.Join(extra, "") + "From: Bob <" + from + ">\r\nTo: alice@example.test\r\nSubject: " + subject +
			"\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + subject + "@e2e.test>\r\n\r\nHello Alice,\r\nthis is " + subject + ".\r\n"
	}

	// Signed by dkimpy, SPF pass from 127.0.0.1, a forged result on top.
	forged := "Authentication-Results: " + env.Hostname + "; dkim=pass header.d=reject.test; dmarc=pass header.from=reject.test\r\n"
	signed := dkimpytest.Sign(t, msg("bob@pass.test", "signed", forged), "pass.test", "py", key)
	if o := runGoSMTP(t, env.SMTP, transaction{from: "bob@pass.test", rcpt: "alice@example.test", data: signed}); o.dataCode != 250 {
		t.Fatalf("signed message: %d %s %s, want 250", o.dataCode, o.dataEnh, o.dataText)
	}
	got := readMaildir(t, inbox)
	if len(got) != 1 {
		t.Fatalf("%d messages in new/, want 1", len(got))
	}
	for _, m := range got {
		hdr, _, _ := strings.Cut(m, "\r\n\r\n")
		want := ours + "\r\n\tspf=pass smtp.mailfrom=bob@pass.test;\r\n\tdkim=pass header.d=pass.test header.i=@pass.test;\r\n\tdmarc=pass reason=\"p=reject\" header.from=pass.test\r\n"
		if !strings.Contains(hdr, want) {
			t.Errorf("delivered header lacks\n%s\nheader:\n%s", want, hdr)
		}
		if strings.Count(hdr, ours) != 1 || strings.Contains(hdr, "header.d=reject.test") {
			t.Errorf("the forged Authentication-Results is still there:\n%s", hdr)
		}
		if !strings.HasSuffix(m, strings.Replace(signed, forged, "", 1)) {
			t.Errorf("the delivered message is not the signed one without the forged field:\n%s", m)
		}
	}

	// DMARC p=reject, SPF fails and nothing else aligns.
	o := runGoSMTP(t, env.SMTP, transaction{from: "bob@reject.test", rcpt: "alice@example.test", data: msg("bob@reject.test", "rejected")})
	if o.dataCode != 550 || o.dataEnh != "5.7.1" || !strings.Contains(o.dataText, "DMARC policy of reject.test") {
		t.Errorf("p=reject: %d %s %s, want 550 5.7.1", o.dataCode, o.dataEnh, o.dataText)
	}

	// DMARC p=quarantine: delivered into Junk, with the results.
	o = runGoSMTP(t, env.SMTP, transaction{from: "bob@quarantine.test", rcpt: "alice@example.test", data: msg("bob@quarantine.test", "quarantined")})
	if o.dataCode != 250 {
		t.Errorf("p=quarantine: %d %s %s, want 250", o.dataCode, o.dataEnh, o.dataText)
	}
	inJunk := readMaildir(t, junk)
	if len(inJunk) != 1 {
		t.Fatalf("%d messages in .Junk/new, want 1", len(inJunk))
	}
	for _, m := range inJunk {
		if !strings.Contains(m, ours+"\r\n\tspf=fail") || !strings.Contains(m, "dmarc=fail reason=\"p=quarantine dis=quarantine\" header.from=quarantine.test") ||
			!strings.Contains(m, "Subject: quarantined\r\n") {
			t.Errorf("the message in Junk lacks its results:\n%s", m)
		}
	}

	// The DMARC record cannot be fetched: 451, tried again later.
	o = runGoSMTP(t, env.SMTP, transaction{from: "bob@slow.test", rcpt: "alice@example.test", data: msg("bob@slow.test", "slow")})
	if o.dataCode != 451 || o.dataEnh != "4.4.3" {
		t.Errorf("DNS timeout: %d %s %s, want 451 4.4.3", o.dataCode, o.dataEnh, o.dataText)
	}

	// Our own domain forged from outside: its DMARC p=reject applies.
	o = runGoSMTP(t, env.SMTP, transaction{from: "alice@example.test", rcpt: "alice@example.test", data: msg("alice@example.test", "spoofed")})
	if o.dataCode != 550 || o.dataEnh != "5.7.1" {
		t.Errorf("our domain forged on port 25: %d %s %s, want 550 5.7.1", o.dataCode, o.dataEnh, o.dataText)
	}

	// The same message from alice, logged in on submission, is not checked
	// (127.0.0.1 is not in example.test's SPF, and nothing is signed).
	sc, err := gosmtp.Dial(env.Submission)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Hello("client.example.test"); err != nil {
		t.Fatal(err)
	}
	if err := sc.Auth(sasl.NewPlainClient("", "alice@example.test", "secret-password")); err != nil {
		t.Fatalf("AUTH on submission: %v", err)
	}
	if err := sc.SendMail("alice@example.test", []string{"alice@example.test"}, strings.NewReader(msg("alice@example.test", "submitted"))); err != nil {
		t.Fatalf("submission: %v", err)
	}
	_ = sc.Quit()
	submitted := 0
	for _, m := range readMaildir(t, inbox) {
		if !strings.Contains(m, "Subject: submitted\r\n") {
			continue
		}
		submitted++
		if strings.Contains(m, ours) {
			t.Errorf("a submitted message got our Authentication-Results:\n%s", m)
		}
	}
	if submitted != 1 {
		t.Errorf("%d submitted messages delivered, want 1", submitted)
	}

	if n, j := len(readMaildir(t, inbox)), len(readMaildir(t, junk)); n != 2 || j != 1 {
		t.Errorf("%d messages in new/ and %d in .Junk/new at the end, want 2 and 1", n, j)
	}
	env.WaitLog(t, "action=quarantine")
}
