package uwsgi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"taipan/internal/cgivars/cgivarstest"
	"taipan/internal/edge"
	"taipan/internal/logging"
)

// newTestServer runs a Server with the cgivarstest Handler on a loopback
// port.
func newTestServer(t *testing.T, cfg edge.Config) *cgivarstest.TestServer {
	t.Helper()
	return cgivarstest.StartTestServer(t, cfg, newServer)
}

func newServer(cfg edge.Config, h edge.Handler, log *logging.Logger) cgivarstest.Server {
	return NewServer(cfg, h, log)
}

// packet encodes a uwsgi request: header, vars, body.
func packet(vars [][2]string, body []byte) []byte {
	var block []byte
	for _, kv := range vars {
		block = binary.LittleEndian.AppendUint16(block, uint16(len(kv[0])))
		block = append(block, kv[0]...)
		block = binary.LittleEndian.AppendUint16(block, uint16(len(kv[1])))
		block = append(block, kv[1]...)
	}
	p := []byte{0}
	p = binary.LittleEndian.AppendUint16(p, uint16(len(block)))
	p = append(p, 0)
	p = append(p, block...)
	return append(p, body...)
}

// nginxVars is what nginx's uwsgi_params send for method and uri, with a
// client at 203.0.113.7:51234.
func nginxVars(method, uri string, extra ...[2]string) [][2]string {
	path, query, _ := strings.Cut(uri, "?")
	v := [][2]string{
		{"QUERY_STRING", query},
		{"REQUEST_METHOD", method},
		{"CONTENT_TYPE", ""},
		{"CONTENT_LENGTH", ""},
		{"REQUEST_URI", uri},
		{"PATH_INFO", path},
		{"DOCUMENT_ROOT", "/usr/share/nginx/html"},
		{"SERVER_PROTOCOL", "HTTP/1.1"},
		{"REQUEST_SCHEME", "http"},
		{"REMOTE_ADDR", "203.0.113.7"},
		{"REMOTE_PORT", "51234"},
		{"SERVER_PORT", "8080"},
		{"SERVER_NAME", "example.org"},
		{"HTTP_HOST", "example.org"},
	}
	return append(v, extra...)
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends raw on a new connection, then shuts its write side, and
// returns everything that came back until the server closed, and how the
// read ended.
func roundTrip(t *testing.T, addr string, raw []byte) ([]byte, error) {
	t.Helper()
	c := dial(t, addr)
	go func() { // a refused body may never be read whole
		if _, err := c.Write(raw); err == nil {
			c.(*net.TCPConn).CloseWrite()
		}
	}()
	return io.ReadAll(c)
}

// do sends a request and parses the HTTP response.
func do(t *testing.T, addr, method string, raw []byte) (*http.Response, string) {
	t.Helper()
	out, err := roundTrip(t, addr, raw)
	if err != nil {
		t.Fatalf("reading the response: %v (got %q)", err, out)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("parsing the response %q: %v", out, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body of %q: %v", out, err)
	}
	return resp, string(body)
}

func echo(t *testing.T, body string) cgivarstest.Echo {
	t.Helper()
	var e cgivarstest.Echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("bad echo %q: %v", body, err)
	}
	return e
}

func header(e cgivarstest.Echo, name string) []string {
	var vs []string
	for _, f := range e.Header {
		if f.Name == name {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

func TestVarsBecomeTheRequest(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	resp, body := do(t, ts.Addr, "GET", packet(nginxVars("GET", "/echo?a=1&b=%20", [2]string{"HTTP_X_FORWARDED_FOR", "198.51.100.1"},
		[2]string{"HTTP_USER_AGENT", "test-agent"}, [2]string{"HTTP_ACCEPT", "a"}, [2]string{"HTTP_ACCEPT", "b"},
		[2]string{"HTTPS", "on"}), nil))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	e := echo(t, body)
	want := cgivarstest.Echo{Method: "GET", Target: "/echo?a=1&b=%20", Path: "/echo", RawQuery: "a=1&b=%20", Proto: "HTTP/1.1", ProtoMinor: 1,
		Host: "example.org", RemoteAddr: "203.0.113.7", RemotePort: "51234", ServerName: "example.org", ServerPort: "8080", Scheme: "https",
		GatewayPaths: true, PathInfo: "/echo", BodySHA256: e.BodySHA256, Header: e.Header}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("request\n got %+v\nwant %+v", e, want)
	}
	for name, v := range map[string]string{"X-Forwarded-For": "198.51.100.1", "User-Agent": "test-agent", "Host": "example.org"} {
		if got := header(e, name); len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want %q", name, got, v)
		}
	}
	if got := header(e, "Accept"); strings.Join(got, ",") != "a,b" {
		t.Errorf("repeated Accept = %q, want both values in order", got)
	}
	if got := header(e, "Content-Length"); got != nil {
		t.Errorf("Content-Length %q for a request without a body", got)
	}
	if resp.Header.Get("Content-Length") != "" && resp.ContentLength != int64(len(body)) {
		t.Errorf("Content-Length %d for a body of %d", resp.ContentLength, len(body))
	}
	if resp.Header.Get("Date") == "" || resp.Header.Get("Server") != edge.DefaultServerHeader {
		t.Errorf("Date %q, Server %q: want both added", resp.Header.Get("Date"), resp.Header.Get("Server"))
	}

	access := ts.Access()
	if len(access) != 1 {
		t.Fatalf("%d access records, want 1", len(access))
	}
	if r := access[0]; r.RemoteAddr != "203.0.113.7" || r.RequestLine != "GET /echo?a=1&b=%20 HTTP/1.1" || r.Status != 200 || r.UserAgent != "test-agent" || r.BodyBytes != int64(len(body)) {
		t.Errorf("access record %+v", r)
	}
}

func TestCGIFallbacks(t *testing.T) {
	// No REQUEST_URI: the target is rebuilt from SCRIPT_NAME, PATH_INFO
	// (decoded, so escaped again) and QUERY_STRING. No REMOTE_ADDR or
	// SERVER_NAME: the socket's addresses.
	ts := newTestServer(t, edge.Config{})
	_, body := do(t, ts.Addr, "GET", packet([][2]string{
		{"REQUEST_METHOD", "GET"}, {"SCRIPT_NAME", ""}, {"PATH_INFO", "/echo"}, {"QUERY_STRING", "q=1"}, {"SERVER_PROTOCOL", "HTTP/1.0"},
	}, nil))
	e := echo(t, body)
	if e.Target != "/echo?q=1" || e.Path != "/echo" || e.RawQuery != "q=1" || e.Proto != "HTTP/1.0" || e.ProtoMinor != 0 || e.Scheme != "http" {
		t.Errorf("got %+v", e)
	}
	if e.RemoteAddr != "127.0.0.1" || e.RemotePort == "" || e.ServerName != "127.0.0.1" || e.ServerPort == "" {
		t.Errorf("socket fallbacks: %+v", e)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestBodies(t *testing.T) {
	ts := newTestServer(t, edge.Config{BodyMemoryLimit: 1000, TempDir: t.TempDir()})
	for _, n := range []int{5, 1000, 1001, 300000} {
		b := bytes.Repeat([]byte("0123456789abcdefg"), n/17+1)[:n]
		_, body := do(t, ts.Addr, "POST", packet(nginxVars("POST", "/echo", [2]string{"CONTENT_LENGTH", strconv.Itoa(n)}, [2]string{"CONTENT_TYPE", "application/x-test"}), b))
		e := echo(t, body)
		if e.BodyLen != int64(n) || e.BodySHA256 != sha(b) {
			t.Errorf("body of %d: got %d bytes, sha %s", n, e.BodyLen, e.BodySHA256)
		}
		if e.Spilled != (n > 1000) || e.Spilled && !e.SpillExists {
			t.Errorf("body of %d: spilled %v (file there: %v), limit 1000", n, e.Spilled, e.SpillExists)
		}
		if got := header(e, "Content-Length"); len(got) != 1 || got[0] != strconv.Itoa(n) {
			t.Errorf("body of %d: Content-Length %q", n, got)
		}
		if got := header(e, "Content-Type"); len(got) != 1 || got[0] != "application/x-test" {
			t.Errorf("Content-Type %q", got)
		}
	}
	if p := ts.H.SpillPath(); p == "" {
		t.Error("no body spilled")
	} else if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spill file %s still there after the request: %v", p, err)
	}
}

func TestResponses(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	get := func(path string) (*http.Response, string) {
		return do(t, ts.Addr, "GET", packet(nginxVars("GET", path), nil))
	}

	resp, body := get("/stream")
	if body != "abcd" || resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
		t.Errorf("stream: body %q, Content-Length %d: want close-delimited abcd", body, resp.ContentLength)
	}
	resp, body = get("/cl")
	if body != "hello" || resp.ContentLength != 5 {
		t.Errorf("cl: %q %d", body, resp.ContentLength)
	}
	resp, body = get("/hop")
	if resp.StatusCode != 201 || body != "hop" || resp.Header.Get("X-Kept") != "yes" || resp.Header.Get("Server") != "app" {
		t.Errorf("hop: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	for _, h := range []string{"Keep-Alive", "Transfer-Encoding", "Upgrade"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("hop-by-hop %s: %q kept", h, v)
		}
	}
	resp, body = get("/204")
	if resp.StatusCode != 204 || body != "" || resp.Header.Get("Content-Length") != "" {
		t.Errorf("204: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = get("/nohead")
	if resp.StatusCode != 500 || body != "Internal Server Error\n" {
		t.Errorf("no WriteHead: %d %q", resp.StatusCode, body)
	}
	resp, _ = get("/panic")
	if resp.StatusCode != 500 || !strings.Contains(ts.ErrorLog(), "boom") {
		t.Errorf("panic: %d; log %s", resp.StatusCode, ts.ErrorLog())
	}
	_, body = get("/upgrade")
	if body != "upgrade error: yes" {
		t.Errorf("Upgrade: %q", body)
	}
	resp, body = get("/file")
	if body != "23456789abcdef" || resp.ContentLength != 14 {
		t.Errorf("SendFile: %q %d", body, resp.ContentLength)
	}
}

func TestHead(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	out, err := roundTrip(t, ts.Addr, packet(nginxVars("HEAD", "/echo"), nil))
	if err != nil {
		t.Fatal(err)
	}
	head, rest, _ := bytes.Cut(out, []byte("\r\n\r\n"))
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.Contains(head, []byte("\r\nContent-Length: ")) || len(rest) != 0 {
		t.Errorf("HEAD: got %q, want a head with the GET's Content-Length and no body", out)
	}
	out, _ = roundTrip(t, ts.Addr, packet(nginxVars("HEAD", "/stream"), nil))
	if _, rest, _ := bytes.Cut(out, []byte("\r\n\r\n")); len(rest) != 0 || bytes.Contains(out, []byte("Content-Length")) {
		t.Errorf("HEAD of a stream: %q", out)
	}
}

func TestBrokenResponsesReset(t *testing.T) {
	// A response that breaks off must not look complete to nginx: with no
	// Content-Length the body ends at the close, so the close is a reset.
	ts := newTestServer(t, edge.Config{})
	for _, path := range []string{"/abort", "/clshort"} {
		out, err := roundTrip(t, ts.Addr, packet(nginxVars("GET", path), nil))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: read ended with %v after %q, want a connection reset", path, err, out)
		}
	}
}

func TestRefusals(t *testing.T) {
	ts := newTestServer(t, edge.Config{LimitRequestBody: 100, LimitRequestFields: 3, LimitRequestLine: 50})
	cases := []struct {
		name string
		raw  []byte
		code int
	}{
		{"body over the limit", packet(nginxVars("POST", "/echo", [2]string{"CONTENT_LENGTH", "101"}), bytes.Repeat([]byte("x"), 101)), 413},
		{"invalid CONTENT_LENGTH", packet(nginxVars("POST", "/echo", [2]string{"CONTENT_LENGTH", "12x"}), nil), 400},
		{"no REQUEST_METHOD", packet([][2]string{{"REQUEST_URI", "/echo"}}, nil), 400},
		{"too many headers", packet(nginxVars("GET", "/echo", [2]string{"HTTP_A", "1"}, [2]string{"HTTP_B", "2"}, [2]string{"HTTP_C", "3"}), nil), 431},
		{"REQUEST_URI too long", packet(nginxVars("GET", "/echo?"+strings.Repeat("q", 60)), nil), 414},
		{"control character in a header", packet(nginxVars("GET", "/echo", [2]string{"HTTP_X", "a\r\nb"}), nil), 400},
		{"space in the target", packet(nginxVars("GET", "/e cho"), nil), 400},
	}
	for _, c := range cases {
		resp, body := do(t, ts.Addr, "GET", c.raw)
		if resp.StatusCode != c.code {
			t.Errorf("%s: status %d (%q), want %d", c.name, resp.StatusCode, body, c.code)
		}
	}
}

func TestMalformedPacketsClose(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	good := packet(nginxVars("GET", "/echo"), nil)
	notWSGI := append([]byte{5}, good[1:]...)
	truncatedVar := packet(nil, nil)
	truncatedVar = append(truncatedVar[:1], 3, 0, 0, 9, 0, 'X') // a 9-byte key in a 3-byte block
	for name, raw := range map[string][]byte{
		"modifier1 5":        notWSGI,
		"truncated variable": truncatedVar,
		"plain HTTP":         []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"short header":       {0, 1},
	} {
		out, err := roundTrip(t, ts.Addr, raw)
		if err != nil || len(out) != 0 {
			t.Errorf("%s: got %q, %v; want the connection closed unanswered", name, out, err)
		}
	}
	if !strings.Contains(ts.ErrorLog(), "modifier1 5 is not WSGI") {
		t.Errorf("protocol error not logged:\n%s", ts.ErrorLog())
	}
}

// Modifier1 30 (nginx's uwsgi_modifier1 30) is WSGI with SCRIPT_NAME
// removed from the front of PATH_INFO; modifier1 0 leaves PATH_INFO as
// sent. (A later variable replaces nginxVars' PATH_INFO; the target stays
// /echo, which the test Handler answers.)
func TestModifier30StripsScriptName(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	for mod, want := range map[byte]string{30: "/foo", 0: "/mnt/foo"} {
		raw := packet(nginxVars("GET", "/echo", [2]string{"SCRIPT_NAME", "/mnt"}, [2]string{"PATH_INFO", "/mnt/foo"}), nil)
		raw[0] = mod
		resp, body := do(t, ts.Addr, "GET", raw)
		if resp.StatusCode != 200 {
			t.Fatalf("modifier1 %d: %d %q", mod, resp.StatusCode, body)
		}
		if e := echo(t, body); !e.GatewayPaths || e.ScriptName != "/mnt" || e.PathInfo != want || e.Target != "/echo" {
			t.Errorf("modifier1 %d: %+v, want SCRIPT_NAME /mnt, PATH_INFO %q", mod, e, want)
		}
	}
}

func TestHeaderTimeout(t *testing.T) {
	ts := newTestServer(t, edge.Config{ReadHeaderTimeout: 200 * time.Millisecond})
	c := dial(t, ts.Addr)
	c.Write(packet(nginxVars("GET", "/echo"), nil)[:10])
	out, _ := io.ReadAll(c)
	if !bytes.HasPrefix(out, []byte("HTTP/1.1 408 ")) {
		t.Errorf("stalled vars: got %q, want 408", out)
	}
}

func TestClientGone(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	c := dial(t, ts.Addr)
	c.Write(packet(nginxVars("GET", "/watch"), nil))
	<-ts.H.Entered
	c.Close()
	select {
	case gone := <-ts.H.Gone:
		if !gone {
			t.Error("ClientGone did not fire when the peer closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler never finished")
	}
}

func TestShutdownLetsARequestFinish(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	type result struct {
		out []byte
		err error
	}
	res := make(chan result, 1)
	c := dial(t, ts.Addr)
	c.Write(packet(nginxVars("GET", "/slow"), nil))
	go func() {
		out, err := io.ReadAll(c)
		res <- result{out, err}
	}()
	<-ts.H.Entered

	shut := make(chan error, 1)
	go func() { shut <- ts.Srv.Shutdown(context.Background()) }()
	// New connections are refused once the listener is closed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c2, err := net.Dial("tcp", ts.Addr); err != nil {
			break
		} else {
			c2.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting during Shutdown")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(ts.H.Release)
	r := <-res
	if r.err != nil || !bytes.HasSuffix(r.out, []byte("\r\n\r\nslow done")) {
		t.Errorf("in-flight response: %q, %v", r.out, r.err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-ts.Served; err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	ts.Served <- nil // for the cleanup
}

func TestShutdownDeadline(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	c := dial(t, ts.Addr)
	c.Write(packet(nginxVars("GET", "/slow"), nil))
	<-ts.H.Entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.Srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a stuck request: %v, want the context's error", err)
	}
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connection after a forced Shutdown: %v", err)
	}
	close(ts.H.Release)
}

func TestUnixSocket(t *testing.T) {
	srv := NewServer(edge.Config{}, cgivarstest.New(t, ""), logging.New(io.Discard, logging.Error))
	path := t.TempDir() + "/uwsgi.sock"
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(packet([][2]string{{"REQUEST_METHOD", "GET"}, {"REQUEST_URI", "/echo"}}, nil))
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := bytes.Cut(out, []byte("\r\n\r\n"))
	e := echo(t, string(body))
	if e.RemoteAddr != "" || e.ServerName != "localhost" || e.ServerPort != "" {
		t.Errorf("unix socket addresses: %+v", e)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	if err := <-served; err != nil {
		t.Error(err)
	}
}
