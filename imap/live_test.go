package imap_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	gimap "github.com/postyard-mail/postyard/imap"
	"github.com/postyard-mail/postyard/maildir"
)

// TestIdleSeesDelivery: a client in IDLE hears of a delivered message
// within a second (raw protocol and go-imap's client).
func TestIdleSeesDelivery(t *testing.T) {
	ts := startServer(t, nil)
	ts.deliver(t, alice, "INBOX", testMessage("old", "x"))

	t.Run("raw", func(t *testing.T) {
		r := dialRaw(t, ts.addr)
		r.login(alice)
		r.expectOK("SELECT INBOX")
		r.write("i1 IDLE\r\n")
		if l := r.readLine(); !strings.HasPrefix(l, "+ ") {
			t.Fatalf("IDLE: %q", l)
		}
		start := time.Now()
		ts.deliver(t, alice, "INBOX", testMessage("new", "y"))
		l, err := r.tryReadLine(time.Second)
		if err != nil || l != "* 2 EXISTS" {
			t.Fatalf("after delivery: %q, %v; want * 2 EXISTS within 1 s", l, err)
		}
		t.Logf("EXISTS %v after delivery", time.Since(start))
		r.write("DONE\r\n")
		if _, st := r.readUntil("i1"); !strings.HasPrefix(st, "OK") {
			t.Fatalf("DONE: %q", st)
		}
	})

	t.Run("go-imap client", func(t *testing.T) {
		exists := make(chan uint32, 10)
		c := ts.client(t, alice, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					exists <- *d.NumMessages
				}
			},
		}})
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		idle, err := c.Idle()
		if err != nil {
			t.Fatal(err)
		}
		ts.deliver(t, alice, "INBOX", testMessage("newer", "z"))
		select {
		case n := <-exists:
			if n != 3 {
				t.Errorf("EXISTS %d, want 3", n)
			}
		case <-time.After(time.Second):
			t.Fatal("no EXISTS within 1 s")
		}
		if err := idle.Close(); err != nil {
			t.Fatal(err)
		}
		if err := idle.Wait(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestOtherSessions: changes by another session reach a selected session
// at its next command, with consistent numbers, and never twice.
func TestOtherSessions(t *testing.T) {
	ts := startServer(t, nil)
	for i := 1; i <= 3; i++ {
		ts.deliver(t, alice, "INBOX", testMessage(fmt.Sprint("m", i), "x"))
	}
	a := dialRaw(t, ts.addr)
	a.login(alice)
	a.expectOK("SELECT INBOX")
	b := dialRaw(t, ts.addr)
	b.login(alice)
	b.expectOK("SELECT INBOX")
	mbox := ts.mailbox(t, alice, "INBOX")

	b.expectOK(`STORE 2 +FLAGS (\Flagged)`)
	eventually(t, a, "NOOP", []string{`* 2 FETCH (UID 2 FLAGS (\Flagged))`})
	if u := b.expectOK("NOOP"); len(u) != 0 {
		t.Errorf("the storing session was told again: %q", u)
	}

	// Expunges wait during FETCH, STORE and SEARCH (RFC 9051 §7.5.1).
	b.expectOK(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	b.expectOK(`EXPUNGE`)
	time.Sleep(50 * time.Millisecond)
	if u := a.expectOK("FETCH 1:3 UID"); slices.ContainsFunc(u, func(l string) bool { return strings.Contains(l, "EXPUNGE") }) {
		t.Errorf("EXPUNGE during FETCH: %q", u)
	}
	eventually(t, a, "NOOP", []string{"* 1 EXPUNGE"})
	a.expectOK("FETCH 1 UID") // now 2 messages: UIDs 2, 3

	// A message that arrives and goes before the session looks is never
	// mentioned: no EXISTS, no EXPUNGE.
	uid := ts.deliver(t, alice, "INBOX", testMessage("short-lived", "x"))
	if _, err := mbox.Expunge([]uint32{uid}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	// Usually nothing at all is said; if the two events straddle a
	// command, the client hears EXISTS before the EXPUNGE, never an
	// EXPUNGE alone.
	if u := a.expectOK("NOOP"); len(u) != 0 {
		if !slices.Equal(u, []string{"* 3 EXISTS"}) {
			t.Fatalf("a message the session never saw: %q", u)
		}
		eventually(t, a, "NOOP", []string{"* 3 EXPUNGE"})
	}
	// Another process (or POP3) removes a message the session knows.
	if _, err := mbox.Expunge([]uint32{3}); err != nil {
		t.Fatal(err)
	}
	eventually(t, a, "NOOP", []string{"* 2 EXPUNGE"})
	if u := a.expectOK("UID SEARCH ALL"); !slices.Contains(u, "* SEARCH 2") {
		t.Errorf("after expunges: %q", u)
	}
}

// eventually repeats cmd until its untagged responses include want (the
// store delivers events asynchronously), at most ioTimeout.
func eventually(t *testing.T, r *rawConn, cmd string, want []string) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	var seen []string
	for {
		u := r.expectOK("%s", cmd)
		seen = append(seen, u...)
		ok := true
		for _, w := range want {
			ok = ok && slices.Contains(seen, w)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never got %q; got %q", cmd, want, seen)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSequenceConsistency: random deliveries, expunges and flag changes by
// others; the session's idea of its mailbox, kept only from the server's
// EXISTS and EXPUNGE responses, always matches the store.
func TestSequenceConsistency(t *testing.T) {
	ts := startServer(t, nil)
	mbox := ts.mailbox(t, alice, "INBOX")
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10; i++ {
		ts.deliver(t, alice, "INBOX", testMessage(fmt.Sprint("seed", i), "x"))
	}
	a := dialRaw(t, ts.addr)
	a.login(alice)
	var model []uint32 // UIDs by sequence number, as the client knows them
	apply := func(untagged []string) {
		for _, l := range untagged {
			f := strings.Fields(l)
			if len(f) < 3 || f[0] != "*" {
				continue
			}
			n, err := strconv.Atoi(f[1])
			if err != nil {
				continue
			}
			switch f[2] {
			case "EXPUNGE":
				if n < 1 || n > len(model) {
					t.Fatalf("EXPUNGE %d with %d messages known", n, len(model))
				}
				model = slices.Delete(model, n-1, n)
			case "EXISTS":
				if n < len(model) {
					t.Fatalf("EXISTS %d below the %d messages known", n, len(model))
				}
				for len(model) < n {
					model = append(model, 0) // learnt below
				}
			}
		}
		for i, uid := range model {
			if uid != 0 {
				continue
			}
			for _, l := range a.expectOK("FETCH %d UID", i+1) {
				var seq, u int
				if _, err := fmt.Sscanf(l, "* %d FETCH (UID %d)", &seq, &u); err == nil && seq == i+1 {
					model[i] = uint32(u)
				}
			}
		}
	}
	apply(a.expectOK("SELECT INBOX"))
	for round := 0; round < 40; round++ {
		snap, err := mbox.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		switch op := rng.IntN(4); {
		case op == 0 || len(snap.Messages) < 3:
			ts.deliver(t, alice, "INBOX", testMessage(fmt.Sprint("r", round), "x"))
		case op == 1:
			victim := snap.Messages[rng.IntN(len(snap.Messages))].UID
			if _, err := mbox.Expunge([]uint32{victim}); err != nil {
				t.Fatal(err)
			}
		case op == 2:
			m := snap.Messages[rng.IntN(len(snap.Messages))]
			if _, _, err := mbox.StoreFlags([]uint32{m.UID}, maildir.FlagsAdd, []string{maildir.FlagFlagged}, 0); err != nil {
				t.Fatal(err)
			}
		default:
			// The session itself expunges one it knows.
			if len(model) > 0 {
				seq := rng.IntN(len(model)) + 1
				apply(a.expectOK(`STORE %d +FLAGS.SILENT (\Deleted)`, seq))
				apply(a.expectOK("EXPUNGE"))
			}
		}
		if rng.IntN(2) == 0 {
			apply(a.expectOK("NOOP"))
		}
	}
	// Settle: the store's events may still be on their way.
	deadline := time.Now().Add(ioTimeout)
	for {
		apply(a.expectOK("NOOP"))
		snap, err := mbox.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		var want []uint32
		for _, m := range snap.Messages {
			want = append(want, m.UID)
		}
		if slices.Equal(model, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client view %v, store %v", model, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// And the server agrees with the client's numbering.
	for _, l := range a.expectOK("FETCH 1:* UID") {
		var seq, uid int
		if _, err := fmt.Sscanf(l, "* %d FETCH (UID %d)", &seq, &uid); err == nil && model[seq-1] != uint32(uid) {
			t.Errorf("seq %d: server says UID %d, client knows %d", seq, uid, model[seq-1])
		}
	}
}

func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, func(o *gimap.Options) { o.IdleTimeout = 300 * time.Millisecond })
	for _, idle := range []bool{false, true} {
		t.Run(fmt.Sprint("in IDLE=", idle), func(t *testing.T) {
			r := dialRaw(t, ts.addr)
			r.login(alice)
			r.expectOK("SELECT INBOX")
			if idle {
				r.write("i IDLE\r\n")
				r.readLine()
			}
			start := time.Now()
			var lines []string
			for {
				l, err := r.tryReadLine(5 * time.Second)
				if err != nil {
					break
				}
				lines = append(lines, l)
			}
			if took := time.Since(start); took < 250*time.Millisecond || took > 4*time.Second {
				t.Errorf("closed after %v, want about 300ms", took)
			}
			if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "* BYE") }) {
				t.Errorf("no BYE before the close: %q", lines)
			}
		})
	}
}

// TestShutdown: idle sessions get BYE at once; a command in progress
// finishes with its tagged reply first; Shutdown returns when all are gone.
func TestShutdown(t *testing.T) {
	ts := startServer(t, nil)
	idle := dialRaw(t, ts.addr)
	idle.login(alice)
	idle.expectOK("SELECT INBOX")
	idle.write("i IDLE\r\n")
	idle.readLine()
	quiet := dialRaw(t, ts.addr)
	quiet.login(bob)
	busy := dialRaw(t, ts.addr)
	busy.login(alice)
	msg := testMessage("during shutdown", "x")
	busy.write(fmt.Sprintf("a1 APPEND INBOX {%d}\r\n", len(msg)))
	if l := busy.readLine(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND: %q", l)
	}
	busy.write(msg[:10])
	time.Sleep(50 * time.Millisecond) // the session is now inside Append

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- ts.srv.Shutdown(ctx)
	}()
	for name, r := range map[string]*rawConn{"idle": idle, "quiet": quiet} {
		l, err := r.tryReadLine(2 * time.Second)
		if err != nil || !strings.HasPrefix(l, "* BYE") {
			t.Errorf("%s session: %q, %v; want BYE", name, l, err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a command was running", err)
	case <-time.After(100 * time.Millisecond):
	}
	busy.write(msg[10:] + "\r\n")
	if _, st := busy.readUntil("a1"); !strings.HasPrefix(st, "OK") {
		t.Fatalf("APPEND during shutdown: %q", st)
	}
	if l := busy.readLine(); !strings.HasPrefix(l, "* BYE") {
		t.Errorf("after the command: %q, want BYE", l)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Shutdown did not return")
	}
	if st, err := ts.mailbox(t, alice, "INBOX").Status(); err != nil || st.Messages != 1 {
		t.Errorf("the message appended during shutdown: %+v, %v", st, err)
	}
}

// TestShutdownDeadline: a client stuck in a command is cut off when the
// context ends.
func TestShutdownDeadline(t *testing.T) {
	ts := startServer(t, nil)
	stuck := dialRaw(t, ts.addr)
	stuck.login(alice)
	stuck.write("a1 APPEND INBOX {100}\r\n")
	stuck.readLine()
	stuck.write("partial")
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err == nil {
		t.Error("Shutdown returned nil although a session had to be cut off")
	}
	if _, err := stuck.tryReadLine(2 * time.Second); err == nil {
		t.Error("the stuck connection is still open")
	}
	if _, err := dialRawErr(ts.addr); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

func dialRawErr(addr string) (*imapclient.Client, error) {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c, c.Noop().Wait()
}

var _ = imap.UID(0)
