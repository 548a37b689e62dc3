package delivery_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/delivery"
	"github.com/postyard-mail/postyard/delivery/deliverytest"
)

func newLocal(t *testing.T, store delivery.Store, memLimit int) *delivery.Local {
	t.Helper()
	l, err := delivery.NewLocal(delivery.LocalOptions{Store: store, SpoolDir: t.TempDir(), MemoryLimit: memLimit})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func spoolOf(t *testing.T, l *delivery.Local, content string) *delivery.Spool {
	t.Helper()
	sp := l.NewSpool()
	t.Cleanup(func() { _ = sp.Close() })
	if _, err := io.WriteString(sp, content); err != nil {
		t.Fatal(err)
	}
	return sp
}

var when = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func envelope(rcpts ...delivery.Recipient) *delivery.Envelope {
	return &delivery.Envelope{
		ID: "abc.1", From: "sender@remote.example", Recipients: rcpts,
		Trace: delivery.Trace{By: "mx.example.test", Helo: "client.remote.example", RemoteIP: netip.MustParseAddr("192.0.2.7"), ESMTP: true, Time: when},
	}
}

const content = "Subject: hello\r\n\r\nbody\r\n"

func TestDeliverOne(t *testing.T) {
	store := deliverytest.NewMemStore()
	l := newLocal(t, store, 0)
	env := envelope(delivery.Recipient{Address: "Bob+news@Example.Test", User: "bob@example.test"})
	if err := l.Deliver(context.Background(), env, spoolOf(t, l, content)); err != nil {
		t.Fatal(err)
	}
	msgs := store.Messages("bob@example.test", "INBOX")
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	want := "Return-Path: <sender@remote.example>\r\n" +
		"Received: from client.remote.example ([192.0.2.7])\r\n" +
		"\tby mx.example.test (Postyard) with ESMTP id abc.1\r\n" +
		"\tfor <Bob+news@Example.Test>; Tue, 04 Mar 2025 05:06:07 +0000\r\n" + content
	if got := string(msgs[0].Body); got != want {
		t.Errorf("stored\n%q\nwant\n%q", got, want)
	}
}

// TestDeliverHeader: Envelope.Header goes after the trace fields, before
// the message, into every copy and folder.
func TestDeliverHeader(t *testing.T) {
	store := deliverytest.NewMemStore()
	l := newLocal(t, store, 0)
	env := envelope(delivery.Recipient{Address: "a@example.test", User: "a@example.test", Folder: "Junk"},
		delivery.Recipient{Address: "b@example.test", User: "b@example.test"})
	env.Header = "Authentication-Results: mx.example.test;\r\n\tspf=pass smtp.mailfrom=sender@remote.example\r\n"
	if err := l.Deliver(context.Background(), env, spoolOf(t, l, content)); err != nil {
		t.Fatal(err)
	}
	for _, box := range []struct{ user, folder string }{{"a@example.test", "Junk"}, {"b@example.test", "INBOX"}} {
		msgs := store.Messages(box.user, box.folder)
		if len(msgs) != 1 {
			t.Fatalf("%s/%s: %d messages, want 1", box.user, box.folder, len(msgs))
		}
		want := "; Tue, 04 Mar 2025 05:06:07 +0000\r\n" + env.Header + content
		if got := string(msgs[0].Body); !strings.HasPrefix(got, "Return-Path: ") || !strings.HasSuffix(got, want) {
			t.Errorf("%s/%s: stored\n%q\nwant it to end in\n%q", box.user, box.folder, got, want)
		}
	}
}

func TestDeliverManyOneCopyEach(t *testing.T) {
	store := deliverytest.NewMemStore()
	l := newLocal(t, store, 0)
	env := envelope(
		delivery.Recipient{Address: "a@example.test", User: "a@example.test"},
		delivery.Recipient{Address: "team@example.test", User: "a@example.test"}, // alias naming a again
		delivery.Recipient{Address: "team@example.test", User: "b@example.test"},
		delivery.Recipient{Address: "B@example.test", User: "B@example.test"}, // same user, other case
		delivery.Recipient{Address: "c@example.test", User: "c@example.test", Folder: "Junk"},
	)
	if err := l.Deliver(context.Background(), env, spoolOf(t, l, content)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, folder string
		n            int
	}{{"a@example.test", "INBOX", 1}, {"b@example.test", "INBOX", 1}, {"c@example.test", "Junk", 1}, {"c@example.test", "INBOX", 0}} {
		msgs := store.Messages(c.user, c.folder)
		if len(msgs) != c.n {
			t.Errorf("%s/%s: %d messages, want %d", c.user, c.folder, len(msgs), c.n)
		}
		for _, m := range msgs {
			if bytes.Contains(m.Body, []byte("\tfor <")) {
				t.Errorf("%s: Received names a recipient of a multi-recipient message", c.user)
			}
			if !bytes.HasSuffix(m.Body, []byte(content)) {
				t.Errorf("%s: content changed: %q", c.user, m.Body)
			}
		}
	}
	if store.Total() != 3 {
		t.Errorf("%d copies, want 3", store.Total())
	}
}

// TestDeliverFaultLeavesNothing: a storage fault on one copy undoes the
// copies already made.
func TestDeliverFaultLeavesNothing(t *testing.T) {
	diskFull := errors.New("no space left on device")
	for _, tt := range []struct {
		name   string
		inject func(*deliverytest.MemStore)
	}{
		{"deliver fails", func(s *deliverytest.MemStore) { s.FailDeliver("u7@example.test", diskFull) }},
		{"open fails", func(s *deliverytest.MemStore) { s.FailOpen("u7@example.test", diskFull) }},
	} {
		for _, parallel := range []int{1, 4} {
			t.Run(tt.name, func(t *testing.T) {
				store := deliverytest.NewMemStore()
				tt.inject(store)
				l, err := delivery.NewLocal(delivery.LocalOptions{Store: store, SpoolDir: t.TempDir(), Parallel: parallel})
				if err != nil {
					t.Fatal(err)
				}
				var rcpts []delivery.Recipient
				for _, u := range []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"} {
					rcpts = append(rcpts, delivery.Recipient{Address: u + "@example.test", User: u + "@example.test"})
				}
				err = l.Deliver(context.Background(), envelope(rcpts...), spoolOf(t, l, content))
				if !errors.Is(err, diskFull) {
					t.Fatalf("err = %v, want the injected fault", err)
				}
				if !strings.Contains(err.Error(), "u7@example.test") {
					t.Errorf("error %q does not name the recipient", err)
				}
				if n := store.Total(); n != 0 {
					t.Errorf("%d copies left behind after the fault", n)
				}
			})
		}
	}
}

func TestDeliverUndoFailureStillFails(t *testing.T) {
	store := deliverytest.NewMemStore()
	store.FailDeliver("b@example.test", errors.New("EIO"))
	store.FailExpunge("a@example.test", errors.New("EIO on expunge"))
	l, err := delivery.NewLocal(delivery.LocalOptions{Store: store, SpoolDir: t.TempDir(), Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	env := envelope(delivery.Recipient{Address: "a@example.test", User: "a@example.test"}, delivery.Recipient{Address: "b@example.test", User: "b@example.test"})
	if err := l.Deliver(context.Background(), env, spoolOf(t, l, content)); err == nil {
		t.Fatal("Deliver succeeded with a failing copy")
	}
	// a's copy could not be undone: it stays (a duplicate after the retry beats a loss)
	if n := len(store.Messages("a@example.test", "")); n != 1 {
		t.Errorf("a has %d messages, want the 1 that could not be undone", n)
	}
}

func TestDeliverCancelled(t *testing.T) {
	store := deliverytest.NewMemStore()
	l := newLocal(t, store, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := l.Deliver(ctx, envelope(delivery.Recipient{Address: "a@example.test", User: "a@example.test"}), spoolOf(t, l, content))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if store.Total() != 0 {
		t.Error("delivered despite the cancelled context")
	}
}

func TestDeliverNoRecipients(t *testing.T) {
	l := newLocal(t, deliverytest.NewMemStore(), 0)
	if err := l.Deliver(context.Background(), envelope(), spoolOf(t, l, content)); !errors.Is(err, delivery.ErrNoRecipients) {
		t.Fatalf("err = %v", err)
	}
}

func TestSpool(t *testing.T) {
	for _, tt := range []struct {
		name     string
		size     int
		inMemory bool
	}{
		{"small stays in memory", 1000, true},
		{"at the limit stays in memory", 4096, true},
		{"large spills to an unlinked file", 50000, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := delivery.NewLocal(delivery.LocalOptions{Store: deliverytest.NewMemStore(), SpoolDir: dir, MemoryLimit: 4096})
			if err != nil {
				t.Fatal(err)
			}
			want := bytes.Repeat([]byte("0123456789abcdef\r\n"), tt.size/18+1)[:tt.size]
			sp := l.NewSpool()
			for chunk := range slicesChunk(want, 1000) {
				if _, err := sp.Write(chunk); err != nil {
					t.Fatal(err)
				}
			}
			if sp.Size() != int64(tt.size) || sp.InMemory() != tt.inMemory {
				t.Fatalf("size %d in memory %v, want %d %v", sp.Size(), sp.InMemory(), tt.size, tt.inMemory)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("spool directory holds %d entries; spool files must be unlinked", len(ents))
			}
			var wg sync.WaitGroup
			for range 4 { // independent concurrent readers
				wg.Go(func() {
					got, err := io.ReadAll(sp.NewReader())
					if err != nil || !bytes.Equal(got, want) {
						t.Errorf("read back %d bytes (err %v), want %d", len(got), err, len(want))
					}
				})
			}
			wg.Wait()
			if err := sp.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := sp.Write([]byte("x")); err == nil {
				t.Error("write after Close succeeded")
			}
		})
	}
}

func slicesChunk(b []byte, n int) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			k := min(n, len(b))
			if !yield(b[:k]) {
				return
			}
			b = b[k:]
		}
	}
}

func TestTraceHeaders(t *testing.T) {
	tls13 := &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}
	tests := []struct {
		name  string
		env   delivery.Envelope
		lines []string // substrings expected
	}{
		{"null sender", delivery.Envelope{From: "", Trace: delivery.Trace{ESMTP: true}}, []string{"Return-Path: <>\r\n", "from unknown (unknown)", "with ESMTP"}},
		{"HELO", delivery.Envelope{Trace: delivery.Trace{Helo: "h"}}, []string{"with SMTP;"}},
		{"IPv6", delivery.Envelope{Trace: delivery.Trace{ESMTP: true, RemoteIP: netip.MustParseAddr("2001:db8::1")}}, []string{"([IPv6:2001:db8::1])"}},
		{"IPv4 in IPv6", delivery.Envelope{Trace: delivery.Trace{ESMTP: true, RemoteIP: netip.MustParseAddr("::ffff:192.0.2.1")}}, []string{"([192.0.2.1])"}},
		{"TLS", delivery.Envelope{Trace: delivery.Trace{ESMTP: true, TLS: tls13}}, []string{"\r\n\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)\r\n", "with ESMTPS"}},
		{"TLS auth UTF8", delivery.Envelope{Trace: delivery.Trace{ESMTP: true, TLS: tls13, Authenticated: true, UTF8: true}}, []string{"with UTF8SMTPSA"}},
		{"auth", delivery.Envelope{Trace: delivery.Trace{ESMTP: true, Authenticated: true}}, []string{"with ESMTPA"}},
		{"hostile HELO", delivery.Envelope{Trace: delivery.Trace{Helo: "evil)\r\nX-Injected: (yes\\"}}, []string{"from evil???X-Injected: ?yes? ("}},
		{"hostile sender", delivery.Envelope{From: "a\r\nb@c"}, []string{"Return-Path: <a??b@c>\r\n"}},
		{"one recipient named", delivery.Envelope{ID: "q.1", Recipients: []delivery.Recipient{{Address: "x@y"}}}, []string{" id q.1\r\n\tfor <x@y>; "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := delivery.TraceHeaders(&tt.env)
			for _, want := range tt.lines {
				if !strings.Contains(h, want) {
					t.Errorf("headers\n%q\nlack %q", h, want)
				}
			}
			if strings.Count(h, "\n") != strings.Count(h, "\r\n") {
				t.Errorf("bare LF in %q", h)
			}
			for i, line := range strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n") {
				if i > 1 && !strings.HasPrefix(line, "\t") {
					t.Errorf("line %q starts a new field; injection?", line)
				}
			}
		})
	}
}
