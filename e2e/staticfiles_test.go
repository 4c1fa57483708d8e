package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStaticFiles runs taipan with --static beside the test app: files
// under the mount come from Go, everything else reaches Python, and the
// Python worker never sees a request for the mount, not even one that
// fails (404, 405, a traversal attempt).
func TestStaticFiles(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"hello.txt":       "hello from disk\n",
		"app.js":          "console.log('plain')\n",
		"app.js.gz":       "pretend-gzip",
		"app.3f9a2c1e.js": "hashed",
		"docs/index.html": "<h1>docs</h1>",
	}
	stamp := time.Now().Add(-time.Hour).Truncate(time.Second)
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		// One mtime for all: the map's order must not make a .gz sibling
		// older than its original (an older sibling is ignored as stale).
		if err := os.Chtimes(p, stamp, stamp); err != nil {
			t.Fatal(err)
		}
	}
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7 / 3)
	}
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(dir), "outside-secret.txt"), []byte("SECRET"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startTestApp(t, "-w", "1", "--static", "/static="+dir)

	// A file, with the headers a static server sends.
	resp, body := httpDo(t, "GET", s.URL+"/static/hello.txt", nil, nil)
	if resp.StatusCode != 200 || body != files["hello.txt"] {
		t.Fatalf("GET /static/hello.txt: %d %q", resp.StatusCode, body)
	}
	for name, want := range map[string]string{
		"Content-Type":           "text/plain; charset=utf-8",
		"Content-Length":         fmt.Sprint(len(files["hello.txt"])),
		"Accept-Ranges":          "bytes",
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "no-cache",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("/static/hello.txt: %s = %q, want %q", name, got, want)
		}
	}
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Last-Modified") == "" {
		t.Errorf("/static/hello.txt: no validators: %v", resp.Header)
	}

	// Conditional, range, precompressed, hashed, HEAD.
	resp, body = httpDo(t, "GET", s.URL+"/static/hello.txt", nil, map[string]string{"If-None-Match": etag})
	if resp.StatusCode != 304 || body != "" {
		t.Errorf("If-None-Match: %d %q", resp.StatusCode, body)
	}
	resp, body = httpDo(t, "GET", s.URL+"/static/hello.txt", nil, map[string]string{"Range": "bytes=6-9"})
	if resp.StatusCode != 206 || body != "from" || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 6-9/%d", len(files["hello.txt"])) {
		t.Errorf("Range: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Range"))
	}
	resp, body = httpDo(t, "GET", s.URL+"/static/app.js", nil, map[string]string{"Accept-Encoding": "gzip, br"})
	if body != "pretend-gzip" || resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("precompressed: %q %v", body, resp.Header)
	}
	resp, _ = httpDo(t, "GET", s.URL+"/static/app.3f9a2c1e.js", nil, nil)
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
		t.Errorf("hashed name: Cache-Control %q", cc)
	}
	resp, body = httpDo(t, "HEAD", s.URL+"/static/big.bin", nil, nil)
	if resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Length") != fmt.Sprint(len(big)) {
		t.Errorf("HEAD big.bin: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Length"))
	}

	// A big file arrives whole (sendfile from the Go process).
	c := timeoutClient(testTimeout)
	r, err := c.Get(s.URL + "/static/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	r.Body.Close()
	if want := sha256.Sum256(big); err != nil || n != int64(len(big)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Errorf("big.bin: %d bytes, %v, digest match %v", n, err, bytes.Equal(h.Sum(nil), want[:]))
	}
	c.CloseIdleConnections()

	// Directories: the redirect keeps the query; the index is served.
	resp, _ = rawResponse(t, s, "GET /static/docs?x=1 HTTP/1.1\r\nHost: t\r\n\r\n", "GET")
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "/static/docs/?x=1" {
		t.Errorf("/static/docs: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code, body := httpGet(t, s, "/static/docs/"); code != 200 || body != files["docs/index.html"] {
		t.Errorf("/static/docs/: %d %q", code, body)
	}

	// Failures are answered by Go, not handed to Python.
	for _, tc := range []struct {
		raw  string
		want int
	}{
		{"GET /static/missing.txt HTTP/1.1\r\nHost: t\r\n\r\n", 404},
		{"GET /static/../outside-secret.txt HTTP/1.1\r\nHost: t\r\n\r\n", 404},
		{"GET /static/%2e%2e/outside-secret.txt HTTP/1.1\r\nHost: t\r\n\r\n", 404},
		{"GET /static/..%2foutside-secret.txt HTTP/1.1\r\nHost: t\r\n\r\n", 404},
		{"GET /static/a%00b HTTP/1.1\r\nHost: t\r\n\r\n", 400},
		{"POST /static/hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi", 405},
	} {
		line := tc.raw[:strings.Index(tc.raw, "\r\n")]
		resp, body := rawResponse(t, s, tc.raw, strings.Fields(line)[0])
		if resp.StatusCode != tc.want || strings.Contains(body, "SECRET") || strings.Contains(body, "not found:") {
			t.Errorf("%s: %d %q, want %d from Go", line, resp.StatusCode, body, tc.want)
		}
	}

	// Outside the mount, Python answers (testapp's 404 says "not found: PATH").
	if code, body := httpGet(t, s, "/staticx/hello.txt"); code != 404 || body != "not found: /staticx/hello.txt" {
		t.Errorf("/staticx/hello.txt: %d %q, want the app's 404", code, body)
	}
	if pid := workerPid(t, s); pid <= 0 {
		t.Errorf("/pid: %d", pid)
	}
	// testapp counts every request but /counter: exactly the two above
	// reached Python, none of the static ones.
	if code, body := httpGet(t, s, "/counter"); code != 200 || body != "2" {
		t.Errorf("/counter: %d %q: the Python worker saw %s requests, want 2", code, body, body)
	}
	if strings.Contains(s.Stderr(), "[ERROR]") {
		t.Errorf("errors in the log:\n%s", s.Stderr())
	}
}

// TestStaticFilesBadDir: a --static directory that does not exist stops
// taipan at startup with a message naming it.
func TestStaticFilesBadDir(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	code, out := runTaipan(t, 30*time.Second, "--python", pythonPath(), "--static", "/s="+missing, "-b", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--pythonpath", appsDir(t), "testapp:app")
	if code == 0 || !strings.Contains(out, missing) {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
}
