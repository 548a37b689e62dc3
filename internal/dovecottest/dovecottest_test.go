package dovecottest_test

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/postyard-mail/postyard/internal/dovecottest"
)

// Start itself is exercised by the Dovecot tests of maildir and accounts.

func TestReady(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := dovecottest.Listening(addr)(); err != nil {
		t.Errorf("Listening on an open port: %v", err)
	}
	l.Close()
	if dovecottest.Listening(addr)() == nil {
		t.Error("Listening on a closed port: ready")
	}
	p := filepath.Join(t.TempDir(), "sock")
	if dovecottest.Exists(p)() == nil {
		t.Error("Exists before the file: ready")
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := dovecottest.Exists(p)(); err != nil {
		t.Errorf("Exists after the file: %v", err)
	}
}

func TestUserIDsAndChownTree(t *testing.T) {
	if uid, gid := dovecottest.UserIDs(t, "root"); uid != 0 || gid != 0 {
		t.Errorf("root is %d:%d", uid, gid)
	}
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	uid, gid := dovecottest.UserIDs(t, "nobody")
	root := t.TempDir()
	sub := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dovecottest.ChownTree(t, root, uid, gid)
	for _, p := range []string{root, filepath.Join(root, "a"), sub, filepath.Join(sub, "f")} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
		}
	}
	// Give it back so t.TempDir's cleanup works either way.
	dovecottest.ChownTree(t, root, 0, 0)
}
