package mailauth

import "strings"

// sanitize makes text from the network (DNS data, SMTP arguments, library
// errors) safe for a header field or an SMTP reply: control characters and
// non-ASCII become spaces, runs of spaces collapse, and it is cut to max
// bytes.
func sanitize(s string, max int) string {
	var b strings.Builder
	space := false
	for i := 0; i < len(s) && b.Len() < max; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			c = ' '
		}
		if c == ' ' {
			if space || b.Len() == 0 {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteByte(c)
	}
	return strings.TrimRight(b.String(), " ")
}
