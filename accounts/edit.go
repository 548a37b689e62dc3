package accounts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// The editing functions below are what the CLI calls. Each rewrites the file
// atomically (tmp, fsync, rename) under a lock file, so concurrent edits lose
// nothing; a running server picks the change up on its own.

// AddUser adds addr with a new {ARGON2ID} hash of password. ErrUserExists, ErrBadAddress.
//
// The address is written in lower case: lookups here ignore case anyway,
// and Dovecot's default auth_username_format (%Lu) lower-cases the login
// before it searches the passwd-file.
func AddUser(dataDir, addr, password string) error {
	canon, err := CanonicalAddress(addr)
	if err != nil {
		return err
	}
	canon = strings.ToLower(canon)
	// Hash outside the lock: it is the slow part.
	h, err := HashPassword(DefaultScheme, password)
	if err != nil {
		return err
	}
	return editPasswd(dataDir, func(lines []string) ([]string, error) {
		if i := findUser(lines, canon); i >= 0 {
			return nil, fmt.Errorf("%w: %s", ErrUserExists, canon)
		}
		return append(lines, passwdLine{user: canon, pass: h}.String()), nil
	})
}

// SetPassword replaces the hash of an existing user. ErrNoSuchUser.
func SetPassword(dataDir, addr, password string) error {
	canon, err := CanonicalAddress(addr)
	if err != nil {
		return err
	}
	h, err := HashPassword(DefaultScheme, password)
	if err != nil {
		return err
	}
	return editUser(dataDir, canon, func(lines []string, i int) []string {
		p, _ := parsePasswdLine(lines[i])
		p.pass = h
		lines[i] = p.String()
		return lines
	})
}

// DeleteUser removes a user (their mail stays on disk). ErrNoSuchUser.
func DeleteUser(dataDir, addr string) error {
	canon, err := CanonicalAddress(addr)
	if err != nil {
		return err
	}
	return editUser(dataDir, canon, func(lines []string, i int) []string {
		return slices.Delete(lines, i, i+1)
	})
}

// editUser runs edit under editPasswd with the index of canon's line;
// ErrNoSuchUser if it has none.
func editUser(dataDir, canon string, edit func(lines []string, i int) []string) error {
	return editPasswd(dataDir, func(lines []string) ([]string, error) {
		i := findUser(lines, canon)
		if i < 0 {
			return nil, fmt.Errorf("%w: %s", ErrNoSuchUser, canon)
		}
		return edit(lines, i), nil
	})
}

// ListUsers returns the user addresses, sorted.
func ListUsers(dataDir string) ([]string, error) {
	lines, err := readLines(filepath.Join(dataDir, passwdName))
	if err != nil {
		return nil, err
	}
	users := []string{}
	for _, line := range lines {
		p, ok := parsePasswdLine(line)
		if !ok {
			continue
		}
		if c, err := CanonicalAddress(p.user); err == nil {
			users = append(users, c)
		}
	}
	slices.Sort(users)
	return slices.Compact(users), nil
}

// findUser returns the index of the line of canon (compared like lookups
// compare), or -1.
func findUser(lines []string, canon string) int {
	want := targetKey(canon)
	for i, line := range lines {
		p, ok := parsePasswdLine(line)
		if !ok {
			continue
		}
		if c, err := CanonicalAddress(p.user); err == nil && targetKey(c) == want {
			return i
		}
	}
	return -1
}

// AddAlias adds or extends addr with targets (local users or outside
// addresses). remoteAllowed says whether outside targets are accepted (they
// need the outbound queue).
//
// addr may be "@domain", a catch-all. A target on a domain that has users
// or aliases must be an existing user or alias ("user+tag@" counts as
// "user@"), else ErrNoSuchUser; any other target is outside, and refused
// with ErrNotLocal unless remoteAllowed. ErrAliasExists when every target
// is already there.
func AddAlias(dataDir, addr string, targets []string, remoteAllowed bool) error {
	return AddAliasWithDomains(dataDir, nil, addr, targets, remoteAllowed)
}

// AddAliasWithDomains is AddAlias with the configured local domains: a
// target on one of them is local even if the domain has no user yet.
func AddAliasWithDomains(dataDir string, domains []string, addr string, targets []string, remoteAllowed bool) error {
	key, err := canonicalAliasKey(addr)
	if err != nil {
		return err
	}
	key = strings.ToLower(key) // written in lower case, like AddUser's
	if len(targets) == 0 {
		return fmt.Errorf("accounts: alias %s: no targets", key)
	}
	canonTargets := make([]string, 0, len(targets))
	for _, t := range targets {
		c, err := CanonicalAddress(strings.TrimSpace(t))
		if err != nil {
			return fmt.Errorf("accounts: alias target: %w", err)
		}
		canonTargets = appendTarget(canonTargets, c)
	}
	return editAliases(dataDir, func(lines []string) ([]string, error) {
		known, err := knownAddresses(dataDir, lines, domains)
		if err != nil {
			return nil, err
		}
		for _, t := range canonTargets {
			if err := known.checkTarget(key, t, remoteAllowed); err != nil {
				return nil, err
			}
		}
		at := -1
		var cur aliasLine
		for i, line := range lines {
			if a, ok, err := parseAliasLine(line); ok && err == nil && targetKey(a.addr) == targetKey(key) {
				at, cur = i, a
				break
			}
		}
		if at < 0 {
			return append(lines, aliasLine{addr: key, targets: canonTargets}.String()), nil
		}
		n := len(cur.targets)
		for _, t := range canonTargets {
			cur.targets = appendTarget(cur.targets, t)
		}
		if len(cur.targets) == n {
			return nil, fmt.Errorf("%w: %s already has these targets", ErrAliasExists, key)
		}
		lines[at] = cur.String()
		return lines, nil
	})
}

// knownSet is what AddAlias knows of the local addresses.
type knownSet struct {
	addrs   map[string]bool // lookup keys of users and aliases
	domains map[string]bool // domains with a user, an alias or configured
}

func knownAddresses(dataDir string, aliasLines []string, domains []string) (*knownSet, error) {
	k := &knownSet{addrs: map[string]bool{}, domains: map[string]bool{}}
	for _, dom := range domains {
		k.domains[strings.ToLower(dom)] = true
	}
	users, err := ListUsers(dataDir)
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		k.addrs[targetKey(u)] = true
		k.domains[u[strings.IndexByte(u, '@')+1:]] = true
	}
	for _, line := range aliasLines {
		if a, ok, err := parseAliasLine(line); ok && err == nil {
			k.addrs[targetKey(a.addr)] = true
			k.domains[a.addr[strings.IndexByte(a.addr, '@')+1:]] = true
		}
	}
	return k, nil
}

func (k *knownSet) checkTarget(alias, t string, remoteAllowed bool) error {
	local, domain, _ := splitAddress(t)
	if !k.domains[domain] {
		if !remoteAllowed {
			return fmt.Errorf("%w: target %s is outside the local domains (outside targets are not allowed)", ErrNotLocal, t)
		}
		return nil
	}
	key := lookupKey(local, domain)
	if k.addrs[key] || key == targetKey(alias) || k.addrs["@"+domain] {
		return nil
	}
	if base, ok := stripTag(local); ok && k.addrs[lookupKey(base, domain)] {
		return nil
	}
	return fmt.Errorf("%w: target %s is neither a user nor an alias", ErrNoSuchUser, t)
}

// DeleteAlias removes an alias. ErrNoSuchUser when there is none.
func DeleteAlias(dataDir, addr string) error {
	key, err := canonicalAliasKey(addr)
	if err != nil {
		return err
	}
	return editAliases(dataDir, func(lines []string) ([]string, error) {
		n := len(lines)
		lines = slices.DeleteFunc(lines, func(line string) bool {
			a, ok, err := parseAliasLine(line)
			return ok && err == nil && targetKey(a.addr) == targetKey(key)
		})
		if len(lines) == n {
			return nil, fmt.Errorf("%w: no alias %s", ErrNoSuchUser, key)
		}
		return lines, nil
	})
}

// ListAliases returns the aliases, sorted by address. Lines of the same
// address are merged; lines that do not parse are left out.
func ListAliases(dataDir string) ([]Alias, error) {
	lines, err := readLines(filepath.Join(dataDir, aliasesName))
	if err != nil {
		return nil, err
	}
	byKey := map[string]int{}
	out := []Alias{}
	for _, line := range lines {
		a, ok, err := parseAliasLine(line)
		if !ok || err != nil {
			continue
		}
		k := targetKey(a.addr)
		i, seen := byKey[k]
		if !seen {
			byKey[k] = len(out)
			out = append(out, Alias{Address: a.addr, Targets: a.targets})
			continue
		}
		for _, t := range a.targets {
			out[i].Targets = appendTarget(out[i].Targets, t)
		}
	}
	slices.SortFunc(out, func(a, b Alias) int { return strings.Compare(a.Address, b.Address) })
	return out, nil
}

func editPasswd(dataDir string, edit func([]string) ([]string, error)) error {
	return editFile(dataDir, passwdName, edit)
}

func editAliases(dataDir string, edit func([]string) ([]string, error)) error {
	return editFile(dataDir, aliasesName, edit)
}

// editFile runs edit on the current lines of dataDir/name under an
// exclusive lock on dataDir/name.lock and atomically replaces the file with
// the result. The lock is held from before the read to after the rename, so
// an edit never works on a stale copy.
func editFile(dataDir, name string, edit func([]string) ([]string, error)) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dataDir, name+".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	path := filepath.Join(dataDir, name)
	lines, err := readLines(path)
	if err != nil {
		return err
	}
	lines, err = edit(lines)
	if err != nil {
		return err
	}
	return writeAtomic(path, lines)
}

// lockFile takes an exclusive flock(2) on path, creating it; the lock goes
// with the descriptor, so a crashed editor never leaves it held.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("accounts: lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("accounts: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// writeAtomic replaces path with lines: a temporary file in the same
// directory, fsync, rename, fsync of the directory. Mode 0600.
func writeAtomic(path string, lines []string) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if _, err = f.WriteString(b.String()); err != nil {
		return fmt.Errorf("accounts: writing %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("accounts: fsync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("accounts: closing %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("accounts: fsync %s: %w", dir, err)
	}
	return nil
}
