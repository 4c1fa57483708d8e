package e2e

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// environOf GETs /environ with extra headers and returns its string keys.
func environOf(t *testing.T, s *Server, header map[string]string) map[string]string {
	t.Helper()
	resp, body := httpDo(t, "GET", s.URL+"/environ", nil, header)
	if resp.StatusCode != 200 {
		t.Fatalf("/environ: %d %s", resp.StatusCode, body)
	}
	var out struct {
		Str map[string]string `json:"str"`
	}
	if err := jsonUnmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out.Str
}

// rawEnviron sends raw (a PROXY header and a request, or anything) on a
// fresh connection and decodes /environ's answer.
func rawEnviron(t *testing.T, s *Server, raw string) map[string]string {
	t.Helper()
	resp, body := rawResponse(t, s, raw, "GET")
	if resp.StatusCode != 200 {
		t.Fatalf("/environ: %d %s", resp.StatusCode, body)
	}
	var out struct {
		Str map[string]string `json:"str"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("bad JSON %q: %v", body, err)
	}
	return out.Str
}

// wantEnv checks environ keys.
func wantEnv(t *testing.T, what string, env map[string]string, kv ...string) {
	t.Helper()
	for i := 0; i < len(kv); i += 2 {
		if got := env[kv[i]]; got != kv[i+1] {
			t.Errorf("%s: %s = %q, want %q", what, kv[i], got, kv[i+1])
		}
	}
}

// TestForwardedHeaders: with the default --forwarded-allow-ips
// (127.0.0.1,::1) a loopback client is a trusted proxy, so its
// X-Forwarded-For and -Proto headers (or, with --forwarded-headers
// forwarded, its Forwarded header) become REMOTE_ADDR and wsgi.url_scheme,
// and with --forwarded-host X-Forwarded-Host becomes HTTP_HOST; the headers
// stay visible to the app.
func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")

	env := environOf(t, s, map[string]string{"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
	wantEnv(t, "X-Forwarded-For", env, "REMOTE_ADDR", "203.0.113.7", "REMOTE_PORT", "0",
		"wsgi.url_scheme", "https", "HTTP_X_FORWARDED_FOR", "203.0.113.7", "HTTP_HOST", s.Addr)

	// A spoofed entry on the left is not the client; the trusted hop on
	// the right is skipped. X-Forwarded-Host is not read by default.
	chain := map[string]string{
		"X-Forwarded-For":   "10.6.6.6, 203.0.113.7, 127.0.0.1",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "www.example.com",
	}
	env = environOf(t, s, chain)
	wantEnv(t, "X-Forwarded-For chain", env, "REMOTE_ADDR", "203.0.113.7", "wsgi.url_scheme", "https",
		"HTTP_HOST", s.Addr, "HTTP_X_FORWARDED_HOST", "www.example.com")

	// With --forwarded-host, the host is the forwarded one.
	h := startTestApp(t, "-w", "1", "--forwarded-host")
	env = environOf(t, h, chain)
	wantEnv(t, "--forwarded-host", env, "REMOTE_ADDR", "203.0.113.7", "wsgi.url_scheme", "https", "HTTP_HOST", "www.example.com")

	// A client's own Forwarded header, which a proxy that sets
	// X-Forwarded-For passes through untouched, is not read by default.
	env = environOf(t, s, map[string]string{"Forwarded": "for=127.0.0.1;proto=https", "X-Forwarded-For": "203.0.113.7"})
	wantEnv(t, "Forwarded beside X-Forwarded-For", env, "REMOTE_ADDR", "203.0.113.7", "wsgi.url_scheme", "http")

	// With --forwarded-headers forwarded, RFC 7239 is the family read.
	f := startTestApp(t, "-w", "1", "--forwarded-headers", "forwarded")
	env = environOf(t, f, map[string]string{"Forwarded": `for="[2001:db8::7]:4711";proto=https;host="example.com:8443"`, "X-Forwarded-For": "203.0.113.7"})
	wantEnv(t, "Forwarded", env, "REMOTE_ADDR", "2001:db8::7", "REMOTE_PORT", "4711", "wsgi.url_scheme", "https", "HTTP_HOST", "example.com:8443")

	// Malformed: nothing applies.
	env = environOf(t, s, map[string]string{"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "gopher"})
	wantEnv(t, "malformed", env, "REMOTE_ADDR", "127.0.0.1", "wsgi.url_scheme", "http")

	// No forwarding headers: the real peer.
	env = environOf(t, s, nil)
	wantEnv(t, "plain", env, "REMOTE_ADDR", "127.0.0.1", "wsgi.url_scheme", "http", "HTTP_HOST", s.Addr)
	if env["REMOTE_PORT"] == "0" || env["REMOTE_PORT"] == "" {
		t.Errorf("plain request: REMOTE_PORT %q", env["REMOTE_PORT"])
	}
}

// TestForwardedHostBehindNginx: behind nginx configured as usual (Host,
// X-Forwarded-For and -Proto set, X-Forwarded-Host not), a client's own
// X-Forwarded-Host passes through nginx but does not become the host the
// app sees, which it would use for its links (password-reset mails,
// redirects, caches keyed on the host).
func TestForwardedHostBehindNginx(t *testing.T) {
	t.Parallel()
	requireNginx(t)
	s := startTestApp(t, "-w", "1")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startNginx(t, t.TempDir(), addr, `
    server {
        listen `+addr+`;
        location / {
            proxy_pass http://`+s.Addr+`;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
`)
	env := environOf(t, &Server{URL: "http://" + addr, Addr: addr}, map[string]string{"X-Forwarded-Host": "evil.example"})
	// nginx's $host is the Host header without its port.
	wantEnv(t, "behind nginx", env, "HTTP_HOST", "127.0.0.1", "HTTP_X_FORWARDED_HOST", "evil.example", "REMOTE_ADDR", "127.0.0.1")
}

// TestForwardedUntrusted: a peer outside --forwarded-allow-ips gets its
// forwarding headers passed to the app as plain headers, nothing more.
func TestForwardedUntrusted(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1", "--forwarded-allow-ips", "10.0.0.1")
	env := environOf(t, s, map[string]string{
		"X-Forwarded-For":   "203.0.113.7",
		"X-Forwarded-Proto": "https",
		"Forwarded":         "for=198.51.100.9;proto=https;host=example.com",
	})
	wantEnv(t, "untrusted", env, "REMOTE_ADDR", "127.0.0.1", "wsgi.url_scheme", "http", "HTTP_HOST", s.Addr,
		"HTTP_X_FORWARDED_FOR", "203.0.113.7", "HTTP_FORWARDED", "for=198.51.100.9;proto=https;host=example.com")
}

// TestForwardedASGI: the ASGI scope's client and scheme follow too.
func TestForwardedASGI(t *testing.T) {
	t.Parallel()
	s := startASGI(t, "fastapi_app", "-w", "1")
	resp, body := httpDo(t, "GET", s.URL+"/scope", nil, map[string]string{"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
	var scope struct {
		Client []any  `json:"client"`
		Scheme string `json:"scheme"`
	}
	if resp.StatusCode != 200 || jsonUnmarshal(body, &scope) != nil {
		t.Fatalf("/scope: %d %s", resp.StatusCode, body)
	}
	if len(scope.Client) != 2 || scope.Client[0] != "203.0.113.7" || scope.Client[1] != 0.0 || scope.Scheme != "https" {
		t.Errorf("scope client %v scheme %q, want [203.0.113.7 0] https", scope.Client, scope.Scheme)
	}
}

// proxyV2 builds a PROXY protocol v2 header for a TCP connection, with a
// TLV that must be skipped.
func proxyV2(src, dst string, sport, dport uint16) string {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x00")
	if s.Is6() {
		b[13] = 0x21
	}
	b = append(b, s.AsSlice()...)
	b = append(b, d.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = append(b, 0x02, 0x00, 0x0b) // PP2_TYPE_AUTHORITY
	b = append(b, "example.com"...)
	binary.BigEndian.PutUint16(b[14:16], uint16(len(b)-16))
	return string(b)
}

// TestProxyProtocol: with --proxy-protocol every TCP connection starts with
// a PROXY header (v1 or v2) from a trusted peer, and the app sees the
// address it names; a connection without one is closed.
func TestProxyProtocol(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1", "--proxy-protocol")
	const req = "GET /environ HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"

	env := rawEnviron(t, s, "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"+req)
	wantEnv(t, "v1", env, "REMOTE_ADDR", "192.0.2.1", "REMOTE_PORT", "56324")

	env = rawEnviron(t, s, proxyV2("2001:db8::1", "2001:db8::2", 40001, 443)+req)
	wantEnv(t, "v2", env, "REMOTE_ADDR", "2001:db8::1", "REMOTE_PORT", "40001")

	// The header's client is not a trusted proxy: its X-Forwarded-For is
	// just a header.
	env = rawEnviron(t, s, "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"+
		"GET /environ HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n\r\n")
	wantEnv(t, "v1 with X-Forwarded-For", env, "REMOTE_ADDR", "192.0.2.1", "HTTP_X_FORWARDED_FOR", "203.0.113.7")

	// No header: closed without an answer.
	c := dialRaw(t, s.Addr)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(testTimeout))
	out, err := io.ReadAll(c)
	var ne net.Error
	if len(out) != 0 || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("request without a PROXY header: got %q, %v; want the connection closed", out, err)
	}
}
