package imap_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/postyard-mail/postyard/internal/testenv"
)

// startEnv runs the real binary with alice as a user.
func startEnv(t *testing.T) *testenv.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test (builds and runs the binary)")
	}
	env := testenv.Start(t, testenv.Options{})
	env.AddUser(t, alice, password)
	return env
}

// envTLS trusts the server's generated certificate.
func envTLS(t *testing.T, env *testenv.Env) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(env.DataDir, "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in tls/cert.pem")
	}
	return &tls.Config{RootCAs: pool, ServerName: env.Hostname}
}

// TestE2EIdleSeesSMTPDelivery: a message accepted by the real SMTP
// listener reaches a client in IDLE (on port 993-style implicit TLS)
// within a second; a POP3 deletion reaches it as EXPUNGE.
func TestE2EIdleSeesSMTPDelivery(t *testing.T) {
	env := startEnv(t)
	exists := make(chan uint32, 10)
	expunged := make(chan uint32, 10)
	c, err := imapclient.DialTLS(env.IMAPTLS, &imapclient.Options{
		TLSConfig: envTLS(t, env),
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					exists <- *d.NumMessages
				}
			},
			Expunge: func(seq uint32) { expunged <- seq },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(alice, password).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}

	sc, err := smtp.Dial(env.SMTP)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	msg := "From: <carol@example.org>\r\nTo: <alice@example.test>\r\nSubject: over SMTP\r\n" +
		"Message-ID: <e2e-1@example.org>\r\n\r\nhello\r\n"
	if err := sc.SendMail("carol@example.org", []string{alice}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	accepted := time.Now()
	select {
	case n := <-exists:
		t.Logf("EXISTS %d, %v after the SMTP reply", n, time.Since(accepted))
		if n != 1 {
			t.Errorf("EXISTS %d, want 1", n)
		}
	case <-time.After(time.Second):
		t.Fatal("IDLE did not see the delivery within 1 s")
	}

	// POP3 deletes it; the IMAP client in IDLE hears EXPUNGE.
	pop := popSession(t, env.POP3)
	pop("USER "+alice, "+OK")
	pop("PASS "+password, "+OK")
	pop("DELE 1", "+OK")
	pop("QUIT", "+OK")
	select {
	case seq := <-expunged:
		if seq != 1 {
			t.Errorf("EXPUNGE %d, want 1", seq)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no EXPUNGE after the POP3 deletion")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
}

// popSession returns a function that sends a POP3 command and checks the
// reply's prefix.
func popSession(t *testing.T, addr string) func(cmd, want string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	br := bufio.NewReader(conn)
	read := func() string {
		_ = conn.SetReadDeadline(time.Now().Add(ioTimeout))
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("pop3: %v", err)
		}
		return strings.TrimSpace(l)
	}
	if l := read(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("pop3 greeting %q", l)
	}
	return func(cmd, want string) {
		t.Helper()
		fmt.Fprintf(conn, "%s\r\n", cmd)
		if l := read(); !strings.HasPrefix(l, want) {
			t.Fatalf("pop3 %s: %q", strings.Fields(cmd)[0], l)
		}
	}
}

// TestE2EMbsync syncs a mailbox both ways with isync's mbsync.
func TestE2EMbsync(t *testing.T) {
	mbsync, err := exec.LookPath("mbsync")
	if err != nil {
		t.Skip("mbsync (isync) is not installed (CI installs it)")
	}
	env := startEnv(t)
	c, err := imapclient.DialTLS(env.IMAPTLS, &imapclient.Options{TLSConfig: envTLS(t, env)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(alice, password).Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg := func(mailbox, subject string, flags ...imap.Flag) {
		t.Helper()
		body := testMessage(subject, "body of "+subject)
		cmd := c.Append(mailbox, int64(len(body)), &imap.AppendOptions{Flags: flags})
		if _, err := cmd.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	appendMsg("INBOX", "first", imap.FlagSeen)
	appendMsg("INBOX", "second")
	appendMsg("INBOX", "third", imap.FlagFlagged)
	if err := c.Create("Projects", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg("Projects", "plan")

	local := t.TempDir()
	host, port, _ := net.SplitHostPort(env.IMAPTLS)
	rc := filepath.Join(t.TempDir(), "mbsyncrc")
	conf := fmt.Sprintf(`IMAPAccount postyard
Host %s
Port %s
User %s
Pass "%s"
SSLType IMAPS
CertificateFile %s
AuthMechs LOGIN PLAIN

IMAPStore remote
Account postyard

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
`, host, port, alice, password, filepath.Join(env.DataDir, "tls", "cert.pem"), local, local)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	sync := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, mbsync, "-c", rc, "-a").CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s\nserver log:\n%s", err, out, env.Logs())
		}
	}
	sync()

	// Down: everything arrived with its flags.
	inbox := maildirFiles(t, filepath.Join(local, "INBOX"))
	if len(inbox) != 3 {
		t.Fatalf("local INBOX has %d messages, want 3: %v", len(inbox), inbox)
	}
	if n := len(maildirFiles(t, filepath.Join(local, "Projects"))); n != 1 {
		t.Fatalf("local Projects has %d messages, want 1", n)
	}
	var seen, flagged int
	for _, f := range inbox {
		info := f[strings.LastIndex(f, ":2,")+3:]
		if strings.Contains(info, "S") {
			seen++
		}
		if strings.Contains(info, "F") {
			flagged++
		}
	}
	if seen != 1 || flagged != 1 {
		t.Errorf("local flags: %d seen, %d flagged in %v", seen, flagged, inbox)
	}

	// Up: a new local message, a flag set locally, a local deletion.
	newMsg := testMessage("written offline", "from the laptop")
	if err := os.WriteFile(filepath.Join(local, "INBOX", "new", "1700000000.local1.laptop"), []byte(strings.ReplaceAll(newMsg, "\r\n", "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	var deleted string
	for _, f := range inbox {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.Contains(string(data), "Subject: second"):
			if err := os.Rename(f, f+"S"); err != nil { // ":2," + "S": seen
				t.Fatal(err)
			}
		case strings.Contains(string(data), "Subject: first"):
			deleted = f
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	if deleted == "" {
		t.Fatal("message 'first' not found locally")
	}
	// And meanwhile on the server: a new message and a flag change.
	appendMsg("INBOX", "fourth")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	sync()

	// The server has what the laptop did.
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		Flags: true, Envelope: true,
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]imap.Flag{}
	for _, m := range msgs {
		got[m.Envelope.Subject] = m.Flags
	}
	if _, ok := got["first"]; ok {
		t.Errorf("the message deleted locally is still on the server: %v", got)
	}
	if _, ok := got["written offline"]; !ok {
		t.Errorf("the local message was not uploaded: %v", got)
	}
	if !slices.Contains(got["second"], imap.FlagSeen) {
		t.Errorf("the local \\Seen did not reach the server: %v", got)
	}
	// The laptop has what the server did.
	inbox = maildirFiles(t, filepath.Join(local, "INBOX"))
	var fourth, answered bool
	for _, f := range inbox {
		data, _ := os.ReadFile(f)
		if strings.Contains(string(data), "Subject: fourth") {
			fourth = true
		}
		if strings.Contains(string(data), "Subject: third") && strings.Contains(f[strings.LastIndex(f, ":2,"):], "R") {
			answered = true
		}
	}
	if !fourth || !answered || len(inbox) != 4 {
		t.Errorf("local INBOX after the second sync: fourth=%v answered=%v files %v", fourth, answered, inbox)
	}
	// A third run has nothing left to do and changes nothing.
	sync()
	if n := len(maildirFiles(t, filepath.Join(local, "INBOX"))); n != 4 {
		t.Errorf("after a no-op sync: %d local messages", n)
	}
}

// maildirFiles lists the messages of a local Maildir (cur and new).
func maildirFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			out = append(out, filepath.Join(dir, sub, e.Name()))
		}
	}
	return out
}

// TestE2ELimitsAndAutoconfig: the per-IP and per-user limits of [imap],
// and the autoconfig listener naming the configured IMAP ports.
func TestE2ELimitsAndAutoconfig(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test (builds and runs the binary)")
	}
	env := testenv.Start(t, testenv.Options{Config: map[string]any{
		"imap.max_connections_per_ip":   2,
		"imap.max_connections_per_user": 1,
	}})
	env.AddUser(t, alice, password)
	a := dialRaw(t, env.IMAP)
	b := dialRaw(t, env.IMAP)
	c, err := net.DialTimeout("tcp", env.IMAP, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	third := newRaw(t, c)
	if l, err := third.tryReadLine(ioTimeout); err != nil || !strings.HasPrefix(l, "* BYE [UNAVAILABLE]") {
		t.Errorf("third connection from one address: %q, %v; want * BYE [UNAVAILABLE]", l, err)
	}
	a.login(alice)
	if _, st := b.cmd("LOGIN %s %q", alice, password); !strings.HasPrefix(st, "NO [LIMIT]") {
		t.Errorf("second session of the user: %q, want NO [LIMIT]", st)
	}

	_, imapPort, _ := net.SplitHostPort(env.IMAP)
	_, imapsPort, _ := net.SplitHostPort(env.IMAPTLS)
	client := &http.Client{Timeout: ioTimeout}
	resp, err := client.Get("http://" + env.Autoconfig + "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=" + alice)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"<port>" + imapsPort + "</port>", "<port>" + imapPort + "</port>", "<hostname>" + env.Hostname + "</hostname>", "<username>" + alice + "</username>"} {
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("autoconfig: %d, missing %s in\n%s", resp.StatusCode, want, body)
		}
	}
}
