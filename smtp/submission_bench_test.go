package smtp_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/postyard-mail/postyard/smtp"
)

// BenchmarkSubmission: whole submission sessions (connect, EHLO, AUTH PLAIN,
// MAIL, RCPT to an outside address, DATA of a 10 KB message, QUIT), each
// message written to the real outbound queue on disk (fsync of the entry and
// of the directory) before the 250, with 1 and 10 sessions at a time: the
// submission half of the relay benchmark. Nothing relays the queue here
// (BenchmarkRelay in delivery/relay is the other half). dkim=off is the
// bench harness's relay round; dkim=on signs every message twice (RSA-2048
// and ed25519 keys of example.test).
func BenchmarkSubmission(b *testing.B) {
	msg := strings.Replace(benchMessage(10<<10), "From: sender@remote.example", "From: alice@example.test", 1)
	for _, dkim := range []bool{false, true} {
		for _, sessions := range []int{1, 10} {
			benchSubmission(b, msg, dkim, sessions)
		}
	}
}

func benchSubmission(b *testing.B, msg string, dkim bool, sessions int) {
	ss := startSubmission(b, false, func(o *smtp.SubmissionOptions) {
		if !dkim {
			o.Signer = nil
		}
		o.Logger = loggerFor(b)
	})
	name := map[bool]string{false: "off", true: "on"}[dkim]
	b.Run(fmt.Sprintf("dkim=%s/sessions=%d", name, sessions), func(b *testing.B) {
		sendConcurrently(b, len(msg), sessions, func(n int64) error {
			return submitOne(ss.addr, fmt.Sprintf("r%d@remote.example", n%100), msg)
		})
	})
}

func submitOne(addr, rcpt, msg string) error {
	c, err := gosmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "alice@example.test", "alicepw")); err != nil {
		return err
	}
	if err := c.SendMail("alice@example.test", []string{rcpt}, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}
