package mailauth

import (
	"net/netip"
	"testing"
)

func testEnv(ip string) *macroEnv {
	return &macroEnv{
		sender:   "strong-bad@email.example.com",
		local:    "strong-bad",
		domain:   "email.example.com",
		ip:       netip.MustParseAddr(ip),
		helo:     "mx.example.org",
		receiver: "mail.receiver.example",
		now:      1700000000,
		ptr:      func(string) string { return "host.email.example.com" },
	}
}

// The examples of RFC 7208 §7.4, and more.
func TestMacroExpansion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, ip, want string
		explain      bool
	}{
		{"%{s}", "192.0.2.3", "strong-bad@email.example.com", false},
		{"%{o}", "192.0.2.3", "email.example.com", false},
		{"%{d}", "192.0.2.3", "email.example.com", false},
		{"%{d4}", "192.0.2.3", "email.example.com", false},
		{"%{d3}", "192.0.2.3", "email.example.com", false},
		{"%{d2}", "192.0.2.3", "example.com", false},
		{"%{d1}", "192.0.2.3", "com", false},
		{"%{dr}", "192.0.2.3", "com.example.email", false},
		{"%{d2r}", "192.0.2.3", "example.email", false},
		{"%{l}", "192.0.2.3", "strong-bad", false},
		{"%{l-}", "192.0.2.3", "strong.bad", false},
		{"%{lr}", "192.0.2.3", "strong-bad", false},
		{"%{lr-}", "192.0.2.3", "bad.strong", false},
		{"%{l1r-}", "192.0.2.3", "strong", false},
		{"%{ir}.%{v}._spf.%{d2}", "192.0.2.3", "3.2.0.192.in-addr._spf.example.com", false},
		{"%{lr-}.lp._spf.%{d2}", "192.0.2.3", "bad.strong.lp._spf.example.com", false},
		{"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "192.0.2.3", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com", false},
		{"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "192.0.2.3", "3.2.0.192.in-addr.strong.lp._spf.example.com", false},
		{"%{d2}.trusted-domains.example.net", "192.0.2.3", "example.com.trusted-domains.example.net", false},
		{"%{ir}.%{v}._spf.%{d2}", "2001:db8::cb01", "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com", false},
		// Escapes, URL-encoding, other letters.
		{"%%%_%-", "192.0.2.3", "% %20", false},
		{"%{S}", "192.0.2.3", "strong-bad%40email.example.com", false},
		{"%{L}", "192.0.2.3", "strong-bad", false},
		{"%{h}.%{p}", "192.0.2.3", "mx.example.org.host.email.example.com", false},
		{"%{d99}", "192.0.2.3", "email.example.com", false},
		{"%{d99999999999999999999}", "192.0.2.3", "email.example.com", false},
		{"%{s-@}", "192.0.2.3", "", false}, // @ is no delimiter
		{"%{s-}", "192.0.2.3", "strong.bad@email.example.com", false},
		{"%{lr.-+,/_=}", "192.0.2.3", "bad.strong", false},
		{"%{l.r}", "192.0.2.3", "", false}, // r after a delimiter
		{"%{c} at %{t} by %{r}", "2001:db8::cb01", "2001:db8::cb01 at 1700000000 by mail.receiver.example", true},
		{"%{c}", "192.0.2.3", "", false},     // c only in exp
		{"a b", "192.0.2.3", "", false},      // space only in exp
		{"%{d0}", "192.0.2.3", "", false},    // zero digit
		{"%{x}", "192.0.2.3", "", false},     // unknown letter
		{"%{d", "192.0.2.3", "", false},      // unclosed
		{"%{}", "192.0.2.3", "", false},      // empty
		{"%{d2!}", "192.0.2.3", "", false},   // bad delimiter
		{"%x", "192.0.2.3", "", false},       // bad escape
		{"100%", "192.0.2.3", "", false},     // lone %
		{"caf\u00e9", "192.0.2.3", "", true}, // non-ASCII
	}
	for _, tc := range tests {
		items, err := parseMacroString(tc.in, tc.explain)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q accepted", tc.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got := testEnv(tc.ip).expand(items, "email.example.com"); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzMacroString: parsing never panics; what parses expands, and its
// printed form parses again and expands to the same text.
func FuzzMacroString(f *testing.F) {
	for _, s := range []string{"%{ir}.%{v}._spf.%{d2}", "%{l1r-}.%{S}%%%_%-", "%{c}%{r}%{t}", "%{d5r.-+,/_=}", "plain.example.com"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, explain bool) {
		items, err := parseMacroString(s, explain)
		if err != nil {
			return
		}
		for _, ip := range []string{"192.0.2.3", "2001:db8::1"} {
			env := testEnv(ip)
			got := env.expand(items, "a.b.example")
			text := macroString(items)
			again, err := parseMacroString(text, explain)
			if err != nil {
				t.Fatalf("%q printed as %q, which does not parse: %v", s, text, err)
			}
			if got2 := env.expand(again, "a.b.example"); got2 != got {
				t.Fatalf("%q expands to %q, its printed form %q to %q", s, got, text, got2)
			}
		}
	})
}
