// Package config turns postyard.toml into a typed, validated Config.
//
// Every key of the file maps to one field below; the `toml` tag is the key
// name of the contract in DESIGN.md §2 and config.example.toml documents each
// one. Unknown keys, wrong types and bad values are errors that name the
// file, the line and the key ("FILE:LINE: key: problem").
package config

import "time"

// Config is the whole, validated configuration of one postyard process.
type Config struct {
	// Hostname is the HELO name, the name in Received and
	// Authentication-Results headers, and the TLS server name.
	Hostname string `toml:"hostname"`
	// DataDir holds passwd, aliases, mail/, queue/, dkim/ and tls/.
	DataDir string `toml:"data_dir"`
	// Domains are delivered locally; compared case-insensitively.
	Domains []string `toml:"domains"`

	TLS        TLS        `toml:"tls"`
	SMTP       SMTP       `toml:"smtp"`
	Submission Submission `toml:"submission"`
	IMAP       IMAP       `toml:"imap"`
	POP3       POP3       `toml:"pop3"`
	Autoconfig Autoconfig `toml:"autoconfig"`
	DNS        DNS        `toml:"dns"`
	DKIM       DKIM       `toml:"dkim"`
	Delivery   Delivery   `toml:"delivery"`
	Auth       Auth       `toml:"auth"`
	Security   Security   `toml:"security"`
	Log        Log        `toml:"log"`
}

// TLS names a certificate and key in PEM; both empty means a self-signed pair
// is generated once under DataDir/tls.
type TLS struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// SMTP is the inbound MX service (port 25).
type SMTP struct {
	Listen         []string `toml:"listen"`
	MaxMessageSize Size     `toml:"max_message_size"`
	MaxRecipients  int      `toml:"max_recipients"`
	// CommandTimeout bounds the wait for each command (RFC 5321 §4.5.3.2: 5 min).
	CommandTimeout Duration `toml:"command_timeout"`
	// DataTimeout bounds the wait for each chunk of DATA (RFC 5321: 3 min per block, 10 min total).
	DataTimeout Duration `toml:"data_timeout"`
	// MaxConnections is the limit across all clients; 421 past it.
	MaxConnections int `toml:"max_connections"`
	// MaxConnectionsPerIP is the limit per client address (Postfix: 50).
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// MaxErrors bad commands end the session with 421 (Postfix: smtpd_hard_error_limit 20).
	MaxErrors int `toml:"max_errors"`
	// TarpitDelay is added to each rejected RCPT past the first few, to slow address probing.
	TarpitDelay Duration `toml:"tarpit_delay"`
}

// Submission is the authenticated message submission service (587/465).
type Submission struct {
	Listen    []string `toml:"listen"`
	TLSListen []string `toml:"tls_listen"`
	// Per-user sending limits; 0 means no limit.
	MaxMessagesPerHour int `toml:"max_messages_per_hour"`
	MaxMessagesPerDay  int `toml:"max_messages_per_day"`
	MaxRecipients      int `toml:"max_recipients"`
}

// IMAP is the IMAP4 service (143 with STARTTLS, 993 implicit TLS).
type IMAP struct {
	Listen    []string `toml:"listen"`
	TLSListen []string `toml:"tls_listen"`
	// IdleTimeout ends a silent session; at least 30 min (RFC 9051 §5.4).
	IdleTimeout           Duration `toml:"idle_timeout"`
	MaxConnectionsPerUser int      `toml:"max_connections_per_user"`
	MaxConnectionsPerIP   int      `toml:"max_connections_per_ip"`
	MaxConnections        int      `toml:"max_connections"`
}

// POP3 is the POP3 service (110 with STLS, 995 implicit TLS).
type POP3 struct {
	Listen    []string `toml:"listen"`
	TLSListen []string `toml:"tls_listen"`
	// IdleTimeout is the inactivity autologout timer (RFC 1939: at least 10 min).
	IdleTimeout         Duration `toml:"idle_timeout"`
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"`
	MaxConnections      int      `toml:"max_connections"`
}

// Autoconfig serves Thunderbird autoconfig and Outlook Autodiscover over HTTP.
type Autoconfig struct {
	Listen []string `toml:"listen"`
}

// DNS is the resolver used for MX, A/AAAA, TXT and PTR lookups.
type DNS struct {
	// Resolver is "" for /etc/resolv.conf or "HOST:PORT".
	Resolver string   `toml:"resolver"`
	Timeout  Duration `toml:"timeout"`
}

// DKIM configures signing of submitted mail.
type DKIM struct {
	Selector string `toml:"selector"`
}

// Delivery configures the outbound queue and the relay client.
type Delivery struct {
	Retry       []Duration `toml:"retry"`
	MaxLifetime Duration   `toml:"max_lifetime"`
	// Smarthost is "" (deliver by MX) or "HOST:PORT" to relay everything through.
	Smarthost         string `toml:"smarthost"`
	SmarthostUser     string `toml:"smarthost_user"`
	SmarthostPassword string `toml:"smarthost_password"`
	// ConcurrencyPerDomain bounds parallel connections to one destination.
	ConcurrencyPerDomain int `toml:"concurrency_per_domain"`
	// RemotePort is the TCP port of remote MX hosts: 25 except in tests.
	RemotePort int `toml:"remote_port"`
}

// Auth is the policy for SPF/DKIM/DMARC results of inbound mail.
type Auth struct {
	// SPFFail is what a plain SPF fail does: "record" (default) or "reject".
	SPFFail string `toml:"spf_fail"`
	// DMARC: "enforce" (default: p=reject → 550, p=quarantine → Junk) or "record".
	DMARC string `toml:"dmarc"`
}

// Security holds protection settings shared by the services.
type Security struct {
	// AllowPlaintextAuth permits passwords over unencrypted non-loopback connections.
	AllowPlaintextAuth bool `toml:"allow_plaintext_auth"`
	// MaxAuthFailures per connection before it is closed; each failure waits longer.
	MaxAuthFailures int `toml:"max_auth_failures"`
}

// Log configures log/slog.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

// Size is a byte count written as "25MB", "512KiB" or a plain number.
type Size int64

// Duration is a time.Duration written as "5m", "1h30m", "5d".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
