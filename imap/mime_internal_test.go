package imap

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// TestScanner: byte ranges of the entities of tricky messages.
func TestScanner(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		// want: for each part path, the body bytes and the media type.
		want map[string][2]string
	}{
		{
			name: "no blank line after the header",
			msg:  "Subject: x\r\nFrom: y",
			want: map[string][2]string{"": {"", "text/plain"}},
		},
		{
			name: "empty body",
			msg:  "Subject: x\r\n\r\n",
			want: map[string][2]string{"": {"", "text/plain"}},
		},
		{
			name: "LF line ends",
			msg:  "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n\n<p>\n--b\n\nplain\n--b--\n",
			want: map[string][2]string{"1": {"<p>", "text/html"}, "2": {"plain", "text/plain"}},
		},
		{
			name: "missing close delimiter",
			msg:  crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nfirst\n--b\n\nsecond\n"),
			want: map[string][2]string{"1": {"first", "text/plain"}, "2": {"second\r\n", "text/plain"}},
		},
		{
			name: "transport padding after the boundary",
			msg:  crlf("Content-Type: multipart/mixed; boundary=\"a b\"\n\npre\n--a b \t\n\none\n--a b--  \nepilogue\n"),
			want: map[string][2]string{"1": {"one", "text/plain"}},
		},
		{
			name: "empty part",
			msg:  crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\nContent-Type: text/x\n\nz\n--b--\n"),
			want: map[string][2]string{"1": {"", "text/plain"}, "2": {"z", "text/x"}},
		},
		{
			name: "digest parts default to message/rfc822",
			msg:  crlf("Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: inner\n\nbody\n--d--\n"),
			want: map[string][2]string{"1": {"Subject: inner\r\n\r\nbody", "message/rfc822"}, "1.1": {"body", "text/plain"}},
		},
		{
			name: "multipart without a boundary is one part",
			msg:  crlf("Content-Type: multipart/mixed\n\n--b\nx\n"),
			want: map[string][2]string{"1": {"--b\r\nx\r\n", "multipart/mixed"}},
		},
		{
			name: "inner boundary ends the outer part too",
			msg:  crlf("Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/alternative; boundary=i\n\n--i\n\nin\n--o\n\nafter\n--o--\n"),
			want: map[string][2]string{"1.1": {"in", "text/plain"}, "2": {"after", "text/plain"}},
		},
		{
			name: "malformed header line keeps the others",
			msg:  crlf("Subject: x\nthis line has no colon\nContent-Type: text/html\n\nb\n"),
			want: map[string][2]string{"": {"b\r\n", "text/html"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, err := parseStructure(strings.NewReader(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, []byte(tc.msg), root)
			for path, want := range tc.want {
				var p []int
				for _, f := range strings.Split(path, ".") {
					if f != "" {
						p = append(p, int(f[0]-'0'))
					}
				}
				part := root.locate(p)
				if part == nil {
					t.Fatalf("part %q not found", path)
				}
				if got := tc.msg[part.bodyStart:part.end]; got != want[0] {
					t.Errorf("part %q body %q, want %q", path, got, want[0])
				}
				if part.mediaType != want[1] {
					t.Errorf("part %q type %q, want %q", path, part.mediaType, want[1])
				}
			}
		})
	}
}

// checkInvariants: ranges nest and stay in bounds, line counts are exact,
// rendering does not panic.
func checkInvariants(t *testing.T, data []byte, root *part) {
	t.Helper()
	if root.start != 0 || root.end != int64(len(data)) {
		t.Fatalf("root [%d,%d), message %d bytes", root.start, root.end, len(data))
	}
	var walk func(p *part)
	walk = func(p *part) {
		if !(0 <= p.start && p.start <= p.bodyStart && p.bodyStart <= p.end && p.end <= int64(len(data))) {
			t.Fatalf("bad range %d %d %d (len %d)", p.start, p.bodyStart, p.end, len(data))
		}
		if n := int64(bytes.Count(data[p.bodyStart:p.end], []byte("\n"))); n != p.lines {
			t.Fatalf("part [%d,%d): %d lines, counted %d", p.bodyStart, p.end, p.lines, n)
		}
		prev := p.bodyStart
		for _, c := range p.children {
			if c.start < prev || c.end > p.end {
				t.Fatalf("child [%d,%d) outside parent body [%d,%d) or overlapping (prev end %d)", c.start, c.end, p.bodyStart, p.end, prev)
			}
			prev = c.end
			walk(c)
		}
	}
	walk(root)
	// What go-imap's writer and the grammar need: a multipart has parts,
	// and a message/rfc822 part carries its envelope and structure.
	root.bodyStructure().Walk(func(path []int, b imap.BodyStructure) bool {
		switch b := b.(type) {
		case *imap.BodyStructureMultiPart:
			if len(b.Children) == 0 {
				t.Fatalf("multipart %v without parts", path)
			}
		case *imap.BodyStructureSinglePart:
			if strings.EqualFold(b.Type, "message") && strings.EqualFold(b.Subtype, "rfc822") && b.MessageRFC822 == nil {
				t.Fatalf("message/rfc822 %v without its message", path)
			}
			if b.Extended == nil {
				t.Fatalf("part %v without extension data", path)
			}
		}
		return true
	})
}

// TestBodyStructureMatchesGoImap: on well-formed messages our structure
// says what go-imap's buffering extractor says.
func TestBodyStructureMatchesGoImap(t *testing.T) {
	msgs := []string{
		crlf("Subject: plain\n\nline one\nline two\n"),
		crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nh=C3=A9\n--b\nContent-Type: image/png; name=x.png\nContent-Disposition: attachment; filename=x.png\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n--b--\n"),
		crlf("Content-Type: message/rfc822\n\nSubject: inner\nFrom: a@b.c\n\ninner body\n"),
	}
	for i, msg := range msgs {
		root, err := parseStructure(strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		ours, theirs := root.bodyStructure(), imapserver.ExtractBodyStructure(strings.NewReader(msg))
		type summary struct {
			path  string
			typ   string
			size  uint32
			lines int64
		}
		sum := func(bs imap.BodyStructure) []summary {
			var out []summary
			bs.Walk(func(path []int, b imap.BodyStructure) bool {
				s := summary{typ: b.MediaType()}
				for _, p := range path {
					s.path += string(rune('0' + p))
				}
				if sp, ok := b.(*imap.BodyStructureSinglePart); ok {
					s.size = sp.Size
					if sp.Text != nil {
						s.lines = sp.Text.NumLines
					}
					if sp.MessageRFC822 != nil {
						s.lines = sp.MessageRFC822.NumLines
					}
				}
				out = append(out, s)
				return true
			})
			return out
		}
		a, b := sum(ours), sum(theirs)
		if len(a) != len(b) {
			t.Fatalf("message %d: %v vs go-imap %v", i, a, b)
		}
		for j := range a {
			if a[j] != b[j] {
				t.Errorf("message %d part %d: ours %+v, go-imap %+v", i, j, a[j], b[j])
			}
		}
	}
}

func TestFilterHeader(t *testing.T) {
	raw := []byte(crlf("Subject: a\n folded\nFrom: x\nbroken line\nX-Empty:\nsubject: second\n\n"))
	tests := []struct {
		names []string
		not   bool
		want  string
	}{
		{[]string{"SUBJECT"}, false, crlf("Subject: a\n folded\nsubject: second\n\n")},
		{[]string{"x-empty", "missing"}, false, crlf("X-Empty:\n\n")},
		{[]string{"subject"}, true, crlf("From: x\nX-Empty:\n\n")},
		{[]string{"nothing"}, false, "\r\n"},
	}
	for _, tc := range tests {
		if got := string(filterHeader(raw, tc.names, tc.not)); got != tc.want {
			t.Errorf("%v not=%v: %q, want %q", tc.names, tc.not, got, tc.want)
		}
	}
}

func TestPartialRange(t *testing.T) {
	tests := []struct {
		start, end int64
		p          *imap.SectionPartial
		s, e       int64
	}{
		{10, 20, nil, 10, 20},
		{10, 20, &imap.SectionPartial{Offset: 0, Size: 5}, 10, 15},
		{10, 20, &imap.SectionPartial{Offset: 8, Size: 5}, 18, 20},
		{10, 20, &imap.SectionPartial{Offset: 50, Size: 5}, 20, 20},
		{10, 20, &imap.SectionPartial{Offset: 3, Size: 0}, 13, 13},
	}
	for _, tc := range tests {
		if s, e := partialRange(tc.start, tc.end, tc.p); s != tc.s || e != tc.e {
			t.Errorf("%d %d %+v: [%d,%d), want [%d,%d)", tc.start, tc.end, tc.p, s, e, tc.s, tc.e)
		}
	}
}

// FuzzScanner: on any input the scanner's ranges nest and stay in bounds,
// its line counts are exact, every section can be located, BINARY decodes
// the same way twice, and header filtering only keeps whole fields.
func FuzzScanner(f *testing.F) {
	f.Add(crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: base64\n\naGk=\n--b\nContent-Type: message/rfc822\n\nSubject: x\n\ny\n--b--\n"))
	f.Add("Subject: x\r\nFrom: y")
	f.Add(crlf("Content-Type: multipart/digest; boundary=d\n\n--d\n\nContent-Type: multipart/alternative; boundary=e\n\n--e\n\nq\n--d--\n"))
	f.Add(crlf("Content-Transfer-Encoding: quoted-printable\n\na=3Db=\nc=ZZ\n"))
	f.Fuzz(func(t *testing.T, msg string) {
		data := []byte(msg)
		root, err := parseStructure(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, data, root)
		m := &message{r: bytes.NewReader(data)}
		if _, err := m.structure(); err != nil {
			t.Fatal(err)
		}
		paths := [][]int{nil, {1}, {2}, {1, 1}, {1, 2}, {2, 1}, {3, 1, 1}}
		for _, p := range paths {
			for _, spec := range []imap.PartSpecifier{imap.PartSpecifierNone, imap.PartSpecifierHeader, imap.PartSpecifierText, imap.PartSpecifierMIME} {
				s, e, ok := root.sectionRange(&imap.FetchItemBodySection{Part: p, Specifier: spec})
				if ok && (s < 0 || s > e || e > int64(len(data))) {
					t.Fatalf("section %v %s: [%d,%d) of %d", p, spec, s, e, len(data))
				}
			}
			bp, err := m.binary(root, p)
			if err != nil {
				continue // unknown encoding
			}
			var buf bytes.Buffer
			if err := bp.copy(&buf, 0, bp.size); err != nil {
				t.Fatalf("BINARY %v: %v", p, err)
			}
			if int64(buf.Len()) != bp.size {
				t.Fatalf("BINARY %v: %d bytes, size %d", p, buf.Len(), bp.size)
			}
		}
		hdr := data[:root.bodyStart]
		out := filterHeader(hdr, []string{"subject", "content-type"}, false)
		for _, fld := range splitHeader(out) {
			if !bytes.Contains(hdr, fld.raw) && !bytes.Contains(hdr, bytes.TrimSuffix(fld.raw, []byte("\r\n"))) {
				t.Fatalf("filtered field %q not in the header", fld.raw)
			}
		}
		if !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("filtered header %q does not end with the blank line", out)
		}
	})
}
