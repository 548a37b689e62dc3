package smtp

import (
	"math/rand/v2"
	"strconv"
)

// newCID returns a short random connection id (10 base-32 characters, 50
// bits): it goes into every log line of the connection and into the text of
// its 4xx/5xx replies, so a user's report can be matched with the log.
// A message's queue id is the cid plus its number in the connection
// ("k3v9q2m7xa.1").
func newCID() string {
	const digits = "0123456789abcdefghjkmnpqrstvwxyz" // Crockford base 32
	v := rand.Uint64()
	var b [10]byte
	for i := range b {
		b[i] = digits[v&31]
		v >>= 5
	}
	return string(b[:])
}

func messageID(cid string, n int) string {
	return cid + "." + strconv.Itoa(n)
}
