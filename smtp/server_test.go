package smtp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/config"
	"github.com/postyard-mail/postyard/smtp"
)

func TestEHLOCapabilities(t *testing.T) {
	ts := startServer(t)
	rc := dialRaw(t, ts.addr)
	rc.send("EHLO client.test\r\n")
	code, lines, err := rc.readReply()
	if err != nil || code != 250 {
		t.Fatalf("EHLO: %d %v %v", code, lines, err)
	}
	caps := strings.Join(lines[1:], "\n")
	for _, want := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE 1048576", "STARTTLS", "CHUNKING", "LIMITS RCPTMAX=10"} {
		if !strings.Contains(caps, want) {
			t.Errorf("EHLO lacks %s:\n%s", want, caps)
		}
	}
	for _, not := range []string{"AUTH", "DSN", "BINARYMIME"} {
		if strings.Contains(caps, not) {
			t.Errorf("EHLO offers %s on the MX:\n%s", not, caps)
		}
	}
}

// TestRcptReplies: the recipient rules, through go-smtp's client, swaks and
// Python's smtplib.
func TestRcptReplies(t *testing.T) {
	ts := startServer(t)
	tests := []struct {
		name, rcpt string
		code       int
		enh        string
	}{
		{"local user", "alice@example.test", 250, "2.0.0"},
		{"tag and domain case", "Alice+news@EXAMPLE.Test", 250, "2.0.0"},
		{"second local domain", "user1@example.test", 250, "2.0.0"},
		{"alias to local users", "team@example.test", 250, "2.0.0"},
		{"unknown local user", "nobody@example.test", 550, "5.1.1"},
		{"unknown user in second domain", "nobody@example.org", 550, "5.1.1"},
		{"other domain is relaying", "someone@elsewhere.example", 554, "5.7.1"},
		{"percent hack is not relayed", "someone%elsewhere.example@example.test", 550, "5.1.1"},
		{"address literal is not ours", "alice@[127.0.0.1]", 554, "5.7.1"},
		{"alias forwarding outside", "forward@example.test", 550, "5.3.5"},
		{"alias partly outside", "mixed@example.test", 550, "5.3.5"},
		{"bad domain syntax", "alice@-example.test", 501, "5.1.3"},
	}
	txs := make([]transaction, len(tests))
	for i, tt := range tests {
		txs[i] = transaction{from: "sender@remote.example", rcpt: tt.rcpt}
	}
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			outs := cl.run(t, ts.addr, txs)
			for i, tt := range tests {
				if o := outs[i]; o.rcptCode != tt.code || o.rcptEnh != tt.enh {
					t.Errorf("%s: RCPT TO:<%s>: %d %s, want %d %s", tt.name, tt.rcpt, o.rcptCode, o.rcptEnh, tt.code, tt.enh)
				}
			}
		})
	}
}

// TestDataReplies: the end-of-DATA replies, through the three clients.
// Each case writes to users of its own, so the copies can be counted.
func TestDataReplies(t *testing.T) {
	var hops strings.Builder
	for i := range 49 {
		fmt.Fprintf(&hops, "Received: from hop%d by hop%d; Mon, 1 Jan 2024 00:00:00 +0000\r\n", i, i+1)
	}
	tests := []struct {
		name   string
		rcpt   string
		data   string
		code   int
		enh    string
		stored map[string]int // copies per user afterwards
	}{
		{"delivered", "user1@example.test", message("hi"), 250, "2.0.0", map[string]int{"user1@example.test": 1}},
		{"alias delivered to each user", "team@example.test", message("team"), 250, "2.0.0", map[string]int{"alice@example.test": 1, "bob@example.test": 1}},
		{"over max_message_size", "user2@example.test", message("big") + strings.Repeat("x\r\n", 2000), 552, "5.3.4", map[string]int{"user2@example.test": 0}},
		{"storage fault undoes every copy", "faulty@example.test", message("fault"), 451, "4.3.0", map[string]int{"user3@example.test": 0, "carol@example.test": 0}},
		{"mail loop", "user4@example.test", hops.String() + message("loop"), 554, "5.4.6", map[string]int{"user4@example.test": 0}},
	}
	txs := make([]transaction, len(tests))
	for i, tt := range tests {
		txs[i] = transaction{from: "sender@remote.example", rcpt: tt.rcpt, data: tt.data}
	}
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			ts := startServer(t, func(o *smtp.Options) { o.Config.MaxMessageSize = 4096 })
			ts.dir.mu.Lock()
			ts.dir.aliases["faulty@example.test"] = accounts.Resolution{Local: []string{"user3@example.test", "carol@example.test"}}
			ts.dir.mu.Unlock()
			ts.store.FailDeliver("carol@example.test", errors.New("no space left on device"))
			outs := cl.run(t, ts.addr, txs)
			for i, tt := range tests {
				o := outs[i]
				if o.rcptCode != 250 {
					t.Errorf("%s: RCPT: %d", tt.name, o.rcptCode)
					continue
				}
				if o.dataCode != tt.code || o.dataEnh != tt.enh {
					t.Errorf("%s: end of DATA: %d %s %q, want %d %s", tt.name, o.dataCode, o.dataEnh, o.dataText, tt.code, tt.enh)
				}
				for user, n := range tt.stored {
					if got := len(ts.store.Messages(user, "")); got != n {
						t.Errorf("%s: %s has %d copies, want %d", tt.name, user, got, n)
					}
				}
			}
		})
	}
}

func TestDeliveredMessage(t *testing.T) {
	ts := startServer(t)
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.remote.example", 250)
	rc.cmd("MAIL FROM:<sender@remote.example>", 250)
	rc.cmd("RCPT TO:<Carol+x@Example.Test>", 250)
	rc.cmd("DATA", 354)
	// bare LF line ends, a bare CR, a NUL and a dot-stuffed line
	rc.send("Subject: test\nFrom: sender@remote.example\n\nline one\nbare\rCR and NUL\x00\r\n..dot\r\n.\r\n")
	text := rc.expect(250)
	if !strings.HasPrefix(text, "2.0.0 Ok: delivered as ") {
		t.Errorf("reply text %q", text)
	}
	id := strings.TrimPrefix(text, "2.0.0 Ok: delivered as ")
	rc.cmd("QUIT", 221)

	msgs := ts.store.Messages("carol@example.test", "INBOX")
	if len(msgs) != 1 {
		t.Fatalf("%d messages for carol", len(msgs))
	}
	body := string(msgs[0].Body)
	head, rest, _ := strings.Cut(body, "Subject: test")
	for _, want := range []string{
		"Return-Path: <sender@remote.example>\r\n",
		"Received: from client.remote.example ([127.0.0.1])\r\n\tby mx.example.test (Postyard) with ESMTP id " + id + "\r\n\tfor <Carol+x@Example.Test>; ",
	} {
		if !strings.Contains(head, want) {
			t.Errorf("trace headers %q lack %q", head, want)
		}
	}
	if want := "\r\nFrom: sender@remote.example\r\n\r\nline one\r\nbare\rCR and NUL\x00\r\n.dot\r\n"; rest != want {
		t.Errorf("content %q, want %q", rest, want)
	}
}

func TestBDAT(t *testing.T) {
	ts := startServer(t, func(o *smtp.Options) { o.Config.MaxMessageSize = 2000 })
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.test", 250)
	rc.cmd("MAIL FROM:<>", 250)
	rc.cmd("RCPT TO:<bob@example.test>", 250)
	part1, part2 := "Subject: chunks\r\n\r\nfirst\n", "second\r\n"
	rc.send(fmt.Sprintf("BDAT %d\r\n%s", len(part1), part1))
	rc.expect(250)
	rc.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(part2), part2))
	rc.expect(250)
	msgs := ts.store.Messages("bob@example.test", "")
	if len(msgs) != 1 || !strings.HasSuffix(string(msgs[0].Body), "Subject: chunks\r\n\r\nfirst\r\nsecond\r\n") {
		t.Fatalf("stored %v", msgs)
	}
	if !strings.HasPrefix(string(msgs[0].Body), "Return-Path: <>\r\n") {
		t.Errorf("null sender not in Return-Path: %q", msgs[0].Body)
	}

	// a chunk over the size limit: 552, nothing stored, the session goes on
	rc.cmd("MAIL FROM:<a@remote.example>", 250)
	rc.cmd("RCPT TO:<bob@example.test>", 250)
	big := strings.Repeat("y", 2500)
	rc.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(big), big))
	if text := rc.expect(552); !strings.HasPrefix(text, "5.3.4") {
		t.Errorf("552 text %q", text)
	}
	rc.cmd("NOOP", 250)
	if n := ts.store.Total(); n != 1 {
		t.Errorf("%d messages stored", n)
	}
}

func TestMailSizeParameter(t *testing.T) {
	ts := startServer(t, func(o *smtp.Options) { o.Config.MaxMessageSize = 2000 })
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.test", 250)
	if text := rc.cmd("MAIL FROM:<a@remote.example> SIZE=2001", 552); !strings.HasPrefix(text, "5.3.4") {
		t.Errorf("text %q", text)
	}
	rc.cmd("MAIL FROM:<a@remote.example> SIZE=2000", 250)
}

func TestMaxRecipients(t *testing.T) {
	ts := startServer(t, func(o *smtp.Options) { o.Config.MaxRecipients = 3 })
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.test", 250)
	rc.cmd("MAIL FROM:<a@remote.example>", 250)
	for i := 1; i <= 3; i++ {
		rc.cmd(fmt.Sprintf("RCPT TO:<user%d@example.test>", i), 250)
	}
	if text := rc.cmd("RCPT TO:<user4@example.test>", 452); !strings.HasPrefix(text, "4.5.3") {
		t.Errorf("text %q", text)
	}
	rc.cmd("DATA", 354)
	rc.send(message("three") + ".\r\n")
	rc.expect(250)
	if n := ts.store.Total(); n != 3 {
		t.Errorf("%d copies, want 3", n)
	}
}

func TestSessionErrors(t *testing.T) {
	ts := startServer(t)
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.test", 250)
	rc.cmd("RCPT TO:<alice@example.test>", 502) // go-smtp: no MAIL yet
	rc.cmd("MAIL FROM:<a@remote.example>", 250)
	if text := rc.cmd("MAIL FROM:<b@remote.example>", 503); !strings.HasPrefix(text, "5.5.1") {
		t.Errorf("nested MAIL: %q", text)
	}
	rc.cmd("RSET", 250)
	if text := rc.cmd("MAIL FROM:<a@-bad>", 501); !strings.HasPrefix(text, "5.1.7") {
		t.Errorf("bad sender: %q", text)
	}
	// non-ASCII addresses need SMTPUTF8 (RFC 6531 §3.5)
	rc.cmd("MAIL FROM:<jö@remote.example>", 553)
	rc.cmd("MAIL FROM:<a@remote.example>", 250)
	if text := rc.cmd("RCPT TO:<jöran@example.test>", 553); !strings.HasPrefix(text, "5.6.7") {
		t.Errorf("non-ASCII RCPT: %q", text)
	}
	rc.cmd("RSET", 250)
	rc.cmd("MAIL FROM:<jö@remote.example> SMTPUTF8", 250)
	rc.cmd("RCPT TO:<jöran@example.test>", 250)
	rc.cmd("DATA", 354)
	rc.send("Subject: ünïcödé\r\n\r\nbody\r\n.\r\n")
	rc.expect(250)
	msgs := ts.store.Messages("jöran@example.test", "")
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Body), "with UTF8SMTP id") {
		t.Errorf("SMTPUTF8 message: %v", msgs)
	}
	// a directory fault is temporary
	ts.dir.mu.Lock()
	ts.dir.fail = errors.New("passwd unreadable")
	ts.dir.mu.Unlock()
	rc.cmd("MAIL FROM:<a@remote.example>", 250)
	if text := rc.cmd("RCPT TO:<alice@example.test>", 451); !strings.HasPrefix(text, "4.3.0") || strings.Contains(text, "passwd") {
		t.Errorf("directory fault: %q", text)
	}
	// the cid is in every error text
	if !strings.HasSuffix(rc.cmd("RCPT TO:<x@elsewhere.example>", 554), ")") {
		t.Error("no connection id in the reply text")
	}
}

func TestPipelining(t *testing.T) {
	ts := startServer(t)
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.test", 250)
	rc.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
	for _, code := range []int{250, 250, 550, 250, 354} {
		rc.expect(code)
	}
	rc.send(message("pipelined") + ".\r\nQUIT\r\n")
	rc.expect(250)
	rc.expect(221)
	if n := ts.store.Total(); n != 2 {
		t.Errorf("%d copies, want 2", n)
	}
}

func TestTooManyErrors(t *testing.T) {
	ts := startServer(t, func(o *smtp.Options) {
		o.Config.MaxErrors = 5
		o.Config.TarpitDelay = 0
	})
	for _, withTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", withTLS), func(t *testing.T) {
			rc := dialRaw(t, ts.addr)
			rc.cmd("EHLO client.test", 250)
			if withTLS {
				rc.startTLS()
			}
			rc.cmd("MAIL FROM:<a@remote.example>", 250)
			for i := range 4 {
				rc.cmd(fmt.Sprintf("RCPT TO:<nobody%d@example.test>", i), 550)
			}
			if text := rc.cmd("RCPT TO:<nobody@example.test>", 421); !strings.HasPrefix(text, "4.7.0") {
				t.Errorf("text %q", text)
			}
			rc.expectClosed()
		})
	}
}

func TestTarpit(t *testing.T) {
	const delay = 40 * time.Millisecond
	ts := startServer(t, func(o *smtp.Options) { o.Config.TarpitDelay = config.Duration(delay) })
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.test", 250)
	rc.cmd("MAIL FROM:<a@remote.example>", 250)
	var took []time.Duration
	for i := range 6 {
		start := time.Now()
		rc.cmd(fmt.Sprintf("RCPT TO:<probe%d@example.test>", i), 550)
		took = append(took, time.Since(start))
	}
	// the first three are free; then delay, 2×delay, 3×delay
	for i, min := range []time.Duration{0, 0, 0, delay, 2 * delay, 3 * delay} {
		if took[i] < min {
			t.Errorf("rejected RCPT %d answered after %v, want at least %v", i+1, took[i], min)
		}
	}
	rc.cmd("RCPT TO:<alice@example.test>", 250) // accepted ones are not slowed
}

func TestConnectionLimits(t *testing.T) {
	ts := startServer(t, func(o *smtp.Options) {
		o.Config.MaxConnections = 3
		o.Config.MaxConnectionsPerIP = 2
	})
	a := dialRaw(t, ts.addr)
	dialRaw(t, ts.addr)
	// the third from 127.0.0.1 is over the per-IP limit
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc := &rawClient{t: t, c: c}
	rc.r = newReader(c)
	if text := rc.expect(421); !strings.HasPrefix(text, "4.7.0") || !strings.Contains(text, "too many connections") {
		t.Errorf("text %q", text)
	}
	rc.expectClosed()
	// a slot frees when a client leaves
	a.cmd("QUIT", 221)
	waitFor(t, func() bool {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			return false
		}
		defer c.Close()
		r := &rawClient{t: t, c: c, r: newReader(c)}
		code, _, _ := r.readReply()
		return code == 220
	})
}

func TestCommandTimeout(t *testing.T) {
	ts := startServer(t, func(o *smtp.Options) { o.Config.CommandTimeout = config.Duration(200 * time.Millisecond) })
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.test", 250)
	time.Sleep(100 * time.Millisecond)
	rc.cmd("NOOP", 250) // each command renews the timeout
	if text := rc.expect(421); !strings.HasPrefix(text, "4.4.2") {
		t.Errorf("text %q", text)
	}
	rc.expectClosed()
}

func TestDataTimeout(t *testing.T) {
	ts := startServer(t, func(o *smtp.Options) { o.Config.DataTimeout = config.Duration(300 * time.Millisecond) })
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.test", 250)
	rc.cmd("MAIL FROM:<a@remote.example>", 250)
	rc.cmd("RCPT TO:<alice@example.test>", 250)
	rc.cmd("DATA", 354)
	for range 3 { // slow but steady: each read renews the timeout
		rc.send("Subject: slow\r\n")
		time.Sleep(150 * time.Millisecond)
	}
	// then silence
	if text := rc.expect(421); !strings.HasPrefix(text, "4.4.2") {
		t.Errorf("text %q", text)
	}
	rc.expectClosed()
	if ts.store.Total() != 0 {
		t.Error("a timed-out message was delivered")
	}
}

func TestLongLine(t *testing.T) {
	ts := startServer(t, func(o *smtp.Options) { o.Config.MaxMessageSize = 1 << 20 })
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.test", 250)
	rc.cmd("MAIL FROM:<a@remote.example>", 250)
	rc.cmd("RCPT TO:<alice@example.test>", 250)
	rc.cmd("DATA", 354)
	// 20000-byte lines are accepted (RFC 5321 says 1000; Postfix takes any)
	long := strings.Repeat("a", 20000)
	rc.send("Subject: long\r\n\r\n" + long + "\r\n.\r\n")
	rc.expect(250)
	if m := ts.store.Messages("alice@example.test", ""); len(m) != 1 || !strings.Contains(string(m[0].Body), long+"\r\n") {
		t.Fatal("long line not delivered intact")
	}
	rc.cmd("MAIL FROM:<a@remote.example>", 250)
	rc.cmd("RCPT TO:<alice@example.test>", 250)
	rc.cmd("DATA", 354)
	go rc.send("Subject: too long\r\n\r\n" + strings.Repeat("b", 70000) + "\r\n.\r\n")
	if text := rc.expect(554); !strings.HasPrefix(text, "5.6.0") {
		t.Errorf("text %q", text)
	}
	rc.expectClosed()
	if n := ts.store.Total(); n != 1 {
		t.Errorf("%d messages stored", n)
	}
}

func TestSTARTTLS(t *testing.T) {
	ts := startServer(t)
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			o := cl.run(t, ts.addr, []transaction{{from: "tls@remote.example", rcpt: "bob@example.test", data: message("over TLS"), starttls: true}})
			if o[0].dataCode != 250 {
				t.Fatalf("end of DATA: %d %s", o[0].dataCode, o[0].dataText)
			}
		})
	}
	msgs := ts.store.Messages("bob@example.test", "")
	if len(msgs) != len(clients) {
		t.Fatalf("%d messages, want %d", len(msgs), len(clients))
	}
	for _, m := range msgs {
		if !strings.Contains(string(m.Body), "\r\n\t(using TLSv1.3 with cipher ") || !strings.Contains(string(m.Body), " with ESMTPS id ") {
			t.Errorf("Received lacks the TLS details:\n%s", m.Body)
		}
	}
}

func TestShutdown(t *testing.T) {
	ts := startServer(t)
	idle := dialRaw(t, ts.addr)
	idle.cmd("EHLO idle.client.test", 250)
	fresh := dialRaw(t, ts.addr) // no EHLO yet
	idleTLS := dialRaw(t, ts.addr)
	idleTLS.cmd("EHLO idle.client.test", 250)
	idleTLS.startTLS()

	busy := dialRaw(t, ts.addr)
	busy.cmd("EHLO busy.client.test", 250)
	busy.cmd("MAIL FROM:<a@remote.example>", 250)
	busy.cmd("RCPT TO:<alice@example.test>", 250)
	busy.cmd("DATA", 354)
	busy.send("Subject: in flight\r\n\r\n")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- ts.srv.Shutdown(ctx)
	}()
	for _, rc := range []*rawClient{idle, fresh, idleTLS} {
		if text := rc.expect(421); !strings.HasPrefix(text, "4.3.2") {
			t.Errorf("idle client got %q", text)
		}
		rc.expectClosed()
	}
	// new connections are refused
	if c, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		c.Close()
		t.Error("still accepting after Shutdown")
	}
	// the transaction under way completes, then the connection closes
	busy.send("body\r\n.\r\n")
	busy.expect(250)
	busy.expectClosed()
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if n := ts.store.Total(); n != 1 {
		t.Errorf("%d messages stored, want the one in flight", n)
	}
}

func TestShutdownDeadline(t *testing.T) {
	ts := startServer(t)
	stalled := dialRaw(t, ts.addr)
	stalled.cmd("EHLO client.test", 250)
	stalled.cmd("MAIL FROM:<a@remote.example>", 250) // a transaction that never ends
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := ts.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	stalled.expectClosed()
}

func TestConcurrentSessions(t *testing.T) {
	ts := startServer(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			o := runGoSMTP(t, ts.addr, transaction{from: "a@remote.example", rcpt: fmt.Sprintf("user%d@example.test", i%5+1), data: message(fmt.Sprint(i))})
			if o.dataCode != 250 {
				t.Errorf("session %d: %d %s", i, o.dataCode, o.dataText)
			}
		})
	}
	wg.Wait()
	if n := ts.store.Total(); n != 20 {
		t.Errorf("%d messages, want 20", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
