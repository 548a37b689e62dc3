package imap_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	gimap "github.com/postyard-mail/postyard/imap"
)

// appendMsg APPENDs with a non-synchronizing literal (LITERAL+).
func (r *rawConn) appendMsg(mailbox, flags, date, msg string) (untagged []string, status string) {
	r.t.Helper()
	r.tag++
	tag := fmt.Sprintf("t%d", r.tag)
	args := ""
	if flags != "" {
		args += " (" + flags + ")"
	}
	if date != "" {
		args += ` "` + date + `"`
	}
	r.write(fmt.Sprintf("%s APPEND %s%s {%d+}\r\n%s\r\n", tag, mailbox, args, len(msg), msg))
	return r.readUntil(tag)
}

// multipartMsg exercises the MIME scanner: nested multiparts, an
// attachment, a forwarded message, quoted-printable and base64.
var multipartMsg = strings.ReplaceAll(`From: Dave <dave@example.org>
To: alice@example.test
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and a report
Date: Tue, 05 Mar 2024 09:30:00 +0100
Message-ID: <m3@example.org>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

This is the preamble.
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Sch=C3=B6ne Gr=C3=BC=C3=9Fe, invoice number =
42 attached.
--inner
Content-Type: text/html; charset=utf-8

<p>Sch&ouml;ne Gr&uuml;&szlig;e</p>
--inner--
--outer
Content-Type: application/octet-stream; name="data.bin"
Content-Disposition: attachment; filename="data.bin"
Content-Transfer-Encoding: base64

`+base64.StdEncoding.EncodeToString([]byte("\x00\x01binary\xc3\xa9data\r\n"))+`
--outer
Content-Type: message/rfc822

From: Erin <erin@example.org>
Subject: forwarded
Content-Type: text/plain

Forwarded body line one
line two
--outer--
The epilogue.
`, "\n", "\r\n")

// TestFetchSections compares every BODY section with go-imap's own
// (buffering) extraction on a well-formed message.
func TestFetchSections(t *testing.T) {
	ts := startServer(t, nil)
	uid := ts.deliver(t, alice, "INBOX", multipartMsg)
	c := ts.client(t, alice, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sections := []*imap.FetchItemBodySection{
		{},
		{Specifier: imap.PartSpecifierHeader},
		{Specifier: imap.PartSpecifierText},
		{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"subject", "FROM", "X-Missing"}},
		{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"Subject", "Message-ID"}},
		{Part: []int{1}},
		{Part: []int{1, 1}},
		{Part: []int{1, 2}},
		{Part: []int{1, 1}, Specifier: imap.PartSpecifierMIME},
		{Part: []int{2}},
		{Part: []int{2}, Specifier: imap.PartSpecifierMIME},
		{Part: []int{3}},
		{Part: []int{3}, Specifier: imap.PartSpecifierHeader},
		{Part: []int{3}, Specifier: imap.PartSpecifierText},
		{Part: []int{3, 1}},
		{Part: []int{4}},    // no such part: empty
		{Part: []int{2, 1}}, // part 1 of a single part is itself
		{Partial: &imap.SectionPartial{Offset: 10, Size: 20}},
		{Part: []int{1, 1}, Partial: &imap.SectionPartial{Offset: 5, Size: 1000}},
		{Specifier: imap.PartSpecifierText, Partial: &imap.SectionPartial{Offset: 100000, Size: 10}},
	}
	for _, sec := range sections {
		name := sectionName(sec)
		t.Run(name, func(t *testing.T) {
			sec.Peek = true
			msgs, err := c.Fetch(imap.UIDSetNum(imap.UID(uid)), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 1 {
				t.Fatalf("%d messages", len(msgs))
			}
			got := msgs[0].FindBodySection(sec)
			want := imapserver.ExtractBodySection(strings.NewReader(multipartMsg), sec)
			if len(sec.Part) == 1 && sec.Part[0] == 4 {
				want = nil
			}
			if !bytes.Equal(got, want) {
				t.Errorf("BODY[%s]:\n got %q\nwant %q", name, got, want)
			}
		})
	}
}

func sectionName(sec *imap.FetchItemBodySection) string {
	var b strings.Builder
	for i, p := range sec.Part {
		if i > 0 {
			b.WriteByte('.')
		}
		fmt.Fprint(&b, p)
	}
	if sec.Specifier != "" {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(string(sec.Specifier))
	}
	if len(sec.HeaderFields) > 0 {
		b.WriteString(".FIELDS " + strings.Join(sec.HeaderFields, " "))
	}
	if len(sec.HeaderFieldsNot) > 0 {
		b.WriteString(".FIELDS.NOT " + strings.Join(sec.HeaderFieldsNot, " "))
	}
	if p := sec.Partial; p != nil {
		fmt.Fprintf(&b, "<%d.%d>", p.Offset, p.Size)
	}
	return b.String()
}

// TestFetchItems checks the wire form of the other FETCH items.
func TestFetchItems(t *testing.T) {
	ts := startServer(t, nil)
	ts.deliver(t, alice, "INBOX", testMessage("plain", "just text"))
	ts.deliver(t, alice, "INBOX", multipartMsg)
	r := dialRaw(t, ts.addr)
	r.login(alice)
	r.expectOK("SELECT INBOX")
	bin := "\x00\x01binary\xc3\xa9data\r\n"
	tests := []struct {
		name string
		cmd  string
		want []*regexp.Regexp // each must match one untagged line
	}{
		{"flags uid size", "FETCH 1 (FLAGS UID RFC822.SIZE)", res(`^\* 1 FETCH \(UID 1 FLAGS \(\) RFC822\.SIZE \d+\)$`)},
		{"internaldate", "FETCH 1 INTERNALDATE", res(`^\* 1 FETCH \(INTERNALDATE "\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"\)$`)},
		{"envelope", "FETCH 2 ENVELOPE", res(`^\* 2 FETCH \(ENVELOPE \("Tue, 05 Mar 2024 09:30:00 \+0100" "=\?utf-8\?q\?Gr=C3=BC=C3=9Fe_and_a_report\?=" \(\("Dave" NIL "dave" "example\.org"\)\) .* "<m3@example\.org>"\)\)$`)},
		{"bodystructure", "FETCH 2 BODYSTRUCTURE", res(
			`^\* 2 FETCH \(BODYSTRUCTURE \(\(\("text" "plain" \("charset" "utf-8"\) NIL NIL "quoted-printable" 59 1 NIL NIL NIL NIL\)\("text" "html" \("charset" "utf-8"\) NIL NIL "7bit" 35 0 NIL NIL NIL NIL\) "alternative" \("boundary" "inner"\) NIL NIL NIL\)` +
				`\("application" "octet-stream" \("name" "data\.bin"\) NIL NIL "base64" \d+ NIL \("attachment" \("filename" "data\.bin"\)\) NIL NIL\)` +
				`\("message" "rfc822" NIL NIL NIL "7bit" \d+ \(NIL "forwarded" \(\("Erin" NIL "erin" "example\.org"\)\) .*\) \("text" "plain" NIL NIL NIL "7bit" 33 1 NIL NIL NIL NIL\) 5 NIL NIL NIL NIL\) "mixed" \("boundary" "outer"\) NIL NIL NIL\)\)$`)},
		{"body (non-extended)", "FETCH 1 BODY", res(`^\* 1 FETCH \(BODY \("text" "plain" \("charset" "us-ascii"\) NIL NIL "7bit" 11 1\)\)$`)},
		{"binary of base64", "FETCH 2 BINARY.PEEK[2]", res(`^\* 2 FETCH \(BINARY\[2\] ~\{` + fmt.Sprint(len(bin)) + `\}` + regexp.QuoteMeta(bin) + `\)$`)},
		{"binary of quoted-printable", "FETCH 2 BINARY.PEEK[1.1]", res(`^\* 2 FETCH \(BINARY\[1\.1\] ~\{\d+\}Schöne Grüße, invoice number 42 attached\.\)$`)},
		{"binary partial", "FETCH 2 BINARY.PEEK[2]<2.6>", res(`^\* 2 FETCH \(BINARY\[2\](<2>)? ~\{6\}binary\)$`)},
		{"binary size", "FETCH 2 BINARY.SIZE[2]", res(`^\* 2 FETCH \(BINARY\.SIZE\[2\] ` + fmt.Sprint(len(bin)) + `\)$`)},
		{"rfc822.header", "FETCH 1 RFC822.HEADER", res(`^\* 1 FETCH \(RFC822\.HEADER \{\d+\}From: Carol`)},
		{"uid fetch adds UID", "UID FETCH 2 FLAGS", res(`^\* 2 FETCH \(UID 2 FLAGS \(\)\)$`)},
		{"fast macro", "FETCH 1:2 FAST", res(`^\* 1 FETCH \(FLAGS \(\) INTERNALDATE ".*" RFC822\.SIZE \d+\)$`, `^\* 2 FETCH`)},
		{"star", "FETCH * UID", res(`^\* 2 FETCH \(UID 2\)$`)},
		{"body sets seen", "FETCH 1 BODY[TEXT]", res(`^\* 1 FETCH \(FLAGS \(\\Seen\) BODY\[TEXT\] \{11\}just text\r\n\)$`)},
		{"seen stays", "FETCH 1 FLAGS", res(`^\* 1 FETCH \(FLAGS \(\\Seen\)\)$`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := r.expectOK("%s", tc.cmd)
			for _, re := range tc.want {
				if !slices.ContainsFunc(u, re.MatchString) {
					t.Errorf("no line matches %s in %q", re, u)
				}
			}
		})
	}
	runSteps(t, r, []step{
		{name: "beyond the last message", cmd: "FETCH 3 FLAGS", status: "BAD"},
		{name: "unknown item", cmd: "FETCH 1 FOO", status: "BAD"},
		{name: "uid beyond is empty", cmd: "UID FETCH 99 FLAGS", status: "OK"},
	})
}

func res(patterns ...string) []*regexp.Regexp {
	out := make([]*regexp.Regexp, len(patterns))
	for i, p := range patterns {
		out[i] = regexp.MustCompile("(?s)" + p)
	}
	return out
}

func TestAppend(t *testing.T) {
	ts := startServer(t, func(o *gimap.Options) { o.MaxMessageSize = 4096 })
	r := dialRaw(t, ts.addr)
	r.login(alice)
	msg := testMessage("draft", "not yet")
	u, st := r.appendMsg("Drafts", `\Draft \Seen $Label1`, "10-Jan-2024 10:00:00 +0100", msg)
	m := regexp.MustCompile(`^OK \[APPENDUID (\d+) 1\]`).FindStringSubmatch(st)
	if m == nil {
		t.Fatalf("APPEND: %q %q", st, u)
	}
	runSteps(t, r, []step{
		{name: "stored", cmd: "EXAMINE Drafts", status: "OK [READ-ONLY]", want: []string{"* 1 EXISTS", "* OK [UIDVALIDITY " + m[1] + "] UIDs valid"}},
		{name: "flags and date kept", cmd: "FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)", status: "OK",
			want: []string{fmt.Sprintf(`* 1 FETCH (FLAGS ($Label1 \Draft \Seen) INTERNALDATE "10-Jan-2024 09:00:00 +0000" RFC822.SIZE %d)`, len(msg))}},
		{name: "read-only store", cmd: `STORE 1 +FLAGS (\Flagged)`, status: "NO [READ-ONLY]"},
	})
	tests := []struct {
		name, mailbox, flags, msg, status string
	}{
		{"missing mailbox", "Nope", "", msg, "NO [TRYCREATE]"},
		{"too big", "INBOX", "", strings.Repeat("x", 5000), "NO [TOOBIG]"},
		{"recent is the server's", "INBOX", `\Recent`, msg, "BAD"},
		{"unknown system flag", "INBOX", `\Important`, msg, "BAD"},
		{"to Sent", "Sent", `\Seen`, msg, "OK [APPENDUID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, st := r.appendMsg(tc.mailbox, tc.flags, "", tc.msg)
			if !strings.HasPrefix(st, tc.status) {
				t.Fatalf("got %q, want %q", st, tc.status)
			}
			// The connection is still in step after a refused literal.
			r.expectOK("NOOP")
		})
	}
	// A synchronizing literal over the limit is refused before it is sent
	// only past go-imap's own limit; ours answers after reading it.
	r.write(fmt.Sprintf("s1 APPEND INBOX {%d}\r\n", 5000))
	if l := r.readLine(); !strings.HasPrefix(l, "+") {
		t.Fatalf("got %q, want a continuation", l)
	}
	r.write(strings.Repeat("y", 5000) + "\r\n")
	if _, st := r.readUntil("s1"); !strings.HasPrefix(st, "NO [TOOBIG]") {
		t.Fatalf("got %q", st)
	}
	// APPEND to the selected mailbox announces the new message.
	r.expectOK("SELECT INBOX")
	u, st = r.appendMsg("INBOX", "", "", msg)
	if !strings.HasPrefix(st, "OK") || !slices.Contains(u, "* 1 EXISTS") {
		t.Fatalf("APPEND to the selected mailbox: %q %q", st, u)
	}
}

func TestStoreCopyMoveExpunge(t *testing.T) {
	ts := startServer(t, nil)
	for i := 1; i <= 5; i++ {
		ts.deliver(t, alice, "INBOX", testMessage(fmt.Sprintf("m%d", i), "body"))
	}
	r := dialRaw(t, ts.addr)
	r.login(alice)
	r.expectOK("SELECT INBOX")
	runSteps(t, r, []step{
		{name: "add", cmd: `STORE 1:2 +FLAGS (\Flagged $Work)`, status: "OK", want: []string{
			`* 1 FETCH (FLAGS ($Work \Flagged))`, `* 2 FETCH (FLAGS ($Work \Flagged))`}},
		{name: "silent", cmd: `STORE 1 -FLAGS.SILENT ($Work)`, status: "OK", absent: []string{"FETCH"}},
		{name: "silent took effect", cmd: `FETCH 1 FLAGS`, status: "OK", want: []string{`* 1 FETCH (FLAGS (\Flagged))`}},
		{name: "replace", cmd: `STORE 3 FLAGS (\Seen \Answered)`, status: "OK", want: []string{`* 3 FETCH (FLAGS (\Answered \Seen))`}},
		{name: "uid store", cmd: `UID STORE 4 +FLAGS (\Deleted)`, status: "OK", want: []string{`* 4 FETCH (UID 4 FLAGS (\Deleted))`}},
		{name: "keyword in FLAGS after reselect", cmd: `SELECT INBOX`, status: "OK", want: []string{`* FLAGS (\Answered \Flagged \Deleted \Seen \Draft $Work)`}},
		{name: "recent refused", cmd: `STORE 1 +FLAGS (\Recent)`, status: "BAD"},
		{name: "copy", cmd: `COPY 1:2 Archive`, status: "OK [COPYUID"},
		{name: "copied", cmd: `STATUS Archive (MESSAGES)`, status: "OK", want: []string{`* STATUS "Archive" (MESSAGES 2)`}},
		{name: "copy to missing", cmd: `COPY 1 Nope`, status: "NO [TRYCREATE]"},
		{name: "uid copy", cmd: `UID COPY 3,5 Archive`, status: "OK [COPYUID"},
		{name: "move", cmd: `MOVE 2 Trash`, status: "OK", want: []string{"* 2 EXPUNGE"}},
		{name: "renumbered", cmd: `FETCH 2 UID`, status: "OK", want: []string{`* 2 FETCH (UID 3)`}},
		{name: "expunge the deleted", cmd: `EXPUNGE`, status: "OK", want: []string{"* 3 EXPUNGE"}},
		{name: "left", cmd: `UID SEARCH ALL`, status: "OK", want: []string{"* SEARCH 1 3 5"}},
		{name: "uid expunge only named", cmd: `STORE 1:3 +FLAGS.SILENT (\Deleted)`, status: "OK"},
		{name: "uid expunge", cmd: `UID EXPUNGE 3`, status: "OK", want: []string{"* 2 EXPUNGE"}, absent: []string{"* 1 EXPUNGE"}},
		{name: "move to self", cmd: `MOVE 1 INBOX`, status: "NO"},
		{name: "close expunges", cmd: `CLOSE`, status: "OK"},
		{name: "after close", cmd: `STATUS INBOX (MESSAGES)`, status: "OK", want: []string{`* STATUS INBOX (MESSAGES 0)`}},
	})
	// COPYUID names the new UIDs in the destination's UIDVALIDITY.
	u, st := r.cmd(`SELECT Archive`)
	if !strings.HasPrefix(st, "OK") {
		t.Fatal(st)
	}
	var validity string
	for _, l := range u {
		if m := regexp.MustCompile(`UIDVALIDITY (\d+)`).FindStringSubmatch(l); m != nil {
			validity = m[1]
		}
	}
	_, st = r.cmd(`UID COPY 1:2 Junk`)
	if want := regexp.MustCompile(`^OK \[COPYUID \d+ 1:2 1:2\]`); !want.MatchString(st) {
		t.Fatalf("COPYUID: %q", st)
	}
	_, st = r.cmd(`UID MOVE 1 Trash`)
	if !strings.HasPrefix(st, "OK") {
		t.Fatal(st)
	}
	_ = validity
	// CLOSE after EXAMINE expunges nothing.
	runSteps(t, r, []step{
		{name: "mark", cmd: `STORE 1 +FLAGS (\Deleted)`, status: "OK"},
		{name: "examine", cmd: `EXAMINE Archive`, status: "OK [READ-ONLY]"},
		{name: "close read-only", cmd: `CLOSE`, status: "OK"},
		{name: "kept", cmd: `STATUS Archive (MESSAGES DELETED)`, status: "OK", want: []string{`* STATUS "Archive" (MESSAGES 3 DELETED 1)`}},
	})
}
