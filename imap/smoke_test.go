package imap_test

import "testing"

func TestSmoke(t *testing.T) {
	ts := startServer(t, nil)
	ts.deliver(t, alice, "INBOX", testMessage("hello", "world"))
	r := dialRaw(t, ts.addr)
	t.Log(r.expectOK("CAPABILITY"))
	r.login(alice)
	t.Log(r.expectOK("CAPABILITY"))
	t.Log(r.expectOK("LIST \"\" \"*\""))
	t.Log(r.expectOK("SELECT INBOX"))
	t.Log(r.expectOK("FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (Subject)] BODY[TEXT])"))
	t.Log(r.expectOK("FETCH 1 (FLAGS)"))
	t.Log(r.expectOK("LOGOUT"))
}
