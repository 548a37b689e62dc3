package maildir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Without inotify (a filesystem that lacks it, or the watch limit reached),
// outside changes are still seen: by directory mtimes on Snapshot, and by the
// once-a-second poll for watchers.
func TestPollModeWithoutInotify(t *testing.T) {
	root := t.TempDir()
	s, err := newStore(root, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, _ := s.User("poll@example.com")
	m, _ := u.Mailbox("INBOX")
	if _, err := m.Deliver(strings.NewReader("Subject: a\r\n\r\na\r\n")); err != nil {
		t.Fatal(err)
	}
	if !m.pollMode {
		t.Fatal("not in poll mode")
	}
	w := m.Watch()
	defer w.Close()
	dir := filepath.Join(root, "example.com", "poll")
	if err := os.WriteFile(filepath.Join(dir, "new", "1700000000.poll.host"), []byte("Subject: b\r\n\r\nb\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.C:
		if ev.Kind != EventNew || ev.UID != 2 {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event from the poll")
	}
	if err := os.Remove(filepath.Join(dir, "new", "1700000000.poll.host")); err != nil {
		t.Fatal(err)
	}
	snap, err := m.Snapshot()
	if err != nil || len(snap.Messages) != 1 {
		t.Fatalf("snapshot after removal: %v %+v", err, snap)
	}
}

// An idle mailbox gives its index back and reloads it on next use, with the
// same UIDs and a HIGHESTMODSEQ that did not go back.
func TestIdleUnloadReload(t *testing.T) {
	s, err := New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, _ := s.User("idle@example.com")
	m, _ := u.Mailbox("INBOX")
	for i := 0; i < 3; i++ {
		if _, err := m.Deliver(strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	m.StoreFlags([]uint32{2}, FlagsAdd, []string{FlagSeen, "kw"}, 0)
	before, _ := m.Snapshot()
	m.unloadIfIdle(0)
	if m.loaded || m.entries != nil {
		t.Fatal("not unloaded")
	}
	after, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Messages) != 3 || after.UIDNext != before.UIDNext || after.UIDValidity != before.UIDValidity || after.HighestModSeq < before.HighestModSeq {
		t.Fatalf("after reload %+v, before %+v", after, before)
	}
	for i := range after.Messages {
		if after.Messages[i].UID != before.Messages[i].UID || strings.Join(after.Messages[i].Flags, " ") != strings.Join(before.Messages[i].Flags, " ") {
			t.Fatalf("message %d: %+v vs %+v", i, after.Messages[i], before.Messages[i])
		}
	}
	// A watched mailbox stays loaded.
	w := m.Watch()
	defer w.Close()
	m.unloadIfIdle(0)
	if !m.loaded {
		t.Fatal("watched mailbox unloaded")
	}
}
