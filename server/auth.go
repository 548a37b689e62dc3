package server

import (
	"fmt"

	"github.com/postyard-mail/postyard/dnsmx"
	"github.com/postyard-mail/postyard/mailauth"
)

// resolver returns the process's one DNS client ([dns] resolver and
// timeout), made on first use. Sharing it shares its cache: the relay's MX
// lookups and the inbound checks' TXT lookups.
func (d *deps) resolver() (*dnsmx.Client, error) {
	if d.dns != nil {
		return d.dns, nil
	}
	c, err := dnsmx.New(dnsmx.Options{Upstream: d.cfg.DNS.Resolver, Timeout: d.cfg.DNS.Timeout.D()})
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	d.dns = c
	return c, nil
}

// mailChecker builds the SPF/DKIM/DMARC checker of inbound MX mail: our
// hostname is the authserv-id, and [auth] spf_fail and dmarc set the policy.
func (d *deps) mailChecker() (*mailauth.Checker, error) {
	r, err := d.resolver()
	if err != nil {
		return nil, err
	}
	return mailauth.New(mailauth.Options{
		Hostname: d.cfg.Hostname,
		Resolver: r,
		Policy: mailauth.Policy{
			RejectSPFFail:   d.cfg.Auth.SPFFail == "reject",
			RecordDMARCOnly: d.cfg.Auth.DMARC == "record",
		},
	}), nil
}
