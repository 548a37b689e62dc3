// Package dovecottest runs Debian's Dovecot (installed by .ci/run) for the
// compatibility tests of maildir, accounts and pop3: a private master on a
// configuration the test writes under a temporary directory (nothing
// system-wide is touched), stopped when the test ends, and the helpers to
// hand a mail tree to the unprivileged user Dovecot insists on when the
// tests run as root.
package dovecottest

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readyTimeout bounds the wait for a started Dovecot to be ready.
const readyTimeout = 15 * time.Second

// Binary returns the path of the dovecot master, or skips the test when
// Dovecot is not installed.
func Binary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("dovecot"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/dovecot"); err == nil {
		return "/usr/sbin/dovecot"
	}
	t.Skip("dovecot is not installed (apt-get install dovecot-core dovecot-imapd; CI installs them)")
	return ""
}

// Start runs the dovecot master in the foreground on the configuration file
// conf until the test ends (SIGTERM, then SIGKILL after 10 s), and returns
// once ready returns nil; the test fails if Dovecot exits first or is not
// ready within 15 s. When the test has failed, Dovecot's output and the
// configuration's log file (logFile, may be "") are logged.
func Start(t testing.TB, conf, logFile string, ready func() error) {
	t.Helper()
	cmd := exec.Command(Binary(t), "-F", "-c", conf)
	// One writer for both: exec then writes from one goroutine at a time;
	// it is read only after Wait has returned.
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dovecot: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			var logText []byte
			if logFile != "" {
				logText, _ = os.ReadFile(logFile)
			}
			t.Logf("dovecot output: %s\ndovecot log:\n%s", out.String(), logText)
		}
	})
	deadline := time.Now().Add(readyTimeout)
	for {
		err := ready()
		if err == nil {
			return
		}
		select {
		case <-done:
			t.Fatalf("dovecot exited: %s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot not ready after %v: %v", readyTimeout, err)
		}
	}
}

// Listening is a ready function for Start: addr accepts TCP connections.
func Listening(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// Exists is a ready function for Start: path exists (a socket Dovecot
// makes once its service runs).
func Exists(path string) func() error {
	return func() error {
		if _, err := os.Stat(path); err != nil {
			return errors.New(path + " does not exist yet")
		}
		return nil
	}
}

// UserIDs returns the uid and gid of the system user name, or skips the
// test when there is none.
func UserIDs(t testing.TB, name string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no system user %q to run Dovecot's mail processes as: %v", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("user %s: %v", name, err)
	}
	return uid, gid
}

// ChownTree gives root and everything below it to uid:gid (symbolic links
// themselves, not their targets): Dovecot refuses to work on mail as root.
func ChownTree(t testing.TB, root string, uid, gid int) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}
