package accounts

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// File names inside the data directory.
const (
	passwdName  = "passwd"
	aliasesName = "aliases"
	// maxLineLen bounds one line of either file.
	maxLineLen = 64 * 1024
)

// passwdLine is one line of a Dovecot passwd-file:
//
//	user:password:uid:gid:gecos:home:shell:extra_fields
//
// Only the first two fields matter here; the rest (with its leading colon)
// is kept verbatim so that a rewrite preserves it.
type passwdLine struct {
	user  string
	pass  string
	extra string // "" or ":uid:gid:..." exactly as read
}

// parsePasswdLine parses one line (without its newline). ok is false for
// blank lines and comments, which Dovecot skips and a rewrite keeps.
func parsePasswdLine(line string) (p passwdLine, ok bool) {
	t := strings.TrimSpace(line)
	if t == "" || t[0] == '#' {
		return passwdLine{}, false
	}
	user, rest, _ := strings.Cut(line, ":")
	pass, extra, found := strings.Cut(rest, ":")
	if found {
		extra = ":" + extra
	}
	return passwdLine{user: user, pass: pass, extra: extra}, true
}

// String formats the line back; parsePasswdLine(p.String()) == p.
func (p passwdLine) String() string {
	return p.user + ":" + p.pass + p.extra
}

// aliasLine is one entry of the aliases file: "alias@domain: t1, t2".
// The key may be "@domain", a catch-all for the domain.
type aliasLine struct {
	addr    string   // canonical: domain lower-cased
	targets []string // canonical addresses, in file order, no duplicates
}

// parseAliasLine parses one line of the aliases file. ok is false for blank
// lines and comments. Targets are separated by commas and/or white space.
func parseAliasLine(line string) (a aliasLine, ok bool, err error) {
	t := strings.TrimSpace(line)
	if t == "" || t[0] == '#' {
		return aliasLine{}, false, nil
	}
	key, rest, found := strings.Cut(t, ":")
	if !found {
		return aliasLine{}, true, errors.New(`missing ":" after the alias address`)
	}
	a.addr, err = canonicalAliasKey(strings.TrimSpace(key))
	if err != nil {
		return aliasLine{}, true, err
	}
	fields := strings.FieldsFunc(rest, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\n' || r == '\v' || r == '\f'
	})
	if len(fields) == 0 {
		return aliasLine{}, true, errors.New("alias has no targets")
	}
	for _, f := range fields {
		c, err := CanonicalAddress(f)
		if err != nil {
			return aliasLine{}, true, fmt.Errorf("target: %w", err)
		}
		a.targets = appendTarget(a.targets, c)
	}
	return a, true, nil
}

// String formats the line; parseAliasLine(a.String()) == a.
func (a aliasLine) String() string {
	return a.addr + ": " + strings.Join(a.targets, ", ")
}

// canonicalAliasKey validates an alias address: a mailbox address or
// "@domain" (catch-all).
func canonicalAliasKey(s string) (string, error) {
	if d, ok := strings.CutPrefix(s, "@"); ok {
		if err := ValidateDomain(d); err != nil {
			return "", err
		}
		return "@" + strings.ToLower(d), nil
	}
	return CanonicalAddress(s)
}

// targetKey identifies a target for de-duplication: local parts compare
// case-insensitively like lookups do.
func targetKey(canonical string) string {
	return strings.ToLower(canonical)
}

// appendTarget appends t to ts unless an equal target is there already.
func appendTarget(ts []string, t string) []string {
	k := targetKey(t)
	for _, x := range ts {
		if targetKey(x) == k {
			return ts
		}
	}
	return append(ts, t)
}

// readLines returns the lines of path without their line endings; a
// missing file has none.
func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), maxLineLen)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("accounts: reading %s line %d: %w", path, len(lines)+1, err)
	}
	return lines, nil
}
