package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/config"
)

func TestBindAllNamesKeyAndAddress(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := &config.Config{Hostname: "h"}
	cfg.SMTP.Listen = []string{"127.0.0.1:0"}
	cfg.IMAP.TLSListen = []string{busy.Addr().String()}
	ls, err := bindAll(context.Background(), cfg, &tls.Config{})
	if err == nil {
		closeListeners(ls)
		t.Fatal("binding a busy port succeeded")
	}
	want := `imap.tls_listen: cannot listen on "` + busy.Addr().String() + `": bind: address already in use`
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestBindAllLimitsAndTLS(t *testing.T) {
	h := testCerts(t)
	tlsConfig := &tls.Config{GetCertificate: h.GetCertificate}
	cfg := &config.Config{Hostname: "mx.example.test"}
	cfg.SMTP.Listen = []string{"127.0.0.1:0"}
	cfg.SMTP.MaxConnectionsPerIP = 1
	cfg.POP3.TLSListen = []string{"127.0.0.1:0"}
	cfg.POP3.MaxConnections = 1
	ls, err := bindAll(context.Background(), cfg, tlsConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer closeListeners(ls)
	if len(ls) != 2 || ls[0].key != "smtp.listen" || ls[0].tls || ls[1].key != "pop3.tls_listen" || !ls[1].tls {
		t.Fatalf("listeners %+v", ls)
	}
	// Accept and hold connections so the limit counts them.
	for _, b := range ls {
		go func() {
			for {
				c, err := b.l.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
				if tc, ok := c.(*tls.Conn); ok {
					go func() { _ = tc.Handshake() }()
				}
			}
		}()
	}
	// SMTP: the second connection from 127.0.0.1 gets 421.
	first, err := net.Dial("tcp", ls[0].l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	time.Sleep(50 * time.Millisecond) // let the first be admitted
	second, err := net.Dial("tcp", ls[0].l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(second).ReadString('\n')
	if !strings.HasPrefix(line, "421 4.7.0 mx.example.test too many connections from your address") {
		t.Fatalf("refused SMTP client read %q", line)
	}
	// POP3 over implicit TLS: the refusal is readable inside TLS.
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", ls[1].l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	dial()
	time.Sleep(50 * time.Millisecond)
	line, _ = bufio.NewReader(dial()).ReadString('\n')
	if line != "-ERR [SYS/TEMP] too many connections\r\n" {
		t.Fatalf("refused POP3S client read %q", line)
	}
}

func testCerts(t *testing.T) *certHolder {
	t.Helper()
	h, err := newCertHolder(&config.Config{Hostname: "mx.example.test", DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    slog.Level
		wantErr bool
	}{
		{"", slog.LevelInfo, false},
		{"debug", slog.LevelDebug, false},
		{"INFO", slog.LevelInfo, false},
		{"warn", slog.LevelWarn, false},
		{"error", slog.LevelError, false},
		{"loud", 0, true},
	}
	for _, tt := range tests {
		got, err := parseLevel(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseLevel(%q) = %v, %v", tt.in, got, err)
		}
	}
	if _, err := newLogger(io.Discard, "xml", new(slog.LevelVar)); err == nil {
		t.Error("format xml accepted")
	}
}

// fakeService records calls and serves nothing but an accept loop.
type fakeService struct {
	mu       sync.Mutex
	served   int
	shutdown bool
	hang     bool // Shutdown waits for ctx
}

func (f *fakeService) Serve(l net.Listener) error {
	f.mu.Lock()
	f.served++
	f.mu.Unlock()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		c.Close()
	}
}

func (f *fakeService) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.shutdown = true
	f.mu.Unlock()
	if f.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// TestServeLifecycle drives server.serve with fake services: every listener
// is served, background tasks run until shutdown, SIGTERM shuts every
// service down and serve returns nil.
func TestServeLifecycle(t *testing.T) {
	cfg := &config.Config{Hostname: "h", DataDir: t.TempDir()}
	cfg.SMTP.Listen = []string{"127.0.0.1:0", "127.0.0.1:0"}
	cfg.IMAP.Listen = []string{"127.0.0.1:0"}
	h := testCerts(t)
	ls, err := bindAll(context.Background(), cfg, &tls.Config{GetCertificate: h.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	smtpSvc, imapSvc := &fakeService{}, &fakeService{}
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	sigs := make(chan os.Signal, 1)
	started := make(chan struct{})
	s := &server{
		opts:      options{signals: sigs, started: func(*server) { close(started) }},
		cfg:       cfg,
		logger:    logger,
		certs:     h,
		listeners: ls,
		services:  map[string]Service{protoSMTP: smtpSvc, protoIMAP: imapSvc},
	}
	bgStopped := make(chan struct{})
	d := &deps{hooks: &s.hooks}
	d.hooks.goBackground("test", func(ctx context.Context) error {
		<-ctx.Done()
		close(bgStopped)
		return ctx.Err()
	})
	done := make(chan error, 1)
	go func() { done <- s.serve(context.Background(), time.Now()) }()
	<-started
	for _, b := range ls {
		c, err := net.Dial("tcp", b.l.Addr().String())
		if err != nil {
			t.Fatalf("%s not accepting: %v", b.key, err)
		}
		c.Close()
	}
	sigs <- syscall.SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(drainTimeout):
		t.Fatal("serve did not return after SIGTERM")
	}
	select {
	case <-bgStopped:
	default:
		t.Error("background task was not stopped")
	}
	if smtpSvc.served != 2 || imapSvc.served != 1 || !smtpSvc.shutdown || !imapSvc.shutdown {
		t.Errorf("smtp %+v imap %+v", smtpSvc, imapSvc)
	}
	out := logs.String()
	for _, want := range []string{"msg=\"postyard started\"", "smtp.listen=127.0.0.1:", "imap.listen=127.0.0.1:", "startup=", "reason=terminated", "msg=stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRunInProcess runs the whole server in the test process with the real
// accounts and store: SIGHUP reloads and calls the services' reload hooks,
// a cancelled context shuts down cleanly.
func TestRunInProcess(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Hostname = "mx.example.test"
	for _, l := range []*[]string{&cfg.SMTP.Listen, &cfg.Submission.Listen, &cfg.Submission.TLSListen,
		&cfg.IMAP.Listen, &cfg.IMAP.TLSListen, &cfg.POP3.Listen, &cfg.POP3.TLSListen, &cfg.Autoconfig.Listen} {
		*l = []string{"127.0.0.1:0"}
	}
	configPath := t.TempDir() + "/postyard.toml"
	if err := os.WriteFile(configPath, []byte("[log]\nlevel = \"debug\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	sigs := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *server, 1)
	reloaded := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, options{cfg: cfg, configPath: configPath, logOut: &logs, signals: sigs, loadConfig: config.Load,
			started: func(s *server) {
				s.hooks.onReload(func() { reloaded <- struct{}{} })
				started <- s
			}})
	}()
	var s *server
	select {
	case s = <-started:
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("no start within 10 s")
	}
	if len(s.listeners) != 8 {
		t.Fatalf("%d listeners, want 8", len(s.listeners))
	}
	if s.level.Level() != slog.LevelInfo {
		t.Fatalf("level %v before SIGHUP", s.level.Level())
	}
	sigs <- syscall.SIGHUP
	select {
	case <-reloaded:
	case <-time.After(10 * time.Second):
		t.Fatalf("the reload hook was not called\n%s", logs.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(drainTimeout + stragglerTimeout + time.Second):
		t.Fatal("run did not return after the context ended")
	}
	if s.level.Level() != slog.LevelDebug {
		t.Errorf("level %v after SIGHUP, want DEBUG (from the file)", s.level.Level())
	}
	out := logs.String()
	for _, want := range []string{"log level changed", "msg=reloaded ok=true", `reason="context ended"`, "msg=stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
