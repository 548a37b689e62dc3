package server_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/postyard-mail/postyard/config"
	"github.com/postyard-mail/postyard/internal/testcert"
	"github.com/postyard-mail/postyard/internal/testenv"
)

// The end-to-end tests run the real binary through internal/testenv.

func TestE2EStartsWithEveryPortAccepting(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	t.Logf("start-up: %v from exec until every port accepted", env.StartupTime)
	if env.StartupTime > 3*time.Second {
		t.Errorf("start-up took %v, want under 3 s", env.StartupTime)
	}
	if fi, err := os.Stat(env.Bin); err == nil {
		t.Logf("binary size: %d bytes (%.1f MiB)", fi.Size(), float64(fi.Size())/(1<<20))
	}
	roots := x509.NewCertPool()
	pemBytes, err := os.ReadFile(filepath.Join(env.DataDir, "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(pemBytes)

	greetings := []struct {
		name, addr, prefix string
		tls                bool
	}{
		{"smtp", env.SMTP, "220 ", false},
		{"submission", env.Submission, "220 ", false},
		{"submission tls", env.SubmissionTLS, "220 ", true},
		{"imap", env.IMAP, "* OK ", false},
		{"imap tls", env.IMAPTLS, "* OK ", true},
		{"pop3", env.POP3, "+OK", false},
		{"pop3 tls", env.POP3TLS, "+OK", true},
	}
	for _, g := range greetings {
		t.Run(g.name, func(t *testing.T) {
			var c net.Conn
			var err error
			if g.tls {
				// The generated certificate verifies for the hostname.
				c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.addr,
					&tls.Config{RootCAs: roots, ServerName: env.Hostname})
			} else {
				c, err = net.DialTimeout("tcp", g.addr, 5*time.Second)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, g.prefix) {
				t.Fatalf("greeting %q, %v; want %q...", line, err, g.prefix)
			}
		})
	}
	t.Run("autoconfig", func(t *testing.T) {
		client := &http.Client{Timeout: 5 * time.Second}
		defer client.CloseIdleConnections()
		resp, err := client.Get("http://" + env.Autoconfig + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	})
	line := env.WaitLog(t, "postyard started")
	for _, key := range []string{"smtp.listen=" + env.SMTP, "submission.tls_listen=" + env.SubmissionTLS, "imap.listen=" + env.IMAP, "pop3.tls_listen=" + env.POP3TLS, "autoconfig.listen=" + env.Autoconfig, "startup="} {
		if !strings.Contains(line, key) {
			t.Errorf("start line lacks %q: %s", key, line)
		}
	}
	for _, dir := range []string{"", "mail", "queue", "tls"} {
		fi, err := os.Stat(filepath.Join(env.DataDir, dir))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("data_dir/%s mode %v, want 0700", dir, fi.Mode().Perm())
		}
	}
}

// TestE2ENoConfigServesDefaults runs `postyard serve` in an empty directory:
// the embedded defaults serve every default port on 127.0.0.1 within 3 s.
func TestE2ENoConfigServesDefaults(t *testing.T) {
	def := config.Default()
	var addrs []string
	for _, l := range [][]string{def.SMTP.Listen, def.Submission.Listen, def.Submission.TLSListen,
		def.IMAP.Listen, def.IMAP.TLSListen, def.POP3.Listen, def.POP3.TLSListen, def.Autoconfig.Listen} {
		addrs = append(addrs, l...)
	}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Skipf("default port %s is busy (%v); skipping", a, err)
		}
		l.Close()
	}
	dir := t.TempDir()
	cmd := exec.Command(testenv.Binary(t), "serve")
	cmd.Dir = dir
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
	}()
	for _, a := range addrs {
		a = strings.Replace(a, "0.0.0.0:", "127.0.0.1:", 1)
		if strings.HasPrefix(a, ":") {
			a = "127.0.0.1" + a
		}
		for {
			c, err := net.DialTimeout("tcp", a, 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			if time.Since(began) > 3*time.Second {
				t.Fatalf("%s not accepting 3 s after exec\n%s", a, out.String())
			}
			select {
			case err := <-done:
				t.Fatalf("the server exited: %v\n%s", err, out.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	t.Logf("start-up with the embedded defaults: %v", time.Since(began))
	if _, err := os.Stat(filepath.Join(dir, "data", "tls", "cert.pem")); err != nil {
		t.Errorf("no generated certificate in ./data/tls: %v", err)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit 15 s after SIGTERM\n%s", out.String())
	}
}

// TestE2EStopSignalsExitZero: SIGTERM and SIGINT end the server with exit 0;
// an open session is told goodbye or closed, never left hanging.
func TestE2EStopSignalsExitZero(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			env := testenv.Start(t, testenv.Options{})
			c, err := net.DialTimeout("tcp", env.IMAP, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(15 * time.Second))
			r := bufio.NewReader(c)
			if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "* OK") {
				t.Fatalf("greeting %q, %v", line, err)
			}
			env.Signal(sig)
			if code := env.Wait(t, 15*time.Second); code != 0 {
				t.Fatalf("exit %d after %v, want 0\n%s", code, sig, env.Logs())
			}
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					break // closed: good
				}
				if !strings.HasPrefix(line, "* BYE") {
					t.Fatalf("after %v the session read %q", sig, line)
				}
			}
			env.WaitLog(t, "msg=stopped")
		})
	}
}

// TestE2ESIGHUPReloadsCertificate: after the files change and SIGHUP, new TLS
// connections get the new certificate while one already open keeps working.
func TestE2ESIGHUPReloadsCertificate(t *testing.T) {
	for _, mode := range []string{"generated", "configured"} {
		t.Run(mode, func(t *testing.T) {
			opts := testenv.Options{}
			var certFile, keyFile string
			if mode == "configured" {
				dir := t.TempDir()
				certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
				testcert.New(t, "first.example.test").WriteFiles(t, certFile, keyFile)
				opts.Config = map[string]any{"tls.cert": certFile, "tls.key": keyFile}
			}
			env := testenv.Start(t, opts)
			if mode == "generated" {
				certFile = filepath.Join(env.DataDir, "tls", "cert.pem")
				keyFile = filepath.Join(env.DataDir, "tls", "key.pem")
			}
			old := dialTLS(t, env.IMAPTLS)
			defer old.Close()
			r := bufio.NewReader(old)
			if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "* OK") {
				t.Fatalf("greeting %q, %v", line, err)
			}
			serial := old.ConnectionState().PeerCertificates[0].SerialNumber

			testcert.New(t, "second.example.test").WriteFiles(t, certFile, keyFile)
			off := env.LogOffset()
			env.Signal(syscall.SIGHUP)
			if line := env.WaitLogFrom(t, off, "msg=reloaded"); !strings.Contains(line, "ok=true") {
				t.Fatalf("reload: %s", line)
			}
			for _, addr := range []string{env.IMAPTLS, env.SubmissionTLS, env.POP3TLS} {
				c := dialTLS(t, addr)
				cert := c.ConnectionState().PeerCertificates[0]
				c.Close()
				if cert.Subject.CommonName != "second.example.test" || cert.SerialNumber.Cmp(serial) == 0 {
					t.Errorf("%s after SIGHUP serves %q, want the new certificate", addr, cert.Subject.CommonName)
				}
			}
			// The connection from before the reload still works.
			if _, err := old.Write([]byte("a1 LOGOUT\r\n")); err != nil {
				t.Fatalf("old connection: %v", err)
			}
			if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "* BYE") {
				t.Fatalf("old connection after reload read %q, %v", line, err)
			}
		})
	}
}

// TestE2ESIGHUPLogLevel: SIGHUP re-reads log.level; a config that no longer
// loads keeps the old level and the server running.
func TestE2ESIGHUPLogLevel(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Config: map[string]any{"log.level": "info"}})
	doc, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := toml.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	m["log"].(map[string]any)["level"] = "debug"
	doc, err = toml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(env.ConfigPath, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	off := env.LogOffset()
	env.Signal(syscall.SIGHUP)
	env.WaitLogFrom(t, off, "log level changed")
	if line := env.WaitLogFrom(t, off, "msg=reloaded"); !strings.Contains(line, "log_level=DEBUG") {
		t.Fatalf("reload line %s", line)
	}

	if err := os.WriteFile(env.ConfigPath, append(doc, "\nnot toml at all [\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	off = env.LogOffset()
	env.Signal(syscall.SIGHUP)
	env.WaitLogFrom(t, off, "re-reading the config failed")
	if line := env.WaitLogFrom(t, off, "msg=reloaded"); !strings.Contains(line, "log_level=DEBUG") || !strings.Contains(line, "ok=false") {
		t.Fatalf("reload line %s", line)
	}
	c, err := net.DialTimeout("tcp", env.SMTP, 5*time.Second)
	if err != nil {
		t.Fatalf("the server stopped serving after a bad reload: %v", err)
	}
	c.Close()
}

// TestE2EBadConfigExit1 runs `serve` on configs that must be refused with
// exit 1 and a message naming the place.
func TestE2EBadConfigExit1(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	noListeners := `
[smtp]
listen = []
[submission]
listen = []
tls_listen = []
[imap]
listen = []
tls_listen = []
[pop3]
listen = []
tls_listen = []
[autoconfig]
listen = []
`
	tests := []struct {
		name   string
		config string   // DATADIR stands for a temporary data directory
		want   []string // in stderr; FILE stands for the config path
	}{
		{"misspelt key", "data_dir = \"DATADIR\"\nhostnme = \"oops\"\n", []string{"FILE:2: hostnme"}},
		{"misspelt key in a table", "data_dir = \"DATADIR\"\n\n[smtp]\nmax_recipents = 5\n", []string{"FILE:4: smtp.max_recipents"}},
		{"port in use", "data_dir = \"DATADIR\"\n" + strings.Replace(noListeners, "[smtp]\nlisten = []", "[smtp]\nlisten = [\""+busy.Addr().String()+"\"]", 1),
			[]string{"smtp.listen", busy.Addr().String(), "address already in use"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "postyard.toml")
			cfg := strings.ReplaceAll(tt.config, "DATADIR", filepath.Join(dir, "data"))
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := testenv.Run(t, dir, "", "serve", "--config", path)
			if code != 1 {
				t.Fatalf("exit %d, want 1\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "FILE", path)
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

func dialTLS(t *testing.T, addr string) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}
