package imap

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postyard-mail/postyard/maildir"
)

// session is one IMAP connection's state. go-imap calls its methods from
// the connection's goroutine, one at a time (Idle runs in a second
// goroutine while the first only waits for DONE), so the fields need no lock.
type session struct {
	srv  *Server      // set at creation
	conn *conn        // set at creation
	log  *slog.Logger // connLog, with the user once logged in
	cid  string       // set at creation
	// connLog is the connection's logger (with cid); set at creation.
	connLog *slog.Logger

	authFailures int           // failed LOGIN/AUTHENTICATE attempts
	user         string        // canonical address once logged in, else ""
	mail         *maildir.User // the user's tree once logged in
	// sel is the selected mailbox, nil if none. selMu guards the pointer
	// (not the view) against Idle's goroutine, which may outlive IDLE.
	selMu sync.Mutex
	sel   *view
}

var (
	_ imapserver.SessionIMAP4rev2      = (*session)(nil)
	_ imapserver.SessionUnauthenticate = (*session)(nil)
)

// cmd marks a command as running until the returned function is called, so
// a shutdown BYE waits for its tagged reply, and coalesces its output.
func (s *session) cmd() func() {
	s.conn.setBusy(true)
	release := s.conn.hold()
	return func() {
		release()
		s.conn.setBusy(false)
	}
}

// Close ends the session when the connection goes.
func (s *session) Close() error {
	s.unselect()
	s.logout()
	return nil
}

func (s *session) logout() {
	if s.user != "" {
		s.srv.releaseUser(s.user)
		s.log.Info("imap: logout")
		s.user, s.mail = "", nil
		s.log = s.connLog
	}
}

// Login checks a password (LOGIN and AUTHENTICATE PLAIN). Each failure waits
// longer (AuthFailureDelay, doubling, at most 16×); after MaxAuthFailures the
// connection is closed with BYE once the NO is written.
func (s *session) Login(username, password string) error {
	defer s.cmd()()
	if s.authFailures >= s.srv.opts.MaxAuthFailures {
		return imapserver.ErrAuthFailed
	}
	addr, err := s.srv.opts.Accounts.Authenticate(username, password)
	if err != nil {
		s.authFailures++
		s.log.Warn("imap: authentication failed", "login", username,
			"remote", s.conn.RemoteAddr().String(), "failures", s.authFailures, "err", err)
		time.Sleep(authDelay(s.srv.opts.AuthFailureDelay, s.authFailures))
		if s.authFailures >= s.srv.opts.MaxAuthFailures {
			s.conn.requestBye("Too many authentication failures")
		}
		return imapserver.ErrAuthFailed
	}
	mail, err := s.srv.opts.Store.User(addr)
	if err != nil {
		return s.mapErr("login", err)
	}
	if !s.srv.acquireUser(addr) {
		s.log.Warn("imap: too many sessions for user", "user", addr)
		return &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeLimit,
			Text: "Too many connections for this user",
		}
	}
	s.user, s.mail = addr, mail
	s.log = s.connLog.With("user", addr)
	s.log.Info("imap: login", "remote", s.conn.RemoteAddr().String())
	return nil
}

// authDelay is the pause after the n-th failed login: base, 2·base, 4·base,
// ... at most 16·base.
func authDelay(base time.Duration, n int) time.Duration {
	if n < 1 {
		return 0
	}
	return base << min(n-1, 4)
}

// Unauthenticate returns to the not-authenticated state (RFC 8437).
func (s *session) Unauthenticate() error {
	defer s.cmd()()
	s.unselect()
	s.logout()
	return nil
}

// Namespace: one personal namespace, no shared ones (RFC 2342).
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{
		Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: maildir.Delimiter}},
	}, nil
}

// errTooBig reports an APPEND literal over MaxMessageSize.
var errTooBig = errors.New("imap: message too big")

// mapErr is the one place where errors become IMAP replies. Typed replies
// pass through; store errors get their response code; anything else is
// logged in full and answered with the connection id (EXAMPLES 9, 11).
func (s *session) mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie
	}
	no := func(code imap.ResponseCode, text string) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	switch {
	case errors.Is(err, maildir.ErrNoSuchMailbox):
		return no(imap.ResponseCodeNonExistent, "No such mailbox")
	case errors.Is(err, maildir.ErrExists):
		return no(imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, maildir.ErrInvalidName):
		return no(imap.ResponseCodeCannot, "Invalid mailbox name")
	case errors.Is(err, maildir.ErrInbox):
		return no(imap.ResponseCodeCannot, "Not possible for INBOX")
	case errors.Is(err, maildir.ErrInvalidFlag):
		return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "Invalid flag"}
	case errors.Is(err, maildir.ErrTooManyKeywords):
		return no(imap.ResponseCodeLimit, "Too many keywords in this mailbox")
	case errors.Is(err, maildir.ErrNoSuchMessage):
		return no(respCodeExpungeIssued, "Some messages were expunged")
	case errors.Is(err, errTooBig):
		return no(imap.ResponseCodeTooBig, "Message too big")
	case errors.Is(err, maildir.ErrInvalidUser):
		s.log.Error("imap: "+op, "err", err)
		return no(imap.ResponseCodeContactAdmin, "Invalid mailbox for this user (id "+s.cid+")")
	}
	s.log.Error("imap: "+op+" failed", "err", err)
	return no(imap.ResponseCodeServerBug, "Internal error (id "+s.cid+")")
}

// respCodeExpungeIssued is RFC 5530's EXPUNGEISSUED, which go-imap does not name.
const respCodeExpungeIssued imap.ResponseCode = "EXPUNGEISSUED"
