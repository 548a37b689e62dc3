package imap

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/postyard-mail/postyard/maildir"
)

// testView is a view over known UIDs whose events the test sends.
func testView(known ...uint32) (*view, chan maildir.Event) {
	ch := make(chan maildir.Event, 100)
	v := &view{
		watch:    &maildir.Watcher{C: ch},
		known:    known,
		expunged: map[uint32]struct{}{},
		flags:    map[uint32][]string{},
		own:      map[uint32]uint64{},
	}
	return v, ch
}

// recorder is an updateWriter that notes what it was told to write.
type recorder struct{ lines []string }

func (r *recorder) WriteExpunge(seq uint32) error {
	r.lines = append(r.lines, fmt.Sprintf("%d EXPUNGE", seq))
	return nil
}

func (r *recorder) WriteNumMessages(n uint32) error {
	r.lines = append(r.lines, fmt.Sprintf("%d EXISTS", n))
	return nil
}

func (r *recorder) WriteMessageFlags(seq uint32, uid imap.UID, flags []imap.Flag) error {
	r.lines = append(r.lines, fmt.Sprintf("%d FETCH UID %d %v", seq, uid, flags))
	return nil
}

func TestViewFlush(t *testing.T) {
	ev := func(k maildir.EventKind, uid uint32, mod uint64, flags ...string) maildir.Event {
		return maildir.Event{Kind: k, UID: uid, ModSeq: mod, Flags: flags}
	}
	tests := []struct {
		name         string
		known        []uint32
		own          map[uint32]uint64
		events       []maildir.Event
		allowExpunge bool
		want         []string
		wantKnown    []uint32
	}{
		{
			name: "expunges highest first", known: []uint32{1, 2, 3, 4, 5},
			events:       []maildir.Event{ev(maildir.EventExpunge, 2, 0), ev(maildir.EventExpunge, 4, 0)},
			allowExpunge: true, want: []string{"4 EXPUNGE", "2 EXPUNGE"}, wantKnown: []uint32{1, 3, 5},
		},
		{
			name: "expunges held during FETCH, EXISTS counts them", known: []uint32{1, 2, 3},
			events:    []maildir.Event{ev(maildir.EventExpunge, 2, 0), ev(maildir.EventNew, 7, 0)},
			want:      []string{"4 EXISTS"},
			wantKnown: []uint32{1, 2, 3, 7},
		},
		{
			name: "new and gone before a look: nothing", known: []uint32{1},
			events:       []maildir.Event{ev(maildir.EventNew, 2, 0), ev(maildir.EventFlags, 2, 5, `\Seen`), ev(maildir.EventExpunge, 2, 0)},
			allowExpunge: true, want: nil, wantKnown: []uint32{1},
		},
		{
			name: "own append before the event of an earlier delivery", known: []uint32{1},
			own:    nil,
			events: []maildir.Event{ev(maildir.EventNew, 3, 0), ev(maildir.EventNew, 2, 0), ev(maildir.EventNew, 3, 0)},
			want:   []string{"3 EXISTS"}, wantKnown: []uint32{1, 2, 3},
		},
		{
			name: "events the snapshot already had", known: []uint32{1, 2},
			events:       []maildir.Event{ev(maildir.EventNew, 2, 0), ev(maildir.EventNew, 1, 0), ev(maildir.EventExpunge, 9, 0)},
			allowExpunge: true, want: nil, wantKnown: []uint32{1, 2},
		},
		{
			name: "flags of others, latest wins", known: []uint32{3, 8},
			events: []maildir.Event{ev(maildir.EventFlags, 8, 4, `\Seen`), ev(maildir.EventFlags, 8, 6, `\Flagged`)},
			want:   []string{"2 FETCH UID 8 [\\Flagged]"}, wantKnown: []uint32{3, 8},
		},
		{
			name: "own change not echoed, a later one is", known: []uint32{1, 2},
			own: map[uint32]uint64{1: 10, 2: 10},
			events: []maildir.Event{
				ev(maildir.EventFlags, 1, 9, `\Answered`), // older, superseded by ours
				ev(maildir.EventFlags, 1, 10, `\Seen`),    // ours
				ev(maildir.EventFlags, 2, 10, `\Seen`),    // ours
				ev(maildir.EventFlags, 2, 11, `\Deleted`), // someone else's, later
			},
			want: []string{"2 FETCH UID 2 [\\Deleted]"}, wantKnown: []uint32{1, 2},
		},
		{
			name: "flags of an expunged message are dropped", known: []uint32{1, 2},
			events:       []maildir.Event{ev(maildir.EventFlags, 2, 3, `\Seen`), ev(maildir.EventExpunge, 2, 0)},
			allowExpunge: true, want: []string{"2 EXPUNGE"}, wantKnown: []uint32{1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, ch := testView(tc.known...)
			for k, m := range tc.own {
				v.own[k] = m
			}
			for _, e := range tc.events {
				ch <- e
			}
			var r recorder
			if err := v.flush(&r, tc.allowExpunge); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.lines, tc.want) {
				t.Errorf("wrote %q, want %q", r.lines, tc.want)
			}
			if !slices.Equal(v.known, tc.wantKnown) {
				t.Errorf("known %v, want %v", v.known, tc.wantKnown)
			}
		})
	}
}

func TestViewResolve(t *testing.T) {
	v, _ := testView(3, 5, 9, 10, 20)
	v.searchRes = imap.UIDSetNum(5, 20)
	seq := func(ranges ...[2]uint32) imap.SeqSet {
		var s imap.SeqSet
		for _, r := range ranges {
			s = append(s, imap.SeqRange{Start: r[0], Stop: r[1]})
		}
		return s
	}
	uid := func(ranges ...[2]uint32) imap.UIDSet {
		var s imap.UIDSet
		for _, r := range ranges {
			s = append(s, imap.UIDRange{Start: imap.UID(r[0]), Stop: imap.UID(r[1])})
		}
		return s
	}
	tests := []struct {
		name    string
		set     imap.NumSet
		want    []item
		wantErr bool
	}{
		{"all", seq([2]uint32{1, 0}), []item{{1, 3}, {2, 5}, {3, 9}, {4, 10}, {5, 20}}, false},
		{"star", seq([2]uint32{0, 0}), []item{{5, 20}}, false},
		{"overlapping", seq([2]uint32{2, 3}, [2]uint32{3, 4}, [2]uint32{2, 2}), []item{{2, 5}, {3, 9}, {4, 10}}, false},
		{"beyond", seq([2]uint32{6, 6}), nil, true},
		{"uid range", uid([2]uint32{4, 10}), []item{{2, 5}, {3, 9}, {4, 10}}, false},
		{"uid star past the end", uid([2]uint32{25, 0}), []item{{5, 20}}, false},
		{"uid gaps", uid([2]uint32{6, 8}), nil, false},
		{"saved search", imap.SearchRes(), []item{{2, 5}, {5, 20}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.resolve(tc.set)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v", err)
			}
			var ie *imap.Error
			if err != nil && (!errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeBad) {
				t.Errorf("error %v, want a BAD", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	empty, _ := testView()
	if got, err := empty.resolve(seq([2]uint32{0, 0})); err != nil || len(got) != 0 {
		t.Errorf("* in an empty mailbox: %v %v", got, err)
	}
}

func TestAuthDelay(t *testing.T) {
	for n, want := range map[int]int{0: 0, 1: 1, 2: 2, 3: 4, 5: 16, 9: 16} {
		if got := authDelay(1, n); int(got) != want {
			t.Errorf("authDelay(1, %d) = %d, want %d", n, got, want)
		}
	}
}

// TestMapErr: each store error becomes its response code (EXAMPLES 12).
func TestMapErr(t *testing.T) {
	s := &session{log: discardLog(), cid: "abc"}
	tests := []struct {
		err  error
		typ  imap.StatusResponseType
		code imap.ResponseCode
	}{
		{fmt.Errorf("x: %w", maildir.ErrNoSuchMailbox), imap.StatusResponseTypeNo, imap.ResponseCodeNonExistent},
		{maildir.ErrExists, imap.StatusResponseTypeNo, imap.ResponseCodeAlreadyExists},
		{maildir.ErrInvalidName, imap.StatusResponseTypeNo, imap.ResponseCodeCannot},
		{maildir.ErrInbox, imap.StatusResponseTypeNo, imap.ResponseCodeCannot},
		{maildir.ErrNoSuchMessage, imap.StatusResponseTypeNo, respCodeExpungeIssued},
		{maildir.ErrInvalidFlag, imap.StatusResponseTypeBad, imap.ResponseCodeClientBug},
		{maildir.ErrTooManyKeywords, imap.StatusResponseTypeNo, imap.ResponseCodeLimit},
		{errTooBig, imap.StatusResponseTypeNo, imap.ResponseCodeTooBig},
		{errors.New("disk on fire"), imap.StatusResponseTypeNo, imap.ResponseCodeServerBug},
		{&imap.Error{Type: imap.StatusResponseTypeBad, Text: "as is"}, imap.StatusResponseTypeBad, ""},
	}
	for _, tc := range tests {
		var ie *imap.Error
		if err := s.mapErr("op", tc.err); !errors.As(err, &ie) || ie.Type != tc.typ || ie.Code != tc.code {
			t.Errorf("%v: %v, want %s [%s]", tc.err, err, tc.typ, tc.code)
		}
	}
	if err := s.mapErr("op", errors.New("x")); !errorsContains(err, "abc") {
		t.Errorf("internal error %v does not name the connection id", err)
	}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func errorsContains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }
