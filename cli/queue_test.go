package cli

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/delivery/queue"
)

func TestQueueVerbs(t *testing.T) {
	cfgPath, dataDir := writeConfig(t, "")
	q, err := queue.Open(filepath.Join(dataDir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	env, err := q.Enqueue(queue.Envelope{From: "a@example.test", Recipients: []queue.Recipient{{Addr: "b@remote.test", LastError: "451 greylisted"}}, NextAttempt: later},
		strings.NewReader("Subject: queued\r\n\r\nbody\r\n"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "", nil, "--config", cfgPath, "queue", "list")
	if r.code != 0 || !strings.Contains(r.stdout, env.ID) || !strings.Contains(r.stdout, "b@remote.test") || !strings.Contains(r.stdout, "451 greylisted") {
		t.Fatalf("queue list = %+v", r)
	}
	r = runCLI(t, "", nil, "--config", cfgPath, "queue", "show", env.ID)
	if r.code != 0 || !strings.Contains(r.stdout, "Subject: queued") || !strings.Contains(r.stdout, "Recipient: <b@remote.test> pending") {
		t.Fatalf("queue show = %+v", r)
	}
	if r = runCLI(t, "", nil, "--config", cfgPath, "queue", "retry", env.ID); r.code != 0 {
		t.Fatalf("queue retry = %+v", r)
	}
	if got, _ := q.Get(env.ID); got.NextAttempt.After(time.Now()) {
		t.Fatalf("retry left next attempt at %v", got.NextAttempt)
	}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"queue", "show", "../../passwd"}, 1},
		{[]string{"queue", "retry"}, 2},
		{[]string{"queue", "retry", "--all", env.ID}, 2},
		{[]string{"queue", "delete"}, 2},
		{[]string{"queue", "retry", "--all"}, 0},
		{[]string{"queue", "delete", env.ID}, 0},
		{[]string{"queue", "delete", env.ID}, 1},
	} {
		r := runCLI(t, "", nil, append([]string{"--config", cfgPath}, c.args...)...)
		if r.code != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, r.code, c.code, r.stderr)
		}
	}
	if envs, _ := q.List(); len(envs) != 0 {
		t.Fatalf("queue not empty after delete: %d", len(envs))
	}
}

func TestDKIMKeygen(t *testing.T) {
	cfgPath, dataDir := writeConfig(t, "")
	r := runCLI(t, "", nil, "--config", cfgPath, "dkim", "keygen", "example.test", "--algorithm", "ed25519", "--selector", "ed")
	if r.code != 0 || !strings.HasPrefix(r.stdout, `ed._domainkey.example.test. IN TXT "v=DKIM1; k=ed25519; p=`) {
		t.Fatalf("dkim keygen = %+v", r)
	}
	if _, err := filepath.Glob(filepath.Join(dataDir, "dkim", "example.test.ed.key")); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "", nil, "--config", cfgPath, "dkim", "keygen", "example.test")
	if r.code != 0 || !strings.Contains(r.stdout, `default._domainkey.example.test. IN TXT "v=DKIM1; k=rsa; p=`) {
		t.Fatalf("dkim keygen rsa = %+v", r)
	}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"dkim", "keygen"}, 2},
		{[]string{"dkim", "keygen", "example.test", "--algorithm", "dsa"}, 2},
		{[]string{"dkim", "keygen", "example.test", "--selector", "ed", "--algorithm", "ed25519"}, 1}, // exists
	} {
		r := runCLI(t, "", nil, append([]string{"--config", cfgPath}, c.args...)...)
		if r.code != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, r.code, c.code, r.stderr)
		}
	}
}
