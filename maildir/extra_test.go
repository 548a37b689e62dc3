package maildir_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gomaildir "github.com/emersion/go-maildir"

	"github.com/postyard-mail/postyard/maildir"
)

// An LF-only file (another delivery agent's) reads as CRLF, also after seeks.
func TestOpenConvertsBareLF(t *testing.T) {
	s, root := newStore(t)
	m := inbox(t, s, "lf@example.com")
	snapshot(t, m)
	raw := "Subject: lf\n\nline one\nline two\r\nthree\n"
	want := strings.ReplaceAll(strings.ReplaceAll(raw, "\r\n", "\n"), "\n", "\r\n")
	dir := filepath.Join(root, "example.com", "lf")
	if err := os.WriteFile(filepath.Join(dir, "cur", "1700000001.lf.host:2,S"), []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	snap := snapshot(t, m)
	if len(snap.Messages) != 1 || snap.Messages[0].Size != int64(len(want)) || !slices.Equal(snap.Messages[0].Flags, []string{maildir.FlagSeen}) {
		t.Fatalf("snapshot %+v (want size %d)", snap.Messages, len(want))
	}
	r, _, err := m.Open(snap.Messages[0].UID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, off := range []int64{0, 5, 14, 13, int64(len(want)) - 1, 2, int64(len(want))} {
		if _, err := r.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || string(got) != want[off:] {
			t.Fatalf("from %d: %q, want %q (%v)", off, got, want[off:], err)
		}
	}
	if n, err := r.Seek(-3, io.SeekEnd); err != nil || n != int64(len(want))-3 {
		t.Fatalf("seek end: %d %v", n, err)
	}
}

func TestDeliverMany(t *testing.T) {
	s, _ := newStore(t)
	var boxes []*maildir.Mailbox
	for i := range 3 {
		boxes = append(boxes, inbox(t, s, fmt.Sprintf("u%d@example.com", i)))
	}
	deliver(t, boxes[1], msg(0)) // u1 already has one message
	gone, _ := s.User("gone@example.com")
	g, _ := gone.Mailbox("Junk")
	if err := gone.DeleteMailbox("Junk"); err != nil {
		t.Fatal(err)
	}
	uids, errs := s.DeliverMany(strings.NewReader(msg(7)), append(boxes, g))
	if !slices.Equal(uids[:3], []uint32{1, 2, 1}) {
		t.Fatalf("uids %v errs %v", uids, errs)
	}
	for i := range 3 {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		body, _ := readAll(t, boxes[i], uids[i])
		if body != msg(7) {
			t.Fatalf("box %d: %q", i, body)
		}
	}
	if !errors.Is(errs[3], maildir.ErrNoSuchMailbox) {
		t.Fatalf("deleted mailbox: %v", errs[3])
	}
	// The copies are independent: a flag change in one leaves the others.
	if _, _, err := boxes[0].StoreFlags([]uint32{1}, maildir.FlagsAdd, []string{maildir.FlagSeen}, 0); err != nil {
		t.Fatal(err)
	}
	if f := snapshot(t, boxes[2]).Messages[0].Flags; len(f) != 0 {
		t.Fatalf("flags leaked to another user: %v", f)
	}
}

// Another Maildir implementation (emersion/go-maildir) reads our tree: same
// messages, same flags.
func TestTreeReadableByGoMaildir(t *testing.T) {
	s, root := newStore(t)
	m := inbox(t, s, "interop@example.com")
	for i := range 4 {
		deliver(t, m, msg(i))
	}
	m.StoreFlags([]uint32{1}, maildir.FlagsAdd, []string{maildir.FlagSeen, maildir.FlagFlagged}, 0)
	m.StoreFlags([]uint32{2}, maildir.FlagsAdd, []string{maildir.FlagAnswered, maildir.FlagDraft, maildir.FlagDeleted}, 0)
	before := snapshot(t, m)
	d := gomaildir.Dir(filepath.Join(root, "example.com", "interop"))
	// go-maildir takes the two messages still in new/ into cur/ ...
	if unseen, err := d.Unseen(); err != nil || len(unseen) != 2 {
		t.Fatalf("unseen %d %v", len(unseen), err)
	}
	got := map[string][]gomaildir.Flag{}
	err := d.Walk(func(gm *gomaildir.Message) error {
		r, err := gm.Open()
		if err != nil {
			return err
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		got[string(b)] = gm.Flags()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]gomaildir.Flag{
		msg(0): {gomaildir.FlagFlagged, gomaildir.FlagSeen},
		msg(1): {gomaildir.FlagDraft, gomaildir.FlagReplied, gomaildir.FlagTrashed},
		msg(2): nil,
		msg(3): nil,
	}
	if len(got) != len(want) {
		t.Fatalf("go-maildir sees %d messages", len(got))
	}
	for body, flags := range want {
		if !slices.Equal(got[body], flags) {
			t.Errorf("%q: go-maildir flags %q, want %q", body, got[body], flags)
		}
	}
	// ... and Postyard follows: same UIDs and flags, no longer recent.
	after := snapshot(t, m)
	for i := range before.Messages {
		a, b := before.Messages[i], after.Messages[i]
		if a.UID != b.UID || !slices.Equal(a.Flags, b.Flags) || a.Size != b.Size {
			t.Fatalf("after go-maildir's moves: %+v, was %+v", b, a)
		}
	}
	if st, _ := m.Status(); st.Recent != 0 || st.Messages != 4 {
		t.Fatalf("status %+v", st)
	}
}

func ExampleMailbox_Deliver() {
	root, _ := os.MkdirTemp("", "postyard-example-")
	defer os.RemoveAll(root)
	store, _ := maildir.New(root, nil)
	defer store.Close()

	user, _ := store.User("alice@example.com")
	inbox, _ := user.Mailbox("INBOX")
	w := inbox.Watch() // e.g. an IMAP session in IDLE
	defer w.Close()

	uid, _ := inbox.Deliver(strings.NewReader("Subject: hello\r\n\r\nHi!\r\n"))
	ev := <-w.C
	inbox.StoreFlags([]uint32{uid}, maildir.FlagsAdd, []string{maildir.FlagSeen}, 0)
	snap, _ := inbox.Snapshot()
	fmt.Println(uid, ev.Kind == maildir.EventNew, snap.Messages[0].Flags, snap.Messages[0].Size)
	// Output: 1 true [\Seen] 23
}
