package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
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

// TestASGILifespanFailure: a lifespan startup failure stops taipan with the
// app's message and a non-zero exit.
func TestASGILifespanFailure(t *testing.T) {
	t.Parallel()
	requirePython(t, "fastapi", "python3-fastapi")
	code, out := runTaipan(t, 20*time.Second, "--python", pythonPath(), "-b", "127.0.0.1:0", "-w", "1",
		"--pythonpath", appsDir(t), "asgiapp:failing_startup")
	if code == 0 || !strings.Contains(out, "the database is on fire") || !strings.Contains(out, "lifespan startup failed") {
		t.Fatalf("exit %d, output:\n%s", code, out)
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
