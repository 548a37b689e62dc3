package smtp_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/delivery"
	"github.com/postyard-mail/postyard/maildir"
	"github.com/postyard-mail/postyard/smtp"
)

// realEnv is a data dir with real accounts and a real store behind the server.
type realEnv struct {
	dataDir string
	store   *maildir.Store
	ts      *testServer
}

func startReal(t testing.TB, users []string, aliases map[string][]string, opts ...serverOption) *realEnv {
	t.Helper()
	dataDir := t.TempDir()
	for _, u := range users {
		// a {PLAIN} line: the MX never checks passwords, and hashing would only slow the test
		appendLine(t, filepath.Join(dataDir, "passwd"), u+":{PLAIN}secret")
	}
	for a, targets := range aliases {
		if err := accounts.AddAlias(dataDir, a, targets, false); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := accounts.Open(dataDir, []string{"example.test"}, loggerFor(t))
	if err != nil {
		t.Fatal(err)
	}
	store, err := maildir.New(filepath.Join(dataDir, "mail"), loggerFor(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	local, err := delivery.NewLocal(delivery.LocalOptions{Store: delivery.MaildirStore{S: store}, SpoolDir: filepath.Join(dataDir, "tmp"), Logger: loggerFor(t)})
	if err != nil {
		t.Fatal(err)
	}
	ts := startServerWith(t, nil, local, append([]serverOption{func(o *smtp.Options) { o.Directory = dir }}, opts...)...)
	return &realEnv{dataDir: dataDir, store: store, ts: ts}
}

func appendLine(t testing.TB, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, line); err != nil {
		t.Fatal(err)
	}
}

// newFiles lists the message files in a user's new/.
func (e *realEnv) newFiles(t testing.TB, user string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.dataDir, "mail", "example.test", user, "new"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, de := range ents {
		out = append(out, filepath.Join(e.dataDir, "mail", "example.test", user, "new", de.Name()))
	}
	return out
}

// TestRealStoreDelivery: through the real accounts directory and the real
// Maildir store, a message lands in each user's new/ with its trace headers.
func TestRealStoreDelivery(t *testing.T) {
	e := startReal(t, []string{"alice@example.test", "bob@example.test"},
		map[string][]string{"team@example.test": {"alice@example.test", "bob@example.test"}})
	o := runGoSMTP(t, e.ts.addr, transaction{from: "sender@remote.example", rcpt: "Alice+x@EXAMPLE.test", data: message("real")})
	if o.dataCode != 250 {
		t.Fatalf("end of DATA: %d %s", o.dataCode, o.dataText)
	}
	o = runGoSMTP(t, e.ts.addr, transaction{from: "sender@remote.example", rcpt: "team@example.test", data: message("team")})
	if o.dataCode != 250 {
		t.Fatalf("end of DATA: %d %s", o.dataCode, o.dataText)
	}
	if o := runGoSMTP(t, e.ts.addr, transaction{from: "a@remote.example", rcpt: "carol@example.test"}); o.rcptCode != 550 {
		t.Errorf("unknown user: %d", o.rcptCode)
	}
	files := e.newFiles(t, "alice")
	if len(files) != 2 {
		t.Fatalf("alice has %d files in new/, want 2", len(files))
	}
	if n := len(e.newFiles(t, "bob")); n != 1 {
		t.Errorf("bob has %d files, want 1", n)
	}
	var sawFor bool
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if !strings.HasPrefix(s, "Return-Path: <sender@remote.example>\r\nReceived: from gosmtp.client.test ([127.0.0.1])\r\n\tby mx.example.test (Postyard) with ESMTP id ") {
			t.Errorf("%s starts %q", f, s[:min(len(s), 200)])
		}
		sawFor = sawFor || strings.Contains(s, "\tfor <Alice+x@EXAMPLE.test>; ")
		if !strings.Contains(filepath.Base(f), fmt.Sprintf(",S=%d,", len(b))) {
			t.Errorf("file name %s does not carry the size %d", filepath.Base(f), len(b))
		}
	}
	if !sawFor {
		t.Error("no Received header names the single recipient")
	}
}

// TestRealStoreFaultLeavesNothing: a real storage fault on the second user
// (its Maildir path is taken by a file) is 451 and leaves no copy with the
// first one.
func TestRealStoreFaultLeavesNothing(t *testing.T) {
	e := startReal(t, []string{"alice@example.test", "zed@example.test"},
		map[string][]string{"team@example.test": {"alice@example.test", "zed@example.test"}})
	if err := os.MkdirAll(filepath.Join(e.dataDir, "mail", "example.test"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dataDir, "mail", "example.test", "zed"), []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := runGoSMTP(t, e.ts.addr, transaction{from: "a@remote.example", rcpt: "team@example.test", data: message("fault")})
	if o.dataCode != 451 || o.dataEnh != "4.3.0" {
		t.Fatalf("end of DATA: %d %s %q, want 451 4.3.0", o.dataCode, o.dataEnh, o.dataText)
	}
	u, err := e.store.User("alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := u.Mailbox("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	st, err := mb.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 0 {
		t.Errorf("alice's INBOX holds %d messages after the failed transaction", st.Messages)
	}
	if n := len(e.newFiles(t, "alice")); n != 0 {
		t.Errorf("alice has %d files in new/", n)
	}
	// the server keeps working
	if o := runGoSMTP(t, e.ts.addr, transaction{from: "a@remote.example", rcpt: "alice@example.test", data: message("after")}); o.dataCode != 250 {
		t.Errorf("after the fault: %d", o.dataCode)
	}
}
