package smtp_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// outcome is what a client saw: the code and enhanced code of the reply to
// the RCPT and, when it got that far, to the end of DATA.
type outcome struct {
	rcptCode int
	rcptEnh  string
	dataCode int
	dataEnh  string
	dataText string
}

// transaction is one MAIL/RCPT(/DATA) exchange through one of the clients.
type transaction struct {
	from, rcpt string
	data       string // "" stops after RCPT
	starttls   bool
}

// smtpClient runs transactions, in order and each on a connection of its
// own, with a real client program or library.
type smtpClient struct {
	name string
	run  func(t *testing.T, addr string, txs []transaction) []outcome
}

var clients = []smtpClient{
	{"go-smtp", each(runGoSMTP)},
	{"swaks", each(runSwaks)},
	{"smtplib", runSmtplib}, // one Python process for all: its start-up is slow
}

func each(run func(t *testing.T, addr string, tx transaction) outcome) func(*testing.T, string, []transaction) []outcome {
	return func(t *testing.T, addr string, txs []transaction) []outcome {
		out := make([]outcome, len(txs))
		for i, tx := range txs {
			out[i] = run(t, addr, tx)
		}
		return out
	}
}

func enhOf(e gosmtp.EnhancedCode) string {
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}

func runGoSMTP(t *testing.T, addr string, tx transaction) outcome {
	t.Helper()
	var c *gosmtp.Client
	var err error
	if tx.starttls {
		c, err = gosmtp.DialStartTLS(addr, testClientTLS()) // EHLO localhost, STARTTLS, EHLO
	} else {
		c, err = gosmtp.Dial(addr)
		if err == nil {
			err = c.Hello("gosmtp.client.test")
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.CommandTimeout = 15 * time.Second
	c.SubmissionTimeout = 15 * time.Second
	if err := c.Mail(tx.from, nil); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	var o outcome
	o.rcptCode, o.rcptEnh = 250, "2.0.0"
	if err := c.Rcpt(tx.rcpt, nil); err != nil {
		var se *gosmtp.SMTPError
		if !errors.As(err, &se) {
			t.Fatalf("RCPT: %v", err)
		}
		o.rcptCode, o.rcptEnh = se.Code, enhOf(se.EnhancedCode)
		return o
	}
	if tx.data == "" {
		_ = c.Quit()
		return o
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	_, werr := w.Write([]byte(tx.data))
	resp, err := w.CloseWithResponse()
	if err == nil {
		err = werr
	}
	if err != nil {
		var se *gosmtp.SMTPError
		if !errors.As(err, &se) {
			t.Fatalf("end of DATA: %v", err)
		}
		o.dataCode, o.dataEnh, o.dataText = se.Code, enhOf(se.EnhancedCode), se.Message
		return o
	}
	o.dataCode = 250
	o.dataEnh, o.dataText, _ = strings.Cut(resp.StatusText, " ")
	_ = c.Quit()
	return o
}

func needTool(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s is not installed (CI installs it)", tool)
	}
	return p
}

// swaks prints server replies as "<-  250 2.0.0 ..." or "<** 550 5.1.1 ...".
// After STARTTLS the arrows are "~>" and "<~" ("<~*" for errors).
var (
	swaksReply   = regexp.MustCompile(`^<[-~]?\*{0,2} +(\d{3})[ -](\d\.\d{1,3}\.\d{1,3})? ?(.*)$`)
	swaksRcpt    = regexp.MustCompile(`^ *[-~]> RCPT TO`)
	swaksDataEnd = regexp.MustCompile(`^ *[-~]> \.$`)
)

func runSwaks(t *testing.T, addr string, tx transaction) outcome {
	t.Helper()
	swaks := needTool(t, "swaks")
	host, port, _ := strings.Cut(addr, ":")
	args := []string{"--server", host, "--port", port, "--ehlo", "swaks.client.test", "--from", tx.from, "--to", tx.rcpt, "--timeout", "15"}
	if tx.starttls {
		args = append(args, "--tls")
	}
	if tx.data == "" {
		args = append(args, "--quit-after", "RCPT")
	} else {
		f := filepath.Join(t.TempDir(), "msg.eml")
		if err := os.WriteFile(f, []byte(tx.data), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--data", f)
	}
	out, _ := exec.Command(swaks, args...).CombinedOutput() // exit status reflects the replies
	var o outcome
	stage := ""
	for line := range strings.Lines(string(out)) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case swaksRcpt.MatchString(line):
			stage = "rcpt"
		case swaksDataEnd.MatchString(line):
			stage = "data"
		}
		m := swaksReply.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		code, _ := strconv.Atoi(m[1])
		switch stage {
		case "rcpt":
			o.rcptCode, o.rcptEnh = code, m[2]
			stage = ""
		case "data":
			o.dataCode, o.dataEnh, o.dataText = code, m[2], m[3]
			stage = ""
		}
	}
	if o.rcptCode == 0 {
		t.Fatalf("no RCPT reply in swaks output:\n%s", out)
	}
	return o
}

func runSmtplib(t *testing.T, addr string, txs []transaction) []outcome {
	t.Helper()
	py := needTool(t, "python3")
	host, port, _ := strings.Cut(addr, ":")
	specs := make([]map[string]any, len(txs))
	for i, tx := range txs {
		specs[i] = map[string]any{"from": tx.from, "rcpts": []string{tx.rcpt}, "starttls": tx.starttls}
		if tx.data != "" {
			specs[i]["data"] = tx.data
		}
	}
	js, _ := json.Marshal(specs)
	out, err := exec.Command(py, "testdata/smtplib_client.py", host, port, string(js)).Output()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	var res []struct {
		Rcpt [][2]any `json:"rcpt"`
		Data [2]any   `json:"data"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(txs) {
		t.Fatalf("smtplib output %q: %v", out, err)
	}
	outcomes := make([]outcome, len(txs))
	for i, r := range res {
		if len(r.Rcpt) != 1 {
			t.Fatalf("smtplib output %q has no RCPT reply", out)
		}
		o := &outcomes[i]
		o.rcptCode, o.rcptEnh, _ = splitPyReply(r.Rcpt[0])
		if r.Data[0] != nil {
			o.dataCode, o.dataEnh, o.dataText = splitPyReply(r.Data)
		}
	}
	return outcomes
}

// splitPyReply splits smtplib's (code, "5.1.1 text") into its parts.
func splitPyReply(r [2]any) (int, string, string) {
	code, _ := r[0].(float64)
	text, _ := r[1].(string)
	enh, rest, _ := strings.Cut(text, " ")
	return int(code), enh, rest
}
