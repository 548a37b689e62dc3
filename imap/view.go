package imap

import (
	"cmp"
	"runtime"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postyard-mail/postyard/maildir"
)

// view is one session's picture of its selected mailbox: which UIDs the
// client knows, in sequence-number order, and the changes it has not been
// told yet. Everything else (flags, sizes, dates, content) is asked from the
// store when a command needs it. Used by one goroutine at a time (see session).
type view struct {
	mbox     *maildir.Mailbox
	watch    *maildir.Watcher
	name     string // client-visible name of the mailbox
	readOnly bool   // EXAMINE
	// uidValidity at SELECT (a change would make the store a new Mailbox).
	uidValidity uint32

	// known[i] is the UID of sequence number i+1 as the client sees it;
	// ascending. Expunged messages stay until their EXPUNGE is sent.
	known []uint32
	// newUIDs arrived after the client's last EXISTS; ascending, all above
	// the last of known. Events for UIDs at or below it are about messages
	// already accounted for.
	newUIDs []uint32
	// expunged holds UIDs in known that are gone from the store, EXPUNGE not sent yet.
	expunged map[uint32]struct{}
	// flags holds the latest flags of known messages changed by someone
	// else, FETCH not sent yet.
	flags map[uint32][]string
	// own maps a UID to the modification sequence of this session's last
	// flag change of it: its echo from the store is not announced again.
	own map[uint32]uint64
	// searchRes is the result saved by SEARCH RETURN (SAVE) (RFC 5182).
	searchRes imap.UIDSet
}

func newView(mbox *maildir.Mailbox, w *maildir.Watcher, snap *maildir.Snapshot, readOnly bool) *view {
	v := &view{
		mbox:        mbox,
		watch:       w,
		name:        mbox.Name(),
		readOnly:    readOnly,
		known:       make([]uint32, len(snap.Messages)),
		uidValidity: snap.UIDValidity,
		expunged:    make(map[uint32]struct{}),
		flags:       make(map[uint32][]string),
		own:         make(map[uint32]uint64),
	}
	for i := range snap.Messages {
		v.known[i] = snap.Messages[i].UID
	}
	return v
}

func (v *view) close() {
	v.watch.Close()
}

// apply records one change of the mailbox, made by anyone. Watch starts
// before the snapshot the view is built from, so events may repeat what
// the snapshot already shows: every case is idempotent.
func (v *view) apply(ev maildir.Event) {
	switch ev.Kind {
	case maildir.EventNew:
		if n := len(v.known); n > 0 && ev.UID <= v.known[n-1] {
			return
		}
		// Sorted insert: an own APPEND is applied at once, while the
		// event of a delivery committed just before it may still be on
		// its way.
		if i, found := slices.BinarySearch(v.newUIDs, ev.UID); !found {
			v.newUIDs = slices.Insert(v.newUIDs, i, ev.UID)
		}
	case maildir.EventExpunge:
		delete(v.flags, ev.UID)
		delete(v.own, ev.UID)
		if i, ok := slices.BinarySearch(v.newUIDs, ev.UID); ok {
			// The client never heard of it: no EXPUNGE for it.
			v.newUIDs = slices.Delete(v.newUIDs, i, i+1)
			return
		}
		if _, ok := slices.BinarySearch(v.known, ev.UID); ok {
			v.expunged[ev.UID] = struct{}{}
		}
	case maildir.EventFlags:
		if m, ok := v.own[ev.UID]; ok {
			if ev.ModSeq <= m {
				// Our own change (already answered), or an older one it
				// superseded.
				if ev.ModSeq == m {
					delete(v.own, ev.UID)
				}
				return
			}
			delete(v.own, ev.UID)
		}
		if _, gone := v.expunged[ev.UID]; gone {
			return
		}
		if _, ok := slices.BinarySearch(v.known, ev.UID); ok {
			v.flags[ev.UID] = ev.Flags
		}
	}
}

// drain applies the events waiting in the watcher. The watcher hands
// events over one at a time from its own goroutine, so once one has come,
// that goroutine gets a chance to offer the next before the queue counts
// as empty: changes made together are announced together. With no event
// at all, nothing waits (a NOOP costs no scheduling round).
func (v *view) drain() {
	got, yielded := false, false
	for {
		select {
		case ev, ok := <-v.watch.C:
			if !ok {
				return
			}
			v.apply(ev)
			got, yielded = true, false
		default:
			if !got || yielded {
				return
			}
			runtime.Gosched()
			yielded = true
		}
	}
}

// updateWriter is what flush writes to; *imapserver.UpdateWriter is one.
type updateWriter interface {
	WriteExpunge(seqNum uint32) error
	WriteNumMessages(n uint32) error
	WriteMessageFlags(seqNum uint32, uid imap.UID, flags []imap.Flag) error
}

var _ updateWriter = (*imapserver.UpdateWriter)(nil)

// flush tells the client what changed: EXPUNGE (only if allowed: not during
// FETCH, STORE, SEARCH), then EXISTS, then FETCH FLAGS. Sequence numbers
// stay consistent because the EXISTS count includes expunged messages whose
// EXPUNGE is held back.
func (v *view) flush(w updateWriter, allowExpunge bool) error {
	v.drain()
	if allowExpunge && len(v.expunged) > 0 {
		idx := make([]int, 0, len(v.expunged))
		for uid := range v.expunged {
			if i, ok := slices.BinarySearch(v.known, uid); ok {
				idx = append(idx, i)
			}
		}
		// Highest first: an EXPUNGE renumbers only the messages after it.
		slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(b, a) })
		for _, i := range idx {
			if err := w.WriteExpunge(uint32(i + 1)); err != nil {
				return err
			}
		}
		v.known = slices.DeleteFunc(v.known, func(uid uint32) bool {
			_, gone := v.expunged[uid]
			return gone
		})
		clear(v.expunged)
	}
	if len(v.newUIDs) > 0 {
		v.known = append(v.known, v.newUIDs...)
		v.newUIDs = v.newUIDs[:0]
		if err := w.WriteNumMessages(uint32(len(v.known))); err != nil {
			return err
		}
	}
	if len(v.flags) > 0 {
		uids := make([]uint32, 0, len(v.flags))
		for uid := range v.flags {
			uids = append(uids, uid)
		}
		slices.Sort(uids)
		for _, uid := range uids {
			i, ok := slices.BinarySearch(v.known, uid)
			if _, gone := v.expunged[uid]; !ok || gone {
				continue
			}
			if err := w.WriteMessageFlags(uint32(i+1), imap.UID(uid), imapFlags(v.flags[uid])); err != nil {
				return err
			}
		}
		clear(v.flags)
	}
	return nil
}

// item is one message a command addresses: its sequence number in the
// client's view and its UID.
type item struct {
	seq uint32
	uid uint32
}

// errBadSeq answers a sequence number beyond the client's message count
// (RFC 9051 §6.4: a tagged BAD).
var errBadSeq = &imap.Error{
	Type: imap.StatusResponseTypeBad,
	Code: imap.ResponseCodeClientBug,
	Text: "Invalid message sequence number",
}

// resolve turns a sequence set or UID set of the client into the messages
// it names, in ascending order, without duplicates. "*" is the client's
// last message (or the highest UID it knows); "$" is the saved search.
func (v *view) resolve(numSet imap.NumSet) ([]item, error) {
	if imap.IsSearchRes(numSet) {
		numSet = v.searchRes
	}
	var spans [][2]uint32
	add := func(start, stop, max uint32) {
		if start == 0 {
			start = max
		}
		if stop == 0 {
			stop = max
		}
		if start > stop {
			start, stop = stop, start
		}
		spans = append(spans, [2]uint32{start, stop})
	}
	var out []item
	switch ns := numSet.(type) {
	case imap.SeqSet:
		n := uint32(len(v.known))
		for _, r := range ns {
			if r.Start > n || r.Stop > n {
				return nil, errBadSeq
			}
			add(r.Start, r.Stop, n)
		}
		for _, sp := range mergeSpans(spans) {
			for seq := uint64(max(sp[0], 1)); seq <= uint64(sp[1]); seq++ {
				out = append(out, item{seq: uint32(seq), uid: v.known[seq-1]})
			}
		}
	case imap.UIDSet:
		var maxUID uint32
		if n := len(v.known); n > 0 {
			maxUID = v.known[n-1]
		}
		for _, r := range ns {
			add(uint32(r.Start), uint32(r.Stop), maxUID)
		}
		for _, sp := range mergeSpans(spans) {
			i, _ := slices.BinarySearch(v.known, sp[0])
			for ; i < len(v.known) && v.known[i] <= sp[1]; i++ {
				out = append(out, item{seq: uint32(i + 1), uid: v.known[i]})
			}
		}
	}
	return out, nil
}

// mergeSpans sorts closed intervals and merges overlapping or adjacent ones
// (in place).
func mergeSpans(spans [][2]uint32) [][2]uint32 {
	slices.SortFunc(spans, func(a, b [2]uint32) int { return cmp.Compare(a[0], b[0]) })
	merged := spans[:0]
	for _, s := range spans {
		if n := len(merged); n > 0 && uint64(s[0]) <= uint64(merged[n-1][1])+1 {
			merged[n-1][1] = max(merged[n-1][1], s[1])
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// imapFlags converts the store's flags (already canonical) to go-imap's type.
func imapFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}
