package config

import "time"

// Default returns the embedded configuration used when there is no config
// file: a working server for a newcomer on unprivileged loopback ports, with
// its data in ./data and a self-signed certificate (DESIGN.md §2). A file's
// unset keys keep these values. Each call returns a fresh copy.
func Default() *Config {
	return &Config{
		Hostname: "localhost",
		DataDir:  "./data",
		Domains:  []string{"localhost"},
		SMTP: SMTP{
			Listen:              []string{"127.0.0.1:2525"},
			MaxMessageSize:      25 * 1000 * 1000,
			MaxRecipients:       100,
			CommandTimeout:      Duration(5 * time.Minute),
			DataTimeout:         Duration(10 * time.Minute),
			MaxConnections:      1000,
			MaxConnectionsPerIP: 50,
			MaxErrors:           20,
			TarpitDelay:         Duration(time.Second),
		},
		Submission: Submission{
			Listen:             []string{"127.0.0.1:2587"},
			TLSListen:          []string{"127.0.0.1:2465"},
			MaxMessagesPerHour: 1000,
			MaxMessagesPerDay:  10000,
			MaxRecipients:      100,
		},
		IMAP: IMAP{
			Listen:    []string{"127.0.0.1:2143"},
			TLSListen: []string{"127.0.0.1:2993"},
			// RFC 9051 §5.4: the autologout timer is at least 30 minutes.
			IdleTimeout: Duration(30 * time.Minute),
			// Benchmarks run many clients as one user.
			MaxConnectionsPerUser: 50,
			MaxConnectionsPerIP:   50,
			MaxConnections:        1000,
		},
		POP3: POP3{
			Listen:    []string{"127.0.0.1:2110"},
			TLSListen: []string{"127.0.0.1:2995"},
			// RFC 1939 §3: the autologout timer is at least 10 minutes.
			IdleTimeout:         Duration(10 * time.Minute),
			MaxConnectionsPerIP: 50,
			MaxConnections:      1000,
		},
		Autoconfig: Autoconfig{Listen: []string{"127.0.0.1:8080"}},
		DNS:        DNS{Timeout: Duration(5 * time.Second)},
		DKIM:       DKIM{Selector: "default"},
		Delivery: Delivery{
			Retry: []Duration{
				Duration(5 * time.Minute), Duration(15 * time.Minute),
				Duration(time.Hour), Duration(4 * time.Hour),
			},
			MaxLifetime:          Duration(5 * day),
			ConcurrencyPerDomain: 10,
			RemotePort:           25,
		},
		Auth:     Auth{SPFFail: "record", DMARC: "enforce"},
		Security: Security{AllowPlaintextAuth: false, MaxAuthFailures: 3},
		Log:      Log{Level: "info", Format: "text"},
	}
}
