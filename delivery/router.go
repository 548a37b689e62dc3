package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/delivery/queue"
)

// Router delivers one message to its local recipients through Local and
// queues it for its outside ones (Envelope.Remote) in the outbound queue,
// as one transaction: the queued copy is prepared (written and fsynced, not
// yet visible to the relay), the local copies are made, and only then is the
// queue entry committed. If a local copy fails, the queue entry is aborted,
// so the client's retry after our 451 duplicates nothing. Safe for
// concurrent use.
type Router struct {
	local  *Local
	queue  *queue.Queue
	now    func() time.Time
	logger *slog.Logger
}

// NewRouter returns a Router over local and q (q nil: no outside recipients).
func NewRouter(local *Local, q *queue.Queue, logger *slog.Logger) *Router {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Router{local: local, queue: q, now: time.Now, logger: logger}
}

// NewSpool returns an empty spool for one message (Local.NewSpool).
func (r *Router) NewSpool() *Spool { return r.local.NewSpool() }

// QueuesRemote reports whether outside recipients can be accepted.
func (r *Router) QueuesRemote() bool { return r.queue != nil }

// Deliver makes every local copy and the queue entry durable, or none of
// them (see Router). It sets env.QueueID when it queued the message. The
// queued copy starts with the Received field of env (no Return-Path: the
// final MTA adds it), then env.Header, then the message.
func (r *Router) Deliver(ctx context.Context, env *Envelope, body *Spool) error {
	if len(env.Remote) == 0 {
		return r.local.Deliver(ctx, env, body)
	}
	if r.queue == nil {
		return errors.New("delivery: no outbound queue for outside recipients")
	}
	if err := body.Err(); err != nil {
		return err
	}
	qe := queue.Envelope{From: env.From, User: env.User}
	for _, a := range env.Remote {
		qe.Recipients = append(qe.Recipients, queue.Recipient{Addr: a})
	}
	out := *env
	out.Recipients = make([]Recipient, len(env.Remote))
	for i, a := range env.Remote {
		out.Recipients[i] = Recipient{Address: a}
	}
	p, err := r.queue.Prepare(qe, io.MultiReader(
		strings.NewReader(receivedField(&out)), strings.NewReader(env.Header), body.NewReader()), r.now())
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	local := *env
	local.Remote = nil
	if len(local.Recipients) > 0 {
		if err := r.local.Deliver(ctx, &local, body); err != nil {
			p.Abort()
			return err
		}
	}
	if _, err := p.Commit(); err != nil {
		if len(local.Recipients) > 0 {
			r.logger.Error("queueing failed after the local copies were made; the client's retry will duplicate them",
				"id", env.ID, "queue_id", p.ID(), "err", err)
		}
		return fmt.Errorf("queue: %w", err)
	}
	env.QueueID = p.ID()
	r.logger.Debug("queued", "id", env.ID, "queue_id", p.ID(), "from", env.From, "rcpts", len(env.Remote), "user", env.User)
	return nil
}

// receivedField is the Received field of TraceHeaders, without the
// Return-Path line before it.
func receivedField(env *Envelope) string {
	h := TraceHeaders(env)
	if rest, ok := strings.CutPrefix(h, "Return-Path: "); ok {
		if i := strings.Index(rest, "\r\n"); i >= 0 {
			return rest[i+2:]
		}
	}
	return h
}

// Directory is what DSN delivery needs from the accounts (*accounts.Directory).
type Directory interface {
	IsLocalDomain(domain string) bool
	Resolve(addr string) (accounts.Resolution, error)
}

// LocalDSN returns the relay's LocalDeliverer: a delivery status
// notification for a sender of ours goes straight into their INBOX (from the
// null sender, with a Received field naming hostname). It returns false for
// an outside sender (the relay then queues the DSN) and for a local alias
// that only forwards outside. A DSN for a local address that no longer
// exists is dropped with a log line: there is nobody to tell.
func (r *Router) LocalDSN(dir Directory, hostname string) func(ctx context.Context, addr string, msg []byte) (bool, error) {
	return func(ctx context.Context, addr string, msg []byte) (bool, error) {
		i := strings.LastIndexByte(addr, '@')
		if i < 0 || !dir.IsLocalDomain(addr[i+1:]) {
			return false, nil
		}
		res, err := dir.Resolve(addr)
		switch {
		case errors.Is(err, accounts.ErrNoSuchUser), errors.Is(err, accounts.ErrBadAddress):
			r.logger.Warn("DSN for an unknown local sender dropped", "rcpt", addr, "err", err)
			return true, nil
		case err != nil:
			return false, err
		}
		if len(res.Local) == 0 {
			return false, nil
		}
		env := &Envelope{ID: "dsn", Trace: Trace{By: hostname, Time: r.now()}}
		for _, u := range res.Local {
			env.Recipients = append(env.Recipients, Recipient{Address: addr, User: u})
		}
		sp := r.local.NewSpool()
		defer sp.Close()
		if _, err := sp.Write(msg); err != nil {
			return false, err
		}
		if err := r.local.Deliver(ctx, env, sp); err != nil {
			return false, fmt.Errorf("DSN into %s: %w", addr, err)
		}
		r.logger.Info("DSN delivered", "rcpt", addr, "users", len(res.Local))
		return true, nil
	}
}
