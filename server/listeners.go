package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/postyard-mail/postyard/config"
	"github.com/postyard-mail/postyard/internal/connlimit"
)

// Protocol names: the keys of the services map and the "service" log attribute.
const (
	protoSMTP       = "smtp"
	protoSubmission = "submission"
	protoIMAP       = "imap"
	protoPOP3       = "pop3"
	protoAutoconfig = "autoconfig"
)

// boundListener is one bound address of one config key.
type boundListener struct {
	key   string // config key, e.g. "imap.tls_listen"
	proto string // protoIMAP, ...
	tls   bool   // implicit TLS: l is a tls.NewListener
	l     net.Listener
}

// listenSpec is one listen key of the config.
type listenSpec struct {
	key   string
	proto string
	tls   bool
	addrs []string
}

func listenSpecs(cfg *config.Config) []listenSpec {
	return []listenSpec{
		{"smtp.listen", protoSMTP, false, cfg.SMTP.Listen},
		{"submission.listen", protoSubmission, false, cfg.Submission.Listen},
		{"submission.tls_listen", protoSubmission, true, cfg.Submission.TLSListen},
		{"imap.listen", protoIMAP, false, cfg.IMAP.Listen},
		{"imap.tls_listen", protoIMAP, true, cfg.IMAP.TLSListen},
		{"pop3.listen", protoPOP3, false, cfg.POP3.Listen},
		{"pop3.tls_listen", protoPOP3, true, cfg.POP3.TLSListen},
		{"autoconfig.listen", protoAutoconfig, false, cfg.Autoconfig.Listen},
	}
}

// limits are the connection limits of a protocol and how refused clients are told.
type limits struct {
	total, perIP int
	refusal      func(reason string) string // the line written to a refused client; "" writes nothing
}

func protoLimits(cfg *config.Config, proto string) limits {
	smtp421 := func(reason string) string {
		return fmt.Sprintf("421 4.7.0 %s %s, try again later\r\n", cfg.Hostname, reason)
	}
	switch proto {
	case protoSMTP, protoSubmission:
		// Submission has no limits of its own: like Postfix's anvil, the
		// smtp limits apply to every SMTP port.
		return limits{cfg.SMTP.MaxConnections, cfg.SMTP.MaxConnectionsPerIP, smtp421}
	case protoIMAP:
		return limits{cfg.IMAP.MaxConnections, cfg.IMAP.MaxConnectionsPerIP, func(reason string) string {
			return "* BYE [UNAVAILABLE] " + reason + "\r\n" // RFC 5530
		}}
	case protoPOP3:
		return limits{cfg.POP3.MaxConnections, cfg.POP3.MaxConnectionsPerIP, func(reason string) string {
			return "-ERR [SYS/TEMP] " + reason + "\r\n" // RFC 3206
		}}
	}
	return limits{}
}

// bindAll binds every configured address before anything is served, so a
// port conflict stops the start cleanly. The error names the key and address.
func bindAll(ctx context.Context, cfg *config.Config, tlsConfig *tls.Config) ([]*boundListener, error) {
	var out []*boundListener
	var lc net.ListenConfig
	for _, spec := range listenSpecs(cfg) {
		lim := protoLimits(cfg, spec.proto)
		for _, addr := range spec.addrs {
			raw, err := lc.Listen(ctx, "tcp", addr)
			if err != nil {
				closeListeners(out)
				var op *net.OpError
				if errors.As(err, &op) && op.Err != nil {
					err = op.Err
				}
				return nil, fmt.Errorf("%s: cannot listen on %q: %w", spec.key, addr, err)
			}
			var l net.Listener = raw
			if lim.total > 0 || lim.perIP > 0 {
				l = connlimit.Wrap(raw, lim.total, lim.perIP, refuser(lim.refusal, spec.tls, tlsConfig))
			}
			if spec.tls {
				l = tls.NewListener(l, tlsConfig)
			}
			out = append(out, &boundListener{key: spec.key, proto: spec.proto, tls: spec.tls, l: l})
		}
	}
	return out, nil
}

func closeListeners(ls []*boundListener) {
	for _, b := range ls {
		_ = b.l.Close()
	}
}

// refuser returns the connlimit reject function of a listener: it writes the
// protocol's refusal (inside TLS on an implicit-TLS port, so the client can
// read it) and closes the connection, all within a few seconds.
func refuser(refusal func(string) string, implicitTLS bool, tlsConfig *tls.Config) connlimit.RejectFunc {
	return func(c net.Conn, reason string) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if refusal == nil {
			return
		}
		msg := refusal(reason)
		if msg == "" {
			return
		}
		if implicitTLS {
			tc := tls.Server(c, tlsConfig)
			defer tc.Close()
			c = tc
		}
		_, _ = c.Write([]byte(msg))
	}
}
