package testenv_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/internal/testenv"
)

// TestHarness drives the harness itself: users through the real CLI,
// restart on the same ports, a crash (SIGKILL) and a start after it.
func TestHarness(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Domains: []string{"example.test", "other.test"}})
	env.AddUser(t, "alice@example.test", "secret one")
	env.AddUser(t, "bob@other.test", "secret two")
	stdout, stderr, code := env.CLI(t, "user", "list")
	if code != 0 || stdout != "alice@example.test\nbob@other.test\n" {
		t.Fatalf("user list: exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	if _, _, code := env.CLI(t, "user", "add", "--password-stdin", "carol@elsewhere.test"); code == 0 {
		t.Fatal("user add for a domain that is not local succeeded")
	}

	imap := env.IMAP
	env.Restart(t)
	if env.IMAP != imap {
		t.Fatalf("restart moved IMAP from %s to %s", imap, env.IMAP)
	}
	if !env.Running() {
		t.Fatal("not running after Restart")
	}
	env.Kill()
	if env.Running() {
		t.Fatal("running after Kill")
	}
	if _, err := net.DialTimeout("tcp", env.SMTP, time.Second); err == nil {
		t.Fatal("SMTP still accepts after Kill")
	}
	env.Restart(t)
	c, err := net.DialTimeout("tcp", env.SMTP, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := strings.Count(env.Logs(), "postyard started"); n != 3 {
		t.Fatalf("%d starts in the log, want 3", n)
	}
	if env.StartupTime <= 0 || env.StartupTime > 10*time.Second {
		t.Fatalf("StartupTime %v", env.StartupTime)
	}
}
