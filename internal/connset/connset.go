// Package connset is the Serve and Shutdown bookkeeping of a protocol front
// end that runs its own accept loop (POP3 and IMAP).
//
// A Set knows the listeners being served and the connections being handled,
// so that Shutdown can stop accepting, reach every open session and wait for
// them; a connection accepted while Shutdown begins is refused instead of
// slipping past it. Accept is the loop itself, with the pause after a
// temporary accept failure (out of descriptors) that net/http uses, so that
// such a failure neither ends Serve nor spins.
package connset

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Set tracks listeners and connections of type C; the zero value is ready.
type Set[C comparable] struct {
	closing atomic.Bool

	mu        sync.Mutex // guards listeners and conns; closing is set under it
	listeners map[net.Listener]struct{}
	conns     map[C]struct{}

	wg sync.WaitGroup // one per connection added and not yet Done
}

// Closing reports whether Close has been called.
func (s *Set[C]) Closing() bool { return s.closing.Load() }

// AddListener registers l for Close; false once Close has been called (l
// is left as it is).
func (s *Set[C]) AddListener(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[l] = struct{}{}
	return true
}

// RemoveListener forgets l (when its Serve returns).
func (s *Set[C]) RemoveListener(l net.Listener) {
	s.mu.Lock()
	delete(s.listeners, l)
	s.mu.Unlock()
}

// Add registers a new connection, to be passed to Done when its session
// ends; false once Close has been called.
func (s *Set[C]) Add(c C) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[C]struct{})
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// Done forgets c and counts its session finished (for Wait).
func (s *Set[C]) Done(c C) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Close marks the set closing, closes every listener and returns the
// connections open at that moment; first is true for the first call only.
func (s *Set[C]) Close() (conns []C, first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first = !s.closing.Swap(true)
	for l := range s.listeners {
		_ = l.Close()
	}
	return s.snapshot(), first
}

// Conns returns the connections open now.
func (s *Set[C]) Conns() []C {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshot()
}

func (s *Set[C]) snapshot() []C {
	conns := make([]C, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// Drained returns a channel closed once every connection added is Done.
// Call it after Close, when no more can be added.
func (s *Set[C]) Drained() <-chan struct{} {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	return done
}

// Accept calls l.Accept and handle with each connection until l is closed,
// and then returns nil. After an error for which retry returns true it
// pauses (5 ms, doubling up to 1 s, back to none after a success) and
// accepts again; retry is told the pause, to log it. Any other error is
// returned. handle runs on the loop's goroutine: it must not block.
func Accept(l net.Listener, retry func(err error, pause time.Duration) bool, handle func(net.Conn)) error {
	var pause time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			next := min(max(2*pause, 5*time.Millisecond), time.Second)
			if !retry(err, next) {
				return err
			}
			pause = next
			time.Sleep(pause)
			continue
		}
		pause = 0
		handle(c)
	}
}

// IsTimeout reports whether err is a net.Error timeout, the accept failures
// worth retrying for a caller that returns on any other.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
