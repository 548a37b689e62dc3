package config

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Validate checks a Config built in code (Load validates on its own). The
// error is an Errors naming the keys; there are no lines.
func (c *Config) Validate() error {
	if errs := c.validate("", nil); len(errs) > 0 {
		return errs
	}
	return nil
}

type validator struct {
	file string
	idx  *keyIndex
	errs Errors
}

func (v *validator) report(line int, key, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.file, Line: line, Key: key, Problem: fmt.Sprintf(format, args...)})
}

func (v *validator) at(key, format string, args ...any) {
	v.report(v.idx.line(key), key, format, args...)
}

func (v *validator) elem(key string, i int, format string, args ...any) {
	v.report(v.idx.elemLine(key, i), key, format, args...)
}

func (c *Config) validate(file string, idx *keyIndex) Errors {
	v := &validator{file: file, idx: idx}

	if err := checkDomainName(c.Hostname); err != nil {
		v.at("hostname", "%v", err)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		v.at("data_dir", "must not be empty")
	}
	if len(c.Domains) == 0 {
		v.at("domains", "at least one local domain is required")
	}
	seenDomain := map[string]bool{}
	for i, d := range c.Domains {
		if err := checkDomainName(d); err != nil {
			v.elem("domains", i, "%v", err)
		} else if seenDomain[strings.ToLower(d)] {
			v.elem("domains", i, "%q is listed twice", d)
		}
		seenDomain[strings.ToLower(d)] = true
	}

	c.validateTLS(v)

	listens := map[string]string{} // address → key, to catch one port used twice
	v.listen("smtp.listen", c.SMTP.Listen, listens)
	v.positive("smtp.max_message_size", int64(c.SMTP.MaxMessageSize))
	v.atLeast("smtp.max_recipients", c.SMTP.MaxRecipients, 1)
	v.positive("smtp.command_timeout", int64(c.SMTP.CommandTimeout))
	v.positive("smtp.data_timeout", int64(c.SMTP.DataTimeout))
	v.atLeast("smtp.max_connections", c.SMTP.MaxConnections, 0)
	v.atLeast("smtp.max_connections_per_ip", c.SMTP.MaxConnectionsPerIP, 0)
	v.atLeast("smtp.max_errors", c.SMTP.MaxErrors, 1)
	v.atLeast64("smtp.tarpit_delay", int64(c.SMTP.TarpitDelay), 0)

	v.listen("submission.listen", c.Submission.Listen, listens)
	v.listen("submission.tls_listen", c.Submission.TLSListen, listens)
	v.atLeast("submission.max_messages_per_hour", c.Submission.MaxMessagesPerHour, 0)
	v.atLeast("submission.max_messages_per_day", c.Submission.MaxMessagesPerDay, 0)
	v.atLeast("submission.max_recipients", c.Submission.MaxRecipients, 0)

	v.listen("imap.listen", c.IMAP.Listen, listens)
	v.listen("imap.tls_listen", c.IMAP.TLSListen, listens)
	// RFC 9051 §5.4: an autologout timer of at least 30 minutes; clients
	// re-issue IDLE every 29 minutes on the strength of it.
	v.minDuration("imap.idle_timeout", c.IMAP.IdleTimeout, 30*time.Minute, "RFC 9051 §5.4")
	v.atLeast("imap.max_connections_per_user", c.IMAP.MaxConnectionsPerUser, 0)
	v.atLeast("imap.max_connections_per_ip", c.IMAP.MaxConnectionsPerIP, 0)
	v.atLeast("imap.max_connections", c.IMAP.MaxConnections, 0)

	v.listen("pop3.listen", c.POP3.Listen, listens)
	v.listen("pop3.tls_listen", c.POP3.TLSListen, listens)
	// RFC 1939 §3: an autologout timer of at least 10 minutes.
	v.minDuration("pop3.idle_timeout", c.POP3.IdleTimeout, 10*time.Minute, "RFC 1939 §3")
	v.atLeast("pop3.max_connections_per_ip", c.POP3.MaxConnectionsPerIP, 0)
	v.atLeast("pop3.max_connections", c.POP3.MaxConnections, 0)

	v.listen("autoconfig.listen", c.Autoconfig.Listen, listens)

	if c.DNS.Resolver != "" {
		if err := checkHostPort(c.DNS.Resolver, true); err != nil {
			v.at("dns.resolver", "%v", err)
		}
	}
	v.positive("dns.timeout", int64(c.DNS.Timeout))

	if err := checkDomainName(c.DKIM.Selector); err != nil {
		v.at("dkim.selector", "%v", strings.Replace(err.Error(), "name", "selector", 1))
	}

	if len(c.Delivery.Retry) == 0 {
		v.at("delivery.retry", "at least one retry interval is required")
	}
	for i, d := range c.Delivery.Retry {
		if d <= 0 {
			v.elem("delivery.retry", i, "interval %s must be positive", d)
		}
	}
	v.positive("delivery.max_lifetime", int64(c.Delivery.MaxLifetime))
	if c.Delivery.Smarthost != "" {
		if err := checkHostPort(c.Delivery.Smarthost, false); err != nil {
			v.at("delivery.smarthost", "%v", err)
		}
	}
	if c.Delivery.SmarthostUser != "" && c.Delivery.Smarthost == "" {
		v.at("delivery.smarthost_user", "is set but delivery.smarthost is empty")
	}
	if c.Delivery.SmarthostPassword != "" && c.Delivery.SmarthostUser == "" {
		v.at("delivery.smarthost_password", "is set but delivery.smarthost_user is empty")
	}
	v.atLeast("delivery.concurrency_per_domain", c.Delivery.ConcurrencyPerDomain, 1)
	if c.Delivery.RemotePort < 1 || c.Delivery.RemotePort > 65535 {
		v.at("delivery.remote_port", "port %d is outside 1-65535", c.Delivery.RemotePort)
	}

	v.oneOf("auth.spf_fail", c.Auth.SPFFail, "record", "reject")
	v.oneOf("auth.dmarc", c.Auth.DMARC, "enforce", "record")
	v.atLeast("security.max_auth_failures", c.Security.MaxAuthFailures, 1)
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")
	return v.errs
}

func (v *validator) positive(key string, n int64) {
	if n <= 0 {
		v.at(key, "must be greater than zero")
	}
}

// minDuration requires d to be at least least, which the RFC named by why sets.
func (v *validator) minDuration(key string, d Duration, least time.Duration, why string) {
	if d.D() < least {
		v.at(key, "must be at least %s (%s)", least, why)
	}
}

func (v *validator) atLeast(key string, n, least int) { v.atLeast64(key, int64(n), int64(least)) }

func (v *validator) atLeast64(key string, n, least int64) {
	if n < least {
		if least == 0 {
			v.at(key, "must not be negative (0 means no limit)")
		} else {
			v.at(key, "must be at least %d", least)
		}
	}
}

func (v *validator) oneOf(key, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	v.at(key, "%q is not one of %s", val, strings.Join(quoteAll(allowed), ", "))
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// listen checks listen addresses; an empty list turns the service off.
func (v *validator) listen(key string, addrs []string, used map[string]string) {
	for i, a := range addrs {
		if err := checkHostPort(a, false); err != nil {
			v.elem(key, i, "%v", err)
			continue
		}
		host, port, _ := net.SplitHostPort(a)
		norm := net.JoinHostPort(strings.ToLower(host), port)
		if other, dup := used[norm]; dup {
			v.elem(key, i, "%q is also in %s", a, other)
			continue
		}
		used[norm] = key
	}
}

// checkHostPort accepts "HOST:PORT" with a numeric port 1-65535 and a host
// that is empty (all addresses), an IP address or a DNS name. With needIP
// the host must be an IP address.
func checkHostPort(s string, needIP bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT (e.g. \":25\" or \"127.0.0.1:2525\")", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || port == "" || port[0] < '0' || port[0] > '9' {
		return fmt.Errorf("%q: port %q is not a number", s, port)
	}
	if n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %d is outside 1-65535", s, n)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if needIP {
		return fmt.Errorf("%q: host must be an IP address", s)
	}
	if host == "" {
		return nil
	}
	if err := checkDomainName(host); err != nil {
		return fmt.Errorf("%q: %v", s, err)
	}
	return nil
}

// checkDomainName accepts an ASCII DNS name (RFC 1123 labels), without a
// trailing dot.
func checkDomainName(s string) error {
	switch {
	case s == "":
		return errors.New("name must not be empty")
	case len(s) > 253:
		return fmt.Errorf("name %.20q... is longer than 253 characters", s)
	case strings.HasSuffix(s, "."):
		return fmt.Errorf("name %q must not end with a dot", s)
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return fmt.Errorf("name %q is an IP address, not a DNS name", s)
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("name %q has an empty or over-long (63+) label", s)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("name %q has a label starting or ending with '-'", s)
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("name %q has the character %q (use letters, digits, '-' and '.'; the ASCII xn-- form for international names)", s, rune(c))
			}
		}
	}
	return nil
}

// maxPEMSize bounds a certificate or key file.
const maxPEMSize = 1 << 20

func (c *Config) validateTLS(v *validator) {
	cert, key := c.TLS.Cert, c.TLS.Key
	switch {
	case cert == "" && key == "":
		return // a self-signed pair is generated under data_dir/tls
	case cert == "":
		v.at("tls.cert", "is empty but tls.key is set (set both, or neither for a self-signed pair)")
		return
	case key == "":
		v.at("tls.key", "is empty but tls.cert is set (set both, or neither for a self-signed pair)")
		return
	}
	certPEM, err := readPEMFile(cert)
	if err != nil {
		v.at("tls.cert", "%v", err)
	}
	keyPEM, kerr := readPEMFile(key)
	if kerr != nil {
		v.at("tls.key", "%v", kerr)
	}
	if err != nil || kerr != nil {
		return
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		v.at("tls.cert", "%q holds no PEM certificate", cert)
		return
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		v.at("tls.key", "%q does not go with %q: %v", key, cert, err)
	}
}

// readPEMFile reads a regular file of at most maxPEMSize bytes.
func readPEMFile(path string) ([]byte, error) {
	// Stat before opening: opening a FIFO for reading would block.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %v", path, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%q is not a regular file", path)
	}
	if fi.Size() > maxPEMSize {
		return nil, fmt.Errorf("%q is larger than %d bytes", path, maxPEMSize)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %v", path, unwrapPath(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMSize))
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %v", path, unwrapPath(err))
	}
	return b, nil
}

// unwrapPath drops the "open PATH:" prefix of a *fs.PathError, for messages
// that name the path already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
