// Package autoconfig serves mail client autoconfiguration over HTTP, so a
// user types only an address and a password:
//
//   - Thunderbird (and K-9/Thunderbird for Android, Evolution, ...):
//     GET /.well-known/autoconfig/mail/config-v1.1.xml and
//     GET /mail/config-v1.1.xml (the autoconfig.DOMAIN host form), with an
//     optional ?emailaddress=; format "clientConfig" version 1.1
//     (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat).
//   - Outlook's Autodiscover "POX" (plain old XML):
//     POST /autodiscover/autodiscover.xml with a request naming
//     EMailAddress, answered with the outlook/responseschema/2006a response
//     ([MS-OXDSCLI] §2.2.4); GET is answered too, from ?emailaddress= or
//     ?email=. Paths are matched case-insensitively, as Outlook capitalises.
//
// The settings are derived from the hostname and the configured listen
// addresses: implicit TLS is offered first (RFC 8314), STARTTLS second; a
// service without listeners is left out. Logins are the full address.
package autoconfig

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postyard-mail/postyard/config"
)

// Service is one mail service clients may be told about.
type Service struct {
	Port int
	// TLS is true for implicit TLS, false for STARTTLS.
	TLS bool
}

// Options configure a Server.
type Options struct {
	// Hostname is the server name clients connect to.
	Hostname string
	// Domains are the mail domains answered for; an address of another
	// domain gets 404.
	Domains []string
	// IMAP, POP3 and Submission list the offered services, best first.
	IMAP, POP3, Submission []Service
	Logger                 *slog.Logger
}

// OptionsFromConfig derives the services from the listen addresses of cfg.
// An address with port 0 (chosen by the system when bound) is left out.
func OptionsFromConfig(cfg *config.Config, logger *slog.Logger) (Options, error) {
	opts := Options{Hostname: cfg.Hostname, Domains: cfg.Domains, Logger: logger}
	var err error
	add := func(dst *[]Service, addrs []string, tls bool) {
		for _, a := range addrs {
			p, e := portOf(a)
			if e != nil {
				err = errors.Join(err, e)
				continue
			}
			if p == 0 {
				continue // picked by the system at bind time: unknown here
			}
			if !slices.Contains(*dst, Service{p, tls}) {
				*dst = append(*dst, Service{p, tls})
			}
		}
	}
	add(&opts.IMAP, cfg.IMAP.TLSListen, true)
	add(&opts.IMAP, cfg.IMAP.Listen, false)
	add(&opts.POP3, cfg.POP3.TLSListen, true)
	add(&opts.POP3, cfg.POP3.Listen, false)
	add(&opts.Submission, cfg.Submission.TLSListen, true)
	add(&opts.Submission, cfg.Submission.Listen, false)
	return opts, err
}

func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("autoconfig: listen address %q: %w", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("autoconfig: listen address %q: bad port", addr)
	}
	return n, nil
}

// Limits of a request.
const (
	maxRequestBody    = 64 << 10
	readHeaderTimeout = 10 * time.Second
	requestTimeout    = 30 * time.Second
)

// Server answers autoconfiguration requests; it is an http.Handler and a
// service with Serve and Shutdown.
type Server struct {
	opts Options
	http *http.Server
}

// New returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Hostname == "" {
		return nil, errors.New("autoconfig: Options.Hostname is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       requestTimeout,
		WriteTimeout:      requestTimeout,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Serve answers HTTP on l until it is closed or Shutdown is called.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for requests until ctx ends, then
// closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		_ = s.http.Close()
	}
	return err
}

// ServeHTTP routes the two formats.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch strings.ToLower(r.URL.Path) {
	case "/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s.thunderbird(w, r)
	case "/autodiscover/autodiscover.xml":
		s.autodiscover(w, r)
	default:
		http.NotFound(w, r)
	}
}

// account resolves the address a client asks about: the login, and the
// domain it belongs to. An empty address gives a template with
// %EMAILADDRESS% (Thunderbird fills it in).
func (s *Server) account(addr string) (login, domain string, ok bool) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		if len(s.opts.Domains) == 0 {
			return "%EMAILADDRESS%", s.opts.Hostname, true
		}
		return "%EMAILADDRESS%", s.opts.Domains[0], true
	}
	local, dom, found := strings.Cut(addr, "@")
	if !found || local == "" || dom == "" || strings.ContainsAny(addr, " \t\r\n<>\"") {
		return "", "", false
	}
	for _, d := range s.opts.Domains {
		if strings.EqualFold(d, dom) {
			return addr, d, true
		}
	}
	return "", "", false
}

// Thunderbird's clientConfig document.
type clientConfig struct {
	XMLName  xml.Name      `xml:"clientConfig"`
	Version  string        `xml:"version,attr"`
	Provider emailProvider `xml:"emailProvider"`
}

type emailProvider struct {
	ID               string        `xml:"id,attr"`
	Domain           []string      `xml:"domain"`
	DisplayName      string        `xml:"displayName"`
	DisplayShortName string        `xml:"displayShortName"`
	Incoming         []serverEntry `xml:"incomingServer"`
	Outgoing         []serverEntry `xml:"outgoingServer"`
}

type serverEntry struct {
	Type           string `xml:"type,attr"`
	Hostname       string `xml:"hostname"`
	Port           int    `xml:"port"`
	SocketType     string `xml:"socketType"`
	Authentication string `xml:"authentication"`
	Username       string `xml:"username"`
}

func (s *Server) thunderbird(w http.ResponseWriter, r *http.Request) {
	login, domain, ok := s.account(r.URL.Query().Get("emailaddress"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	cc := clientConfig{Version: "1.1", Provider: emailProvider{
		ID:               domain,
		Domain:           []string{domain},
		DisplayName:      domain,
		DisplayShortName: strings.SplitN(domain, ".", 2)[0],
	}}
	for _, d := range s.opts.Domains {
		if !strings.EqualFold(d, domain) {
			cc.Provider.Domain = append(cc.Provider.Domain, d)
		}
	}
	entry := func(typ string, svc Service) serverEntry {
		socket := "STARTTLS"
		if svc.TLS {
			socket = "SSL"
		}
		return serverEntry{Type: typ, Hostname: s.opts.Hostname, Port: svc.Port, SocketType: socket,
			Authentication: "password-cleartext", Username: login}
	}
	for _, svc := range s.opts.IMAP {
		cc.Provider.Incoming = append(cc.Provider.Incoming, entry("imap", svc))
	}
	for _, svc := range s.opts.POP3 {
		cc.Provider.Incoming = append(cc.Provider.Incoming, entry("pop3", svc))
	}
	for _, svc := range s.opts.Submission {
		cc.Provider.Outgoing = append(cc.Provider.Outgoing, entry("smtp", svc))
	}
	s.writeXML(w, r, cc)
}

// Autodiscover POX request and response ([MS-OXDSCLI]).
const (
	nsResponse        = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
	nsOutlookResponse = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)

type adRequest struct {
	XMLName xml.Name `xml:"Autodiscover"`
	Request struct {
		EMailAddress             string `xml:"EMailAddress"`
		AcceptableResponseSchema string `xml:"AcceptableResponseSchema"`
	} `xml:"Request"`
}

type adResponse struct {
	XMLName  xml.Name `xml:"Autodiscover"`
	XMLNS    string   `xml:"xmlns,attr"`
	Response struct {
		XMLNS   string `xml:"xmlns,attr"`
		Account struct {
			AccountType string       `xml:"AccountType"`
			Action      string       `xml:"Action"`
			Protocol    []adProtocol `xml:"Protocol"`
		} `xml:"Account"`
	} `xml:"Response"`
}

type adProtocol struct {
	Type           string `xml:"Type"`
	Server         string `xml:"Server"`
	Port           int    `xml:"Port"`
	DomainRequired string `xml:"DomainRequired"`
	LoginName      string `xml:"LoginName,omitempty"`
	SPA            string `xml:"SPA"`
	SSL            string `xml:"SSL"`
	Encryption     string `xml:"Encryption"`
	AuthRequired   string `xml:"AuthRequired"`
}

func (s *Server) autodiscover(w http.ResponseWriter, r *http.Request) {
	var addr string
	switch r.Method {
	case http.MethodPost:
		body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
		if err != nil || len(body) > maxRequestBody {
			http.Error(w, "request too large or unreadable", http.StatusBadRequest)
			return
		}
		var req adRequest
		if err := xml.Unmarshal(body, &req); err != nil {
			http.Error(w, "malformed Autodiscover request", http.StatusBadRequest)
			return
		}
		if schema := req.Request.AcceptableResponseSchema; schema != "" && schema != nsOutlookResponse {
			http.Error(w, "unsupported response schema", http.StatusBadRequest)
			return
		}
		addr = req.Request.EMailAddress
		if strings.TrimSpace(addr) == "" {
			http.Error(w, "EMailAddress missing", http.StatusBadRequest)
			return
		}
	case http.MethodGet, http.MethodHead:
		q := r.URL.Query()
		addr = q.Get("emailaddress")
		if addr == "" {
			addr = q.Get("email")
		}
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	login, _, ok := s.account(addr)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if strings.HasPrefix(login, "%") {
		login = "" // no address: Outlook uses the one the user typed
	}
	var resp adResponse
	resp.XMLNS = nsResponse
	resp.Response.XMLNS = nsOutlookResponse
	resp.Response.Account.AccountType = "email"
	resp.Response.Account.Action = "settings"
	proto := func(typ string, svc Service) adProtocol {
		p := adProtocol{Type: typ, Server: s.opts.Hostname, Port: svc.Port, DomainRequired: "off",
			LoginName: login, SPA: "off", SSL: "on", Encryption: "TLS", AuthRequired: "on"}
		if svc.TLS {
			p.Encryption = "SSL"
		}
		return p
	}
	for _, svc := range s.opts.IMAP {
		resp.Response.Account.Protocol = append(resp.Response.Account.Protocol, proto("IMAP", svc))
	}
	for _, svc := range s.opts.POP3 {
		resp.Response.Account.Protocol = append(resp.Response.Account.Protocol, proto("POP3", svc))
	}
	for _, svc := range s.opts.Submission {
		resp.Response.Account.Protocol = append(resp.Response.Account.Protocol, proto("SMTP", svc))
	}
	s.writeXML(w, r, resp)
}

func (s *Server) writeXML(w http.ResponseWriter, r *http.Request, v any) {
	out, err := xml.MarshalIndent(v, "", "  ")
	if err != nil {
		s.opts.Logger.Error("autoconfig: encoding response", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(out)+1))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = io.WriteString(w, xml.Header)
	_, _ = w.Write(out)
	_, _ = io.WriteString(w, "\n")
	s.opts.Logger.Debug("autoconfig: answered", "path", r.URL.Path, "remote", r.RemoteAddr)
}
