package maildir

import (
	"bufio"
	"errors"
	"io"
	"os"
)

// crlfReader presents a file with bare LF line ends as CRLF: each LF not
// preceded by CR is read as CR LF, so the content matches the RFC 822 size
// (W=) the index reports. Seeking backwards restarts from the beginning of the
// file; such files come from other delivery agents and are rare.
type crlfReader struct {
	f         *os.File
	br        *bufio.Reader
	size      int64 // converted size
	pos       int64 // position in the converted stream
	lastCR    bool  // the last raw byte returned was CR
	pendingLF bool  // a CR was returned for a bare LF; the LF comes next
}

func newCRLFReader(f *os.File, size int64) *crlfReader {
	return &crlfReader{f: f, br: bufio.NewReaderSize(f, 32<<10), size: size}
}

func (r *crlfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if r.pendingLF {
			p[n] = '\n'
			n++
			r.pendingLF = false
			continue
		}
		c, err := r.br.ReadByte()
		if err != nil {
			r.pos += int64(n)
			if n > 0 && errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		if c == '\n' && !r.lastCR {
			p[n] = '\r'
			n++
			r.pendingLF = true
			r.lastCR = false
			continue
		}
		r.lastCR = c == '\r'
		p[n] = c
		n++
	}
	r.pos += int64(n)
	return n, nil
}

func (r *crlfReader) Seek(offset int64, whence int) (int64, error) {
	var target int64
	switch whence {
	case io.SeekStart:
		target = offset
	case io.SeekCurrent:
		target = r.pos + offset
	case io.SeekEnd:
		target = r.size + offset
	default:
		return r.pos, errors.New("maildir: invalid whence")
	}
	if target < 0 {
		return r.pos, errors.New("maildir: negative position")
	}
	if target < r.pos {
		if _, err := r.f.Seek(0, io.SeekStart); err != nil {
			return r.pos, err
		}
		r.br.Reset(r.f)
		r.pos, r.lastCR, r.pendingLF = 0, false, false
	}
	if skip := target - r.pos; skip > 0 {
		if _, err := io.CopyN(io.Discard, r, skip); err != nil && !errors.Is(err, io.EOF) {
			return r.pos, err
		}
	}
	r.pos = target
	return target, nil
}

func (r *crlfReader) Close() error { return r.f.Close() }
