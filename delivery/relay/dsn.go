package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/postyard-mail/postyard/delivery/queue"
)

// dsnHeaderLimit bounds how much of the original message a DSN returns:
// its header section only (RFC 3462 text/rfc822-headers), as Postfix does by
// default for large messages.
const dsnHeaderLimit = 64 * 1024

// bounce sends a delivery status notification for the failed recipients of
// env to its sender: into the sender's INBOX when local, else through the
// queue from the null sender.
func (r *Relay) bounce(ctx context.Context, env *queue.Envelope, failed []queue.Recipient, msg io.ReaderAt) error {
	body := BuildDSN(r.opt.Hostname, env, failed, readAll(msg, min(env.Size, dsnHeaderLimit)), r.opt.Clock.Now())
	if r.opt.Local != nil {
		ok, err := r.opt.Local(ctx, env.From, body)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
	}
	_, err := r.opt.Queue.Enqueue(queue.Envelope{
		From:       "",
		Recipients: []queue.Recipient{{Addr: env.From}},
	}, bytes.NewReader(body), r.opt.Clock.Now())
	return err
}

// BuildDSN returns an RFC 3464 multipart/report message telling env's sender
// that the failed recipients could not be reached. head is the start of the
// original message; its header section is returned.
func BuildDSN(hostname string, env *queue.Envelope, failed []queue.Recipient, head []byte, now time.Time) []byte {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	boundary := "=_postyard_" + hex.EncodeToString(rnd[:])
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }

	w("From: Mail Delivery System <MAILER-DAEMON@%s>", hostname)
	w("To: <%s>", env.From)
	w("Subject: Undelivered Mail Returned to Sender")
	w("Date: %s", now.Format(time.RFC1123Z))
	w("Message-ID: <%s.dsn.%s@%s>", env.ID, hex.EncodeToString(rnd[:4]), hostname)
	w("Auto-Submitted: auto-replied")
	w("MIME-Version: 1.0")
	w("Content-Type: multipart/report; report-type=delivery-status; boundary=\"%s\"", boundary)
	w("")
	w("This is a MIME-encapsulated message.")
	w("")
	w("--%s", boundary)
	w("Content-Type: text/plain; charset=utf-8")
	w("Content-Description: Notification")
	w("")
	w("This is the mail system at host %s.", hostname)
	w("")
	w("Your message could not be delivered to one or more recipients.")
	w("")
	for _, f := range failed {
		w("<%s>: %s", f.Addr, oneLine(f.LastError))
	}
	w("")
	w("--%s", boundary)
	w("Content-Type: message/delivery-status")
	w("Content-Description: Delivery report")
	w("")
	w("Reporting-MTA: dns; %s", hostname)
	w("X-Postyard-Queue-ID: %s", env.ID)
	w("Arrival-Date: %s", env.Created.Format(time.RFC1123Z))
	for _, f := range failed {
		w("")
		w("Final-Recipient: rfc822; %s", f.Addr)
		w("Action: failed")
		w("Status: %s", statusOf(f.Code))
		if f.RemoteMTA != "" {
			w("Remote-MTA: dns; %s", f.RemoteMTA)
		}
		if f.Code != "" {
			w("Diagnostic-Code: smtp; %s", oneLine(f.LastError))
		}
	}
	w("")
	w("--%s", boundary)
	w("Content-Type: text/rfc822-headers")
	w("Content-Description: Undelivered message headers")
	w("")
	b.Write(normalizeCRLF(headerSection(head)))
	w("")
	w("--%s--", boundary)
	return b.Bytes()
}

// statusOf extracts the enhanced status code ("5.1.1") of "550 5.1.1".
func statusOf(code string) string {
	if f := strings.Fields(code); len(f) == 2 {
		return f[1]
	}
	if strings.HasPrefix(code, "4") {
		return "4.0.0"
	}
	return "5.0.0"
}

func oneLine(s string) string {
	s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	if len(s) > 900 {
		s = s[:900]
	}
	return s
}

// headerSection returns msg up to and including the blank line after its
// header, or all of it when there is none.
func headerSection(msg []byte) []byte {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+2]
	}
	if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
		return msg[:i+1]
	}
	return msg
}

func normalizeCRLF(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}
