package maildir

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dovecot-uidlist, version 3 (what Dovecot 1.1 and later write):
//
//	3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1
//	25020 :1275660208.M1P2.host,S=1234,W=1260
//	25021 W1310 :1275660209.M3P4.host,S=1290
//
// The header holds UIDVALIDITY (V), the next UID (N) and the mailbox GUID (G);
// a record holds a UID, optional extension fields (S size, W RFC 822 size, ...)
// and, after ':', the base file name (without ":2,FLAGS"). Version 1 files
// ("1 UIDVALIDITY NEXTUID" and "UID FILENAME" lines) are read too. New records
// are only ever appended, in UID order; the file is rewritten (tmp, rename)
// only to drop the records of expunged messages, as Dovecot does.

const (
	uidlistName     = "dovecot-uidlist"
	uidlistLockName = "dovecot-uidlist.lock"
	keywordsName    = "dovecot-keywords"
	modseqName      = "postyard-modseq"
	// lockStaleAfter is Dovecot's MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT: a lock
	// file not touched for this long is overridden.
	lockStaleAfter = 2 * time.Minute
	// lockWait bounds how long an operation waits for someone else's lock.
	lockWait = 30 * time.Second
)

var errBadUidlist = errors.New("maildir: malformed dovecot-uidlist")

type uidlistHeader struct {
	version     int
	uidValidity uint32
	nextUID     uint32
	guid        string
}

type uidRecord struct {
	uid   uint32
	vsize int64 // W extension, -1 if absent
	base  string
}

// parseUidlistHeader parses the first line.
func parseUidlistHeader(line string) (uidlistHeader, error) {
	var h uidlistHeader
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return h, fmt.Errorf("%w: empty header", errBadUidlist)
	}
	v, err := strconv.Atoi(fields[0])
	if err != nil {
		return h, fmt.Errorf("%w: version %q", errBadUidlist, fields[0])
	}
	h.version = v
	switch v {
	case 1:
		if len(fields) < 3 {
			return h, fmt.Errorf("%w: short v1 header", errBadUidlist)
		}
		uv, err1 := strconv.ParseUint(fields[1], 10, 32)
		nu, err2 := strconv.ParseUint(fields[2], 10, 32)
		if err1 != nil || err2 != nil {
			return h, fmt.Errorf("%w: v1 header %q", errBadUidlist, line)
		}
		h.uidValidity, h.nextUID = uint32(uv), uint32(nu)
	case 3:
		for _, f := range fields[1:] {
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case 'V':
				n, err := strconv.ParseUint(f[1:], 10, 32)
				if err != nil {
					return h, fmt.Errorf("%w: %q", errBadUidlist, f)
				}
				h.uidValidity = uint32(n)
			case 'N':
				n, err := strconv.ParseUint(f[1:], 10, 32)
				if err != nil {
					return h, fmt.Errorf("%w: %q", errBadUidlist, f)
				}
				h.nextUID = uint32(n)
			case 'G':
				h.guid = f[1:]
			}
		}
	default:
		return h, fmt.Errorf("%w: unsupported version %d", errBadUidlist, v)
	}
	if h.uidValidity == 0 {
		return h, fmt.Errorf("%w: no UIDVALIDITY", errBadUidlist)
	}
	return h, nil
}

// parseUidRecord parses one record line of the given version.
func parseUidRecord(line string, version int) (uidRecord, error) {
	r := uidRecord{vsize: -1}
	sp := strings.IndexByte(line, ' ')
	if sp <= 0 {
		return r, fmt.Errorf("%w: record %q", errBadUidlist, line)
	}
	n, err := strconv.ParseUint(line[:sp], 10, 32)
	if err != nil || n == 0 {
		return r, fmt.Errorf("%w: record uid %q", errBadUidlist, line[:sp])
	}
	r.uid = uint32(n)
	rest := line[sp+1:]
	if version == 1 {
		r.base = baseOf(strings.TrimSpace(rest))
	} else {
		for {
			rest = strings.TrimLeft(rest, " ")
			if rest == "" {
				return r, fmt.Errorf("%w: record without file name %q", errBadUidlist, line)
			}
			if rest[0] == ':' {
				r.base = baseOf(rest[1:])
				break
			}
			end := strings.IndexByte(rest, ' ')
			if end < 0 {
				return r, fmt.Errorf("%w: record without ':' %q", errBadUidlist, line)
			}
			if rest[0] == 'W' {
				if v, err := strconv.ParseInt(rest[1:end], 10, 64); err == nil && v >= 0 {
					r.vsize = v
				}
			}
			rest = rest[end:]
		}
	}
	if r.base == "" || strings.ContainsAny(r.base, "/\x00") {
		return r, fmt.Errorf("%w: record file name %q", errBadUidlist, line)
	}
	return r, nil
}

// uidlistData is a parsed dovecot-uidlist.
type uidlistData struct {
	hdr     uidlistHeader
	records []uidRecord // in file order (UIDs increasing)
	maxUID  uint32
	// complete is false when the file ends in a partial line (a writer died
	// mid-append); the partial line is ignored and the file must be rewritten
	// before anything is appended to it.
	complete bool
	size     int64
}

// parseUidlist parses a whole file. Malformed record lines are skipped (and
// make complete false, so the file is rewritten clean); a malformed header is
// an error.
func parseUidlist(data []byte) (*uidlistData, error) {
	d := &uidlistData{complete: true, size: int64(len(data))}
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return nil, fmt.Errorf("%w: no header line", errBadUidlist)
	}
	hdr, err := parseUidlistHeader(string(data[:nl]))
	if err != nil {
		return nil, err
	}
	d.hdr = hdr
	s := string(data[nl+1:]) // one allocation; record names are substrings of it
	var prev uint32
	for len(s) > 0 {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			d.complete = false
			break
		}
		line := s[:i]
		s = s[i+1:]
		if line == "" {
			continue
		}
		r, err := parseUidRecord(line, hdr.version)
		if err != nil || r.uid <= prev {
			d.complete = false
			continue
		}
		prev = r.uid
		d.records = append(d.records, r)
	}
	d.maxUID = prev
	return d, nil
}

// nextUID is the UID the next new message gets.
func (d *uidlistData) nextUID() uint32 {
	n := d.hdr.nextUID
	if d.maxUID >= n {
		n = d.maxUID + 1
	}
	if n == 0 {
		n = 1
	}
	return n
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func formatUidlistHeader(uidValidity, nextUID uint32, guid string) string {
	return fmt.Sprintf("3 V%d N%d G%s\n", uidValidity, nextUID, guid)
}

func appendUidRecord(buf []byte, uid uint32, base string, vsize int64) []byte {
	buf = strconv.AppendUint(buf, uint64(uid), 10)
	if vsize >= 0 && sizeField(base, 'W') < 0 {
		buf = append(buf, " W"...)
		buf = strconv.AppendInt(buf, vsize, 10)
	}
	buf = append(buf, " :"...)
	buf = append(buf, base...)
	return append(buf, '\n')
}

// dotlock is Dovecot's dovecot-uidlist.lock: created exclusively, holding
// "PID:HOST"; overridden when it has not changed for lockStaleAfter or names a
// dead process of this host.
type dotlock struct {
	path string
	done bool // released
}

func acquireDotlock(dir, name, host string, pid int) (*dotlock, error) {
	path := filepath.Join(dir, name)
	// The lock appears with its content already in it (a file linked to the
	// lock name, as Dovecot does), so a process killed at any point never
	// leaves an empty lock that nobody could judge stale. That file is kept
	// in tmp/ for the next lock of this process (a leftover is removed with
	// tmp/'s other leftovers).
	tmpDir := filepath.Join(dir, "tmp")
	if _, err := os.Stat(tmpDir); err != nil {
		tmpDir = dir
	}
	tmp := filepath.Join(tmpDir, fmt.Sprintf(".temp.%s.%d.%s", host, pid, name))
	content := strconv.Itoa(pid) + ":" + host
	deadline := time.Now().Add(lockWait)
	sleep := 100 * time.Microsecond
	for {
		err := os.Link(tmp, path)
		if err == nil {
			return &dotlock{path: path}, nil
		}
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(tmp); serr != nil {
				// Written aside and renamed: a concurrent link never sees it empty.
				aside := tmp + "." + newGUID()[:12]
				if err := os.WriteFile(aside, []byte(content), 0o600); err != nil {
					return nil, fmt.Errorf("maildir: lock %s: %w", path, err)
				}
				if err := os.Rename(aside, tmp); err != nil {
					_ = os.Remove(aside)
					return nil, fmt.Errorf("maildir: lock %s: %w", path, err)
				}
				continue
			}
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("maildir: lock %s: %w", path, err)
		}
		if lockIsStale(path, host) {
			// Remove only the lock we judged stale: a rename-aside keeps two
			// processes from removing each other's fresh locks.
			aside := path + ".stale." + strconv.Itoa(pid)
			if os.Rename(path, aside) == nil {
				_ = os.Remove(aside)
			}
			continue
		}
		if time.Now().After(deadline) {
			holder, _ := os.ReadFile(path)
			return nil, fmt.Errorf("maildir: lock %s: held by another process (%q) for over %s", path, holder, lockWait)
		}
		time.Sleep(sleep)
		if sleep < 20*time.Millisecond {
			sleep *= 2
		}
	}
}

func lockIsStale(path, host string) bool {
	st, err := os.Stat(path)
	if err != nil {
		return false // gone already: retry the create
	}
	if time.Since(st.ModTime()) > lockStaleAfter {
		return true
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	pidStr, lhost, ok := strings.Cut(string(data), ":")
	if !ok || lhost != host {
		return false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return false
	}
	// A process of this host that no longer exists cannot release its lock.
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	return false
}

func (l *dotlock) release() error {
	if l.done {
		return nil
	}
	l.done = true
	if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("maildir: unlock %s: %w", l.path, err)
	}
	return nil
}

// replace writes content to a temporary file and renames it over target
// while the lock is held; durable fsyncs the data and the directory. (Dovecot
// writes the new content into the lock file itself and renames that; a process
// killed half-way would then leave a lock without its "PID:HOST", which others
// could only judge stale after two minutes.)
func (l *dotlock) replace(target string, content []byte, durable bool) error {
	if err := writeFileAtomic(target, content, durable); err != nil {
		return fmt.Errorf("maildir: rewrite %s: %w", target, err)
	}
	return nil
}

// fileID identifies one version of a file that is only appended to or
// replaced by rename: a rename changes the inode, an append the size.
type fileID struct {
	ino  uint64
	size int64
}

func fileIDOf(f *os.File) (fileID, error) {
	st, err := f.Stat()
	if err != nil {
		return fileID{}, fmt.Errorf("maildir: stat %s: %w", f.Name(), err)
	}
	return fileIDFromInfo(st), nil
}

func fileIDFromInfo(st os.FileInfo) fileID {
	id := fileID{size: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.ino = sys.Ino
	}
	return id
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("maildir: fsync %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("maildir: fsync %s: %w", dir, err)
	}
	return nil
}
