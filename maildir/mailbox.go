package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// entry is the in-memory index record of one message (48 bytes plus its name).
type entry struct {
	name   string   // current file name in new/ or cur/
	mtime  int64    // internal date: the file's mtime, Unix seconds
	modseq uint64   // modification sequence of the last change
	bits   flagBits // flag letters of the name, plus bitInNew
	vsize  uint32   // RFC 822 size (CRLF line ends)
	uid    uint32
}

func (e *entry) sub() string {
	if e.bits&bitInNew != 0 {
		return "new"
	}
	return "cur"
}

// Mailbox locking. Three mutexes, always taken in this order:
//
//	opMu  serializes the operations that rename or remove this mailbox's
//	      message files (StoreFlags, Expunge, the source side of MoveTo) and
//	      directory rescans, so a rescan never sees a half-done change of ours;
//	wmu   serializes the writers of dovecot-uidlist: delivery batches (which
//	      only add files), rescans that assign UIDs, compaction;
//	mu    guards the in-memory fields below; held only briefly, never while
//	      waiting for another lock, never during fsync.
//
// A writer of entries holds mu and opMu or wmu; a goroutine holding both opMu
// and wmu may read entries without mu. A lock of another mailbox is only ever
// taken as opMu(src) then wmu(dst): nobody waits for an opMu while holding a
// wmu, so moves in both directions cannot deadlock.
type Mailbox struct {
	u    *User
	name string // client-visible name; fixed
	dir  string // the maildir (cur/ new/ tmp/ inside); fixed

	opMu sync.Mutex
	wmu  sync.Mutex

	qmu        sync.Mutex // guards queue and committing
	queue      []*pending // saves waiting for the next delivery batch
	committing bool       // a leader is committing batches

	dirty   atomic.Bool   // set by the notifier: new/ or cur/ changed behind our back
	bgBusy  atomic.Bool   // a background refresh is running
	ulOurs  atomic.Int32  // our uidlist writers holding dovecot-uidlist.lock
	rescans atomic.Uint64 // directory listings so far (tests and benchmarks check our own changes cause none)

	mu          sync.Mutex
	loaded      bool
	gone        bool // deleted or renamed away
	pollMode    bool // no inotify watch: rescans are decided by directory mtimes
	dirMtime    [2]int64
	uidValidity uint32
	nextUID     uint32
	guid        string
	entries     []entry // in UID order
	ulID        fileID  // dovecot-uidlist as we last read or wrote it
	ulRecords   int     // records in dovecot-uidlist (live and stale)
	ulRewrite   bool    // dovecot-uidlist ends in a partial line: rewrite before appending
	highest     uint64  // HIGHESTMODSEQ
	reserved    uint64  // modseqs up to this value are persisted in postyard-modseq
	kw          keywordTable
	kwID        fileID
	kwPending   bool                  // a message has a keyword letter without a name: watch dovecot-keywords
	flagCache   map[flagBits][]string // interned Flags slices, reset when kw changes
	snap        *Snapshot             // cached; nil after any change
	watchers    map[*Watcher]struct{}
	lastUse     time.Time
}

func (m *Mailbox) path(sub, name string) string { return m.dir + "/" + sub + "/" + name }

// Name is the client-visible name.
func (m *Mailbox) Name() string { return m.name }

// errGone reports the mailbox as missing.
func (m *Mailbox) errGone() error { return fmt.Errorf("%w: %s", ErrNoSuchMailbox, m.name) }

// find returns the index of uid in entries, or -1. mu held.
func (m *Mailbox) find(uid uint32) int {
	i := sort.Search(len(m.entries), func(i int) bool { return m.entries[i].uid >= uid })
	if i < len(m.entries) && m.entries[i].uid == uid {
		return i
	}
	return -1
}

// bumpModSeq returns the next modification sequence, persisting a new
// reservation every 1024 values so that HIGHESTMODSEQ never goes back after a
// restart (messages then all carry the persisted value). mu held.
func (m *Mailbox) bumpModSeq() uint64 {
	m.highest++
	if m.highest > m.reserved {
		r := m.highest + 1024
		if err := writeFileAtomic(filepath.Join(m.dir, modseqName), []byte(strconv.FormatUint(r, 10)+"\n"), true); err != nil {
			m.u.s.log.Error("maildir: persist modseq", "dir", m.dir, "err", err)
		} else {
			m.reserved = r
		}
	}
	return m.highest
}

func readModSeq(dir string) uint64 {
	data, err := os.ReadFile(filepath.Join(dir, modseqName))
	if err != nil {
		return 1
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || n == 0 {
		return 1
	}
	return n
}

// writeFileAtomic writes path through a temporary file and a rename.
func writeFileAtomic(path string, data []byte, durable bool) error {
	// The temporary file goes to the maildir's tmp/ (where leftovers of a
	// crash are cleaned up like any other), else next to path.
	dir, name := filepath.Split(path)
	tmpDir := filepath.Join(dir, "tmp")
	if _, err := os.Stat(tmpDir); err != nil {
		tmpDir = dir
	}
	tmp := filepath.Join(tmpDir, fmt.Sprintf(".%s.%d.%d", name, os.Getpid(), time.Now().UnixNano()))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("maildir: write %s: %w", path, err)
	}
	if durable {
		return syncDir(filepath.Dir(path))
	}
	return nil
}

// ---------------------------------------------------------------- sync

// refresh brings the index up to date with the directories: it loads the
// mailbox on first use and rescans when the notifier (or, without inotify, a
// directory mtime) says something changed behind our back.
func (m *Mailbox) refresh() error {
	m.u.s.notify.drain()
	m.mu.Lock()
	if m.gone {
		m.mu.Unlock()
		return m.errGone()
	}
	m.lastUse = time.Now()
	// While one of our uidlist writers holds the dotlock, a changed
	// dovecot-uidlist is its own append (it reads what others wrote under
	// that lock before appending): no reason to rescan.
	need := m.needSyncLocked(m.ulOurs.Load() == 0)
	m.mu.Unlock()
	if !need {
		return nil
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.wmu.Lock()
	defer m.wmu.Unlock()
	// Decide again: the change seen above may have been one of ours that
	// completed meanwhile (a delivery batch appending to dovecot-uidlist),
	// and another caller may have rescanned while we waited.
	m.mu.Lock()
	need = !m.gone && m.needSyncLocked(true)
	m.mu.Unlock()
	if !need {
		return nil
	}
	return m.syncW()
}

// needSyncLocked: the index may be out of date with the directories (not
// loaded, or a change by another program reported). checkUidlist: count a
// dovecot-uidlist that differs from ours. mu held.
func (m *Mailbox) needSyncLocked(checkUidlist bool) bool {
	return !m.loaded || m.dirty.Load() || m.pollChangedLocked() ||
		(checkUidlist && m.uidlistChangedLocked()) ||
		(m.kwPending && m.keywordsChangedLocked())
}

// ensureLoaded loads the index if needed, without a rescan otherwise.
func (m *Mailbox) ensureLoaded() error {
	m.mu.Lock()
	loaded, gone := m.loaded, m.gone
	m.lastUse = time.Now()
	m.mu.Unlock()
	if gone {
		return m.errGone()
	}
	if loaded {
		return nil
	}
	return m.refresh()
}

// uidlistChangedLocked: someone else rewrote or appended to dovecot-uidlist.
func (m *Mailbox) uidlistChangedLocked() bool {
	if !m.loaded {
		return true
	}
	st, err := os.Stat(filepath.Join(m.dir, uidlistName))
	if err != nil {
		return true
	}
	return fileIDFromInfo(st) != m.ulID
}

// pollChangedLocked is the change test of mailboxes without an inotify
// watch: a changed mtime of new/ or cur/, or one so recent that another change
// within the same clock tick would not show.
func (m *Mailbox) pollChangedLocked() bool {
	if !m.loaded || !m.pollMode {
		return false
	}
	cur := m.dirMtimes()
	now := time.Now().UnixNano()
	return cur != m.dirMtime || now-cur[0] < int64(2*time.Second) || now-cur[1] < int64(2*time.Second)
}

func (m *Mailbox) dirMtimes() [2]int64 {
	var out [2]int64
	for i, sub := range [2]string{"new", "cur"} {
		var st unix.Stat_t
		if unix.Stat(m.dir+"/"+sub, &st) == nil {
			out[i] = st.Mtim.Nano()
		}
	}
	return out
}

type dirFile struct {
	name  string
	inNew bool
}

// readDirs lists new/ and cur/ by base name. A base present in both (another
// tool between its link and unlink) counts once, from cur/.
func (m *Mailbox) readDirs(hint int) (map[string]dirFile, error) {
	files := make(map[string]dirFile, hint)
	for _, sub := range [2]string{"cur", "new"} {
		f, err := os.Open(m.dir + "/" + sub)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				if _, serr := os.Stat(m.dir); serr != nil {
					return nil, m.errGone()
				}
				if err := os.MkdirAll(m.dir+"/"+sub, 0o700); err != nil {
					return nil, fmt.Errorf("maildir: %w", err)
				}
				continue
			}
			return nil, fmt.Errorf("maildir: %w", err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("maildir: list %s/%s: %w", m.dir, sub, err)
		}
		inNew := sub == "new"
		for _, n := range names {
			if n == "" || n[0] == '.' {
				continue
			}
			base := baseOf(n)
			if _, dup := files[base]; dup {
				continue
			}
			files[base] = dirFile{name: n, inNew: inNew}
		}
	}
	return files, nil
}

// newFile is a file found in the directories that the index does not know.
type newFile struct {
	dirFile
	base  string
	btime int64 // TIME of the base name
	mtime int64
	vsize int64
	uid   uint32
	ok    bool
}

// syncW reconciles the index with the directories and dovecot-uidlist. opMu
// and wmu held (so nobody else changes entries; reads need no mu).
func (m *Mailbox) syncW() error {
	first := !m.loaded
	if first {
		if err := m.loadMeta(); err != nil {
			return err
		}
	}
	if !first {
		if err := m.reloadKeywordsIfChanged(); err != nil {
			return err
		}
	}
	var mt [2]int64
	if m.pollMode {
		mt = m.dirMtimes()
	}
	m.dirty.Store(false) // before reading: a change from now on dirties again
	m.rescans.Add(1)
	files, err := m.readDirs(len(m.entries) + 64)
	if err != nil {
		if errors.Is(err, ErrNoSuchMailbox) {
			m.markGone()
		}
		return err
	}

	// Known messages: gone, or renamed (flags changed, or new/ -> cur/).
	type rename struct {
		idx   int
		name  string
		inNew bool
	}
	var gone []int
	var renamed []rename
	for i := range m.entries {
		e := &m.entries[i]
		base := baseOf(e.name)
		f, ok := files[base]
		if !ok {
			gone = append(gone, i)
			continue
		}
		delete(files, base)
		if f.name != e.name || f.inNew != (e.bits&bitInNew != 0) {
			renamed = append(renamed, rename{i, f.name, f.inNew})
		}
	}

	// Unknown files get their UIDs from dovecot-uidlist or new ones.
	var added []entry
	ulChanged := m.uidlistChangedLocked()
	if len(files) > 0 || ulChanged {
		added, err = m.assignUIDs(files, first)
		if err != nil {
			return err
		}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pollMode {
		m.dirMtime = mt
	}
	changed := len(gone) > 0 || len(renamed) > 0 || len(added) > 0
	for _, r := range renamed {
		e := &m.entries[r.idx]
		_, letters := infoOf(r.name)
		old := e.bits
		e.name = r.name
		e.bits = letters
		if r.inNew {
			e.bits |= bitInNew
		}
		if old&letterMask != letters {
			e.modseq = m.bumpModSeq()
			m.emit(Event{Kind: EventFlags, UID: e.uid, Flags: m.flagsOf(e.bits), ModSeq: e.modseq})
		}
	}
	if len(gone) > 0 {
		keep := m.entries[:0]
		g := 0
		for i := range m.entries {
			if g < len(gone) && gone[g] == i {
				g++
				m.emit(Event{Kind: EventExpunge, UID: m.entries[i].uid, ModSeq: m.bumpModSeq()})
				continue
			}
			keep = append(keep, m.entries[i])
		}
		clear(m.entries[len(keep):])
		m.entries = keep
	}
	if len(added) > 0 {
		sort.Slice(added, func(i, j int) bool { return added[i].uid < added[j].uid })
		if !first {
			for i := range added {
				added[i].modseq = m.bumpModSeq()
			}
		}
		inOrder := len(m.entries) == 0 || added[0].uid > m.entries[len(m.entries)-1].uid
		if len(m.entries) == 0 {
			m.entries = added
		} else {
			m.entries = append(m.entries, added...)
		}
		if !inOrder {
			sort.Slice(m.entries, func(i, j int) bool { return m.entries[i].uid < m.entries[j].uid })
		}
		if !first {
			for i := range added {
				e := &added[i]
				m.emit(Event{Kind: EventNew, UID: e.uid, Flags: m.flagsOf(e.bits), ModSeq: e.modseq})
			}
		}
	}
	if first {
		for i := range m.entries {
			m.entries[i].modseq = m.highest
		}
		m.compactNames()
		m.loaded = true
	}
	if changed || first {
		m.snap = nil
		m.updateKwPendingLocked()
	}
	return nil
}

// loadMeta reads what a first load needs besides the messages: keywords,
// HIGHESTMODSEQ, the inotify watches.
func (m *Mailbox) loadMeta() error {
	if _, err := os.Stat(m.dir); err != nil {
		m.markGone()
		return m.errGone()
	}
	for _, sub := range [3]string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(m.dir+"/"+sub, 0o700); err != nil {
			return fmt.Errorf("maildir: %w", err)
		}
	}
	cleanTmp(m.dir + "/tmp")
	kw, kwID, err := readKeywordFile(m.dir)
	if err != nil {
		return err
	}
	hi := readModSeq(m.dir)
	n := m.u.s.notify
	watched := n.watch(m, m.dir+"/new") && n.watch(m, m.dir+"/cur")
	m.mu.Lock()
	m.kw, m.kwID, m.flagCache = kw, kwID, nil
	m.highest, m.reserved = hi, hi
	m.pollMode = !watched
	m.mu.Unlock()
	return nil
}

// reloadKeywordsIfChanged rereads dovecot-keywords after another program
// changed it (new letters must render with their names). Messages whose
// letters got a new meaning are reported as flag changes. opMu and wmu held.
func (m *Mailbox) reloadKeywordsIfChanged() error {
	var id fileID
	if st, err := os.Stat(filepath.Join(m.dir, keywordsName)); err == nil {
		id = fileIDFromInfo(st)
	}
	m.mu.Lock()
	same := id == m.kwID
	m.mu.Unlock()
	if same {
		return nil
	}
	kw, id, err := readKeywordFile(m.dir)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kwID = id
	if kw == m.kw {
		return nil
	}
	var changed flagBits
	for i := range kw {
		if kw[i] != m.kw[i] {
			changed |= keywordBit(i)
		}
	}
	m.kw = kw
	m.flagCache = nil
	m.snap = nil
	for i := range m.entries {
		e := &m.entries[i]
		if e.bits&changed != 0 {
			e.modseq = m.bumpModSeq()
			m.emit(Event{Kind: EventFlags, UID: e.uid, Flags: m.flagsOf(e.bits), ModSeq: e.modseq})
		}
	}
	m.updateKwPendingLocked()
	return nil
}

// updateKwPendingLocked notes whether some message carries a keyword letter
// that dovecot-keywords does not name (yet: another program may write the
// file after the message), so that refresh watches that file. mu held.
func (m *Mailbox) updateKwPendingLocked() {
	var named flagBits
	for i, k := range m.kw {
		if k != "" {
			named |= keywordBit(i)
		}
	}
	m.kwPending = false
	for i := range m.entries {
		if m.entries[i].bits&lowerMask&^named != 0 {
			m.kwPending = true
			return
		}
	}
}

// keywordsChangedLocked: dovecot-keywords differs from what we read. mu held.
func (m *Mailbox) keywordsChangedLocked() bool {
	var id fileID
	if st, err := os.Stat(filepath.Join(m.dir, keywordsName)); err == nil {
		id = fileIDFromInfo(st)
	}
	return id != m.kwID
}

// tmpMaxAge: files in tmp/ older than this are leftovers of a crash (the
// Maildir convention and Dovecot's default say 36 hours).
const tmpMaxAge = 36 * time.Hour

// cleanTmp removes old leftovers from a tmp/ directory.
func cleanTmp(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	cutoff := time.Now().Add(-tmpMaxAge)
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.ModTime().Before(cutoff) {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// compactNames copies the names of a freshly loaded index into one block of
// memory: fewer, denser allocations for big mailboxes. mu held.
func (m *Mailbox) compactNames() {
	total := 0
	for i := range m.entries {
		total += len(m.entries[i].name)
	}
	var sb strings.Builder
	sb.Grow(total)
	for i := range m.entries {
		sb.WriteString(m.entries[i].name)
	}
	all := sb.String()
	off := 0
	for i := range m.entries {
		n := len(m.entries[i].name)
		m.entries[i].name = all[off : off+n]
		off += n
	}
}

// assignUIDs gives UIDs to files the index does not know: the UID that
// dovecot-uidlist records for the file, or the next free one (appended to
// dovecot-uidlist, fsynced, under dovecot-uidlist.lock). wmu and opMu held.
func (m *Mailbox) assignUIDs(files map[string]dirFile, first bool) ([]entry, error) {
	nf := make([]newFile, 0, len(files))
	for base, f := range files {
		nf = append(nf, newFile{dirFile: f, base: base, vsize: -1})
	}
	// A first read without the lock tells which files already have records
	// (and their W= sizes), so the files are examined before the lock is
	// taken; under the lock the file is read again only if it changed.
	ul, ulID, err := m.readUidlist()
	if err != nil {
		return nil, err
	}
	recs := matchRecords(ul, files)
	m.statFiles(nf, recs)

	lock, err := acquireDotlock(m.dir, uidlistLockName, m.u.s.host, m.u.s.pid)
	if err != nil {
		return nil, err
	}
	defer lock.release()
	if st, err := os.Stat(filepath.Join(m.dir, uidlistName)); err != nil || ul == nil || fileIDFromInfo(st) != ulID {
		if ul, ulID, err = m.readUidlist(); err != nil {
			return nil, err
		}
		recs = matchRecords(ul, files)
	}
	rewrite := false
	if ul == nil {
		// No dovecot-uidlist (a new mailbox, or removed by someone): start
		// one, keeping the UIDs we know.
		uv := m.uidValidity
		if uv == 0 {
			uv = uint32(time.Now().Unix())
		}
		guid := m.guid
		if guid == "" {
			guid = newGUID()
		}
		ul = &uidlistData{hdr: uidlistHeader{version: 3, uidValidity: uv, nextUID: max(m.nextUID, 1), guid: guid}, complete: true}
		rewrite = true
	}
	if m.loaded && ul.hdr.uidValidity != m.uidValidity {
		// Someone recreated the uidlist with a new UIDVALIDITY. Ours stays:
		// the index is rewritten into the file below, so clients keep their
		// caches and Dovecot reads our UIDs back.
		ul.hdr.uidValidity = m.uidValidity
		rewrite = true
	}
	if !ul.complete || ul.hdr.version != 3 {
		rewrite = true
	}
	next := ul.nextUID()
	if m.nextUID > next {
		next = m.nextUID
	}

	// Files with a record keep its UID (unless a message we know has it);
	// the others get new UIDs in arrival order: file time, then name.
	out := make([]entry, 0, len(nf))
	var fresh []*newFile
	for i := range nf {
		f := &nf[i]
		if !f.ok {
			continue // vanished since the listing
		}
		if r, ok := recs[f.base]; ok && !(m.loaded && m.find(r.uid) >= 0) {
			f.uid = r.uid
			out = append(out, f.entry())
			continue
		}
		fresh = append(fresh, f)
	}
	sort.Slice(fresh, func(i, j int) bool {
		if fresh[i].btime != fresh[j].btime {
			return fresh[i].btime < fresh[j].btime
		}
		return fresh[i].base < fresh[j].base
	})
	var appendBuf []byte
	for _, f := range fresh {
		f.uid = next
		next++
		appendBuf = appendUidRecord(appendBuf, f.uid, f.base, f.vsize)
		out = append(out, f.entry())
	}

	m.mu.Lock()
	m.uidValidity = ul.hdr.uidValidity
	m.guid = ul.hdr.guid
	if next > m.nextUID {
		m.nextUID = next
	}
	m.ulID = ulID
	m.ulRecords = len(ul.records)
	m.mu.Unlock()
	if rewrite {
		// Write the whole file: the index plus the files just found.
		all := make([]entry, 0, len(m.entries)+len(out))
		all = append(all, m.entries...)
		all = append(all, out...)
		sort.Slice(all, func(i, j int) bool { return all[i].uid < all[j].uid })
		if err := m.rewriteUidlist(lock, all); err != nil {
			return nil, err
		}
		return out, nil
	}
	if len(appendBuf) > 0 {
		if err := m.appendUidlist(appendBuf, len(fresh)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// matchRecords finds the uidlist records of files.
func matchRecords(ul *uidlistData, files map[string]dirFile) map[string]uidRecord {
	recs := map[string]uidRecord{}
	if ul == nil {
		return recs
	}
	for _, r := range ul.records {
		if _, ok := files[r.base]; ok {
			recs[r.base] = r
		}
	}
	return recs
}

func (f *newFile) entry() entry {
	_, letters := infoOf(f.name)
	e := entry{name: f.name, mtime: f.mtime, bits: letters, vsize: clampSize(f.vsize), uid: f.uid}
	if f.inNew {
		e.bits |= bitInNew
	}
	return e
}

func clampSize(n int64) uint32 {
	if n < 0 {
		return 0
	}
	if n > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(n)
}

// statFiles fills in mtime (the internal date, as Dovecot reads it) and the
// RFC 822 size of each file: from W= in the name, the uidlist record, or by
// reading the file and counting bare LFs. Several goroutines share the stat
// calls (relative to an open directory), which dominate a cold load.
func (m *Mailbox) statFiles(nf []newFile, recs map[string]uidRecord) {
	var dirFDs [2]int // new, cur
	for i, sub := range [2]string{"new", "cur"} {
		fd, err := unix.Open(m.dir+"/"+sub, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			fd = -1
		}
		dirFDs[i] = fd
	}
	defer func() {
		for _, fd := range dirFDs {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	const workers = 4
	var wg sync.WaitGroup
	chunk := (len(nf) + workers - 1) / workers
	for w := 0; w < workers && w*chunk < len(nf); w++ {
		part := nf[w*chunk : min((w+1)*chunk, len(nf))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range part {
				f := &part[i]
				f.btime = baseTime(f.base)
				sub, fd := "cur", dirFDs[1]
				if f.inNew {
					sub, fd = "new", dirFDs[0]
				}
				var st unix.Stat_t
				if fd < 0 || unix.Fstatat(fd, f.name, &st, 0) != nil {
					continue
				}
				f.mtime = st.Mtim.Sec
				f.vsize = sizeField(f.base, 'W')
				if f.vsize < 0 {
					if r, ok := recs[f.base]; ok && r.vsize >= 0 {
						f.vsize = r.vsize
					}
				}
				if f.vsize < 0 {
					v, err := countVsize(m.path(sub, f.name))
					if err != nil {
						continue
					}
					f.vsize = v
				}
				f.ok = true
			}
		}()
	}
	wg.Wait()
}

// countVsize reads a file and returns its size with every bare LF counted
// as CRLF.
func countVsize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var c vsizeCounter
	if _, err := io.Copy(&c, f); err != nil {
		return 0, err
	}
	return c.vsize(), nil
}

// vsizeCounter counts bytes and bare LFs as a message streams past.
type vsizeCounter struct {
	n, bareLF int64
	lastCR    bool
}

func (c *vsizeCounter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	prevCR := c.lastCR
	for off := 0; ; {
		i := bytes.IndexByte(p[off:], '\n')
		if i < 0 {
			break
		}
		j := off + i
		if j == 0 {
			if !prevCR {
				c.bareLF++
			}
		} else if p[j-1] != '\r' {
			c.bareLF++
		}
		off = j + 1
	}
	if len(p) > 0 {
		c.lastCR = p[len(p)-1] == '\r'
	}
	return len(p), nil
}

func (c *vsizeCounter) vsize() int64 { return c.n + c.bareLF }

// readUidlist reads and parses dovecot-uidlist; nil if there is none.
func (m *Mailbox) readUidlist() (*uidlistData, fileID, error) {
	f, err := os.Open(filepath.Join(m.dir, uidlistName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fileID{}, nil
	}
	if err != nil {
		return nil, fileID{}, fmt.Errorf("maildir: read uidlist: %w", err)
	}
	defer f.Close()
	id, err := fileIDOf(f)
	if err != nil {
		return nil, id, err
	}
	data := make([]byte, 0, id.size+512)
	buf := bytes.NewBuffer(data)
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, id, fmt.Errorf("maildir: read uidlist: %w", err)
	}
	id.size = int64(buf.Len())
	ul, err := parseUidlist(buf.Bytes())
	if err != nil {
		// A header we cannot read: start over (a new UIDVALIDITY), as Dovecot does.
		m.u.s.log.Warn("maildir: unreadable dovecot-uidlist, recreating it", "dir", m.dir, "err", err)
		return nil, id, nil
	}
	return ul, id, nil
}

// appendUidlist appends records and fsyncs. dotlock and wmu held.
func (m *Mailbox) appendUidlist(buf []byte, n int) error {
	path := filepath.Join(m.dir, uidlistName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: append uidlist: %w", err)
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	var id fileID
	if err == nil {
		id, err = fileIDOf(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("maildir: append uidlist: %w", err)
	}
	m.mu.Lock()
	m.ulID = id
	m.ulRecords += n
	m.mu.Unlock()
	return nil
}

// rewriteUidlist writes the whole file from entries (UID order), through the
// lock file as Dovecot does. dotlock and wmu held.
func (m *Mailbox) rewriteUidlist(lock *dotlock, entries []entry) error {
	m.mu.Lock()
	uv, next, guid := m.uidValidity, m.nextUID, m.guid
	m.mu.Unlock()
	if guid == "" {
		guid = newGUID()
	}
	buf := make([]byte, 0, 64+len(entries)*64)
	buf = append(buf, formatUidlistHeader(uv, next, guid)...)
	for i := range entries {
		buf = appendUidRecord(buf, entries[i].uid, baseOf(entries[i].name), int64(entries[i].vsize))
	}
	path := filepath.Join(m.dir, uidlistName)
	if err := lock.replace(path, buf, true); err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("maildir: rewrite uidlist: %w", err)
	}
	m.mu.Lock()
	m.ulID = fileIDFromInfo(st)
	m.ulRecords = len(entries)
	m.guid = guid
	m.mu.Unlock()
	return nil
}

func (m *Mailbox) markGone() {
	m.mu.Lock()
	m.gone = true
	m.mu.Unlock()
	m.u.s.notify.unwatch(m.dir + "/new")
	m.u.s.notify.unwatch(m.dir + "/cur")
}

// ---------------------------------------------------------------- reading

// flagsOf renders bits as a shared, sorted flag slice. mu held.
func (m *Mailbox) flagsOf(b flagBits) []string {
	b &= letterMask
	if f, ok := m.flagCache[b]; ok {
		return f
	}
	if m.flagCache == nil {
		m.flagCache = map[flagBits][]string{}
	}
	f := flagNames(b, m.kw[:])
	if f == nil {
		f = []string{}
	}
	if len(m.flagCache) < 4096 {
		m.flagCache[b] = f
	}
	return f
}

func (m *Mailbox) messageOf(e *entry) Message {
	return Message{
		UID:          e.uid,
		Flags:        m.flagsOf(e.bits),
		Size:         int64(e.vsize),
		InternalDate: time.Unix(e.mtime, 0),
		ModSeq:       e.modseq,
	}
}

// Snapshot returns the current state, picking up changes made by other
// processes (new files, renamed flags, removed files) first. The value is
// shared and cached until the next change: callers must not modify it (the
// Flags slices too are shared between messages).
func (m *Mailbox) Snapshot() (*Snapshot, error) {
	if err := m.refresh(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone {
		return nil, m.errGone()
	}
	return m.snapshotLocked(), nil
}

func (m *Mailbox) snapshotLocked() *Snapshot {
	if m.snap != nil {
		return m.snap
	}
	s := &Snapshot{
		UIDValidity:   m.uidValidity,
		UIDNext:       m.nextUID,
		HighestModSeq: m.highest,
		Messages:      make([]Message, len(m.entries)),
	}
	for i := range m.entries {
		s.Messages[i] = m.messageOf(&m.entries[i])
	}
	m.snap = s
	return s
}

// Status returns the counts of the mailbox.
func (m *Mailbox) Status() (Status, error) {
	if err := m.refresh(); err != nil {
		return Status{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Status{
		Messages:      uint32(len(m.entries)),
		UIDNext:       m.nextUID,
		UIDValidity:   m.uidValidity,
		HighestModSeq: m.highest,
	}
	for i := range m.entries {
		e := &m.entries[i]
		if e.bits&bitSeen == 0 {
			st.Unseen++
		}
		if e.bits&bitInNew != 0 {
			st.Recent++
		}
		st.Size += int64(e.vsize)
	}
	return st, nil
}

// Open returns the message's content (CRLF line ends) and its index entry.
// ErrNoSuchMessage if it was expunged. A file with bare LF line ends (put
// there by another delivery agent) is converted while it is read, so the
// content always matches Message.Size.
func (m *Mailbox) Open(uid uint32) (io.ReadSeekCloser, Message, error) {
	if err := m.ensureLoaded(); err != nil {
		return nil, Message{}, err
	}
	for attempt := 0; ; attempt++ {
		m.mu.Lock()
		i := m.find(uid)
		if i < 0 {
			m.mu.Unlock()
			return nil, Message{}, fmt.Errorf("%w: uid %d", ErrNoSuchMessage, uid)
		}
		e := m.entries[i]
		msg := m.messageOf(&e)
		m.mu.Unlock()
		f, err := os.Open(m.path(e.sub(), e.name))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && attempt < 3 && m.renamedByUs(uid, &e) {
				continue // a flag change of ours renamed it meanwhile
			}
			if errors.Is(err, os.ErrNotExist) && attempt < 4 {
				// Renamed or removed by someone else since our last look.
				attempt = 3
				m.dirty.Store(true)
				if err := m.refresh(); err != nil {
					return nil, Message{}, err
				}
				continue
			}
			if errors.Is(err, os.ErrNotExist) {
				return nil, Message{}, fmt.Errorf("%w: uid %d", ErrNoSuchMessage, uid)
			}
			return nil, Message{}, fmt.Errorf("maildir: open uid %d: %w", uid, err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, Message{}, fmt.Errorf("maildir: open uid %d: %w", uid, err)
		}
		if st.Size() == msg.Size {
			return f, msg, nil
		}
		return newCRLFReader(f, msg.Size), msg, nil
	}
}

// renamedByUs: the index entry of uid changed since e was read from it (or
// the message is gone from the index): the file was renamed or removed by an
// operation of ours, which needs no rescan.
func (m *Mailbox) renamedByUs(uid uint32, e *entry) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := m.find(uid)
	return i < 0 || m.entries[i].name != e.name || m.entries[i].bits&bitInNew != e.bits&bitInNew
}

// errno helpers
func isNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT)
}
