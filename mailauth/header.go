package mailauth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Raw message header handling: read with a size limit, split into fields
// byte for byte (DKIM signatures and the user's mail client see the header
// exactly as sent), strip forged Authentication-Results.

// MaxHeaderSize bounds the header that Check and Rewrite buffer.
const MaxHeaderSize = 1 << 20

// ErrHeaderTooLarge: the header is larger than MaxHeaderSize (SMTP: 552 5.3.4).
var ErrHeaderTooLarge = errors.New("mailauth: message header too large")

// readHeader reads the header up to and including the empty line that ends
// it. A message without body (EOF in the header) gets the empty line added,
// so that the result is always a complete header.
func readHeader(br *bufio.Reader, max int) ([]byte, error) {
	var hdr []byte
	for {
		line, err := br.ReadSlice('\n')
		if len(hdr)+len(line) > max {
			return nil, ErrHeaderTooLarge
		}
		if err == bufio.ErrBufferFull {
			hdr = append(hdr, line...)
			continue
		}
		if err == io.EOF {
			hdr = append(hdr, line...)
			if len(hdr) > 0 && !bytes.HasSuffix(hdr, []byte("\n")) {
				hdr = append(hdr, "\r\n"...)
			}
			return append(hdr, "\r\n"...), nil
		}
		if err != nil {
			return nil, fmt.Errorf("mailauth: reading the header: %w", err)
		}
		// A line of its own that is empty ends the header.
		start := len(hdr)
		hdr = append(hdr, line...)
		if isEmptyLine(hdr[start:]) && (start == 0 || hdr[start-1] == '\n') {
			return hdr, nil
		}
	}
}

func isEmptyLine(l []byte) bool {
	return string(l) == "\r\n" || string(l) == "\n"
}

// splitFields splits a raw header (ending with its empty line) into fields,
// each with its continuation lines and line ends, and the final empty line.
// Concatenating fields and end gives the input back.
func splitFields(hdr []byte) (fields [][]byte, end []byte) {
	start := 0
	for i := 0; i < len(hdr); {
		j := bytes.IndexByte(hdr[i:], '\n')
		if j < 0 {
			j = len(hdr) - i - 1
		}
		line := hdr[i : i+j+1]
		if isEmptyLine(line) {
			if start < i {
				fields = append(fields, hdr[start:i])
			}
			return fields, hdr[i:]
		}
		if i > start && line[0] != ' ' && line[0] != '\t' {
			fields = append(fields, hdr[start:i])
			start = i
		}
		i += j + 1
	}
	if start < len(hdr) {
		fields = append(fields, hdr[start:])
	}
	return fields, nil
}

// fieldName returns the name of a raw field (before ':', trailing white
// space removed), and its value unfolded (line ends removed).
func fieldName(f []byte) (name, value string, ok bool) {
	i := bytes.IndexByte(f, ':')
	if i <= 0 {
		return "", "", false
	}
	name = strings.TrimRight(string(f[:i]), " \t")
	v := f[i+1:]
	if bytes.ContainsAny(v, "\r\n") {
		u := make([]byte, 0, len(v))
		for _, c := range v {
			if c != '\r' && c != '\n' {
				u = append(u, c)
			}
		}
		v = u
	}
	return name, strings.TrimSpace(string(v)), true
}

// authservID returns the authserv-id of an Authentication-Results value
// (RFC 8601 §2.2: the first token, after any comment; quotes removed).
func authservID(v string) string {
	v = skipCFWS(v)
	if strings.HasPrefix(v, `"`) {
		if end := strings.IndexByte(v[1:], '"'); end >= 0 {
			return v[1 : end+1]
		}
		return v[1:]
	}
	end := strings.IndexAny(v, "; \t(")
	if end < 0 {
		return v
	}
	return v[:end]
}

// skipCFWS drops leading white space and (nested) comments.
func skipCFWS(s string) string {
	for {
		s = strings.TrimLeft(s, " \t")
		if !strings.HasPrefix(s, "(") {
			return s
		}
		depth := 0
		i := 0
		for ; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		if i >= len(s) {
			return ""
		}
		s = s[i+1:]
	}
}

// claimsUs reports whether a raw field is an Authentication-Results field
// whose authserv-id is ours (case-insensitive).
func claimsUs(f []byte, authservIDs []string) bool {
	name, value, ok := fieldName(f)
	if !ok || !strings.EqualFold(name, "Authentication-Results") {
		return false
	}
	id := authservID(value)
	for _, ours := range authservIDs {
		if strings.EqualFold(id, ours) {
			return true
		}
	}
	return false
}

// Rewrite copies the message from src to dst with the header fields of
// prepend first (each a complete "Name: value\r\n" field, such as
// Result.HeaderField), and without any Authentication-Results field whose
// authserv-id is hostname (RFC 8601 §5: a receiver removes results that
// claim to be its own before adding its own). Everything else passes byte
// for byte; the body is streamed.
func Rewrite(dst io.Writer, src io.Reader, hostname string, prepend ...string) error {
	br := bufio.NewReaderSize(src, 32*1024)
	hdr, err := readHeader(br, MaxHeaderSize)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(dst, 32*1024)
	for _, p := range prepend {
		if _, err := bw.WriteString(p); err != nil {
			return err
		}
	}
	fields, end := splitFields(hdr)
	for _, f := range fields {
		if claimsUs(f, []string{hostname}) {
			continue
		}
		if _, err := bw.Write(f); err != nil {
			return err
		}
	}
	if _, err := bw.Write(end); err != nil {
		return err
	}
	if _, err := io.Copy(bw, br); err != nil {
		return fmt.Errorf("mailauth: copying the body: %w", err)
	}
	return bw.Flush()
}

// StripAuthResults returns hdr (a raw header) without the
// Authentication-Results fields that claim hostname, and how many it
// removed.
func StripAuthResults(hdr []byte, hostname string) ([]byte, int) {
	fields, end := splitFields(hdr)
	out := make([]byte, 0, len(hdr))
	n := 0
	for _, f := range fields {
		if claimsUs(f, []string{hostname}) {
			n++
			continue
		}
		out = append(out, f...)
	}
	return append(out, end...), n
}
