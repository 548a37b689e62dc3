package dnsmx

import (
	"bytes"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// FuzzAnswer feeds arbitrary bytes, as an upstream could send them, through
// the code of ours that interprets a DNS answer: the CNAME walk, the MX list
// with null-MX handling, address and TXT extraction. Properties: no panic;
// the records returned are of the type asked, owned by one name; MX lists
// come out sorted.
func FuzzAnswer(f *testing.F) {
	seed := func(qname string, qtype uint16, rcode int, rrs ...string) {
		m := new(dns.Msg)
		m.SetQuestion(qname, qtype)
		m.Rcode = rcode
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				f.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed("example.com.", dns.TypeMX, dns.RcodeSuccess, "example.com. 60 IN MX 10 mx.example.com.", "example.com. 60 IN MX 0 .")
	seed("a.example.", dns.TypeA, dns.RcodeSuccess, "a.example. 60 IN CNAME b.example.", "b.example. 60 IN CNAME c.example.", "c.example. 60 IN A 192.0.2.1")
	seed("loop.example.", dns.TypeTXT, dns.RcodeSuccess, "loop.example. 60 IN CNAME loop.example.")
	seed("t.example.", dns.TypeTXT, dns.RcodeSuccess, `t.example. 60 IN TXT "v=spf1" " -all\\" "\200"`)
	seed("gone.example.", dns.TypeAAAA, dns.RcodeNameError, "gone.example. 60 IN CNAME x.example.")

	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(dns.Msg)
		if m.Unpack(data) != nil || len(m.Question) != 1 {
			return
		}
		q := m.Question[0]
		ans := &answer{rcode: m.Rcode, rrs: m.Answer}
		rrs, next, err := extract(ans, q.Name, q.Qtype)
		if err != nil {
			return
		}
		if next != "" && len(rrs) > 0 {
			t.Fatalf("both records and a next name %q", next)
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype != q.Qtype || !strings.EqualFold(rr.Header().Name, rrs[0].Header().Name) {
				t.Fatalf("stray record %v", rr)
			}
		}
		switch q.Qtype {
		case dns.TypeMX:
			mxs := mxFromRRs(rrs)
			if !slices.IsSortedFunc(mxs, func(a, b MX) int { return int(a.Pref) - int(b.Pref) }) {
				t.Fatalf("MX not sorted: %v", mxs)
			}
			if usable, err := usableMX(mxs); err == nil {
				for _, mx := range usable {
					if mx.Host == "." {
						t.Fatalf("null MX kept: %v", usable)
					}
				}
			} else if len(mxs) == 0 {
				t.Fatalf("ErrNullMX for no MX at all")
			}
		case dns.TypeTXT:
			for _, rr := range rrs {
				for _, s := range rr.(*dns.TXT).Txt {
					_ = unescapeTXT(s)
				}
			}
		}
	})
}

// FuzzUnescapeTXT checks the round trip that LookupTXT relies on: any bytes
// sent as a TXT character-string, unpacked by miekg/dns (which escapes them)
// and unescaped by us, are the bytes sent.
func FuzzUnescapeTXT(f *testing.F) {
	for _, s := range []string{"v=spf1 -all", `a"b\c`, "\x00\xff\\123", "\\", "é", strings.Repeat("x", 300)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 2000 {
			return
		}
		// RDATA: character-strings of at most 255 bytes each.
		var rdata []byte
		for rest := raw; ; {
			n := min(len(rest), 255)
			rdata = append(rdata, byte(n))
			rdata = append(rdata, rest[:n]...)
			rest = rest[n:]
			if len(rest) == 0 {
				break
			}
		}
		m := new(dns.Msg)
		m.SetQuestion("t.example.", dns.TypeTXT)
		m.Answer = []dns.RR{&dns.RFC3597{
			Hdr:   dns.RR_Header{Name: "t.example.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
			Rdata: hex.EncodeToString(rdata),
		}}
		wire, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		var back dns.Msg
		if err := back.Unpack(wire); err != nil {
			t.Fatal(err)
		}
		var got []byte
		for _, s := range back.Answer[0].(*dns.TXT).Txt {
			got = append(got, unescapeTXT(s)...)
		}
		if !bytes.Equal(got, raw) {
			t.Fatalf("round trip\n%q\ngave\n%q", raw, got)
		}
	})
}
