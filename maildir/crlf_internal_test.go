package maildir

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// checkCRLF reads raw through a crlfReader in reads of every size from 1 to
// 9 bytes and in one go, and checks seeks to the end and back.
func checkCRLF(t *testing.T, raw []byte) {
	t.Helper()
	// Every LF not preceded by CR becomes CR LF; everything else stays.
	var want []byte
	for i, c := range raw {
		if c == '\n' && (i == 0 || raw[i-1] != '\r') {
			want = append(want, '\r')
		}
		want = append(want, c)
	}
	path := filepath.Join(t.TempDir(), "m")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	open := func() *crlfReader {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		return newCRLFReader(f, int64(len(want)))
	}
	for size := 1; size <= 10; size++ {
		r := open()
		var got []byte
		buf := make([]byte, size)
		if size == 10 {
			buf = make([]byte, 64<<10)
		}
		for {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("reads of %d: %q, want %q", size, got, want)
		}
		if n, err := r.Seek(0, io.SeekEnd); err != nil || n != int64(len(want)) {
			t.Fatalf("seek end: %d %v", n, err)
		}
		if n, err := r.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("read at end: %d %v", n, err)
		}
		if len(want) > 0 {
			off := int64(len(want)) / 2
			if _, err := r.Seek(off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(rest, want[off:]) {
				t.Fatalf("from %d: %q, want %q (%v)", off, rest, want[off:], err)
			}
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Read(buf); err == nil {
			t.Fatal("read after close succeeded")
		}
	}
}

func TestCRLFReader(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789 line\n"), 5000) // spans several buffer fills
	for _, raw := range []string{"", "\n", "\n\n", "\r\n", "\r", "a\rb\n", "x\r\r\n\n", "no newline", "Subject: a\n\nbody\r\nmore\n", string(big)} {
		checkCRLF(t, []byte(raw))
	}
}

func FuzzCRLFReader(f *testing.F) {
	for _, s := range []string{"", "a\nb\r\nc\r", "\n\r\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 4096 {
			return
		}
		checkCRLF(t, raw)
	})
}
