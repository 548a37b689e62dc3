package pop3_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/pop3"
)

// FuzzSession feeds arbitrary input to a real server over loopback, after a
// login or from the start, and checks that no session panics, that every
// reply line is CRLF-terminated and that the server ends the session once
// the input ends.
func FuzzSession(f *testing.F) {
	e := newEnv(f, withOptions(func(o *pop3.Options) {
		o.Logger = nil
		o.Config.IdleTimeout = 0 // the default: the input always ends with EOF
	}))
	for _, s := range []string{
		"STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 1\r\nDELE 3\r\nRSET\r\nNOOP\r\n",
		"LIST 1 2\r\nRETR 99\r\nTOP 1 -1\r\nDELE 1\r\nDELE 1\r\nQUIT\r\n",
		"CAPA\r\nUIDL 1\r\nRETR 1\nRETR 2\r\n",
		"USER x\r\nPASS y\r\nAUTH PLAIN\r\n*\r\n",
		"STLS\r\n",
		"\x00\xff\r\n\r\n" + strings.Repeat("A", 300) + "\r\n",
	} {
		f.Add(true, s)
		f.Add(false, s)
	}
	f.Add(false, "AUTH PLAIN\r\n"+b64("\x00"+alice+"\x00"+alicePW)+"\r\nRETR 1\r\nQUIT\r\n")
	f.Fuzz(func(t *testing.T, login bool, input string) {
		// Keep a few messages in the maildrop (inputs may DELE and QUIT).
		u, err := e.store.User(alice)
		if err != nil {
			t.Fatal(err)
		}
		inbox, err := u.Mailbox("INBOX")
		if err != nil {
			t.Fatal(err)
		}
		if snap, err := inbox.Snapshot(); err == nil && len(snap.Messages) < 3 {
			if _, err := inbox.Deliver(strings.NewReader(testMessage("fuzz", ".dot", "line"))); err != nil {
				t.Fatal(err)
			}
		}
		nc, err := net.DialTimeout("tcp", e.plain, ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(ioTimeout))
		done := make(chan error, 1)
		go func() {
			if login {
				if _, err := io.WriteString(nc, "USER "+alice+"\r\nPASS "+alicePW+"\r\n"); err != nil {
					done <- err
					return
				}
			}
			_, err := io.WriteString(nc, input)
			if err == nil {
				err = nc.(*net.TCPConn).CloseWrite()
			}
			done <- err
		}()
		r := bufio.NewReader(nc)
		first := true
		for {
			line, err := r.ReadString('\n')
			if err == io.EOF && line == "" {
				break
			}
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("the server did not end the session %s after the input ended", ioTimeout)
				}
				break // reset: the server closed with input unread
			}
			if !strings.HasSuffix(line, "\r\n") {
				t.Fatalf("reply line %q does not end in CRLF", line)
			}
			if first && !strings.HasPrefix(line, "+OK ") {
				t.Fatalf("greeting %q", line)
			}
			first = false
		}
		<-done // a write error is fine: the server may drop a session
		if n := pop3.Panics(e.srv); n > 0 {
			t.Fatalf("%d sessions panicked", n)
		}
	})
}
