// Package accounts holds users, password hashes, aliases and local domains:
// data_dir/passwd (Dovecot passwd-file compatible) and data_dir/aliases.
//
// # Files
//
// passwd has one user a line, "user@domain:{SCHEME}hash", optionally
// followed by Dovecot's further colon-separated fields
// (":uid:gid:gecos:home:shell:extra"), which are ignored and kept on
// rewrite, as are "#" comments and blank lines. New hashes are {ARGON2ID}
// in libsodium's encoding, as Dovecot writes them; {BLF-CRYPT},
// {SHA512-CRYPT}, {SHA256-CRYPT}, {ARGON2I}, {PLAIN} and {CLEAR} are read
// too, so an existing Dovecot passwd-file works unchanged. A line with a
// scheme we cannot verify is logged once (file and line) and that user
// cannot log in.
//
// aliases has one alias a line, "alias@domain: target, target"; targets are
// local users, other aliases or outside addresses. "@domain" is a catch-all
// for addresses of the domain that match nothing else.
//
// # Lookups
//
// A Directory answers the server's lookups (every RCPT and every login) from
// an immutable snapshot behind an atomic pointer: no lock on the read path.
// At most once a second a lookup also stats both files (inode, size, mtime)
// and, when one changed, the directory rereads them, so edits take effect
// without a restart; Reload forces it (SIGHUP).
//
// Addresses compare like Postfix compares them: domains and local parts
// case-insensitively. A user's canonical address is the local part as
// written in passwd and the domain in lower case; it names the mailbox
// directory mail/DOMAIN/LOCALPART, so addresses are validated to carry no
// path separator, control character, space or "..".
//
// # Edits
//
// The editing functions (AddUser, AddAlias, ...) are what the CLI calls.
// Each takes an exclusive flock(2) on data_dir/passwd.lock or
// data_dir/aliases.lock, rereads the file inside the lock, writes a temporary
// file in the same directory, fsyncs it, renames it over the file and fsyncs
// the directory: concurrent edits, from goroutines or processes, lose nothing,
// and a reader sees either the old or the new file. Files are mode 0600.
package accounts

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Errors callers map to protocol replies (errors.Is).
var (
	ErrAuthFailed  = errors.New("accounts: authentication failed")
	ErrNoSuchUser  = errors.New("accounts: no such user")
	ErrNotLocal    = errors.New("accounts: domain is not local")
	ErrBadAddress  = errors.New("accounts: invalid address")
	ErrUserExists  = errors.New("accounts: user already exists")
	ErrAliasExists = errors.New("accounts: alias already exists")
)

// dummyHash is verified for logins of unknown users, so that they cost the
// same as known ones. It has the parameters of the hashes we write (a test
// checks it) and is the hash of a random password nobody kept; it never
// logs anyone in anyway.
const dummyHash = "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$RnPUJKgyZE6ozSku9Ewi+g$Iynh1WbwdyeoCvecXw7zrgGadCMmlBg4W7dVSYSNu6U"

// pollInterval is how often lookups check the files for changes.
const pollInterval = time.Second

// Directory answers lookups for a running server. It notices edits of the
// passwd and aliases files without a restart. Safe for concurrent use.
type Directory struct {
	dataDir string
	logger  *slog.Logger

	domains atomic.Pointer[map[string]struct{}] // lower-cased local domains; replaced by SetDomains
	snap    atomic.Pointer[snapshot]            // current file contents; replaced by reload

	lastCheck atomic.Int64 // unix ns of the last stat of the files; claimed by CAS
	reloadMu  sync.Mutex   // serialises rereading the files

	dummy verifier      // a hash of a random password: unknown users cost the same
	sem   chan struct{} // bounds concurrent hash verifications (CPU and argon2 memory)

	// Set only by tests before use.
	now          func() time.Time
	pollInterval time.Duration
}

// Resolution is where mail for one address goes.
type Resolution struct {
	Local  []string // canonical user addresses ("user@domain", lower-case domain) with a mailbox here
	Remote []string // outside addresses an alias points to
}

// Open loads dataDir/passwd and dataDir/aliases (missing files are empty).
func Open(dataDir string, domains []string, logger *slog.Logger) (*Directory, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &Directory{
		dataDir:      dataDir,
		logger:       logger,
		sem:          make(chan struct{}, max(2, runtime.NumCPU())),
		now:          time.Now,
		pollInterval: pollInterval,
	}
	if err := d.SetDomains(domains); err != nil {
		return nil, err
	}
	var err error
	if d.dummy, err = parseHash(dummyHash); err != nil {
		return nil, fmt.Errorf("accounts: dummy hash: %w", err)
	}
	if err := d.Reload(); err != nil {
		return nil, err
	}
	return d, nil
}

// SetDomains replaces the set of local domains (a config reload).
func (d *Directory) SetDomains(domains []string) error {
	set := make(map[string]struct{}, len(domains))
	for _, dom := range domains {
		if err := ValidateDomain(dom); err != nil {
			return fmt.Errorf("accounts: local domain: %w", err)
		}
		set[strings.ToLower(dom)] = struct{}{}
	}
	d.domains.Store(&set)
	return nil
}

// Authenticate checks a login (a full address) and password in constant time
// and returns the canonical user address. ErrAuthFailed on any mismatch.
//
// Every call costs one hash verification, also for unknown users and
// malformed logins, so the time taken does not tell whether a user exists.
func (d *Directory) Authenticate(login, password string) (string, error) {
	d.maybeRefresh()
	var u *account
	lookup := func() {
		if local, domain, err := splitAddress(login); err == nil && len(password) <= MaxPasswordLen {
			u = d.snap.Load().users[lookupKey(local, domain)]
		}
	}
	if lookup(); u == nil && d.refreshIfChanged() {
		lookup()
	}
	v := d.dummy
	if u != nil && u.v != nil {
		v = u.v
	}
	if len(password) > MaxPasswordLen {
		password = password[:MaxPasswordLen]
	}
	d.sem <- struct{}{}
	ok := v.verify([]byte(password))
	<-d.sem
	if !ok || u == nil || u.v == nil || password == "" {
		return "", ErrAuthFailed
	}
	return u.addr, nil
}

// Resolve expands an envelope recipient: "user+tag@" is "user@"; aliases
// expand (recursively, loop-safe) to users and outside addresses.
// ErrNotLocal when the domain is not ours, ErrNoSuchUser when it is but nobody
// has the address, ErrBadAddress for malformed input.
//
// Aliases take precedence over users, as in Postfix; an alias that lists its
// own address delivers to the user of that address too. "user+tag@" means
// "user@" only when "user+tag@" itself is neither a user nor an alias. A
// catch-all "@domain" alias applies when nothing else matches.
func (d *Directory) Resolve(addr string) (Resolution, error) {
	d.maybeRefresh()
	res, err := d.resolve(addr, true)
	if errors.Is(err, ErrNoSuchUser) && d.refreshIfChanged() {
		return d.resolve(addr, true)
	}
	return res, err
}

func (d *Directory) resolve(addr string, catchAll bool) (Resolution, error) {
	local, domain, err := splitAddress(addr)
	if err != nil {
		return Resolution{}, err
	}
	if !d.IsLocalDomain(domain) {
		return Resolution{}, fmt.Errorf("%w: %s", ErrNotLocal, domain)
	}
	r := expansion{d: d, s: d.snap.Load()}
	r.expand(local, domain, 0, catchAll)
	if len(r.res.Local) == 0 && len(r.res.Remote) == 0 {
		return Resolution{}, fmt.Errorf("%w: %s@%s", ErrNoSuchUser, local, domain)
	}
	return r.res, nil
}

// IsLocalDomain reports whether mail for domain is delivered here.
func (d *Directory) IsLocalDomain(domain string) bool {
	_, ok := (*d.domains.Load())[strings.ToLower(domain)]
	return ok
}

// CanSendAs reports whether user may use from as envelope or header sender:
// their own address (with or without +tag) or an alias that resolves to them.
// A catch-all alias does not count: it would hand its target every address
// of the domain.
func (d *Directory) CanSendAs(user, from string) bool {
	d.maybeRefresh()
	ul, ud, err := splitAddress(user)
	if err != nil {
		return false
	}
	fl, fd, err := splitAddress(from)
	if err != nil {
		return false
	}
	ukey := lookupKey(ul, ud)
	if lookupKey(fl, fd) == ukey {
		return true
	}
	res, err := d.resolve(from, false)
	if err != nil {
		return false
	}
	for _, l := range res.Local {
		if targetKey(l) == ukey {
			return true
		}
	}
	return false
}

// Reload rereads both files now (SIGHUP).
func (d *Directory) Reload() error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	s, err := d.load()
	if err != nil {
		return err
	}
	d.snap.Store(s)
	d.lastCheck.Store(d.now().UnixNano())
	return nil
}

// maybeRefresh rereads the files when they changed, checking at most once a
// pollInterval; exactly one caller does the check, the others go on with
// the current snapshot.
func (d *Directory) maybeRefresh() {
	now := d.now().UnixNano()
	last := d.lastCheck.Load()
	if now-last < int64(d.pollInterval) || !d.lastCheck.CompareAndSwap(last, now) {
		return
	}
	d.refreshIfChanged()
}

// refreshIfChanged rereads the files when their stamps changed and reports
// whether it did. Lookups that miss call it without the pollInterval
// throttle: a user added a moment ago must not get a permanent 550 (the
// sender would bounce the mail for good), and two stats cost little next to
// the tarpit a miss earns.
func (d *Directory) refreshIfChanged() bool {
	s := d.snap.Load()
	if statFile(filepath.Join(d.dataDir, passwdName)) == s.passwdStamp &&
		statFile(filepath.Join(d.dataDir, aliasesName)) == s.aliasesStamp {
		return false
	}
	if err := d.Reload(); err != nil {
		d.logger.Error("accounts: reload failed, keeping the previous state", "err", err)
		return false
	}
	return true
}

// fileStamp tells whether a file changed: a rename gives a new inode, an
// in-place edit a new size or mtime.
type fileStamp struct {
	exists bool
	dev    uint64
	ino    uint64
	size   int64
	mtime  int64
}

func statFile(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	st := fileStamp{exists: true, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	st.dev, st.ino = fileID(fi)
	return st
}

// Alias is one line of the aliases file.
type Alias struct {
	Address string
	Targets []string
}
