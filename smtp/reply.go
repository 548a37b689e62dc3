package smtp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/maildir"
)

// replyError is a protocol error of ours: the reply the client gets and, for
// the log only, what caused it. It never reaches go-smtp: toReply turns it
// into an unwrapped *gosmtp.SMTPError (EXAMPLES 10).
type replyError struct {
	code  int
	enh   gosmtp.EnhancedCode
	msg   string // public text; the session id is appended by toReply
	close bool   // the connection is closed after this reply (always for 421)
	cause error  // logged, never shown
}

func (e *replyError) Error() string {
	s := fmt.Sprintf("%d %d.%d.%d %s", e.code, e.enh[0], e.enh[1], e.enh[2], e.msg)
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

func (e *replyError) Unwrap() error { return e.cause }

func reply(code int, enh gosmtp.EnhancedCode, format string, args ...any) *replyError {
	return &replyError{code: code, enh: enh, msg: fmt.Sprintf(format, args...)}
}

// because records the cause of a reply for the log.
func (e *replyError) because(err error) *replyError {
	e.cause = err
	return e
}

// The replies of the session, by situation. Texts follow Postfix where it
// has one, so operators recognise them.
func errRelayDenied(rcpt string) *replyError {
	return reply(554, gosmtp.EnhancedCode{5, 7, 1}, "<%s>: Relay access denied", rcpt)
}

func errUserUnknown(rcpt string) *replyError {
	return reply(550, gosmtp.EnhancedCode{5, 1, 1}, "<%s>: Recipient address rejected: User unknown", rcpt)
}

func errBadRcptSyntax(rcpt string) *replyError {
	return reply(501, gosmtp.EnhancedCode{5, 1, 3}, "<%s>: Bad recipient address syntax", rcpt)
}

func errBadSenderSyntax(from string) *replyError {
	return reply(501, gosmtp.EnhancedCode{5, 1, 7}, "<%s>: Bad sender address syntax", from)
}

// errNeedUTF8: RFC 6531 §3.5, a non-ASCII address without MAIL ... SMTPUTF8.
func errNeedUTF8(addr string) *replyError {
	return reply(553, gosmtp.EnhancedCode{5, 6, 7}, "<%s>: Non-ASCII address needs the SMTPUTF8 extension", addr)
}

// errRemoteAlias: an alias forwards to an outside address, which needs the
// outbound queue (not built yet). Permanent, so the sender learns at once
// rather than after days of retries; 5.3.5 = system incorrectly configured.
func errRemoteAlias(rcpt string) *replyError {
	return reply(550, gosmtp.EnhancedCode{5, 3, 5}, "<%s>: Alias forwards to an outside address, which this server cannot relay", rcpt)
}

func errNestedMail() *replyError {
	return reply(503, gosmtp.EnhancedCode{5, 5, 1}, "Error: nested MAIL command")
}

func errTooManyErrors() *replyError {
	return reply(421, gosmtp.EnhancedCode{4, 7, 0}, "Error: too many errors, closing connection")
}

func errShuttingDown() *replyError {
	return reply(421, gosmtp.EnhancedCode{4, 3, 2}, "Service shutting down, try again later")
}

func errTimeout() *replyError {
	return reply(421, gosmtp.EnhancedCode{4, 4, 2}, "Error: timeout exceeded, closing connection")
}

// errLineTooLong: go-smtp cannot resynchronise after an over-long line, so
// the connection is closed after this reply.
func errLineTooLong() *replyError {
	r := reply(554, gosmtp.EnhancedCode{5, 6, 0}, "Error: message line longer than %d bytes, closing connection", maxLineLength)
	r.close = true
	return r
}

// errTooManyHops: more Received fields than Postfix's hopcount_limit (a mail
// loop). Postfix answers 5.4.0; 5.4.6 is RFC 3463's "routing loop detected".
func errTooManyHops() *replyError {
	return reply(554, gosmtp.EnhancedCode{5, 4, 6}, "Error: too many hops (mail loop?)")
}

func errTooBig(limit int64) *replyError {
	return reply(552, gosmtp.EnhancedCode{5, 3, 4}, "Error: message exceeds the size limit of %d bytes", limit)
}

func errDeliveryFailed() *replyError {
	return reply(451, gosmtp.EnhancedCode{4, 3, 0}, "Error: local delivery failed, try again later")
}

func errInternal() *replyError {
	return reply(451, gosmtp.EnhancedCode{4, 3, 0}, "Error: local error in processing, try again later")
}

// toReply is the one place where an error becomes an SMTP reply (EXAMPLES 9):
// typed replies pass through, known conditions get their code, and anything
// else becomes a generic 451 4.3.0 (the caller logs the full error). The
// session id is appended to every 4xx/5xx text. closeConn reports a reply
// after which the connection is closed (421, and replies after which go-smtp
// cannot go on reading).
func toReply(err error, id string) (r *gosmtp.SMTPError, closeConn bool) {
	if err == nil {
		return nil, false
	}
	var rep *replyError
	var se *gosmtp.SMTPError
	var ne net.Error
	switch {
	case errors.As(err, &rep):
		// ours, as is
	case errors.Is(err, gosmtp.ErrTooLongLine):
		rep = errLineTooLong()
	case errors.As(err, &se):
		// go-smtp's own (ErrDataTooLarge, ...): keep code and text
		rep = &replyError{code: se.Code, enh: se.EnhancedCode, msg: se.Message}
		if rep.enh == gosmtp.EnhancedCodeNotSet || rep.enh == gosmtp.NoEnhancedCode {
			rep.enh = gosmtp.EnhancedCode{se.Code / 100, 0, 0}
		}
	case errors.Is(err, context.Canceled):
		rep = errShuttingDown()
	case errors.Is(err, context.DeadlineExceeded): // before net.Error: it is one too
		rep = reply(451, gosmtp.EnhancedCode{4, 4, 5}, "Error: timeout while processing, try again later")
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		rep = errTimeout()
	case errors.Is(err, accounts.ErrNoSuchUser):
		rep = reply(550, gosmtp.EnhancedCode{5, 1, 1}, "Recipient address rejected: User unknown")
	case errors.Is(err, accounts.ErrNotLocal):
		rep = reply(554, gosmtp.EnhancedCode{5, 7, 1}, "Relay access denied")
	case errors.Is(err, accounts.ErrBadAddress), errors.Is(err, maildir.ErrInvalidUser):
		rep = reply(501, gosmtp.EnhancedCode{5, 1, 3}, "Bad address syntax")
	case errors.Is(err, maildir.ErrNoSuchMailbox), errors.Is(err, maildir.ErrInvalidName):
		rep = errDeliveryFailed()
	default:
		rep = errInternal()
	}
	msg := rep.msg
	if rep.code >= 400 && id != "" {
		msg += " (" + id + ")"
	}
	out := &gosmtp.SMTPError{Code: rep.code, EnhancedCode: rep.enh, Message: msg}
	return out, rep.code == 421 || rep.close
}
