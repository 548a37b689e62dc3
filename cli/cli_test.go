package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/postyard-mail/postyard/config"
)

// result is what one in-process run of the command line produced.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs args in-process with stdin and, when prompts is not nil, a
// fake terminal that answers the password prompts in order.
func runCLI(t *testing.T, stdin string, prompts []string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}
	if prompts != nil {
		a.readPassword = func(prompt string) (string, error) {
			if len(prompts) == 0 {
				return "", errors.New("no more input")
			}
			p := prompts[0]
			prompts = prompts[1:]
			return p, nil
		}
	}
	code := a.run(context.Background(), args)
	return result{code, out.String(), errb.String()}
}

// writeConfig writes a config for a temporary data dir and returns its path.
func writeConfig(t *testing.T, extra string) (path, dataDir string) {
	t.Helper()
	dir := t.TempDir()
	dataDir = filepath.Join(dir, "data")
	path = filepath.Join(dir, "postyard.toml")
	doc := fmt.Sprintf("data_dir = %q\ndomains = [\"example.test\", \"other.test\"]\n%s", dataDir, extra)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dataDir
}

func TestExitCodes(t *testing.T) {
	cfgPath, _ := writeConfig(t, "")
	badPath, _ := writeConfig(t, "[smtp]\nmax_recipent = 5\n")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // substring, if not empty
		stderr string // substring, if not empty
	}{
		{"no verb", nil, 2, "", "postyard: missing command (one of: alias, config, "},
		{"unknown verb", []string{"frobnicate"}, 2, "", `postyard: unknown command "frobnicate"`},
		{"misspelt verb", []string{"serv"}, 2, "", "did you mean serve?"},
		{"unknown flag", []string{"version", "--frob"}, 2, "", "postyard: unknown flag: --frob\nRun 'postyard version --help' for usage."},
		{"flag without value", []string{"version", "--config"}, 2, "", "flag needs an argument"},
		{"group without verb", []string{"user"}, 2, "", "postyard: user: missing command (one of: add, del, list, passwd)"},
		{"unknown sub-verb", []string{"alias", "frob"}, 2, "", `alias: unknown command "frob"`},
		{"config without verb", []string{"config"}, 2, "", "config: missing command"},
		{"user add without address", []string{"user", "add"}, 2, "", "user add: takes one argument (ADDR), got 0 arguments"},
		{"password in argv", []string{"user", "add", "a@example.test", "secret"}, 2, "", "takes one argument (ADDR), got 2"},
		{"user passwd extra", []string{"user", "passwd", "a@example.test", "x"}, 2, "", "takes one argument"},
		{"user del without address", []string{"user", "del"}, 2, "", "takes one argument"},
		{"user list extra", []string{"user", "list", "x"}, 2, "", "takes no arguments"},
		{"alias add without target", []string{"alias", "add", "a@example.test"}, 2, "", "takes ADDR and at least one TARGET, got 1"},
		{"alias add empty target", []string{"alias", "add", "a@example.test", ","}, 2, "", "no TARGET"},
		{"alias del extra", []string{"alias", "del", "a", "b"}, 2, "", "takes one argument"},
		{"config check extra", []string{"config", "check", "x"}, 2, "", "takes no arguments"},
		{"serve extra", []string{"serve", "now"}, 2, "", "takes no arguments"},
		{"version extra", []string{"version", "x"}, 2, "", "takes no arguments"},

		{"help", []string{"--help"}, 0, "Usage:\n  postyard [command]", ""},
		{"group help", []string{"user", "--help"}, 0, "Usage:\n  postyard user [command]\n", ""},
		{"help verb", []string{"help", "alias"}, 0, "postyard alias [command]", ""},
		{"version", []string{"version"}, 0, "postyard ", ""},
		{"config check ok", []string{"config", "check", "--config", cfgPath}, 0, cfgPath + ": ok\n", ""},
		{"config before verb", []string{"--config", cfgPath, "config", "check"}, 0, cfgPath + ": ok\n", ""},

		{"config check misspelt key", []string{"config", "check", "--config", badPath}, 1, "",
			badPath + ":4: smtp.max_recipent: unknown key (did you mean smtp.max_recipients?)\n"},
		{"bad config fails other verbs", []string{"user", "list", "--config", badPath}, 1, "", badPath + ":4: smtp.max_recipent"},
		{"missing config file", []string{"config", "check", "--config", cfgPath + ".nope"}, 1, "", "postyard: config: open " + cfgPath + ".nope"},
		{"serve with bad config", []string{"serve", "--config", badPath}, 1, "", badPath + ":4:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, "", nil, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stdout, tt.stdout) || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("postyard %s: exit %d, stdout %q, stderr %q;\nwant exit %d, stdout with %q, stderr with %q",
					strings.Join(tt.args, " "), r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.stderr)
			}
			switch {
			case tt.code == 1 && !strings.HasPrefix(r.stderr, "postyard: ") && !strings.Contains(r.stderr, ".toml:"):
				t.Errorf("failure without a reason: stderr %q", r.stderr)
			case tt.code == 1 && !strings.Contains(r.stderr, ".toml:") && strings.Count(r.stderr, "\n") != 1:
				t.Errorf("failure reason is not one line: %q", r.stderr)
			case tt.code != 0 && r.stdout != "":
				t.Errorf("stdout on failure: %q", r.stdout)
			}
		})
	}
}

// TestEveryVerbHasHelp walks the whole command tree.
func TestEveryVerbHasHelp(t *testing.T) {
	var walk func(c *cobra.Command, path []string)
	n := 0
	walk = func(c *cobra.Command, path []string) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		n++
		if c.Short == "" {
			t.Errorf("%s has no Short help", c.CommandPath())
		}
		r := runCLI(t, "", nil, append(append([]string(nil), path...), "--help")...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "--config") {
			t.Errorf("postyard %s --help: exit %d, stdout %q, stderr %q", strings.Join(path, " "), r.code, r.stdout, r.stderr)
		}
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(newRootCmd(&app{}), nil)
	if n < 14 {
		t.Errorf("walked %d commands, expected every verb of DESIGN.md", n)
	}
}

func TestUserVerbs(t *testing.T) {
	cfgPath, dataDir := writeConfig(t, "")
	c := func(args ...string) []string { return append(args, "--config", cfgPath) }

	steps := []struct {
		name    string
		stdin   string
		prompts []string // nil: stdin is not a terminal
		args    []string
		code    int
		out     string // exact stdout
		errPart string
	}{
		{"list empty", "", nil, c("user", "list"), 0, "", ""},
		{"add from stdin", "s3cret\n", nil, c("user", "add", "alice@example.test", "--password-stdin"), 0, "", ""},
		{"add from stdin, CRLF and no second line", "pw two\r\nignored\n", nil, c("user", "add", "bob@Other.TEST", "--password-stdin"), 0, "", ""},
		{"add on a terminal", "", []string{"t-pass", "t-pass"}, c("user", "add", "carol@example.test"), 0, "", ""},
		{"terminal passwords differ", "", []string{"one", "two"}, c("user", "add", "dave@example.test"), 1, "", "postyard: the two passwords differ"},
		{"terminal empty password", "", []string{""}, c("user", "add", "dave@example.test"), 1, "", "empty password"},
		{"no terminal, no flag", "pw\n", nil, c("user", "add", "dave@example.test"), 1, "", "no password: stdin is not a terminal"},
		{"empty stdin", "", nil, c("user", "add", "dave@example.test", "--password-stdin"), 1, "", "no password on stdin"},
		{"password too long", strings.Repeat("x", maxPasswordLen+1) + "\n", nil, c("user", "add", "dave@example.test", "--password-stdin"), 1, "", "longer than"},
		{"exists", "pw\n", nil, c("user", "add", "ALICE@example.test", "--password-stdin"), 1, "", "postyard: accounts: user already exists: ALICE@example.test"},
		{"domain not configured", "pw\n", nil, c("user", "add", "eve@elsewhere.test", "--password-stdin"), 1, "", "elsewhere.test is not in the configured domains (example.test, other.test)"},
		{"bad address", "pw\n", nil, c("user", "add", "../etc@example.test", "--password-stdin"), 1, "", "postyard: accounts: invalid address"},
		{"list", "", nil, c("user", "list"), 0, "alice@example.test\nbob@other.test\ncarol@example.test\n", ""},
		{"passwd", "new\n", nil, c("user", "passwd", "alice@example.test", "--password-stdin"), 0, "", ""},
		{"passwd on a terminal", "", []string{"n2", "n2"}, c("user", "passwd", "carol@example.test"), 0, "", ""},
		{"passwd unknown user", "new\n", nil, c("user", "passwd", "zed@example.test", "--password-stdin"), 1, "", "no such user"},
		{"del", "", nil, c("user", "del", "bob@other.test"), 0, "", ""},
		{"del again", "", nil, c("user", "del", "bob@other.test"), 1, "", "no such user"},
		{"list after", "", nil, c("user", "list"), 0, "alice@example.test\ncarol@example.test\n", ""},
	}
	for _, s := range steps {
		r := runCLI(t, s.stdin, s.prompts, s.args...)
		if r.code != s.code || r.stdout != s.out || !strings.Contains(r.stderr, s.errPart) {
			t.Errorf("%s: postyard %s: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr with %q",
				s.name, strings.Join(s.args, " "), r.code, r.stdout, r.stderr, s.code, s.out, s.errPart)
		}
		if s.code == 0 && r.stderr != "" && !strings.HasPrefix(r.stderr, "postmaster@") {
			t.Errorf("%s: stderr on success: %q", s.name, r.stderr)
		}
	}
	// The first user of each domain became its postmaster; later ones did not.
	if r := runCLI(t, "", nil, c("alias", "list")...); r.stdout != "postmaster@example.test: alice@example.test\npostmaster@other.test: bob@other.test\n" {
		t.Errorf("alias list after user add = %q", r.stdout)
	}
	passwd, err := os.ReadFile(filepath.Join(dataDir, "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret", "t-pass", "new", "n2"} {
		if bytes.Contains(passwd, []byte(":"+secret)) || bytes.Contains(passwd, []byte("}"+secret+"\n")) {
			t.Errorf("passwd holds the plain password %q:\n%s", secret, passwd)
		}
	}
	if !bytes.Contains(passwd, []byte("alice@example.test:{ARGON2ID}")) {
		t.Errorf("passwd = %s", passwd)
	}
}

func TestAliasVerbs(t *testing.T) {
	cfgPath, _ := writeConfig(t, "")
	c := func(args ...string) []string { return append(args, "--config", cfgPath) }
	if r := runCLI(t, "pw\n", nil, c("user", "add", "alice@example.test", "--password-stdin")...); r.code != 0 {
		t.Fatalf("user add: %+v", r)
	}
	runCLI(t, "pw\n", nil, c("user", "add", "bob@example.test", "--password-stdin")...)
	steps := []struct {
		args    []string
		code    int
		out     string
		errPart string
	}{
		{c("alias", "list"), 0, "postmaster@example.test: alice@example.test\n", ""},
		{c("alias", "add", "abuse@example.test", "alice@example.test"), 0, "", ""},
		{c("alias", "add", "team@example.test", "alice@example.test, bob@example.test"), 0, "", ""},
		{c("alias", "add", "@other.test", "bob@example.test"), 0, "", ""},
		{c("alias", "add", "abuse@example.test", "alice@example.test"), 1, "", "alias already exists"},
		{c("alias", "add", "fwd@example.test", "someone@remote.example"), 0, "", ""},
		{c("alias", "add", "x@elsewhere.test", "alice@example.test"), 1, "", "elsewhere.test is not in the configured domains"},
		{c("alias", "add", "@elsewhere.test", "alice@example.test"), 1, "", "elsewhere.test is not in the configured domains"},
		{c("alias", "add", "y@example.test", "nobody@example.test"), 1, "", "no such user"},
		{c("alias", "list"), 0, "@other.test: bob@example.test\nabuse@example.test: alice@example.test\nfwd@example.test: someone@remote.example\npostmaster@example.test: alice@example.test\nteam@example.test: alice@example.test, bob@example.test\n", ""},
		{c("alias", "del", "team@example.test"), 0, "", ""},
		{c("alias", "del", "team@example.test"), 1, "", "no alias"},
		{c("alias", "list"), 0, "@other.test: bob@example.test\nabuse@example.test: alice@example.test\nfwd@example.test: someone@remote.example\npostmaster@example.test: alice@example.test\n", ""},
	}
	for _, s := range steps {
		r := runCLI(t, "", nil, s.args...)
		if r.code != s.code || r.stdout != s.out || !strings.Contains(r.stderr, s.errPart) {
			t.Errorf("postyard %s: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr with %q",
				strings.Join(s.args, " "), r.code, r.stdout, r.stderr, s.code, s.out, s.errPart)
		}
	}
}

// TestConfigPrintCheckRoundTrip: what config print prints, config check
// accepts, and it loads to the same configuration.
func TestConfigPrintCheckRoundTrip(t *testing.T) {
	cfgPath, _ := writeConfig(t, "hostname = \"mx.example.test\"\n[smtp]\nmax_message_size = \"10MiB\"\n[delivery]\nretry = [\"1m\", \"1d\"]\n")
	for name, args := range map[string][]string{
		"file":     {"config", "print", "--config", cfgPath},
		"defaults": {"config", "print"}, // the test's directory has no postyard.toml
	} {
		t.Run(name, func(t *testing.T) {
			r := runCLI(t, "", nil, args...)
			if r.code != 0 {
				t.Fatalf("config print: %+v", r)
			}
			printed := filepath.Join(t.TempDir(), "printed.toml")
			if err := os.WriteFile(printed, []byte(r.stdout), 0o600); err != nil {
				t.Fatal(err)
			}
			if r := runCLI(t, "", nil, "config", "check", "--config", printed); r.code != 0 || r.stdout != printed+": ok\n" {
				t.Fatalf("config check of the printed config: %+v\n%s", r, r.stdout)
			}
			want := config.Default()
			if name == "file" {
				var err error
				if want, err = config.Load(cfgPath); err != nil {
					t.Fatal(err)
				}
			}
			got, err := config.Load(printed)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("printed config loads as %+v, want %+v", got, want)
			}
		})
	}
}

// TestDefaultConfigFile: without --config, ./postyard.toml is used if it
// exists, else the built-in defaults.
func TestDefaultConfigFile(t *testing.T) {
	t.Chdir(t.TempDir())
	if r := runCLI(t, "", nil, "config", "check"); r.code != 0 || r.stdout != "built-in defaults: ok\n" {
		t.Errorf("no postyard.toml: %+v", r)
	}
	if err := os.WriteFile("postyard.toml", []byte("hostname = \"local.example\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, "", nil, "config", "print"); r.code != 0 || !strings.Contains(r.stdout, "hostname = 'local.example'") {
		t.Errorf("with postyard.toml: %+v", r)
	}
	if err := os.WriteFile("postyard.toml", []byte("bogus = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, "", nil, "config", "check"); r.code != 1 || r.stderr != "postyard.toml:1: bogus: unknown key\n" {
		t.Errorf("broken postyard.toml: %+v", r)
	}
}

func TestVersion(t *testing.T) {
	// Not parallel: Version is the one package variable (set by -ldflags).
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v9.8.7"
	if r := runCLI(t, "", nil, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "postyard v9.8.7 (go") {
		t.Errorf("version: %+v", r)
	}
	Version = ""
	if v := version(); v == "" || v == "v9.8.7" {
		t.Errorf("version() from build info = %q", v)
	}
}

// TestServe starts serve in-process on free loopback ports and stops it by
// cancelling its context.
func TestServe(t *testing.T) {
	ports := make([]string, 8)
	for i := range ports {
		ports[i] = freePort(t)
	}
	cfgPath, _ := writeConfig(t, fmt.Sprintf(`hostname = "mx.example.test"
[smtp]
listen = ["%s"]
[submission]
listen = ["%s"]
tls_listen = ["%s"]
[imap]
listen = ["%s"]
tls_listen = ["%s"]
[pop3]
listen = ["%s"]
tls_listen = ["%s"]
[autoconfig]
listen = ["%s"]
[log]
level = "error"
`, ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7]))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
		code := a.run(ctx, []string{"serve", "--config", cfgPath})
		done <- result{code, out.String(), errb.String()}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ports[0], time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 3)
			_, rerr := c.Read(buf)
			c.Close()
			if rerr != nil || string(buf) != "220" {
				t.Fatalf("SMTP greeting %q, %v", buf, rerr)
			}
			break
		}
		select {
		case r := <-done:
			t.Fatalf("serve ended early: %+v", r)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("SMTP port %s never accepted: %v", ports[0], err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case r := <-done:
		if r.code != 0 {
			t.Errorf("serve: %+v", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop within 20s of its context ending")
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestReadPasswordLine(t *testing.T) {
	for _, tt := range []struct {
		in, want, err string
	}{
		{"pw\n", "pw", ""},
		{"pw", "pw", ""},
		{"p w \r\n", "p w ", ""},
		{"first\nsecond\n", "first", ""},
		{"\nsecond\n", "", "no password"},
		{"", "", "no password"},
		{strings.Repeat("a", maxPasswordLen) + "\n", strings.Repeat("a", maxPasswordLen), ""},
		{strings.Repeat("a", maxPasswordLen+1), "", "longer than"},
		{strings.Repeat("a", 10*maxPasswordLen) + "\n", "", "longer than"},
	} {
		got, err := readPasswordLine(strings.NewReader(tt.in))
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("readPasswordLine(%.20q) = %q, %v; want %q, error with %q", tt.in, got, err, tt.want, tt.err)
		}
	}
}
