package maildir

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStress runs deliveries, flag changes, moves, expunges and listings on
// one mailbox at once (about 10 s, 2 s with -short) and then checks: no UID
// was given twice, every delivered message is in exactly one place or was
// expunged exactly once, the watcher's events replay to the final state,
// dovecot-uidlist always parsed, and a restart sees the same UIDs.
func TestStress(t *testing.T) {
	dur := 8 * time.Second
	if testing.Short() {
		dur = 2 * time.Second
	}
	root := t.TempDir()
	s, err := New(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := s.User("stress@example.com")
	if err != nil {
		t.Fatal(err)
	}
	in, err := u.Mailbox("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	trash, err := u.Mailbox("Trash")
	if err != nil {
		t.Fatal(err)
	}
	w := in.Watch()
	defer w.Close()

	type where struct {
		box string
		uid uint32
	}
	var (
		mu        sync.Mutex
		loc       = map[int]where{}  // message id -> where it is now
		byUID     = map[where]int{}  // (box, uid) -> id
		everUID   = map[where]bool{} // every (box, uid) ever handed out
		expunged  = map[int]bool{}   // ids expunged
		nextID    atomic.Int64
		failures  atomic.Int64
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		errOnce   sync.Once
		firstFail error
	)
	fail := func(format string, args ...any) {
		failures.Add(1)
		errOnce.Do(func() { firstFail = fmt.Errorf(format, args...) })
	}
	claim := func(box string, uid uint32, id int) {
		k := where{box, uid}
		if everUID[k] {
			fail("UID %d of %s handed out twice", uid, box)
		}
		everUID[k] = true
		byUID[k] = id
		loc[id] = k
	}
	boxOf := map[string]*Mailbox{"INBOX": in, "Trash": trash}
	randomUIDs := func(r *rand.Rand, m *Mailbox, n int) []uint32 {
		snap, err := m.Snapshot()
		if err != nil {
			fail("snapshot: %v", err)
			return nil
		}
		if len(snap.Messages) == 0 {
			return nil
		}
		var uids []uint32
		for range n {
			uids = append(uids, snap.Messages[r.IntN(len(snap.Messages))].UID)
		}
		return uids
	}
	// known keeps the UIDs already recorded (a delivery records its UID
	// after Deliver returns; movers and expungers act only on recorded ones).
	known := func(box string, uids []uint32) []uint32 {
		var out []uint32
		for _, uid := range uids {
			if _, ok := byUID[where{box, uid}]; ok {
				out = append(out, uid)
			}
		}
		return out
	}
	run := func(f func(r *rand.Rand)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				f(r)
			}
		}()
	}

	for range 4 { // deliverers
		run(func(r *rand.Rand) {
			id := int(nextID.Add(1))
			body := fmt.Sprintf("X-Id: %d\r\nSubject: stress\r\n\r\n%s\r\n", id, strings.Repeat("x", r.IntN(2000)))
			uid, err := in.Deliver(strings.NewReader(body))
			if err != nil {
				fail("deliver: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			claim("INBOX", uid, id)
		})
	}
	for range 2 { // flaggers
		run(func(r *rand.Rand) {
			box := []string{"INBOX", "Trash"}[r.IntN(2)]
			uids := randomUIDs(r, boxOf[box], 3)
			flags := [][]string{{FlagSeen}, {FlagFlagged, "$Work"}, {"kw" + fmt.Sprint(r.IntN(5))}, {FlagDeleted}}[r.IntN(4)]
			if _, _, err := boxOf[box].StoreFlags(uids, FlagOp(r.IntN(3)), flags, 0); err != nil {
				fail("flags: %v", err)
			}
		})
	}
	run(func(r *rand.Rand) { // mover
		uids := randomUIDs(r, in, 2)
		mu.Lock()
		defer mu.Unlock()
		src, dst, err := in.MoveTo(trash, known("INBOX", uids))
		if err != nil {
			fail("move: %v", err)
			return
		}
		for i := range src {
			id, ok := byUID[where{"INBOX", src[i]}]
			if !ok || loc[id] != (where{"INBOX", src[i]}) {
				fail("moved unknown or displaced INBOX UID %d", src[i])
				continue
			}
			delete(byUID, where{"INBOX", src[i]})
			claim("Trash", dst[i], id)
		}
		time.Sleep(time.Millisecond)
	})
	run(func(r *rand.Rand) { // expunger
		box := []string{"INBOX", "Trash"}[r.IntN(2)]
		uids := randomUIDs(r, boxOf[box], 1)
		mu.Lock()
		defer mu.Unlock()
		done, err := boxOf[box].Expunge(known(box, uids))
		if err != nil {
			fail("expunge: %v", err)
			return
		}
		for _, uid := range done {
			id, ok := byUID[where{box, uid}]
			if !ok || expunged[id] {
				fail("expunged unknown or already expunged %s UID %d", box, uid)
				continue
			}
			delete(byUID, where{box, uid})
			delete(loc, id)
			expunged[id] = true
		}
		time.Sleep(2 * time.Millisecond)
	})
	for range 2 { // listers and readers
		run(func(r *rand.Rand) {
			m := boxOf[[]string{"INBOX", "Trash"}[r.IntN(2)]]
			snap, err := m.Snapshot()
			if err != nil {
				fail("snapshot: %v", err)
				return
			}
			for i := 1; i < len(snap.Messages); i++ {
				if snap.Messages[i].UID <= snap.Messages[i-1].UID {
					fail("snapshot not in UID order")
				}
			}
			if len(snap.Messages) > 0 {
				msg := snap.Messages[r.IntN(len(snap.Messages))]
				rc, mm, err := m.Open(msg.UID)
				if err != nil {
					return // expunged meanwhile
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || int64(len(b)) != mm.Size || !strings.HasPrefix(string(b), "X-Id: ") {
					fail("open UID %d: %d bytes, size %d, %v", msg.UID, len(b), mm.Size, err)
				}
			}
			if _, err := m.Status(); err != nil {
				fail("status: %v", err)
			}
		})
	}
	run(func(r *rand.Rand) { // uidlist readers
		for _, d := range []string{in.dir, trash.dir} {
			data, err := os.ReadFile(filepath.Join(d, uidlistName))
			if err != nil {
				continue // not yet written
			}
			ul, err := parseUidlist(data)
			if err != nil {
				fail("uidlist of %s does not parse: %v", d, err)
				continue
			}
			if !ul.complete && (len(data) == 0 || data[len(data)-1] == '\n') {
				fail("uidlist of %s has a bad line", d)
			}
		}
		time.Sleep(5 * time.Millisecond)
	})
	// The watcher: replay INBOX's events.
	live := map[uint32]bool{}
	var liveMu sync.Mutex // guards live and evErr
	var evErr error
	evDone := make(chan struct{})
	go func() {
		defer close(evDone)
		var last uint64
		for ev := range w.C {
			liveMu.Lock()
			if ev.ModSeq <= last && evErr == nil {
				evErr = fmt.Errorf("event modseq %d after %d", ev.ModSeq, last)
			}
			last = ev.ModSeq
			switch ev.Kind {
			case EventNew:
				if live[ev.UID] && evErr == nil {
					evErr = fmt.Errorf("EventNew twice for %d", ev.UID)
				}
				live[ev.UID] = true
			case EventExpunge:
				if !live[ev.UID] && evErr == nil {
					evErr = fmt.Errorf("EventExpunge for unknown %d", ev.UID)
				}
				delete(live, ev.UID)
			case EventFlags:
				if !live[ev.UID] && evErr == nil {
					evErr = fmt.Errorf("EventFlags for unknown %d", ev.UID)
				}
			}
			liveMu.Unlock()
		}
	}()

	time.Sleep(dur)
	close(stop)
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d failures, first: %v", failures.Load(), firstFail)
	}

	// Final state: every id in exactly one place or expunged.
	final := map[string]map[uint32]bool{}
	for name, m := range boxOf {
		snap, err := m.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		final[name] = map[uint32]bool{}
		for _, mm := range snap.Messages {
			final[name][mm.UID] = true
			rc, _, err := m.Open(mm.UID)
			if err != nil {
				t.Fatalf("%s UID %d unreadable: %v", name, mm.UID, err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			var id int
			fmt.Sscanf(string(b), "X-Id: %d", &id)
			if want, ok := byUID[where{name, mm.UID}]; !ok || want != id {
				t.Fatalf("%s UID %d holds id %d, expected %d (%v)", name, mm.UID, id, want, ok)
			}
		}
	}
	n := int(nextID.Load())
	delivered := 0
	for id := 1; id <= n; id++ {
		l, present := loc[id]
		if present == expunged[id] {
			if !present && !expunged[id] {
				continue // delivery started but stopped before it was recorded? (never: recorded under mu)
			}
			t.Fatalf("id %d present=%v expunged=%v", id, present, expunged[id])
		}
		delivered++
		if present && !final[l.box][l.uid] {
			t.Fatalf("id %d should be %s UID %d but is not", id, l.box, l.uid)
		}
	}
	total := len(final["INBOX"]) + len(final["Trash"]) + len(expunged)
	if total != len(loc)+len(expunged) {
		t.Fatalf("final %d+%d messages, %d expunged, %d tracked", len(final["INBOX"]), len(final["Trash"]), len(expunged), len(loc))
	}

	// Events replay to INBOX's final state (wait, bounded, for the reader to
	// catch up: Close drops what is still queued).
	matches := func() bool {
		liveMu.Lock()
		defer liveMu.Unlock()
		if len(live) != len(final["INBOX"]) {
			return false
		}
		for uid := range final["INBOX"] {
			if !live[uid] {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(10 * time.Second); !matches() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	w.Close()
	<-evDone
	if evErr != nil {
		t.Fatal(evErr)
	}
	for uid := range final["INBOX"] {
		if !live[uid] {
			t.Fatalf("watcher missed INBOX UID %d", uid)
		}
	}
	if len(live) != len(final["INBOX"]) {
		t.Fatalf("watcher sees %d messages, INBOX has %d", len(live), len(final["INBOX"]))
	}

	// A restart reads the same UIDs back.
	s2, err := New(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	u2, _ := s2.User("stress@example.com")
	for name := range boxOf {
		m2, err := u2.Mailbox(name)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := m2.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Messages) != len(final[name]) {
			t.Fatalf("%s after restart: %d messages, want %d", name, len(snap.Messages), len(final[name]))
		}
		for _, mm := range snap.Messages {
			if !final[name][mm.UID] {
				t.Fatalf("%s after restart: unknown UID %d", name, mm.UID)
			}
		}
	}
	t.Logf("delivered %d, expunged %d, INBOX %d, Trash %d", delivered, len(expunged), len(final["INBOX"]), len(final["Trash"]))
}
