package mailauth

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strconv"
	"strings"

	"github.com/emersion/go-msgauth/authres"
	"golang.org/x/net/publicsuffix"

	"github.com/postyard-mail/postyard/dnsmx"
)

// DMARC (RFC 7489).

// DMARCPolicy is a requested handling: none, quarantine or reject.
type DMARCPolicy string

// Policies of p= and sp=.
const (
	PolicyNone       DMARCPolicy = "none"
	PolicyQuarantine DMARCPolicy = "quarantine"
	PolicyReject     DMARCPolicy = "reject"
)

// ErrDMARCSyntax is the cause of a DMARC record that cannot be used.
var ErrDMARCSyntax = errors.New("DMARC syntax error")

// DMARCRecord is a parsed "v=DMARC1" record (RFC 7489 §6.3).
type DMARCRecord struct {
	Policy DMARCPolicy // p
	// SubdomainPolicy is sp, "" when absent (p applies to subdomains).
	SubdomainPolicy DMARCPolicy
	StrictDKIM      bool // adkim=s
	StrictSPF       bool // aspf=s
	Percent         int  // pct, 0..100
	// Reporting tags, parsed but not acted on (Postyard sends no reports).
	AggregateURIs  []string // rua
	FailureURIs    []string // ruf
	FailureOptions string   // fo
	ReportFormat   string   // rf
	ReportInterval int      // ri, seconds
}

// IsDMARCRecord reports whether a TXT record claims to be DMARC version 1:
// it starts with the v tag, value exactly "DMARC1" (§6.4, §6.6.3).
func IsDMARCRecord(txt string) bool {
	tag, rest, ok := strings.Cut(txt, "=")
	if !ok || strings.TrimRight(tag, " \t") != "v" {
		return false
	}
	v, _, _ := strings.Cut(rest, ";")
	return strings.Trim(v, " \t") == "DMARC1"
}

// ParseDMARC parses a DMARC record. As §6.3 asks, unknown tags are ignored
// and bad values of optional tags fall back to their defaults; the record
// is unusable only without v=DMARC1 first, or without a valid p= — unless
// rua= holds a URI, in which case p=none applies (§6.6.3).
func ParseDMARC(txt string) (*DMARCRecord, error) {
	if !IsDMARCRecord(txt) {
		return nil, fmt.Errorf("%w: does not start with v=DMARC1", ErrDMARCSyntax)
	}
	rec := &DMARCRecord{Percent: 100, ReportInterval: 86400, FailureOptions: "0", ReportFormat: "afrf"}
	seen := map[string]bool{}
	tags := strings.Split(txt, ";")
	for _, t := range tags[1:] {
		name, value, ok := strings.Cut(t, "=")
		name = strings.ToLower(strings.Trim(name, " \t\r\n"))
		value = strings.Trim(value, " \t\r\n")
		if !ok || name == "" || seen[name] {
			continue // empty term (";;", trailing ";") or repeated tag
		}
		seen[name] = true
		switch name {
		case "p":
			rec.Policy = parsePolicy(value)
		case "sp":
			rec.SubdomainPolicy = parsePolicy(value)
		case "adkim":
			rec.StrictDKIM = strings.EqualFold(value, "s")
		case "aspf":
			rec.StrictSPF = strings.EqualFold(value, "s")
		case "pct":
			if n, err := strconv.Atoi(value); err == nil && n >= 0 && n <= 100 && allDigits(value) {
				rec.Percent = n
			}
		case "rua":
			rec.AggregateURIs = parseURIs(value)
		case "ruf":
			rec.FailureURIs = parseURIs(value)
		case "fo":
			if value != "" {
				rec.FailureOptions = value
			}
		case "rf":
			if value != "" {
				rec.ReportFormat = value
			}
		case "ri":
			if n, err := strconv.Atoi(value); err == nil && n >= 0 && allDigits(value) {
				rec.ReportInterval = n
			}
		}
	}
	if rec.Policy == "" {
		if len(rec.AggregateURIs) == 0 {
			return nil, fmt.Errorf("%w: no valid p= tag", ErrDMARCSyntax)
		}
		rec.Policy = PolicyNone
	}
	return rec, nil
}

func parsePolicy(v string) DMARCPolicy {
	switch p := DMARCPolicy(strings.ToLower(v)); p {
	case PolicyNone, PolicyQuarantine, PolicyReject:
		return p
	}
	return ""
}

// parseURIs keeps the syntactically plausible URIs (scheme ":" rest, with
// an optional "!size" suffix) of a comma-separated list (§6.4).
func parseURIs(v string) []string {
	var out []string
	for _, u := range strings.Split(v, ",") {
		u = strings.Trim(u, " \t")
		scheme, rest, ok := strings.Cut(u, ":")
		if !ok || rest == "" || scheme == "" || !isAlpha(scheme[0]) || strings.ContainsAny(u, " \t;") {
			continue
		}
		out = append(out, u)
	}
	return out
}

// String returns the record with every tag whose value is not the default.
func (r *DMARCRecord) String() string {
	parts := []string{"v=DMARC1", "p=" + string(r.Policy)}
	if r.SubdomainPolicy != "" {
		parts = append(parts, "sp="+string(r.SubdomainPolicy))
	}
	if r.StrictDKIM {
		parts = append(parts, "adkim=s")
	}
	if r.StrictSPF {
		parts = append(parts, "aspf=s")
	}
	if r.Percent != 100 {
		parts = append(parts, "pct="+strconv.Itoa(r.Percent))
	}
	if len(r.AggregateURIs) > 0 {
		parts = append(parts, "rua="+strings.Join(r.AggregateURIs, ","))
	}
	if len(r.FailureURIs) > 0 {
		parts = append(parts, "ruf="+strings.Join(r.FailureURIs, ","))
	}
	if r.FailureOptions != "0" {
		parts = append(parts, "fo="+r.FailureOptions)
	}
	if r.ReportFormat != "afrf" {
		parts = append(parts, "rf="+r.ReportFormat)
	}
	if r.ReportInterval != 86400 {
		parts = append(parts, "ri="+strconv.Itoa(r.ReportInterval))
	}
	return strings.Join(parts, "; ")
}

// OrganizationalDomain returns the registered domain of d under the public
// suffix list (RFC 7489 §3.2), or d itself when d is a public suffix.
func OrganizationalDomain(d string) string {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

// aligned compares an authenticated domain with the From domain (§3.1):
// equal in strict mode, the same organizational domain in relaxed mode.
func aligned(authDomain, fromDomain string, strict bool) bool {
	a := strings.ToLower(strings.TrimSuffix(authDomain, "."))
	f := strings.ToLower(strings.TrimSuffix(fromDomain, "."))
	if a == "" || f == "" {
		return false
	}
	if strict {
		return a == f
	}
	return OrganizationalDomain(a) == OrganizationalDomain(f)
}

// DMARCResult is the outcome of DMARC evaluation.
type DMARCResult struct {
	// Result is none (no policy or no usable From), pass, fail, temperror
	// (the policy could not be fetched) or permerror (the From field is
	// unusable).
	Result authres.ResultValue
	// From is the RFC5322.From domain.
	From string
	// Record is the policy found, nil if none; Domain is where it was
	// found (the From domain or its organizational domain).
	Record *DMARCRecord
	Domain string
	// Policy is the policy that applies to From (p, or sp for a subdomain
	// of the domain of the record); "" without a record.
	Policy DMARCPolicy
	// Applied is Policy after pct sampling (§6.6.4: a message outside the
	// sample gets the next less strict policy). It is what a failure calls
	// for; none on pass.
	Applied DMARCPolicy
	// SPFAligned and DKIMAligned tell which passing identifier aligned.
	SPFAligned, DKIMAligned bool
	// MayPass: the check failed, but an aligned identifier had a temporary
	// error, so it could pass later.
	MayPass bool
	// MultipleFrom: the message has more than one From field, or From
	// addresses of different domains (§6.6.1: typically rejected).
	MultipleFrom bool
	Reason       string
}

// errNoFrom: the header has no From field, so DMARC does not apply.
var errNoFrom = errors.New("no From field")

// fromDomain extracts the single From domain of a header (§6.6.1).
func fromDomain(fields [][]byte) (domain string, multiple bool, err error) {
	var values []string
	for _, f := range fields {
		if name, value, ok := fieldName(f); ok && strings.EqualFold(name, "From") {
			values = append(values, value)
		}
	}
	switch len(values) {
	case 0:
		return "", false, errNoFrom
	case 1:
	default:
		return "", true, fmt.Errorf("%d From fields", len(values))
	}
	var domains []string
	if list, perr := mail.ParseAddressList(values[0]); perr == nil {
		for _, a := range list {
			if i := strings.LastIndexByte(a.Address, '@'); i >= 0 {
				domains = append(domains, a.Address[i+1:])
			}
		}
	} else if d := lenientDomain(values[0]); d != "" {
		domains = append(domains, d)
	}
	if len(domains) == 0 {
		return "", false, errors.New("no address in From")
	}
	d := strings.ToLower(strings.TrimSuffix(domains[0], "."))
	for _, o := range domains[1:] {
		if !strings.EqualFold(strings.TrimSuffix(o, "."), d) {
			return "", true, errors.New("the From addresses have different domains")
		}
	}
	if !validDomain(d) {
		return "", false, fmt.Errorf("bad From domain %q", sanitize(d, 100))
	}
	return d, false, nil
}

// lenientDomain finds the domain in a From value that net/mail rejects:
// the text after the last "@" of the last <...>, or of the whole value.
func lenientDomain(v string) string {
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	}
	i := strings.LastIndexByte(v, '@')
	if i < 0 {
		return ""
	}
	d := strings.Trim(v[i+1:], " \t>\"")
	if strings.ContainsAny(d, " \t<>\",;()") {
		return ""
	}
	return d
}

// lookupDMARC finds the policy record of domain, at domain or else at its
// organizational domain (§6.6.3).
func lookupDMARC(ctx context.Context, r dnsmx.Resolver, domain string) (rec *DMARCRecord, at string, err error) {
	for _, d := range []string{domain, OrganizationalDomain(domain)} {
		if d == at {
			break
		}
		at = d
		txts, err := r.LookupTXT(ctx, "_dmarc."+d)
		if err != nil {
			if dnsmx.IsTemporary(err) {
				return nil, "", err
			}
			continue // NXDOMAIN: no record here
		}
		var recs []*DMARCRecord
		for _, t := range txts {
			if !IsDMARCRecord(t) {
				continue
			}
			if p, err := ParseDMARC(t); err == nil {
				recs = append(recs, p)
			}
		}
		// "If the remaining set contains multiple records or no records,
		// policy discovery terminates and DMARC processing is not applied."
		if len(recs) == 1 {
			return recs[0], d, nil
		}
		if len(recs) > 1 {
			return nil, "", nil
		}
	}
	return nil, "", nil
}

// evalDMARC evaluates the From domain against the SPF and DKIM results.
// sample(pct) reports whether a message falls into a pct% sample.
func evalDMARC(ctx context.Context, r dnsmx.Resolver, from string, fromErr error, multiple bool,
	spf SPFResult, dkims []DKIMResult, sample func(pct int) bool) DMARCResult {
	res := DMARCResult{From: from, MultipleFrom: multiple}
	if fromErr != nil {
		res.Result, res.Reason = authres.ResultPermError, fromErr.Error()
		if errors.Is(fromErr, errNoFrom) {
			res.Result = authres.ResultNone
		}
		return res
	}
	rec, at, err := lookupDMARC(ctx, r, from)
	if err != nil {
		res.Result, res.Reason = authres.ResultTempError, "DNS: "+err.Error()
		return res
	}
	if rec == nil {
		res.Result, res.Reason = authres.ResultNone, "no DMARC policy"
		return res
	}
	res.Record, res.Domain = rec, at
	res.Policy = rec.Policy
	if at != from && rec.SubdomainPolicy != "" {
		res.Policy = rec.SubdomainPolicy
	}

	spfCandidate := aligned(spf.Domain, from, rec.StrictSPF)
	res.SPFAligned = spf.Result == authres.ResultPass && spfCandidate
	mayPass := spfCandidate && spf.Result == authres.ResultTempError
	for _, d := range dkims {
		if !aligned(d.Domain, from, rec.StrictDKIM) {
			continue
		}
		switch d.Result {
		case authres.ResultPass:
			res.DKIMAligned = true
		case authres.ResultTempError:
			mayPass = true
		}
	}
	if res.SPFAligned || res.DKIMAligned {
		res.Result, res.Applied = authres.ResultPass, PolicyNone
		res.Reason = "p=" + string(res.Policy)
		return res
	}
	res.Result, res.MayPass = authres.ResultFail, mayPass
	res.Applied = res.Policy
	if rec.Percent < 100 && !sample(rec.Percent) {
		switch res.Applied {
		case PolicyReject:
			res.Applied = PolicyQuarantine
		case PolicyQuarantine:
			res.Applied = PolicyNone
		}
	}
	res.Reason = "p=" + string(res.Policy) + " dis=" + string(res.Applied)
	return res
}
