package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxPasswordLen bounds a password read from stdin.
const maxPasswordLen = 1024

// password gets a new password for addr: one line of stdin with
// --password-stdin, else two no-echo prompts on the terminal. It never comes
// from the arguments (they show in ps and shell history).
func (a *app) password(addr string, fromStdin bool) (string, error) {
	if fromStdin {
		return readPasswordLine(a.stdin)
	}
	if a.readPassword == nil {
		return "", errors.New("no password: stdin is not a terminal; write the password on stdin with --password-stdin")
	}
	p1, err := a.readPassword(fmt.Sprintf("New password for %s: ", addr))
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	if p1 == "" {
		return "", errors.New("empty password")
	}
	if len(p1) > maxPasswordLen {
		return "", fmt.Errorf("password longer than %d bytes", maxPasswordLen)
	}
	p2, err := a.readPassword("Repeat it: ")
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	if p1 != p2 {
		return "", errors.New("the two passwords differ")
	}
	return p1, nil
}

// readPasswordLine reads the first line of r, without its line ending.
func readPasswordLine(r io.Reader) (string, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, maxPasswordLen+2), maxPasswordLen+2)
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from stdin: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case len(line) > maxPasswordLen:
		return "", fmt.Errorf("password on stdin is longer than %d bytes", maxPasswordLen)
	case line == "":
		return "", errors.New("no password on stdin (--password-stdin reads one line)")
	}
	return line, nil
}
