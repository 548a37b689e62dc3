// Package imap is Postyard's IMAP4 front end: go-imap/v2's imapserver speaks
// the protocol, and every session here is a view on the maildir store.
//
// Protocols and extensions (as far as go-imap/v2 v2.0.0-beta.8 carries them):
//
//   - RFC 3501 IMAP4rev1 and RFC 9051 IMAP4rev2
//   - RFC 2177 IDLE, RFC 6851 MOVE, RFC 4315 UIDPLUS, RFC 6154 SPECIAL-USE,
//     RFC 2342 NAMESPACE, RFC 7888 LITERAL+ (and LITERAL-), RFC 3691 UNSELECT,
//     RFC 5161 ENABLE, RFC 4959 SASL-IR, RFC 4731 ESEARCH, RFC 5182 SEARCHRES,
//     RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 3348 CHILDREN,
//     RFC 8438 STATUS=SIZE, RFC 3516 BINARY, RFC 8437 UNAUTHENTICATE,
//     RFC 6855 UTF8=ACCEPT (mailbox names), RFC 2595/8314 STARTTLS and
//     implicit TLS.
//   - Not offered: ID (RFC 2971) and CONDSTORE/QRESYNC (RFC 7162): beta.8's
//     imapserver has no handler for the ID command and does not parse or
//     write MODSEQ, so they cannot be advertised honestly.
//
// Implementation notes:
//
//   - Each session keeps only its view of the selected mailbox: the UIDs in
//     the order of the client's sequence numbers, plus the changes it has not
//     announced yet (see view.go). Flags, sizes and dates come from the store
//     for every command; change events come from maildir's Watch.
//     go-imap's MailboxTracker is not used: it keeps one shared count per
//     mailbox and a queue of sequence numbers, cannot tell the client's
//     message count (needed for "*"), encodes several new messages at once
//     wrongly (its own TODO), and would announce EXPUNGE for a message the
//     client never learnt of. A per-session UID list does all of it simply.
//   - Own changes are answered directly (STORE's FETCH, EXPUNGE responses)
//     and their echo from the store's event stream is recognised by UID and
//     modification sequence, so a client is not told twice.
//   - Message content is streamed from the store's file: FETCH BODY[...]
//     sections are byte ranges located by a one-pass MIME scanner (mime.go),
//     never a copy of the message in memory; BINARY is decoded twice
//     (size, then data) instead of buffered. ENVELOPE and BODYSTRUCTURE,
//     which depend only on a message's immutable content, are kept in a
//     bounded LRU shared by the sessions (cache.go).
//   - go-imap flushes its output after every response line; the connection
//     wrapper coalesces writes while a command runs (one write for a whole
//     FETCH 1:* instead of one per message) and flushes before every read.
//   - Passwords only over TLS or loopback unless security.allow_plaintext_auth:
//     otherwise the capability list says LOGINDISABLED and no AUTH=.
//   - Limits: APPEND size (max_message_size, NO [TOOBIG]), command length
//     (go-imap: 50 KiB), non-APPEND literals (go-imap: 4 KiB), failed logins
//     (a growing delay, then BYE), connections per user; per-IP and total
//     connections are capped by the server's listener (internal/connlimit).
//   - The autologout timer of an authenticated session (between commands and
//     in IDLE) is imap.idle_timeout; before login go-imap allows 30 s per command.
package imap
