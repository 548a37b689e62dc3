package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
)

// HeaderInfo is what submission needs to know of a message's header section.
type HeaderInfo struct {
	// From holds the value of each From field, unfolded (continuation line
	// breaks removed), in order. RFC 5322 §3.6 wants exactly one.
	From []string
	// HasDate and HasMessageID report whether those fields are present.
	HasDate, HasMessageID bool
}

// maxScannedValue bounds the bytes of one From value that ScanHeader keeps.
const maxScannedValue = 16 << 10

// headerReaders are ScanHeader's buffers, reused across messages.
var headerReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxScannedValue+1024) }}

// ErrHeaderTooLong is returned by ScanHeader for a From field past maxScannedValue.
var ErrHeaderTooLong = errors.New("delivery: From header field too long")

// ScanHeader reads the header section of a message (up to the first empty
// line, or the first line that is not a header field) and reports its From
// fields and whether it has Date and Message-ID. Memory use is bounded
// whatever the input: only From values are kept.
func ScanHeader(r io.Reader) (HeaderInfo, error) {
	var info HeaderInfo
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() { br.Reset(nil); headerReaders.Put(br) }()
	var (
		cur     []byte // value of the current From field
		inFrom  bool
		tooLong bool
	)
	flush := func() {
		if inFrom {
			info.From = append(info.From, string(bytes.TrimSpace(cur)))
		}
		inFrom, cur = false, cur[:0]
	}
	for {
		line, cut, err := readLine(br)
		if len(line) == 0 && err != nil {
			flush()
			if err == io.EOF {
				err = nil
			}
			if tooLong {
				err = ErrHeaderTooLong
			}
			return info, err
		}
		if len(line) == 0 { // empty line: end of the header section
			flush()
			if tooLong {
				return info, ErrHeaderTooLong
			}
			return info, nil
		}
		if line[0] == ' ' || line[0] == '\t' { // continuation
			if inFrom {
				if cut || len(cur)+len(line) > maxScannedValue {
					tooLong = true
				} else {
					cur = append(cur, line...)
				}
			}
			continue
		}
		flush()
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isFieldName(bytes.TrimRight(line[:colon], " \t")) {
			if tooLong {
				return info, ErrHeaderTooLong
			}
			return info, nil // body starts here
		}
		name := bytes.TrimRight(line[:colon], " \t")
		value := line[colon+1:]
		switch {
		case bytes.EqualFold(name, []byte("From")):
			inFrom = true
			if cut || len(value) > maxScannedValue {
				tooLong = true
			} else {
				cur = append(cur, value...)
			}
		case bytes.EqualFold(name, []byte("Date")):
			info.HasDate = true
		case bytes.EqualFold(name, []byte("Message-ID")):
			info.HasMessageID = true
		}
		if err != nil {
			flush()
			if tooLong {
				return info, ErrHeaderTooLong
			}
			return info, nil
		}
	}
}

// readLine returns the next line without its line end (CRLF or LF). A line
// longer than the reader's buffer is returned cut (cut true), the rest
// skipped.
func readLine(br *bufio.Reader) (line []byte, cut bool, err error) {
	line, err = br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		line, cut = bytes.Clone(line), true
		for err == bufio.ErrBufferFull {
			_, err = br.ReadSlice('\n')
		}
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return line, cut, err
}

// isFieldName: printable ASCII except colon (RFC 5322 §2.2).
func isFieldName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}
