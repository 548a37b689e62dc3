package maildir

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Mailbox names.
//
// Clients see UTF-8 names with Delimiter between levels ("Lists/Go"). On disk
// a folder is one directory directly under the user's maildir (Maildir++):
// "." + the levels joined by ".", each level in IMAP modified UTF-7 (RFC 3501
// §5.1.3), e.g. ".Lists.Go", ".&ANw-ber". INBOX is the user's maildir itself;
// its children are ".INBOX.child".
//
// As in Dovecot's default Maildir++ layout with "/" as separator, a name may
// not contain "." (it is the on-disk separator; Dovecot answers "Character not
// allowed in mailbox name: '.'") nor begin with "~". On top of that Postyard
// refuses NUL and other control characters, invalid UTF-8, empty levels
// (leading, trailing or doubled "/") and names whose directory name would not
// fit in one path component. A valid name therefore always maps to exactly
// one directory directly below the user's maildir, never outside it.

const (
	maxDirName = 255 // NAME_MAX: the directory ".a.b.c" is one path component
	inboxName  = "INBOX"
)

// ValidateMailboxName reports ErrInvalidName for names a client may not use
// (empty, "..", NUL or control characters, a leading or doubled Delimiter, too long).
func ValidateMailboxName(name string) error {
	_, err := folderDir(name)
	return err
}

func invalid(name, why string) error {
	if len(name) > 80 {
		name = name[:80] + "..."
	}
	return fmt.Errorf("%w: %q: %s", ErrInvalidName, name, why)
}

// isInbox: "INBOX" in any case.
func isInbox(name string) bool { return strings.EqualFold(name, inboxName) }

// canonicalName spells INBOX (alone or as the first level) in capitals.
func canonicalName(name string) string {
	first, rest, has := strings.Cut(name, string(Delimiter))
	if isInbox(first) {
		if has {
			return inboxName + string(Delimiter) + rest
		}
		return inboxName
	}
	return name
}

// folderDir maps a client name to the directory name below the user's
// maildir: "" for INBOX, ".a.b" for "a/b".
func folderDir(name string) (string, error) {
	if name == "" {
		return "", invalid(name, "empty")
	}
	if len(name) > 4*maxDirName {
		return "", invalid(name, "too long")
	}
	if !utf8.ValidString(name) {
		return "", invalid(name, "not UTF-8")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			return "", invalid(name, "control character")
		}
	}
	name = canonicalName(name)
	if name == inboxName {
		return "", nil
	}
	if name[0] == '~' {
		return "", invalid(name, "begins with '~'")
	}
	var sb strings.Builder
	for _, seg := range strings.Split(name, string(Delimiter)) {
		if seg == "" {
			return "", invalid(name, "empty level")
		}
		if strings.IndexByte(seg, '.') >= 0 {
			return "", invalid(name, "'.' not allowed")
		}
		sb.WriteByte('.')
		sb.WriteString(encodeMUTF7(seg))
	}
	dir := sb.String()
	if len(dir) > maxDirName {
		return "", invalid(name, "too long")
	}
	return dir, nil
}

// nameOfDir maps a directory name below the user's maildir back to the
// client name; ok is false for directories that are not folders.
func nameOfDir(dir string) (string, bool) {
	if len(dir) < 2 || dir[0] != '.' || dir == ".." {
		return "", false
	}
	segs := strings.Split(dir[1:], ".")
	for i, s := range segs {
		if s == "" {
			return "", false
		}
		d, err := decodeMUTF7(s)
		if err != nil {
			return "", false
		}
		segs[i] = d
	}
	name := strings.Join(segs, string(Delimiter))
	if d, err := folderDir(name); err != nil || d != dir {
		return "", false // not a name we could have written (e.g. ".INBOX")
	}
	return name, true
}

// ---------------------------------------------------------------- modified UTF-7

var b64 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

func encodeMUTF7(s string) string {
	var sb strings.Builder
	var run []uint16
	flush := func() {
		if len(run) == 0 {
			return
		}
		buf := make([]byte, 2*len(run))
		for i, u := range run {
			buf[2*i] = byte(u >> 8)
			buf[2*i+1] = byte(u)
		}
		sb.WriteByte('&')
		sb.WriteString(b64.EncodeToString(buf))
		sb.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				sb.WriteString("&-")
			} else {
				sb.WriteRune(r)
			}
			continue
		}
		run = utf16.AppendRune(run, r)
	}
	flush()
	return sb.String()
}

var errMUTF7 = errors.New("maildir: invalid modified UTF-7")

// decodeMUTF7 decodes strictly: only the canonical encoding of a string is
// accepted, so that decoding and encoding again gives the same bytes.
func decodeMUTF7(s string) (string, error) {
	var sb strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", errMUTF7
		}
		if c != '&' {
			sb.WriteByte(c)
			i++
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", errMUTF7
		}
		enc := s[i+1 : i+1+end]
		i += end + 2
		if enc == "" {
			sb.WriteByte('&')
			continue
		}
		raw, err := b64.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 || len(raw) == 0 {
			return "", errMUTF7
		}
		units := make([]uint16, len(raw)/2)
		for j := range units {
			units[j] = uint16(raw[2*j])<<8 | uint16(raw[2*j+1])
		}
		for j := 0; j < len(units); j++ {
			u := units[j]
			var r rune
			switch {
			case utf16.IsSurrogate(rune(u)):
				if j+1 >= len(units) {
					return "", errMUTF7
				}
				r = utf16.DecodeRune(rune(u), rune(units[j+1]))
				if r == utf8.RuneError {
					return "", errMUTF7
				}
				j++
			default:
				r = rune(u)
			}
			if r >= 0x20 && r <= 0x7e {
				return "", errMUTF7 // printable ASCII must not be encoded
			}
			sb.WriteRune(r)
		}
		// Two encoded runs in a row are not canonical.
		if i < len(s) && s[i] == '&' && i+1 < len(s) && s[i+1] != '-' {
			return "", errMUTF7
		}
	}
	out := sb.String()
	if encodeMUTF7(out) != s {
		return "", errMUTF7
	}
	return out, nil
}
