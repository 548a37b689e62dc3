package imap_test

import (
	"crypto/tls"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/imap"
)

// capsOf returns the capabilities a CAPABILITY command reports.
func capsOf(t *testing.T, r *rawConn) []string {
	t.Helper()
	for _, l := range r.expectOK("CAPABILITY") {
		if rest, ok := strings.CutPrefix(l, "* CAPABILITY "); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatal("no CAPABILITY response")
	return nil
}

// startTLS upgrades a raw connection with STARTTLS.
func startTLS(t *testing.T, r *rawConn, cfg *tls.Config) *rawConn {
	t.Helper()
	r.expectOK("STARTTLS")
	tc := tls.Client(r.c, cfg)
	_ = tc.SetDeadline(time.Now().Add(ioTimeout))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	return newRaw(t, tc)
}

func plainAuth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// TestAuthPolicy: passwords only over TLS or loopback, unless
// allow_plaintext_auth; the capability list says so (RFC 9051 §6.2.3).
func TestAuthPolicy(t *testing.T) {
	tests := []struct {
		name       string
		allowPlain bool
		remote     bool
		implicit   bool // implicit-TLS listener
		starttls   bool // upgrade before logging in
		wantLogin  bool
	}{
		{name: "plain from elsewhere", remote: true},
		{name: "plain from elsewhere, allow_plaintext_auth", remote: true, allowPlain: true, wantLogin: true},
		{name: "plain from loopback", wantLogin: true},
		{name: "STARTTLS from elsewhere", remote: true, starttls: true, wantLogin: true},
		{name: "implicit TLS from elsewhere", remote: true, implicit: true, wantLogin: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, func(o *imap.Options) { o.AllowPlaintextAuth = tc.allowPlain })
			addr := ts.listen(tc.remote, tc.implicit)
			var r *rawConn
			if tc.implicit {
				c, err := tls.Dial("tcp", addr, ts.clientTLS)
				if err != nil {
					t.Fatal(err)
				}
				r = newRaw(t, c)
				r.readLine()
			} else {
				r = dialRaw(t, addr)
			}
			caps := capsOf(t, r)
			if tc.starttls {
				if !slices.Contains(caps, "STARTTLS") || !slices.Contains(caps, "LOGINDISABLED") {
					t.Fatalf("before STARTTLS: caps %v, want STARTTLS and LOGINDISABLED", caps)
				}
				r = startTLS(t, r, ts.clientTLS)
				caps = capsOf(t, r)
				if slices.Contains(caps, "STARTTLS") {
					t.Errorf("STARTTLS offered again after TLS: %v", caps)
				}
			}
			if tc.implicit && slices.Contains(caps, "STARTTLS") {
				t.Errorf("STARTTLS offered on a TLS connection: %v", caps)
			}
			if got := slices.Contains(caps, "AUTH=PLAIN"); got != tc.wantLogin {
				t.Errorf("AUTH=PLAIN offered = %v, want %v (caps %v)", got, tc.wantLogin, caps)
			}
			if got := slices.Contains(caps, "LOGINDISABLED"); got == tc.wantLogin {
				t.Errorf("LOGINDISABLED = %v, want %v (caps %v)", got, !tc.wantLogin, caps)
			}
			_, st := r.cmd("LOGIN %s %q", alice, password)
			if tc.wantLogin != strings.HasPrefix(st, "OK") {
				t.Errorf("LOGIN: %q, want success %v", st, tc.wantLogin)
			}
			if !tc.wantLogin && !strings.Contains(st, "[PRIVACYREQUIRED]") {
				t.Errorf("LOGIN refused with %q, want NO [PRIVACYREQUIRED]", st)
			}
			if !tc.wantLogin {
				_, st = r.cmd("AUTHENTICATE PLAIN %s", plainAuth(alice, password))
				if !strings.HasPrefix(st, "NO [PRIVACYREQUIRED]") {
					t.Errorf("AUTHENTICATE: %q, want NO [PRIVACYREQUIRED]", st)
				}
			}
		})
	}
}

func TestAuthenticatePlain(t *testing.T) {
	ts := startServer(t, nil)
	tests := []struct {
		name, user, pass string
		ok               bool
	}{
		{"good", alice, password, true},
		{"wrong password", alice, "nope", false},
		{"unknown user", "nobody@example.test", password, false},
		{"mixed-case login", "Alice@Example.TEST", password, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, ts.addr)
			_, st := r.cmd("AUTHENTICATE PLAIN %s", plainAuth(tc.user, tc.pass)) // SASL-IR
			if tc.ok != strings.HasPrefix(st, "OK") {
				t.Fatalf("AUTHENTICATE: %q, want ok=%v", st, tc.ok)
			}
			if !tc.ok && !strings.Contains(st, "[AUTHENTICATIONFAILED]") {
				t.Errorf("got %q, want [AUTHENTICATIONFAILED]", st)
			}
			if tc.ok {
				r.expectOK("SELECT INBOX")
			}
		})
	}
	t.Run("continuation", func(t *testing.T) {
		r := dialRaw(t, ts.addr)
		r.write("a AUTHENTICATE PLAIN\r\n")
		if l := r.readLine(); !strings.HasPrefix(l, "+") {
			t.Fatalf("got %q, want a continuation", l)
		}
		r.write(plainAuth(alice, password) + "\r\n")
		if _, st := r.readUntil("a"); !strings.HasPrefix(st, "OK") {
			t.Fatalf("got %q", st)
		}
	})
}

// TestAuthFailures: each failure waits longer; the last one closes the
// connection with BYE after its NO.
func TestAuthFailures(t *testing.T) {
	const base = 30 * time.Millisecond
	ts := startServer(t, func(o *imap.Options) {
		o.MaxAuthFailures = 3
		o.AuthFailureDelay = base
	})
	r := dialRaw(t, ts.addr)
	for i, want := range []time.Duration{base, 2 * base, 4 * base} {
		start := time.Now()
		_, st := r.cmd("LOGIN %s wrong%d", alice, i)
		if took := time.Since(start); took < want {
			t.Errorf("failure %d answered after %v, want at least %v", i+1, took, want)
		}
		if !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("failure %d: %q", i+1, st)
		}
	}
	if l := r.readLine(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("after the last failure: %q, want BYE", l)
	}
	if l, err := r.tryReadLine(ioTimeout); err == nil {
		t.Fatalf("connection still open, read %q", l)
	}
}

func TestConnectionsPerUser(t *testing.T) {
	ts := startServer(t, func(o *imap.Options) { o.MaxConnectionsPerUser = 2 })
	a := dialRaw(t, ts.addr)
	a.login(alice)
	b := dialRaw(t, ts.addr)
	b.login(alice)
	c := dialRaw(t, ts.addr)
	if _, st := c.cmd("LOGIN %s %q", alice, password); !strings.HasPrefix(st, "NO [LIMIT]") {
		t.Fatalf("third session: %q, want NO [LIMIT]", st)
	}
	c.login(bob) // another user is not limited by alice's sessions
	a.expectOK("LOGOUT")
	d := dialRaw(t, ts.addr)
	// The slot is free once the first session is gone.
	deadline := time.Now().Add(ioTimeout)
	for {
		_, st := d.cmd("LOGIN %s %q", alice, password)
		if strings.HasPrefix(st, "OK") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not released: %q", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// UNAUTHENTICATE releases a slot too.
	b.expectOK("UNAUTHENTICATE")
	c2 := dialRaw(t, ts.addr)
	c2.login(alice)
}

// TestGarbageBeforeLogin: a first command that is not IMAP ends the
// connection (cross-protocol attacks; EXAMPLES 14).
func TestGarbageBeforeLogin(t *testing.T) {
	ts := startServer(t, nil)
	r := dialRaw(t, ts.addr)
	r.write("GET / HTTP/1.1\r\n")
	var lines []string
	for {
		l, err := r.tryReadLine(ioTimeout)
		if err != nil {
			break
		}
		lines = append(lines, l)
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "* BYE") }) {
		t.Fatalf("got %q, want a BYE and a close", lines)
	}
}

// TestCommandTooLong: a command line over go-imap's 50 KiB limit is not
// executed.
func TestCommandTooLong(t *testing.T) {
	ts := startServer(t, nil)
	r := dialRaw(t, ts.addr)
	r.login(alice)
	r.write("a1 CREATE " + strings.Repeat("x", 100<<10) + "\r\n")
	for {
		l, err := r.tryReadLine(ioTimeout)
		if err != nil {
			break // closed: fine
		}
		if strings.HasPrefix(l, "a1 OK") {
			t.Fatalf("a 100 KiB command was accepted: %.80q", l)
		}
		if strings.HasPrefix(l, "a1 ") {
			break
		}
	}
	u, err := ts.store.User(alice)
	if err != nil {
		t.Fatal(err)
	}
	list, err := u.ListMailboxes()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if strings.HasPrefix(m.Name, "xxx") {
			t.Fatalf("mailbox %.20q created", m.Name)
		}
	}
}
