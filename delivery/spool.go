package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Spool holds one message while it is received and delivered: in memory up
// to a limit, past it in a file under the spool directory, so a large message
// is never held in memory whole. The file is unlinked right after it is
// created: it needs no cleanup after a crash and no fsync, because nothing is
// acknowledged until the copies made from it are durable.
//
// Write it once, then read it with NewReader as many times as needed (readers
// are independent and may run concurrently). Not safe for concurrent writes.
type Spool struct {
	dir   string
	limit int
	pool  *sync.Pool

	buf  *[]byte       // in-memory content while size <= limit
	f    *os.File      // spill file once size > limit
	fw   *bufio.Writer // buffers writes to f
	size int64

	mu  sync.Mutex // guards err and the flush of fw: readers may start concurrently
	err error      // sticky write error
}

func newSpool(dir string, limit int, pool *sync.Pool) *Spool {
	s := &Spool{dir: dir, limit: limit, pool: pool}
	if b, ok := pool.Get().(*[]byte); ok {
		s.buf = b
	} else {
		b := make([]byte, 0, 16<<10)
		s.buf = &b
	}
	return s
}

// Write appends p.
func (s *Spool) Write(p []byte) (int, error) {
	if err := s.stickyErr(); err != nil {
		return 0, err
	}
	if s.f == nil && int(s.size)+len(p) <= s.limit {
		*s.buf = append(*s.buf, p...)
		s.size += int64(len(p))
		return len(p), nil
	}
	if s.f == nil {
		if err := s.spill(); err != nil {
			return 0, s.setErr(err)
		}
	}
	n, err := s.fw.Write(p)
	s.size += int64(n)
	if err != nil {
		return n, s.setErr(fmt.Errorf("delivery: spool write: %w", err))
	}
	return n, nil
}

func (s *Spool) stickyErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Spool) setErr(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
	return s.err
}

// spill moves the in-memory content to a new, already unlinked file.
func (s *Spool) spill() error {
	f, err := os.CreateTemp(s.dir, "spool-*")
	if err != nil {
		return fmt.Errorf("delivery: spool file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		return fmt.Errorf("delivery: spool file: %w", err)
	}
	s.f = f
	s.fw = bufio.NewWriterSize(f, 64<<10)
	if _, err := s.fw.Write(*s.buf); err != nil {
		return fmt.Errorf("delivery: spool write: %w", err)
	}
	s.release()
	return nil
}

// Size is the number of bytes written so far.
func (s *Spool) Size() int64 { return s.size }

// Err is the first write error, if any (a spool with an error is not delivered).
func (s *Spool) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil && s.fw != nil && s.fw.Buffered() > 0 {
		if err := s.fw.Flush(); err != nil {
			s.err = fmt.Errorf("delivery: spool write: %w", err)
		}
	}
	return s.err
}

// InMemory reports whether the content is held in memory (no spool file).
func (s *Spool) InMemory() bool { return s.f == nil }

// NewReader returns a reader of the whole content from the start. Call it
// after the last Write.
func (s *Spool) NewReader() io.Reader {
	if s.f == nil {
		if s.buf == nil {
			return bytes.NewReader(nil)
		}
		return bytes.NewReader(*s.buf)
	}
	if err := s.Err(); err != nil {
		return errReader{err}
	}
	return io.NewSectionReader(s.f, 0, s.size)
}

// Close releases the memory or the file. The spool must not be used after.
func (s *Spool) Close() error {
	s.release()
	if s.f != nil {
		err := s.f.Close()
		s.f = nil
		s.fw = nil
		if err != nil {
			return fmt.Errorf("delivery: spool close: %w", err)
		}
	}
	s.setErr(errSpoolClosed)
	return nil
}

// release returns the memory buffer to the pool (large ones are dropped so
// the pool does not pin memory).
func (s *Spool) release() {
	if s.buf == nil {
		return
	}
	if cap(*s.buf) <= s.limit {
		*s.buf = (*s.buf)[:0]
		s.pool.Put(s.buf)
	}
	s.buf = nil
}

var errSpoolClosed = errors.New("delivery: spool closed")

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
