package smtp

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/mail"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/config"
	"github.com/postyard-mail/postyard/delivery"
)

// Message submission (RFC 6409) on submission.listen (STARTTLS) and
// submission.tls_listen (implicit TLS, RFC 8314):
//
//   - AUTH PLAIN or LOGIN (sasl.go) before MAIL, else 530 5.7.0;
//   - MAIL FROM must be an address the user may send as
//     (accounts.CanSendAs: their own, +tag, or an alias that resolves to
//     them), else 553 5.7.1; so must every address of the header From, else
//     553 5.7.1 at the end of DATA (a missing From gets the envelope sender);
//   - per-user limits: submission.max_messages_per_hour/per_day answered at
//     MAIL with 450 4.7.1 (limits.go); submission.max_recipients per message
//     by go-smtp with 452 4.5.3 (RFC 3463 "too many recipients", advertised
//     as LIMITS RCPTMAX so clients split);
//   - Message-ID and Date added when missing, then the DKIM signatures of
//     the header From's domain (every key of it, delivery/dkimsign);
//   - local recipients delivered at once, outside ones written to the
//     outbound queue (delivery.Router, fsynced) before the 250.

// Accounts is what submission needs from the account directory
// (*accounts.Directory).
type Accounts interface {
	Authenticate(login, password string) (string, error)
	CanSendAs(user, from string) bool
}

var _ Accounts = (*accounts.Directory)(nil)

// Signer signs outgoing mail with DKIM (*dkimsign.Keys): the
// DKIM-Signature fields for the message read from r, nil when domain has no key.
type Signer interface {
	SignReader(domain string, r io.Reader) ([]byte, error)
}

// RemoteDeliverer is a Deliverer that also queues Envelope.Remote for the
// relay (*delivery.Router). Without one, aliases forwarding outside are
// refused with 550 5.3.5, and submission cannot be served.
type RemoteDeliverer interface {
	Deliverer
	QueuesRemote() bool
}

var _ RemoteDeliverer = (*delivery.Router)(nil)

// SubmissionOptions configures NewSubmission.
type SubmissionOptions struct {
	// SMTP holds the limits and timeouts shared with the MX: message size,
	// command and data timeouts, max_errors, connection limits.
	SMTP       config.SMTP
	Submission config.Submission
	Security   config.Security
	Hostname   string
	Directory  Directory
	Accounts   Accounts
	Deliverer  RemoteDeliverer
	// Signer adds DKIM signatures; nil sends unsigned.
	Signer Signer
	// TLSConfig enables STARTTLS and is used for implicit-TLS listeners.
	TLSConfig *tls.Config
	Logger    *slog.Logger
	// AuthFailureDelay is the wait after the first failed login (doubling
	// after each further one); 0 means 1 s.
	AuthFailureDelay time.Duration
	// Now is the clock of the sending limits; nil means time.Now.
	Now func() time.Time
}

// submission holds what the submission service adds to Server.
type submission struct {
	accounts           Accounts
	signer             Signer
	allowPlaintextAuth bool
	maxAuthFailures    int
	authDelay          time.Duration
	limits             *sendLimits
	now                func() time.Time
}

// NewSubmission returns the submission service. Serve it on plain listeners
// (STARTTLS) and on implicit-TLS ones alike.
func NewSubmission(opts SubmissionOptions) (*Server, error) {
	if opts.Accounts == nil {
		return nil, errors.New("smtp: submission needs Accounts")
	}
	if opts.Deliverer == nil || !opts.Deliverer.QueuesRemote() {
		return nil, errors.New("smtp: submission needs a Deliverer with an outbound queue")
	}
	cfg := opts.SMTP
	if m := opts.Submission.MaxRecipients; m > 0 && (cfg.MaxRecipients <= 0 || m < cfg.MaxRecipients) {
		cfg.MaxRecipients = m
	}
	s, err := New(Options{Config: cfg, Hostname: opts.Hostname, Directory: opts.Directory,
		Deliverer: opts.Deliverer, TLSConfig: opts.TLSConfig, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	sub := &submission{
		accounts:           opts.Accounts,
		signer:             opts.Signer,
		allowPlaintextAuth: opts.Security.AllowPlaintextAuth,
		maxAuthFailures:    opts.Security.MaxAuthFailures,
		authDelay:          opts.AuthFailureDelay,
		limits:             newSendLimits(opts.Submission.MaxMessagesPerHour, opts.Submission.MaxMessagesPerDay, now),
		now:                now,
	}
	if sub.maxAuthFailures <= 0 {
		sub.maxAuthFailures = 3
	}
	if sub.authDelay <= 0 {
		sub.authDelay = time.Second
	}
	s.kind, s.sub = KindSubmission, sub
	// go-smtp would refuse AUTH outside TLS by itself; the policy is ours
	// (loopback and allow_plaintext_auth count as secure): authSecure.
	s.srv.AllowInsecureAuth = true
	return s, nil
}

// checkSender applies the submission rules to MAIL FROM: logged in, an
// address of the user's, within the sending limits. Nil on the MX.
func (s *session) checkSender(from string) *replyError {
	if s.kind != KindSubmission {
		return nil
	}
	if s.authUser == "" {
		return reply(530, gosmtp.EnhancedCode{5, 7, 0}, "Authentication required")
	}
	if !s.srv.sub.accounts.CanSendAs(s.authUser, from) {
		return reply(553, gosmtp.EnhancedCode{5, 7, 1}, "<%s>: Sender address rejected: not owned by user %s", from, s.authUser)
	}
	if ok, limit, window := s.srv.sub.limits.allow(s.authUser); !ok {
		return reply(450, gosmtp.EnhancedCode{4, 7, 1}, "Error: sending limit of %d messages per %s reached, try again later", limit, window)
	}
	return nil
}

// prepareSubmission runs at the end of DATA on submission: it checks the
// header From against the login, and sets env.Header to the fields added in
// front of the message: DKIM-Signature(s), then a From, Message-ID and Date
// when missing. env.Remote and env.User are set by the caller.
func (s *session) prepareSubmission(tx *transaction, env *delivery.Envelope, sp *delivery.Spool) *replyError {
	info, err := delivery.ScanHeader(sp.NewReader())
	if err != nil {
		if errors.Is(err, delivery.ErrHeaderTooLong) {
			return reply(552, gosmtp.EnhancedCode{5, 6, 0}, "Error: From header field too long")
		}
		return errInternal().because(err)
	}
	var add strings.Builder
	signDomain := domainOf(tx.from)
	if len(info.From) == 0 {
		// RFC 5322 §3.6 requires a From; the envelope sender is the user's.
		add.WriteString("From: <" + tx.from + ">\r\n")
	}
	for i, v := range info.From {
		addrs, err := fromParser.ParseList(v)
		if err != nil || len(addrs) == 0 {
			return reply(550, gosmtp.EnhancedCode{5, 6, 0}, "Error: malformed From header field").because(err)
		}
		for j, a := range addrs {
			if !s.srv.sub.accounts.CanSendAs(s.authUser, a.Address) {
				return reply(553, gosmtp.EnhancedCode{5, 7, 1}, "<%s>: From header address not owned by user %s", a.Address, s.authUser)
			}
			if i == 0 && j == 0 {
				signDomain = domainOf(a.Address) // DMARC aligns d= with the header From
			}
		}
	}
	now := s.srv.sub.now()
	if !info.HasMessageID {
		var rnd [8]byte
		_, _ = rand.Read(rnd[:])
		add.WriteString("Message-ID: <" + hex.EncodeToString(rnd[:]) + "." + env.ID + "@" + s.srv.hostname + ">\r\n")
	}
	if !info.HasDate {
		add.WriteString("Date: " + now.Format(time.RFC1123Z) + "\r\n")
	}
	added := add.String()
	var sig []byte
	if s.srv.sub.signer != nil && signDomain != "" {
		sig, err = s.srv.sub.signer.SignReader(signDomain, io.MultiReader(strings.NewReader(added), sp.NewReader()))
		if err != nil {
			s.c.log.Error("DKIM signing failed", "id", env.ID, "domain", signDomain, "err", err)
			return errInternal().because(err)
		}
	}
	env.Header = string(sig) + added
	return nil
}

// fromParser reads header From values; display names in any charset are
// accepted undecoded (only the addresses matter here).
var fromParser = &mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, input io.Reader) (io.Reader, error) { return input, nil },
}}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// okReply is the 250 at the end of DATA: the local delivery id and, when
// some recipients were queued for the relay, the queue id.
func okReply(env *delivery.Envelope) *gosmtp.SMTPError {
	msg := "Ok: delivered as " + env.ID
	if env.QueueID != "" {
		if len(env.Recipients) == 0 {
			msg = "Ok: queued as " + env.QueueID
		} else {
			msg += ", queued as " + env.QueueID
		}
	}
	return &gosmtp.SMTPError{Code: 250, EnhancedCode: gosmtp.EnhancedCode{2, 0, 0}, Message: msg}
}

// deliveredFolder names the folder of the first local copy, for the log.
func deliveredFolder(rs []delivery.Recipient) string {
	if len(rs) == 0 {
		return ""
	}
	if rs[0].Folder == "" {
		return "INBOX"
	}
	return rs[0].Folder
}

// addRemote appends outside recipients, each once (case-insensitively).
func addRemote(list []string, add ...string) []string {
outer:
	for _, a := range add {
		for _, have := range list {
			if strings.EqualFold(have, a) {
				continue outer
			}
		}
		list = append(list, a)
	}
	return list
}
