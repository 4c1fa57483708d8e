package edge

//lint:file-ignore SA1019 the test drives the server with x/net/http2's client, the one that speaks h2c with prior knowledge.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// selfSigned returns a TLS certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "taipan test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// echoProto answers with what the Handler saw of the request.
func echoProto(w ResponseWriter, r *Request) {
	body, _ := io.ReadAll(r.Body.Reader())
	var host string
	for _, f := range r.Header {
		if strings.EqualFold(f.Name, "Host") {
			host = f.Value
		}
	}
	msg := fmt.Sprintf("%s %s %s %s host=%s body=%d", r.Proto, r.Scheme, r.Method, r.Target, host, len(body))
	if r.Path == "/stream" {
		w.WriteHead(text(200, "200 OK"), []byte("part1;"), false)
		w.Write([]byte("part2;"))
		return
	}
	w.WriteHead(text(200, "200 OK"), []byte(msg), true)
}

func startEdge(t *testing.T, cfg Config) string {
	t.Helper()
	return startHandler(t, cfg, HandlerFunc(echoProto))
}

// startHandler serves h on a loopback port until the test ends and returns
// the address.
func startHandler(t *testing.T, cfg Config, h Handler) string {
	t.Helper()
	srv := NewServer(cfg, h, nil)
	ln, err := srv.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TLS: HTTP/2 for clients that offer it by ALPN, HTTP/1.1 for the others,
// and the Handler sees https.
func TestTLSAndHTTP2(t *testing.T) {
	cert, pool := selfSigned(t)
	cfg := DefaultConfig()
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	addr := startEdge(t, cfg)

	h2 := &http.Client{Transport: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, body := get(t, h2, "https://"+addr+"/x?y=1")
	if resp.ProtoMajor != 2 || body != "HTTP/2 https GET /x?y=1 host="+addr+" body=0" {
		t.Fatalf("HTTP/2: %s %q", resp.Proto, body)
	}
	resp, err := h2.Post("https://"+addr+"/up", "text/plain", strings.NewReader(strings.Repeat("x", 3<<20)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasSuffix(string(b), "body=3145728") {
		t.Fatalf("HTTP/2 upload: %q", b)
	}
	resp, body = get(t, h2, "https://"+addr+"/stream")
	if body != "part1;part2;" || resp.ContentLength != -1 {
		t.Fatalf("HTTP/2 stream: %q %d", body, resp.ContentLength)
	}

	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, body = get(t, h1, "https://"+addr+"/x")
	if resp.ProtoMajor != 1 || body != "HTTP/1.1 https GET /x host="+addr+" body=0" {
		t.Fatalf("HTTP/1.1 over TLS: %s %q", resp.Proto, body)
	}
}

// h2c: cleartext HTTP/2 with prior knowledge and by Upgrade, only with
// H2C set; HTTP/1.1 keeps working beside it.
func TestH2C(t *testing.T) {
	cfg := DefaultConfig()
	cfg.H2C = true
	addr := startEdge(t, cfg)
	prior := &http.Client{Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
	resp, body := get(t, prior, "http://"+addr+"/p")
	if resp.ProtoMajor != 2 || body != "HTTP/2 http GET /p host="+addr+" body=0" {
		t.Fatalf("prior knowledge: %s %q", resp.Proto, body)
	}
	resp, body = get(t, http.DefaultClient, "http://"+addr+"/h1")
	if resp.ProtoMajor != 1 || !strings.HasPrefix(body, "HTTP/1.1 http GET /h1") {
		t.Fatalf("HTTP/1.1 beside h2c: %s %q", resp.Proto, body)
	}

	// Upgrade: h2c, by hand: 101, then the answer to the request as
	// stream 1 in HTTP/2 frames.
	if got := upgradeAndRead(t, addr, "GET /up HTTP/1.1\r\nHost: x\r\n"); got != "HTTP/2 http GET /up host=x body=0" {
		t.Fatalf("stream 1: %q", got)
	}
}

// upgradeAndRead sends head (a request line and header fields) with the h2c
// upgrade fields added, and returns the body of stream 1's answer.
func upgradeAndRead(t *testing.T, addr, head string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	settings := base64.RawURLEncoding.EncodeToString(nil)
	fmt.Fprintf(c, "%sConnection: Upgrade, HTTP2-Settings, X-Hop\r\nUpgrade: h2c\r\nHTTP2-Settings: %s\r\nX-Hop: 1\r\n\r\n", head, settings)
	br := bufio.NewReader(c)
	status, _ := br.ReadString('\n')
	if !strings.HasPrefix(status, "HTTP/1.1 101") {
		t.Fatalf("upgrade answered %q", status)
	}
	for {
		l, _ := br.ReadString('\n')
		if l == "\r\n" || l == "" {
			break
		}
	}
	io.WriteString(c, h2Preface)
	fr := http2.NewFramer(c, br)
	fr.WriteSettings()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading HTTP/2 frames after the upgrade: %v", err)
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
			return string(d.Data())
		}
	}
}

// The request that upgrades to h2c reaches the Handler as any HTTP/2
// request would: Host once, none of the HTTP/1 connection's fields, and an
// origin-form or asterisk target whatever form the HTTP/1 line had.
func TestH2CUpgradeRequestAsHTTP2(t *testing.T) {
	cfg := DefaultConfig()
	cfg.H2C = true
	addr := startHandler(t, cfg, HandlerFunc(func(w ResponseWriter, r *Request) {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s path=%s query=%s host=%s;", r.Method, r.Target, r.Path, r.RawQuery, r.Host)
		for _, f := range r.Header {
			fmt.Fprintf(&b, " %s=%s", strings.ToLower(f.Name), f.Value)
		}
		w.WriteHead(&ResponseHead{Code: 200, Status: "200 OK"}, []byte(b.String()), true)
	}))
	for _, tc := range []struct{ head, want string }{
		{"GET /p?q=1 HTTP/1.1\r\nHost: x\r\nX-App: a\r\n", "GET /p?q=1 path=/p query=q=1 host=x; host=x x-app=a"},
		{"GET http://good.example/p?q HTTP/1.1\r\nHost: evil.example\r\n", "GET /p?q path=/p query=q host=good.example; host=good.example"},
		{"OPTIONS * HTTP/1.1\r\nHost: x\r\n", "OPTIONS * path=* query= host=x; host=x"},
	} {
		if got := upgradeAndRead(t, addr, tc.head); got != tc.want {
			t.Errorf("%q\nseen: %q\nwant: %q", tc.head, got, tc.want)
		}
	}
}

// Without H2C a cleartext HTTP/2 preface is an HTTP/1 request of an
// unsupported version (505).
func TestNoH2CByDefault(t *testing.T) {
	addr := startEdge(t, DefaultConfig())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, h2Preface)
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 505") {
		t.Fatalf("preface without --h2c answered %q", line)
	}
}

// startTLSHandler serves h over TLS with ALPN offering h2 and http/1.1, and
// returns the address and a client for each protocol, keyed by its Proto.
func startTLSHandler(t *testing.T, h Handler) (string, map[string]*http.Client) {
	t.Helper()
	cert, pool := selfSigned(t)
	cfg := DefaultConfig()
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	return startHandler(t, cfg, h), map[string]*http.Client{
		"HTTP/2.0": {Transport: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
		"HTTP/1.1": {Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
	}
}

// TestH2ResponseRules: the HTTP/2 writer applies the HTTP/1.1 writer's
// rules before x/net/http2 sees the bytes. A body streamed after a 304 head
// or in answer to HEAD is dropped without an error (x/net/http2 would
// refuse it, and the bridge would then reset the stream), and a body longer
// than its declared Content-Length is cut there, with ErrBodyTooLong.
func TestH2ResponseRules(t *testing.T) {
	writeErr := make(chan error, 1)
	addr, clients := startTLSHandler(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		switch r.Path {
		case "/not-modified":
			w.WriteHead(&ResponseHead{Code: 304, Status: "304 Not Modified"}, nil, false)
		case "/declared":
			w.WriteHead(&ResponseHead{Code: 200, Header: []HeaderField{{Name: "Content-Length", Value: "5"}}}, nil, false)
		default:
			w.WriteHead(&ResponseHead{Code: 200}, nil, false)
		}
		writeErr <- w.Write([]byte("0123456789"))
	}))
	for proto, c := range clients {
		for _, tc := range []struct {
			method, path string
			code         int
			body         string
			err          error
		}{
			{"GET", "/not-modified", 304, "", nil},
			{"HEAD", "/", 200, "", nil},
			{"GET", "/declared", 200, "01234", ErrBodyTooLong},
			{"GET", "/", 200, "0123456789", nil},
		} {
			req, _ := http.NewRequest(tc.method, "https://"+addr+tc.path, nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Errorf("%s %s %s: %v", proto, tc.method, tc.path, err)
				<-writeErr
				continue
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if werr := <-writeErr; !errors.Is(werr, tc.err) {
				t.Errorf("%s %s %s: Write returned %v, want %v", proto, tc.method, tc.path, werr, tc.err)
			}
			if err != nil || resp.StatusCode != tc.code || string(body) != tc.body || resp.Proto != proto {
				t.Errorf("%s %s %s: %s %d %q (read error %v), want %d %q", proto, tc.method, tc.path, resp.Proto, resp.StatusCode, body, err, tc.code, tc.body)
			}
		}
	}
}

// TestH2CompleteResponseLength: a complete response keeps the length its
// head declared, over HTTP/2 as over HTTP/1.1: a HEAD response says GET's
// length, a longer body is cut, and a shorter one fails at the client
// (a stream reset; a closed connection over HTTP/1.1) instead of passing
// for complete.
func TestH2CompleteResponseLength(t *testing.T) {
	addr, clients := startTLSHandler(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		declared := map[string]string{"/head": "12345", "/long": "5", "/short": "100"}[r.Path]
		body := []byte("0123456789")
		if r.Method == "HEAD" {
			body = nil // as Flask answers HEAD: the headers of GET, no body
		}
		w.WriteHead(&ResponseHead{Code: 200, Header: []HeaderField{{Name: "Content-Length", Value: declared}}}, body, true)
	}))
	for proto, c := range clients {
		for _, tc := range []struct {
			method, path string
			length       int64
			body         string
			readFails    bool
		}{
			{"HEAD", "/head", 12345, "", false},
			{"GET", "/long", 5, "01234", false},
			{"GET", "/short", 100, "", true},
		} {
			req, _ := http.NewRequest(tc.method, "https://"+addr+tc.path, nil)
			resp, err := c.Do(req)
			if err != nil {
				if !tc.readFails { // a reset may come before the head
					t.Errorf("%s %s %s: %v", proto, tc.method, tc.path, err)
				}
				continue
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ContentLength != tc.length || resp.Proto != proto {
				t.Errorf("%s %s %s: %s Content-Length %d, want %d", proto, tc.method, tc.path, resp.Proto, resp.ContentLength, tc.length)
			}
			if tc.readFails {
				if err == nil {
					t.Errorf("%s %s %s: a body short of its Content-Length read as complete (%q)", proto, tc.method, tc.path, body)
				}
			} else if err != nil || string(body) != tc.body {
				t.Errorf("%s %s %s: body %q (%v), want %q", proto, tc.method, tc.path, body, err, tc.body)
			}
		}
	}
}

// TestH2RequestChecks: over HTTP/2 as over HTTP/1.1, CONNECT gets 501 and
// the request-line and header-field limits hold; the Handler never runs.
func TestH2RequestChecks(t *testing.T) {
	cfg := DefaultConfig()
	cfg.H2C = true
	var served atomic.Int32
	addr := startHandler(t, cfg, HandlerFunc(func(w ResponseWriter, r *Request) {
		served.Add(1)
		w.WriteHead(&ResponseHead{Code: 200}, []byte("served"), true)
	}))
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	many := http.Header{}
	for i := range DefaultLimitRequestFields + 1 {
		many.Set(fmt.Sprintf("X-H%d", i), "v")
	}
	for _, tc := range []struct {
		name string
		req  *http.Request
		code int
	}{
		{"CONNECT", &http.Request{Method: "CONNECT", URL: &url.URL{Scheme: "http", Host: "example.com:443"}, Host: "example.com:443", Header: http.Header{}}, 501},
		{"long target", mustRequest(t, "GET", "http://"+addr+"/"+strings.Repeat("a", DefaultLimitRequestLine), nil), 414},
		{"many fields", mustRequest(t, "GET", "http://"+addr+"/", many), 431},
		{"long field", mustRequest(t, "GET", "http://"+addr+"/", http.Header{"X-Long": {strings.Repeat("v", DefaultLimitRequestFieldSize)}}), 431},
		{"fine", mustRequest(t, "GET", "http://"+addr+"/", http.Header{"X-Fine": {"v"}}), 200},
	} {
		if tc.req.Method == "CONNECT" {
			tc.req.URL.Host = addr // dial the edge; :authority stays example.com:443
		}
		resp, err := tr.RoundTrip(tc.req)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.code)
		}
	}
	if n := served.Load(); n != 1 {
		t.Errorf("the Handler ran %d times, want once (the fine request)", n)
	}
}

// mustRequest builds a request with header.
func mustRequest(t *testing.T, method, target string, header http.Header) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return req
}

// TestH2BodyReadTimeout: an HTTP/2 client that stops in the middle of its
// request body gets 408 after BodyReadTimeout, as over HTTP/1.1, and the
// Handler never runs; one that keeps sending is served.
func TestH2BodyReadTimeout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.H2C = true
	cfg.BodyReadTimeout = 300 * time.Millisecond
	addr := startEdge(t, cfg)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}

	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("abc")) // then nothing
	req, _ := http.NewRequest("POST", "http://"+addr+"/stalled", pr)
	req.ContentLength = 10
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if waited := time.Since(start); resp.StatusCode != 408 || waited > 5*time.Second {
		t.Fatalf("a stalled HTTP/2 body: %d %q after %v, want 408 after about 0.3 s", resp.StatusCode, body, waited)
	}

	pr, pw = io.Pipe()
	go func() {
		for _, b := range []string{"a", "b", "c", "d"} {
			time.Sleep(200 * time.Millisecond)
			pw.Write([]byte(b))
		}
		pw.Close()
	}()
	req, _ = http.NewRequest("POST", "http://"+addr+"/slow", pr)
	req.ContentLength = 4
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasSuffix(string(body), "body=4") {
		t.Fatalf("a slow HTTP/2 body, a byte every 0.2 s: %d %q", resp.StatusCode, body)
	}
}
