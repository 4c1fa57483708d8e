package edge

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"taipan/internal/acceptor"
	"taipan/internal/logging"
)

// testServer runs a Server with the test handler on a loopback port.
type testServer struct {
	t    *testing.T
	srv  *Server
	addr string
	log  *bytes.Buffer

	mu        sync.Mutex
	spillPath string
	release   chan struct{} // /slow waits on it
	entered   chan struct{} // /slow signals it
	gone      chan bool     // /watch reports whether ClientGone fired
}

func newTestServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	ts := &testServer{t: t, log: new(bytes.Buffer), release: make(chan struct{}), entered: make(chan struct{}, 4), gone: make(chan bool, 4)}
	ts.srv = NewServer(cfg, HandlerFunc(ts.serve), logging.New(syncWriter{w: ts.log}, logging.Debug))
	ln, err := ts.srv.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- ts.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

type syncWriter struct{ w io.Writer }

var logMu sync.Mutex

func (s syncWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return s.w.Write(p)
}

func text(code int, status string) *ResponseHead {
	return &ResponseHead{Code: code, Status: status, Header: []HeaderField{{"Content-Type", "text/plain"}}}
}

func (ts *testServer) serve(w ResponseWriter, r *Request) {
	switch r.Path {
	case "/watch":
		// Streams a head, then waits for the client to leave or 300 ms.
		w.WriteHead(text(200, "200 OK"), []byte("head;"), false)
		select {
		case <-w.ClientGone():
			ts.gone <- true
		case <-time.After(300 * time.Millisecond):
			w.Write([]byte("tail;"))
			ts.gone <- false
		}
	case "/stream":
		w.WriteHead(text(200, "200 OK"), []byte("a"), false)
		w.Write([]byte("b"))
		w.Write(nil)
		w.Write([]byte("cd"))
	case "/204":
		w.WriteHead(&ResponseHead{Code: 204, Status: "204 No Content"}, nil, true)
	case "/cl":
		h := text(200, "200 OK")
		h.Header = append(h.Header, HeaderField{"Content-Length", "5"})
		w.WriteHead(h, []byte("he"), false)
		w.Write([]byte("llo"))
	case "/clshort":
		h := text(200, "200 OK")
		h.Header = append(h.Header, HeaderField{"Content-Length", "10"})
		w.WriteHead(h, []byte("hello"), false)
	case "/cllong":
		h := text(200, "200 OK")
		h.Header = append(h.Header, HeaderField{"Content-Length", "3"})
		w.WriteHead(h, []byte("hello"), true)
	case "/nohead":
	case "/panic":
		panic("boom")
	case "/close":
		h := text(200, "200 OK")
		h.Header = append(h.Header, HeaderField{"Connection", "close"}, HeaderField{"Keep-Alive", "x"}, HeaderField{"Transfer-Encoding", "gzip"})
		w.WriteHead(h, []byte("bye"), true)
	case "/spill":
		path := r.Body.FilePath()
		ts.mu.Lock()
		ts.spillPath = path
		ts.mu.Unlock()
		_, statErr := os.Stat(path)
		n, _ := io.Copy(io.Discard, r.Body.Reader())
		w.WriteHead(text(200, "200 OK"), fmt.Appendf(nil, "path=%v exists=%v len=%d read=%d", path != "", statErr == nil, r.Body.Len(), n), true)
	case "/slow":
		ts.entered <- struct{}{}
		<-ts.release
		w.WriteHead(text(200, "200 OK"), []byte("slow done"), true)
	case "/sendfile":
		f, err := os.CreateTemp(ts.t.TempDir(), "sf")
		if err != nil {
			panic(err)
		}
		f.WriteString("0123456789")
		defer f.Close()
		h := text(200, "200 OK")
		if r.RawQuery == "cl" {
			h.Header = append(h.Header, HeaderField{"Content-Length", "4"})
		}
		w.WriteHead(h, nil, false)
		if err := w.SendFile(f, 3, 4); err != nil {
			panic(err)
		}
	default:
		var b []byte
		if mb, ok := r.Body.Bytes(); ok {
			b = mb
		}
		body := fmt.Sprintf("method=%s path=%s query=%s host=%s proto=%s body=%s", r.Method, r.Path, r.RawQuery, r.Host, r.Proto, b)
		w.WriteHead(text(200, "200 OK"), []byte(body), true)
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// readResp reads one response and its body.
func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	resp.Body.Close()
	return resp, string(b)
}

// expectClosed checks that the server closes the connection next.
func expectClosed(t *testing.T, br *bufio.Reader) {
	t.Helper()
	if b, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed: read %q, %v", b, err)
	}
}

func TestMalformedRequests(t *testing.T) {
	ts := newTestServer(t, Config{LimitRequestBody: 100})
	long := strings.Repeat("a", 5000)
	manyHeaders := strings.Repeat("X-A: b\r\n", 101)
	cases := []struct {
		name string
		req  string
		code int
	}{
		{"cl+te", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"te+cl", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  c\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
		{"no colon", "GET / HTTP/1.1\r\nHost: x\r\nfoo\r\n\r\n", 400},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad cl", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400},
		{"bad cl hex", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\nabc", 400},
		{"conflicting cl", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"conflicting cl list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd", 400},
		{"cl overflow", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400},
		{"long request line", "GET /" + long + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"too many headers", "GET / HTTP/1.1\r\nHost: x\r\n" + manyHeaders + "\r\n", 431},
		{"header too long", "GET / HTTP/1.1\r\nHost: x\r\nX-A: " + long + long + "\r\n\r\n", 431},
		{"body too large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", 413},
		{"chunked too large", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" + strings.Repeat("x", 101) + "\r\n0\r\n\r\n", 413},
		{"http/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"http/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505},
		{"garbage version", "GET / FOO\r\nHost: x\r\n\r\n", 400},
		{"lowercase version", "GET / http/1.1\r\nHost: x\r\n\r\n", 400},
		{"garbage", "hello\r\n\r\n", 400},
		{"double space", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"tab separator", "GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"bad method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"relative target", "GET foo HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"asterisk not options", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"high byte target", "GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"ctl in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400},
		{"nul in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400},
		{"bare cr in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400},
		{"unknown te", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"gzip, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"chunked not final", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
		{"te in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"expect other", "POST / HTTP/1.1\r\nHost: x\r\nExpect: something\r\nContent-Length: 1\r\n\r\nx", 417},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n", 400},
		{"chunk bare lf", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 400},
		{"chunk missing crlf", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, ts.addr)
			go io.WriteString(c, tc.req) // the server may answer before reading it all
			br := bufio.NewReader(c)
			resp, body := readResp(t, br, "GET")
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tc.code)
			}
			if !resp.Close {
				t.Errorf("missing Connection: close")
			}
			expectClosed(t, br)
		})
	}
}

// TestSplitReads feeds requests one byte per write to exercise the parser
// across partial reads.
func TestSplitReads(t *testing.T) {
	ts := newTestServer(t, Config{})
	cases := []struct {
		req  string
		code int
		body string
	}{
		{"GET /a?b=c HTTP/1.1\r\nHost: h\r\nX-Long: " + strings.Repeat("v", 5000) + "\r\nConnection: close\r\n\r\n", 200, "method=GET path=/a query=b=c host=h proto=HTTP/1.1 body="},
		{"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-T: y\r\n\r\n", 200, "method=POST path=/p query= host=h proto=HTTP/1.1 body=abc"},
		{"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  c\r\n\r\n", 400, ""},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, ""},
	}
	for i, tc := range cases {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			c := dial(t, ts.addr)
			c.(*net.TCPConn).SetNoDelay(true)
			go func() {
				for j := 0; j < len(tc.req); j++ {
					if _, err := c.Write([]byte{tc.req[j]}); err != nil {
						return
					}
				}
			}()
			br := bufio.NewReader(c)
			resp, body := readResp(t, br, "GET")
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tc.code)
			}
			if tc.body != "" && body != tc.body {
				t.Fatalf("body %q, want %q", body, tc.body)
			}
		})
	}
}

func TestChunkedRequest(t *testing.T) {
	ts := newTestServer(t, Config{})
	c := dial(t, ts.addr)
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"5;name=value;x=\"q\"\r\nhello\r\nA  ;ext\r\n, world!!!\r\n0\r\nX-Trailer: yes\r\nHost: evil\r\n\r\n"+
		"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
	br := bufio.NewReader(c)
	resp, body := readResp(t, br, "POST")
	if want := "method=POST path=/up query= host=h proto=HTTP/1.1 body=hello, world!!!"; resp.StatusCode != 200 || body != want {
		t.Fatalf("got %d %q, want %q", resp.StatusCode, body, want)
	}
	_, body = readResp(t, br, "GET")
	if !strings.Contains(body, "path=/next") {
		t.Fatalf("second response %q", body)
	}
}

func TestExpectContinue(t *testing.T) {
	ts := newTestServer(t, Config{LimitRequestBody: 10})
	c := dial(t, ts.addr)
	io.WriteString(c, "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("got %q, %v", line, err)
	}
	if line, _ = br.ReadString('\n'); line != "\r\n" {
		t.Fatalf("got %q after 100", line)
	}
	io.WriteString(c, "body")
	resp, body := readResp(t, br, "POST")
	if resp.StatusCode != 200 || !strings.HasSuffix(body, "body=body") {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}

	// Too large: 413 at once, no 100.
	c2 := dial(t, ts.addr)
	io.WriteString(c2, "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n")
	br2 := bufio.NewReader(c2)
	resp, _ = readResp(t, br2, "POST")
	if resp.StatusCode != 413 {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}

func TestKeepAlive(t *testing.T) {
	ts := newTestServer(t, Config{})
	c := dial(t, ts.addr)
	br := bufio.NewReader(c)
	for i := range 5 {
		fmt.Fprintf(c, "POST /k%d HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi", i)
		resp, body := readResp(t, br, "POST")
		if resp.StatusCode != 200 || resp.Close || !strings.Contains(body, fmt.Sprintf("path=/k%d", i)) || !strings.HasSuffix(body, "body=hi") {
			t.Fatalf("request %d: %d close=%v %q", i, resp.StatusCode, resp.Close, body)
		}
		if resp.Header.Get("Date") == "" || resp.Header.Get("Server") != "taipan" {
			t.Fatalf("missing Date/Server: %v", resp.Header)
		}
	}
	io.WriteString(c, "GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, _ := readResp(t, br, "GET")
	if !resp.Close {
		t.Fatal("want Connection: close")
	}
	expectClosed(t, br)
}

func TestPipelining(t *testing.T) {
	ts := newTestServer(t, Config{})
	c := dial(t, ts.addr)
	io.WriteString(c, "\r\nGET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nxGET /3 HTTP/1.1\nHost: h\n\n")
	br := bufio.NewReader(c)
	for i := 1; i <= 3; i++ {
		_, body := readResp(t, br, "GET")
		if !strings.Contains(body, fmt.Sprintf("path=/%d ", i)) {
			t.Fatalf("response %d: %q", i, body)
		}
	}
}

func TestHTTP10(t *testing.T) {
	ts := newTestServer(t, Config{})
	// Plain 1.0: close after the response.
	c := dial(t, ts.addr)
	io.WriteString(c, "GET /a HTTP/1.0\r\n\r\n")
	br := bufio.NewReader(c)
	resp, body := readResp(t, br, "GET")
	if resp.StatusCode != 200 || !strings.Contains(body, "proto=HTTP/1.0") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	expectClosed(t, br)

	// Keep-alive 1.0 with a known length.
	c = dial(t, ts.addr)
	br = bufio.NewReader(c)
	for range 2 {
		io.WriteString(c, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, _ = readResp(t, br, "GET")
		if resp.Header.Get("Connection") != "keep-alive" {
			t.Fatalf("Connection %q", resp.Header.Get("Connection"))
		}
	}
	// Streaming to 1.0: close-delimited even with keep-alive.
	io.WriteString(c, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	resp, body = readResp(t, br, "GET")
	if body != "abcd" || len(resp.TransferEncoding) != 0 || resp.ContentLength != -1 {
		t.Fatalf("body %q te %v cl %d", body, resp.TransferEncoding, resp.ContentLength)
	}
	expectClosed(t, br)
}

// rawResponse sends req on a fresh connection and returns everything the
// server sends until it closes.
func rawResponse(t *testing.T, addr, req string) string {
	t.Helper()
	c := dial(t, addr)
	io.WriteString(c, req)
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestResponseFraming(t *testing.T) {
	ts := newTestServer(t, Config{})
	get := func(path, method string) string {
		return rawResponse(t, ts.addr, method+" "+path+" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	}
	cases := []struct {
		name, path, method string
		contains           []string
		absent             []string
		suffix             string
	}{
		{"complete", "/x", "GET", []string{"HTTP/1.1 200 OK\r\n", "Content-Length: 53\r\n", "Connection: close\r\n"}, []string{"Transfer-Encoding"}, "body="},
		{"head", "/x", "HEAD", []string{"Content-Length: 54\r\n"}, []string{"method="}, "\r\n\r\n"},
		{"stream", "/stream", "GET", []string{"Transfer-Encoding: chunked\r\n"}, []string{"Content-Length"}, "\r\n\r\n1\r\na\r\n1\r\nb\r\n2\r\ncd\r\n0\r\n\r\n"},
		{"204", "/204", "GET", []string{"HTTP/1.1 204 No Content\r\n"}, []string{"Content-Length", "Transfer-Encoding"}, "\r\n\r\n"},
		{"handler cl", "/cl", "GET", []string{"Content-Length: 5\r\n"}, []string{"Transfer-Encoding"}, "\r\n\r\nhello"},
		{"handler cl too long", "/cllong", "GET", []string{"Content-Length: 3\r\n"}, nil, "\r\n\r\nhel"},
		{"no head", "/nohead", "GET", []string{"HTTP/1.1 500 Internal Server Error\r\n"}, nil, "Internal Server Error\n"},
		{"panic", "/panic", "GET", []string{"HTTP/1.1 500 Internal Server Error\r\n"}, nil, "Internal Server Error\n"},
		{"hop-by-hop", "/close", "GET", []string{"Connection: close\r\n", "Content-Length: 3\r\n"}, []string{"Keep-Alive", "gzip"}, "\r\n\r\nbye"},
		{"sendfile cl", "/sendfile?cl", "GET", []string{"Content-Length: 4\r\n"}, nil, "\r\n\r\n3456"},
		{"sendfile chunked", "/sendfile", "GET", []string{"Transfer-Encoding: chunked\r\n"}, nil, "\r\n\r\n4\r\n3456\r\n0\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := get(tc.path, tc.method)
			for _, s := range tc.contains {
				if !strings.Contains(out, s) {
					t.Errorf("missing %q in %q", s, out)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(out, s) {
					t.Errorf("unexpected %q in %q", s, out)
				}
			}
			if !strings.HasSuffix(out, tc.suffix) {
				t.Errorf("want suffix %q in %q", tc.suffix, out)
			}
		})
	}
	if !strings.Contains(ts.log.String(), "panic serving GET /panic: boom") {
		t.Errorf("panic not logged: %q", ts.log.String())
	}
}

func TestShortContentLengthCloses(t *testing.T) {
	ts := newTestServer(t, Config{})
	c := dial(t, ts.addr)
	io.WriteString(c, "GET /clshort HTTP/1.1\r\nHost: h\r\n\r\n")
	b, _ := io.ReadAll(c)
	if !strings.HasSuffix(string(b), "\r\n\r\nhello") || !strings.Contains(string(b), "Content-Length: 10\r\n") {
		t.Fatalf("got %q", b)
	}
}

func TestBodySpill(t *testing.T) {
	dir := t.TempDir()
	ts := newTestServer(t, Config{BodyMemoryLimit: 1000, TempDir: dir})
	for _, chunked := range []bool{false, true} {
		c := dial(t, ts.addr)
		payload := strings.Repeat("z", 5000)
		if chunked {
			io.WriteString(c, "POST /spill HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
			for i := 0; i < 5; i++ {
				io.WriteString(c, "3e8\r\n"+payload[:1000]+"\r\n")
			}
			io.WriteString(c, "0\r\n\r\n")
		} else {
			io.WriteString(c, "POST /spill HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n"+payload)
		}
		_, body := readResp(t, bufio.NewReader(c), "POST")
		if body != "path=true exists=true len=5000 read=5000" {
			t.Fatalf("chunked=%v: %q", chunked, body)
		}
		ts.mu.Lock()
		path := ts.spillPath
		ts.mu.Unlock()
		if filepath.Dir(path) != dir {
			t.Errorf("spill file %s not in %s", path, dir)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("spill file %s not removed: %v", path, err)
		}
	}
	// Small body stays in memory.
	c := dial(t, ts.addr)
	io.WriteString(c, "POST /spill HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789")
	if _, body := readResp(t, bufio.NewReader(c), "POST"); body != "path=false exists=false len=10 read=10" {
		t.Fatalf("%q", body)
	}
}

func TestShutdown(t *testing.T) {
	ts := newTestServer(t, Config{})
	idle := dial(t, ts.addr)
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	idleBR := bufio.NewReader(idle)
	readResp(t, idleBR, "GET")
	silent := dial(t, ts.addr)
	io.WriteString(silent, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	silentBR := bufio.NewReader(silent)
	readResp(t, silentBR, "GET")

	busy := dial(t, ts.addr)
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	<-ts.entered

	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- ts.srv.Shutdown(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	if _, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		t.Error("listener still accepting")
	}
	// A request that a client sends on its kept-alive connection just after
	// the shutdown began is answered, with Connection: close, not dropped.
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, _ := readResp(t, idleBR, "GET"); !resp.Close {
		t.Error("response during shutdown lacks Connection: close")
	}
	expectClosed(t, idleBR)
	// An idle connection that sends nothing is closed after the grace.
	expectClosed(t, silentBR)
	if d := time.Since(start); d > acceptor.IdleDrainGrace+500*time.Millisecond {
		t.Errorf("silent idle connection closed after %v", d)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(ts.release)
	br := bufio.NewReader(busy)
	resp, body := readResp(t, br, "GET")
	if body != "slow done" || !resp.Close {
		t.Fatalf("in-flight response %q close=%v", body, resp.Close)
	}
	expectClosed(t, br)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestShutdownTimeout(t *testing.T) {
	ts := newTestServer(t, Config{})
	busy := dial(t, ts.addr)
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	<-ts.entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Shutdown: %v", err)
	}
	close(ts.release)
}

func TestReadHeaderTimeout(t *testing.T) {
	ts := newTestServer(t, Config{ReadHeaderTimeout: 200 * time.Millisecond, KeepAliveTimeout: 200 * time.Millisecond})
	c := dial(t, ts.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n") // never finishes
	start := time.Now()
	br := bufio.NewReader(c)
	resp, _ := readResp(t, br, "GET")
	if resp.StatusCode != 408 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	expectClosed(t, br)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}

	// An idle connection is closed without a response.
	c = dial(t, ts.addr)
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("idle conn got %q, %v", b, err)
	}
}

func TestBodyReadTimeout(t *testing.T) {
	ts := newTestServer(t, Config{BodyReadTimeout: 200 * time.Millisecond})
	c := dial(t, ts.addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
	resp, _ := readResp(t, bufio.NewReader(c), "POST")
	if resp.StatusCode != 408 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "edge")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "s.sock")
	// A stale socket file is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	var got *Request
	var mu sync.Mutex
	srv := NewServer(Config{}, HandlerFunc(func(w ResponseWriter, r *Request) {
		mu.Lock()
		cp := *r
		got = &cp
		mu.Unlock()
		w.WriteHead(text(200, "200 OK"), []byte("unix ok"), true)
	}), logging.New(io.Discard, logging.Error))
	ln, err := srv.Listen("unix:"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	_, body := readResp(t, bufio.NewReader(c), "GET")
	if body != "unix ok" {
		t.Fatalf("%q", body)
	}
	mu.Lock()
	if got.ServerName != "localhost" || got.ServerPort != "" || got.RemoteAddr != "" {
		t.Errorf("names: %+v", got)
	}
	mu.Unlock()
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left: %v", err)
	}
}

func TestRequestFields(t *testing.T) {
	var got Request
	var mu sync.Mutex
	srv := NewServer(Config{}, HandlerFunc(func(w ResponseWriter, r *Request) {
		mu.Lock()
		got = *r
		got.Header = append([]HeaderField(nil), r.Header...)
		mu.Unlock()
		w.WriteHead(text(200, "200 OK"), nil, true)
	}), logging.New(io.Discard, logging.Error))
	ln, err := srv.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())

	check := func(req string, want Request) {
		t.Helper()
		c := dial(t, ln.Addr().String())
		io.WriteString(c, req)
		readResp(t, bufio.NewReader(c), "GET")
		mu.Lock()
		defer mu.Unlock()
		if got.Method != want.Method || got.Target != want.Target || got.Path != want.Path || got.RawQuery != want.RawQuery || got.Host != want.Host {
			t.Errorf("got %+v, want %+v", got, want)
		}
		if got.RemoteAddr != "127.0.0.1" || got.RemotePort == "" || got.ServerName != "127.0.0.1" || got.ServerPort == "" || got.Scheme != "http" {
			t.Errorf("addresses: %+v", got)
		}
	}
	check("GET /a/b%20c?x=1&y=2#frag HTTP/1.1\r\nHost: example.com\r\nX-Y:  spaced \t\r\n\r\n",
		Request{Method: "GET", Target: "/a/b%20c?x=1&y=2#frag", Path: "/a/b%20c", RawQuery: "x=1&y=2", Host: "example.com"})
	if len(got.Header) != 2 || got.Header[1] != (HeaderField{"X-Y", "spaced"}) {
		t.Errorf("headers %q", got.Header)
	}
	check("GET http://other.example:8080?q HTTP/1.1\r\nHost: ignored\r\n\r\n",
		Request{Method: "GET", Target: "http://other.example:8080?q", Path: "/", RawQuery: "q", Host: "other.example:8080"})
	check("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", Request{Method: "OPTIONS", Target: "*", Path: "*", Host: "h"})
}

func TestAccessLog(t *testing.T) {
	var buf bytes.Buffer
	alw := NewAccessLogWriter(syncWriter{w: &buf}, 10*time.Millisecond)
	ts := newTestServer(t, Config{AccessLog: alw.Log})
	c := dial(t, ts.addr)
	io.WriteString(c, "GET /x?y=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/7.88.1\r\nReferer: http://r/\r\n\r\nGET / HTTP/1.1\r\n\r\n")
	br := bufio.NewReader(c)
	readResp(t, br, "GET")
	readResp(t, br, "GET")
	// The rejected request is logged after its response is written: wait
	// for its line before closing the log.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		logMu.Lock()
		n := strings.Count(buf.String(), "\n")
		logMu.Unlock()
		if n >= 2 {
			break
		}
	}
	alw.Close()
	logMu.Lock()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	logMu.Unlock()
	if len(lines) != 2 {
		t.Fatalf("log %q", lines)
	}
	if !strings.HasPrefix(lines[0], "127.0.0.1 - - [") || !strings.HasSuffix(lines[0], `] "GET /x?y=1 HTTP/1.1" 200 56 "http://r/" "curl/7.88.1"`) {
		t.Errorf("line %q", lines[0])
	}
	if !strings.HasSuffix(lines[1], `] "GET / HTTP/1.1" 400 33 "-" "-"`) {
		t.Errorf("line %q", lines[1])
	}

	r := AccessRecord{RemoteAddr: "127.0.0.1", Start: time.Date(2026, 11, 22, 18, 19, 53, 0, time.FixedZone("", 0)),
		RequestLine: "GET /x?y=1 HTTP/1.1", Status: 200, BodyBytes: 12, UserAgent: "curl/7.88.1"}
	if got, want := string(r.AppendGunicorn(nil)), `127.0.0.1 - - [22/Nov/2026:18:19:53 +0000] "GET /x?y=1 HTTP/1.1" 200 12 "-" "curl/7.88.1"`+"\n"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// parseBench drives readHead over an in-memory stream of requests.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off += n
	if r.off == len(r.data) {
		r.off = 0
	}
	return n, nil
}

func BenchmarkParseRequest(b *testing.B) {
	req := []byte("GET /plaintext?x=1 HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n")
	srv := NewServer(Config{}, nil, logging.New(io.Discard, logging.Error))
	c := &conn{srv: srv}
	c.br = bufio.NewReaderSize(&repeatReader{data: req}, bufSize)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		c.st = reqState{contentLength: -1}
		if err := c.readHead(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHelloKeepAlive(b *testing.B) {
	hello := []byte("Hello, World!")
	head := &ResponseHead{Code: 200, Status: "200 OK", Header: []HeaderField{{"Content-Type", "text/plain"}}}
	srv := NewServer(Config{}, HandlerFunc(func(w ResponseWriter, r *Request) {
		w.WriteHead(head, hello, true)
	}), logging.New(io.Discard, logging.Error))
	ln, err := srv.Listen("127.0.0.1:0", nil)
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	br := bufio.NewReader(c)
	b.ReportAllocs()
	for b.Loop() {
		c.Write(req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func TestWriteTimeoutAndAbort(t *testing.T) {
	gone := make(chan error, 1)
	srv := NewServer(Config{WriteTimeout: 200 * time.Millisecond}, HandlerFunc(func(w ResponseWriter, r *Request) {
		if r.Path == "/abort" {
			w.WriteHead(text(200, "200 OK"), []byte("partial"), false)
			w.Abort()
			return
		}
		w.WriteHead(text(200, "200 OK"), nil, false)
		chunk := make([]byte, 64<<10)
		for {
			if err := w.Write(chunk); err != nil {
				gone <- err
				return
			}
		}
	}), logging.New(io.Discard, logging.Error))
	ln, err := srv.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())

	out := rawResponse(t, ln.Addr().String(), "GET /abort HTTP/1.1\r\nHost: h\r\n\r\n")
	if !strings.HasSuffix(out, "\r\n\r\n7\r\npartial\r\n") {
		t.Fatalf("abort: %q", out)
	}

	c := dial(t, ln.Addr().String())
	io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: h\r\n\r\n") // and never read
	select {
	case err := <-gone:
		if err == nil {
			t.Fatal("nil error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write never failed for a client that stopped reading")
	}
}

// ClientGone fires when the client closes its connection mid-response, and
// a watch that instead reads the next pipelined request leaves it intact.
func TestClientGone(t *testing.T) {
	ts := newTestServer(t, Config{})
	c := dial(t, ts.addr)
	io.WriteString(c, "GET /watch HTTP/1.1\r\nHost: h\r\n\r\n")
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(line, "head;") {
			break
		}
	}
	c.Close()
	select {
	case gone := <-ts.gone:
		if !gone {
			t.Fatal("ClientGone did not fire when the client closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not return")
	}

	// A client that sends its next request while the response streams.
	c = dial(t, ts.addr)
	io.WriteString(c, "GET /watch HTTP/1.1\r\nHost: h\r\n\r\n")
	br = bufio.NewReader(c)
	time.Sleep(100 * time.Millisecond) // the watch is reading by now
	io.WriteString(c, "GET /cl HTTP/1.1\r\nHost: h\r\n\r\n")
	_, body := readResp(t, br, "GET")
	if body != "head;tail;" {
		t.Fatalf("first response %q", body)
	}
	if gone := <-ts.gone; gone {
		t.Fatal("ClientGone fired for a client that is still there")
	}
	resp, body := readResp(t, br, "GET")
	if resp.StatusCode != 200 || body == "" {
		t.Fatalf("pipelined request after the watch: %d %q", resp.StatusCode, body)
	}
}

// A body's buffer grows with the bytes that arrive, not with the length the
// client announces: connections that announce large bodies and send a few
// bytes hold little memory.
func TestAnnouncedBodyReservesNoMemory(t *testing.T) {
	const conns, announced = 40, 4 << 20
	ts := newTestServer(t, Config{BodyMemoryLimit: announced, TempDir: t.TempDir()})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < conns; i++ {
		c := dial(t, ts.addr)
		defer c.Close()
		if i%2 == 0 {
			fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n0123456789", announced)
		} else {
			fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n0123456789", announced)
		}
	}
	// The reads have had every chance to reserve what was announced.
	time.Sleep(300 * time.Millisecond)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if limit := int64(conns * announced / 8); grew > limit {
		t.Fatalf("%d connections announcing %d-byte bodies grew the heap by %d bytes, want under %d", conns, announced, grew, limit)
	}
}

// Spill files are named after the taipan that wrote them; at start, those
// of a taipan no longer running are removed, and no other file is touched.
func TestRemoveStaleSpills(t *testing.T) {
	dir := t.TempDir()
	// A pid that is certainly gone: a child that has exited and been reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	files := map[string]bool{ // name -> should survive
		fmt.Sprintf("taipan-body-%d-123", dead):        false,
		fmt.Sprintf("taipan-body-%d-456", dead):        false,
		fmt.Sprintf("taipan-body-%d-789", os.Getpid()): true, // this process: live
		"taipan-body-1-42":                             true, // pid 1 is alive
		"taipan-body-123456":                           true, // old name: not ours to judge
		"other-file":                                   true,
	}
	for name := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n, err := RemoveStaleSpills(dir)
	if err != nil || n != 2 {
		t.Fatalf("removed %d, err %v; want 2", n, err)
	}
	for name, keep := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if exists := err == nil; exists != keep {
			t.Errorf("%s: exists %v, want %v", name, exists, keep)
		}
	}
	// A spill file of this process has its pid in its name.
	ts := newTestServer(t, Config{BodyMemoryLimit: 10, TempDir: dir})
	c := dial(t, ts.addr)
	io.WriteString(c, "POST /spill HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n"+strings.Repeat("z", 100))
	readResp(t, bufio.NewReader(c), "POST")
	ts.mu.Lock()
	path := ts.spillPath
	ts.mu.Unlock()
	if want := fmt.Sprintf("taipan-body-%d-", os.Getpid()); !strings.HasPrefix(filepath.Base(path), want) {
		t.Errorf("spill file %s, want a name starting %s", path, want)
	}
}

// TestBuffersGivenBackWhileServing checks that a connection whose request is
// read whole gives its read and write buffers back while the Handler runs
// (it may wait long for a worker), and that one with a pipelined request
// behind it keeps them, since they hold that request.
func TestBuffersGivenBackWhileServing(t *testing.T) {
	held := make(chan bool, 4)
	addr := startHandler(t, Config{}, HandlerFunc(func(w ResponseWriter, r *Request) {
		c := w.(*response).c
		held <- c.br != nil || c.bw != nil
		w.WriteHead(text(200, "200 OK"), []byte(r.Path), true)
	}))
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /alone HTTP/1.1\r\nHost: h\r\n\r\n")
	if _, body := readResp(t, br, "GET"); body != "/alone" {
		t.Fatalf("body %q", body)
	}
	if <-held {
		t.Error("a lone request: the connection held its buffers while the Handler ran")
	}
	io.WriteString(c, "GET /first HTTP/1.1\r\nHost: h\r\n\r\nGET /second HTTP/1.1\r\nHost: h\r\n\r\n")
	for _, want := range []string{"/first", "/second"} {
		if _, body := readResp(t, br, "GET"); body != want {
			t.Fatalf("body %q, want %q", body, want)
		}
	}
	if !<-held {
		t.Error("a request with another pipelined behind it: the buffers were given back")
	}
	<-held
}
