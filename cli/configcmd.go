package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/postyard-mail/postyard/config"
)

func newConfigCmd(a *app) *cobra.Command {
	cmd := makeGroup(&cobra.Command{
		Use:   "config",
		Short: "Check or print the configuration",
	})
	cmd.AddCommand(
		&cobra.Command{
			Use:   "check",
			Short: `Validate the configuration; problems are printed as "FILE:LINE: key: problem"`,
			Long: `Validate the configuration: TOML syntax, unknown or duplicate keys, types,
sizes, durations, listen addresses, names and that the TLS files can be
read. Every problem is printed on stderr as "FILE:LINE: key: problem" and
the exit code is 1; a valid configuration prints "FILE: ok".`,
			Args: exactArgs(0, "no arguments"),
			RunE: func(cmd *cobra.Command, _ []string) error {
				_, path, err := a.loadConfig()
				if err != nil {
					return err
				}
				if path == "" {
					path = "built-in defaults"
				}
				_, err = fmt.Fprintf(a.stdout, "%s: ok\n", path)
				return err
			},
		},
		&cobra.Command{
			Use:   "print",
			Short: "Print the effective configuration, defaults included, as TOML",
			Long: `Print the effective configuration, defaults included, as TOML that
"postyard config check" accepts. Secrets in it (delivery.smarthost_password)
are printed too.`,
			Args: exactArgs(0, "no arguments"),
			RunE: func(cmd *cobra.Command, _ []string) error {
				cfg, _, err := a.loadConfig()
				if err != nil {
					return err
				}
				_, err = a.stdout.Write(config.Print(cfg))
				return err
			},
		},
	)
	return cmd
}
