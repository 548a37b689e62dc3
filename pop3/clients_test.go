package pop3_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Real POP3 clients (Python poplib, fetchmail, getmail6) downloading from a
// server. The tests here run them against an in-process server on the real
// store; e2e_test.go runs them against the real binary.

// clientTimeout bounds one run of an external client.
const clientTimeout = 60 * time.Second

// mailSet is what the client tests deliver: dot lines, 8-bit text, an empty
// body, a long line.
func mailSet() []string {
	return []string{
		testMessage("plain", "Hello Alice,", "", "see you.", "-- ", "Bob"),
		testMessage("dots", ".", "..", ".leading dot", "end."),
		"From: sender@example.org\r\nTo: alice@example.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncafé crème\r\n" + strings.Repeat("x", 900) + "\r\n",
		"From: sender@example.org\r\nSubject: empty body\r\n\r\n",
	}
}

func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (CI installs it: .ci/run): %v", name, err)
	}
	return p
}

// runTool runs an external client with a timeout and returns its combined output.
func runTool(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("%s %s:\n%s", filepath.Base(name), strings.Join(args, " "), out)
	return string(out), err
}

// poplibScript logs in, checks a wrong password first, lists, retrieves
// and deletes everything, and prints what it saw as JSON.
const poplibScript = `
import json, poplib, ssl, sys
host, port, user, pw, mode, cafile = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False  # the certificate names localhost; we dial 127.0.0.1
if mode == "ssl":
    p = poplib.POP3_SSL(host, int(port), context=ctx, timeout=10)
else:
    p = poplib.POP3(host, int(port), timeout=10)
res = {"welcome": p.getwelcome().decode(), "capa_before": sorted(p.capa().keys())}
if mode == "stls":
    p.stls(context=ctx)
res["capa"] = sorted(p.capa().keys())
p.user(user)
try:
    p.pass_("wrong password")
except poplib.error_proto as e:
    res["wrong"] = e.args[0].decode()
p.user(user)
p.pass_(pw)
count, size = p.stat()
res["stat"] = [count, size]
res["list"] = [l.decode() for l in p.list()[1]]
res["uidl"] = [l.decode() for l in p.uidl()[1]]
res["top"] = [l.decode("utf-8") for l in p.top(1, 1)[1]]
res["messages"] = []
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    res["messages"].append(b"\r\n".join(lines).decode("utf-8") + "\r\n")
for i in range(1, count + 1):
    p.dele(i)
res["quit"] = p.quit().decode()
print(json.dumps(res))
`

type poplibResult struct {
	Welcome    string   `json:"welcome"`
	CapaBefore []string `json:"capa_before"`
	Capa       []string `json:"capa"`
	Wrong      string   `json:"wrong"`
	Stat       []int    `json:"stat"`
	List       []string `json:"list"`
	UIDL       []string `json:"uidl"`
	Top        []string `json:"top"`
	Messages   []string `json:"messages"`
	Quit       string   `json:"quit"`
}

// checkPoplib runs the poplib script against addr as alice and checks what
// it got against msgs (the maildrop's content, in order). insecure says the
// server treats the connection as insecure before STLS.
func checkPoplib(t *testing.T, addr, mode, certFile string, insecure bool, msgs []string) {
	t.Helper()
	python := lookTool(t, "python3")
	host, port, _ := strings.Cut(addr, ":")
	out, err := runTool(t, nil, python, "-c", poplibScript, host, port, alice, alicePW, mode, certFile)
	if err != nil {
		t.Fatalf("poplib: %v", err)
	}
	var res poplibResult
	if err := json.Unmarshal([]byte(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), &res); err != nil {
		t.Fatalf("poplib output: %v", err)
	}
	if !strings.HasPrefix(res.Welcome, "+OK ") {
		t.Errorf("welcome %q", res.Welcome)
	}
	if mode == "stls" && (slices.Contains(res.CapaBefore, "USER") != !insecure || !slices.Contains(res.CapaBefore, "STLS")) {
		t.Errorf("CAPA before STLS: %q", res.CapaBefore)
	}
	for _, c := range []string{"USER", "UIDL", "TOP", "SASL", "RESP-CODES", "PIPELINING"} {
		if !slices.Contains(res.Capa, c) {
			t.Errorf("CAPA %q lacks %s", res.Capa, c)
		}
	}
	if res.Wrong != "-ERR [AUTH] invalid user name or password" {
		t.Errorf("wrong password: %q", res.Wrong)
	}
	total := 0
	for _, m := range msgs {
		total += len(m)
	}
	if len(res.Stat) != 2 || res.Stat[0] != len(msgs) || res.Stat[1] != total {
		t.Errorf("STAT %v, want [%d %d]", res.Stat, len(msgs), total)
	}
	if len(res.List) != len(msgs) || len(res.UIDL) != len(msgs) {
		t.Fatalf("LIST %q, UIDL %q: want %d entries", res.List, res.UIDL, len(msgs))
	}
	for i, m := range msgs {
		if want := fmt.Sprintf("%d %d", i+1, len(m)); res.List[i] != want {
			t.Errorf("LIST entry %q, want %q", res.List[i], want)
		}
		if i < len(res.Messages) && res.Messages[i] != m {
			t.Errorf("message %d:\n%q\nwant\n%q", i+1, res.Messages[i], m)
		}
	}
	if !slices.Equal(res.Messages, msgs) {
		t.Errorf("got %d messages, want %d", len(res.Messages), len(msgs))
	}
	if len(res.Top) == 0 || res.Top[len(res.Top)-1] != "Hello Alice," {
		t.Errorf("TOP 1 1: %q", res.Top)
	}
	if res.Quit != fmt.Sprintf("+OK Postyard POP3 server signing off (%d messages deleted)", len(msgs)) {
		t.Errorf("QUIT: %q", res.Quit)
	}
}

func TestPoplib(t *testing.T) {
	for _, mode := range []string{"plain", "stls", "ssl"} {
		t.Run(mode, func(t *testing.T) {
			var opts []envOption
			if mode == "stls" {
				opts = append(opts, insecureLoopback()) // passwords only after STLS
			}
			e := newEnv(t, opts...)
			msgs := mailSet()
			for _, m := range msgs {
				e.deliver(alice, m)
			}
			addr := e.plain
			if mode == "ssl" {
				addr = e.implicit
			}
			checkPoplib(t, addr, mode, e.certFile, mode == "stls", msgs)
			if snap, err := e.inbox(alice).Snapshot(); err != nil || len(snap.Messages) != 0 {
				t.Errorf("after DELE and QUIT the store holds %d messages (%v)", len(snap.Messages), err)
			}
		})
	}
}

// fetchmailRC is a fetchmail run control file that hands each message to a
// script saving it in outDir.
func fetchmailRC(t *testing.T, addr, certFile, certName, user, pw, outDir string, implicitTLS, keep bool) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	save := saveScript(t, outDir, false)
	// The certificate names certName; fetchmail dials 127.0.0.1.
	tlsLine := `sslproto "TLS1.2+" sslcertck sslcertfile "` + certFile + `" sslcommonname "` + certName + `"` // STLS, required
	if implicitTLS {
		tlsLine = `ssl sslcertck sslcertfile "` + certFile + `" sslcommonname "` + certName + `"`
	}
	keepLine := "no keep fetchall"
	if keep {
		keepLine = "keep"
	}
	rc := fmt.Sprintf(`set no bouncemail
set no syslog
poll localhost via %s service %s protocol POP3 uidl auth password
  user "%s" there with password "%s" is "nobody" here
  %s
  %s
  mda "%s"
`, host, port, user, pw, tlsLine, keepLine, save)
	path := filepath.Join(t.TempDir(), "fetchmailrc")
	if err := os.WriteFile(path, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// readSaved returns the messages an MDA script saved in dir, sorted by Subject.
func readSaved(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, string(b))
	}
	return msgs
}

// sameMessages checks that got holds msgs (in any order), comparing with
// line ends normalised to LF (fetchmail and getmail store LF) and ignoring
// header lines the client added on top.
func sameMessages(t *testing.T, got, msgs []string) {
	t.Helper()
	if len(got) != len(msgs) {
		t.Fatalf("got %d messages, want %d", len(got), len(msgs))
	}
	for _, want := range msgs {
		w := strings.ReplaceAll(want, "\r\n", "\n")
		found := false
		for _, g := range got {
			if strings.HasSuffix(strings.ReplaceAll(g, "\r\n", "\n"), w) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("message not received intact:\n%q\nreceived:\n%q", w, got)
		}
	}
}

func checkFetchmail(t *testing.T, addr, certFile, certName string, implicitTLS bool, msgs []string) {
	t.Helper()
	fetchmail := lookTool(t, "fetchmail")
	home := t.TempDir()
	out := t.TempDir()
	// First a run that keeps the mail (UIDL bookkeeping), then one that
	// must find nothing new, then one that fetches all and deletes.
	rc := fetchmailRC(t, addr, certFile, certName, alice, alicePW, out, implicitTLS, true)
	env := []string{"FETCHMAILHOME=" + home, "HOME=" + home}
	if _, err := runTool(t, env, fetchmail, "-f", rc, "-v", "--nodetach"); err != nil {
		t.Fatalf("fetchmail (keep): %v", err)
	}
	sameMessages(t, readSaved(t, out), msgs)
	// Exit status 1 is "no mail": everything was seen by its UIDL.
	if text, err := runTool(t, env, fetchmail, "-f", rc, "-v", "--nodetach"); exitCode(err) != 1 {
		t.Fatalf("second fetchmail run: %v, want exit 1 (no new mail)\n%s", err, text)
	}
	if n := len(readSaved(t, out)); n != len(msgs) {
		t.Fatalf("second fetchmail run downloaded again: %d files", n)
	}
	out2 := t.TempDir()
	rc = fetchmailRC(t, addr, certFile, certName, alice, alicePW, out2, implicitTLS, false)
	if _, err := runTool(t, env, fetchmail, "-f", rc, "-v", "--nodetach"); err != nil {
		t.Fatalf("fetchmail (fetchall, delete): %v", err)
	}
	sameMessages(t, readSaved(t, out2), msgs)
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

func TestFetchmail(t *testing.T) {
	for _, implicitTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("implicitTLS=%v", implicitTLS), func(t *testing.T) {
			e := newEnv(t, insecureLoopback()) // STLS is required
			msgs := mailSet()
			for _, m := range msgs {
				e.deliver(alice, m)
			}
			addr := e.plain
			if implicitTLS {
				addr = e.implicit
			}
			checkFetchmail(t, addr, e.certFile, "localhost", implicitTLS, msgs)
			if snap, err := e.inbox(alice).Snapshot(); err != nil || len(snap.Messages) != 0 {
				t.Errorf("after fetchmail the store holds %d messages (%v)", len(snap.Messages), err)
			}
		})
	}
}

// saveScript writes a shell script that saves its stdin as a new file in
// outDir. For getmail it first sleeps a little: getmail installs its SIGCHLD
// handler only after fork() returns in the parent (ForkingBase.forkchild),
// so a child that exits before that is never noticed and getmail waits 60 s
// for it (seen here under load); the sleep keeps the child alive past that
// point.
func saveScript(t *testing.T, outDir string, sleep bool) string {
	t.Helper()
	save := filepath.Join(t.TempDir(), "save.sh")
	script := "#!/bin/sh\nexec cat > \"" + outDir + "/msg.$$\"\n"
	if sleep {
		script = "#!/bin/sh\nsleep 0.2\nexec cat > \"" + outDir + "/msg.$$\"\n"
	}
	if err := os.WriteFile(save, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return save
}

// getmailRC writes a getmail6 rc that hands each message to a script saving
// it in outDir (getmail's own Maildir destination refuses to run as root).
func getmailRC(t *testing.T, addr, certFile, certName, user, pw, outDir string, ssl, del bool) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	retriever := "SimplePOP3Retriever"
	extra := ""
	if ssl {
		retriever = "SimplePOP3SSLRetriever"
		extra = "ca_certs = " + certFile + "\nssl_cert_hostname = " + certName + "\n"
	}
	rc := fmt.Sprintf(`[retriever]
type = %s
server = %s
port = %s
username = %s
password = %s
%s
[destination]
type = MDA_external
path = %s
allow_root_commands = true

[options]
read_all = %v
delete = %v
verbose = 2
`, retriever, host, port, user, pw, extra, saveScript(t, outDir, true), del, del)
	path := filepath.Join(t.TempDir(), "getmailrc")
	if err := os.WriteFile(path, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func checkGetmail(t *testing.T, addr, certFile, certName string, ssl bool, msgs []string) {
	t.Helper()
	getmail := lookTool(t, "getmail")
	gmDir := t.TempDir()
	run := func(out string, del bool) {
		t.Helper()
		rc := getmailRC(t, addr, certFile, certName, alice, alicePW, out, ssl, del)
		if _, err := runTool(t, nil, getmail, "--getmaildir", gmDir, "--rcfile", rc); err != nil {
			t.Fatalf("getmail: %v", err)
		}
	}
	// Leave mail on the server, twice: the second run must fetch nothing
	// (getmail remembers UIDLs); then a run that reads all and deletes.
	out := t.TempDir()
	run(out, false)
	sameMessages(t, readSaved(t, out), msgs)
	run(out, false)
	if n := len(readSaved(t, out)); n != len(msgs) {
		t.Fatalf("second getmail run downloaded again: %d messages", n)
	}
	out = t.TempDir()
	run(out, true)
	sameMessages(t, readSaved(t, out), msgs)
}

func TestGetmail(t *testing.T) {
	for _, ssl := range []bool{false, true} {
		t.Run(fmt.Sprintf("ssl=%v", ssl), func(t *testing.T) {
			e := newEnv(t)
			msgs := mailSet()
			for _, m := range msgs {
				e.deliver(alice, m)
			}
			addr := e.plain
			if ssl {
				addr = e.implicit
			}
			checkGetmail(t, addr, e.certFile, "localhost", ssl, msgs)
			if snap, err := e.inbox(alice).Snapshot(); err != nil || len(snap.Messages) != 0 {
				t.Errorf("after getmail with delete the store holds %d messages (%v)", len(snap.Messages), err)
			}
		})
	}
}
