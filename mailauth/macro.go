package mailauth

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// SPF macros (RFC 7208 §7).
//
//	macro-string = *( macro-expand / macro-literal )
//	macro-expand = ( "%{" macro-letter transformers *delimiter "}" )
//	               / "%%" / "%_" / "%-"
//	macro-letter = "s" / "l" / "o" / "d" / "i" / "p" / "h" / "c" / "r" / "t" / "v"
//	transformers = *DIGIT [ "r" ]
//	delimiter    = "." / "-" / "+" / "," / "/" / "_" / "="
//	macro-literal = %x21-24 / %x26-7E
//
// A macro-string is parsed once into items, checked at record parse time,
// and expanded per check.

var errMacro = errors.New("invalid macro")

// macroItem is a literal (letter 0) or one %{...} expansion.
type macroItem struct {
	literal string
	letter  byte   // lower-case macro letter, or 0 for a literal
	upper   bool   // URL-escape the value (§7.3: upper-case letter)
	digits  int    // keep this many right-hand parts; 0 = all
	reverse bool   // "r" transformer
	delims  string // split characters; "" = "."
}

// parseMacroString parses s. In explain-strings (exp TXT) the letters c, r
// and t are allowed and so are spaces; elsewhere they are errors (§7.2).
func parseMacroString(s string, explain bool) ([]macroItem, error) {
	var items []macroItem
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			items = append(items, macroItem{literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch != '%' {
			if ch < 0x21 || ch > 0x7e {
				if !(explain && ch == ' ') {
					return nil, fmt.Errorf("%w: character %q in %q", errMacro, ch, s)
				}
			}
			lit.WriteByte(ch)
			continue
		}
		if i+1 >= len(s) {
			return nil, fmt.Errorf("%w: lone %% at the end of %q", errMacro, s)
		}
		i++
		switch s[i] {
		case '%':
			lit.WriteByte('%')
			continue
		case '_':
			lit.WriteByte(' ')
			continue
		case '-':
			lit.WriteString("%20")
			continue
		case '{':
		default:
			return nil, fmt.Errorf("%w: %%%c in %q", errMacro, s[i], s)
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return nil, fmt.Errorf("%w: unclosed %%{ in %q", errMacro, s)
		}
		body := s[i+1 : i+end]
		i += end
		it, err := parseMacroExpand(body, explain)
		if err != nil {
			return nil, fmt.Errorf("%w in %q", err, s)
		}
		flush()
		items = append(items, it)
	}
	flush()
	return items, nil
}

func parseMacroExpand(body string, explain bool) (macroItem, error) {
	if body == "" {
		return macroItem{}, fmt.Errorf("%w: empty %%{}", errMacro)
	}
	it := macroItem{letter: body[0]}
	if 'A' <= it.letter && it.letter <= 'Z' {
		it.letter += 'a' - 'A'
		it.upper = true
	}
	switch it.letter {
	case 's', 'l', 'o', 'd', 'i', 'p', 'h', 'v':
	case 'c', 'r', 't':
		if !explain {
			return macroItem{}, fmt.Errorf("%w: %%{%c} outside exp", errMacro, body[0])
		}
	default:
		return macroItem{}, fmt.Errorf("%w: unknown macro letter %q", errMacro, body[0])
	}
	rest := body[1:]
	n := 0
	for n < len(rest) && '0' <= rest[n] && rest[n] <= '9' {
		n++
	}
	if n > 0 {
		d, err := strconv.Atoi(rest[:n])
		if err != nil || d > 128 {
			d = 128 // more parts than a name can have: all of them
		}
		if d == 0 {
			// §7.3: "If a DIGIT is specified, the value MUST be nonzero."
			return macroItem{}, fmt.Errorf("%w: zero digit transformer", errMacro)
		}
		it.digits = d
		rest = rest[n:]
	}
	if rest != "" && (rest[0] == 'r' || rest[0] == 'R') {
		it.reverse = true
		rest = rest[1:]
	}
	for i := 0; i < len(rest); i++ {
		if !strings.ContainsRune(".-+,/_=", rune(rest[i])) {
			return macroItem{}, fmt.Errorf("%w: bad delimiter %q", errMacro, rest[i])
		}
	}
	it.delims = rest
	return it, nil
}

// macroEnv holds the values of the macro letters for one check.
type macroEnv struct {
	sender   string // <sender>, with "postmaster" for an empty local-part
	local    string
	domain   string // <sender>'s domain
	ip       netip.Addr
	helo     string
	receiver string
	now      int64
	// ptr returns the validated domain name of ip for %{p} (looked up on
	// demand; "unknown" when none).
	ptr func(domain string) string
}

// expand evaluates items with current domain d.
func (env *macroEnv) expand(items []macroItem, d string) string {
	var b strings.Builder
	for _, it := range items {
		if it.letter == 0 {
			b.WriteString(it.literal)
			continue
		}
		v := env.value(it.letter, d)
		v = transform(v, it)
		if it.upper {
			v = urlEscape(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

func (env *macroEnv) value(letter byte, d string) string {
	switch letter {
	case 's':
		return env.sender
	case 'l':
		return env.local
	case 'o':
		return env.domain
	case 'd':
		return d
	case 'i':
		return dotIP(env.ip)
	case 'p':
		if env.ptr == nil {
			return "unknown"
		}
		return env.ptr(d)
	case 'h':
		return env.helo
	case 'v':
		if env.ip.Is4() {
			return "in-addr"
		}
		return "ip6"
	case 'c':
		return env.ip.String()
	case 'r':
		if env.receiver == "" {
			return "unknown"
		}
		return env.receiver
	case 't':
		return strconv.FormatInt(env.now, 10)
	}
	return ""
}

// transform splits v on the delimiters, reverses and keeps the right-hand
// parts as asked, and joins with "." (§7.3).
func transform(v string, it macroItem) string {
	if it.digits == 0 && !it.reverse && (it.delims == "" || it.delims == ".") {
		return v
	}
	delims := it.delims
	if delims == "" {
		delims = "."
	}
	parts := splitAny(v, delims)
	if it.reverse {
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
	}
	if it.digits > 0 && it.digits < len(parts) {
		parts = parts[len(parts)-it.digits:]
	}
	return strings.Join(parts, ".")
}

func splitAny(s, delims string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(delims, s[i]) >= 0 {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// dotIP is the "i" macro: dotted quad, or 32 dot-separated nibbles for IPv6.
func dotIP(ip netip.Addr) string {
	if ip.Is4() {
		return ip.String()
	}
	// Upper-case nibbles, as in the example of RFC 7208 §7.4.
	const hex = "0123456789ABCDEF"
	a := ip.As16()
	b := make([]byte, 0, 63)
	for i, x := range a {
		if i > 0 {
			b = append(b, '.')
		}
		b = append(b, hex[x>>4], '.', hex[x&0xf])
	}
	return string(b)
}

// urlEscape escapes all but the unreserved characters of RFC 3986.
func urlEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// macroString returns the text form of items (the inverse of
// parseMacroString up to the spelling of %%, %_ and %-).
func macroString(items []macroItem) string {
	var b strings.Builder
	for _, it := range items {
		if it.letter == 0 {
			for i := 0; i < len(it.literal); i++ {
				switch c := it.literal[i]; c {
				case '%':
					b.WriteString("%%")
				case ' ':
					b.WriteString("%_")
				default:
					b.WriteByte(c)
				}
			}
			continue
		}
		b.WriteString("%{")
		l := it.letter
		if it.upper {
			l -= 'a' - 'A'
		}
		b.WriteByte(l)
		if it.digits > 0 {
			b.WriteString(strconv.Itoa(it.digits))
		}
		if it.reverse {
			b.WriteByte('r')
		}
		b.WriteString(it.delims)
		b.WriteByte('}')
	}
	return b.String()
}
