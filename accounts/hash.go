package accounts

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Password schemes, named as Dovecot names them inside "{...}".
const (
	SchemeArgon2ID    = "ARGON2ID"
	SchemeArgon2I     = "ARGON2I"
	SchemeBlfCrypt    = "BLF-CRYPT"
	SchemeSHA512Crypt = "SHA512-CRYPT"
	SchemeSHA256Crypt = "SHA256-CRYPT"
	SchemePlain       = "PLAIN"
	SchemeClear       = "CLEAR" // Dovecot's alias of PLAIN
)

// DefaultScheme is the scheme of the hashes AddUser and SetPassword write.
const DefaultScheme = SchemeArgon2ID

// Parameters of the hashes we write. Argon2id with m=19 MiB, t=2, p=1 is
// OWASP's first recommended setting and costs about 40 ms on one core of
// the 2-core CI machine (Dovecot's own default m=64 MiB, t=3 costs 200 ms
// there); see BenchmarkAuthenticate. The encoding is libsodium's, the one
// `doveadm pw -s ARGON2ID` writes and reads.
const (
	argon2Memory  = 19 * 1024 // KiB
	argon2Time    = 2
	argon2Threads = 1
	argon2KeyLen  = 32
	argon2SaltLen = 16
	bcryptCost    = 10
)

// Bounds on the parameters of stored hashes, so that one line of the passwd
// file cannot make each login take minutes or gigabytes.
const (
	maxArgon2Memory = 1 << 20 // KiB (1 GiB)
	maxArgon2Work   = 1 << 24 // memory (KiB) × passes
	maxBcryptCost   = 16
	// MaxPasswordLen is the longest password accepted, in bytes.
	MaxPasswordLen = 1024
)

var (
	// ErrUnknownScheme is returned for a stored hash whose {SCHEME} is not
	// one we can verify, and by HashPassword for a scheme it cannot write.
	ErrUnknownScheme = errors.New("accounts: unknown password scheme")
	// ErrBadHash is returned for a stored hash that cannot be parsed.
	ErrBadHash = errors.New("accounts: malformed password hash")
	// ErrBadPassword is returned by HashPassword for a password it refuses.
	ErrBadPassword = errors.New("accounts: unacceptable password")
)

// verifier checks a password against one parsed stored hash.
type verifier interface {
	verify(password []byte) bool
}

// HashPassword returns "{SCHEME}hash" for password in the given scheme,
// with fresh random salt: ARGON2ID (the default), ARGON2I, BLF-CRYPT,
// SHA512-CRYPT, SHA256-CRYPT or PLAIN. Dovecot verifies every result.
func HashPassword(scheme, password string) (string, error) {
	return hashPassword(scheme, password, bcryptCost)
}

func hashPassword(scheme, password string, bcryptCost int) (string, error) {
	if password == "" {
		return "", fmt.Errorf("%w: empty", ErrBadPassword)
	}
	if len(password) > MaxPasswordLen {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrBadPassword, MaxPasswordLen)
	}
	pw := []byte(password)
	scheme = strings.ToUpper(scheme)
	switch scheme {
	case SchemeArgon2ID, SchemeArgon2I:
		salt := make([]byte, argon2SaltLen)
		rand.Read(salt)
		a := &argon2Verifier{id: scheme == SchemeArgon2ID, memory: argon2Memory, time: argon2Time, threads: argon2Threads, salt: salt}
		a.key = a.derive(pw, argon2KeyLen)
		return "{" + scheme + "}" + a.encode(), nil
	case SchemeBlfCrypt:
		if len(pw) > 72 {
			// bcrypt ignores everything past 72 bytes; refuse rather than
			// silently accept a prefix of the password.
			return "", fmt.Errorf("%w: BLF-CRYPT uses at most 72 bytes", ErrBadPassword)
		}
		h, err := bcrypt.GenerateFromPassword(pw, bcryptCost)
		if err != nil {
			return "", fmt.Errorf("accounts: bcrypt: %w", err)
		}
		// Go writes "$2a$"; Dovecot and crypt_blowfish write "$2y$", the
		// same algorithm without the old sign-extension bug marker.
		return "{BLF-CRYPT}$2y$" + string(h[4:]), nil
	case SchemeSHA512Crypt, SchemeSHA256Crypt:
		v := sha512Crypt
		if scheme == SchemeSHA256Crypt {
			v = sha256Crypt
		}
		salt := make([]byte, shaCryptMaxSalt)
		rand.Read(salt)
		for i, b := range salt {
			salt[i] = cryptB64[b&0x3f]
		}
		return "{" + scheme + "}" + v.crypt(pw, shaCryptParams{rounds: shaCryptDefaultRounds, salt: string(salt)}), nil
	case SchemePlain, SchemeClear:
		if strings.ContainsAny(password, ":\r\n\x00") {
			return "", fmt.Errorf("%w: a PLAIN password cannot hold ':', CR, LF or NUL", ErrBadPassword)
		}
		return "{" + scheme + "}" + password, nil
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownScheme, scheme)
}

// VerifyHash reports whether password matches stored, a "{SCHEME}hash"
// string as found in a Dovecot passwd-file. The comparison is constant-time.
// It fails with ErrUnknownScheme or ErrBadHash when stored cannot be used.
func VerifyHash(stored, password string) (bool, error) {
	v, err := parseHash(stored)
	if err != nil {
		return false, err
	}
	if len(password) > MaxPasswordLen {
		return false, nil
	}
	return v.verify([]byte(password)), nil
}

// HashScheme returns the upper-cased scheme name of a stored hash
// ("{SHA512-CRYPT}$6$..." → "SHA512-CRYPT"); bare crypt(3) strings are named
// after the algorithm their prefix selects.
func HashScheme(stored string) string {
	scheme, _, err := splitScheme(stored)
	if err != nil {
		return ""
	}
	return scheme
}

// splitScheme separates "{SCHEME}rest". A hash without braces is read the
// way Dovecot's default CRYPT scheme reads it: by its crypt(3) prefix.
func splitScheme(stored string) (scheme, rest string, err error) {
	if strings.HasPrefix(stored, "{") {
		end := strings.IndexByte(stored, '}')
		if end < 0 {
			return "", "", fmt.Errorf("%w: no closing brace", ErrBadHash)
		}
		return strings.ToUpper(stored[1:end]), stored[end+1:], nil
	}
	switch {
	case strings.HasPrefix(stored, "$6$"):
		return SchemeSHA512Crypt, stored, nil
	case strings.HasPrefix(stored, "$5$"):
		return SchemeSHA256Crypt, stored, nil
	case strings.HasPrefix(stored, "$2a$"), strings.HasPrefix(stored, "$2b$"), strings.HasPrefix(stored, "$2y$"):
		return SchemeBlfCrypt, stored, nil
	}
	return "", "", fmt.Errorf("%w: no {SCHEME} prefix and not a known crypt(3) hash", ErrUnknownScheme)
}

// parseHash turns a stored "{SCHEME}hash" into something that verifies.
func parseHash(stored string) (verifier, error) {
	scheme, rest, err := splitScheme(stored)
	if err != nil {
		return nil, err
	}
	switch scheme {
	case SchemePlain, SchemeClear:
		return plainVerifier(sha256.Sum256([]byte(rest))), nil
	case SchemeSHA512Crypt:
		return parseSHACryptHash(sha512Crypt, rest)
	case SchemeSHA256Crypt:
		return parseSHACryptHash(sha256Crypt, rest)
	case SchemeBlfCrypt:
		cost, err := bcrypt.Cost([]byte(rest))
		if err != nil {
			return nil, fmt.Errorf("%w: BLF-CRYPT: %v", ErrBadHash, err)
		}
		if cost > maxBcryptCost {
			return nil, fmt.Errorf("%w: BLF-CRYPT cost %d above %d", ErrBadHash, cost, maxBcryptCost)
		}
		return bcryptVerifier(rest), nil
	case SchemeArgon2ID, SchemeArgon2I:
		return parseArgon2(rest, scheme == SchemeArgon2ID)
	}
	return nil, fmt.Errorf("%w: {%s}", ErrUnknownScheme, scheme)
}

// plainVerifier holds the SHA-256 of a {PLAIN} password, so that comparing
// is constant-time whatever the lengths.
type plainVerifier [sha256.Size]byte

func (p plainVerifier) verify(pw []byte) bool {
	sum := sha256.Sum256(pw)
	return subtle.ConstantTimeCompare(sum[:], p[:]) == 1
}

type shaCryptVerifier struct {
	v      *shaCryptVariant
	params shaCryptParams
	hash   string // the encoded digest after the last "$"
}

func parseSHACryptHash(v *shaCryptVariant, s string) (verifier, error) {
	p, err := v.parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadHash, err)
	}
	i := strings.LastIndexByte(s, '$')
	want := 86
	if v == sha256Crypt {
		want = 43
	}
	h := s[i+1:]
	if len(h) != want || strings.Trim(h, cryptB64) != "" {
		return nil, fmt.Errorf("%w: SHA-crypt digest of wrong length or alphabet", ErrBadHash)
	}
	if p.rounds > shaCryptMaxVerifyRounds {
		return nil, fmt.Errorf("%w: SHA-crypt rounds %d above %d", ErrBadHash, p.rounds, shaCryptMaxVerifyRounds)
	}
	return &shaCryptVerifier{v: v, params: p, hash: h}, nil
}

func (s *shaCryptVerifier) verify(pw []byte) bool {
	out := s.v.crypt(pw, s.params)
	got := out[strings.LastIndexByte(out, '$')+1:]
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.hash)) == 1
}

type bcryptVerifier string

func (b bcryptVerifier) verify(pw []byte) bool {
	// crypt_blowfish (Dovecot) uses the first 72 bytes only.
	if len(pw) > 72 {
		pw = pw[:72]
	}
	// CompareHashAndPassword compares with subtle.ConstantTimeCompare.
	return bcrypt.CompareHashAndPassword([]byte(b), pw) == nil
}

// argon2Verifier is a parsed PHC/libsodium string
// "$argon2id$v=19$m=65536,t=3,p=1$SALT$KEY" (unpadded standard base64).
type argon2Verifier struct {
	id      bool
	memory  uint32 // KiB
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

var b64 = base64.RawStdEncoding

func parseArgon2(s string, id bool) (verifier, error) {
	bad := func(why string) (verifier, error) {
		return nil, fmt.Errorf("%w: argon2: %s", ErrBadHash, why)
	}
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 || parts[0] != "" {
		return bad("not $argon2X$v=19$m=M,t=T,p=P$SALT$HASH")
	}
	wantName := "argon2i"
	if id {
		wantName = "argon2id"
	}
	if parts[1] != wantName {
		return bad(fmt.Sprintf("variant %q, want %q", parts[1], wantName))
	}
	if parts[2] != "v=19" {
		return bad("only version 19 is supported")
	}
	a := &argon2Verifier{id: id}
	var seen [3]bool
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return bad("malformed parameter " + strconv.Quote(kv))
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || v != strconv.FormatUint(n, 10) {
			return bad("malformed parameter " + strconv.Quote(kv))
		}
		switch k {
		case "m":
			seen[0], a.memory = true, uint32(n)
		case "t":
			seen[1], a.time = true, uint32(n)
		case "p":
			if n > 255 {
				return bad("parallelism above 255")
			}
			seen[2], a.threads = true, uint8(n)
		default:
			return bad("unknown parameter " + strconv.Quote(k))
		}
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return bad("m, t and p are all required")
	}
	switch {
	case a.time < 1 || a.threads < 1:
		return bad("t and p must be at least 1")
	case a.memory < 8*uint32(a.threads):
		return bad("m must be at least 8×p")
	case a.memory > maxArgon2Memory || uint64(a.memory)*uint64(a.time) > maxArgon2Work:
		return bad("m or t too large")
	}
	var err error
	if a.salt, err = b64.DecodeString(parts[4]); err != nil || len(a.salt) < 8 || len(a.salt) > 1024 {
		return bad("salt must be 8 to 1024 bytes of unpadded base64")
	}
	if a.key, err = b64.DecodeString(parts[5]); err != nil || len(a.key) < 4 || len(a.key) > 1024 {
		return bad("hash must be 4 to 1024 bytes of unpadded base64")
	}
	return a, nil
}

func (a *argon2Verifier) derive(pw []byte, n int) []byte {
	if a.id {
		return argon2.IDKey(pw, a.salt, a.time, a.memory, a.threads, uint32(n))
	}
	return argon2.Key(pw, a.salt, a.time, a.memory, a.threads, uint32(n))
}

func (a *argon2Verifier) verify(pw []byte) bool {
	return subtle.ConstantTimeCompare(a.derive(pw, len(a.key)), a.key) == 1
}

func (a *argon2Verifier) encode() string {
	var buf bytes.Buffer
	name := "argon2i"
	if a.id {
		name = "argon2id"
	}
	fmt.Fprintf(&buf, "$%s$v=19$m=%d,t=%d,p=%d$%s$%s", name, a.memory, a.time, a.threads,
		b64.EncodeToString(a.salt), b64.EncodeToString(a.key))
	return buf.String()
}
