package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/postyard-mail/postyard/delivery/dkimsign"
	"github.com/postyard-mail/postyard/dnscheck"
	"github.com/postyard-mail/postyard/dnsmx"
)

// dnsCheckTimeout bounds the whole of `dns check`.
const dnsCheckTimeout = 2 * time.Minute

func newDNSCmd(a *app) *cobra.Command {
	cmd := makeGroup(&cobra.Command{
		Use:   "dns",
		Short: "Check the DNS records a mail domain needs",
	})
	check := &cobra.Command{
		Use:   "check DOMAIN",
		Short: "Say what MX, SPF, DKIM, DMARC, A/AAAA, PTR, MTA-STS and TLS-RPT records say, and what to fix",
		Long: `Look up the records that mail for DOMAIN depends on, through the resolver of
the config ([dns] resolver), and print each as ok, warn or missing, with the
exact record to publish when it is not ok:

  MX       DOMAIN's mail hosts, which should include the config's hostname
  SPF      one valid v=spf1 record that passes for the hostname's addresses
           and ends in -all or ~all (?all is a warning, +all is wrong)
  DKIM     the key record of each key in data_dir/dkim for DOMAIN, equal to ours
  DMARC    one valid v=DMARC1 record (p=none or pct below 100 is a warning)
  A/AAAA   the hostname's addresses (a private or loopback one is a warning)
  PTR      reverse DNS of each address naming the hostname (forward-confirmed)
  MTA-STS, TLS-RPT   optional; warnings when absent
  Domain, Hostname   shown only when DOMAIN is not in the config's domains,
                     or hostname is not a public name (such as localhost)

Exit status 1 when a required record is missing or wrong.`,
		Example: "  postyard dns check example.com",
		Args:    exactArgs(1, "DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := a.loadConfig()
			if err != nil {
				return err
			}
			domain := args[0]
			resolver, err := dnsmx.New(dnsmx.Options{Upstream: cfg.DNS.Resolver, Timeout: time.Duration(cfg.DNS.Timeout)})
			if err != nil {
				return fmt.Errorf("dns check: %w", err)
			}
			keys, err := dkimsign.Open(filepath.Join(cfg.DataDir, "dkim"))
			if err != nil {
				return fmt.Errorf("dns check: %w", err)
			}
			ours, err := keys.For(domain)
			if err != nil {
				return fmt.Errorf("dns check: %w", err)
			}
			in := dnscheck.Input{Domain: domain, Hostname: cfg.Hostname, Selector: cfg.DKIM.Selector, LocalDomains: cfg.Domains}
			for _, k := range ours {
				rec, err := dkimsign.PublicRecord(k)
				if err != nil {
					return fmt.Errorf("dns check: key %s: %w", k.Path, err)
				}
				in.Keys = append(in.Keys, dnscheck.DKIMKey{Selector: k.Selector, Record: rec})
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), dnsCheckTimeout)
			defer cancel()
			findings := dnscheck.Check(ctx, resolver, in)
			if err := dnscheck.Write(a.stdout, findings); err != nil {
				return err
			}
			if n := dnscheck.Failed(findings); n > 0 {
				return fmt.Errorf("dns check: %d required record%s missing or wrong for %s", n, plural(n), domain)
			}
			return nil
		},
	}
	cmd.AddCommand(check)
	return cmd
}
