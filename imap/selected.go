package imap

import (
	"errors"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postyard-mail/postyard/maildir"
)

// systemFlags are the flags a client may store, in the order FLAGS lists them.
var systemFlags = []string{
	maildir.FlagAnswered, maildir.FlagFlagged, maildir.FlagDeleted, maildir.FlagSeen, maildir.FlagDraft,
}

var errReadOnly = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: "READ-ONLY",
	Text: "Mailbox is read-only (EXAMINE)",
}

// Select opens a mailbox: Watch first, then the snapshot, so no change
// falls between them (view.apply forgives the overlap).
func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	defer s.cmd()()
	s.unselect()
	mbox, err := s.mail.Mailbox(name)
	if err != nil {
		return nil, s.mapErr("select", err)
	}
	w := mbox.Watch()
	snap, err := mbox.Snapshot()
	if err != nil {
		w.Close()
		return nil, s.mapErr("select", err)
	}
	v := newView(mbox, w, snap, options.ReadOnly)

	// FLAGS: the system flags and every keyword in use.
	seenKeyword := make(map[string]struct{})
	var firstUnseen uint32
	for i := range snap.Messages {
		seen := false
		for _, f := range snap.Messages[i].Flags {
			if f == maildir.FlagSeen {
				seen = true
			}
			if !strings.HasPrefix(f, `\`) {
				seenKeyword[f] = struct{}{}
			}
		}
		if !seen && firstUnseen == 0 {
			firstUnseen = uint32(i + 1)
		}
	}
	flags := imapFlags(systemFlags)
	keywords := make([]string, 0, len(seenKeyword))
	for k := range seenKeyword {
		keywords = append(keywords, k)
	}
	slices.Sort(keywords)
	flags = append(flags, imapFlags(keywords)...)
	perm := []imap.Flag{}
	if !options.ReadOnly {
		perm = append(slices.Clone(flags), imap.FlagWildcard)
	}
	data := &imap.SelectData{
		Flags:             flags,
		PermanentFlags:    perm,
		NumMessages:       uint32(len(v.known)),
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           imap.UID(snap.UIDNext),
		UIDValidity:       snap.UIDValidity,
	}
	if ic := s.conn.imapConn(); ic != nil && ic.EnabledCaps().Has(imap.CapIMAP4rev2) {
		// RFC 9051 §6.3.2: the LIST response of the selected mailbox.
		data.List = &imap.ListData{Delim: maildir.Delimiter, Mailbox: v.name}
	}
	s.selMu.Lock()
	s.sel = v
	s.selMu.Unlock()
	s.log.Debug("imap: select", "mailbox", v.name, "messages", len(v.known), "read_only", options.ReadOnly)
	return data, nil
}

// Unselect leaves the selected state (CLOSE has expunged before, if asked).
func (s *session) Unselect() error {
	s.unselect()
	return nil
}

func (s *session) unselect() {
	s.selMu.Lock()
	defer s.selMu.Unlock()
	if s.sel != nil {
		s.sel.close()
		s.sel = nil
	}
}

// Poll sends what changed, after every command.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	defer s.conn.hold()()
	return s.sel.flush(w, allowExpunge)
}

// Idle sends changes as the store reports them until the client says DONE.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	// go-imap may close the session while this goroutine still runs (a
	// read error ends IDLE without waiting for it): the view is taken under
	// selMu, and a closed view's watcher ends the loop.
	s.selMu.Lock()
	v := s.sel
	s.selMu.Unlock()
	if v == nil {
		<-stop
		return nil
	}
	flush := func() error {
		defer s.conn.hold()()
		return v.flush(w, true)
	}
	if err := flush(); err != nil {
		return err
	}
	for {
		select {
		case <-stop:
			return nil
		case ev, ok := <-v.watch.C:
			if !ok {
				<-stop
				return nil
			}
			v.apply(ev)
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// Expunge removes \Deleted messages (all of them, or those of uids for UID
// EXPUNGE). The EXPUNGE responses come from the poll after the command. In
// a read-only mailbox nothing is removed: CLOSE after EXAMINE must not
// expunge, and go-imap calls Expunge for CLOSE too.
func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	defer s.cmd()()
	v := s.sel
	if v.readOnly {
		return nil
	}
	snap, err := v.mbox.Snapshot()
	if err != nil {
		return s.mapErr("expunge", err)
	}
	var want []uint32
	if uids != nil {
		items, err := v.resolve(*uids)
		if err != nil {
			return err
		}
		want = make([]uint32, len(items))
		for i, it := range items {
			want[i] = it.uid
		}
	}
	var del []uint32
	for i := range snap.Messages {
		m := &snap.Messages[i]
		if !slices.Contains(m.Flags, maildir.FlagDeleted) {
			continue
		}
		if uids != nil {
			if _, ok := slices.BinarySearch(want, m.UID); !ok {
				continue
			}
		}
		del = append(del, m.UID)
	}
	if len(del) == 0 {
		return nil
	}
	gone, err := v.mbox.Expunge(del)
	if err != nil {
		return s.mapErr("expunge", err)
	}
	for _, uid := range gone {
		v.apply(maildir.Event{Kind: maildir.EventExpunge, UID: uid})
	}
	return nil
}

// storeFlagsArg validates the flags of STORE and APPEND: system flags
// other than the five storable ones are refused (\Recent is the server's).
func storeFlagsArg(flags []imap.Flag) ([]string, error) {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		s := string(f)
		if strings.HasPrefix(s, `\`) && !slices.Contains(systemFlags, s) {
			return nil, &imap.Error{
				Type: imap.StatusResponseTypeBad,
				Code: imap.ResponseCodeClientBug,
				Text: "Flag " + s + " cannot be stored",
			}
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// Store changes flags and, unless .SILENT, answers with each message's
// flags now. Its own change is remembered so the store's echo of it is
// not announced a second time.
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	defer s.cmd()()
	v := s.sel
	if v.readOnly {
		return errReadOnly
	}
	items, err := v.resolve(numSet)
	if err != nil {
		return err
	}
	fl, err := storeFlagsArg(flags.Flags)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	var op maildir.FlagOp
	switch flags.Op {
	case imap.StoreFlagsSet:
		op = maildir.FlagsSet
	case imap.StoreFlagsAdd:
		op = maildir.FlagsAdd
	case imap.StoreFlagsDel:
		op = maildir.FlagsRemove
	}
	// The snapshot is taken before the change: it is the cached one, and
	// the changed messages' new flags come back from StoreFlags.
	var snap *maildir.Snapshot
	if !flags.Silent {
		if snap, err = v.mbox.Snapshot(); err != nil {
			return s.mapErr("store", err)
		}
	}
	uids := itemUIDs(items)
	updated, _, err := v.mbox.StoreFlags(uids, op, fl, 0)
	if err != nil {
		return s.mapErr("store", err)
	}
	now := make(map[uint32][]string, len(updated))
	for _, m := range updated {
		v.own[m.UID] = m.ModSeq
		now[m.UID] = m.Flags
	}
	// The client is told the state now; an older pending announcement
	// would contradict it.
	for _, uid := range uids {
		delete(v.flags, uid)
	}
	if flags.Silent {
		return nil
	}
	_, isUID := numSet.(imap.UIDSet)
	var gone bool
	err = forEachMessage(snap, items, func(it item, m *maildir.Message) error {
		fl, ok := now[it.uid]
		if !ok {
			fl = m.Flags
		}
		rw := w.CreateMessage(it.seq)
		if isUID {
			rw.WriteUID(imap.UID(it.uid))
		}
		rw.WriteFlags(imapFlags(fl))
		return rw.Close()
	}, func(item) { gone = true })
	if err != nil {
		return err
	}
	if gone {
		return s.mapErr("store", maildir.ErrNoSuchMessage)
	}
	return nil
}

// forEachMessage walks items (ascending UIDs) together with the snapshot's
// messages (ascending UIDs) and calls f for those still there, missing for
// the others.
func forEachMessage(snap *maildir.Snapshot, items []item, f func(item, *maildir.Message) error, missing func(item)) error {
	j := 0
	for _, it := range items {
		for j < len(snap.Messages) && snap.Messages[j].UID < it.uid {
			j++
		}
		if j == len(snap.Messages) || snap.Messages[j].UID != it.uid {
			if missing != nil {
				missing(it)
			}
			continue
		}
		if err := f(it, &snap.Messages[j]); err != nil {
			return err
		}
	}
	return nil
}

func itemUIDs(items []item) []uint32 {
	uids := make([]uint32, len(items))
	for i, it := range items {
		uids[i] = it.uid
	}
	return uids
}

// destination opens the target of COPY/MOVE: TRYCREATE if it does not exist.
func (s *session) destination(name string) (*maildir.Mailbox, error) {
	dst, err := s.mail.Mailbox(name)
	if errors.Is(err, maildir.ErrNoSuchMailbox) {
		return nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeTryCreate,
			Text: "No such mailbox",
		}
	}
	if err != nil {
		return nil, s.mapErr("open destination", err)
	}
	return dst, nil
}

// Copy copies messages, flags and dates included, and answers COPYUID.
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	defer s.cmd()()
	v := s.sel
	items, err := v.resolve(numSet)
	if err != nil {
		return nil, err
	}
	dst, err := s.destination(dest)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, nil
	}
	src, dstUIDs, err := v.mbox.CopyTo(dst, itemUIDs(items))
	if err != nil {
		return nil, s.mapErr("copy", err)
	}
	if len(src) == 0 {
		return nil, s.mapErr("copy", maildir.ErrNoSuchMessage)
	}
	if dst.Name() == v.name {
		for _, uid := range dstUIDs {
			v.apply(maildir.Event{Kind: maildir.EventNew, UID: uid})
		}
	}
	return s.copyData(dst, src, dstUIDs)
}

func (s *session) copyData(dst *maildir.Mailbox, src, dstUIDs []uint32) (*imap.CopyData, error) {
	snap, err := dst.Snapshot()
	if err != nil {
		return nil, s.mapErr("copy", err)
	}
	data := &imap.CopyData{UIDValidity: snap.UIDValidity}
	for i := range src {
		data.SourceUIDs.AddNum(imap.UID(src[i]))
		data.DestUIDs.AddNum(imap.UID(dstUIDs[i]))
	}
	return data, nil
}

// Move moves messages (RFC 6851): COPYUID first, then the EXPUNGE
// responses, which the poll after the command writes.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	defer s.cmd()()
	v := s.sel
	if v.readOnly {
		return errReadOnly
	}
	items, err := v.resolve(numSet)
	if err != nil {
		return err
	}
	dst, err := s.destination(dest)
	if err != nil {
		return err
	}
	if dst.Name() == v.name {
		return &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeCannot,
			Text: "Source and destination are the same mailbox",
		}
	}
	if len(items) == 0 {
		return nil
	}
	src, dstUIDs, err := v.mbox.MoveTo(dst, itemUIDs(items))
	if err != nil {
		return s.mapErr("move", err)
	}
	if len(src) == 0 {
		return s.mapErr("move", maildir.ErrNoSuchMessage)
	}
	for _, uid := range src {
		v.apply(maildir.Event{Kind: maildir.EventExpunge, UID: uid})
	}
	data, err := s.copyData(dst, src, dstUIDs)
	if err != nil {
		return err
	}
	return w.WriteCopyData(data)
}
