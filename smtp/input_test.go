package smtp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// filterAll runs data through an inputFilter in chunks of size n (0: whole).
func filterAll(data []byte, maxHops, maxHeader, n int) ([]byte, int, error) {
	var out bytes.Buffer
	f := newInputFilter(&out, maxHops, maxHeader)
	if n <= 0 {
		n = len(data) + 1
	}
	for len(data) > 0 {
		k := min(n, len(data))
		if _, err := f.Write(data[:k]); err != nil {
			return out.Bytes(), f.Hops(), err
		}
		data = data[k:]
	}
	err := f.Close()
	return out.Bytes(), f.Hops(), err
}

func received(n int) string {
	return strings.Repeat("Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n", n)
}

func TestInputFilter(t *testing.T) {
	tests := []struct {
		name      string
		in, want  string
		maxHeader int
		hops      int
		err       error
	}{
		{name: "clean message unchanged", in: "Subject: hi\r\nTo: a@b\r\n\r\nbody\r\n", want: "Subject: hi\r\nTo: a@b\r\n\r\nbody\r\n"},
		{name: "bare LF becomes CRLF", in: "Subject: hi\nTo: a@b\n\nline1\nline2\r\nline3\n", want: "Subject: hi\r\nTo: a@b\r\n\r\nline1\r\nline2\r\nline3\r\n"},
		{name: "bare CR kept", in: "Subject: a\rb\r\n\r\nx\ry\r\n", want: "Subject: a\rb\r\n\r\nx\ry\r\n"},
		{name: "NUL kept", in: "Subject: a\x00b\r\n\r\nx\x00y\r\n", want: "Subject: a\x00b\r\n\r\nx\x00y\r\n"},
		{name: "CR CR LF", in: "S: a\r\r\n\r\nb\r\r\n", want: "S: a\r\r\n\r\nb\r\r\n"},
		{name: "48 Received pass", in: received(48) + "\r\nbody\r\n", want: received(48) + "\r\nbody\r\n", hops: 48},
		{name: "49 Received are a loop (ours makes 50)", in: received(49) + "\r\nbody\r\n", hops: 49, err: errHops},
		{name: "Received in the body not counted", in: "Subject: x\r\n\r\n" + received(60), want: "Subject: x\r\n\r\n" + received(60)},
		{name: "obsolete space before colon", in: "Received : x\r\nRECEIVED: y\r\nreceived:z\r\n\r\n", want: "Received : x\r\nRECEIVED: y\r\nreceived:z\r\n\r\n", hops: 3},
		{name: "other names not counted", in: "X-Received: a\r\nReceivedX: b\r\nReceive: c\r\n\r\n", want: "X-Received: a\r\nReceivedX: b\r\nReceive: c\r\n\r\n"},
		{name: "header field cut", maxHeader: 10, in: "Subject: 0123456789abc\r\n\tcontinued\r\nTo: x\r\n\r\nbody that is long\r\n", want: "Subject: 0\r\nTo: x\r\n\r\nbody that is long\r\n"},
		{name: "continuation within limit", maxHeader: 20, in: "Subject: 0123\r\n 4567\r\n\r\nb\r\n", want: "Subject: 0123\r\n 4567\r\n\r\nb\r\n"},
		{name: "cut field at end of input", maxHeader: 5, in: "Subject: long", want: "Subje\r\n"},
		{name: "cut field then empty line", maxHeader: 5, in: "Subject: long\n\nbody\n", want: "Subje\r\n\r\nbody\r\n"},
		{name: "first line not a header", in: "hello world\nReceived: x\n\nbody\n", want: "hello world\r\nReceived: x\r\n\r\nbody\r\n"},
		{name: "line without colon ends the header", in: "Subject: a\r\nnot a header\r\nReceived: x\r\n\r\n", want: "Subject: a\r\nnot a header\r\nReceived: x\r\n\r\n"},
		{name: "continuation first is body", in: " x: y\r\n\r\n", want: " x: y\r\n\r\n"},
		{name: "line starting with bare CR is body", in: "Subject: a\r\n\rReceived: x\r\n", want: "Subject: a\r\n\rReceived: x\r\n"},
		{name: "empty", in: "", want: ""},
		{name: "no final line end", in: "Subject: a\r\n\r\nbody", want: "Subject: a\r\n\r\nbody"},
		{name: "header only, pending CR at end", in: "Subject: a\r\n\r", want: "Subject: a\r\n\r"},
		{name: "8-bit field name is body", in: "Sübject: a\nb\n", want: "Sübject: a\r\nb\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, chunk := range []int{0, 1, 2, 3, 7} {
				out, hops, err := filterAll([]byte(tt.in), maxHops, tt.maxHeader, chunk)
				if !errors.Is(err, tt.err) {
					t.Fatalf("chunk %d: err %v, want %v", chunk, err, tt.err)
				}
				if hops != tt.hops {
					t.Errorf("chunk %d: hops %d, want %d", chunk, hops, tt.hops)
				}
				if tt.err == nil && string(out) != tt.want {
					t.Errorf("chunk %d:\n got %q\nwant %q", chunk, out, tt.want)
				}
			}
		})
	}
}

// normalizeLF is the reference for the filter without limits: every LF not
// preceded by CR becomes CRLF, nothing else changes.
func normalizeLF(in []byte) []byte {
	var out []byte
	for i, c := range in {
		if c == '\n' && (i == 0 || in[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

func hasBareLF(b []byte) bool {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return true
		}
	}
	return false
}

// FuzzInputFilter: without limits the filter is exactly the LF
// normalisation; with limits the result does not depend on how the input is
// chunked, and never has a bare LF.
func FuzzInputFilter(f *testing.F) {
	f.Add([]byte("Subject: hi\r\nTo: a@b\r\n\r\nbody\r\n"), uint8(3))
	f.Add([]byte("Received: a\nReceived: b\nReceived : c\n\nx\n"), uint8(1))
	f.Add([]byte("Subject: 0123456789012345678901234567890\r\n\tmore\r\nX: y\r\n\r\n"), uint8(5))
	f.Add([]byte("a\r\rb\n\r\n\r"), uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		out, _, err := filterAll(in, 0, 0, int(chunk))
		if err != nil {
			t.Fatal(err)
		}
		if want := normalizeLF(in); !bytes.Equal(out, want) {
			t.Fatalf("no limits: got %q, want %q", out, want)
		}
		whole, h1, err1 := filterAll(in, 4, 16, 0)
		parts, h2, err2 := filterAll(in, 4, 16, int(chunk))
		if !errors.Is(err1, err2) || !errors.Is(err2, err1) || h1 != h2 {
			t.Fatalf("chunking changed the outcome: %v/%d vs %v/%d", err1, h1, err2, h2)
		}
		if err1 == nil {
			if !bytes.Equal(whole, parts) {
				t.Fatalf("chunking changed the output: %q vs %q", whole, parts)
			}
			if hasBareLF(whole) {
				t.Fatalf("bare LF in output %q", whole)
			}
		}
	})
}

func BenchmarkInputFilter(b *testing.B) {
	msg := []byte("Received: from a by b\r\nSubject: benchmark\r\nFrom: a@b\r\nTo: c@d\r\n\r\n" + strings.Repeat("0123456789 the quick brown fox jumps over the lazy dog\r\n", 180))
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		f := newInputFilter(discard{}, maxHops, maxHeaderField)
		if _, err := f.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
