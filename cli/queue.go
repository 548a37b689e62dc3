package cli

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/postyard-mail/postyard/delivery/queue"
)

func newQueueCmd(a *app) *cobra.Command {
	cmd := makeGroup(&cobra.Command{
		Use:   "queue",
		Short: "Inspect and act on the outbound queue (data_dir/queue)",
		Long: `Inspect and act on the outbound queue. A running server notices retries and
deletions within two seconds.`,
	})
	open := func() (*queue.Queue, error) {
		cfg, _, err := a.loadConfig()
		if err != nil {
			return nil, err
		}
		return queue.Open(filepath.Join(cfg.DataDir, "queue"))
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List queued messages: ID, age, size, sender, pending recipients, next attempt",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(*cobra.Command, []string) error {
			q, err := open()
			if err != nil {
				return err
			}
			envs, errs := q.List()
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tAGE\tSIZE\tFROM\tPENDING\tNEXT ATTEMPT\tLAST ERROR")
			now := time.Now()
			for _, e := range envs {
				from := e.From
				if from == "" {
					from = "<>"
				}
				last := ""
				for _, r := range e.Recipients {
					if r.State == queue.StatePending && r.LastError != "" {
						last = r.LastError
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", e.ID, now.Sub(e.Created).Round(time.Second),
					e.Size, from, strings.Join(e.Pending(), ","), e.NextAttempt.Local().Format(time.DateTime), truncate(last, 60))
			}
			tw.Flush()
			fmt.Fprintf(a.stderr, "%d message%s queued\n", len(envs), plural(len(envs)))
			return errors.Join(errs...)
		},
	}
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one queued message: its envelope, each recipient's state, and the message",
		Args:  exactArgs(1, "ID"),
		RunE: func(_ *cobra.Command, args []string) error {
			q, err := open()
			if err != nil {
				return err
			}
			e, err := q.Get(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "ID: %s\nFrom: <%s>\nUser: %s\nCreated: %s\nAttempts: %d\nNext-Attempt: %s\nSize: %d\n",
				e.ID, e.From, e.User, e.Created.Format(time.RFC3339), e.Attempts, e.NextAttempt.Format(time.RFC3339), e.Size)
			for _, r := range e.Recipients {
				fmt.Fprintf(a.stdout, "Recipient: <%s> %s", r.Addr, r.State)
				if r.LastError != "" {
					fmt.Fprintf(a.stdout, " (%s)", r.LastError)
				}
				fmt.Fprintln(a.stdout)
			}
			fmt.Fprintln(a.stdout)
			f, err := q.OpenMessage(e.ID)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(a.stdout, f)
			return err
		},
	}
	var all bool
	retry := &cobra.Command{
		Use:   "retry ID|--all",
		Short: "Try a queued message (or every one) again now",
		Args: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) { // exactly one of them
				return usageErrorf("queue retry: takes an ID or --all")
			}
			if len(args) > 1 {
				return usageErrorf("queue retry: takes one ID")
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			q, err := open()
			if err != nil {
				return err
			}
			ids := args
			if all {
				envs, errs := q.List()
				if len(errs) > 0 {
					return errors.Join(errs...)
				}
				ids = nil
				for _, e := range envs {
					ids = append(ids, e.ID)
				}
			}
			for _, id := range ids {
				if err := q.Retry(id, time.Now()); err != nil {
					return err
				}
			}
			fmt.Fprintf(a.stderr, "%d message%s due now\n", len(ids), plural(len(ids)))
			return nil
		},
	}
	retry.Flags().BoolVar(&all, "all", false, "retry every queued message")
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Remove a queued message without delivering it (no bounce is sent)",
		Args:  exactArgs(1, "ID"),
		RunE: func(_ *cobra.Command, args []string) error {
			q, err := open()
			if err != nil {
				return err
			}
			return q.Delete(args[0])
		},
	}
	cmd.AddCommand(list, show, retry, del)
	return cmd
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
