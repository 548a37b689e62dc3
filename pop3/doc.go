// Package pop3 is Postyard's POP3 server: a small, strict protocol server over
// the maildir store, for download-and-delete clients.
//
// Implemented:
//
//   - RFC 1939 POP3: USER, PASS, STAT, LIST, RETR, DELE, NOOP, RSET, QUIT,
//     TOP, UIDL (APOP is not offered: it needs plaintext passwords on disk).
//   - RFC 2449 extension mechanism: CAPA with TOP, UIDL, USER, SASL,
//     RESP-CODES, PIPELINING, IMPLEMENTATION; response codes [IN-USE],
//     [SYS/TEMP], [SYS/PERM].
//   - RFC 3206 AUTH-RESP-CODE: [AUTH] on credential failures and on logins
//     refused for lack of TLS.
//   - RFC 5034 SASL: AUTH PLAIN (RFC 4616), with an initial response ("=" for
//     an empty one) or on a continuation line, and "*" to cancel.
//   - RFC 2595 STLS on plain listeners; implicit TLS (port 995) when the
//     listener hands over *tls.Conn connections.
//
// Implementation notes:
//
//   - One conn struct per connection with an explicit state
//     (AUTHORIZATION, TRANSACTION, UPDATE); every command has an entry in a
//     table that says in which states it is valid, checked before dispatch.
//   - Passwords (USER/PASS, AUTH) are refused with "-ERR [AUTH]" and not
//     advertised in CAPA on a connection that is neither TLS nor loopback,
//     unless security.allow_plaintext_auth is set.
//   - The maildrop is INBOX. At login the session takes a snapshot of it
//     (message numbers are positions in that snapshot) and an in-process lock
//     per user: a second session of the same user gets "-ERR [IN-USE]".
//     DELE marks; QUIT in TRANSACTION enters UPDATE and expunges the marked
//     messages through the store (IMAP sessions see an EXPUNGE) and adds
//     \Seen to retrieved ones, as Dovecot does. A session that ends without
//     QUIT changes nothing (RFC 1939 §6).
//   - UIDL is Dovecot's default pop3_uidl_format %08Xu%08Xv: the IMAP UID and
//     the UIDVALIDITY, each as 8 hex digits (lower-case: that is what
//     Dovecot's %X writes). It is stable across
//     sessions and restarts, and a maildrop moved from Dovecot (whose
//     dovecot-uidlist the store keeps) keeps its UIDLs, so clients that
//     "leave mail on the server" do not download everything again.
//   - RETR and TOP stream the message file through a fixed buffer with
//     dot-stuffing and bare-LF to CRLF normalisation; a message is never held
//     in memory whole.
//   - Limits: command lines of at most 255 octets (RFC 2449 §4), longer
//     lines get -ERR and lines past 4 KiB end the session; an inactivity timer
//     (pop3.idle_timeout, RFC 1939 §3: at least 10 minutes); a growing delay
//     after each failed login and a disconnect after security.max_auth_failures;
//     a session whose first command is not POP3 (cross-protocol requests) or
//     that sends too many bad commands is dropped. Connection limits per
//     listener and per client address are applied by the server package
//     (internal/connlimit) around the listeners it hands to Serve.
//   - Replies are buffered and flushed when no pipelined command is waiting
//     (RFC 2449 PIPELINING).
//   - Every log line carries the connection id ("cid"); system errors show
//     it to the client too. The command transcript is logged at LevelTrace,
//     with passwords and SASL responses hidden.
package pop3
