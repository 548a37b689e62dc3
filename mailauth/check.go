// Package mailauth judges inbound mail: SPF, DKIM and DMARC, reported as
// an Authentication-Results header field plus a policy verdict.
//
// Implemented:
//   - RFC 7208 SPF: check_host() with every mechanism and modifier, macros
//     (§7), the 10 DNS-querying-term and 2 void-lookup limits (§4.6.4), all
//     seven results. The MAIL FROM identity is checked, or the HELO identity
//     for the null sender (§2.4). Passes the openspf.org RFC 7208 test suite.
//   - RFC 6376 DKIM (RFC 8301 key and hash rules, RFC 8463 ed25519):
//     every signature verified by go-msgauth, keys fetched through dnsmx.
//   - RFC 7489 DMARC: policy discovery at the From domain then its
//     organizational domain (public suffix list), relaxed and strict
//     alignment of SPF and DKIM, p, sp and pct.
//   - RFC 8601 Authentication-Results: formatted with go-msgauth/authres;
//     Rewrite removes incoming fields that claim our authserv-id.
//
// Check does the DNS and crypto work and returns structured results. The
// SMTP layer decides what to do with them; Verdict is the recommendation
// under a Policy (reject a DMARC p=reject failure with 550 5.7.1, file a
// p=quarantine failure into Junk, 451 when a DNS failure could change the
// outcome, SPF fail by itself recorded unless Policy says reject).
package mailauth

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/postyard-mail/postyard/dnsmx"
)

// Options configure a Checker.
type Options struct {
	// Hostname is our authserv-id in Authentication-Results and the %{r} of
	// SPF explanations.
	Hostname string
	// Resolver answers every DNS query; a *dnsmx.Client, whose cache makes
	// repeated checks cheap.
	Resolver dnsmx.Resolver
	// Policy turns results into a verdict.
	Policy Policy
	// MaxDKIMSignatures bounds the signatures verified per message.
	// Default DefaultMaxDKIMSignatures.
	MaxDKIMSignatures int
	// Sample reports whether a message falls into a DMARC pct% sample.
	// Default: random.
	Sample func(pct int) bool
	// Now is the clock of the SPF %{t} macro. Default time.Now.
	Now func() time.Time
}

// Policy is the site's handling of results (config [auth]).
type Policy struct {
	// RejectSPFFail rejects an SPF fail on its own (spf_fail = "reject");
	// by default it is only recorded, and DMARC decides (RFC 7489 §10.1).
	RejectSPFFail bool
	// RecordDMARCOnly records DMARC results without acting on them
	// (dmarc = "record"); by default p=reject and p=quarantine are enforced.
	RecordDMARCOnly bool
}

// Checker runs the checks. It is safe for concurrent use.
type Checker struct {
	opts Options
}

// New returns a Checker.
func New(opts Options) *Checker {
	opts.MaxDKIMSignatures = cmp.Or(opts.MaxDKIMSignatures, DefaultMaxDKIMSignatures)
	if opts.Sample == nil {
		opts.Sample = func(pct int) bool { return rand.IntN(100) < pct }
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Checker{opts: opts}
}

// Input is one received message and its SMTP envelope.
type Input struct {
	ClientIP netip.Addr
	HELO     string
	// MailFrom is the reverse-path without angle brackets; "" for <>.
	MailFrom string
	// Message is the header and body as received (CRLF line ends).
	Message io.Reader
}

// Result holds everything Check found.
type Result struct {
	SPF   SPFResult
	DKIM  []DKIMResult // one per signature; empty when unsigned
	DMARC DMARCResult
	// Verdict is the recommended handling under the Checker's Policy.
	Verdict Verdict
	// Hostname is the authserv-id of HeaderField.
	Hostname string
	// OwnResults counts the message's Authentication-Results fields that
	// claim Hostname (forged, or from a mail loop). When it is not zero,
	// deliver the message through Rewrite, which removes them.
	OwnResults int
}

// Action is what to do with a message.
type Action int

// Actions, by increasing severity.
const (
	Accept Action = iota
	Quarantine
	TempFail
	Reject
)

func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Quarantine:
		return "quarantine"
	case TempFail:
		return "tempfail"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Verdict is a recommended handling, with the SMTP reply for TempFail and
// Reject.
type Verdict struct {
	Action Action
	// Code and Enhanced are the reply (550 5.7.1, 451 4.4.3, ...); zero
	// for Accept and Quarantine.
	Code     int
	Enhanced [3]int
	// Reason is one line of plain ASCII for the reply text and the log.
	Reason string
}

// Check runs SPF and DKIM (concurrently), then DMARC, and decides. The
// error is only for a message that cannot be read (or whose header is over
// MaxHeaderSize); DNS trouble is in the results, as temperror.
func (c *Checker) Check(ctx context.Context, in Input) (Result, error) {
	res := Result{Hostname: c.opts.Hostname}
	br := bufio.NewReader(in.Message)
	hdr, err := readHeader(br, MaxHeaderSize)
	if err != nil {
		return res, err
	}
	fields, _ := splitFields(hdr)
	for _, f := range fields {
		if claimsUs(f, []string{c.opts.Hostname}) {
			res.OwnResults++
		}
	}

	spfDone := make(chan SPFResult, 1)
	go func() {
		spfDone <- CheckSPF(ctx, c.opts.Resolver, SPFInput{
			IP: in.ClientIP, HELO: in.HELO, MailFrom: in.MailFrom,
			Receiver: c.opts.Hostname, Now: c.opts.Now(),
		})
	}()
	dkims, err := verifyDKIM(ctx, c.opts.Resolver, io.MultiReader(bytes.NewReader(hdr), br), c.opts.MaxDKIMSignatures)
	res.SPF = <-spfDone
	if err != nil {
		return res, fmt.Errorf("mailauth: reading the message: %w", err)
	}
	res.DKIM = dkims

	from, multiple, fromErr := fromDomain(fields)
	res.DMARC = evalDMARC(ctx, c.opts.Resolver, from, fromErr, multiple, res.SPF, res.DKIM, c.opts.Sample)
	res.Verdict = Decide(res, c.opts.Policy)
	return res, nil
}

// Decide turns results into a verdict under p: the most severe of what
// DMARC and SPF call for (Reject > TempFail > Quarantine > Accept).
func Decide(r Result, p Policy) Verdict {
	v := Verdict{Action: Accept, Reason: "accepted"}
	worse := func(n Verdict) {
		if n.Action > v.Action {
			v = n
		}
	}
	d := r.DMARC
	if !p.RecordDMARCOnly {
		switch {
		case d.MultipleFrom:
			worse(Verdict{Reject, 550, [3]int{5, 7, 1}, "message has more than one From address domain or From field (RFC 7489 6.6.1)"})
		case d.Result == authres.ResultTempError:
			worse(Verdict{TempFail, 451, [3]int{4, 4, 3}, "DMARC policy of " + sanitize(d.From, 100) + " unavailable (DNS), try again later"})
		case d.Result == authres.ResultFail && d.MayPass && d.Applied != PolicyNone:
			worse(Verdict{TempFail, 451, [3]int{4, 4, 3}, "cannot verify " + sanitize(d.From, 100) + " now (DNS), try again later"})
		case d.Result == authres.ResultFail && d.Applied == PolicyReject:
			worse(Verdict{Reject, 550, [3]int{5, 7, 1}, "rejected by the DMARC policy of " + sanitize(d.Domain, 100)})
		case d.Result == authres.ResultFail && d.Applied == PolicyQuarantine:
			worse(Verdict{Quarantine, 0, [3]int{}, "quarantined by the DMARC policy of " + sanitize(d.Domain, 100)})
		}
	}
	if p.RejectSPFFail {
		switch r.SPF.Result {
		case authres.ResultFail:
			// RFC 7372 §3.2: 5.7.23 SPF validation failed.
			worse(Verdict{Reject, 550, [3]int{5, 7, 23}, "SPF: " + sanitize(r.SPF.Explanation, 200)})
		case authres.ResultTempError:
			// RFC 7372 §3.2: 4.7.24 SPF validation error.
			worse(Verdict{TempFail, 451, [3]int{4, 7, 24}, "SPF check of " + sanitize(r.SPF.Domain, 100) + " failed temporarily (DNS), try again later"})
		}
	}
	return v
}

// AuthResults returns the results as go-msgauth/authres values, SPF, then
// each DKIM signature (or dkim=none), then DMARC.
func (r Result) AuthResults() []authres.Result {
	spf := &authres.SPFResult{Value: r.SPF.Result, Reason: sanitize(r.SPF.Reason, 200)}
	if r.SPF.Identity == "helo" {
		spf.Helo = sanitize(r.SPF.Domain, 255)
	} else {
		spf.From = sanitize(r.SPF.Sender, 255)
	}
	if r.SPF.Result == authres.ResultPass {
		spf.Reason = ""
	}
	out := []authres.Result{spf}
	if len(r.DKIM) == 0 {
		out = append(out, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, d := range r.DKIM {
		out = append(out, &authres.DKIMResult{
			Value:      d.Result,
			Reason:     d.Reason,
			Domain:     sanitize(d.Domain, 255),
			Identifier: sanitize(d.Identifier, 255),
		})
	}
	out = append(out, &authres.DMARCResult{
		Value:  r.DMARC.Result,
		Reason: sanitize(r.DMARC.Reason, 200),
		From:   sanitize(r.DMARC.From, 255),
	})
	return out
}

// HeaderField returns the complete Authentication-Results field, folded
// one result per line, ending in CRLF, to put on top of the message.
func (r Result) HeaderField() string {
	var b strings.Builder
	b.WriteString("Authentication-Results: ")
	b.WriteString(r.Hostname)
	for _, ar := range r.AuthResults() {
		// Format one result at a time to fold between them.
		s := authres.Format("x", []authres.Result{ar})
		b.WriteString(";\r\n\t")
		b.WriteString(strings.TrimSpace(strings.TrimPrefix(s, "x; ")))
	}
	b.WriteString("\r\n")
	return b.String()
}
