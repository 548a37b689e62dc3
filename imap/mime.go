package imap

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/quotedprintable"
	"strings"
	"sync"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Limits of the MIME scanner: past them the rest is treated as plain content.
const (
	maxMIMEDepth   = 32
	maxMIMEParts   = 5000
	maxHeaderBytes = 256 << 10 // header bytes parsed per entity; the rest is skipped
)

// part is one MIME entity of a message, located by byte offsets, so any
// section can be streamed from the file without holding the message.
type part struct {
	start     int64 // first byte of the header
	bodyStart int64 // first byte of the body (after the blank line)
	// end is the end of the body: the line break before a boundary
	// belongs to the boundary (RFC 2046 §5.1.1).
	end       int64
	lines     int64 // line breaks in the body
	header    textproto.Header
	mediaType string // lower case "type/subtype", defaulted (RFC 2045 §5.2)
	params    map[string]string
	// split says the body was scanned as a multipart; children are its
	// parts. For message/rfc822, children holds the embedded message.
	split    bool
	children []*part
}

func (p *part) isMessage() bool {
	return (p.mediaType == "message/rfc822" || p.mediaType == "message/global") && len(p.children) == 1
}

// scanner reads a message line by line, counting offsets and line breaks.
type scanner struct {
	br      *bufio.Reader
	off     int64 // offset of the next unread byte
	nl      int64 // line breaks read so far
	bol     bool  // the next byte starts a line
	prevEOL int   // length of the last complete line's break: 2 (CRLF), 1 (LF), 0 (none yet)
	lastCR  bool  // the last piece read ended with CR
	parts   int
	err     error // first read error other than EOF
}

// readers recycles the scanners' buffers: FETCH ENVELOPE of a page of
// messages scans one header per message.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 8192) }}

func newScanner(r io.Reader) *scanner {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return &scanner{br: br, bol: true}
}

// release gives the buffer back; the scanner is not used afterwards.
func (sc *scanner) release() {
	sc.br.Reset(nil)
	readers.Put(sc.br)
	sc.br = nil
}

// line returns the next line, or the next piece of a line longer than the
// buffer; bol reports whether it starts a line. nil at the end.
func (sc *scanner) line() (b []byte, bol bool) {
	b, err := sc.br.ReadSlice('\n')
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) && !errors.Is(err, io.EOF) && sc.err == nil {
		sc.err = err
	}
	if len(b) == 0 {
		return nil, sc.bol
	}
	bol = sc.bol
	sc.off += int64(len(b))
	if b[len(b)-1] == '\n' {
		sc.nl++
		sc.bol = true
		sc.prevEOL = 1
		if (len(b) >= 2 && b[len(b)-2] == '\r') || (len(b) == 1 && sc.lastCR) {
			sc.prevEOL = 2
		}
	} else {
		sc.bol = false
	}
	sc.lastCR = b[len(b)-1] == '\r'
	return b, bol
}

// Kinds of place where scanning an entity stops.
const (
	stopEOF   = iota
	stopDelim // "--boundary"
	stopClose // "--boundary--"
)

// stop is where an entity's body ended.
type stop struct {
	kind  int
	depth int   // which of the enclosing boundaries (index) was found
	at    int64 // end of the content before the boundary line
	nl    int64 // line breaks up to at
}

// matchBoundary reports whether line is a delimiter or close delimiter of
// one of bounds (innermost first), allowing trailing white space.
func matchBoundary(line []byte, bounds []string) (kind, depth int) {
	if len(bounds) == 0 || len(line) < 3 || line[0] != '-' || line[1] != '-' {
		return stopEOF, 0
	}
	rest := bytes.TrimRight(line[2:], " \t\r\n")
	for i := len(bounds) - 1; i >= 0; i-- {
		b := bounds[i]
		if !bytes.HasPrefix(rest, []byte(b)) {
			continue
		}
		switch tail := rest[len(b):]; {
		case len(tail) == 0:
			return stopDelim, i
		case len(tail) == 2 && tail[0] == '-' && tail[1] == '-':
			return stopClose, i
		}
	}
	return stopEOF, 0
}

// skipTo reads content lines until a boundary of bounds or the end.
func (sc *scanner) skipTo(bounds []string) stop {
	for {
		lineStart, nlBefore, eol := sc.off, sc.nl, sc.prevEOL
		b, bol := sc.line()
		if b == nil {
			return stop{kind: stopEOF, at: sc.off, nl: sc.nl}
		}
		if !bol {
			continue
		}
		if kind, depth := matchBoundary(b, bounds); kind != stopEOF {
			st := stop{kind: kind, depth: depth, at: lineStart - int64(eol), nl: nlBefore}
			if eol > 0 {
				st.nl--
			}
			return st
		}
	}
}

// entity scans one MIME entity: its header, then its body up to a boundary
// of bounds or the end of the message.
func (sc *scanner) entity(bounds []string, depth int, defType string) (*part, stop) {
	sc.parts++
	p := &part{start: sc.off}
	var raw []byte
	headerDone, atEOF := false, false
	for !headerDone {
		lineStart, nlBefore, eol := sc.off, sc.nl, sc.prevEOL
		b, bol := sc.line()
		switch {
		case b == nil:
			headerDone, atEOF = true, true
		case bol && (string(b) == "\r\n" || string(b) == "\n"):
			headerDone = true
		case bol:
			if kind, d := matchBoundary(b, bounds); kind != stopEOF {
				// A boundary inside the header: the entity has no body.
				st := stop{kind: kind, depth: d, at: max(lineStart-int64(eol), p.start), nl: nlBefore}
				if eol > 0 && st.at < lineStart {
					st.nl--
				}
				p.header = parseHeader(raw)
				p.mediaType, p.params = contentType(p.header, defType)
				p.bodyStart, p.end = st.at, st.at
				return p, st
			}
			fallthrough
		default:
			if len(raw) < maxHeaderBytes {
				raw = append(raw, b...)
			}
		}
	}
	p.header = parseHeader(raw)
	p.mediaType, p.params = contentType(p.header, defType)
	p.bodyStart = sc.off
	nlBody := sc.nl
	if atEOF {
		// The message ended inside the header: no body.
		p.end = sc.off
		return p, stop{kind: stopEOF, at: sc.off, nl: sc.nl}
	}
	var st stop

	typ, _, _ := strings.Cut(p.mediaType, "/")
	deep := depth >= maxMIMEDepth || sc.parts >= maxMIMEParts
	switch {
	case typ == "multipart" && p.params["boundary"] != "" && !deep:
		p.split = true
		inner := append(bounds[:len(bounds):len(bounds)], p.params["boundary"])
		me := len(inner) - 1
		childType := "text/plain"
		if p.mediaType == "multipart/digest" {
			childType = "message/rfc822" // RFC 2046 §5.1.5
		}
		st = sc.skipTo(inner) // the preamble
		for st.kind == stopDelim && st.depth == me {
			var child *part
			child, st = sc.entity(inner, depth+1, childType)
			p.children = append(p.children, child)
			if sc.parts >= maxMIMEParts && st.kind == stopDelim && st.depth == me {
				// Too many parts: the rest is one last, plain part.
				last := &part{start: sc.off, bodyStart: sc.off, mediaType: "application/octet-stream"}
				st = sc.skipTo(inner[:me])
				last.end, last.lines = max(st.at, last.bodyStart), 0
				p.children = append(p.children, last)
				break
			}
		}
		if st.kind == stopClose && st.depth == me {
			st = sc.skipTo(bounds) // the epilogue
		}
	case (p.mediaType == "message/rfc822" || p.mediaType == "message/global") && !deep:
		var child *part
		child, st = sc.entity(bounds, depth+1, "text/plain")
		p.children = []*part{child}
	default:
		st = sc.skipTo(bounds)
	}
	p.end = max(st.at, p.bodyStart)
	if p.end > p.bodyStart {
		p.lines = max(st.nl-nlBody, 0)
	}
	return p, st
}

// parseStructure scans a whole message.
func parseStructure(r io.Reader) (*part, error) {
	sc := newScanner(r)
	defer sc.release()
	root, _ := sc.entity(nil, 0, "text/plain")
	if sc.err != nil {
		return nil, fmt.Errorf("reading message: %w", sc.err)
	}
	return root, nil
}

// parseHeaderOnly scans the top-level header; end is set to size.
func parseHeaderOnly(r io.Reader, size int64) (*part, error) {
	sc := newScanner(r)
	defer sc.release()
	var raw []byte
	for {
		b, bol := sc.line()
		if b == nil || (bol && (string(b) == "\r\n" || string(b) == "\n")) {
			break
		}
		if len(raw) < maxHeaderBytes {
			raw = append(raw, b...)
		}
	}
	if sc.err != nil {
		return nil, fmt.Errorf("reading message header: %w", sc.err)
	}
	p := &part{bodyStart: sc.off, end: max(size, sc.off), header: parseHeader(raw)}
	p.mediaType, p.params = contentType(p.header, "text/plain")
	return p, nil
}

// headerField is one field of a raw header, folded lines included.
type headerField struct {
	name string // as written, before the colon
	raw  []byte // the whole field with its line breaks
}

// splitHeader cuts raw header bytes (without the blank line) into fields.
// Lines without a colon and stray continuation lines are dropped.
func splitHeader(raw []byte) []headerField {
	var out []headerField
	for len(raw) > 0 {
		// One field: a first line, then lines starting with SP or HT.
		end := 0
		for {
			i := bytes.IndexByte(raw[end:], '\n')
			if i < 0 {
				end = len(raw)
				break
			}
			end += i + 1
			if end >= len(raw) || (raw[end] != ' ' && raw[end] != '\t') {
				break
			}
		}
		field := raw[:end]
		raw = raw[end:]
		if field[0] == ' ' || field[0] == '\t' {
			continue
		}
		colon := bytes.IndexByte(field, ':')
		if colon <= 0 {
			continue
		}
		name := strings.TrimRight(string(field[:colon]), " \t")
		if name == "" || strings.ContainsAny(name, " \t\r\n") {
			continue
		}
		out = append(out, headerField{name: name, raw: field})
	}
	return out
}

// parseHeader turns raw header bytes into a header, leniently: a malformed
// line costs that line, not the whole header.
func parseHeader(raw []byte) textproto.Header {
	var h textproto.Header
	fields := splitHeader(raw)
	// textproto.Header.Add prepends; add in reverse to keep the order.
	for i := len(fields) - 1; i >= 0; i-- {
		f := fields[i]
		v := f.raw[bytes.IndexByte(f.raw, ':')+1:]
		h.Add(f.name, unfold(v))
	}
	return h
}

var unfolder = strings.NewReplacer("\r\n", "", "\n", "", "\r", "")

// unfold joins folded lines and trims the value (RFC 5322 §2.2.3).
func unfold(v []byte) string {
	v = bytes.TrimSpace(v)
	if bytes.ContainsAny(v, "\r\n") {
		return strings.TrimSpace(unfolder.Replace(string(v)))
	}
	return string(v)
}

// contentType is the entity's media type and parameters, defType when it
// has none or a broken one.
func contentType(h textproto.Header, defType string) (string, map[string]string) {
	v := h.Get("Content-Type")
	if v != "" {
		mt, params, err := mime.ParseMediaType(v)
		if mt != "" && strings.Contains(mt, "/") && (err == nil || errors.Is(err, mime.ErrInvalidMediaParameter)) {
			return strings.ToLower(mt), params
		}
	}
	if defType == "text/plain" {
		return defType, map[string]string{"charset": "us-ascii"}
	}
	return defType, nil
}

// locate finds the entity a section part path names (RFC 9051 §6.4.5):
// numbers index the parts of a multipart; the parts of a message/rfc822 are
// those of the message it carries; a single part is part 1 of itself.
func (root *part) locate(path []int) *part {
	cur := root
	for _, n := range path {
		cur = step(root, cur, n)
		if cur == nil {
			return nil
		}
	}
	return cur
}

func step(root, e *part, n int) *part {
	switch {
	case e.split:
		if n < 1 || n > len(e.children) {
			return nil
		}
		return e.children[n-1]
	case e != root && e.isMessage():
		return step(root, e.children[0], n)
	case n == 1:
		return e
	}
	return nil
}

// sectionRange is the byte range of a BODY section, or ok=false when the
// section names no part (the answer is then empty).
func (root *part) sectionRange(sec *imap.FetchItemBodySection) (start, end int64, ok bool) {
	t := root.locate(sec.Part)
	if t == nil {
		return 0, 0, false
	}
	m := t
	if len(sec.Part) > 0 && t.isMessage() {
		m = t.children[0]
	}
	switch sec.Specifier {
	case imap.PartSpecifierNone:
		if len(sec.Part) == 0 {
			return 0, root.end, true
		}
		return t.bodyStart, t.end, true
	case imap.PartSpecifierMIME:
		return t.start, t.bodyStart, true
	case imap.PartSpecifierText:
		return m.bodyStart, m.end, true
	default: // HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT
		return m.start, m.bodyStart, true
	}
}

// filterHeader keeps (or drops, with not) the named fields of a raw header
// and ends the result with the blank line (RFC 9051 §6.4.5).
func filterHeader(raw []byte, names []string, not bool) []byte {
	var out []byte
	for _, f := range splitHeader(raw) {
		match := false
		for _, n := range names {
			if strings.EqualFold(n, f.name) {
				match = true
				break
			}
		}
		if match != not {
			out = append(out, f.raw...)
			if !bytes.HasSuffix(f.raw, []byte("\n")) {
				out = append(out, '\r', '\n')
			}
		}
	}
	return append(out, '\r', '\n')
}

// bodyStructure renders the scanned tree for BODYSTRUCTURE (RFC 9051 §7.5.2).
func (p *part) bodyStructure() imap.BodyStructure {
	h := gomessage.Header{Header: p.header}
	typ, sub, _ := strings.Cut(p.mediaType, "/")
	if p.split {
		bs := &imap.BodyStructureMultiPart{
			Subtype: sub,
			Extended: &imap.BodyStructureMultiPartExt{
				Params:      p.params,
				Disposition: disposition(h),
				Language:    language(h),
				Location:    h.Get("Content-Location"),
			},
		}
		for _, c := range p.children {
			bs.Children = append(bs.Children, c.bodyStructure())
		}
		if len(bs.Children) == 0 {
			// The grammar wants at least one part.
			bs.Children = []imap.BodyStructure{&imap.BodyStructureSinglePart{
				Type: "text", Subtype: "plain", Params: map[string]string{"charset": "us-ascii"},
				Encoding: "7bit", Text: &imap.BodyStructureText{}, Extended: &imap.BodyStructureSinglePartExt{},
			}}
		}
		return bs
	}
	if typ == "multipart" || ((typ == "message") && (sub == "rfc822" || sub == "global") && !p.isMessage()) {
		// Not scanned as such (no boundary, too deep): plain content.
		typ, sub = "application", "octet-stream"
	}
	enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	if enc == "" {
		enc = "7bit"
	}
	bs := &imap.BodyStructureSinglePart{
		Type:        typ,
		Subtype:     sub,
		Params:      p.params,
		ID:          h.Get("Content-Id"),
		Description: h.Get("Content-Description"),
		Encoding:    enc,
		Size:        uint32(min(p.end-p.bodyStart, math.MaxUint32)),
		Extended: &imap.BodyStructureSinglePartExt{
			Disposition: disposition(h),
			Language:    language(h),
			Location:    h.Get("Content-Location"),
		},
	}
	switch {
	case typ == "message" && p.isMessage():
		c := p.children[0]
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      envelope(c.header),
			BodyStructure: c.bodyStructure(),
			NumLines:      p.lines,
		}
	case typ == "text":
		bs.Text = &imap.BodyStructureText{NumLines: p.lines}
	}
	return bs
}

func disposition(h gomessage.Header) *imap.BodyStructureDisposition {
	v, params, _ := h.ContentDisposition()
	if v == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: v, Params: params}
}

func language(h gomessage.Header) []string {
	v := h.Get("Content-Language")
	if v == "" {
		return nil
	}
	var out []string
	for _, l := range strings.Split(v, ",") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// envelope builds ENVELOPE from a header (go-imap decodes RFC 2047 words
// and re-encodes them as UTF-8 when writing).
func envelope(h textproto.Header) *imap.Envelope {
	return imapserver.ExtractEnvelope(h)
}

// errUnknownCTE answers BINARY for an encoding we cannot decode (RFC 3516 §4.3).
var errUnknownCTE = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeUnknownCTE,
	Text: "Unknown Content-Transfer-Encoding",
}

// decoder wraps r with the decoder of a Content-Transfer-Encoding; ok is
// false for an unknown encoding.
func decoder(encoding string, r io.Reader) (io.Reader, bool) {
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "7bit", "8bit", "binary":
		return r, true
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &base64Filter{r: r}), true
	case "quoted-printable":
		return quotedprintable.NewReader(r), true
	}
	return nil, false
}

// base64Filter drops everything but the base64 alphabet (line breaks, stray
// white space), as mail readers do.
type base64Filter struct{ r io.Reader }

func (f *base64Filter) Read(p []byte) (int, error) {
	for {
		n, err := f.r.Read(p)
		j := 0
		for _, c := range p[:n] {
			if ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '+' || c == '/' || c == '=' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}
