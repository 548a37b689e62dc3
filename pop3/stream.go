package pop3

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// streamBufSize is the read buffer of one RETR/TOP: the message is never in
// memory beyond this (plus the connection's bufio.Writer). 128 KiB runs at
// about twice the loopback throughput of 32 KiB (fewer syscalls).
const streamBufSize = 128 << 10

// writeMessage copies a message from r to w as the body of a multi-line
// response (RFC 1939 §3): lines that begin with "." get another "." in front
// (byte-stuffing), bare LF line ends become CRLF, a missing final line end is
// added, and the terminating ".\r\n" is written. With bodyLines >= 0 only the
// header, the blank line after it and the first bodyLines lines of the body
// are sent (TOP); a negative bodyLines sends everything (RETR). buf is the
// read buffer (one of streamBufSize is made when it is empty).
//
// Only the bytes that need changing break the copy: runs of ordinary lines go
// to w in one Write, so the cost is close to a plain copy.
func writeMessage(w *bufio.Writer, r io.Reader, bodyLines int, buf []byte) error {
	var (
		atLineStart = true  // the next byte begins a line
		prevCR      = false // the last byte of the previous chunk was '\r'
		lineLen     int64   // bytes of the current line seen in earlier chunks
		inBody      = false // the blank line after the header has been seen
		done        = false // TOP has sent all it should
	)
	if len(buf) == 0 {
		buf = make([]byte, streamBufSize)
	}
	if bodyLines < 0 {
		inBody = true // no need to find the header's end
	}
	for !done {
		n, rerr := r.Read(buf)
		chunk := buf[:n]
		start := 0     // chunk[start:] is not written yet
		lineStart := 0 // where the current line begins in chunk (0 if in an earlier one)
		i := 0
		for i < len(chunk) {
			if atLineStart {
				atLineStart = false
				if chunk[i] == '.' {
					if _, err := w.Write(chunk[start:i]); err != nil {
						return err
					}
					if err := w.WriteByte('.'); err != nil {
						return err
					}
					start = i // the original '.' follows the stuffed one
				}
			}
			j := bytes.IndexByte(chunk[i:], '\n')
			if j < 0 {
				break
			}
			nl := i + j
			cr := prevCR
			if nl > 0 {
				cr = chunk[nl-1] == '\r'
			}
			if !cr {
				if _, err := w.Write(chunk[start:nl]); err != nil {
					return err
				}
				if _, err := w.WriteString("\r\n"); err != nil {
					return err
				}
				start = nl + 1
			}
			total := lineLen + int64(nl-lineStart)
			empty := total == 0 || (total == 1 && cr)
			lineLen, lineStart = 0, nl+1
			i = nl + 1
			atLineStart = true
			if !inBody {
				if empty {
					inBody = true
					done = bodyLines == 0
				}
			} else if bodyLines >= 0 {
				bodyLines--
				done = bodyLines == 0
			}
			if done {
				if _, err := w.Write(chunk[start:i]); err != nil {
					return err
				}
				start = i
				break
			}
		}
		if !done {
			if _, err := w.Write(chunk[start:]); err != nil {
				return err
			}
			if len(chunk) > 0 {
				prevCR = chunk[len(chunk)-1] == '\r'
				lineLen += int64(len(chunk) - lineStart)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("reading message: %w", rerr)
		}
	}
	if !atLineStart {
		// The message does not end with a line end: add one (only the LF
		// when its CR was the last byte).
		end := "\r\n"
		if prevCR {
			end = "\n"
		}
		if _, err := w.WriteString(end); err != nil {
			return err
		}
	}
	_, err := w.WriteString(".\r\n")
	return err
}
