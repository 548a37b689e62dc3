package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/config"
	"github.com/postyard-mail/postyard/internal/testcert"
)

func TestDefaultIsValid(t *testing.T) {
	if err := config.Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	cfg, err := config.Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, config.Default()) {
		t.Errorf("empty file: got %+v, want the defaults", cfg)
	}
}

func TestUnsetKeysKeepDefaults(t *testing.T) {
	cfg, err := config.Parse("p.toml", []byte(`
hostname = "mx.example.org"
[smtp]
max_recipients = 5
[delivery]
retry = ["1m"]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.Hostname = "mx.example.org"
	want.SMTP.MaxRecipients = 5
	want.Delivery.Retry = []config.Duration{config.Duration(time.Minute)} // replaced, not appended to
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v\nwant %+v", cfg, want)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "postyard.toml")
	if err := os.WriteFile(path, []byte("hostname = \"a.example\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil || cfg.Hostname != "a.example" {
		t.Fatalf("Load = %v, %v", cfg, err)
	}
	if _, err := config.Load(filepath.Join(dir, "missing.toml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want ErrNotExist", err)
	}
	if _, err := config.Load(dir); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: err = %v", err)
	}
	// An error names the file as given.
	if err := os.WriteFile(path, []byte("\n[smtp]\nlisten = [\"x\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(path)
	if want := path + ":3: smtp.listen: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %v, want prefix %q", err, want)
	}
}

// want is one expected error: its line, key and a part of the problem.
type want struct {
	line    int
	key     string
	problem string
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testcert.New(t).WriteDir(t, dir, "a")
	_, otherKey := testcert.New(t).WriteDir(t, dir, "b")

	tests := []struct {
		name string
		doc  string
		want []want
	}{
		{"unknown key", "hostname = \"a.example\"\nhostnme = \"x\"\n",
			[]want{{2, "hostnme", "unknown key (did you mean hostname?)"}}},
		{"unknown key in table", "[smtp]\n\nmax_recipent = 3\n",
			[]want{{3, "smtp.max_recipent", "unknown key (did you mean smtp.max_recipients?)"}}},
		{"unknown dotted key", "smtp.max_recipent = 3\n",
			[]want{{1, "smtp.max_recipent", "unknown key"}}},
		{"unknown table", "[smpt]\nlisten = []\n[log]\nlevel = \"debug\"\n",
			[]want{{1, "smpt", "unknown table (did you mean [smtp]?)"}}},
		{"duplicate key", "hostname = \"a.example\"\n\nhostname = \"b.example\"\n",
			[]want{{3, "hostname", "duplicate key"}}},
		{"duplicate table", "[log]\nlevel = \"info\"\n[log]\nformat = \"json\"\n",
			[]want{{3, "log", "table defined twice"}}},
		{"string for integer", "[smtp]\nmax_recipients = \"100\"\n",
			[]want{{2, "smtp.max_recipients", "expected an integer, not a string"}}},
		{"integer for string", "hostname = 5\n",
			[]want{{1, "hostname", "expected a string, not an integer"}}},
		{"string for bool", "[security]\nallow_plaintext_auth = \"yes\"\n",
			[]want{{2, "security.allow_plaintext_auth", "expected true or false, not a string"}}},
		{"string for array", "domains = \"example.com\"\n",
			[]want{{1, "domains", "expected an array of strings, not a string"}}},
		{"wrong type in inline table", "smtp = { max_errors = 1, max_recipients = \"x\" }\n",
			[]want{{1, "smtp.max_recipients", "expected an integer"}}},
		{"bad size unit", "[smtp]\nmax_message_size = \"25XB\"\n",
			[]want{{2, "smtp.max_message_size", `unknown unit "XB"`}}},
		{"negative size", "[smtp]\nmax_message_size = \"-5MB\"\n",
			[]want{{2, "smtp.max_message_size", "must not be negative"}}},
		{"negative size in bytes", "[smtp]\nmax_message_size = -5\n",
			[]want{{2, "smtp.max_message_size", "must be greater than zero"}}},
		{"float size", "[smtp]\nmax_message_size = 2.5\n",
			[]want{{2, "smtp.max_message_size", "expected a size"}}},
		{"bad duration", "[smtp]\ncommand_timeout = \"5 minutes\"\n",
			[]want{{2, "smtp.command_timeout", `invalid duration "5 minutes"`}}},
		{"negative duration", "[imap]\nidle_timeout = \"-30m\"\n",
			[]want{{2, "imap.idle_timeout", "must not be negative"}}},
		{"imap idle timeout under 30 minutes", "[imap]\nidle_timeout = \"10m\"\n",
			[]want{{2, "imap.idle_timeout", "must be at least 30m0s (RFC 9051 §5.4)"}}},
		{"pop3 idle timeout under 10 minutes", "\n[pop3]\nidle_timeout = \"1m\"\n",
			[]want{{3, "pop3.idle_timeout", "must be at least 10m0s (RFC 1939 §3)"}}},
		{"bare number duration", "[pop3]\nidle_timeout = 600\n",
			[]want{{2, "pop3.idle_timeout", "a bare number has no unit"}}},
		{"bad duration in array", "[delivery]\nretry = [\n  \"5m\",\n  \"soon\",\n]\n",
			[]want{{4, "delivery.retry", `invalid duration "soon"`}}},
		{"zero duration", "[dns]\ntimeout = \"0s\"\n",
			[]want{{2, "dns.timeout", "must be greater than zero"}}},
		{"listen without port", "[imap]\nlisten = [\"127.0.0.1\"]\n",
			[]want{{2, "imap.listen", "is not HOST:PORT"}}},
		{"listen port 0", "[imap]\nlisten = [\":0\"]\n",
			[]want{{2, "imap.listen", "outside 1-65535"}}},
		{"listen port too big", "[pop3]\ntls_listen = [\n  \":995\",\n  \":99999\",\n]\n",
			[]want{{4, "pop3.tls_listen", "port 99999 is outside 1-65535"}}},
		{"listen port name", "[smtp]\nlisten = [\":smtp\"]\n",
			[]want{{2, "smtp.listen", "is not a number"}}},
		{"listen bad host", "[smtp]\nlisten = [\"exa mple:25\"]\n",
			[]want{{2, "smtp.listen", "has the character ' '"}}},
		{"listen used twice", "[smtp]\nlisten = [\":2525\"]\n[imap]\nlisten = [\":2525\"]\n",
			[]want{{4, "imap.listen", `":2525" is also in smtp.listen`}}},
		{"resolver not an IP", "[dns]\nresolver = \"dns.example:53\"\n",
			[]want{{2, "dns.resolver", "must be an IP address"}}},
		{"smarthost without port", "[delivery]\nsmarthost = \"relay.example\"\n",
			[]want{{2, "delivery.smarthost", "is not HOST:PORT"}}},
		{"smarthost user without host", "[delivery]\nsmarthost_user = \"u\"\n",
			[]want{{2, "delivery.smarthost_user", "delivery.smarthost is empty"}}},
		{"remote port", "[delivery]\nremote_port = 0\n",
			[]want{{2, "delivery.remote_port", "outside 1-65535"}}},
		{"tls cert missing", "[tls]\ncert = \"" + filepath.Join(dir, "nope.pem") + "\"\nkey = \"" + keyFile + "\"\n",
			[]want{{2, "tls.cert", "no such file or directory"}}},
		{"tls key missing", "[tls]\ncert = \"" + certFile + "\"\nkey = \"" + filepath.Join(dir, "nope.key") + "\"\n",
			[]want{{3, "tls.key", "no such file or directory"}}},
		{"tls key is a directory", "[tls]\ncert = \"" + certFile + "\"\nkey = \"" + dir + "\"\n",
			[]want{{3, "tls.key", "not a regular file"}}},
		{"tls cert only", "[tls]\ncert = \"" + certFile + "\"\n",
			// tls.key is not in the file: the error points at its table.
			[]want{{1, "tls.key", "is empty but tls.cert is set"}}},
		{"tls key mismatch", "[tls]\ncert = \"" + certFile + "\"\nkey = \"" + otherKey + "\"\n",
			[]want{{3, "tls.key", "does not go with"}}},
		{"tls cert not PEM", "[tls]\ncert = \"" + keyFile + "\"\nkey = \"" + keyFile + "\"\n",
			[]want{{2, "tls.cert", "holds no PEM certificate"}}},
		{"log level", "[log]\nlevel = \"verbose\"\n",
			[]want{{2, "log.level", `"verbose" is not one of "debug", "info", "warn", "error"`}}},
		{"log format", "[log]\nformat = \"xml\"\n",
			[]want{{2, "log.format", `"xml" is not one of "text", "json"`}}},
		{"spf_fail", "[auth]\nspf_fail = \"drop\"\n",
			[]want{{2, "auth.spf_fail", `"drop" is not one of "record", "reject"`}}},
		{"dmarc", "[auth]\ndmarc = \"quarantine\"\n",
			[]want{{2, "auth.dmarc", `is not one of "enforce", "record"`}}},
		{"empty domains", "domains = []\n",
			[]want{{1, "domains", "at least one local domain"}}},
		{"bad domain", "domains = [\n  \"example.com\",\n  \"bad_domain.example\",\n]\n",
			[]want{{3, "domains", "has the character '_'"}}},
		{"domain twice", "domains = [\"example.com\", \"Example.COM\"]\n",
			[]want{{1, "domains", "listed twice"}}},
		{"hostname with trailing dot", "hostname = \"mail.example.com.\"\n",
			[]want{{1, "hostname", "must not end with a dot"}}},
		{"hostname is an IP", "hostname = \"192.0.2.1\"\n",
			[]want{{1, "hostname", "is an IP address"}}},
		{"hostname empty", "hostname = \"\"\n",
			[]want{{1, "hostname", "must not be empty"}}},
		{"negative limit", "[imap]\nmax_connections = -1\n",
			[]want{{2, "imap.max_connections", "must not be negative"}}},
		{"zero recipients", "[smtp]\nmax_recipients = 0\n",
			[]want{{2, "smtp.max_recipients", "must be at least 1"}}},
		{"syntax error", "hostname = \"a.example\"\n[smtp\n",
			[]want{{2, "", "syntax error"}}},
		{"every error is reported", "hostnme = \"x\"\n[smtp]\nmax_message_size = \"1XB\"\nmax_recipients = \"a\"\nlisten = [\":0\"]\n[log]\nlevel = \"loud\"\n",
			[]want{
				{1, "hostnme", "unknown key"},
				{3, "smtp.max_message_size", "unknown unit"},
				{4, "smtp.max_recipients", "expected an integer"},
				{5, "smtp.listen", "outside 1-65535"},
				{7, "log.level", "is not one of"},
			}},
		{"errors before a syntax error", "[smtp]\nmax_recipients = \"a\"\nmax_errors = \n",
			[]want{
				{2, "smtp.max_recipients", "expected an integer"},
				{3, "", "syntax error"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse("test.toml", []byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", cfg)
			}
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T %v is not config.Errors", err, err)
			}
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tt.want), err)
			}
			for i, w := range tt.want {
				e := errs[i]
				if e.File != "test.toml" || e.Line != w.line || e.Key != w.key || !strings.Contains(e.Problem, w.problem) {
					t.Errorf("error %d = %q (file %q line %d key %q),\nwant line %d key %q problem containing %q",
						i, e.Error(), e.File, e.Line, e.Key, w.line, w.key, w.problem)
				}
				wantPrefix := "test.toml:" + strconv.Itoa(w.line) + ": "
				if w.key != "" {
					wantPrefix += w.key + ": "
				}
				if !strings.HasPrefix(e.Error(), wantPrefix) {
					t.Errorf("error %d = %q, want prefix %q", i, e.Error(), wantPrefix)
				}
			}
		})
	}
}

func TestTLSPairLoads(t *testing.T) {
	dir := t.TempDir()
	cert, key := testcert.New(t).WriteDir(t, dir, "ok")
	cfg, err := config.Parse("t.toml", []byte("[tls]\ncert = \""+cert+"\"\nkey = \""+key+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS.Cert != cert || cfg.TLS.Key != key {
		t.Errorf("tls = %+v", cfg.TLS)
	}
}

func TestValidateWithoutFile(t *testing.T) {
	cfg := config.Default()
	cfg.Log.Level = "chatty"
	cfg.SMTP.Listen = []string{"nope"}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	got := err.Error()
	for _, w := range []string{`smtp.listen: "nope" is not HOST:PORT`, `log.level: "chatty" is not one of`} {
		if !strings.Contains(got, w) {
			t.Errorf("Validate() = %q, want it to contain %q", got, w)
		}
	}
}

func TestPrintRoundTrip(t *testing.T) {
	custom := config.Default()
	custom.Hostname = "mail.example.net"
	custom.Domains = []string{"example.net", "example.org"}
	custom.SMTP.MaxMessageSize = 512 << 10
	custom.SMTP.TarpitDelay = 0
	custom.SMTP.CommandTimeout = config.Duration(90 * time.Second)
	custom.Submission.TLSListen = nil
	custom.IMAP.IdleTimeout = config.Duration(90*time.Minute + 1500*time.Millisecond)
	custom.Delivery.Retry = []config.Duration{config.Duration(36 * time.Hour)}
	custom.Delivery.Smarthost = "[::1]:2525"
	custom.Delivery.SmarthostUser = "relay user"
	custom.Delivery.SmarthostPassword = `p"a'ss\word`
	custom.DNS.Resolver = "127.0.0.1:5353"
	custom.Security.AllowPlaintextAuth = true
	custom.Log = config.Log{Level: "debug", Format: "json"}

	for name, cfg := range map[string]*config.Config{"default": config.Default(), "custom": custom} {
		t.Run(name, func(t *testing.T) {
			out := config.Print(cfg)
			back, err := config.Parse("printed.toml", out)
			if err != nil {
				t.Fatalf("Parse(Print()) = %v\n%s", err, out)
			}
			// nil and empty lists print alike.
			if cfg.Submission.TLSListen == nil {
				back.Submission.TLSListen = nil
			}
			if !reflect.DeepEqual(back, cfg) {
				t.Errorf("round trip changed the config:\n got %+v\nwant %+v\n%s", back, cfg, out)
			}
		})
	}
}

func TestExampleLoads(t *testing.T) {
	cfg, err := config.Load("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	// The example shows production values; every other key shows the default.
	want := config.Default()
	want.Hostname = "mail.example.com"
	want.DataDir = "/var/lib/postyard"
	want.Domains = []string{"example.com"}
	want.SMTP.Listen = []string{":25"}
	want.Submission.Listen, want.Submission.TLSListen = []string{":587"}, []string{":465"}
	want.IMAP.Listen, want.IMAP.TLSListen = []string{":143"}, []string{":993"}
	want.POP3.Listen, want.POP3.TLSListen = []string{":110"}, []string{":995"}
	want.Autoconfig.Listen = []string{":80"}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config.example.toml:\n got %+v\nwant %+v", cfg, want)
	}
}
