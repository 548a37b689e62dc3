package imap_test

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"
)

func TestSearch(t *testing.T) {
	ts := startServer(t, nil)
	r := dialRaw(t, ts.addr)
	r.login(alice)
	msgs := []struct{ flags, date, msg string }{
		{`\Seen`, "10-Jan-2024 10:00:00 +0000", testMessage("Meeting tomorrow", "The agenda is attached.")},
		{`\Flagged $Work`, "15-Feb-2024 23:30:00 +0000", "From: Dave <dave@example.org>\r\n" +
			"To: alice@example.test\r\n" +
			"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n" +
			"Date: Thu, 15 Feb 2024 12:00:00 +0100\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" +
			base64.StdEncoding.EncodeToString([]byte("Schöne Grüße vom Rhein")) + "\r\n"},
		{`\Deleted`, "01-Mar-2024 08:00:00 +0000", multipartMsg},
		{``, "02-Mar-2024 08:00:00 +0000", "From: Frank <frank@example.net>\r\nSubject: long\r\n" +
			"Date: Sat, 02 Mar 2024 08:00:00 +0000\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n" +
			strings.Repeat("lorem ipsum dolor sit amet\r\n", 400) + "caf\xe9 au lait\r\n"},
	}
	for _, m := range msgs {
		if _, st := r.appendMsg("INBOX", m.flags, m.date, m.msg); !strings.HasPrefix(st, "OK") {
			t.Fatalf("APPEND: %s", st)
		}
	}
	r.expectOK("SELECT INBOX")
	tests := []struct {
		criteria string
		want     string // UIDs, space-separated
	}{
		{"ALL", "1 2 3 4"},
		{"SEEN", "1"},
		{"UNSEEN", "2 3 4"},
		{"FLAGGED", "2"},
		{"KEYWORD $Work", "2"},
		{"KEYWORD $work", "2"},
		{"UNKEYWORD $Work", "1 3 4"},
		{"DELETED", "3"},
		{"UNDELETED", "1 2 4"},
		{"NEW", ""},
		{"OLD", "1 2 3 4"},
		{"FROM carol", "1"},
		{"FROM DAVE", "2 3"},
		{"TO alice", "1 2 3"},
		{`SUBJECT "aus köln"`, "2"},
		{`HEADER Message-ID "<m3@"`, "3"},
		{`HEADER X-Missing ""`, ""},
		{`HEADER Subject ""`, "1 2 3 4"},
		{"BODY agenda", "1"},
		{`BODY "SCHÖNE GRÜSSE"`, ""},
		{`BODY "schöne grüße vom"`, "2"},
		{`BODY "invoice number 42"`, "3"},
		{`BODY "line two"`, "3"},
		{`BODY "café au lait"`, "4"},
		{`BODY meeting`, ""},
		{`TEXT meeting`, "1"},
		{`TEXT "ipsum dolor"`, "4"},
		{"SINCE 1-Feb-2024", "2 3 4"},
		{"BEFORE 1-Feb-2024", "1"},
		{"ON 1-Mar-2024", "3"},
		{"ON 15-Feb-2024", "2"},
		{"SENTBEFORE 1-Feb-2024", "1"},
		{"SENTSINCE 5-Mar-2024", "3"},
		{"SENTON 2-Mar-2024", "4"},
		{"LARGER 5000", "4"},
		{"SMALLER 5000", "1 2 3"},
		{"UID 2:3", "2 3"},
		{"UID 3:*", "3 4"},
		{"UID 9:*", "4"},
		{"2,4", "2 4"},
		{"NOT SEEN", "2 3 4"},
		{"OR FLAGGED DELETED", "2 3"},
		{"OR SEEN (FROM frank LARGER 100)", "1 4"},
		{"NOT (OR SEEN FLAGGED)", "3 4"},
		{"UNSEEN SMALLER 5000 NOT DELETED", "2"},
		{`CHARSET UTF-8 SUBJECT "grüße"`, "2 3"},
	}
	for _, tc := range tests {
		t.Run(tc.criteria, func(t *testing.T) {
			u := r.expectOK("UID SEARCH %s", tc.criteria)
			want := strings.TrimSpace("* SEARCH " + tc.want)
			if !slices.Contains(u, want) {
				t.Errorf("got %q, want %q", u, want)
			}
		})
	}
	runSteps(t, r, []step{
		{name: "sequence numbers", cmd: "SEARCH UNSEEN", status: "OK", want: []string{"* SEARCH 2 3 4"}},
		{name: "esearch", cmd: "SEARCH RETURN (MIN MAX COUNT) UNSEEN", status: "OK", want: []string{`* ESEARCH (TAG "{tag}") MIN 2 MAX 4 COUNT 3`}},
		{name: "esearch all", cmd: "UID SEARCH RETURN () FLAGGED", status: "OK", want: []string{`* ESEARCH (TAG "{tag}") UID ALL 2`}},
		{name: "esearch none", cmd: "SEARCH RETURN (COUNT) KEYWORD nothing", status: "OK", want: []string{`* ESEARCH (TAG "{tag}") COUNT 0`}},
		{name: "searchres save", cmd: "SEARCH RETURN (SAVE) OR FLAGGED SEEN", status: "OK"},
		{name: "searchres use", cmd: "FETCH $ (UID)", status: "OK", want: []string{"* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)"}},
		{name: "bad charset", cmd: `SEARCH CHARSET KOI8-R TEXT x`, status: "NO [BADCHARSET]"},
		{name: "bad key", cmd: `SEARCH FOOBAR`, status: "!OK"},
		{name: "sequence beyond", cmd: `SEARCH 9`, status: "BAD"},
	})
}

// TestSearchManyNeedles: a long body is matched across the 64 KiB chunks.
func TestSearchAcrossChunks(t *testing.T) {
	ts := startServer(t, nil)
	body := strings.Repeat("a", 64<<10-3) + "NEEDLE" + strings.Repeat("b", 1000)
	ts.deliver(t, alice, "INBOX", testMessage("big", body))
	r := dialRaw(t, ts.addr)
	r.login(alice)
	r.expectOK("SELECT INBOX")
	for _, q := range []string{"needle", "aaaneedlebbb", strings.Repeat("a", 100) + "needle"} {
		if u := r.expectOK("SEARCH BODY %s", q); !slices.Contains(u, "* SEARCH 1") {
			t.Errorf("BODY %.20s...: %q", q, u)
		}
	}
	if u := r.expectOK("SEARCH BODY %s", "needlex"); !slices.Contains(u, "* SEARCH") {
		t.Errorf("BODY needlex: %q", u)
	}
}
