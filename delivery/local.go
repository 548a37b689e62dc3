// Package delivery moves accepted messages to where they go: local
// recipients' Maildir folders through the store (this file), and later the
// persistent outbound queue and the relay client.
//
// Local delivery is a transaction (EXAMPLES 6): the message is spooled once
// (Spool), then written to every recipient's folder through maildir.Deliver,
// which makes each copy durable (tmp, fsync, rename, fsync dir) before it
// returns. Deliver returns nil only when every copy is durable; if any copy
// fails, the copies already made are expunged again, so a failed transaction
// leaves no partial delivery behind and the client is told to retry (451).
//
// Group commit: each copy is fsynced by the store. Copies of one message go
// to their recipients in parallel, and concurrent SMTP sessions deliver in
// parallel, so the filesystem journal (ext4 jbd2) commits the fsyncs of many
// deliveries together instead of one after the other.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/postyard-mail/postyard/maildir"
)

// Store is what local delivery needs from the mail store. MaildirStore adapts
// *maildir.Store; tests substitute recording fakes with injected faults.
type Store interface {
	// Mailbox opens folder (client-visible name, "INBOX" for the inbox) of user
	// (canonical "local@domain").
	Mailbox(user, folder string) (Mailbox, error)
}

// Mailbox is one folder of a user, as delivery uses it.
type Mailbox interface {
	// Deliver stores a new message durably and returns its UID.
	Deliver(r io.Reader) (uint32, error)
	// Expunge removes messages for good (used to undo a partial delivery).
	Expunge(uids []uint32) ([]uint32, error)
}

// MaildirStore adapts the mail store to Store.
type MaildirStore struct{ S *maildir.Store }

var _ Store = MaildirStore{}

// Mailbox implements Store.
func (m MaildirStore) Mailbox(user, folder string) (Mailbox, error) {
	u, err := m.S.User(user)
	if err != nil {
		return nil, err
	}
	mb, err := u.Mailbox(folder)
	if err != nil {
		return nil, err
	}
	return mb, nil
}

// Recipient is one local destination of a message.
type Recipient struct {
	// Address is the envelope recipient as the client gave it (RCPT TO).
	Address string
	// User is the canonical local user ("user@domain") whose tree gets a copy.
	User string
	// Folder is the mailbox name; "" means INBOX. The auth policy may choose "Junk".
	Folder string
}

// Envelope is what the SMTP transaction knows about a message.
type Envelope struct {
	// ID names the message in the Received header, in logs and in the 250 reply.
	ID string
	// From is the reverse path; "" is the null sender (bounces).
	From       string
	Recipients []Recipient
	// Trace describes the hop for the Received header.
	Trace Trace
	// Header is more complete header fields ("Name: value\r\n" each) put
	// after the trace fields, such as the Authentication-Results of the
	// inbound checks; "" for none.
	Header string
	// Remote are outside recipients (submission, or aliases forwarding
	// outside), queued for the relay by a Router; Local.Deliver refuses an
	// envelope that has any.
	Remote []string
	// User is the logged-in submitter ("" on the MX), kept in the queue.
	User string
	// QueueID is set by Router.Deliver when it queued the message.
	QueueID string
}

// ErrNoRecipients is returned by Deliver for an envelope without recipients.
var ErrNoRecipients = errors.New("delivery: no recipients")

// LocalOptions configures NewLocal.
type LocalOptions struct {
	// Store receives the copies.
	Store Store
	// SpoolDir holds spool files of messages larger than MemoryLimit while
	// they are delivered (data_dir/tmp). Created if missing. The files are
	// unlinked as soon as they are created, so a crash leaves nothing behind.
	SpoolDir string
	// MemoryLimit is the size up to which a message is held in memory instead
	// of a spool file; 0 means DefaultMemoryLimit.
	MemoryLimit int
	// Parallel bounds the copies of one message written at the same time; 0
	// means DefaultParallel.
	Parallel int
	Logger   *slog.Logger
}

// Defaults of LocalOptions.
const (
	DefaultMemoryLimit = 128 << 10
	DefaultParallel    = 8
)

// Local delivers into local users' mailboxes. Safe for concurrent use.
type Local struct {
	store    Store
	spoolDir string
	memLimit int
	parallel int
	logger   *slog.Logger
	bufs     sync.Pool // *[]byte spool buffers
}

// NewLocal returns a local deliverer.
func NewLocal(opts LocalOptions) (*Local, error) {
	if opts.Store == nil {
		return nil, errors.New("delivery: no store")
	}
	if opts.SpoolDir == "" {
		return nil, errors.New("delivery: no spool directory")
	}
	if err := os.MkdirAll(opts.SpoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("delivery: spool directory: %w", err)
	}
	l := &Local{
		store:    opts.Store,
		spoolDir: opts.SpoolDir,
		memLimit: opts.MemoryLimit,
		parallel: opts.Parallel,
		logger:   opts.Logger,
	}
	if l.memLimit <= 0 {
		l.memLimit = DefaultMemoryLimit
	}
	if l.parallel <= 0 {
		l.parallel = DefaultParallel
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	return l, nil
}

// NewSpool returns an empty spool for one message; Close it when done.
func (l *Local) NewSpool() *Spool {
	return newSpool(l.spoolDir, l.memLimit, &l.bufs)
}

// target is one distinct (user, folder) copy.
type target struct {
	user, folder string
}

// copyDone is a copy that was made and may have to be undone.
type copyDone struct {
	t   target
	mb  Mailbox
	uid uint32
}

// Deliver writes body, preceded by the Return-Path and Received headers of
// env and then env.Header, into the folder of every recipient, once per
// distinct (user, folder): an alias and its target named in one transaction
// get one copy. It returns
// nil only when every copy is durable. On any failure the copies already made
// are expunged and the first error is returned (wrapped); the caller answers
// 451 4.3.0. ctx stops copies not yet started; one under way is finished.
func (l *Local) Deliver(ctx context.Context, env *Envelope, body *Spool) error {
	if len(env.Remote) > 0 {
		return errors.New("delivery: outside recipients need the outbound queue (Router)")
	}
	targets := distinctTargets(env.Recipients)
	if len(targets) == 0 {
		return ErrNoRecipients
	}
	if err := body.Err(); err != nil {
		return err
	}
	header := TraceHeaders(env) + env.Header

	var (
		mu    sync.Mutex
		done  []copyDone
		first error
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	}
	one := func(t target) {
		if err := ctx.Err(); err != nil {
			fail(fmt.Errorf("deliver to %s: %w", t.user, err))
			return
		}
		if failed() {
			return // no point in writing more copies that will be undone
		}
		mb, err := l.store.Mailbox(t.user, t.folder)
		if err != nil {
			fail(fmt.Errorf("deliver to %s/%s: open: %w", t.user, t.folder, err))
			return
		}
		uid, err := mb.Deliver(io.MultiReader(strings.NewReader(header), body.NewReader()))
		if err != nil {
			fail(fmt.Errorf("deliver to %s/%s: %w", t.user, t.folder, err))
			return
		}
		mu.Lock()
		done = append(done, copyDone{t: t, mb: mb, uid: uid})
		mu.Unlock()
	}

	if len(targets) == 1 || l.parallel == 1 {
		for _, t := range targets {
			one(t)
		}
	} else {
		sem := make(chan struct{}, l.parallel)
		var wg sync.WaitGroup
		for _, t := range targets {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				one(t)
			}()
		}
		wg.Wait()
	}

	if first != nil {
		l.undo(env.ID, done)
		return first
	}
	return nil
}

// undo expunges copies of a transaction that failed as a whole.
func (l *Local) undo(id string, done []copyDone) {
	for _, d := range done {
		if _, err := d.mb.Expunge([]uint32{d.uid}); err != nil {
			// The copy stays: the client retries after our 451 and this
			// recipient gets the message twice, which RFC 5321 §6.1 prefers
			// to losing it.
			l.logger.Error("undo of partial delivery failed; a duplicate will follow the retry",
				"id", id, "user", d.t.user, "folder", d.t.folder, "uid", d.uid, "err", err)
			continue
		}
		l.logger.Info("undid partial delivery", "id", id, "user", d.t.user, "folder", d.t.folder, "uid", d.uid)
	}
}

// distinctTargets returns the (user, folder) pairs of rs in first-seen order,
// each once; the folder "" is INBOX; users compare case-insensitively.
func distinctTargets(rs []Recipient) []target {
	seen := make(map[target]bool, len(rs))
	out := make([]target, 0, len(rs))
	for _, r := range rs {
		if r.User == "" {
			continue
		}
		folder := r.Folder
		if folder == "" || strings.EqualFold(folder, "INBOX") {
			folder = "INBOX"
		}
		t := target{user: r.User, folder: folder}
		k := target{user: strings.ToLower(r.User), folder: folder}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, t)
	}
	return out
}
