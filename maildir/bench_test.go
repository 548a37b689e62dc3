package maildir

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks of the hot paths: durable delivery (alone and 8 at once, which
// share fsyncs through group commit), opening and listing a 100,000-message
// folder (cold: a new process's first look; warm: the shared index), one flag
// change in that folder, and the index's memory per message.

var (
	bigOnce sync.Once
	bigDir  string // a user tree whose INBOX holds bigCount messages
	bigErr  error
)

const bigCount = 100_000

func TestMain(m *testing.M) {
	code := m.Run()
	if bigDir != "" {
		os.RemoveAll(bigDir)
	}
	os.Exit(code)
}

// bigMailbox writes (once per test binary run) a 100,000-message INBOX the
// way Dovecot would have left it: files with S= and W= in cur/ and new/,
// a dovecot-uidlist with one record each.
func bigMailbox(b *testing.B) string {
	b.Helper()
	bigOnce.Do(func() {
		root, err := os.MkdirTemp("", "postyard-bench-")
		if err != nil {
			bigErr = err
			return
		}
		bigDir = root
		dir := filepath.Join(root, "example.com", "big")
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				bigErr = err
				return
			}
		}
		body := bytes.Repeat([]byte("x"), 200)
		names := make([]string, bigCount)
		t0 := int64(1_600_000_000)
		for i := range names {
			base := fmt.Sprintf("%d.M%dP1Q%d.bench,S=%d,W=%d", t0+int64(i), i, i, len(body), len(body))
			switch {
			case i%10 == 9:
				names[i] = "new/" + base
			case i%3 == 0:
				names[i] = "cur/" + base + ":2,"
			default:
				names[i] = "cur/" + base + ":2,S"
			}
		}
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(names); i += 4 {
					if err := os.WriteFile(filepath.Join(dir, names[i]), body, 0o600); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			bigErr = err
			return
		}
		var ul bytes.Buffer
		fmt.Fprintf(&ul, "3 V1600000000 N%d G%s\n", bigCount+1, newGUID())
		for i, n := range names {
			ul.WriteString(strconv.Itoa(i + 1))
			ul.WriteString(" :")
			ul.WriteString(baseOf(n[4:]))
			ul.WriteByte('\n')
		}
		bigErr = os.WriteFile(filepath.Join(dir, uidlistName), ul.Bytes(), 0o600)
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return bigDir
}

func openBig(b *testing.B, root string) (*Store, *Mailbox) {
	b.Helper()
	s, err := New(root, nil)
	if err != nil {
		b.Fatal(err)
	}
	u, err := s.User("big@example.com")
	if err != nil {
		b.Fatal(err)
	}
	m, err := u.Mailbox("INBOX")
	if err != nil {
		b.Fatal(err)
	}
	return s, m
}

// BenchmarkOpenList100k/cold: a fresh Store opens the folder and lists it
// (reads dovecot-uidlist, lists new/ and cur/, stats every file for its date).
// warm: the index is loaded; Snapshot returns the shared value. rebuild: the
// snapshot after a change (a new []Message of 100,000 entries).
func BenchmarkOpenList100k(b *testing.B) {
	root := bigMailbox(b)
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			s, m := openBig(b, root)
			snap, err := m.Snapshot()
			if err != nil || len(snap.Messages) != bigCount {
				b.Fatalf("%v %d", err, len(snap.Messages))
			}
			s.Close()
		}
	})
	s, m := openBig(b, root)
	defer s.Close()
	if _, err := m.Snapshot(); err != nil {
		b.Fatal(err)
	}
	b.Run("warm", func(b *testing.B) {
		for b.Loop() {
			snap, err := m.Snapshot()
			if err != nil || len(snap.Messages) != bigCount {
				b.Fatal(err)
			}
		}
	})
	b.Run("rebuild", func(b *testing.B) {
		for b.Loop() {
			m.mu.Lock()
			m.snap = nil
			m.mu.Unlock()
			snap, err := m.Snapshot()
			if err != nil || len(snap.Messages) != bigCount {
				b.Fatal(err)
			}
		}
	})
	b.Run("status", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Status(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFlagChange100k: one STORE +FLAGS / -FLAGS on one message of the
// 100,000-message folder: one rename, no uidlist write.
func BenchmarkFlagChange100k(b *testing.B) {
	root := bigMailbox(b)
	s, m := openBig(b, root)
	defer s.Close()
	if _, err := m.Snapshot(); err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	ops := []FlagOp{FlagsAdd, FlagsRemove}
	i := 0
	for b.Loop() {
		uid := uint32(1 + r.IntN(bigCount))
		up, _, err := m.StoreFlags([]uint32{uid}, ops[i%2], []string{FlagFlagged}, 0)
		if err != nil || len(up) > 1 {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkMemoryPerMessage: heap held by a loaded 100,000-message index
// (B/msg-index), and with its cached snapshot as well (B/msg).
func BenchmarkMemoryPerMessage(b *testing.B) {
	root := bigMailbox(b)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for b.Loop() {
		before := heap()
		s, m := openBig(b, root)
		if err := m.refresh(); err != nil {
			b.Fatal(err)
		}
		index := heap()
		snap, err := m.Snapshot()
		if err != nil || len(snap.Messages) != bigCount {
			b.Fatal(err)
		}
		snap = nil
		total := heap()
		b.ReportMetric(float64(index-before)/bigCount, "B/msg-index")
		b.ReportMetric(float64(total-before)/bigCount, "B/msg")
		runtime.KeepAlive(m)
		s.Close()
	}
}

// BenchmarkDeliver10K: durable delivery of a 10 KB message (tmp, fsync,
// rename, fsync new/, uidlist append and fsync). parallel8 runs 8 deliveries
// at once into one mailbox; group commit lets them share the fsyncs.
func BenchmarkDeliver10K(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrst\r\n"), 100)
	setup := func(b *testing.B) (*Store, *Mailbox) {
		s, err := New(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		u, _ := s.User("bench@example.com")
		m, err := u.Mailbox("INBOX")
		if err != nil {
			b.Fatal(err)
		}
		return s, m
	}
	b.Run("single", func(b *testing.B) {
		s, m := setup(b)
		defer s.Close()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := m.Deliver(bytes.NewReader(body)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("parallel8", func(b *testing.B) {
		s, m := setup(b)
		defer s.Close()
		b.SetBytes(int64(len(body)))
		b.SetParallelism((8 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := m.Deliver(bytes.NewReader(body)); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})
	b.Run("many8", func(b *testing.B) {
		// One message to 8 users (one SMTP transaction, 8 recipients).
		s, err := New(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		var boxes []*Mailbox
		for i := range 8 {
			u, _ := s.User(fmt.Sprintf("r%d@example.com", i))
			m, _ := u.Mailbox("INBOX")
			boxes = append(boxes, m)
		}
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			_, errs := s.DeliverMany(bytes.NewReader(body), boxes)
			for _, err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N*8)/b.Elapsed().Seconds(), "deliveries/s")
	})
}

// BenchmarkSessions10k: what 8 IMAP sessions on one 10,000-message INBOX do
// (the imap-load mix): flag changes on random UIDs, snapshots, message reads
// and appends, with a watcher per session. Our own changes must cost no
// directory rescan (rescans/op stays ~0).
func BenchmarkSessions10k(b *testing.B) {
	const count = 10_000
	s, err := New(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	u, _ := s.User("load@example.com")
	m, err := u.Mailbox("INBOX")
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("Subject: x\r\n\r\n0123456789012345678901234567890123456789\r\n"), 20)
	if err := m.ensureLoaded(); err != nil {
		b.Fatal(err)
	}
	ps := make([]*pending, 0, count)
	for range count {
		p, err := s.writeTmp(m.dir, bytes.NewReader(body), time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		ps = append(ps, p)
	}
	m.commit(ps)
	if ps[0].err != nil {
		b.Fatal(ps[0].err)
	}
	var watchers []*Watcher
	for range 8 {
		w := m.Watch()
		watchers = append(watchers, w)
		go func() {
			for range w.C {
			}
		}()
	}
	defer func() {
		for _, w := range watchers {
			w.Close()
		}
	}()
	if _, err := m.Snapshot(); err != nil {
		b.Fatal(err)
	}
	before := m.rescans.Load()
	var seq atomic.Uint64
	b.SetParallelism((8 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(seq.Add(1), 7))
		buf := make([]byte, 4096)
		for pb.Next() {
			i := seq.Add(1)
			snap, err := m.Snapshot()
			if err != nil {
				b.Error(err)
				return
			}
			uid := snap.Messages[r.IntN(len(snap.Messages))].UID
			op := FlagsAdd
			if i%2 == 0 {
				op = FlagsRemove
			}
			if _, _, err := m.StoreFlags([]uint32{uid}, op, []string{FlagSeen}, 0); err != nil {
				b.Error(err)
				return
			}
			rc, _, err := m.Open(snap.Messages[r.IntN(len(snap.Messages))].UID)
			if err != nil {
				b.Error(err)
				return
			}
			for {
				if _, err := rc.Read(buf); err != nil {
					break
				}
			}
			rc.Close()
			if i%10 == 0 {
				if _, err := m.Append(bytes.NewReader(body), []string{FlagSeen}, time.Time{}); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
	b.ReportMetric(float64(m.rescans.Load()-before)/float64(b.N), "rescans/op")
}
