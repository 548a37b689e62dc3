package maildir_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/maildir"
)

func newStore(t testing.TB) (*maildir.Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := maildir.New(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, root
}

func inbox(t testing.TB, s *maildir.Store, addr string) *maildir.Mailbox {
	t.Helper()
	u, err := s.User(addr)
	if err != nil {
		t.Fatal(err)
	}
	m, err := u.Mailbox("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func msg(i int) string {
	return fmt.Sprintf("From: a@example.com\r\nSubject: test %d\r\n\r\nbody %d\r\n", i, i)
}

func deliver(t testing.TB, m *maildir.Mailbox, body string) uint32 {
	t.Helper()
	uid, err := m.Deliver(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

func snapshot(t testing.TB, m *maildir.Mailbox) *maildir.Snapshot {
	t.Helper()
	s, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readAll(t testing.TB, m *maildir.Mailbox, uid uint32) (string, maildir.Message) {
	t.Helper()
	r, mm, err := m.Open(uid)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), mm
}

func TestDeliverSnapshotOpen(t *testing.T) {
	s, root := newStore(t)
	m := inbox(t, s, "Alice@Example.COM")
	if _, err := os.Stat(filepath.Join(root, "example.com", "Alice", "cur")); err != nil {
		t.Fatalf("tree layout: %v", err)
	}
	var uids []uint32
	for i := 0; i < 5; i++ {
		uids = append(uids, deliver(t, m, msg(i)))
	}
	if !slices.Equal(uids, []uint32{1, 2, 3, 4, 5}) {
		t.Fatalf("uids %v", uids)
	}
	snap := snapshot(t, m)
	if snap.UIDNext != 6 || len(snap.Messages) != 5 || snap.UIDValidity == 0 {
		t.Fatalf("snapshot %+v", snap)
	}
	if snap2 := snapshot(t, m); snap2 != snap {
		t.Fatal("unchanged mailbox: snapshot not shared")
	}
	body, mm := readAll(t, m, 3)
	if body != msg(2) || mm.Size != int64(len(msg(2))) || mm.UID != 3 {
		t.Fatalf("open: %q %+v", body, mm)
	}
	if time.Since(mm.InternalDate) > time.Minute {
		t.Fatalf("internal date %v", mm.InternalDate)
	}
	st, err := m.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 5 || st.Unseen != 5 || st.Recent != 5 || st.UIDNext != 6 || st.Size != int64(5*len(msg(0))) {
		t.Fatalf("status %+v", st)
	}
	if _, _, err := m.Open(99); !errors.Is(err, maildir.ErrNoSuchMessage) {
		t.Fatalf("open missing: %v", err)
	}

	// A second store on the same tree (a restart) sees the same UIDs.
	s2, err := maildir.New(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	m2 := inbox(t, s2, "Alice@example.com")
	snap2 := snapshot(t, m2)
	if snap2.UIDValidity != snap.UIDValidity || snap2.UIDNext != 6 || len(snap2.Messages) != 5 {
		t.Fatalf("after restart %+v", snap2)
	}
	for i, mm := range snap2.Messages {
		if mm.UID != snap.Messages[i].UID || mm.Size != snap.Messages[i].Size {
			t.Fatalf("after restart message %d: %+v vs %+v", i, mm, snap.Messages[i])
		}
		if mm.ModSeq < snap.HighestModSeq {
			t.Fatalf("modseq went back: %d < %d", mm.ModSeq, snap.HighestModSeq)
		}
	}
}

func TestFlagsAndExpunge(t *testing.T) {
	s, root := newStore(t)
	m := inbox(t, s, "bob@example.com")
	for i := 0; i < 4; i++ {
		deliver(t, m, msg(i))
	}
	w := m.Watch()
	defer w.Close()
	up, failed, err := m.StoreFlags([]uint32{1, 2}, maildir.FlagsAdd, []string{`\seen`, "$Junk", "work"}, 0)
	if err != nil || len(failed) != 0 || len(up) != 2 {
		t.Fatalf("store: %v %v %v", up, failed, err)
	}
	want := []string{"$Junk", `\Seen`, "work"}
	if !slices.Equal(up[0].Flags, want) {
		t.Fatalf("flags %v want %v", up[0].Flags, want)
	}
	// Unchanged: nothing reported.
	up, _, _ = m.StoreFlags([]uint32{1}, maildir.FlagsAdd, []string{`\Seen`}, 0)
	if len(up) != 0 {
		t.Fatalf("no-op store reported %v", up)
	}
	// CONDSTORE: message 2 changed after message 3's last change.
	since := snapshot(t, m).Messages[2].ModSeq
	up, failed, err = m.StoreFlags([]uint32{2, 3}, maildir.FlagsSet, []string{`\Flagged`}, since)
	if err != nil || !slices.Equal(failed, []uint32{2}) || len(up) != 1 || up[0].UID != 3 {
		t.Fatalf("unchangedsince: %v %v %v", up, failed, err)
	}
	up, _, _ = m.StoreFlags([]uint32{1}, maildir.FlagsRemove, []string{"work"}, 0)
	if len(up) != 1 || !slices.Equal(up[0].Flags, []string{"$Junk", `\Seen`}) {
		t.Fatalf("remove: %v", up)
	}
	if _, _, err := m.StoreFlags([]uint32{1}, maildir.FlagsAdd, []string{`\Bogus`}, 0); !errors.Is(err, maildir.ErrInvalidFlag) {
		t.Fatalf("bogus flag: %v", err)
	}
	// File names carry the flags, dovecot-keywords the names.
	dir := filepath.Join(root, "example.com", "bob")
	names, _ := filepath.Glob(filepath.Join(dir, "cur", "*"))
	var got []string
	for _, n := range names {
		got = append(got, n[strings.LastIndexByte(n, ':')+1:])
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"2,F", "2,Sa", "2,Sab"}) {
		t.Fatalf("file flags %v", got)
	}
	kw, _ := os.ReadFile(filepath.Join(dir, "dovecot-keywords"))
	if string(kw) != "0 $Junk\n1 work\n" {
		t.Fatalf("keywords file %q", kw)
	}
	gone, err := m.Expunge([]uint32{2, 4, 77})
	if err != nil || !slices.Equal(gone, []uint32{2, 4}) {
		t.Fatalf("expunge %v %v", gone, err)
	}
	snap := snapshot(t, m)
	if len(snap.Messages) != 2 || snap.Messages[0].UID != 1 || snap.Messages[1].UID != 3 {
		t.Fatalf("after expunge %+v", snap.Messages)
	}
	var evs []maildir.Event
	timeout := time.After(5 * time.Second)
	for len(evs) < 6 {
		select {
		case ev := <-w.C:
			evs = append(evs, ev)
		case <-timeout:
			t.Fatalf("events so far: %+v", evs)
		}
	}
	kinds := []maildir.EventKind{}
	for _, ev := range evs {
		kinds = append(kinds, ev.Kind)
	}
	wantKinds := []maildir.EventKind{maildir.EventFlags, maildir.EventFlags, maildir.EventFlags, maildir.EventFlags, maildir.EventExpunge, maildir.EventExpunge}
	if !slices.Equal(kinds, wantKinds) {
		t.Fatalf("events %+v", evs)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].ModSeq <= evs[i-1].ModSeq {
			t.Fatalf("modseq not increasing: %+v", evs)
		}
	}
}

func TestExternalChangesPickedUp(t *testing.T) {
	s, root := newStore(t)
	m := inbox(t, s, "carol@example.com")
	deliver(t, m, msg(0))
	deliver(t, m, msg(1))
	w := m.Watch()
	defer w.Close()
	dir := filepath.Join(root, "example.com", "carol")

	// Another MDA drops an LF-only message into new/.
	lf := "From: x@example.com\nSubject: lf\n\nline1\nline2\n"
	if err := os.WriteFile(filepath.Join(dir, "tmp", "1700000000.ext1.host"), []byte(lf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "tmp", "1700000000.ext1.host"), filepath.Join(dir, "new", "1700000000.ext1.host")); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, w)
	if ev.Kind != maildir.EventNew || ev.UID != 3 {
		t.Fatalf("event %+v", ev)
	}
	body, mm := readAll(t, m, 3)
	want := strings.ReplaceAll(lf, "\n", "\r\n")
	if body != want || mm.Size != int64(len(want)) {
		t.Fatalf("LF message: %q size %d", body, mm.Size)
	}
	// Another program sets a flag by renaming, and removes a file.
	snap := snapshot(t, m)
	_ = snap
	news, _ := filepath.Glob(filepath.Join(dir, "new", "*"))
	var first string
	for _, n := range news {
		if !strings.Contains(n, "ext1") {
			first = n
			break
		}
	}
	base := filepath.Base(first)
	if err := os.Rename(first, filepath.Join(dir, "cur", base+":2,FS")); err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, w)
	if ev.Kind != maildir.EventFlags || !slices.Equal(ev.Flags, []string{`\Flagged`, `\Seen`}) {
		t.Fatalf("event %+v", ev)
	}
	if err := os.Remove(filepath.Join(dir, "new", "1700000000.ext1.host")); err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, w)
	if ev.Kind != maildir.EventExpunge || ev.UID != 3 {
		t.Fatalf("event %+v", ev)
	}
	snap = snapshot(t, m)
	if len(snap.Messages) != 2 {
		t.Fatalf("messages %+v", snap.Messages)
	}
}

func nextEvent(t *testing.T, w *maildir.Watcher) maildir.Event {
	t.Helper()
	select {
	case ev := <-w.C:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return maildir.Event{}
}

func TestAppendCopyMove(t *testing.T) {
	s, _ := newStore(t)
	u, err := s.User("dave@example.com")
	if err != nil {
		t.Fatal(err)
	}
	in, _ := u.Mailbox("inbox")
	sent, err := u.Mailbox("Sent")
	if err != nil {
		t.Fatal(err)
	}
	date := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	uid, err := sent.Append(strings.NewReader(msg(1)), []string{`\Seen`, "label"}, date)
	if err != nil || uid != 1 {
		t.Fatal(uid, err)
	}
	body, mm := readAll(t, sent, 1)
	if body != msg(1) || !mm.InternalDate.Equal(date) || !slices.Equal(mm.Flags, []string{`\Seen`, "label"}) {
		t.Fatalf("append: %+v", mm)
	}
	src, dst, err := sent.CopyTo(in, []uint32{1, 5})
	if err != nil || !slices.Equal(src, []uint32{1}) || !slices.Equal(dst, []uint32{1}) {
		t.Fatalf("copy %v %v %v", src, dst, err)
	}
	_, mm = readAll(t, in, 1)
	if !mm.InternalDate.Equal(date) || !slices.Equal(mm.Flags, []string{`\Seen`, "label"}) {
		t.Fatalf("copy kept %+v", mm)
	}
	deliver(t, in, msg(2))
	trash, _ := u.Mailbox("Trash")
	src, dst, err = in.MoveTo(trash, []uint32{1, 2})
	if err != nil || !slices.Equal(src, []uint32{1, 2}) || !slices.Equal(dst, []uint32{1, 2}) {
		t.Fatalf("move %v %v %v", src, dst, err)
	}
	if n := len(snapshot(t, in).Messages); n != 0 {
		t.Fatalf("inbox has %d after move", n)
	}
	tsnap := snapshot(t, trash)
	if len(tsnap.Messages) != 2 || !slices.Equal(tsnap.Messages[0].Flags, []string{`\Seen`, "label"}) {
		t.Fatalf("trash %+v", tsnap.Messages)
	}
	b, _ := readAll(t, trash, 2)
	if b != msg(2) {
		t.Fatalf("moved body %q", b)
	}
	if _, err := bytes.NewBufferString("").WriteString(""); err != nil {
		t.Fatal(err)
	}
}
