package imap

import (
	"errors"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postyard-mail/postyard/maildir"
)

const delim = string(maildir.Delimiter)

// specialUse maps the store's special-use names to go-imap's attributes.
var specialUse = map[string]imap.MailboxAttr{
	maildir.SpecialSent:    imap.MailboxAttrSent,
	maildir.SpecialDrafts:  imap.MailboxAttrDrafts,
	maildir.SpecialTrash:   imap.MailboxAttrTrash,
	maildir.SpecialJunk:    imap.MailboxAttrJunk,
	maildir.SpecialArchive: imap.MailboxAttrArchive,
}

// canonInbox spells a leading "inbox" level as "INBOX", which IMAP treats
// case-insensitively (RFC 9051 §5.1).
func canonInbox(s string) string {
	if len(s) >= 5 && strings.EqualFold(s[:5], "INBOX") && (len(s) == 5 || s[5] == maildir.Delimiter) {
		return "INBOX" + s[5:]
	}
	return s
}

// List answers LIST and LSUB, with the LIST-EXTENDED selection and return
// options; special-use attributes are always shown (RFC 6154 §5.1), and
// \HasChildren/\HasNoChildren too (RFC 3348).
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	defer s.cmd()()
	if len(patterns) == 0 {
		// RFC 9051 §6.3.9: an empty pattern asks for the delimiter.
		return w.WriteList(&imap.ListData{
			Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect},
			Delim: maildir.Delimiter,
		})
	}
	infos, err := s.mail.ListMailboxes()
	if err != nil {
		return s.mapErr("list", err)
	}
	ref = canonInbox(ref)
	for i := range patterns {
		patterns[i] = canonInbox(patterns[i])
	}
	for _, mb := range infos {
		if !slices.ContainsFunc(patterns, func(p string) bool {
			return imapserver.MatchList(mb.Name, maildir.Delimiter, ref, p)
		}) {
			continue
		}
		childSubscribed := false
		if options.SelectRecursiveMatch {
			prefix := mb.Name + delim
			childSubscribed = slices.ContainsFunc(infos, func(o maildir.MailboxInfo) bool {
				return o.Subscribed && strings.HasPrefix(o.Name, prefix)
			})
		}
		if options.SelectSubscribed && !mb.Subscribed && !childSubscribed {
			continue
		}
		if options.SelectSpecialUse && mb.SpecialUse == "" {
			continue
		}
		data := imap.ListData{Delim: maildir.Delimiter, Mailbox: mb.Name}
		if mb.NoSelect {
			data.Attrs = append(data.Attrs, imap.MailboxAttrNoSelect)
		}
		if mb.HasChildren {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if mb.Subscribed && (options.ReturnSubscribed || options.SelectSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if a, ok := specialUse[mb.SpecialUse]; ok {
			data.Attrs = append(data.Attrs, a)
		}
		if childSubscribed && !mb.Subscribed {
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		if options.ReturnStatus != nil {
			if st, err := s.status(mb.Name, options.ReturnStatus); err == nil {
				data.Status = st
			}
		}
		if err := w.WriteList(&data); err != nil {
			return err
		}
	}
	return nil
}

// Status answers STATUS from the store's counters.
func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	defer s.cmd()()
	data, err := s.status(name, options)
	if err != nil {
		return nil, s.mapErr("status", err)
	}
	return data, nil
}

func (s *session) status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mbox, err := s.mail.Mailbox(name)
	if err != nil {
		return nil, err
	}
	st, err := mbox.Status()
	if err != nil {
		return nil, err
	}
	data := &imap.StatusData{Mailbox: mbox.Name()}
	if options.NumMessages {
		data.NumMessages = &st.Messages
	}
	if options.UIDNext {
		data.UIDNext = imap.UID(st.UIDNext)
	}
	if options.UIDValidity {
		data.UIDValidity = st.UIDValidity
	}
	if options.NumUnseen {
		data.NumUnseen = &st.Unseen
	}
	if options.NumRecent {
		// \Recent is not kept (RFC 9051 dropped it): SELECT says
		// "* 0 RECENT" and SEARCH RECENT finds nothing, so STATUS agrees.
		var zero uint32
		data.NumRecent = &zero
	}
	if options.Size {
		data.Size = &st.Size
	}
	if options.NumDeleted {
		snap, err := mbox.Snapshot()
		if err != nil {
			return nil, err
		}
		var n uint32
		for i := range snap.Messages {
			if slices.Contains(snap.Messages[i].Flags, maildir.FlagDeleted) {
				n++
			}
		}
		data.NumDeleted = &n
	}
	if options.AppendLimit {
		limit := uint32(min(s.srv.opts.MaxMessageSize, 1<<32-1))
		data.AppendLimit = &limit
	}
	if options.DeletedStorage {
		var zero int64
		data.DeletedStorage = &zero
	}
	return data, nil
}

// Create makes a mailbox and its missing parents. A trailing delimiter
// only announces children (RFC 9051 §6.3.4).
func (s *session) Create(name string, options *imap.CreateOptions) error {
	defer s.cmd()()
	if len(options.SpecialUse) > 0 {
		// CREATE-SPECIAL-USE is not offered: the standard folders carry
		// their attributes by name.
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR", Text: "Special-use attributes cannot be set"}
	}
	name = strings.TrimSuffix(name, delim)
	if strings.EqualFold(name, "INBOX") {
		return s.mapErr("create", maildir.ErrExists)
	}
	return s.mapErr("create", s.mail.CreateMailbox(name))
}

// Delete removes a mailbox and its messages.
func (s *session) Delete(name string) error {
	defer s.cmd()()
	return s.mapErr("delete", s.mail.DeleteMailbox(name))
}

// Rename renames a mailbox with its children; renaming INBOX moves its
// messages (RFC 9051 §6.3.6), which the store does.
func (s *session) Rename(oldName, newName string, options *imap.RenameOptions) error {
	defer s.cmd()()
	newName = strings.TrimSuffix(newName, delim)
	if err := s.mail.RenameMailbox(oldName, newName); err != nil {
		return s.mapErr("rename", err)
	}
	// RFC 9051 §6.3.6: the superior names the new name needs are created
	// (after the rename, so a refused one leaves nothing behind).
	for i := strings.IndexByte(newName, maildir.Delimiter); i > 0; i = nextDelim(newName, i) {
		if err := s.mail.CreateMailbox(newName[:i]); err != nil && !errors.Is(err, maildir.ErrExists) {
			return s.mapErr("rename: create parent", err)
		}
	}
	return nil
}

// nextDelim is the index of the next delimiter after i, or -1.
func nextDelim(name string, i int) int {
	j := strings.IndexByte(name[i+1:], maildir.Delimiter)
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// Subscribe adds a name to the subscriptions.
func (s *session) Subscribe(name string) error {
	defer s.cmd()()
	return s.mapErr("subscribe", s.mail.SetSubscribed(name, true))
}

// Unsubscribe removes a name from the subscriptions.
func (s *session) Unsubscribe(name string) error {
	defer s.cmd()()
	return s.mapErr("unsubscribe", s.mail.SetSubscribed(name, false))
}

// Append stores a message with its flags and internal date. The size limit
// is checked here and not through SessionAppendLimit: go-imap rejects an
// oversized literal before reading it, so a non-synchronizing one (LITERAL+)
// would then be read as commands; here the literal is consumed (go-imap
// discards what Append leaves) and the answer is NO [TOOBIG].
func (s *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	defer s.cmd()()
	limit := s.srv.opts.MaxMessageSize
	if r.Size() > limit {
		return nil, s.mapErr("append", errTooBig)
	}
	if r.Size() == 0 {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Empty message"}
	}
	mbox, err := s.destination(mailbox)
	if err != nil {
		return nil, err
	}
	flags, err := storeFlagsArg(options.Flags)
	if err != nil {
		return nil, err
	}
	date := options.Time
	if date.IsZero() {
		date = time.Now()
	}
	uid, err := mbox.Append(&limitedReader{r: r, left: limit}, flags, date)
	if err != nil {
		return nil, s.mapErr("append", err)
	}
	if s.sel != nil && s.sel.name == mbox.Name() {
		s.sel.apply(maildir.Event{Kind: maildir.EventNew, UID: uid})
	}
	snap, err := mbox.Snapshot()
	if err != nil {
		return nil, s.mapErr("append", err)
	}
	return &imap.AppendData{UID: imap.UID(uid), UIDValidity: snap.UIDValidity}, nil
}

// limitedReader fails with errTooBig past left bytes, so the store aborts
// the message instead of committing a truncated one.
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, errTooBig
	}
	return n, err
}
