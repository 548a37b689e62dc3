package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/postyard-mail/postyard/internal/dovecottest"
	"github.com/postyard-mail/postyard/internal/testlog"
)

// These tests check compatibility with Dovecot itself (Debian's
// dovecot-core, installed by .ci/run): hashes doveadm makes verify here,
// hashes we make verify in doveadm, and Dovecot's passwd-file driver
// authenticates users from a passwd file we wrote.

func needDoveadm(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("doveadm")
	if err != nil {
		t.Skip("doveadm not installed (apt-get install dovecot-core); Dovecot compatibility not checked")
	}
	return p
}

func doveadm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, needDoveadm(t), args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestVerifyDoveadmHashes(t *testing.T) {
	needDoveadm(t)
	long := strings.Repeat("0123456789", 8) // 80 bytes: BLF-CRYPT uses the first 72
	tests := []struct {
		scheme    string
		extra     []string
		passwords []string
	}{
		{scheme: "ARGON2ID", passwords: []string{"correct horse"}},
		{scheme: "ARGON2I", passwords: []string{"correct horse"}},
		{scheme: "BLF-CRYPT", passwords: []string{"secret", long}},
		{scheme: "BLF-CRYPT", extra: []string{"-r", "4"}, passwords: []string{"pässwörd"}},
		{scheme: "SHA512-CRYPT", passwords: []string{"secret", "pässwörd with spaces", long, "x"}},
		{scheme: "SHA512-CRYPT", extra: []string{"-r", "6000"}, passwords: []string{"rounds"}},
		{scheme: "SHA256-CRYPT", passwords: []string{"secret", "pässwörd with spaces", long, "x"}},
		{scheme: "SHA256-CRYPT", extra: []string{"-r", "6000"}, passwords: []string{"rounds"}},
		{scheme: "PLAIN", passwords: []string{"secret", "pässwörd with spaces"}},
		{scheme: "CLEAR", passwords: []string{"secret"}},
	}
	for _, tt := range tests {
		for _, pw := range tt.passwords {
			t.Run(tt.scheme+"/"+pw[:min(len(pw), 10)], func(t *testing.T) {
				t.Parallel()
				args := append([]string{"pw", "-s", tt.scheme}, tt.extra...)
				h, err := doveadm(t, append(args, "-p", pw)...)
				if err != nil {
					t.Fatalf("doveadm pw: %v: %s", err, h)
				}
				if !strings.HasPrefix(h, "{"+tt.scheme+"}") {
					t.Fatalf("doveadm pw printed %q", h)
				}
				if got := HashScheme(h); got != tt.scheme {
					t.Errorf("HashScheme = %q", got)
				}
				if ok, err := VerifyHash(h, pw); !ok || err != nil {
					t.Errorf("VerifyHash(%s, %q) = %v, %v; want true", h, pw, ok, err)
				}
				if strings.HasPrefix(tt.scheme, "ARGON2") {
					// Dovecot's argon2 costs (64 MiB, t=3) take seconds under
					// -race; TestHashRoundTrip checks that wrong passwords fail.
					return
				}
				wrong := "X" + pw[1:]
				if ok, err := VerifyHash(h, wrong); ok || err != nil {
					t.Errorf("VerifyHash(%s, %q) = %v, %v; want false", h, wrong, ok, err)
				}
				if len(pw) > 1 {
					if ok, err := VerifyHash(h, pw[:len(pw)-1]); ok != (tt.scheme == "BLF-CRYPT" && len(pw) > 72) || err != nil {
						t.Errorf("VerifyHash(%s, shorter password) = %v, %v", h, ok, err)
					}
				}
			})
		}
	}
}

func TestDoveadmVerifiesOurHashes(t *testing.T) {
	needDoveadm(t)
	for _, scheme := range []string{SchemeArgon2ID, SchemeArgon2I, SchemeBlfCrypt, SchemeSHA512Crypt, SchemeSHA256Crypt, SchemePlain} {
		for i, pw := range []string{"secret", "pässwörd with spaces"} {
			t.Run(scheme+"/"+pw, func(t *testing.T) {
				t.Parallel()
				h, err := HashPassword(scheme, pw)
				if scheme == SchemeBlfCrypt && i > 0 {
					// bcrypt at our cost takes seconds under -race; the
					// second one at the minimum cost checks the encoding.
					h, err = hashPassword(scheme, pw, bcrypt.MinCost)
				}
				if err != nil {
					t.Fatal(err)
				}
				if out, err := doveadm(t, "pw", "-t", h, "-p", pw); err != nil {
					t.Errorf("doveadm pw -t %s: %v: %s", h, err, out)
				}
				if out, err := doveadm(t, "pw", "-t", h, "-p", pw+"x"); err == nil {
					t.Errorf("doveadm pw -t %s accepted a wrong password: %s", h, out)
				}
			})
		}
	}
}

// TestDovecotPasswdFile runs a private Dovecot (master and auth only, no
// listeners, everything under a temporary directory) on a passwd file
// written by AddUser, SetPassword and DeleteUser, and asks it to
// authenticate with `doveadm auth test`.
func TestDovecotPasswdFile(t *testing.T) {
	needDoveadm(t)
	dovecottest.Binary(t) // skips when Dovecot is not installed
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	grp, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Fatal(err)
	}
	// Unix socket paths are limited to 108 bytes: keep the base short.
	base, err := os.MkdirTemp("", "dvt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	data := filepath.Join(base, "data")

	// The file as an admin migrating from Dovecot might have it: comments,
	// extra fields, a doveadm-made hash, then our edits.
	dovecotHash, err := doveadm(t, "pw", "-s", "SHA512-CRYPT", "-p", "legacy-pw")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, data, passwdName, "# migrated from Dovecot\nlegacy@example.com:"+dovecotHash+"::::::userdb_quota_rule=*:storage=1G\n\n")
	steps := []error{
		AddUser(data, "alice@example.com", "alice-pw"),
		AddUser(data, "Bob@Example.COM", "bob pw ü"),
		AddUser(data, "gone@example.com", "gone-pw"),
		SetPassword(data, "legacy@example.com", "new-legacy-pw"),
		DeleteUser(data, "gone@example.com"),
	}
	if err := errors.Join(steps...); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(data, passwdName))
	t.Logf("passwd:\n%s", raw)

	conf := filepath.Join(base, "dovecot.conf")
	confText := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
instance_name = postyard-test-%[5]d
protocols =
ssl = no
default_internal_user = %[2]s
default_internal_group = %[3]s
default_login_user = %[2]s
auth_failure_delay = 0
auth_mechanisms = plain
passdb {
  driver = passwd-file
  args = %[4]s
}
userdb {
  driver = static
  args = uid=%[2]s gid=%[3]s home=%[1]s/home/%%u
}
`, base, me.Username, grp.Name, filepath.Join(data, passwdName), os.Getpid())
	if err := os.WriteFile(conf, []byte(confText), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"run", "state"} {
		if err := os.MkdirAll(filepath.Join(base, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(base, "run", "auth-client")
	dovecottest.Start(t, conf, filepath.Join(base, "dovecot.log"), dovecottest.Exists(sock))
	tests := []struct {
		user, password string
		ok             bool
	}{
		{"alice@example.com", "alice-pw", true},
		{"Bob@example.com", "bob pw ü", true},
		{"bob@example.com", "bob pw ü", true},
		{"legacy@example.com", "new-legacy-pw", true},
		{"legacy@example.com", "legacy-pw", false},
		{"alice@example.com", "wrong", false},
		{"gone@example.com", "gone-pw", false},
	}
	// Each doveadm run takes a few hundred ms, mostly waiting: run them at
	// once. no-penalty: without it every failure delays the next login by
	// seconds (Dovecot's anvil auth penalty).
	t.Run("doveadm-auth", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.user+"/"+tt.password, func(t *testing.T) {
				t.Parallel()
				res, err := doveadm(t, "-c", conf, "auth", "test", "-a", sock, "-x", "no-penalty", tt.user, tt.password)
				if (err == nil) != tt.ok || !strings.Contains(res, map[bool]string{true: "auth succeeded", false: "auth failed"}[tt.ok]) {
					t.Errorf("doveadm auth test %s: %v: %s; want ok=%v", tt.user, err, res, tt.ok)
				}
			})
		}
	})
	// And our own directory agrees.
	d, err := Open(data, []string{"example.com"}, testlog.New(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		if _, err := d.Authenticate(tt.user, tt.password); (err == nil) != tt.ok {
			t.Errorf("Authenticate(%s) = %v, want ok=%v", tt.user, err, tt.ok)
		}
	}
	users, err := ListUsers(data)
	if err != nil || strings.Join(users, " ") != "alice@example.com bob@example.com legacy@example.com" {
		t.Errorf("ListUsers = %q, %v", users, err)
	}
	if !strings.Contains(string(raw), "::::::userdb_quota_rule=*:storage=1G\n") || !strings.HasPrefix(string(raw), "# migrated from Dovecot\n") {
		t.Errorf("extra fields or comment lost on rewrite:\n%s", raw)
	}
}
