package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// --- failures ------------------------------------------------------------------

func TestFailureAppException(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	pid := workerPid(t, s)
	c := dialRaw(t, s.Addr)
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "GET /raise HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := ReadResponse(t, br, "GET")
	if resp.StatusCode != 500 {
		t.Errorf("status %d, want 500", resp.StatusCode)
	}
	if len(body) == 0 || len(body) > 200 || strings.Contains(body, "Traceback") || strings.Contains(body, "boom") {
		t.Errorf("500 body should be short and reveal nothing: %q", body)
	}
	if !s.WaitLog("boom-before-start-response", 3*time.Second) {
		t.Fatalf("exception message not in the error log:\n%s", s.Stderr())
	}
	log := s.Stderr()
	for _, want := range []string{"Traceback (most recent call last)", "raise_view", "RuntimeError", "GET /raise"} {
		if !strings.Contains(log, want) {
			t.Errorf("error log lacks %q:\n%s", want, log)
		}
	}
	// The same connection and the same worker go on serving.
	fmt.Fprintf(c, "GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body = ReadResponse(t, br, "GET")
	if resp.StatusCode != 200 || body != fmt.Sprint(pid) {
		t.Errorf("after the exception: %d %q, want 200 from the same worker %d", resp.StatusCode, body, pid)
	}
}

func TestFailureWorkerDies(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "2")
	httpGet(t, s, "/pid")
	before := s.WorkerPids()
	if len(before) != 2 {
		t.Fatalf("worker pids %v, want 2", before)
	}
	// A slow request occupies one worker; /die then lands on the other.
	type result struct {
		code int
		body string
	}
	slow := make(chan result, 1)
	go func() {
		code, body := httpGet(t, s, "/sleep?ms=1500")
		slow <- result{code, body}
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	code, body := httpGet(t, s, "/die")
	if code != 502 {
		t.Errorf("/die: %d %q, want 502", code, body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("/die took %v", d)
	}
	r := <-slow
	if r.code != 200 || !strings.HasPrefix(r.body, "slept 1500 ms") {
		t.Errorf("concurrent request on the other worker: %d %q", r.code, r.body)
	}
	// A replacement is started: two live workers, one of them new.
	var after []int
	ok := pollUntil(10*time.Second, func() bool {
		after = s.WorkerPids()
		alive := 0
		fresh := false
		for _, p := range after {
			if pidAlive(p) {
				alive++
				if !slices.Contains(before, p) {
					fresh = true
				}
			}
		}
		return alive == 2 && fresh
	})
	if !ok {
		t.Errorf("no replacement worker: before %v, after %v\n%s", before, after, s.Stderr())
	}
	// Subsequent requests succeed, and are served by the live workers.
	seen := map[int]bool{}
	for i := 0; i < 6; i++ {
		seen[workerPid(t, s)] = true
	}
	for p := range seen {
		if !slices.Contains(after, p) {
			t.Errorf("request answered by pid %d, not a current worker %v", p, after)
		}
	}
}

// TestWorkerWithForkedChild: an app that forks a child at import (a
// multiprocessing poller) leaves the worker's socket to taipan open in that
// child. A worker killed anyway is still seen to die and replaced, and
// SIGTERM still stops taipan; the socket's end of file never came, and
// taipan waited for it for good.
func TestWorkerWithForkedChild(t *testing.T) {
	t.Parallel()
	pids := filepath.Join(t.TempDir(), "children")
	t.Cleanup(func() {
		b, _ := os.ReadFile(pids)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	s := Start(t, "--pythonpath", appsDir(t), "-w", "1", "--graceful-timeout", "3", "-e", "FORKAPP_PIDS="+pids, "forkapp:app")
	_, first := httpGet(t, s, "/")
	pid, err := strconv.Atoi(first)
	if err != nil {
		t.Fatalf("/: %q", first)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	var now string
	if !pollUntil(10*time.Second, func() bool {
		code, body := httpGet(t, s, "/")
		now = body
		return code == 200 && body != first
	}) {
		t.Fatalf("no new worker after the first was killed (last answer %q)\n%s", now, s.Stderr())
	}
	s.Signal(syscall.SIGTERM)
	if code := s.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM (-1: still running), want 0\n%s", code, s.Stderr())
	}
}

// TestFailureWorkerDiesOnly: with -w 1 the replacement takes over.
func TestFailureWorkerDiesOnly(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	old := workerPid(t, s)
	if code, _ := httpGet(t, s, "/die"); code != 502 {
		t.Errorf("/die: %d, want 502", code)
	}
	var pid int
	for i := 0; i < 3; i++ {
		pid = workerPid(t, s)
	}
	if pid == old {
		t.Errorf("still served by the dead worker's pid %d", old)
	}
	if pidAlive(old) {
		t.Errorf("dead worker %d still exists (not reaped?)", old)
	}
}

// --- shutdown -----------------------------------------------------------------

func testGracefulSignal(t *testing.T, sig syscall.Signal, name string) {
	s := startTestApp(t, "-w", "2")
	httpGet(t, s, "/pid")
	workers := s.WorkerPids()
	if len(workers) != 2 {
		t.Fatalf("workers %v", workers)
	}
	type result struct {
		code int
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := timeoutClient(testTimeout).Get(s.URL + "/sleep?ms=1500")
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b := make([]byte, 100)
		n, _ := resp.Body.Read(b)
		slow <- result{code: resp.StatusCode, body: string(b[:n])}
	}()
	time.Sleep(300 * time.Millisecond)
	s.Signal(sig)
	if !s.WaitLog("Handling signal: "+name, 3*time.Second) {
		t.Errorf("no 'Handling signal: %s' in the log:\n%s", name, s.Stderr())
	}
	// New connections are refused while the slow request is still running.
	refused := pollUntil(1*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if !refused {
		t.Errorf("new connections still accepted after SIG%s", strings.ToUpper(name))
	}
	r := <-slow
	if r.err != nil || r.code != 200 || !strings.HasPrefix(r.body, "slept 1500 ms") {
		t.Errorf("in-flight request: %d %q %v, want 200", r.code, r.body, r.err)
	}
	if code := s.Wait(10 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0\n%s", code, s.Stderr())
	}
	for _, p := range workers {
		if !pollUntil(2*time.Second, func() bool { return !pidAlive(p) }) {
			t.Errorf("worker %d still running after taipan exited", p)
		}
	}
	if !strings.Contains(s.Stderr(), "Shutting down") {
		t.Errorf("no shutdown line in the log:\n%s", s.Stderr())
	}
}

func TestShutdownSIGTERM(t *testing.T) {
	t.Parallel()
	testGracefulSignal(t, syscall.SIGTERM, "term")
}

// TestShutdownFast: SIGINT and SIGQUIT stop at once (gunicorn's quick
// shutdown): a long request in flight does not hold taipan, which exits 0,
// no worker is left behind, and the log does not blame the worker.
func TestShutdownFast(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			s := startTestApp(t, "-w", "2")
			httpGet(t, s, "/pid")
			workers := s.WorkerPids()
			go func() {
				resp, err := timeoutClient(testTimeout).Get(s.URL + "/sleep?ms=8000")
				if err == nil {
					resp.Body.Close()
				}
			}()
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			s.Signal(sig)
			code := s.Wait(5 * time.Second)
			if code != 0 {
				t.Fatalf("exit code %d after %v, want a quick exit 0\n%s", code, time.Since(start), s.Stderr())
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("fast stop took %v", d)
			}
			for _, p := range workers {
				if !pollUntil(2*time.Second, func() bool { return !pidAlive(p) }) {
					t.Errorf("worker %d survived", p)
				}
			}
			// The request is cut short by taipan, not lost to a crash.
			if log := s.Stderr(); strings.Contains(log, "worker died") {
				t.Errorf("a worker killed by the fast stop is logged as a death:\n%s", log)
			}
		})
	}
}

// TestShutdownDrainsQueue: requests still queued in Go behind a busy worker
// when SIGTERM arrives are served too, not dropped.
func TestShutdownDrainsQueue(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	const n = 4
	codes := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			resp, err := timeoutClient(testTimeout).Get(s.URL + "/sleep?ms=400")
			if err != nil {
				codes <- err.Error()
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.Status
		}()
	}
	// One request runs on the only worker; the others wait in Go.
	time.Sleep(200 * time.Millisecond)
	s.Signal(syscall.SIGTERM)
	for i := 0; i < n; i++ {
		if got := <-codes; got != "200 OK" {
			t.Errorf("request %d: %s, want 200 OK", i, got)
		}
	}
	if code := s.Wait(10 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0\n%s", code, s.Stderr())
	}
}

// TestShutdownGracefulTimeout: --graceful-timeout bounds the drain; a request
// that would outlive it does not keep taipan running. Its client gets a 503
// (taipan stops the worker before it closes the connection) and the log
// names the request that was cut short. A second SIGTERM ends the drain at
// once, with the same answer.
func TestShutdownGracefulTimeout(t *testing.T) {
	for _, tc := range []struct {
		name   string
		second bool // a second SIGTERM, instead of waiting out the timeout
	}{{"timeout", false}, {"second signal", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startTestApp(t, "-w", "1", "--graceful-timeout", "1")
			status := make(chan string, 1)
			go func() {
				resp, err := timeoutClient(testTimeout).Get(s.URL + "/sleep?ms=8000")
				if err != nil {
					status <- err.Error()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status <- resp.Status
			}()
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			s.Signal(syscall.SIGTERM)
			if tc.second {
				time.Sleep(100 * time.Millisecond)
				s.Signal(syscall.SIGTERM)
			}
			code := s.Wait(6 * time.Second)
			if code == -1 {
				t.Fatalf("taipan still running 6s after SIGTERM with --graceful-timeout 1\n%s", s.Stderr())
			}
			if got := <-status; got != "503 Service Unavailable" {
				t.Errorf("the request cut short got %q, want 503 Service Unavailable", got)
			}
			log := s.Stderr()
			if !strings.Contains(log, "GET /sleep?ms=8000: cut short: taipan stopped before the request finished") {
				t.Errorf("the log does not name the request cut short:\n%s", log)
			}
			if strings.Contains(log, "worker died") {
				t.Errorf("a worker stopped by taipan is logged as a death:\n%s", log)
			}
			if tc.second {
				if strings.Contains(log, "Graceful timeout") {
					t.Errorf("a second signal is logged as the graceful timeout:\n%s", log)
				}
				return
			}
			if d := time.Since(start); d < 900*time.Millisecond {
				t.Errorf("exited after %v, before the graceful timeout", d)
			}
			if !strings.Contains(log, "Graceful timeout reached") {
				t.Errorf("no graceful-timeout line in the log:\n%s", log)
			}
		})
	}
}

// TestShutdownWaitsForLifespan: a worker stopping at shutdown has what is
// left of --graceful-timeout to exit, so an ASGI app's lifespan shutdown
// that takes a few seconds completes; one that outlasts it is killed, and
// the log says so.
func TestShutdownWaitsForLifespan(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		graceful string
		done     bool
	}{{"20", true}, {"2", false}} {
		t.Run("graceful-timeout "+tc.graceful, func(t *testing.T) {
			t.Parallel()
			marker := filepath.Join(t.TempDir(), "shutdown")
			s := Start(t, "--pythonpath", appsDir(t), "-w", "1", "--graceful-timeout", tc.graceful,
				"-e", "SHUTDOWN_MARKER="+marker, "-e", "SLOW_SHUTDOWN_S=6", "slowshutdown:app")
			s.Signal(syscall.SIGTERM)
			if code := s.Wait(30 * time.Second); code != 0 {
				t.Fatalf("exit code %d\n%s", code, s.Stderr())
			}
			b, _ := os.ReadFile(marker)
			if done := string(b) == "done"; done != tc.done {
				t.Errorf("lifespan shutdown completed: %v, want %v\n%s", done, tc.done, s.Stderr())
			}
			if killed := strings.Contains(s.Stderr(), "did not exit within"); killed == tc.done {
				t.Errorf("log says the worker was killed: %v, want %v\n%s", killed, !tc.done, s.Stderr())
			}
		})
	}
}

// TestRestartWithoutGrace: --graceful-timeout is also how long a restarted
// worker has to exit, so with 0 a worker recycled by --max-requests is
// killed at once: its 2-second lifespan shutdown never completes, where a
// default grace of a few seconds would let it.
func TestRestartWithoutGrace(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "shutdown")
	s := Start(t, "--pythonpath", appsDir(t), "-w", "1", "--graceful-timeout", "0", "--max-requests", "1",
		"-e", "SHUTDOWN_MARKER="+marker, "-e", "SLOW_SHUTDOWN_S=2", "slowshutdown:app")
	old := s.WorkerPids()
	if code, body := s.Get(t, "/"); code != 200 {
		t.Fatalf("GET /: %d %q", code, body)
	}
	if !pollUntil(10*time.Second, func() bool { p := s.WorkerPids(); return len(p) == 1 && p[0] != old[0] }) {
		t.Fatalf("worker %v not replaced after --max-requests 1\n%s", old, s.Stderr())
	}
	if !pollUntil(2*time.Second, func() bool { return !pidAlive(old[0]) }) {
		t.Fatalf("recycled worker %d still alive 2s after its replacement started\n%s", old[0], s.Stderr())
	}
	time.Sleep(3 * time.Second) // past the app's 2 s shutdown, had it been let run
	if b, err := os.ReadFile(marker); err == nil {
		t.Errorf("the recycled worker finished its lifespan shutdown (%q): it was given time to exit\n%s", b, s.Stderr())
	}
	if code, body := s.Get(t, "/"); code != 200 {
		t.Errorf("GET / after the restart: %d %q", code, body)
	}
}

// TestShutdownIdle: an idle server stops quickly, with its keep-alive
// connections.
func TestShutdownIdle(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	c := dialRaw(t, s.Addr)
	fmt.Fprintf(c, "GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
	ReadResponse(t, bufio.NewReader(c), "GET")
	pids := s.WorkerPids()
	start := time.Now()
	s.Signal(syscall.SIGTERM)
	if code := s.Wait(5 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("idle shutdown took %v (an idle keep-alive connection held it?)", d)
	}
	for _, p := range pids {
		if pollUntil(2*time.Second, func() bool { return !pidAlive(p) }) == false {
			t.Errorf("worker %d survived", p)
		}
	}
}

// --- logs ---------------------------------------------------------------------

var errorLogLine = regexp.MustCompile(`^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[(\d+)\] \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] `)

func TestLogAccessStdout(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1", "--access-logfile", "-")
	resp, body := httpDo(t, "GET", s.URL+"/status?code=201&q=1", nil, map[string]string{
		"Referer":    "http://ref.example/page",
		"User-Agent": "e2e-agent/1.0",
	})
	if resp.StatusCode != 201 {
		t.Fatal(resp.StatusCode)
	}
	re := regexp.MustCompile(`(?m)^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /status\?code=201&q=1 HTTP/1\.1" 201 ` +
		fmt.Sprint(len(body)) + ` "http://ref\.example/page" "e2e-agent/1\.0"$`)
	if !pollUntil(3*time.Second, func() bool { return re.MatchString(s.Stdout()) }) {
		t.Errorf("no gunicorn-style access line on stdout:\n%s", s.Stdout())
	}
	// No Referer/User-Agent: dashes. A body-less response: "-" for bytes.
	s.Raw(t, "GET /status?code=204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3*time.Second)
	re2 := regexp.MustCompile(`(?m)^127\.0\.0\.1 - - \[[^\]]+\] "GET /status\?code=204 HTTP/1\.1" 204 - "-" "-"$`)
	if !pollUntil(3*time.Second, func() bool { return re2.MatchString(s.Stdout()) }) {
		t.Errorf("no access line for the 204:\n%s", s.Stdout())
	}
	if strings.Contains(s.Stderr(), "GET /status") {
		t.Errorf("access lines went to the error log:\n%s", s.Stderr())
	}
}

func TestLogAccessFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "access.log")
	s := startTestApp(t, "-w", "1", "--access-logfile", path)
	httpGet(t, s, "/pid?from=file-test")
	if !pollUntil(3*time.Second, func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), `"GET /pid?from=file-test HTTP/1.1" 200 `)
	}) {
		b, _ := os.ReadFile(path)
		t.Errorf("access log file: %q", b)
	}
	if strings.Contains(s.Stdout(), "file-test") {
		t.Errorf("access line also written to stdout")
	}
}

// startLogged starts taipan without the harness's readiness check (which
// looks for "Listening at" on stderr) and waits until it accepts connections
// and ready() holds.
func startLogged(t *testing.T, ready func(s *Server) bool, args ...string) *Server {
	t.Helper()
	full := append([]string{"--pythonpath", appsDir(t)}, args...)
	full = append(full, "testapp:app")
	s := startProcess(t, full...)
	ok := pollUntil(20*time.Second, func() bool {
		select {
		case <-s.exited:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return ready(s)
	})
	if !ok {
		t.Fatalf("taipan not ready; stderr:\n%s", s.Stderr())
	}
	return s
}

func TestLogErrorFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "error.log")
	read := func() string { b, _ := os.ReadFile(path); return string(b) }
	s := startLogged(t, func(*Server) bool { return strings.Contains(read(), "Listening at") }, "-w", "1", "--error-logfile", path)
	httpGet(t, s, "/raise")
	httpGet(t, s, "/print?tag=tofile")
	if !pollUntil(3*time.Second, func() bool {
		l := read()
		return strings.Contains(l, "boom-before-start-response") && strings.Contains(l, "stdout-line-from-app tofile")
	}) {
		t.Errorf("error log file lacks the traceback or the app's output:\n%s", read())
	}
	if s.Stderr() != "" {
		t.Errorf("stderr not empty with --error-logfile:\n%s", s.Stderr())
	}
}

func TestLogLevelWarning(t *testing.T) {
	t.Parallel()
	s := startLogged(t, func(*Server) bool { return true }, "-w", "1", "--log-level", "warning")
	httpGet(t, s, "/pid")
	httpGet(t, s, "/raise")
	if !s.WaitLog("boom-before-start-response", 3*time.Second) {
		t.Errorf("ERROR line missing at --log-level warning:\n%s", s.Stderr())
	}
	if strings.Contains(s.Stderr(), "[INFO]") {
		t.Errorf("INFO lines shown at --log-level warning:\n%s", s.Stderr())
	}
}

func TestLogFormat(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	httpGet(t, s, "/raise")
	s.WaitLog("boom-before-start-response", 3*time.Second)
	lines := strings.Split(strings.TrimRight(s.Stderr(), "\n"), "\n")
	entries := 0
	for _, l := range lines {
		if !strings.HasPrefix(l, "[") {
			continue // continuation of a multi-line entry (traceback)
		}
		m := errorLogLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("log line not in gunicorn's layout: %q", l)
			continue
		}
		entries++
		if m[1] != fmt.Sprint(s.Pid()) {
			t.Errorf("log line pid %s, want taipan's %d: %q", m[1], s.Pid(), l)
		}
	}
	if entries < 3 {
		t.Errorf("only %d log entries:\n%s", entries, s.Stderr())
	}
	if !regexp.MustCompile(`(?m)^\[[^\]]+\] \[\d+\] \[INFO\] Listening at: http://` + regexp.QuoteMeta(s.Addr)).MatchString(s.Stderr()) {
		t.Errorf("no 'Listening at' line:\n%s", s.Stderr())
	}
	if !regexp.MustCompile(`(?m)^\[[^\]]+\] \[\d+\] \[ERROR\] .*GET /raise`).MatchString(s.Stderr()) {
		t.Errorf("the app's exception is not an ERROR entry:\n%s", s.Stderr())
	}
}

func TestLogAppOutput(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "2")
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			httpGet(t, s, fmt.Sprintf("/print?tag=t%d", i))
		}()
	}
	wg.Wait()
	for i := 0; i < 4; i++ {
		for _, want := range []string{fmt.Sprintf("stdout-line-from-app t%d", i), fmt.Sprintf("wsgi-errors-line-from-app t%d", i)} {
			if !s.WaitLog(want, 3*time.Second) {
				t.Errorf("error log lacks %q:\n%s", want, s.Stderr())
			}
		}
	}
	// Each relayed line is a whole line of the log (not interleaved).
	for _, l := range strings.Split(s.Stderr(), "\n") {
		if strings.Contains(l, "from-app") && !strings.HasSuffix(l, "from-app "+l[len(l)-2:]) {
			t.Errorf("mangled relayed line %q", l)
		}
	}
	if strings.Contains(s.Stdout(), "from-app") {
		t.Errorf("app output went to taipan's stdout:\n%s", s.Stdout())
	}
}

// TestPidFileOfRunningTaipan: as gunicorn, a second taipan given the pid
// file of a running one refuses to start, instead of taking the file over
// (and deleting it when it stops); a file whose process is gone, or is
// not a taipan, is replaced; and a taipan removes the file at exit only
// while it still holds its own pid.
func TestPidFileOfRunningTaipan(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "taipan.pid")
	first := startTestApp(t, "-w", "1", "--pid", pidFile)
	holds := func() string {
		data, _ := os.ReadFile(pidFile)
		return strings.TrimSpace(string(data))
	}
	code, out := runTaipan(t, 15*time.Second, "--python", pythonPath(), "-b", freeAddr(t), "-w", "1", "--pid", pidFile,
		"--pythonpath", appsDir(t), "testapp:app")
	if want := fmt.Sprintf("Already running on PID %d", first.Pid()); code == 0 || !strings.Contains(out, want) {
		t.Errorf("second taipan: exit %d, output %q; want non-zero and %q", code, out, want)
	}
	if got := holds(); got != fmt.Sprint(first.Pid()) {
		t.Errorf("pid file holds %q, want the running taipan's %d", got, first.Pid())
	}

	// Once another process has the file, the first leaves it alone.
	if err := os.WriteFile(pidFile, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	first.Signal(syscall.SIGTERM)
	if code := first.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := holds(); got != "1" {
		t.Errorf("pid file holds %q after the first taipan stopped, want the 1 written since", got)
	}

	// pid 1 is not a taipan; a pid whose process is gone is stale.
	for _, stale := range []int{1, first.Pid()} {
		os.WriteFile(pidFile, []byte(fmt.Sprintf("%d\n", stale)), 0o644)
		s := startTestApp(t, "-w", "1", "--pid", pidFile)
		if got := holds(); got != fmt.Sprint(s.Pid()) {
			t.Errorf("stale pid file of %d: holds %q, want %d", stale, got, s.Pid())
		}
		s.Signal(syscall.SIGTERM)
		if code := s.Wait(15 * time.Second); code != 0 {
			t.Fatalf("exit %d", code)
		}
		if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
			t.Errorf("pid file still there after exit (stat: %v)", err)
		}
	}
}

// TestStopWhileBooting sends SIGINT and SIGTERM while the app is still
// importing (slowly): taipan must stop at once, workers included, as
// gunicorn does, rather than after the import, or never.
func TestStopWhileBooting(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeApp(t, dir, "slowimport.py", "import time\ntime.sleep(60)\ndef app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'']\n")
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		s := startProcess(t, "-w", "2", "--boot-timeout", "120", "--pythonpath", dir, "slowimport:app")
		var workers []int
		deadline := time.Now().Add(15 * time.Second)
		for workers = s.WorkerPids(); len(workers) < 2 && time.Now().Before(deadline); workers = s.WorkerPids() {
			time.Sleep(20 * time.Millisecond)
		}
		if len(workers) < 2 {
			t.Fatalf("workers %v did not start:\n%s", workers, s.Stderr())
		}
		time.Sleep(200 * time.Millisecond) // into the import
		start := time.Now()
		s.Signal(sig)
		if code := s.Wait(5 * time.Second); code != 0 {
			t.Fatalf("%v while booting: exit %d after %v, want 0 at once\n%s", sig, code, time.Since(start), s.Stderr())
		}
		for _, pid := range workers {
			if !pollUntil(5*time.Second, func() bool { return processGone(pid) }) {
				t.Errorf("%v while booting: worker %d still running after taipan exited", sig, pid)
			}
		}
	}
}

// processGone reports whether pid has exited (a zombie counts as gone).
func processGone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, after, _ := strings.Cut(string(data), ") ")
	return strings.HasPrefix(after, "Z")
}
