package pop3_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/internal/dovecottest"
)

// dovecotPOP3 is Dovecot's POP3 process (Debian's dovecot-pop3d). Started by
// hand with USER set, it serves one already logged-in session on stdin and
// stdout: enough to see what Dovecot answers for a maildrop.
const dovecotPOP3 = "/usr/lib/dovecot/pop3"

// TestDovecotSameListing checks Postyard against Dovecot on the same
// maildrop: UIDL (so clients that keep mail on the server do not download
// everything again after a move in either direction), LIST sizes and the
// RETR bytes on the wire, for mail delivered through the store and for a
// bare-LF file another MDA dropped into new/.
func TestDovecotSameListing(t *testing.T) {
	if _, err := os.Stat(dovecotPOP3); err != nil {
		t.Skipf("Dovecot's pop3 is not installed (dovecot-pop3d; CI installs it): %v", err)
	}
	e := newEnv(t)
	for _, m := range mailSet() {
		e.deliver(alice, m)
	}
	src := filepath.Join(e.dataDir, "mail", "example.test", "alice")
	lf := "From: a@example.org\nSubject: bare LF\n\nline\n.dot line\n\nlast\n"
	if err := os.WriteFile(filepath.Join(src, "new", "1700000000.M1P1.otherhost"), []byte(lf), 0o600); err != nil {
		t.Fatal(err)
	}

	// Ours: a session's UIDL, LIST and the RETR of each message, as sent.
	c := e.dial(t)
	c.login(alice, alicePW)
	c.ok("UIDL")
	ourUIDL := c.multi()
	c.ok("LIST")
	ourList := c.multi()
	var ourRetr []string
	for i := range ourList {
		c.ok("RETR " + strconv.Itoa(i+1))
		ourRetr = append(ourRetr, rawMulti(t, c.r))
	}
	c.quit()
	if len(ourList) != 5 {
		t.Fatalf("our LIST %q: want 5 messages", ourList)
	}

	// Dovecot's, on a copy of the maildir (Dovecot may rename files).
	dir := t.TempDir()
	dst := filepath.Join(dir, "alice")
	copyTree(t, src, dst)
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "dovecot.conf")
	confText := "base_dir = " + run + "\nstate_dir = " + run + "\nlog_path = /dev/stderr\n" +
		"mail_location = maildir:" + dst + ":INDEX=MEMORY\npop3_uidl_format = %08Xu%08Xv\nssl = no\n"
	if err := os.WriteFile(conf, []byte(confText), 0o644); err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	script.WriteString("STAT\r\nUIDL\r\nLIST\r\n")
	for i := range ourList {
		script.WriteString("RETR " + strconv.Itoa(i+1) + "\r\n")
	}
	script.WriteString("QUIT\r\n")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, dovecotPOP3, "-c", conf)
	cmd.Env = []string{"USER=" + alice, "HOME=" + dst, "PATH=/usr/bin:/bin"}
	cmd.Stdin = strings.NewReader(script.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if os.Geteuid() == 0 {
		// Dovecot refuses to access mail as root: run it as nobody.
		uid, gid := dovecottest.UserIDs(t, "nobody")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		dovecottest.ChownTree(t, dir, uid, gid)
		for p := dir; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
			_ = os.Chmod(p, 0o755) // t.TempDir's directories are 0700
		}
	}
	out, err := cmd.Output()
	t.Logf("dovecot pop3 stderr:\n%s", stderr.String())
	if err != nil {
		t.Fatalf("dovecot pop3: %v\nstdout:\n%s", err, out)
	}

	r := bufio.NewReader(bytes.NewReader(out))
	// Skip anything before the STAT reply (a greeting, if this version sends one).
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no STAT reply from Dovecot:\n%s", out)
		}
		if f := strings.Fields(l); len(f) == 3 && f[0] == "+OK" {
			if f[1] != "5" {
				t.Fatalf("Dovecot STAT %q: want 5 messages", l)
			}
			break
		}
	}
	dcUIDL := dovecotMulti(t, r)
	dcList := dovecotMulti(t, r)
	if !slices.Equal(ourUIDL, dcUIDL) {
		t.Errorf("UIDL differs:\nours    %q\nDovecot %q", ourUIDL, dcUIDL)
	}
	if !slices.Equal(ourList, dcList) {
		t.Errorf("LIST differs:\nours    %q\nDovecot %q", ourList, dcList)
	}
	for i := range ourList {
		if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "+OK") {
			t.Fatalf("Dovecot RETR %d: %q", i+1, l)
		}
		if got := rawMulti(t, r); got != ourRetr[i] {
			t.Errorf("RETR %d differs:\nours    %q\nDovecot %q", i+1, ourRetr[i], got)
		}
	}
}

// rawMulti reads the body of a multi-line reply as sent (dot-stuffed, CRLF),
// without the terminating line.
func rawMulti(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	var b strings.Builder
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a multi-line reply: %v (so far %q)", err, b.String())
		}
		if l == ".\r\n" {
			return b.String()
		}
		b.WriteString(l)
	}
}

// dovecotMulti reads a multi-line reply (status line included) and returns its lines.
func dovecotMulti(t *testing.T, r *bufio.Reader) []string {
	t.Helper()
	if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("Dovecot replied %q", l)
	}
	body := rawMulti(t, r)
	return strings.Split(strings.TrimSuffix(body, "\r\n"), "\r\n")
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		fi, err := in.Stat()
		if err != nil {
			return err
		}
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		return os.Chtimes(target, fi.ModTime(), fi.ModTime())
	})
	if err != nil {
		t.Fatalf("copying the maildir: %v", err)
	}
}
