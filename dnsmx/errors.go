package dnsmx

import (
	"errors"
	"fmt"
)

// Sentinel causes, matched with errors.Is. Every error returned by a Client
// is an *Error wrapping one of these or a network error.
var (
	// ErrNullMX: the domain publishes a null MX (RFC 7505 §3: a single
	// "MX 0 ."): it accepts no mail, and a message for it must bounce at once
	// with 5.1.10 (RFC 7505 §4.2). Permanent.
	ErrNullMX = errors.New("domain accepts no mail (null MX, RFC 7505)")
	// ErrNotFound: the name does not exist (NXDOMAIN). Permanent.
	ErrNotFound = errors.New("no such domain (NXDOMAIN)")
	// ErrNoMailHost: the domain exists but has neither MX nor A/AAAA
	// records, so there is nowhere to deliver (RFC 5321 §5.1). Permanent.
	ErrNoMailHost = errors.New("no MX and no address records")
	// ErrBadName: the name is not a valid domain name. Permanent.
	ErrBadName = errors.New("invalid domain name")
	// ErrCNAMELoop: the CNAME chain is longer than allowed or loops. Permanent.
	ErrCNAMELoop = errors.New("CNAME chain too long")
	// ErrServerFailure: the upstream answered SERVFAIL, REFUSED or another
	// error rcode. Temporary.
	ErrServerFailure = errors.New("server failure")
)

// Error is the error of a lookup. It implements net.Error, so code that only
// knows the standard library (go-msgauth's DKIM key query, for one) sees
// Temporary() too.
type Error struct {
	Type string // "MX", "A", "TXT", ...
	Name string // the name asked, as given
	Err  error  // the cause: a sentinel above or a network error

	temporary bool
	timeout   bool
}

func (e *Error) Error() string {
	return fmt.Sprintf("dnsmx: %s %s: %v", e.Type, e.Name, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the failure may go away by itself: a timeout, a
// network error or a server failure. Mail delivery must then be retried
// (4xx), and an SPF or DMARC check gives temperror.
func (e *Error) Temporary() bool { return e.temporary }

// Timeout reports whether no upstream answered in time.
func (e *Error) Timeout() bool { return e.timeout }

// NotFound reports whether the name does not exist (NXDOMAIN).
func (e *Error) NotFound() bool { return errors.Is(e.Err, ErrNotFound) }

// IsTemporary reports whether err is a temporary lookup failure.
func IsTemporary(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Temporary()
}

// IsNotFound reports whether err says that the name does not exist.
func IsNotFound(err error) bool {
	return errors.Is(err, ErrNotFound)
}
