package smtp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/postyard-mail/postyard/delivery"
	"github.com/postyard-mail/postyard/mailauth"
)

// Inbound authentication (SPF, DKIM, DMARC) of MX mail at the end of
// DATA/BDAT. mailauth does the DNS and crypto work and recommends a verdict
// under the [auth] policy; this file applies it (EXAMPLES 8).

// Checker judges a received message (*mailauth.Checker).
type Checker interface {
	Check(ctx context.Context, in mailauth.Input) (mailauth.Result, error)
}

var _ Checker = (*mailauth.Checker)(nil)

// defaultCheckTimeout bounds the checks of one message, all DNS queries
// together (RFC 7208 §4.6.4 suggests at least 20 s for SPF). Past it, the
// lookups still open give temperror, which is 451, never a silent pass.
const defaultCheckTimeout = 30 * time.Second

// junkFolder receives messages that DMARC p=quarantine says to quarantine.
const junkFolder = "Junk"

// authOutcome is how a message that passed the checks is delivered.
type authOutcome struct {
	// header is our Authentication-Results field, for Envelope.Header.
	header string
	// junk: DMARC p=quarantine failed, deliver into the recipients' Junk.
	junk bool
	// body is what to deliver: the spool itself, or, when the message
	// carried Authentication-Results fields claiming our hostname, a copy
	// without them (closed by the caller).
	body *delivery.Spool
}

// checksApply reports whether the message of this session is checked: mail
// received by the MX from an unauthenticated client. Our own users'
// submissions are not (they are authenticated and signed by us).
func (s *session) checksApply() bool {
	return s.srv.checker != nil && s.kind == KindMX && s.authUser == ""
}

// checkMessage runs the checks on the spooled message (read once, header
// and body) and applies the verdict: a reply error for reject (550) and
// tempfail (451), or how to deliver.
func (s *session) checkMessage(tx *transaction, id string, sp *delivery.Spool) (authOutcome, *replyError) {
	ctx, cancel := context.WithTimeout(s.srv.ctx, s.srv.checkTimeout)
	defer cancel()
	began := time.Now()
	res, err := s.srv.checker.Check(ctx, mailauth.Input{
		ClientIP: s.c.remoteIP.Unmap(),
		HELO:     s.sc.Hostname(),
		MailFrom: tx.from,
		Message:  sp.NewReader(),
	})
	if err != nil {
		if errors.Is(err, mailauth.ErrHeaderTooLarge) {
			return authOutcome{}, reply(552, gosmtp.EnhancedCode{5, 3, 4}, "Error: message header exceeds %d bytes", mailauth.MaxHeaderSize).because(err)
		}
		return authOutcome{}, errInternal().because(fmt.Errorf("checking %s: %w", id, err))
	}
	v := res.Verdict
	s.c.log.Info("auth", "id", id, "spf", string(res.SPF.Result), "spf_domain", res.SPF.Domain,
		"dkim", dkimSummary(res.DKIM), "dmarc", string(res.DMARC.Result), "from_domain", res.DMARC.From,
		"action", v.Action.String(), "reason", v.Reason, "ms", time.Since(began).Milliseconds())

	switch v.Action {
	case mailauth.Reject, mailauth.TempFail:
		code, enh := v.Code, gosmtp.EnhancedCode{v.Enhanced[0], v.Enhanced[1], v.Enhanced[2]}
		if code/100 != 4 && code/100 != 5 || enh[0] != code/100 {
			// Not a reply mailauth documents: fail safe, temporarily.
			return authOutcome{}, errInternal().because(fmt.Errorf("checking %s: verdict %v with reply %d %v", id, v.Action, code, enh))
		}
		return authOutcome{}, reply(code, enh, "%s", v.Reason).because(fmt.Errorf("%s: %s", id, authSummary(res)))
	}

	out := authOutcome{header: res.HeaderField(), junk: v.Action == mailauth.Quarantine, body: sp}
	if res.OwnResults > 0 {
		// RFC 8601 §5: remove the fields that claim to be ours before
		// delivery. Rare (forgery, or a loop), so the copy is made only then.
		clean := s.srv.deliverer.NewSpool()
		if err := mailauth.Rewrite(clean, sp.NewReader(), res.Hostname); err != nil {
			_ = clean.Close()
			return authOutcome{}, errInternal().because(fmt.Errorf("removing forged Authentication-Results of %s: %w", id, err))
		}
		s.c.log.Info("removed Authentication-Results claiming our hostname", "id", id, "count", res.OwnResults)
		out.body = clean
	}
	return out, nil
}

// inFolder returns rs with every copy going to folder.
func inFolder(rs []delivery.Recipient, folder string) []delivery.Recipient {
	out := make([]delivery.Recipient, len(rs))
	for i, r := range rs {
		r.Folder = folder
		out[i] = r
	}
	return out
}

// dkimSummary is "none", or each signature's "result:domain", for the log.
func dkimSummary(ds []mailauth.DKIMResult) string {
	if len(ds) == 0 {
		return "none"
	}
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = string(d.Result) + ":" + d.Domain
	}
	return strings.Join(parts, ",")
}

// authSummary is the results in one line, for the log of a refusal.
func authSummary(r mailauth.Result) string {
	return fmt.Sprintf("spf=%s dkim=%s dmarc=%s (%s)", r.SPF.Result, dkimSummary(r.DKIM), r.DMARC.Result, r.DMARC.Reason)
}
