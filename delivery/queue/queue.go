// Package queue is the persistent outbound queue: one file per entry under
// data_dir/queue, ID.msg, holding the envelope as it was queued (one JSON
// line after the magic "PYQ1 ") and then the message; and, once something
// happened to the entry, ID.env with its current envelope (JSON).
//
// Durability (DESIGN.md §3): Prepare writes the whole entry to a temporary
// name and fsyncs it; Commit renames it to ID.msg and fsyncs the directory;
// only then may the SMTP session answer 250. The rename is the commit: after
// a crash, temporary files are removed on Open, and an ID.msg is a queued
// message. Directory fsyncs are group-committed (dirSyncer): sessions that
// commit at the same time share one, so the cost of a queued message is one
// file fsync and a share of a directory fsync.
//
// Prepare and Commit split Enqueue so that a caller can make other copies of
// the same message (local mailboxes) in between and Abort if those fail: the
// relay sees the entry only at Commit.
//
// Every later change of an entry's state (a recipient delivered, failed or
// deferred) writes ID.env through a temporary file, fsynced, renamed, with
// the directory fsynced; a finished entry is removed (ID.env, then ID.msg,
// then the directory fsynced). A crash between a remote server's 250 and that
// bookkeeping makes the recipient look pending after a restart, so it is
// delivered once more: RFC 5321 §6.1 prefers a duplicate to a loss.
package queue

import (
	"bufio"
	"bytes"
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

	// rewritten: read from ID.env (set by Load), so Finish removes it too.
	rewritten bool
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
	dir  string
	sync *dirSyncer
	// notify receives a value (without blocking) after each Enqueue, so the
	// relay wakes without polling.
	notify chan struct{}
	// mu serialises envelope rewrites of this process and guards fresh.
	mu sync.Mutex
	// fresh are IDs committed and not yet taken by TakeFresh.
	fresh []string
}

// magic starts every ID.msg, before the envelope line.
const magic = "PYQ1 "

// writers and readers are buffers reused across entries.
var (
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
)

// Open opens (creating) dir and removes entries that were never committed.
func Open(dir string) (*Queue, error) {
	if err := os.MkdirAll(filepath.Join(dir, tmpName), 0o700); err != nil {
		return nil, fmt.Errorf("open queue %s: %w", dir, err)
	}
	q := &Queue{dir: dir, sync: &dirSyncer{dir: dir}, notify: make(chan struct{}, 1)}
	q.sync.cond = sync.NewCond(&q.sync.mu)
	if err := q.cleanup(); err != nil {
		return nil, err
	}
	return q, nil
}

// Dir is the queue directory.
func (q *Queue) Dir() string { return q.dir }

// tmpName is the subdirectory where entries and envelopes are written before
// they are renamed into the queue directory. Creating files there does not
// wait for the queue directory's lock, which its fsync holds while it writes
// (ext4 without a journal), so sessions writing new entries do not queue up
// behind the group fsync.
const tmpName = "tmp"

func (q *Queue) tmpDir() string { return filepath.Join(q.dir, tmpName) }

// Notify is signalled after each Enqueue and Retry.
func (q *Queue) Notify() <-chan struct{} { return q.notify }

func (q *Queue) wake() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// cleanup removes temporary files (entries never committed, envelope
// rewrites never finished) and envelopes whose message is gone.
func (q *Queue) cleanup() error {
	tmps, err := readNames(q.tmpDir())
	if err != nil {
		return err
	}
	for _, n := range tmps {
		if err := os.Remove(filepath.Join(q.tmpDir(), n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("queue cleanup %s: %w", n, err)
		}
	}
	names, err := readNames(q.dir)
	if err != nil {
		return err
	}
	haveMsg := make(map[string]bool)
	for _, n := range names {
		if id, ok := strings.CutSuffix(n, ".msg"); ok {
			haveMsg[id] = true
		}
	}
	removed := false
	for _, n := range names {
		remove := strings.HasPrefix(n, "tmp.")
		if id, ok := strings.CutSuffix(n, ".env"); ok && !haveMsg[id] {
			remove = true // a removal that stopped half-way
		}
		if remove {
			if err := os.Remove(filepath.Join(q.dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("queue cleanup %s: %w", n, err)
			}
			removed = true
		}
	}
	if removed {
		return q.sync.Sync()
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

// Pending is a prepared entry: its file is written and fsynced under a
// temporary name, which the relay does not see; Commit or Abort it.
type Pending struct {
	q   *Queue
	env Envelope
	tmp string
}

// ID is the entry's queue ID.
func (p *Pending) ID() string { return p.env.ID }

// Prepare writes a new entry, the envelope line and then the message read
// from r, to a temporary file and fsyncs it, without committing it. env is
// completed as in Enqueue.
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
	env.Size = 0 // known from the file's size
	line, err := json.Marshal(&env)
	if err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", env.ID, err)
	}
	head := len(magic) + len(line) + 1
	tmp, n, err := writeTemp(q.tmpDir(), env.ID+".msg", func(w io.Writer) error {
		bw := writers.Get().(*bufio.Writer)
		bw.Reset(w)
		defer func() { bw.Reset(nil); writers.Put(bw) }()
		bw.WriteString(magic)
		bw.Write(line)
		bw.WriteByte('\n')
		if _, err := io.Copy(bw, r); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", env.ID, err)
	}
	env.Size = n - int64(head)
	return &Pending{q: q, env: env, tmp: tmp}, nil
}

// Commit renames the entry into place, fsyncs the directory (shared with the
// commits running at the same time) and wakes the relay. On error the entry
// is removed.
func (p *Pending) Commit() (*Envelope, error) {
	q, env := p.q, p.env
	final := filepath.Join(q.dir, env.ID+".msg")
	err := os.Rename(p.tmp, final)
	if err == nil {
		err = q.sync.Sync()
	}
	if err != nil {
		_ = os.Remove(p.tmp)
		_ = os.Remove(final)
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
	_ = os.Remove(p.tmp)
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

// writeEnvelope stores env as ID.env atomically and makes it durable.
func (q *Queue) writeEnvelope(env *Envelope) error {
	b, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return err
	}
	tmp, _, err := writeTemp(q.tmpDir(), env.ID+".env", func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(q.dir, env.ID+".env")); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return q.sync.Sync()
}

// writeTemp writes a new temporary file in dir (named after name) and
// fsyncs it; it returns its path and size.
func writeTemp(dir, name string, fill func(io.Writer) error) (string, int64, error) {
	f, err := os.CreateTemp(dir, "tmp."+name+".")
	if err != nil {
		return "", 0, err
	}
	tmp := f.Name()
	fail := func(err error) (string, int64, error) {
		f.Close()
		os.Remove(tmp)
		return "", 0, err
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
		return "", 0, err
	}
	return tmp, cw.n, nil
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

// dirSyncer fsyncs the queue directory with group commit: a caller needs an
// fsync that starts after its own rename or unlink; when one is running, it
// waits for the next, which one waiting caller runs for all of them.
type dirSyncer struct {
	dir string

	mu       sync.Mutex
	cond     *sync.Cond
	running  bool
	started  uint64 // fsyncs begun
	finished uint64 // the last fsync that ended
	err      error  // its result
	lazy     bool   // a SyncSoon fsync is scheduled
}

// lazySyncDelay bounds how long SyncSoon lets a change wait for its fsync.
const lazySyncDelay = 5 * time.Millisecond

// SyncSoon makes the changes made so far durable within lazySyncDelay,
// without waiting: one fsync covers the changes of that interval.
func (d *dirSyncer) SyncSoon() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lazy {
		return
	}
	d.lazy = true
	time.AfterFunc(lazySyncDelay, func() {
		d.mu.Lock()
		d.lazy = false
		d.mu.Unlock()
		_ = d.Sync() // an error shows on the next synchronous Sync too
	})
}

// Sync returns once an fsync of the directory that began after the call
// has ended.
func (d *dirSyncer) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	target := d.started + 1
	for d.finished < target {
		if d.running {
			d.cond.Wait()
			continue
		}
		d.running = true
		d.started++
		n := d.started
		d.mu.Unlock()
		err := syncDir(d.dir)
		d.mu.Lock()
		d.running = false
		d.finished, d.err = n, err
		d.cond.Broadcast()
	}
	return d.err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Message is the message of an entry, without the envelope line before it.
type Message struct {
	f   *os.File
	off int64
	*io.SectionReader
}

// Close closes the file.
func (m *Message) Close() error { return m.f.Close() }

// openMessage opens ID.msg and reads its envelope line; env is nil for a
// file without one.
func (q *Queue) openMessage(id string) (*Message, *Envelope, error) {
	if !ValidID(id) {
		return nil, nil, fmt.Errorf("queue entry %q: %w", id, ErrNotFound)
	}
	f, err := os.Open(filepath.Join(q.dir, id+".msg"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("queue entry %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("queue entry %s: %w", id, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("queue entry %s: %w", id, err)
	}
	br := readers.Get().(*bufio.Reader)
	br.Reset(f)
	defer func() { br.Reset(nil); readers.Put(br) }()
	var env *Envelope
	var off int64
	if b, _ := br.Peek(len(magic)); string(b) == magic {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull { // a long envelope (many recipients)
			rest, err2 := br.ReadBytes('\n')
			line, err = append(bytes.Clone(line), rest...), err2
		}
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("queue entry %s: bad envelope line: %w", id, err)
		}
		env = new(Envelope)
		if err := json.Unmarshal(line[len(magic):], env); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("queue entry %s: bad envelope: %w", id, err)
		}
		off = int64(len(line))
		env.Size = st.Size() - off
	}
	return &Message{f: f, off: off, SectionReader: io.NewSectionReader(f, off, st.Size()-off)}, env, nil
}

// Load reads an entry: its current envelope (ID.env, or the one it was
// queued with) and its message, which the caller closes.
func (q *Queue) Load(id string) (*Envelope, *Message, error) {
	m, queued, err := q.openMessage(id)
	if err != nil {
		return nil, nil, err
	}
	env, err := q.readEnvelope(id)
	switch {
	case err == nil:
		env.Size = m.Size()
		env.rewritten = true
	case errors.Is(err, os.ErrNotExist) && queued != nil:
		env = queued
	case errors.Is(err, os.ErrNotExist):
		m.Close()
		return nil, nil, fmt.Errorf("queue entry %s: no envelope", id)
	default:
		m.Close()
		return nil, nil, err
	}
	return env, m, nil
}

func (q *Queue) readEnvelope(id string) (*Envelope, error) {
	b, err := os.ReadFile(filepath.Join(q.dir, id+".env"))
	if err != nil {
		return nil, err
	}
	var env Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("queue entry %s: bad envelope: %w", id, err)
	}
	return &env, nil
}

// Get reads one envelope.
func (q *Queue) Get(id string) (*Envelope, error) {
	env, m, err := q.Load(id)
	if err != nil {
		return nil, err
	}
	m.Close()
	return env, nil
}

// OpenMessage opens the message of an entry (without the envelope line).
func (q *Queue) OpenMessage(id string) (*Message, error) {
	m, _, err := q.openMessage(id)
	return m, err
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
		id, ok := strings.CutSuffix(n, ".msg")
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

// Finish removes an entry the relay has delivered to every recipient,
// without rereading it: nothing another process may have changed meanwhile
// (a queue retry, a queue delete) matters any more. env is as Load returned
// it. The directory fsync that makes the removal durable runs within
// lazySyncDelay, shared with the removals around it; a power cut before it
// delivers these messages once more after the restart, never loses one.
func (q *Queue) Finish(env *Envelope) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := os.Remove(filepath.Join(q.dir, env.ID+".msg")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove queue entry %s: %w", env.ID, err)
	}
	if env.rewritten {
		if err := os.Remove(filepath.Join(q.dir, env.ID+".env")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove queue entry %s: %w", env.ID, err)
		}
	}
	q.sync.SyncSoon()
	return nil
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
	if _, err := os.Stat(filepath.Join(q.dir, id+".msg")); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("queue entry %s: %w", id, ErrNotFound)
	}
	return q.remove(id)
}

// remove deletes the message first (the entry: without it the relay no
// longer sees one), then the envelope, then fsyncs the directory. An ID.env
// left by a crash in between is removed on Open.
func (q *Queue) remove(id string) error {
	if err := os.Remove(filepath.Join(q.dir, id+".msg")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove queue entry %s: %w", id, err)
	}
	if err := os.Remove(filepath.Join(q.dir, id+".env")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove queue entry %s: %w", id, err)
	}
	return q.sync.Sync()
}
