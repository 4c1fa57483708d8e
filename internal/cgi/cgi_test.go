package cgi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"taipan/internal/edge"
	"taipan/internal/logging"
)

// These tests run real scripts under a real edge.Server on loopback. They
// do not run in parallel: a script file written while another goroutine
// forks can be briefly held open by the child, and executing it then fails
// with ETXTBSY.

const ioTimeout = 10 * time.Second

// syncBuffer is a log destination shared by the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is an edge.Server on loopback that sends what the Handler
// matches to it and answers everything else "app", as taipan's router does.
type testServer struct {
	t    *testing.T
	addr string
	logs *syncBuffer
}

func serve(t *testing.T, cfg Config) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	log := logging.New(logs, logging.Debug)
	h, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	router := edge.HandlerFunc(func(w edge.ResponseWriter, r *edge.Request) {
		if h.Match(r.Path) {
			h.Serve(w, r)
			return
		}
		w.WriteHead(&edge.ResponseHead{
			Code:   200,
			Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain"}},
		}, []byte("app\n"), true)
	})
	srv := edge.NewServer(edge.DefaultConfig(), router, log)
	ln, err := srv.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	return &testServer{t: t, addr: ln.Addr().String(), logs: logs}
}

// mountAt serves dir at /cgi-bin with the default settings.
func mountAt(t *testing.T, dir string) *testServer {
	return serve(t, Config{Mounts: []Mount{{Prefix: "/cgi-bin", Dir: dir}}})
}

// writeFiles writes files (relative path → content) under dir; names
// ending in .sh or .py are made executable.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") || strings.HasSuffix(name, ".py") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// dial opens a connection with a deadline and sends a request: the request
// line, a Host (unless header has one), header, Connection: close, and
// body with its Content-Length when body is not nil.
func (ts *testServer) dial(method, target string, header []string, body []byte) (net.Conn, *bufio.Reader) {
	ts.t.Helper()
	c, err := net.DialTimeout("tcp", ts.addr, ioTimeout)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(ioTimeout))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, target)
	hasHost := false
	for _, h := range header {
		hasHost = hasHost || strings.HasPrefix(strings.ToLower(h), "host:")
		b.WriteString(h + "\r\n")
	}
	if !hasHost {
		b.WriteString("Host: test.example\r\n")
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		ts.t.Fatal(err)
	}
	if _, err := c.Write(body); err != nil {
		ts.t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// do sends a request and reads the whole response; bodyErr is the error
// reading the body ended with, if any (a response cut short).
func (ts *testServer) do(method, target string, header []string, body []byte) (resp *http.Response, respBody string, bodyErr error) {
	ts.t.Helper()
	_, br := ts.dial(method, target, header, body)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, target, err)
	}
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// get does a GET and fails the test when the body cannot be read whole.
func (ts *testServer) get(target string, header ...string) (*http.Response, string) {
	ts.t.Helper()
	resp, body, err := ts.do("GET", target, header, nil)
	if err != nil {
		ts.t.Fatalf("GET %s: reading body: %v", target, err)
	}
	return resp, body
}

// waitLog waits until the server log contains substr.
func (ts *testServer) waitLog(substr string) {
	ts.t.Helper()
	if !poll(3*time.Second, func() bool { return strings.Contains(ts.logs.String(), substr) }) {
		ts.t.Errorf("log lacks %q", substr)
	}
}

// poll checks cond until it holds or timeout passes.
func poll(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// procState returns a process's state letter ('R', 'S', 'Z', ...) and its
// parent's pid, or 0 when there is no such process.
func procState(pid int) (state byte, ppid int) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')') // the command name may hold anything
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, 0
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0][0], ppid
}

// alive reports whether pid is a live process (not gone, not a zombie
// waiting for a parent that is not us to reap it).
func alive(pid int) bool {
	st, _ := procState(pid)
	return st != 0 && st != 'Z'
}

// readPid waits for a script to write its pid file and returns the pid.
func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	if !poll(5*time.Second, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}) {
		t.Fatalf("no pid in %s", path)
	}
	return pid
}

// requireGone fails unless pid dies within a few seconds.
func requireGone(t *testing.T, what string, pid int) {
	t.Helper()
	if !poll(5*time.Second, func() bool { return !alive(pid) }) {
		syscall.Kill(pid, syscall.SIGKILL) // our own test script's process
		t.Errorf("%s (pid %d) is still running", what, pid)
	}
}

const envScript = `#!/usr/bin/python3
import json, os, sys
body = sys.stdin.read()
sys.stdout.write("Content-Type: application/json\r\n\r\n")
sys.stdout.write(json.dumps({"env": dict(os.environ), "stdin": body, "cwd": os.getcwd()}))
`

func TestCGIEnvironment(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	t.Setenv("TAIPAN_CGI_TEST_SECRET", "must not leak")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"sub/env.py": envScript})
	ts := serve(t, Config{
		Mounts: []Mount{{Prefix: "/cgi-bin", Dir: dir}},
		Env:    []string{"EXTRA_VAR=from config"},
	})

	c, br := ts.dial("POST", "/cgi-bin/sub/env.py/extra/a%20b?x=1&y=%41", []string{
		"Host: example.test:8080",
		"User-Agent: cgi-test",
		"Content-Type: text/plain",
		"X-Multi: a",
		"X-Multi: b",
		"Cookie: a=1",
		"Cookie: b=2",
		"Proxy: http://evil.example:3128",
		"Proxy-Authorization: Basic c2VjcmV0",
		"Authorization: Basic dXNlcjpwdw==",
		"X_Spoof: 1",
	}, []byte("hello"))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, body %q, err %v", resp.StatusCode, raw, err)
	}
	var got struct {
		Env   map[string]string
		Stdin string
		Cwd   string
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}

	_, serverPort, _ := net.SplitHostPort(ts.addr)
	_, clientPort, _ := net.SplitHostPort(c.LocalAddr().String())
	want := map[string]string{
		"PATH":               defaultPath,
		"AUTH_TYPE":          "",
		"CONTENT_LENGTH":     "5",
		"CONTENT_TYPE":       "text/plain",
		"GATEWAY_INTERFACE":  "CGI/1.1",
		"PATH_INFO":          "/extra/a b",
		"PATH_TRANSLATED":    dir + "/extra/a b",
		"QUERY_STRING":       "x=1&y=%41",
		"REMOTE_ADDR":        "127.0.0.1",
		"REMOTE_HOST":        "127.0.0.1",
		"REMOTE_PORT":        clientPort,
		"REQUEST_METHOD":     "POST",
		"REQUEST_URI":        "/cgi-bin/sub/env.py/extra/a%20b?x=1&y=%41",
		"SCRIPT_NAME":        "/cgi-bin/sub/env.py",
		"SERVER_NAME":        "example.test",
		"SERVER_PORT":        serverPort,
		"SERVER_PROTOCOL":    "HTTP/1.1",
		"SERVER_SOFTWARE":    "taipan",
		"HTTP_HOST":          "example.test:8080",
		"HTTP_USER_AGENT":    "cgi-test",
		"HTTP_X_MULTI":       "a, b",
		"HTTP_COOKIE":        "a=1; b=2",
		"HTTP_AUTHORIZATION": "Basic dXNlcjpwdw==",
		"HTTP_CONNECTION":    "close",
		"EXTRA_VAR":          "from config",
	}
	for k, v := range want {
		if g, ok := got.Env[k]; !ok || g != v {
			t.Errorf("%s = %q (set: %v), want %q", k, g, ok, v)
		}
	}
	for k, v := range got.Env {
		if _, ok := want[k]; !ok && k != "LC_CTYPE" { // Python's PEP 538 locale coercion adds LC_CTYPE
			t.Errorf("unexpected variable %s=%q", k, v)
		}
	}
	for _, k := range []string{"HTTP_PROXY", "HTTP_PROXY_AUTHORIZATION", "HTTP_X_SPOOF", "HTTPS", "TAIPAN_CGI_TEST_SECRET"} {
		if v, ok := got.Env[k]; ok {
			t.Errorf("%s=%q must not be set", k, v)
		}
	}
	if got.Stdin != "hello" {
		t.Errorf("stdin %q, want %q", got.Stdin, "hello")
	}
	wantCwd, _ := filepath.EvalSymlinks(filepath.Join(dir, "sub"))
	if got.Cwd != wantCwd {
		t.Errorf("working directory %q, want %q", got.Cwd, wantCwd)
	}
}

// TestEnvironValues checks what a loopback HTTP request cannot show:
// HTTPS, an IPv6 Host, a unix socket's missing port.
func TestEnvironValues(t *testing.T) {
	h := &Handler{cfg: Config{Env: []string{"PATH=/opt/bin", "SERVER_NAME=pinned.example"}}}
	r := &edge.Request{
		Method: "GET", Target: "/x", Path: "/x", Proto: "HTTP/1.1",
		Host: "[::1]:8443", Scheme: "https", ServerName: "::1",
		Header: []edge.HeaderField{{Name: "Content-Length", Value: "0"}, {Name: "Transfer-Encoding", Value: "chunked"}},
		Body:   edge.NewMemoryBody(nil),
	}
	env := envMap(h.environ(r, &script{name: "/x"}))
	for k, v := range map[string]string{"HTTPS": "on", "SERVER_PORT": "443", "SERVER_NAME": "pinned.example", "PATH": "/opt/bin"} {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	for _, k := range []string{"CONTENT_LENGTH", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING", "PATH_TRANSLATED"} {
		if v, ok := env[k]; ok {
			t.Errorf("%s=%q must not be set", k, v)
		}
	}
	h.cfg.Env = nil
	if got := envMap(h.environ(r, &script{name: "/x"}))["SERVER_NAME"]; got != "[::1]" {
		t.Errorf("SERVER_NAME = %q, want [::1]", got)
	}
	r.Host = ""
	if got := envMap(h.environ(r, &script{name: "/x"}))["SERVER_NAME"]; got != "::1" {
		t.Errorf("SERVER_NAME without Host = %q, want the listener's ::1", got)
	}
}

// envMap is env as exec sees it: the last of duplicate keys wins.
func envMap(env []string) map[string]string {
	m := make(map[string]string)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

const infoScript = `#!/bin/sh
printf 'Content-Type: text/plain\n\n'
printf 'SCRIPT_NAME=%s\nPATH_INFO=%s\nPATH_TRANSLATED=%s\n' "$SCRIPT_NAME" "$PATH_INFO" "${PATH_TRANSLATED-unset}"
`

func TestCGIPathInfo(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a/b/info.sh": infoScript, "a/x.sh/info.sh": infoScript})
	ts := mountAt(t, dir)
	for _, tc := range []struct{ target, name, info, translated string }{
		{"/cgi-bin/a/b/info.sh", "/cgi-bin/a/b/info.sh", "", "unset"},
		{"/cgi-bin/a/b/info.sh?q=1", "/cgi-bin/a/b/info.sh", "", "unset"},
		{"/cgi-bin/a/b/info.sh/x/y", "/cgi-bin/a/b/info.sh", "/x/y", dir + "/x/y"},
		{"/cgi-bin/a/b/info.sh/", "/cgi-bin/a/b/info.sh", "/", dir + "/"},
		{"/cgi-bin/a/b/info.sh/p%20q%2Fr", "/cgi-bin/a/b/info.sh", "/p q/r", dir + "/p q/r"},
		{"/cgi-bin//a/b/info.sh/z", "/cgi-bin/a/b/info.sh", "/z", dir + "/z"},
		{"/cgi-bin/a/x.sh/info.sh/z", "/cgi-bin/a/x.sh/info.sh", "/z", dir + "/z"}, // a directory named like a script
		{"/cgi-bin/a/b/info.sh/.git/config", "/cgi-bin/a/b/info.sh", "/.git/config", dir + "/.git/config"},
	} {
		resp, body := ts.get(tc.target)
		want := fmt.Sprintf("SCRIPT_NAME=%s\nPATH_INFO=%s\nPATH_TRANSLATED=%s\n", tc.name, tc.info, tc.translated)
		if resp.StatusCode != 200 || body != want {
			t.Errorf("GET %s: %d %q, want 200 %q", tc.target, resp.StatusCode, body, want)
		}
	}
}

func TestCGIRequestBody(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"echo.sh":   "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\n\\n'\nexec cat\n",
		"ignore.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nignored\\n'\n",
		"method.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n%s %s\\n' \"$REQUEST_METHOD\" \"$(cat)\"\n",
	})
	ts := mountAt(t, dir)

	big := make([]byte, 3<<19) // 1.5 MiB: the edge spills it to a file
	rand.Read(big)
	resp, body, err := ts.do("POST", "/cgi-bin/echo.sh", nil, big)
	if err != nil || resp.StatusCode != 200 || body != string(big) {
		t.Fatalf("echo of %d bytes: status %d, %d bytes back, err %v", len(big), resp.StatusCode, len(body), err)
	}
	if resp.ContentLength != -1 {
		t.Errorf("a large answer should stream, got Content-Length %d", resp.ContentLength)
	}

	// A script that never reads its input still answers.
	resp, body, err = ts.do("POST", "/cgi-bin/ignore.sh", nil, big)
	if err != nil || resp.StatusCode != 200 || body != "ignored\n" {
		t.Errorf("ignoring script: %d %q %v", resp.StatusCode, body, err)
	}

	for _, m := range []string{"PUT", "PATCH", "DELETE", "FROBNICATE"} {
		resp, body, err := ts.do(m, "/cgi-bin/method.sh", nil, []byte("data"))
		if want := m + " data\n"; err != nil || resp.StatusCode != 200 || body != want {
			t.Errorf("%s: %d %q %v, want %q", m, resp.StatusCode, body, err, want)
		}
	}
}

// outputScripts writes, for each name, a script that prints the output
// given verbatim (kept in a file outside the mount).
func outputScripts(t *testing.T, dir string, outputs map[string]string) {
	t.Helper()
	outDir := t.TempDir()
	files := make(map[string]string)
	for name, out := range outputs {
		if err := os.WriteFile(filepath.Join(outDir, name), []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		files[name+".sh"] = fmt.Sprintf("#!/bin/sh\nexec cat '%s'\n", filepath.Join(outDir, name))
	}
	writeFiles(t, dir, files)
}

func TestCGIStatusAndLocation(t *testing.T) {
	dir := t.TempDir()
	outputScripts(t, dir, map[string]string{
		"notfound":  "Status: 404 Not Found\nContent-Type: text/plain\n\nnope\n",
		"teapot":    "Status: 418\r\nContent-Type: text/plain\r\n\r\n",
		"custom":    "Status: 299 Fine Indeed\nContent-Type: text/plain\n\nok",
		"client":    "Location: http://example.com/elsewhere\n\n",
		"local":     "Location: /cgi-bin/other.sh?q=1\n\n",
		"moved":     "Status: 301 Moved Permanently\nLocation: https://example.com/\nContent-Type: text/html\n\n<a href=\"https://example.com/\">moved</a>\n",
		"crlf":      "Content-Type: text/plain\r\nX-Extra:   yes  \r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\nbody\r\n",
		"empty":     "Content-Type: text/plain\n\n",
		"nocontent": "Status: 204 No Content\n\n",
	})
	ts := mountAt(t, dir)
	for _, tc := range []struct {
		name, status, body string
		header             map[string]string
	}{
		{"notfound", "404 Not Found", "nope\n", map[string]string{"Content-Type": "text/plain"}},
		{"teapot", "418 I'm a teapot", "", nil},
		{"custom", "299 Fine Indeed", "ok", nil},
		{"client", "302 Found", "", map[string]string{"Location": "http://example.com/elsewhere"}},
		{"local", "302 Found", "", map[string]string{"Location": "/cgi-bin/other.sh?q=1"}},
		{"moved", "301 Moved Permanently", "<a href=\"https://example.com/\">moved</a>\n", map[string]string{"Location": "https://example.com/"}},
		{"crlf", "200 OK", "body\r\n", map[string]string{"X-Extra": "yes"}},
		{"empty", "200 OK", "", nil},
		{"nocontent", "204 No Content", "", nil},
	} {
		resp, body := ts.get("/cgi-bin/" + tc.name + ".sh")
		if resp.Status != tc.status || body != tc.body {
			t.Errorf("%s: %q %q, want %q %q", tc.name, resp.Status, body, tc.status, tc.body)
		}
		for k, v := range tc.header {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", tc.name, k, got, v)
			}
		}
		if tc.name == "crlf" {
			if got := resp.Header.Values("Set-Cookie"); len(got) != 2 || got[0] != "a=1" || got[1] != "b=2" {
				t.Errorf("crlf: Set-Cookie %q", got)
			}
			if resp.Header.Get("Status") != "" {
				t.Error("the Status field was passed on as a header")
			}
		}
	}

	// A script that is done at once is answered whole, with a length. That
	// depends on it exiting within coalesceWait, so a loaded machine gets a
	// few tries.
	sentWhole := poll(3*time.Second, func() bool {
		resp, _ := ts.get("/cgi-bin/notfound.sh")
		return resp.ContentLength == int64(len("nope\n")) && len(resp.TransferEncoding) == 0
	})
	if !sentWhole {
		t.Error("a short answer from a script done at once was streamed, not sent with Content-Length")
	}

	resp, _, err := ts.do("HEAD", "/cgi-bin/notfound.sh", nil, nil)
	if err != nil || resp.StatusCode != 404 {
		t.Errorf("HEAD: %v %v", resp.Status, err)
	}
}

func TestCGIBadOutput(t *testing.T) {
	dir := t.TempDir()
	outputScripts(t, dir, map[string]string{
		"nohead":      "Content-Type: text/plain\n",
		"notype":      "X-Foo: bar\n\nbody",
		"garbage":     "this is not a header\n\n",
		"badname":     "Bad Name: x\nContent-Type: text/plain\n\n",
		"control":     "Content-Type: text/plain\nX-Evil: a\x01b\n\n",
		"injection":   "Content-Type: text/plain\nX-Evil: a\rInjected: 1\n\n",
		"nul":         "Content-Type: text/plain\nX-Evil: a\x00b\n\n",
		"folded":      "Content-Type: text/plain\nX-A: a\n  continued\n\n",
		"badstatus":   "Status: abc\nContent-Type: text/plain\n\n",
		"interim":     "Status: 100 Continue\nContent-Type: text/plain\n\n",
		"twostatus":   "Status: 200 OK\nStatus: 404 Not Found\nContent-Type: text/plain\n\n",
		"hugehead":    strings.Repeat("X-Pad: "+strings.Repeat("a", 90)+"\n", 800),
		"hugeline":    strings.Repeat("b", 100<<10),
		"badlocation": "Location: \nContent-Type: text/plain\n\n",
	})
	writeFiles(t, dir, map[string]string{
		"silent.sh": "#!/bin/sh\nexit 0\n",
		"fails.sh":  "#!/bin/sh\necho 'something broke' >&2\nexit 3\n",
	})
	ts := mountAt(t, dir)
	for name, reason := range map[string]string{
		"nohead":      "output ended inside the header block",
		"notype":      "no Content-Type",
		"garbage":     "malformed header line",
		"badname":     "malformed header line",
		"control":     "control character",
		"injection":   "control character",
		"nul":         "control character",
		"folded":      "folded header line",
		"badstatus":   "malformed Status",
		"interim":     "status 100 is not a final response",
		"twostatus":   "header Status given twice",
		"hugehead":    "header block longer than",
		"hugeline":    "header block longer than",
		"badlocation": "empty Location",
		"silent":      "the script wrote nothing",
		"fails":       "the script wrote nothing",
	} {
		resp, body := ts.get("/cgi-bin/" + name + ".sh")
		if resp.StatusCode != 502 {
			t.Errorf("%s: %s %q, want 502", name, resp.Status, body)
		}
		ts.waitLog(fmt.Sprintf("cgi: /cgi-bin/%s.sh: bad output: %s", name, reason))
	}
	// The failing script's stderr and exit status reach the log.
	ts.waitLog("cgi: /cgi-bin/fails.sh: something broke")
	ts.waitLog("cgi: /cgi-bin/fails.sh: exit status 3")
}

func TestCGIResolution(t *testing.T) {
	dir, special := t.TempDir(), t.TempDir()
	hello := "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhello\\n'\n"
	writeFiles(t, dir, map[string]string{
		"hello.sh":        hello,
		".hidden.sh":      hello,
		"sub/hello.sh":    hello,
		"sub/.dir/run.sh": hello,
		"noexec.txt":      hello,
	})
	writeFiles(t, special, map[string]string{"hello.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nspecial\\n'\n"})
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o755); err != nil {
		t.Fatal(err)
	}
	ts := serve(t, Config{Mounts: []Mount{
		{Prefix: "/cgi-bin", Dir: dir},
		{Prefix: "/cgi-bin/special", Dir: special},
	}})
	for _, tc := range []struct {
		target string
		code   int
		body   string
	}{
		{"/cgi-bin/hello.sh", 200, "hello\n"},
		{"/cgi-bin/sub/hello.sh", 200, "hello\n"},
		{"/cgi-bin/special/hello.sh", 200, "special\n"}, // the longer prefix wins
		{"/cgi-binx/hello.sh", 200, "app\n"},            // whole segments only
		{"/cgi-bin", 404, ""},
		{"/cgi-bin/", 404, ""},
		{"/cgi-bin/missing.sh", 404, ""},
		{"/cgi-bin/missing.sh/more", 404, ""},
		{"/cgi-bin/sub", 404, ""},
		{"/cgi-bin/sub/", 404, ""},
		{"/cgi-bin/.hidden.sh", 404, ""},
		{"/cgi-bin/%2Ehidden.sh", 404, ""},
		{"/cgi-bin/sub/.dir/run.sh", 404, ""},
		{"/cgi-bin/noexec.txt", 403, ""},
		{"/cgi-bin/fifo", 403, ""},
		{"/cgi-bin/hello.sh%00", 400, ""},
		{"/cgi-bin/sub%5Chello.sh", 400, ""},
		{"/cgi-bin/../cgi-bin/hello.sh", 400, ""},
		{"/cgi-bin/sub/%2E%2E/hello.sh", 400, ""},
		{"/cgi-bin/sub/%2e%2e%2fhello.sh", 400, ""},
		{"/cgi-bin/./hello.sh", 400, ""},
		{"/cgi-bin/hello.sh/../../../etc/passwd", 400, ""},
		{"/cgi-bin/%zz", 400, ""},
	} {
		resp, body := ts.get(tc.target)
		if resp.StatusCode != tc.code || tc.body != "" && body != tc.body {
			t.Errorf("GET %s: %d %q, want %d %q", tc.target, resp.StatusCode, body, tc.code, tc.body)
		}
	}
}

func TestCGISymlinks(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	marker := filepath.Join(outside, "ran")
	writeFiles(t, dir, map[string]string{
		"hello.sh":     "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhello\\n'\n",
		"sub/inner.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\ninner\\n'\n",
	})
	writeFiles(t, outside, map[string]string{
		"evil.sh": fmt.Sprintf("#!/bin/sh\ntouch '%s'\nprintf 'Content-Type: text/plain\\n\\nescaped\\n'\n", marker),
	})
	for link, target := range map[string]string{
		"alias.sh":    "hello.sh",                            // inner, relative
		"abs.sh":      filepath.Join(dir, "sub", "inner.sh"), // inner, absolute
		"linkdir":     "sub",                                 // inner directory
		"chain.sh":    "alias.sh",                            // a chain, inside
		"evil.sh":     filepath.Join(outside, "evil.sh"),     // escapes
		"ext":         outside,                               // escaping directory
		"up":          "..",                                  // escaping by ..
		"sneaky.sh":   "sub/../../" + filepath.Base(outside) + "/evil.sh",
		"dangling.sh": "nowhere.sh",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	ts := mountAt(t, dir)
	for _, tc := range []struct {
		target string
		code   int
		body   string
	}{
		{"/cgi-bin/alias.sh", 200, "hello\n"},
		{"/cgi-bin/abs.sh", 200, "inner\n"},
		{"/cgi-bin/linkdir/inner.sh", 200, "inner\n"},
		{"/cgi-bin/chain.sh", 200, "hello\n"},
		{"/cgi-bin/evil.sh", 403, ""},
		{"/cgi-bin/ext/evil.sh", 403, ""},
		{"/cgi-bin/up/" + filepath.Base(outside) + "/evil.sh", 403, ""},
		{"/cgi-bin/sneaky.sh", 403, ""},
		{"/cgi-bin/dangling.sh", 404, ""},
	} {
		resp, body := ts.get(tc.target)
		if resp.StatusCode != tc.code || tc.body != "" && body != tc.body {
			t.Errorf("GET %s: %d %q, want %d %q", tc.target, resp.StatusCode, body, tc.code, tc.body)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the script outside the mount ran")
	}
	ts.waitLog("leads outside")
}

func TestCGIStreaming(t *testing.T) {
	dir := t.TempDir()
	goFile := filepath.Join(dir, "go")
	// The second part is written only once the test has seen the first:
	// if the answer were buffered, the first part would never come.
	writeFiles(t, dir, map[string]string{"stream.sh": fmt.Sprintf(`#!/bin/sh
printf 'Content-Type: text/plain\n\nfirst\n'
i=0
while [ ! -e '%s' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
echo second
`, goFile)})
	ts := mountAt(t, dir)
	_, br := ts.dial("GET", "/cgi-bin/stream.sh", nil, nil)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("Transfer-Encoding %q, want chunked", resp.TransferEncoding)
	}
	rb := bufio.NewReader(resp.Body)
	first, err := rb.ReadString('\n')
	if err != nil || first != "first\n" {
		t.Fatalf("first part: %q, %v", first, err)
	}
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(rb)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("second part: %q, %v", rest, err)
	}
}

func TestCGITimeout(t *testing.T) {
	dir := t.TempDir()
	// The background child ignores SIGTERM: only the SIGKILL to the whole
	// group ends it.
	writeFiles(t, dir, map[string]string{
		"slow.sh": fmt.Sprintf(`#!/bin/sh
(trap '' TERM; exec sleep 1000) &
echo $! > '%[1]s/child.pid'
echo $$ > '%[1]s/script.pid'
sleep 1000
`, dir),
		"slowbody.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\npartial\\n'\nexec sleep 1000\n",
	})
	const timeout = 600 * time.Millisecond
	ts := serve(t, Config{Mounts: []Mount{{Prefix: "/cgi-bin", Dir: dir}}, Timeout: timeout})

	t.Run("before the head", func(t *testing.T) {
		begin := time.Now()
		resp, _ := ts.get("/cgi-bin/slow.sh")
		if took := time.Since(begin); resp.StatusCode != 504 || took < timeout || took > timeout+killGrace+2*time.Second {
			t.Errorf("status %d after %v, want 504 after %v", resp.StatusCode, took, timeout)
		}
		requireGone(t, "the script", readPid(t, filepath.Join(dir, "script.pid")))
		requireGone(t, "its child ignoring SIGTERM", readPid(t, filepath.Join(dir, "child.pid")))
		ts.waitLog("cgi: /cgi-bin/slow.sh: still running after 600ms; killing it")
	})

	t.Run("after the head", func(t *testing.T) {
		resp, body, err := ts.do("GET", "/cgi-bin/slowbody.sh", nil, nil)
		if resp.StatusCode != 200 || body != "partial\n" || err == nil {
			t.Errorf("got %d %q, err %v; want 200 \"partial\\n\" cut short", resp.StatusCode, body, err)
		}
	})
}

func TestCGIClientGone(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"forever.sh": fmt.Sprintf(`#!/bin/sh
sleep 1000 &
echo $! > '%[1]s/child.pid'
echo $$ > '%[1]s/script.pid'
printf 'Content-Type: text/plain\n\nstarted\n'
wait
`, dir)})
	ts := serve(t, Config{Mounts: []Mount{{Prefix: "/cgi-bin", Dir: dir}}, Timeout: time.Minute})
	c, br := ts.dial("GET", "/cgi-bin/forever.sh", nil, nil)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); line != "started\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	script, child := readPid(t, filepath.Join(dir, "script.pid")), readPid(t, filepath.Join(dir, "child.pid"))
	if !alive(script) || !alive(child) {
		t.Fatal("the script is not running")
	}
	c.Close()
	requireGone(t, "the script", script)
	requireGone(t, "its child", child)
	ts.waitLog("the client went away")
}

// TestCGILeftover: a script that exits leaving a process that holds its
// output open still gets its answer finished, and the process is killed.
func TestCGILeftover(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"leave.sh": fmt.Sprintf(`#!/bin/sh
printf 'Content-Type: text/plain\n\ndone\n'
sleep 1000 &
echo $! > '%s/child.pid'
`, dir)})
	ts := mountAt(t, dir)
	begin := time.Now()
	resp, body := ts.get("/cgi-bin/leave.sh")
	if resp.StatusCode != 200 || body != "done\n" || time.Since(begin) > lingerGrace+killGrace+2*time.Second {
		t.Errorf("got %d %q after %v", resp.StatusCode, body, time.Since(begin))
	}
	requireGone(t, "the leftover child", readPid(t, filepath.Join(dir, "child.pid")))
	ts.waitLog("exited leaving processes that hold its output open")
}

func TestCGIStderr(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"noisy.sh": `#!/bin/sh
echo 'first complaint' >&2
head -c 10000 /dev/zero | tr '\0' x >&2
echo >&2
i=0; while [ $i -lt 300 ]; do echo "line $i" >&2; i=$((i+1)); done
printf 'Content-Type: text/plain\n\nok\n'
`})
	ts := mountAt(t, dir)
	if resp, body := ts.get("/cgi-bin/noisy.sh"); resp.StatusCode != 200 || body != "ok\n" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	ts.waitLog("cgi: /cgi-bin/noisy.sh: first complaint")
	ts.waitLog("more than 100 lines on stderr")
	n := 0
	for _, line := range strings.Split(ts.logs.String(), "\n") {
		if strings.Contains(line, "/cgi-bin/noisy.sh: ") {
			n++
			if len(line) > maxStderrLine+200 {
				t.Errorf("a log line of %d bytes", len(line))
			}
		}
	}
	if n > maxStderrLines+1 {
		t.Errorf("%d log lines from one script's stderr", n)
	}
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	for name, cfg := range map[string]Config{
		"no mounts":      {},
		"relative dir":   {Mounts: []Mount{{Prefix: "/c", Dir: "cgi-bin"}}},
		"missing dir":    {Mounts: []Mount{{Prefix: "/c", Dir: filepath.Join(dir, "none")}}},
		"file as dir":    {Mounts: []Mount{{Prefix: "/c", Dir: file}}},
		"bad prefix":     {Mounts: []Mount{{Prefix: "cgi-bin", Dir: dir}}},
		"twice":          {Mounts: []Mount{{Prefix: "/c", Dir: dir}, {Prefix: "/c/", Dir: dir}}},
		"bad env":        {Mounts: []Mount{{Prefix: "/c", Dir: dir}}, Env: []string{"NOEQUALS"}},
		"empty env name": {Mounts: []Mount{{Prefix: "/c", Dir: dir}}, Env: []string{"=x"}},
	} {
		if _, err := New(cfg, logging.New(io.Discard, logging.Debug)); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	h, err := New(Config{Mounts: []Mount{{Prefix: "/", Dir: dir}}}, logging.New(io.Discard, logging.Debug))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Match("/anything") || !h.Match("/") || h.Match("*") {
		t.Error("a mount at / should match every path")
	}
	if h, err := New(Config{Mounts: []Mount{{Prefix: "", Dir: dir}}}, logging.New(io.Discard, logging.Debug)); err != nil || !h.Match("/x") {
		t.Errorf("the empty prefix (--cgi /=DIR) should mount everything: %v", err)
	}
	if h.cfg.Timeout != DefaultTimeout {
		t.Errorf("timeout %v, want %v", h.cfg.Timeout, DefaultTimeout)
	}
}

// TestCGIZombies runs last: after scripts that succeed, fail and time out,
// none of them is left as a child of the test process, zombie or not.
func TestCGIZombies(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"ok.sh":   "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nok\\n'\n",
		"fail.sh": "#!/bin/sh\nexit 1\n",
		"slow.sh": "#!/bin/sh\nsleep 1000 &\nsleep 1000\n",
	})
	ts := serve(t, Config{Mounts: []Mount{{Prefix: "/cgi-bin", Dir: dir}}, Timeout: 300 * time.Millisecond})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		for _, s := range []string{"ok", "fail", "slow"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Fatal is not allowed off the test goroutine: check by hand.
				c, err := net.DialTimeout("tcp", ts.addr, ioTimeout)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(ioTimeout))
				fmt.Fprintf(c, "GET /cgi-bin/%s.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", s)
				io.Copy(io.Discard, c)
			}()
		}
	}
	wg.Wait()
	var children []string
	ok := poll(3*time.Second, func() bool {
		children = children[:0]
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if st, ppid := procState(pid); ppid == os.Getpid() {
				children = append(children, fmt.Sprintf("%d (%c)", pid, st))
			}
		}
		return len(children) == 0
	})
	if !ok {
		t.Errorf("children of the test process left: %v", children)
	}
}
