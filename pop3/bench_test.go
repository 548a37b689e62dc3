package pop3_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/pop3"
)

// bigMessage is a message of about size bytes: a header and a base64
// attachment in 76-character lines, as a 20 MB mail really looks.
func bigMessage(size int) string {
	var b strings.Builder
	b.Grow(size + 1024)
	b.WriteString("From: sender@example.org\r\nTo: alice@example.test\r\nSubject: big\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	rng := rand.New(rand.NewPCG(1, 2))
	raw := make([]byte, 57) // 57 bytes → 76 base64 characters
	line := make([]byte, 76)
	for b.Len() < size {
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		base64.StdEncoding.Encode(line, raw)
		b.Write(line)
		b.WriteString("\r\n")
	}
	return b.String()
}

// readMultiLine reads a multi-line reply to its terminating ".\r\n" through
// a fixed buffer and returns the octets read (dot-stuffing included).
func readMultiLine(r io.Reader, buf []byte) (int64, error) {
	const term = "\r\n.\r\n"
	var n int64
	var probe [9]byte // the last 4 octets of the previous chunks, then the first 5 of this one
	have := 0
	for {
		k, err := r.Read(buf)
		if k > 0 {
			n += int64(k)
			chunk := buf[:k]
			// The terminator may straddle chunks.
			m := have + copy(probe[have:], chunk[:min(k, 5)])
			if bytes.Contains(probe[:m], []byte(term)) || bytes.HasSuffix(chunk, []byte(term)) {
				return n, nil
			}
			if m >= 4 && k < 4 {
				copy(probe[:], probe[m-4:m])
				have = 4
			} else if k >= 4 {
				have = copy(probe[:], chunk[k-4:])
			} else {
				have = m
			}
		}
		if err != nil {
			return n, err
		}
	}
}

// BenchmarkRetr20MB retrieves a 20 MB message over loopback, repeatedly, in
// one session, without and with TLS. MB/s is the throughput; heap-peak-KiB is the largest growth
// of the live heap (sampled every 5 ms) over the level before the first RETR.
func BenchmarkRetr20MB(b *testing.B) {
	e := newEnv(b, withOptions(func(o *pop3.Options) { o.Logger = nil }))
	msg := bigMessage(20 << 20)
	e.deliver(alice, msg)
	b.Run("plain", func(b *testing.B) { benchRetr(b, e.dial(b), msg) })
	b.Run("tls", func(b *testing.B) { benchRetr(b, e.dialTLS(b), msg) })
}

func benchRetr(b *testing.B, c *client, msg string) {
	c.login(alice, alicePW)
	buf := make([]byte, 64<<10)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()

	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c.send("RETR 1")
		status, err := c.r.ReadString('\n')
		if err != nil || !strings.HasPrefix(status, "+OK ") {
			b.Fatalf("RETR: %q, %v", status, err)
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
		n, err := readMultiLine(c.r, buf)
		if err != nil {
			b.Fatalf("reading the message: %v after %d octets", err, n)
		}
		if n < int64(len(msg)) {
			b.Fatalf("read %d octets, message has %d", n, len(msg))
		}
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	if p := peak.Load(); p > base {
		b.ReportMetric(float64(p-base)/1024, "heap-peak-KiB")
	} else {
		b.ReportMetric(0, "heap-peak-KiB")
	}
	c.quit()
}

// BenchmarkSession10000 is one pop3-load session on a maildrop of 10000
// messages: connect, USER, PASS, STAT, UIDL, RETR of one message, QUIT.
// The messages are dropped into cur/ as another MDA would (no fsync), and
// indexed by the store on the first login.
func BenchmarkSession10000(b *testing.B) {
	e := newEnv(b, withOptions(func(o *pop3.Options) { o.Logger = nil }))
	e.inbox(alice) // creates the maildir
	cur := filepath.Join(e.dataDir, "mail", "example.test", "alice", "cur")
	for i := range 10000 {
		msg := testMessage(fmt.Sprint("message ", i), strings.Repeat("body line\r\n", 50))
		name := fmt.Sprintf("17000%05d.M%dP1.bench,S=%d,W=%d:2,S", i, i, len(msg), len(msg))
		if err := os.WriteFile(filepath.Join(cur, name), []byte(msg), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]byte, 64<<10)
	session := func() {
		c := e.dial(b)
		c.login(alice, alicePW)
		if got := c.ok("STAT"); !strings.HasPrefix(got, "10000 ") {
			b.Fatalf("STAT: %q", got)
		}
		// Read the listings through a fixed buffer: the figure is the server's.
		for _, cmd := range []string{"UIDL", "RETR 5000"} {
			c.ok(cmd)
			n, err := readMultiLine(c.r, buf)
			if err != nil || (cmd == "UIDL" && n < int64(10000*len("1 000000016b04993f\r\n"))) {
				b.Fatalf("%s: %d octets, %v", cmd, n, err)
			}
		}
		c.quit()
	}
	session() // the first login indexes the maildir
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		session()
	}
}
