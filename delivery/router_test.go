package delivery_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/postyard-mail/postyard/accounts"
	"github.com/postyard-mail/postyard/delivery"
	"github.com/postyard-mail/postyard/delivery/deliverytest"
	"github.com/postyard-mail/postyard/delivery/queue"
)

func newRouter(t *testing.T) (*delivery.Router, *deliverytest.MemStore, *queue.Queue) {
	t.Helper()
	store := deliverytest.NewMemStore()
	q, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return delivery.NewRouter(newLocal(t, store, 0), q, nil), store, q
}

func queuedMessage(t *testing.T, q *queue.Queue, id string) string {
	t.Helper()
	f, err := q.OpenMessage(id)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRouterLocalAndRemote(t *testing.T) {
	r, store, q := newRouter(t)
	if !r.QueuesRemote() {
		t.Fatal("QueuesRemote = false with a queue")
	}
	env := envelope(delivery.Recipient{Address: "bob@example.test", User: "bob@example.test"})
	env.Remote = []string{"carol@remote.example"}
	env.User = "alice@example.test"
	env.Header = "DKIM-Signature: v=1; d=example.test\r\n"
	sp := r.NewSpool()
	defer sp.Close()
	io.WriteString(sp, content)
	if err := r.Deliver(context.Background(), env, sp); err != nil {
		t.Fatal(err)
	}
	if env.QueueID == "" {
		t.Fatal("QueueID not set")
	}
	if n := len(store.Messages("bob@example.test", "INBOX")); n != 1 {
		t.Fatalf("local copies: %d", n)
	}
	qe, err := q.Get(env.QueueID)
	if err != nil {
		t.Fatal(err)
	}
	if qe.From != env.From || qe.User != "alice@example.test" || len(qe.Recipients) != 1 || qe.Recipients[0].Addr != "carol@remote.example" {
		t.Fatalf("queued envelope %+v", qe)
	}
	msg := queuedMessage(t, q, env.QueueID)
	if strings.Contains(msg, "Return-Path") {
		t.Errorf("queued copy has a Return-Path:\n%s", msg)
	}
	if !strings.HasPrefix(msg, "Received: from client.remote.example") || !strings.Contains(msg, "for <carol@remote.example>") ||
		!strings.HasSuffix(msg, "\r\nDKIM-Signature: v=1; d=example.test\r\n"+content) {
		t.Errorf("queued copy:\n%q", msg)
	}
}

func TestRouterAbortsQueueWhenLocalFails(t *testing.T) {
	r, store, q := newRouter(t)
	store.FailDeliver("bob@example.test", errors.New("disk full"))
	env := envelope(delivery.Recipient{Address: "bob@example.test", User: "bob@example.test"})
	env.Remote = []string{"carol@remote.example"}
	sp := r.NewSpool()
	defer sp.Close()
	io.WriteString(sp, content)
	if err := r.Deliver(context.Background(), env, sp); err == nil {
		t.Fatal("Deliver succeeded with a failing local copy")
	}
	if envs, _ := q.List(); len(envs) != 0 {
		t.Fatalf("queue entry left after the local failure: %+v", envs)
	}
	if ids := q.TakeFresh(); len(ids) != 0 {
		t.Fatalf("aborted entry announced: %v", ids)
	}
}

func TestRouterWithoutQueue(t *testing.T) {
	store := deliverytest.NewMemStore()
	r := delivery.NewRouter(newLocal(t, store, 0), nil, nil)
	if r.QueuesRemote() {
		t.Fatal("QueuesRemote = true without a queue")
	}
	env := envelope()
	env.Remote = []string{"x@remote.example"}
	sp := r.NewSpool()
	defer sp.Close()
	if err := r.Deliver(context.Background(), env, sp); err == nil {
		t.Fatal("remote recipient accepted without a queue")
	}
}

type dsnDir struct{}

func (dsnDir) IsLocalDomain(d string) bool { return d == "example.test" }
func (dsnDir) Resolve(addr string) (accounts.Resolution, error) {
	switch addr {
	case "alice@example.test":
		return accounts.Resolution{Local: []string{"alice@example.test"}}, nil
	case "fwd@example.test":
		return accounts.Resolution{Remote: []string{"x@remote.example"}}, nil
	}
	return accounts.Resolution{}, accounts.ErrNoSuchUser
}

func TestLocalDSN(t *testing.T) {
	r, store, _ := newRouter(t)
	deliver := r.LocalDSN(dsnDir{}, "mail.example.test")
	dsn := []byte("Subject: Undelivered Mail Returned to Sender\r\n\r\nsorry\r\n")
	cases := []struct {
		addr    string
		handled bool
	}{
		{"alice@example.test", true},
		{"gone@example.test", true}, // dropped: nobody to tell
		{"fwd@example.test", false}, // queued by the relay
		{"someone@remote.example", false},
	}
	for _, c := range cases {
		ok, err := deliver(context.Background(), c.addr, dsn)
		if err != nil || ok != c.handled {
			t.Errorf("%s: handled %v, %v; want %v", c.addr, ok, err, c.handled)
		}
	}
	msgs := store.Messages("alice@example.test", "INBOX")
	if len(msgs) != 1 || !strings.HasPrefix(string(msgs[0].Body), "Return-Path: <>\r\nReceived: ") ||
		!strings.HasSuffix(string(msgs[0].Body), string(dsn)) {
		t.Fatalf("alice's INBOX: %+v", msgs)
	}
}
