package smtp_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/mailauth"
)

// FuzzSession feeds arbitrary client input to a real server (EXAMPLES 25):
// whatever arrives, no session panics, and the server still serves the next
// client.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO a\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"EHLO a\r\nMAIL FROM:<> SIZE=10\r\nRCPT TO:<team@example.test>\r\nBDAT 5 LAST\r\nhelloQUIT\r\n",
		"HELO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@elsewhere.example>\r\nRCPT TO:<nobody@example.test>\r\nRSET\r\nNOOP\r\n",
		"EHLO a\r\nMAIL FROM:<jö@b> SMTPUTF8\r\nRCPT TO:<jöran@example.test>\r\nDATA\r\nReceived: x\nReceived: y\n\n\x00\r\r\n.\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"EHLO a\r\nBDAT 10\r\nMAIL FROM:<a@b>\r\nBDAT x\r\nSTARTTLS\r\n",
		"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@example.test>\r\nBDAT 3\r\nabcBDAT 0 LAST\r\n",
		// the inbound checks: forged results, a broken signature, two From
		"EHLO a\r\nMAIL FROM:<b@pass.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nAuthentication-Results: mx.example.test; spf=pass\r\n" +
			"DKIM-Signature: v=1; a=rsa-sha256; d=signed.example; s=s1; h=from; bh=x; b=y\r\nFrom: b@pass.example\r\nFrom: c@reject.example\r\n\r\nhi\r\n.\r\n",
		"EHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nFrom: <b@quarantine.example>\r\nAuthentication-Results: (x\r\n.\r\n",
	} {
		f.Add([]byte(seed))
	}
	// The checks on, as on the MX: messages go through mailauth and Rewrite.
	ts := startServer(f, unlimited, newAuthEnv(f).checking(f, mailauth.Policy{}, 0))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			_, _ = c.Write(in)
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		if _, err := io.Copy(io.Discard, c); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the server did not end the session within 10 s")
			}
		}
		if n := ts.srv.Panics(); n != 0 {
			t.Fatalf("%d panics", n)
		}
		if o := runGoSMTP(t, ts.addr, transaction{from: "a@remote.example", rcpt: "alice@example.test"}); o.rcptCode != 250 {
			t.Fatalf("server unhealthy after the input: RCPT %d", o.rcptCode)
		}
	})
}
