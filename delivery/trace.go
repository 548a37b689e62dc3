package delivery

import (
	"crypto/tls"
	"net/netip"
	"strings"
	"time"
)

// Trace describes how a message reached us, for its Received header
// (RFC 5321 §4.4).
type Trace struct {
	// By is our hostname.
	By string
	// Helo is the name the client gave in EHLO/HELO (untrusted; sanitised here).
	Helo string
	// RemoteIP is the client's address.
	RemoteIP netip.Addr
	// ESMTP is true after EHLO, false after HELO.
	ESMTP bool
	// TLS is the connection state when the session is encrypted, else nil.
	TLS *tls.ConnectionState
	// Authenticated is true for a logged-in client (submission).
	Authenticated bool
	// UTF8 is true when the client used the SMTPUTF8 extension (RFC 6531).
	UTF8 bool
	// Time is when the message was received; zero means now.
	Time time.Time
}

// Protocol is the "with" value of the Received header (RFC 3848, RFC 6531):
// SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA.
func (t Trace) Protocol() string {
	if !t.ESMTP {
		return "SMTP"
	}
	p := "ESMTP"
	if t.UTF8 {
		p = "UTF8SMTP"
	}
	if t.TLS != nil {
		p += "S"
	}
	if t.Authenticated {
		p += "A"
	}
	return p
}

// TraceHeaders returns the header lines prepended to a delivered message:
//
//	Return-Path: <from>
//	Received: from HELO ([IP])
//		(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)
//		by HOSTNAME (Postyard) with ESMTPS id ID
//		for <rcpt>; Mon, 02 Jan 2006 15:04:05 +0000
//
// "for" is given only when the transaction has one recipient, so the header
// does not disclose the other recipients (RFC 5321 §7.2). Lines end in CRLF.
func TraceHeaders(env *Envelope) string {
	t := env.Trace
	when := t.Time
	if when.IsZero() {
		when = time.Now()
	}
	var b strings.Builder
	b.Grow(256)
	b.WriteString("Return-Path: <")
	b.WriteString(headerSafe(env.From, 512))
	b.WriteString(">\r\nReceived: from ")
	helo := headerSafe(t.Helo, 255)
	if helo == "" {
		helo = "unknown"
	}
	b.WriteString(helo)
	b.WriteString(" (")
	b.WriteString(addressLiteral(t.RemoteIP))
	b.WriteString(")")
	if t.TLS != nil {
		b.WriteString("\r\n\t(using ")
		b.WriteString(tlsVersionName(t.TLS.Version))
		b.WriteString(" with cipher ")
		b.WriteString(tls.CipherSuiteName(t.TLS.CipherSuite))
		b.WriteString(")")
	}
	b.WriteString("\r\n\tby ")
	b.WriteString(headerSafe(t.By, 255))
	b.WriteString(" (Postyard) with ")
	b.WriteString(t.Protocol())
	if env.ID != "" {
		b.WriteString(" id ")
		b.WriteString(headerSafe(env.ID, 64))
	}
	if len(env.Recipients) == 1 {
		b.WriteString("\r\n\tfor <")
		b.WriteString(headerSafe(env.Recipients[0].Address, 512))
		b.WriteString(">")
	}
	b.WriteString("; ")
	b.WriteString(when.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	b.WriteString("\r\n")
	return b.String()
}

// addressLiteral is the client address as RFC 5321 §4.1.3 writes it:
// "[192.0.2.1]" or "[IPv6:2001:db8::1]"; "unknown" when there is none.
func addressLiteral(ip netip.Addr) string {
	switch {
	case !ip.IsValid():
		return "unknown"
	case ip.Is4() || ip.Is4In6():
		return "[" + ip.Unmap().String() + "]"
	default:
		return "[IPv6:" + ip.WithZone("").String() + "]"
	}
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return tls.VersionName(v)
}

// headerSafe makes a client-supplied string safe inside a header comment or
// angle brackets: control characters, parentheses and backslashes become
// '?', invalid UTF-8 becomes U+FFFD, and the result is cut to max bytes.
func headerSafe(s string, max int) string {
	clean := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '(' || c == ')' || c == '\\' || c >= 0x80 {
			clean = false
			break
		}
	}
	if clean && len(s) <= max {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r < 0x20 || r == 0x7f || r == '(' || r == ')' || r == '\\':
			r = '?'
		}
		if b.Len()+len(string(r)) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
