package accounts

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestParsePasswdLine(t *testing.T) {
	tests := []struct {
		line string
		want passwdLine
		ok   bool
	}{
		{line: ""},
		{line: "   "},
		{line: "# comment"},
		{line: "  # indented comment"},
		{line: "a@b:{PLAIN}x", want: passwdLine{user: "a@b", pass: "{PLAIN}x"}, ok: true},
		{line: "a@b:{PLAIN}x::::::", want: passwdLine{user: "a@b", pass: "{PLAIN}x", extra: "::::::"}, ok: true},
		{line: "a@b:$6$s$h:1:2:g:/h:/s:k=v:k2=a:b", want: passwdLine{user: "a@b", pass: "$6$s$h", extra: ":1:2:g:/h:/s:k=v:k2=a:b"}, ok: true},
		{line: "a@b", want: passwdLine{user: "a@b"}, ok: true},
		{line: "a@b:", want: passwdLine{user: "a@b"}, ok: true},
	}
	for _, tt := range tests {
		got, ok := parsePasswdLine(tt.line)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parsePasswdLine(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzPasswdLine(f *testing.F) {
	for _, s := range []string{"a@b:{PLAIN}x", "a@b:{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA::::::extra", "#c", "", "a@b", ":::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		p, ok := parsePasswdLine(line)
		if !ok {
			return
		}
		again, ok2 := parsePasswdLine(p.String())
		if !ok2 || again != p {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v", line, p, p.String(), again)
		}
		if strings.Contains(line, ":") && p.String() != line {
			t.Fatalf("rewrite of %q changed it to %q", line, p.String())
		}
		// What the directory does with the fields must not panic either.
		if _, err := parseHash(p.pass); err == nil {
			HashScheme(p.pass)
		}
		checkSafeAddress(t, p.user)
	})
}

func TestParseAliasLine(t *testing.T) {
	tests := []struct {
		line    string
		ok      bool
		wantErr bool
		want    aliasLine
	}{
		{line: ""},
		{line: "# x: y@z"},
		{line: "a@Example.com: b@example.com", ok: true, want: aliasLine{addr: "a@example.com", targets: []string{"b@example.com"}}},
		{line: " a@b :b@c,c@d  e@f,,\t g@h ", ok: true, want: aliasLine{addr: "a@b", targets: []string{"b@c", "c@d", "e@f", "g@h"}}},
		{line: "a@b: c@d, C@D, c@D", ok: true, want: aliasLine{addr: "a@b", targets: []string{"c@d"}}},
		{line: "@Example.com: b@example.com", ok: true, want: aliasLine{addr: "@example.com", targets: []string{"b@example.com"}}},
		{line: "a@b", ok: true, wantErr: true},
		{line: "a@b:", ok: true, wantErr: true},
		{line: "a@b: c", ok: true, wantErr: true},
		{line: "a@b: @c", ok: true, wantErr: true},
		{line: "a/b@c: d@e", ok: true, wantErr: true},
		{line: "@: d@e", ok: true, wantErr: true},
	}
	for _, tt := range tests {
		got, ok, err := parseAliasLine(tt.line)
		if ok != tt.ok || (err != nil) != tt.wantErr || (err == nil && (got.addr != tt.want.addr || !slices.Equal(got.targets, tt.want.targets))) {
			t.Errorf("parseAliasLine(%q) = %+v, %v, %v; want %+v, %v, err=%v", tt.line, got, ok, err, tt.want, tt.ok, tt.wantErr)
		}
	}
}

func FuzzAliasLine(f *testing.F) {
	for _, s := range []string{"a@b: c@d, e@f", "@dom: x@y", "# c", "a@b:", "a@b c@d", "a@b:c@d e@f,g@h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		a, ok, err := parseAliasLine(line)
		if !ok || err != nil {
			return
		}
		again, ok2, err2 := parseAliasLine(a.String())
		if !ok2 || err2 != nil || again.addr != a.addr || !slices.Equal(again.targets, a.targets) {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v %v", line, a, a.String(), again, err2)
		}
		if len(a.targets) == 0 {
			t.Fatalf("%q: alias without targets accepted", line)
		}
		for _, tg := range a.targets {
			checkSafeAddress(t, tg)
		}
		if key, isCatchAll := strings.CutPrefix(a.addr, "@"); isCatchAll {
			if ValidateDomain(key) != nil {
				t.Fatalf("%q: bad catch-all domain %q accepted", line, key)
			}
		} else {
			checkSafeAddress(t, a.addr)
		}
	})
}

func FuzzParseHash(f *testing.F) {
	for _, s := range []string{dummyHash, "{PLAIN}x", "{SHA512-CRYPT}$6$rounds=5000$salt$" + strings.Repeat("a", 86),
		"{BLF-CRYPT}$2y$05$KVCPERdFY8qtMMyk16Fm6OMpZ4KSvUIoPlmK4YcEhLgjdksujcFbu", "$5$s$" + strings.Repeat("b", 43), "{X}y", "{"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseHash(s)
		if err != nil {
			return
		}
		// Only cheap verifications: a fuzzed argon2 or bcrypt string may
		// ask for seconds of work within the bounds we allow.
		switch v := v.(type) {
		case plainVerifier:
			_, rest, _ := splitScheme(s)
			if !v.verify([]byte(rest)) {
				t.Fatalf("%q does not verify its own password", s)
			}
		case *shaCryptVerifier:
			if v.params.rounds <= 5000 {
				v.verify([]byte("x"))
			}
		}
	})
}

// logRecords is a slog.Handler that keeps the records' messages.
type logRecords struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}

func TestLoadWarnsOncePerBadLine(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, passwdName, `ok@example.com:{PLAIN}pw
md5@example.com:{MD5-CRYPT}$1$salt$hash
bad-argon@example.com:{ARGON2ID}$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaA
not an address:{PLAIN}pw
OK@example.com:{PLAIN}duplicate
other@example.net:{PLAIN}pw
`)
	writeFile(t, dir, aliasesName, "a@example.com: ok@example.com\nbroken line\nb@example.com: not-an-address\n")
	rec := &logRecords{}
	d, err := Open(dir, []string{"example.com"}, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	passwd, aliases := dir+"/passwd", dir+"/aliases"
	want := []string{
		"WARN " + passwd + ":2: user cannot log in: unusable password hash",
		"WARN " + passwd + ":3: user cannot log in: unusable password hash",
		"WARN " + passwd + ":4: user skipped: not a valid address",
		"WARN " + passwd + ":5: user skipped: duplicate of an earlier line",
		"WARN " + passwd + ":6: user's domain is not among the local domains: no mail is delivered to it",
		"WARN " + aliases + ":2: alias skipped",
		"WARN " + aliases + ":3: alias skipped",
	}
	if !slices.Equal(rec.msgs, want) {
		t.Errorf("log:\n%s\nwant:\n%s", strings.Join(rec.msgs, "\n"), strings.Join(want, "\n"))
	}
	// Lookups do not log again; the good lines work.
	for range 3 {
		if _, err := d.Authenticate("md5@example.com", "x"); err == nil {
			t.Error("user with an unknown scheme logged in")
		}
	}
	if _, err := d.Authenticate("ok@example.com", "pw"); err != nil {
		t.Error(err)
	}
	if res, err := d.Resolve("a@example.com"); err != nil || len(res.Local) != 1 {
		t.Errorf("Resolve = %v, %v", res, err)
	}
	if len(rec.msgs) != len(want) {
		t.Errorf("lookups logged: %q", rec.msgs[len(want):])
	}
}
