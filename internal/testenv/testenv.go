// Package testenv runs the real postyard binary for end-to-end tests.
//
// Start builds the binary once per test process (see Binary), writes a
// config with a temporary data directory, every listener on a free
// 127.0.0.1 port and a loopback DNS server as the resolver, starts
// `postyard serve`, and returns once every port accepts. At cleanup the
// server gets SIGTERM and the test fails unless it exits 0.
//
//	env := testenv.Start(t, testenv.Options{
//		Config: map[string]any{"smtp.max_recipients": 5},
//	})
//	env.AddUser(t, "alice@example.test", "secret")
//	c, _ := smtp.Dial(env.SMTP)
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/postyard-mail/postyard/internal/dnstest"
)

const (
	// readyTimeout bounds the wait for every port to accept.
	readyTimeout = 20 * time.Second
	// stopTimeout bounds the wait for exit after SIGTERM (the server drains
	// for up to 10 s) before SIGKILL.
	stopTimeout = 20 * time.Second
	// cliTimeout bounds one CLI command.
	cliTimeout = time.Minute
)

// Options shape the server of one test. The zero value is a working server
// for example.test.
type Options struct {
	// Hostname is the server's name; default "mail.example.test".
	Hostname string
	// Domains are the local domains; default ["example.test"].
	Domains []string
	// ExtraTOML is TOML merged over the generated config: tables merge key
	// by key, and a key given here replaces the generated one.
	ExtraTOML string
	// Config sets keys by dotted path after ExtraTOML, e.g.
	// {"smtp.max_recipients": 5, "security.allow_plaintext_auth": true,
	// "delivery.retry": []string{"1s"}}. A nil value removes the key (the
	// server's default applies); an empty list disables a listener.
	Config map[string]any
	// DNS is the resolver the server uses (dns.resolver); nil starts an
	// empty one, so the server never asks the real DNS.
	DNS *dnstest.Server
	// Env adds variables to the server's environment ("KEY=value").
	Env []string
}

// Env is one running (or stopped) postyard server.
type Env struct {
	// Listener addresses ("127.0.0.1:PORT"; "" when disabled).
	SMTP, Submission, SubmissionTLS, IMAP, IMAPTLS, POP3, POP3TLS, Autoconfig string

	Hostname   string
	Domains    []string
	DataDir    string
	ConfigPath string
	Bin        string
	DNS        *dnstest.Server
	// StartupTime is how long the last start took from exec until every
	// port accepted.
	StartupTime time.Duration

	t    testing.TB
	env  []string
	logs *logBuffer

	mu   sync.Mutex // guards proc
	proc *process
}

// process is one run of `postyard serve`.
type process struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	state  *os.ProcessState
	waited error
}

// listenKeys are the listener keys testenv fills, with the Env field of each.
var listenKeys = []struct {
	section, key string
	field        func(*Env) *string
}{
	{"smtp", "listen", func(e *Env) *string { return &e.SMTP }},
	{"submission", "listen", func(e *Env) *string { return &e.Submission }},
	{"submission", "tls_listen", func(e *Env) *string { return &e.SubmissionTLS }},
	{"imap", "listen", func(e *Env) *string { return &e.IMAP }},
	{"imap", "tls_listen", func(e *Env) *string { return &e.IMAPTLS }},
	{"pop3", "listen", func(e *Env) *string { return &e.POP3 }},
	{"pop3", "tls_listen", func(e *Env) *string { return &e.POP3TLS }},
	{"autoconfig", "listen", func(e *Env) *string { return &e.Autoconfig }},
}

// Start starts a server for the test; see the package comment.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	e := &Env{
		Hostname: opts.Hostname, Domains: opts.Domains, DNS: opts.DNS,
		// A directory the server creates itself, as on a first start.
		Bin: Binary(t), DataDir: filepath.Join(t.TempDir(), "data"), t: t, env: opts.Env, logs: &logBuffer{},
	}
	if e.Hostname == "" {
		e.Hostname = "mail.example.test"
	}
	if len(e.Domains) == 0 {
		e.Domains = []string{"example.test"}
	}
	if e.DNS == nil {
		e.DNS = dnstest.Start(t, "")
	}
	e.ConfigPath = filepath.Join(t.TempDir(), "postyard.toml")
	t.Cleanup(e.cleanup)

	// The ports are free when picked but not held: another process may
	// take one before the server binds it. That shows as "address already
	// in use"; try again with new ports.
	for attempt := 1; ; attempt++ {
		doc, err := e.config(opts)
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		if err := os.WriteFile(e.ConfigPath, doc, 0o600); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		err = e.start()
		if err == nil {
			return e
		}
		if attempt < 3 && strings.Contains(e.Logs(), "address already in use") {
			t.Logf("testenv: a port was taken before the server bound it; retrying")
			continue
		}
		t.Fatalf("testenv: %v\nconfig:\n%s\nserver output:\n%s", err, doc, tail(e.Logs()))
	}
}

// config builds the TOML document: generated keys, then ExtraTOML, then Config.
func (e *Env) config(opts Options) ([]byte, error) {
	ports, err := freePorts(len(listenKeys))
	if err != nil {
		return nil, err
	}
	doc := map[string]any{
		"hostname": e.Hostname,
		"data_dir": e.DataDir,
		"domains":  e.Domains,
		"dns":      map[string]any{"resolver": e.DNS.Addr},
		"log":      map[string]any{"level": "debug"},
	}
	for i, lk := range listenKeys {
		table(doc, lk.section)[lk.key] = []string{ports[i]}
	}
	if opts.ExtraTOML != "" {
		var extra map[string]any
		if err := toml.Unmarshal([]byte(opts.ExtraTOML), &extra); err != nil {
			return nil, fmt.Errorf("Options.ExtraTOML: %w", err)
		}
		merge(doc, extra)
	}
	for _, k := range slices.Sorted(maps.Keys(opts.Config)) {
		parts := strings.Split(k, ".")
		m := doc
		for _, p := range parts[:len(parts)-1] {
			m = table(m, p)
		}
		if v := opts.Config[k]; v == nil {
			delete(m, parts[len(parts)-1])
		} else {
			m[parts[len(parts)-1]] = v
		}
	}
	for _, lk := range listenKeys {
		*lk.field(e) = firstAddr(table(doc, lk.section)[lk.key])
	}
	return toml.Marshal(doc)
}

// table returns m[name] as a table, creating it.
func table(m map[string]any, name string) map[string]any {
	if sub, ok := m[name].(map[string]any); ok {
		return sub
	}
	sub := map[string]any{}
	m[name] = sub
	return sub
}

// merge copies src over dst, recursing into tables present in both.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				merge(dv, sv)
				continue
			}
		}
		dst[k] = v
	}
}

func firstAddr(v any) string {
	switch l := v.(type) {
	case []string:
		if len(l) > 0 {
			return l[0]
		}
	case []any:
		if len(l) > 0 {
			s, _ := l[0].(string)
			return s
		}
	case string:
		return l
	}
	return ""
}

// freePorts returns n distinct free 127.0.0.1 ports, held open together
// while picking so none repeats.
func freePorts(n int) ([]string, error) {
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// start execs the server and waits until every port accepts and it has
// logged its start.
func (e *Env) start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proc != nil && !e.proc.exited() {
		return errors.New("the server is already running")
	}
	logStart := e.logs.Len()
	cmd := exec.Command(e.Bin, "serve", "--config", e.ConfigPath)
	cmd.Dir = filepath.Dir(e.ConfigPath)
	cmd.Env = append(os.Environ(), e.env...)
	cmd.Stdout = e.logs
	cmd.Stderr = e.logs
	setDeathSignal(cmd)
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", e.Bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waited = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	e.proc = p

	addrs := e.addrs()
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("the server exited during start-up: %v", p.waited)
		default:
		}
		ready := true
		for _, a := range addrs {
			c, err := net.DialTimeout("tcp", a, 250*time.Millisecond)
			if err != nil {
				ready = false
				break
			}
			c.Close()
		}
		if ready {
			e.StartupTime = time.Since(began)
			if strings.Contains(e.logs.From(logStart), "postyard started") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("the server did not start within %v (ports accepting: %v)", readyTimeout, ready)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// addrs are the enabled listener addresses.
func (e *Env) addrs() []string {
	var out []string
	for _, lk := range listenKeys {
		if a := *lk.field(e); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Running reports whether the server process is alive.
func (e *Env) Running() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.proc != nil && !e.proc.exited()
}

// Signal sends sig to the server.
func (e *Env) Signal(sig os.Signal) {
	e.t.Helper()
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	if p == nil || p.exited() {
		e.t.Fatalf("testenv: Signal(%v): the server is not running", sig)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		e.t.Fatalf("testenv: Signal(%v): %v", sig, err)
	}
}

// Stop sends SIGTERM and waits for the exit; the test fails unless the
// server exits 0 in time (it is killed after stopTimeout). Stopping a
// stopped server does nothing.
func (e *Env) Stop() {
	e.t.Helper()
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		e.t.Errorf("testenv: the server did not exit within %v of SIGTERM; killed\nserver output:\n%s", stopTimeout, tail(e.Logs()))
		return
	}
	if code := p.state.ExitCode(); code != 0 {
		e.t.Errorf("testenv: the server exited with %v after SIGTERM, want 0\nserver output:\n%s", p.state, tail(e.Logs()))
	}
}

// Kill ends the server with SIGKILL (a crash) and waits for it.
func (e *Env) Kill() {
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Wait waits up to timeout for the server to exit by itself and returns its
// exit code; it fails the test if the server is still running then.
func (e *Env) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	if p == nil {
		t.Fatal("testenv: Wait: the server was never started")
	}
	select {
	case <-p.done:
		return p.state.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("testenv: the server still runs after %v", timeout)
		return -1
	}
}

// Restart stops the server (or notes that it is already down, e.g. after
// Kill) and starts it again on the same config, data and ports.
func (e *Env) Restart(t testing.TB) {
	t.Helper()
	e.Stop()
	if err := e.start(); err != nil {
		t.Fatalf("testenv: restart: %v\nserver output:\n%s", err, tail(e.Logs()))
	}
}

func (e *Env) cleanup() {
	e.Stop()
	if e.t.Failed() {
		e.t.Logf("testenv: server output:\n%s", tail(e.Logs()))
	}
}

// CLI runs `postyard ARGS... --config CONFIG` and returns its output and exit code.
func (e *Env) CLI(t testing.TB, args ...string) (stdout, stderr string, exit int) {
	t.Helper()
	return e.CLIStdin(t, "", args...)
}

// CLIStdin is CLI with stdin as the command's standard input.
func (e *Env) CLIStdin(t testing.TB, stdin string, args ...string) (stdout, stderr string, exit int) {
	t.Helper()
	// --config goes after the verb's arguments (before a "--", if any), where
	// cobra accepts both persistent and local flags.
	full := slices.Clone(args)
	at := slices.Index(full, "--")
	if at < 0 {
		at = len(full)
	}
	full = slices.Insert(full, at, "--config", e.ConfigPath)
	return run(t, e.Bin, filepath.Dir(e.ConfigPath), stdin, e.env, full...)
}

// Run runs bin with args in dir and returns its output and exit code; the
// test fails if it cannot be started or runs longer than a minute.
func Run(t testing.TB, dir, stdin string, args ...string) (stdout, stderr string, exit int) {
	t.Helper()
	return run(t, Binary(t), dir, stdin, nil, args...)
}

func run(t testing.TB, bin, dir, stdin string, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("testenv: postyard %s: no exit within %v", strings.Join(args, " "), cliTimeout)
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("testenv: postyard %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// AddUser creates a user through the real CLI (`user add --password-stdin`).
func (e *Env) AddUser(t testing.TB, addr, password string) {
	t.Helper()
	stdout, stderr, code := e.CLIStdin(t, password+"\n", "user", "add", addr, "--password-stdin")
	if code != 0 {
		t.Fatalf("testenv: user add %s: exit %d\nstdout: %s\nstderr: %s", addr, code, stdout, stderr)
	}
}

// Logs returns everything the server wrote to stdout and stderr so far,
// across restarts.
func (e *Env) Logs() string { return e.logs.String() }

// LogOffset marks the current end of the log, for WaitLogFrom.
func (e *Env) LogOffset() int { return e.logs.Len() }

// WaitLog waits up to 10 s for a log line containing substr and returns it.
func (e *Env) WaitLog(t testing.TB, substr string) string {
	t.Helper()
	return e.WaitLogFrom(t, 0, substr)
}

// WaitLogFrom is WaitLog over the log written after offset.
func (e *Env) WaitLogFrom(t testing.TB, offset int, substr string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(e.logs.From(offset), "\n") {
			if strings.Contains(line, substr) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: no log line with %q within 10 s\nserver output:\n%s", substr, tail(e.logs.From(offset)))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logBuffer collects the server's output; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string { return b.From(0) }

func (b *logBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func (b *logBuffer) From(off int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if off > b.buf.Len() {
		return ""
	}
	return string(b.buf.Bytes()[off:])
}

// tail keeps the end of a long log for failure messages.
func tail(s string) string {
	const max = 64 << 10
	if len(s) <= max {
		return s
	}
	return "[...]\n" + s[len(s)-max:]
}
