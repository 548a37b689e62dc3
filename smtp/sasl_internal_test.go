package smtp

import (
	"errors"
	"testing"
	"time"
)

func TestLoginServer(t *testing.T) {
	var gotUser, gotPass string
	auth := func(u, p string) error {
		gotUser, gotPass = u, p
		if p != "pw" {
			return errors.New("bad")
		}
		return nil
	}
	tests := []struct {
		name      string
		responses [][]byte // nil first element: no initial response
		wantErr   bool
	}{
		{"challenges", [][]byte{nil, []byte("alice"), []byte("pw")}, false},
		{"initial response", [][]byte{[]byte("alice"), []byte("pw")}, false},
		{"wrong password", [][]byte{[]byte("alice"), []byte("nope")}, true},
		{"NUL in user name", [][]byte{[]byte("al\x00ice"), []byte("pw")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotUser, gotPass = "", ""
			l := &loginServer{auth: auth}
			var err error
			done := false
			for i, r := range tt.responses {
				var ch []byte
				ch, done, err = l.Next(r)
				if err != nil {
					break
				}
				if !done && i == len(tt.responses)-1 {
					t.Fatalf("not done after the last response (challenge %q)", ch)
				}
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && (gotUser != "alice" || gotPass != "pw" || !done) {
				t.Fatalf("authenticated %q/%q done=%v", gotUser, gotPass, done)
			}
			if _, _, err := l.Next([]byte("more")); err == nil && done {
				t.Fatal("Next after the end succeeded")
			}
		})
	}
}

func FuzzLoginServer(f *testing.F) {
	f.Add([]byte("alice"), []byte("pw"), true)
	f.Add([]byte{}, []byte("\x00"), false)
	f.Fuzz(func(t *testing.T, user, pass []byte, ir bool) {
		calls := 0
		l := &loginServer{auth: func(u, p string) error {
			calls++
			if u != string(user) || p != string(pass) {
				t.Fatalf("auth(%q, %q), sent %q, %q", u, p, user, pass)
			}
			return nil
		}}
		if !ir {
			if ch, done, err := l.Next(nil); err != nil || done || string(ch) != "Username:" {
				t.Fatalf("first step: %q %v %v", ch, done, err)
			}
		}
		if user == nil {
			user = []byte{}
		}
		_, done, err := l.Next(user)
		if err != nil {
			if !done || calls != 0 {
				t.Fatalf("error %v with done=%v after %d auth calls", err, done, calls)
			}
			return
		}
		_, done, err = l.Next(pass)
		if !done || (err == nil) != (calls == 1) {
			t.Fatalf("done=%v err=%v calls=%d", done, err, calls)
		}
	})
}

func TestSendLimits(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newSendLimits(3, 5, func() time.Time { return now })
	steps := []struct {
		advance time.Duration
		record  int
		ok      bool
		window  string
	}{
		{0, 3, false, "hour"}, // 3 in the hour
		{59 * time.Minute, 0, false, "hour"},
		{2 * time.Minute, 2, false, "day"}, // the first 3 left the hour; 5 today
		{22 * time.Hour, 0, false, "day"},
		{2 * time.Hour, 0, true, ""}, // 24 h after the first three
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		for range s.record {
			l.record("u")
		}
		ok, _, window := l.allow("u")
		if ok != s.ok || window != s.window {
			t.Fatalf("step %d: allow = %v %q, want %v %q", i, ok, window, s.ok, s.window)
		}
		if ok, _, _ := l.allow("other"); !ok {
			t.Fatalf("step %d: another user is limited", i)
		}
	}
	now = now.Add(48 * time.Hour)
	l.allow("u")
	if len(l.sent) != 0 {
		t.Fatalf("old entries kept: %v", l.sent)
	}
	if off := newSendLimits(0, 0, nil); !off.off() {
		t.Fatal("zero limits are not off")
	}
}
