// Package dnstest runs a real DNS server on 127.0.0.1 for tests.
//
// The server answers over UDP and TCP on the same free port, authoritatively,
// from records given as zone-file text (the syntax of RFC 1035 §5, parsed by
// miekg/dns) and changed at run time. It can be told to fail a name (SERVFAIL,
// REFUSED, no answer at all, or a truncated UDP answer that forces TCP), and
// it logs every query it receives so tests can count them.
//
// Answers follow the usual authoritative behaviour: CNAME chains inside the
// data are chased (unless switched off), wildcard owners ("*.example.com.")
// are synthesized (RFC 4592, closest-encloser rule), a name with no records
// but with names below it is an empty non-terminal (NODATA, not NXDOMAIN),
// negative answers carry the SOA of the closest enclosing zone (RFC 2308) or a
// synthesized one with a 60 s minimum, and UDP answers larger than the
// client's EDNS0 buffer (512 bytes without EDNS0) are truncated with TC set.
//
// Typical use:
//
//	srv := dnstest.Start(t, `
//	example.com.      300 IN MX 10 mx1.example.com.
//	mx1.example.com.  300 IN A  127.0.0.2
//	`)
//	// point the code under test at srv.Addr ("127.0.0.1:PORT")
//	srv.Set(`example.com. 60 IN TXT "v=spf1 -all"`)
//	srv.Fail("example.org.", 0, dnstest.Timeout)
package dnstest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Fault is a failure injected for a name.
type Fault int

const (
	// NoFault answers normally (it clears an injected fault).
	NoFault Fault = iota
	// ServFail answers with RCODE SERVFAIL.
	ServFail
	// Refused answers with RCODE REFUSED.
	Refused
	// Timeout never answers, over UDP or TCP.
	Timeout
	// Truncate answers UDP queries with an empty answer and TC set, so the
	// client must retry over TCP, where the answer is normal.
	Truncate
)

func (f Fault) String() string {
	switch f {
	case NoFault:
		return "none"
	case ServFail:
		return "SERVFAIL"
	case Refused:
		return "REFUSED"
	case Timeout:
		return "timeout"
	case Truncate:
		return "truncate"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Query is one query as the server received it.
type Query struct {
	Name    string // lower-case, fully qualified
	Type    uint16 // dns.TypeA, ...
	Proto   string // "udp" or "tcp"
	EDNS    bool   // the query carried an OPT record
	UDPSize uint16 // its advertised buffer size, 0 without EDNS0
}

// DefaultTTL is the TTL of records whose text gives none.
const DefaultTTL = 300

// maxChase bounds CNAME chasing inside the data, as resolvers do.
const maxChase = 16

type faultKey struct {
	name  string
	qtype uint16 // 0: every type
}

// Server is a running test DNS server. All methods are safe for concurrent
// use.
type Server struct {
	// Addr is "127.0.0.1:PORT", the same port for UDP and TCP.
	Addr string

	tb  testing.TB // nil when made by Listen; then errors panic
	udp *dns.Server
	tcp *dns.Server

	mu         sync.Mutex
	rrs        map[string][]dns.RR // owner (lower-case FQDN) → records
	faults     map[faultKey]Fault
	log        []Query
	noChase    bool
	closeOnce  sync.Once
	closeError error
}

// Start parses zone, starts a server on a free 127.0.0.1 port and stops it
// when the test ends. A bad zone or a failure to listen fails the test.
func Start(tb testing.TB, zone string) *Server {
	tb.Helper()
	s, err := Listen(zone)
	if err != nil {
		tb.Fatalf("dnstest: %v", err)
	}
	s.tb = tb
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("dnstest: close: %v", err)
		}
	})
	return s
}

// Listen is Start without a testing.TB, for harnesses that manage the
// server's life themselves; call Close when done. Methods that take record
// text panic on a syntax error when the server was made by Listen.
func Listen(zone string) (*Server, error) {
	rrs, err := parseRRs(zone)
	if err != nil {
		return nil, err
	}
	s := &Server{rrs: map[string][]dns.RR{}, faults: map[faultKey]Fault{}}
	for _, rr := range rrs {
		s.addLocked(rr)
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

// listen binds UDP and TCP on one free port and starts both servers.
func (s *Server) listen() error {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listen udp: %w", err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			// The port is free for UDP but taken for TCP: try another.
			pc.Close()
			lastErr = err
			continue
		}
		s.Addr = pc.LocalAddr().String()
		s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serveDNS)}
		s.tcp = &dns.Server{Listener: l, Handler: dns.HandlerFunc(s.serveDNS)}
		for _, srv := range []*dns.Server{s.udp, s.tcp} {
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			go func() {
				// ActivateAndServe returns when Shutdown is called.
				_ = srv.ActivateAndServe()
			}()
			<-started
		}
		return nil
	}
	return fmt.Errorf("no port free for both UDP and TCP: %w", lastErr)
}

// Close stops the server. It is called by the test cleanup of Start.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeError = errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
	})
	return s.closeError
}

// parseRRs parses zone-file text with origin "." and a default TTL.
func parseRRs(text string) ([]dns.RR, error) {
	zp := dns.NewZoneParser(strings.NewReader(text), ".", "")
	zp.SetDefaultTTL(DefaultTTL)
	var out []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		out = append(out, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("zone: %w", err)
	}
	return out, nil
}

func (s *Server) mustParse(text string) []dns.RR {
	rrs, err := parseRRs(text)
	if err != nil {
		if s.tb != nil {
			s.tb.Helper()
			s.tb.Fatalf("dnstest: %v", err)
		}
		panic("dnstest: " + err.Error())
	}
	return rrs
}

// canon is the lookup key of a name: lower case, fully qualified, in the
// escaped presentation form that miekg/dns unpacks names to (so an owner
// given with a raw space matches a query for it).
func canon(name string) string {
	name = strings.ToLower(dns.Fqdn(name))
	var buf [256]byte
	off, err := dns.PackDomainName(name, buf[:], 0, nil, false)
	if err != nil {
		return name
	}
	if n, _, err := dns.UnpackDomainName(buf[:off], 0); err == nil {
		return strings.ToLower(n)
	}
	return name
}

func (s *Server) addLocked(rr dns.RR) {
	name := canon(rr.Header().Name)
	rr.Header().Name = name
	s.rrs[name] = append(s.rrs[name], rr)
}

// Add adds records (zone-file text, one or more lines) to the data.
func (s *Server) Add(text ...string) {
	rrs := s.mustParse(strings.Join(text, "\n"))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		s.addLocked(rr)
	}
}

// AddRR adds records given as values rather than text (for data that zone
// syntax cannot easily carry, such as generated test suites).
func (s *Server) AddRR(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		s.addLocked(dns.Copy(rr))
	}
}

// Set replaces, for every owner name and type present in text, the existing
// records of that name and type with the ones given.
func (s *Server) Set(text ...string) {
	rrs := s.mustParse(strings.Join(text, "\n"))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		s.removeLocked(canon(rr.Header().Name), rr.Header().Rrtype)
	}
	for _, rr := range rrs {
		s.addLocked(rr)
	}
}

// Remove deletes the records of name with type qtype, or every record of
// name when qtype is 0.
func (s *Server) Remove(name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(canon(name), qtype)
}

func (s *Server) removeLocked(name string, qtype uint16) {
	if qtype == 0 {
		delete(s.rrs, name)
		return
	}
	kept := s.rrs[name][:0]
	for _, rr := range s.rrs[name] {
		if rr.Header().Rrtype != qtype {
			kept = append(kept, rr)
		}
	}
	if len(kept) == 0 {
		delete(s.rrs, name)
	} else {
		s.rrs[name] = kept
	}
}

// SetZone replaces all the data with zone.
func (s *Server) SetZone(zone string) {
	rrs := s.mustParse(zone)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rrs = map[string][]dns.RR{}
	for _, rr := range rrs {
		s.addLocked(rr)
	}
}

// Fail injects fault for queries of name with type qtype, or of any type
// when qtype is 0. A fault for a specific type wins over one for any type.
// Fail(name, qtype, NoFault) clears it.
func (s *Server) Fail(name string, qtype uint16, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := faultKey{canon(name), qtype}
	if f == NoFault {
		delete(s.faults, k)
	} else {
		s.faults[k] = f
	}
}

// SetCNAMEChasing switches the chasing of CNAME chains inside the data on
// (the default) or off. Off, an answer holds only the first CNAME, as from a
// server that is not authoritative for the target, so the client must query
// the target itself.
func (s *Server) SetCNAMEChasing(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noChase = !on
}

// Queries counts the queries received for name with type qtype, or with any
// type when qtype is 0.
func (s *Server) Queries(name string, qtype uint16) int {
	name = canon(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.log {
		if q.Name == name && (qtype == 0 || q.Type == qtype) {
			n++
		}
	}
	return n
}

// QueryLog returns a copy of every query received since the start or the
// last ResetLog, in order.
func (s *Server) QueryLog() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.log...)
}

// ResetLog forgets the queries received so far.
func (s *Server) ResetLog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = nil
}

func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	proto := "udp"
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		proto = "tcp"
	}
	resp := new(dns.Msg)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		resp.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	name := canon(q.Name)
	rec := Query{Name: name, Type: q.Qtype, Proto: proto}
	opt := req.IsEdns0()
	if opt != nil {
		rec.EDNS, rec.UDPSize = true, opt.UDPSize()
	}

	s.mu.Lock()
	s.log = append(s.log, rec)
	fault, ok := s.faults[faultKey{name, q.Qtype}]
	if !ok {
		fault = s.faults[faultKey{name, 0}]
	}
	resp.SetReply(req)
	resp.Authoritative = true
	if fault == NoFault || fault == Truncate && proto == "tcp" {
		s.answerLocked(resp, name, q.Qtype)
	}
	s.mu.Unlock()

	switch fault {
	case Timeout:
		return
	case ServFail:
		resp.Rcode = dns.RcodeServerFailure
	case Refused:
		resp.Rcode = dns.RcodeRefused
	case Truncate:
		if proto == "udp" {
			resp.Truncated = true
		}
	}
	if opt != nil {
		resp.SetEdns0(max(opt.UDPSize(), dns.MinMsgSize), false)
	}
	if proto == "udp" {
		size := dns.MinMsgSize
		if opt != nil {
			size = int(max(opt.UDPSize(), dns.MinMsgSize))
		}
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

// answerLocked fills the answer (or the rcode and SOA of a negative answer).
func (s *Server) answerLocked(resp *dns.Msg, name string, qtype uint16) {
	target := name
	for range maxChase {
		set, exists := s.lookupLocked(target)
		if !exists {
			resp.Rcode = dns.RcodeNameError
			resp.Ns = []dns.RR{s.soaLocked(target)}
			return
		}
		var cname dns.RR
		var matched []dns.RR
		for _, rr := range set {
			t := rr.Header().Rrtype
			switch {
			case t == qtype || qtype == dns.TypeANY:
				matched = append(matched, rr)
			case t == dns.TypeCNAME:
				cname = rr
			}
		}
		if cname != nil && qtype != dns.TypeCNAME && len(matched) == 0 {
			resp.Answer = append(resp.Answer, cname)
			if s.noChase {
				return
			}
			target = canon(cname.(*dns.CNAME).Target)
			continue
		}
		if len(matched) == 0 {
			resp.Ns = []dns.RR{s.soaLocked(target)}
		}
		resp.Answer = append(resp.Answer, matched...)
		return
	}
}

// lookupLocked returns the records at name, synthesized from a wildcard
// when name does not exist, and whether name exists at all.
func (s *Server) lookupLocked(name string) ([]dns.RR, bool) {
	if set, ok := s.rrs[name]; ok {
		return set, true
	}
	if s.hasBelowLocked(name) {
		return nil, true // empty non-terminal
	}
	// RFC 4592: the wildcard at the closest encloser, if any.
	labels := dns.SplitDomainName(name)
	for i := 1; i <= len(labels); i++ {
		parent := dns.Fqdn(strings.Join(labels[i:], "."))
		wildName := "*." + parent
		if parent == "." {
			wildName = "*."
		}
		if wild, ok := s.rrs[wildName]; ok {
			out := make([]dns.RR, len(wild))
			for j, rr := range wild {
				out[j] = dns.Copy(rr)
				out[j].Header().Name = name
			}
			return out, true
		}
		if _, ok := s.rrs[parent]; ok || s.hasBelowLocked(parent) {
			return nil, false
		}
	}
	return nil, false
}

func (s *Server) hasBelowLocked(name string) bool {
	suffix := "." + name
	if name == "." {
		suffix = "."
	}
	for owner := range s.rrs {
		if owner != name && strings.HasSuffix(owner, suffix) {
			return true
		}
	}
	return false
}

// soaLocked returns the SOA of the closest enclosing zone in the data, or a
// synthesized root SOA with a 60 s negative TTL.
func (s *Server) soaLocked(name string) dns.RR {
	for n := name; ; {
		for _, rr := range s.rrs[n] {
			if rr.Header().Rrtype == dns.TypeSOA {
				return rr
			}
		}
		if n == "." {
			break
		}
		i := strings.IndexByte(n, '.')
		n = n[i+1:]
		if n == "" {
			n = "."
		}
	}
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns:      "ns.dnstest.",
		Mbox:    "hostmaster.dnstest.",
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  60,
	}
}
