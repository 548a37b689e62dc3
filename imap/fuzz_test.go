package imap_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzSession feeds arbitrary command lines to a logged-in session with a
// mailbox selected. No input may panic a session or stop the server from
// serving the next client (EXAMPLES 25: one server-level fuzzer).
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"a FETCH 1:* (FLAGS BODY.PEEK[1.2.MIME]<0.10> BINARY[1] BODYSTRUCTURE ENVELOPE)",
		"a UID SEARCH OR (FROM x SINCE 1-Jan-2020) NOT BODY \"y\"",
		"a STORE 1 +FLAGS.SILENT (\\Deleted $Junk)\r\nb EXPUNGE",
		"a UID MOVE 1:* Trash",
		"a COPY 2 \"&AMk-t&AOk-\"",
		"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"*\" RETURN (STATUS (MESSAGES SIZE))",
		"a APPEND INBOX (\\Seen) {5+}\r\nhello",
		"a SEARCH RETURN (SAVE) ALL\r\nb FETCH $ UID",
		"a IDLE\r\nDONE",
		"a RENAME INBOX Old\r\nb SELECT Old",
		"a SELECT INBOX\r\nb CLOSE\r\nc UNSELECT",
	} {
		f.Add(seed)
	}
	ts := startServer(f, nil)
	msg := multipartMsg
	for i := 0; i < 3; i++ {
		ts.deliver(f, alice, "INBOX", msg)
	}
	f.Fuzz(func(t *testing.T, input string) {
		c, err := net.DialTimeout("tcp", ts.addr, ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatalf("greeting: %v", err)
		}
		_, _ = c.Write([]byte("l LOGIN " + alice + " \"" + password + "\"\r\ns SELECT INBOX\r\n" + input + "\r\nzz NOOP\r\n"))
		// Read until the final NOOP completes, the server hangs up, or it
		// waits for more (an open literal): all are fine.
		_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			l, err := br.ReadString('\n')
			if err != nil || strings.HasPrefix(l, "zz ") {
				break
			}
		}
		if n := ts.srv.Panics(); n > 0 {
			t.Fatalf("%d panics; log:\n%s", n, ts.log.String())
		}
	})
}
