package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPEP3333Environ(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "2")
	_, port, _ := strings.Cut(s.Addr, ":")

	resp, body := httpDo(t, "POST", s.URL+"/environ?a=1&b=%20x", strings.NewReader("abc"), map[string]string{
		"Content-Type":    "application/x-www-form-urlencoded",
		"X-Custom-Header": "custom value",
		"X_Forged":        "forged",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %q", resp.StatusCode, body)
	}
	var e environDump
	if err := jsonUnmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"REQUEST_METHOD":       "POST",
		"SCRIPT_NAME":          "",
		"PATH_INFO":            "/environ",
		"QUERY_STRING":         "a=1&b=%20x",
		"CONTENT_TYPE":         "application/x-www-form-urlencoded",
		"CONTENT_LENGTH":       "3",
		"SERVER_NAME":          "127.0.0.1",
		"SERVER_PORT":          port,
		"SERVER_PROTOCOL":      "HTTP/1.1",
		"REMOTE_ADDR":          "127.0.0.1",
		"HTTP_X_CUSTOM_HEADER": "custom value",
		"wsgi.url_scheme":      "http",
	}
	for k, v := range want {
		got, ok := e.Str[k]
		if !ok {
			t.Errorf("environ lacks %s (or it is not a str: %s)", k, e.Types[k])
		} else if got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"HTTP_HOST", "REMOTE_PORT", "SERVER_SOFTWARE"} {
		if e.Types[k] != "str" {
			t.Errorf("%s has type %q, want str", k, e.Types[k])
		}
	}
	for k, typ := range e.Types {
		if !strings.Contains(k, ".") && typ != "str" {
			t.Errorf("CGI key %s has type %s, want str", k, typ)
		}
	}
	if _, ok := e.Str["HTTP_X_FORGED"]; ok {
		t.Errorf("a header with '_' reached the app as HTTP_X_FORGED")
	}
	if _, ok := e.Str["HTTP_CONTENT_TYPE"]; ok {
		t.Errorf("HTTP_CONTENT_TYPE present (must be CONTENT_TYPE only)")
	}
	if _, ok := e.Str["HTTP_CONTENT_LENGTH"]; ok {
		t.Errorf("HTTP_CONTENT_LENGTH present (must be CONTENT_LENGTH only)")
	}
	if len(e.Version) != 2 || e.Version[0] != 1 || e.Version[1] != 0 || !e.VersionTuple {
		t.Errorf("wsgi.version %v (tuple %v), want (1, 0)", e.Version, e.VersionTuple)
	}
	if e.Multithread || e.RunOnce || !e.Multiprocess {
		t.Errorf("multithread %v multiprocess %v run_once %v; want false, true (-w 2), false", e.Multithread, e.Multiprocess, e.RunOnce)
	}
	if !e.HasRead || !e.ErrorsWrite || !e.FileWrapper {
		t.Errorf("wsgi.input.read %v, wsgi.errors write/writelines/flush %v, wsgi.file_wrapper callable %v", e.HasRead, e.ErrorsWrite, e.FileWrapper)
	}
	for _, k := range []string{"wsgi.input", "wsgi.errors", "wsgi.version", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.url_scheme"} {
		if _, ok := e.Types[k]; !ok {
			t.Errorf("environ lacks %s", k)
		}
	}

	// GET without a body: no CONTENT_TYPE; CONTENT_LENGTH absent or empty.
	e = environDump{}
	httpGetJSON(t, s, "/environ", &e)
	if _, ok := e.Str["CONTENT_TYPE"]; ok {
		t.Errorf("GET without Content-Type has CONTENT_TYPE %q", e.Str["CONTENT_TYPE"])
	}
	if v, ok := e.Str["CONTENT_LENGTH"]; ok && v != "" && v != "0" {
		t.Errorf("GET without body has CONTENT_LENGTH %q", v)
	}

	// Repeated headers are joined; Cookie with "; ".
	c := dialRaw(t, s.Addr)
	io.WriteString(c, "GET /headers HTTP/1.1\r\nHost: x\r\nX-Multi: a\r\nX-Multi: b\r\nCookie: c1=1\r\nCookie: c2=2\r\n\r\n")
	_, hb := ReadResponse(t, bufio.NewReader(c), "GET")
	var h map[string]string
	if err := jsonUnmarshal(hb, &h); err != nil {
		t.Fatal(err)
	}
	if h["HTTP_X_MULTI"] != "a, b" || h["HTTP_COOKIE"] != "c1=1; c2=2" {
		t.Errorf("joined headers: X-Multi %q, Cookie %q", h["HTTP_X_MULTI"], h["HTTP_COOKIE"])
	}
}

func TestPEP3333SingleWorkerNotMultiprocess(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	var e environDump
	httpGetJSON(t, s, "/environ", &e)
	if e.Multiprocess || e.Multithread || e.RunOnce {
		t.Errorf("-w 1: multiprocess %v multithread %v run_once %v, want all false", e.Multiprocess, e.Multithread, e.RunOnce)
	}
}

func TestPEP3333PathInfo(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	cases := []struct{ target, path, query string }{
		{"/environ/caf%C3%A9", "/environ/caf\xc3\xa9", ""},
		{"/environ/a%2Fb%20c?q=%C3%A9&x=a+b", "/environ/a/b c", "q=%C3%A9&x=a+b"},
		{"/environ/%zz%4", "/environ/%zz%4", ""},
	}
	for _, c := range cases {
		resp, body := rawResponse(t, s, "GET "+c.target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "GET")
		if resp.StatusCode != 200 {
			t.Errorf("%q: status %d %q", c.target, resp.StatusCode, body)
			continue
		}
		var e environDump
		if err := jsonUnmarshal(body, &e); err != nil {
			t.Fatal(err)
		}
		if e.PathLatin1 != hex.EncodeToString([]byte(c.path)) {
			raw, _ := hex.DecodeString(e.PathLatin1)
			t.Errorf("%q: PATH_INFO.encode('latin-1') = %q, want %q", c.target, raw, c.path)
		}
		if e.Str["QUERY_STRING"] != c.query {
			t.Errorf("%q: QUERY_STRING %q, want %q", c.target, e.Str["QUERY_STRING"], c.query)
		}
		if raw, _ := hex.DecodeString(e.Latin1Hex["RAW_URI"]); string(raw) != c.target {
			t.Errorf("%q: RAW_URI %q", c.target, raw)
		}
	}
}

func TestPEP3333Input(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	body := "first line\nsecond line\n\nlast without newline"
	lines := []string{"first line\n", "second line\n", "\n", "last without newline"}
	for _, method := range []string{"read", "readn", "readline", "readlines", "iter", "readcl"} {
		t.Run(method, func(t *testing.T) {
			resp, b := httpDo(t, "POST", s.URL+"/echo?n=5&method="+method, strings.NewReader(body), nil)
			var got struct {
				Len   int      `json:"len"`
				Data  string   `json:"data"`
				Parts []string `json:"parts"`
			}
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %q", resp.StatusCode, b)
			}
			if err := jsonUnmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if got.Data != body || got.Len != len(body) {
				t.Errorf("read %q", got.Data)
			}
			switch method {
			case "readline", "readlines", "iter":
				if fmt.Sprint(got.Parts) != fmt.Sprint(lines) {
					t.Errorf("lines %q, want %q", got.Parts, lines)
				}
			case "readn":
				for i, p := range got.Parts {
					if len(p) > 5 || (len(p) < 5 && i != len(got.Parts)-1) {
						t.Errorf("read(5) returned %q", p)
					}
				}
			}
		})
	}
	// An empty body reads as b"".
	resp, b := httpDo(t, "POST", s.URL+"/echo", strings.NewReader(""), nil)
	if resp.StatusCode != 200 || !strings.Contains(b, `"len": 0`) || !strings.Contains(b, `"content_length": "0"`) {
		t.Errorf("empty body: %d %q", resp.StatusCode, b)
	}
}

func TestPEP3333Write(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	if code, body := httpGet(t, s, "/write"); code != 200 || body != "written-1;written-2;" {
		t.Errorf("/write: %d %q", code, body)
	}
	if code, body := httpGet(t, s, "/write-then-iter"); code != 200 || body != "from-write;from-iter-a;from-iter-b" {
		t.Errorf("/write-then-iter: %d %q", code, body)
	}
}

func TestPEP3333ExcInfo(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	resp, body := httpDo(t, "GET", s.URL+"/exc-info", nil, nil)
	if resp.StatusCode != 503 || body != "second status wins" {
		t.Errorf("/exc-info: %d %q, want 503 from the second start_response", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Second") != "1" || resp.Header.Get("X-First") != "" {
		t.Errorf("/exc-info headers: X-First %q X-Second %q; want only the second call's", resp.Header.Get("X-First"), resp.Header.Get("X-Second"))
	}
	// A second start_response without exc_info is an error.
	if code, body := httpGet(t, s, "/double-start"); code != 200 || body != "second start_response without exc_info raised" {
		t.Errorf("/double-start: %d %q", code, body)
	}
	// exc_info after the head was sent: start_response re-raises, the
	// response is aborted (no terminating chunk), and the worker lives on.
	marker := filepath.Join(t.TempDir(), "reraised")
	out := s.Raw(t, "GET /exc-info-after-body?marker="+url.QueryEscape(marker)+" HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.Contains(out, "partial;") {
		t.Errorf("exc_info after body: %q", out)
	}
	if strings.HasSuffix(out, "0\r\n\r\n") {
		t.Errorf("aborted response was terminated as if complete: %q", out)
	}
	if got, ok := waitMarker(marker, 3*time.Second); !ok || got != "reraised" {
		t.Errorf("start_response with exc_info after the head did not re-raise")
	}
	if code, _ := httpGet(t, s, "/pid"); code != 200 {
		t.Errorf("worker unusable afterwards: %d", code)
	}
}

func TestPEP3333RaiseAfterHead(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	start := time.Now()
	out := s.Raw(t, "GET /raise-after-head HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second)
	if time.Since(start) > 3*time.Second {
		t.Errorf("connection not closed after the app raised mid-body")
	}
	if !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.Contains(out, "first-chunk;") {
		t.Errorf("got %q", out)
	}
	if strings.HasSuffix(out, "0\r\n\r\n") {
		t.Errorf("a failed response was terminated as if complete: %q", out)
	}
	// A real client must see an error, not a short successful body.
	resp, err := timeoutClient(testTimeout).Get(s.URL + "/raise-after-head")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("client read the aborted body without error")
		}
	}
	if !s.WaitLog("boom-after-head", 3*time.Second) {
		t.Errorf("traceback not logged:\n%s", s.Stderr())
	}
}

// TestPEP3333WholeFirstChunk: an iterable (not a list) whose first chunk is
// the whole body its Content-Length announces is sent with the head at
// once, and what follows it is dropped. Whatever the iterable does after
// that chunk, the client gets exactly the announced body on a connection
// that stays usable, close() runs, and an exception raised after the body
// is logged.
func TestPEP3333WholeFirstChunk(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	dir := t.TempDir()
	c := dialRaw(t, s.Addr)
	br := bufio.NewReader(c)
	for _, then := range []string{"", "empty", "extra", "raise"} {
		marker := filepath.Join(dir, "marker-"+then)
		io.WriteString(c, "GET /whole-first-chunk?then="+then+"&marker="+url.QueryEscape(marker)+" HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("then=%q: %v", then, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != "whole body" || resp.Close {
			t.Errorf("then=%q: %d %q close=%v %v", then, resp.StatusCode, body, resp.Close, err)
		}
		if _, ok := waitMarker(marker, 3*time.Second); !ok {
			t.Errorf("then=%q: close() not called", then)
		}
	}
	if !s.WaitLog("boom-after-whole-body", 3*time.Second) {
		t.Errorf("the exception after the body was not logged:\n%s", s.Stderr())
	}
}

// TestPEP3333BodyBeforeClose: a response whose first chunk is its whole
// body (Flask, Django), a chunked one whose iterable is exhausted, or an
// empty one (a redirect), reaches the client complete before the app's
// close() runs (PEP 3333: no block is delayed), as under gunicorn, with
// every worker class; but the request holds its worker (or thread) until
// close() returns, so the next request goes to another worker or thread
// rather than waiting behind it, and with one worker of one thread it runs
// after.
func TestPEP3333BodyBeforeClose(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args  []string
		query string
		alone bool // one request at a time: /closed-at runs after close()
	}{
		{[]string{"-w", "1"}, "", true},
		{[]string{"-w", "2"}, "", false},
		{[]string{"-w", "1"}, "&chunked", true},
		{[]string{"-w", "2"}, "&chunked", false},
		{[]string{"-w", "1"}, "&empty", true},
		{[]string{"-w", "1", "--threads", "2"}, "", false},
		{[]string{"-w", "1", "--threads", "2"}, "&chunked", false},
		{[]string{"-w", "1", "--threads", "2"}, "&empty", false},
		{[]string{"-w", "1", "-k", "gevent"}, "&chunked", false},
		{[]string{"-w", "1", "-k", "gevent"}, "&empty", false},
	} {
		t.Run(strings.Join(tc.args, " ")+tc.query, func(t *testing.T) {
			t.Parallel()
			if slices.Contains(tc.args, "gevent") {
				requirePython(t, "gevent", "python3-gevent")
			}
			s := Start(t, append([]string{"--pythonpath", appsDir(t)}, append(tc.args, "pep3333app:app")...)...)
			client := timeoutClient(testTimeout)
			client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			start := time.Now()
			resp, err := client.Get(s.URL + "/slow-close?seconds=2" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if took := time.Since(start); took > time.Second {
				t.Errorf("the complete response took %v: it waited for close()'s 2 s", took)
			}
			wantCode, wantBody := 200, "whole body"
			if tc.query == "&empty" {
				wantCode, wantBody = 302, ""
			}
			if err != nil || resp.StatusCode != wantCode || string(body) != wantBody {
				t.Fatalf("/slow-close: %d %q %v, want %d %q", resp.StatusCode, body, err, wantCode, wantBody)
			}
			start = time.Now()
			code, at := httpGet(t, s, "/closed-at")
			took := time.Since(start)
			closedAt, err := strconv.ParseFloat(at, 64)
			if code != 200 || err != nil {
				t.Fatalf("/closed-at: %d %q", code, at)
			}
			if tc.alone && closedAt == 0 {
				t.Errorf("/closed-at ran on the only worker before the close() of /slow-close returned")
			}
			if !tc.alone && (closedAt != 0 || took > time.Second) {
				t.Errorf("/closed-at took %v behind the request still in close() (closed at %q), want another worker or thread", took, at)
			}
		})
	}
}

// TestPEP3333CloseRaises: an exception from close() is logged with its
// traceback; the client, which has its whole response, is not affected.
func TestPEP3333CloseRaises(t *testing.T) {
	t.Parallel()
	s := Start(t, "--pythonpath", appsDir(t), "-w", "1", "pep3333app:app")
	if code, body := httpGet(t, s, "/close-raises"); code != 200 || body != "ok" {
		t.Fatalf("/close-raises: %d %q", code, body)
	}
	if !s.WaitLog("RuntimeError: close exploded", 5*time.Second) || !strings.Contains(s.Stderr(), "Error closing the response of GET /close-raises") {
		t.Errorf("no traceback of close() in the log:\n%s", s.Stderr())
	}
}

// TestPEP3333WriteNotBytes: write() takes bytes only (PEP 3333). Given an
// int, it raises TypeError, which makes the response a 500, instead of
// sending that many NUL bytes.
func TestPEP3333WriteNotBytes(t *testing.T) {
	t.Parallel()
	s := Start(t, "--pythonpath", appsDir(t), "-w", "1", "pep3333app:app")
	code, body := httpGet(t, s, "/write-int")
	if code != 500 || strings.Contains(body, "\x00") {
		t.Errorf("/write-int: %d %q, want 500", code, body)
	}
	if !s.WaitLog("TypeError: write() takes bytes, not int", 5*time.Second) {
		t.Errorf("no TypeError in the log:\n%s", s.Stderr())
	}
}

func TestPEP3333Close(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1", "--graceful-timeout", "2")
	dir := t.TempDir()

	t.Run("normal", func(t *testing.T) {
		marker := filepath.Join(dir, "normal")
		code, body := httpGet(t, s, "/close?chunks=3&marker="+url.QueryEscape(marker))
		if code != 200 || body != "chunk-0;chunk-1;chunk-2;" {
			t.Errorf("%d %q", code, body)
		}
		if _, ok := waitMarker(marker, 3*time.Second); !ok {
			t.Errorf("close() not called after a normal response")
		}
	})
	t.Run("disconnect", func(t *testing.T) {
		marker := filepath.Join(dir, "disconnect")
		c := dialRaw(t, s.Addr)
		io.WriteString(c, "GET /close?stream=forever&marker="+url.QueryEscape(marker)+" HTTP/1.1\r\nHost: x\r\n\r\n")
		buf := make([]byte, 4096)
		got := ""
		for !strings.Contains(got, "chunk-2;") {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("reading the stream: %v (got %q)", err, got)
			}
			got += string(buf[:n])
		}
		c.Close()
		if _, ok := waitMarker(marker, 5*time.Second); !ok {
			t.Fatalf("close() not called after the client disconnected mid-stream")
		}
		// The worker (the only one) is free again.
		resp, err := timeoutClient(5 * time.Second).Get(s.URL + "/pid")
		if err != nil {
			t.Fatalf("the only worker is stuck after a client disconnected mid-stream: GET /pid: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET /pid after a disconnect: %d", resp.StatusCode)
		}
	})
}

func TestPEP3333FileWrapper(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	data := make([]byte, 5<<20+123)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // twice: the worker and connection stay usable
		resp, body := httpDo(t, "GET", s.URL+"/file?path="+url.QueryEscape(path), nil, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if !bytes.Equal([]byte(body), data) {
			t.Fatalf("file body differs: got %d bytes, want %d", len(body), len(data))
		}
		if resp.ContentLength != int64(len(data)) {
			t.Errorf("Content-Length %d", resp.ContentLength)
		}
	}
	// HEAD of a file response sends no body.
	c := dialRaw(t, s.Addr)
	io.WriteString(c, "HEAD /file?path="+url.QueryEscape(path)+" HTTP/1.1\r\nHost: x\r\n\r\nGET /status?code=201 HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	ReadResponse(t, br, "HEAD")
	if r, _ := ReadResponse(t, br, "GET"); r.StatusCode != 201 {
		t.Errorf("after HEAD of a file: next status %d", r.StatusCode)
	}
}

func TestPEP3333StreamingIncremental(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	start := time.Now()
	resp, err := timeoutClient(testTimeout).Get(s.URL + "/stream?chunks=2&size=5&delay_ms=1000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	if string(buf) != "00000" || first > 600*time.Millisecond {
		t.Errorf("first chunk %q after %v; want it well before the generator's 1 s sleep ends", buf, first)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "11111" {
		t.Errorf("rest %q %v", rest, err)
	}
	if total := time.Since(start); total < time.Second {
		t.Errorf("whole response in %v, expected >= 1 s", total)
	}
}

// TestPEP3333BigStream streams 1 GiB and checks memory stays flat in both
// the Go process and the worker.
func TestPEP3333BigStream(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	httpGet(t, s, "/pid") // warm up
	pids := s.WorkerPids()
	if len(pids) != 1 {
		t.Fatalf("worker pids %v", pids)
	}
	goPid, pyPid := s.Pid(), pids[0]
	goBase, err1 := procStatusKB(goPid, "VmRSS")
	pyBase, err2 := procStatusKB(pyPid, "VmRSS")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	var mu sync.Mutex
	var goPeak, pyPeak int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			g, _ := procStatusKB(goPid, "VmRSS")
			p, _ := procStatusKB(pyPid, "VmRSS")
			mu.Lock()
			goPeak, pyPeak = max(goPeak, g), max(pyPeak, p)
			mu.Unlock()
		}
	}()
	c := &readCounter{}
	cl := timeoutClient(20 * time.Second)
	resp, err := cl.Get(s.URL + "/big?mb=1024")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(c, resp.Body)
	resp.Body.Close()
	close(stop)
	<-sampled
	if err != nil {
		t.Fatalf("after %d bytes: %v", c.n, err)
	}
	if c.n != 1<<30 {
		t.Errorf("received %d bytes, want %d", c.n, 1<<30)
	}
	goHWM, _ := procStatusKB(goPid, "VmHWM")
	pyHWM, _ := procStatusKB(pyPid, "VmHWM")
	goAfter, _ := procStatusKB(goPid, "VmRSS")
	pyAfter, _ := procStatusKB(pyPid, "VmRSS")
	t.Logf("go RSS base %d peak %d after %d HWM %d kB; worker RSS base %d peak %d after %d HWM %d kB",
		goBase, goPeak, goAfter, goHWM, pyBase, pyPeak, pyAfter, pyHWM)
	const limit = 10 << 10 // kB: "a few MB", with room for GC slack
	if goPeak-goBase > limit || goHWM-goBase > limit || goAfter-goBase > limit {
		t.Errorf("taipan's RSS grew by more than 10 MB (base %d, peak %d, HWM %d, after %d kB)", goBase, goPeak, goHWM, goAfter)
	}
	if pyPeak-pyBase > limit || pyHWM-pyBase > limit || pyAfter-pyBase > limit {
		t.Errorf("the worker's RSS grew by more than 10 MB (base %d, peak %d, HWM %d, after %d kB)", pyBase, pyPeak, pyHWM, pyAfter)
	}
}

type readCounter struct{ n int64 }

func (r *readCounter) Write(p []byte) (int, error) { r.n += int64(len(p)); return len(p), nil }

func TestPEP3333BadHeader(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	out := s.Raw(t, "GET /bad-header HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 500 ") {
		t.Errorf("status line %q, want 500", statusLine(out))
	}
	if strings.Contains(strings.ToLower(out), "x-injected") {
		t.Errorf("injected header reached the client:\n%s", out)
	}
	if strings.Contains(out, "should never be sent") {
		t.Errorf("the app's body was sent with an invalid head:\n%s", out)
	}
	if code, _ := httpGet(t, s, "/pid"); code != 200 {
		t.Errorf("worker unusable after a bad head: %d", code)
	}
}

func TestPEP3333Status(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	for _, code := range []int{201, 404, 418, 500} {
		resp, body := httpDo(t, "GET", fmt.Sprintf("%s/status?code=%d", s.URL, code), nil, nil)
		if resp.StatusCode != code || body != fmt.Sprintf("status %d", code) {
			t.Errorf("code %d: got %d %q", code, resp.StatusCode, body)
		}
	}
	out := s.Raw(t, "GET /status?code=204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	head, body, _ := strings.Cut(out, "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 204 ") || body != "" || strings.Contains(strings.ToLower(head), "transfer-encoding") {
		t.Errorf("204: %q", out)
	}
}
