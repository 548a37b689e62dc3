package maildir_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postyard-mail/postyard/internal/dovecottest"
	"github.com/postyard-mail/postyard/maildir"
)

// Dovecot compatibility, both ways, against Debian's dovecot started by the
// test on 127.0.0.1 with a private configuration over a private mail tree.

type dovecot struct {
	dir, conf, addr string
	uid, gid        int
}

// startDovecot runs a private Dovecot over root/mail (users "*@example.test",
// password "pass"). Dovecot will not run mail processes as root, so the tree
// belongs to the "mail" user while Dovecot works on it.
func startDovecot(t *testing.T) *dovecot {
	t.Helper()
	dovecottest.Binary(t) // skips when Dovecot is not installed
	if os.Geteuid() != 0 {
		t.Skip("starting a private dovecot needs root (it switches to the mail user)")
	}
	uid, gid := dovecottest.UserIDs(t, "mail")
	dir, err := os.MkdirTemp("", "postyard-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"run", "state", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	d := &dovecot{dir: dir, conf: filepath.Join(dir, "dovecot.conf"), addr: fmt.Sprintf("127.0.0.1:%d", port), uid: uid, gid: gid}
	conf := fmt.Sprintf(`instance_name = postyard-test-%[2]d
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = dovecot
default_login_user = dovenull
mail_uid = mail
mail_gid = mail
first_valid_uid = 1
first_valid_gid = 1
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/passwd
}
userdb {
  driver = static
  args = uid=mail gid=mail home=%[1]s/mail/%%d/%%n
}
mail_location = maildir:%[1]s/mail/%%d/%%n
namespace inbox {
  inbox = yes
  separator = /
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[2]d
  }
  inet_listener imaps {
    port = 0
  }
}
`, dir, port)
	if err := os.WriteFile(d.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var pw strings.Builder
	for _, u := range []string{"a", "b"} {
		fmt.Fprintf(&pw, "%s@example.test:{PLAIN}pass\n", u)
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(pw.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	d.chown(t)
	dovecottest.Start(t, d.conf, filepath.Join(dir, "dovecot.log"), dovecottest.Listening(d.addr))
	return d
}

func (d *dovecot) mailRoot() string { return filepath.Join(d.dir, "mail") }

// chown gives the tree to the mail user (after Postyard, running as root,
// wrote to it).
func (d *dovecot) chown(t *testing.T) {
	t.Helper()
	dovecottest.ChownTree(t, d.mailRoot(), d.uid, d.gid)
}

func (d *dovecot) login(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(d.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(addr, "pass").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

type imapMsg struct {
	uid   uint32
	flags []string
	size  int64
	date  time.Time
	body  []byte
}

func fetchAll(t *testing.T, c *imapclient.Client, mailbox string) (*imap.SelectData, []imapMsg) {
	t.Helper()
	sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("select %s: %v", mailbox, err)
	}
	if sel.NumMessages == 0 {
		return sel, nil
	}
	var uids imap.UIDSet
	uids.AddRange(1, 0)
	msgs, err := c.Fetch(uids, &imap.FetchOptions{
		UID: true, Flags: true, RFC822Size: true, InternalDate: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatalf("fetch %s: %v", mailbox, err)
	}
	var out []imapMsg
	for _, m := range msgs {
		var flags []string
		for _, f := range m.Flags {
			if f != `\Recent` {
				flags = append(flags, string(f))
			}
		}
		slices.Sort(flags)
		var body []byte
		if len(m.BodySection) > 0 {
			body = m.BodySection[0].Bytes
		}
		out = append(out, imapMsg{uid: uint32(m.UID), flags: flags, size: m.RFC822Size, date: m.InternalDate, body: body})
	}
	slices.SortFunc(out, func(a, b imapMsg) int { return int(a.uid) - int(b.uid) })
	return sel, out
}

func sortedFlags(f []string) []string {
	out := slices.Clone(f)
	slices.Sort(out)
	if out == nil {
		out = []string{}
	}
	return out
}

func nz(f []string) []string {
	if f == nil {
		return []string{}
	}
	return f
}

// compareWithDovecot checks one mailbox: Postyard's snapshot and content
// against what Dovecot shows over IMAP.
func compareWithDovecot(t *testing.T, c *imapclient.Client, m *maildir.Mailbox) {
	t.Helper()
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sel, got := fetchAll(t, c, m.Name())
	if sel.UIDValidity != snap.UIDValidity || uint32(sel.UIDNext) != snap.UIDNext {
		t.Fatalf("%s: dovecot UIDVALIDITY %d UIDNEXT %d, postyard %d %d", m.Name(), sel.UIDValidity, sel.UIDNext, snap.UIDValidity, snap.UIDNext)
	}
	if len(got) != len(snap.Messages) {
		t.Fatalf("%s: dovecot has %d messages, postyard %d", m.Name(), len(got), len(snap.Messages))
	}
	for i, pm := range snap.Messages {
		dm := got[i]
		if dm.uid != pm.UID || !slices.Equal(nz(dm.flags), sortedFlags(pm.Flags)) || dm.size != pm.Size || !dm.date.Equal(pm.InternalDate) {
			t.Fatalf("%s: message %d: dovecot uid=%d flags=%v size=%d date=%v; postyard uid=%d flags=%v size=%d date=%v",
				m.Name(), i, dm.uid, dm.flags, dm.size, dm.date, pm.UID, pm.Flags, pm.Size, pm.InternalDate)
		}
		r, _, err := m.Open(pm.UID)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r)
		r.Close()
		if !bytes.Equal(body, dm.body) {
			t.Fatalf("%s UID %d: content differs:\npostyard %q\ndovecot  %q", m.Name(), pm.UID, body, dm.body)
		}
	}
}

// TestDovecotReadsPostyardTree: a tree Postyard wrote shows the same UIDs,
// flags, keywords, sizes, dates and content in Dovecot; then changes Dovecot
// makes (flags, expunge, append) reach a running Postyard as events, with
// Dovecot's UIDs.
func TestDovecotReadsPostyardTree(t *testing.T) {
	d := startDovecot(t)
	s, err := maildir.New(d.mailRoot(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := s.User("a@example.test")
	if err != nil {
		t.Fatal(err)
	}
	in, _ := u.Mailbox("INBOX")
	for i := 1; i <= 6; i++ {
		body := fmt.Sprintf("From: x@example.com\r\nSubject: m%d\r\n\r\nbody %d\r\n", i, i)
		if _, err := in.Deliver(strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	store := func(m *maildir.Mailbox, uid uint32, flags ...string) {
		if _, _, err := m.StoreFlags([]uint32{uid}, maildir.FlagsAdd, flags, 0); err != nil {
			t.Fatal(err)
		}
	}
	store(in, 1, maildir.FlagSeen)
	store(in, 2, maildir.FlagFlagged, "$Junk")
	store(in, 3, "work", maildir.FlagAnswered, maildir.FlagDraft)
	store(in, 4, maildir.FlagDeleted, "$Junk", "work")
	if _, err := in.Expunge([]uint32{5}); err != nil {
		t.Fatal(err)
	}
	if err := u.CreateMailbox("Lists/Go"); err != nil {
		t.Fatal(err)
	}
	if err := u.SetSubscribed("Lists/Go", true); err != nil {
		t.Fatal(err)
	}
	uber, _ := u.Mailbox("Sent") // a standard folder, created on use
	if _, err := uber.Append(strings.NewReader("Subject: sent\r\n\r\nx\r\n"), []string{maildir.FlagSeen, "label"}, time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if err := u.CreateMailbox("Über"); err != nil {
		t.Fatal(err)
	}
	ub, _ := u.Mailbox("Über")
	if _, err := ub.Deliver(strings.NewReader("Subject: u\r\n\r\nü\r\n")); err != nil {
		t.Fatal(err)
	}
	d.chown(t)

	c := d.login(t, "a@example.test")
	for _, m := range []*maildir.Mailbox{in, uber, ub} {
		compareWithDovecot(t, c, m)
	}
	// Folders and subscriptions.
	list, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var subscribed []string
	for _, l := range list {
		subscribed = append(subscribed, l.Mailbox)
	}
	slices.Sort(subscribed)
	if want := []string{"Lists/Go", "Sent"}; !slices.Equal(subscribed, want) {
		t.Fatalf("dovecot's subscribed list %v, want %v", subscribed, want)
	}
	all, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range all {
		names = append(names, l.Mailbox)
	}
	for _, want := range []string{"INBOX", "Lists", "Lists/Go", "Über", "Sent"} {
		if !slices.Contains(names, want) {
			t.Fatalf("dovecot lists %v, missing %q", names, want)
		}
	}

	// Dovecot changes the tree while Postyard runs: Postyard's watchers hear it.
	w := in.Watch()
	defer w.Close()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "fromdovecot"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(imap.UIDSetNum(2)).Close(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, c, "INBOX", "Subject: via dovecot\r\n\r\nhello\r\n", []imap.Flag{"$Label1"}, time.Time{})
	seen := map[maildir.EventKind][]uint32{}
	deadline := time.After(10 * time.Second)
	for len(seen[maildir.EventNew]) < 1 || len(seen[maildir.EventExpunge]) < 1 || !slices.Contains(seen[maildir.EventFlags], 1) {
		select {
		case ev := <-w.C:
			seen[ev.Kind] = append(seen[ev.Kind], ev.UID)
		case <-deadline:
			t.Fatalf("events after dovecot's changes: %v", seen)
		}
	}
	if !slices.Equal(seen[maildir.EventExpunge], []uint32{2}) || !slices.Equal(seen[maildir.EventNew], []uint32{7}) {
		t.Fatalf("events %v: want expunge 2, new 7 (dovecot's UID)", seen)
	}
	compareWithDovecot(t, c, in)

	// And Postyard delivers on the tree Dovecot has open.
	if uid, err := in.Deliver(strings.NewReader("Subject: after\r\n\r\nx\r\n")); err != nil || uid != 8 {
		t.Fatalf("deliver after dovecot: %d %v", uid, err)
	}
	d.chown(t)
	compareWithDovecot(t, c, in)
}

func appendMsg(t *testing.T, c *imapclient.Client, mailbox, body string, flags []imap.Flag, date time.Time) {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(body)), &imap.AppendOptions{Flags: flags, Time: date})
	if _, err := io.WriteString(cmd, body); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("append to %s: %v", mailbox, err)
	}
}

// TestPostyardReadsDovecotTree: a tree Dovecot wrote (APPEND with flags,
// keywords and dates, folders, an expunge) opens in Postyard with Dovecot's
// UIDs, UIDVALIDITY, flags, sizes, dates and content (Dovecot stores LF line
// ends; Postyard serves them as CRLF with the same RFC822.SIZE).
func TestPostyardReadsDovecotTree(t *testing.T) {
	d := startDovecot(t)
	c := d.login(t, "b@example.test")
	date := time.Date(2019, 5, 6, 7, 8, 9, 0, time.UTC)
	for i := 1; i <= 4; i++ {
		appendMsg(t, c, "INBOX", fmt.Sprintf("Subject: d%d\r\n\r\nline one\r\nline two %d\r\n", i, i), []imap.Flag{imap.FlagSeen, imap.Flag(fmt.Sprintf("kw%d", i))}, date.Add(time.Duration(i)*time.Hour))
	}
	if err := c.Create("Archive/2020", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Archive/2020").Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, c, "Archive/2020", "Subject: old\r\n\r\nold\r\n", []imap.Flag{imap.FlagAnswered}, date)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(imap.UIDSetNum(2)).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsDel, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}

	s, err := maildir.New(d.mailRoot(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := s.User("b@example.test")
	if err != nil {
		t.Fatal(err)
	}
	in, _ := u.Mailbox("INBOX")
	snap, err := in.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var uids []uint32
	for _, m := range snap.Messages {
		uids = append(uids, m.UID)
	}
	if !slices.Equal(uids, []uint32{1, 3, 4}) || snap.UIDNext != 5 {
		t.Fatalf("postyard sees UIDs %v next %d, want [1 3 4] next 5", uids, snap.UIDNext)
	}
	compareWithDovecot(t, c, in)
	arch, err := u.Mailbox("Archive/2020")
	if err != nil {
		t.Fatal(err)
	}
	compareWithDovecot(t, c, arch)
	list, err := u.ListMailboxes()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mi := range list {
		if mi.Name == "Archive/2020" {
			found = mi.Subscribed
		}
	}
	if !found {
		t.Fatalf("Archive/2020 not listed as subscribed: %+v", list)
	}
	// Postyard continues the numbering Dovecot started.
	if uid, err := in.Deliver(strings.NewReader("Subject: p\r\n\r\np\r\n")); err != nil || uid != 5 {
		t.Fatalf("deliver: %d %v", uid, err)
	}
	d.chown(t)
	compareWithDovecot(t, c, in)
	_ = syscall.Getpid
}
