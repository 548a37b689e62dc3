package smtp_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postyard-mail/postyard/internal/testenv"
)

// TestE2ESwaksDelivery runs the real binary: a message sent with swaks to
// port 25's listener lands as a file in data_dir/mail/example.test/USER/new
// with its Return-Path and Received headers; relaying and unknown users are
// refused.
func TestE2ESwaksDelivery(t *testing.T) {
	swaks := needTool(t, "swaks")
	env := testenv.Start(t, testenv.Options{})
	env.AddUser(t, "alice@example.test", "secret-password")
	host, port, _ := strings.Cut(env.SMTP, ":")
	run := func(to string, extra ...string) string {
		args := append([]string{"--server", host, "--port", port, "--ehlo", "swaks.client.test",
			"--from", "sender@remote.example", "--to", to, "--timeout", "20",
			"--header", "Subject: e2e"}, extra...)
		out, _ := exec.Command(swaks, args...).CombinedOutput()
		return string(out)
	}

	// the directory notices the new passwd line within a second
	waitFor(t, func() bool {
		return runGoSMTP(t, env.SMTP, transaction{from: "a@remote.example", rcpt: "alice@example.test"}).rcptCode == 250
	})

	out := run("Alice+e2e@Example.Test", "--tls")
	if !strings.Contains(out, "250 2.0.0 Ok: delivered as ") {
		t.Fatalf("swaks:\n%s", out)
	}
	newDir := filepath.Join(env.DataDir, "mail", "example.test", "alice", "new")
	ents, err := os.ReadDir(newDir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("%s: %d entries, %v", newDir, len(ents), err)
	}
	b, err := os.ReadFile(filepath.Join(newDir, ents[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	msg := string(b)
	for _, want := range []string{
		"Return-Path: <sender@remote.example>\r\n",
		"Received: from swaks.client.test ([127.0.0.1])\r\n\t(using TLSv1.3 with cipher ",
		"\tby " + env.Hostname + " (Postyard) with ESMTPS id ",
		"\tfor <Alice+e2e@Example.Test>; ",
		"Subject: e2e\r\n",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("delivered message lacks %q:\n%s", want, msg)
		}
	}

	if out := run("bob@example.test", "--quit-after", "RCPT"); !strings.Contains(out, "550 5.1.1") {
		t.Errorf("unknown user not refused with 550 5.1.1:\n%s", out)
	}
	if out := run("someone@elsewhere.example", "--quit-after", "RCPT"); !strings.Contains(out, "554 5.7.1") {
		t.Errorf("relaying not refused with 554 5.7.1:\n%s", out)
	}
	env.WaitLog(t, "msg=delivered")
}
