package mailauth_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postyard-mail/postyard/dnsmx"
	"github.com/postyard-mail/postyard/internal/dnstest"
	"github.com/postyard-mail/postyard/mailauth"
)

// The openspf.org RFC 7208 test suite (release 2014.04), converted from the
// YAML that Debian's python3-spf ships (testdata/rfc7208-tests.py). Every
// scenario's zone is served by a loopback dnstest server.

type suiteRecord struct {
	Type  string   `json:"type"`
	Value []string `json:"value"`
}

type suiteTest struct {
	Spec        string   `json:"spec"`
	HELO        string   `json:"helo"`
	Host        string   `json:"host"`
	MailFrom    string   `json:"mailfrom"`
	Result      []string `json:"result"`
	Explanation *string  `json:"explanation"`
}

type suiteScenario struct {
	Description string                   `json:"description"`
	Zonedata    map[string][]suiteRecord `json:"zonedata"`
	Tests       map[string]suiteTest     `json:"tests"`
}

// escapeTXT puts raw bytes into the presentation form that miekg/dns packs.
func escapeTXT(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// suiteRRs returns the records of one name, and the types that time out:
// TIMEOUT in the suite means that queries for types without data at the
// name get no answer ("TXT: NONE" is a type without data).
func suiteRRs(t *testing.T, name string, recs []suiteRecord) (rrs []dns.RR, timeouts []uint16) {
	hdr := func(typ uint16) dns.RR_Header {
		return dns.RR_Header{Name: dns.Fqdn(name), Rrtype: typ, Class: dns.ClassINET, Ttl: 60}
	}
	hasTXT := slices.ContainsFunc(recs, func(r suiteRecord) bool { return r.Type == "TXT" })
	timeout := false
	for _, r := range recs {
		if r.Type == "TXT" && len(r.Value) == 1 && r.Value[0] == "NONE" {
			continue
		}
		switch r.Type {
		case "TIMEOUT":
			timeout = true
		case "A":
			rrs = append(rrs, &dns.A{Hdr: hdr(dns.TypeA), A: net.ParseIP(r.Value[0]).To4()})
		case "AAAA":
			rrs = append(rrs, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: net.ParseIP(r.Value[0])})
		case "CNAME":
			rrs = append(rrs, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: dns.Fqdn(r.Value[0])})
		case "PTR":
			rrs = append(rrs, &dns.PTR{Hdr: hdr(dns.TypePTR), Ptr: dns.Fqdn(r.Value[0])})
		case "MX":
			pref, err := strconv.Atoi(r.Value[0])
			if err != nil {
				t.Fatal(err)
			}
			rrs = append(rrs, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: uint16(pref), Mx: dns.Fqdn(r.Value[1])})
		case "TXT", "SPF":
			// RFC 7208 dropped type SPF; the suite's drivers serve SPF data
			// as TXT when a name has no TXT of its own.
			if r.Type == "SPF" && hasTXT {
				continue
			}
			txt := &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{}}
			for _, v := range r.Value {
				txt.Txt = append(txt.Txt, escapeTXT(v))
			}
			rrs = append(rrs, txt)
		default:
			t.Fatalf("record type %s in the suite", r.Type)
		}
	}
	if timeout {
		for _, typ := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT, dns.TypePTR, dns.TypeCNAME} {
			if !slices.ContainsFunc(rrs, func(rr dns.RR) bool { return rr.Header().Rrtype == typ }) {
				timeouts = append(timeouts, typ)
			}
		}
	}
	return rrs, timeouts
}

func TestRFC7208Suite(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/rfc7208-tests.json")
	if err != nil {
		t.Fatal(err)
	}
	var suite []suiteScenario
	if err := json.Unmarshal(data, &suite); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, sc := range suite {
		total += len(sc.Tests)
	}
	if total != 203 {
		t.Fatalf("the suite has %d tests, want the 203 of release 2014.04", total)
	}
	for _, sc := range suite {
		t.Run(sc.Description, func(t *testing.T) {
			t.Parallel()
			srv := dnstest.Start(t, "")
			for name, recs := range sc.Zonedata {
				rrs, timeouts := suiteRRs(t, name, recs)
				srv.AddRR(rrs...)
				for _, typ := range timeouts {
					srv.Fail(name, typ, dnstest.Timeout)
				}
			}
			r, err := dnsmx.New(dnsmx.Options{Upstream: srv.Addr, Timeout: 100 * time.Millisecond, Attempts: 1, CacheSize: -1})
			if err != nil {
				t.Fatal(err)
			}
			for name, tc := range sc.Tests {
				t.Run(name, func(t *testing.T) {
					ip, err := netip.ParseAddr(tc.Host)
					if err != nil {
						t.Fatal(err)
					}
					res := mailauth.CheckSPF(t.Context(), r, mailauth.SPFInput{IP: ip, HELO: tc.HELO, MailFrom: tc.MailFrom, Receiver: "receiver.example"})
					if !slices.Contains(tc.Result, string(res.Result)) {
						t.Errorf("spec %s: result %s (%s), want %v", tc.Spec, res.Result, res.Reason, tc.Result)
					}
					if tc.Explanation != nil && *tc.Explanation != "DEFAULT" && res.Result == "fail" && res.Explanation != *tc.Explanation {
						t.Errorf("spec %s: explanation %q, want %q", tc.Spec, res.Explanation, *tc.Explanation)
					}
				})
			}
		})
	}
}
