package static

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"taipan/internal/edge"
	"taipan/internal/logging"
)

// fileTime is the modification time the fixtures get, so Last-Modified is
// known; the nanoseconds make sure the ETag uses them while Last-Modified
// drops them.
var fileTime = time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC)

const fileTimeHTTP = "Tue, 02 Jan 2024 03:04:05 GMT"

// fixture is a directory tree mounted at /assets and served by a real
// edge.Server on loopback, with requests outside the mount answered by a
// stand-in for the Python app ("app: PATH").
type fixture struct {
	t      *testing.T
	top    string // holds public/ (mounted), secret.txt and secretdir/ beside it
	public string
	addr   string
	url    string
	h      *Handler

	mu  sync.Mutex
	log bytes.Buffer
}

func (fx *fixture) Write(p []byte) (int, error) {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return fx.log.Write(p)
}

func (fx *fixture) logText() string {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return fx.log.String()
}

// writeFile writes content at rel under dir, creating directories, with
// mtime fileTime.
func writeFile(t testing.TB, dir, rel, content string) string {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fileTime, fileTime); err != nil {
		t.Fatal(err)
	}
	return p
}

// pattern is n deterministic bytes that differ at every offset modulo 251,
// so a wrong range or a shifted body is caught.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fx := &fixture{t: t, top: t.TempDir()}
	fx.public = filepath.Join(fx.top, "public")
	pub := fx.public
	writeFile(t, fx.top, "secret.txt", "TOP SECRET")
	writeFile(t, fx.top, "secretdir/secret.txt", "TOP SECRET")
	writeFile(t, pub, "hello.txt", "hello, world\n")
	writeFile(t, pub, "data.bin", string(pattern(4096)))
	writeFile(t, pub, "empty.txt", "")
	writeFile(t, pub, "app.js", "console.log('plain')\n")
	writeFile(t, pub, "app.js.br", "BROTLI BYTES")
	writeFile(t, pub, "app.js.gz", "GZIP BYTES, LONGER")
	writeFile(t, pub, "only.css", "body{}")
	writeFile(t, pub, "only.css.gz", "GZIP CSS")
	writeFile(t, pub, "stale.js", "new content")
	writeFile(t, pub, "stale.js.gz", "OLD GZIP")
	if err := os.Chtimes(filepath.Join(pub, "stale.js.gz"), fileTime.Add(-time.Hour), fileTime.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, pub, "app.3f9a2c1e.js", "hashed")
	writeFile(t, pub, "docs/index.html", "<h1>docs</h1>")
	writeFile(t, pub, "docs/page.html", "<p>page</p>")
	writeFile(t, pub, "noindex/x.txt", "x")
	writeFile(t, pub, "index.html", "<h1>root</h1>")
	writeFile(t, pub, ".env", "SECRET=1")
	writeFile(t, pub, ".git/config", "[core]")
	writeFile(t, pub, ".well-known/security.txt", "Contact: mailto:sec@example.com")
	writeFile(t, pub, "sub/deeper/file.txt", "deep")
	writeFile(t, pub, "sp ace/ü.txt", "unicode")
	symlink(t, "hello.txt", filepath.Join(pub, "link-in.txt"))
	symlink(t, "../hello.txt", filepath.Join(pub, "sub/link-up.txt"))
	symlink(t, "sub/deeper", filepath.Join(pub, "linkdir-in"))
	symlink(t, "../secret.txt", filepath.Join(pub, "link-out.txt"))
	symlink(t, filepath.Join(fx.top, "secret.txt"), filepath.Join(pub, "link-abs-out.txt"))
	symlink(t, filepath.Join(pub, "hello.txt"), filepath.Join(pub, "link-abs-in.txt"))
	symlink(t, "../secretdir", filepath.Join(pub, "linkdir-out"))
	symlink(t, "sub/../../secret.txt", filepath.Join(pub, "link-tricky.txt"))
	if err := syscall.Mkfifo(filepath.Join(pub, "fifo.txt"), 0o644); err != nil {
		t.Fatal(err)
	}

	log := logging.New(fx, logging.Debug)
	h, err := New([]Mount{{Prefix: "/assets", Dir: pub}}, log)
	if err != nil {
		t.Fatal(err)
	}
	fx.h = h
	t.Cleanup(func() { h.Close() })
	fx.start(h, log)
	return fx
}

func symlink(t testing.TB, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// start serves h on loopback the way internal/server's router does: static
// files when Match says so, the "app" otherwise.
func (fx *fixture) start(h *Handler, log *logging.Logger) {
	t := fx.t
	router := edge.HandlerFunc(func(w edge.ResponseWriter, r *edge.Request) {
		if h.Match(r.Path) {
			h.Serve(w, r)
			return
		}
		w.WriteHead(&edge.ResponseHead{Code: 200, Status: "200 OK",
			Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain"}}},
			[]byte("app: "+r.Path), true)
	})
	srv := edge.NewServer(edge.DefaultConfig(), router, log)
	ln, err := srv.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	fx.addr = ln.Addr().String()
	fx.url = "http://" + fx.addr
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		// Idle keep-alive connections would hold Shutdown for its grace.
		client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// client neither decompresses (it would add Accept-Encoding: gzip and hide
// Content-Encoding) nor follows redirects.
var client = &http.Client{
	Timeout:       20 * time.Second,
	Transport:     &http.Transport{DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// do sends method path with the headers given as "Name: value" strings.
func (fx *fixture) do(method, path string, headers ...string) (*http.Response, string) {
	fx.t.Helper()
	req, err := http.NewRequest(method, fx.url+path, nil)
	if err != nil {
		fx.t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(k, strings.TrimSpace(v))
	}
	resp, err := client.Do(req)
	if err != nil {
		fx.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fx.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, string(body)
}

// raw sends the request line target exactly as given (clients would clean
// ".." or escape bytes) and returns the response.
func (fx *fixture) raw(method, target string, headers ...string) (*http.Response, string) {
	fx.t.Helper()
	c, err := net.DialTimeout("tcp", fx.addr, 5*time.Second)
	if err != nil {
		fx.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := method + " " + target + " HTTP/1.1\r\nHost: x\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		fx.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		fx.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fx.t.Fatalf("%s %s: reading body: %v", method, target, err)
	}
	return resp, string(body)
}

func expectStatus(t *testing.T, what string, resp *http.Response, body string, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d, want %d (body %q)", what, resp.StatusCode, want, body)
	}
}

func expectHeader(t *testing.T, what string, resp *http.Response, name, want string) {
	t.Helper()
	vals := resp.Header.Values(name)
	if want == "" {
		if len(vals) > 0 {
			t.Errorf("%s: %s = %q, want none", what, name, vals)
		}
		return
	}
	if len(vals) != 1 || vals[0] != want {
		t.Errorf("%s: %s = %q, want %q", what, name, vals, want)
	}
}

func TestGetFile(t *testing.T) {
	fx := newFixture(t)
	resp, body := fx.do("GET", "/assets/hello.txt")
	expectStatus(t, "GET", resp, body, 200)
	if body != "hello, world\n" {
		t.Errorf("body %q", body)
	}
	expectHeader(t, "GET", resp, "Content-Length", "13")
	expectHeader(t, "GET", resp, "Content-Type", "text/plain; charset=utf-8")
	expectHeader(t, "GET", resp, "X-Content-Type-Options", "nosniff")
	expectHeader(t, "GET", resp, "Accept-Ranges", "bytes")
	expectHeader(t, "GET", resp, "Last-Modified", fileTimeHTTP)
	expectHeader(t, "GET", resp, "Cache-Control", "no-cache")
	expectHeader(t, "GET", resp, "Vary", "")
	expectHeader(t, "GET", resp, "Content-Encoding", "")
	want := fmt.Sprintf(`"%x-%x"`, fileTime.UnixNano(), 13)
	expectHeader(t, "GET", resp, "ETag", want)

	// The binary file, whole and exact.
	resp, body = fx.do("GET", "/assets/data.bin")
	expectStatus(t, "data.bin", resp, body, 200)
	if body != string(pattern(4096)) {
		t.Errorf("data.bin: body differs (%d bytes)", len(body))
	}
	expectHeader(t, "data.bin", resp, "Content-Type", "application/octet-stream")

	// A 0-byte file.
	resp, body = fx.do("GET", "/assets/empty.txt")
	expectStatus(t, "empty", resp, body, 200)
	expectHeader(t, "empty", resp, "Content-Length", "0")

	// Non-ASCII and escaped names.
	resp, body = fx.do("GET", "/assets/sp%20ace/%C3%BC.txt")
	expectStatus(t, "unicode", resp, body, 200)
	if body != "unicode" {
		t.Errorf("unicode: body %q", body)
	}
	// Empty segments are merged; a query is ignored.
	resp, body = fx.do("GET", "/assets//sub///deeper/file.txt?v=3")
	expectStatus(t, "slashes", resp, body, 200)
	if body != "deep" {
		t.Errorf("slashes: body %q", body)
	}
}

func TestHeadSendsNoBody(t *testing.T) {
	fx := newFixture(t)
	get, _ := fx.do("GET", "/assets/data.bin")
	// HEAD then GET pipelined on one connection: if HEAD leaked a body, the
	// second response would not parse.
	c, err := net.DialTimeout("tcp", fx.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "HEAD /assets/data.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /assets/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	head, err := http.ReadResponse(br, &http.Request{Method: "HEAD"})
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	expectStatus(t, "HEAD", head, "", 200)
	for _, name := range []string{"Content-Length", "Content-Type", "ETag", "Last-Modified", "Accept-Ranges", "Cache-Control"} {
		expectHeader(t, "HEAD", head, name, get.Header.Get(name))
	}
	next, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("response after HEAD: %v", err)
	}
	body, _ := io.ReadAll(next.Body)
	if next.StatusCode != 200 || string(body) != "hello, world\n" {
		t.Fatalf("response after HEAD: %d %q", next.StatusCode, body)
	}
}

func TestMethods(t *testing.T) {
	fx := newFixture(t)
	for _, m := range []string{"POST", "PUT", "DELETE", "OPTIONS", "PATCH"} {
		for _, p := range []string{"/assets/hello.txt", "/assets/missing"} {
			resp, body := fx.do(m, p)
			expectStatus(t, m+" "+p, resp, body, 405)
			expectHeader(t, m+" "+p, resp, "Allow", "GET, HEAD")
			if body != "Method Not Allowed\n" {
				t.Errorf("%s %s: body %q", m, p, body)
			}
		}
	}
}

func TestMatch(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"a", "b", "c"} {
		os.Mkdir(filepath.Join(dir, sub), 0o755)
	}
	h, err := New([]Mount{{"/assets", filepath.Join(dir, "a")}, {"/assets/img", filepath.Join(dir, "b")}, {"/x/y", filepath.Join(dir, "c")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for path, want := range map[string]bool{
		"/assets":           true,
		"/assets/":          true,
		"/assets/a/b.js":    true,
		"/assetsx":          false,
		"/assetsx/y":        false,
		"/asset":            false,
		"/":                 false,
		"/x":                false,
		"/x/y/z":            true,
		"/x/yz":             false,
		"/%61ssets/app.js":  true, // decoded, as the app would see it
		"/assets%2Fapp.js":  true, // then refused by Serve
		"/assets%2":         false,
		"/ASSETS/app.js":    false,
		"*":                 false,
		"/api/assets/x":     false,
		"/assets/../api/x":  true, // refused by Serve, never handed to the app
		"/assets%zz":        false,
		"/assets/img/a.png": true,
	} {
		if got := h.Match(path); got != want {
			t.Errorf("Match(%q) = %v, want %v", path, got, want)
		}
	}
	// Longest prefix wins.
	if m := h.mountOf("/assets/img/a.png"); m == nil || m.prefix != "/assets/img" {
		t.Errorf("mountOf(/assets/img/a.png) = %+v", m)
	}
	// A mount at "/" takes everything.
	root, err := New([]Mount{{"/", dir}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, p := range []string{"/", "/anything", "/a/b"} {
		if !root.Match(p) {
			t.Errorf("root mount: Match(%q) = false", p)
		}
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "f.txt", "x")
	for name, mounts := range map[string][]Mount{
		"relative dir":     {{"/a", "public"}},
		"missing dir":      {{"/a", filepath.Join(dir, "nope")}},
		"file not dir":     {{"/a", file}},
		"no leading slash": {{"a", dir}},
		"trailing slash":   {{"/a/", dir}},
		"dot dot":          {{"/a/../b", dir}},
		"double slash":     {{"/a//b", dir}},
		"percent":          {{"/a%20b", dir}},
		"twice":            {{"/a", dir}, {"/a", dir}},
	} {
		if h, err := New(mounts, nil); err == nil {
			h.Close()
			t.Errorf("%s: New(%v) succeeded", name, mounts)
		} else if !strings.HasPrefix(err.Error(), "static: ") {
			t.Errorf("%s: error %q has no context", name, err)
		}
	}
}

func TestContentTypes(t *testing.T) {
	dir := t.TempDir()
	want := map[string]string{
		"a.html":  "text/html; charset=utf-8",
		"a.css":   "text/css; charset=utf-8",
		"a.js":    "text/javascript; charset=utf-8",
		"a.mjs":   "text/javascript; charset=utf-8",
		"a.json":  "application/json",
		"a.svg":   "image/svg+xml",
		"a.png":   "image/png",
		"a.jpg":   "image/jpeg",
		"a.jpeg":  "image/jpeg",
		"a.gif":   "image/gif",
		"a.webp":  "image/webp",
		"a.avif":  "image/avif",
		"a.ico":   "image/x-icon",
		"a.woff":  "font/woff",
		"a.woff2": "font/woff2",
		"a.txt":   "text/plain; charset=utf-8",
		"a.xml":   "text/xml; charset=utf-8",
		"a.wasm":  "application/wasm",
		"a.pdf":   "application/pdf",
		"a.map":   "application/json",
		"A.PNG":   "image/png",
		"a.zzzq":  "application/octet-stream",
		"noext":   "application/octet-stream",
	}
	for name := range want {
		writeFile(t, dir, name, "x")
	}
	fx := &fixture{t: t}
	log := logging.New(fx, logging.Debug)
	h, err := New([]Mount{{"/s", dir}}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fx.start(h, log)
	for name, ct := range want {
		resp, body := fx.do("GET", "/s/"+name)
		expectStatus(t, name, resp, body, 200)
		expectHeader(t, name, resp, "Content-Type", ct)
		expectHeader(t, name, resp, "X-Content-Type-Options", "nosniff")
	}
}

func TestConditional(t *testing.T) {
	fx := newFixture(t)
	const p = "/assets/hello.txt"
	first, _ := fx.do("GET", p)
	etag := first.Header.Get("ETag")
	before := "Tue, 02 Jan 2024 03:04:04 GMT"
	after := "Tue, 02 Jan 2024 03:04:06 GMT"
	for _, tc := range []struct {
		name    string
		headers []string
		want    int
	}{
		{"If-None-Match equal", []string{"If-None-Match: " + etag}, 304},
		{"If-None-Match weak form", []string{"If-None-Match: W/" + etag}, 304},
		{"If-None-Match in a list", []string{`If-None-Match: "nope", ` + etag}, 304},
		{"If-None-Match split over lines", []string{`If-None-Match: "nope"`, "If-None-Match: " + etag}, 304},
		{"If-None-Match star", []string{"If-None-Match: *"}, 304},
		{"If-None-Match other", []string{`If-None-Match: "other"`}, 200},
		{"If-None-Match malformed", []string{"If-None-Match: " + strings.Trim(etag, `"`)}, 200},
		{"If-Modified-Since same second", []string{"If-Modified-Since: " + fileTimeHTTP}, 304},
		{"If-Modified-Since later", []string{"If-Modified-Since: " + after}, 304},
		{"If-Modified-Since earlier", []string{"If-Modified-Since: " + before}, 200},
		{"If-Modified-Since RFC 850", []string{"If-Modified-Since: Tuesday, 02-Jan-24 03:04:05 GMT"}, 304},
		{"If-Modified-Since invalid", []string{"If-Modified-Since: yesterday"}, 200},
		{"If-None-Match beats If-Modified-Since", []string{`If-None-Match: "other"`, "If-Modified-Since: " + after}, 200},
		{"If-Match equal", []string{"If-Match: " + etag}, 200},
		{"If-Match star", []string{"If-Match: *"}, 200},
		{"If-Match other", []string{`If-Match: "other"`}, 412},
		{"If-Match weak never matches", []string{"If-Match: W/" + etag}, 412},
		{"If-Unmodified-Since later", []string{"If-Unmodified-Since: " + after}, 200},
		{"If-Unmodified-Since same", []string{"If-Unmodified-Since: " + fileTimeHTTP}, 200},
		{"If-Unmodified-Since earlier", []string{"If-Unmodified-Since: " + before}, 412},
		{"If-Match beats If-Unmodified-Since", []string{"If-Match: " + etag, "If-Unmodified-Since: " + before}, 200},
		{"412 before 304", []string{`If-Match: "other"`, "If-None-Match: " + etag}, 412},
	} {
		for _, method := range []string{"GET", "HEAD"} {
			resp, body := fx.do(method, p, tc.headers...)
			what := method + " " + tc.name
			expectStatus(t, what, resp, body, tc.want)
			switch tc.want {
			case 304:
				if body != "" {
					t.Errorf("%s: 304 with body %q", what, body)
				}
				expectHeader(t, what, resp, "ETag", etag)
				expectHeader(t, what, resp, "Last-Modified", fileTimeHTTP)
				expectHeader(t, what, resp, "Cache-Control", "no-cache")
				expectHeader(t, what, resp, "Content-Length", "")
			case 200:
				if method == "GET" && body != "hello, world\n" {
					t.Errorf("%s: body %q", what, body)
				}
			case 412:
				expectHeader(t, what, resp, "Content-Type", "text/plain; charset=utf-8")
			}
		}
	}
}

func TestRanges(t *testing.T) {
	fx := newFixture(t)
	data := pattern(4096)
	const p = "/assets/data.bin"
	first, _ := fx.do("GET", p)
	etag := first.Header.Get("ETag")
	for _, tc := range []struct {
		name       string
		headers    []string
		want       int
		start, end int // the bytes of a 206, end exclusive
	}{
		{"first 100", []string{"Range: bytes=0-99"}, 206, 0, 100},
		{"from 100", []string{"Range: bytes=100-"}, 206, 100, 4096},
		{"last 500", []string{"Range: bytes=-500"}, 206, 3596, 4096},
		{"one byte", []string{"Range: bytes=4095-4095"}, 206, 4095, 4096},
		{"end past the size", []string{"Range: bytes=4000-999999999999999999999"}, 206, 4000, 4096},
		{"suffix longer than the file", []string{"Range: bytes=-10000"}, 206, 0, 4096},
		{"whitespace and case", []string{"Range: Bytes= 10-19 "}, 206, 10, 20},
		{"empty list elements", []string{"Range: bytes=,10-19,"}, 206, 10, 20},
		{"start at the size", []string{"Range: bytes=4096-"}, 416, 0, 0},
		{"start past the size", []string{"Range: bytes=5000-6000"}, 416, 0, 0},
		{"zero suffix", []string{"Range: bytes=-0"}, 416, 0, 0},
		{"all unsatisfiable", []string{"Range: bytes=5000-, -0"}, 416, 0, 0},
		{"several ranges: whole file", []string{"Range: bytes=0-9,20-29"}, 200, 0, 4096},
		{"one of several satisfiable: whole file", []string{"Range: bytes=0-9,5000-"}, 200, 0, 4096},
		{"inverted: ignored", []string{"Range: bytes=20-10"}, 200, 0, 4096},
		{"garbage: ignored", []string{"Range: bytes=a-b"}, 200, 0, 4096},
		{"other unit: ignored", []string{"Range: items=0-9"}, 200, 0, 4096},
		{"no equals: ignored", []string{"Range: bytes"}, 200, 0, 4096},
		{"repeated header: ignored", []string{"Range: bytes=0-9", "Range: bytes=10-19"}, 200, 0, 4096},
		{"If-Range current ETag", []string{"Range: bytes=0-9", "If-Range: " + etag}, 206, 0, 10},
		{"If-Range old ETag", []string{"Range: bytes=0-9", `If-Range: "old"`}, 200, 0, 4096},
		{"If-Range weak ETag", []string{"Range: bytes=0-9", "If-Range: W/" + etag}, 200, 0, 4096},
		{"If-Range current date", []string{"Range: bytes=0-9", "If-Range: " + fileTimeHTTP}, 206, 0, 10},
		{"If-Range other date", []string{"Range: bytes=0-9", "If-Range: Tue, 02 Jan 2024 03:04:06 GMT"}, 200, 0, 4096},
		{"If-Range old ETag, unsatisfiable range", []string{"Range: bytes=9000-", `If-Range: "old"`}, 200, 0, 4096},
		{"304 before the range", []string{"Range: bytes=0-9", "If-None-Match: " + etag}, 304, 0, 0},
	} {
		resp, body := fx.do("GET", p, tc.headers...)
		expectStatus(t, tc.name, resp, body, tc.want)
		if resp.Header.Get("Accept-Ranges") != "bytes" {
			t.Errorf("%s: Accept-Ranges %q", tc.name, resp.Header.Get("Accept-Ranges"))
		}
		switch tc.want {
		case 206:
			if body != string(data[tc.start:tc.end]) {
				t.Errorf("%s: got %d bytes, want bytes %d-%d", tc.name, len(body), tc.start, tc.end-1)
			}
			expectHeader(t, tc.name, resp, "Content-Range", fmt.Sprintf("bytes %d-%d/4096", tc.start, tc.end-1))
			expectHeader(t, tc.name, resp, "Content-Length", fmt.Sprint(tc.end-tc.start))
			expectHeader(t, tc.name, resp, "Content-Type", "application/octet-stream")
			expectHeader(t, tc.name, resp, "ETag", etag)
		case 200:
			if body != string(data) {
				t.Errorf("%s: want the whole file, got %d bytes", tc.name, len(body))
			}
			expectHeader(t, tc.name, resp, "Content-Range", "")
		case 416:
			expectHeader(t, tc.name, resp, "Content-Range", "bytes */4096")
		}
	}

	// HEAD with a Range answers like GET, without the body.
	resp, body := fx.do("HEAD", p, "Range: bytes=0-99")
	expectStatus(t, "HEAD range", resp, body, 206)
	expectHeader(t, "HEAD range", resp, "Content-Range", "bytes 0-99/4096")
	expectHeader(t, "HEAD range", resp, "Content-Length", "100")

	// An empty file has no bytes to select: the Range is ignored.
	resp, body = fx.do("GET", "/assets/empty.txt", "Range: bytes=0-10")
	expectStatus(t, "empty range", resp, body, 200)

	// Two requests on one connection after a 416 and a 206: framing holds.
	c, err := net.DialTimeout("tcp", fx.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET "+p+" HTTP/1.1\r\nHost: x\r\nRange: bytes=9999-\r\n\r\n"+
		"GET "+p+" HTTP/1.1\r\nHost: x\r\nRange: bytes=1-2\r\n\r\n"+
		"GET /assets/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for i, want := range []string{"Requested Range Not Satisfiable\n", string(data[1:3]), "hello, world\n"} {
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("pipelined response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Errorf("pipelined response %d: %q, want %q", i, b, want)
		}
	}
}

func TestPrecompressed(t *testing.T) {
	fx := newFixture(t)
	const (
		plain = "console.log('plain')\n"
		br    = "BROTLI BYTES"
		gz    = "GZIP BYTES, LONGER"
	)
	etags := map[string]string{}
	for _, tc := range []struct {
		ae       string
		body, ce string
	}{
		{"", plain, ""},
		{"gzip, deflate, br", br, "br"},
		{"br", br, "br"},
		{"gzip", gz, "gzip"},
		{"x-gzip", gz, "gzip"},
		{"GZIP", gz, "gzip"},
		{"br;q=0, gzip", gz, "gzip"},
		{"br; q=0.0, gzip;q=0.1", gz, "gzip"},
		{"gzip;q=0.9, br;q=0.5", gz, "gzip"},
		{"gzip;q=0.5, br;q=0.5", br, "br"},
		{"*", br, "br"},
		{"*;q=0", plain, ""},
		{"br;q=0, *", gz, "gzip"},
		{"gzip;q=0, br;q=0", plain, ""},
		{"identity", plain, ""},
		{"deflate", plain, ""},
	} {
		for _, method := range []string{"GET", "HEAD"} {
			what := fmt.Sprintf("%s Accept-Encoding %q", method, tc.ae)
			var resp *http.Response
			var body string
			if tc.ae == "" {
				resp, body = fx.do(method, "/assets/app.js")
			} else {
				resp, body = fx.do(method, "/assets/app.js", "Accept-Encoding: "+tc.ae)
			}
			expectStatus(t, what, resp, body, 200)
			if method == "GET" && body != tc.body {
				t.Errorf("%s: body %q, want %q", what, body, tc.body)
			}
			expectHeader(t, what, resp, "Content-Length", fmt.Sprint(len(tc.body)))
			expectHeader(t, what, resp, "Content-Encoding", tc.ce)
			expectHeader(t, what, resp, "Content-Type", "text/javascript; charset=utf-8")
			expectHeader(t, what, resp, "Vary", "Accept-Encoding")
			etags[tc.ce] = resp.Header.Get("ETag")
		}
	}
	if len(etags) != 3 || etags[""] == etags["br"] || etags[""] == etags["gzip"] || etags["br"] == etags["gzip"] {
		t.Errorf("ETags per encoding not distinct: %v", etags)
	}
	if !strings.HasSuffix(etags["br"], `-br"`) || !strings.HasSuffix(etags["gzip"], `-gz"`) {
		t.Errorf("ETags: %v", etags)
	}

	// Conditionals and ranges apply to the representation chosen.
	resp, body := fx.do("GET", "/assets/app.js", "Accept-Encoding: br", "If-None-Match: "+etags["br"])
	expectStatus(t, "br If-None-Match", resp, body, 304)
	expectHeader(t, "br 304", resp, "Vary", "Accept-Encoding")
	resp, body = fx.do("GET", "/assets/app.js", "Accept-Encoding: br", "If-None-Match: "+etags[""])
	expectStatus(t, "br with the identity ETag", resp, body, 200)
	resp, body = fx.do("GET", "/assets/app.js", "Accept-Encoding: br", "Range: bytes=0-5")
	expectStatus(t, "br range", resp, body, 206)
	if body != br[:6] {
		t.Errorf("br range: %q", body)
	}
	expectHeader(t, "br range", resp, "Content-Range", fmt.Sprintf("bytes 0-5/%d", len(br)))
	expectHeader(t, "br range", resp, "Content-Encoding", "br")

	// Only a .gz sibling: a br-only client gets the file, with Vary.
	resp, body = fx.do("GET", "/assets/only.css", "Accept-Encoding: br")
	expectStatus(t, "only.css br", resp, body, 200)
	if body != "body{}" {
		t.Errorf("only.css br: %q", body)
	}
	expectHeader(t, "only.css br", resp, "Vary", "Accept-Encoding")
	resp, body = fx.do("GET", "/assets/only.css", "Accept-Encoding: br, gzip")
	if body != "GZIP CSS" || resp.Header.Get("Content-Type") != "text/css; charset=utf-8" {
		t.Errorf("only.css gzip: %q %q", body, resp.Header.Get("Content-Type"))
	}

	// No siblings: no Vary. A stale sibling (older than the file) is not used.
	resp, _ = fx.do("GET", "/assets/hello.txt", "Accept-Encoding: br, gzip")
	expectHeader(t, "no sibling", resp, "Vary", "")
	expectHeader(t, "no sibling", resp, "Content-Encoding", "")
	for _, ae := range []string{"gzip", ""} {
		resp, body = fx.do("GET", "/assets/stale.js", "Accept-Encoding: "+ae)
		if body != "new content" {
			t.Errorf("stale sibling (%q): body %q", ae, body)
		}
		expectHeader(t, "stale sibling", resp, "Vary", "")
	}

	// The .gz itself, asked for by name, is a gzip file.
	resp, body = fx.do("GET", "/assets/app.js.gz", "Accept-Encoding: gzip")
	if body != gz || resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Content-Type") != "application/gzip" {
		t.Errorf("app.js.gz by name: %q %v", body, resp.Header)
	}
}

func TestCacheControl(t *testing.T) {
	fx := newFixture(t)
	resp, _ := fx.do("GET", "/assets/app.3f9a2c1e.js")
	expectHeader(t, "hashed", resp, "Cache-Control", "public, max-age=31536000, immutable")
	resp, _ = fx.do("GET", "/assets/app.js")
	expectHeader(t, "plain", resp, "Cache-Control", "no-cache")
	resp, _ = fx.do("GET", "/assets/app.3f9a2c1e.js", "If-None-Match: *")
	expectStatus(t, "hashed 304", resp, "", 304)
	expectHeader(t, "hashed 304", resp, "Cache-Control", "public, max-age=31536000, immutable")
}

func TestDirectories(t *testing.T) {
	fx := newFixture(t)
	for _, tc := range []struct {
		path, location string
	}{
		{"/assets/docs", "/assets/docs/"},
		{"/assets/docs?lang=en&x=%20", "/assets/docs/?lang=en&x=%20"},
		{"/assets", "/assets/"},
		{"/assets?q=1", "/assets/?q=1"},
		{"/assets//docs", "/assets/docs/"},
		{"/assets/sp%20ace", "/assets/sp%20ace/"},
		{"/assets/linkdir-in", "/assets/linkdir-in/"},
	} {
		resp, body := fx.raw("GET", tc.path)
		expectStatus(t, tc.path, resp, body, 301)
		expectHeader(t, tc.path, resp, "Location", tc.location)
	}
	for path, want := range map[string]string{
		"/assets/docs/":               "<h1>docs</h1>",
		"/assets/":                    "<h1>root</h1>",
		"/assets/docs/page.html":      "<p>page</p>",
		"/assets/linkdir-in/file.txt": "deep",
	} {
		resp, body := fx.do("GET", path)
		expectStatus(t, path, resp, body, 200)
		if body != want {
			t.Errorf("%s: %q, want %q", path, body, want)
		}
		if strings.HasSuffix(path, "/") {
			expectHeader(t, path, resp, "Content-Type", "text/html; charset=utf-8")
		}
	}
	for _, path := range []string{"/assets/noindex/", "/assets/hello.txt/", "/assets/missing/", "/assets/missing", "/assets/sub/"} {
		resp, body := fx.do("GET", path)
		expectStatus(t, path, resp, body, 404)
		if body != "Not Found\n" {
			t.Errorf("%s: body %q", path, body)
		}
		expectHeader(t, path, resp, "Content-Type", "text/plain; charset=utf-8")
	}
}

// TestNoWayOut tries to reach secret.txt and secretdir/, which sit beside
// the mounted directory, and the dotfiles inside it.
func TestNoWayOut(t *testing.T) {
	fx := newFixture(t)
	for _, tc := range []struct {
		target string
		want   int
	}{
		{"/assets/../secret.txt", 404},
		{"/assets/./hello.txt", 404},
		{"/assets/sub/../../secret.txt", 404},
		{"/assets/%2e%2e/secret.txt", 404},
		{"/assets/%2E%2E/secret.txt", 404},
		{"/assets/.%2e/secret.txt", 404},
		{"/assets/..%2fsecret.txt", 404},
		{"/assets/..%2Fsecret.txt", 404},
		{"/assets%2f..%2fsecret.txt", 404},
		{"/assets/sub%2f..%2f..%2fsecret.txt", 404},
		{"/assets/%2e%2e%2fsecret.txt", 404},
		{"/assets/..\\secret.txt", 404},
		{"/assets/..%5csecret.txt", 404},
		{"/assets/%5C..%5C..%5Csecret.txt", 404},
		{"/assets/hello.txt%00.png", 400},
		{"/assets/a%00b", 400},
		{"/assets/bad%zz", 400},
		{"/assets/bad%2", 400},
		{"/assets/link-out.txt", 404},
		{"/assets/link-abs-out.txt", 404},
		{"/assets/link-tricky.txt", 404},
		{"/assets/linkdir-out/secret.txt", 404},
		{"/assets/linkdir-out/", 404},
		{"/assets/.env", 404},
		{"/assets/%2eenv", 404},
		{"/assets/.git/config", 404},
		{"/assets/.git/", 404},
		{"/assets/sub/.hidden", 404},
		{"/assets/fifo.txt", 404},
		{"/assets/%2e%2e", 404},
		{"/assets/..", 404},
	} {
		resp, body := fx.raw("GET", tc.target)
		expectStatus(t, tc.target, resp, body, tc.want)
		if strings.Contains(body, "SECRET") {
			t.Errorf("%s: leaked %q", tc.target, body)
		}
		if strings.HasPrefix(body, "app:") {
			t.Errorf("%s: fell through to the app", tc.target)
		}
	}
	// Escaping symlinks are logged, so an admin can see why.
	if !strings.Contains(fx.logText(), "link-out.txt") {
		t.Errorf("escaping symlink not logged; log:\n%s", fx.logText())
	}

	// Symlinks that stay inside work, relative ones even through "..".
	// (An absolute symlink is refused even if it points inside: os.Root
	// resolves every link relative to the mount.)
	for target, want := range map[string]int{
		"/assets/link-in.txt":              200,
		"/assets/sub/link-up.txt":          200,
		"/assets/link-abs-in.txt":          404,
		"/assets/.well-known/security.txt": 200,
	} {
		resp, body := fx.raw("GET", target)
		expectStatus(t, target, resp, body, want)
		if want == 200 && !strings.Contains(body, "hello") && !strings.Contains(body, "Contact") {
			t.Errorf("%s: body %q", target, body)
		}
	}
	// Outside the mount: the app, untouched.
	for _, target := range []string{"/assetsx/hello.txt", "/secret.txt", "/other/../assets/hello.txt"} {
		resp, body := fx.raw("GET", target)
		if resp.StatusCode != 200 || body != "app: "+target {
			t.Errorf("%s: %d %q, want the app", target, resp.StatusCode, body)
		}
	}
}

func TestUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every file")
	}
	fx := newFixture(t)
	p := writeFile(t, fx.public, "locked.txt", "x")
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	resp, body := fx.do("GET", "/assets/locked.txt")
	expectStatus(t, "locked", resp, body, 403)
}

// TestBigFile serves 50 MiB, whole and as a range from the middle, and
// checks every byte.
func TestBigFile(t *testing.T) {
	fx := newFixture(t)
	const size = 50 << 20
	data := make([]byte, size)
	for i := 0; i < size; i += 8 {
		v := uint64(i) * 0x9E3779B97F4A7C15
		for j := 0; j < 8; j++ {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	if err := os.WriteFile(filepath.Join(fx.public, "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := client.Get(fx.url + "/assets/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	hash := sha256.New()
	n, err := io.Copy(hash, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("big.bin: %d bytes, %v", n, err)
	}
	if got, want := hash.Sum(nil), sha256.Sum256(data); !bytes.Equal(got, want[:]) {
		t.Fatal("big.bin: content differs")
	}
	t.Logf("50 MiB in %v", time.Since(start))
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("50 MiB took %v", d)
	}
	resp2, body := fx.do("GET", "/assets/big.bin", "Range: bytes=30000000-30999999")
	expectStatus(t, "big range", resp2, "", 206)
	if body != string(data[30000000:31000000]) {
		t.Error("big.bin range: content differs")
	}
}

// TestPrecompressedChanges: siblings are looked up again when the file
// changes, and within siblingTTL when only the siblings change.
func TestPrecompressedChanges(t *testing.T) {
	fx := newFixture(t)
	const p = "/assets/late.js"
	writeFile(t, fx.public, "late.js", "v1")
	resp, body := fx.do("GET", p, "Accept-Encoding: gzip")
	if body != "v1" || resp.Header.Get("Vary") != "" {
		t.Fatalf("no sibling yet: %q, Vary %q", body, resp.Header.Get("Vary"))
	}
	// A sibling appears beside the unchanged file: used within the TTL.
	writeFile(t, fx.public, "late.js.gz", "GZ1")
	deadline := time.Now().Add(siblingTTL + 2*time.Second)
	for {
		resp, body = fx.do("GET", p, "Accept-Encoding: gzip")
		if body == "GZ1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new sibling not used after %v: %q", siblingTTL, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	expectHeader(t, "new sibling", resp, "Vary", "Accept-Encoding")
	// The file is rebuilt (newer mtime) without its sibling: the old .gz is
	// now stale, and not sent even once.
	later := fileTime.Add(time.Hour)
	os.WriteFile(filepath.Join(fx.public, "late.js"), []byte("v2"), 0o644)
	os.Chtimes(filepath.Join(fx.public, "late.js"), later, later)
	resp, body = fx.do("GET", p, "Accept-Encoding: gzip")
	if body != "v2" {
		t.Errorf("after a rebuild: %q, want v2", body)
	}
	expectHeader(t, "stale sibling", resp, "Vary", "")
	// The sibling vanishes while cached as present: the file is sent.
	writeFile(t, fx.public, "late2.js", "plain2")
	writeFile(t, fx.public, "late2.js.br", "BR2")
	if _, body = fx.do("GET", "/assets/late2.js", "Accept-Encoding: br"); body != "BR2" {
		t.Fatalf("late2.js: %q", body)
	}
	os.Remove(filepath.Join(fx.public, "late2.js.br"))
	if resp, body = fx.do("GET", "/assets/late2.js", "Accept-Encoding: br"); resp.StatusCode != 200 || body != "plain2" {
		t.Errorf("sibling removed: %d %q", resp.StatusCode, body)
	}
}

// TestConcurrent fetches files with and without siblings from many
// goroutines at once (for the race detector: the sibling cache is the
// Handler's only shared state that changes).
func TestConcurrent(t *testing.T) {
	fx := newFixture(t)
	want := map[string]string{
		"/assets/app.js":    "BROTLI BYTES",
		"/assets/only.css":  "GZIP CSS",
		"/assets/hello.txt": "hello, world\n",
		"/assets/stale.js":  "new content",
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				for p, body := range want {
					req, _ := http.NewRequest("GET", fx.url+p, nil)
					req.Header.Set("Accept-Encoding", "br, gzip")
					resp, err := client.Do(req)
					if err != nil {
						errs <- err.Error()
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if string(b) != body {
						errs <- fmt.Sprintf("%s: %q, want %q", p, b, body)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
