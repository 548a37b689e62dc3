// Package cid makes connection ids: short random tokens that tie together
// every log line of one connection and appear in its 4xx/5xx reply texts, so
// an admin can go from a client's error message to the server's log.
//
// Every front end logs through a logger from With, so the attribute is always
// spelt Key.
package cid

import (
	"crypto/rand"
	"encoding/base32"
	"log/slog"
)

// Key is the log attribute name of a connection id.
const Key = "cid"

var enc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// New returns a new connection id: 10 characters of [a-z2-7] (50 random
// bits), so ids do not repeat in practice and are easy to grep.
func New() string {
	var b [7]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return enc.EncodeToString(b[:])[:10]
}

// With returns a new id and logger with "cid"=id attached.
func With(logger *slog.Logger) (*slog.Logger, string) {
	id := New()
	return logger.With(Key, id), id
}
