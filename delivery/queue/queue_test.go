package queue_test

import (
	"errors"
	"fmt"
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
	// A crash before the rename into place: never acknowledged. And one
	// during an envelope rewrite, which leaves the entry as it was.
	orphan := queue.NewID(now)
	os.WriteFile(filepath.Join(dir, "tmp", "tmp."+orphan+".msg.123"), []byte("PYQ1 {}\nhalf"), 0o600)
	os.WriteFile(filepath.Join(dir, "tmp."+kept.ID+".env.456"), []byte("{"), 0o600)
	if _, err := queue.Open(dir); err != nil {
		t.Fatal(err)
	}
	names, _ := entries(dir)
	if len(names) != 1 {
		t.Fatalf("files after Open: %v, want only %s.msg", names, kept.ID)
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
	names, _ := entries(dir)
	if len(names) != 1 {
		t.Fatalf("files after Abort: %v, want the committed entry only", names)
	}
}

func TestOpenRemovesEnvelopeWithoutMessage(t *testing.T) {
	dir := t.TempDir()
	orphan := queue.NewID(now)
	// A removal stopped between the message and the envelope.
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

// TestEnvelopeRewriteKeepsMessage: the envelope line inside ID.msg is the
// state until the first Update; then ID.env is, and the message read back is
// the message alone.
func TestEnvelopeRewriteKeepsMessage(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	msg := "PYQ1 looks like a header\r\n\r\nbody\r\n"
	env, err := q.Enqueue(queue.Envelope{From: "a@x.test", Recipients: []queue.Recipient{{Addr: "b@y.test"}, {Addr: "c@y.test"}}}, strings.NewReader(msg), now)
	if err != nil {
		t.Fatal(err)
	}
	read := func() string {
		t.Helper()
		e, m, err := q.Load(env.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		b, _ := io.ReadAll(m)
		if e.Size != int64(len(msg)) || m.Size() != int64(len(msg)) {
			t.Fatalf("sizes %d/%d, want %d", e.Size, m.Size(), len(msg))
		}
		return string(b)
	}
	if got := read(); got != msg {
		t.Fatalf("message %q", got)
	}
	if _, err := q.Update(env.ID, func(e *queue.Envelope) { e.Recipients[0].State = queue.StateDelivered; e.Attempts = 1 }); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != msg {
		t.Fatalf("message after Update %q", got)
	}
	// Reopened (a restart): the rewritten state holds.
	q2, err := queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := q2.Get(env.ID)
	if err != nil || got.Attempts != 1 || len(got.Pending()) != 1 || got.Pending()[0] != "c@y.test" {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	if err := q2.Delete(env.ID); err != nil {
		t.Fatal(err)
	}
	if names, _ := entries(dir); len(names) != 0 {
		t.Fatalf("files after Delete: %v", names)
	}
}

// TestConcurrentEnqueue: many sessions committing at once share directory
// fsyncs and every entry is there afterwards.
func TestConcurrentEnqueue(t *testing.T) {
	q, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := q.Enqueue(queue.Envelope{From: "a@x.test", Recipients: []queue.Recipient{{Addr: fmt.Sprintf("r%d@y.test", i)}}}, strings.NewReader("x"), now)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if envs, errs := q.List(); len(envs) != n || len(errs) != 0 {
		t.Fatalf("List: %d entries, %v", len(envs), errs)
	}
	if ids := q.TakeFresh(); len(ids) != n {
		t.Fatalf("TakeFresh: %d", len(ids))
	}
}

func TestFinish(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, rewritten := range []bool{false, true} {
		env, err := q.Enqueue(queue.Envelope{From: "a@x.test", Recipients: []queue.Recipient{{Addr: "b@y.test"}}}, strings.NewReader("x"), now)
		if err != nil {
			t.Fatal(err)
		}
		if rewritten {
			if _, err := q.Update(env.ID, func(e *queue.Envelope) { e.Attempts++ }); err != nil {
				t.Fatal(err)
			}
		}
		loaded, m, err := q.Load(env.ID)
		if err != nil {
			t.Fatal(err)
		}
		m.Close()
		if err := q.Finish(loaded); err != nil {
			t.Fatal(err)
		}
		if names, _ := entries(dir); len(names) != 0 {
			t.Fatalf("rewritten=%v: files left %v", rewritten, names)
		}
	}
}

// entries lists the files of a queue directory and of its tmp/.
func entries(dir string) ([]string, error) {
	a, err := filepath.Glob(filepath.Join(dir, "*.*"))
	if err != nil {
		return nil, err
	}
	b, err := filepath.Glob(filepath.Join(dir, "tmp", "*"))
	return append(a, b...), err
}
