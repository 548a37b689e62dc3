package maildir

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
)

// crlfReader presents a file with bare LF line ends as CRLF: each LF not
// preceded by CR is read as CR LF, so the content matches the RFC 822 size
// (W=) the index reports. It converts a buffered block at a time. Seeking to
// or past the end is free; seeking backwards restarts from the beginning of
// the file, forwards reads up to the target: such files come from other
// delivery agents and are rare.
type crlfReader struct {
	f         *os.File
	br        *bufio.Reader // from crlfBufPool; nil once closed
	size      int64         // converted size
	pos       int64         // position in the converted stream
	lastCR    bool          // the last raw byte returned was CR
	pendingLF bool          // a CR was returned for a bare LF; the LF comes next
}

var crlfBufPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

func newCRLFReader(f *os.File, size int64) *crlfReader {
	br := crlfBufPool.Get().(*bufio.Reader)
	br.Reset(f)
	return &crlfReader{f: f, br: br, size: size}
}

func (r *crlfReader) Read(p []byte) (int, error) {
	if r.br == nil {
		return 0, os.ErrClosed
	}
	n := 0
	if r.pendingLF && len(p) > 0 {
		p[0] = '\n'
		n = 1
		r.pendingLF = false
	}
	for n < len(p) {
		if _, err := r.br.Peek(1); err != nil {
			r.pos += int64(n)
			if n > 0 && errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		chunk, _ := r.br.Peek(r.br.Buffered())
		if room := len(p) - n; len(chunk) > room {
			chunk = chunk[:room]
		}
		i := bytes.IndexByte(chunk, '\n')
		if i < 0 {
			n += copy(p[n:], chunk)
			r.lastCR = chunk[len(chunk)-1] == '\r'
			_, _ = r.br.Discard(len(chunk))
			continue
		}
		n += copy(p[n:], chunk[:i])
		prevCR := r.lastCR
		if i > 0 {
			prevCR = chunk[i-1] == '\r'
		}
		_, _ = r.br.Discard(i + 1)
		r.lastCR = false
		// i < room, so there is space for at least one more byte.
		if prevCR {
			p[n] = '\n'
			n++
			continue
		}
		p[n] = '\r'
		n++
		if n < len(p) {
			p[n] = '\n'
			n++
		} else {
			r.pendingLF = true
		}
	}
	r.pos += int64(n)
	return n, nil
}

func (r *crlfReader) Seek(offset int64, whence int) (int64, error) {
	if r.br == nil {
		return 0, os.ErrClosed
	}
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
	if target >= r.size {
		// At or past the end: nothing left to read, nothing to convert.
		if _, err := r.f.Seek(0, io.SeekEnd); err != nil {
			return r.pos, err
		}
		r.br.Reset(r.f)
		r.pos, r.lastCR, r.pendingLF = target, false, false
		return target, nil
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

func (r *crlfReader) Close() error {
	if r.br != nil {
		r.br.Reset(nil)
		crlfBufPool.Put(r.br)
		r.br = nil
	}
	return r.f.Close()
}
