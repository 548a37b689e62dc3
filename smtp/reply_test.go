package smtp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/maildir"
)

func TestToReply(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		code  int
		enh   gosmtp.EnhancedCode
		close bool
		text  string // substring of the text
	}{
		{"relay denied", errRelayDenied("a@b.example"), 554, gosmtp.EnhancedCode{5, 7, 1}, false, "<a@b.example>: Relay access denied"},
		{"user unknown", errUserUnknown("x@example.test"), 550, gosmtp.EnhancedCode{5, 1, 1}, false, "User unknown"},
		{"bad rcpt syntax", errBadRcptSyntax("x@"), 501, gosmtp.EnhancedCode{5, 1, 3}, false, "Bad recipient address syntax"},
		{"bad sender syntax", errBadSenderSyntax("x@"), 501, gosmtp.EnhancedCode{5, 1, 7}, false, "Bad sender address syntax"},
		{"needs SMTPUTF8", errNeedUTF8("jö@example.test"), 553, gosmtp.EnhancedCode{5, 6, 7}, false, "SMTPUTF8"},
		{"remote alias", errRemoteAlias("list@example.test"), 550, gosmtp.EnhancedCode{5, 3, 5}, false, "outside address"},
		{"nested MAIL", errNestedMail(), 503, gosmtp.EnhancedCode{5, 5, 1}, false, "nested MAIL"},
		{"too many errors", errTooManyErrors(), 421, gosmtp.EnhancedCode{4, 7, 0}, true, "too many errors"},
		{"shutting down", errShuttingDown(), 421, gosmtp.EnhancedCode{4, 3, 2}, true, "shutting down"},
		{"timeout", errTimeout(), 421, gosmtp.EnhancedCode{4, 4, 2}, true, "timeout"},
		{"line too long", errLineTooLong(), 554, gosmtp.EnhancedCode{5, 6, 0}, true, "longer than 65536"},
		{"hops", errTooManyHops(), 554, gosmtp.EnhancedCode{5, 4, 6}, false, "too many hops"},
		{"too big", errTooBig(1000), 552, gosmtp.EnhancedCode{5, 3, 4}, false, "1000 bytes"},
		{"delivery failed", errDeliveryFailed().because(errors.New("disk on fire")), 451, gosmtp.EnhancedCode{4, 3, 0}, false, "local delivery failed"},
		{"wrapped typed reply", fmt.Errorf("ctx: %w", errUserUnknown("u@example.test")), 550, gosmtp.EnhancedCode{5, 1, 1}, false, "User unknown"},
		{"go-smtp line too long", gosmtp.ErrTooLongLine, 554, gosmtp.EnhancedCode{5, 6, 0}, true, "longer than"},
		{"go-smtp data too large", gosmtp.ErrDataTooLarge, 552, gosmtp.EnhancedCode{5, 3, 4}, false, "size"},
		{"go-smtp error without enhanced code", &gosmtp.SMTPError{Code: 450, Message: "busy"}, 450, gosmtp.EnhancedCode{4, 0, 0}, false, "busy"},
		{"read deadline", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), 421, gosmtp.EnhancedCode{4, 4, 2}, true, "timeout"},
		{"context canceled", fmt.Errorf("deliver: %w", context.Canceled), 421, gosmtp.EnhancedCode{4, 3, 2}, true, "shutting down"},
		{"context deadline", context.DeadlineExceeded, 451, gosmtp.EnhancedCode{4, 4, 5}, false, "timeout"},
		{"accounts no such user", fmt.Errorf("resolve: %w", accounts.ErrNoSuchUser), 550, gosmtp.EnhancedCode{5, 1, 1}, false, "User unknown"},
		{"accounts not local", accounts.ErrNotLocal, 554, gosmtp.EnhancedCode{5, 7, 1}, false, "Relay access denied"},
		{"accounts bad address", accounts.ErrBadAddress, 501, gosmtp.EnhancedCode{5, 1, 3}, false, "syntax"},
		{"maildir invalid user", maildir.ErrInvalidUser, 501, gosmtp.EnhancedCode{5, 1, 3}, false, "syntax"},
		{"maildir no such mailbox", maildir.ErrNoSuchMailbox, 451, gosmtp.EnhancedCode{4, 3, 0}, false, "local delivery failed"},
		{"anything else", errors.New("EIO"), 451, gosmtp.EnhancedCode{4, 3, 0}, false, "local error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, closeConn := toReply(tt.err, "cid123")
			if r.Code != tt.code || r.EnhancedCode != tt.enh {
				t.Errorf("reply %d %v, want %d %v", r.Code, r.EnhancedCode, tt.code, tt.enh)
			}
			if r.Code/100 != r.EnhancedCode[0] {
				t.Errorf("reply class %d differs from enhanced class %d", r.Code/100, r.EnhancedCode[0])
			}
			if closeConn != tt.close {
				t.Errorf("close = %v, want %v", closeConn, tt.close)
			}
			if !strings.Contains(r.Message, tt.text) {
				t.Errorf("text %q lacks %q", r.Message, tt.text)
			}
			if !strings.HasSuffix(r.Message, " (cid123)") {
				t.Errorf("text %q lacks the session id", r.Message)
			}
			if strings.ContainsAny(r.Message, "\r\n") {
				t.Errorf("text %q has a line break", r.Message)
			}
			if strings.Contains(r.Message, "disk on fire") || strings.Contains(r.Message, "EIO") {
				t.Errorf("text %q discloses the cause", r.Message)
			}
		})
	}
	if r, _ := toReply(nil, "x"); r != nil {
		t.Errorf("toReply(nil) = %v", r)
	}
}

// TestRepliesUnwrapped: what the session returns to go-smtp is a bare
// *gosmtp.SMTPError (a wrapped one would become "554 5.0.0").
func TestRepliesUnwrapped(t *testing.T) {
	r, _ := toReply(fmt.Errorf("x: %w", errRelayDenied("a@b.c")), "")
	var err error = r
	if _, ok := err.(*gosmtp.SMTPError); !ok {
		t.Fatalf("%T is not *gosmtp.SMTPError", err)
	}
	if strings.Contains(r.Message, "(") {
		t.Errorf("no id given, but text %q has one", r.Message)
	}
}
