package maildir_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/postyard-mail/postyard/maildir"
)

func names(t *testing.T, u *maildir.User) map[string]maildir.MailboxInfo {
	t.Helper()
	list, err := u.ListMailboxes()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]maildir.MailboxInfo{}
	for _, mi := range list {
		out[mi.Name] = mi
	}
	if list[0].Name != "INBOX" {
		t.Fatalf("INBOX not first: %+v", list)
	}
	return out
}

func TestFolders(t *testing.T) {
	s, root := newStore(t)
	u, err := s.User("erin@example.com")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "example.com", "erin")
	got := names(t, u)
	for name, use := range map[string]string{"INBOX": "", "Sent": maildir.SpecialSent, "Drafts": maildir.SpecialDrafts, "Trash": maildir.SpecialTrash, "Junk": maildir.SpecialJunk, "Archive": maildir.SpecialArchive} {
		mi, ok := got[name]
		if !ok || mi.SpecialUse != use {
			t.Errorf("%s: %+v %v", name, mi, ok)
		}
		if name != "INBOX" && !mi.Subscribed {
			t.Errorf("%s not subscribed", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".Sent", "maildirfolder")); err != nil {
		t.Fatalf("maildirfolder marker: %v", err)
	}

	if err := u.CreateMailbox("Lists/Go/Über"); err != nil {
		t.Fatal(err)
	}
	if err := u.CreateMailbox("Lists/Go/Über"); !errors.Is(err, maildir.ErrExists) {
		t.Fatalf("create twice: %v", err)
	}
	for _, bad := range []string{"../x", "a.b", "", "a//b", "x\x00"} {
		if err := u.CreateMailbox(bad); !errors.Is(err, maildir.ErrInvalidName) {
			t.Errorf("create %q: %v", bad, err)
		}
	}
	for _, d := range []string{".Lists", ".Lists.Go", ".Lists.Go.&ANw-ber"} {
		if _, err := os.Stat(filepath.Join(dir, d, "cur")); err != nil {
			t.Errorf("missing %s: %v", d, err)
		}
	}
	if err := u.SetSubscribed("Lists/Go/Über", true); err != nil {
		t.Fatal(err)
	}
	got = names(t, u)
	if !got["Lists"].HasChildren || !got["Lists/Go"].HasChildren || got["Lists/Go/Über"].HasChildren || !got["Lists/Go/Über"].Subscribed {
		t.Fatalf("list: %+v", got)
	}
	subs, _ := os.ReadFile(filepath.Join(dir, "subscriptions"))
	if want := "V\t2\n\nArchive\nDrafts\nJunk\nLists\tGo\t&ANw-ber\nSent\nTrash\n"; string(subs) != want {
		t.Fatalf("subscriptions %q want %q", subs, want)
	}

	m, err := u.Mailbox("Lists/Go/Über")
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, m, msg(1))
	if err := u.RenameMailbox("Lists", "Archive/Lists"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Snapshot(); !errors.Is(err, maildir.ErrNoSuchMailbox) {
		t.Fatalf("renamed-away mailbox still usable: %v", err)
	}
	m2, err := u.Mailbox("Archive/Lists/Go/Über")
	if err != nil {
		t.Fatal(err)
	}
	if snap := snapshot(t, m2); len(snap.Messages) != 1 || snap.Messages[0].UID != 1 {
		t.Fatalf("after rename %+v", snap)
	}
	got = names(t, u)
	if _, ok := got["Lists"]; ok || !got["Archive/Lists/Go/Über"].Subscribed {
		t.Fatalf("after rename: %+v", got)
	}
	if err := u.RenameMailbox("Archive", "Archive/x"); !errors.Is(err, maildir.ErrInvalidName) {
		t.Fatalf("rename into itself: %v", err)
	}
	if err := u.RenameMailbox("nope", "x"); !errors.Is(err, maildir.ErrNoSuchMailbox) {
		t.Fatalf("rename missing: %v", err)
	}

	// Deleting a parent keeps its children; the parent becomes \Noselect.
	if err := u.DeleteMailbox("Archive/Lists/Go"); err != nil {
		t.Fatal(err)
	}
	got = names(t, u)
	if mi := got["Archive/Lists/Go"]; !mi.NoSelect || !mi.HasChildren {
		t.Fatalf("deleted parent: %+v", mi)
	}
	if _, err := u.Mailbox("Archive/Lists/Go"); !errors.Is(err, maildir.ErrNoSuchMailbox) {
		t.Fatalf("open deleted: %v", err)
	}
	if err := u.DeleteMailbox("INBOX"); !errors.Is(err, maildir.ErrInbox) {
		t.Fatalf("delete INBOX: %v", err)
	}
	if _, err := u.Mailbox("Nope"); !errors.Is(err, maildir.ErrNoSuchMailbox) {
		t.Fatalf("open missing: %v", err)
	}
}

func TestRenameInbox(t *testing.T) {
	s, _ := newStore(t)
	u, _ := s.User("fred@example.com")
	in := inbox(t, s, "fred@example.com")
	deliver(t, in, msg(1))
	deliver(t, in, msg(2))
	if err := u.RenameMailbox("INBOX", "Old"); err != nil {
		t.Fatal(err)
	}
	if n := len(snapshot(t, in).Messages); n != 0 {
		t.Fatalf("INBOX keeps %d", n)
	}
	old, err := u.Mailbox("Old")
	if err != nil {
		t.Fatal(err)
	}
	if snap := snapshot(t, old); len(snap.Messages) != 2 {
		t.Fatalf("Old: %+v", snap)
	}
	// INBOX goes on: new UIDs continue after the old ones.
	if uid := deliver(t, in, msg(3)); uid != 3 {
		t.Fatalf("uid after rename %d", uid)
	}
}

func TestSubscriptionsDovecotFormats(t *testing.T) {
	s, root := newStore(t)
	u, _ := s.User("gina@example.com")
	dir := filepath.Join(root, "example.com", "gina")
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"V\t2\n\na\tb\n&ANw-ber\tcaf&AOk-\n", []string{"a/b", "Über/café"}},
		{"INBOX\nLists.Go\nx/y\n", []string{"INBOX", "Lists/Go", "x/y"}}, // version 1
	} {
		if err := os.WriteFile(filepath.Join(dir, "subscriptions"), []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, n := range tc.want {
			if n != "INBOX" {
				if err := u.CreateMailbox(n); err != nil && !errors.Is(err, maildir.ErrExists) {
					t.Fatal(err)
				}
			}
		}
		var subscribed []string
		list, err := u.ListMailboxes()
		if err != nil {
			t.Fatal(err)
		}
		for _, mi := range list {
			if mi.Subscribed && mi.SpecialUse == "" {
				subscribed = append(subscribed, mi.Name)
			}
		}
		slices.Sort(subscribed)
		if !slices.Equal(subscribed, tc.want) {
			t.Errorf("%q: subscribed %v want %v", tc.file, subscribed, tc.want)
		}
	}
}

func TestInvalidUsers(t *testing.T) {
	s, _ := newStore(t)
	for _, addr := range []string{"", "noat", "@example.com", "a@", "../x@example.com", "a@..", "a/b@example.com", "a@ex/ample", "a\x00@example.com", ".a@example.com", "a b@example.com"} {
		if _, err := s.User(addr); !errors.Is(err, maildir.ErrInvalidUser) {
			t.Errorf("User(%q): %v", addr, err)
		}
	}
}
