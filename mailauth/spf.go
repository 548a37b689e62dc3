package mailauth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/postyard-mail/postyard/dnsmx"
)

// SPF evaluation: check_host() of RFC 7208 §4.

// Limits of §4.6.4.
const (
	spfMaxLookups      = 10 // terms that cause DNS queries
	spfMaxVoidLookups  = 2  // NXDOMAIN or empty answers
	spfMaxMXorPTRNames = 10 // names looked at per mx or ptr
	// DefaultSPFTimeout bounds one whole SPF check (§4.6.4: at least 20 s).
	DefaultSPFTimeout = 20 * time.Second
)

// SPFInput is what an SPF check looks at.
type SPFInput struct {
	IP       netip.Addr // the SMTP client
	HELO     string     // the EHLO/HELO name
	MailFrom string     // the reverse-path without <>, "" for the null sender
	// Receiver is our host name, for the %{r} macro of explanations.
	Receiver string
	// Now is the time of %{t}; zero means time.Now.
	Now time.Time
}

// SPFResult is the outcome of an SPF check.
type SPFResult struct {
	// Result is one of none, neutral, pass, fail, softfail, temperror,
	// permerror (§2.6).
	Result authres.ResultValue
	// Identity is "mailfrom", or "helo" when MAIL FROM was null and the
	// HELO identity was checked (§2.4).
	Identity string
	// Domain is the domain whose policy was checked: that of MAIL FROM, or
	// the HELO name. DMARC aligns it with the From domain.
	Domain string
	// Sender is the <sender> of check_host(): MAIL FROM, or postmaster@HELO.
	Sender string
	// Explanation is the text of a fail result, from the exp= modifier or a
	// default (§6.2), safe to put in an SMTP reply.
	Explanation string
	// Reason says in a few words why (the matching mechanism, the error).
	Reason string
}

// CheckSPF evaluates the SPF policy for in: the MAIL FROM identity, or the
// HELO identity for the null sender (RFC 7208 §2.4).
func CheckSPF(ctx context.Context, r dnsmx.Resolver, in SPFInput) SPFResult {
	ctx, cancel := context.WithTimeout(ctx, DefaultSPFTimeout)
	defer cancel()
	res := SPFResult{Identity: "mailfrom"}
	ip := in.IP.Unmap()
	if !ip.IsValid() {
		res.Result, res.Reason = authres.ResultPermError, "no client address"
		return res
	}
	sender := in.MailFrom
	if sender == "" {
		res.Identity = "helo"
		sender = "postmaster@" + in.HELO
	}
	local, domain := splitSender(sender)
	if local == "" {
		local = "postmaster" // §4.3
	}
	sender = local + "@" + domain
	res.Domain, res.Sender = strings.ToLower(strings.TrimSuffix(domain, ".")), sender
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	e := &spfEval{
		ctx: ctx,
		r:   r,
		ip:  ip,
		env: macroEnv{
			sender:   sender,
			local:    local,
			domain:   domain,
			ip:       ip,
			helo:     in.HELO,
			receiver: in.Receiver,
			now:      now.Unix(),
		},
	}
	e.env.ptr = e.validatedName
	out := e.checkHost(domain)
	res.Result, res.Reason, res.Explanation = out.result, out.reason, out.explanation
	if res.Result == authres.ResultFail && res.Explanation == "" {
		res.Explanation = defaultExplanation(domain)
	}
	return res
}

func defaultExplanation(domain string) string {
	return "SPF policy of " + sanitize(domain, 200) + " does not permit this sender"
}

// splitSender splits at the last "@"; a sender without one is all domain.
func splitSender(s string) (local, domain string) {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return "", s
}

type spfEval struct {
	ctx     context.Context
	r       dnsmx.Resolver
	ip      netip.Addr
	env     macroEnv
	lookups int // terms that caused DNS queries, over the whole check
	voids   int
}

type spfOutcome struct {
	result      authres.ResultValue
	reason      string
	explanation string
}

// errSPF carries a temperror or permerror out of a mechanism.
type errSPF struct {
	result authres.ResultValue
	reason string
}

func (e *errSPF) Error() string { return string(e.result) + ": " + e.reason }

func permErr(format string, a ...any) error {
	return &errSPF{authres.ResultPermError, fmt.Sprintf(format, a...)}
}

func tempErr(err error) error {
	return &errSPF{authres.ResultTempError, err.Error()}
}

// validDomain checks the <domain> of check_host() (§4.3): a multi-label
// name, no empty label or label over 63 octets.
func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if len(d) == 0 || len(d) > 253 {
		return false
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}

// checkHost is check_host(ip, domain, sender) (§4).
func (e *spfEval) checkHost(domain string) spfOutcome {
	if !validDomain(domain) {
		return spfOutcome{result: authres.ResultNone, reason: "no valid domain to check"}
	}
	if err := e.ctx.Err(); err != nil {
		return spfOutcome{result: authres.ResultTempError, reason: "SPF check timed out"}
	}
	txts, err := e.r.LookupTXT(e.ctx, domain)
	if err != nil {
		if dnsmx.IsTemporary(err) {
			return spfOutcome{result: authres.ResultTempError, reason: "DNS: " + err.Error()}
		}
		return spfOutcome{result: authres.ResultNone, reason: "no SPF record for " + domain}
	}
	var recs []string
	for _, t := range txts {
		if IsSPFRecord(t) {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return spfOutcome{result: authres.ResultNone, reason: "no SPF record for " + domain}
	case 1:
	default:
		return spfOutcome{result: authres.ResultPermError, reason: "more than one SPF record for " + domain}
	}
	rec, err := ParseSPF(recs[0])
	if err != nil {
		return spfOutcome{result: authres.ResultPermError, reason: err.Error()}
	}

	for _, d := range rec.Directives {
		match, err := e.match(d, domain)
		if err != nil {
			var se *errSPF
			if errors.As(err, &se) {
				return spfOutcome{result: se.result, reason: se.reason}
			}
			return spfOutcome{result: authres.ResultPermError, reason: err.Error()}
		}
		if !match {
			continue
		}
		out := spfOutcome{result: qualifierResult(d.Qualifier), reason: "matched " + d.String() + " of " + domain}
		if out.result == authres.ResultFail && rec.exp != nil {
			out.explanation = e.explain(rec.exp, domain)
		}
		return out
	}

	if rec.redirect != nil {
		// §6.1.
		if err := e.countLookup(); err != nil {
			return errOutcome(err)
		}
		target := e.expandDomain(rec.redirect, domain)
		out := e.checkHost(target)
		if out.result == authres.ResultNone {
			return spfOutcome{result: authres.ResultPermError, reason: "redirect to " + target + ", which has no SPF record"}
		}
		return out
	}
	return spfOutcome{result: authres.ResultNeutral, reason: "no mechanism matched in " + domain}
}

func errOutcome(err error) spfOutcome {
	var se *errSPF
	if errors.As(err, &se) {
		return spfOutcome{result: se.result, reason: se.reason}
	}
	return spfOutcome{result: authres.ResultPermError, reason: err.Error()}
}

func qualifierResult(q byte) authres.ResultValue {
	switch q {
	case '-':
		return authres.ResultFail
	case '~':
		return authres.ResultSoftFail
	case '?':
		return authres.ResultNeutral
	}
	return authres.ResultPass
}

func (e *spfEval) countLookup() error {
	e.lookups++
	if e.lookups > spfMaxLookups {
		return permErr("more than %d DNS-querying terms (RFC 7208 §4.6.4)", spfMaxLookups)
	}
	return nil
}

func (e *spfEval) countVoid() error {
	e.voids++
	if e.voids > spfMaxVoidLookups {
		return permErr("more than %d void DNS lookups (RFC 7208 §4.6.4)", spfMaxVoidLookups)
	}
	return nil
}

// expandDomain expands a domain-spec and shortens it to 253 octets by
// dropping labels from the left (§7.3).
func (e *spfEval) expandDomain(items []macroItem, domain string) string {
	s := strings.TrimSuffix(e.env.expand(items, domain), ".")
	for len(s) > 253 {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			break
		}
		s = s[i+1:]
	}
	return s
}

// target is the domain a mechanism applies to: its domain-spec expanded,
// or the current domain.
func (e *spfEval) target(d SPFDirective, domain string) string {
	if d.domain == nil {
		return domain
	}
	return e.expandDomain(d.domain, domain)
}

// family is the lookup network for the client address.
func (e *spfEval) family() string {
	if e.ip.Is4() {
		return "ip4"
	}
	return "ip6"
}

func (e *spfEval) inCIDR(addr netip.Addr, d SPFDirective) bool {
	addr = addr.Unmap()
	if addr.Is4() != e.ip.Is4() {
		return false
	}
	bits := d.CIDR4
	if !e.ip.Is4() {
		bits = d.CIDR6
	}
	if bits < 0 {
		return addr == e.ip
	}
	p, err := addr.Prefix(bits)
	return err == nil && p.Contains(e.ip)
}

// lookupErr turns a DNS error of a mechanism into temperror, or counts a
// void lookup for NXDOMAIN (the caller counts empty answers).
func (e *spfEval) lookupErr(err error) error {
	if dnsmx.IsTemporary(err) {
		return tempErr(err)
	}
	return e.countVoid()
}

// match says whether the directive matches (§5).
func (e *spfEval) match(d SPFDirective, domain string) (bool, error) {
	switch d.Mechanism {
	case "all":
		return true, nil

	case "ip4", "ip6":
		return d.Net.Contains(e.ip), nil

	case "include":
		// §5.2.
		if err := e.countLookup(); err != nil {
			return false, err
		}
		target := e.expandDomain(d.domain, domain)
		out := e.checkHost(target)
		switch out.result {
		case authres.ResultPass:
			return true, nil
		case authres.ResultFail, authres.ResultSoftFail, authres.ResultNeutral:
			return false, nil
		case authres.ResultTempError:
			return false, &errSPF{authres.ResultTempError, out.reason}
		case authres.ResultNone:
			return false, permErr("include:%s has no SPF record", target)
		}
		return false, &errSPF{authres.ResultPermError, out.reason}

	case "a":
		// §5.3.
		if err := e.countLookup(); err != nil {
			return false, err
		}
		addrs, err := e.r.LookupIP(e.ctx, e.family(), e.target(d, domain))
		if err != nil {
			return false, e.lookupErr(err)
		}
		if len(addrs) == 0 {
			return false, e.countVoid()
		}
		for _, a := range addrs {
			if e.inCIDR(a, d) {
				return true, nil
			}
		}
		return false, nil

	case "mx":
		// §5.4.
		if err := e.countLookup(); err != nil {
			return false, err
		}
		mxs, err := e.r.LookupMXRecords(e.ctx, e.target(d, domain))
		if err != nil {
			return false, e.lookupErr(err)
		}
		if len(mxs) == 0 {
			return false, e.countVoid()
		}
		if len(mxs) > spfMaxMXorPTRNames {
			return false, permErr("mx: more than %d MX records", spfMaxMXorPTRNames)
		}
		for _, mx := range mxs {
			if mx.Host == "." {
				continue
			}
			addrs, err := e.r.LookupIP(e.ctx, e.family(), mx.Host)
			if err != nil {
				if dnsmx.IsTemporary(err) {
					return false, tempErr(err)
				}
				continue
			}
			for _, a := range addrs {
				if e.inCIDR(a, d) {
					return true, nil
				}
			}
		}
		return false, nil

	case "ptr":
		// §5.5.
		if err := e.countLookup(); err != nil {
			return false, err
		}
		target := strings.ToLower(e.target(d, domain))
		names, err := e.r.LookupPTR(e.ctx, e.ip)
		if err != nil {
			// "If a DNS error occurs while doing the PTR RR lookup, then
			// this mechanism fails to match."
			if dnsmx.IsTemporary(err) {
				return false, nil
			}
			return false, e.countVoid()
		}
		if len(names) == 0 {
			return false, e.countVoid()
		}
		for _, n := range e.validated(names) {
			if n == target || strings.HasSuffix(n, "."+target) {
				return true, nil
			}
		}
		return false, nil

	case "exists":
		// §5.7: an A lookup whatever the client's address family.
		if err := e.countLookup(); err != nil {
			return false, err
		}
		addrs, err := e.r.LookupIP(e.ctx, "ip4", e.expandDomain(d.domain, domain))
		if err != nil {
			return false, e.lookupErr(err)
		}
		if len(addrs) == 0 {
			return false, e.countVoid()
		}
		return true, nil
	}
	return false, permErr("unknown mechanism %q", d.Mechanism)
}

// validated returns, of the first ten PTR names, those whose addresses
// include the client's (§5.5).
func (e *spfEval) validated(names []string) []string {
	if len(names) > spfMaxMXorPTRNames {
		names = names[:spfMaxMXorPTRNames]
	}
	var out []string
	for _, n := range names {
		addrs, err := e.r.LookupIP(e.ctx, e.family(), n)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if a.Unmap() == e.ip {
				out = append(out, strings.ToLower(n))
				break
			}
		}
	}
	return out
}

// validatedName is the %{p} macro (§7.3): a validated name of the client,
// preferring domain itself, then a subdomain of it, else any; "unknown".
func (e *spfEval) validatedName(domain string) string {
	names, err := e.r.LookupPTR(e.ctx, e.ip)
	if err != nil || len(names) == 0 {
		return "unknown"
	}
	valid := e.validated(names)
	domain = strings.ToLower(domain)
	for _, n := range valid {
		if n == domain {
			return n
		}
	}
	for _, n := range valid {
		if strings.HasSuffix(n, "."+domain) {
			return n
		}
	}
	if len(valid) > 0 {
		return valid[0]
	}
	return "unknown"
}

// explain fetches and expands the exp= text (§6.2); "" on any problem.
func (e *spfEval) explain(items []macroItem, domain string) string {
	target := e.expandDomain(items, domain)
	if !validDomain(target) {
		return ""
	}
	txts, err := e.r.LookupTXT(e.ctx, target)
	if err != nil || len(txts) != 1 {
		return ""
	}
	text, err := parseMacroString(txts[0], true)
	if err != nil {
		return ""
	}
	s := e.env.expand(text, domain)
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return "" // explanations are 7-bit ASCII text
		}
	}
	return s
}
