// Package server builds Postyard from its configuration and runs it: it owns
// the data directory's top level, the listeners, the TLS certificate, the
// signals and the graceful shutdown.
//
// Lifecycle:
//   - start: logger, data_dir (0700) with mail/ and queue/, the certificate,
//     every listener bound (a conflict is an error naming the key and the
//     address, before anything is served), accounts and the store, one
//     Service per protocol (services.go), then one Serve per listener and a
//     "postyard started" log line listing them with the start-up time;
//   - SIGHUP: accounts and aliases, the certificate and the log level are
//     reloaded; open connections are kept, new TLS handshakes see the new
//     certificate; a failed reload logs the error and keeps the old state;
//   - SIGTERM/SIGINT (or the context ending): listeners close, every
//     Service's Shutdown gets drainTimeout to let sessions finish, background
//     work is cancelled, the store is closed, and Run returns nil.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/config"
	"github.com/postyard-mail/postyard/maildir"
)

const (
	// drainTimeout bounds how long sessions may finish after SIGTERM.
	drainTimeout = 10 * time.Second
	// stragglerTimeout is how long Run waits past the drain for services
	// that ignore their deadline before it returns anyway.
	stragglerTimeout = 2 * time.Second
)

// Run serves cfg until SIGTERM or SIGINT (or until ctx ends) and returns nil
// after a clean shutdown. SIGHUP reloads accounts, certificates and the log
// level (re-read from configPath; "" means the embedded defaults, whose
// level does not change). Logs go to stderr.
func Run(ctx context.Context, cfg *config.Config, configPath string) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	return run(ctx, options{cfg: cfg, configPath: configPath, logOut: os.Stderr, signals: sigs, loadConfig: config.Load})
}

// options are Run's inputs, replaceable in tests.
type options struct {
	cfg        *config.Config
	configPath string
	logOut     io.Writer
	signals    <-chan os.Signal
	loadConfig func(path string) (*config.Config, error)
	// started, if set, is called with the server once every listener is served.
	started func(*server)
}

// server is one running Postyard process.
type server struct {
	opts      options
	cfg       *config.Config
	level     *slog.LevelVar
	logger    *slog.Logger
	certs     *certHolder
	tlsConfig *tls.Config
	dir       *accounts.Directory
	store     *maildir.Store
	listeners []*boundListener
	services  map[string]Service
	hooks     hooks
}

func run(ctx context.Context, opts options) (err error) {
	start := time.Now()
	s := &server{opts: opts, cfg: opts.cfg, level: new(slog.LevelVar)}
	cfg := s.cfg
	lvl, err := parseLevel(cfg.Log.Level)
	if err != nil {
		return err
	}
	s.level.Set(lvl)
	if s.logger, err = newLogger(opts.logOut, cfg.Log.Format, s.level); err != nil {
		return err
	}
	if cfg.DataDir == "" {
		return errors.New("data_dir: must not be empty")
	}
	for _, dir := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, "mail"), filepath.Join(cfg.DataDir, "queue")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("data_dir: %w", err)
		}
	}
	// An existing data_dir keeps its mode (the admin chose it), but one that
	// others can enter exposes password hashes and mail: say so.
	if fi, err := os.Stat(cfg.DataDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		s.logger.Warn("data_dir is accessible to other users; chmod 700 it", "data_dir", cfg.DataDir, "mode", fi.Mode().Perm().String())
	}
	if s.certs, err = newCertHolder(cfg, s.logger); err != nil {
		return err
	}
	s.tlsConfig = &tls.Config{GetCertificate: s.certs.GetCertificate, MinVersion: tls.VersionTLS12}
	if s.listeners, err = bindAll(ctx, cfg, s.tlsConfig); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			closeListeners(s.listeners)
		}
	}()
	if s.dir, err = accounts.Open(cfg.DataDir, cfg.Domains, s.logger.With("component", "accounts")); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	if s.store, err = maildir.New(filepath.Join(cfg.DataDir, "mail"), s.logger.With("component", "maildir")); err != nil {
		return fmt.Errorf("mail store: %w", err)
	}
	defer func() {
		if cerr := s.store.Close(); cerr != nil {
			s.logger.Error("closing the mail store", "err", cerr)
		}
	}()
	d := &deps{cfg: cfg, accounts: s.dir, store: s.store, tls: s.tlsConfig, logger: s.logger, hooks: &s.hooks}
	if s.services, err = newServices(d); err != nil {
		return err
	}
	return s.serve(ctx, start)
}

// serveResult is what a Serve goroutine reports when it returns.
type serveResult struct {
	b   *boundListener
	err error
}

func (s *server) serve(ctx context.Context, start time.Time) error {
	results := make(chan serveResult, len(s.listeners))
	for _, b := range s.listeners {
		svc := s.services[b.proto]
		go func() { results <- serveResult{b, svc.Serve(b.l)} }()
	}
	bgCtx, bgCancel := context.WithCancel(context.Background())
	defer bgCancel()
	var bg sync.WaitGroup
	for _, t := range s.hooks.background {
		bg.Go(func() {
			if err := t.run(bgCtx); err != nil && !errors.Is(err, context.Canceled) {
				s.logger.Error("background task stopped", "task", t.name, "err", err)
			}
		})
	}
	s.logStarted(start)
	if s.opts.started != nil {
		s.opts.started(s)
	}

	var failure error
	reason := ""
	running := len(s.listeners)
loop:
	for {
		select {
		case <-ctx.Done():
			reason = "context ended"
			break loop
		case sig := <-s.opts.signals:
			if sig == syscall.SIGHUP {
				s.reload()
				continue
			}
			reason = sig.String()
			break loop
		case r := <-results:
			running--
			failure = fmt.Errorf("%s %s stopped serving: %v", r.b.key, r.b.l.Addr(), r.err)
			if r.err == nil {
				failure = fmt.Errorf("%s %s stopped serving", r.b.key, r.b.l.Addr())
			}
			s.logger.Error("listener failed; shutting down", "key", r.b.key, "addr", r.b.l.Addr().String(), "err", r.err)
			reason = "listener failed"
			break loop
		}
	}

	s.logger.Info("shutting down", "reason", reason, "drain", drainTimeout)
	stopStart := time.Now()
	drainCtx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	closeListeners(s.listeners) // stop accepting everywhere at once
	var wg sync.WaitGroup
	for proto, svc := range s.services {
		wg.Go(func() {
			if err := svc.Shutdown(drainCtx); err != nil {
				s.logger.Warn("service did not drain in time; its sessions were closed", "service", proto, "err", err)
			}
		})
	}
	wg.Wait()
	bgCancel()
	bgDone := make(chan struct{})
	go func() { bg.Wait(); close(bgDone) }()

	late := time.NewTimer(time.Until(stopStart.Add(drainTimeout + stragglerTimeout)))
	defer late.Stop()
	for running > 0 {
		select {
		case <-results:
			running--
		case <-late.C:
			s.logger.Error("services still serving after the drain; exiting anyway", "listeners", running)
			return failure
		}
	}
	select {
	case <-bgDone:
	case <-late.C:
		s.logger.Error("background tasks still running after the drain; exiting anyway")
		return failure
	}
	s.logger.Info("stopped", "took", time.Since(stopStart).Round(time.Millisecond))
	return failure
}

// logStarted writes the one start-up line: every listener and the start-up time.
func (s *server) logStarted(start time.Time) {
	byKey := make(map[string][]string)
	var keys []string
	for _, b := range s.listeners {
		if _, ok := byKey[b.key]; !ok {
			keys = append(keys, b.key)
		}
		byKey[b.key] = append(byKey[b.key], b.l.Addr().String())
	}
	attrs := []any{"hostname", s.cfg.Hostname, "data_dir", s.cfg.DataDir}
	for _, k := range keys {
		attrs = append(attrs, k, strings.Join(byKey[k], ","))
	}
	attrs = append(attrs, "tls_cert", s.certs.certFile, "tls_not_after", s.certs.notAfter().Format(time.DateOnly),
		"startup", time.Since(start).Round(time.Microsecond))
	s.logger.Info("postyard started", attrs...)
}

// reload is SIGHUP: accounts, certificates, log level, then the services' hooks.
// Each part that fails is logged and keeps its previous state.
func (s *server) reload() {
	s.logger.Info("reloading (SIGHUP)")
	ok := true
	if err := s.dir.Reload(); err != nil {
		ok = false
		s.logger.Error("reloading accounts failed; keeping the previous ones", "err", err)
	}
	if err := s.certs.reload(); err != nil {
		ok = false
		s.logger.Error("reloading the TLS certificate failed; keeping the previous one", "err", err)
	}
	if s.opts.configPath != "" && s.opts.loadConfig != nil {
		cfg, err := s.opts.loadConfig(s.opts.configPath)
		if err == nil {
			var lvl slog.Level
			if lvl, err = parseLevel(cfg.Log.Level); err == nil && lvl != s.level.Level() {
				s.logger.Info("log level changed", "from", s.level.Level().String(), "to", lvl.String())
				s.level.Set(lvl)
			}
		}
		if err != nil {
			ok = false
			s.logger.Error("re-reading the config failed; keeping the previous log level", "config", s.opts.configPath, "err", err)
		}
	}
	for _, f := range s.hooks.reload {
		f()
	}
	s.logger.Info("reloaded", "ok", ok, "tls_not_after", s.certs.notAfter().Format(time.DateOnly), "log_level", s.level.Level().String())
}
