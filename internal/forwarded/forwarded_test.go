package forwarded

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"taipan/internal/edge"
	"taipan/internal/logging"
)

// Only the chosen header family is read: by default a client's own
// Forwarded header, which a proxy setting X-Forwarded-For passes through
// untouched, cannot override the address the proxy reports.
func TestHeaderFamily(t *testing.T) {
	trust := mustTrust(t, "127.0.0.1")
	spoof := []string{"Forwarded: for=127.0.0.1;proto=https", "X-Forwarded-For: 203.0.113.7"}
	if got, want := serve(t, trust, "127.0.0.1", spoof...), with("addr", "203.0.113.7", "port", "0"); got != want {
		t.Errorf("default (x-forwarded): got %v, want %v", got, want)
	}
	if err := trust.SetHeaders(RFC7239); err != nil {
		t.Fatal(err)
	}
	if got, want := serve(t, trust, "127.0.0.1", spoof...), with("addr", "127.0.0.1", "port", "0", "scheme", "https"); got != want {
		t.Errorf("forwarded: got %v, want %v", got, want)
	}
	if err := trust.SetHeaders("both"); err == nil {
		t.Error("SetHeaders accepted an unknown family")
	}
}

func TestParseTrust(t *testing.T) {
	tests := []struct {
		spec string
		all  bool
		want []string
	}{
		{"", false, nil},
		{" , ", false, nil},
		{"127.0.0.1,::1", false, []string{"127.0.0.1/32", "::1/128"}},
		{" 10.0.0.0/8 , 192.168.1.7/24,2001:db8::/32 ", false, []string{"10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"}},
		{"::ffff:10.1.2.3", false, []string{"10.1.2.3/32"}},
		{"::ffff:10.0.0.0/104", false, []string{"10.0.0.0/8"}},
		{"*", true, nil},
		{"10.0.0.1,*", true, nil},
	}
	for _, tt := range tests {
		tr, err := ParseTrust(tt.spec)
		if err != nil {
			t.Errorf("ParseTrust(%q): %v", tt.spec, err)
			continue
		}
		var got []string
		for _, p := range tr.Prefixes() {
			got = append(got, p.String())
		}
		if tr.All() != tt.all || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("ParseTrust(%q) = all %v %v, want all %v %v", tt.spec, tr.All(), got, tt.all, tt.want)
		}
	}
}

func TestParseTrustErrors(t *testing.T) {
	for _, spec := range []string{"localhost", "127.0.0.1,10.0.0.300", "10.0.0.0/33", "fe80::1%eth0", "::ffff:0.0.0.0/8", "1.2.3.4/"} {
		_, err := ParseTrust(spec)
		if err == nil {
			t.Errorf("ParseTrust(%q) succeeded", spec)
			continue
		}
		bad := spec[strings.LastIndexByte(spec, ',')+1:]
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("ParseTrust(%q) error %q does not name %q", spec, err, bad)
		}
	}
}

// seen is what the handler after forwarded.Handler saw.
type seen struct {
	addr, port, scheme, host, hostHeader string
}

func (s seen) String() string {
	return fmt.Sprintf("addr=%s port=%s scheme=%s host=%s Host:%s", s.addr, s.port, s.scheme, s.host, s.hostHeader)
}

func seenOf(r *edge.Request) seen {
	s := seen{addr: r.RemoteAddr, port: r.RemotePort, scheme: r.Scheme, host: r.Host}
	for _, f := range r.Header {
		if strings.EqualFold(f.Name, "Host") {
			s.hostHeader = f.Value
		}
	}
	return s
}

// serve runs a request from peer with header lines hdr ("Name: value")
// through Handler and returns what the next handler saw.
func serve(t *testing.T, trust *Trust, peer string, hdr ...string) seen {
	t.Helper()
	r := &edge.Request{
		Method: "GET", Target: "/", Path: "/", Proto: "HTTP/1.1", ProtoMinor: 1,
		Host: "app.internal:8000", RemoteAddr: peer, RemotePort: "40000",
		ServerName: "127.0.0.1", ServerPort: "8000", Scheme: "http",
		Header: []edge.HeaderField{{Name: "Host", Value: "app.internal:8000"}},
		Body:   edge.NewMemoryBody(nil),
	}
	if peer == "" {
		r.RemotePort = ""
	}
	for _, h := range hdr {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			t.Fatalf("bad header line %q", h)
		}
		r.Header = append(r.Header, edge.HeaderField{Name: name, Value: strings.TrimSpace(value)})
	}
	var got seen
	Handler(trust, edge.HandlerFunc(func(_ edge.ResponseWriter, r *edge.Request) { got = seenOf(r) })).Serve(nil, r)
	if got.addr != r.RemoteAddr {
		t.Fatal("next handler not called")
	}
	return got
}

func mustTrust(t testing.TB, spec string) *Trust {
	t.Helper()
	tr, err := ParseTrust(spec)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// with returns what serve's request looks like with some fields
// replaced: "addr", "port", "scheme", "host" (which also sets the Host
// header). with() is the request as it arrived.
func with(kv ...string) seen {
	s := seen{addr: "127.0.0.1", port: "40000", scheme: "http", host: "app.internal:8000", hostHeader: "app.internal:8000"}
	for i := 0; i < len(kv); i += 2 {
		switch v := kv[i+1]; kv[i] {
		case "addr":
			s.addr = v
		case "port":
			s.port = v
		case "scheme":
			s.scheme = v
		case "host":
			s.host, s.hostHeader = v, v
		}
	}
	return s
}

func TestForwardedSyntax(t *testing.T) {
	trust := mustTrust(t, "127.0.0.1,::1,10.0.0.0/8")
	if err := trust.SetHeaders(RFC7239); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		hdr  []string
		want seen
	}{
		{"for", []string{"Forwarded: for=203.0.113.7"}, with("addr", "203.0.113.7", "port", "0")},
		{"case-insensitive names", []string{"forwarded: FOR=203.0.113.7;PROTO=HTTPS"}, with("addr", "203.0.113.7", "port", "0", "scheme", "https")},
		{"all params", []string{`Forwarded: for=203.0.113.7;proto=https;host=example.com;by=10.0.0.1`},
			with("addr", "203.0.113.7", "port", "0", "scheme", "https", "host", "example.com")},
		{"quoted with port", []string{`Forwarded: for="203.0.113.7:4711";host="example.com:8443"`},
			with("addr", "203.0.113.7", "port", "4711", "host", "example.com:8443")},
		{"IPv6", []string{`Forwarded: for="[2001:db8:cafe::17]:4711"`}, with("addr", "2001:db8:cafe::17", "port", "4711")},
		{"IPv6 no port", []string{`Forwarded: For="[2001:db8:cafe::17]"`}, with("addr", "2001:db8:cafe::17", "port", "0")},
		{"IPv6 unbracketed", []string{`Forwarded: for="2001:db8::1"`}, with("addr", "2001:db8::1", "port", "0")},
		{"IPv4-mapped", []string{`Forwarded: for="[::ffff:203.0.113.7]"`}, with("addr", "203.0.113.7", "port", "0")},
		{"escapes", []string{`Forwarded: for="\203.0.113.7";host="ex\ample.com"`}, with("addr", "203.0.113.7", "port", "0", "host", "example.com")},
		{"whitespace", []string{"Forwarded: for=203.0.113.7 ; proto=https ,\tfor=10.0.0.2"}, with("addr", "203.0.113.7", "port", "0", "scheme", "https")},
		{"empty elements and pairs", []string{"Forwarded: ,for=203.0.113.7;;proto=https,, "}, with("addr", "203.0.113.7", "port", "0", "scheme", "https")},
		{"extension params ignored", []string{`Forwarded: for=203.0.113.7;secret="a,b;c=d";x=1`}, with("addr", "203.0.113.7", "port", "0")},
		{"multiple elements", []string{"Forwarded: for=198.51.100.9;proto=http, for=203.0.113.7;proto=https;host=example.com"},
			with("addr", "203.0.113.7", "port", "0", "scheme", "https", "host", "example.com")},
		{"trusted hops skipped", []string{"Forwarded: for=203.0.113.7;proto=https;host=example.com, for=10.1.1.1;proto=http, for=10.2.2.2"},
			with("addr", "203.0.113.7", "port", "0", "scheme", "https", "host", "example.com")},
		{"spoofed left entry", []string{"Forwarded: for=10.9.9.9;proto=https, for=198.51.100.9"}, with("addr", "198.51.100.9", "port", "0")},
		{"all trusted: leftmost", []string{"Forwarded: for=10.0.0.5;proto=https, for=10.0.0.6"}, with("addr", "10.0.0.5", "port", "0", "scheme", "https")},
		{"several header lines", []string{"Forwarded: for=203.0.113.7;proto=https", "Forwarded: for=10.0.0.6"}, with("addr", "203.0.113.7", "port", "0", "scheme", "https")},
		{"unknown", []string{"Forwarded: for=unknown;proto=https"}, with("addr", "unknown", "port", "0", "scheme", "https")},
		{"obfuscated", []string{`Forwarded: for="_hidden:_port", for=10.0.0.6`}, with("addr", "_hidden", "port", "0")},
		{"obfuscated with port", []string{`Forwarded: for="_gazonk:4711"`}, with("addr", "_gazonk", "port", "4711")},
		{"no for: client unchanged", []string{"Forwarded: proto=https;host=example.com"}, with("scheme", "https", "host", "example.com")},
		{"no for stops the walk", []string{"Forwarded: for=203.0.113.7;proto=http, proto=https, for=10.0.0.6"}, with("scheme", "https")},
		{"takes precedence", []string{"X-Forwarded-For: 198.51.100.9", "X-Forwarded-Proto: https", "Forwarded: for=203.0.113.7"},
			with("addr", "203.0.113.7", "port", "0")},
		{"empty Forwarded: X-Forwarded-For is not read", []string{"Forwarded: , ,", "X-Forwarded-For: 198.51.100.9"}, with()},
		{"garbage left of the client is not examined", []string{"Forwarded: for=not-an-ip;proto=gopher, for=203.0.113.7"}, with("addr", "203.0.113.7", "port", "0")},

		// Malformed: nothing applies.
		{"unterminated quote", []string{`Forwarded: for="203.0.113.7;proto=https`}, with()},
		{"missing value", []string{"Forwarded: for=;proto=https"}, with()},
		{"missing =", []string{"Forwarded: for 203.0.113.7"}, with()},
		{"bare IPv6", []string{"Forwarded: for=[2001:db8::1]"}, with()},
		{"junk after value", []string{`Forwarded: for="203.0.113.7"x`}, with()},
		{"repeated param", []string{"Forwarded: for=203.0.113.7;for=198.51.100.9"}, with()},
		{"bad node", []string{"Forwarded: for=example.com"}, with()},
		{"bad port", []string{`Forwarded: for="203.0.113.7:65536"`}, with()},
		{"zone", []string{`Forwarded: for="[fe80::1%eth0]"`}, with()},
		{"bad proto", []string{"Forwarded: for=203.0.113.7;proto=gopher"}, with()},
		{"bad host", []string{`Forwarded: for=203.0.113.7;host="ex ample.com"`}, with()},
		{"host with path", []string{`Forwarded: for=203.0.113.7;host="example.com/x"`}, with()},
		{"control character", []string{"Forwarded: for=\"203.0.113.7\x01\""}, with()},
		{"bad line among good", []string{"Forwarded: for=203.0.113.7", "Forwarded: for=\""}, with()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := serve(t, trust, "127.0.0.1", tt.hdr...); got != tt.want {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestXForwarded(t *testing.T) {
	trust := mustTrust(t, "127.0.0.1,::1,10.0.0.0/8")
	trust.SetXForwardedHost(true)
	tests := []struct {
		name string
		hdr  []string
		want seen
	}{
		{"for", []string{"X-Forwarded-For: 203.0.113.7"}, with("addr", "203.0.113.7", "port", "0")},
		{"for with port", []string{"X-Forwarded-For: 203.0.113.7:4711"}, with("addr", "203.0.113.7", "port", "4711")},
		{"IPv6", []string{"X-Forwarded-For: 2001:db8::7"}, with("addr", "2001:db8::7", "port", "0")},
		{"IPv6 bracketed with port", []string{"X-Forwarded-For: [2001:db8::7]:4711"}, with("addr", "2001:db8::7", "port", "4711")},
		{"name case", []string{"x-forwarded-for: 203.0.113.7", "X-FORWARDED-PROTO: HTTPS"}, with("addr", "203.0.113.7", "port", "0", "scheme", "https")},
		{"proto host", []string{"X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https", "X-Forwarded-Host: example.com"},
			with("addr", "203.0.113.7", "port", "0", "scheme", "https", "host", "example.com")},
		{"proto only", []string{"X-Forwarded-Proto: https"}, with("scheme", "https")},
		{"host only", []string{"X-Forwarded-Host: [2001:db8::1]:8443"}, with("host", "[2001:db8::1]:8443")},
		{"ssl on", []string{"X-Forwarded-Ssl: on"}, with("scheme", "https")},
		{"proto wins over ssl", []string{"X-Forwarded-Ssl: on", "X-Forwarded-Proto: http"}, with()},
		{"chain: trusted hops skipped", []string{"X-Forwarded-For: 203.0.113.7, 10.0.0.2, 10.0.0.3"}, with("addr", "203.0.113.7", "port", "0")},
		{"chain: spoofed left", []string{"X-Forwarded-For: 10.6.6.6, 1.2.3.4, 198.51.100.9, 10.0.0.3"}, with("addr", "198.51.100.9", "port", "0")},
		{"chain: all trusted", []string{"X-Forwarded-For: 10.0.0.1, 10.0.0.2"}, with("addr", "10.0.0.1", "port", "0")},
		{"several lines", []string{"X-Forwarded-For: 203.0.113.7", "X-Forwarded-For: 10.0.0.2, 10.0.0.3"}, with("addr", "203.0.113.7", "port", "0")},
		{"empty items", []string{"X-Forwarded-For: ,203.0.113.7,, 10.0.0.2 ,"}, with("addr", "203.0.113.7", "port", "0")},
		{"unknown", []string{"X-Forwarded-For: unknown, 10.0.0.2"}, with("addr", "unknown", "port", "0")},
		{"garbage left of the client is not examined", []string{"X-Forwarded-For: <script>, 198.51.100.9"}, with("addr", "198.51.100.9", "port", "0")},
		{"proto list aligned with the client hop", []string{"X-Forwarded-For: 203.0.113.7, 10.0.0.2", "X-Forwarded-Proto: https, http"},
			with("addr", "203.0.113.7", "port", "0", "scheme", "https")},
		{"proto list, client is the last hop", []string{"X-Forwarded-For: 203.0.113.7, 198.51.100.9", "X-Forwarded-Proto: https, http"},
			with("addr", "198.51.100.9", "port", "0")},
		{"short proto list: leftmost", []string{"X-Forwarded-For: 203.0.113.7, 10.0.0.2, 10.0.0.3", "X-Forwarded-Proto: https"},
			with("addr", "203.0.113.7", "port", "0", "scheme", "https")},
		{"proto list without for: rightmost", []string{"X-Forwarded-Proto: http, https"}, with("scheme", "https")},

		// Malformed: nothing applies.
		{"hostname in for", []string{"X-Forwarded-For: client.example.com", "X-Forwarded-Proto: https"}, with()},
		{"garbage hop", []string{"X-Forwarded-For: 203.0.113.7, 999.0.0.1"}, with()},
		{"bad proto", []string{"X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: gopher"}, with()},
		{"bad host", []string{"X-Forwarded-For: 203.0.113.7", "X-Forwarded-Host: exa mple.com"}, with()},
		{"bad host port", []string{"X-Forwarded-Host: example.com:x"}, with()},
		{"bad host IPv6", []string{"X-Forwarded-Host: [2001:db8::1"}, with()},
		{"bad ssl", []string{"X-Forwarded-For: 203.0.113.7", "X-Forwarded-Ssl: yes"}, with()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := serve(t, trust, "127.0.0.1", tt.hdr...); got != tt.want {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

// TestXForwardedHostOff: X-Forwarded-Host is ignored unless asked for (a
// proxy that does not set it passes on the client's own), while the rest
// of the family still applies; SetHeaders keeps the choice either way.
func TestXForwardedHostOff(t *testing.T) {
	hdr := []string{"X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https", "X-Forwarded-Host: evil.example"}
	trust := mustTrust(t, "127.0.0.1")
	if got, want := serve(t, trust, "127.0.0.1", hdr...), with("addr", "203.0.113.7", "port", "0", "scheme", "https"); got != want {
		t.Errorf("by default: got %v, want %v", got, want)
	}
	trust.SetXForwardedHost(true)
	if err := trust.SetHeaders(XForwarded); err != nil {
		t.Fatal(err)
	}
	if got, want := serve(t, trust, "127.0.0.1", hdr...), with("addr", "203.0.113.7", "port", "0", "scheme", "https", "host", "evil.example"); got != want {
		t.Errorf("with SetXForwardedHost(true): got %v, want %v", got, want)
	}
	trust.SetXForwardedHost(false)
	if got := serve(t, trust, "127.0.0.1", hdr...); got.host != "app.internal:8000" {
		t.Errorf("after SetXForwardedHost(false): got %v", got)
	}
}

func TestPeerTrust(t *testing.T) {
	hdr := []string{"X-Forwarded-For: 198.51.100.9", "X-Forwarded-Proto: https", "Forwarded: for=203.0.113.7"}
	applied := func(s seen) bool { return s.addr == "198.51.100.9" }
	tests := []struct {
		spec, peer string
		want       bool
	}{
		{"127.0.0.1,::1", "127.0.0.1", true},
		{"127.0.0.1,::1", "::1", true},
		{"127.0.0.1,::1", "10.0.0.1", false},
		{"10.0.0.1", "127.0.0.1", false},
		{"10.0.0.0/8", "10.200.3.4", true},
		{"10.0.0.0/8", "::ffff:10.200.3.4", true},
		{"*", "192.0.2.99", true},
		{"127.0.0.1", "", true}, // unix socket
		{"*", "", true},
		{"", "", false},
		{"", "127.0.0.1", false},
		{"127.0.0.1", "not-an-ip", false},
	}
	for _, tt := range tests {
		if got := serve(t, mustTrust(t, tt.spec), tt.peer, hdr...); applied(got) != tt.want {
			t.Errorf("trust %q, peer %q: applied = %v, want %v (%v)", tt.spec, tt.peer, applied(got), tt.want, got)
		}
	}
	// Nothing at all changes for an untrusted peer.
	if got, want := serve(t, mustTrust(t, "10.0.0.1"), "127.0.0.1", hdr...), with(); got != want {
		t.Errorf("untrusted peer: got %v, want %v", got, want)
	}
}

func TestHostHeaderAdded(t *testing.T) {
	r := &edge.Request{RemoteAddr: "127.0.0.1", Scheme: "http", Proto: "HTTP/1.0",
		Header: []edge.HeaderField{{Name: "X-Forwarded-Host", Value: "example.com"}}}
	var got seen
	trust := mustTrust(t, "127.0.0.1")
	trust.SetXForwardedHost(true)
	Handler(trust, edge.HandlerFunc(func(_ edge.ResponseWriter, r *edge.Request) { got = seenOf(r) })).Serve(nil, r)
	if got.host != "example.com" || got.hostHeader != "example.com" {
		t.Errorf("HTTP/1.0 request without Host: got %v", got)
	}
}

func TestMalformedLogged(t *testing.T) {
	var buf bytes.Buffer
	trust := mustTrust(t, "127.0.0.1")
	trust.SetLogger(logging.New(&buf, logging.Debug))
	serve(t, trust, "127.0.0.1", "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: gopher")
	if !strings.Contains(buf.String(), `bad X-Forwarded-Proto "gopher"`) {
		t.Errorf("log = %q", buf.String())
	}
}

func TestHandlerTrustingNobodyIsNext(t *testing.T) {
	next := edge.HandlerFunc(func(edge.ResponseWriter, *edge.Request) {})
	if h := Handler(mustTrust(t, ""), next); fmt.Sprintf("%p", h) != fmt.Sprintf("%p", next) {
		t.Error("Handler with an empty trust list wraps next")
	}
	if h := Handler(nil, next); fmt.Sprintf("%p", h) != fmt.Sprintf("%p", next) {
		t.Error("Handler(nil) wraps next")
	}
}

// TestNoAllocs checks the per-request cost when there is nothing to do.
func TestNoAllocs(t *testing.T) {
	h := Handler(mustTrust(t, "127.0.0.1,::1,10.0.0.0/8"), edge.HandlerFunc(func(edge.ResponseWriter, *edge.Request) {}))
	plain := &edge.Request{RemoteAddr: "127.0.0.1", Header: []edge.HeaderField{
		{Name: "Host", Value: "example.com"}, {Name: "User-Agent", Value: "x"}, {Name: "Accept-Encoding", Value: "gzip"},
		{Name: "Accept-Language", Value: "en"}, {Name: "Content-Type", Value: "text/plain"}, {Name: "X-Request-Id", Value: "1"},
	}}
	untrusted := &edge.Request{RemoteAddr: "2001:db8::1", Header: []edge.HeaderField{
		{Name: "Host", Value: "example.com"}, {Name: "X-Forwarded-For", Value: "203.0.113.7"},
	}}
	for name, r := range map[string]*edge.Request{"no forwarding headers": plain, "untrusted peer": untrusted} {
		if n := testing.AllocsPerRun(100, func() { h.Serve(nil, r) }); n != 0 {
			t.Errorf("%s: %v allocations per request", name, n)
		}
	}
}

func BenchmarkHandler(b *testing.B) {
	h := Handler(mustTrust(b, "127.0.0.1,::1"), edge.HandlerFunc(func(edge.ResponseWriter, *edge.Request) {}))
	base := []edge.HeaderField{{Name: "Host", Value: "example.com"}, {Name: "User-Agent", Value: "bench"}, {Name: "Accept", Value: "*/*"}}
	for _, bc := range []struct {
		name string
		hdr  []edge.HeaderField
	}{
		{"none", nil},
		{"xff", []edge.HeaderField{{Name: "X-Forwarded-For", Value: "203.0.113.7"}, {Name: "X-Forwarded-Proto", Value: "https"}}},
		{"forwarded", []edge.HeaderField{{Name: "Forwarded", Value: "for=203.0.113.7;proto=https;host=example.com"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			hdr := append(append([]edge.HeaderField(nil), base...), bc.hdr...)
			r := &edge.Request{}
			b.ReportAllocs()
			for b.Loop() {
				*r = edge.Request{RemoteAddr: "127.0.0.1", RemotePort: "5000", Scheme: "http", Host: "example.com", Header: hdr}
				h.Serve(nil, r)
			}
		})
	}
}

func FuzzForwarded(f *testing.F) {
	for _, s := range []string{
		`for=192.0.2.60;proto=http;by=203.0.113.43`, `for="[2001:db8:cafe::17]:4711"`, `for=unknown, for="_hidden"`,
		`for="\"\\"`, `;;,,`, `for="unterminated`, `host="a:1";proto=https`,
	} {
		f.Add(s, "X-Forwarded-For: 1.2.3.4, 10.0.0.1")
	}
	trust := mustTrust(f, "10.0.0.0/8,127.0.0.1")
	f.Fuzz(func(t *testing.T, fwd, other string) {
		name, value, _ := strings.Cut(other, ":")
		r := &edge.Request{RemoteAddr: "127.0.0.1", RemotePort: "1", Scheme: "http", Host: "h",
			Header: []edge.HeaderField{{Name: "Host", Value: "h"}, {Name: "Forwarded", Value: fwd}, {Name: name, Value: value}}}
		Handler(trust, edge.HandlerFunc(func(_ edge.ResponseWriter, r *edge.Request) {
			if r.Scheme != "http" && r.Scheme != "https" {
				t.Errorf("scheme %q", r.Scheme)
			}
			if r.RemoteAddr != "127.0.0.1" && r.RemotePort == "" {
				t.Errorf("client %q without a port", r.RemoteAddr)
			}
			if r.Host != "h" && !validHost(r.Host) {
				t.Errorf("host %q", r.Host)
			}
		})).Serve(nil, r)
	})
}

// echoHandler answers with what it sees of the request, one field a line.
func echoHandler(w edge.ResponseWriter, r *edge.Request) {
	s := seenOf(r)
	body := fmt.Sprintf("addr=%s\nport=%s\nscheme=%s\nhost=%s\nhosthdr=%s\nxff=%s\n",
		s.addr, s.port, s.scheme, s.host, s.hostHeader, headerValue(r, "X-Forwarded-For"))
	w.WriteHead(&edge.ResponseHead{Code: 200, Status: "200 OK", Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain"}}}, []byte(body), true)
}

func headerValue(r *edge.Request, name string) string {
	for _, f := range r.Header {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// startServer runs a real edge.Server with Handler(trust, echo) on addr
// ("127.0.0.1:0" or "unix:/path") and returns the address to dial.
func startServer(t *testing.T, spec, addr string) (network, dialAddr string) {
	t.Helper()
	var logBuf bytes.Buffer
	var mu sync.Mutex
	trust := mustTrust(t, spec)
	trust.SetXForwardedHost(true)
	srv := edge.NewServer(edge.Config{}, Handler(trust, edge.HandlerFunc(echoHandler)),
		logging.New(lockedWriter{&mu, &logBuf}, logging.Error))
	ln, err := srv.Listen(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return "unix", path
	}
	return "tcp", ln.Addr().String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// roundTrip sends one request with extra header lines and returns the
// echoed fields.
func roundTrip(t *testing.T, network, addr string, hdr ...string) map[string]string {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: app.internal\r\n" + strings.Join(append(hdr, ""), "\r\n") + "Connection: close\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(body)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		out[k] = v
	}
	return out
}

func TestServerTCP(t *testing.T) {
	network, addr := startServer(t, "127.0.0.1", "127.0.0.1:0")
	got := roundTrip(t, network, addr, "X-Forwarded-For: 198.51.100.1, 203.0.113.7", "X-Forwarded-Proto: https", "X-Forwarded-Host: example.com")
	if got["addr"] != "203.0.113.7" || got["port"] != "0" || got["scheme"] != "https" || got["host"] != "example.com" || got["hosthdr"] != "example.com" {
		t.Errorf("X-Forwarded-*: %v", got)
	}
	got = roundTrip(t, network, addr, `Forwarded: for="[2001:db8::7]:4711";proto=https;host="example.com:8443"`)
	if got["addr"] != "127.0.0.1" || got["scheme"] != "http" {
		t.Errorf("Forwarded read while X-Forwarded-* is the family: %v", got)
	}
	got = roundTrip(t, network, addr)
	if got["addr"] != "127.0.0.1" || got["port"] == "0" || got["scheme"] != "http" || got["hosthdr"] != "app.internal" {
		t.Errorf("no headers: %v", got)
	}

	// An untrusted peer: the headers reach the app untouched, nothing else.
	network, addr = startServer(t, "10.0.0.1", "127.0.0.1:0")
	got = roundTrip(t, network, addr, "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https")
	if got["addr"] != "127.0.0.1" || got["scheme"] != "http" || got["xff"] != "203.0.113.7" {
		t.Errorf("untrusted peer: %v", got)
	}
}

func TestServerUnixSocket(t *testing.T) {
	network, addr := startServer(t, "10.0.0.1", "unix:"+filepath.Join(t.TempDir(), "s.sock"))
	got := roundTrip(t, network, addr, "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https")
	if got["addr"] != "203.0.113.7" || got["scheme"] != "https" {
		t.Errorf("unix socket peer: %v", got)
	}
	network, addr = startServer(t, "", "unix:"+filepath.Join(t.TempDir(), "s.sock"))
	got = roundTrip(t, network, addr, "X-Forwarded-For: 203.0.113.7")
	if got["addr"] != "" {
		t.Errorf("unix socket peer with an empty trust list: %v", got)
	}
}
