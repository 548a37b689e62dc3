package mailauth

import (
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/postyard-mail/postyard/dnsmx"
	"github.com/postyard-mail/postyard/internal/dnstest"
)

func TestParseDMARC(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string // String() of the record, "" for unusable
	}{
		{"v=DMARC1; p=none", "v=DMARC1; p=none"},
		{"v=DMARC1;p=reject", "v=DMARC1; p=reject"},
		{"v = DMARC1 ; p = Quarantine ; ", "v=DMARC1; p=quarantine"},
		{"v=DMARC1; p=reject; sp=none; adkim=s; aspf=s; pct=25", "v=DMARC1; p=reject; sp=none; adkim=s; aspf=s; pct=25"},
		{"v=DMARC1; p=reject; adkim=r; aspf=R; pct=100", "v=DMARC1; p=reject"},
		{"v=DMARC1; p=quarantine; rua=mailto:d@example.com,mailto:e@example.net!10m; ruf=mailto:f@example.com; fo=1:d; rf=afrf; ri=3600",
			"v=DMARC1; p=quarantine; rua=mailto:d@example.com,mailto:e@example.net!10m; ruf=mailto:f@example.com; fo=1:d; ri=3600"},
		// Bad optional values fall back to defaults (§6.3).
		{"v=DMARC1; p=reject; sp=bogus; adkim=x; pct=101; ri=-1", "v=DMARC1; p=reject"},
		{"v=DMARC1; p=reject; pct=-5", "v=DMARC1; p=reject"},
		{"v=DMARC1; p=reject; pct=+5", "v=DMARC1; p=reject"},
		{"v=DMARC1; p=reject; pct=0", "v=DMARC1; p=reject; pct=0"},
		{"v=DMARC1; p=reject; unknown=tag; x", "v=DMARC1; p=reject"},
		{"v=DMARC1; p=reject; p=none", "v=DMARC1; p=reject"}, // the first wins
		// No valid p: usable only with a rua (§6.6.3).
		{"v=DMARC1; rua=mailto:d@example.com", "v=DMARC1; p=none; rua=mailto:d@example.com"},
		{"v=DMARC1; p=bogus; rua=mailto:d@example.com", "v=DMARC1; p=none; rua=mailto:d@example.com"},
		{"v=DMARC1", ""},
		{"v=DMARC1; p=bogus", ""},
		{"v=DMARC1; rua=not a uri", ""},
		// Not DMARC1 records.
		{"p=reject; v=DMARC1", ""},
		{"v=dmarc1; p=reject", ""},
		{"v=DMARC2; p=reject", ""},
		{"v=DMARC1x; p=reject", ""},
		{"v=spf1 -all", ""},
		{"", ""},
	}
	for _, tc := range tests {
		rec, err := ParseDMARC(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%q: accepted as %q", tc.in, rec)
		case tc.want != "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.want != "" && rec.String() != tc.want:
			t.Errorf("%q:\ngot  %q\nwant %q", tc.in, rec, tc.want)
		}
	}
}

// FuzzParseDMARC: no panic, and a parsed record's String parses back to
// the same record.
func FuzzParseDMARC(f *testing.F) {
	for _, s := range []string{
		"v=DMARC1; p=none",
		"v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; pct=50; rua=mailto:a@b.c!5m; ruf=mailto:x@y.z; fo=d:s; rf=afrf; ri=60",
		"v=DMARC1; rua=mailto:x@y.z",
		"v = DMARC1 ;p=Quarantine;;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := ParseDMARC(s)
		if err != nil {
			return
		}
		again, err := ParseDMARC(rec.String())
		if err != nil {
			t.Fatalf("%q → %q does not parse: %v", s, rec, err)
		}
		if again.String() != rec.String() {
			t.Fatalf("%q → %q → %q", s, rec, again)
		}
	})
}

func TestOrganizationalDomain(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"example.com":               "example.com",
		"mail.example.com":          "example.com",
		"a.b.c.example.co.uk":       "example.co.uk",
		"EXAMPLE.COM.":              "example.com",
		"co.uk":                     "co.uk",
		"com":                       "com",
		"foo.blogspot.com":          "foo.blogspot.com", // private suffix
		"bar.foo.blogspot.com":      "foo.blogspot.com",
		"xn--bcher-kva.example":     "xn--bcher-kva.example",
		"sub.xn--bcher-kva.example": "xn--bcher-kva.example",
	} {
		if got := OrganizationalDomain(in); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

// TestDMARCAlignment is the alignment table: From domain, policy records,
// the SPF-authenticated domain and the passing DKIM domains, against the
// result and the policy that applies.
func TestDMARCAlignment(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, `
_dmarc.relaxed.example.   IN TXT "v=DMARC1; p=reject"
_dmarc.strict.example.    IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
_dmarc.spstrict.example.  IN TXT "v=DMARC1; p=reject; aspf=s"
_dmarc.sp.example.        IN TXT "v=DMARC1; p=reject; sp=quarantine"
_dmarc.sub.sp.example.    IN TXT "v=DMARC1; p=none"
_dmarc.spnone.example.    IN TXT "v=DMARC1; p=quarantine; sp=none"
_dmarc.pct.example.       IN TXT "v=DMARC1; p=reject; pct=0"
_dmarc.pctq.example.      IN TXT "v=DMARC1; p=quarantine; pct=0"
_dmarc.pct100.example.    IN TXT "v=DMARC1; p=reject; pct=100"
_dmarc.two.example.       IN TXT "v=DMARC1; p=reject"
_dmarc.two.example.       IN TXT "v=DMARC1; p=none"
_dmarc.other.example.     IN TXT "not dmarc"
_dmarc.other.example.     IN TXT "v=DMARC1; p=quarantine"
_dmarc.bad.example.       IN TXT "v=DMARC1; p=maybe"
_dmarc.couk.co.uk.        IN TXT "v=DMARC1; p=reject"
`)
	srv.Fail("_dmarc.slow.example", 0, dnstest.Timeout)
	r, err := dnsmx.New(dnsmx.Options{Upstream: srv.Addr, Timeout: 200 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	spf := func(res authres.ResultValue, domain string) SPFResult { return SPFResult{Result: res, Domain: domain} }
	pass := authres.ResultValue(authres.ResultPass)
	tests := []struct {
		name    string
		from    string
		spf     SPFResult
		dkim    []string // passing DKIM d= domains; "temp:d" for a temperror
		want    string   // result
		policy  DMARCPolicy
		applied DMARCPolicy
		aligned string // "spf", "dkim", "both", ""
	}{
		{"SPF exact", "relaxed.example", spf(pass, "relaxed.example"), nil, "pass", "reject", "none", "spf"},
		{"SPF relaxed subdomain", "relaxed.example", spf(pass, "bounce.relaxed.example"), nil, "pass", "reject", "none", "spf"},
		{"SPF relaxed parent", "mail.relaxed.example", spf(pass, "relaxed.example"), nil, "pass", "reject", "none", "spf"},
		{"SPF other domain", "relaxed.example", spf(pass, "other.example"), nil, "fail", "reject", "reject", ""},
		{"SPF fail aligned", "relaxed.example", spf(authres.ResultFail, "relaxed.example"), nil, "fail", "reject", "reject", ""},
		{"SPF softfail does not pass", "relaxed.example", spf(authres.ResultSoftFail, "relaxed.example"), nil, "fail", "reject", "reject", ""},
		{"SPF strict exact", "strict.example", spf(pass, "strict.example"), nil, "pass", "reject", "none", "spf"},
		{"SPF strict subdomain", "strict.example", spf(pass, "bounce.strict.example"), nil, "fail", "reject", "reject", ""},
		{"DKIM exact", "relaxed.example", spf(authres.ResultFail, "x.test"), []string{"relaxed.example"}, "pass", "reject", "none", "dkim"},
		{"DKIM relaxed subdomain", "relaxed.example", SPFResult{}, []string{"mail.relaxed.example"}, "pass", "reject", "none", "dkim"},
		{"DKIM strict subdomain", "strict.example", SPFResult{}, []string{"mail.strict.example"}, "fail", "reject", "reject", ""},
		{"DKIM strict exact", "strict.example", SPFResult{}, []string{"strict.example"}, "pass", "reject", "none", "dkim"},
		{"DKIM unrelated", "relaxed.example", SPFResult{}, []string{"other.example"}, "fail", "reject", "reject", ""},
		{"DKIM of a public suffix does not align", "couk.co.uk", SPFResult{}, []string{"co.uk"}, "fail", "reject", "reject", ""},
		{"strict SPF, relaxed DKIM", "spstrict.example", spf(pass, "a.spstrict.example"), []string{"b.spstrict.example"}, "pass", "reject", "none", "dkim"},
		{"both", "relaxed.example", spf(pass, "relaxed.example"), []string{"relaxed.example"}, "pass", "reject", "none", "both"},
		{"sp for a subdomain", "mail.sp.example", SPFResult{}, nil, "fail", "quarantine", "quarantine", ""},
		{"p for the domain itself", "sp.example", SPFResult{}, nil, "fail", "reject", "reject", ""},
		{"own record of a subdomain wins", "sub.sp.example", SPFResult{}, nil, "fail", "none", "none", ""},
		{"below that subdomain: org record, sp", "x.sub.sp.example", SPFResult{}, nil, "fail", "quarantine", "quarantine", ""},
		{"sp=none", "a.spnone.example", SPFResult{}, nil, "fail", "none", "none", ""},
		{"no sp: p applies to subdomains", "deep.sub.relaxed.example", SPFResult{}, nil, "fail", "reject", "reject", ""},
		{"pct=0 reject becomes quarantine", "pct.example", SPFResult{}, nil, "fail", "reject", "quarantine", ""},
		{"pct=0 quarantine becomes none", "pctq.example", SPFResult{}, nil, "fail", "quarantine", "none", ""},
		{"pct=100", "pct100.example", SPFResult{}, nil, "fail", "reject", "reject", ""},
		{"no record", "none.example", spf(pass, "none.example"), nil, "none", "", "", ""},
		{"two records: no policy", "two.example", SPFResult{}, nil, "none", "", "", ""},
		{"other TXT ignored", "other.example", SPFResult{}, nil, "fail", "quarantine", "quarantine", ""},
		{"unusable record", "bad.example", SPFResult{}, nil, "none", "", "", ""},
		{"DNS timeout", "slow.example", spf(pass, "slow.example"), nil, "temperror", "", "", ""},
		{"DKIM temperror may pass", "relaxed.example", SPFResult{}, []string{"temp:relaxed.example"}, "fail", "reject", "reject", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var dkims []DKIMResult
			for _, d := range tc.dkim {
				res := authres.ResultValue(authres.ResultPass)
				if _, after, ok := cutPrefix(d, "temp:"); ok {
					res, d = authres.ResultTempError, after
				}
				dkims = append(dkims, DKIMResult{Result: res, Domain: d})
			}
			always := func(int) bool { return false } // outside every pct<100 sample
			got := evalDMARC(t.Context(), r, tc.from, nil, false, tc.spf, dkims, always)
			aligned := ""
			switch {
			case got.SPFAligned && got.DKIMAligned:
				aligned = "both"
			case got.SPFAligned:
				aligned = "spf"
			case got.DKIMAligned:
				aligned = "dkim"
			}
			if string(got.Result) != tc.want || got.Policy != tc.policy || got.Applied != tc.applied || aligned != tc.aligned {
				t.Errorf("got %s policy=%q applied=%q aligned=%q (%s)\nwant %s policy=%q applied=%q aligned=%q",
					got.Result, got.Policy, got.Applied, aligned, got.Reason, tc.want, tc.policy, tc.applied, tc.aligned)
			}
			if tc.name == "DKIM temperror may pass" && !got.MayPass {
				t.Errorf("MayPass not set")
			}
		})
	}
}

func cutPrefix(s, p string) (string, string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return p, s[len(p):], true
	}
	return "", s, false
}

func TestFromDomain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header   string
		want     string
		multiple bool
		err      bool
	}{
		{"From: a@example.com\r\n", "example.com", false, false},
		{"From: \"Alice, A.\" <alice@Example.COM>\r\n", "example.com", false, false},
		{"FROM : Alice\r\n <alice@example.com>\r\n", "example.com", false, false},
		{"From: =?utf-8?q?J=C3=B6rg?= <j@example.com>\r\n", "example.com", false, false},
		{"From: a@example.com, b@EXAMPLE.com\r\n", "example.com", false, false},
		{"From: a@example.com, b@example.net\r\n", "", true, true},
		{"From: a@example.com\r\nFrom: b@example.com\r\n", "", true, true},
		{"To: x@example.com\r\n", "", false, true},
		{"From: undisclosed\r\n", "", false, true},
		{"From: broken <<a@example.com>\r\n", "example.com", false, false},
		{"From: a@localhost\r\n", "", false, true},
	}
	for _, tc := range tests {
		fields, _ := splitFields([]byte(tc.header + "\r\n"))
		d, multiple, err := fromDomain(fields)
		if d != tc.want || multiple != tc.multiple || (err != nil) != tc.err {
			t.Errorf("%q: got %q multiple=%v err=%v", tc.header, d, multiple, err)
		}
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	fail := func(applied DMARCPolicy) DMARCResult {
		return DMARCResult{Result: authres.ResultFail, From: "example.org", Domain: "example.org", Policy: applied, Applied: applied}
	}
	tests := []struct {
		name string
		r    Result
		p    Policy
		want Action
		code string
	}{
		{"all pass", Result{SPF: SPFResult{Result: authres.ResultPass}, DMARC: DMARCResult{Result: authres.ResultPass}}, Policy{}, Accept, "0 0.0.0"},
		{"no DMARC", Result{SPF: SPFResult{Result: authres.ResultNone}, DMARC: DMARCResult{Result: authres.ResultNone}}, Policy{}, Accept, "0 0.0.0"},
		{"DMARC reject", Result{DMARC: fail(PolicyReject)}, Policy{}, Reject, "550 5.7.1"},
		{"DMARC quarantine", Result{DMARC: fail(PolicyQuarantine)}, Policy{}, Quarantine, "0 0.0.0"},
		{"DMARC none", Result{DMARC: fail(PolicyNone)}, Policy{}, Accept, "0 0.0.0"},
		{"DMARC reject, record only", Result{DMARC: fail(PolicyReject)}, Policy{RecordDMARCOnly: true}, Accept, "0 0.0.0"},
		{"DMARC temperror", Result{DMARC: DMARCResult{Result: authres.ResultTempError}}, Policy{}, TempFail, "451 4.4.3"},
		{"DMARC fail that may pass", Result{DMARC: func() DMARCResult { d := fail(PolicyReject); d.MayPass = true; return d }()}, Policy{}, TempFail, "451 4.4.3"},
		{"may pass under p=none", Result{DMARC: func() DMARCResult { d := fail(PolicyNone); d.MayPass = true; return d }()}, Policy{}, Accept, "0 0.0.0"},
		{"multiple From", Result{DMARC: DMARCResult{Result: authres.ResultPermError, MultipleFrom: true}}, Policy{}, Reject, "550 5.7.1"},
		{"SPF fail recorded", Result{SPF: SPFResult{Result: authres.ResultFail}}, Policy{}, Accept, "0 0.0.0"},
		{"SPF fail rejected", Result{SPF: SPFResult{Result: authres.ResultFail, Explanation: "not allowed"}}, Policy{RejectSPFFail: true}, Reject, "550 5.7.23"},
		{"SPF temperror", Result{SPF: SPFResult{Result: authres.ResultTempError}}, Policy{RejectSPFFail: true}, TempFail, "451 4.7.24"},
		{"SPF temperror recorded", Result{SPF: SPFResult{Result: authres.ResultTempError}}, Policy{}, Accept, "0 0.0.0"},
		{"reject beats quarantine", Result{SPF: SPFResult{Result: authres.ResultFail}, DMARC: fail(PolicyQuarantine)}, Policy{RejectSPFFail: true}, Reject, "550 5.7.23"},
		{"tempfail beats quarantine", Result{SPF: SPFResult{Result: authres.ResultTempError}, DMARC: fail(PolicyQuarantine)}, Policy{RejectSPFFail: true}, TempFail, "451 4.7.24"},
	}
	for _, tc := range tests {
		v := Decide(tc.r, tc.p)
		code := fmt.Sprintf("%d %d.%d.%d", v.Code, v.Enhanced[0], v.Enhanced[1], v.Enhanced[2])
		if v.Action != tc.want || code != tc.code {
			t.Errorf("%s: %v %s (%s), want %v %s", tc.name, v.Action, code, v.Reason, tc.want, tc.code)
		}
		// The reply class equals the enhanced code's class.
		if v.Code != 0 && v.Code/100 != v.Enhanced[0] {
			t.Errorf("%s: code %d with enhanced class %d", tc.name, v.Code, v.Enhanced[0])
		}
		if v.Reason == "" {
			t.Errorf("%s: no reason", tc.name)
		}
	}
}
