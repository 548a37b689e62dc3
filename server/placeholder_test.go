package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/config"
)

func testDeps(t testing.TB) *deps {
	t.Helper()
	cfg := &config.Config{Hostname: "mx.example.test", DataDir: t.TempDir()}
	return &deps{cfg: cfg, logger: slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})), hooks: &hooks{}}
}

// tWriter sends log output to t.Log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// servePlaceholder serves svc on a fresh loopback listener and shuts it down at cleanup.
func serveService(t *testing.T, svc Service) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return l.Addr().String()
}

type lineClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialLine(t *testing.T, addr string) *lineClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &lineClient{t, c, bufio.NewReader(c)}
}

func (lc *lineClient) expect(prefix string) string {
	lc.t.Helper()
	line, err := lc.r.ReadString('\n')
	if err != nil {
		lc.t.Fatalf("reading (want %q): %v", prefix, err)
	}
	if !strings.HasPrefix(line, prefix) || !strings.HasSuffix(line, "\r\n") {
		lc.t.Fatalf("got %q, want a CRLF line starting %q", line, prefix)
	}
	return line
}

func (lc *lineClient) send(s string) {
	lc.t.Helper()
	if _, err := io.WriteString(lc.c, s); err != nil {
		lc.t.Fatal(err)
	}
}

func (lc *lineClient) expectEOF() {
	lc.t.Helper()
	// A reset counts: the server closes with the rest of a too-long line unread.
	if line, err := lc.r.ReadString('\n'); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		lc.t.Fatalf("got %q, %v; want the connection closed", line, err)
	}
}

func TestPlaceholderDialogues(t *testing.T) {
	type step struct{ send, expect string }
	tests := []struct {
		name     string
		proto    lineProto
		greeting string
		steps    []step
		closed   bool // the last step ends the session
	}{
		{"smtp quit", smtpPlaceholder, "220 mx.example.test ESMTP Postyard", []step{
			{"EHLO client.test\r\n", "502 5.5.1 Not yet implemented (cid "},
			{"quit\r\n", "221 2.0.0 "},
		}, true},
		{"imap logout", imapPlaceholder, "* OK [CAPABILITY IMAP4rev1] Postyard ready", []step{
			{"a1 CAPABILITY\r\n", "a1 BAD Not yet implemented (cid "},
			{"garbage\r\n", "* BAD Missing or invalid tag"},
			{"a2 logout\r\n", "* BYE "},
			{"", "a2 OK LOGOUT completed"},
		}, true},
		{"imap bad tag", imapPlaceholder, "* OK ", []step{
			{"a+ LOGOUT\r\n", "* BAD Missing or invalid tag"},
		}, false},
		{"pop3 quit", pop3Placeholder, "+OK Postyard ready", []step{
			{"USER someone\r\n", "-ERR Not yet implemented (cid "},
			{"QUIT\r\n", "+OK "},
		}, true},
		{"smtp too many errors", smtpPlaceholder, "220 ", func() []step {
			var s []step
			for range placeholderMaxErrors {
				s = append(s, step{"NOOP\r\n", "502 "})
			}
			return s
		}(), true},
		{"pop3 line too long", pop3Placeholder, "+OK ", []step{
			{strings.Repeat("x", placeholderMaxLine+10) + "\r\n", "-ERR Line too long"},
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serveService(t, newPlaceholder("test", tt.proto, testDeps(t)))
			c := dialLine(t, addr)
			c.expect(tt.greeting)
			for _, s := range tt.steps {
				if s.send != "" {
					c.send(s.send)
				}
				c.expect(s.expect)
			}
			if tt.closed {
				c.expectEOF()
			}
		})
	}
}

func TestPlaceholderShutdownSaysGoodbye(t *testing.T) {
	tests := []struct {
		name    string
		proto   lineProto
		goodbye string // "" means closed without a word
	}{
		{"smtp", smtpPlaceholder, "421 4.3.2 mx.example.test Service shutting down"},
		{"imap", imapPlaceholder, "* BYE Server shutting down"},
		{"pop3", pop3Placeholder, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newPlaceholder(tt.name, tt.proto, testDeps(t))
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- svc.Serve(l) }()
			c := dialLine(t, l.Addr().String())
			c.expect("")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := svc.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if err := <-served; err != nil {
				t.Fatalf("Serve: %v", err)
			}
			if tt.goodbye != "" {
				c.expect(tt.goodbye)
			}
			c.expectEOF()
			if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
				t.Fatal("the listener still accepts after Shutdown")
			}
		})
	}
}

func TestPlaceholderImplicitTLS(t *testing.T) {
	d := testDeps(t)
	certPEM, keyPEM, err := selfSigned("mx.example.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	svc := newPlaceholder(protoIMAP, imapPlaceholder, d)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{pair}})
	go func() { _ = svc.Serve(tl) }()
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
	tc, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	c := &lineClient{t, tc, bufio.NewReader(tc)}
	c.expect("* OK ")
	c.send("x LOGOUT\r\n")
	c.expect("* BYE")
	c.expect("x OK")
}

func TestHTTPPlaceholder(t *testing.T) {
	addr := serveService(t, newHTTPPlaceholder(protoAutoconfig, testDeps(t)))
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/mail/config-v1.1.xml")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
	client.CloseIdleConnections()
}

func TestValidIMAPTag(t *testing.T) {
	for tag, want := range map[string]bool{"a1": true, "A.001": true, "": false, "a+": false, "a*": false, "a\x01": false, `a"`: false, "ä": false} {
		if got := validIMAPTag(tag); got != want {
			t.Errorf("validIMAPTag(%q) = %v, want %v", tag, got, want)
		}
	}
}
