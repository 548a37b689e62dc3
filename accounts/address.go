package accounts

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Length limits of RFC 5321 §4.5.3.1.
const (
	maxLocalLen  = 64
	maxDomainLen = 255
)

// ValidateAddress checks that addr is a plain "local@domain" mailbox address
// that is safe to use as a pair of directory names (the store keeps mail
// under mail/DOMAIN/LOCALPART). It accepts the dot-atom form of RFC 5322
// §3.4.1 for the local part, minus "/" and "\", plus UTF-8 letters (RFC 6531);
// quoted local parts are refused. The domain must be a host name of LDH
// labels (RFC 1123 §2.1); upper case is accepted and compares equal.
// The error wraps ErrBadAddress.
func ValidateAddress(addr string) error {
	_, _, err := splitAddress(addr)
	return err
}

// CanonicalAddress validates addr and returns it with the domain lower-cased
// and the local part unchanged.
func CanonicalAddress(addr string) (string, error) {
	local, domain, err := splitAddress(addr)
	if err != nil {
		return "", err
	}
	return local + "@" + domain, nil
}

// SplitAddress validates addr and returns its local part (unchanged) and its
// domain (lower-cased).
func SplitAddress(addr string) (local, domain string, err error) {
	return splitAddress(addr)
}

// ValidateDomain checks that d is a host name usable as a mail domain.
func ValidateDomain(d string) error {
	if err := checkDomain(d); err != nil {
		return fmt.Errorf("%w: %q: %s", ErrBadAddress, d, err.Error())
	}
	return nil
}

func splitAddress(addr string) (local, domain string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("%w: %q: %s", ErrBadAddress, truncateForError(addr), why)
	}
	at := strings.IndexByte(addr, '@')
	if at < 0 {
		return bad("no @")
	}
	if strings.IndexByte(addr[at+1:], '@') >= 0 {
		return bad("more than one @")
	}
	local, domain = addr[:at], addr[at+1:]
	if err := checkLocal(local); err != nil {
		return bad(err.Error())
	}
	if err := checkDomain(domain); err != nil {
		return bad(err.Error())
	}
	return local, strings.ToLower(domain), nil
}

func truncateForError(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

type addrError string

func (e addrError) Error() string { return string(e) }

// checkLocal validates a local part: dot-atom text (RFC 5322 §3.2.3) without
// "/" and "\" (the local part is a directory name), plus non-ASCII letters.
func checkLocal(local string) error {
	switch {
	case local == "":
		return addrError("empty local part")
	case len(local) > maxLocalLen:
		return addrError("local part longer than 64 octets")
	case local[0] == '.':
		return addrError("local part starts with a dot")
	case local[len(local)-1] == '.':
		return addrError("local part ends with a dot")
	case strings.Contains(local, ".."):
		return addrError("local part contains \"..\"")
	case !utf8.ValidString(local):
		return addrError("local part is not valid UTF-8")
	}
	for _, r := range local {
		if r < utf8.RuneSelf {
			if !isAtext(byte(r)) && r != '.' {
				return addrError(fmt.Sprintf("character %q not allowed in local part", r))
			}
			continue
		}
		if !unicode.IsGraphic(r) || unicode.IsSpace(r) {
			return addrError(fmt.Sprintf("character %q not allowed in local part", r))
		}
	}
	return nil
}

// isAtext reports whether c is atext of RFC 5322 §3.2.3, excluding "/"
// (a path separator).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-=?^_`{|}~", c) >= 0
}

// checkDomain validates a host name: dot-separated labels of letters,
// digits and hyphens, 1 to 63 octets each, not starting or ending with a
// hyphen.
func checkDomain(d string) error {
	if d == "" {
		return addrError("empty domain")
	}
	if len(d) > maxDomainLen {
		return addrError("domain longer than 255 octets")
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" {
			return addrError("empty label in domain")
		}
		if len(label) > 63 {
			return addrError("domain label longer than 63 octets")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return addrError("domain label starts or ends with a hyphen")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return addrError(fmt.Sprintf("character %q not allowed in domain", c))
			}
		}
	}
	return nil
}

// lookupKey is the key under which an address is looked up: Postfix-like,
// local parts and domains compare case-insensitively.
func lookupKey(local, domain string) string {
	return strings.ToLower(local) + "@" + domain
}

// stripTag returns the part of local before the first "+" and whether there
// was a non-empty base and a tag.
func stripTag(local string) (string, bool) {
	i := strings.IndexByte(local, '+')
	if i <= 0 {
		return local, false
	}
	return local[:i], true
}
