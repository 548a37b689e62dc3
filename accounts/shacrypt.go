package accounts

import (
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"hash"
	"strconv"
	"strings"
)

// SHA-crypt ("$5$" SHA-256 and "$6$" SHA-512) as specified by Ulrich
// Drepper, "Unix crypt using SHA-256 and SHA-512" (2008), the algorithm of
// glibc crypt(3) and of Dovecot's SHA256-CRYPT and SHA512-CRYPT schemes.

const (
	shaCryptDefaultRounds = 5000
	shaCryptMinRounds     = 1000
	shaCryptMaxRounds     = 999999999
	// shaCryptMaxVerifyRounds bounds the work one stored hash can demand;
	// the spec allows 999999999 rounds, minutes of CPU per login.
	shaCryptMaxVerifyRounds = 10_000_000
	shaCryptMaxSalt         = 16
)

const cryptB64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

type shaCryptVariant struct {
	prefix string // "$5$" or "$6$"
	newH   func() hash.Hash
	perm   [][3]int // byte triples, encoded 4 characters each
	tail   [3]int   // the final group's byte indices, -1 for a zero byte
	tailN  int      // characters the final group encodes to
}

var (
	sha256Crypt = &shaCryptVariant{
		prefix: "$5$",
		newH:   sha256.New,
		perm: [][3]int{{0, 10, 20}, {21, 1, 11}, {12, 22, 2}, {3, 13, 23}, {24, 4, 14},
			{15, 25, 5}, {6, 16, 26}, {27, 7, 17}, {18, 28, 8}, {9, 19, 29}},
		tail:  [3]int{-1, 31, 30},
		tailN: 3,
	}
	sha512Crypt = &shaCryptVariant{
		prefix: "$6$",
		newH:   sha512.New,
		perm: [][3]int{{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4},
			{47, 5, 26}, {6, 27, 48}, {28, 49, 7}, {50, 8, 29}, {9, 30, 51}, {31, 52, 10},
			{53, 11, 32}, {12, 33, 54}, {34, 55, 13}, {56, 14, 35}, {15, 36, 57}, {37, 58, 16},
			{59, 17, 38}, {18, 39, 60}, {40, 61, 19}, {62, 20, 41}},
		tail:  [3]int{-1, -1, 63},
		tailN: 2,
	}
)

var errBadSHACrypt = errors.New("malformed SHA-crypt hash")

// shaCryptParams is the setting part of a SHA-crypt string.
type shaCryptParams struct {
	rounds int
	custom bool // "rounds=" was given, so it is repeated in the output
	salt   string
}

// parseSHACrypt splits "$5$[rounds=N$]salt[$hash]" into its setting. The
// salt is cut to 16 characters, rounds are clamped to the spec's range.
func (v *shaCryptVariant) parse(s string) (shaCryptParams, error) {
	p := shaCryptParams{rounds: shaCryptDefaultRounds}
	rest, ok := strings.CutPrefix(s, v.prefix)
	if !ok {
		return p, errBadSHACrypt
	}
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		num, after, found := strings.Cut(r, "$")
		if !found {
			return p, errBadSHACrypt
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return p, errBadSHACrypt
		}
		p.rounds = int(min(max(n, shaCryptMinRounds), shaCryptMaxRounds))
		p.custom = true
		rest = after
	}
	salt, _, _ := strings.Cut(rest, "$")
	if len(salt) > shaCryptMaxSalt {
		salt = salt[:shaCryptMaxSalt]
	}
	p.salt = salt
	return p, nil
}

// crypt computes the full "$N$[rounds=R$]salt$hash" string for password.
func (v *shaCryptVariant) crypt(password []byte, p shaCryptParams) string {
	salt := []byte(p.salt)
	h := v.newH()
	size := h.Size()

	// Digest B: password, salt, password.
	h.Write(password)
	h.Write(salt)
	h.Write(password)
	b := h.Sum(nil)

	// Digest A.
	h.Reset()
	h.Write(password)
	h.Write(salt)
	n := len(password)
	for ; n > size; n -= size {
		h.Write(b)
	}
	h.Write(b[:n])
	for n := len(password); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(b)
		} else {
			h.Write(password)
		}
	}
	a := h.Sum(nil)

	// Digest DP and sequence P.
	h.Reset()
	for range len(password) {
		h.Write(password)
	}
	dp := h.Sum(nil)
	pseq := repeatTo(dp, len(password))

	// Digest DS and sequence S.
	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(salt)
	}
	ds := h.Sum(nil)
	sseq := repeatTo(ds, len(salt))

	c := a
	for i := range p.rounds {
		h.Reset()
		if i&1 != 0 {
			h.Write(pseq)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(sseq)
		}
		if i%7 != 0 {
			h.Write(pseq)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(pseq)
		}
		c = h.Sum(c[:0])
	}

	var out strings.Builder
	out.WriteString(v.prefix)
	if p.custom {
		out.WriteString("rounds=")
		out.WriteString(strconv.Itoa(p.rounds))
		out.WriteByte('$')
	}
	out.WriteString(p.salt)
	out.WriteByte('$')
	for _, t := range v.perm {
		b64From24(&out, c[t[0]], c[t[1]], c[t[2]], 4)
	}
	var tb [3]byte
	for i, idx := range v.tail {
		if idx >= 0 {
			tb[i] = c[idx]
		}
	}
	b64From24(&out, tb[0], tb[1], tb[2], v.tailN)
	return out.String()
}

func repeatTo(d []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out)+len(d) <= n {
		out = append(out, d...)
	}
	return append(out, d[:n-len(out)]...)
}

func b64From24(out *strings.Builder, b2, b1, b0 byte, n int) {
	w := uint32(b2)<<16 | uint32(b1)<<8 | uint32(b0)
	for range n {
		out.WriteByte(cryptB64[w&0x3f])
		w >>= 6
	}
}
