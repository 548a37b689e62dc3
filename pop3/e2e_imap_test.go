package pop3_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/postyard-mail/postyard/internal/testenv"
)

// TestE2EIMAPConsistency: mail delivered by SMTP is read and deleted over
// POP3; an IMAP session that had the INBOX selected gets the EXPUNGE, and a
// new one finds the message gone.
func TestE2EIMAPConsistency(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	logOnFailure(t, env)
	e2eAddUser(t, env, alice, alicePW)

	msgs := []string{testMessage("stays", "keep this"), testMessage("goes", "delete this")}
	sc, err := smtp.Dial(env.SMTP)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	for _, m := range msgs {
		if err := sc.SendMail("sender@example.org", []string{alice}, strings.NewReader(m)); err != nil {
			t.Fatalf("SMTP: %v", err)
		}
	}
	_ = sc.Quit()

	var mu sync.Mutex
	var expunged []uint32
	ic, err := imapclient.DialInsecure(env.IMAP, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Expunge: func(seq uint32) { mu.Lock(); expunged = append(expunged, seq); mu.Unlock() },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login(alice, alicePW).Wait(); err != nil {
		t.Fatalf("IMAP LOGIN: %v", err)
	}
	// SMTP said 250 once the mail was stored: it is there.
	sel, err := ic.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatalf("IMAP SELECT: %v", err)
	}
	if sel.NumMessages != 2 {
		t.Fatalf("IMAP sees %d messages, want 2", sel.NumMessages)
	}

	c := dialE2E(t, env.POP3)
	c.login(alice, alicePW)
	c.ok("RETR 2")
	if got := c.multi(); !strings.Contains(strings.Join(got, "\n"), "delete this") {
		t.Fatalf("RETR 2: %q", got)
	}
	c.ok("DELE 2")
	if got := c.quit(); got != "Postyard POP3 server signing off (1 messages deleted)" {
		t.Fatalf("QUIT: %q", got)
	}

	// The selected IMAP session learns of the expunge (NOOP polls).
	deadline := time.Now().Add(ioTimeout)
	for {
		if err := ic.Noop().Wait(); err != nil {
			t.Fatalf("IMAP NOOP: %v", err)
		}
		mu.Lock()
		got := fmt.Sprint(expunged)
		mu.Unlock()
		if got == "[2]" {
			break
		}
		if got != "[]" || time.Now().After(deadline) {
			t.Fatalf("IMAP EXPUNGE responses %s, want [2]", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A new IMAP session sees one message, with the other's Subject, \Seen unset.
	ic2, err := imapclient.DialInsecure(env.IMAP, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ic2.Close()
	if err := ic2.Login(alice, alicePW).Wait(); err != nil {
		t.Fatal(err)
	}
	if sel, err := ic2.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 1 {
		t.Fatalf("second IMAP session: %v messages, %v", sel, err)
	}
	fetched, err := ic2.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, Flags: true}).Collect()
	if err != nil || len(fetched) != 1 {
		t.Fatalf("FETCH: %v, %v", fetched, err)
	}
	if s := fetched[0].Envelope.Subject; s != "stays" {
		t.Errorf("the message left has Subject %q, want %q", s, "stays")
	}
	for _, f := range fetched[0].Flags {
		if f == imap.FlagSeen {
			t.Errorf("the message POP3 did not retrieve is \\Seen")
		}
	}
}
