package smtp_test

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/postyard-mail/postyard/dnsmx"
	"github.com/postyard-mail/postyard/internal/benchmeter"
	"github.com/postyard-mail/postyard/internal/dnstest"
	"github.com/postyard-mail/postyard/mailauth"
	"github.com/postyard-mail/postyard/smtp"
)

// benchMessage is a message of about size bytes.
func benchMessage(size int) string {
	var b strings.Builder
	b.WriteString("From: sender@remote.example\r\nTo: user@example.test\r\nSubject: benchmark\r\nMessage-ID: <bench@remote.example>\r\n\r\n")
	for b.Len() < size {
		b.WriteString("The quick brown fox jumps over the lazy dog, again and again and again.\r\n")
	}
	return b.String()
}

func sendOne(addr, rcpt, msg string) error {
	c, err := gosmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail("sender@remote.example", []string{rcpt}, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// BenchmarkAcceptDeliver: whole SMTP sessions (connect, EHLO, MAIL, RCPT,
// DATA, QUIT) of one 10 KB message each, to 100 users round-robin, through
// the real accounts directory and the real Maildir store (fsync included),
// with 1 and 10 sessions at a time: the path smtp-load measures.
func BenchmarkAcceptDeliver(b *testing.B) {
	benchAcceptDeliver(b, benchMessage(10<<10), unlimited)
}

// BenchmarkAcceptDeliverChecked is BenchmarkAcceptDeliver with the inbound
// checks on (SPF pass, DMARC pass, DNS answers cached after the first
// message), for an unsigned message and one with an RSA-2048 DKIM
// signature: the overhead of the checks is the difference between the two
// benchmarks' msg/s.
func BenchmarkAcceptDeliverChecked(b *testing.B) {
	dns := dnstest.Start(b, `
remote.example.        IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.remote.example. IN TXT "v=DMARC1; p=reject"
`)
	pemData, err := os.ReadFile("../mailauth/testdata/test-only-rsa2048.pem")
	if err != nil {
		b.Fatal(err)
	}
	block, err := pemDecode(pemData)
	if err != nil {
		b.Fatal(err)
	}
	key, err := x509.ParsePKCS1PrivateKey(block)
	if err != nil {
		b.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	rec := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	dns.Add(`bench._domainkey.remote.example. IN TXT "` + rec[:200] + `" "` + rec[200:] + `"`)
	r, err := dnsmx.New(dnsmx.Options{Upstream: dns.Addr})
	if err != nil {
		b.Fatal(err)
	}
	checker := mailauth.New(mailauth.Options{Hostname: "mx.example.test", Resolver: r})
	on := func(o *smtp.Options) { unlimited(o); o.Checker = checker }

	msg := benchMessage(10 << 10)
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, strings.NewReader(msg), &dkim.SignOptions{Domain: "remote.example", Selector: "bench", Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed}); err != nil {
		b.Fatal(err)
	}
	b.Run("unsigned", func(b *testing.B) { benchAcceptDeliver(b, msg, on) })
	b.Run("dkim=rsa2048", func(b *testing.B) { benchAcceptDeliver(b, signed.String(), on) })
}

func benchAcceptDeliver(b *testing.B, msg string, opts ...serverOption) {
	users := make([]string, 100)
	for i := range users {
		users[i] = fmt.Sprintf("user%d@example.test", i+1)
	}
	for _, sessions := range []int{1, 10} {
		// set up once: b.Run calls its function again for each b.N it tries
		e := startReal(b, users, nil, opts...)
		for _, u := range users { // first deliveries create the trees: not what is measured
			if err := sendOne(e.ts.addr, u, msg); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			sendConcurrently(b, len(msg), sessions, func(n int64) error {
				return sendOne(e.ts.addr, users[n%100], msg)
			})
		})
	}
}

// sendConcurrently makes b.N calls of send (numbered 1 to b.N) from sessions
// goroutines and reports msg/s and cpu-µs/msg (benchmeter).
func sendConcurrently(b *testing.B, msgSize, sessions int, send func(n int64) error) {
	b.SetBytes(int64(msgSize))
	m := benchmeter.Start()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range sessions {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				if err := send(n); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	m.Report(b)
}

// pemDecode returns the bytes of the first PEM block.
func pemDecode(data []byte) ([]byte, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	return block.Bytes, nil
}

// idleSessions opens n connections that have said EHLO and then wait, and
// returns the memory the process grew by per connection (heap and stacks,
// after GC; the client side's few hundred bytes per socket included).
func idleSessions(t testing.TB, addr string, n int) float64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buf := make([]byte, 4096)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte("EHLO idle.client.test\r\n")); err != nil {
			t.Fatal(err)
		}
		// the greeting and the EHLO reply; the last line is "250 LIMITS ..."
		var got []byte
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for !strings.Contains(string(got), "\r\n250 ") {
			k, err := c.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, buf[:k]...)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := float64(after.HeapAlloc+after.StackInuse) - float64(before.HeapAlloc+before.StackInuse)
	return grown / float64(n)
}

func unlimited(o *smtp.Options) {
	o.Config.MaxConnections, o.Config.MaxConnectionsPerIP = 0, 0
	o.Logger = slog.New(slog.DiscardHandler)
}

// TestIdleSessionMemory: an idle SMTP session costs less than 64 KiB.
func TestIdleSessionMemory(t *testing.T) {
	ts := startServer(t, unlimited)
	per := idleSessions(t, ts.addr, 200)
	t.Logf("%.0f bytes per idle session", per)
	if per > 64<<10 {
		t.Errorf("%.0f bytes per idle session, want < 64 KiB", per)
	}
}

// BenchmarkIdleSessionMemory reports the memory of one idle session.
func BenchmarkIdleSessionMemory(b *testing.B) {
	ts := startServer(b, unlimited)
	var per float64
	for b.Loop() {
		per = idleSessions(b, ts.addr, 100)
	}
	b.ReportMetric(per, "B/session")
}
