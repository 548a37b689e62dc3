// Package queue is the persistent outbound queue: one message file and one
// envelope file per entry under data_dir/queue.
//
// Durability (DESIGN.md §3): Enqueue (or Prepare then Commit) writes ID.msg
// and then ID.env, each to a temporary name, fsynced and renamed, and fsyncs
// the directory once, after both renames, before it returns; only then may
// the SMTP session answer 250. The envelope file is the commit record. Until
// the directory fsync returns nothing was acknowledged, so after a crash any
// half of an entry (an ID.msg without its ID.env, or an ID.env whose ID.msg
// rename did not reach the disk) is removed on Open.
//
// Prepare and Commit split Enqueue so that a caller can make other copies of
// the same message (local mailboxes) in between and Abort if those fail: the
// relay sees the entry only at Commit.
//
// Every change of an entry's state (a recipient delivered, failed or
// deferred) rewrites ID.env the same way. A crash between a remote server's
// 250 and that rewrite makes the recipient look pending after a restart, so
// it is delivered once more: RFC 5321 §6.1 prefers a duplicate to a loss,
// and the window is one rename long.
package queue

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrNotFound is returned for an unknown queue ID.
var ErrNotFound = errors.New("queue: no such entry")

// Recipient states.
const (
	StatePending   = "pending"
	StateDelivered = "delivered"
	StateFailed    = "failed"
)

// Recipient is one envelope recipient and what became of it.
type Recipient struct {
	Addr      string `json:"addr"`
	State     string `json:"state"`
	LastError string `json:"last_error,omitempty"`
	// Code is the last SMTP reply (e.g. "550 5.1.1"), for the DSN.
	Code string `json:"code,omitempty"`
	// RemoteMTA is the host that gave the last reply.
	RemoteMTA string `json:"remote_mta,omitempty"`
}

// Envelope is the state of one queued message.
type Envelope struct {
	ID         string      `json:"id"`
	From       string      `json:"from"` // "" is the null sender (bounces)
	Recipients []Recipient `json:"recipients"`
	// User is the authenticated submitter, "" for mail from an MX session.
	User     string    `json:"user,omitempty"`
	Created  time.Time `json:"created"`
	Attempts int       `json:"attempts"`
	// NextAttempt is when the relay tries the pending recipients again.
	NextAttempt time.Time `json:"next_attempt"`
	Size        int64     `json:"size"`
}

// Pending returns the recipients still to deliver.
func (e *Envelope) Pending() []string {
	var out []string
	for _, r := range e.Recipients {
		if r.State == StatePending {
			out = append(out, r.Addr)
		}
	}
	return out
}

// Done reports whether no recipient is pending.
func (e *Envelope) Done() bool { return len(e.Pending()) == 0 }

// Queue is the queue directory. Its methods are safe for concurrent use
// within one process; the CLI edits envelopes of a running server through
// the same atomic rewrites, and the relay rereads an envelope before acting.
type Queue struct {
	dir string
	// notify receives a value (without blocking) after each Enqueue, so the
	// relay wakes without polling.
	notify chan struct{}
	// mu serialises envelope rewrites of this process and guards fresh.
	mu sync.Mutex
	// fresh are IDs committed and not yet taken by TakeFresh.
	fresh []string
}

// Open opens (creating) dir and removes entries that were never committed.
func Open(dir string) (*Queue, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open queue %s: %w", dir, err)
	}
	q := &Queue{dir: dir, notify: make(chan struct{}, 1)}
	if err := q.cleanup(); err != nil {
		return nil, err
	}
	return q, nil
}

// Dir is the queue directory.
func (q *Queue) Dir() string { return q.dir }

// Notify is signalled after each Enqueue and Retry.
func (q *Queue) Notify() <-chan struct{} { return q.notify }

func (q *Queue) wake() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// cleanup removes temporary files and messages without an envelope.
func (q *Queue) cleanup() error {
	names, err := readNames(q.dir)
	if err != nil {
		return err
	}
	haveEnv := make(map[string]bool)
	haveMsg := make(map[string]bool)
	for _, n := range names {
		if id, ok := strings.CutSuffix(n, ".env"); ok {
			haveEnv[id] = true
		}
		if id, ok := strings.CutSuffix(n, ".msg"); ok {
			haveMsg[id] = true
		}
	}
	for _, n := range names {
		remove := strings.HasPrefix(n, "tmp.")
		if id, ok := strings.CutSuffix(n, ".msg"); ok && !haveEnv[id] {
			remove = true
		}
		if id, ok := strings.CutSuffix(n, ".env"); ok && !haveMsg[id] {
			remove = true // the message's rename was lost: never acknowledged
		}
		if remove {
			if err := os.Remove(filepath.Join(q.dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("queue cleanup %s: %w", n, err)
			}
		}
	}
	return nil
}

func readNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("read queue %s: %w", dir, err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read queue %s: %w", dir, err)
	}
	return names, nil
}

// NewID returns a fresh queue ID: time-ordered, hex, safe as a file name.
func NewID(now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%014x%s", now.UnixMicro(), hex.EncodeToString(b[:]))
}

// ValidID reports whether id has the shape NewID gives (so a CLI argument
// cannot name a path outside the queue).
func ValidID(id string) bool {
	if len(id) != 26 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Enqueue stores the message read from r with its envelope, durably, and
// returns the envelope as stored. env.ID, Created and NextAttempt are set
// here when empty.
func (q *Queue) Enqueue(env Envelope, r io.Reader, now time.Time) (*Envelope, error) {
	p, err := q.Prepare(env, r, now)
	if err != nil {
		return nil, err
	}
	return p.Commit()
}

// Pending is a prepared entry: its message file is written and fsynced, but
// the relay cannot see it until Commit; Abort removes it.
type Pending struct {
	q   *Queue
	env Envelope
}

// ID is the entry's queue ID.
func (p *Pending) ID() string { return p.env.ID }

// Prepare writes the message of a new entry (temporary name, fsync, rename)
// without committing it. env is completed as in Enqueue.
func (q *Queue) Prepare(env Envelope, r io.Reader, now time.Time) (*Pending, error) {
	if env.ID == "" {
		env.ID = NewID(now)
	}
	if env.Created.IsZero() {
		env.Created = now
	}
	if env.NextAttempt.IsZero() {
		env.NextAttempt = now
	}
	env.Recipients = slices.Clone(env.Recipients)
	for i := range env.Recipients {
		if env.Recipients[i].State == "" {
			env.Recipients[i].State = StatePending
		}
	}
	size, err := writeFile(q.dir, env.ID+".msg", func(w io.Writer) error {
		_, err := io.Copy(w, r)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", env.ID, err)
	}
	env.Size = size
	return &Pending{q: q, env: env}, nil
}

// Commit writes the envelope (temporary name, fsync, rename), fsyncs the
// directory, which makes both files durable, and wakes the relay. On error
// the entry is removed.
func (p *Pending) Commit() (*Envelope, error) {
	q, env := p.q, p.env
	b, err := json.MarshalIndent(&env, "", "  ")
	if err == nil {
		_, err = writeFile(q.dir, env.ID+".env", func(w io.Writer) error {
			_, err := w.Write(append(b, '\n'))
			return err
		})
	}
	if err == nil {
		err = syncDir(q.dir)
	}
	if err != nil {
		_ = os.Remove(filepath.Join(q.dir, env.ID+".env"))
		_ = os.Remove(filepath.Join(q.dir, env.ID+".msg"))
		return nil, fmt.Errorf("enqueue %s: %w", env.ID, err)
	}
	q.mu.Lock()
	if len(q.fresh) < maxFresh { // past it the relay's periodic scan finds the entry
		q.fresh = append(q.fresh, env.ID)
	}
	q.mu.Unlock()
	q.wake()
	return &env, nil
}

// Abort removes a prepared entry.
func (p *Pending) Abort() {
	_ = os.Remove(filepath.Join(p.q.dir, p.env.ID+".msg"))
}

// maxFresh bounds the IDs kept for TakeFresh when nobody takes them.
const maxFresh = 10000

// TakeFresh returns the IDs committed since the last call, oldest first, so
// the relay can start them without rereading the whole queue.
func (q *Queue) TakeFresh() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := q.fresh
	q.fresh = nil
	return ids
}

// writeEnvelope stores env atomically and makes it durable.
func (q *Queue) writeEnvelope(env *Envelope) error {
	b, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return err
	}
	_, err = writeDurable(q.dir, env.ID+".env", func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
	return err
}

// writeDurable writes name in dir through a temporary file: write, fsync,
// rename, fsync the directory.
func writeDurable(dir, name string, fill func(io.Writer) error) (int64, error) {
	n, err := writeFile(dir, name, fill)
	if err != nil {
		return 0, err
	}
	return n, syncDir(dir)
}

// writeFile writes name in dir through a temporary file: write, fsync,
// rename. The rename is durable only once the directory is fsynced.
func writeFile(dir, name string, fill func(io.Writer) error) (int64, error) {
	f, err := os.CreateTemp(dir, "tmp."+name+".")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	fail := func(err error) (int64, error) {
		f.Close()
		os.Remove(tmp)
		return 0, err
	}
	cw := &countWriter{w: f}
	if err := fill(cw); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Get reads one envelope.
func (q *Queue) Get(id string) (*Envelope, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("queue entry %q: %w", id, ErrNotFound)
	}
	b, err := os.ReadFile(filepath.Join(q.dir, id+".env"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("queue entry %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("queue entry %s: %w", id, err)
	}
	var env Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("queue entry %s: bad envelope: %w", id, err)
	}
	return &env, nil
}

// OpenMessage opens the message of an entry.
func (q *Queue) OpenMessage(id string) (*os.File, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("queue entry %q: %w", id, ErrNotFound)
	}
	f, err := os.Open(filepath.Join(q.dir, id+".msg"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("queue entry %s: %w", id, ErrNotFound)
	}
	return f, err
}

// List returns every envelope, oldest first. Unreadable entries are skipped
// and returned as errors after the list.
func (q *Queue) List() ([]*Envelope, []error) {
	names, err := readNames(q.dir)
	if err != nil {
		return nil, []error{err}
	}
	var envs []*Envelope
	var errs []error
	for _, n := range names {
		id, ok := strings.CutSuffix(n, ".env")
		if !ok || strings.HasPrefix(n, "tmp.") {
			continue
		}
		env, err := q.Get(id)
		if err != nil {
			if !errors.Is(err, ErrNotFound) { // removed meanwhile
				errs = append(errs, err)
			}
			continue
		}
		envs = append(envs, env)
	}
	slices.SortFunc(envs, func(a, b *Envelope) int { return strings.Compare(a.ID, b.ID) })
	return envs, errs
}

// Update rereads the envelope, applies change and stores it again, or
// removes the entry when change leaves no recipient pending.
func (q *Queue) Update(id string, change func(*Envelope)) (*Envelope, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	env, err := q.Get(id)
	if err != nil {
		return nil, err
	}
	change(env)
	if env.Done() {
		return env, q.remove(id)
	}
	if err := q.writeEnvelope(env); err != nil {
		return nil, fmt.Errorf("update queue entry %s: %w", id, err)
	}
	return env, nil
}

// Retry makes the entry due now (queue retry).
func (q *Queue) Retry(id string, now time.Time) error {
	_, err := q.Update(id, func(e *Envelope) { e.NextAttempt = now })
	if err == nil {
		q.wake()
	}
	return err
}

// Delete removes an entry without delivering it (queue delete).
func (q *Queue) Delete(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("queue entry %q: %w", id, ErrNotFound)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, err := os.Stat(filepath.Join(q.dir, id+".env")); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("queue entry %s: %w", id, ErrNotFound)
	}
	return q.remove(id)
}

// remove deletes the envelope first (the commit record), then the message.
func (q *Queue) remove(id string) error {
	if err := os.Remove(filepath.Join(q.dir, id+".env")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove queue entry %s: %w", id, err)
	}
	if err := os.Remove(filepath.Join(q.dir, id+".msg")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove queue entry %s: %w", id, err)
	}
	return syncDir(q.dir)
}
