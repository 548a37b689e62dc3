package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/postyard-mail/postyard/accounts"
)

// remoteAliasTargets says whether aliases may forward to outside addresses:
// they go out through the outbound queue, with the original envelope sender
// (no SRS rewriting, so the forwarded copy may fail the sender's SPF).
// noRemoteHint explains a refusal when it is false.
const (
	remoteAliasTargets = true
	noRemoteHint       = "forwarding to outside addresses is switched off in this build"
)

func newAliasCmd(a *app) *cobra.Command {
	cmd := makeGroup(&cobra.Command{
		Use:   "alias",
		Short: "Add, remove and list aliases (data_dir/aliases)",
		Long: `Add, remove and list aliases. Aliases live in data_dir/aliases, one line each
("alias@domain: target, target"); a running server notices changes on its own.`,
	})
	add := &cobra.Command{
		Use:   "add ADDR TARGET...",
		Short: "Deliver mail for ADDR to the TARGETs (adds to an existing alias)",
		Long: `Deliver mail for ADDR to each TARGET: a local user, another alias, or an
outside address (forwarded through the outbound queue with the original
sender; no SRS, so the sender's SPF may fail at the target). ADDR is
user@domain on a configured domain, or @domain for a catch-all. Adding to an
existing alias adds the new targets to it.`,
		Example: `  postyard alias add postmaster@example.com alice@example.com
  postyard alias add team@example.com alice@example.com bob@example.com
  postyard alias add bob@example.com bob@gmail.example`,
		Args: minArgs(2, "ADDR and at least one TARGET"),
		RunE: func(_ *cobra.Command, args []string) error {
			var targets []string
			for _, arg := range args[1:] { // "a@x, b@y" as one argument works too
				for t := range strings.SplitSeq(arg, ",") {
					if t = strings.TrimSpace(t); t != "" {
						targets = append(targets, t)
					}
				}
			}
			if len(targets) == 0 {
				return usageErrorf("alias add: no TARGET")
			}
			cfg, _, err := a.loadConfig()
			if err != nil {
				return err
			}
			addr := args[0]
			if domain, ok := strings.CutPrefix(addr, "@"); ok {
				if err := accounts.ValidateDomain(domain); err != nil {
					return err
				}
				err = checkLocalDomain(cfg, domain)
			} else {
				addr, err = localAddress(cfg, addr)
			}
			if err != nil {
				return err
			}
			err = accounts.AddAliasWithDomains(cfg.DataDir, cfg.Domains, addr, targets, remoteAliasTargets)
			if errors.Is(err, accounts.ErrNotLocal) && !remoteAliasTargets {
				return fmt.Errorf("%w; %s", err, noRemoteHint)
			}
			return err
		},
	}
	del := &cobra.Command{
		Use:   "del ADDR",
		Short: "Remove an alias",
		Args:  exactArgs(1, "one argument (ADDR)"),
		RunE: func(_ *cobra.Command, args []string) error {
			cfg, _, err := a.loadConfig()
			if err != nil {
				return err
			}
			return accounts.DeleteAlias(cfg.DataDir, args[0])
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: `List the aliases as "alias@domain: target, target"`,
		Args:  exactArgs(0, "no arguments"),
		RunE: func(_ *cobra.Command, _ []string) error {
			cfg, _, err := a.loadConfig()
			if err != nil {
				return err
			}
			aliases, err := accounts.ListAliases(cfg.DataDir)
			if err != nil {
				return err
			}
			for _, al := range aliases {
				if _, err := fmt.Fprintf(a.stdout, "%s: %s\n", al.Address, strings.Join(al.Targets, ", ")); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.AddCommand(add, del, list)
	return cmd
}
