package server

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/autoconfig"
	"github.com/postyard-mail/postyard/config"
	"github.com/postyard-mail/postyard/dnsmx"
	"github.com/postyard-mail/postyard/imap"
	"github.com/postyard-mail/postyard/maildir"
	"github.com/postyard-mail/postyard/pop3"
	"github.com/postyard-mail/postyard/smtp"
)

// Service is one protocol front end. The server calls Serve once per bound
// listener of the protocol (plain and implicit-TLS ones alike: a connection
// from an implicit-TLS listener is a *tls.Conn), and Shutdown once when the
// process stops.
type Service interface {
	// Serve accepts connections on l and returns when l is closed.
	Serve(l net.Listener) error
	// Shutdown stops accepting, lets sessions finish until ctx ends, then
	// closes them.
	Shutdown(ctx context.Context) error
}

// deps is everything a front-end constructor may take its options from.
type deps struct {
	cfg      *config.Config
	accounts *accounts.Directory
	store    *maildir.Store
	// tls serves the current certificate through GetCertificate, so a
	// SIGHUP reload reaches services that keep (or Clone) this config.
	tls    *tls.Config
	logger *slog.Logger
	// hooks lets a constructor run background work (a queue runner) for the
	// life of the process and react to SIGHUP.
	hooks *hooks
	// dns is the one DNS client of the process (with its cache), made by
	// resolver() on first use; constructors run one after the other.
	dns *dnsmx.Client
	// out is the delivery side (local delivery, queue, relay, DKIM keys),
	// made by outbound() on first use (outbound.go).
	out *outbound
}

// log returns the logger of one service.
func (d *deps) log(proto string) *slog.Logger { return d.logger.With("service", proto) }

// hooks collects what constructors register besides their Service.
type hooks struct {
	background []backgroundTask
	reload     []func()
}

type backgroundTask struct {
	name string
	run  func(ctx context.Context) error
}

// goBackground registers run to start once every listener is served; its ctx
// ends when shutdown begins and the drain waits for it to return.
func (h *hooks) goBackground(name string, run func(ctx context.Context) error) {
	h.background = append(h.background, backgroundTask{name, run})
}

// onReload registers f to be called on SIGHUP, after accounts, certificates
// and the log level were reloaded.
func (h *hooks) onReload(f func()) { h.reload = append(h.reload, f) }

// newServices builds one Service per protocol.
func newServices(d *deps) (map[string]Service, error) {
	ctors := []struct {
		proto string
		new   func(*deps) (Service, error)
	}{
		{protoSMTP, newSMTP},
		{protoSubmission, newSubmission},
		{protoIMAP, newIMAP},
		{protoPOP3, newPOP3},
		{protoAutoconfig, newAutoconfig},
	}
	out := make(map[string]Service, len(ctors))
	for _, c := range ctors {
		svc, err := c.new(d)
		if err != nil {
			return nil, err
		}
		out[c.proto] = svc
	}
	return out, nil
}

// The constructors below are one per protocol; each takes what its front
// end needs from deps.

// newSMTP builds the inbound MX service (smtp.listen).
func newSMTP(d *deps) (Service, error) {
	out, err := d.outbound()
	if err != nil {
		return nil, err
	}
	checker, err := d.mailChecker()
	if err != nil {
		return nil, err
	}
	return smtp.New(smtp.Options{Config: d.cfg.SMTP, Hostname: d.cfg.Hostname, Directory: d.accounts,
		Deliverer: out.router, TLSConfig: d.tls, Logger: d.log(protoSMTP), Checker: checker})
}

// newSubmission builds the authenticated submission service
// (submission.listen with STARTTLS, submission.tls_listen implicit TLS).
func newSubmission(d *deps) (Service, error) {
	out, err := d.outbound()
	if err != nil {
		return nil, err
	}
	return smtp.NewSubmission(smtp.SubmissionOptions{SMTP: d.cfg.SMTP, Submission: d.cfg.Submission,
		Security: d.cfg.Security, Hostname: d.cfg.Hostname, Directory: d.accounts, Accounts: d.accounts,
		Deliverer: out.router, Signer: out.keys, TLSConfig: d.tls, Logger: d.log(protoSubmission)})
}

// newIMAP builds the IMAP service (imap.listen, imap.tls_listen).
func newIMAP(d *deps) (Service, error) {
	return imap.New(imap.Options{Hostname: d.cfg.Hostname, IdleTimeout: d.cfg.IMAP.IdleTimeout.D(),
		MaxConnectionsPerUser: d.cfg.IMAP.MaxConnectionsPerUser, AllowPlaintextAuth: d.cfg.Security.AllowPlaintextAuth,
		MaxMessageSize: int64(d.cfg.SMTP.MaxMessageSize), MaxAuthFailures: d.cfg.Security.MaxAuthFailures,
		Accounts: d.accounts, Store: d.store, TLSConfig: d.tls, Logger: d.log(protoIMAP)})
}

// newPOP3 builds the POP3 service (pop3.listen, pop3.tls_listen).
func newPOP3(d *deps) (Service, error) {
	return pop3.New(pop3.Options{Hostname: d.cfg.Hostname, Config: d.cfg.POP3, Security: d.cfg.Security,
		Accounts: d.accounts, Store: d.store, TLS: d.tls, Logger: d.log(protoPOP3)})
}

// newAutoconfig builds the autoconfig/autodiscover HTTP service (autoconfig.listen).
func newAutoconfig(d *deps) (Service, error) {
	opts, err := autoconfig.OptionsFromConfig(d.cfg, d.log(protoAutoconfig))
	if err != nil {
		return nil, err
	}
	return autoconfig.New(opts)
}
