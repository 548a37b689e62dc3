package autoconfig_test

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/postyard-mail/postyard/autoconfig"
	"github.com/postyard-mail/postyard/config"
)

func testOptions() autoconfig.Options {
	return autoconfig.Options{
		Hostname:   "mail.example.com",
		Domains:    []string{"example.com", "example.org"},
		IMAP:       []autoconfig.Service{{Port: 993, TLS: true}, {Port: 143}},
		POP3:       []autoconfig.Service{{Port: 995, TLS: true}, {Port: 110}},
		Submission: []autoconfig.Service{{Port: 465, TLS: true}, {Port: 587}},
	}
}

// tbConfig mirrors the parts of Thunderbird's format the tests check.
type tbConfig struct {
	XMLName  xml.Name `xml:"clientConfig"`
	Version  string   `xml:"version,attr"`
	Provider struct {
		ID       string     `xml:"id,attr"`
		Domains  []string   `xml:"domain"`
		Incoming []tbServer `xml:"incomingServer"`
		Outgoing []tbServer `xml:"outgoingServer"`
	} `xml:"emailProvider"`
}

type tbServer struct {
	Type, Hostname, SocketType, Authentication, Username string
	Port                                                 int
}

func (s *tbServer) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var v struct {
		Type           string `xml:"type,attr"`
		Hostname       string `xml:"hostname"`
		Port           int    `xml:"port"`
		SocketType     string `xml:"socketType"`
		Authentication string `xml:"authentication"`
		Username       string `xml:"username"`
	}
	if err := d.DecodeElement(&v, &start); err != nil {
		return err
	}
	*s = tbServer{v.Type, v.Hostname, v.SocketType, v.Authentication, v.Username, v.Port}
	return nil
}

func TestThunderbird(t *testing.T) {
	srv, err := autoconfig.New(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, target string
		code                 int
		username, id         string
	}{
		{"well-known", "GET", "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice@example.com", 200, "alice@example.com", "example.com"},
		{"autoconfig host form", "GET", "/mail/config-v1.1.xml?emailaddress=bob%40example.org", 200, "bob@example.org", "example.org"},
		{"domain case", "GET", "/mail/config-v1.1.xml?emailaddress=bob@EXAMPLE.org", 200, "bob@EXAMPLE.org", "example.org"},
		{"template", "GET", "/mail/config-v1.1.xml", 200, "%EMAILADDRESS%", "example.com"},
		{"head", "HEAD", "/mail/config-v1.1.xml", 200, "", ""},
		{"other domain", "GET", "/mail/config-v1.1.xml?emailaddress=eve@elsewhere.net", 404, "", ""},
		{"not an address", "GET", "/mail/config-v1.1.xml?emailaddress=<script>", 404, "", ""},
		{"post", "POST", "/mail/config-v1.1.xml", 405, "", ""},
		{"unknown path", "GET", "/mail/other.xml", 404, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, nil))
			if rec.Code != tc.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			if tc.code != 200 || tc.method == "HEAD" {
				return
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/xml") {
				t.Errorf("Content-Type %q", ct)
			}
			var cfg tbConfig
			if err := xml.Unmarshal(rec.Body.Bytes(), &cfg); err != nil {
				t.Fatalf("%v\n%s", err, rec.Body)
			}
			if cfg.Version != "1.1" || cfg.Provider.ID != tc.id || cfg.Provider.Domains[0] != tc.id {
				t.Errorf("version %q id %q domains %v", cfg.Version, cfg.Provider.ID, cfg.Provider.Domains)
			}
			u := tc.username
			wantIn := []tbServer{
				{"imap", "mail.example.com", "SSL", "password-cleartext", u, 993},
				{"imap", "mail.example.com", "STARTTLS", "password-cleartext", u, 143},
				{"pop3", "mail.example.com", "SSL", "password-cleartext", u, 995},
				{"pop3", "mail.example.com", "STARTTLS", "password-cleartext", u, 110},
			}
			wantOut := []tbServer{
				{"smtp", "mail.example.com", "SSL", "password-cleartext", u, 465},
				{"smtp", "mail.example.com", "STARTTLS", "password-cleartext", u, 587},
			}
			if !reflect.DeepEqual(cfg.Provider.Incoming, wantIn) {
				t.Errorf("incoming %+v\nwant %+v", cfg.Provider.Incoming, wantIn)
			}
			if !reflect.DeepEqual(cfg.Provider.Outgoing, wantOut) {
				t.Errorf("outgoing %+v\nwant %+v", cfg.Provider.Outgoing, wantOut)
			}
		})
	}
}

type adResponse struct {
	XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response struct {
		XMLName xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
		Account struct {
			AccountType, Action string
			Protocol            []struct {
				Type, Server, LoginName, SSL, Encryption, SPA, AuthRequired, DomainRequired string
				Port                                                                        int
			}
		}
	}
}

const adRequest = `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>%s</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>`

func TestAutodiscover(t *testing.T) {
	srv, err := autoconfig.New(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, target, body string
		code                       int
		login                      string
	}{
		{"post", "POST", "/autodiscover/autodiscover.xml", fmt.Sprintf(adRequest, "alice@example.com"), 200, "alice@example.com"},
		{"outlook capitals", "POST", "/Autodiscover/Autodiscover.xml", fmt.Sprintf(adRequest, "bob@example.org"), 200, "bob@example.org"},
		{"get with address", "GET", "/autodiscover/autodiscover.xml?emailaddress=alice@example.com", "", 200, "alice@example.com"},
		{"get without address", "GET", "/autodiscover/autodiscover.xml", "", 200, ""},
		{"other domain", "POST", "/autodiscover/autodiscover.xml", fmt.Sprintf(adRequest, "eve@elsewhere.net"), 404, ""},
		{"no address", "POST", "/autodiscover/autodiscover.xml", fmt.Sprintf(adRequest, ""), 400, ""},
		{"malformed", "POST", "/autodiscover/autodiscover.xml", "<Autodiscover><Request>", 400, ""},
		{"other schema", "POST", "/autodiscover/autodiscover.xml", strings.Replace(fmt.Sprintf(adRequest, "alice@example.com"), "outlook/responseschema", "mobilesync/responseschema", 1), 400, ""},
		{"too large", "POST", "/autodiscover/autodiscover.xml", strings.Repeat(" ", 70<<10) + fmt.Sprintf(adRequest, "alice@example.com"), 400, ""},
		{"put", "PUT", "/autodiscover/autodiscover.xml", "", 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body)))
			if rec.Code != tc.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			if tc.code != 200 {
				return
			}
			var resp adResponse
			if err := xml.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatalf("%v\n%s", err, rec.Body)
			}
			acc := resp.Response.Account
			if acc.AccountType != "email" || acc.Action != "settings" {
				t.Errorf("account %q action %q", acc.AccountType, acc.Action)
			}
			type proto struct {
				typ  string
				port int
				enc  string
			}
			var got []proto
			for _, p := range acc.Protocol {
				got = append(got, proto{p.Type, p.Port, p.Encryption})
				if p.Server != "mail.example.com" || p.LoginName != tc.login || p.SSL != "on" || p.SPA != "off" || p.AuthRequired != "on" {
					t.Errorf("protocol %+v", p)
				}
			}
			want := []proto{{"IMAP", 993, "SSL"}, {"IMAP", 143, "TLS"}, {"POP3", 995, "SSL"}, {"POP3", 110, "TLS"}, {"SMTP", 465, "SSL"}, {"SMTP", 587, "TLS"}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("protocols %v, want %v", got, want)
			}
		})
	}
}

func TestOptionsFromConfig(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*config.Config)
		imap    []autoconfig.Service
		sub     []autoconfig.Service
		wantErr bool
	}{
		{"defaults", nil,
			[]autoconfig.Service{{Port: 2993, TLS: true}, {Port: 2143}},
			[]autoconfig.Service{{Port: 2465, TLS: true}, {Port: 2587}}, false},
		{"standard ports, duplicates once", func(c *config.Config) {
			c.IMAP.Listen = []string{":143", "[::]:143"}
			c.IMAP.TLSListen = []string{"0.0.0.0:993"}
			c.Submission.TLSListen = nil
			c.Submission.Listen = []string{":587"}
		}, []autoconfig.Service{{Port: 993, TLS: true}, {Port: 143}}, []autoconfig.Service{{Port: 587}}, false},
		{"bad address", func(c *config.Config) { c.IMAP.Listen = []string{"nope"} }, nil, nil, true},
		{"port 0 is unknown", func(c *config.Config) {
			c.IMAP.Listen = []string{"127.0.0.1:0"}
			c.IMAP.TLSListen = []string{"127.0.0.1:993"}
		}, []autoconfig.Service{{Port: 993, TLS: true}}, []autoconfig.Service{{Port: 2465, TLS: true}, {Port: 2587}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			if tc.edit != nil {
				tc.edit(cfg)
			}
			opts, err := autoconfig.OptionsFromConfig(cfg, nil)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v", err)
			}
			if tc.wantErr {
				return
			}
			if !reflect.DeepEqual(opts.IMAP, tc.imap) || !reflect.DeepEqual(opts.Submission, tc.sub) {
				t.Errorf("imap %v submission %v", opts.IMAP, opts.Submission)
			}
			if opts.Hostname != cfg.Hostname {
				t.Errorf("hostname %q", opts.Hostname)
			}
		})
	}
}

// TestServeShutdown runs the service on a real listener.
func TestServeShutdown(t *testing.T) {
	srv, err := autoconfig.New(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + l.Addr().String() + "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<port>993</port>") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}

// FuzzAutodiscover: any request body or address gets a 2xx with
// well-formed XML or a 4xx, never a 5xx or a panic.
func FuzzAutodiscover(f *testing.F) {
	f.Add(fmt.Sprintf(adRequest, "alice@example.com"), "alice@example.com")
	f.Add("<Autodiscover><Request><EMailAddress>a@example.org</EMailAddress></Request></Autodiscover>", "x@y")
	f.Add("<a", "%EMAILADDRESS%")
	srv, err := autoconfig.New(testOptions())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body, addr string) {
		for _, req := range []*http.Request{
			httptest.NewRequest("POST", "/autodiscover/autodiscover.xml", strings.NewReader(body)),
			httptest.NewRequest("GET", "/mail/config-v1.1.xml?emailaddress="+url.QueryEscape(addr), nil),
			httptest.NewRequest("GET", "/autodiscover/autodiscover.xml?email="+url.QueryEscape(addr), nil),
		} {
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			switch {
			case rec.Code == 200:
				var v struct{ XMLName xml.Name }
				if err := xml.Unmarshal(rec.Body.Bytes(), &v); err != nil {
					t.Fatalf("%s: malformed XML: %v\n%s", req.URL, err, rec.Body)
				}
			case rec.Code >= 500:
				t.Fatalf("%s: %d", req.URL, rec.Code)
			}
		}
	})
}
