package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// referenceMessage is the obvious line-by-line version of writeMessage.
func referenceMessage(msg string, bodyLines int) string {
	var out strings.Builder
	lines := strings.Split(msg, "\n")
	if strings.HasSuffix(msg, "\n") || msg == "" {
		lines = lines[:len(lines)-1]
	}
	inBody := bodyLines < 0
	for _, l := range lines {
		content := strings.TrimSuffix(l, "\r")
		if strings.HasPrefix(content, ".") {
			out.WriteString(".")
		}
		out.WriteString(content)
		out.WriteString("\r\n")
		if !inBody {
			if content == "" {
				inBody = true
				if bodyLines == 0 {
					break
				}
			}
		} else if bodyLines >= 0 {
			bodyLines--
			if bodyLines == 0 {
				break
			}
		}
	}
	out.WriteString(".\r\n")
	return out.String()
}

func runWriteMessage(t testing.TB, msg string, bodyLines, bufSize int, wrap func(io.Reader) io.Reader) string {
	var out bytes.Buffer
	w := bufio.NewWriterSize(&out, 16)
	var r io.Reader = strings.NewReader(msg)
	if wrap != nil {
		r = wrap(r)
	}
	if err := writeMessage(w, r, bodyLines, make([]byte, bufSize)); err != nil {
		t.Fatalf("writeMessage: %v", err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestWriteMessage(t *testing.T) {
	tests := []struct {
		name      string
		msg       string
		bodyLines int
		want      string
	}{
		{"empty", "", -1, ".\r\n"},
		{"crlf", "A: b\r\n\r\nbody\r\n", -1, "A: b\r\n\r\nbody\r\n.\r\n"},
		{"bare lf normalised", "A: b\n\nbody\n", -1, "A: b\r\n\r\nbody\r\n.\r\n"},
		{"mixed line ends", "A: b\r\n\nx\ny\r\n", -1, "A: b\r\n\r\nx\r\ny\r\n.\r\n"},
		{"no final line end", "A: b\r\n\r\nbody", -1, "A: b\r\n\r\nbody\r\n.\r\n"},
		{"final bare cr", "A: b\r\n\r\nbody\r", -1, "A: b\r\n\r\nbody\r\n.\r\n"},
		{"dot stuffing", ".a\r\n\r\n.\r\n..\r\nx.\r\n.", -1, "..a\r\n\r\n..\r\n...\r\nx.\r\n..\r\n.\r\n"},
		{"lone dot line", "A: b\n\n.\n", -1, "A: b\r\n\r\n..\r\n.\r\n"},
		{"top 0", "A: b\r\nC: d\r\n\r\n1\r\n2\r\n", 0, "A: b\r\nC: d\r\n\r\n.\r\n"},
		{"top 1", "A: b\r\n\r\n1\r\n2\r\n", 1, "A: b\r\n\r\n1\r\n.\r\n"},
		{"top more than body", "A: b\r\n\r\n1\r\n2", 10, "A: b\r\n\r\n1\r\n2\r\n.\r\n"},
		{"top no body", "A: b\r\nC: d", 3, "A: b\r\nC: d\r\n.\r\n"},
		{"top blank line with lf", "A: b\n\n1\n2\n", 1, "A: b\r\n\r\n1\r\n.\r\n"},
		{"top dot lines", "A: b\r\n\r\n.x\r\n.y\r\n", 1, "A: b\r\n\r\n..x\r\n.\r\n"},
		{"bare cr inside a line kept", "a\rb\r\n", -1, "a\rb\r\n.\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ref := referenceMessage(tt.msg, tt.bodyLines); ref != tt.want {
				t.Fatalf("reference gives %q, want %q", ref, tt.want)
			}
			for _, size := range []int{1, 2, 3, 5, 64, streamBufSize} {
				for _, wrap := range []func(io.Reader) io.Reader{nil, iotest.OneByteReader, iotest.DataErrReader} {
					if got := runWriteMessage(t, tt.msg, tt.bodyLines, size, wrap); got != tt.want {
						t.Fatalf("buffer %d: got %q, want %q", size, got, tt.want)
					}
				}
			}
		})
	}
}

func TestWriteMessageErrors(t *testing.T) {
	t.Run("read error", func(t *testing.T) {
		boom := errors.New("disk on fire")
		r := io.MultiReader(strings.NewReader("A: b\r\n"), iotest.ErrReader(boom))
		w := bufio.NewWriter(io.Discard)
		if err := writeMessage(w, r, -1, nil); !errors.Is(err, boom) {
			t.Fatalf("got %v, want %v", err, boom)
		}
	})
	t.Run("write error", func(t *testing.T) {
		w := bufio.NewWriterSize(failWriter{}, 16)
		err := writeMessage(w, strings.NewReader(strings.Repeat("line\r\n", 100)), -1, nil)
		if err == nil {
			t.Fatal("writeMessage succeeded on a failing writer")
		}
	})
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("connection reset") }

// FuzzWriteMessage checks writeMessage against the line-by-line reference
// for any content, TOP line count and buffer size.
func FuzzWriteMessage(f *testing.F) {
	f.Add("A: b\r\n\r\n.body\r\n", -1, 3)
	f.Add("A: b\n\n.\n..\nx", 1, 1)
	f.Add("\r\r\n\n\r.", 0, 2)
	f.Fuzz(func(t *testing.T, msg string, bodyLines, bufSize int) {
		if bufSize < 1 || bufSize > 1<<16 {
			bufSize = 1 + (bufSize&0xffff)%97
		}
		if bodyLines < -1 {
			bodyLines = -1
		}
		got := runWriteMessage(t, msg, bodyLines, bufSize, nil)
		if want := referenceMessage(msg, bodyLines); got != want {
			t.Fatalf("writeMessage(%q, %d, buf %d) = %q, want %q", msg, bodyLines, bufSize, got, want)
		}
	})
}
