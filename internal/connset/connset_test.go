package connset_test

import (
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/internal/connset"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "accept: too many open files" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// scriptListener answers Accept from a list of results, then net.ErrClosed.
type scriptListener struct {
	net.Listener       // nil: only Accept is called
	results      []any // net.Conn or error
}

func (l *scriptListener) Accept() (net.Conn, error) {
	if len(l.results) == 0 {
		return nil, net.ErrClosed
	}
	r := l.results[0]
	l.results = l.results[1:]
	if err, ok := r.(error); ok {
		return nil, err
	}
	return r.(net.Conn), nil
}

func TestAccept(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	boom := errors.New("boom")
	tests := []struct {
		name    string
		results []any
		retry   bool
		want    error
		pauses  []time.Duration
		handled int
	}{
		{"closed", nil, true, nil, nil, 0},
		{"conns then closed", []any{a, b}, true, nil, nil, 2},
		{"pauses double and reset after a success",
			[]any{timeoutErr{}, timeoutErr{}, timeoutErr{}, a, timeoutErr{}}, true, nil,
			[]time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 5 * time.Millisecond}, 1},
		{"error not retried is returned", []any{a, boom, b}, false, boom, nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var pauses []time.Duration
			handled := 0
			err := connset.Accept(&scriptListener{results: tc.results}, func(err error, pause time.Duration) bool {
				if tc.retry {
					pauses = append(pauses, pause)
				}
				return tc.retry
			}, func(net.Conn) { handled++ })
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("Accept returned %v, want %v", err, tc.want)
			}
			if !slices.Equal(pauses, tc.pauses) {
				t.Errorf("pauses %v, want %v", pauses, tc.pauses)
			}
			if handled != tc.handled {
				t.Errorf("%d connections handled, want %d", handled, tc.handled)
			}
		})
	}
}

// TestPauseCapped: the 9th pause in a row is 1 s, not 1.28 s (it sleeps the
// first eight, 1.3 s in all).
func TestPauseCapped(t *testing.T) {
	t.Parallel()
	var results []any
	for range 10 {
		results = append(results, timeoutErr{})
	}
	var last time.Duration
	n := 0
	_ = connset.Accept(&scriptListener{results: results}, func(_ error, pause time.Duration) bool {
		last = pause
		n++
		return n < 9 // the 9th is not retried: no 1 s sleep in the test
	}, func(net.Conn) {})
	if n != 9 || last != time.Second {
		t.Errorf("pause %d is %v, want the 1s cap at the 9th", n, last)
	}
}

func TestIsTimeout(t *testing.T) {
	if !connset.IsTimeout(timeoutErr{}) || connset.IsTimeout(errors.New("x")) || connset.IsTimeout(net.ErrClosed) {
		t.Error("IsTimeout wrong")
	}
}

func TestSet(t *testing.T) {
	var s connset.Set[int]
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !s.AddListener(l) || !s.Add(1) || !s.Add(2) {
		t.Fatal("refused before Close")
	}
	s.Done(1)
	if got := s.Conns(); !slices.Equal(got, []int{2}) {
		t.Errorf("Conns %v, want [2]", got)
	}
	if s.Closing() {
		t.Error("Closing before Close")
	}

	conns, first := s.Close()
	if !first || !slices.Equal(conns, []int{2}) || !s.Closing() {
		t.Errorf("Close = %v, %v; closing %v", conns, first, s.Closing())
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("listener not closed: Accept %v", err)
	}
	if _, first := s.Close(); first {
		t.Error("second Close reported first")
	}
	if s.Add(3) {
		t.Error("Add accepted after Close")
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if s.AddListener(l2) {
		t.Error("AddListener accepted after Close")
	}

	drained := s.Drained()
	select {
	case <-drained:
		t.Fatal("drained with a connection open")
	case <-time.After(20 * time.Millisecond):
	}
	s.Done(2)
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("not drained after the last Done")
	}
}
