// Package dnscheck is the logic of `postyard dns check DOMAIN`: it reads what
// DNS says about a mail domain and its server, and says what to fix.
//
// Checked, for DOMAIN and the server's hostname:
//   - MX (RFC 5321 §5.1, RFC 7505): present, not null, and pointing at the
//     hostname (a warning if the hostname is not among the hosts).
//   - SPF (RFC 7208): one valid v=spf1 record that passes for the
//     hostname's addresses.
//   - DKIM (RFC 6376 §3.6.2): the key record of each selector we sign with,
//     the same public key as ours.
//   - DMARC (RFC 7489): one valid v=DMARC1 record; p=none is a warning.
//   - A/AAAA of the hostname, and forward-confirmed reverse DNS: each address
//     has a PTR naming the hostname (what large receivers require).
//   - MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) TXT records: optional,
//     warnings when absent.
//   - The config: DOMAIN among its domains, hostname a public name
//     (findings only when not).
//
// Weak records are warnings: SPF ending in ?all or without all (+all is
// wrong: every forgery passes), DMARC p=none or pct below 100, host
// addresses that the internet cannot reach (loopback, private, shared).
//
// Each finding is ok, warn or missing; a missing one is required, and the
// CLI exits 1. Every finding that is not ok carries the exact record to
// publish, in zone-file form.
package dnscheck

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/postyard-mail/postyard/dnsmx"
	"github.com/postyard-mail/postyard/mailauth"
)

// Status of a finding.
type Status int

const (
	OK Status = iota
	// Warn: works, but should be improved (or an optional record is absent).
	Warn
	// Missing: a required record is absent or wrong.
	Missing
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	}
	return "missing"
}

// Finding is the verdict on one record.
type Finding struct {
	Check  string // "MX", "SPF", "DKIM default", ...
	Status Status
	Detail string // what DNS says, or what is wrong
	Fix    string // the record(s) to publish, or what to do; "" when ok
}

// DKIMKey is one of our signing keys: its selector and the TXT value that
// publishes it.
type DKIMKey struct {
	Selector string
	Record   string
}

// Input says what to check.
type Input struct {
	Domain   string
	Hostname string // our server: HELO name, MX target
	// Keys are the DKIM keys we sign DOMAIN's mail with.
	Keys []DKIMKey
	// Selector is the configured selector, used in the advice when there
	// is no key yet.
	Selector string
	// LocalDomains are the config's domains; when given and DOMAIN is not
	// among them, a finding says that this server refuses its mail.
	LocalDomains []string
}

// Check looks everything up and returns the findings in a fixed order.
func Check(ctx context.Context, r dnsmx.Resolver, in Input) []Finding {
	domain := strings.ToLower(strings.TrimSuffix(in.Domain, "."))
	host := strings.ToLower(strings.TrimSuffix(in.Hostname, "."))
	c := &checker{ctx: ctx, r: r, domain: domain, host: host}
	var fs []Finding
	if f, ok := c.config(in.LocalDomains); !ok {
		fs = append(fs, f...)
	}
	addrs := c.hostAddrs()
	fs = append(fs, c.mx(addrs), c.spf(addrs))
	fs = append(fs, c.dkim(in.Keys, in.Selector)...)
	fs = append(fs, c.dmarc(), c.addrFinding(addrs))
	fs = append(fs, c.ptr(addrs)...)
	fs = append(fs, c.optional("MTA-STS", "_mta-sts."+domain, "v=STSv1",
		fmt.Sprintf(`_mta-sts.%s. IN TXT "v=STSv1; id=1"`+"\n"+
			"and serve the policy at https://mta-sts.%s/.well-known/mta-sts.txt (RFC 8461 §3.2);\n"+
			"change id whenever the policy changes", domain, domain)))
	fs = append(fs, c.optional("TLS-RPT", "_smtp._tls."+domain, "v=TLSRPTv1",
		fmt.Sprintf(`_smtp._tls.%s. IN TXT "v=TLSRPTv1; rua=mailto:postmaster@%s"`, domain, domain)))
	return fs
}

// Failed reports whether a required record is missing.
func Failed(fs []Finding) int {
	n := 0
	for _, f := range fs {
		if f.Status == Missing {
			n++
		}
	}
	return n
}

// Write prints the findings as a table, each fix indented under its line.
func Write(w io.Writer, fs []Finding) error {
	width := 0
	for _, f := range fs {
		width = max(width, len(f.Check))
	}
	for _, f := range fs {
		if _, err := fmt.Fprintf(w, "%-*s  %-7s  %s\n", width, f.Check, f.Status, f.Detail); err != nil {
			return err
		}
		if f.Fix == "" {
			continue
		}
		for i, line := range strings.Split(f.Fix, "\n") {
			label := "fix:"
			if i > 0 {
				label = ""
			}
			if _, err := fmt.Fprintf(w, "%-*s  %-7s  %s\n", width, "", label, line); err != nil {
				return err
			}
		}
	}
	return nil
}

type checker struct {
	ctx          context.Context
	r            dnsmx.Resolver
	domain, host string
	hostErr      error
}

func dnsProblem(err error) string {
	if dnsmx.IsTemporary(err) {
		return "DNS lookup failed, try again: " + err.Error()
	}
	return err.Error()
}

// config checks what the config says of DOMAIN and of our hostname; it
// returns findings only when something is wrong (ok false).
func (c *checker) config(local []string) ([]Finding, bool) {
	var fs []Finding
	if local != nil && !slices.ContainsFunc(local, func(d string) bool { return strings.EqualFold(strings.TrimSuffix(d, "."), c.domain) }) {
		fs = append(fs, Finding{Check: "Domain", Status: Missing,
			Detail: c.domain + " is not in the config's domains: this server refuses its mail",
			Fix:    fmt.Sprintf("add %q to domains in the config", c.domain)})
	}
	if !publicName(c.host) {
		fs = append(fs, Finding{Check: "Hostname", Status: Missing,
			Detail: fmt.Sprintf("%q is not a public host name: other servers cannot find this one by it", c.host),
			Fix:    fmt.Sprintf("set hostname = \"mail.%s\" (the server's public name) in the config, and publish its A/AAAA record", c.domain)})
	}
	return fs, len(fs) == 0
}

// publicName reports whether a host name can be a public one: at least two
// labels, and not localhost or a special-use name (RFC 6761).
func publicName(h string) bool {
	if !strings.Contains(h, ".") {
		return false
	}
	for _, special := range []string{"localhost", "local", "localdomain", "internal", "home.arpa"} {
		if h == special || strings.HasSuffix(h, "."+special) {
			return false
		}
	}
	return true
}

func (c *checker) hostAddrs() []netip.Addr {
	addrs, err := c.r.LookupAddrs(c.ctx, c.host)
	if err != nil {
		c.hostErr = err
		return nil
	}
	return addrs
}

func (c *checker) mx(addrs []netip.Addr) Finding {
	f := Finding{Check: "MX"}
	fix := fmt.Sprintf("%s. IN MX 10 %s.", c.domain, c.host)
	mxs, err := c.r.LookupMX(c.ctx, c.domain)
	switch {
	case err != nil && dnsmx.IsTemporary(err):
		f.Status, f.Detail = Missing, dnsProblem(err)
		return f
	case err != nil:
		f.Status, f.Detail, f.Fix = Missing, "no mail host: "+err.Error(), fix
		return f
	case mxs[0].Implicit:
		f.Status, f.Detail, f.Fix = Missing, "no MX record (mail would go to the domain's own address)", fix
		return f
	}
	var hosts []string
	ours := false
	for _, mx := range mxs {
		hosts = append(hosts, fmt.Sprintf("%d %s", mx.Pref, mx.Host))
		if mx.Host == c.host {
			ours = true
		} else if !ours && len(addrs) > 0 {
			// Another name for our server counts too.
			if a, err := c.r.LookupAddrs(c.ctx, mx.Host); err == nil && slices.ContainsFunc(a, func(x netip.Addr) bool { return slices.Contains(addrs, x) }) {
				ours = true
			}
		}
	}
	slices.Sort(hosts)
	f.Detail = strings.Join(hosts, ", ")
	if !ours {
		f.Status, f.Fix = Warn, "none of these is "+c.host+"; if this server receives the mail: "+fix
		f.Detail += " (not this server)"
	}
	return f
}

func (c *checker) spf(addrs []netip.Addr) Finding {
	f := Finding{Check: "SPF"}
	fix := fmt.Sprintf(`%s. IN TXT "v=spf1 a:%s mx -all"`, c.domain, c.host)
	recs, err := c.txtRecords(c.domain, mailauth.IsSPFRecord)
	if err != nil {
		f.Status, f.Detail = Missing, dnsProblem(err)
		return f
	}
	switch len(recs) {
	case 0:
		f.Status, f.Detail, f.Fix = Missing, "no SPF record", fix
		return f
	case 1:
	default:
		f.Status, f.Detail, f.Fix = Missing, fmt.Sprintf("%d SPF records (RFC 7208 §4.5 allows one: the result is permerror)", len(recs)), "keep only: "+fix
		return f
	}
	f.Detail = recs[0]
	if _, err := mailauth.ParseSPF(recs[0]); err != nil {
		f.Status, f.Fix = Missing, fix
		f.Detail += " (" + err.Error() + ")"
		return f
	}
	for _, a := range addrs {
		res := mailauth.CheckSPF(c.ctx, c.r, mailauth.SPFInput{IP: a, HELO: c.host, MailFrom: "postmaster@" + c.domain})
		if res.Result != "pass" {
			f.Status = Missing
			f.Detail += fmt.Sprintf(" (gives %s for %s, this server's address: %s)", res.Result, a, res.Reason)
			f.Fix = "authorize this server, for example: " + fix
			return f
		}
	}
	rec, _ := mailauth.ParseSPF(recs[0])
	switch spfDefault(rec) {
	case '+':
		// Every forgery passes SPF, and with it DMARC.
		f.Status, f.Fix = Missing, "end the record with -all (or ~all), not +all: "+fix
		f.Detail += " (+all lets any host on the internet send as " + c.domain + ")"
	case '?', 0:
		f.Status, f.Fix = Warn, "end the record with -all (or ~all), for example: "+fix
		f.Detail += " (other hosts get neutral: SPF does not protect " + c.domain + " from forgery)"
	}
	return f
}

// spfDefault is the qualifier of the record's final "all" ('+', '-', '~',
// '?'); '-' for a record that ends in redirect= (the target decides; it is
// evaluated when the record is checked), 0 when neither is there.
func spfDefault(rec *mailauth.SPFRecord) byte {
	for _, d := range rec.Directives {
		if d.Mechanism == "all" {
			return d.Qualifier // §5.1: terms after "all" are never reached
		}
	}
	if rec.Redirect != "" {
		return '-'
	}
	return 0
}

func (c *checker) dkim(keys []DKIMKey, selector string) []Finding {
	if len(keys) == 0 {
		f := Finding{Check: "DKIM " + selector, Status: Missing, Detail: "no signing key for " + c.domain + " in data_dir/dkim",
			Fix: fmt.Sprintf("postyard dkim keygen %s --selector %s, then publish the record it prints", c.domain, selector)}
		if txts, err := c.r.LookupTXT(c.ctx, selector+"._domainkey."+c.domain); err == nil && len(txts) > 0 {
			f.Detail += " (a record is published at " + selector + "._domainkey." + c.domain + ")"
		}
		return []Finding{f}
	}
	var out []Finding
	for _, k := range keys {
		name := k.Selector + "._domainkey." + c.domain
		f := Finding{Check: "DKIM " + k.Selector}
		fix := name + ". IN TXT " + quoteTXT(k.Record)
		txts, err := c.r.LookupTXT(c.ctx, name)
		switch {
		case err != nil && dnsmx.IsTemporary(err):
			f.Status, f.Detail = Missing, dnsProblem(err)
		case len(txts) == 0:
			f.Status, f.Detail, f.Fix = Missing, "no key record at "+name, fix
		case len(txts) > 1:
			f.Status, f.Detail, f.Fix = Missing, fmt.Sprintf("%d TXT records at %s (RFC 6376 §3.6.2.2: verifiers fail)", len(txts), name), "keep only: "+fix
		case keyOf(txts[0]) == "":
			f.Status, f.Detail, f.Fix = Missing, "the record at "+name+" has no key (empty or no p=: revoked, RFC 6376 §3.6.1): signatures will fail", fix
		case keyOf(txts[0]) != keyOf(k.Record):
			f.Status, f.Detail, f.Fix = Missing, "the key published at "+name+" is not ours: signatures will fail", fix
		default:
			f.Detail = name + " matches our key"
		}
		out = append(out, f)
	}
	return out
}

// keyOf returns the p= value of a DKIM key record, white space removed.
func keyOf(rec string) string {
	for _, tag := range strings.Split(rec, ";") {
		name, value, ok := strings.Cut(tag, "=")
		if ok && strings.TrimSpace(name) == "p" {
			return strings.Join(strings.Fields(value), "")
		}
	}
	return ""
}

func (c *checker) dmarc() Finding {
	f := Finding{Check: "DMARC"}
	name := "_dmarc." + c.domain
	fix := fmt.Sprintf(`%s. IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@%s"`, name, c.domain)
	recs, err := c.txtRecords(name, mailauth.IsDMARCRecord)
	if err != nil {
		f.Status, f.Detail = Missing, dnsProblem(err)
		return f
	}
	switch len(recs) {
	case 0:
		if org := mailauth.OrganizationalDomain(c.domain); org != c.domain {
			if t, err := c.r.LookupTXT(c.ctx, "_dmarc."+org); err == nil && slices.ContainsFunc(t, mailauth.IsDMARCRecord) {
				f.Detail = "none at " + name + "; the policy of " + org + " applies"
				return f
			}
		}
		f.Status, f.Detail, f.Fix = Missing, "no DMARC record", fix
		return f
	case 1:
	default:
		f.Status, f.Detail, f.Fix = Missing, fmt.Sprintf("%d DMARC records (RFC 7489 §6.6.3: none applies)", len(recs)), "keep only: "+fix
		return f
	}
	f.Detail = recs[0]
	rec, err := mailauth.ParseDMARC(recs[0])
	if err != nil {
		f.Status, f.Fix = Missing, fix
		f.Detail += " (" + err.Error() + ")"
		return f
	}
	switch {
	case rec.Policy == mailauth.PolicyNone:
		f.Status, f.Fix = Warn, "p=none only monitors; once reports look right: "+fix
	case rec.Percent < 100:
		f.Status, f.Fix = Warn, fmt.Sprintf("pct=%d applies p=%s to only %d%% of failing mail; once reports look right, remove pct=", rec.Percent, rec.Policy, rec.Percent)
	}
	return f
}

func (c *checker) addrFinding(addrs []netip.Addr) Finding {
	f := Finding{Check: "A/AAAA"}
	fix := fmt.Sprintf("%s. IN A <this server's public IPv4 address> (and AAAA for IPv6)", c.host)
	switch {
	case c.hostErr != nil && dnsmx.IsTemporary(c.hostErr):
		f.Status, f.Detail = Missing, dnsProblem(c.hostErr)
	case len(addrs) == 0:
		f.Status, f.Detail, f.Fix = Missing, "no address for "+c.host, fix
	default:
		var s, inner []string
		for _, a := range addrs {
			s = append(s, a.String())
			if !publicAddr(a) {
				inner = append(inner, a.String())
			}
		}
		f.Detail = c.host + " is " + strings.Join(s, ", ")
		if len(inner) > 0 {
			// A warning, not a failure: with split DNS the configured
			// resolver may rightly give inside addresses.
			f.Status, f.Fix = Warn, "the internet's DNS must give the server's public address: "+fix
			f.Detail += " (" + strings.Join(inner, ", ") + " cannot be reached from the internet)"
		}
	}
	return f
}

// publicAddr reports whether other mail servers could connect to a: not
// loopback, private (RFC 1918, RFC 4193), link-local, shared (RFC 6598) or
// unspecified.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified() || !a.IsGlobalUnicast() {
		return false
	}
	return !netip.MustParsePrefix("100.64.0.0/10").Contains(a)
}

// ptr checks forward-confirmed reverse DNS of each address of the host.
func (c *checker) ptr(addrs []netip.Addr) []Finding {
	var out []Finding
	for _, a := range addrs {
		f := Finding{Check: "PTR " + a.String()}
		fix := "ask the provider of " + a.String() + " to set its reverse DNS (PTR) to " + c.host
		names, err := c.r.LookupPTR(c.ctx, a)
		switch {
		case err != nil && dnsmx.IsTemporary(err):
			f.Status, f.Detail = Missing, dnsProblem(err)
		case len(names) == 0:
			f.Status, f.Detail, f.Fix = Missing, "no reverse DNS", fix
		case !slices.Contains(names, c.host):
			f.Status, f.Detail, f.Fix = Missing, "reverse DNS is "+strings.Join(names, ", ")+", not "+c.host, fix
		default:
			f.Detail = "reverse DNS is " + c.host + ", which resolves back to " + a.String()
		}
		out = append(out, f)
	}
	return out
}

// optional checks a TXT record whose absence is only a warning.
func (c *checker) optional(check, name, prefix, fix string) Finding {
	f := Finding{Check: check}
	recs, err := c.txtRecords(name, func(t string) bool { return strings.HasPrefix(t, prefix) })
	if err != nil {
		f.Status, f.Detail = Warn, dnsProblem(err)
		return f
	}
	if len(recs) > 0 {
		f.Detail = recs[0]
		return f
	}
	f.Status, f.Detail, f.Fix = Warn, "not published (optional)", fix
	return f
}

// txtRecords returns the TXT records at name that isRecord accepts. Only a
// temporary DNS failure is an error: a name that does not exist or has no
// TXT records has no such record.
func (c *checker) txtRecords(name string, isRecord func(string) bool) ([]string, error) {
	txts, err := c.r.LookupTXT(c.ctx, name)
	if err != nil && dnsmx.IsTemporary(err) {
		return nil, err
	}
	var recs []string
	for _, t := range txts {
		if isRecord(t) {
			recs = append(recs, t)
		}
	}
	return recs, nil
}

// quoteTXT splits a value into quoted strings of at most 255 octets
// (RFC 1035 §3.3.14).
func quoteTXT(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, `"`+s[:255]+`"`)
		s = s[255:]
	}
	return strings.Join(append(parts, `"`+s+`"`), " ")
}
