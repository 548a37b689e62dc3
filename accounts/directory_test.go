package accounts

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/internal/testlog"
)

// writeFile writes a file of the data directory for a test.
func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func openDir(t *testing.T, passwd, aliases string, domains ...string) (*Directory, string) {
	t.Helper()
	dir := t.TempDir()
	if passwd != "" {
		writeFile(t, dir, passwdName, passwd)
	}
	if aliases != "" {
		writeFile(t, dir, aliasesName, aliases)
	}
	if len(domains) == 0 {
		domains = []string{"example.com", "example.org"}
	}
	d, err := Open(dir, domains, testlog.New(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	return d, dir
}

const basicPasswd = `# users
alice@example.com:{PLAIN}alicepw
Bob@Example.COM:{PLAIN}bobpw::::::
carol@example.org:{PLAIN}carolpw:1000:1000::/home/carol::userdb_quota_rule=*:storage=1G

mallory@example.com:{MD5-CRYPT}$1$abc$def
nopass@example.com:
`

const basicAliases = `# aliases
postmaster@example.com: alice@example.com
team@example.com: alice@example.com, Bob@example.com,carol@example.org  friend@elsewhere.net
loop1@example.com: loop2@example.com
loop2@example.com: loop1@example.com, alice@example.com
self@example.com: self@example.com
alice@example.com: alice@example.com, alice@outside.net
list+x@example.com: carol@example.org
deep@example.com: team@example.com, postmaster@example.com
dangling@example.com: ghost@example.com
@example.org: carol@example.org
`

func TestResolve(t *testing.T) {
	d, _ := openDir(t, basicPasswd, basicAliases)
	tests := []struct {
		addr   string
		local  []string
		remote []string
		err    error
	}{
		{addr: "Bob@example.com", local: []string{"Bob@example.com"}},
		{addr: "bob@EXAMPLE.com", local: []string{"Bob@example.com"}},
		{addr: "bob+news@example.com", local: []string{"Bob@example.com"}},
		{addr: "bob+@example.com", local: []string{"Bob@example.com"}}, // an empty tag, as Postfix reads it
		{addr: "+bob@example.com", err: ErrNoSuchUser},
		{addr: "postmaster@example.com", local: []string{"alice@example.com"}, remote: []string{"alice@outside.net"}},
		{addr: "alice@example.com", local: []string{"alice@example.com"}, remote: []string{"alice@outside.net"}},
		{addr: "alice+tag@example.com", local: []string{"alice@example.com"}, remote: []string{"alice@outside.net"}},
		{addr: "team@example.com", local: []string{"alice@example.com", "Bob@example.com", "carol@example.org"}, remote: []string{"alice@outside.net", "friend@elsewhere.net"}},
		{addr: "deep@example.com", local: []string{"alice@example.com", "Bob@example.com", "carol@example.org"}, remote: []string{"alice@outside.net", "friend@elsewhere.net"}},
		{addr: "loop1@example.com", local: []string{"alice@example.com"}, remote: []string{"alice@outside.net"}},
		{addr: "self@example.com", err: ErrNoSuchUser},
		{addr: "list+x@example.com", local: []string{"carol@example.org"}},
		{addr: "list@example.com", err: ErrNoSuchUser},
		{addr: "dangling@example.com", err: ErrNoSuchUser},
		{addr: "anything@example.org", local: []string{"carol@example.org"}},
		{addr: "nobody@example.com", err: ErrNoSuchUser},
		{addr: "mallory@example.com", local: []string{"mallory@example.com"}},
		{addr: "alice@elsewhere.net", err: ErrNotLocal},
		{addr: "alice", err: ErrBadAddress},
		{addr: "../x@example.com", err: ErrBadAddress},
		{addr: "a/b@example.com", err: ErrBadAddress},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			res, err := d.Resolve(tt.addr)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Resolve(%q) error = %v, want %v", tt.addr, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.addr, err)
			}
			if !slices.Equal(res.Local, tt.local) || !slices.Equal(res.Remote, tt.remote) {
				t.Errorf("Resolve(%q) = %q / %q, want %q / %q", tt.addr, res.Local, res.Remote, tt.local, tt.remote)
			}
		})
	}
}

// countingVerifier stands in for the dummy hash: it counts its uses.
type countingVerifier struct{ n *int }

func (c countingVerifier) verify([]byte) bool { *c.n++; return false }

func TestAuthenticate(t *testing.T) {
	d, _ := openDir(t, basicPasswd, basicAliases)
	var dummyUses int
	d.dummy = countingVerifier{&dummyUses}
	tests := []struct {
		login, password, want string
		dummy                 bool // the dummy hash must be verified instead
	}{
		{login: "alice@example.com", password: "alicepw", want: "alice@example.com"},
		{login: "alice@EXAMPLE.COM", password: "alicepw", want: "alice@example.com"},
		{login: "ALICE@example.com", password: "alicepw", want: "alice@example.com"},
		{login: "bob@example.com", password: "bobpw", want: "Bob@example.com"},
		{login: "carol@example.org", password: "carolpw", want: "carol@example.org"},
		{login: "alice@example.com", password: "alicepwx"},
		{login: "alice@example.com", password: ""},
		{login: "alice+tag@example.com", password: "alicepw", dummy: true},
		{login: "alice", password: "alicepw", dummy: true},
		{login: "", password: "", dummy: true},
		{login: "postmaster@example.com", password: "alicepw", dummy: true},
		{login: "mallory@example.com", password: "x", dummy: true},
		{login: "nopass@example.com", password: "", dummy: true},
		{login: "nobody@example.com", password: "alicepw", dummy: true},
		{login: "alice@example.com", password: strings.Repeat("x", MaxPasswordLen+1), dummy: true},
	}
	for _, tt := range tests {
		before := dummyUses
		got, err := d.Authenticate(tt.login, tt.password)
		if used := dummyUses - before; used != map[bool]int{true: 1, false: 0}[tt.dummy] {
			t.Errorf("Authenticate(%q): dummy hash verified %d times, want dummy=%v", tt.login, used, tt.dummy)
		}
		if tt.want == "" {
			if !errors.Is(err, ErrAuthFailed) || got != "" {
				t.Errorf("Authenticate(%q, %q) = %q, %v; want ErrAuthFailed", tt.login, tt.password, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Authenticate(%q, %q) = %q, %v; want %q", tt.login, tt.password, got, err, tt.want)
		}
	}
}

// The dummy hash must cost what a real one costs: same scheme and parameters.
func TestDummyHashMatchesDefault(t *testing.T) {
	fresh, err := HashPassword(DefaultScheme, "x")
	if err != nil {
		t.Fatal(err)
	}
	params := func(h string) string { return h[:strings.LastIndexByte(h[:strings.LastIndexByte(h, '$')], '$')] }
	if params(fresh) != params(dummyHash) {
		t.Errorf("dummyHash parameters %s, new hashes %s: regenerate dummyHash", params(dummyHash), params(fresh))
	}
	if _, err := parseHash(dummyHash); err != nil {
		t.Error(err)
	}
}

func TestIsLocalDomainAndCanSendAs(t *testing.T) {
	d, _ := openDir(t, basicPasswd, basicAliases)
	for dom, want := range map[string]bool{"example.com": true, "EXAMPLE.ORG": true, "example.net": false, "": false} {
		if got := d.IsLocalDomain(dom); got != want {
			t.Errorf("IsLocalDomain(%q) = %v", dom, got)
		}
	}
	tests := []struct {
		user, from string
		want       bool
	}{
		{"alice@example.com", "alice@example.com", true},
		{"alice@example.com", "Alice@Example.com", true},
		{"alice@example.com", "alice+x@example.com", true},
		{"alice@example.com", "postmaster@example.com", true},
		{"alice@example.com", "team@example.com", true},
		{"Bob@example.com", "team@example.com", true},
		{"Bob@example.com", "postmaster@example.com", false},
		{"alice@example.com", "bob@example.com", false},
		{"carol@example.org", "anything@example.org", false}, // catch-all does not count
		{"carol@example.org", "list+x@example.com", true},
		{"alice@example.com", "alice@outside.net", false},
		{"alice@example.com", "", false},
		{"alice@example.com", "not an address", false},
	}
	for _, tt := range tests {
		if got := d.CanSendAs(tt.user, tt.from); got != tt.want {
			t.Errorf("CanSendAs(%q, %q) = %v, want %v", tt.user, tt.from, got, tt.want)
		}
	}
}

func TestDirectoryNoticesEdits(t *testing.T) {
	d, dir := openDir(t, "alice@example.com:{PLAIN}one\n", "")
	clock := time.Now()
	d.now = func() time.Time { return clock }
	if _, err := d.Authenticate("alice@example.com", "one"); err != nil {
		t.Fatal(err)
	}
	if err := AddUser(dir, "dave@example.com", "davepw"); err != nil {
		t.Fatal(err)
	}
	if err := AddAlias(dir, "info@example.com", []string{"dave@example.com"}, false); err != nil {
		t.Fatal(err)
	}
	// A miss rechecks the files at once, within the poll interval: a user
	// just added must not get a permanent 550.
	if res, err := d.Resolve("dave@example.com"); err != nil || !slices.Equal(res.Local, []string{"dave@example.com"}) {
		t.Fatalf("new user within the poll interval: %v %v", res, err)
	}
	if res, err := d.Resolve("info@example.com"); err != nil || !slices.Equal(res.Local, []string{"dave@example.com"}) {
		t.Fatalf("new alias: %v %v", res, err)
	}
	clock = clock.Add(pollInterval)
	if got, err := d.Authenticate("dave@example.com", "davepw"); err != nil || got != "dave@example.com" {
		t.Fatalf("Authenticate new user: %q %v", got, err)
	}
	// An in-place rewrite without a rename is noticed too (size changes).
	writeFile(t, dir, passwdName, "alice@example.com:{PLAIN}two\n#\n")
	clock = clock.Add(pollInterval)
	if _, err := d.Authenticate("alice@example.com", "two"); err != nil {
		t.Fatalf("in-place edit not noticed: %v", err)
	}
	// Reload forces a reread within the interval.
	if err := os.Remove(filepath.Join(dir, passwdName)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate("alice@example.com", "two"); err != nil {
		t.Fatal("reread before the interval passed")
	}
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate("alice@example.com", "two"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("after Reload of a removed passwd: %v", err)
	}
}
