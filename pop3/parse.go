package pop3

import (
	"errors"
	"fmt"
	"strings"
)

// MaxCommandLine is the longest command line accepted, CRLF included
// (RFC 2449 §4 raised RFC 1939's 47 octets to 255).
const MaxCommandLine = 255

// maxLine is the longest line read at all (a SASL response may exceed
// MaxCommandLine); past it the session is dropped.
const maxLine = 4096

// Command is one parsed client command line.
type Command struct {
	// Verb is the keyword in upper case ("RETR").
	Verb string
	// Rest is everything after the single space that follows the keyword,
	// verbatim ("" when there is none). PASS takes it whole, as a password
	// may contain spaces; other commands split it with Args.
	Rest string
}

// Args splits Rest into space-separated arguments (RFC 1939 §3: "keywords
// and arguments are each separated by a single SPACE character"; runs of
// spaces and trailing spaces, which some clients send, are tolerated).
func (c Command) Args() []string {
	return strings.FieldsFunc(c.Rest, func(r rune) bool { return r == ' ' })
}

var (
	errEmptyCommand = errors.New("empty command line")
	errBadKeyword   = errors.New("a command starts with a keyword of 3 or 4 letters")
)

// ParseCommand parses one command line, without its line end. Keywords are
// case-insensitive letters (RFC 1939 §3: three or four characters; up to 8 are
// read so that unknown commands can be named in the reply). Control
// characters are refused anywhere; octets above 0x7f are allowed in arguments
// (UTF-8 user names and passwords).
func ParseCommand(line string) (Command, error) {
	if line == "" {
		return Command{}, errEmptyCommand
	}
	for i := 0; i < len(line); i++ {
		if b := line[i]; b < ' ' || b == 0x7f {
			return Command{}, fmt.Errorf("control character 0x%02x in command line", b)
		}
	}
	verb, rest, _ := strings.Cut(line, " ")
	if len(verb) == 0 || len(verb) > 8 {
		return Command{}, errBadKeyword
	}
	for i := 0; i < len(verb); i++ {
		if b := verb[i] | 0x20; b < 'a' || b > 'z' {
			return Command{}, errBadKeyword
		}
	}
	return Command{Verb: strings.ToUpper(verb), Rest: rest}, nil
}

// parseMsgNum reads a message number: decimal digits only, 1 or more, with no
// sign and no overflow (RFC 1939 §3: "msg" is a message-number argument).
func parseMsgNum(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// parseLineCount reads the line count of TOP: decimal digits only, of any
// length; counts past 1<<30 mean "all" (clients send e.g. 2147483647).
func parseLineCount(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		if n < 1<<30 {
			n = n*10 + int(s[i]-'0')
		}
	}
	return min(n, 1<<30), true
}
