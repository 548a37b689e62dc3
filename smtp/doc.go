// Package smtp is Postyard's SMTP front end on go-smtp: the inbound MX
// service (port 25, New) and message submission (587 with STARTTLS and 465
// with implicit TLS, NewSubmission; the rules are in submission.go and
// sasl.go). Both serve implicit-TLS listeners too (tls.go).
//
// Implemented, as advertised in EHLO:
//
//   - SMTP (RFC 5321), PIPELINING (RFC 2920), 8BITMIME (RFC 6152),
//     ENHANCEDSTATUSCODES (RFC 2034, codes of RFC 3463) on every reply,
//     SIZE (RFC 1870), STARTTLS (RFC 3207), CHUNKING/BDAT (RFC 3030),
//     SMTPUTF8 (RFC 6531), LIMITS RCPTMAX (RFC 9422, from go-smtp).
//   - Submission also: AUTH PLAIN and LOGIN (RFC 4954) where a password
//     may be sent (TLS, loopback, or security.allow_plaintext_auth).
//   - Not advertised: DSN (RFC 3461): the relay sends failure reports
//     always and "delivered"/"delayed" reports never, so NOTIFY and RET
//     would not be honoured; BINARYMIME (mailboxes are served over IMAP as
//     text); AUTH (MX).
//
// Rules (see Server and session for the code):
//
//   - RCPT: local users and aliases of our domains are accepted (user+tag@,
//     domain case-insensitive); unknown local user 550 5.1.1; any other
//     domain 554 5.7.1, whatever the client's address (no open relay); an
//     alias's targets outside go to the outbound queue with the original
//     envelope sender (no SRS: SPF of the forwarded copy may fail), or 550
//     5.3.5 when the deliverer has no queue;
//     past max_recipients 452 4.5.3 (go-smtp); non-ASCII addresses without
//     SMTPUTF8 553 5.6.7 (RFC 6531 §3.5).
//   - DATA/BDAT: streamed through inputFilter into a delivery.Spool; past
//     max_message_size 552 5.3.4 while the rest is read and discarded; the
//     250 reply ("Ok: delivered as ID") only once every copy is fsynced; a
//     storage fault is 451 4.3.0 and leaves no copy behind.
//   - Inbound authentication (auth.go), MX mail only: at the end of
//     DATA/BDAT the spooled message is read once by mailauth (SPF of MAIL
//     FROM or HELO for the client IP, every DKIM signature, DMARC of the
//     From domain). DMARC p=reject failure 550 5.7.1; p=quarantine failure
//     delivered into the recipients' Junk; SPF fail alone recorded, or
//     550 5.7.23 with [auth] spf_fail = "reject"; a DNS failure that could
//     change the outcome, or checks past 30 s, 451 (4.4.3 or 4.7.24), never
//     a pass. The message gets one "Authentication-Results: HOSTNAME; spf=
//     dkim= dmarc=" field after our Received (RFC 8601); incoming fields
//     claiming HOSTNAME are removed first (then, and only then, the message
//     is copied once). Submission (authenticated) mail is not checked.
//   - Protection: command_timeout per command line, data_timeout per read
//     during DATA/BDAT (421 4.4.2 and close); max_connections and
//     max_connections_per_ip (421 4.7.0 at connect, internal/connlimit);
//     max_errors replies of 4xx/5xx end the session with 421 4.7.0 (go-smtp
//     itself closes after 4 syntax errors); from the fourth rejected RCPT on,
//     each waits tarpit_delay times its rank (at most 30 s).
//   - Every reply of ours is an unwrapped *gosmtp.SMTPError made by toReply;
//     4xx/5xx texts end with the connection id "(cid)", which is also on
//     every log line of the connection.
//
// Implementation notes: go-smtp owns the protocol loop; conn sits below it
// (and below the tls.Conn of STARTTLS) to renew read deadlines, to close
// after a final reply, and to say 421 to idle clients at shutdown. A
// session lives from EHLO to STARTTLS or the end; what outlives it (cid,
// error and tarpit counts) is in conn. go-smtp's parser refuses
// "RCPT TO:<postmaster>" without a domain (RFC 5321 §4.5.1 wants it
// accepted).
package smtp
