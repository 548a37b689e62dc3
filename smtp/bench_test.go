package smtp_test

import (
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

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
	users := make([]string, 100)
	for i := range users {
		users[i] = fmt.Sprintf("user%d@example.test", i+1)
	}
	msg := benchMessage(10 << 10)
	for _, sessions := range []int{1, 10} {
		// set up once: b.Run calls its function again for each b.N it tries
		e := startReal(b, users, nil, unlimited)
		for _, u := range users { // first deliveries create the trees: not what is measured
			if err := sendOne(e.ts.addr, u, msg); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			var next atomic.Int64
			var wg sync.WaitGroup
			for range sessions {
				wg.Go(func() {
					for {
						n := next.Add(1)
						if n > int64(b.N) {
							return
						}
						if err := sendOne(e.ts.addr, users[n%100], msg); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
	}
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
