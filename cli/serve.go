package cli

import (
	"github.com/spf13/cobra"

	"github.com/postyard-mail/postyard/server"
)

func newServeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run every configured listener until SIGTERM or SIGINT",
		Long: `Run every configured listener (SMTP, submission, IMAP, POP3, autoconfig)
until SIGTERM or SIGINT, then let sessions finish for a bounded time and exit
0. SIGHUP rereads accounts, aliases, certificates and the log level without
dropping connections.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, path, err := a.loadConfig()
			if err != nil {
				return err
			}
			return server.Run(cmd.Context(), cfg, path)
		},
	}
}
