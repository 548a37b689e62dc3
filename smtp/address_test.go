package smtp

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSplitAddress(t *testing.T) {
	tests := []struct {
		in            string
		local, domain string
		ok            bool
	}{
		{"user@example.test", "user", "example.test", true},
		{"User+tag@EXAMPLE.Test", "User+tag", "example.test", true},
		{"user@example.test.", "user", "example.test", true},
		{"john doe@example.test", "john doe", "example.test", true}, // quoted local part, unquoted by go-smtp
		{"a@b@example.test", "a@b", "example.test", true},
		{"user@[192.0.2.1]", "user", "[192.0.2.1]", true},
		{"user@[IPv6:2001:db8::1]", "user", "[ipv6:2001:db8::1]", true},
		{"jöran@exämple.test", "jöran", "exämple.test", true},
		{"u@my_host.example.test", "u", "my_host.example.test", true},
		{"", "", "", false},
		{"user", "", "", false},
		{"@example.test", "", "", false},
		{"user@", "", "", false},
		{"user@.", "", "", false},
		{"user@example..test", "", "", false},
		{"user@-example.test", "", "", false},
		{"user@example-.test", "", "", false},
		{"user@exa mple.test", "", "", false},
		{"user@exa>mple.test", "", "", false},
		{"us\x00er@example.test", "", "", false},
		{"us\rer@example.test", "", "", false},
		{"user@ex\x7fample.test", "", "", false},
		{"user@[]", "", "", false},
		{"user@[1.2.3.4", "", "", false},
		{"user@[1.2 .3.4]", "", "", false},
		{"user@\xffexample.test", "", "", false},
		{"user@" + strings.Repeat("a", 64) + ".test", "", "", false},
		{strings.Repeat("a", 250) + "@b.cd", "", "", false},
	}
	for _, tt := range tests {
		local, domain, err := splitAddress(tt.in)
		if (err == nil) != tt.ok || local != tt.local || domain != tt.domain {
			t.Errorf("splitAddress(%q) = %q, %q, %v; want %q, %q, ok=%v", tt.in, local, domain, err, tt.local, tt.domain, tt.ok)
		}
	}
}

func TestIsASCII(t *testing.T) {
	for s, want := range map[string]bool{"": true, "a@b.c": true, "ä@b.c": false, "a@b.\x80": false} {
		if isASCII(s) != want {
			t.Errorf("isASCII(%q) != %v", s, want)
		}
	}
}

// FuzzSplitAddress: never panics; what it accepts is clean, its domain is
// lower-case, and splitting the canonical form again gives the same parts.
func FuzzSplitAddress(f *testing.F) {
	for _, s := range []string{"user@example.test", "User+tag@EXAMPLE.Test.", "a@[IPv6:::1]", "jö@ä.test", "@", "a@b@c", "x@-y", "\x00@a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		local, domain, err := splitAddress(s)
		if err != nil {
			return
		}
		if local == "" || domain == "" || !utf8.ValidString(local) || !utf8.ValidString(domain) {
			t.Fatalf("accepted %q as %q @ %q", s, local, domain)
		}
		if strings.ContainsFunc(local+domain, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("control character accepted in %q", s)
		}
		if domain != asciiLower(domain) || strings.HasSuffix(domain, ".") {
			t.Fatalf("domain %q not canonical", domain)
		}
		l2, d2, err := splitAddress(local + "@" + domain)
		if err != nil || l2 != local || d2 != domain {
			t.Fatalf("canonical form %q@%q does not split back: %q %q %v", local, domain, l2, d2, err)
		}
	})
}
