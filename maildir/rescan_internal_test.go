package maildir

import (
	"bytes"
	"os"
	"sync"
	"testing"
	"time"
)

// Our own appends, flag changes, reads and expunges, also concurrent with
// snapshots, cost no directory rescan; a file dropped by another program
// costs one.
func TestOwnChangesNoRescan(t *testing.T) {
	s, err := New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, _ := s.User("own@example.com")
	m, err := u.Mailbox("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if m.u.s.notify.fd < 0 {
		t.Skip("no inotify here: rescans are decided by directory mtimes")
	}
	if _, err := m.Snapshot(); err != nil {
		t.Fatal(err)
	}
	body := []byte("Subject: own\r\n\r\nbody\r\n")
	before := m.rescans.Load()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				uid, err := m.Append(bytes.NewReader(body), nil, time.Time{})
				if err != nil {
					t.Error(err)
					return
				}
				if _, _, err := m.StoreFlags([]uint32{uid}, FlagsAdd, []string{FlagSeen}, 0); err != nil {
					t.Error(err)
					return
				}
				if _, err := m.Snapshot(); err != nil {
					t.Error(err)
					return
				}
				r, _, err := m.Open(uid)
				if err != nil {
					t.Error(err)
					return
				}
				r.Close()
				if (g+i)%5 == 0 {
					if _, err := m.Expunge([]uint32{uid}); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if n := m.rescans.Load() - before; n != 0 {
		t.Fatalf("%d rescans after our own changes", n)
	}
	if err := os.WriteFile(m.path("new", "1700000000.outside.host"), body, 0o600); err != nil {
		t.Fatal(err)
	}
	snap2, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap2.Messages) != len(snap.Messages)+1 || m.rescans.Load()-before != 1 {
		t.Fatalf("outside file: %d -> %d messages, %d rescans", len(snap.Messages), len(snap2.Messages), m.rescans.Load()-before)
	}
}
