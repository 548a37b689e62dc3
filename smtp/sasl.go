package smtp

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

// AUTH on submission (RFC 4954): PLAIN (RFC 4616, go-sasl's server) and
// LOGIN (draft-murchison-sasl-login, below), offered and accepted only on a
// secure connection: TLS (STARTTLS or implicit), loopback, or anywhere when
// security.allow_plaintext_auth is set. Each failure waits longer (the
// delay doubles, at most 16 times the first); the max_auth_failures-th
// closes the connection with 421.

// maxAuthField bounds a LOGIN user name or password.
const maxAuthField = 1024

// submissionSession is a session of the submission service: a session that
// also implements gosmtp.AuthSession (the MX offers no AUTH).
type submissionSession struct {
	*session
}

var _ gosmtp.AuthSession = submissionSession{}

// authSecure reports whether a password may be sent on this connection.
func (s *session) authSecure() bool {
	if _, isTLS := s.sc.TLSConnectionState(); isTLS {
		return true
	}
	return s.srv.sub.allowPlaintextAuth || s.c.remoteIP.IsLoopback()
}

// AuthMechanisms implements gosmtp.AuthSession: advertised in EHLO only
// where a password may be sent.
func (s submissionSession) AuthMechanisms() []string {
	if !s.authSecure() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements gosmtp.AuthSession (AUTH mech [initial-response]).
func (s submissionSession) Auth(mech string) (sasl.Server, error) {
	if !s.authSecure() {
		return nil, s.fail("AUTH", errEncryptionRequired())
	}
	if s.c.authFailures >= s.srv.sub.maxAuthFailures {
		return nil, s.fail("AUTH", errTooManyAuthFailures())
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			// RFC 4616 §2: an authorization identity other than the user's
			// own would mean acting as someone else; not offered.
			return s.login(identity, username, password)
		}), nil
	case sasl.Login:
		return &loginServer{auth: func(username, password string) error { return s.login("", username, password) }}, nil
	}
	return nil, s.fail("AUTH", reply(504, gosmtp.EnhancedCode{5, 5, 4}, "Unsupported authentication mechanism"))
}

// login checks a user name and password; the reply error of a failure has
// been counted, delayed and logged.
func (s *session) login(identity, username, password string) error {
	user, err := s.srv.sub.accounts.Authenticate(username, password)
	if err == nil && identity != "" && !strings.EqualFold(identity, username) && !strings.EqualFold(identity, user) {
		err = fmt.Errorf("authorization identity %q is not the user", identity)
	}
	if err != nil {
		s.c.authFailures++
		n := s.c.authFailures
		s.c.log.Warn("authentication failed", "login", username, "failures", n, "err", err)
		s.pause(authDelay(s.srv.sub.authDelay, n))
		if n >= s.srv.sub.maxAuthFailures {
			return s.fail("AUTH", errTooManyAuthFailures())
		}
		return s.fail("AUTH", errAuthFailed())
	}
	s.authUser = user
	s.c.log.Info("login", "user", user)
	return nil
}

// pause waits d, or less when the server shuts down.
func (s *session) pause(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.srv.closing:
	}
}

// authDelay is the pause after the n-th failed login: base, 2·base, 4·base,
// ... at most 16·base (as IMAP and POP3 do).
func authDelay(base time.Duration, n int) time.Duration {
	if n < 1 {
		return 0
	}
	return base << min(n-1, 4)
}

// loginServer is the server side of the LOGIN mechanism, which go-sasl lacks:
// "Username:" and "Password:" challenges, or the user name as the initial
// response (what Outlook and many devices send).
type loginServer struct {
	auth     func(username, password string) error
	step     int // 0: want the user name, 1: want the password, 2: done
	username string
}

var errLoginDone = errors.New("LOGIN: exchange already complete")

// Next implements sasl.Server.
func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		if response == nil { // no initial response: ask
			return []byte("Username:"), false, nil
		}
		if len(response) > maxAuthField || bytes.ContainsAny(response, "\x00\r\n") {
			l.step = 2
			return nil, true, errBadAuthInput()
		}
		l.username, l.step = string(response), 1
		return []byte("Password:"), false, nil
	case 1:
		l.step = 2
		if len(response) > maxAuthField || bytes.ContainsAny(response, "\x00\r\n") {
			return nil, true, errBadAuthInput()
		}
		return nil, true, l.auth(l.username, string(response))
	}
	return nil, true, errLoginDone
}

// Replies of AUTH (RFC 4954 §6).
func errEncryptionRequired() *replyError {
	return reply(538, gosmtp.EnhancedCode{5, 7, 11}, "Encryption required for requested authentication mechanism")
}

func errAuthFailed() *replyError {
	return reply(535, gosmtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
}

func errTooManyAuthFailures() *replyError {
	return reply(421, gosmtp.EnhancedCode{4, 7, 0}, "Error: too many authentication failures, closing connection")
}

func errBadAuthInput() *gosmtp.SMTPError {
	return &gosmtp.SMTPError{Code: 501, EnhancedCode: gosmtp.EnhancedCode{5, 5, 2}, Message: "Invalid authentication data"}
}
