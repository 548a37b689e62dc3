package testenv

import (
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/postyard-mail/postyard/internal/dnstest"
)

func TestConfigGeneration(t *testing.T) {
	dns := dnstest.Start(t, "")
	e := &Env{Hostname: "mx.example.test", Domains: []string{"example.test"}, DataDir: "/data", DNS: dns}
	doc, err := e.config(Options{
		ExtraTOML: `
[smtp]
max_recipients = 7
[delivery]
remote_port = 2525
`,
		Config: map[string]any{
			"imap.listen":                   []string{},
			"log.level":                     nil,
			"security.allow_plaintext_auth": true,
			"smtp.max_recipients":           9,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Hostname string
		DataDir  string   `toml:"data_dir"`
		Domains  []string `toml:"domains"`
		SMTP     struct {
			Listen        []string
			MaxRecipients int `toml:"max_recipients"`
		} `toml:"smtp"`
		IMAP struct {
			Listen    []string
			TLSListen []string `toml:"tls_listen"`
		} `toml:"imap"`
		DNS      struct{ Resolver string } `toml:"dns"`
		Delivery struct {
			RemotePort int `toml:"remote_port"`
		} `toml:"delivery"`
		Security struct {
			AllowPlaintextAuth bool `toml:"allow_plaintext_auth"`
		} `toml:"security"`
		Log map[string]any `toml:"log"`
	}
	if err := toml.Unmarshal(doc, &got); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"hostname", got.Hostname == "mx.example.test"},
		{"data_dir", got.DataDir == "/data"},
		{"domains", len(got.Domains) == 1 && got.Domains[0] == "example.test"},
		{"smtp.listen is the SMTP address", len(got.SMTP.Listen) == 1 && got.SMTP.Listen[0] == e.SMTP && strings.HasPrefix(e.SMTP, "127.0.0.1:")},
		{"Config beats ExtraTOML", got.SMTP.MaxRecipients == 9},
		{"ExtraTOML adds tables", got.Delivery.RemotePort == 2525},
		{"an empty list disables a listener", len(got.IMAP.Listen) == 0 && e.IMAP == ""},
		{"other keys of a table stay", len(got.IMAP.TLSListen) == 1 && got.IMAP.TLSListen[0] == e.IMAPTLS},
		{"dns.resolver is the test DNS", got.DNS.Resolver == dns.Addr},
		{"nil removes a key", got.Log["level"] == nil},
		{"dotted keys create tables", got.Security.AllowPlaintextAuth},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: no\n%s", c.name, doc)
		}
	}
	seen := map[string]bool{}
	for _, a := range e.addrs() {
		if seen[a] {
			t.Errorf("port %s used twice", a)
		}
		seen[a] = true
	}
	if len(seen) != len(listenKeys)-1 {
		t.Errorf("%d addresses, want %d", len(seen), len(listenKeys)-1)
	}
}

func TestConfigBadExtraTOML(t *testing.T) {
	e := &Env{DNS: dnstest.Start(t, "")}
	if _, err := e.config(Options{ExtraTOML: "[smtp"}); err == nil {
		t.Fatal("broken ExtraTOML accepted")
	}
}
