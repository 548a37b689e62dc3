package mailauth

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// SPF record syntax (RFC 7208 §4.5, §4.6, §12).

// ErrSPFSyntax is the cause of every SPF record syntax error; an SPF check
// that meets one gives permerror.
var ErrSPFSyntax = errors.New("SPF syntax error")

// SPFRecord is a parsed "v=spf1" record.
type SPFRecord struct {
	Directives []SPFDirective
	// Redirect and Explanation are the domain-specs of the redirect= and
	// exp= modifiers, "" when absent.
	Redirect    string
	Explanation string
	// Unknown modifiers, kept for String (they have no effect, §6).
	Unknown []SPFModifier

	redirect, exp []macroItem
}

// SPFModifier is an unknown name=value modifier.
type SPFModifier struct {
	Name, Value string
}

// SPFDirective is one [qualifier]mechanism term.
type SPFDirective struct {
	Qualifier byte   // '+', '-', '~' or '?'
	Mechanism string // all, include, a, mx, ptr, ip4, ip6, exists (lower case)
	// Domain is the domain-spec, "" when the mechanism has none (a, mx and
	// ptr then use the current domain).
	Domain string
	// Net is the network of ip4 and ip6.
	Net netip.Prefix
	// CIDR4 and CIDR6 are the dual-cidr-length of a and mx; -1 when absent
	// (32 and 128 apply).
	CIDR4, CIDR6 int

	domain []macroItem
}

// IsSPFRecord reports whether a TXT record is an SPF version 1 record
// (§4.5: "v=spf1" followed by a space or the end, any case).
func IsSPFRecord(txt string) bool {
	return len(txt) >= 6 && strings.EqualFold(txt[:6], "v=spf1") && (len(txt) == 6 || txt[6] == ' ')
}

// ParseSPF parses an SPF record.
func ParseSPF(txt string) (*SPFRecord, error) {
	if !IsSPFRecord(txt) {
		return nil, fmt.Errorf("%w: not a v=spf1 record", ErrSPFSyntax)
	}
	rec := &SPFRecord{}
	sawRedirect, sawExp := false, false
	for _, term := range strings.Split(txt[6:], " ") {
		if term == "" {
			continue // runs of spaces, trailing space
		}
		if name, value, ok := splitModifier(term); ok {
			switch strings.ToLower(name) {
			case "redirect", "exp":
				items, err := parseDomainSpec(value)
				if err != nil {
					return nil, fmt.Errorf("%w: %s: %v", ErrSPFSyntax, term, err)
				}
				// §6: redirect and exp may each appear once.
				if strings.EqualFold(name, "redirect") {
					if sawRedirect {
						return nil, fmt.Errorf("%w: second redirect", ErrSPFSyntax)
					}
					sawRedirect, rec.Redirect, rec.redirect = true, value, items
				} else {
					if sawExp {
						return nil, fmt.Errorf("%w: second exp", ErrSPFSyntax)
					}
					sawExp, rec.Explanation, rec.exp = true, value, items
				}
			default:
				// §6: unknown modifiers are ignored, but must be well formed.
				if _, err := parseMacroString(value, false); err != nil {
					return nil, fmt.Errorf("%w: %s: %v", ErrSPFSyntax, term, err)
				}
				rec.Unknown = append(rec.Unknown, SPFModifier{name, value})
			}
			continue
		}
		d, err := parseDirective(term)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrSPFSyntax, term, err)
		}
		rec.Directives = append(rec.Directives, d)
	}
	return rec, nil
}

// splitModifier recognizes name "=" macro-string, with
// name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ).
func splitModifier(term string) (name, value string, ok bool) {
	for i := 0; i < len(term); i++ {
		c := term[i]
		switch {
		case isAlpha(c):
		case i > 0 && (isDigit(c) || c == '-' || c == '_' || c == '.'):
		case i > 0 && c == '=':
			return term[:i], term[i+1:], true
		default:
			return "", "", false
		}
	}
	return "", "", false
}

func parseDirective(term string) (SPFDirective, error) {
	d := SPFDirective{Qualifier: '+', CIDR4: -1, CIDR6: -1}
	if strings.IndexByte("+-~?", term[0]) >= 0 {
		d.Qualifier = term[0]
		term = term[1:]
	}
	n := 0
	for n < len(term) && (isAlpha(term[n]) || isDigit(term[n])) {
		n++
	}
	d.Mechanism = strings.ToLower(term[:n])
	rest := term[n:]
	var err error
	switch d.Mechanism {
	case "all":
		if rest != "" {
			return d, errors.New("all takes no argument")
		}
	case "include", "exists":
		if !strings.HasPrefix(rest, ":") {
			return d, errors.New("domain required")
		}
		d.Domain = rest[1:]
		d.domain, err = parseDomainSpec(d.Domain)
	case "a", "mx":
		rest, d.CIDR4, d.CIDR6, err = cutDualCIDR(rest)
		if err != nil {
			return d, err
		}
		err = d.optionalDomain(rest)
	case "ptr":
		err = d.optionalDomain(rest)
	case "ip4", "ip6":
		if !strings.HasPrefix(rest, ":") {
			return d, errors.New("address required")
		}
		d.Net, err = parseNet(d.Mechanism, rest[1:])
	default:
		return d, errors.New("unknown mechanism")
	}
	return d, err
}

func (d *SPFDirective) optionalDomain(rest string) error {
	if rest == "" {
		return nil
	}
	if rest[0] != ':' {
		return errors.New("unexpected text after the mechanism")
	}
	d.Domain = rest[1:]
	var err error
	d.domain, err = parseDomainSpec(d.Domain)
	return err
}

// cutDualCIDR removes a trailing ip4-cidr-length and/or ip6-cidr-length
// ("/24", "//64", "/24//64").
func cutDualCIDR(s string) (rest string, v4, v6 int, err error) {
	v4, v6 = -1, -1
	if i := strings.LastIndex(s, "//"); i >= 0 && allDigits(s[i+2:]) {
		if v6, err = cidrLength(s[i+2:], 128); err != nil {
			return "", 0, 0, err
		}
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 && allDigits(s[i+1:]) {
		if v4, err = cidrLength(s[i+1:], 32); err != nil {
			return "", 0, 0, err
		}
		s = s[:i]
	}
	return s, v4, v6, nil
}

// cidrLength parses "0" / %x31-39 0*2DIGIT up to max (no leading zeros).
func cidrLength(s string, max int) (int, error) {
	if s == "" || len(s) > 3 || len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("bad prefix length %q", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > max {
		return 0, fmt.Errorf("bad prefix length %q", s)
	}
	return n, nil
}

func parseNet(mech, s string) (netip.Prefix, error) {
	addr, length, hasLen := strings.Cut(s, "/")
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address %q", addr)
	}
	bits := 32
	if mech == "ip6" {
		bits = 128
		if ip.Is4() {
			return netip.Prefix{}, fmt.Errorf("IPv4 address %q in ip6", addr)
		}
	} else if !ip.Is4() {
		return netip.Prefix{}, fmt.Errorf("not an IPv4 address: %q", addr)
	}
	if hasLen {
		if bits, err = cidrLength(length, bits); err != nil {
			return netip.Prefix{}, err
		}
	}
	return netip.PrefixFrom(ip, bits).Masked(), nil
}

// parseDomainSpec checks domain-spec = macro-string domain-end, with
// domain-end = ( "." toplabel [ "." ] ) / macro-expand (§7.1).
func parseDomainSpec(s string) ([]macroItem, error) {
	if s == "" {
		return nil, errors.New("empty domain")
	}
	items, err := parseMacroString(s, false)
	if err != nil {
		return nil, err
	}
	// A domain-end that is a macro-expand: the text ends with "}", or with
	// one of %%, %_, %- (which the ABNF counts as macro-expand too).
	if strings.HasSuffix(s, "}") || endsWithEscape(s) {
		return items, nil
	}
	t := strings.TrimSuffix(s, ".")
	dot := strings.LastIndexByte(t, '.')
	if dot < 0 || !isTopLabel(t[dot+1:]) {
		return nil, fmt.Errorf("domain %q does not end in a valid top label", s)
	}
	return items, nil
}

// endsWithEscape reports whether s ends with %%, %_ or %- that is itself not
// the second half of a %% escape.
func endsWithEscape(s string) bool {
	n := 0 // count the run of '%' before the last character
	for i := len(s) - 2; i >= 0 && s[i] == '%'; i-- {
		n++
	}
	last := s[len(s)-1]
	return n%2 == 1 && (last == '%' || last == '_' || last == '-')
}

// isTopLabel: ( *alphanum ALPHA *alphanum ) /
// ( 1*alphanum "-" *( alphanum / "-" ) alphanum ).
func isTopLabel(l string) bool {
	if l == "" {
		return false
	}
	alpha, dash := false, false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case isAlpha(c):
			alpha = true
		case isDigit(c):
		case c == '-':
			dash = true
		default:
			return false
		}
	}
	if dash {
		return l[0] != '-' && l[len(l)-1] != '-'
	}
	return alpha
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// String returns the record in canonical form: lower-case mechanism and
// modifier names, explicit qualifiers only where not "+".
func (r *SPFRecord) String() string {
	var b strings.Builder
	b.WriteString("v=spf1")
	for _, d := range r.Directives {
		b.WriteByte(' ')
		b.WriteString(d.String())
	}
	if r.Redirect != "" {
		b.WriteString(" redirect=" + r.Redirect)
	}
	if r.Explanation != "" {
		b.WriteString(" exp=" + r.Explanation)
	}
	for _, m := range r.Unknown {
		b.WriteString(" " + m.Name + "=" + m.Value)
	}
	return b.String()
}

// String returns the directive as it would appear in a record.
func (d SPFDirective) String() string {
	var b strings.Builder
	if d.Qualifier != '+' && d.Qualifier != 0 {
		b.WriteByte(d.Qualifier)
	}
	b.WriteString(d.Mechanism)
	switch d.Mechanism {
	case "ip4", "ip6":
		b.WriteByte(':')
		b.WriteString(d.Net.Addr().String())
		if full := d.Net.Addr().BitLen(); d.Net.Bits() != full {
			b.WriteString("/" + strconv.Itoa(d.Net.Bits()))
		}
		return b.String()
	}
	if d.Domain != "" {
		b.WriteString(":" + d.Domain)
	}
	if d.CIDR4 >= 0 {
		b.WriteString("/" + strconv.Itoa(d.CIDR4))
	}
	if d.CIDR6 >= 0 {
		b.WriteString("//" + strconv.Itoa(d.CIDR6))
	}
	return b.String()
}
