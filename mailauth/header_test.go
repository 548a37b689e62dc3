package mailauth

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestReadHeader(t *testing.T) {
	t.Parallel()
	long := "X-Long: " + strings.Repeat("a", 70000) + "\r\n"
	tests := []struct {
		name, in, want string
	}{
		{"CRLF", "A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\r\nB: 2\r\n\r\n"},
		{"LF", "A: 1\nB: 2\n\nbody\n", "A: 1\nB: 2\n\n"},
		{"folded", "A: 1\r\n 2\r\n\r\n", "A: 1\r\n 2\r\n\r\n"},
		{"no body", "A: 1\r\n", "A: 1\r\n\r\n"},
		{"no final line end", "A: 1", "A: 1\r\n\r\n"},
		{"empty message", "", "\r\n"},
		{"only the empty line", "\r\nbody", "\r\n"},
		{"line longer than the buffer", long + "\r\nbody", long + "\r\n"},
	}
	for _, tc := range tests {
		got, err := readHeader(bufio.NewReaderSize(strings.NewReader(tc.in), 16), MaxHeaderSize)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: got %.80q, %v; want %.80q", tc.name, got, err, tc.want)
		}
	}
	_, err := readHeader(bufio.NewReader(strings.NewReader(long+"\r\n")), 1000)
	if !errors.Is(err, ErrHeaderTooLarge) {
		t.Errorf("over the limit: %v", err)
	}
}

func TestAuthservID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"mx.example.com; spf=pass":                     "mx.example.com",
		"mx.example.com 1; none":                       "mx.example.com",
		"  (comment (nested)) mx.example.com;spf=pass": "mx.example.com",
		`"mx.example.com"; none`:                       "mx.example.com",
		"mx.example.com(c); none":                      "mx.example.com",
		"mx.example.com":                               "mx.example.com",
		"(unclosed":                                    "",
		"":                                             "",
	} {
		if got := authservID(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestStripAuthResults(t *testing.T) {
	t.Parallel()
	hdr := "Authentication-Results: MX.example.com; spf=pass\r\n" +
		"Received: from x\r\n" +
		"authentication-results : mx.example.com;\r\n\tdkim=pass header.d=evil.example\r\n" +
		"Authentication-Results: other.example.net; spf=fail\r\n" +
		"Authentication-Results: (forged) mx.example.com; dmarc=pass\r\n" +
		"ARC-Authentication-Results: i=1; mx.example.com; spf=pass\r\n" +
		"Authentication-Results: mx.example.com.evil.example; spf=pass\r\n" +
		"Subject: hi\r\n\r\n"
	want := "Received: from x\r\n" +
		"Authentication-Results: other.example.net; spf=fail\r\n" +
		"ARC-Authentication-Results: i=1; mx.example.com; spf=pass\r\n" +
		"Authentication-Results: mx.example.com.evil.example; spf=pass\r\n" +
		"Subject: hi\r\n\r\n"
	got, n := StripAuthResults([]byte(hdr), "mx.example.com")
	if string(got) != want || n != 3 {
		t.Errorf("removed %d, got\n%s\nwant\n%s", n, got, want)
	}
}

// FuzzSplitFields: splitting a header into fields loses and adds nothing,
// and every field but the first starts a line with a non-blank.
func FuzzSplitFields(f *testing.F) {
	for _, s := range []string{
		"A: 1\r\nB: 2\r\n 3\r\n\r\n",
		" leading continuation\r\nA: 1\n\n",
		"no colon\r\n\r\n",
		"A: 1\r\n\tB\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		hdr, err := readHeader(bufio.NewReader(bytes.NewReader(data)), 1<<16)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(data, hdr) && !bytes.HasPrefix(append(bytes.Clone(data), "\r\n\r\n"...), hdr) &&
			!bytes.HasPrefix(append(bytes.Clone(data), "\r\n"...), hdr) {
			t.Fatalf("header %q is not a prefix of the message %q (plus the line ends it may add)", hdr, data)
		}
		fields, end := splitFields(hdr)
		var joined []byte
		for i, fl := range fields {
			if len(fl) == 0 {
				t.Fatalf("empty field")
			}
			if i > 0 && (fl[0] == ' ' || fl[0] == '\t') {
				t.Fatalf("field %d starts with a blank: %q", i, fl)
			}
			joined = append(joined, fl...)
		}
		joined = append(joined, end...)
		if !bytes.Equal(joined, hdr) {
			t.Fatalf("fields %q + %q do not give back %q", fields, end, hdr)
		}
		stripped, _ := StripAuthResults(hdr, "mx.example.com")
		if len(stripped) > len(hdr) {
			t.Fatalf("stripping grew the header")
		}
		for _, fl := range fields {
			_, _, _ = fromDomain([][]byte{fl})
		}
	})
}
