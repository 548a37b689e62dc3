package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/postyard-mail/postyard/delivery/dkimsign"
)

func newDKIMCmd(a *app) *cobra.Command {
	cmd := makeGroup(&cobra.Command{
		Use:   "dkim",
		Short: "Manage the DKIM keys that sign outgoing mail (data_dir/dkim)",
	})
	var selector, algorithm string
	keygen := &cobra.Command{
		Use:   "keygen DOMAIN",
		Short: "Make a signing key for DOMAIN and print the DNS TXT record to publish",
		Long: `Make a new DKIM key for DOMAIN, write it to data_dir/dkim/DOMAIN.SELECTOR.key
and print the TXT record to publish. Mail submitted from DOMAIN is signed with
every key of the domain, so an rsa2048 and an ed25519 key (with different
selectors) give two signatures. A running server picks new keys up by itself.`,
		Example: `  postyard dkim keygen example.com
  postyard dkim keygen example.com --selector ed --algorithm ed25519`,
		Args: exactArgs(1, "DOMAIN"),
		RunE: func(_ *cobra.Command, args []string) error {
			cfg, _, err := a.loadConfig()
			if err != nil {
				return err
			}
			if selector == "" {
				selector = cfg.DKIM.Selector
			}
			switch algorithm {
			case "rsa2048", "ed25519":
			default:
				return usageErrorf("dkim keygen: --algorithm is rsa2048 or ed25519, not %q", algorithm)
			}
			path, name, txt, err := dkimsign.Generate(filepath.Join(cfg.DataDir, "dkim"), args[0], selector, algorithm)
			if err != nil {
				return fmt.Errorf("dkim keygen: %w", err)
			}
			fmt.Fprintf(a.stderr, "wrote %s\npublish this TXT record:\n", path)
			fmt.Fprintf(a.stdout, "%s. IN TXT %s\n", name, quoteTXT(txt))
			return nil
		},
	}
	keygen.Flags().StringVar(&selector, "selector", "", "DKIM `selector` (default: the config's dkim.selector)")
	keygen.Flags().StringVar(&algorithm, "algorithm", "rsa2048", "key `type`: rsa2048 or ed25519")
	cmd.AddCommand(keygen)
	return cmd
}

// quoteTXT splits a record into quoted strings of at most 255 octets
// (RFC 1035 §3.3.14), as zone files and most DNS panels take them.
func quoteTXT(s string) string {
	out := ""
	for len(s) > 0 {
		n := min(len(s), 255)
		if out != "" {
			out += " "
		}
		out += `"` + s[:n] + `"`
		s = s[n:]
	}
	return out
}
