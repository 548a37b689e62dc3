package maildir

import (
	"errors"
	"log/slog"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// notifier watches the new/ and cur/ directories of every loaded mailbox with
// one inotify instance, so that a change made by another program marks the
// mailbox dirty (the next Snapshot or Status rescans it, and a background
// rescan feeds the watchers) while our own renames cost no rescan: each
// operation registers the events it is about to cause, and those are
// consumed silently. Without inotify (or past the watch limit) a mailbox
// falls back to comparing directory mtimes.
type notifier struct {
	log *slog.Logger
	fd  int // -1 when inotify is unavailable

	mu    sync.Mutex // serializes reads of fd; guards wds, paths and buf
	wds   map[int32]watchDir
	paths map[string]int32
	buf   []byte // read buffer of drain

	expMu    sync.Mutex
	expected map[expKey]int32

	stopR, stopW int // pipe that ends run
	wg           sync.WaitGroup
}

type watchDir struct {
	m    *Mailbox
	path string
}

type expKey struct {
	dir, name string
	in        bool // the name appears (create, moved to) rather than disappears
}

const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

func newNotifier(log *slog.Logger) *notifier {
	n := &notifier{log: log, fd: -1, wds: map[int32]watchDir{}, paths: map[string]int32{}, expected: map[expKey]int32{}, stopR: -1, stopW: -1}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		log.Warn("maildir: inotify unavailable, polling directory mtimes instead", "err", err)
		return n
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		unix.Close(fd)
		log.Warn("maildir: inotify unavailable, polling directory mtimes instead", "err", err)
		return n
	}
	n.fd, n.stopR, n.stopW = fd, p[0], p[1]
	return n
}

// watch adds a watch on a directory of m; false if it cannot (then m polls).
func (n *notifier) watch(m *Mailbox, path string) bool {
	if n.fd < 0 {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	wd, err := unix.InotifyAddWatch(n.fd, path, watchMask)
	if err != nil {
		n.log.Warn("maildir: inotify watch failed, polling instead", "dir", path, "err", err)
		return false
	}
	n.wds[int32(wd)] = watchDir{m: m, path: path}
	n.paths[path] = int32(wd)
	return true
}

func (n *notifier) unwatch(path string) {
	if n.fd < 0 {
		return
	}
	n.mu.Lock()
	wd, ok := n.paths[path]
	if ok {
		delete(n.paths, path)
		delete(n.wds, wd)
		_, _ = unix.InotifyRmWatch(n.fd, uint32(wd))
	}
	n.mu.Unlock()
	n.expMu.Lock()
	for k := range n.expected {
		if k.dir == path {
			delete(n.expected, k)
		}
	}
	n.expMu.Unlock()
}

// expect registers an event that one of our own operations is about to
// cause in a watched directory.
func (n *notifier) expect(dir, name string, in bool) {
	if n.fd < 0 {
		return
	}
	n.mu.Lock()
	_, watched := n.paths[dir]
	n.mu.Unlock()
	if !watched {
		return
	}
	n.expMu.Lock()
	n.expected[expKey{dir, name, in}]++
	n.expMu.Unlock()
}

// unexpect withdraws an expectation whose operation failed.
func (n *notifier) unexpect(dir, name string, in bool) {
	if n.fd < 0 {
		return
	}
	k := expKey{dir, name, in}
	n.expMu.Lock()
	if c := n.expected[k]; c > 1 {
		n.expected[k] = c - 1
	} else {
		delete(n.expected, k)
	}
	n.expMu.Unlock()
}

// drain reads every queued event and marks the mailboxes concerned dirty. It
// returns those that became dirty. Events are queued by the kernel when the
// change happens, so after drain every change completed before the call is
// accounted for.
func (n *notifier) drain() []*Mailbox {
	if n.fd < 0 {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var dirty []*Mailbox
	mark := func(m *Mailbox) {
		if !m.dirty.Swap(true) {
			dirty = append(dirty, m)
		}
	}
	if n.buf == nil {
		n.buf = make([]byte, 64<<10)
	}
	buf := n.buf
	for {
		k, err := unix.Read(n.fd, buf)
		if err != nil || k <= 0 {
			if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				n.log.Error("maildir: inotify read", "err", err)
			}
			return dirty
		}
		for off := 0; off+unix.SizeofInotifyEvent <= k; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			name := cstring(nameBytes)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				// Events were lost: everything is suspect.
				for _, w := range n.wds {
					mark(w.m)
				}
				n.expMu.Lock()
				clear(n.expected)
				n.expMu.Unlock()
				continue
			}
			w, ok := n.wds[ev.Wd]
			if !ok {
				continue
			}
			if ev.Mask&unix.IN_IGNORED != 0 {
				// The directory is gone (deleted or its filesystem unmounted).
				delete(n.wds, ev.Wd)
				delete(n.paths, w.path)
				mark(w.m)
				continue
			}
			if ev.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
				mark(w.m)
				continue
			}
			if name == "" || name[0] == '.' {
				continue
			}
			in := ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0
			key := expKey{w.path, name, in}
			n.expMu.Lock()
			c, expected := n.expected[key]
			if expected {
				if c > 1 {
					n.expected[key] = c - 1
				} else {
					delete(n.expected, key)
				}
			}
			n.expMu.Unlock()
			if !expected {
				mark(w.m)
			}
		}
	}
}

func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// run reads events as they come and, once a second, checks the mailboxes that
// have watchers, so watchers hear of outside changes without anyone asking.
func (n *notifier) run(s *Store) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			if n.fd >= 0 {
				fds := []unix.PollFd{{Fd: int32(n.fd), Events: unix.POLLIN}, {Fd: int32(n.stopR), Events: unix.POLLIN}}
				_, err := unix.Poll(fds, 1000)
				if err != nil && !errors.Is(err, unix.EINTR) {
					n.log.Error("maildir: poll inotify", "err", err)
					time.Sleep(100 * time.Millisecond)
				}
				if fds[1].Revents != 0 {
					return
				}
				for _, m := range n.drain() {
					if m.hasWatchers() {
						m.backgroundRefresh()
					}
				}
			} else {
				select {
				case <-s.stop:
					return
				case <-time.After(time.Second):
				}
			}
			select {
			case <-tick.C:
				s.pollWatched()
			default:
			}
		}
	}()
}

func (n *notifier) close() {
	if n.fd < 0 {
		n.wg.Wait()
		return
	}
	_, _ = unix.Write(n.stopW, []byte{1})
	n.wg.Wait()
	unix.Close(n.fd)
	unix.Close(n.stopR)
	unix.Close(n.stopW)
}

// ---------------------------------------------------------------- watchers

// Watcher delivers a mailbox's events in order. Events are never dropped: a
// slow reader makes the watcher buffer.
type Watcher struct {
	C <-chan Event

	m    *Mailbox
	ch   chan Event
	mu   sync.Mutex // guards q
	q    []Event
	wake chan struct{} // capacity 1: something was queued
	done chan struct{} // closed by Close
	once sync.Once
}

// Watch subscribes to the mailbox's events from now on. Close the watcher when done.
func (m *Mailbox) Watch() *Watcher {
	ch := make(chan Event)
	w := &Watcher{C: ch, m: m, ch: ch, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.pump()
	m.mu.Lock()
	if m.watchers == nil {
		m.watchers = map[*Watcher]struct{}{}
	}
	m.watchers[w] = struct{}{}
	m.mu.Unlock()
	m.u.s.setWatched(m, true)
	// Load now, so that outside changes from this moment on are noticed.
	if err := m.ensureLoaded(); err != nil {
		m.u.s.log.Debug("maildir: watch", "mailbox", m.name, "err", err)
	}
	return w
}

// Close unsubscribes. C is closed once the pending events are dropped.
func (w *Watcher) Close() {
	w.once.Do(func() {
		m := w.m
		m.mu.Lock()
		delete(m.watchers, w)
		left := len(m.watchers)
		m.mu.Unlock()
		if left == 0 {
			m.u.s.setWatched(m, false)
		}
		close(w.done)
	})
}

func (w *Watcher) push(ev Event) {
	w.mu.Lock()
	w.q = append(w.q, ev)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Watcher) pump() {
	defer close(w.ch)
	for {
		w.mu.Lock()
		if len(w.q) == 0 {
			w.q = nil // let a burst's buffer go
			w.mu.Unlock()
			select {
			case <-w.wake:
				continue
			case <-w.done:
				return
			}
		}
		ev := w.q[0]
		w.q[0] = Event{}
		w.q = w.q[1:]
		w.mu.Unlock()
		select {
		case w.ch <- ev:
		case <-w.done:
			return
		}
	}
}

// emit queues ev for every watcher. mu held (so events keep their order).
func (m *Mailbox) emit(ev Event) {
	for w := range m.watchers {
		w.push(ev)
	}
}

func (m *Mailbox) hasWatchers() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.watchers) > 0
}

// backgroundRefresh rescans in its own goroutine (one at a time per mailbox),
// again while changes keep coming.
func (m *Mailbox) backgroundRefresh() {
	if !m.bgBusy.CompareAndSwap(false, true) {
		return
	}
	m.u.s.bg.Add(1)
	go func() {
		defer m.u.s.bg.Done()
		defer m.bgBusy.Store(false)
		for i := 0; i < 10; i++ {
			if err := m.refresh(); err != nil {
				return
			}
			if !m.dirty.Load() {
				return
			}
		}
	}()
}

// needsRefresh is the cheap test of the once-a-second poll.
func (m *Mailbox) needsRefresh() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.loaded || m.gone {
		return false
	}
	return m.dirty.Load() || m.uidlistChangedLocked() || m.pollChangedLocked() ||
		(m.kwPending && m.keywordsChangedLocked())
}
