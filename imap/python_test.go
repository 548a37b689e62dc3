package imap_test

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// imaplibScript drives the server with Python's imaplib; it prints
// "ALL OK" at the end, and any failed assertion exits non-zero.
const imaplibScript = `
import imaplib, sys, time

host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
M = imaplib.IMAP4(host, port)
M.socket().settimeout(10)
typ, caps = M.capability()
assert typ == 'OK' and b'STARTTLS' in caps[0], caps
M.login(user, pw)
typ, caps = M.capability()
for c in (b'IDLE', b'MOVE', b'UIDPLUS', b'SPECIAL-USE', b'NAMESPACE', b'ESEARCH'):
    assert c in caps[0], (c, caps)

typ, data = M.select('INBOX')
assert typ == 'OK' and data == [b'1'], data
typ, data = M.fetch('1', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)] RFC822.SIZE)')
assert typ == 'OK' and b'Subject: delivered' in data[0][1], data

msg = b"From: py@example.org\r\nSubject: from python\r\n\r\nhello from imaplib\r\n"
typ, data = M.append('INBOX', r'(\Flagged)', imaplib.Time2Internaldate(time.time()), msg)
assert typ == 'OK' and b'APPENDUID' in data[0], data
M.noop()
typ, data = M.uid('SEARCH', None, 'FLAGGED')
uids = data[0].split()
assert len(uids) == 1, data
typ, data = M.uid('FETCH', uids[0], '(RFC822 FLAGS)')
assert typ == 'OK' and data[0][1] == msg, data
assert b'\\Seen' in data[0][0] and b'\\Flagged' in data[0][0], data
typ, data = M.search(None, 'SUBJECT', '"from python"')
assert data == [b'2'], data
typ, data = M.search(None, 'BODY', 'imaplib')
assert data == [b'2'], data

typ, data = M.create('Py/Sub')
assert typ == 'OK', data
typ, data = M.list('""', 'Py*')
assert any(b'"Py/Sub"' in l for l in data), data
typ, data = M.copy('1:2', 'Py/Sub')
assert typ == 'OK' and b'COPYUID' in data[0], data
typ, data = M.status('Py/Sub', '(MESSAGES UNSEEN)')
assert b'MESSAGES 2' in data[0], data
typ, data = M.rename('Py/Sub', 'Py/Renamed')
assert typ == 'OK', data

typ, data = M.store('1', '+FLAGS', r'(\Deleted)')
assert typ == 'OK', data
typ, data = M.expunge()
assert data == [b'1'], data
typ, data = M.uid('MOVE', uids[0], 'Archive')
assert typ == 'OK', data
typ, data = M.select('Archive', readonly=True)
assert data == [b'1'], data
M.close()
typ, data = M.delete('Py/Renamed')
assert typ == 'OK', data
M.logout()
print("ALL OK")
`

func TestPythonImaplib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed (CI installs it)")
	}
	ts := startServer(t, nil)
	ts.deliver(t, alice, "INBOX", testMessage("delivered", "x"))
	host, port, _ := net.SplitHostPort(ts.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", imaplibScript, host, port, alice, password).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ALL OK") {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
}
