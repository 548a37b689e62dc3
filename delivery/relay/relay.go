// Package relay delivers the outbound queue to the world: recipients grouped
// by domain, MX hosts in order of preference (RFC 5321 §5.1) and every
// address of each, opportunistic STARTTLS (RFC 7435), retries on the
// configured back-off, and a delivery status notification (RFC 3464) to the
// sender when a recipient fails for good.
//
// Failure handling, per recipient:
//   - 2xx after the data: delivered, removed from the entry.
//   - 5xx to RCPT or to the data, a null MX (RFC 7505, 5.1.10), a domain that
//     does not exist: failed at once; a DSN goes to the sender.
//   - 4xx, connection failures, DNS timeouts: deferred to the next retry
//     time; past max_lifetime, failed with 4.4.7 and a DSN.
//
// Never a DSN for a message from the null sender (RFC 5321 §6.1: no bounce
// loops).
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postyard-mail/postyard/delivery/queue"
	"github.com/postyard-mail/postyard/dnsmx"
)

// Dialer opens TCP connections; tests replace it.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Clock is the relay's time; tests drive it by hand.
type Clock interface {
	Now() time.Time
	// After is like time.After.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// LocalDeliverer hands a DSN to a local sender's INBOX. It returns false
// when addr is not local (the DSN is then queued for the relay).
type LocalDeliverer func(ctx context.Context, addr string, msg []byte) (bool, error)

// Options configures a Relay.
type Options struct {
	Queue    *queue.Queue
	Resolver dnsmx.Resolver
	Hostname string // EHLO name and DSN reporting MTA
	// Port of remote MX hosts: 25, except in tests.
	Port int
	// Smarthost, when set ("host:port"), receives all mail instead of the MX.
	Smarthost         string
	SmarthostUser     string
	SmarthostPassword string
	Retry             []time.Duration
	MaxLifetime       time.Duration
	// PerDomain bounds parallel deliveries to one destination domain.
	PerDomain int
	// Workers bounds deliveries in flight altogether.
	Workers int
	// ConnectTimeout bounds dialing one address; CommandTimeout each reply.
	ConnectTimeout time.Duration
	CommandTimeout time.Duration
	Dialer         Dialer
	Clock          Clock
	// TLS is the client config for STARTTLS. Default: opportunistic, not
	// verified (RFC 7435; certificates of MX hosts are not checked by
	// default by any major MTA).
	TLS    *tls.Config
	Local  LocalDeliverer
	Logger *slog.Logger
}

// Relay runs the queue.
type Relay struct {
	opt  Options
	log  *slog.Logger
	pool *pool

	mu       sync.Mutex
	inFlight map[string]bool
	domains  map[string]chan struct{} // per-domain semaphores
	workers  chan struct{}
	wg       sync.WaitGroup
}

// New checks opts and fills defaults.
func New(opts Options) (*Relay, error) {
	if opts.Queue == nil || (opts.Resolver == nil && opts.Smarthost == "") {
		return nil, errors.New("relay: a queue and a resolver are required")
	}
	if opts.Port == 0 {
		opts.Port = 25
	}
	if len(opts.Retry) == 0 {
		opts.Retry = []time.Duration{5 * time.Minute, 15 * time.Minute, time.Hour, 4 * time.Hour}
	}
	if opts.MaxLifetime == 0 {
		opts.MaxLifetime = 5 * 24 * time.Hour
	}
	if opts.PerDomain <= 0 {
		opts.PerDomain = 10
	}
	if opts.Workers <= 0 {
		opts.Workers = 100
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 30 * time.Second
	}
	if opts.CommandTimeout == 0 {
		opts.CommandTimeout = 5 * time.Minute
	}
	if opts.Dialer == nil {
		opts.Dialer = &net.Dialer{}
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.TLS == nil {
		opts.TLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // opportunistic TLS, RFC 7435
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{
		opt:      opts,
		log:      opts.Logger.With("service", "relay"),
		pool:     newPool(),
		inFlight: make(map[string]bool),
		domains:  make(map[string]chan struct{}),
		workers:  make(chan struct{}, opts.Workers),
	}, nil
}

// rescanEvery bounds how late the relay notices entries changed by another
// process (the CLI's queue retry) when nothing else wakes it.
const rescanEvery = 2 * time.Second

// Run delivers due entries until ctx ends, then waits for deliveries in
// flight (they stop at ctx's end too). Entries enqueued by this process are
// started as soon as they are committed (Queue.TakeFresh), without
// rereading the queue; the whole queue is scanned for due retries and for
// changes made by other processes at least every rescanEvery.
func (r *Relay) Run(ctx context.Context) error {
	defer r.wg.Wait()
	defer r.pool.closeAll()
	next := r.RunDue(ctx)
	lastScan := r.opt.Clock.Now()
	for {
		now := r.opt.Clock.Now()
		wait := rescanEvery - now.Sub(lastScan)
		if !next.IsZero() {
			wait = min(wait, next.Sub(now))
		}
		wait = max(wait, 10*time.Millisecond)
		select {
		case <-ctx.Done():
			return nil
		case <-r.opt.Queue.Notify():
			if ids := r.opt.Queue.TakeFresh(); len(ids) > 0 {
				for _, id := range ids {
					if !r.start(ctx, id) {
						return nil
					}
				}
				continue
			}
			// A wake without fresh entries (a Retry): scan.
		case <-r.opt.Clock.After(wait):
		}
		next = r.RunDue(ctx)
		lastScan = r.opt.Clock.Now()
	}
}

// RunDue starts a delivery for every entry that is due and not in flight and
// returns the earliest later attempt time (zero when none).
func (r *Relay) RunDue(ctx context.Context) time.Time {
	envs, errs := r.opt.Queue.List()
	for _, err := range errs {
		r.log.Error("queue entry unreadable", "err", err)
	}
	now := r.opt.Clock.Now()
	var next time.Time
	for _, env := range envs {
		if env.NextAttempt.After(now) {
			if next.IsZero() || env.NextAttempt.Before(next) {
				next = env.NextAttempt
			}
			continue
		}
		if !r.start(ctx, env.ID) {
			return next
		}
	}
	return next
}

// start begins a delivery attempt of entry id unless one is in flight,
// waiting for a free worker; false when ctx ended first.
func (r *Relay) start(ctx context.Context, id string) bool {
	r.mu.Lock()
	busy := r.inFlight[id]
	if !busy {
		r.inFlight[id] = true
	}
	r.mu.Unlock()
	if busy {
		return true
	}
	select {
	case r.workers <- struct{}{}:
	case <-ctx.Done():
		r.done(id)
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() { <-r.workers }()
		defer r.done(id)
		if err := r.Attempt(ctx, id); err != nil && !errors.Is(err, queue.ErrNotFound) {
			r.log.Error("delivery attempt", "id", id, "err", err)
		}
	}()
	return true
}

// Wait blocks until every delivery started by RunDue has finished.
func (r *Relay) Wait() { r.wg.Wait() }

func (r *Relay) done(id string) {
	r.mu.Lock()
	delete(r.inFlight, id)
	r.mu.Unlock()
}

// outcome is what one attempt made of one recipient.
type outcome struct {
	state     string // queue.StateDelivered, StateFailed, or StatePending (deferred)
	code      string // "550 5.1.1"
	text      string
	remoteMTA string
}

// Attempt tries every pending recipient of one entry once and records the
// results.
func (r *Relay) Attempt(ctx context.Context, id string) error {
	env, f, err := r.opt.Queue.Load(id)
	if err != nil {
		return err
	}
	defer f.Close()

	byDomain := make(map[string][]string)
	var order []string
	for _, rc := range env.Pending() {
		d := domainOf(rc)
		if _, ok := byDomain[d]; !ok {
			order = append(order, d)
		}
		byDomain[d] = append(byDomain[d], rc)
	}
	results := make(map[string]outcome)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, d := range order {
		wg.Add(1)
		go func(domain string, rcpts []string) {
			defer wg.Done()
			res := r.deliverDomain(ctx, env, domain, rcpts, f)
			mu.Lock()
			for k, v := range res {
				results[k] = v
			}
			mu.Unlock()
		}(d, byDomain[d])
	}
	wg.Wait()
	return r.record(ctx, env, results, f)
}

// record stores the results of an attempt and sends a DSN for new failures.
func (r *Relay) record(ctx context.Context, env *queue.Envelope, results map[string]outcome, msg io.ReaderAt) error {
	now := r.opt.Clock.Now()
	expired := now.Sub(env.Created) >= r.opt.MaxLifetime
	var failed []queue.Recipient
	var delivered, deferred int
	apply := func(e *queue.Envelope) {
		failed, delivered, deferred = nil, 0, 0
		e.Attempts++
		for i := range e.Recipients {
			rc := &e.Recipients[i]
			o, ok := results[rc.Addr]
			if !ok || rc.State != queue.StatePending {
				continue
			}
			rc.Code, rc.LastError, rc.RemoteMTA = o.code, o.text, o.remoteMTA
			switch {
			case o.state == queue.StateDelivered:
				rc.State = queue.StateDelivered
				delivered++
			case o.state == queue.StateFailed:
				rc.State = queue.StateFailed
				failed = append(failed, *rc)
			case expired:
				rc.State = queue.StateFailed
				rc.LastError = "message expired after " + r.opt.MaxLifetime.String() + "; last error: " + rc.LastError
				if !strings.HasPrefix(rc.Code, "5") {
					rc.Code = "421 4.4.7"
				}
				failed = append(failed, *rc)
			default:
				deferred++
			}
		}
		step := min(e.Attempts-1, len(r.opt.Retry)-1)
		e.NextAttempt = now.Add(r.opt.Retry[max(step, 0)])
	}
	if allDelivered(env, results) {
		// The common case: nothing left to record but the removal.
		if err := r.opt.Queue.Finish(env); err != nil {
			return err
		}
		r.log.Info("delivery attempt", "id", env.ID, "from", env.From, "delivered", len(env.Pending()),
			"failed", 0, "deferred", 0, "attempt", env.Attempts+1)
		return nil
	}
	// The DSN goes out before the entry is updated or removed: a crash in
	// between sends it twice rather than never. Only an attempt that can
	// fail a recipient needs this first look at the entry as stored.
	probe := env
	if mayFail(results, expired) {
		var err error
		if probe, err = r.opt.Queue.Get(env.ID); err != nil {
			return err
		}
		apply(probe)
		if len(failed) > 0 && env.From != "" {
			if err := r.bounce(ctx, probe, failed, msg); err != nil {
				return fmt.Errorf("bounce for %s: %w", env.ID, err)
			}
		}
	}
	probe, err := r.opt.Queue.Update(env.ID, apply)
	if err != nil {
		return err
	}
	r.log.Info("delivery attempt", "id", env.ID, "from", env.From, "delivered", delivered,
		"failed", len(failed), "deferred", deferred, "attempt", probe.Attempts)
	for _, f := range failed {
		r.log.Warn("recipient failed", "id", env.ID, "rcpt", f.Addr, "code", f.Code, "err", f.LastError)
	}
	return nil
}

// allDelivered reports whether the attempt delivered every pending
// recipient of env.
func allDelivered(env *queue.Envelope, results map[string]outcome) bool {
	for _, rc := range env.Recipients {
		if rc.State != queue.StatePending {
			continue
		}
		if o, ok := results[rc.Addr]; !ok || o.state != queue.StateDelivered {
			return false
		}
	}
	return true
}

// mayFail reports whether recording results can fail a recipient.
func mayFail(results map[string]outcome, expired bool) bool {
	if expired {
		return true
	}
	for _, o := range results {
		if o.state == queue.StateFailed {
			return true
		}
	}
	return false
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// target is one address to try, with the host name it came from.
type target struct {
	host string
	addr string // "ip:port" or "host:port" for a smarthost
}

// deliverDomain delivers rcpts (all of one domain) and returns an outcome
// for each.
func (r *Relay) deliverDomain(ctx context.Context, env *queue.Envelope, domain string, rcpts []string, msg io.ReaderAt) map[string]outcome {
	sem := r.domainSem(domain)
	select {
	case sem <- struct{}{}:
		defer func() { <-sem }()
	case <-ctx.Done():
		return allOf(rcpts, outcome{state: queue.StatePending, code: "451 4.4.0", text: "shutting down"})
	}

	targets, o := r.targets(ctx, domain)
	if o != nil {
		return allOf(rcpts, *o)
	}
	last := outcome{state: queue.StatePending, code: "451 4.4.1", text: "no answer from any mail server of " + domain}
	for _, t := range targets {
		res, err := r.deliverTo(ctx, t, env, rcpts, msg)
		if err == nil {
			return res
		}
		var re *replyError
		if errors.As(err, &re) && re.Permanent() && re.Stage != "greeting" && re.Stage != "EHLO" {
			// MAIL or DATA refused for good: no other MX will think otherwise.
			return allOf(rcpts, outcome{state: queue.StateFailed, code: codeOf(re.Reply), text: re.Error(), remoteMTA: t.host})
		}
		last = outcome{state: queue.StatePending, code: "451 4.4.1", text: fmt.Sprintf("%s (%s): %v", t.host, t.addr, err), remoteMTA: t.host}
		r.log.Info("relay target failed, trying the next", "id", env.ID, "host", t.host, "addr", t.addr, "err", err)
		if ctx.Err() != nil {
			break
		}
	}
	return allOf(rcpts, last)
}

func allOf(rcpts []string, o outcome) map[string]outcome {
	m := make(map[string]outcome, len(rcpts))
	for _, rc := range rcpts {
		m[rc] = o
	}
	return m
}

func (r *Relay) domainSem(domain string) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.domains[domain]
	if !ok {
		s = make(chan struct{}, r.opt.PerDomain)
		r.domains[domain] = s
	}
	return s
}

// targets lists the addresses to try for domain, or the outcome for all its
// recipients when DNS says there is none.
func (r *Relay) targets(ctx context.Context, domain string) ([]target, *outcome) {
	if r.opt.Smarthost != "" {
		host, _, _ := net.SplitHostPort(r.opt.Smarthost)
		return []target{{host: host, addr: r.opt.Smarthost}}, nil
	}
	mxs, err := r.opt.Resolver.LookupMX(ctx, domain)
	if err != nil {
		return nil, dnsOutcome(domain, err)
	}
	port := strconv.Itoa(r.opt.Port)
	var out []target
	var lastErr error
	for _, mx := range mxs {
		addrs, err := r.opt.Resolver.LookupAddrs(ctx, mx.Host)
		if err != nil {
			lastErr = err
			continue
		}
		for _, a := range addrs {
			if !usableAddr(a) {
				continue
			}
			out = append(out, target{host: mx.Host, addr: net.JoinHostPort(a.String(), port)})
		}
	}
	if len(out) == 0 {
		if lastErr != nil && dnsmx.IsTemporary(lastErr) {
			return nil, dnsOutcome(domain, lastErr)
		}
		return nil, &outcome{state: queue.StateFailed, code: "550 5.4.4", text: "no usable address for the mail servers of " + domain}
	}
	return out, nil
}

// usableAddr refuses addresses a mail server of the Internet cannot have.
// Loopback is allowed: tests and the benchmark's MX live there.
func usableAddr(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast()
}

func dnsOutcome(domain string, err error) *outcome {
	switch {
	case errors.Is(err, dnsmx.ErrNullMX):
		return &outcome{state: queue.StateFailed, code: "550 5.1.10", text: domain + " accepts no mail (null MX)"}
	case dnsmx.IsTemporary(err):
		return &outcome{state: queue.StatePending, code: "451 4.4.3", text: "DNS: " + err.Error()}
	default:
		return &outcome{state: queue.StateFailed, code: "550 5.1.2", text: "DNS: " + err.Error()}
	}
}

func codeOf(rep Reply) string {
	code := strconv.Itoa(rep.Code)
	if f := strings.Fields(rep.Text); len(f) > 0 && isEnhanced(f[0]) {
		code += " " + f[0]
	}
	return code
}

func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if _, err := strconv.Atoi(p); err != nil {
			return false
		}
	}
	return true
}

// deliverTo runs one transaction against one address, reusing a cached
// connection when there is one. A nil error means every recipient has an
// answer in the result.
func (r *Relay) deliverTo(ctx context.Context, t target, env *queue.Envelope, rcpts []string, msg io.ReaderAt) (map[string]outcome, error) {
	c, err := r.pool.get(t.addr)
	if err != nil || c == nil {
		c, err = r.dial(ctx, t)
		if err != nil {
			return nil, err
		}
	}
	release := c.stopOn(ctx)
	replies, err := c.send(env.From, rcpts, env.Size, io.NewSectionReader(msg, 0, env.Size))
	release()
	if errors.Is(err, errStale) {
		// The remote closed the cached connection meanwhile: nothing was
		// sent yet, so a fresh connection tries again.
		c.conn.Close()
		if c, err = r.dial(ctx, t); err != nil {
			return nil, err
		}
		release = c.stopOn(ctx)
		replies, err = c.send(env.From, rcpts, env.Size, io.NewSectionReader(msg, 0, env.Size))
		release()
	}
	if err != nil {
		var re *replyError
		if errors.As(err, &re) && re.Stage == "MAIL" {
			r.pool.put(t.addr, c)
		} else {
			c.conn.Close()
		}
		return nil, err
	}
	r.pool.put(t.addr, c)
	out := make(map[string]outcome, len(rcpts))
	for i, rc := range rcpts {
		rep := replies[i]
		o := outcome{code: codeOf(rep), text: rep.String(), remoteMTA: t.host}
		switch {
		case rep.OK():
			o.state = queue.StateDelivered
		case rep.Permanent():
			o.state = queue.StateFailed
		default:
			o.state = queue.StatePending
		}
		out[rc] = o
	}
	return out, nil
}

func (r *Relay) dial(ctx context.Context, t target) (*client, error) {
	dctx, cancel := context.WithTimeout(ctx, r.opt.ConnectTimeout)
	defer cancel()
	conn, err := r.opt.Dialer.DialContext(dctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	hctx, cancel2 := context.WithTimeout(ctx, r.opt.CommandTimeout)
	defer cancel2()
	c, err := newClient(hctx, conn, t.host, r.opt.Hostname, r.opt.TLS, r.opt.CommandTimeout)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if r.opt.Smarthost != "" && r.opt.SmarthostUser != "" {
		if err := c.auth(r.opt.SmarthostUser, r.opt.SmarthostPassword); err != nil {
			c.quit()
			return nil, err
		}
	}
	return c, nil
}

// pool keeps idle connections per address for reuse by the next message to
// the same place (Postfix's connection cache, always on here).
type pool struct {
	mu   sync.Mutex
	idle map[string][]*client
}

const (
	poolMaxIdle      = 10 * time.Second
	poolMaxUses      = 100
	poolMaxPerTarget = 20
)

func newPool() *pool { return &pool{idle: make(map[string][]*client)} }

func (p *pool) get(addr string) (*client, error) {
	for {
		p.mu.Lock()
		list := p.idle[addr]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil, nil
		}
		c := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		p.mu.Unlock()
		if time.Since(c.lastUsed) > poolMaxIdle {
			c.quit()
			continue
		}
		c.reused = true // send begins with RSET
		return c, nil
	}
}

func (p *pool) put(addr string, c *client) {
	if c.stopped.Load() { // shutting down: the connection is unusable
		_ = c.conn.Close()
		return
	}
	if c.used >= poolMaxUses {
		go c.quit()
		return
	}
	c.lastUsed = time.Now()
	p.mu.Lock()
	if len(p.idle[addr]) >= poolMaxPerTarget {
		p.mu.Unlock()
		go c.quit()
		return
	}
	p.idle[addr] = append(p.idle[addr], c)
	p.mu.Unlock()
	time.AfterFunc(poolMaxIdle, func() { p.expire(addr, c) })
}

// expire closes c if it is still idle in the pool.
func (p *pool) expire(addr string, c *client) {
	p.mu.Lock()
	list := p.idle[addr]
	i := slices.Index(list, c)
	if i < 0 || time.Since(c.lastUsed) < poolMaxIdle {
		p.mu.Unlock()
		return
	}
	p.idle[addr] = slices.Delete(list, i, i+1)
	p.mu.Unlock()
	c.quit()
}

func (p *pool) closeAll() {
	p.mu.Lock()
	all := p.idle
	p.idle = make(map[string][]*client)
	p.mu.Unlock()
	for _, list := range all {
		for _, c := range list {
			c.quit()
		}
	}
}

// readAll reads a queued message for a DSN.
func readAll(msg io.ReaderAt, limit int64) []byte {
	b, _ := io.ReadAll(io.NewSectionReader(msg, 0, limit))
	return b
}
