package pop3

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/maildir"
)

// maildrop is the locked INBOX of a logged-in session: the snapshot taken at
// login and what the session did to it.
type maildrop struct {
	mbox        mailbox
	uidValidity uint32
	msgs        []maildir.Message // message number n is msgs[n-1]
	deleted     []bool            // marked by DELE
	retrieved   []bool            // sent whole by RETR
	nDeleted    int
	sizeDeleted int64
	size        int64 // total of msgs
}

// UIDL returns the unique-id listing of a message: Dovecot's default
// pop3_uidl_format "%08Xu%08Xv", the IMAP UID then the UIDVALIDITY as 8
// hex digits each. Dovecot's %X modifier writes lower-case hex (checked
// against Dovecot 2.3.19 by TestDovecotSameListing), so a maildrop moved
// from Dovecot keeps its UIDLs.
func UIDL(uid, uidValidity uint32) string {
	return string(appendUIDL(nil, uid, uidValidity))
}

func appendUIDL(b []byte, uid, uidValidity uint32) []byte {
	const digits = "0123456789abcdef"
	for _, v := range [2]uint32{uid, uidValidity} {
		for shift := 28; shift >= 0; shift -= 4 {
			b = append(b, digits[(v>>shift)&0xf])
		}
	}
	return b
}

// plaintextAllowed says whether passwords may be sent on this connection:
// over TLS, from loopback, or when the config allows plaintext.
func (c *conn) plaintextAllowed() bool {
	return c.isTLS || (c.loopback && c.srv.loopbackSecure) || c.srv.opts.Security.AllowPlaintextAuth
}

// stlsOffered says whether STLS may be used now.
func (c *conn) stlsOffered() bool {
	return !c.isTLS && c.srv.opts.TLS != nil && c.state == stateAuthorization
}

func (c *conn) plaintextRefused() error {
	hint := ""
	if c.stlsOffered() {
		hint = "; use STLS first"
	}
	return codef("AUTH", "plaintext authentication is disallowed on a connection without TLS%s", hint)
}

func (c *conn) cmdCapa(cmd Command) error {
	if cmd.Rest != "" {
		return badf("syntax: CAPA takes no argument")
	}
	c.ok("capability list follows")
	for _, l := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"} {
		c.dataLine(l)
	}
	if c.state == stateAuthorization {
		if c.plaintextAllowed() {
			c.dataLine("USER")
			c.dataLine("SASL PLAIN")
		}
		if c.stlsOffered() {
			c.dataLine("STLS")
		}
	}
	c.dataLine("IMPLEMENTATION Postyard")
	c.endData()
	return nil
}

func (c *conn) cmdQuit(cmd Command) error {
	if cmd.Rest != "" {
		return badf("syntax: QUIT takes no argument")
	}
	if c.state != stateTransaction {
		c.ok("Postyard POP3 server signing off")
		return errEnd
	}
	// RFC 1939 §6: the UPDATE state removes the messages marked as deleted.
	c.state = stateUpdate
	removed, err := c.update()
	if err != nil {
		c.log.Error("pop3 update failed", "user", c.user, "err", err)
		c.reply(codef("SYS/TEMP", "some deleted messages not removed, try again later (cid %s)", c.cid).line())
		return errEnd
	}
	c.log.Info("pop3 logout", "user", c.user, "deleted", removed)
	c.ok("Postyard POP3 server signing off (%d messages deleted)", removed)
	return errEnd
}

// update expunges the messages marked as deleted and sets \Seen on the
// retrieved ones that stay.
func (c *conn) update() (int, error) {
	d := c.drop
	var del, seen []uint32
	for i, m := range d.msgs {
		switch {
		case d.deleted[i]:
			del = append(del, m.UID)
		case d.retrieved[i] && !hasFlag(m.Flags, maildir.FlagSeen):
			seen = append(seen, m.UID)
		}
	}
	removed := 0
	if len(del) > 0 {
		gone, err := d.mbox.Expunge(del)
		if err != nil {
			return 0, fmt.Errorf("expunging %d messages: %w", len(del), err)
		}
		removed = len(gone)
	}
	if len(seen) > 0 {
		if _, _, err := d.mbox.StoreFlags(seen, maildir.FlagsAdd, []string{maildir.FlagSeen}, 0); err != nil {
			// Not a loss: the messages are there, only unmarked.
			c.log.Warn("pop3 could not mark retrieved messages seen", "user", c.user, "err", err)
		}
	}
	return removed, nil
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

func (c *conn) cmdUser(cmd Command) error {
	args := cmd.Args()
	if len(args) != 1 {
		return badf("syntax: USER name")
	}
	if !c.plaintextAllowed() {
		return c.plaintextRefused()
	}
	c.pendingUser = args[0]
	c.ok("send PASS")
	return nil
}

func (c *conn) cmdPass(cmd Command) error {
	if c.pendingUser == "" {
		return badf("send USER first")
	}
	login := c.pendingUser
	c.pendingUser = ""
	if !c.plaintextAllowed() {
		return c.plaintextRefused()
	}
	if cmd.Rest == "" {
		return badf("syntax: PASS password")
	}
	return c.login(login, cmd.Rest)
}

func (c *conn) cmdAuth(cmd Command) error {
	args := cmd.Args()
	if len(args) == 0 {
		// The mechanism list some older clients ask for (RFC 1734 style).
		c.ok("SASL mechanisms follow")
		if c.plaintextAllowed() {
			c.dataLine("PLAIN")
		}
		c.endData()
		return nil
	}
	if len(args) > 2 {
		return badf("syntax: AUTH mechanism [initial-response]")
	}
	if !strings.EqualFold(args[0], "PLAIN") {
		return errorf("unsupported SASL mechanism %q (PLAIN is)", args[0])
	}
	if !c.plaintextAllowed() {
		return c.plaintextRefused()
	}
	var resp string
	if len(args) == 2 {
		resp = args[1]
		if resp == "=" { // RFC 5034 §4: an empty initial response
			resp = ""
		}
	} else {
		c.reply("+ ")
		c.secretLine = true
		line, err := c.readLine()
		var long longLineError
		if err != nil && !errors.As(err, &long) { // a SASL line may exceed MaxCommandLine
			c.endOnReadError(err)
			return errEnd
		}
		if line == "*" {
			return errorf("authentication cancelled")
		}
		resp = line
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(resp)
	if err != nil {
		return badf("SASL response is not valid base64")
	}
	// RFC 4616: authzid NUL authcid NUL passwd.
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		return badf("malformed PLAIN response (want authzid NUL authcid NUL password)")
	}
	authzid, authcid, passwd := parts[0], parts[1], parts[2]
	if authzid != "" && !strings.EqualFold(authzid, authcid) {
		return codef("AUTH", "logging in as another user (authorization identity %q) is not supported", authzid)
	}
	return c.login(authcid, passwd)
}

// login checks the credentials, locks the maildrop and takes its snapshot.
func (c *conn) login(login, password string) error {
	user, err := c.srv.opts.Accounts.Authenticate(login, password)
	if err != nil {
		if !errors.Is(err, accounts.ErrAuthFailed) {
			return fmt.Errorf("authenticating %q: %w", login, err)
		}
		c.authFailures++
		c.log.Warn("pop3 authentication failed", "login", login, "remote", c.remote, "failures", c.authFailures)
		// Each failure waits longer before the answer (slows guessing).
		delay := min(c.srv.authDelay<<(c.authFailures-1), maxAuthFailureDelay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return errEnd
		case <-c.srv.stop:
			t.Stop()
			return errEnd
		}
		if c.authFailures >= c.srv.maxFailures {
			return &replyErr{code: "AUTH", text: "invalid user name or password; too many failures, closing the connection", drop: true}
		}
		return codef("AUTH", "invalid user name or password")
	}
	if !c.srv.lock(user, c.cid) {
		c.log.Info("pop3 maildrop in use", "user", user)
		return codef("IN-USE", "the maildrop of %s is in use by another POP3 session", user)
	}
	d, err := c.openMaildrop(user)
	if err != nil {
		c.srv.unlock(user)
		return fmt.Errorf("opening the maildrop of %s: %w", user, err)
	}
	c.user, c.drop, c.state = user, d, stateTransaction
	c.log.Info("pop3 login", "user", user, "remote", c.remote, "tls", c.isTLS, "messages", len(d.msgs))
	c.ok("%s has %d messages (%d octets)", user, len(d.msgs), d.size)
	return nil
}

func (c *conn) openMaildrop(user string) (*maildrop, error) {
	mbox, err := c.srv.openInbox(user)
	if err != nil {
		return nil, err
	}
	snap, err := mbox.Snapshot()
	if err != nil {
		return nil, err
	}
	d := &maildrop{
		mbox:        mbox,
		uidValidity: snap.UIDValidity,
		msgs:        snap.Messages,
		deleted:     make([]bool, len(snap.Messages)),
		retrieved:   make([]bool, len(snap.Messages)),
	}
	for _, m := range d.msgs {
		d.size += m.Size
	}
	return d, nil
}

// releaseMaildrop unlocks the maildrop when the session ends.
func (c *conn) releaseMaildrop() {
	if c.drop != nil {
		c.srv.unlock(c.user)
		c.drop = nil
	}
}

func (c *conn) cmdStls(cmd Command) error {
	if cmd.Rest != "" {
		return badf("syntax: STLS takes no argument")
	}
	if c.isTLS {
		return badf("TLS is already active")
	}
	if c.srv.opts.TLS == nil {
		return errorf("STLS is not available on this server")
	}
	if c.r.Buffered() > 0 {
		// Commands sent behind STLS before the handshake would be taken as
		// if they came over TLS (CVE-2011-0411 and kin): refuse.
		return &replyErr{text: "STLS must be the last command of a pipeline; closing the connection", drop: true}
	}
	c.ok("begin TLS negotiation")
	if err := c.w.Flush(); err != nil {
		return dropError{err}
	}
	c.mu.Lock()
	tc := tls.Server(c.nc, c.srv.opts.TLS)
	c.nc = tc
	c.mu.Unlock()
	if err := c.handshake(tc); err != nil {
		c.log.Info("pop3 STLS handshake failed", "err", err)
		return errEnd
	}
	c.r.Reset(tc)
	c.w.Reset(deadlineWriter{c})
	c.isTLS = true
	c.pendingUser = "" // RFC 2595 §4: forget what was said before TLS
	c.log.Debug("pop3 STLS done", "version", tls.VersionName(tc.ConnectionState().Version))
	return nil
}

func (c *conn) cmdStat(cmd Command) error {
	if cmd.Rest != "" {
		return badf("syntax: STAT takes no argument")
	}
	d := c.drop
	c.ok("%d %d", len(d.msgs)-d.nDeleted, d.size-d.sizeDeleted)
	return nil
}

// message returns the index of a message-number argument that names a
// message not marked as deleted.
func (c *conn) message(arg string) (int, error) {
	n, ok := parseMsgNum(arg)
	if !ok {
		return 0, badf("invalid message number %q", arg)
	}
	d := c.drop
	if n < 1 || n > len(d.msgs) {
		return 0, errorf("no such message: %d (the maildrop has %d)", n, len(d.msgs))
	}
	if d.deleted[n-1] {
		return 0, errorf("message %d is deleted", n)
	}
	return n - 1, nil
}

// listing answers LIST and UIDL: one message with an argument, else all that
// are not deleted, each as "N VALUE". appendValue appends message i's value.
// A maildrop of 10000 messages is listed without an allocation per line.
func (c *conn) listing(cmd Command, name string, appendValue func(b []byte, i int) []byte) error {
	args := cmd.Args()
	d := c.drop
	switch len(args) {
	case 0:
		c.ok("%d messages (%d octets)", len(d.msgs)-d.nDeleted, d.size-d.sizeDeleted)
		line := make([]byte, 0, 64)
		for i := range d.msgs {
			if !d.deleted[i] {
				line = strconv.AppendInt(line[:0], int64(i+1), 10)
				line = append(line, ' ')
				line = appendValue(line, i)
				line = append(line, '\r', '\n')
				_, _ = c.w.Write(line)
			}
		}
		c.endData()
		return nil
	case 1:
		i, err := c.message(args[0])
		if err != nil {
			return err
		}
		c.ok("%d %s", i+1, appendValue(nil, i))
		return nil
	}
	return badf("syntax: %s [msg]", name)
}

func (c *conn) cmdList(cmd Command) error {
	return c.listing(cmd, "LIST", func(b []byte, i int) []byte { return strconv.AppendInt(b, c.drop.msgs[i].Size, 10) })
}

func (c *conn) cmdUidl(cmd Command) error {
	return c.listing(cmd, "UIDL", func(b []byte, i int) []byte {
		return appendUIDL(b, c.drop.msgs[i].UID, c.drop.uidValidity)
	})
}

func (c *conn) cmdRetr(cmd Command) error {
	args := cmd.Args()
	if len(args) != 1 {
		return badf("syntax: RETR msg")
	}
	i, err := c.message(args[0])
	if err != nil {
		return err
	}
	if err := c.send(i, -1); err != nil {
		return err
	}
	c.drop.retrieved[i] = true
	return nil
}

func (c *conn) cmdTop(cmd Command) error {
	args := cmd.Args()
	if len(args) != 2 {
		return badf("syntax: TOP msg n")
	}
	i, err := c.message(args[0])
	if err != nil {
		return err
	}
	n, ok := parseLineCount(args[1])
	if !ok {
		return badf("invalid number of lines %q", args[1])
	}
	return c.send(i, n)
}

// send streams message i (RETR with bodyLines < 0, else TOP).
func (c *conn) send(i, bodyLines int) error {
	d := c.drop
	m := d.msgs[i]
	f, _, err := d.mbox.Open(m.UID)
	if errors.Is(err, maildir.ErrNoSuchMessage) {
		return errorf("message %d has been removed by another session", i+1)
	}
	if err != nil {
		return fmt.Errorf("opening message %d (UID %d): %w", i+1, m.UID, err)
	}
	defer f.Close()
	if bodyLines < 0 {
		c.ok("%d octets", m.Size)
	} else {
		c.ok("top of message %d follows", i+1)
	}
	buf := c.srv.bufs.Get().(*[]byte)
	defer c.srv.bufs.Put(buf)
	if err := writeMessage(c.w, f, bodyLines, *buf); err != nil {
		// The response has begun: the only honest end is to drop the connection.
		return dropError{fmt.Errorf("sending message %d (UID %d): %w", i+1, m.UID, err)}
	}
	return nil
}

func (c *conn) cmdDele(cmd Command) error {
	args := cmd.Args()
	if len(args) != 1 {
		return badf("syntax: DELE msg")
	}
	i, err := c.message(args[0])
	if err != nil {
		return err
	}
	d := c.drop
	d.deleted[i] = true
	d.nDeleted++
	d.sizeDeleted += d.msgs[i].Size
	c.ok("message %d deleted", i+1)
	return nil
}

func (c *conn) cmdNoop(cmd Command) error {
	if cmd.Rest != "" {
		return badf("syntax: NOOP takes no argument")
	}
	c.reply("+OK")
	return nil
}

func (c *conn) cmdRset(cmd Command) error {
	if cmd.Rest != "" {
		return badf("syntax: RSET takes no argument")
	}
	d := c.drop
	clear(d.deleted)
	d.nDeleted, d.sizeDeleted = 0, 0
	c.ok("maildrop has %d messages (%d octets)", len(d.msgs), d.size)
	return nil
}
