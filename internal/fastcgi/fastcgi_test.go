package fastcgi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
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

// client speaks FastCGI as a web server does.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
	// paramsChunk, when > 0, cuts the PARAMS stream into records of that
	// many bytes, so that pairs straddle records.
	paramsChunk int
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

// appendRecord appends a record, padded to a multiple of 8 as the
// specification recommends.
func appendRecord(b []byte, typ uint8, id uint16, content []byte) []byte {
	pad := (8 - len(content)%8) % 8
	b = append(b, 1, typ, byte(id>>8), byte(id), byte(len(content)>>8), byte(len(content)), byte(pad), 0)
	b = append(b, content...)
	return append(b, make([]byte, pad)...)
}

func (cl *client) record(typ uint8, id uint16, content []byte) {
	cl.t.Helper()
	if _, err := cl.c.Write(appendRecord(nil, typ, id, content)); err != nil {
		cl.t.Fatalf("writing record type %d: %v", typ, err)
	}
}

func beginContent(role uint16, flags byte) []byte {
	return []byte{byte(role >> 8), byte(role), flags, 0, 0, 0, 0, 0}
}

func (cl *client) begin(id uint16, role uint16, flags byte) {
	cl.record(typeBeginRequest, id, beginContent(role, flags))
}

// requestBytes encodes a whole RESPONDER request.
func requestBytes(id uint16, flags byte, vars [][2]string, body []byte) []byte {
	b := appendRecord(nil, typeBeginRequest, id, beginContent(roleResponder, flags))
	b = appendRecord(b, typeParams, id, encodePairs(vars))
	b = appendRecord(b, typeParams, id, nil)
	for len(body) > 0 {
		n := min(maxContent, len(body))
		b = appendRecord(b, typeStdin, id, body[:n])
		body = body[n:]
	}
	return appendRecord(b, typeStdin, id, nil)
}

func encodePairs(vars [][2]string) []byte {
	var b []byte
	for _, kv := range vars {
		for _, s := range kv {
			if len(s) < 128 {
				b = append(b, byte(len(s)))
			} else {
				b = binary.BigEndian.AppendUint32(b, uint32(len(s))|1<<31)
			}
		}
		b = append(b, kv[0]...)
		b = append(b, kv[1]...)
	}
	return b
}

func (cl *client) params(id uint16, vars [][2]string) {
	cl.t.Helper()
	b := encodePairs(vars)
	chunk := cl.paramsChunk
	if chunk == 0 {
		chunk = maxContent
	}
	for len(b) > 0 {
		n := min(chunk, len(b))
		cl.record(typeParams, id, b[:n])
		b = b[n:]
	}
	cl.record(typeParams, id, nil)
}

func (cl *client) stdin(id uint16, body []byte) {
	cl.t.Helper()
	for len(body) > 0 {
		n := min(maxContent, len(body))
		cl.record(typeStdin, id, body[:n])
		body = body[n:]
	}
	cl.record(typeStdin, id, nil)
}

// request sends a whole RESPONDER request.
func (cl *client) request(id uint16, flags byte, vars [][2]string, body []byte) {
	cl.t.Helper()
	cl.begin(id, roleResponder, flags)
	cl.params(id, vars)
	cl.stdin(id, body)
}

type rec struct {
	typ     uint8
	id      uint16
	content []byte
}

func (cl *client) read() (rec, error) {
	var h [8]byte
	if _, err := io.ReadFull(cl.br, h[:]); err != nil {
		return rec{}, err
	}
	if h[0] != 1 {
		return rec{}, fmt.Errorf("record version %d", h[0])
	}
	r := rec{typ: h[1], id: binary.BigEndian.Uint16(h[2:]), content: make([]byte, binary.BigEndian.Uint16(h[4:]))}
	if _, err := io.ReadFull(cl.br, r.content); err != nil {
		return r, err
	}
	_, err := cl.br.Discard(int(h[6]))
	return r, err
}

// response reads the records answering request id up to its END_REQUEST
// and returns its STDOUT and protocol status.
func (cl *client) response(id uint16) (stdout []byte, status byte, err error) {
	emptyStdout := false
	for {
		r, err := cl.read()
		if err != nil {
			return stdout, 0, err
		}
		if r.id != id {
			return stdout, 0, fmt.Errorf("record type %d for request %d while reading %d", r.typ, r.id, id)
		}
		switch r.typ {
		case typeStdout:
			if emptyStdout {
				return stdout, 0, errors.New("STDOUT after the empty STDOUT")
			}
			emptyStdout = len(r.content) == 0
			stdout = append(stdout, r.content...)
		case typeEndRequest:
			if len(r.content) != 8 {
				return stdout, 0, fmt.Errorf("END_REQUEST of %d bytes", len(r.content))
			}
			if r.content[4] == statusRequestComplete && !emptyStdout && len(stdout) > 0 {
				return stdout, 0, errors.New("END_REQUEST without the empty STDOUT")
			}
			return stdout, r.content[4], nil
		default:
			return stdout, 0, fmt.Errorf("unexpected record type %d", r.typ)
		}
	}
}

// cgiResponse is a parsed CGI response.
type cgiResponse struct {
	status int
	header http.Header
	body   string
}

func (cl *client) result(id uint16) cgiResponse {
	cl.t.Helper()
	out, status, err := cl.response(id)
	if err != nil {
		cl.t.Fatalf("request %d: %v (stdout %q)", id, err, out)
	}
	if status != statusRequestComplete {
		cl.t.Fatalf("request %d: protocol status %d", id, status)
	}
	return parseCGI(cl.t, out)
}

func parseCGI(t *testing.T, out []byte) cgiResponse {
	t.Helper()
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(out)))
	h, err := tr.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("bad CGI head in %q: %v", out, err)
	}
	code, err := strconv.Atoi(strings.Fields(h.Get("Status") + " x")[0])
	if err != nil {
		t.Fatalf("no Status in %q", out)
	}
	body, _ := io.ReadAll(tr.R)
	return cgiResponse{code, http.Header(h), string(body)}
}

// nginxVars is what nginx's fastcgi_params send for method and uri, with a
// client at 203.0.113.7:51234.
func nginxVars(method, uri string, extra ...[2]string) [][2]string {
	path, query, _ := strings.Cut(uri, "?")
	v := [][2]string{
		{"QUERY_STRING", query},
		{"REQUEST_METHOD", method},
		{"CONTENT_TYPE", ""},
		{"CONTENT_LENGTH", ""},
		{"SCRIPT_NAME", path},
		{"REQUEST_URI", uri},
		{"DOCUMENT_URI", path},
		{"DOCUMENT_ROOT", "/usr/share/nginx/html"},
		{"SERVER_PROTOCOL", "HTTP/1.1"},
		{"REQUEST_SCHEME", "http"},
		{"GATEWAY_INTERFACE", "CGI/1.1"},
		{"SERVER_SOFTWARE", "nginx/1.22.1"},
		{"REMOTE_ADDR", "203.0.113.7"},
		{"REMOTE_PORT", "51234"},
		{"REMOTE_USER", ""},
		{"SERVER_ADDR", "127.0.0.1"},
		{"SERVER_PORT", "8080"},
		{"SERVER_NAME", "example.org"},
		{"REDIRECT_STATUS", "200"},
		{"HTTP_HOST", "example.org"},
	}
	return append(v, extra...)
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

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// expectClosed checks that the server closes the connection, having sent
// nothing more than records of types allowed.
func (cl *client) expectClosed(what string, allowed ...uint8) {
	cl.t.Helper()
	for {
		r, err := cl.read()
		if err == io.EOF {
			return
		}
		if err != nil {
			cl.t.Errorf("%s: %v, want the connection closed", what, err)
			return
		}
		ok := false
		for _, a := range allowed {
			ok = ok || r.typ == a
		}
		if !ok {
			cl.t.Errorf("%s: got record type %d (%q), want the connection closed", what, r.typ, r.content)
			return
		}
	}
}

func TestParamsBecomeTheRequest(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	cl := dial(t, ts.Addr)
	cl.paramsChunk = 5 // pairs straddle records
	long := strings.Repeat("v", 300)
	cl.request(1, 0, nginxVars("GET", "/echo?a=1", [2]string{"HTTP_X_FORWARDED_FOR", "198.51.100.1"}, [2]string{"HTTP_X_LONG", long},
		[2]string{"HTTP_CONTENT_TYPE", "dup"}, [2]string{"HTTPS", "on"}, [2]string{"HTTP_USER_AGENT", "agent"}), nil)
	res := cl.result(1)
	if res.status != 200 || res.header.Get("Date") == "" || res.header.Get("Server") != edge.DefaultServerHeader {
		t.Fatalf("got %+v", res)
	}
	e := echo(t, res.body)
	if e.Method != "GET" || e.Target != "/echo?a=1" || e.Path != "/echo" || e.RawQuery != "a=1" || e.Proto != "HTTP/1.1" || e.ProtoMinor != 1 ||
		e.Host != "example.org" || e.RemoteAddr != "203.0.113.7" || e.RemotePort != "51234" || e.ServerName != "example.org" ||
		e.ServerPort != "8080" || e.Scheme != "https" {
		t.Errorf("request: %+v", e)
	}
	if got := header(e, "X-Forwarded-For"); len(got) != 1 || got[0] != "198.51.100.1" {
		t.Errorf("X-Forwarded-For %q", got)
	}
	if got := header(e, "X-Long"); len(got) != 1 || got[0] != long {
		t.Errorf("X-Long of %d bytes (a 4-byte length) came out as %d values", len(long), len(got))
	}
	if got := header(e, "Content-Type"); got != nil {
		t.Errorf("HTTP_CONTENT_TYPE became Content-Type %q; only CONTENT_TYPE should", got)
	}
	cl.expectClosed("without FCGI_KEEP_CONN")
	if n := len(ts.Access()); n != 1 {
		t.Errorf("%d access records, want 1", n)
	}
}

func TestBodies(t *testing.T) {
	ts := newTestServer(t, edge.Config{BodyMemoryLimit: 1000, TempDir: t.TempDir()})
	cl := dial(t, ts.Addr)
	id := uint16(0)
	for _, n := range []int{0, 5, 1001, 300000} {
		id++
		b := bytes.Repeat([]byte("0123456789abcdefg"), n/17+1)[:n]
		cl.request(id, flagKeepConn, nginxVars("POST", "/echo", [2]string{"CONTENT_LENGTH", strconv.Itoa(n)}), b)
		e := echo(t, cl.result(id).body)
		if e.BodyLen != int64(n) || e.BodySHA256 != sha(b) || e.Spilled != (n > 1000) || e.Spilled && !e.SpillExists {
			t.Errorf("body of %d: got %d bytes, spilled %v", n, e.BodyLen, e.Spilled)
		}
		if got := header(e, "Content-Length"); len(got) != 1 || got[0] != strconv.Itoa(n) {
			t.Errorf("body of %d: Content-Length %q", n, got)
		}
	}
	// nginx streams a chunked body (fastcgi_request_buffering off)
	// without CONTENT_LENGTH: the body is what STDIN brings.
	id++
	cl.request(id, flagKeepConn, nginxVars("POST", "/echo"), []byte("streamed"))
	if e := echo(t, cl.result(id).body); e.BodyLen != 8 || strings.Join(header(e, "Content-Length"), ",") != "8" {
		t.Errorf("body without CONTENT_LENGTH: %+v", e)
	}
	// A STDIN that disagrees with CONTENT_LENGTH is refused.
	id++
	cl.request(id, flagKeepConn, nginxVars("POST", "/echo", [2]string{"CONTENT_LENGTH", "9"}), []byte("streamed"))
	if res := cl.result(id); res.status != 400 {
		t.Errorf("STDIN shorter than CONTENT_LENGTH: %d %q", res.status, res.body)
	}
}

func TestResponses(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	cl := dial(t, ts.Addr)
	id := uint16(0)
	get := func(path string) cgiResponse {
		t.Helper()
		id++
		cl.request(id, flagKeepConn, nginxVars("GET", path), nil)
		return cl.result(id)
	}
	if r := get("/stream"); r.body != "abcd" || r.header.Get("Content-Length") != "" {
		t.Errorf("stream: %+v", r)
	}
	if r := get("/big"); len(r.body) != 250000 || r.body[49999:50001] != "ab" || r.body[249999] != 'e' {
		t.Errorf("big stream: %d bytes", len(r.body))
	}
	if r := get("/cl"); r.body != "hello" || r.header.Get("Content-Length") != "5" {
		t.Errorf("cl: %+v", r)
	}
	r := get("/hop")
	if r.status != 201 || r.body != "hop" || r.header.Get("X-Kept") != "yes" || r.header.Get("Server") != "app" || r.header.Get("Status") != "201 Created" {
		t.Errorf("hop: %+v", r)
	}
	for _, h := range []string{"Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade"} {
		if v := r.header.Get(h); v != "" {
			t.Errorf("hop-by-hop %s: %q kept", h, v)
		}
	}
	if r := get("/204"); r.status != 204 || r.body != "" || r.header.Get("Content-Length") != "" {
		t.Errorf("204: %+v", r)
	}
	if r := get("/nohead"); r.status != 500 || r.body != "Internal Server Error\n" {
		t.Errorf("no WriteHead: %+v", r)
	}
	if r := get("/panic"); r.status != 500 || !strings.Contains(ts.ErrorLog(), "boom") {
		t.Errorf("panic: %+v", r)
	}
	if r := get("/upgrade"); r.body != "upgrade error: yes" {
		t.Errorf("Upgrade: %+v", r)
	}
	if r := get("/file"); r.body != "23456789abcdef" || r.header.Get("Content-Length") != "14" {
		t.Errorf("SendFile: %+v", r)
	}
	// HEAD: the head only, with the GET's length when it is known.
	id++
	cl.request(id, flagKeepConn, nginxVars("HEAD", "/echo"), nil)
	if r := cl.result(id); r.body != "" || r.header.Get("Content-Length") == "" {
		t.Errorf("HEAD: %+v", r)
	}
	id++
	cl.request(id, flagKeepConn, nginxVars("HEAD", "/stream"), nil)
	if r := cl.result(id); r.body != "" || r.header.Get("Content-Length") != "" {
		t.Errorf("HEAD of a stream: %+v", r)
	}
}

func TestKeepConn(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	cl := dial(t, ts.Addr)
	for id := uint16(1); id <= 2; id++ {
		cl.request(id, flagKeepConn, nginxVars("GET", "/echo?n="+strconv.Itoa(int(id))), nil)
		if e := echo(t, cl.result(id).body); e.RawQuery != "n="+strconv.Itoa(int(id)) {
			t.Errorf("request %d: %+v", id, e)
		}
	}
	// The last request without FCGI_KEEP_CONN: closed after it.
	cl.request(1, 0, nginxVars("GET", "/echo"), nil)
	cl.result(1)
	cl.expectClosed("after a request without FCGI_KEEP_CONN")
}

func TestKeepConnIdleTimeout(t *testing.T) {
	ts := newTestServer(t, edge.Config{KeepAliveTimeout: 100 * time.Millisecond})
	cl := dial(t, ts.Addr)
	cl.request(1, flagKeepConn, nginxVars("GET", "/echo"), nil)
	cl.result(1)
	start := time.Now()
	cl.expectClosed("idle keep-conn connection")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("idle connection closed after %v, want about the keep-alive timeout", d)
	}
}

func TestManagementRecords(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	cl := dial(t, ts.Addr)
	cl.record(typeGetValues, 0, encodePairs([][2]string{{"FCGI_MAX_CONNS", ""}, {"FCGI_MPXS_CONNS", ""}, {"FCGI_UNHEARD_OF", ""}, {"FCGI_MAX_REQS", ""}}))
	r, err := cl.read()
	if err != nil || r.typ != typeGetValuesResult || r.id != 0 {
		t.Fatalf("GET_VALUES: %+v, %v", r, err)
	}
	got := map[string]string{}
	for p := r.content; len(p) > 0; {
		name, value, rest, complete, err := nextPair(p, maxContent)
		if err != nil || !complete {
			t.Fatalf("malformed GET_VALUES_RESULT %q", r.content)
		}
		got[string(name)] = string(value)
		p = rest
	}
	want := map[string]string{"FCGI_MAX_CONNS": strconv.Itoa(advertisedMaxConns), "FCGI_MAX_REQS": strconv.Itoa(advertisedMaxConns), "FCGI_MPXS_CONNS": "0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("GET_VALUES_RESULT %v, want %v", got, want)
	}

	cl.record(42, 0, []byte("??"))
	r, err = cl.read()
	if err != nil || r.typ != typeUnknownType || len(r.content) != 8 || r.content[0] != 42 {
		t.Errorf("unknown management record: %+v, %v", r, err)
	}

	// An AUTHORIZER is refused; its PARAMS and STDIN are ignored.
	cl.begin(3, 2, flagKeepConn)
	if _, status, err := cl.response(3); err != nil || status != statusUnknownRole {
		t.Errorf("AUTHORIZER: status %d, %v; want UNKNOWN_ROLE", status, err)
	}
	cl.params(3, nginxVars("GET", "/echo"))
	cl.stdin(3, nil)
	// The connection still serves.
	cl.request(4, flagKeepConn, nginxVars("GET", "/echo"), nil)
	cl.result(4)
	if n := len(ts.Access()); n != 1 {
		t.Errorf("%d requests served, want 1", n)
	}
}

func TestMultiplexingRefused(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	cl := dial(t, ts.Addr)
	cl.begin(1, roleResponder, flagKeepConn)
	cl.begin(2, roleResponder, flagKeepConn)
	if _, status, err := cl.response(2); err != nil || status != statusCantMpxConn {
		t.Fatalf("second request: status %d, %v; want CANT_MPX_CONN", status, err)
	}
	cl.params(2, nginxVars("GET", "/echo?two")) // ignored
	cl.params(1, nginxVars("GET", "/echo?one"))
	cl.stdin(2, nil)
	cl.stdin(1, nil)
	if e := echo(t, cl.result(1).body); e.RawQuery != "one" {
		t.Errorf("first request: %+v", e)
	}
}

func TestAbortRequest(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	cl := dial(t, ts.Addr)

	// Aborted while its body arrives: answered at once, never served.
	cl.begin(1, roleResponder, flagKeepConn)
	cl.params(1, nginxVars("POST", "/echo", [2]string{"CONTENT_LENGTH", "10"}))
	cl.record(typeStdin, 1, []byte("01234"))
	cl.record(typeAbortRequest, 1, nil)
	if out, status, err := cl.response(1); err != nil || status != statusRequestComplete || len(out) != 0 {
		t.Fatalf("abort before the body's end: %q, %d, %v", out, status, err)
	}
	if n := len(ts.Access()); n != 0 {
		t.Errorf("aborted request was served (%d access records)", n)
	}

	// Aborted while served: the Handler's ClientGone fires, END_REQUEST
	// follows, and the connection carries on.
	cl.request(2, flagKeepConn, nginxVars("GET", "/watch"), nil)
	<-ts.H.Entered
	cl.record(typeAbortRequest, 2, nil)
	select {
	case gone := <-ts.H.Gone:
		if !gone {
			t.Error("ClientGone did not fire on ABORT_REQUEST")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler never finished")
	}
	if out, status, err := cl.response(2); err != nil || status != statusRequestComplete {
		t.Fatalf("abort while serving: %q, %d, %v", out, status, err)
	}
	cl.request(3, flagKeepConn, nginxVars("GET", "/echo"), nil)
	if r := cl.result(3); r.status != 200 {
		t.Errorf("request after an abort: %+v", r)
	}
}

func TestClientGoneOnClose(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	cl := dial(t, ts.Addr)
	cl.request(1, flagKeepConn, nginxVars("GET", "/watch"), nil)
	<-ts.H.Entered
	cl.c.Close()
	select {
	case gone := <-ts.H.Gone:
		if !gone {
			t.Error("ClientGone did not fire when the web server closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler never finished")
	}
}

func TestBrokenResponsesEndWithoutEndRequest(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	for _, path := range []string{"/abort", "/clshort"} {
		cl := dial(t, ts.Addr)
		cl.request(1, flagKeepConn, nginxVars("GET", path), nil)
		cl.expectClosed(path, typeStdout)
	}
}

func TestRefusals(t *testing.T) {
	ts := newTestServer(t, edge.Config{LimitRequestBody: 100, LimitRequestFields: 3, LimitRequestFieldSize: 200})
	cases := []struct {
		name string
		vars [][2]string
		body []byte
		code int
	}{
		{"CONTENT_LENGTH over the limit", nginxVars("POST", "/echo", [2]string{"CONTENT_LENGTH", "101"}), make([]byte, 101), 413},
		{"STDIN over the limit", nginxVars("POST", "/echo"), make([]byte, 101), 413},
		{"variable over the limit", nginxVars("GET", "/echo", [2]string{"HTTP_X", strings.Repeat("x", 5000)}), nil, 431},
		{"header over the limit", nginxVars("GET", "/echo", [2]string{"HTTP_X", strings.Repeat("x", 300)}), nil, 431},
		{"too many headers", nginxVars("GET", "/echo", [2]string{"HTTP_A", "1"}, [2]string{"HTTP_B", "2"}, [2]string{"HTTP_C", "3"}), nil, 431},
		{"invalid CONTENT_LENGTH", nginxVars("POST", "/echo", [2]string{"CONTENT_LENGTH", "-1"}), nil, 400},
	}
	for _, c := range cases {
		cl := dial(t, ts.Addr)
		go cl.c.Write(requestBytes(1, flagKeepConn, c.vars, c.body)) // may be answered before it is read whole
		out, status, err := cl.response(1)
		if err != nil || status != statusRequestComplete {
			t.Errorf("%s: %q, %d, %v", c.name, out, status, err)
			continue
		}
		if r := parseCGI(t, out); r.status != c.code {
			t.Errorf("%s: status %d (%q), want %d", c.name, r.status, r.body, c.code)
		}
	}
	// Refused once all of it was read, a request leaves the connection usable.
	cl := dial(t, ts.Addr)
	cl.request(1, flagKeepConn, [][2]string{{"REQUEST_URI", "/echo"}}, nil)
	if r := cl.result(1); r.status != 400 {
		t.Errorf("no REQUEST_METHOD: %+v", r)
	}
	cl.request(2, flagKeepConn, nginxVars("GET", "/echo"), nil)
	cl.result(2)
}

func TestMalformedRecordsClose(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	raw := func(name string, b []byte) {
		cl := dial(t, ts.Addr)
		cl.c.Write(b)
		cl.expectClosed(name)
	}
	raw("version 2", []byte{2, typeBeginRequest, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	raw("short BEGIN_REQUEST", []byte{1, typeBeginRequest, 0, 1, 0, 2, 0, 0, 0, 1})
	raw("plain HTTP", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))

	cl := dial(t, ts.Addr)
	cl.begin(1, roleResponder, 0)
	cl.record(typeStdout, 1, []byte("the web server does not send this"))
	cl.expectClosed("STDOUT from the web server")

	cl = dial(t, ts.Addr)
	cl.begin(1, roleResponder, 0)
	cl.record(typeParams, 1, []byte{10, 10, 'a'})
	cl.record(typeParams, 1, nil)
	cl.expectClosed("PARAMS ending inside a pair")

	cl = dial(t, ts.Addr)
	cl.begin(1, roleResponder, 0)
	cl.record(typeStdin, 1, []byte("body before PARAMS"))
	cl.expectClosed("STDIN before PARAMS")
	if !strings.Contains(ts.ErrorLog(), "is this a FastCGI client?") {
		t.Errorf("protocol error not logged:\n%s", ts.ErrorLog())
	}
}

func TestHeaderTimeout(t *testing.T) {
	ts := newTestServer(t, edge.Config{ReadHeaderTimeout: 200 * time.Millisecond})
	cl := dial(t, ts.Addr)
	cl.begin(1, roleResponder, 0)
	cl.record(typeParams, 1, encodePairs(nginxVars("GET", "/echo"))) // never ended
	out, _, err := cl.response(1)
	if err != nil || parseCGI(t, out).status != 408 {
		t.Errorf("stalled PARAMS: %q, %v; want 408", out, err)
	}
}

func TestShutdownLetsARequestFinish(t *testing.T) {
	ts := newTestServer(t, edge.Config{})
	idle := dial(t, ts.Addr) // a keep-conn connection between requests
	idle.request(1, flagKeepConn, nginxVars("GET", "/echo"), nil)
	idle.result(1)

	cl := dial(t, ts.Addr)
	cl.request(1, flagKeepConn, nginxVars("GET", "/slow"), nil)
	<-ts.H.Entered
	shut := make(chan error, 1)
	go func() { shut <- ts.Srv.Shutdown(context.Background()) }()
	idle.expectClosed("idle keep-conn connection during Shutdown")
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := net.Dial("tcp", ts.Addr); err == nil {
		t.Error("listener still accepting during Shutdown")
	}
	close(ts.H.Release)
	if r := cl.result(1); r.body != "slow done" {
		t.Errorf("in-flight response: %+v", r)
	}
	cl.expectClosed("keep-conn connection after its request during Shutdown")
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
	cl := dial(t, ts.Addr)
	cl.request(1, 0, nginxVars("GET", "/slow"), nil)
	<-ts.H.Entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.Srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a stuck request: %v, want the context's error", err)
	}
	close(ts.H.Release)
}
