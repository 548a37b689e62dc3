package pop3_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/postyard-mail/postyard/pop3"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		verb    string
		rest    string
		args    []string
		wantErr string
	}{
		{name: "bare keyword", line: "STAT", verb: "STAT"},
		{name: "lower case", line: "stat", verb: "STAT"},
		{name: "mixed case with arg", line: "rEtR 1", verb: "RETR", rest: "1", args: []string{"1"}},
		{name: "two args", line: "TOP 1 10", verb: "TOP", rest: "1 10", args: []string{"1", "10"}},
		{name: "extra spaces tolerated in args", line: "TOP  1   10 ", verb: "TOP", rest: " 1   10 ", args: []string{"1", "10"}},
		{name: "password with spaces kept verbatim", line: "PASS my secret  pw ", verb: "PASS", rest: "my secret  pw ", args: []string{"my", "secret", "pw"}},
		{name: "utf-8 argument", line: "PASS pässwörd", verb: "PASS", rest: "pässwörd", args: []string{"pässwörd"}},
		{name: "trailing space only", line: "LIST ", verb: "LIST", rest: "", args: nil},
		{name: "unknown keyword still parsed", line: "XTND XMIT", verb: "XTND", rest: "XMIT", args: []string{"XMIT"}},
		{name: "empty", line: "", wantErr: "empty command"},
		{name: "leading space", line: " STAT", wantErr: "keyword"},
		{name: "digits", line: "1234", wantErr: "keyword"},
		{name: "keyword too long", line: "ABCDEFGHI", wantErr: "keyword"},
		{name: "punctuation in keyword", line: "GET/ x", wantErr: "keyword"},
		{name: "NUL", line: "USER a\x00b", wantErr: "control character 0x00"},
		{name: "tab", line: "USER\ta", wantErr: "control character 0x09"},
		{name: "CR inside", line: "USER a\rb", wantErr: "control character 0x0d"},
		{name: "DEL", line: "USER a\x7f", wantErr: "control character 0x7f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := pop3.ParseCommand(tt.line)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseCommand(%q) = %+v, %v; want error containing %q", tt.line, cmd, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCommand(%q): %v", tt.line, err)
			}
			if cmd.Verb != tt.verb || cmd.Rest != tt.rest {
				t.Errorf("ParseCommand(%q) = %q, %q; want %q, %q", tt.line, cmd.Verb, cmd.Rest, tt.verb, tt.rest)
			}
			if got := cmd.Args(); !slices.Equal(got, tt.args) {
				t.Errorf("Args() = %q, want %q", got, tt.args)
			}
		})
	}
}

// FuzzParseCommand checks that the parser never panics, that what it accepts
// is a valid command (an upper-case letter keyword, no control characters)
// and that a parsed command formats back to a line that parses the same.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"STAT", "retr 1", "TOP 1 10", "PASS a b c", "AUTH PLAIN AGFsaWNlAHB3", "", " ", "GET / HTTP/1.1", "USER \x00", "LIST  1", "UIDL\xff", "EHLO x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := pop3.ParseCommand(line)
		if err != nil {
			return
		}
		if n := len(cmd.Verb); n < 1 || n > 8 {
			t.Fatalf("verb %q has length %d", cmd.Verb, n)
		}
		for _, r := range cmd.Verb {
			if r < 'A' || r > 'Z' {
				t.Fatalf("verb %q is not upper-case letters", cmd.Verb)
			}
		}
		for i := 0; i < len(cmd.Rest); i++ {
			if b := cmd.Rest[i]; b < ' ' || b == 0x7f {
				t.Fatalf("rest %q holds a control character", cmd.Rest)
			}
		}
		for _, a := range cmd.Args() {
			if a == "" || strings.Contains(a, " ") {
				t.Fatalf("bad argument %q in %q", a, cmd.Args())
			}
		}
		if !strings.EqualFold(line[:len(cmd.Verb)], cmd.Verb) {
			t.Fatalf("verb %q is not the start of %q", cmd.Verb, line)
		}
		formatted := cmd.Verb
		if len(line) > len(cmd.Verb) {
			formatted += " " + cmd.Rest
		}
		again, err := pop3.ParseCommand(formatted)
		if err != nil || again != cmd {
			t.Fatalf("round trip of %q: %q → %+v, %v; first parse %+v", line, formatted, again, err, cmd)
		}
	})
}
