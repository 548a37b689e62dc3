package imap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postyard-mail/postyard/maildir"
)

// maxFilteredHeader caps the header read into memory for HEADER.FIELDS.
const maxFilteredHeader = 8 << 20

// Fetch answers FETCH and UID FETCH. Metadata comes from one snapshot, or,
// when each message is opened anyway, from Open (which spares the
// snapshot's check of the directories); content is streamed from each
// message's file. A body section without .PEEK sets \Seen first, so the
// FLAGS in the answer are the new ones.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	defer s.cmd()()
	v := s.sel
	items, err := v.resolve(numSet)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	needBody := len(options.BodySection) > 0 || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	needContent := needBody || options.Envelope || options.BodyStructure != nil
	markSeen := !v.readOnly && fetchSetsSeen(options)
	var snap *maildir.Snapshot
	if !needBody || markSeen {
		if snap, err = v.mbox.Snapshot(); err != nil {
			return s.mapErr("fetch", err)
		}
	}
	seenNow := make(map[uint32][]string)
	if markSeen {
		var unseen []uint32
		_ = forEachMessage(snap, items, func(it item, m *maildir.Message) error {
			if !slices.Contains(m.Flags, maildir.FlagSeen) {
				unseen = append(unseen, it.uid)
			}
			return nil
		}, nil)
		if len(unseen) > 0 {
			updated, _, err := v.mbox.StoreFlags(unseen, maildir.FlagsAdd, []string{maildir.FlagSeen}, 0)
			if err != nil {
				return s.mapErr("fetch: set \\Seen", err)
			}
			for _, m := range updated {
				v.own[m.UID] = m.ModSeq
				seenNow[m.UID] = m.Flags
				delete(v.flags, m.UID)
			}
		}
	}
	// Of a message expunged by someone else (its EXPUNGE not sent yet),
	// the UID is still known: a FETCH of UID alone is answered.
	onlyUID := options.UID && !needContent && !options.Flags && !options.InternalDate && !options.RFC822Size
	var gone bool
	missing := func(it item) {
		if !onlyUID {
			gone = true
			return
		}
		rw := w.CreateMessage(it.seq)
		rw.WriteUID(imap.UID(it.uid))
		if err := rw.Close(); err != nil {
			gone = true
		}
	}
	one := func(it item, m *maildir.Message) error {
		var msg *message
		key := cacheKey{mbox: v.mbox, uidValidity: v.uidValidity, uid: it.uid}
		var c cachedContent
		if options.Envelope || options.BodyStructure != nil {
			c.env, c.bs = s.srv.cache.get(key)
		}
		if needBody || (options.Envelope && c.env == nil) || (options.BodyStructure != nil && c.bs == nil) {
			rc, meta, err := v.mbox.Open(it.uid)
			if errors.Is(err, maildir.ErrNoSuchMessage) {
				missing(it)
				return nil
			}
			if err != nil {
				return s.mapErr("fetch: open", err)
			}
			defer rc.Close()
			if m == nil {
				m = &meta
			}
			// The index knows the size (CRLF): no need to seek to the end,
			// which for a converted bare-LF file means reading it all.
			msg = &message{r: rc, size: meta.Size, sized: true}
		}
		flags, changed := seenNow[it.uid]
		if !changed {
			flags = m.Flags
		}
		err := s.fetchOne(w, it, m, flags, changed, msg, &c, options)
		if c.computed {
			s.srv.cache.put(key, c.env, c.bs)
		}
		return err
	}
	if snap != nil {
		err = forEachMessage(snap, items, one, missing)
	} else {
		for _, it := range items {
			if err = one(it, nil); err != nil {
				break
			}
		}
	}
	if err != nil {
		return err
	}
	if gone {
		return s.mapErr("fetch", maildir.ErrNoSuchMessage)
	}
	return nil
}

func fetchSetsSeen(options *imap.FetchOptions) bool {
	for _, bs := range options.BodySection {
		if !bs.Peek {
			return true
		}
	}
	for _, bs := range options.BinarySection {
		if !bs.Peek {
			return true
		}
	}
	return false
}

// cachedContent is ENVELOPE and BODYSTRUCTURE of one message, from the
// cache or computed (then computed is set, for the cache).
type cachedContent struct {
	env      *imap.Envelope
	bs       imap.BodyStructure
	computed bool
}

// needsStructure says whether the FETCH needs the whole MIME tree rather
// than the top-level header.
func needsStructure(options *imap.FetchOptions, haveBS bool) bool {
	if options.BodyStructure != nil && !haveBS {
		return true
	}
	for _, bs := range options.BodySection {
		if len(bs.Part) > 0 {
			return true
		}
	}
	for _, bs := range options.BinarySection {
		if len(bs.Part) > 0 {
			return true
		}
	}
	for _, bs := range options.BinarySectionSize {
		if len(bs.Part) > 0 {
			return true
		}
	}
	return false
}

// fetchOne writes one message's FETCH response. Everything that can fail
// is computed before the response starts: once CreateMessage has begun a
// line, it must be finished.
func (s *session) fetchOne(w *imapserver.FetchWriter, it item, m *maildir.Message, flags []string, flagsChanged bool, msg *message, c *cachedContent, options *imap.FetchOptions) error {
	var (
		root     *part
		filtered = make(map[*imap.FetchItemBodySection][]byte)
		binaries = make(map[*imap.FetchItemBinarySection]binaryPart)
		binSizes = make(map[*imap.FetchItemBinarySectionSize]int64)
	)
	if msg != nil {
		var err error
		if needsStructure(options, c.bs != nil) {
			root, err = msg.structure()
		} else {
			root, err = msg.header()
		}
		if err != nil {
			return s.mapErr("fetch", err)
		}
		if options.Envelope && c.env == nil {
			c.env, c.computed = envelope(root.header), true
		}
		if options.BodyStructure != nil && c.bs == nil {
			c.bs, c.computed = root.bodyStructure(), true
		}
		for _, sec := range options.BodySection {
			if len(sec.HeaderFields) == 0 && len(sec.HeaderFieldsNot) == 0 {
				continue
			}
			start, end, ok := root.sectionRange(sec)
			if !ok {
				filtered[sec] = nil
				continue
			}
			raw, err := msg.read(start, min(end-start, maxFilteredHeader))
			if err != nil {
				return s.mapErr("fetch", err)
			}
			if len(sec.HeaderFields) > 0 {
				filtered[sec] = filterHeader(raw, sec.HeaderFields, false)
			} else {
				filtered[sec] = filterHeader(raw, sec.HeaderFieldsNot, true)
			}
		}
		for _, sec := range options.BinarySection {
			bp, err := msg.binary(root, sec.Part)
			if err != nil {
				return err
			}
			binaries[sec] = bp
		}
		for _, sec := range options.BinarySectionSize {
			bp, err := msg.binary(root, sec.Part)
			if err != nil {
				return err
			}
			binSizes[sec] = bp.size
		}
	}

	rw := w.CreateMessage(it.seq)
	if options.UID {
		rw.WriteUID(imap.UID(it.uid))
	}
	if options.Flags || flagsChanged {
		rw.WriteFlags(imapFlags(flags))
	}
	if options.InternalDate {
		rw.WriteInternalDate(m.InternalDate)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(m.Size)
	}
	if options.Envelope {
		rw.WriteEnvelope(c.env)
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(c.bs)
	}
	var copyErr error
	note := func(err error) {
		if err != nil && copyErr == nil {
			copyErr = err
		}
	}
	for _, sec := range options.BodySection {
		if data, ok := filtered[sec]; ok {
			start, end := partialRange(0, int64(len(data)), sec.Partial)
			wc := rw.WriteBodySection(sec, end-start)
			_, err := wc.Write(data[start:end])
			note(err)
			note(wc.Close())
			continue
		}
		start, end, ok := root.sectionRange(sec)
		if !ok {
			start, end = 0, 0
		}
		start, end = partialRange(start, end, sec.Partial)
		wc := rw.WriteBodySection(sec, end-start)
		note(msg.copyRange(wc, start, end))
		note(wc.Close())
	}
	for _, sec := range options.BinarySection {
		bp := binaries[sec]
		start, end := partialRange(0, bp.size, sec.Partial)
		wc := rw.WriteBinarySection(sec, end-start)
		note(bp.copy(wc, start, end))
		note(wc.Close())
	}
	for _, sec := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(sec, uint32(min(binSizes[sec], 1<<32-1)))
	}
	if err := rw.Close(); err != nil {
		return err
	}
	if copyErr != nil {
		// The literal was padded to its announced size; the client got a
		// well-formed but damaged section. Say so in the log.
		s.log.Error("imap: fetch: reading message failed", "uid", it.uid, "err", copyErr)
	}
	return nil
}

// partialRange applies <offset.size> to [start, end) (RFC 9051 §6.4.5).
func partialRange(start, end int64, p *imap.SectionPartial) (int64, int64) {
	if p == nil {
		return start, end
	}
	s := start + min(max(p.Offset, 0), end-start)
	return s, s + min(max(p.Size, 0), end-s)
}

// message is an open message file with its MIME tree scanned on demand.
type message struct {
	r     io.ReadSeeker
	size  int64 // file size, once known
	sized bool
	root  *part // the whole tree, once scanned
	top   *part // the top-level header only
}

func (m *message) fileSize() (int64, error) {
	if m.sized {
		return m.size, nil
	}
	n, err := m.r.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("message size: %w", err)
	}
	m.size, m.sized = n, true
	return n, nil
}

func (m *message) rewind(off int64) error {
	if _, err := m.r.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("seeking in message: %w", err)
	}
	return nil
}

// structure scans the whole MIME tree once.
func (m *message) structure() (*part, error) {
	if m.root != nil {
		return m.root, nil
	}
	if err := m.rewind(0); err != nil {
		return nil, err
	}
	root, err := parseStructure(m.r)
	if err != nil {
		return nil, err
	}
	m.root, m.size, m.sized = root, root.end, true
	return root, nil
}

// header scans only the top-level header (the tree, if already scanned).
func (m *message) header() (*part, error) {
	if m.root != nil {
		return m.root, nil
	}
	if m.top != nil {
		return m.top, nil
	}
	size, err := m.fileSize()
	if err != nil {
		return nil, err
	}
	if err := m.rewind(0); err != nil {
		return nil, err
	}
	top, err := parseHeaderOnly(m.r, size)
	if err != nil {
		return nil, err
	}
	m.top = top
	return top, nil
}

// section returns a reader of [start, end).
func (m *message) section(start, end int64) (io.Reader, error) {
	if err := m.rewind(start); err != nil {
		return nil, err
	}
	return io.LimitReader(m.r, max(end-start, 0)), nil
}

func (m *message) read(start, n int64) ([]byte, error) {
	r, err := m.section(start, start+n)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading message: %w", err)
	}
	return b, nil
}

// copyRange streams [start, end) to w, padding if the file is short.
func (m *message) copyRange(w io.Writer, start, end int64) error {
	if end <= start {
		return nil
	}
	r, err := m.section(start, end)
	if err != nil {
		return pad(w, end-start, err)
	}
	return copyExactly(w, r, end-start)
}

// copyExactly writes exactly n bytes from r to w: a literal's size is
// promised before its bytes, so a short read is padded with spaces.
func copyExactly(w io.Writer, r io.Reader, n int64) error {
	got, err := io.CopyN(w, r, n)
	if got < n {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return pad(w, n-got, err)
	}
	return nil
}

func pad(w io.Writer, n int64, cause error) error {
	buf := make([]byte, min(n, 4096))
	for i := range buf {
		buf[i] = ' '
	}
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return cause
}

// binaryPart is a BINARY section: where its bytes are and how to decode them.
type binaryPart struct {
	msg      *message
	prefix   [2]int64 // raw bytes written before the decoded ones (BINARY[] header)
	body     [2]int64 // the encoded range
	encoding string
	size     int64 // decoded size (prefix included)
}

// binary locates a BINARY section (RFC 3516) and measures its decoded size
// by decoding once; copy decodes again rather than buffering.
func (m *message) binary(root *part, path []int) (binaryPart, error) {
	bp := binaryPart{msg: m}
	t := root.locate(path)
	switch {
	case t == nil:
		return bp, nil
	case len(path) == 0 && !t.split && !t.isMessage():
		bp.prefix = [2]int64{0, t.bodyStart}
		bp.body = [2]int64{t.bodyStart, t.end}
		bp.encoding = t.header.Get("Content-Transfer-Encoding")
	case len(path) == 0:
		bp.body = [2]int64{0, t.end}
	case t.split || t.isMessage():
		bp.body = [2]int64{t.bodyStart, t.end}
	default:
		bp.body = [2]int64{t.bodyStart, t.end}
		bp.encoding = t.header.Get("Content-Transfer-Encoding")
	}
	if _, ok := decoder(bp.encoding, nil); !ok {
		return bp, errUnknownCTE
	}
	n, err := bp.write(io.Discard, 0, -1)
	if err != nil {
		return bp, err
	}
	bp.size = n
	return bp, nil
}

// write writes the decoded section from offset skip, at most limit bytes
// (-1: all). Decoding stops quietly at the first malformed byte, the same
// way in both passes.
func (bp *binaryPart) write(w io.Writer, skip, limit int64) (int64, error) {
	if bp.msg == nil {
		return 0, nil
	}
	var r io.Reader
	prefix, err := bp.msg.section(bp.prefix[0], bp.prefix[1])
	if err != nil {
		return 0, err
	}
	pre, err := io.ReadAll(prefix)
	if err != nil {
		return 0, fmt.Errorf("reading message: %w", err)
	}
	body, err := bp.msg.section(bp.body[0], bp.body[1])
	if err != nil {
		return 0, err
	}
	dec, _ := decoder(bp.encoding, body)
	r = io.MultiReader(bytes.NewReader(pre), dec)
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, r, skip); err != nil {
			return 0, nil
		}
	}
	if limit >= 0 {
		r = io.LimitReader(r, limit)
	}
	n, _ := io.Copy(w, r)
	return n, nil
}

// copy writes the decoded bytes [start, end) with exactly end-start bytes.
func (bp *binaryPart) copy(w io.Writer, start, end int64) error {
	if end <= start {
		return nil
	}
	cw := &countWriter{w: w}
	_, err := bp.write(cw, start, end-start)
	if cw.n < end-start {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return pad(w, end-start-cw.n, err)
	}
	return err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
