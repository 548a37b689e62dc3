package mailauth

import (
	"context"
	"errors"
	"io"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/postyard-mail/postyard/dnsmx"
)

// DKIM verification (RFC 6376, RFC 8301, RFC 8463) with go-msgauth, its key
// queries answered by our resolver.

// DefaultMaxDKIMSignatures bounds the signatures verified per message; each
// costs a DNS query and a public-key operation.
const DefaultMaxDKIMSignatures = 5

// DKIMResult is the outcome of verifying one DKIM-Signature field.
type DKIMResult struct {
	// Result is pass, fail (the signature or body hash does not verify, or
	// l= is used), temperror (the key could not be fetched now) or
	// permerror (malformed signature, no key, revoked or too weak a key,
	// expired).
	Result     authres.ResultValue
	Domain     string // d=, the signing domain
	Identifier string // i=, or "@" + d=
	Reason     string
}

// lookupError is what go-msgauth's key query sees of a DNS error: it asks
// net.Error for Temporary() to choose between temperror and permerror.
type lookupError struct {
	err       error
	temporary bool
}

func (e *lookupError) Error() string   { return e.err.Error() }
func (e *lookupError) Timeout() bool   { return e.temporary }
func (e *lookupError) Temporary() bool { return e.temporary }

// errBody records the first read error of the message, to tell an I/O
// failure (an error of Check) from a message DKIM cannot parse (a result).
type errBody struct {
	r   io.Reader
	err error
}

func (b *errBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// verifyDKIM verifies every signature of msg (up to max). It returns an
// error only when msg cannot be read.
func verifyDKIM(ctx context.Context, r dnsmx.Resolver, msg io.Reader, max int) ([]DKIMResult, error) {
	body := &errBody{r: msg}
	opts := &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			txts, err := r.LookupTXT(ctx, name)
			if err != nil {
				return nil, &lookupError{err, dnsmx.IsTemporary(err)}
			}
			return txts, nil
		},
		MaxVerifications: max,
	}
	verifs, err := dkim.VerifyWithOptions(body, opts)
	if body.err != nil {
		return nil, body.err
	}
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// Not a verdict on a signature: the message is not parseable as
		// DKIM needs it. (On such an error go-msgauth may leave Err nil in
		// a verification; none of them is trusted.)
		return []DKIMResult{{Result: authres.ResultPermError, Reason: sanitize(err.Error(), 200)}}, nil
	}
	out := make([]DKIMResult, 0, len(verifs))
	for _, v := range verifs {
		res := DKIMResult{Domain: v.Domain, Identifier: v.Identifier}
		switch {
		case v.Err == nil:
			res.Result = authres.ResultPass
		case dkim.IsTempFail(v.Err):
			res.Result = authres.ResultTempError
		case dkim.IsPermFail(v.Err):
			res.Result = authres.ResultPermError
		default:
			res.Result = authres.ResultFail
		}
		if v.Err != nil {
			res.Reason = sanitize(v.Err.Error(), 200)
		}
		out = append(out, res)
	}
	return out, nil
}
