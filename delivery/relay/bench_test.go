package relay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/delivery/queue"
	"github.com/postyard-mail/postyard/delivery/relay"
	"github.com/postyard-mail/postyard/dnsmx"
	"github.com/postyard-mail/postyard/internal/benchmeter"
	"github.com/postyard-mail/postyard/internal/dnstest"
)

// BenchmarkRelay: b.N queued messages of 10 KB, one recipient each, relayed
// by Run to a go-smtp receiver on loopback found by an MX lookup (cached
// after the first), through cached connections, each entry removed once
// delivered: the relay half of the bench harness's relay round. Queueing
// happens before the timer starts (BenchmarkSubmission in smtp is that half).
func BenchmarkRelay(b *testing.B) {
	l2, l3, port := listenPair(b)
	l3.Close()
	rv := startReceiver(b, l2)
	dns := dnstest.Start(b, zone)
	res, err := dnsmx.New(dnsmx.Options{Upstream: dns.Addr, Timeout: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	var body strings.Builder
	body.WriteString("From: <alice@example.test>\r\nSubject: bench\r\n\r\n")
	for body.Len() < 10<<10 {
		body.WriteString("The quick brown fox jumps over the lazy dog, again and again and again.\r\n")
	}
	msg := body.String()
	b.SetBytes(int64(len(msg)))
	q, err := queue.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	for i := range b.N {
		if _, err := q.Enqueue(queue.Envelope{From: "alice@example.test", Recipients: []queue.Recipient{{Addr: fmt.Sprintf("r%d@remote.test", i)}}},
			strings.NewReader(msg), time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	q.TakeFresh() // Run's first scan starts them all
	r, err := relay.New(relay.Options{Queue: q, Resolver: res, Hostname: "mail.example.test", Port: port,
		ConnectTimeout: 2 * time.Second, CommandTimeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	before := len(rv.got())
	meter := benchmeter.Start()
	b.ResetTimer()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Minute)
	for len(rv.got())-before < b.N {
		if time.Now().After(deadline) {
			b.Fatalf("relayed %d of %d", len(rv.got())-before, b.N)
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	meter.Report(b)
}
