// Package accounts holds users, password hashes, aliases and local domains:
// data_dir/passwd (Dovecot passwd-file compatible) and data_dir/aliases.
//
// SKELETON: the signatures below are the contract the front ends code
// against; bodies are being written.
package accounts

import (
	"errors"
	"log/slog"
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

// Directory answers lookups for a running server. It notices edits of the
// passwd and aliases files without a restart. Safe for concurrent use.
type Directory struct{}

// Resolution is where mail for one address goes.
type Resolution struct {
	Local  []string // canonical user addresses ("user@domain", lower-case domain) with a mailbox here
	Remote []string // outside addresses an alias points to
}

// Open loads dataDir/passwd and dataDir/aliases (missing files are empty).
func Open(dataDir string, domains []string, logger *slog.Logger) (*Directory, error) {
	panic("skeleton")
}

// Authenticate checks a login (a full address) and password in constant time
// and returns the canonical user address. ErrAuthFailed on any mismatch.
func (d *Directory) Authenticate(login, password string) (string, error) { panic("skeleton") }

// Resolve expands an envelope recipient: "user+tag@" is "user@"; aliases
// expand (recursively, loop-safe) to users and outside addresses.
// ErrNotLocal when the domain is not ours, ErrNoSuchUser when it is but nobody
// has the address, ErrBadAddress for malformed input.
func (d *Directory) Resolve(addr string) (Resolution, error) { panic("skeleton") }

// IsLocalDomain reports whether mail for domain is delivered here.
func (d *Directory) IsLocalDomain(domain string) bool { panic("skeleton") }

// CanSendAs reports whether user may use from as envelope or header sender:
// their own address (with or without +tag) or an alias that resolves to them.
func (d *Directory) CanSendAs(user, from string) bool { panic("skeleton") }

// Reload rereads both files now (SIGHUP).
func (d *Directory) Reload() error { panic("skeleton") }

// Alias is one line of the aliases file.
type Alias struct {
	Address string
	Targets []string
}

// The editing functions below are what the CLI calls. Each rewrites the file
// atomically (tmp, fsync, rename) under a lock file, so concurrent edits lose
// nothing; a running server picks the change up on its own.

// AddUser adds addr with a new {ARGON2ID} hash of password. ErrUserExists, ErrBadAddress.
func AddUser(dataDir, addr, password string) error { panic("skeleton") }

// SetPassword replaces the hash of an existing user. ErrNoSuchUser.
func SetPassword(dataDir, addr, password string) error { panic("skeleton") }

// DeleteUser removes a user (their mail stays on disk). ErrNoSuchUser.
func DeleteUser(dataDir, addr string) error { panic("skeleton") }

// ListUsers returns the user addresses, sorted.
func ListUsers(dataDir string) ([]string, error) { panic("skeleton") }

// AddAlias adds or extends addr with targets (local users or outside
// addresses). remoteAllowed says whether outside targets are accepted (they
// need the outbound queue).
func AddAlias(dataDir, addr string, targets []string, remoteAllowed bool) error { panic("skeleton") }

// DeleteAlias removes an alias. ErrNoSuchUser when there is none.
func DeleteAlias(dataDir, addr string) error { panic("skeleton") }

// ListAliases returns the aliases, sorted by address.
func ListAliases(dataDir string) ([]Alias, error) { panic("skeleton") }
