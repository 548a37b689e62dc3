package config_test

import (
	"os"
	"reflect"
	"testing"

	"github.com/postyard-mail/postyard/config"
)

// FuzzParse feeds arbitrary bytes to the config parser: it must not panic,
// and whatever it accepts must print to TOML that parses back to the same
// config.
func FuzzParse(f *testing.F) {
	if ex, err := os.ReadFile("../config.example.toml"); err == nil {
		f.Add(ex)
	}
	f.Add(config.Print(config.Default()))
	f.Add([]byte("hostname = \"a.example\"\n[smtp]\nmax_message_size = \"1.5MiB\"\n"))
	f.Add([]byte("[smtp]\nmax_recipent = 1\nmax_message_size = 2.5\n[delivery]\nretry = [\"5m\", 5]\n[zz]\nq = 1\n"))
	f.Add([]byte("smtp = { listen = [\":25\"], max_recipients = \"x\" }\n[smtp]\n"))
	f.Add([]byte("[tls]\ncert = \"/dev/zero\"\nkey = \"/dev/zero\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse("fuzz.toml", data)
		if err != nil {
			return
		}
		out := config.Print(cfg)
		back, err := config.Parse("printed.toml", out)
		if err != nil {
			t.Fatalf("Print output does not parse: %v\n%s", err, out)
		}
		normalizeEmpty(cfg)
		normalizeEmpty(back)
		if !reflect.DeepEqual(cfg, back) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", cfg, back)
		}
	})
}

// normalizeEmpty makes nil and empty lists equal (they print alike).
func normalizeEmpty(c *config.Config) {
	for _, l := range []*[]string{&c.Domains, &c.SMTP.Listen, &c.Submission.Listen, &c.Submission.TLSListen,
		&c.IMAP.Listen, &c.IMAP.TLSListen, &c.POP3.Listen, &c.POP3.TLSListen, &c.Autoconfig.Listen} {
		if len(*l) == 0 {
			*l = nil
		}
	}
}
