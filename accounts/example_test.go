package accounts_test

import (
	"fmt"
	"os"

	"github.com/postyard-mail/postyard/accounts"
)

func Example() {
	dataDir, _ := os.MkdirTemp("", "postyard-example")
	defer os.RemoveAll(dataDir)

	// What `postyard user add` and `postyard alias add` do.
	if err := accounts.AddUser(dataDir, "alice@example.com", "correct horse"); err != nil {
		fmt.Println(err)
	}
	if err := accounts.AddAlias(dataDir, "postmaster@example.com", []string{"alice@example.com", "ops@elsewhere.net"}, true); err != nil {
		fmt.Println(err)
	}

	// What the server does.
	dir, err := accounts.Open(dataDir, []string{"example.com"}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	user, err := dir.Authenticate("Alice@Example.com", "correct horse")
	fmt.Println(user, err)
	res, _ := dir.Resolve("postmaster@example.com")
	fmt.Println(res.Local, res.Remote)
	res, _ = dir.Resolve("alice+lists@example.com")
	fmt.Println(res.Local)
	_, err = dir.Resolve("bob@example.com")
	fmt.Println(err)
	fmt.Println(dir.CanSendAs(user, "postmaster@example.com"))
	// Output:
	// alice@example.com <nil>
	// [alice@example.com] [ops@elsewhere.net]
	// [alice@example.com]
	// accounts: no such user: bob@example.com
	// true
}
