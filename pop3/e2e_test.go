package pop3_test

import (
	"bufio"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/internal/testenv"
	"github.com/postyard-mail/postyard/internal/testlog"
	"github.com/postyard-mail/postyard/maildir"
	"github.com/postyard-mail/postyard/pop3"
)

// End-to-end tests: the real postyard binary (internal/testenv), real POP3
// clients, and for consistency real SMTP and IMAP clients.

// e2eDeliver writes msgs into a user's INBOX of a running server's data dir
// through a store of its own, as another process (an MDA) would.
func e2eDeliver(t *testing.T, env *testenv.Env, user string, msgs []string) {
	t.Helper()
	store, err := maildir.New(filepath.Join(env.DataDir, "mail"), testlog.New(t, pop3.LevelTrace))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	u, err := store.User(user)
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := u.Mailbox("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if _, err := inbox.Deliver(strings.NewReader(m)); err != nil {
			t.Fatal(err)
		}
	}
}

// e2eAddUser adds a user through the CLI and waits until the running server
// knows it (the account directory notices edits within a second).
func e2eAddUser(t *testing.T, env *testenv.Env, user, pw string) {
	t.Helper()
	env.AddUser(t, user, pw)
	deadline := time.Now().Add(ioTimeout)
	for {
		c := dialE2E(t, env.POP3)
		c.ok("USER " + user)
		reply := c.cmd("PASS " + pw)
		_ = c.nc.Close()
		if strings.HasPrefix(reply, "+OK ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s cannot log in %s after user add: %q", user, ioTimeout, reply)
		}
	}
}

// logOnFailure adds the server's log to a failing test's output.
func logOnFailure(t *testing.T, env *testenv.Env) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", env.Logs())
		}
	})
}

func TestE2EClients(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	logOnFailure(t, env)
	e2eAddUser(t, env, alice, alicePW)
	certFile := filepath.Join(env.DataDir, "tls", "cert.pem") // the generated self-signed pair
	msgs := mailSet()

	t.Run("poplib implicit TLS", func(t *testing.T) {
		e2eDeliver(t, env, alice, msgs)
		checkPoplib(t, env.POP3TLS, "ssl", certFile, false, msgs)
	})
	t.Run("poplib STLS", func(t *testing.T) {
		e2eDeliver(t, env, alice, msgs)
		checkPoplib(t, env.POP3, "stls", certFile, false, msgs)
	})
	t.Run("fetchmail STLS", func(t *testing.T) {
		e2eDeliver(t, env, alice, msgs)
		checkFetchmail(t, env.POP3, certFile, env.Hostname, false, msgs)
	})
	t.Run("getmail implicit TLS", func(t *testing.T) {
		e2eDeliver(t, env, alice, msgs)
		checkGetmail(t, env.POP3TLS, certFile, env.Hostname, true, msgs)
	})
}

// dialE2E connects to a POP3 listener of the real server (plain; loopback
// may log in without TLS).
func dialE2E(t *testing.T, addr string) *client {
	t.Helper()
	return (&env{t: t, plain: addr}).dial(t) // testenv's hostname is mail.example.test too
}

// TestE2EConnectionLimit: pop3.max_connections_per_ip refuses the
// connection past the limit with -ERR [SYS/TEMP] (the server wraps the
// listeners with internal/connlimit) and admits again once one closes.
func TestE2EConnectionLimit(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Config: map[string]any{"pop3.max_connections_per_ip": 1}})
	logOnFailure(t, env)
	// greeting connects and returns the first line the server sends.
	greeting := func() (net.Conn, string) {
		nc, err := net.DialTimeout("tcp", env.POP3, ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(ioTimeout))
		line, _ := bufio.NewReader(nc).ReadString('\n')
		return nc, line
	}
	// untilAdmitted retries while an earlier connection (testenv's readiness
	// probe, a closed session) still holds the slot.
	untilAdmitted := func() net.Conn {
		deadline := time.Now().Add(ioTimeout)
		for {
			nc, line := greeting()
			if strings.HasPrefix(line, "+OK ") {
				return nc
			}
			nc.Close()
			if !strings.HasPrefix(line, "-ERR [SYS/TEMP] ") || time.Now().After(deadline) {
				t.Fatalf("greeting %q", line)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	first := untilAdmitted()
	second, line := greeting()
	second.Close()
	if line != "-ERR [SYS/TEMP] too many connections from your address\r\n" {
		t.Fatalf("second connection: %q", line)
	}
	first.Close()
	untilAdmitted().Close()
}
