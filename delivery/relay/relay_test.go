package relay_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postyard-mail/postyard/delivery/queue"
	"github.com/postyard-mail/postyard/delivery/relay"
	"github.com/postyard-mail/postyard/dnsmx"
	"github.com/postyard-mail/postyard/internal/dnstest"
)

// receiver is a remote MX: a real go-smtp server recording what it gets.
type receiver struct {
	mu   sync.Mutex
	msgs []received
	// rcptReply, when set, decides the reply to a RCPT (nil = accept).
	rcptReply func(rcpt string) *smtp.SMTPError
	// dataDelay is waited after the message is read, before it is recorded
	// and accepted (a slow remote MX).
	dataDelay time.Duration
	srv       *smtp.Server
}

type received struct {
	from  string
	rcpts []string
	data  string
}

func (rv *receiver) NewSession(*smtp.Conn) (smtp.Session, error) { return &rsession{rv: rv}, nil }

type rsession struct {
	rv    *receiver
	from  string
	rcpts []string
}

func (s *rsession) Mail(from string, _ *smtp.MailOptions) error { s.from = from; return nil }
func (s *rsession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rv.mu.Lock()
	f := s.rv.rcptReply
	s.rv.mu.Unlock()
	if f != nil {
		if e := f(to); e != nil {
			return e
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *rsession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.rv.mu.Lock()
	delay := s.rv.dataDelay
	s.rv.mu.Unlock()
	time.Sleep(delay)
	s.rv.mu.Lock()
	s.rv.msgs = append(s.rv.msgs, received{s.from, s.rcpts, string(b)})
	s.rv.mu.Unlock()
	return nil
}
func (s *rsession) Reset()        { s.from, s.rcpts = "", nil }
func (s *rsession) Logout() error { return nil }

func (rv *receiver) setReply(f func(rcpt string) *smtp.SMTPError) {
	rv.mu.Lock()
	rv.rcptReply = f
	rv.mu.Unlock()
}

func (rv *receiver) got() []received {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return append([]received(nil), rv.msgs...)
}

// startReceiver serves SMTP on ip:port.
func startReceiver(t testing.TB, l net.Listener) *receiver {
	t.Helper()
	rv := &receiver{}
	rv.srv = smtp.NewServer(rv)
	rv.srv.Domain = "mx.remote.test"
	rv.srv.ReadTimeout = 10 * time.Second
	rv.srv.WriteTimeout = 10 * time.Second
	go rv.srv.Serve(l)
	t.Cleanup(func() { rv.srv.Close() })
	return rv
}

// listenPair listens on 127.0.0.2 and 127.0.0.3 on one common free port.
func listenPair(t testing.TB) (l2, l3 net.Listener, port int) {
	t.Helper()
	for range 20 {
		a, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skipf("127.0.0.2 not usable: %v", err)
		}
		port = a.Addr().(*net.TCPAddr).Port
		b, err := net.Listen("tcp", "127.0.0.3:"+strconv.Itoa(port))
		if err == nil {
			return a, b, port
		}
		a.Close()
	}
	t.Fatal("no common free port on 127.0.0.2 and 127.0.0.3")
	return nil, nil, 0
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}
func (c *fakeClock) After(time.Duration) <-chan time.Time { return make(chan time.Time) }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type bounceBox struct {
	mu   sync.Mutex
	msgs map[string][]string
}

func (b *bounceBox) deliver(_ context.Context, addr string, msg []byte) (bool, error) {
	if !strings.HasSuffix(addr, "@example.test") {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs[addr] = append(b.msgs[addr], string(msg))
	return true, nil
}

func (b *bounceBox) get(addr string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.msgs[addr]
}

type env struct {
	q      *queue.Queue
	relay  *relay.Relay
	clock  *fakeClock
	dns    *dnstest.Server
	mx1    *receiver // preference 10 at 127.0.0.2
	mx2    *receiver // preference 20 at 127.0.0.3
	bounce *bounceBox
}

// zone has the remote MX hosts (two, and a null MX) of the unit, end-to-end
// and benchmark tests.
const zone = `
remote.test.     300 IN MX 10 mx1.remote.test.
remote.test.     300 IN MX 20 mx2.remote.test.
mx1.remote.test. 300 IN A 127.0.0.2
mx2.remote.test. 300 IN A 127.0.0.3
nullmx.test.     300 IN MX 0 .
`

func setup(t *testing.T, mx1Up bool) *env {
	t.Helper()
	l2, l3, port := listenPair(t)
	e := &env{clock: &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}, bounce: &bounceBox{msgs: map[string][]string{}}}
	if mx1Up {
		e.mx1 = startReceiver(t, l2)
	} else {
		l2.Close() // refused connections on the preferred MX
	}
	e.mx2 = startReceiver(t, l3)
	e.dns = dnstest.Start(t, zone)
	res, err := dnsmx.New(dnsmx.Options{Upstream: e.dns.Addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if e.q, err = queue.Open(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	e.relay, err = relay.New(relay.Options{
		Queue: e.q, Resolver: res, Hostname: "mail.example.test", Port: port,
		Retry: []time.Duration{5 * time.Minute, time.Hour}, MaxLifetime: 24 * time.Hour,
		ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second,
		Clock: e.clock, Local: e.bounce.deliver,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) enqueue(t *testing.T, from string, rcpts ...string) *queue.Envelope {
	t.Helper()
	var rs []queue.Recipient
	for _, r := range rcpts {
		rs = append(rs, queue.Recipient{Addr: r})
	}
	msg := "From: <" + from + ">\r\nTo: <" + rcpts[0] + ">\r\nSubject: hello\r\nMessage-ID: <1@example.test>\r\n\r\n.leading dot\r\nbody\r\n"
	env, err := e.q.Enqueue(queue.Envelope{From: from, Recipients: rs}, strings.NewReader(msg), e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func (e *env) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.relay.RunDue(ctx)
	e.relay.Wait()
}

func TestPreferredMXDownDeliversThroughOther(t *testing.T) {
	e := setup(t, false)
	env := e.enqueue(t, "alice@example.test", "bob@remote.test", "carol@remote.test")
	e.run(t)
	got := e.mx2.got()
	if len(got) != 1 {
		t.Fatalf("mx2 got %d messages, want 1 (one connection for both recipients)", len(got))
	}
	if got[0].from != "alice@example.test" || strings.Join(got[0].rcpts, ",") != "bob@remote.test,carol@remote.test" {
		t.Errorf("envelope = %q %v", got[0].from, got[0].rcpts)
	}
	if !strings.Contains(got[0].data, "\r\n.leading dot\r\n") {
		t.Errorf("dot-stuffing not undone by the receiver: %q", got[0].data)
	}
	if _, err := e.q.Get(env.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("entry still queued after delivery: %v", err)
	}
}

func TestPreferredMXUsedWhenUp(t *testing.T) {
	e := setup(t, true)
	e.enqueue(t, "alice@example.test", "bob@remote.test")
	e.run(t)
	if n1, n2 := len(e.mx1.got()), len(e.mx2.got()); n1 != 1 || n2 != 0 {
		t.Fatalf("mx1 got %d, mx2 got %d; want 1, 0", n1, n2)
	}
}

func TestTemporaryFailureRetriedOnSchedule(t *testing.T) {
	e := setup(t, false)
	var calls int
	e.mx2.setReply(func(string) *smtp.SMTPError {
		calls++
		if calls == 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "greylisted"}
		}
		return nil
	})
	env := e.enqueue(t, "alice@example.test", "bob@remote.test")
	e.run(t)
	got, err := e.q.Get(env.ID)
	if err != nil {
		t.Fatalf("entry gone after a 451: %v", err)
	}
	if got.Recipients[0].State != queue.StatePending || !strings.HasPrefix(got.Recipients[0].Code, "451") {
		t.Fatalf("recipient = %+v, want pending with 451", got.Recipients[0])
	}
	if want := e.clock.Now().Add(5 * time.Minute); !got.NextAttempt.Equal(want) {
		t.Fatalf("next attempt %v, want %v", got.NextAttempt, want)
	}
	e.clock.Advance(4 * time.Minute)
	e.run(t)
	if len(e.mx2.got()) != 0 {
		t.Fatal("retried before the back-off elapsed")
	}
	e.clock.Advance(time.Minute)
	e.run(t)
	if len(e.mx2.got()) != 1 {
		t.Fatalf("not delivered after the retry: %d", len(e.mx2.got()))
	}
	if _, err := e.q.Get(env.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("entry still queued: %v", err)
	}
	if b := e.bounce.get("alice@example.test"); len(b) != 0 {
		t.Errorf("DSN sent for a delivered message: %q", b)
	}
}

func TestPermanentFailureBounces(t *testing.T) {
	e := setup(t, true)
	e.mx1.setReply(func(rcpt string) *smtp.SMTPError {
		if strings.HasPrefix(rcpt, "nobody") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	env := e.enqueue(t, "alice@example.test", "nobody@remote.test", "bob@remote.test")
	e.run(t)
	if got := e.mx1.got(); len(got) != 1 || strings.Join(got[0].rcpts, ",") != "bob@remote.test" {
		t.Fatalf("mx1 got %+v", got)
	}
	dsns := e.bounce.get("alice@example.test")
	if len(dsns) != 1 {
		t.Fatalf("got %d DSNs, want 1", len(dsns))
	}
	for _, want := range []string{
		"Content-Type: multipart/report; report-type=delivery-status",
		"Final-Recipient: rfc822; nobody@remote.test",
		"Action: failed", "Status: 5.1.1", "Remote-MTA: dns; mx1.remote.test",
		"Subject: hello",
	} {
		if !strings.Contains(dsns[0], want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsns[0])
		}
	}
	if strings.Contains(dsns[0], "Final-Recipient: rfc822; bob@remote.test") {
		t.Error("DSN names the delivered recipient")
	}
	if _, err := e.q.Get(env.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("entry still queued: %v", err)
	}
}

func TestNullMXBouncesAtOnce(t *testing.T) {
	e := setup(t, true)
	e.enqueue(t, "alice@example.test", "x@nullmx.test")
	e.run(t)
	dsns := e.bounce.get("alice@example.test")
	if len(dsns) != 1 || !strings.Contains(dsns[0], "Status: 5.1.10") {
		t.Fatalf("DSNs = %q, want one with 5.1.10", dsns)
	}
	if len(e.mx1.got())+len(e.mx2.got()) != 0 {
		t.Fatal("something was sent to an MX")
	}
}

func TestNoBounceToNullSenderAndRemoteBounceQueued(t *testing.T) {
	e := setup(t, true)
	e.enqueue(t, "", "x@nullmx.test")
	e.run(t)
	if envs, _ := e.q.List(); len(envs) != 0 {
		t.Fatalf("a bounce of a bounce was queued: %+v", envs[0])
	}
	// A remote sender's bounce goes through the queue, from the null sender.
	e.enqueue(t, "someone@remote.test", "x@nullmx.test")
	e.run(t)
	envs, _ := e.q.List()
	if len(envs) != 1 || envs[0].From != "" || envs[0].Recipients[0].Addr != "someone@remote.test" {
		t.Fatalf("queue = %+v, want one DSN from <> to someone@remote.test", envs)
	}
}

func TestExpiryBounces(t *testing.T) {
	e := setup(t, false)
	e.mx2.setReply(func(string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
	})
	e.enqueue(t, "alice@example.test", "bob@remote.test")
	for i := 0; i < 40 && len(e.bounce.get("alice@example.test")) == 0; i++ {
		e.run(t)
		e.clock.Advance(time.Hour)
	}
	dsns := e.bounce.get("alice@example.test")
	if len(dsns) != 1 || !strings.Contains(dsns[0], "expired") {
		t.Fatalf("DSNs = %q, want one saying the message expired", dsns)
	}
	if envs, _ := e.q.List(); len(envs) != 0 {
		t.Fatalf("queue not empty after expiry: %d", len(envs))
	}
}

func TestDNSTimeoutDefers(t *testing.T) {
	e := setup(t, true)
	e.dns.Fail("remote.test", 15 /* MX */, dnstest.ServFail)
	env := e.enqueue(t, "alice@example.test", "bob@remote.test")
	e.run(t)
	got, err := e.q.Get(env.ID)
	if err != nil || got.Recipients[0].State != queue.StatePending || !strings.HasPrefix(got.Recipients[0].Code, "451 4.4.3") {
		t.Fatalf("after SERVFAIL: %+v, %v; want deferred 4.4.3", got, err)
	}
	if len(e.bounce.get("alice@example.test")) != 0 {
		t.Fatal("bounced on a temporary DNS failure")
	}
}

func TestManyMessagesReuseConnections(t *testing.T) {
	e := setup(t, true)
	for i := range 30 {
		e.enqueue(t, "alice@example.test", fmt.Sprintf("u%d@remote.test", i))
	}
	e.run(t)
	if n := len(e.mx1.got()); n != 30 {
		t.Fatalf("delivered %d of 30", n)
	}
	if envs, _ := e.q.List(); len(envs) != 0 {
		t.Fatalf("%d entries left", len(envs))
	}
}

// TestRunStartsFreshEntries: Run delivers an entry as soon as it is
// committed, without waiting for a scan of the queue (the clock here never
// fires, so a scan would never come).
func TestRunStartsFreshEntries(t *testing.T) {
	e := setup(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.relay.Run(ctx) }()
	time.Sleep(100 * time.Millisecond) // past Run's first scan of the (empty) queue
	for i := range 3 {
		e.enqueue(t, "alice@example.test", fmt.Sprintf("fresh%d@remote.test", i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(e.mx1.got()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("delivered %d of 3", len(e.mx1.got()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if envs, _ := e.q.List(); len(envs) != 0 {
		t.Fatalf("%d entries left", len(envs))
	}
}

// trackingListener remembers accepted connections so a test can drop them.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) dropAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// TestStaleCachedConnectionRedials: when the remote has closed a cached
// connection, the next message goes over a new one, not into a retry.
func TestStaleCachedConnectionRedials(t *testing.T) {
	l2, l3, port := listenPair(t)
	l3.Close()
	tl := &trackingListener{Listener: l2}
	rv := startReceiver(t, tl)
	dns := dnstest.Start(t, zone)
	res, err := dnsmx.New(dnsmx.Options{Upstream: dns.Addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	r, err := relay.New(relay.Options{Queue: q, Resolver: res, Hostname: "mail.example.test", Port: port,
		ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{q: q, relay: r, clock: clock}
	e.enqueue(t, "alice@example.test", "one@remote.test")
	e.run(t)
	tl.dropAll() // the remote times the idle connection out
	time.Sleep(50 * time.Millisecond)
	e.enqueue(t, "alice@example.test", "two@remote.test")
	e.run(t)
	if n := len(rv.got()); n != 2 {
		t.Fatalf("received %d, want 2", n)
	}
	if envs, _ := q.List(); len(envs) != 0 {
		t.Fatalf("%d entries deferred", len(envs))
	}
}

// TestRunStopsDuringSlowDelivery: at shutdown a delivery waiting on a slow
// remote is given up at once; the entry stays queued for the next start.
func TestRunStopsDuringSlowDelivery(t *testing.T) {
	e := setup(t, true)
	e.mx1.mu.Lock()
	e.mx1.dataDelay = 5 * time.Second
	e.mx1.mu.Unlock()
	env := e.enqueue(t, "alice@example.test", "slow@remote.test")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.relay.Run(ctx) }()
	time.Sleep(300 * time.Millisecond) // the data is sent; the remote is "thinking"
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run still waits on the slow remote after the shutdown")
	}
	got, err := e.q.Get(env.ID)
	if err != nil || len(got.Pending()) != 1 {
		t.Fatalf("entry after the shutdown: %+v, %v; want it still pending", got, err)
	}
}
