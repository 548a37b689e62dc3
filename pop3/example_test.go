package pop3_test

import (
	"fmt"

	"github.com/postyard-mail/postyard/pop3"
)

func ExampleUIDL() {
	// Message UID 1 of a mailbox whose UIDVALIDITY is 1795463487, as
	// Postyard and Dovecot (pop3_uidl_format = %08Xu%08Xv) list it.
	fmt.Println(pop3.UIDL(1, 1795463487))
	// Output: 000000016b04993f
}

func ExampleParseCommand() {
	cmd, err := pop3.ParseCommand("top 3 10")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cmd.Verb, cmd.Args())
	_, err = pop3.ParseCommand("a001 LOGIN user pass") // an IMAP command
	fmt.Println(err)
	// Output:
	// TOP [3 10]
	// a command starts with a keyword of 3 or 4 letters
}
