// Command postyard is a single-binary mail server: SMTP in, submission,
// relay, IMAP and POP3 over one Maildir tree. See the README and
// "postyard --help".
package main

import (
	"os"

	"github.com/postyard-mail/postyard/cli"
)

func main() { os.Exit(cli.Execute()) }
