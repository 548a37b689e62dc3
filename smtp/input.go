package smtp

import (
	"bytes"
	"errors"
	"io"
)

// Message content limits, as Postfix has them by default.
const (
	// maxHops: a message whose Received fields, with the one we add, would
	// reach this count is refused (Postfix hopcount_limit = 50).
	maxHops = 50
	// maxHeaderField: bytes of one header field (with its continuation
	// lines); the excess is discarded (Postfix header_size_limit = 102400).
	maxHeaderField = 102400
)

var errHops = errors.New("too many Received header fields")

// inputFilter normalises message content on its way to the spool, in one
// streaming pass with constant memory:
//
//   - a bare LF ends a line as CRLF does and is stored as CRLF (Postfix
//     smtpd_forbid_bare_newline = normalize, its default since 3.9; the
//     end of DATA is only CRLF.CRLF, which go-smtp enforces);
//   - a bare CR and NUL bytes are kept as they are (Postfix too);
//   - in the header section, a field longer than maxHeader bytes is cut
//     there, the rest of it discarded (Postfix header_size_limit);
//   - Received fields of the header section are counted: at maxHops-1
//     (ours would make maxHops) Write fails with errHops.
//
// The header section ends at the first empty line, or at the first line
// that is not a header field ("name:" or a continuation), which is body.
type inputFilter struct {
	w         io.Writer
	maxHops   int // 0: no limit
	maxHeader int // 0: no limit

	prevCR    bool // the last input byte was CR
	inHeader  bool // still in the header section
	lineStart bool // the next byte starts a line (header section only)
	pendingCR bool // a line began with CR: empty line or body, decided by the next byte
	haveField bool // a header field has started (continuations may follow)
	inName    bool // reading the field name of the current line
	nameWSP   bool // WSP seen after the name (obsolete "Name :")
	nameLen   int  // bytes of the field name so far
	isRcvd    bool // the name so far is a prefix of "received"
	fieldLen  int  // bytes of the current field so far (line ends not counted)
	cutting   bool // discarding the rest of an oversized field
	hops      int  // Received fields seen

	out []byte // scratch for the header section
}

func newInputFilter(w io.Writer, maxHops, maxHeader int) *inputFilter {
	return &inputFilter{w: w, maxHops: maxHops, maxHeader: maxHeader, inHeader: true, lineStart: true}
}

// Hops is the number of Received fields seen in the header section.
func (f *inputFilter) Hops() int { return f.hops }

var crlf = []byte("\r\n")

// Write filters p to the underlying writer. It returns len(p) or an error.
func (f *inputFilter) Write(p []byte) (int, error) {
	n := len(p)
	if f.inHeader {
		i, err := f.header(p)
		if err != nil {
			return 0, err
		}
		p = p[i:]
	}
	if len(p) > 0 {
		if err := f.body(p); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Close flushes what the filter still holds back.
func (f *inputFilter) Close() error {
	var tail []byte
	if f.pendingCR {
		tail = append(tail, '\r')
		f.pendingCR = false
	}
	if f.cutting {
		tail = append(tail, crlf...)
		f.cutting = false
	}
	if len(tail) > 0 {
		_, err := f.w.Write(tail)
		return err
	}
	return nil
}

// body copies p, turning bare LFs into CRLF. Runs without a bare LF are
// written as they are, without copying.
func (f *inputFilter) body(p []byte) error {
	start, pos := 0, 0
	for {
		i := bytes.IndexByte(p[pos:], '\n')
		if i < 0 {
			break
		}
		i += pos
		pos = i + 1
		cr := f.prevCR
		if i > 0 {
			cr = p[i-1] == '\r'
		}
		if cr {
			continue
		}
		if _, err := f.w.Write(p[start:i]); err != nil {
			return err
		}
		if _, err := f.w.Write(crlf); err != nil {
			return err
		}
		start = i + 1
	}
	if start < len(p) {
		if _, err := f.w.Write(p[start:]); err != nil {
			return err
		}
	}
	f.prevCR = p[len(p)-1] == '\r'
	return nil
}

// header runs the header state machine over p until the header section
// ends, and returns how many bytes of p it consumed.
func (f *inputFilter) header(p []byte) (int, error) {
	out := f.out[:0]
	i := 0
	for ; i < len(p) && f.inHeader; i++ {
		c := p[i]
		if f.pendingCR {
			f.pendingCR = false
			if c == '\n' { // empty line: end of the header section
				out = append(out, '\r', '\n')
				f.inHeader = false
				f.prevCR = false
				continue
			}
			// a line starting with a bare CR is body
			out = append(out, '\r')
			f.prevCR = true
			f.inHeader = false
			break // c is body
		}
		if f.lineStart {
			f.lineStart = false
			if (c == ' ' || c == '\t') && f.haveField {
				// continuation of the current field
			} else {
				if f.cutting {
					out = append(out, crlf...)
					f.cutting = false
				}
				switch {
				case c == '\r':
					f.pendingCR = true
					f.prevCR = true
					continue
				case c == '\n': // empty line (bare LF)
					out = append(out, crlf...)
					f.inHeader = false
					f.prevCR = false
					continue
				case c > ' ' && c < 0x7f && c != ':':
					f.haveField, f.inName, f.nameWSP = true, true, false
					f.nameLen, f.isRcvd, f.fieldLen = 0, true, 0
				default: // not a header line: body starts here
					f.inHeader = false
					i--
					continue
				}
			}
		}
		if f.inName {
			switch {
			case c == ':':
				f.inName = false
				if f.isRcvd && f.nameLen == len("received") {
					f.hops++
					if f.maxHops > 0 && f.hops+1 >= f.maxHops {
						f.out = out
						return i, errHops
					}
				}
			case (c == ' ' || c == '\t') && f.nameLen > 0:
				f.nameWSP = true
			case c > ' ' && c < 0x7f && !f.nameWSP:
				if f.isRcvd {
					f.isRcvd = f.nameLen < len("received") && c|0x20 == "received"[f.nameLen]
				}
				f.nameLen++
			default: // not a header line after all: body from here
				f.inHeader = false
				f.inName = false
				i--
				continue
			}
		}
		if c == '\n' {
			if !f.cutting {
				if !f.prevCR {
					out = append(out, '\r')
				}
				out = append(out, '\n')
			}
			f.prevCR = false
			f.lineStart = true
			continue
		}
		f.prevCR = c == '\r'
		if c != '\r' {
			f.fieldLen++
			if f.maxHeader > 0 && f.fieldLen > f.maxHeader {
				f.cutting = true
			}
		}
		if !f.cutting {
			out = append(out, c)
		}
	}
	f.out = out[:0]
	if len(out) > 0 {
		if _, err := f.w.Write(out); err != nil {
			return i, err
		}
	}
	return i, nil
}
