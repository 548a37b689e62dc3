package maildir

import (
	"fmt"
	"math/bits"
	"sort"
	"strconv"
	"strings"
)

// Flags live in file names (the Maildir "info" after ":2,"): upper-case letters
// are system flags, lower-case letters a–z are keywords whose names are in
// dovecot-keywords (letter 'a' is keyword 0). In memory a set of letters is a
// bit set: bit 0–25 for 'A'–'Z', bit 26–51 for 'a'–'z'. Bit 63 marks a
// message still in new/ (not a flag; it never reaches a file name).
type flagBits = uint64

const (
	bitInNew   flagBits = 1 << 63
	letterMask flagBits = 1<<52 - 1
	upperMask  flagBits = 1<<26 - 1
	lowerMask           = letterMask &^ upperMask
)

func letterBit(c byte) (flagBits, bool) {
	switch {
	case c >= 'A' && c <= 'Z':
		return 1 << (c - 'A'), true
	case c >= 'a' && c <= 'z':
		return 1 << (26 + c - 'a'), true
	}
	return 0, false
}

func keywordBit(idx int) flagBits { return 1 << (26 + idx) }

// systemFlags maps IMAP system flags to their Maildir letters. 'P' (passed) has
// no IMAP flag; it is kept in file names untouched.
var systemFlags = []struct {
	name   string
	letter byte
}{
	{FlagDraft, 'D'},
	{FlagFlagged, 'F'},
	{FlagAnswered, 'R'},
	{FlagSeen, 'S'},
	{FlagDeleted, 'T'},
}

var (
	bitSeen, _ = letterBit('S')
)

// infoOf splits a Maildir file name into its base (the stable part, up to the
// first ':') and its flag letters. Names without ":2," have no flags.
func infoOf(name string) (base string, letters flagBits) {
	i := strings.IndexByte(name, ':')
	if i < 0 {
		return name, 0
	}
	base = name[:i]
	info := name[i+1:]
	if strings.HasPrefix(info, "2,") {
		for j := 2; j < len(info); j++ {
			if b, ok := letterBit(info[j]); ok {
				letters |= b
			}
		}
	}
	return base, letters
}

// baseOf is infoOf without the flags.
func baseOf(name string) string {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		return name[:i]
	}
	return name
}

// curName is the file name in cur/ for base with the given flag letters; the
// letters are written in ASCII order as the Maildir convention asks.
func curName(base string, letters flagBits) string {
	letters &= letterMask
	var sb strings.Builder
	sb.Grow(len(base) + 3 + bits.OnesCount64(letters))
	sb.WriteString(base)
	sb.WriteString(":2,")
	for letters != 0 {
		i := bits.TrailingZeros64(letters)
		letters &^= 1 << i
		if i < 26 {
			sb.WriteByte(byte('A' + i))
		} else {
			sb.WriteByte(byte('a' + i - 26))
		}
	}
	return sb.String()
}

// sizeField returns the value of a ",K=NUMBER" field of a base name (K is S for
// the physical size, W for the RFC 822 size), or -1.
func sizeField(base string, k byte) int64 {
	// Fields follow the unique part: TIME.UNIQUE,S=123,W=456.
	for i := strings.IndexByte(base, ','); i >= 0 && i+2 < len(base); {
		if base[i+1] == k && base[i+2] == '=' {
			j := i + 3
			for j < len(base) && base[j] >= '0' && base[j] <= '9' {
				j++
			}
			if j > i+3 && j-(i+3) <= 18 {
				n, err := strconv.ParseInt(base[i+3:j], 10, 64)
				if err == nil {
					return n
				}
			}
		}
		k2 := strings.IndexByte(base[i+1:], ',')
		if k2 < 0 {
			break
		}
		i += 1 + k2
	}
	return -1
}

// baseTime is the leading TIME of a base name (seconds), or 0.
func baseTime(base string) int64 {
	j := 0
	for j < len(base) && j < 12 && base[j] >= '0' && base[j] <= '9' {
		j++
	}
	if j == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(base[:j], 10, 64)
	return n
}

// escapeHost makes a host name safe for a Maildir file name: '/' and ':' are
// written as \057 and \072 as qmail's documentation says.
func escapeHost(h string) string {
	if h == "" {
		return "localhost"
	}
	var sb strings.Builder
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '/':
			sb.WriteString(`\057`)
		case c == ':':
			sb.WriteString(`\072`)
		case c == ',':
			sb.WriteString(`\054`)
		case c < 0x21 || c >= 0x7f:
			fmt.Fprintf(&sb, `\%03o`, c)
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// canonicalFlag maps a client-supplied flag to its canonical spelling: system
// flags case-insensitively, keywords as given. ok is false for \Recent (never
// stored) ; err for any other backslash flag or an invalid atom.
func canonicalFlag(f string) (name string, system bool, err error) {
	if strings.HasPrefix(f, `\`) {
		for _, sf := range systemFlags {
			if strings.EqualFold(f, sf.name) {
				return sf.name, true, nil
			}
		}
		if strings.EqualFold(f, `\Recent`) {
			return "", true, nil
		}
		return "", false, fmt.Errorf("%w: %q", ErrInvalidFlag, f)
	}
	if !validKeyword(f) {
		return "", false, fmt.Errorf("%w: %q", ErrInvalidFlag, f)
	}
	return f, false, nil
}

// validKeyword: an IMAP atom (RFC 9051 flag-keyword), at most 128 bytes, no
// characters that would break dovecot-keywords lines.
func validKeyword(k string) bool {
	if k == "" || len(k) > 128 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// flagNames renders letters as sorted IMAP flags using the keyword table.
func flagNames(letters flagBits, kw []string) []string {
	var out []string
	for _, sf := range systemFlags {
		if b, _ := letterBit(sf.letter); letters&b != 0 {
			out = append(out, sf.name)
		}
	}
	for i := 0; i < 26; i++ {
		if letters&keywordBit(i) != 0 && i < len(kw) && kw[i] != "" {
			out = append(out, kw[i])
		}
	}
	sort.Strings(out)
	return out
}
