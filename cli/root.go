// Package cli is the postyard command line (cobra): serve, config, user,
// alias, version, and the verbs later packages add (dkim, dns, queue).
//
// Exit codes: 0 success; 1 failure, with a one-line reason on stderr
// ("postyard: ..."; config problems one a line as "FILE:LINE: key:
// problem"); 2 usage error (unknown verb or flag, wrong argument count).
//
// Adding a verb: write cli/VERB.go with `func newVERBCmd(a *app)
// *cobra.Command` and add one line to the list in newRootCmd. Use
// a.loadConfig for the configuration, usageErrorf for bad arguments, and
// return other errors (they exit 1).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/postyard-mail/postyard/config"
)

// defaultConfigPath is read when --config is not given and it exists.
const defaultConfigPath = "postyard.toml"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// app is what every command shares: the streams and the global flags.
// Nothing here is package-level state, so tests run commands in parallel.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// readPassword prompts on the terminal without echo; nil when stdin is
	// not a terminal.
	readPassword func(prompt string) (string, error)

	configPath string // --config
}

// Execute runs the command line of this process and returns its exit code.
func Execute() int {
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
		a.readPassword = func(prompt string) (string, error) {
			fmt.Fprint(os.Stderr, prompt)
			b, err := term.ReadPassword(fd)
			fmt.Fprintln(os.Stderr)
			return string(b), err
		}
	}
	return a.run(context.Background(), os.Args[1:])
}

// run executes args and maps the outcome to an exit code. Cancelling ctx
// stops "serve" as SIGTERM does.
func (a *app) run(ctx context.Context, args []string) int {
	root := newRootCmd(a)
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var ue *usageError
	var ce config.Errors
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(a.stderr, "postyard: %v\nRun '%s --help' for usage.\n", ue.err, cmd.CommandPath())
		return exitUsage
	case errors.As(err, &ce):
		for _, e := range ce {
			fmt.Fprintln(a.stderr, e.Error())
		}
		return exitFailure
	default:
		// One line: a wrapped error keeps its context, newlines would not.
		fmt.Fprintf(a.stderr, "postyard: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		return exitFailure
	}
}

// newRootCmd builds the whole command tree.
func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "postyard",
		Short: "A mail server: SMTP, submission, IMAP and POP3 over one Maildir tree",
		Long: `Postyard is a single-binary mail server: SMTP in, submission, relay, IMAP
and POP3 over one Maildir tree.

Without --config it reads ./postyard.toml if that exists, else it uses the
built-in defaults (127.0.0.1, ports 2525/2587/2465/2143/2993/2110/2995, data
in ./data, domain "localhost"). See config.example.toml for every key.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	// A group of verbs runs only to report a usage error: its help shows
	// "postyard user [command]", not "postyard user [flags]".
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(),
		"Usage:{{if .Runnable}}", "Usage:{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))
	root.PersistentFlags().StringVar(&a.configPath, "config", "",
		"config `FILE` (default ./postyard.toml if it exists, else the built-in defaults)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	makeGroup(root)

	// The verbs, one constructor each (one file each in cli/).
	root.AddCommand(
		newServeCmd(a),
		newConfigCmd(a),
		newUserCmd(a),
		newAliasCmd(a),
		newVersionCmd(a),
		newDKIMCmd(a),
		newQueueCmd(a),
		newDNSCmd(a),
	)
	return root
}

// makeGroup makes cmd a command that only holds verbs: run alone or with an
// unknown verb it is a usage error (cobra would print help and exit 0).
func makeGroup(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var verbs []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				verbs = append(verbs, c.Name())
			}
		}
		if len(args) == 0 {
			return usageErrorf("%smissing command (one of: %s)", prefix(cmd), strings.Join(verbs, ", "))
		}
		msg := fmt.Sprintf("%sunknown command %q", prefix(cmd), args[0])
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
		} else {
			msg += fmt.Sprintf(" (one of: %s)", strings.Join(verbs, ", "))
		}
		return usageErrorf("%s", msg)
	}
	return cmd
}

// prefix is "user add: " for the command "postyard user add", "" for the
// root: messages already start with "postyard: ".
func prefix(cmd *cobra.Command) string {
	if !cmd.HasParent() {
		return ""
	}
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ") + ": "
}

// usageError is a command line the commands cannot run: exit 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// exactArgs requires n arguments, named in names for the message.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("%stakes %s, got %d argument%s", prefix(cmd), names, len(args), plural(len(args)))
		}
		return nil
	}
}

// minArgs requires at least n arguments.
func minArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usageErrorf("%stakes %s, got %d argument%s", prefix(cmd), names, len(args), plural(len(args)))
		}
		return nil
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// loadConfig returns the configuration and the path it came from ("" for
// the built-in defaults): --config if given, else ./postyard.toml if it
// exists, else the defaults.
func (a *app) loadConfig() (*config.Config, string, error) {
	path := a.configPath
	if path == "" {
		if _, err := os.Stat(defaultConfigPath); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return config.Default(), "", nil
			}
			return nil, "", fmt.Errorf("config: %w", err)
		}
		path = defaultConfigPath
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, "", err
	}
	return cfg, path, nil
}
