// Package maildir is Postyard's mail store: one Maildir++ tree per user under
// ROOT/DOMAIN/LOCALPART, with Dovecot-compatible dovecot-uidlist,
// dovecot-keywords and subscriptions files, so Dovecot and Postyard can share
// or swap a tree without clients re-downloading anything.
//
// SKELETON: the signatures in this file are the contract the front ends
// (smtp/delivery, imap, pop3) code against. The bodies are being written; the
// signatures change only together with their callers.
package maildir

import (
	"errors"
	"io"
	"log/slog"
	"time"
)

// Errors callers map to protocol replies (errors.Is).
var (
	ErrNoSuchMailbox = errors.New("maildir: no such mailbox")
	ErrExists        = errors.New("maildir: mailbox already exists")
	ErrInvalidName   = errors.New("maildir: invalid mailbox name")
	ErrNoSuchMessage = errors.New("maildir: no such message")
	ErrInvalidUser   = errors.New("maildir: invalid user address")
	ErrInbox         = errors.New("maildir: INBOX cannot be deleted or renamed away")
)

// System flags as IMAP spells them. Keywords are plain atoms ("$Junk", "work").
// \Recent is not stored (IMAP4rev2 removed it).
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

// Special-use attributes (RFC 6154) of the standard folders.
const (
	SpecialSent    = `\Sent`
	SpecialDrafts  = `\Drafts`
	SpecialTrash   = `\Trash`
	SpecialJunk    = `\Junk`
	SpecialArchive = `\Archive`
)

// Delimiter separates levels of mailbox names as clients see them ("a/b").
const Delimiter = '/'

// Store is the root of all users' trees (data_dir/mail). Safe for concurrent use;
// one Store per process (it owns the in-memory indexes and the change fan-out).
type Store struct{}

// New opens the store rooted at root (created if missing).
func New(root string, logger *slog.Logger) (*Store, error) { panic("skeleton") }

// Close stops background watchers.
func (s *Store) Close() error { panic("skeleton") }

// User returns the tree of one user, "local@domain" (domain case-insensitive),
// creating it on first use. ErrInvalidUser for addresses that are not safe path components.
func (s *Store) User(addr string) (*User, error) { panic("skeleton") }

// User is one user's tree. Safe for concurrent use.
type User struct{}

// MailboxInfo describes one mailbox for LIST.
type MailboxInfo struct {
	Name        string // client-visible name, UTF-8, Delimiter-separated; "INBOX" for the inbox
	SpecialUse  string // one of the Special* constants, or ""
	Subscribed  bool
	HasChildren bool
}

// Mailbox opens a mailbox by client-visible name. "INBOX" is case-insensitive.
// The standard folders (Sent, Drafts, Trash, Junk, Archive) exist once asked for.
func (u *User) Mailbox(name string) (*Mailbox, error) { panic("skeleton") }

// ListMailboxes returns every mailbox, INBOX and the standard folders included.
func (u *User) ListMailboxes() ([]MailboxInfo, error) { panic("skeleton") }

// CreateMailbox creates name (and missing parents). ErrExists, ErrInvalidName.
func (u *User) CreateMailbox(name string) error { panic("skeleton") }

// RenameMailbox renames a mailbox and its children. Renaming INBOX moves its
// messages into the new mailbox and leaves INBOX empty (RFC 9051 §6.3.6).
func (u *User) RenameMailbox(oldName, newName string) error { panic("skeleton") }

// DeleteMailbox deletes a mailbox and its messages. ErrInbox for INBOX.
func (u *User) DeleteMailbox(name string) error { panic("skeleton") }

// SetSubscribed adds name to or removes it from the subscriptions file.
func (u *User) SetSubscribed(name string, subscribed bool) error { panic("skeleton") }

// ValidateMailboxName reports ErrInvalidName for names a client may not use
// (empty, "..", NUL or control characters, a leading or doubled Delimiter, too long).
func ValidateMailboxName(name string) error { panic("skeleton") }

// Mailbox is one folder. Safe for concurrent use; many sessions share one.
type Mailbox struct{}

// Message is what the index knows of one message without reading it.
type Message struct {
	UID          uint32
	Flags        []string  // system flags and keywords, sorted
	Size         int64     // RFC 822 size (CRLF line ends): RFC822.SIZE, POP3 octets
	InternalDate time.Time // delivery/append time
	ModSeq       uint64    // modification sequence of the last change to this message
}

// Snapshot is the state of a mailbox at one moment, messages in UID order.
// It is shared: callers must not modify it.
type Snapshot struct {
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	Messages      []Message
}

// Status is the summary STATUS and POP3 STAT need.
type Status struct {
	Messages      uint32
	Unseen        uint32
	Recent        uint32
	UIDNext       uint32
	UIDValidity   uint32
	Size          int64
	HighestModSeq uint64
}

// FlagOp says how StoreFlags combines flags.
type FlagOp int

const (
	FlagsSet FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// Name is the client-visible name.
func (m *Mailbox) Name() string { panic("skeleton") }

// Deliver writes a new message into new/ (tmp, fsync, rename, fsync dir) and
// returns its UID once it is durable. r is read to EOF; the bytes are stored as given
// (callers pass CRLF line ends).
func (m *Mailbox) Deliver(r io.Reader) (uint32, error) { panic("skeleton") }

// Append stores a message with flags and an internal date (IMAP APPEND), durably.
func (m *Mailbox) Append(r io.Reader, flags []string, date time.Time) (uint32, error) {
	panic("skeleton")
}

// Snapshot returns the current state, picking up changes made by other
// processes (new files, renamed flags, removed files) first.
func (m *Mailbox) Snapshot() (*Snapshot, error) { panic("skeleton") }

// Status returns the counts of the mailbox.
func (m *Mailbox) Status() (Status, error) { panic("skeleton") }

// Open returns the message's content (CRLF line ends) and its index entry.
// ErrNoSuchMessage if it was expunged.
func (m *Mailbox) Open(uid uint32) (io.ReadSeekCloser, Message, error) { panic("skeleton") }

// StoreFlags changes the flags of uids. With unchangedSince > 0 (CONDSTORE) a
// message whose ModSeq is higher is left alone and returned in failed.
// updated holds the new state of each changed message.
func (m *Mailbox) StoreFlags(uids []uint32, op FlagOp, flags []string, unchangedSince uint64) (updated []Message, failed []uint32, err error) {
	panic("skeleton")
}

// CopyTo copies uids into dst (flags and internal date kept) and returns the
// new UIDs in the same order as the source UIDs that still existed.
func (m *Mailbox) CopyTo(dst *Mailbox, uids []uint32) (srcUIDs, dstUIDs []uint32, err error) {
	panic("skeleton")
}

// MoveTo moves uids into dst atomically per message (RFC 6851 semantics).
func (m *Mailbox) MoveTo(dst *Mailbox, uids []uint32) (srcUIDs, dstUIDs []uint32, err error) {
	panic("skeleton")
}

// Expunge removes uids for good and returns those that existed.
func (m *Mailbox) Expunge(uids []uint32) ([]uint32, error) { panic("skeleton") }

// EventKind says what changed.
type EventKind int

const (
	EventNew EventKind = iota + 1
	EventFlags
	EventExpunge
)

// Event is one change to a mailbox, whoever made it (this process or another).
type Event struct {
	Kind   EventKind
	UID    uint32
	Flags  []string // EventFlags and EventNew: the message's flags now
	ModSeq uint64
}

// Watcher delivers a mailbox's events in order. Events are never dropped: a
// slow reader makes the watcher buffer.
type Watcher struct {
	C <-chan Event
}

// Watch subscribes to the mailbox's events from now on. Close the watcher when done.
func (m *Mailbox) Watch() *Watcher { panic("skeleton") }

// Close unsubscribes.
func (w *Watcher) Close() { panic("skeleton") }
