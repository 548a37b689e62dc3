package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/config"
)

func newUserCmd(a *app) *cobra.Command {
	cmd := makeGroup(&cobra.Command{
		Use:   "user",
		Short: "Add, remove and list users (data_dir/passwd)",
		Long: `Add, remove and list users. Users live in data_dir/passwd, one line each,
in Dovecot's passwd-file format; a running server notices changes on its own.
Passwords are read from stdin (--password-stdin, one line) or prompted for on
a terminal; never from the arguments.`,
	})
	var addStdin, passwdStdin bool
	add := &cobra.Command{
		Use:   "add ADDR",
		Short: "Add a user with a new password",
		Long: `Add the user ADDR (user@domain, domain one of the configured domains) with a
new password, read from stdin with --password-stdin or prompted for twice on
a terminal.`,
		Example: `  postyard user add alice@example.com
  printf '%s\n' "$PASSWORD" | postyard user add alice@example.com --password-stdin`,
		Args: exactArgs(1, "one argument (ADDR)"),
		RunE: func(_ *cobra.Command, args []string) error {
			cfg, _, err := a.loadConfig()
			if err != nil {
				return err
			}
			addr, err := localAddress(cfg, args[0])
			if err != nil {
				return err
			}
			if exists, err := userExists(cfg.DataDir, addr); err != nil {
				return err
			} else if exists { // before asking for a password in vain
				return fmt.Errorf("%w: %s", accounts.ErrUserExists, addr)
			}
			pw, err := a.password(addr, addStdin)
			if err != nil {
				return err
			}
			if err := accounts.AddUser(cfg.DataDir, addr, pw); err != nil {
				return err
			}
			return a.ensurePostmaster(cfg, addr)
		},
	}
	add.Flags().BoolVar(&addStdin, "password-stdin", false, "read the password from the first line of stdin")

	passwd := &cobra.Command{
		Use:   "passwd ADDR",
		Short: "Set a new password for a user",
		Long: `Set a new password for the user ADDR, read from stdin with --password-stdin
or prompted for twice on a terminal.`,
		Args: exactArgs(1, "one argument (ADDR)"),
		RunE: func(_ *cobra.Command, args []string) error {
			cfg, _, err := a.loadConfig()
			if err != nil {
				return err
			}
			addr, err := accounts.CanonicalAddress(args[0])
			if err != nil {
				return err
			}
			if exists, err := userExists(cfg.DataDir, addr); err != nil {
				return err
			} else if !exists {
				return fmt.Errorf("%w: %s", accounts.ErrNoSuchUser, addr)
			}
			pw, err := a.password(addr, passwdStdin)
			if err != nil {
				return err
			}
			return accounts.SetPassword(cfg.DataDir, addr, pw)
		},
	}
	passwd.Flags().BoolVar(&passwdStdin, "password-stdin", false, "read the password from the first line of stdin")

	del := &cobra.Command{
		Use:   "del ADDR",
		Short: "Remove a user (their mail stays on disk)",
		Args:  exactArgs(1, "one argument (ADDR)"),
		RunE: func(_ *cobra.Command, args []string) error {
			cfg, _, err := a.loadConfig()
			if err != nil {
				return err
			}
			return accounts.DeleteUser(cfg.DataDir, args[0])
		},
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List the users, one address a line",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(_ *cobra.Command, _ []string) error {
			cfg, _, err := a.loadConfig()
			if err != nil {
				return err
			}
			users, err := accounts.ListUsers(cfg.DataDir)
			if err != nil {
				return err
			}
			for _, u := range users {
				if _, err := fmt.Fprintln(a.stdout, u); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.AddCommand(add, passwd, del, list)
	return cmd
}

// localAddress validates addr and returns it canonical, after checking that
// its domain is configured: mail for other domains never
// reaches a mailbox here.
func localAddress(cfg *config.Config, addr string) (string, error) {
	addr, err := accounts.CanonicalAddress(addr)
	if err != nil {
		return "", err
	}
	return addr, checkLocalDomain(cfg, addr[strings.LastIndexByte(addr, '@')+1:])
}

func checkLocalDomain(cfg *config.Config, domain string) error {
	for _, d := range cfg.Domains {
		if strings.EqualFold(d, domain) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is not in the configured domains (%s); add it to \"domains\" first",
		accounts.ErrNotLocal, domain, strings.Join(cfg.Domains, ", "))
}

func userExists(dataDir, addr string) (bool, error) {
	users, err := accounts.ListUsers(dataDir)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(users, func(u string) bool { return strings.EqualFold(u, addr) }), nil
}

// ensurePostmaster makes postmaster@DOMAIN deliver to the first user added on
// DOMAIN when nothing else answers for it: RFC 5321 §4.5.1 requires every
// mail domain to accept mail for its postmaster, and remote operators write
// there when our mail troubles them.
func (a *app) ensurePostmaster(cfg *config.Config, user string) error {
	_, domain, _ := strings.Cut(user, "@")
	pm := "postmaster@" + domain
	if strings.EqualFold(user, pm) {
		return nil
	}
	users, err := accounts.ListUsers(cfg.DataDir)
	if err != nil {
		return err
	}
	aliases, err := accounts.ListAliases(cfg.DataDir)
	if err != nil {
		return err
	}
	for _, u := range users {
		if strings.EqualFold(u, pm) {
			return nil
		}
	}
	for _, al := range aliases {
		if strings.EqualFold(al.Address, pm) {
			return nil
		}
	}
	if err := accounts.AddAliasWithDomains(cfg.DataDir, cfg.Domains, pm, []string{user}, false); err != nil {
		return fmt.Errorf("add %s: %w", pm, err)
	}
	fmt.Fprintf(a.stderr, "%s now delivers to %s (every domain needs a postmaster; change it with 'postyard alias')\n", pm, user)
	return nil
}
