package accounts

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/postyard-mail/postyard/internal/testlog"
)

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPasswdEditsPreserveTheRest(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, passwdName, `# Dovecot passwd-file
alice@example.com:{SHA512-CRYPT}$6$x$y:1000:1000:Alice:/home/alice:/bin/false:userdb_quota_rule=*:storage=1G

  # indented comment
not-an-address:{PLAIN}x
carol@example.com:{PLAIN}carol
nopassword@example.com
`)
	if err := AddUser(dir, "Dave@Example.com", "dave-pw"); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(dir, "ALICE@example.com", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	if err := DeleteUser(dir, "carol@EXAMPLE.com"); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, dir, passwdName)
	lines := strings.Split(got, "\n")
	aliceHash, rest, _ := strings.Cut(strings.TrimPrefix(lines[1], "alice@example.com:"), ":")
	daveHash := strings.TrimPrefix(lines[6], "dave@example.com:")
	want := `# Dovecot passwd-file
alice@example.com:` + aliceHash + `:` + rest + `

  # indented comment
not-an-address:{PLAIN}x
nopassword@example.com
dave@example.com:` + daveHash + `
`
	if got != want || rest != "1000:1000:Alice:/home/alice:/bin/false:userdb_quota_rule=*:storage=1G" {
		t.Errorf("passwd after edits:\n%s\nwant:\n%s", got, want)
	}
	if ok, err := VerifyHash(aliceHash, "alice-pw"); !ok || err != nil || HashScheme(aliceHash) != SchemeArgon2ID {
		t.Errorf("alice's new hash %q: %v %v", aliceHash, ok, err)
	}
	if ok, err := VerifyHash(daveHash, "dave-pw"); !ok || err != nil {
		t.Errorf("dave's hash %q: %v %v", daveHash, ok, err)
	}
	fi, err := os.Stat(filepath.Join(dir, passwdName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("passwd mode %v, %v; want 0600", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != passwdName && e.Name() != passwdName+".lock" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	users, err := ListUsers(dir)
	if err != nil || !slices.Equal(users, []string{"alice@example.com", "dave@example.com", "nopassword@example.com"}) {
		t.Errorf("ListUsers = %q, %v", users, err)
	}
}

func TestUserEditErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, passwdName, "alice@example.com:{PLAIN}x\n")
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"add existing", AddUser(dir, "Alice@EXAMPLE.com", "pw"), ErrUserExists},
		{"add bad address", AddUser(dir, "alice/../x@example.com", "pw"), ErrBadAddress},
		{"add no domain", AddUser(dir, "alice", "pw"), ErrBadAddress},
		{"add empty password", AddUser(dir, "new@example.com", ""), ErrBadPassword},
		{"set missing", SetPassword(dir, "bob@example.com", "pw"), ErrNoSuchUser},
		{"set bad address", SetPassword(dir, "bob@", "pw"), ErrBadAddress},
		{"delete missing", DeleteUser(dir, "bob@example.com"), ErrNoSuchUser},
		{"delete bad address", DeleteUser(dir, "@example.com"), ErrBadAddress},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	if got := readFile(t, dir, passwdName); got != "alice@example.com:{PLAIN}x\n" {
		t.Errorf("failed edits changed the file: %q", got)
	}
	users, err := ListUsers(filepath.Join(dir, "missing"))
	if err != nil || len(users) != 0 {
		t.Errorf("ListUsers of a missing dir = %q, %v", users, err)
	}
}

func TestAliasEdits(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, passwdName, "alice@example.com:{PLAIN}a\nbob@example.com:{PLAIN}b\n")
	writeFile(t, dir, aliasesName, "# aliases\n\npostmaster@example.com: alice@example.com\n")
	steps := []struct {
		name string
		err  error
		want error
	}{
		{"new", AddAlias(dir, "Info@Example.com", []string{"alice@example.com", " bob@example.com"}, false), nil},
		{"extend", AddAlias(dir, "postmaster@example.com", []string{"bob+admin@example.com", "alice@example.com"}, false), nil},
		{"nothing new", AddAlias(dir, "postmaster@example.com", []string{"ALICE@example.com"}, false), ErrAliasExists},
		{"alias of alias", AddAlias(dir, "all@example.com", []string{"info@example.com"}, false), nil},
		{"unknown local target", AddAlias(dir, "x@example.com", []string{"ghost@example.com"}, false), ErrNoSuchUser},
		{"remote refused", AddAlias(dir, "x@example.com", []string{"friend@elsewhere.net"}, false), ErrNotLocal},
		{"remote allowed", AddAlias(dir, "fwd@example.com", []string{"friend@elsewhere.net"}, true), nil},
		{"configured domain without users", AddAliasWithDomains(dir, []string{"example.org"}, "x@example.com", []string{"ghost@example.org"}, true), ErrNoSuchUser},
		{"catch-all", AddAlias(dir, "@Example.com", []string{"alice@example.com"}, false), nil},
		{"bad target", AddAlias(dir, "y@example.com", []string{"not an address"}, true), ErrBadAddress},
		{"bad alias", AddAlias(dir, "y@exa_mple.com", []string{"alice@example.com"}, true), ErrBadAddress},
		{"no targets", AddAlias(dir, "y@example.com", nil, true), nil},
		{"delete", DeleteAlias(dir, "FWD@example.com"), nil},
		{"delete missing", DeleteAlias(dir, "fwd@example.com"), ErrNoSuchUser},
	}
	for _, s := range steps {
		switch {
		case s.name == "no targets":
			if s.err == nil {
				t.Errorf("%s: no error", s.name)
			}
		case s.want == nil && s.err != nil:
			t.Errorf("%s: %v", s.name, s.err)
		case s.want != nil && !errors.Is(s.err, s.want):
			t.Errorf("%s: %v, want %v", s.name, s.err, s.want)
		}
	}
	want := `# aliases

postmaster@example.com: alice@example.com, bob+admin@example.com
info@example.com: alice@example.com, bob@example.com
all@example.com: info@example.com
@example.com: alice@example.com
`
	if got := readFile(t, dir, aliasesName); got != want {
		t.Errorf("aliases:\n%s\nwant:\n%s", got, want)
	}
	list, err := ListAliases(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range list {
		got = append(got, a.Address+"="+strings.Join(a.Targets, ","))
	}
	wantList := []string{
		"@example.com=alice@example.com",
		"all@example.com=info@example.com",
		"info@example.com=alice@example.com,bob@example.com",
		"postmaster@example.com=alice@example.com,bob+admin@example.com",
	}
	if !slices.Equal(got, wantList) {
		t.Errorf("ListAliases = %q\nwant %q", got, wantList)
	}
	// The directory resolves what was written.
	d, err := Open(dir, []string{"example.com"}, testlog.New(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Resolve("all@example.com")
	if err != nil || !slices.Equal(res.Local, []string{"alice@example.com", "bob@example.com"}) {
		t.Errorf("Resolve(all@) = %v, %v", res, err)
	}
}

// helperEnv makes the test binary, re-executed, run editWorker instead of
// the tests: one of the processes of TestConcurrentEdits.
const helperEnv = "POSTYARD_ACCOUNTS_EDIT_WORKER"

// editWorker makes n adds, alternating users and aliases, named after
// prefix; hashes are made beforehand so the test measures locking, not
// argon2.
func editWorker(dir, prefix string, n int) error {
	for i := range n {
		addr := fmt.Sprintf("%s-%d@example.com", prefix, i)
		if i%2 == 0 {
			err := editPasswd(dir, func(lines []string) ([]string, error) {
				if findUser(lines, addr) >= 0 {
					return nil, ErrUserExists
				}
				return append(lines, addr+":{PLAIN}pw"), nil
			})
			if err != nil {
				return err
			}
		} else if err := AddAlias(dir, addr, []string{"friend@elsewhere.net"}, true); err != nil {
			return err
		}
	}
	return nil
}

func TestEditWorkerProcess(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("only run as a child of TestConcurrentEdits")
	}
	dir, prefix, _ := strings.Cut(spec, "|")
	if err := editWorker(dir, prefix, 50); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// Two goroutines and two processes add 50 entries each at the same time;
// the lock and the reread inside it must keep all 200.
func TestConcurrentEdits(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range 2 {
		wg.Go(func() { errs[i] = editWorker(dir, "g"+strconv.Itoa(i), 50) })
		wg.Go(func() {
			cmd := exec.Command(exe, "-test.run=^TestEditWorkerProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+dir+"|p"+strconv.Itoa(i))
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[2+i] = fmt.Errorf("worker process: %v: %s", err, out)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	users, err := ListUsers(dir)
	if err != nil {
		t.Fatal(err)
	}
	aliases, err := ListAliases(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 100 || len(aliases) != 100 {
		t.Fatalf("%d users and %d aliases, want 100 each", len(users), len(aliases))
	}
	for _, p := range []string{"g0", "g1", "p0", "p1"} {
		for i := range 50 {
			addr := fmt.Sprintf("%s-%d@example.com", p, i)
			_, isUser := slices.BinarySearch(users, addr)
			isAlias := slices.ContainsFunc(aliases, func(a Alias) bool { return a.Address == addr })
			if i%2 == 0 && !isUser || i%2 == 1 && !isAlias {
				t.Errorf("%s lost", addr)
			}
		}
	}
}
