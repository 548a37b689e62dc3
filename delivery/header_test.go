package delivery_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/postyard-mail/postyard/delivery"
)

func TestScanHeader(t *testing.T) {
	long := strings.Repeat("x", 20<<10)
	cases := []struct {
		name    string
		msg     string
		from    []string
		date    bool
		msgid   bool
		wantErr error
	}{
		{"plain", "From: Alice <alice@example.test>\r\nDate: x\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n",
			[]string{"Alice <alice@example.test>"}, true, true, nil},
		{"folded and case", "fRoM: \"Alice\"\r\n <alice@example.test>\r\nmessage-id: <1@x>\r\n\r\n",
			[]string{"\"Alice\" <alice@example.test>"}, false, true, nil},
		{"two From fields", "From: a@example.test\r\nFrom: b@example.test\r\n\r\n",
			[]string{"a@example.test", "b@example.test"}, false, false, nil},
		{"none", "Subject: hi\r\n\r\nFrom: not@header.test\r\n", nil, false, false, nil},
		{"bare LF", "From: a@example.test\nDate: x\n\nbody", []string{"a@example.test"}, true, false, nil},
		{"no body", "From: a@example.test", []string{"a@example.test"}, false, false, nil},
		{"body without blank line", "From: a@example.test\r\nthis is body\r\nDate: no\r\n", []string{"a@example.test"}, false, false, nil},
		{"obsolete space before colon", "From : a@example.test\r\n\r\n", []string{"a@example.test"}, false, false, nil},
		{"From-like names", "From-X: a@example.test\r\nXFrom: b@example.test\r\n\r\n", nil, false, false, nil},
		{"From too long", "From: " + long + "@example.test\r\n\r\n", nil, false, false, delivery.ErrHeaderTooLong},
		{"continuation too long", "From: a\r\n " + long + "\r\n\r\n", nil, false, false, delivery.ErrHeaderTooLong},
		{"long other field", "Subject: " + long + "\r\nFrom: a@example.test\r\n\r\n", []string{"a@example.test"}, false, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, err := delivery.ScanHeader(strings.NewReader(c.msg))
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if err != nil {
				return
			}
			if !slices.Equal(info.From, c.from) || info.HasDate != c.date || info.HasMessageID != c.msgid {
				t.Fatalf("got %+v, want From %q date %v msgid %v", info, c.from, c.date, c.msgid)
			}
		})
	}
}

func FuzzScanHeader(f *testing.F) {
	f.Add("From: Alice <alice@example.test>\r\nDate: x\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n")
	f.Add("From: a\r\n\tb\r\nFrom: c\n\nx")
	f.Add("From: " + strings.Repeat("y", 17<<10) + "\r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		info, err := delivery.ScanHeader(strings.NewReader(msg))
		if err != nil && !errors.Is(err, delivery.ErrHeaderTooLong) {
			t.Fatalf("unexpected error %v", err)
		}
		for _, v := range info.From {
			if len(v) > 16<<10 {
				t.Fatalf("kept %d bytes of a From value", len(v))
			}
			if strings.Contains(v, "\n") {
				t.Fatalf("From value not unfolded: %q", v)
			}
		}
		// The header section is at most the message: a From found must
		// come from it.
		if len(info.From) > 0 && !strings.Contains(strings.ToLower(msg), "from") {
			t.Fatal("From reported in a message without one")
		}
	})
}
