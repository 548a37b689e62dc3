package accounts

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
)

// account is one usable line of passwd.
type account struct {
	addr string   // canonical address
	v    verifier // nil: this user cannot log in (no or unusable hash)
}

// snapshot is the immutable content of both files at one moment.
type snapshot struct {
	users   map[string]*account // by lookupKey
	aliases map[string][]string // by lookupKey, or "@domain" for catch-alls; canonical targets

	passwdStamp, aliasesStamp fileStamp // what the files looked like before they were read
}

func fileID(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino
	}
	return 0, 0
}

// load reads both files into a new snapshot. Bad lines are logged with
// file and line and skipped; only I/O errors fail.
func (d *Directory) load() (*snapshot, error) {
	s := &snapshot{users: map[string]*account{}, aliases: map[string][]string{}}
	ppath := filepath.Join(d.dataDir, passwdName)
	apath := filepath.Join(d.dataDir, aliasesName)
	// Stat before reading: a change in between shows as a new stamp at the
	// next check and costs one extra reload, never a missed edit.
	s.passwdStamp = statFile(ppath)
	s.aliasesStamp = statFile(apath)

	lines, err := readLines(ppath)
	if err != nil {
		return nil, err
	}
	warn := func(path string, n int, msg string, args ...any) {
		d.logger.Warn(fmt.Sprintf("%s:%d: %s", path, n, msg), args...)
	}
	for i, line := range lines {
		p, ok := parsePasswdLine(line)
		if !ok {
			continue
		}
		local, domain, err := splitAddress(p.user)
		if err != nil {
			warn(ppath, i+1, "user skipped: not a valid address", "err", err)
			continue
		}
		key := lookupKey(local, domain)
		if _, dup := s.users[key]; dup {
			warn(ppath, i+1, "user skipped: duplicate of an earlier line", "user", p.user)
			continue
		}
		u := &account{addr: local + "@" + domain}
		if p.pass == "" {
			warn(ppath, i+1, "user cannot log in: no password", "user", u.addr)
		} else if v, err := parseHash(p.pass); err != nil {
			warn(ppath, i+1, "user cannot log in: unusable password hash", "user", u.addr, "err", err)
		} else if _, rest, _ := splitScheme(p.pass); rest == "" {
			warn(ppath, i+1, "user cannot log in: empty password", "user", u.addr)
		} else {
			u.v = v
		}
		if !d.IsLocalDomain(domain) {
			warn(ppath, i+1, "user's domain is not among the local domains: no mail is delivered to it", "user", u.addr)
		}
		s.users[key] = u
	}

	lines, err = readLines(apath)
	if err != nil {
		return nil, err
	}
	for i, line := range lines {
		a, ok, err := parseAliasLine(line)
		if !ok {
			continue
		}
		if err != nil {
			warn(apath, i+1, "alias skipped", "err", err)
			continue
		}
		key := a.addr
		if key[0] != '@' {
			local, domain, _ := splitAddress(key)
			key = lookupKey(local, domain)
		}
		ts := s.aliases[key]
		for _, t := range a.targets {
			ts = appendTarget(ts, t)
		}
		s.aliases[key] = ts
	}
	return s, nil
}

// Bounds of one alias expansion.
const (
	maxAliasDepth   = 20
	maxAliasVisited = 1000
)

var errExpansionLimit = errors.New("alias expansion limit reached")

// expansion is the state of one Resolve.
type expansion struct {
	d       *Directory
	s       *snapshot
	visited []string // lookup keys already expanded (a slice: expansions are small)
	res     Resolution
	limited bool
}

func (r *expansion) seen(key string) bool {
	for _, v := range r.visited {
		if v == key {
			return true
		}
	}
	return false
}

// expand adds where mail for local@domain (domain lower-case, local) goes.
func (r *expansion) expand(local, domain string, depth int, catchAll bool) {
	key := lookupKey(local, domain)
	if r.seen(key) {
		// A loop, or an alias listing its own address: the user of
		// that address (if any) gets the mail, like Postfix does.
		if u := r.s.users[key]; u != nil {
			r.addLocal(u.addr)
		}
		return
	}
	if depth > maxAliasDepth || len(r.visited) >= maxAliasVisited {
		if !r.limited {
			r.limited = true
			r.d.logger.Warn("accounts: alias expansion stopped", "address", local+"@"+domain, "err", errExpansionLimit)
		}
		return
	}
	r.visited = append(r.visited, key)
	if ts, ok := r.s.aliases[key]; ok {
		r.targets(ts, depth, catchAll)
		return
	}
	if u := r.s.users[key]; u != nil {
		r.addLocal(u.addr)
		return
	}
	if base, ok := stripTag(local); ok {
		bkey := lookupKey(base, domain)
		if r.s.users[bkey] != nil || r.s.aliases[bkey] != nil {
			r.expand(base, domain, depth+1, catchAll)
			return
		}
	}
	if catchAll {
		if ts, ok := r.s.aliases["@"+domain]; ok {
			// Targets of a catch-all do not fall into it again.
			r.targets(ts, depth, false)
		}
	}
}

func (r *expansion) targets(ts []string, depth int, catchAll bool) {
	for _, t := range ts {
		local, domain, err := splitAddress(t)
		if err != nil { // cannot happen: targets are validated on load
			continue
		}
		if r.d.IsLocalDomain(domain) {
			r.expand(local, domain, depth+1, catchAll)
		} else {
			r.addRemote(t)
		}
	}
}

func (r *expansion) addLocal(addr string) {
	r.res.Local = appendTarget(r.res.Local, addr)
}

func (r *expansion) addRemote(addr string) {
	r.res.Remote = appendTarget(r.res.Remote, addr)
}
