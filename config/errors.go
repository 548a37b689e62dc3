package config

import (
	"strconv"
	"strings"
)

// Error is one problem in a configuration, located by file, line and key.
type Error struct {
	File    string // the config file; "" for a Config built in code
	Line    int    // 1-based; 0 when the key is not in the file (e.g. a default)
	Key     string // dotted path such as "smtp.max_message_size"; "" for syntax errors
	Problem string
}

// Error formats the problem as "FILE:LINE: key: problem", leaving out the
// parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Problem)
	return b.String()
}

// Errors is every problem found in one configuration, in file order. Load
// returns it (as error) whenever it is not empty.
type Errors []*Error

// Error lists the problems one a line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives errors.As access to each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
