package smtp

import (
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/delivery"
)

// session is one go-smtp session: from EHLO to the end of the connection or
// to STARTTLS (which starts a new one). go-smtp calls Mail, Rcpt, Reset and
// Logout from the connection's goroutine; Data runs there for DATA and in a
// goroutine of its own for BDAT, concurrently with Reset/Logout.
type session struct {
	srv  *Server      // read-only
	c    *conn        // read-only; the connection-wide state
	sc   *gosmtp.Conn // read-only
	kind Kind         // read-only
	// authUser is the logged-in user (submission, issue 8); "" on the MX.
	authUser string

	mu sync.Mutex   // guards tx
	tx *transaction // nil outside a mail transaction
}

// transaction is one MAIL ... DATA exchange.
type transaction struct {
	from  string // reverse path as given; "" is the null sender
	utf8  bool   // MAIL ... SMTPUTF8
	rcpts []delivery.Recipient
	// remote are outside recipients for the outbound queue: any address on
	// submission, alias targets outside on both services.
	remote []string
	start  time.Time
}

var _ gosmtp.Session = (*session)(nil)

func (s *session) transaction() *transaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tx
}

// Mail implements gosmtp.Session (MAIL FROM).
func (s *session) Mail(from string, opts *gosmtp.MailOptions) error {
	if s.srv.shuttingDown() {
		return s.fail("MAIL", errShuttingDown())
	}
	if s.transaction() != nil {
		return s.fail("MAIL", errNestedMail())
	}
	utf8 := opts != nil && opts.UTF8
	if from != "" {
		if _, _, err := splitAddress(from); err != nil {
			return s.fail("MAIL", errBadSenderSyntax(from).because(err))
		}
		if !utf8 && !isASCII(from) {
			return s.fail("MAIL", errNeedUTF8(from))
		}
	}
	if rerr := s.checkSender(from); rerr != nil { // submission rules (submission.go)
		return s.fail("MAIL", rerr)
	}
	s.mu.Lock()
	s.tx = &transaction{from: from, utf8: utf8, start: time.Now()}
	s.mu.Unlock()
	s.c.setBusy(true)
	return nil
}

// Rcpt implements gosmtp.Session (RCPT TO). go-smtp has already refused a
// recipient past max_recipients (452 4.5.3).
func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	tx := s.transaction()
	if tx == nil {
		return s.fail("RCPT", reply(503, gosmtp.EnhancedCode{5, 5, 1}, "Error: need MAIL command"))
	}
	rcpts, remote, rerr := s.resolveRcpt(to, tx.utf8)
	if rerr != nil {
		if rerr.code == 550 || rerr.code == 554 {
			s.tarpit()
		}
		return s.fail("RCPT", rerr)
	}
	s.mu.Lock()
	if s.tx == tx {
		s.tx.rcpts = append(s.tx.rcpts, rcpts...)
		s.tx.remote = addRemote(s.tx.remote, remote...)
	}
	s.mu.Unlock()
	return nil
}

// resolveRcpt applies the recipient rules: a local user or alias of ours is
// accepted (user+tag@ and the domain's case do not matter); an unknown local
// address is 550 5.1.1; any other domain is relaying, refused (554 5.7.1)
// unless mayRelay, and then queued for the relay; an alias's targets outside
// are queued too when the deliverer has an outbound queue (else 550 5.3.5).
// It returns the local copies and the outside addresses.
func (s *session) resolveRcpt(to string, utf8 bool) ([]delivery.Recipient, []string, *replyError) {
	_, domain, err := splitAddress(to)
	if err != nil {
		return nil, nil, errBadRcptSyntax(to).because(err)
	}
	if !utf8 && !isASCII(to) {
		return nil, nil, errNeedUTF8(to)
	}
	if !s.srv.dir.IsLocalDomain(domain) {
		if s.mayRelay() {
			return nil, []string{to}, nil // submission: the outbound queue
		}
		return nil, nil, errRelayDenied(to)
	}
	res, err := s.srv.dir.Resolve(to)
	switch {
	case errors.Is(err, accounts.ErrNoSuchUser):
		return nil, nil, errUserUnknown(to).because(err)
	case errors.Is(err, accounts.ErrNotLocal):
		return nil, nil, errRelayDenied(to).because(err)
	case errors.Is(err, accounts.ErrBadAddress):
		return nil, nil, errBadRcptSyntax(to).because(err)
	case err != nil:
		return nil, nil, errInternal().because(err)
	}
	if len(res.Remote) > 0 && !s.srv.queuesRemote {
		return nil, nil, errRemoteAlias(to).because(errors.New("remote targets: " + strings.Join(res.Remote, ", ")))
	}
	if len(res.Local) == 0 && len(res.Remote) == 0 {
		return nil, nil, errUserUnknown(to).because(errors.New("resolves to nobody"))
	}
	out := make([]delivery.Recipient, len(res.Local))
	for i, u := range res.Local {
		out[i] = delivery.Recipient{Address: to, User: u}
	}
	return out, res.Remote, nil
}

// mayRelay reports whether the client may send to other domains: never on
// the MX (no open relay, whatever the client's address); on submission once
// logged in.
func (s *session) mayRelay() bool {
	return s.kind == KindSubmission && s.authUser != ""
}

// tarpit slows down recipient probing: past the first tarpitFree rejected
// RCPTs of a connection, each one waits tarpit_delay times its rank.
func (s *session) tarpit() {
	s.c.rejectedRcpts++
	n := s.c.rejectedRcpts - tarpitFree
	if n <= 0 || s.srv.tarpit <= 0 {
		return
	}
	d := min(s.srv.tarpit*time.Duration(n), maxTarpit)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.srv.closing:
	}
}

// Data implements gosmtp.Session (DATA and BDAT): the message is filtered
// into a spool as it arrives (never held whole in memory past the spool's
// limit), checked on the MX (SPF, DKIM, DMARC: auth.go), then delivered; the
// 250 reply comes only once every copy is durable.
func (s *session) Data(r io.Reader) error {
	s.c.inData.Store(true)
	defer s.c.inData.Store(false)
	tx := s.transaction()
	if tx == nil || len(tx.rcpts)+len(tx.remote) == 0 {
		_, _ = io.Copy(io.Discard, r)
		return s.fail("DATA", reply(503, gosmtp.EnhancedCode{5, 5, 1}, "Error: no valid recipients"))
	}
	sp := s.srv.deliverer.NewSpool()
	defer sp.Close()
	f := newInputFilter(sp, maxHops, maxHeaderField)
	_, err := io.Copy(f, r)
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		switch {
		case errors.Is(err, gosmtp.ErrDataReset):
			// BDAT ended by RSET or the connection: go-smtp has replied.
			return err
		case errors.Is(err, errHops):
			return s.fail("DATA", errTooManyHops().because(err))
		case errors.Is(err, gosmtp.ErrDataTooLarge):
			return s.fail("DATA", errTooBig(s.srv.maxSize))
		}
		if _, closeConn := toReply(err, ""); closeConn {
			s.c.abortReads.Store(true) // no use reading the rest
		}
		return s.fail("DATA", err)
	}

	s.c.messages++
	_, isTLS := s.sc.TLSConnectionState()
	env := &delivery.Envelope{
		ID:         messageID(s.c.cid, s.c.messages),
		From:       tx.from,
		Recipients: tx.rcpts,
		Trace: delivery.Trace{
			By:            s.srv.hostname,
			Helo:          s.sc.Hostname(),
			RemoteIP:      s.c.remoteIP,
			ESMTP:         true, // go-smtp does not say whether it was HELO
			Authenticated: s.authUser != "",
			UTF8:          tx.utf8,
			Time:          time.Now(),
		},
	}
	if isTLS {
		st, _ := s.sc.TLSConnectionState()
		env.Trace.TLS = &st
	}
	body := sp
	if s.checksApply() {
		out, rerr := s.checkMessage(tx, env.ID, sp)
		if rerr != nil {
			return s.fail("DATA", rerr)
		}
		if out.body != sp {
			defer out.body.Close()
			body = out.body
		}
		env.Header = out.header
		if out.junk {
			env.Recipients = inFolder(env.Recipients, junkFolder)
		}
	}
	env.Remote, env.User = tx.remote, s.authUser
	if s.kind == KindSubmission {
		if rerr := s.prepareSubmission(tx, env, body); rerr != nil { // submission.go
			return s.fail("DATA", rerr)
		}
	}
	s.srv.inflight.Add(1)
	err = s.srv.deliverer.Deliver(s.srv.ctx, env, body)
	s.srv.inflight.Done()
	if err != nil {
		s.c.log.Error("delivery failed", "id", env.ID, "err", err)
		return s.fail("DATA", errDeliveryFailed().because(err))
	}
	if s.kind == KindSubmission {
		s.srv.sub.limits.record(s.authUser)
	}
	s.c.errors.Store(0) // Postfix counts errors "without delivering mail"
	s.c.log.Info("delivered", "id", env.ID, "from", tx.from, "rcpts", len(tx.rcpts), "outside", len(tx.remote),
		"queue_id", env.QueueID, "user", s.authUser, "size", body.Size(), "folder", deliveredFolder(env.Recipients),
		"ms", time.Since(tx.start).Milliseconds())
	if s.srv.shuttingDown() {
		s.c.closeAfterWrite.Store(true)
	}
	// go-smtp writes an *SMTPError returned from Data as the reply, 250 too.
	return okReply(env)
}

// Reset implements gosmtp.Session (RSET, and the end of every transaction).
func (s *session) Reset() {
	s.mu.Lock()
	s.tx = nil
	s.mu.Unlock()
	s.c.setBusy(false)
	if s.srv.shuttingDown() {
		s.c.closeAfterWrite.Store(true)
	}
}

// Logout implements gosmtp.Session (end of the connection, or STARTTLS).
func (s *session) Logout() error {
	s.mu.Lock()
	s.tx = nil
	s.mu.Unlock()
	s.c.endSession()
	return nil
}

// fail turns err into the reply (toReply), counts it against max_errors,
// logs it, and marks the connection for closing after a final reply.
func (s *session) fail(cmd string, err error) error {
	r, closeConn := toReply(err, s.c.cid)
	if r.Code >= 400 && !closeConn {
		if n := s.c.errors.Add(1); s.srv.maxErrors > 0 && int(n) >= s.srv.maxErrors {
			s.c.log.Info("rejected", "cmd", cmd, "code", r.Code, "reply", r.Message, "err", err)
			r, closeConn = toReply(errTooManyErrors(), s.c.cid)
			err = errTooManyErrors()
		}
	}
	if closeConn {
		s.c.closeAfterWrite.Store(true)
	}
	level := "rejected"
	if r.Code == 421 {
		level = "closing"
	}
	s.c.log.Info(level, "cmd", cmd, "code", r.Code, "reply", r.Message, "err", err)
	return r
}
