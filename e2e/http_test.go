package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHTTPKeepAlive: several requests on one connection, all answered on it.
func TestHTTPKeepAlive(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	c := dialRaw(t, s.Addr)
	br := bufio.NewReader(c)
	localPort := strings.Split(c.LocalAddr().String(), ":")[1]
	for i := 0; i < 4; i++ {
		fmt.Fprintf(c, "GET /environ?i=%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		resp, body := ReadResponse(t, br, "GET")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		if resp.Close {
			t.Fatalf("request %d: server wants to close a keep-alive connection", i)
		}
		var e environDump
		if err := jsonUnmarshal(body, &e); err != nil {
			t.Fatal(err)
		}
		if e.Str["QUERY_STRING"] != fmt.Sprintf("i=%d", i) {
			t.Errorf("request %d answered with QUERY_STRING %q", i, e.Str["QUERY_STRING"])
		}
		if e.Str["REMOTE_PORT"] != localPort {
			t.Errorf("request %d: REMOTE_PORT %q, want our port %s (same connection)", i, e.Str["REMOTE_PORT"], localPort)
		}
	}
}

// TestHTTPPipelining: three requests in one write, three responses in order.
func TestHTTPPipelining(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "2")
	c := dialRaw(t, s.Addr)
	raw := "GET /sleep?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /status?code=418 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\npipelined"
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	r1, b1 := ReadResponse(t, br, "GET")
	r2, b2 := ReadResponse(t, br, "GET")
	r3, b3 := ReadResponse(t, br, "POST")
	if r1.StatusCode != 200 || !strings.HasPrefix(b1, "slept 200 ms") {
		t.Errorf("response 1: %d %q", r1.StatusCode, b1)
	}
	if r2.StatusCode != 418 || b2 != "status 418" {
		t.Errorf("response 2: %d %q", r2.StatusCode, b2)
	}
	if r3.StatusCode != 200 || !strings.Contains(b3, `"data": "pipelined"`) {
		t.Errorf("response 3: %d %q", r3.StatusCode, b3)
	}
}

// TestHTTPInformationalStatusFromApp: an app that answers with a 1xx status
// gets 500. Sent as it was, the client would take it as interim, wait on,
// and take the next pipelined request's response for this one's.
func TestHTTPInformationalStatusFromApp(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	c := dialRaw(t, s.Addr)
	raw := "GET /status?code=103 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /status?code=418 HTTP/1.1\r\nHost: x\r\n\r\n"
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	r1, _ := ReadResponse(t, br, "GET")
	r2, b2 := ReadResponse(t, br, "GET")
	if r1.StatusCode != 500 {
		t.Errorf("response 1: status %d, want 500 for an app's 103", r1.StatusCode)
	}
	if r2.StatusCode != 418 || b2 != "status 418" {
		t.Errorf("response 2: %d %q, want 418", r2.StatusCode, b2)
	}
}

// TestHTTPRefusedStreamStopsApp: when Go refuses a streamed response's
// head (an invalid header), the client gets 500 and the app is stopped, so
// the only worker is free again at once rather than streaming on for a
// minute to nobody.
func TestHTTPRefusedStreamStopsApp(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	out := s.Raw(t, "GET /bad-header-stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 500") {
		t.Fatalf("invalid header on a stream answered %q, want 500", out)
	}
	out = s.Raw(t, "GET /status?code=418 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 418") {
		t.Fatalf("next request answered %q, want 418 from the freed worker", out)
	}
	if !s.WaitLog("invalid response from the app", 5*time.Second) {
		t.Errorf("the refusal is not logged:\n%s", s.Stderr())
	}
}

// TestHTTPBodyNotItsContentLength: a body longer than the app's
// Content-Length is cut at it, one shorter ends with the connection closed
// so the client can tell; either way the client gets the bytes that fit,
// and the log says what the app did.
func TestHTTPBodyNotItsContentLength(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	for path, logged := range map[string]string{
		"/overlong":  "longer than its Content-Length",
		"/underlong": "the response ended after 3 of the 10 bytes its Content-Length announced",
	} {
		out := s.Raw(t, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second)
		if !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.HasSuffix(out, "\r\n\r\nabc") {
			t.Errorf("%s answered %q, want 200 with 3 bytes, then the connection closed", path, out)
		}
		if !s.WaitLog(logged, 5*time.Second) {
			t.Errorf("%s: no %q in the log:\n%s", path, logged, s.Stderr())
		}
	}
}

// TestHTTPChunkedRequest: a chunked body is decoded before the app sees it.
func TestHTTPChunkedRequest(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	raw := "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n" +
		"5\r\nhello\r\n" + "7;ext=1\r\n, world\r\n" + "1\r\n!\r\n" + "0\r\nX-Trailer: t\r\n\r\n"
	resp, body := rawResponse(t, s, raw, "POST")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %q", resp.StatusCode, body)
	}
	var e struct {
		Len              int     `json:"len"`
		Data             string  `json:"data"`
		ContentLength    *string `json:"content_length"`
		ContentType      *string `json:"content_type"`
		TransferEncoding *string `json:"transfer_encoding"`
	}
	if err := jsonUnmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	if e.Data != "hello, world!" || e.Len != 13 {
		t.Errorf("app read %q (%d bytes), want 'hello, world!'", e.Data, e.Len)
	}
	if e.ContentLength == nil || *e.ContentLength != "13" {
		t.Errorf("CONTENT_LENGTH %v, want 13", e.ContentLength)
	}
	if e.TransferEncoding != nil {
		t.Errorf("app saw HTTP_TRANSFER_ENCODING %q", *e.TransferEncoding)
	}
	if e.ContentType == nil || *e.ContentType != "text/plain" {
		t.Errorf("CONTENT_TYPE %v", e.ContentType)
	}
}

// TestHTTPChunkedResponse: a streamed response without Content-Length is
// sent chunked to an HTTP/1.1 client.
func TestHTTPChunkedResponse(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	out := s.Raw(t, "GET /stream?chunks=3&size=4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	head, body, ok := strings.Cut(out, "\r\n\r\n")
	if !ok {
		t.Fatalf("no complete head: %q", out)
	}
	if !strings.Contains(strings.ToLower(head), "transfer-encoding: chunked") {
		t.Errorf("no chunked framing:\n%s", head)
	}
	if strings.Contains(strings.ToLower(head), "content-length") {
		t.Errorf("Content-Length on a streamed response:\n%s", head)
	}
	if body != "4\r\n0000\r\n4\r\n1111\r\n4\r\n2222\r\n0\r\n\r\n" {
		t.Errorf("chunked body %q", body)
	}
	// The same through a real client.
	resp, b := httpDo(t, "GET", s.URL+"/stream?chunks=5&size=1000", nil, nil)
	if len(b) != 5000 || !strings.HasPrefix(b, "000") || !strings.HasSuffix(b, "444") {
		t.Errorf("client got %d bytes", len(b))
	}
	if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("TransferEncoding %v", resp.TransferEncoding)
	}
}

// TestHTTPContentLength: a one-element list gets a Content-Length, even when
// the app did not set one.
func TestHTTPContentLength(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	for _, path := range []string{"/nocl", "/pid"} {
		out := s.Raw(t, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
		head, body, _ := strings.Cut(out, "\r\n\r\n")
		want := fmt.Sprintf("content-length: %d\r\n", len(body))
		if !strings.Contains(strings.ToLower(head)+"\r\n", want) {
			t.Errorf("%s: head lacks %q:\n%s", path, want, head)
		}
		if strings.Contains(strings.ToLower(head), "transfer-encoding") {
			t.Errorf("%s: chunked framing on a one-element list:\n%s", path, head)
		}
		if strings.Count(strings.ToLower(head), "content-length") != 1 {
			t.Errorf("%s: Content-Length not exactly once:\n%s", path, head)
		}
	}
}

// TestHTTPExpectContinue: the client gets 100 Continue, then the response.
func TestHTTPExpectContinue(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	c := dialRaw(t, s.Addr)
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("no interim response before sending the body: %v", err)
	}
	if line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("first line %q, want 100 Continue", line)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("100 Continue not followed by a blank line: %q", blank)
	}
	io.WriteString(c, "continue")
	resp, body := ReadResponse(t, br, "POST")
	if resp.StatusCode != 200 || !strings.Contains(body, `"data": "continue"`) {
		t.Errorf("final response %d %q", resp.StatusCode, body)
	}
	// Through Go's client as well (which waits for the 100).
	req, _ := http.NewRequest("POST", s.URL+"/echo", strings.NewReader("via-client"))
	req.Header.Set("Expect", "100-continue")
	cl := timeoutClient(testTimeout)
	cl.Transport.(*http.Transport).ExpectContinueTimeout = 5 * time.Second
	resp2, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if !strings.Contains(string(b), `"data": "via-client"`) {
		t.Errorf("client with Expect: %q", b)
	}
}

// TestHTTPHead: HEAD gets the head only; the next pipelined response
// follows it directly.
func TestHTTPHead(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	for _, path := range []string{"/status?code=200", "/stream?chunks=3&size=10", "/write"} {
		c := dialRaw(t, s.Addr)
		fmt.Fprintf(c, "HEAD %s HTTP/1.1\r\nHost: x\r\n\r\nGET /status?code=201 HTTP/1.1\r\nHost: x\r\n\r\n", path)
		br := bufio.NewReader(c)
		r1, b1 := ReadResponse(t, br, "HEAD")
		if r1.StatusCode != 200 || b1 != "" {
			t.Errorf("HEAD %s: %d %q", path, r1.StatusCode, b1)
		}
		r2, b2 := ReadResponse(t, br, "GET")
		if r2.StatusCode != 201 || b2 != "status 201" {
			t.Errorf("after HEAD %s, next response is %d %q (HEAD leaked a body?)", path, r2.StatusCode, b2)
		}
	}
	// A HEAD with a Content-Length from the app keeps it.
	resp, body := httpDo(t, "HEAD", s.URL+"/status?code=200", nil, nil)
	if body != "" || resp.ContentLength != int64(len("status 200")) {
		t.Errorf("HEAD: body %q, Content-Length %d", body, resp.ContentLength)
	}
}

// TestHTTP10: an HTTP/1.0 client gets its response, then the connection closes.
func TestHTTP10(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	for _, path := range []string{"/status?code=200", "/stream?chunks=3&size=3"} {
		start := time.Now()
		out := s.Raw(t, "GET "+path+" HTTP/1.0\r\n\r\n", 5*time.Second)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: connection not closed after an HTTP/1.0 response (%v)", path, d)
		}
		if !strings.HasPrefix(out, "HTTP/1.") {
			t.Fatalf("%s: %q", path, out)
		}
		head, body, _ := strings.Cut(out, "\r\n\r\n")
		if strings.Contains(strings.ToLower(head), "chunked") {
			t.Errorf("%s: chunked encoding sent to an HTTP/1.0 client:\n%s", path, head)
		}
		want := "status 200"
		if strings.HasPrefix(path, "/stream") {
			want = "000111222"
		}
		if body != want {
			t.Errorf("%s: body %q, want %q", path, body, want)
		}
	}
	// HTTP/1.0 with keep-alive asked for explicitly keeps the connection.
	c := dialRaw(t, s.Addr)
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		io.WriteString(c, "GET /pid HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, _ := ReadResponse(t, br, "GET")
		if resp.StatusCode != 200 {
			t.Fatalf("HTTP/1.0 keep-alive request %d: %d", i, resp.StatusCode)
		}
	}
}

// TestHTTPConnectionClose: Connection: close is honored.
func TestHTTPConnectionClose(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	c := dialRaw(t, s.Addr)
	io.WriteString(c, "GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	resp, _ := ReadResponse(t, br, "GET")
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("status %d, Connection header %q", resp.StatusCode, resp.Header.Get("Connection"))
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := br.ReadByte(); err != io.EOF {
		t.Errorf("connection still open after Connection: close (read %v, %v)", n, err)
	}
}

// TestHTTPDateServer: every response has Date and Server: taipan.
func TestHTTPDateServer(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	for _, path := range []string{"/pid", "/stream", "/status?code=404", "/raise"} {
		resp, _ := httpDo(t, "GET", s.URL+path, nil, nil)
		if got := resp.Header.Get("Server"); got != "taipan" {
			t.Errorf("%s: Server %q", path, got)
		}
		d, err := http.ParseTime(resp.Header.Get("Date"))
		if err != nil || time.Since(d).Abs() > time.Minute {
			t.Errorf("%s: Date %q (%v)", path, resp.Header.Get("Date"), err)
		}
	}
	// Also on an error the edge makes itself.
	out := s.Raw(t, "BROKEN\r\n\r\n", 5*time.Second)
	if !strings.Contains(out, "\r\nServer: taipan\r\n") || !strings.Contains(out, "\r\nDate: ") {
		t.Errorf("400 from the edge lacks Date/Server:\n%s", out)
	}
}

func appCounter(t testing.TB, s *Server) int {
	t.Helper()
	code, body := httpGet(t, s, "/counter")
	if code != 200 {
		t.Fatalf("/counter: %d", code)
	}
	n, _ := strconv.Atoi(body)
	return n
}

// TestHTTPLimits: oversized and malformed requests are refused by the edge
// and never reach the app.
func TestHTTPLimits(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1", "--limit-request-line", "200", "--limit-request-fields", "10",
		"--limit-request-field_size", "300", "--limit-request-body", "1k", "--access-logfile", "-")
	before := appCounter(t, s)
	long := strings.Repeat("a", 250)
	cases := []struct {
		name string
		raw  string
		want int
	}{
		{"long-request-line", "GET /" + long + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"too-many-headers", "GET /pid HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: 1\r\n", 15) + "\r\n", 431},
		{"long-header", "GET /pid HTTP/1.1\r\nHost: x\r\nX-Long: " + strings.Repeat("b", 400) + "\r\n\r\n", 431},
		{"body-too-large-cl", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + strings.Repeat("c", 2000), 413},
		{"body-too-large-chunked", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"400\r\n" + strings.Repeat("d", 1024) + "\r\n10\r\n" + strings.Repeat("e", 16) + "\r\n0\r\n\r\n", 413},
		{"garbage", "THIS IS NOT HTTP\r\n\r\n", 400},
		{"bad-version", "GET /pid HTTP/9.9x\r\nHost: x\r\n\r\n", 400},
		{"cl-and-te", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400},
		{"two-different-cl", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400},
		{"bad-cl", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400},
		{"bad-chunk-size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400},
		{"space-before-colon", "GET /pid HTTP/1.1\r\nHost: x\r\nX-Bad : 1\r\n\r\n", 400},
		{"http11-without-host", "GET /pid HTTP/1.1\r\n\r\n", 400},
	}
	for _, c := range cases {
		code, out := statusOfRaw(t, s, c.raw)
		if code != c.want {
			t.Errorf("%s: status %d, want %d; response %q", c.name, code, c.want, statusLine(out))
		}
	}
	after := appCounter(t, s)
	if after != before {
		t.Errorf("the app saw %d of the refused requests", after-before)
	}
	// The access log records the refusals too, and none reached the app
	// (the app would have answered 200 for /pid and /echo).
	if !pollUntil(3*time.Second, func() bool {
		return strings.Contains(s.Stdout(), `"POST /echo HTTP/1.1" 413 `) && strings.Contains(s.Stdout(), `"GET /pid HTTP/1.1" 431 `)
	}) {
		t.Errorf("access log lacks the 431/413 lines:\n%s", s.Stdout())
	}
	if strings.Contains(s.Stdout(), `"POST /echo HTTP/1.1" 200`) {
		t.Errorf("a refused POST /echo was answered by the app:\n%s", s.Stdout())
	}
	// Right at the limits, requests pass.
	code, _ := statusOfRaw(t, s, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n"+strings.Repeat("c", 1024))
	if code != 200 {
		t.Errorf("a body of exactly --limit-request-body: %d", code)
	}
}

// TestHTTPDefaultLimits checks the documented defaults (4094-byte line,
// 100 fields, 8190-byte field).
func TestHTTPDefaultLimits(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	if code, out := statusOfRaw(t, s, "GET /"+strings.Repeat("a", 5000)+" HTTP/1.1\r\nHost: x\r\n\r\n"); code != 414 {
		t.Errorf("5000-byte request line: %d %q", code, statusLine(out))
	}
	if code, out := statusOfRaw(t, s, "GET /pid HTTP/1.1\r\nHost: x\r\n"+strings.Repeat("X-A: 1\r\n", 120)+"\r\n"); code != 431 {
		t.Errorf("120 header fields: %d %q", code, statusLine(out))
	}
	if code, out := statusOfRaw(t, s, "GET /pid HTTP/1.1\r\nHost: x\r\nX-L: "+strings.Repeat("b", 9000)+"\r\n\r\n"); code != 431 {
		t.Errorf("9000-byte header: %d %q", code, statusLine(out))
	}
	if code, out := statusOfRaw(t, s, "GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"+strings.Repeat("X-A: 1\r\n", 50)+"\r\n"); code != 200 {
		t.Errorf("50 header fields: %d %q", code, statusLine(out))
	}
}

func statusLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

// TestHTTPLargeBodySpill: a body above --body-memory-limit (spilled to a
// temporary file) reaches the app intact, with Content-Length or chunked.
func TestHTTPLargeBodySpill(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	s := startTestApp(t, "-w", "1", "--body-memory-limit", "64k", "--tmp-dir", tmp)
	body := make([]byte, 3<<20+17)
	rand.Read(body)
	sum := sha256.Sum256(body)
	want := hex.EncodeToString(sum[:])
	var got struct {
		Len           int    `json:"len"`
		Sha           string `json:"sha256"`
		ContentLength string `json:"content_length"`
	}
	for _, method := range []string{"read", "readn", "readcl"} {
		resp, b := httpDo(t, "POST", s.URL+"/echo?format=sha&n=65536&method="+method, bytes.NewReader(body), nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d %q", method, resp.StatusCode, b)
		}
		if err := jsonUnmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.Len != len(body) || got.Sha != want || got.ContentLength != strconv.Itoa(len(body)) {
			t.Errorf("%s: app got %d bytes sha %s CONTENT_LENGTH %s; want %d, %s", method, got.Len, got.Sha, got.ContentLength, len(body), want)
		}
	}
	// Chunked upload (the client does not know the length).
	pr, pw := io.Pipe()
	go func() {
		for off := 0; off < len(body); off += 100000 {
			end := min(off+100000, len(body))
			pw.Write(body[off:end])
		}
		pw.Close()
	}()
	resp, b := httpDo(t, "POST", s.URL+"/echo?format=sha", pr, nil)
	if err := jsonUnmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || got.Sha != want || got.ContentLength != strconv.Itoa(len(body)) {
		t.Errorf("chunked: %d, sha %s, CONTENT_LENGTH %s", resp.StatusCode, got.Sha, got.ContentLength)
	}
	// The spill files are gone once the responses are finished.
	if !pollUntil(3*time.Second, func() bool { entries, _ := os.ReadDir(tmp); return len(entries) == 0 }) {
		entries, _ := os.ReadDir(tmp)
		t.Errorf("temporary body files left in --tmp-dir: %v", entries)
	}
}

// TestHTTPSlowUpload: a client trickling a body does not hold the only worker.
func TestHTTPSlowUpload(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	c := dialRaw(t, s.Addr)
	payload := "trickled-body-0123456789"
	fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(payload))
	done := make(chan error, 1)
	go func() {
		for i := 0; i < len(payload); i++ {
			if _, err := c.Write([]byte{payload[i]}); err != nil {
				done <- err
				return
			}
			time.Sleep(120 * time.Millisecond) // ~3 s in all
		}
		done <- nil
	}()
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 3; i++ {
		if code, _ := httpGet(t, s, "/pid"); code != 200 {
			t.Errorf("request during a slow upload: %d", code)
		}
	}
	// The requests were answered while the upload still trickled in: it
	// holds no worker until its body is whole.
	select {
	case <-done:
		t.Errorf("the requests were answered only after the slow upload was sent (the upload holds the worker?)")
	default:
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	resp, body := ReadResponse(t, bufio.NewReader(c), "POST")
	if resp.StatusCode != 200 || !strings.Contains(body, `"data": "`+payload+`"`) {
		t.Errorf("slow upload answered %d %q", resp.StatusCode, body)
	}
}

// TestHTTPBodiesIntactUnderLoad: request bodies up to 64 KiB are read into
// buffers that the edge reuses from one request to the next, across
// connections. Concurrent uploads of distinct bodies over keep-alive
// connections, while other clients send bodies and hang up without waiting
// for the answer, must each reach the app exactly as sent.
func TestHTTPBodiesIntactUnderLoad(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "2")
	addr := strings.TrimPrefix(s.URL, "http://")
	const uploaders, each, leavers = 12, 12, 4
	errs := make(chan error, uploaders*each+leavers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range leavers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := bytes.Repeat([]byte{'L'}, 60000)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					errs <- err
					return
				}
				fmt.Fprintf(c, "POST /echo?format=sha HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))
				c.Write(body)
				c.Close()
			}
		}()
	}
	var up sync.WaitGroup
	for i := range uploaders {
		up.Add(1)
		go func() {
			defer up.Done()
			client := timeoutClient(testTimeout)
			defer client.CloseIdleConnections()
			for j := range each {
				n := 1 + (i*7919+j*104729)%(64<<10)
				body := make([]byte, n)
				rand.Read(body)
				sum := sha256.Sum256(body)
				resp, err := client.Post(s.URL+"/echo?format=sha&method=read", "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var got struct {
					Len int    `json:"len"`
					Sha string `json:"sha256"`
				}
				if err := jsonUnmarshal(string(b), &got); err != nil || resp.StatusCode != 200 {
					errs <- fmt.Errorf("upload %d/%d: %d %q", i, j, resp.StatusCode, b)
					continue
				}
				if got.Len != n || got.Sha != hex.EncodeToString(sum[:]) {
					errs <- fmt.Errorf("upload %d/%d: the app got %d bytes with sha %s, sent %d", i, j, got.Len, got.Sha, n)
				}
			}
		}()
	}
	up.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
