package accounts

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateAddress(t *testing.T) {
	tests := []struct {
		addr  string
		canon string // "" = invalid
	}{
		{"alice@example.com", "alice@example.com"},
		{"Alice.Smith@Example.COM", "Alice.Smith@example.com"},
		{"a+tag@example.com", "a+tag@example.com"},
		{"o'brien@example.com", "o'brien@example.com"},
		{"x!#$%&'*+-=?^_`{|}~@example.com", "x!#$%&'*+-=?^_`{|}~@example.com"},
		{"jörg@example.com", "jörg@example.com"},
		{"demo@localhost", "demo@localhost"},
		{"a@x-y.example", "a@x-y.example"},
		{"a@1.2.3.4", "a@1.2.3.4"},
		{strings.Repeat("a", 64) + "@example.com", strings.Repeat("a", 64) + "@example.com"},
		{strings.Repeat("a", 65) + "@example.com", ""},
		{"a@" + strings.Repeat("b", 64) + ".com", ""},
		{"a@" + strings.Repeat(strings.Repeat("b", 63)+".", 4) + "com", ""},
		{"", ""},
		{"alice", ""},
		{"@example.com", ""},
		{"alice@", ""},
		{"a@b@example.com", ""},
		{"../x@example.com", ""},
		{".alice@example.com", ""},
		{"alice.@example.com", ""},
		{"al..ice@example.com", ""},
		{"a/b@example.com", ""},
		{`a\b@example.com`, ""},
		{"a b@example.com", ""},
		{"a\x00b@example.com", ""},
		{"a\nb@example.com", ""},
		{"a\tb@example.com", ""},
		{"a\x7fb@example.com", ""},
		{"a\u0085b@example.com", ""},
		{"a\u00a0b@example.com", ""},
		{"a\xffb@example.com", ""},
		{`"a b"@example.com`, ""},
		{"a:b@example.com", ""},
		{"a,b@example.com", ""},
		{"<a@example.com>", ""},
		{"a@example.com.", ""},
		{"a@.example.com", ""},
		{"a@exa..mple.com", ""},
		{"a@-example.com", ""},
		{"a@example-.com", ""},
		{"a@exa_mple.com", ""},
		{"a@exa/mple.com", ""},
		{"a@..", ""},
		{"a@[127.0.0.1]", ""},
		{"a@exämple.com", ""},
	}
	for _, tt := range tests {
		canon, err := CanonicalAddress(tt.addr)
		if tt.canon == "" {
			if !errors.Is(err, ErrBadAddress) {
				t.Errorf("CanonicalAddress(%q) = %q, %v; want ErrBadAddress", tt.addr, canon, err)
			}
			if ValidateAddress(tt.addr) == nil {
				t.Errorf("ValidateAddress(%q) = nil", tt.addr)
			}
			continue
		}
		if err != nil || canon != tt.canon {
			t.Errorf("CanonicalAddress(%q) = %q, %v; want %q", tt.addr, canon, err, tt.canon)
		}
	}
}

// checkSafeAddress is the property the store relies on: the two parts of a
// valid address are single, harmless path elements.
func checkSafeAddress(t *testing.T, addr string) {
	local, domain, err := SplitAddress(addr)
	if err != nil {
		if !errors.Is(err, ErrBadAddress) {
			t.Fatalf("SplitAddress(%q) error %v does not wrap ErrBadAddress", addr, err)
		}
		return
	}
	for _, part := range []string{local, domain} {
		if part == "" || part == "." || part == ".." || filepath.Base(part) != part ||
			strings.ContainsAny(part, "/\\\x00 \t\r\n") || len(part) > 255 {
			t.Fatalf("SplitAddress(%q) accepted unsafe part %q", addr, part)
		}
		if filepath.Join("/base", part) != "/base/"+part {
			t.Fatalf("SplitAddress(%q): %q escapes its directory", addr, part)
		}
	}
	if domain != strings.ToLower(domain) {
		t.Fatalf("SplitAddress(%q): domain %q not lower-cased", addr, domain)
	}
	c, err := CanonicalAddress(local + "@" + domain)
	if err != nil || c != local+"@"+domain {
		t.Fatalf("canonical address %q@%q does not validate to itself: %q %v", local, domain, c, err)
	}
}

func FuzzAddress(f *testing.F) {
	for _, s := range []string{"alice@example.com", "A.b+c@Ex-ample.COM", "../x@y", "a@b@c", "jörg@x.y", "a\x00@b", ".@x", "a..b@c", "a@b..c"} {
		f.Add(s)
	}
	f.Fuzz(checkSafeAddress)
}
