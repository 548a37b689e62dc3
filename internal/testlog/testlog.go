// Package testlog sends a component's slog output to the test's log, so a
// failing test shows what the server logged beside the failure and a passing
// one stays quiet (without -v).
//
// Lines logged after the test has ended (a session goroutine finishing late)
// are dropped: testing panics on t.Log after the test is complete.
package testlog

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// New returns a text logger writing to t.Log at level and above until the
// test ends.
func New(t testing.TB, level slog.Level) *slog.Logger {
	w := &writer{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type writer struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *writer) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
