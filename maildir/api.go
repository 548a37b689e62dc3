// Package maildir is Postyard's mail store: one Maildir++ tree per user under
// ROOT/DOMAIN/LOCALPART, with Dovecot-compatible dovecot-uidlist,
// dovecot-keywords and subscriptions files, so Dovecot and Postyard can share
// or swap a tree without clients re-downloading anything.
//
// This file holds the types the front ends (smtp/delivery, imap, pop3) code
// against; the methods live next to their helpers: store.go (Store, User,
// folders, subscriptions, DeliverMany), mailbox.go (index, Snapshot, Status,
// Open), ops.go (Deliver, Append, StoreFlags, Expunge, CopyTo, MoveTo),
// notify.go (Watch, change detection), names.go (mailbox names).
//
// On disk (Dovecot-compatible, so either server can run on a tree):
//
//	ROOT/DOMAIN/LOCALPART/            INBOX: cur/ new/ tmp/
//	  dovecot-uidlist                 v3: "3 V<uidvalidity> N<nextuid> G<guid>", then "UID [W<vsize>] :BASE"
//	  dovecot-keywords                "N name": keyword N is letter 'a'+N in file names
//	  postyard-modseq                 HIGHESTMODSEQ reservation (ours; Dovecot ignores it)
//	  subscriptions                   Dovecot v2: "V\t2", "", then names, levels TAB-separated, mUTF-7
//	  .Sent/ .Lists.Go/ ...           Maildir++ folders, each with maildirfolder and its own files
//
// Message files are named TIME.UNIQUE,S=SIZE,W=VSIZE:2,FLAGS (flags in ASCII
// order: D F P R S T system flags, a-z keywords). Flags live only in file
// names, so a flag change is one rename; dovecot-uidlist only grows (one
// appended line per new message) and is rewritten only to drop many expunged
// records, as Dovecot does.
//
// Implementation notes:
//   - One in-memory index per mailbox per process, shared by all sessions;
//     Snapshot returns a cached immutable value rebuilt after a change.
//   - Deliveries to one mailbox are group-committed: each writes and fsyncs
//     its own file in tmp/, then one of them renames the whole batch into new/,
//     fsyncs the directory once and appends all uidlist records with one fsync.
//   - Changes by other programs are seen through inotify (our own renames are
//     registered beforehand and ignored); without inotify, by directory mtimes.
//   - MODSEQ: HIGHESTMODSEQ survives restarts through postyard-modseq (reserved
//     1024 at a time); per-message MODSEQs live in memory only, so after a
//     restart (or an idle unload) every message carries the persisted value.
//   - Durability: deliveries, appends, copies and moves are fsynced before
//     they return; flag changes and expunges are renames and unlinks that a
//     process crash cannot undo but a power loss may (Dovecot's
//     mail_fsync=optimized makes the same trade).
package maildir

import (
	"errors"
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
	// ErrInvalidFlag: a flag that is neither a system flag nor a valid keyword.
	ErrInvalidFlag = errors.New("maildir: invalid flag")
	// ErrTooManyKeywords: Maildir file names hold at most 26 keywords per mailbox.
	ErrTooManyKeywords = errors.New("maildir: too many keywords in this mailbox (26 at most)")
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
