package server

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/postyard-mail/postyard/delivery"
	"github.com/postyard-mail/postyard/delivery/dkimsign"
	"github.com/postyard-mail/postyard/delivery/queue"
	"github.com/postyard-mail/postyard/delivery/relay"
)

// outbound is the delivery side shared by the MX and submission: one local
// deliverer and one outbound queue behind a delivery.Router, the relay that
// empties the queue (a background task), and the DKIM keys.
type outbound struct {
	router *delivery.Router
	queue  *queue.Queue
	relay  *relay.Relay
	keys   *dkimsign.Keys
}

// outbound builds the delivery side on first use (constructors run one
// after the other) and registers the relay as a background task: it starts
// once every listener is served and stops when shutdown begins, after the
// services have drained.
func (d *deps) outbound() (*outbound, error) {
	if d.out != nil {
		return d.out, nil
	}
	cfg := d.cfg
	log := d.log("delivery")
	local, err := delivery.NewLocal(delivery.LocalOptions{Store: delivery.MaildirStore{S: d.store},
		SpoolDir: filepath.Join(cfg.DataDir, "tmp"), Logger: log})
	if err != nil {
		return nil, err
	}
	q, err := queue.Open(filepath.Join(cfg.DataDir, "queue"))
	if err != nil {
		return nil, err
	}
	router := delivery.NewRouter(local, q, log)
	keys, err := dkimsign.Open(filepath.Join(cfg.DataDir, "dkim"))
	if err != nil {
		return nil, err
	}
	res, err := d.resolver()
	if err != nil {
		return nil, err
	}
	retry := make([]time.Duration, len(cfg.Delivery.Retry))
	for i, r := range cfg.Delivery.Retry {
		retry[i] = r.D()
	}
	rl, err := relay.New(relay.Options{
		Queue: q, Resolver: res, Hostname: cfg.Hostname, Port: cfg.Delivery.RemotePort,
		Smarthost: cfg.Delivery.Smarthost, SmarthostUser: cfg.Delivery.SmarthostUser,
		SmarthostPassword: cfg.Delivery.SmarthostPassword,
		Retry:             retry, MaxLifetime: cfg.Delivery.MaxLifetime.D(),
		PerDomain: cfg.Delivery.ConcurrencyPerDomain,
		Local:     router.LocalDSN(d.accounts, cfg.Hostname),
		Logger:    d.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	d.hooks.goBackground("relay", rl.Run)
	d.out = &outbound{router: router, queue: q, relay: rl, keys: keys}
	return d.out, nil
}
