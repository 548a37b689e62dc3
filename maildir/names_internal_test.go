package maildir

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFolderDir(t *testing.T) {
	tests := []struct {
		name string
		dir  string // "" with ok: INBOX
		ok   bool
	}{
		{"INBOX", "", true},
		{"inbox", "", true},
		{"Sent", ".Sent", true},
		{"a/b", ".a.b", true},
		{"INBOX/sub", ".INBOX.sub", true},
		{"inBox/sub", ".INBOX.sub", true},
		{"Über/café", ".&ANw-ber.caf&AOk-", true},
		{"x&y", ".x&-y", true},
		{"x~y", ".x~y", true},
		{"a~b/~c", ".a~b.~c", true},
		{`x\y`, `.x\y`, true},
		{"%", ".%", true},
		{"日本語", ".&ZeVnLIqe-", true},
		{"😀", ".&2D3eAA-", true},
		{"", "", false},
		{"..", "", false},
		{".", "", false},
		{"a.b", "", false},
		{".hidden", "", false},
		{"a/../b", "", false},
		{"../etc", "", false},
		{"/abs", "", false},
		{"a/", "", false},
		{"a//b", "", false},
		{"~user", "", false},
		{"a\x00b", "", false},
		{"a\nb", "", false},
		{"a\tb", "", false},
		{"a\x7fb", "", false},
		{"a\u0085b", "", false},
		{"bad\xffutf8", "", false},
		{strings.Repeat("x", 254), "." + strings.Repeat("x", 254), true},
		{strings.Repeat("x", 255), "", false},
		{strings.Repeat("é", 100), "", false}, // mUTF-7 makes it longer than 255
		{strings.Repeat("a/", 200) + "a", "", false},
	}
	for _, tc := range tests {
		dir, err := folderDir(tc.name)
		if tc.ok {
			if err != nil || dir != tc.dir {
				t.Errorf("folderDir(%q) = %q, %v; want %q", tc.name, dir, err, tc.dir)
			}
			if dir != "" {
				back, ok := nameOfDir(dir)
				if !ok || back != canonicalName(tc.name) {
					t.Errorf("nameOfDir(%q) = %q, %v; want %q", dir, back, ok, tc.name)
				}
			}
			continue
		}
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("folderDir(%q) = %q, %v; want ErrInvalidName", tc.name, dir, err)
		}
		if ValidateMailboxName(tc.name) == nil {
			t.Errorf("ValidateMailboxName(%q) accepted", tc.name)
		}
	}
}

func TestNameOfDir(t *testing.T) {
	tests := []struct {
		dir  string
		name string
		ok   bool
	}{
		{".Sent", "Sent", true},
		{".a.b", "a/b", true},
		{".&ANw-ber", "Über", true},
		{"cur", "", false},
		{"..", "", false},
		{".", "", false},
		{".a..b", "", false},
		{".INBOX", "", false},
		{".&ANw", "", false},       // unterminated
		{".&AGE-", "", false},      // encodes printable ASCII 'a'
		{".&-&-x", "&&x", true},    // ampersands
		{".&ANw-&AOk-", "", false}, // two adjacent encoded runs are not canonical
		{".~x", "", false},
	}
	for _, tc := range tests {
		name, ok := nameOfDir(tc.dir)
		if ok != tc.ok || name != tc.name {
			t.Errorf("nameOfDir(%q) = %q, %v; want %q, %v", tc.dir, name, ok, tc.name, tc.ok)
		}
	}
}

// FuzzMailboxName: whatever a client sends, a name is either refused or maps
// to one directory directly below the user's maildir that maps back to it.
func FuzzMailboxName(f *testing.F) {
	for _, s := range []string{"INBOX", "a/b", "../x", "a.b", "Über", "x&y", "&AGE-", "/", "a//b", "~", "\x00", "INBOX/x", strings.Repeat("é", 90)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		dir, err := folderDir(name)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("folderDir(%q): unexpected error %v", name, err)
			}
			return
		}
		if !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\r\n.") {
			t.Fatalf("folderDir accepted %q", name)
		}
		if dir == "" {
			if !isInbox(name) {
				t.Fatalf("%q mapped to INBOX", name)
			}
			return
		}
		if len(dir) > maxDirName || dir[0] != '.' || strings.ContainsAny(dir, "/\x00") || dir == "." || dir == ".." {
			t.Fatalf("folderDir(%q) = %q escapes or is not one component", name, dir)
		}
		root := "/root/user"
		if p := filepath.Join(root, dir); filepath.Dir(p) != root {
			t.Fatalf("folderDir(%q) = %q leaves the tree: %s", name, dir, p)
		}
		back, ok := nameOfDir(dir)
		if !ok || back != canonicalName(name) {
			t.Fatalf("round trip %q -> %q -> %q, %v", name, dir, back, ok)
		}
		// Decoding is strict: any directory name that decodes re-encodes the same.
		for _, seg := range strings.Split(dir[1:], ".") {
			d, err := decodeMUTF7(seg)
			if err != nil || encodeMUTF7(d) != seg {
				t.Fatalf("segment %q of %q: %q %v", seg, dir, d, err)
			}
		}
	})
}

// FuzzDecodeMUTF7: directory names written by other programs.
func FuzzDecodeMUTF7(f *testing.F) {
	for _, s := range []string{"&ANw-ber", "&-", "&", "&AGE-", "abc", "&2D3eAA-", "&ZeVnLIqe-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := decodeMUTF7(s)
		if err != nil {
			return
		}
		if !utf8.ValidString(d) || encodeMUTF7(d) != s {
			t.Fatalf("decode %q = %q, re-encodes %q", s, d, encodeMUTF7(d))
		}
	})
}

// FuzzParseUidlist: dovecot-uidlist is written by other programs too.
func FuzzParseUidlist(f *testing.F) {
	f.Add([]byte("3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n25020 :1275660208.M1P2.host,S=1234,W=1260\n25021 W1310 :1275660209.M3P4.host,S=1290\n"))
	f.Add([]byte("1 1275660208 5\n1 1275660208.M1P2.host:2,S\n"))
	f.Add([]byte("3 V1 N1\n1 :x\n2 :y\n3 :partial"))
	f.Add([]byte("3 V1 N1 G\n0 :x\n2 x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := parseUidlist(data)
		if err != nil {
			return
		}
		var prev uint32
		for _, r := range d.records {
			if r.uid <= prev || r.base == "" || strings.ContainsAny(r.base, "/\x00:") {
				t.Fatalf("bad record %+v", r)
			}
			prev = r.uid
		}
		if n := d.nextUID(); n <= d.maxUID || n == 0 {
			t.Fatalf("nextUID %d with max %d", n, d.maxUID)
		}
		// What we write back parses to the same records.
		buf := []byte(formatUidlistHeader(d.hdr.uidValidity, d.nextUID(), "0"))
		for _, r := range d.records {
			buf = appendUidRecord(buf, r.uid, r.base, r.vsize)
		}
		d2, err := parseUidlist(buf)
		if err != nil || len(d2.records) != len(d.records) || !d2.complete {
			t.Fatalf("rewrite does not parse back: %v %q", err, buf)
		}
		for i := range d.records {
			a, b := d.records[i], d2.records[i]
			if a.uid != b.uid || a.base != b.base {
				t.Fatalf("record %d: %+v vs %+v", i, a, b)
			}
		}
	})
}

func TestFlagNames(t *testing.T) {
	base := "1700000000.M1P2Q3.host,S=10,W=12"
	kw := keywordTable{"$Junk", "work"}
	for _, tc := range []struct {
		name  string
		flags []string
		cur   string
	}{
		{base + ":2,", nil, base + ":2,"},
		{base + ":2,SRa", []string{"$Junk", `\Answered`, `\Seen`}, base + ":2,RSa"},
		{base + ":2,TPFDb", []string{`\Deleted`, `\Draft`, `\Flagged`, "work"}, base + ":2,DFPTb"},
		{base, nil, base + ":2,"},
		{base + ":2,z", nil, base + ":2,z"}, // letter without a name: kept, not shown
	} {
		b, letters := infoOf(tc.name)
		if b != base {
			t.Errorf("base of %q = %q", tc.name, b)
		}
		got := flagNames(letters, kw[:])
		if strings.Join(got, " ") != strings.Join(tc.flags, " ") {
			t.Errorf("flags of %q = %v, want %v", tc.name, got, tc.flags)
		}
		if c := curName(b, letters); c != tc.cur {
			t.Errorf("curName = %q, want %q", c, tc.cur)
		}
	}
	if sizeField(base, 'S') != 10 || sizeField(base, 'W') != 12 || sizeField("1.2.h", 'W') != -1 {
		t.Error("sizeField")
	}
}

func TestVsizeCounter(t *testing.T) {
	for _, tc := range []struct {
		chunks []string
		want   int64
	}{
		{[]string{"a\r\nb\r\n"}, 6},
		{[]string{"a\nb\n"}, 6},
		{[]string{"a\r", "\nb\n"}, 6},
		{[]string{"\n", "\n"}, 4},
		{[]string{"a\r\r\n"}, 4},
		{[]string{""}, 0},
	} {
		var c vsizeCounter
		for _, ch := range tc.chunks {
			c.Write([]byte(ch))
		}
		if c.vsize() != tc.want {
			t.Errorf("%q: vsize %d want %d", tc.chunks, c.vsize(), tc.want)
		}
	}
}
