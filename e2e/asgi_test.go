package e2e

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func startASGI(t *testing.T, app string, args ...string) *Server {
	t.Helper()
	requirePython(t, "fastapi", "python3-fastapi")
	return Start(t, append(append([]string{"--pythonpath", appsDir(t)}, args...), "asgiapp:"+app)...)
}

// TestASGIFastAPI: a FastAPI app is detected as ASGI and served: lifespan
// startup ran, path and query parameters, request bodies, streaming, errors.
func TestASGIFastAPI(t *testing.T) {
	t.Parallel()
	s := startASGI(t, "fastapi_app", "-w", "1")
	var item map[string]any
	code, body := httpGet(t, s, "/items/42?q=caf%C3%A9")
	if code != 200 || json.Unmarshal([]byte(body), &item) != nil {
		t.Fatalf("/items: %d %s", code, body)
	}
	if item["item_id"] != 42.0 || item["q"] != "café" || item["startups"] != 1.0 {
		t.Fatalf("/items: %v", item)
	}
	resp, err := http.Post(s.URL+"/echo", "application/x-test", strings.NewReader(strings.Repeat("x", 3<<20)))
	if err != nil {
		t.Fatal(err)
	}
	echo := readAll(t, resp)
	if resp.StatusCode != 200 || echo != fmt.Sprintf("%d application/x-test", 3<<20) {
		t.Fatalf("/echo of a 3 MiB body (spilled to a file): %d %q", resp.StatusCode, echo)
	}
	resp, err = http.Get(s.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "chunk0;chunk1;chunk2;" || len(resp.TransferEncoding) == 0 {
		t.Fatalf("/stream: %q, transfer-encoding %v", got, resp.TransferEncoding)
	}
	if code, _ := httpGet(t, s, "/boom"); code != 500 {
		t.Fatalf("/boom: %d, want 500", code)
	}
	if !s.WaitLog("asgi handler exploded 77", 5*time.Second) {
		t.Fatalf("no traceback in the log:\n%s", s.Stderr())
	}
	if code, _ := httpGet(t, s, "/items/1"); code != 200 {
		t.Fatalf("the worker stopped serving after an exception: %d", code)
	}
}

// TestASGIScope: the http scope carries what the ASGI spec asks for.
func TestASGIScope(t *testing.T) {
	t.Parallel()
	s := startASGI(t, "fastapi_app", "-w", "1", "--root-path", "/mnt")
	var sc map[string]any
	code, body := httpGet(t, s, "/mnt/scope?a=1&b=%20")
	if code != 200 || json.Unmarshal([]byte(body), &sc) != nil {
		t.Fatalf("/scope: %d %s", code, body)
	}
	if sc["path"] != "/scope" || sc["root_path"] != "/mnt" || sc["raw_path"] != "/mnt/scope" || sc["query_string"] != "a=1&b=%20" ||
		sc["http_version"] != "1.1" || sc["scheme"] != "http" {
		t.Fatalf("scope: %v", sc)
	}
	if client, ok := sc["client"].([]any); !ok || client[0] != "127.0.0.1" {
		t.Fatalf("scope client: %v", sc["client"])
	}
	if asgi, ok := sc["asgi"].(map[string]any); !ok || asgi["version"] != "3.0" {
		t.Fatalf("scope asgi: %v", sc["asgi"])
	}
}

// TestASGIConcurrency: one ASGI worker runs many requests at once on its
// event loop.
func TestASGIConcurrency(t *testing.T) {
	t.Parallel()
	s := startASGI(t, "fastapi_app", "-w", "1")
	peaks, pids, _ := overlapPeaks(t, s, 20)
	if len(pids) != 1 || slices.Max(peaks) != 20 {
		t.Fatalf("peak %v in %v, want 20 requests at once in one worker", peaks, pids)
	}
}

// TestASGIDisconnect: when the client goes away mid-response, the app's
// receive() returns http.disconnect.
func TestASGIDisconnect(t *testing.T) {
	t.Parallel()
	s := startASGI(t, "raw_app", "-w", "1")
	// Twice: the worker keeps serving after the first client left.
	for range 2 {
		marker := filepath.Join(t.TempDir(), "disconnect")
		c := dialRaw(t, s.Addr)
		fmt.Fprintf(c, "GET /?%s HTTP/1.1\r\nHost: x\r\n\r\n", marker)
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		if !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Fatalf("status line %q", line)
		}
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(l, "first;") {
				break
			}
		}
		c.Close()
		ok := pollUntil(5*time.Second, func() bool {
			b, err := os.ReadFile(marker)
			return err == nil && string(b) == "http.disconnect"
		})
		if !ok {
			t.Fatalf("the app did not receive http.disconnect\n%s", s.Stderr())
		}
	}
}

// TestASGILifespanFailure: lifespan.startup.failed stops taipan with the
// app's message and a non-zero exit. (An app that raises instead is served
// without lifespan: TestASGILifespanStartupRaises.)
func TestASGILifespanFailure(t *testing.T) {
	t.Parallel()
	requirePython(t, "fastapi", "python3-fastapi")
	code, out := runTaipan(t, 20*time.Second, "--python", pythonPath(), "-b", "127.0.0.1:0", "-w", "1",
		"--pythonpath", appsDir(t), "asgiapp:failing_startup")
	if code == 0 || !strings.Contains(out, "the database is on fire") || !strings.Contains(out, "lifespan startup failed") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	// The app's message is no traceback: the last line must not promise one.
	if !strings.Contains(out, "the app failed to load (see above)") {
		t.Errorf("the last line does not point to the message above:\n%s", out)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestASGIDjango: Django's ASGI handler through taipan: the admin login
// with CSRF and sessions, as in the WSGI test, under a root path.
func TestASGIDjango(t *testing.T) {
	t.Parallel()
	db := setupDjango(t)
	s := Start(t, "--chdir", djangoDir(t),
		"-e", "DJANGO_DB_PATH="+db,
		"-e", "DJANGO_SETTINGS_MODULE=djangosite.settings",
		"-e", "PYTHONDONTWRITEBYTECODE=1",
		"-w", "1", "--root-path", "/mount", "djangosite.asgi:application")
	c := fwClient(t, true, true)
	resp, body := adminLogin(t, s, c, "/mount")
	fwWantStatus(t, s, resp, body, 200)
	if !strings.Contains(string(body), "Site administration") || resp.Request.URL.Path != "/mount/admin/" {
		t.Fatalf("after login via ASGI: %s\n%s", resp.Request.URL, fwTrunc(body))
	}
}

// TestASGITimeout: a request past --timeout has its task cancelled (the log
// names where it waited) and gets 504, while the worker and the requests
// running beside it carry on.
func TestASGITimeout(t *testing.T) {
	t.Parallel()
	s := startASGI(t, "fastapi_app", "-w", "1", "-t", "1")
	pidBefore := s.WorkerPids()
	other := make(chan int, 1)
	go func() {
		// Starts after /hang and ends after /hang's timeout, within its own.
		time.Sleep(300 * time.Millisecond)
		resp, err := timeoutClient(testTimeout).Get(s.URL + "/overlap?ms=900")
		if err != nil {
			other <- 0
			return
		}
		resp.Body.Close()
		other <- resp.StatusCode
	}()
	start := time.Now()
	code, _ := httpGet(t, s, "/hang")
	if code != 504 {
		t.Fatalf("/hang: %d, want 504", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("504 after %v", d)
	}
	if got := <-other; got != 200 {
		t.Fatalf("the request running beside it got %d, want 200 (the worker must not be killed)", got)
	}
	if !s.WaitLog("wait_for_the_async_lock_forever", 5*time.Second) || !strings.Contains(s.Stderr(), "Request timed out") {
		t.Fatalf("no timeout log naming the coroutine:\n%s", s.Stderr())
	}
	if after := s.WorkerPids(); len(after) != 1 || after[0] != pidBefore[0] {
		t.Fatalf("worker pids %v -> %v: the worker was replaced", pidBefore, after)
	}
}

// TestASGITimeoutBlockedLoop: a handler that blocks the event loop cannot be
// cancelled, so after the grace its worker is killed (stack logged) and
// replaced; the request gets 504.
func TestASGITimeoutBlockedLoop(t *testing.T) {
	t.Parallel()
	s := startASGI(t, "fastapi_app", "-w", "1", "-t", "1")
	before := s.WorkerPids()
	if code, _ := httpGet(t, s, "/block"); code != 504 {
		t.Fatalf("/block: %d, want 504", code)
	}
	if !s.WaitLog("WORKER TIMEOUT", 5*time.Second) || !strings.Contains(s.Stderr(), "in block") {
		t.Fatalf("no kill with a stack naming the handler:\n%s", s.Stderr())
	}
	ok := pollUntil(10*time.Second, func() bool {
		after := s.WorkerPids()
		return len(after) == 1 && after[0] != before[0]
	})
	if !ok {
		t.Fatalf("worker not replaced: %v -> %v", before, s.WorkerPids())
	}
	if code, _ := httpGet(t, s, "/items/1"); code != 200 {
		t.Fatalf("after the replacement: %d", code)
	}
}

// TestASGILoops: --loop asyncio and --loop uvloop both serve; the app sees
// which loop runs it.
func TestASGILoops(t *testing.T) {
	t.Parallel()
	for _, loop := range []string{"asyncio", "uvloop"} {
		t.Run(loop, func(t *testing.T) {
			t.Parallel()
			if loop == "uvloop" {
				requirePython(t, "uvloop", "python3-uvloop")
			}
			s := startASGI(t, "fastapi_app", "-w", "1", "--loop", loop)
			code, body := httpGet(t, s, "/loop")
			want := map[string]string{"asyncio": "asyncio", "uvloop": "uvloop"}[loop]
			if code != 200 || !strings.Contains(body, want) {
				t.Fatalf("/loop with --loop %s: %d %s", loop, code, body)
			}
		})
	}
}

// TestASGIDisconnectBeforeResponse: a client that leaves a long poll before
// the app has sent anything is reported to the app as http.disconnect. It
// is not answered (a client that only half-closed reads nothing, not a
// 500 it would take for the app's), and the access log records nginx's 499
// rather than a server error.
func TestASGIDisconnectBeforeResponse(t *testing.T) {
	t.Parallel()
	for _, half := range []bool{false, true} {
		name := "close"
		if half {
			name = "half-close"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := startASGI(t, "raw_app", "-w", "1", "--access-logfile", "-")
			marker := filepath.Join(t.TempDir(), "disconnect")
			c := dialRaw(t, s.Addr)
			fmt.Fprintf(c, "GET /poll?%s HTTP/1.1\r\nHost: x\r\n\r\n", marker)
			time.Sleep(300 * time.Millisecond) // the request is running, no answer yet
			if half {
				c.(*net.TCPConn).CloseWrite()
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if got, err := io.ReadAll(c); len(got) > 0 || err != nil {
					t.Errorf("a client that half-closed read %q (%v), want nothing", got, err)
				}
			}
			c.Close()
			if got, ok := waitMarker(marker, 5*time.Second); !ok || got != "http.disconnect" {
				t.Fatalf("the app did not receive http.disconnect (got %q)\n%s", got, s.Stderr())
			}
			if !pollUntil(3*time.Second, func() bool { return strings.Contains(s.Stdout(), "\" 499 ") }) {
				t.Errorf("the access log does not record 499:\n%s", s.Stdout())
			}
			if strings.Contains(s.Stdout(), "\" 500 ") {
				t.Errorf("the client that left is logged as a 500:\n%s", s.Stdout())
			}
		})
	}
}

// TestASGITwoReceivers: when the client leaves, every task waiting in
// receive() hears http.disconnect, also after a receive() was cancelled
// (Starlette's is_disconnected()); a second receive() used to take the
// first one's wake-up, leaving a streaming response running for nobody.
func TestASGITwoReceivers(t *testing.T) {
	t.Parallel()
	s := startSpec(t, "app", "-w", "1")
	marker := filepath.Join(t.TempDir(), "receivers")
	c := dialRaw(t, s.Addr)
	fmt.Fprintf(c, "GET /two-receivers?marker=%s HTTP/1.1\r\nHost: x\r\n\r\n", marker)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("response: %q %v", line, err)
	}
	time.Sleep(200 * time.Millisecond) // both receivers wait
	c.Close()
	got, ok := waitMarker(marker, 8*time.Second)
	if !ok || got != "done=2 pending=0 http.disconnect,http.disconnect" {
		t.Errorf("after the client left, the app's receivers report %q (written: %v), want both woken with http.disconnect", got, ok)
	}
}

// TestASGISendMistakes: app bugs raise in the app, as under uvicorn, rather
// than pass unnoticed: a body sent after the last one (RuntimeError), and a
// websocket.send with both or neither of text and bytes (TypeError).
func TestASGISendMistakes(t *testing.T) {
	t.Parallel()
	s := startSpec(t, "app", "-w", "1")
	marker := filepath.Join(t.TempDir(), "after-end")
	if code, body := httpGet(t, s, "/send-after-end?marker="+marker); code != 200 || body != "done" {
		t.Errorf("/send-after-end: %d %q", code, body)
	}
	want := "RuntimeError: ASGI message 'http.response.body' sent after the response was complete"
	if got, ok := waitMarker(marker, 5*time.Second); !ok || got != want {
		t.Errorf("a body after the last one: the app saw %q (written: %v), want %q", got, ok, want)
	}
	c, br := wsDial(t, s, "/ws/send-text-and-bytes")
	defer c.Close()
	if op, p := wsRead(t, br); op != 0x1 || string(p) != "2 errors" {
		t.Errorf("websocket.send with both or neither of text and bytes: op %x %q, want the app's text \"2 errors\"", op, p)
	}
}

// startSpec serves an app of asgispec.py (bare ASGI, no framework).
func startSpec(t *testing.T, app string, args ...string) *Server {
	t.Helper()
	return Start(t, append(append([]string{"--pythonpath", appsDir(t)}, args...), "asgispec:"+app)...)
}

// logLine returns the line of the error log that contains substr, or "".
func logLine(s *Server, substr string) string {
	for _, line := range strings.Split(s.Stderr(), "\n") {
		if strings.Contains(line, substr) {
			return line
		}
	}
	return ""
}

// TestASGIReceiveAfterResponse: receive() called once the response has been
// sent returns http.disconnect at once (the ASGI spec), instead of waiting
// for a client that is done.
func TestASGIReceiveAfterResponse(t *testing.T) {
	t.Parallel()
	s := startSpec(t, "app", "-w", "1")
	marker := filepath.Join(t.TempDir(), "after")
	if code, body := httpGet(t, s, "/after-response?marker="+marker); code != 200 || body != "done" {
		t.Fatalf("/after-response: %d %q", code, body)
	}
	if got, ok := waitMarker(marker, 3*time.Second); !ok || got != "http.disconnect" {
		t.Fatalf("receive() after the response gave %q (written: %v), want http.disconnect at once", got, ok)
	}
}

// TestASGILifespanStartupRaises: an app that raises after taking the
// lifespan.startup event is served without lifespan, as the ASGI spec and
// uvicorn's --lifespan auto have it, and the exception is logged as a
// warning with its traceback.
func TestASGILifespanStartupRaises(t *testing.T) {
	t.Parallel()
	s := startSpec(t, "startup_raises", "-w", "1")
	if code, body := httpGet(t, s, "/"); code != 200 || body != "hello" {
		t.Fatalf("GET /: %d %q", code, body)
	}
	if !s.WaitLog("startup exploded 41", 5*time.Second) {
		t.Fatalf("the exception was not logged:\n%s", s.Stderr())
	}
	line := logLine(s, "ASGI lifespan startup raised RuntimeError: startup exploded 41")
	if !strings.Contains(line, "[WARNING]") || !strings.Contains(s.Stderr(), "Traceback") {
		t.Fatalf("want a warning naming the exception, and its traceback:\n%s", s.Stderr())
	}
}

// TestASGILifespanShutdownErrors: an exception raised during lifespan
// shutdown, and lifespan.shutdown.failed, are logged as errors, the
// exception with its traceback, with either loop (the worker keeps its end
// of the socket open after Go closes its own, for these entries).
func TestASGILifespanShutdownErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ app, loop, want string }{
		{"shutdown_raises", "asyncio", "ASGI lifespan shutdown failed: the app raised"},
		{"shutdown_fails", "asyncio", "ASGI lifespan shutdown failed: cache flush failed 43"},
		{"shutdown_raises", "uvloop", "ASGI lifespan shutdown failed: the app raised"},
		{"shutdown_fails", "uvloop", "ASGI lifespan shutdown failed: cache flush failed 43"},
	} {
		t.Run(tc.app+"/"+tc.loop, func(t *testing.T) {
			t.Parallel()
			if tc.loop == "uvloop" {
				requirePython(t, "uvloop", "python3-uvloop")
			}
			app, want := tc.app, tc.want
			s := startSpec(t, app, "-w", "1", "--loop", tc.loop)
			if code, _ := httpGet(t, s, "/"); code != 200 {
				t.Fatalf("GET /: %d", code)
			}
			s.Stop()
			if line := logLine(s, want); !strings.Contains(line, "[ERROR]") {
				t.Fatalf("want an error entry %q:\n%s", want, s.Stderr())
			}
			if app == "shutdown_raises" && !strings.Contains(s.Stderr(), "RuntimeError: shutdown exploded 42") {
				t.Fatalf("no traceback:\n%s", s.Stderr())
			}
		})
	}
}

// TestASGIBaseException: SystemExit and KeyboardInterrupt raised by a
// handler end that request (500, or 1011 for a WebSocket), as uvicorn has
// it, not the worker with the other requests it runs.
func TestASGIBaseException(t *testing.T) {
	t.Parallel()
	s := startSpec(t, "app", "-w", "1")
	before := s.WorkerPids()
	slow := make(chan string, 1)
	go func() {
		resp, err := timeoutClient(testTimeout).Get(s.URL + "/sleep?ms=1500")
		if err != nil {
			slow <- err.Error()
			return
		}
		slow <- fmt.Sprintf("%d %s", resp.StatusCode, readAll(t, resp))
	}()
	time.Sleep(300 * time.Millisecond) // /sleep is running
	for _, path := range []string{"/exit", "/interrupt"} {
		if code, _ := httpGet(t, s, path); code != 500 {
			t.Errorf("%s: %d, want 500", path, code)
		}
	}
	c, br := wsDial(t, s, "/ws/exit")
	if op, p := wsRead(t, br); op != 0x8 || len(p) < 2 || binary.BigEndian.Uint16(p) != 1011 {
		t.Errorf("WebSocket whose handler exits: op %x %q, want close 1011", op, p)
	}
	c.Close()
	if got := <-slow; got != "200 slept" {
		t.Errorf("the request running beside them: %s, want 200 slept", got)
	}
	if code, _ := httpGet(t, s, "/"); code != 200 {
		t.Errorf("afterwards: %d", code)
	}
	if after := s.WorkerPids(); len(after) != 1 || after[0] != before[0] {
		t.Errorf("worker pids %v -> %v: the worker died", before, after)
	}
	for _, want := range []string{"SystemExit: 3", "KeyboardInterrupt", "Error in WebSocket GET /ws/exit"} {
		if !s.WaitLog(want, 3*time.Second) {
			t.Errorf("%q not logged:\n%s", want, s.Stderr())
		}
	}
}

// TestASGIScopeAsgiOwn: each scope has its own "asgi" dict, so an app that
// changes one does not change the next request's.
func TestASGIScopeAsgiOwn(t *testing.T) {
	t.Parallel()
	s := startSpec(t, "app", "-w", "1")
	if code, _ := httpGet(t, s, "/mutate-asgi"); code != 200 {
		t.Fatalf("/mutate-asgi: %d", code)
	}
	if code, body := httpGet(t, s, "/asgi"); code != 200 || body != `{"spec_version": "2.3", "version": "3.0"}` {
		t.Fatalf("the next request's scope[\"asgi\"]: %d %s", code, body)
	}
}
