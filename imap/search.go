package imap

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"

	gomessage "github.com/emersion/go-message"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postyard-mail/postyard/maildir"
)

// searchChunk is how much decoded text is matched at a time.
const searchChunk = 64 << 10

// wordDecoder decodes RFC 2047 words in any charset go-message knows.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// Search answers SEARCH and UID SEARCH (with ESEARCH and SEARCHRES return
// options). Cheap keys (numbers, flags, dates, sizes) are checked from the
// snapshot; the message is opened only for header and text keys.
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	defer s.cmd()()
	v := s.sel
	q, err := compileSearch(v, criteria)
	if err != nil {
		return nil, err
	}
	snap, err := v.mbox.Snapshot()
	if err != nil {
		return nil, s.mapErr("search", err)
	}
	items := make([]item, len(v.known))
	for i, uid := range v.known {
		items[i] = item{seq: uint32(i + 1), uid: uid}
	}
	var (
		data  imap.SearchData
		seqs  imap.SeqSet
		uids  imap.UIDSet
		mErr  error
		count uint32
	)
	err = forEachMessage(snap, items, func(it item, m *maildir.Message) error {
		sm := &searchMsg{v: v, it: it, meta: m}
		ok := q.match(sm)
		sm.close()
		if sm.err != nil {
			mErr = sm.err
		}
		if !ok {
			return nil
		}
		uids.AddNum(imap.UID(it.uid))
		num := it.uid
		if kind == imapserver.NumKindSeq {
			seqs.AddNum(it.seq)
			num = it.seq
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		count++
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	if mErr != nil {
		// A message that could not be read does not match; the rest does.
		s.log.Warn("imap: search: reading a message failed", "err", mErr)
	}
	data.Count = count
	if kind == imapserver.NumKindSeq {
		data.All = seqs
	} else {
		data.All = uids
	}
	if options.ReturnSave {
		v.searchRes = uids
	}
	return &data, nil
}

// query is a compiled search criteria node: number sets resolved once.
type query struct {
	c      *imap.SearchCriteria
	seqs   [][]uint32 // each sorted: the message's seq must be in all
	uids   [][]uint32
	not    []*query
	or     [][2]*query
	needle searchNeedles
}

// searchNeedles are the lower-cased strings a node looks for.
type searchNeedles struct {
	header []imap.SearchCriteriaHeaderField // values lower-cased
	body   []string
	text   []string
}

func compileSearch(v *view, c *imap.SearchCriteria) (*query, error) {
	q := &query{c: c}
	for _, set := range c.SeqNum {
		items, err := v.resolve(set)
		if err != nil {
			return nil, err
		}
		l := make([]uint32, len(items))
		for i, it := range items {
			l[i] = it.seq
		}
		q.seqs = append(q.seqs, l)
	}
	for _, set := range c.UID {
		items, err := v.resolve(set)
		if err != nil {
			return nil, err
		}
		q.uids = append(q.uids, itemUIDs(items))
	}
	for i := range c.Not {
		n, err := compileSearch(v, &c.Not[i])
		if err != nil {
			return nil, err
		}
		q.not = append(q.not, n)
	}
	for i := range c.Or {
		a, err := compileSearch(v, &c.Or[i][0])
		if err != nil {
			return nil, err
		}
		b, err := compileSearch(v, &c.Or[i][1])
		if err != nil {
			return nil, err
		}
		q.or = append(q.or, [2]*query{a, b})
	}
	for _, h := range c.Header {
		q.needle.header = append(q.needle.header, imap.SearchCriteriaHeaderField{Key: h.Key, Value: strings.ToLower(h.Value)})
	}
	for _, b := range c.Body {
		q.needle.body = append(q.needle.body, strings.ToLower(b))
	}
	for _, t := range c.Text {
		q.needle.text = append(q.needle.text, strings.ToLower(t))
	}
	return q, nil
}

// match reports whether the message satisfies every key of q.
func (q *query) match(m *searchMsg) bool {
	c := q.c
	for _, l := range q.seqs {
		if _, ok := slices.BinarySearch(l, m.it.seq); !ok {
			return false
		}
	}
	for _, l := range q.uids {
		if _, ok := slices.BinarySearch(l, m.it.uid); !ok {
			return false
		}
	}
	for _, f := range c.Flag {
		if !hasFlag(m.meta.Flags, string(f)) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if hasFlag(m.meta.Flags, string(f)) {
			return false
		}
	}
	if c.Larger > 0 && m.meta.Size <= c.Larger {
		return false
	}
	if c.Smaller > 0 && m.meta.Size >= c.Smaller {
		return false
	}
	if !c.Since.IsZero() || !c.Before.IsZero() {
		if !inDateRange(m.meta.InternalDate, c.Since, c.Before) {
			return false
		}
	}
	for _, n := range q.not {
		if n.match(m) {
			return false
		}
	}
	for _, or := range q.or {
		if !or[0].match(m) && !or[1].match(m) {
			return false
		}
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		if !inDateRange(m.sentDate(), c.SentSince, c.SentBefore) {
			return false
		}
	}
	for _, h := range q.needle.header {
		if !m.headerContains(h.Key, h.Value) {
			return false
		}
	}
	for _, b := range q.needle.body {
		if !m.bodyContains(b) {
			return false
		}
	}
	for _, t := range q.needle.text {
		if !m.headerTextContains(t) && !m.bodyContains(t) {
			return false
		}
	}
	return true
}

// hasFlag compares case-insensitively (RFC 9051 §2.3.2); \Recent is never set.
func hasFlag(flags []string, f string) bool {
	return slices.ContainsFunc(flags, func(x string) bool { return strings.EqualFold(x, f) })
}

// inDateRange compares calendar dates, disregarding time and time zone
// (RFC 9051 §6.4.4): since ≤ date < before.
func inDateRange(t, since, before time.Time) bool {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	day := func(x time.Time) time.Time { return time.Date(x.Year(), x.Month(), x.Day(), 0, 0, 0, 0, time.UTC) }
	if !since.IsZero() && d.Before(day(since)) {
		return false
	}
	if !before.IsZero() && !d.Before(day(before)) {
		return false
	}
	return true
}

// searchMsg is one message under test; its content is read on demand.
type searchMsg struct {
	v    *view
	it   item
	meta *maildir.Message

	opened bool
	rc     io.ReadSeekCloser
	msg    *message
	err    error

	headerText string          // decoded header, lower-cased, once built
	body       map[string]bool // needle → found in a text part
}

func (m *searchMsg) open() *message {
	if m.opened {
		return m.msg
	}
	m.opened = true
	rc, _, err := m.v.mbox.Open(m.it.uid)
	if err != nil {
		if !errors.Is(err, maildir.ErrNoSuchMessage) {
			m.err = err
		}
		return nil
	}
	m.rc = rc
	m.msg = &message{r: rc, size: m.meta.Size, sized: true}
	return m.msg
}

func (m *searchMsg) close() {
	if m.rc != nil {
		_ = m.rc.Close()
	}
}

func (m *searchMsg) top() *part {
	msg := m.open()
	if msg == nil {
		return nil
	}
	p, err := msg.header()
	if err != nil {
		m.err = err
		return nil
	}
	return p
}

// sentDate is the Date header, or the internal date if it has none.
func (m *searchMsg) sentDate() time.Time {
	if p := m.top(); p != nil {
		h := mail.Header{Header: gomessage.Header{Header: p.header}}
		if t, err := h.Date(); err == nil && !t.IsZero() {
			return t
		}
	}
	return m.meta.InternalDate
}

func decodeWords(v string) string {
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// headerContains: a field named key whose decoded value contains value
// (lower case); an empty value asks only for the field.
func (m *searchMsg) headerContains(key, value string) bool {
	p := m.top()
	if p == nil {
		return false
	}
	for f := p.header.FieldsByKey(key); f.Next(); {
		if value == "" || strings.Contains(strings.ToLower(decodeWords(f.Value())), value) {
			return true
		}
	}
	return false
}

func (m *searchMsg) headerTextContains(needle string) bool {
	p := m.top()
	if p == nil {
		return false
	}
	if m.headerText == "" {
		var b strings.Builder
		for f := p.header.Fields(); f.Next(); {
			b.WriteString(f.Key())
			b.WriteString(": ")
			b.WriteString(decodeWords(f.Value()))
			b.WriteString("\n")
		}
		m.headerText = strings.ToLower(b.String())
	}
	return strings.Contains(m.headerText, needle)
}

// bodyContains looks for needle in the decoded text parts.
func (m *searchMsg) bodyContains(needle string) bool {
	if found, ok := m.body[needle]; ok {
		return found
	}
	if m.body == nil {
		m.body = make(map[string]bool)
	}
	found := false
	msg := m.open()
	if msg != nil {
		root, err := msg.structure()
		if err != nil {
			m.err = err
		} else {
			found = m.searchParts(msg, root, needle)
		}
	}
	m.body[needle] = found
	return found
}

func (m *searchMsg) searchParts(msg *message, p *part, needle string) bool {
	if p.split || p.isMessage() {
		for _, c := range p.children {
			if p.isMessage() {
				// The embedded message's header is text of the body too.
				raw, err := msg.read(c.start, min(c.bodyStart-c.start, maxFilteredHeader))
				if err == nil && strings.Contains(strings.ToLower(decodeWords(string(raw))), needle) {
					return true
				}
			}
			if m.searchParts(msg, c, needle) {
				return true
			}
		}
		return false
	}
	if !strings.HasPrefix(p.mediaType, "text/") {
		return false
	}
	body, err := msg.section(p.bodyStart, p.end)
	if err != nil {
		m.err = err
		return false
	}
	dec, ok := decoder(p.header.Get("Content-Transfer-Encoding"), body)
	if !ok {
		dec = body
	}
	if cs := strings.ToLower(p.params["charset"]); cs != "" && cs != "utf-8" && cs != "us-ascii" {
		if r, err := charset.Reader(cs, dec); err == nil {
			dec = r
		}
	}
	return streamContains(dec, needle)
}

// streamContains matches a lower-cased needle against text read in chunks,
// lower-casing each chunk and keeping an overlap of len(needle)-1 bytes.
func streamContains(r io.Reader, needle string) bool {
	if needle == "" {
		return true
	}
	nb := []byte(needle)
	buf := make([]byte, searchChunk)
	chunk := make([]byte, 0, searchChunk+utf8.UTFMax)
	var carry, window []byte
	for {
		n, err := io.ReadFull(r, buf)
		chunk = append(append(chunk[:0], carry...), buf[:n]...)
		// A rune cut by the chunk boundary waits for the next round.
		cut := len(chunk)
		if err == nil {
			for i := 1; i <= utf8.UTFMax && i <= len(chunk); i++ {
				if utf8.RuneStart(chunk[len(chunk)-i]) {
					if !utf8.FullRune(chunk[len(chunk)-i:]) {
						cut = len(chunk) - i
					}
					break
				}
			}
		}
		window = append(window, bytes.ToLower(chunk[:cut])...)
		if bytes.Contains(window, nb) {
			return true
		}
		if k := len(window) - (len(nb) - 1); k > 0 {
			window = append(window[:0], window[k:]...)
		}
		carry = append(carry[:0], chunk[cut:]...)
		if err != nil {
			return false
		}
	}
}
