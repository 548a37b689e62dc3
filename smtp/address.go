package smtp

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Limits of RFC 5321 §4.5.3.1: a path is at most 256 octets with its angle
// brackets, a domain at most 255, a label 63.
const (
	maxAddressLen = 254
	maxDomainLen  = 253
	maxLabelLen   = 63
)

var errBadAddress = errors.New("malformed address")

// splitAddress checks a mailbox as go-smtp hands it over (quotes of a quoted
// local part already removed) and returns its local part and its domain,
// lower-cased (ASCII) and without a trailing dot. The domain is a host name
// of letters, digits and hyphens (or UTF-8 labels, RFC 6531) or an address
// literal "[...]"; nothing may contain control characters or invalid UTF-8.
func splitAddress(addr string) (local, domain string, err error) {
	if len(addr) == 0 || len(addr) > maxAddressLen || !utf8.ValidString(addr) {
		return "", "", errBadAddress
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", "", errBadAddress
	}
	local, domain = addr[:at], addr[at+1:]
	for i := 0; i < len(local); i++ {
		if c := local[i]; c < 0x20 || c == 0x7f {
			return "", "", errBadAddress
		}
	}
	domain = strings.TrimSuffix(domain, ".")
	if !validDomain(domain) {
		return "", "", errBadAddress
	}
	return local, asciiLower(domain), nil
}

// validDomain accepts "a.b.c" of LDH or UTF-8 labels, and address literals
// "[192.0.2.1]", "[IPv6:...]" (content printable ASCII, no brackets inside).
func validDomain(d string) bool {
	if d == "" || len(d) > maxDomainLen {
		return false
	}
	if d[0] == '[' {
		if len(d) < 3 || d[len(d)-1] != ']' {
			return false
		}
		for i := 1; i < len(d)-1; i++ {
			if c := d[i]; c <= 0x20 || c >= 0x7f || c == '[' || c == ']' || c == '\\' {
				return false
			}
		}
		return true
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > maxLabelLen || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if c >= 0x80 {
				continue // UTF-8 (validated above)
			}
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
