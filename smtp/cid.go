package smtp

import "strconv"

// messageID is a message's queue id: the connection id (internal/cid) and
// the message's number in the connection ("k3v9q2m7xa.1"). It is in the
// Received header, the 250 reply and the log.
func messageID(cid string, n int) string {
	return cid + "." + strconv.Itoa(n)
}
