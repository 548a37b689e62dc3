package pop3_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/config"
	"github.com/postyard-mail/postyard/maildir"
	"github.com/postyard-mail/postyard/pop3"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestCapa(t *testing.T) {
	base := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	impl := "IMPLEMENTATION Postyard"
	secure := newEnv(t)
	insecure := newEnv(t, insecureLoopback())
	noTLS := newEnv(t, insecureLoopback(), withOptions(func(o *pop3.Options) { o.TLS = nil }))
	plaintextOK := newEnv(t, insecureLoopback(), withOptions(func(o *pop3.Options) { o.Security.AllowPlaintextAuth = true }))
	tests := []struct {
		name  string
		dial  func(t testing.TB) *client
		login bool
		want  []string
	}{
		{"loopback counts as secure", secure.dial, false, append(slices.Clone(base), "USER", "SASL PLAIN", "STLS", impl)},
		{"implicit TLS", secure.dialTLS, false, append(slices.Clone(base), "USER", "SASL PLAIN", impl)},
		{"no TLS yet: passwords not offered", insecure.dial, false, append(slices.Clone(base), "STLS", impl)},
		{"implicit TLS on an insecure network", insecure.dialTLS, false, append(slices.Clone(base), "USER", "SASL PLAIN", impl)},
		{"no certificate: no STLS", noTLS.dial, false, append(slices.Clone(base), impl)},
		{"allow_plaintext_auth", plaintextOK.dial, false, append(slices.Clone(base), "USER", "SASL PLAIN", "STLS", impl)},
		{"TRANSACTION state", secure.dial, true, append(slices.Clone(base), impl)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.dial(t)
			if tt.login {
				c.login(alice, alicePW)
			}
			if got := c.ok("CAPA"); got != "capability list follows" {
				t.Errorf("CAPA: +OK %q", got)
			}
			if got := c.multi(); !slices.Equal(got, tt.want) {
				t.Errorf("CAPA lists %q, want %q", got, tt.want)
			}
			c.quit()
		})
	}
}

// TestErrorReplies drives every command that can fail, in every state, and
// checks the exact reply, and that the session goes on afterwards.
func TestErrorReplies(t *testing.T) {
	e := newEnv(t)
	insecure := newEnv(t, insecureLoopback())
	noTLS := newEnv(t, withOptions(func(o *pop3.Options) { o.TLS = nil }))
	for i := 1; i <= 3; i++ {
		e.deliver(alice, testMessage(fmt.Sprint("message ", i), "body"))
	}

	type tcase struct {
		name  string
		env   *env
		state string // "auth", "user" (after USER), "tls" (implicit TLS), "trans" (logged in, message 2 deleted)
		cmd   string
		want  string
	}
	notAuth := "is not valid in the AUTHORIZATION state (log in first)"
	notTrans := "is not valid in the TRANSACTION state"
	refused := "-ERR [AUTH] plaintext authentication is disallowed on a connection without TLS; use STLS first"
	var tests []tcase
	for _, c := range []string{"STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL", "UIDL 1"} {
		verb, _, _ := strings.Cut(c, " ")
		tests = append(tests, tcase{c + " before login", e, "auth", c, "-ERR " + verb + " " + notAuth})
	}
	for _, c := range []string{"USER bob@example.test", "PASS x", "AUTH PLAIN", "AUTH PLAIN " + b64("\x00"+alice+"\x00"+alicePW), "STLS"} {
		verb, _, _ := strings.Cut(c, " ")
		tests = append(tests, tcase{c + " after login", e, "trans", c, "-ERR " + verb + " " + notTrans})
	}
	tests = append(tests, []tcase{
		// AUTHORIZATION
		{"PASS without USER", e, "auth", "PASS x", "-ERR send USER first"},
		{"USER without name", e, "auth", "USER", "-ERR syntax: USER name"},
		{"USER with two names", e, "auth", "USER a b", "-ERR syntax: USER name"},
		{"PASS empty", e, "user", "PASS", "-ERR syntax: PASS password"},
		{"PASS wrong", e, "user", "PASS wrong", "-ERR [AUTH] invalid user name or password"},
		{"PASS of the other user", e, "user", "PASS " + bobPW, "-ERR [AUTH] invalid user name or password"},
		{"unknown SASL mechanism", e, "auth", "AUTH CRAM-MD5", `-ERR unsupported SASL mechanism "CRAM-MD5" (PLAIN is)`},
		{"AUTH with too many args", e, "auth", "AUTH PLAIN a b", "-ERR syntax: AUTH mechanism [initial-response]"},
		{"AUTH not base64", e, "auth", "AUTH PLAIN !!!!", "-ERR SASL response is not valid base64"},
		{"AUTH without NULs", e, "auth", "AUTH PLAIN " + b64(alice), "-ERR malformed PLAIN response (want authzid NUL authcid NUL password)"},
		{"AUTH empty login", e, "auth", "AUTH PLAIN " + b64("\x00\x00pw"), "-ERR malformed PLAIN response (want authzid NUL authcid NUL password)"},
		{"AUTH empty initial response", e, "auth", "AUTH PLAIN =", "-ERR malformed PLAIN response (want authzid NUL authcid NUL password)"},
		{"AUTH as another user", e, "auth", "AUTH PLAIN " + b64(bob+"\x00"+alice+"\x00"+alicePW), `-ERR [AUTH] logging in as another user (authorization identity "bob@example.test") is not supported`},
		{"AUTH wrong password", e, "auth", "AUTH PLAIN " + b64("\x00"+alice+"\x00wrong"), "-ERR [AUTH] invalid user name or password"},
		{"AUTH unknown user", e, "auth", "AUTH PLAIN " + b64("\x00nobody@example.test\x00x"), "-ERR [AUTH] invalid user name or password"},
		{"CAPA with argument", e, "auth", "CAPA x", "-ERR syntax: CAPA takes no argument"},
		{"QUIT with argument", e, "auth", "QUIT x", "-ERR syntax: QUIT takes no argument"},
		{"STLS with argument", e, "auth", "STLS x", "-ERR syntax: STLS takes no argument"},
		{"STLS over TLS", e, "tls", "STLS", "-ERR TLS is already active"},
		{"STLS without certificate", noTLS, "auth", "STLS", "-ERR STLS is not available on this server"},
		{"APOP not offered", e, "auth", "APOP alice 0123456789abcdef0123456789abcdef", `-ERR unknown command "APOP"`},
		{"unknown command", e, "auth", "XYZZ", `-ERR unknown command "XYZZ"`},
		{"keyword of digits", e, "auth", "1234", "-ERR a command starts with a keyword of 3 or 4 letters"},
		{"control character", e, "auth", "USER a\x01b", "-ERR control character 0x01 in command line"},
		{"empty line", e, "auth", "", "-ERR empty command line"},
		{"line over 255 octets", e, "auth", "USER " + strings.Repeat("a", 250), "-ERR command line too long (257 octets; the limit is 255)"},
		{"USER without TLS", insecure, "auth", "USER " + alice, refused},
		{"AUTH without TLS", insecure, "auth", "AUTH PLAIN", refused},
		{"AUTH with initial response without TLS", insecure, "auth", "AUTH PLAIN " + b64("\x00"+alice+"\x00"+alicePW), refused},
		{"unknown mechanism without TLS", insecure, "auth", "AUTH LOGIN", `-ERR unsupported SASL mechanism "LOGIN" (PLAIN is)`},
		// TRANSACTION
		{"STAT with argument", e, "trans", "STAT 1", "-ERR syntax: STAT takes no argument"},
		{"NOOP with argument", e, "trans", "NOOP 1", "-ERR syntax: NOOP takes no argument"},
		{"RSET with argument", e, "trans", "RSET 1", "-ERR syntax: RSET takes no argument"},
		{"QUIT with argument in TRANSACTION", e, "trans", "QUIT 1", "-ERR syntax: QUIT takes no argument"},
		{"unknown command in TRANSACTION", e, "trans", "LAST", `-ERR unknown command "LAST"`},
		{"line over 255 octets in TRANSACTION", e, "trans", "LIST " + strings.Repeat("1", 300), "-ERR command line too long (307 octets; the limit is 255)"},
	}...)
	for _, verb := range []string{"LIST", "UIDL"} {
		tests = append(tests, []tcase{
			{verb + " not a number", e, "trans", verb + " a", `-ERR invalid message number "a"`},
			{verb + " signed", e, "trans", verb + " +1", `-ERR invalid message number "+1"`},
			{verb + " huge", e, "trans", verb + " 12345678901", `-ERR invalid message number "12345678901"`},
			{verb + " zero", e, "trans", verb + " 0", "-ERR no such message: 0 (the maildrop has 3)"},
			{verb + " past the end", e, "trans", verb + " 4", "-ERR no such message: 4 (the maildrop has 3)"},
			{verb + " deleted", e, "trans", verb + " 2", "-ERR message 2 is deleted"},
			{verb + " two args", e, "trans", verb + " 1 3", "-ERR syntax: " + verb + " [msg]"},
		}...)
	}
	tests = append(tests, []tcase{
		{"RETR no arg", e, "trans", "RETR", "-ERR syntax: RETR msg"},
		{"RETR two args", e, "trans", "RETR 1 3", "-ERR syntax: RETR msg"},
		{"RETR not a number", e, "trans", "RETR x", `-ERR invalid message number "x"`},
		{"RETR negative", e, "trans", "RETR -1", `-ERR invalid message number "-1"`},
		{"RETR past the end", e, "trans", "RETR 4", "-ERR no such message: 4 (the maildrop has 3)"},
		{"RETR deleted", e, "trans", "RETR 2", "-ERR message 2 is deleted"},
		{"DELE no arg", e, "trans", "DELE", "-ERR syntax: DELE msg"},
		{"DELE deleted", e, "trans", "DELE 2", "-ERR message 2 is deleted"},
		{"DELE past the end", e, "trans", "DELE 9", "-ERR no such message: 9 (the maildrop has 3)"},
		{"TOP one arg", e, "trans", "TOP 1", "-ERR syntax: TOP msg n"},
		{"TOP three args", e, "trans", "TOP 1 2 3", "-ERR syntax: TOP msg n"},
		{"TOP bad line count", e, "trans", "TOP 1 x", `-ERR invalid number of lines "x"`},
		{"TOP negative line count", e, "trans", "TOP 1 -1", `-ERR invalid number of lines "-1"`},
		{"TOP deleted", e, "trans", "TOP 2 0", "-ERR message 2 is deleted"},
		{"TOP past the end", e, "trans", "TOP 5 0", "-ERR no such message: 5 (the maildrop has 3)"},
	}...)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *client
			if tt.state == "tls" {
				c = tt.env.dialTLS(t)
			} else {
				c = tt.env.dial(t)
			}
			c.ok("CAPA") // a first command that is not POP3 would end the session
			c.multi()
			switch tt.state {
			case "user":
				c.ok("USER " + alice)
			case "trans":
				c.login(alice, alicePW)
				c.ok("DELE 2")
			}
			if got := c.cmd(tt.cmd); got != tt.want {
				t.Fatalf("%q: got %q\nwant %q", tt.cmd, got, tt.want)
			}
			// The session goes on in the same state.
			if tt.state == "trans" {
				if got := c.ok("STAT"); !strings.HasPrefix(got, "2 ") {
					t.Errorf("STAT after the error: %q", got)
				}
				c.ok("RSET")
			} else {
				c.ok("CAPA")
				c.multi()
			}
			c.quit()
		})
	}
}

func TestAuthCancelAndContinuation(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t)
	if got := c.cmd("AUTH PLAIN"); got != "+ " {
		t.Fatalf("AUTH PLAIN: %q, want a continuation", got)
	}
	if got := c.cmd("*"); got != "-ERR authentication cancelled" {
		t.Fatalf("cancel: %q", got)
	}
	if got := c.cmd("AUTH plain"); got != "+ " {
		t.Fatalf("AUTH plain: %q", got)
	}
	if got := c.cmd(b64("\x00" + alice + "\x00wrong")); got != "-ERR [AUTH] invalid user name or password" {
		t.Fatalf("wrong password on the continuation line: %q", got)
	}
	c.cmd("AUTH PLAIN")
	if got := c.ok(b64(alice + "\x00" + alice + "\x00" + alicePW)); got != "alice@example.test has 0 messages (0 octets)" {
		t.Fatalf("login: %q", got)
	}
	c.quit()

	// A SASL response longer than a command line is fine.
	c = e.dial(t)
	c.cmd("AUTH PLAIN")
	long := b64("\x00" + alice + "\x00" + strings.Repeat("x", 400))
	if got := c.cmd(long); got != "-ERR [AUTH] invalid user name or password" {
		t.Fatalf("long response: %q", got)
	}
	// The mechanism list.
	c.ok("AUTH")
	if got := c.multi(); !slices.Equal(got, []string{"PLAIN"}) {
		t.Errorf("AUTH lists %q", got)
	}
	c.quit()
}

func TestLoginInUse(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, testMessage("one"))
	first := e.dial(t)
	first.login(alice, alicePW)

	second := e.dialTLS(t)
	second.ok("USER " + alice)
	if got := second.cmd("PASS " + alicePW); got != "-ERR [IN-USE] the maildrop of alice@example.test is in use by another POP3 session" {
		t.Fatalf("second login: %q", got)
	}
	// Still in AUTHORIZATION: another user may log in on the same connection.
	if got := second.login(bob, bobPW); got != "bob@example.test has 0 messages (0 octets)" {
		t.Fatalf("bob: %q", got)
	}
	second.quit()

	// A session that ends without QUIT releases the lock too.
	_ = first.nc.Close()
	deadline := time.Now().Add(ioTimeout)
	for {
		c := e.dial(t)
		c.ok("USER " + alice)
		reply := c.cmd("PASS " + alicePW)
		if strings.HasPrefix(reply, "+OK ") {
			c.quit()
			break
		}
		if !strings.HasPrefix(reply, "-ERR [IN-USE]") || time.Now().After(deadline) {
			t.Fatalf("login after the first session dropped: %q", reply)
		}
		c.quit()
		time.Sleep(10 * time.Millisecond)
	}
}

// failingAuth is an Authenticator whose directory is broken.
type failingAuth struct{ user string }

func (f failingAuth) Authenticate(login, password string) (string, error) {
	if f.user != "" {
		return f.user, nil
	}
	return "", errors.New("passwd file unreadable")
}

func TestSystemErrors(t *testing.T) {
	tests := []struct {
		name string
		auth pop3.Authenticator
	}{
		{"directory fails", failingAuth{}},
		{"maildrop cannot be opened", failingAuth{user: "../escape@example.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, withOptions(func(o *pop3.Options) { o.Accounts = tt.auth }))
			c := e.dial(t)
			c.ok("USER x@example.test")
			got := c.cmd("PASS x")
			if !strings.HasPrefix(got, "-ERR [SYS/TEMP] internal server error, try again later (cid ") {
				t.Fatalf("PASS: %q", got)
			}
			c.quit()
		})
	}
}

func TestFirstCommandGarbage(t *testing.T) {
	e := newEnv(t)
	tests := []struct{ line, want string }{
		{"GET / HTTP/1.1", `-ERR unknown command "GET": this is a POP3 server`},
		{"EHLO client.example", `-ERR unknown command "EHLO": this is a POP3 server`},
		{"\x16\x03\x01\x02", "-ERR this is a POP3 server: control character 0x16 in command line"},
		{"a001 LOGIN x y", "-ERR this is a POP3 server: a command starts with a keyword of 3 or 4 letters"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			c := e.dial(t)
			c.send(tt.line + "\r\nHost: x")
			if got := c.readLine(); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			c.expectClosed()
		})
	}
}

func TestTooManyBadCommands(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t)
	c.ok("CAPA")
	c.multi()
	for i := 1; i < 10; i++ {
		if got := c.cmd("XYZ"); got != `-ERR unknown command "XYZ"` {
			t.Fatalf("bad command %d: %q", i, got)
		}
	}
	if got := c.cmd("XYZ"); got != `-ERR unknown command "XYZ"; too many bad commands, closing the connection` {
		t.Fatalf("10th bad command: %q", got)
	}
	c.expectClosed()
}

func TestLineTooLongDrops(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t)
	c.ok("CAPA")
	c.multi()
	c.send("USER " + strings.Repeat("a", 5000))
	if got := c.readLine(); got != "-ERR line too long (over 4096 octets): closing the connection" {
		t.Fatalf("got %q", got)
	}
	c.expectClosed()
}

func TestAuthFailuresDelayAndDisconnect(t *testing.T) {
	const delay = 40 * time.Millisecond
	e := newEnv(t, withOptions(func(o *pop3.Options) { o.AuthFailureDelay = delay }))
	c := e.dial(t)
	for i, want := range []string{
		"-ERR [AUTH] invalid user name or password",
		"-ERR [AUTH] invalid user name or password",
		"-ERR [AUTH] invalid user name or password; too many failures, closing the connection",
	} {
		c.ok("USER " + alice)
		start := time.Now()
		if got := c.cmd("PASS wrong"); got != want {
			t.Fatalf("failure %d: %q", i+1, got)
		}
		if min := delay << i; time.Since(start) < min {
			t.Errorf("failure %d answered after %s, want at least %s", i+1, time.Since(start), min)
		}
	}
	c.expectClosed()

	// SASL failures count the same way; a success in between does not reset them.
	c = e.dial(t)
	for range 2 {
		c.cmd("AUTH PLAIN " + b64("\x00"+alice+"\x00wrong"))
	}
	if got := c.cmd("AUTH PLAIN " + b64("\x00"+alice+"\x00wrong")); !strings.HasSuffix(got, "closing the connection") {
		t.Fatalf("third SASL failure: %q", got)
	}
	c.expectClosed()
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, withOptions(func(o *pop3.Options) { o.Config.IdleTimeout = config.Duration(150 * time.Millisecond) }))
	c := e.dial(t)
	c.login(alice, alicePW)
	start := time.Now()
	if got := c.readLine(); got != "-ERR autologout: idle for more than 150ms" {
		t.Fatalf("got %q", got)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Errorf("autologout after %s", time.Since(start))
	}
	c.expectClosed()
}

func TestSTLS(t *testing.T) {
	e := newEnv(t, insecureLoopback())
	e.deliver(alice, testMessage("over TLS", "secret body"))
	c := e.dial(t)
	c.ok("CAPA")
	c.multi()
	if got := c.ok("STLS"); got != "begin TLS negotiation" {
		t.Fatalf("STLS: %q", got)
	}
	tc := tls.Client(c.nc, e.clientTLS)
	if err := tc.HandshakeContext(context.Background()); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c.nc = tc
	c.r.Reset(tc)
	c.ok("CAPA")
	if got := c.multi(); !slices.Contains(got, "USER") || slices.Contains(got, "STLS") {
		t.Errorf("CAPA after STLS: %q", got)
	}
	if got := c.login(alice, alicePW); !strings.HasPrefix(got, "alice@example.test has 1 messages") {
		t.Fatalf("login: %q", got)
	}
	c.ok("RETR 1")
	if got := c.multi(); !slices.Contains(got, "secret body") {
		t.Errorf("RETR over TLS: %q", got)
	}
	c.quit()
}

func TestSTLSPipelinedInjection(t *testing.T) {
	e := newEnv(t, insecureLoopback())
	c := e.dial(t)
	c.ok("CAPA")
	c.multi()
	// Commands behind STLS in the same packet must not run after the handshake.
	c.send("STLS\r\nUSER " + alice)
	if got := c.readLine(); got != "-ERR STLS must be the last command of a pipeline; closing the connection" {
		t.Fatalf("got %q", got)
	}
	c.expectClosed()
}

func TestPipelining(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, testMessage("one", "1"))
	e.deliver(alice, testMessage("two", "2"))
	c := e.dial(t)
	// RFC 2449 §6.6: the client may send several commands at once.
	c.send("USER " + alice + "\r\nPASS " + alicePW + "\r\nSTAT\r\nLIST\r\nTOP 2 0\r\nDELE 1\r\nSTAT\r\nQUIT")
	c.readLine()
	c.readLine()
	if got := c.readLine(); !strings.HasPrefix(got, "+OK 2 ") {
		t.Fatalf("STAT: %q", got)
	}
	c.readLine()
	if got := c.multi(); len(got) != 2 {
		t.Fatalf("LIST: %q", got)
	}
	c.readLine()
	if got := c.multi(); !slices.Contains(got, "Subject: two") || got[len(got)-1] != "" {
		t.Fatalf("TOP: %q", got)
	}
	if got := c.readLine(); got != "+OK message 1 deleted" {
		t.Fatalf("DELE: %q", got)
	}
	if got := c.readLine(); !strings.HasPrefix(got, "+OK 1 ") {
		t.Fatalf("STAT: %q", got)
	}
	if got := c.readLine(); got != "+OK Postyard POP3 server signing off (1 messages deleted)" {
		t.Fatalf("QUIT: %q", got)
	}
	c.expectClosed()
}

// TestSession is a whole download-and-delete session, checked against the store.
func TestSession(t *testing.T) {
	e := newEnv(t)
	msgs := []string{
		testMessage("first", "hello", ".starts with a dot", "..two dots", "."),
		testMessage("second", "line 1", "line 2", "line 3"),
		testMessage("third"),
	}
	var uids []uint32
	for _, m := range msgs {
		uids = append(uids, e.deliver(alice, m))
	}
	snap, err := e.inbox(alice).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var total int
	for _, m := range msgs {
		total += len(m)
	}

	c := e.dial(t)
	if got := c.login(alice, alicePW); got != fmt.Sprintf("alice@example.test has 3 messages (%d octets)", total) {
		t.Fatalf("login: %q", got)
	}
	if got := c.ok("STAT"); got != fmt.Sprintf("3 %d", total) {
		t.Errorf("STAT: %q", got)
	}
	c.ok("LIST")
	var wantList, wantUIDL []string
	for i, m := range msgs {
		wantList = append(wantList, fmt.Sprintf("%d %d", i+1, len(m)))
		wantUIDL = append(wantUIDL, fmt.Sprintf("%d %08x%08x", i+1, uids[i], snap.UIDValidity))
	}
	if got := c.multi(); !slices.Equal(got, wantList) {
		t.Errorf("LIST: %q, want %q", got, wantList)
	}
	if got := c.ok("LIST 2"); got != wantList[1] {
		t.Errorf("LIST 2: %q", got)
	}
	c.ok("UIDL")
	if got := c.multi(); !slices.Equal(got, wantUIDL) {
		t.Errorf("UIDL: %q, want %q", got, wantUIDL)
	}
	if got := c.ok("UIDL 3"); got != wantUIDL[2] {
		t.Errorf("UIDL 3: %q", got)
	}

	// RETR: the exact bytes, dot-stuffed on the wire.
	if got := c.ok("RETR 1"); got != fmt.Sprintf("%d octets", len(msgs[0])) {
		t.Errorf("RETR 1: %q", got)
	}
	var raw []string
	for {
		l := c.readLine()
		if l == "." {
			break
		}
		raw = append(raw, l)
	}
	wantRaw := []string{"From: sender@example.org", "To: alice@example.test", "Subject: first", "Message-ID: <first@example.org>", "", "hello", "..starts with a dot", "...two dots", ".."}
	if !slices.Equal(raw, wantRaw) {
		t.Errorf("RETR 1 on the wire:\n%q\nwant\n%q", raw, wantRaw)
	}
	// TOP: header, blank line, n body lines.
	c.ok("TOP 2 2")
	if got := c.multi(); !slices.Equal(got[len(got)-3:], []string{"", "line 1", "line 2"}) {
		t.Errorf("TOP 2 2: %q", got)
	}
	c.ok("TOP 2 0")
	if got := c.multi(); got[len(got)-1] != "" || slices.Contains(got, "line 1") {
		t.Errorf("TOP 2 0: %q", got)
	}
	c.ok("TOP 2 99999999999999999999") // "everything", as some clients ask
	if got := c.multi(); got[len(got)-1] != "line 3" {
		t.Errorf("TOP 2 99999999999999999999: %q", got)
	}

	// DELE, RSET, DELE again.
	c.ok("DELE 2")
	if got := c.ok("STAT"); got != fmt.Sprintf("2 %d", total-len(msgs[1])) {
		t.Errorf("STAT after DELE: %q", got)
	}
	c.ok("LIST")
	if got := c.multi(); !slices.Equal(got, []string{wantList[0], wantList[2]}) {
		t.Errorf("LIST after DELE: %q", got)
	}
	if got := c.ok("RSET"); got != fmt.Sprintf("maildrop has 3 messages (%d octets)", total) {
		t.Errorf("RSET: %q", got)
	}
	c.ok("DELE 1")
	c.ok("DELE 3")
	if got := c.ok("NOOP"); got != "" {
		t.Errorf("NOOP: %q", got)
	}
	// A message delivered during the session is not part of its snapshot.
	late := e.deliver(alice, testMessage("late"))
	if got := c.ok("STAT"); got != fmt.Sprintf("1 %d", len(msgs[1])) {
		t.Errorf("STAT: %q", got)
	}
	if got := c.quit(); got != "Postyard POP3 server signing off (2 messages deleted)" {
		t.Errorf("QUIT: %q", got)
	}

	// UPDATE: the store lost messages 1 and 3; RETR 1 marked message 1
	// \Seen (gone now); TOP does not mark message 2.
	snap, err = e.inbox(alice).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var left []uint32
	for _, m := range snap.Messages {
		left = append(left, m.UID)
		if slices.Contains(m.Flags, maildir.FlagSeen) {
			t.Errorf("UID %d is \\Seen after TOP only", m.UID)
		}
	}
	if !slices.Equal(left, []uint32{uids[1], late}) {
		t.Errorf("left in the store: UIDs %v, want %v", left, []uint32{uids[1], late})
	}
}

func TestQuitWithoutUpdate(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, testMessage("keep me"))
	c := e.dial(t)
	c.login(alice, alicePW)
	c.ok("DELE 1")
	if got := c.cmd("RETR 1"); got != "-ERR message 1 is deleted" {
		t.Fatalf("RETR of a deleted message: %q", got)
	}
	_ = c.nc.Close()
	time.Sleep(50 * time.Millisecond)
	c = e.dial(t)
	if got := c.login(alice, alicePW); !strings.HasPrefix(got, "alice@example.test has 1 messages") {
		t.Fatalf("a session closed without QUIT deleted mail: %q", got)
	}
	c.quit()
}

func TestRetrMarksSeen(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, testMessage("read me"))
	e.deliver(alice, testMessage("not me"))
	c := e.dial(t)
	c.login(alice, alicePW)
	c.ok("RETR 1")
	c.multi()
	c.quit()
	snap, err := e.inbox(alice).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if got := [2]bool{slices.Contains(snap.Messages[0].Flags, maildir.FlagSeen), slices.Contains(snap.Messages[1].Flags, maildir.FlagSeen)}; got != [2]bool{true, false} {
		t.Errorf("\\Seen of messages 1 and 2: %v, want [true false]", got)
	}
}

// TestExpungedElsewhere: a message removed by another session (IMAP) after
// the snapshot cannot be retrieved, with a reply that says so.
func TestExpungedElsewhere(t *testing.T) {
	e := newEnv(t)
	e.deliver(alice, testMessage("one"))
	uid := e.deliver(alice, testMessage("two"))
	c := e.dial(t)
	c.login(alice, alicePW)
	if _, err := e.inbox(alice).Expunge([]uint32{uid}); err != nil {
		t.Fatal(err)
	}
	if got := c.cmd("RETR 2"); got != "-ERR message 2 has been removed by another session" {
		t.Fatalf("RETR 2: %q", got)
	}
	c.ok("DELE 2") // already gone: QUIT must not fail over it
	if got := c.quit(); got != "Postyard POP3 server signing off (0 messages deleted)" {
		t.Fatalf("QUIT: %q", got)
	}
}

// TestLFMaildirFile: a file dropped into new/ by another MDA with bare LF
// line ends is served with CRLF, its size in LIST matching the bytes sent.
func TestLFMaildirFile(t *testing.T) {
	e := newEnv(t)
	e.inbox(alice) // creates the maildir
	body := "From: a@example.org\nSubject: lf\n\nline\n.dot\n"
	dir := filepath.Join(e.dataDir, "mail", "example.test", "alice", "new")
	if err := os.WriteFile(filepath.Join(dir, "1700000000.M1P1.host"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c := e.dial(t)
	c.login(alice, alicePW)
	crlf := strings.ReplaceAll(body, "\n", "\r\n")
	if got := c.ok("LIST 1"); got != fmt.Sprintf("1 %d", len(crlf)) {
		t.Errorf("LIST 1: %q, want size %d", got, len(crlf))
	}
	c.ok("RETR 1")
	if got := strings.Join(c.multi(), "\r\n") + "\r\n"; got != crlf {
		t.Errorf("RETR 1: %q, want %q", got, crlf)
	}
	c.quit()
}

// TestUIDLStableAcrossRestarts: a new store and server on the same data dir
// give the same UIDLs.
func TestUIDLStableAcrossRestarts(t *testing.T) {
	e := newEnv(t)
	for i := range 3 {
		e.deliver(alice, testMessage(fmt.Sprint("m", i)))
	}
	uidl := func(e *env) []string {
		c := e.dial(t)
		c.login(alice, alicePW)
		c.ok("UIDL")
		lines := c.multi()
		c.quit()
		return lines
	}
	first := uidl(e)
	again := uidl(e)
	if !slices.Equal(first, again) {
		t.Fatalf("UIDLs changed between sessions: %q then %q", first, again)
	}
	// Restart: a fresh store and server over the same data dir.
	e2 := newEnv(t, onDataDir(e.dataDir))
	if got := uidl(e2); !slices.Equal(got, first) {
		t.Fatalf("UIDLs changed across a restart: %q then %q", first, got)
	}
	for _, l := range first {
		_, id, _ := strings.Cut(l, " ")
		if len(id) != 16 || strings.ToLower(id) != id {
			t.Errorf("UIDL %q is not %%08x%%08x", id)
		}
	}
}

func TestShutdown(t *testing.T) {
	t.Run("idle sessions closed at once", func(t *testing.T) {
		e := newEnv(t)
		c := e.dial(t)
		c.login(alice, alicePW)
		c2 := e.dial(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Shutdown took %s with idle sessions", d)
		}
		c.expectClosed()
		c2.expectClosed()
		if _, err := net.DialTimeout("tcp", e.plain, time.Second); err == nil {
			t.Error("still accepting after Shutdown")
		}
	})
	t.Run("an auth failure delay ends at once", func(t *testing.T) {
		e := newEnv(t, withOptions(func(o *pop3.Options) { o.AuthFailureDelay = time.Minute }))
		c := e.dial(t)
		c.ok("USER " + alice)
		c.send("PASS wrong") // answered only after a minute
		time.Sleep(50 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Shutdown waited %s for a session in its auth failure delay", d)
		}
		c.expectClosed()
	})
	t.Run("a stalled RETR is cut at the deadline", func(t *testing.T) {
		e := newEnv(t)
		e.deliver(alice, testMessage("big", strings.Repeat(strings.Repeat("x", 998)+"\r\n", 8000)))
		c := e.dial(t)
		c.login(alice, alicePW)
		c.send("RETR 1") // and never read: the server blocks writing (8 MB is more than the socket buffers take)
		time.Sleep(100 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v, want the deadline", err)
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
		if _, err := io.Copy(io.Discard, c.r); err != nil && !isReset(err) {
			t.Fatalf("reading after Shutdown: %v", err)
		}
	})
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// TestExpungeReachesWatchers: DELE+QUIT goes through the store, so a
// watcher of the INBOX (what an IMAP session in IDLE holds) gets an
// expunge event for each deleted message, and a \Seen flag event for a
// retrieved one that stays.
func TestExpungeReachesWatchers(t *testing.T) {
	e := newEnv(t)
	keep := e.deliver(alice, testMessage("keep"))
	gone1 := e.deliver(alice, testMessage("gone 1"))
	gone2 := e.deliver(alice, testMessage("gone 2"))
	w := e.inbox(alice).Watch()
	defer w.Close()

	c := e.dial(t)
	c.login(alice, alicePW)
	c.ok("RETR 1")
	c.multi()
	c.ok("DELE 2")
	c.ok("DELE 3")
	c.quit()

	expunged := map[uint32]bool{}
	seen := false
	timeout := time.After(ioTimeout)
	for len(expunged) < 2 || !seen {
		select {
		case ev := <-w.C:
			switch ev.Kind {
			case maildir.EventExpunge:
				expunged[ev.UID] = true
			case maildir.EventFlags:
				if ev.UID == keep && slices.Contains(ev.Flags, maildir.FlagSeen) {
					seen = true
				}
			}
		case <-timeout:
			t.Fatalf("events after QUIT: expunged %v, seen %v; want UIDs %d and %d expunged and %d seen", expunged, seen, gone1, gone2, keep)
		}
	}
	if !expunged[gone1] || !expunged[gone2] || expunged[keep] {
		t.Errorf("expunged %v, want %d and %d", expunged, gone1, gone2)
	}
}
