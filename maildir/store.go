package maildir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Store is the root of all users' trees (data_dir/mail). Safe for concurrent use;
// one Store per process (it owns the in-memory indexes and the change fan-out).
type Store struct {
	root   string
	log    *slog.Logger
	host   string // escaped host name for file names
	pid    int
	seq    atomic.Uint64 // the Q counter of unique names
	notify *notifier
	stop   chan struct{}
	bg     sync.WaitGroup // background refreshes

	mu      sync.Mutex // guards users, watched, closed, ticks
	ticks   int        // pollWatched calls
	users   map[string]*User
	watched map[*Mailbox]struct{} // mailboxes with at least one watcher
	closed  bool
}

// idleUnload is how long an unwatched mailbox keeps its index in memory after
// its last use.
const idleUnload = 10 * time.Minute

// New opens the store rooted at root (created if missing).
func New(root string, logger *slog.Logger) (*Store, error) {
	return newStore(root, logger, true)
}

// newStore is New; without inotify, changes are found by directory mtimes.
func newStore(root string, logger *slog.Logger, inotify bool) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("maildir: create store root: %w", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("maildir: store root: %w", err)
	}
	host, _ := os.Hostname()
	s := &Store{
		root:    abs,
		log:     logger,
		host:    escapeHost(host),
		pid:     os.Getpid(),
		stop:    make(chan struct{}),
		users:   map[string]*User{},
		watched: map[*Mailbox]struct{}{},
	}
	if inotify {
		s.notify = newNotifier(logger)
	} else {
		s.notify = &notifier{log: logger, fd: -1, stopR: -1, stopW: -1}
	}
	s.notify.run(s)
	return s, nil
}

// Close stops background watchers. Open watchers see their channel closed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var ws []*Watcher
	for m := range s.watched {
		m.mu.Lock()
		for w := range m.watchers {
			ws = append(ws, w)
		}
		m.mu.Unlock()
	}
	s.mu.Unlock()
	close(s.stop)
	s.notify.close()
	s.bg.Wait()
	for _, w := range ws {
		w.Close()
	}
	return nil
}

func (s *Store) setWatched(m *Mailbox, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.watched[m] = struct{}{}
	} else {
		delete(s.watched, m)
	}
}

// pollWatched runs once a second: mailboxes with watchers are checked for
// changes the notifier cannot see (dovecot-uidlist rewritten, no inotify),
// and idle unwatched mailboxes give their memory back.
func (s *Store) pollWatched() {
	s.mu.Lock()
	ms := make([]*Mailbox, 0, len(s.watched))
	for m := range s.watched {
		ms = append(ms, m)
	}
	var all []*User
	s.ticks++
	if s.ticks%60 == 0 { // the idle check once a minute is plenty
		for _, u := range s.users {
			all = append(all, u)
		}
	}
	s.mu.Unlock()
	for _, m := range ms {
		if m.needsRefresh() {
			m.backgroundRefresh()
		}
	}
	for _, u := range all {
		u.unloadIdle()
	}
}

// User returns the tree of one user, "local@domain" (domain case-insensitive),
// creating it on first use. ErrInvalidUser for addresses that are not safe path components.
func (s *Store) User(addr string) (*User, error) {
	local, domain, err := splitAddr(addr)
	if err != nil {
		return nil, err
	}
	key := domain + "/" + local
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("maildir: store closed")
	}
	if u, ok := s.users[key]; ok {
		return u, nil
	}
	dir := filepath.Join(s.root, domain, local)
	for _, sub := range [3]string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("maildir: create tree of %s: %w", addr, err)
		}
	}
	u := &User{s: s, addr: local + "@" + domain, dir: dir, boxes: map[string]*Mailbox{}}
	s.users[key] = u
	return u, nil
}

// splitAddr checks an address and returns its path components.
func splitAddr(addr string) (local, domain string, err error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", "", fmt.Errorf("%w: %q", ErrInvalidUser, addr)
	}
	local, domain = addr[:at], strings.ToLower(addr[at+1:])
	for _, part := range [2]string{local, domain} {
		if len(part) > 255 || part == "." || part == ".." || part[0] == '.' {
			return "", "", fmt.Errorf("%w: %q", ErrInvalidUser, addr)
		}
		for i := 0; i < len(part); i++ {
			if c := part[i]; c < 0x21 || c == 0x7f || c == '/' || c == '\\' {
				return "", "", fmt.Errorf("%w: %q", ErrInvalidUser, addr)
			}
		}
	}
	return local, domain, nil
}

// User is one user's tree. Safe for concurrent use.
type User struct {
	s    *Store
	addr string
	dir  string

	mu    sync.Mutex // guards boxes; serializes create, rename, delete and subscriptions
	boxes map[string]*Mailbox
}

// MailboxInfo describes one mailbox for LIST.
type MailboxInfo struct {
	Name        string // client-visible name, UTF-8, Delimiter-separated; "INBOX" for the inbox
	SpecialUse  string // one of the Special* constants, or ""
	Subscribed  bool
	HasChildren bool
	// NoSelect marks a level that exists only as the parent of other
	// mailboxes (a tree written by another program: "a/b" without "a").
	NoSelect bool
}

// specialUse gives the attribute of the standard folders by their name.
var specialUse = map[string]string{
	"Sent":    SpecialSent,
	"Drafts":  SpecialDrafts,
	"Trash":   SpecialTrash,
	"Junk":    SpecialJunk,
	"Archive": SpecialArchive,
}

// Mailbox opens a mailbox by client-visible name. "INBOX" is case-insensitive.
// The standard folders (Sent, Drafts, Trash, Junk, Archive) exist once asked for.
func (u *User) Mailbox(name string) (*Mailbox, error) {
	dir, err := folderDir(name)
	if err != nil {
		return nil, err
	}
	name = canonicalName(name)
	u.mu.Lock()
	defer u.mu.Unlock()
	path := u.dir
	if dir != "" {
		path = filepath.Join(u.dir, dir)
	}
	if _, err := os.Stat(path); err != nil {
		if _, std := specialUse[name]; !std || !errors.Is(err, os.ErrNotExist) {
			if m, ok := u.boxes[dir]; ok {
				m.markGone()
				delete(u.boxes, dir)
			}
			return nil, fmt.Errorf("%w: %s", ErrNoSuchMailbox, name)
		}
		if err := u.createDirLocked(dir); err != nil {
			return nil, err
		}
		if err := u.setSubscribedLocked(name, true); err != nil {
			return nil, err
		}
	}
	if m, ok := u.boxes[dir]; ok {
		return m, nil
	}
	m := &Mailbox{u: u, name: name, dir: path, lastUse: time.Now()}
	u.boxes[dir] = m
	return m, nil
}

// createDirLocked makes a Maildir++ folder: cur/ new/ tmp/ and the
// maildirfolder marker. u.mu held.
func (u *User) createDirLocked(dir string) error {
	path := filepath.Join(u.dir, dir)
	tmp := filepath.Join(u.dir, "tmp", "mkdir."+u.s.uniqueName(time.Now()))
	// Build it aside and rename it into place, so nobody sees a half-made folder.
	for _, sub := range [3]string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(tmp, sub), 0o700); err != nil {
			_ = os.RemoveAll(tmp)
			return fmt.Errorf("maildir: create folder: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "maildirfolder"), nil, 0o600); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("maildir: create folder: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.RemoveAll(tmp)
		if errors.Is(err, os.ErrExist) || errors.Is(err, errNotEmpty) {
			return fmt.Errorf("%w: %s", ErrExists, dir)
		}
		return fmt.Errorf("maildir: create folder: %w", err)
	}
	return syncDir(u.dir)
}

// ListMailboxes returns every mailbox, INBOX and the standard folders included.
func (u *User) ListMailboxes() ([]MailboxInfo, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for name := range specialUse {
		dir, _ := folderDir(name)
		if _, err := os.Stat(filepath.Join(u.dir, dir)); errors.Is(err, os.ErrNotExist) {
			if err := u.createDirLocked(dir); err != nil && !errors.Is(err, ErrExists) {
				return nil, err
			}
			if err := u.setSubscribedLocked(name, true); err != nil {
				return nil, err
			}
		}
	}
	ents, err := os.ReadDir(u.dir)
	if err != nil {
		return nil, fmt.Errorf("maildir: list %s: %w", u.addr, err)
	}
	names := map[string]bool{inboxName: true} // name -> selectable
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		name, ok := nameOfDir(e.Name())
		if !ok {
			continue
		}
		names[name] = true
		// Parents without a directory of their own are listed as \Noselect.
		for i := strings.LastIndexByte(name, Delimiter); i > 0; i = strings.LastIndexByte(name[:i], Delimiter) {
			if _, seen := names[name[:i]]; !seen {
				names[name[:i]] = false
			}
		}
	}
	subs, err := u.readSubscriptionsLocked()
	if err != nil {
		return nil, err
	}
	out := make([]MailboxInfo, 0, len(names))
	for name, sel := range names {
		out = append(out, MailboxInfo{
			Name:       name,
			SpecialUse: specialUse[name],
			Subscribed: subs[name],
			NoSelect:   !sel,
		})
	}
	sort.Slice(out, func(i, j int) bool {
		// INBOX first, then by name.
		if (out[i].Name == inboxName) != (out[j].Name == inboxName) {
			return out[i].Name == inboxName
		}
		return out[i].Name < out[j].Name
	})
	for i := range out {
		prefix := out[i].Name + string(Delimiter)
		j := sort.Search(len(out), func(k int) bool { return out[k].Name > prefix })
		for k := max(j-1, 0); k < len(out) && k <= j; k++ {
			if strings.HasPrefix(out[k].Name, prefix) {
				out[i].HasChildren = true
			}
		}
	}
	return out, nil
}

// CreateMailbox creates name (and missing parents). ErrExists, ErrInvalidName.
func (u *User) CreateMailbox(name string) error {
	dir, err := folderDir(name)
	if err != nil {
		return err
	}
	name = canonicalName(name)
	if dir == "" {
		return fmt.Errorf("%w: INBOX", ErrExists)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	segs := strings.Split(name, string(Delimiter))
	for i := 1; i < len(segs); i++ {
		parent := strings.Join(segs[:i], string(Delimiter))
		pdir, _ := folderDir(parent)
		if pdir == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(u.dir, pdir)); errors.Is(err, os.ErrNotExist) {
			if err := u.createDirLocked(pdir); err != nil && !errors.Is(err, ErrExists) {
				return err
			}
		}
	}
	if _, err := os.Stat(filepath.Join(u.dir, dir)); err == nil {
		return fmt.Errorf("%w: %s", ErrExists, name)
	}
	return u.createDirLocked(dir)
}

// RenameMailbox renames a mailbox and its children. Renaming INBOX moves its
// messages into the new mailbox and leaves INBOX empty (RFC 9051 §6.3.6).
func (u *User) RenameMailbox(oldName, newName string) error {
	odir, err := folderDir(oldName)
	if err != nil {
		return err
	}
	ndir, err := folderDir(newName)
	if err != nil {
		return err
	}
	oldName, newName = canonicalName(oldName), canonicalName(newName)
	if ndir == "" {
		return fmt.Errorf("%w: cannot rename to INBOX", ErrExists)
	}
	if odir == "" {
		return u.renameInbox(newName)
	}
	if strings.HasPrefix(ndir, odir+".") {
		return fmt.Errorf("%w: cannot move %s into itself", ErrInvalidName, oldName)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, err := os.Stat(filepath.Join(u.dir, odir)); err != nil {
		return fmt.Errorf("%w: %s", ErrNoSuchMailbox, oldName)
	}
	if _, err := os.Stat(filepath.Join(u.dir, ndir)); err == nil {
		return fmt.Errorf("%w: %s", ErrExists, newName)
	}
	ents, err := os.ReadDir(u.dir)
	if err != nil {
		return fmt.Errorf("maildir: rename: %w", err)
	}
	// The mailbox and its children: ".a" and ".a.*".
	type mv struct{ from, to string }
	var moves []mv
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() && (n == odir || strings.HasPrefix(n, odir+".")) {
			to := ndir + n[len(odir):]
			if len(to) > maxDirName {
				return invalid(newName, "a child's name would be too long")
			}
			moves = append(moves, mv{n, to})
		}
	}
	for _, mv := range moves {
		if _, err := os.Stat(filepath.Join(u.dir, mv.to)); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, mv.to)
		}
	}
	subs, err := u.readSubscriptionsLocked()
	if err != nil {
		return err
	}
	for _, mv := range moves {
		if m, ok := u.boxes[mv.from]; ok {
			m.retire()
			delete(u.boxes, mv.from)
		}
		if err := os.Rename(filepath.Join(u.dir, mv.from), filepath.Join(u.dir, mv.to)); err != nil {
			return fmt.Errorf("maildir: rename %s: %w", mv.from, err)
		}
		from, _ := nameOfDir(mv.from)
		to, _ := nameOfDir(mv.to)
		if subs[from] {
			delete(subs, from)
			subs[to] = true
		}
	}
	if err := syncDir(u.dir); err != nil {
		return err
	}
	return u.writeSubscriptionsLocked(subs)
}

// renameInbox moves every message of INBOX into a new mailbox.
func (u *User) renameInbox(newName string) error {
	if err := u.CreateMailbox(newName); err != nil {
		return err
	}
	inbox, err := u.Mailbox(inboxName)
	if err != nil {
		return err
	}
	dst, err := u.Mailbox(newName)
	if err != nil {
		return err
	}
	snap, err := inbox.Snapshot()
	if err != nil {
		return err
	}
	uids := make([]uint32, len(snap.Messages))
	for i, msg := range snap.Messages {
		uids[i] = msg.UID
	}
	_, _, err = inbox.MoveTo(dst, uids)
	return err
}

// DeleteMailbox deletes a mailbox and its messages. ErrInbox for INBOX.
// Children stay (RFC 9051 §6.3.5); a mailbox with children that is deleted
// remains as a \Noselect level.
func (u *User) DeleteMailbox(name string) error {
	dir, err := folderDir(name)
	if err != nil {
		return err
	}
	name = canonicalName(name)
	if dir == "" {
		return ErrInbox
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	path := filepath.Join(u.dir, dir)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w: %s", ErrNoSuchMailbox, name)
	}
	if m, ok := u.boxes[dir]; ok {
		m.retire()
		delete(u.boxes, dir)
	}
	// Rename aside first (atomic disappearance), then remove.
	trash := filepath.Join(u.dir, "tmp", "deleted."+u.s.uniqueName(time.Now()))
	if err := os.Rename(path, trash); err != nil {
		return fmt.Errorf("maildir: delete %s: %w", name, err)
	}
	if err := syncDir(u.dir); err != nil {
		return err
	}
	if err := os.RemoveAll(trash); err != nil {
		u.s.log.Warn("maildir: remove deleted folder", "dir", trash, "err", err)
	}
	subs, err := u.readSubscriptionsLocked()
	if err != nil {
		return err
	}
	if subs[name] {
		delete(subs, name)
		return u.writeSubscriptionsLocked(subs)
	}
	return nil
}

// retire waits for the operations in flight, then marks the mailbox gone
// (its directory is about to be renamed or deleted) and closes its watchers.
func (m *Mailbox) retire() {
	m.opMu.Lock()
	m.wmu.Lock()
	m.markGone()
	m.wmu.Unlock()
	m.opMu.Unlock()
	m.closeWatchers()
}

func (m *Mailbox) closeWatchers() {
	m.mu.Lock()
	ws := make([]*Watcher, 0, len(m.watchers))
	for w := range m.watchers {
		ws = append(ws, w)
	}
	m.mu.Unlock()
	for _, w := range ws {
		w.Close()
	}
}

// unloadIdle frees the indexes of mailboxes nobody watches or used lately.
// Their Mailbox values stay valid and reload on next use.
func (u *User) unloadIdle() {
	u.mu.Lock()
	ms := make([]*Mailbox, 0, len(u.boxes))
	for _, m := range u.boxes {
		ms = append(ms, m)
	}
	u.mu.Unlock()
	for _, m := range ms {
		m.unloadIfIdle(idleUnload)
	}
}

func (m *Mailbox) unloadIfIdle(idle time.Duration) {
	if !m.opMu.TryLock() {
		return
	}
	defer m.opMu.Unlock()
	if !m.wmu.TryLock() {
		return
	}
	defer m.wmu.Unlock()
	m.mu.Lock()
	if !m.loaded || len(m.watchers) > 0 || time.Since(m.lastUse) < idle {
		m.mu.Unlock()
		return
	}
	m.loaded = false
	m.entries = nil
	m.snap = nil
	m.flagCache = nil
	m.mu.Unlock()
	m.u.s.notify.unwatch(m.dir + "/new")
	m.u.s.notify.unwatch(m.dir + "/cur")
}

// ---------------------------------------------------------------- subscriptions

// SetSubscribed adds name to or removes it from the subscriptions file.
func (u *User) SetSubscribed(name string, subscribed bool) error {
	if _, err := folderDir(name); err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.setSubscribedLocked(canonicalName(name), subscribed)
}

func (u *User) setSubscribedLocked(name string, on bool) error {
	subs, err := u.readSubscriptionsLocked()
	if err != nil {
		return err
	}
	if subs[name] == on {
		return nil
	}
	if on {
		subs[name] = true
	} else {
		delete(subs, name)
	}
	return u.writeSubscriptionsLocked(subs)
}

// The subscriptions file is Dovecot's: version 2 starts with "V\t2" and an
// empty line, then one name a line, levels separated by TAB, each in modified
// UTF-7. Version 1 files (no header: one name a line, levels separated by "/"
// or, in Maildir++ storage names, ".") are read too; ours are always version 2.
func (u *User) readSubscriptionsLocked() (map[string]bool, error) {
	data, err := os.ReadFile(filepath.Join(u.dir, "subscriptions"))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("maildir: read subscriptions: %w", err)
	}
	return parseSubscriptions(data), nil
}

func parseSubscriptions(data []byte) map[string]bool {
	subs := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 64<<10)
	version := 1
	first := true
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if first {
			first = false
			if line == "V\t2" {
				version = 2
				continue
			}
		}
		if line == "" {
			continue
		}
		var segs []string
		switch {
		case version == 2:
			segs = strings.Split(line, "\t")
		case strings.ContainsRune(line, Delimiter):
			segs = strings.Split(line, string(Delimiter))
		default:
			segs = strings.Split(line, ".")
		}
		ok := true
		for i, s := range segs {
			d, err := decodeMUTF7(s)
			if err != nil {
				ok = false
				break
			}
			segs[i] = d
		}
		if !ok {
			continue
		}
		name := strings.Join(segs, string(Delimiter))
		if _, err := folderDir(name); err == nil {
			subs[canonicalName(name)] = true
		}
	}
	return subs
}

func formatSubscriptions(subs map[string]bool) []byte {
	names := make([]string, 0, len(subs))
	for n, on := range subs {
		if on {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var b bytes.Buffer
	b.WriteString("V\t2\n\n")
	for _, n := range names {
		segs := strings.Split(n, string(Delimiter))
		for i, s := range segs {
			segs[i] = encodeMUTF7(s)
		}
		b.WriteString(strings.Join(segs, "\t"))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func (u *User) writeSubscriptionsLocked(subs map[string]bool) error {
	lock, err := acquireDotlock(u.dir, "subscriptions.lock", u.s.host, u.s.pid)
	if err != nil {
		return err
	}
	defer lock.release()
	return lock.replace(filepath.Join(u.dir, "subscriptions"), formatSubscriptions(subs), false)
}

// ---------------------------------------------------------------- delivery to many

// DeliverMany delivers one message to several mailboxes (the recipients of one
// SMTP transaction), writing and fsyncing the bytes once: the other mailboxes
// get hard links of the same file (a copy where links are impossible). It
// returns, per mailbox in the order given, the UID or the error.
func (s *Store) DeliverMany(r io.Reader, boxes []*Mailbox) ([]uint32, []error) {
	uids := make([]uint32, len(boxes))
	errs := make([]error, len(boxes))
	if len(boxes) == 0 {
		_, _ = io.Copy(io.Discard, r)
		return uids, errs
	}
	for i, m := range boxes {
		errs[i] = m.ensureLoaded()
	}
	first := -1
	for i := range boxes {
		if errs[i] == nil {
			first = i
			break
		}
	}
	if first < 0 {
		_, _ = io.Copy(io.Discard, r)
		return uids, errs
	}
	p0, err := s.writeTmp(boxes[first].dir, r, time.Time{})
	if err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return uids, errs
	}
	p0.bits = bitInNew
	ps := make([]*pending, len(boxes))
	ps[first] = p0
	for i, m := range boxes {
		if i == first || errs[i] != nil {
			continue
		}
		unique := s.uniqueName(time.Now())
		tmp := m.dir + "/tmp/" + unique
		if err := os.Link(p0.src, tmp); err != nil {
			if err := copyFile(p0.src, tmp, p0.mtime); err != nil {
				errs[i] = err
				continue
			}
		}
		size := sizeField(p0.base, 'S')
		ps[i] = &pending{src: tmp, base: sizedBase(unique, size, p0.vsize), bits: bitInNew, mtime: p0.mtime, vsize: p0.vsize, done: make(chan struct{})}
	}
	// Commit in parallel: each mailbox batches with its other deliveries.
	var wg sync.WaitGroup
	for i, m := range boxes {
		if ps[i] == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.commit([]*pending{ps[i]})
			if ps[i].err != nil {
				_ = os.Remove(ps[i].src)
				errs[i] = ps[i].err
				return
			}
			uids[i] = ps[i].uid
		}()
	}
	wg.Wait()
	return uids, errs
}

var errNotEmpty = syscall.ENOTEMPTY
