package maildir

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Crash safety: a child process (this test binary, re-executed) works on a
// tree with three goroutines — deliveries, keyword changes, moves between
// INBOX and Trash, expunges, and uidlist rewrites made frequent — and logs
// "I" (intent) before and "A" (acknowledged) after each operation. The parent
// SIGKILLs it at a random moment, opens the tree itself and checks: every
// acknowledged message is present exactly once with an unchanged UID (or,
// acknowledged as expunged, absent); keywords acknowledged are there; a
// message only moved, vanished or appeared when an unacknowledged operation
// allowed it. Then the next child continues on the same tree.

const crashEnv = "POSTYARD_MAILDIR_CRASH_DIR"

type crashLoc struct {
	box string
	uid uint32
}

type crashMsg struct {
	loc      crashLoc
	kws      map[string]bool
	expunged bool
}

func TestCrashSafety(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("in the child")
	}
	rounds, budget := 300, 25*time.Second
	if testing.Short() {
		rounds, budget = 40, 5*time.Second
	}
	dir := t.TempDir()
	model := map[int]*crashMsg{}
	start := time.Now()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	done, acked := 0, 0
	for round := 1; round <= rounds && time.Since(start) < budget; round++ {
		journal := filepath.Join(dir, fmt.Sprintf("journal.%d", round))
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, "CRASH_JOURNAL="+journal, "CRASH_ROUND="+strconv.Itoa(round))
		cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(15+r.IntN(70)) * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		acked += verifyCrashRound(t, dir, journal, model)
		done++
	}
	n, exp := 0, 0
	for _, m := range model {
		if m.expunged {
			exp++
		} else {
			n++
		}
	}
	t.Logf("%d rounds in %s, %d acknowledged operations; %d messages live, %d expunged", done, time.Since(start).Round(time.Millisecond), acked, n, exp)
	if done < 10 {
		t.Fatalf("only %d rounds ran", done)
	}
}

// verifyCrashRound applies a journal to the model, compares it with the tree,
// then settles the model to what is on disk.
func verifyCrashRound(t *testing.T, dir, journal string, model map[int]*crashMsg) (acked int) {
	t.Helper()
	inflight := map[int][]string{}
	f, err := os.Open(journal)
	if err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 3 {
				continue
			}
			id, _ := strconv.Atoi(fs[2])
			m := model[id]
			switch {
			case fs[0] == "I":
				inflight[id] = append(inflight[id], fs[1])
				continue
			}
			acked++
			switch {
			case fs[0] == "A" && (fs[1] == "D" || fs[1] == "M") && len(fs) == 5:
				uid, _ := strconv.Atoi(fs[4])
				if m == nil {
					m = &crashMsg{kws: map[string]bool{}}
					model[id] = m
				}
				m.loc = crashLoc{fs[3], uint32(uid)}
			case fs[0] == "A" && fs[1] == "E":
				if m != nil {
					m.expunged = true
				}
			case fs[0] == "A" && fs[1] == "F" && len(fs) == 4:
				if m != nil {
					m.kws[fs[3]] = true
				}
			}
		}
		f.Close()
	}

	s, err := New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := s.User("crash@example.com")
	if err != nil {
		t.Fatal(err)
	}
	found := map[int]crashMsg{}
	for _, box := range []string{"INBOX", "Trash"} {
		m, err := u.Mailbox(box)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := m.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		for _, mm := range snap.Messages {
			rc, _, err := m.Open(mm.UID)
			if err != nil {
				t.Fatalf("%s UID %d: %v", box, mm.UID, err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			var id int
			if _, err := fmt.Sscanf(string(b), "X-Id: %d", &id); err != nil || int64(len(b)) != mm.Size {
				t.Fatalf("%s UID %d: bad content %q (size %d)", box, mm.UID, b, mm.Size)
			}
			if prev, dup := found[id]; dup {
				t.Fatalf("message %d twice: %s UID %d and %s UID %d", id, prev.loc.box, prev.loc.uid, box, mm.UID)
			}
			kws := map[string]bool{}
			for _, fl := range mm.Flags {
				kws[fl] = true
			}
			found[id] = crashMsg{loc: crashLoc{box, mm.UID}, kws: kws}
		}
		data, err := os.ReadFile(filepath.Join(m.dir, uidlistName))
		if err != nil {
			t.Fatal(err)
		}
		if ul, err := parseUidlist(data); err != nil || !ul.complete {
			t.Fatalf("%s uidlist after load: %v complete=%v\n%s", box, err, ul != nil && ul.complete, data)
		}
	}

	for id, m := range model {
		got, ok := found[id]
		ops := inflight[id]
		switch {
		case m.expunged && ok:
			t.Fatalf("message %d acknowledged expunged but found at %+v", id, got.loc)
		case m.expunged:
		case !ok && !slices.Contains(ops, "E"):
			t.Fatalf("message %d lost (was %+v, in flight %v)", id, m.loc, ops)
		case !ok:
			m.expunged = true // its expunge was under way
		case got.loc == m.loc:
		case got.loc.box != m.loc.box && slices.Contains(ops, "M"):
			m.loc = got.loc // its move was under way
		case got.loc.uid > m.loc.uid && countOf(ops, "M") >= 2:
			m.loc = got.loc // moved away and back by two moves under way
		default:
			t.Fatalf("message %d at %+v, expected %+v (in flight %v)", id, got.loc, m.loc, ops)
		}
		if ok {
			for kw := range m.kws {
				if !got.kws[kw] {
					t.Fatalf("message %d lost acknowledged keyword %s (has %v)", id, kw, got.kws)
				}
			}
			m.kws = got.kws
		}
	}
	for id, got := range found {
		if _, known := model[id]; known {
			continue
		}
		if !slices.Contains(inflight[id], "D") {
			t.Fatalf("message %d appeared at %+v without a delivery", id, got.loc)
		}
		model[id] = &crashMsg{loc: got.loc, kws: got.kws}
	}
	return acked
}

// TestCrashChild is the child of TestCrashSafety; it runs until killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("only run by TestCrashSafety")
	}
	compactMinStale = 4
	round, _ := strconv.Atoi(os.Getenv("CRASH_ROUND"))
	jf, err := os.OpenFile(os.Getenv("CRASH_JOURNAL"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	var jmu sync.Mutex
	logf := func(format string, args ...any) {
		jmu.Lock()
		defer jmu.Unlock()
		// One write per line: a kill leaves whole lines (page cache survives it).
		if _, err := jf.WriteString(fmt.Sprintf(format, args...) + "\n"); err != nil {
			panic(err)
		}
	}
	s, err := New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.User("crash@example.com")
	if err != nil {
		t.Fatal(err)
	}
	boxes := map[string]*Mailbox{}
	for _, b := range []string{"INBOX", "Trash"} {
		if boxes[b], err = u.Mailbox(b); err != nil {
			t.Fatal(err)
		}
	}
	other := map[string]string{"INBOX": "Trash", "Trash": "INBOX"}
	var seq atomic.Int64
	pick := func(r *rand.Rand) (string, uint32, int, bool) {
		box := []string{"INBOX", "Trash"}[r.IntN(2)]
		snap, err := boxes[box].Snapshot()
		if err != nil || len(snap.Messages) == 0 {
			return "", 0, 0, false
		}
		uid := snap.Messages[r.IntN(len(snap.Messages))].UID
		rc, _, err := boxes[box].Open(uid)
		if err != nil {
			return "", 0, 0, false
		}
		var id int
		_, err = fmt.Fscanf(rc, "X-Id: %d", &id)
		rc.Close()
		return box, uid, id, err == nil
	}
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(round), uint64(g)))
			for {
				st, _ := boxes["INBOX"].Status()
				st2, _ := boxes["Trash"].Status()
				full := st.Messages+st2.Messages > 120
				switch op := r.IntN(10); {
				case op < 4 && !full:
					id := round*100000 + g*10000 + int(seq.Add(1))
					logf("I D %d", id)
					uid, err := boxes["INBOX"].Deliver(strings.NewReader(fmt.Sprintf("X-Id: %d\r\n\r\nbody %d\r\n", id, id)))
					if err != nil {
						panic(err)
					}
					logf("A D %d INBOX %d", id, uid)
				case op < 6:
					box, uid, id, ok := pick(r)
					if !ok {
						continue
					}
					kw := "k" + strconv.Itoa(r.IntN(6))
					logf("I F %d", id)
					up, _, err := boxes[box].StoreFlags([]uint32{uid}, FlagsAdd, []string{kw}, 0)
					if err != nil {
						panic(err)
					}
					if len(up) == 1 {
						logf("A F %d %s", id, kw)
					}
				case op < 8:
					box, uid, id, ok := pick(r)
					if !ok {
						continue
					}
					logf("I M %d", id)
					src, dst, err := boxes[box].MoveTo(boxes[other[box]], []uint32{uid})
					if err != nil {
						panic(err)
					}
					if len(src) == 1 {
						logf("A M %d %s %d", id, other[box], dst[0])
					}
				default:
					box, uid, id, ok := pick(r)
					if !ok {
						continue
					}
					logf("I E %d", id)
					gone, err := boxes[box].Expunge([]uint32{uid})
					if err != nil {
						panic(err)
					}
					if len(gone) == 1 {
						logf("A E %d", id)
					}
				}
			}
		}()
	}
	wg.Wait()
}

func countOf(ops []string, op string) int {
	n := 0
	for _, o := range ops {
		if o == op {
			n++
		}
	}
	return n
}
