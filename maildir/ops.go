package maildir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// pending is one file waiting to enter a mailbox through a delivery batch.
type pending struct {
	src    string   // path renamed into place (a tmp/ file, or a message moved from another mailbox)
	srcDir string   // directory of src when it is a watched new/ or cur/ ("" otherwise)
	base   string   // base name in the destination
	bits   flagBits // flag letters; bitInNew puts the file into new/
	mtime  int64
	vsize  int64
	uid    uint32
	err    error
	done   chan struct{} // closed when committed or failed
	wake   chan struct{} // the caller becomes the leader of the next batch
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// uniqueName is a Maildir unique name: TIME.MusecPpidQn.HOST (the form
// Dovecot writes; the counter makes names unique within this process).
func (s *Store) uniqueName(t time.Time) string {
	q := s.seq.Add(1)
	return strconv.FormatInt(t.Unix(), 10) + ".M" + strconv.Itoa(t.Nanosecond()/1000) +
		"P" + strconv.Itoa(s.pid) + "Q" + strconv.FormatUint(q, 10) + "." + s.host
}

func sizedBase(unique string, size, vsize int64) string {
	return unique + ",S=" + strconv.FormatInt(size, 10) + ",W=" + strconv.FormatInt(vsize, 10)
}

// writeTmp streams r into tmp/ of dir, fsyncs it and returns the pending entry
// (not yet committed). With a non-zero date the file's mtime (the internal
// date) is set to it.
func (s *Store) writeTmp(dir string, r io.Reader, date time.Time) (*pending, error) {
	now := time.Now()
	unique := s.uniqueName(now)
	tmp := dir + "/tmp/" + unique
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("maildir: create %s: %w", tmp, err)
	}
	bp := copyBufPool.Get().(*[]byte)
	var c vsizeCounter
	_, err = io.CopyBuffer(io.MultiWriter(f, &c), r, *bp)
	copyBufPool.Put(bp)
	// The internal date is the file's mtime (as Dovecot reads it): set it,
	// or read the one the writes left, before the fsync makes it durable.
	var mtime int64
	if err == nil {
		if !date.IsZero() {
			err = os.Chtimes(tmp, date, date)
			mtime = date.Unix()
		} else {
			var st os.FileInfo
			if st, err = f.Stat(); err == nil {
				mtime = st.ModTime().Unix()
			}
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("maildir: write %s: %w", tmp, err)
	}
	return &pending{
		src:   tmp,
		base:  sizedBase(unique, c.n, c.vsize()),
		mtime: mtime,
		vsize: c.vsize(),
		done:  make(chan struct{}),
	}, nil
}

// Deliver writes a new message into new/ (tmp, fsync, rename, fsync dir) and
// returns its UID once it is durable. r is read to EOF; the bytes are stored as given
// (callers pass CRLF line ends). Concurrent deliveries to one mailbox share
// the directory fsync and the dovecot-uidlist append (group commit).
func (m *Mailbox) Deliver(r io.Reader) (uint32, error) {
	return m.save(r, bitInNew, time.Time{})
}

// Append stores a message with flags and an internal date (IMAP APPEND), durably.
func (m *Mailbox) Append(r io.Reader, flags []string, date time.Time) (uint32, error) {
	if err := m.ensureLoaded(); err != nil {
		return 0, err
	}
	bits, err := m.flagBitsFor(flags)
	if err != nil {
		return 0, err
	}
	return m.save(r, bits, date)
}

func (m *Mailbox) save(r io.Reader, bits flagBits, date time.Time) (uint32, error) {
	if err := m.ensureLoaded(); err != nil {
		return 0, err
	}
	p, err := m.u.s.writeTmp(m.dir, r, date)
	if err != nil {
		return 0, err
	}
	p.bits = bits
	m.commit([]*pending{p})
	if p.err != nil {
		_ = os.Remove(p.src)
		return 0, p.err
	}
	return p.uid, nil
}

// commit puts files into the mailbox and gives them UIDs, with group commit:
// the files of concurrent callers are committed together (one uidlist lock,
// one directory fsync, one uidlist append and fsync for all). One caller at a
// time is the leader: it takes everything queued, commits it, and hands the
// lead to the first caller that queued meanwhile (so no caller serves others
// for long); the other callers only wait for their files to be done. It
// returns when every file of ps is done (see each p.err).
func (m *Mailbox) commit(ps []*pending) {
	if len(ps) == 0 {
		return
	}
	for _, p := range ps {
		p.wake = make(chan struct{}, 1)
	}
	m.qmu.Lock()
	m.queue = append(m.queue, ps...)
	lead := !m.committing
	m.committing = true
	m.qmu.Unlock()
	if !lead {
		select {
		case <-ps[0].done:
		case <-ps[0].wake:
			lead = true
		}
	}
	if lead {
		m.qmu.Lock()
		batch := m.queue
		m.queue = nil
		m.qmu.Unlock()
		m.wmu.Lock()
		m.commitBatch(batch)
		m.wmu.Unlock()
		m.qmu.Lock()
		if len(m.queue) > 0 {
			// Groups are queued whole, so the head is the first file of a
			// waiting caller.
			m.queue[0].wake <- struct{}{}
		} else {
			m.committing = false
		}
		m.qmu.Unlock()
	}
	for _, p := range ps {
		<-p.done
	}
}

func failAll(batch []*pending, err error) {
	for _, p := range batch {
		p.err = err
		close(p.done)
	}
}

// commitBatch: wmu held.
func (m *Mailbox) commitBatch(batch []*pending) {
	m.mu.Lock()
	gone, loaded := m.gone, m.loaded
	m.mu.Unlock()
	if gone || !loaded {
		failAll(batch, m.errGone())
		return
	}
	lock, err := acquireDotlock(m.dir, uidlistLockName, m.u.s.host, m.u.s.pid)
	if err != nil {
		failAll(batch, err)
		return
	}
	defer lock.release()
	m.ulOurs.Add(1)
	defer m.ulOurs.Add(-1)

	// Someone else (Dovecot) may have appended records: their UIDs are taken.
	next, rewrite, err := m.checkUidlistUnderLock()
	if err != nil {
		failAll(batch, err)
		return
	}
	n := m.u.s.notify
	var dirs [2]bool // new, cur touched
	ok := batch[:0:0]
	for _, p := range batch {
		p.uid = next
		next++
		sub, name := "cur", curName(p.base, p.bits)
		if p.bits&bitInNew != 0 {
			sub, name = "new", p.base
		}
		dst := m.dir + "/" + sub
		n.expect(dst, name, true)
		if p.srcDir != "" {
			n.expect(p.srcDir, baseName(p.src), false)
		}
		if err := os.Rename(p.src, dst+"/"+name); err != nil {
			n.unexpect(dst, name, true)
			if p.srcDir != "" {
				n.unexpect(p.srcDir, baseName(p.src), false)
			}
			p.err = fmt.Errorf("maildir: commit %s: %w", name, err)
			continue
		}
		if sub == "new" {
			dirs[0] = true
		} else {
			dirs[1] = true
		}
		ok = append(ok, p)
	}
	m.mu.Lock()
	if next > m.nextUID {
		m.nextUID = next
	}
	m.mu.Unlock()
	// The uidlist records go first and are fsynced, then the directories:
	// on ext4 the first fsync commits the renames too, so the directory
	// fsyncs find little left to do. A crash between the two can leave a
	// record whose rename is not durable yet; that message was not
	// acknowledged, and a record without a file is ignored.
	if rewrite {
		all := make([]entry, 0, len(m.entries)+len(ok))
		m.mu.Lock()
		all = append(all, m.entries...)
		m.mu.Unlock()
		for _, p := range ok {
			all = append(all, m.entryOf(p))
		}
		err = m.rewriteUidlist(lock, all)
	} else if len(ok) > 0 {
		var buf []byte
		for _, p := range ok {
			buf = appendUidRecord(buf, p.uid, p.base, p.vsize)
		}
		err = m.appendUidlist(buf, len(ok))
	}
	for i, sub := range [2]string{"new", "cur"} {
		if dirs[i] && err == nil {
			err = syncDir(m.dir + "/" + sub)
		}
	}
	if err != nil {
		// The files are in place but maybe not durable: report failure
		// (the caller retries; a duplicate beats a loss).
		for _, p := range ok {
			p.err = err
		}
	}

	m.mu.Lock()
	for _, p := range ok {
		e := m.entryOf(p)
		e.modseq = m.bumpModSeq()
		m.entries = append(m.entries, e)
		m.emit(Event{Kind: EventNew, UID: e.uid, Flags: m.flagsOf(e.bits), ModSeq: e.modseq})
	}
	if len(ok) > 0 {
		m.snap = nil
	}
	m.mu.Unlock()
	for _, p := range batch {
		close(p.done)
	}
}

func (m *Mailbox) entryOf(p *pending) entry {
	name := p.base
	if p.bits&bitInNew == 0 {
		name = curName(p.base, p.bits)
	}
	return entry{name: name, mtime: p.mtime, bits: p.bits, vsize: clampSize(p.vsize), uid: p.uid}
}

func baseName(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return path[i+1:]
		}
	}
	return path
}

// checkUidlistUnderLock returns the next free UID as the file says now (another
// program may have appended records since we last looked; their files are
// picked up by the next rescan) and whether the file must be rewritten.
// dotlock and wmu held.
func (m *Mailbox) checkUidlistUnderLock() (uint32, bool, error) {
	m.mu.Lock()
	changed := m.uidlistChangedLocked()
	next, rewrite := m.nextUID, m.ulRewrite
	m.mu.Unlock()
	if !changed {
		return next, rewrite, nil
	}
	ul, id, err := m.readUidlist()
	if err != nil {
		return 0, false, err
	}
	if ul == nil {
		return next, true, nil
	}
	if n := ul.nextUID(); n > next {
		next = n
		m.dirty.Store(true) // records of files we have not seen yet
	}
	m.mu.Lock()
	m.ulID = id
	m.ulRecords = len(ul.records)
	m.mu.Unlock()
	return next, !ul.complete || ul.hdr.uidValidity != m.uidValidity || ul.hdr.version != 3, nil
}

// flagBitsFor resolves IMAP flags to file-name letters, registering new
// keywords in dovecot-keywords.
func (m *Mailbox) flagBitsFor(flags []string) (flagBits, error) {
	var bits flagBits
	var kws []string
	for _, f := range flags {
		name, system, err := canonicalFlag(f)
		if err != nil {
			return 0, err
		}
		if name == "" {
			continue
		}
		if system {
			for _, sf := range systemFlags {
				if sf.name == name {
					b, _ := letterBit(sf.letter)
					bits |= b
				}
			}
			continue
		}
		kws = append(kws, name)
	}
	if len(kws) == 0 {
		return bits, nil
	}
	m.mu.Lock()
	kw := m.kw
	m.mu.Unlock()
	missing := false
	for _, k := range kws {
		if kw.lookup(k) < 0 {
			missing = true
		}
	}
	if missing {
		// Take the current file (another program may have added some) and
		// register what is missing, under dovecot-keywords.lock.
		newKW, id, err := addKeywords(m.dir, kws, m.u.s.host, m.u.s.pid)
		if err != nil {
			return 0, err
		}
		m.mu.Lock()
		if newKW != m.kw {
			m.kw = newKW
			m.flagCache = nil
			m.snap = nil
		}
		m.kwID = id
		m.mu.Unlock()
		kw = newKW
	}
	for _, k := range kws {
		i := kw.lookup(k)
		if i < 0 {
			return 0, fmt.Errorf("%w: %q", ErrTooManyKeywords, k)
		}
		bits |= keywordBit(i)
	}
	return bits, nil
}

// StoreFlags changes the flags of uids. With unchangedSince > 0 (CONDSTORE) a
// message whose ModSeq is higher is left alone and returned in failed.
// updated holds the new state of each changed message. A change is one
// rename in cur/ (not fsynced: like Dovecot's mail_fsync=optimized, flag
// changes survive a process crash but not necessarily a power loss).
func (m *Mailbox) StoreFlags(uids []uint32, op FlagOp, flags []string, unchangedSince uint64) (updated []Message, failed []uint32, err error) {
	if err := m.ensureLoaded(); err != nil {
		return nil, nil, err
	}
	if op != FlagsSet && op != FlagsAdd && op != FlagsRemove {
		return nil, nil, fmt.Errorf("maildir: invalid flag operation %d", op)
	}
	bits, err := m.flagBitsFor(flags)
	if err != nil {
		return nil, nil, err
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	retry, updated, failed := m.storeFlagsOp(uids, op, bits, unchangedSince)
	if len(retry) > 0 {
		// Renamed behind our back (another program changed flags or moved
		// the file to cur/): rescan and try those once more.
		m.wmu.Lock()
		err = m.syncW()
		m.wmu.Unlock()
		if err != nil {
			return updated, failed, err
		}
		_, up2, f2 := m.storeFlagsOp(retry, op, bits, unchangedSince)
		updated = append(updated, up2...)
		failed = append(failed, f2...)
	}
	return updated, failed, nil
}

// storeFlagsOp: opMu held.
func (m *Mailbox) storeFlagsOp(uids []uint32, op FlagOp, bits flagBits, unchangedSince uint64) (retry []uint32, updated []Message, failed []uint32) {
	n := m.u.s.notify
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone {
		return nil, nil, nil
	}
	for _, uid := range uids {
		i := m.find(uid)
		if i < 0 {
			continue
		}
		e := &m.entries[i]
		if unchangedSince > 0 && e.modseq > unchangedSince {
			failed = append(failed, uid)
			continue
		}
		cur := e.bits & letterMask
		var nb flagBits
		switch op {
		case FlagsSet:
			// Letters without an IMAP meaning (P, unknown keywords) are kept.
			nb = bits | cur&^m.imapLettersLocked()
		case FlagsAdd:
			nb = cur | bits
		case FlagsRemove:
			nb = cur &^ bits
		}
		if nb == cur {
			continue
		}
		base := baseOf(e.name)
		newName := curName(base, nb)
		oldDir := m.dir + "/" + e.sub()
		curDir := m.dir + "/cur"
		n.expect(oldDir, e.name, false)
		n.expect(curDir, newName, true)
		if err := os.Rename(oldDir+"/"+e.name, curDir+"/"+newName); err != nil {
			n.unexpect(oldDir, e.name, false)
			n.unexpect(curDir, newName, true)
			if isNotExist(err) {
				retry = append(retry, uid)
			} else {
				m.u.s.log.Error("maildir: rename for flags", "dir", m.dir, "uid", uid, "err", err)
				failed = append(failed, uid)
			}
			continue
		}
		e.name = newName
		e.bits = nb
		e.modseq = m.bumpModSeq()
		msg := m.messageOf(e)
		updated = append(updated, msg)
		m.emit(Event{Kind: EventFlags, UID: uid, Flags: msg.Flags, ModSeq: e.modseq})
		m.snap = nil
	}
	return retry, updated, failed
}

// imapLettersLocked: the letters that stand for IMAP flags (system flags and
// named keywords); FlagsSet replaces exactly these.
func (m *Mailbox) imapLettersLocked() flagBits {
	var b flagBits
	for _, sf := range systemFlags {
		l, _ := letterBit(sf.letter)
		b |= l
	}
	for i, k := range m.kw {
		if k != "" {
			b |= keywordBit(i)
		}
	}
	return b
}

// Expunge removes uids for good and returns those that existed.
func (m *Mailbox) Expunge(uids []uint32) ([]uint32, error) {
	if err := m.ensureLoaded(); err != nil {
		return nil, err
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	done, retry := m.expungeOp(uids)
	if len(retry) > 0 {
		m.wmu.Lock()
		err := m.syncW()
		m.wmu.Unlock()
		if err != nil {
			return done, err
		}
		d2, _ := m.expungeOp(retry)
		done = append(done, d2...)
	}
	m.maybeCompact()
	return done, nil
}

// expungeOp unlinks files and drops their entries. opMu held.
func (m *Mailbox) expungeOp(uids []uint32) (done, retry []uint32) {
	n := m.u.s.notify
	m.mu.Lock()
	defer m.mu.Unlock()
	drop := map[uint32]bool{}
	for _, uid := range uids {
		i := m.find(uid)
		if i < 0 || drop[uid] {
			continue
		}
		e := &m.entries[i]
		dir := m.dir + "/" + e.sub()
		n.expect(dir, e.name, false)
		if err := os.Remove(dir + "/" + e.name); err != nil {
			n.unexpect(dir, e.name, false)
			if isNotExist(err) {
				retry = append(retry, uid)
			} else {
				m.u.s.log.Error("maildir: expunge", "dir", m.dir, "uid", uid, "err", err)
			}
			continue
		}
		drop[uid] = true
		done = append(done, uid)
	}
	m.removeEntriesLocked(drop)
	return done, retry
}

// removeEntriesLocked drops entries and emits their expunge events. mu held.
func (m *Mailbox) removeEntriesLocked(drop map[uint32]bool) {
	if len(drop) == 0 {
		return
	}
	keep := m.entries[:0]
	for i := range m.entries {
		if drop[m.entries[i].uid] {
			m.emit(Event{Kind: EventExpunge, UID: m.entries[i].uid, ModSeq: m.bumpModSeq()})
			continue
		}
		keep = append(keep, m.entries[i])
	}
	clear(m.entries[len(keep):])
	m.entries = keep
	m.snap = nil
}

// compactMinStale is how many records of expunged messages dovecot-uidlist
// may hold before it is rewritten (also at least a quarter of the live ones).
// A variable so that the crash test can make rewrites frequent.
var compactMinStale = 1024

// maybeCompact rewrites dovecot-uidlist without the records of expunged
// messages once they are many, as Dovecot does. opMu held.
func (m *Mailbox) maybeCompact() {
	m.mu.Lock()
	live, recs := len(m.entries), m.ulRecords
	m.mu.Unlock()
	stale := recs - live
	if stale < compactMinStale || stale < live/4 {
		return
	}
	m.wmu.Lock()
	defer m.wmu.Unlock()
	lock, err := acquireDotlock(m.dir, uidlistLockName, m.u.s.host, m.u.s.pid)
	if err != nil {
		m.u.s.log.Warn("maildir: compact uidlist", "dir", m.dir, "err", err)
		return
	}
	defer lock.release()
	m.ulOurs.Add(1)
	defer m.ulOurs.Add(-1)
	if _, _, err := m.checkUidlistUnderLock(); err != nil {
		m.u.s.log.Warn("maildir: compact uidlist", "dir", m.dir, "err", err)
		return
	}
	// opMu and wmu held: entries are stable.
	if err := m.rewriteUidlist(lock, m.entries); err != nil {
		m.u.s.log.Warn("maildir: compact uidlist", "dir", m.dir, "err", err)
	}
}

// srcFile is a message to copy or move, as read from the index.
type srcFile struct {
	uid   uint32
	path  string
	dir   string
	name  string
	bits  flagBits
	mtime int64
	vsize int64
}

func (m *Mailbox) collect(uids []uint32) []srcFile {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]srcFile, 0, len(uids))
	seen := map[uint32]bool{}
	for _, uid := range uids {
		i := m.find(uid)
		if i < 0 || seen[uid] {
			continue
		}
		seen[uid] = true
		e := &m.entries[i]
		dir := m.dir + "/" + e.sub()
		out = append(out, srcFile{uid: uid, path: dir + "/" + e.name, dir: dir, name: e.name, bits: e.bits & letterMask, mtime: e.mtime, vsize: int64(e.vsize)})
	}
	return out
}

// remapBits translates keyword letters of m into those of dst (their
// dovecot-keywords tables differ). Unnamed letters are dropped.
func (m *Mailbox) remapBits(dst *Mailbox, b flagBits) (flagBits, error) {
	if b&lowerMask == 0 || m == dst {
		return b, nil
	}
	m.mu.Lock()
	kw := m.kw
	m.mu.Unlock()
	var names []string
	for i := 0; i < maxKeywords; i++ {
		if b&keywordBit(i) != 0 && kw[i] != "" {
			names = append(names, kw[i])
		}
	}
	nb, err := dst.flagBitsFor(names)
	if err != nil {
		return 0, err
	}
	return b&upperMask | nb, nil
}

// CopyTo copies uids into dst (flags and internal date kept) and returns the
// new UIDs in the same order as the source UIDs that still existed. Files are
// hard-linked when possible (one inode, as Dovecot does), copied otherwise.
func (m *Mailbox) CopyTo(dst *Mailbox, uids []uint32) (srcUIDs, dstUIDs []uint32, err error) {
	if err := m.ensureLoaded(); err != nil {
		return nil, nil, err
	}
	if err := dst.ensureLoaded(); err != nil {
		return nil, nil, err
	}
	m.opMu.Lock()
	srcs := m.collect(uids)
	var ps []*pending
	var from []uint32
	for _, s := range srcs {
		bits, err := m.remapBits(dst, s.bits)
		if err != nil {
			m.opMu.Unlock()
			cleanupPending(ps)
			return nil, nil, err
		}
		unique := m.u.s.uniqueName(time.Now())
		tmp := dst.dir + "/tmp/" + unique
		if err := os.Link(s.path, tmp); err != nil {
			if isNotExist(err) {
				continue // expunged or renamed meanwhile
			}
			if err := copyFile(s.path, tmp, s.mtime); err != nil {
				m.opMu.Unlock()
				cleanupPending(ps)
				return nil, nil, err
			}
		}
		st, err := os.Stat(tmp)
		if err != nil {
			m.opMu.Unlock()
			cleanupPending(ps)
			return nil, nil, fmt.Errorf("maildir: copy: %w", err)
		}
		ps = append(ps, &pending{src: tmp, base: sizedBase(unique, st.Size(), s.vsize), bits: bits, mtime: s.mtime, vsize: s.vsize, done: make(chan struct{})})
		from = append(from, s.uid)
	}
	m.opMu.Unlock()
	if len(ps) == 0 {
		return nil, nil, nil
	}
	dst.commit(ps)
	for i, p := range ps {
		if p.err != nil {
			_ = os.Remove(p.src)
			if err == nil {
				err = p.err
			}
			continue
		}
		srcUIDs = append(srcUIDs, from[i])
		dstUIDs = append(dstUIDs, p.uid)
	}
	return srcUIDs, dstUIDs, err
}

func cleanupPending(ps []*pending) {
	for _, p := range ps {
		_ = os.Remove(p.src)
	}
}

// copyFile copies src to dst durably, keeping the mtime.
func copyFile(src, dst string, mtime int64) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("maildir: copy: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: copy: %w", err)
	}
	_, err = io.Copy(out, in)
	if err == nil {
		t := time.Unix(mtime, 0)
		err = os.Chtimes(dst, t, t)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(dst)
		return fmt.Errorf("maildir: copy: %w", err)
	}
	return nil
}

// MoveTo moves uids into dst atomically per message (RFC 6851 semantics):
// each file is renamed from this mailbox into dst, so at every moment it is in
// exactly one of them.
func (m *Mailbox) MoveTo(dst *Mailbox, uids []uint32) (srcUIDs, dstUIDs []uint32, err error) {
	if err := m.ensureLoaded(); err != nil {
		return nil, nil, err
	}
	if err := dst.ensureLoaded(); err != nil {
		return nil, nil, err
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	srcUIDs, dstUIDs, retry, err := m.moveOnce(dst, uids)
	if len(retry) > 0 && err == nil {
		// Renamed behind our back meanwhile: rescan and move those once more.
		m.wmu.Lock()
		err = m.syncW()
		m.wmu.Unlock()
		if err == nil {
			var s2, d2 []uint32
			s2, d2, _, err = m.moveOnce(dst, retry)
			srcUIDs = append(srcUIDs, s2...)
			dstUIDs = append(dstUIDs, d2...)
		}
	}
	m.maybeCompact()
	return srcUIDs, dstUIDs, err
}

// moveOnce renames the files into dst and drops them here; retry lists the
// UIDs whose file was not where the index said. opMu held.
func (m *Mailbox) moveOnce(dst *Mailbox, uids []uint32) (srcUIDs, dstUIDs, retry []uint32, err error) {
	srcs := m.collect(uids)
	var ps []*pending
	for _, s := range srcs {
		bits, err := m.remapBits(dst, s.bits)
		if err != nil {
			return nil, nil, nil, err
		}
		size := sizeField(baseOf(s.name), 'S')
		if size < 0 {
			st, err := os.Stat(s.path)
			if err != nil {
				retry = append(retry, s.uid)
				continue
			}
			size = st.Size()
		}
		unique := m.u.s.uniqueName(time.Now())
		ps = append(ps, &pending{src: s.path, srcDir: s.dir, base: sizedBase(unique, size, s.vsize), bits: bits, mtime: s.mtime, vsize: s.vsize, uid: s.uid, done: make(chan struct{})})
	}
	from := make([]uint32, len(ps))
	for i, p := range ps {
		from[i] = p.uid
	}
	if len(ps) > 0 {
		dst.commit(ps)
	}
	drop := map[uint32]bool{}
	for i, p := range ps {
		if p.err != nil {
			if errors.Is(p.err, os.ErrNotExist) {
				retry = append(retry, from[i])
			} else if err == nil {
				err = p.err
			}
			continue
		}
		drop[from[i]] = true
		srcUIDs = append(srcUIDs, from[i])
		dstUIDs = append(dstUIDs, p.uid)
	}
	m.mu.Lock()
	m.removeEntriesLocked(drop)
	m.mu.Unlock()
	return srcUIDs, dstUIDs, retry, err
}
