package queue_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/delivery/queue"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestEnqueueGetUpdateDelete(t *testing.T) {
	q, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env, err := q.Enqueue(queue.Envelope{From: "a@x.test", Recipients: []queue.Recipient{{Addr: "b@y.test"}, {Addr: "c@y.test"}}}, strings.NewReader("Subject: x\r\n\r\nhi\r\n"), now)
	if err != nil {
		t.Fatal(err)
	}
	if !queue.ValidID(env.ID) || env.Size != 18 || !env.NextAttempt.Equal(now) {
		t.Fatalf("envelope = %+v", env)
	}
	select {
	case <-q.Notify():
	default:
		t.Error("Enqueue did not notify")
	}
	got, err := q.Get(env.ID)
	if err != nil || got.From != "a@x.test" || len(got.Pending()) != 2 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	f, err := q.OpenMessage(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "Subject: x\r\n\r\nhi\r\n" {
		t.Fatalf("message = %q", b)
	}
	if _, err := q.Update(env.ID, func(e *queue.Envelope) { e.Recipients[0].State = queue.StateDelivered }); err != nil {
		t.Fatal(err)
	}
	if got, _ := q.Get(env.ID); len(got.Pending()) != 1 {
		t.Fatalf("after update: %+v", got)
	}
	// The last recipient done removes the entry.
	if _, err := q.Update(env.ID, func(e *queue.Envelope) { e.Recipients[1].State = queue.StateFailed }); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(env.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("entry not removed: %v", err)
	}
	if err := q.Delete(env.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("Delete of a removed entry: %v", err)
	}
}

func TestOpenRemovesUncommittedEntries(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := q.Enqueue(queue.Envelope{From: "a@x.test", Recipients: []queue.Recipient{{Addr: "b@y.test"}}}, strings.NewReader("x"), now)
	if err != nil {
		t.Fatal(err)
	}
	// A crash after the message file and before the envelope: never acknowledged.
	orphan := queue.NewID(now)
	os.WriteFile(filepath.Join(dir, orphan+".msg"), []byte("half"), 0o600)
	os.WriteFile(filepath.Join(dir, "tmp."+orphan+".env.123"), []byte("{"), 0o600)
	if _, err := queue.Open(dir); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(names) != 2 {
		t.Fatalf("files after Open: %v, want only %s.msg/.env", names, kept.ID)
	}
	envs, errs := q.List()
	if len(errs) != 0 || len(envs) != 1 || envs[0].ID != kept.ID {
		t.Fatalf("List = %v, %v", envs, errs)
	}
}

func TestValidIDRefusesPaths(t *testing.T) {
	for _, id := range []string{"", "../../etc/passwd", "0123456789abcdef0123456789/", strings.Repeat("g", 26), strings.Repeat("A", 26)} {
		if queue.ValidID(id) {
			t.Errorf("ValidID(%q) = true", id)
		}
	}
	if id := queue.NewID(now); !queue.ValidID(id) {
		t.Errorf("NewID gave invalid %q", id)
	}
	q, _ := queue.Open(t.TempDir())
	if _, err := q.Get("../x"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Get(../x) = %v", err)
	}
}

func TestPrepareCommitAbort(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := q.Prepare(queue.Envelope{From: "a@x.test", Recipients: []queue.Recipient{{Addr: "b@y.test"}}}, strings.NewReader("msg"), now)
	if err != nil {
		t.Fatal(err)
	}
	if envs, _ := q.List(); len(envs) != 0 {
		t.Fatalf("a prepared entry is listed: %+v", envs)
	}
	select {
	case <-q.Notify():
		t.Fatal("Prepare woke the relay")
	default:
	}
	env, err := p.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if env.ID != p.ID() || env.Size != 3 {
		t.Fatalf("committed %+v", env)
	}
	if ids := q.TakeFresh(); len(ids) != 1 || ids[0] != env.ID {
		t.Fatalf("TakeFresh = %v", ids)
	}
	if ids := q.TakeFresh(); len(ids) != 0 {
		t.Fatalf("TakeFresh again = %v", ids)
	}
	p2, err := q.Prepare(queue.Envelope{From: "a@x.test", Recipients: []queue.Recipient{{Addr: "c@y.test"}}}, strings.NewReader("msg2"), now)
	if err != nil {
		t.Fatal(err)
	}
	p2.Abort()
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(names) != 2 {
		t.Fatalf("files after Abort: %v", names)
	}
}

func TestOpenRemovesEnvelopeWithoutMessage(t *testing.T) {
	dir := t.TempDir()
	orphan := queue.NewID(now)
	// The envelope's rename reached the disk, the message's did not: the
	// directory fsync never returned, so no 250 was given.
	if err := os.WriteFile(filepath.Join(dir, orphan+".env"), []byte(`{"id":"`+orphan+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if envs, errs := q.List(); len(envs) != 0 || len(errs) != 0 {
		t.Fatalf("List = %v, %v", envs, errs)
	}
}
