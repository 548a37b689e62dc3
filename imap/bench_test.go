package imap_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	gimap "github.com/postyard-mail/postyard/imap"
)

// fillMaildir writes n small messages straight into a user's cur/, the
// way another delivery agent (or a migration) leaves a Maildir; every
// third one is \Seen.
func fillMaildir(b *testing.B, ts *testServer, user string, n int) {
	b.Helper()
	ts.mailbox(b, user, "INBOX") // creates the tree
	local, domain, _ := strings.Cut(user, "@")
	dir := filepath.Join(ts.dataDir, "mail", domain, local, "cur")
	base := time.Now().Add(-time.Duration(n) * time.Second).Unix()
	for i := range n {
		msg := testMessage(fmt.Sprintf("bulk %d", i), "a message for the benchmark")
		flags := ""
		if i%3 == 0 {
			flags = "S"
		}
		name := fmt.Sprintf("%d.M%dP1.bench,S=%d,W=%d:2,%s", base+int64(i), i, len(msg), len(msg), flags)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(msg), 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

// lineCounter reads responses without keeping them.
type lineCounter struct {
	c  net.Conn
	br *bufio.Reader
}

// until reads lines up to the tagged completion of tag and returns how many
// untagged lines came before it.
func (l *lineCounter) until(b *testing.B, tag string) int {
	b.Helper()
	_ = l.c.SetReadDeadline(time.Now().Add(time.Minute))
	n := 0
	prefix := []byte(tag + " ")
	for {
		line, err := l.br.ReadSlice('\n')
		if err != nil {
			b.Fatalf("read: %v", err)
		}
		if bytes.HasPrefix(line, prefix) {
			if !bytes.HasPrefix(line[len(prefix):], []byte("OK")) {
				b.Fatalf("%s", line)
			}
			return n
		}
		n++
	}
}

// BenchmarkSelectFetchFlags100k: SELECT and FETCH 1:* (FLAGS) of a
// 100,000-message folder, warm (the store's index is loaded). Target: < 200 ms.
func BenchmarkSelectFetchFlags100k(b *testing.B) {
	const n = 100_000
	ts := startServer(b, nil)
	fillMaildir(b, ts, alice, n)
	start := time.Now()
	snap, err := ts.mailbox(b, alice, "INBOX").Snapshot()
	if err != nil || len(snap.Messages) != n {
		b.Fatalf("index: %d messages, %v", len(snap.Messages), err)
	}
	b.Logf("first index of %d messages: %v", n, time.Since(start))
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	l := &lineCounter{c: c, br: bufio.NewReaderSize(c, 64<<10)}
	if _, err := l.br.ReadSlice('\n'); err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(c, "l LOGIN %s \"%s\"\r\n", alice, password)
	l.until(b, "l")
	b.ResetTimer()
	for b.Loop() {
		fmt.Fprintf(c, "s SELECT INBOX\r\nf FETCH 1:* (FLAGS)\r\n")
		l.until(b, "s")
		if got := l.until(b, "f"); got != n {
			b.Fatalf("%d FETCH responses, want %d", got, n)
		}
	}
}

// BenchmarkIdleConnections: heap and stacks per logged-in session in IDLE
// on INBOX, 1,000 connections. Target: < 64 KiB each.
func BenchmarkIdleConnections(b *testing.B) {
	const conns = 1000
	ts := startServer(b, func(o *gimap.Options) { o.MaxConnectionsPerUser = 0 })
	for i := range 10 {
		ts.deliver(b, alice, "INBOX", testMessage(fmt.Sprint("m", i), "x"))
	}
	buf := make([]byte, 4096)
	open := func() net.Conn {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(c, "a LOGIN %s \"%s\"\r\nb SELECT INBOX\r\nc IDLE\r\n", alice, password)
		var got []byte
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		for !bytes.Contains(got, []byte("\r\n+ ")) {
			k, err := c.Read(buf)
			if err != nil {
				b.Fatalf("read: %v (%q)", err, got)
			}
			got = append(got, buf[:k]...)
		}
		return c
	}
	var perConn, gPerConn float64
	for b.Loop() {
		before, gBefore := inUse()
		cs := make([]net.Conn, conns)
		for i := range cs {
			cs[i] = open()
		}
		after, gAfter := inUse()
		perConn = float64(after-before) / conns
		gPerConn = float64(gAfter-gBefore) / conns
		for _, c := range cs {
			c.Close()
		}
		// Let the sessions end before the next round measures.
		deadline := time.Now().Add(30 * time.Second)
		for runtime.NumGoroutine() > gBefore+5 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	b.ReportMetric(perConn, "B/conn")
	b.ReportMetric(gPerConn, "goroutines/conn")
}

// inUse is the live heap plus goroutine stacks after a GC, and the
// number of goroutines.
func inUse() (uint64, int) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse, runtime.NumGoroutine()
}
