package e2e

// End-to-end tests of the process manager (docs/signals.md): reloads,
// recycling, worker deaths, drains, timeouts, heartbeats, scaling, PID 1.
// The load scenarios count every request and every connection error.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// --- the load generator -------------------------------------------------------

const (
	loadHardCap     = 20 * time.Second // no load runs longer
	loadMaxRequests = 200000           // nor sends more requests, all clients together
)

// loadOpts describes a load.
type loadOpts struct {
	clients int
	// path returns the path of request i of client c.
	path func(c, i int) string
	// pause between two requests of a client (0 = none).
	pause time.Duration
	// stopOnRefused ends a client when its connection is refused (the
	// server is gone).
	stopOnRefused bool
}

// loadRecord is one request of the load.
type loadRecord struct {
	client   int
	start    time.Time
	end      time.Time
	path     string
	status   int    // 0 when there was no response
	errKind  string // "" or refused, reset, eof, closed, timeout, other
	errMsg   string
	pid      int    // first field of a 200 body
	version  string // second field of a 200 body, if any
	attempts int    // connections the client tried; > 1 means a hidden retry
}

func (r loadRecord) String() string {
	s := fmt.Sprintf("client %d %s at %s: ", r.client, r.path, r.start.Format("15:04:05.000"))
	if r.errKind != "" {
		s += fmt.Sprintf("error %s (%s)", r.errKind, r.errMsg)
	} else {
		s += fmt.Sprintf("status %d pid %d", r.status, r.pid)
		if r.version != "" {
			s += " version " + r.version
		}
	}
	if r.attempts > 1 {
		s += fmt.Sprintf(" after %d connection attempts", r.attempts)
	}
	return s
}

// ok reports a clean 200 served on the first connection attempt.
func (r loadRecord) ok() bool { return r.errKind == "" && r.status == 200 && r.attempts <= 1 }

// loadGen runs N keep-alive clients until stopped.
type loadGen struct {
	url  string
	opts loadOpts
	stop chan struct{}
	wg   sync.WaitGroup
	n    atomic.Int64

	mu      sync.Mutex
	recs    []loadRecord
	stopped bool
}

// startLoad starts the clients against url.
func startLoad(t testing.TB, url string, opts loadOpts) *loadGen {
	t.Helper()
	if opts.clients <= 0 {
		opts.clients = 16
	}
	if opts.path == nil {
		opts.path = func(int, int) string { return "/pid" }
	}
	g := &loadGen{url: url, opts: opts, stop: make(chan struct{})}
	for c := range opts.clients {
		g.wg.Add(1)
		go g.client(c)
	}
	t.Cleanup(func() { g.Stop() })
	return g
}

func (g *loadGen) client(c int) {
	defer g.wg.Done()
	tr := &http.Transport{
		MaxIdleConnsPerHost:   1,
		MaxConnsPerHost:       1,
		DisableCompression:    true,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		ResponseHeaderTimeout: 15 * time.Second,
		IdleConnTimeout:       30 * time.Second,
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	deadline := time.Now().Add(loadHardCap)
	var local []loadRecord
	defer func() {
		g.mu.Lock()
		g.recs = append(g.recs, local...)
		g.mu.Unlock()
	}()
	for i := 0; ; i++ {
		select {
		case <-g.stop:
			return
		default:
		}
		if time.Now().After(deadline) || g.n.Add(1) > loadMaxRequests {
			return
		}
		r := g.do(cl, c, g.opts.path(c, i))
		local = append(local, r)
		if r.errKind == "refused" && g.opts.stopOnRefused {
			return
		}
		if r.errKind != "" {
			time.Sleep(10 * time.Millisecond) // no hot loop on a dead server
		}
		if g.opts.pause > 0 {
			time.Sleep(g.opts.pause)
		}
	}
}

func (g *loadGen) do(cl *http.Client, c int, path string) loadRecord {
	r := loadRecord{client: c, path: path, start: time.Now()}
	defer func() { r.end = time.Now() }()
	attempts := 0
	trace := &httptrace.ClientTrace{GetConn: func(string) { attempts++ }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", g.url+path, nil)
	if err != nil {
		r.errKind, r.errMsg = "other", err.Error()
		return r
	}
	resp, err := cl.Do(req)
	r.attempts = attempts
	if err != nil {
		r.errKind, r.errMsg = classifyErr(err), err.Error()
		r.end = time.Now()
		return r
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.status = resp.StatusCode
	r.end = time.Now()
	if err != nil {
		r.errKind, r.errMsg = classifyErr(err), "reading body: "+err.Error()
		return r
	}
	if r.status == 200 {
		f := strings.Fields(string(body))
		if len(f) > 0 {
			r.pid, _ = strconv.Atoi(f[0])
		}
		if len(f) > 1 {
			r.version = f[1]
		}
	}
	return r
}

// classifyErr names a client-side error.
func classifyErr(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken-pipe"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "EOF"):
		return "eof"
	case strings.Contains(err.Error(), "closed"):
		return "closed"
	}
	return "other"
}

// Stop stops the clients (each finishes its current request) and returns
// every request made, in start order.
func (g *loadGen) Stop() []loadRecord {
	g.mu.Lock()
	if !g.stopped {
		g.stopped = true
		close(g.stop)
	}
	g.mu.Unlock()
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	sort.Slice(g.recs, func(i, j int) bool { return g.recs[i].start.Before(g.recs[j].start) })
	return slices.Clone(g.recs)
}

// loadSummary counts what a load saw.
type loadSummary struct {
	requests int
	status   map[int]int
	errors   map[string]int
	retried  int // requests the client silently re-sent on a new connection
	pids     map[int]int
	failures []loadRecord
}

func summarize(recs []loadRecord) loadSummary {
	s := loadSummary{requests: len(recs), status: map[int]int{}, errors: map[string]int{}, pids: map[int]int{}}
	for _, r := range recs {
		if r.errKind != "" {
			s.errors[r.errKind]++
		} else {
			s.status[r.status]++
		}
		if r.attempts > 1 {
			s.retried++
		}
		if r.pid > 0 {
			s.pids[r.pid]++
		}
		if !r.ok() {
			s.failures = append(s.failures, r)
		}
	}
	return s
}

func (s loadSummary) String() string {
	return fmt.Sprintf("requests=%d statuses=%v transport-errors=%v hidden-retries=%d distinct-pids=%d",
		s.requests, s.status, s.errors, s.retried, len(s.pids))
}

// failuresText lists the first few failures.
func failuresText(fs []loadRecord) string {
	var b strings.Builder
	for i, r := range fs {
		if i == 20 {
			fmt.Fprintf(&b, "  ... and %d more\n", len(fs)-i)
			break
		}
		fmt.Fprintf(&b, "  %s\n", r)
	}
	return b.String()
}

// requireClean fails the test unless every request got a 200 on its first
// connection attempt.
func requireClean(t testing.TB, what string, recs []loadRecord) loadSummary {
	t.Helper()
	s := summarize(recs)
	t.Logf("%s: %s", what, s)
	if s.requests == 0 {
		t.Errorf("%s: no request was made", what)
	}
	if len(s.failures) > 0 {
		t.Errorf("%s: %d failed requests (non-200, connection errors or hidden client retries):\n%s",
			what, len(s.failures), failuresText(s.failures))
	}
	return s
}

// mixedPaths is mostly the light /pid plus one /sleep?ms=20 in four, so that
// requests are in flight and queued at any moment.
func mixedPaths(c, i int) string {
	if (c+i)%4 == 3 {
		return "/sleep?ms=20"
	}
	return "/pid"
}

// --- helpers ----------------------------------------------------------------------

// startProcApp runs taipan serving e2e/apps/procapp.py with extra args.
func startProcApp(t testing.TB, args ...string) *Server {
	t.Helper()
	full := append([]string{"--pythonpath", appsDir(t)}, args...)
	full = append(full, "procapp:app")
	return Start(t, full...)
}

// procPid asks procapp (or a versioned app) for the pid that served.
func procPid(t testing.TB, s *Server) (int, string) {
	t.Helper()
	code, body := httpGet(t, s, "/pid")
	if code != 200 {
		t.Fatalf("/pid: status %d body %q", code, body)
	}
	f := strings.Fields(body)
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatalf("/pid: %q", body)
	}
	version := ""
	if len(f) > 1 {
		version = f[1]
	}
	return pid, version
}

// versionedApp is a tiny app whose answers carry VERSION: "PID VERSION".
func versionedApp(version string) string {
	return fmt.Sprintf(`import os, time

VERSION = %q


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/sleep":
        time.sleep(0.02)
    body = ("%%d %%s" %% (os.getpid(), VERSION)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`, version)
}

// countLog counts occurrences of substr in the error log.
func countLog(s *Server, substr string) int { return strings.Count(s.Stderr(), substr) }

// waitLogCount waits until substr appears at least n times in the log.
func waitLogCount(s *Server, substr string, n int, timeout time.Duration) bool {
	return pollUntil(timeout, func() bool { return countLog(s, substr) >= n })
}

// workerID finds the id taipan gave the worker with pid ("Booted worker N with pid P").
func workerID(t testing.TB, s *Server, pid int) int {
	t.Helper()
	re := regexp.MustCompile(fmt.Sprintf(`Booted worker (\d+) with pid %d\b`, pid))
	var id int
	if !pollUntil(3*time.Second, func() bool {
		m := re.FindStringSubmatch(s.Stderr())
		if m == nil {
			return false
		}
		id, _ = strconv.Atoi(m[1])
		return true
	}) {
		t.Fatalf("no \"Booted worker N with pid %d\" line in the log:\n%s", pid, s.Stderr())
	}
	return id
}

var logEntryStart = regexp.MustCompile(`\n\[\d{4}-\d\d-\d\d `)

// logEntry returns the (possibly multi-line) log entry that contains
// marker, or "".
func logEntry(log, marker string) string {
	i := strings.Index(log, marker)
	if i < 0 {
		return ""
	}
	rest := log[i:]
	if loc := logEntryStart.FindStringIndex(rest); loc != nil {
		rest = rest[:loc[0]]
	}
	return rest
}

func pidSet(pids []int) map[int]bool {
	m := map[int]bool{}
	for _, p := range pids {
		m[p] = true
	}
	return m
}

// liveWorkers is WorkerPids without zombies.
func liveWorkers(s *Server) []int {
	var out []int
	for _, p := range s.WorkerPids() {
		if pidAlive(p) {
			out = append(out, p)
		}
	}
	return out
}

// --- 1. reload under load --------------------------------------------------------

func TestProcmanReloadUnderLoad(t *testing.T) {
	t.Parallel()

	t.Run("hup", func(t *testing.T) {
		s := startProcApp(t, "-w", "2")
		initial := pidSet(liveWorkers(s))
		if len(initial) != 2 {
			t.Fatalf("want 2 workers at start, got %v", initial)
		}
		load := startLoad(t, s.URL, loadOpts{clients: 16, path: mixedPaths})
		time.Sleep(300 * time.Millisecond)
		for i := 0; i < 10; i++ {
			s.Signal(syscall.SIGHUP)
			time.Sleep(400 * time.Millisecond)
		}
		if !waitLogCount(s, "Reloaded:", 10, 15*time.Second) {
			t.Errorf("want 10 \"Reloaded\" lines, got %d", countLog(s, "Reloaded:"))
		}
		// Old generations finish and exit.
		pollUntil(10*time.Second, func() bool { return len(liveWorkers(s)) == 2 })
		time.Sleep(300 * time.Millisecond) // some load on the last generation
		recs := load.Stop()
		sum := requireClean(t, "10 HUP reloads, -w 2, 16 clients", recs)
		if n := countLog(s, "Reloaded:"); n != 10 {
			t.Errorf("%d \"Reloaded\" lines, want exactly 10", n)
		}
		if n := countLog(s, "Reload failed"); n != 0 {
			t.Errorf("%d failed reloads:\n%s", n, s.Stderr())
		}
		final := liveWorkers(s)
		if len(final) != 2 {
			t.Errorf("after the reloads: workers %v, want 2", final)
		}
		for _, p := range final {
			if initial[p] {
				t.Errorf("worker %d of the initial generation still running after 10 reloads", p)
			}
		}
		t.Logf("distinct worker pids that served: %d (initial %v, final %v)", len(sum.pids), initial, final)
		if len(sum.pids) < 2*11 {
			t.Errorf("only %d distinct pids served over 11 generations of 2 workers", len(sum.pids))
		}
	})

	t.Run("new-code", func(t *testing.T) {
		dir := t.TempDir()
		writeApp(t, dir, "verapp.py", versionedApp("v0"))
		s := Start(t, "-w", "2", "--pythonpath", dir, "-e", "PYTHONDONTWRITEBYTECODE=1", "verapp:app")
		if _, v := procPid(t, s); v != "v0" {
			t.Fatalf("version %q at start, want v0", v)
		}
		load := startLoad(t, s.URL, loadOpts{clients: 16, path: mixedPaths})
		time.Sleep(300 * time.Millisecond)
		const reloads = 4
		reloadedAt := make([]time.Time, reloads+1)
		for i := 1; i <= reloads; i++ {
			version := fmt.Sprintf("v%d", i)
			writeApp(t, dir, "verapp.py", versionedApp(version))
			s.Signal(syscall.SIGHUP)
			if !waitLogCount(s, "Reloaded:", i, 10*time.Second) {
				t.Fatalf("reload %d did not finish:\n%s", i, s.Stderr())
			}
			reloadedAt[i] = time.Now()
			for k := 0; k < 5; k++ {
				if _, v := procPid(t, s); v != version {
					t.Errorf("reload %d: request after \"Reloaded\" answered %q, want %q", i, v, version)
				}
			}
			time.Sleep(400 * time.Millisecond)
		}
		recs := load.Stop()
		requireClean(t, "4 HUP reloads with new code, -w 2, 16 clients", recs)
		// Every request sent after reload i was logged must be served by
		// generation i or later.
		stale := 0
		for _, r := range recs {
			if r.version == "" {
				continue
			}
			want := 0
			for i := 1; i <= reloads; i++ {
				if r.start.After(reloadedAt[i]) {
					want = i
				}
			}
			got, _ := strconv.Atoi(strings.TrimPrefix(r.version, "v"))
			if got < want {
				stale++
				if stale <= 10 {
					t.Errorf("stale code: %s sent after reload %d finished", r, want)
				}
			}
		}
		if stale > 0 {
			t.Errorf("%d requests served by an old generation after the reload finished", stale)
		}
	})

	t.Run("syntax-error", func(t *testing.T) {
		dir := t.TempDir()
		writeApp(t, dir, "verapp.py", versionedApp("v1"))
		s := Start(t, "-w", "2", "--pythonpath", dir, "-e", "PYTHONDONTWRITEBYTECODE=1", "verapp:app")
		before := pidSet(liveWorkers(s))
		load := startLoad(t, s.URL, loadOpts{clients: 16, path: mixedPaths})
		time.Sleep(300 * time.Millisecond)
		writeApp(t, dir, "verapp.py", versionedApp("v2")+"\ndef broken(:\n    pass\n")
		s.Signal(syscall.SIGHUP)
		if !s.WaitLog("Reload failed", 10*time.Second) {
			t.Fatalf("no \"Reload failed\" in the log:\n%s", s.Stderr())
		}
		time.Sleep(500 * time.Millisecond) // keep serving from the old workers
		recs := load.Stop()
		sum := requireClean(t, "HUP with a syntax error, -w 2, 16 clients", recs)
		entry := logEntry(s.Stderr(), "Reload failed")
		for _, want := range []string{"SyntaxError", "verapp.py"} {
			if !strings.Contains(entry, want) {
				t.Errorf("the reload failure does not mention %q:\n%s", want, entry)
			}
		}
		if n := countLog(s, "Reloaded:"); n != 0 {
			t.Errorf("%d \"Reloaded\" lines after a failed reload", n)
		}
		for p := range sum.pids {
			if !before[p] {
				t.Errorf("pid %d served but is not one of the original workers %v", p, before)
			}
		}
		for _, r := range recs {
			if r.version != "" && r.version != "v1" {
				t.Errorf("served by new code after a failed reload: %s", r)
				break
			}
		}
		if after := pidSet(liveWorkers(s)); len(after) != 2 || !after[keys(before)[0]] || !after[keys(before)[1]] {
			t.Errorf("workers changed after a failed reload: before %v, after %v", before, after)
		}
		// Fixing the code and reloading again works.
		writeApp(t, dir, "verapp.py", versionedApp("v3"))
		s.Signal(syscall.SIGHUP)
		if !s.WaitLog("Reloaded:", 10*time.Second) {
			t.Fatalf("the reload after the fix did not finish:\n%s", s.Stderr())
		}
		if _, v := procPid(t, s); v != "v3" {
			t.Errorf("after fixing the code and reloading: version %q, want v3", v)
		}
	})
}

func keys(m map[int]bool) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// --- 2. --max-requests -------------------------------------------------------------

func TestProcmanMaxRequests(t *testing.T) {
	t.Parallel()
	t.Run("saturated", func(t *testing.T) {
		testMaxRequests(t, loadOpts{clients: 16, path: mixedPaths}, "16 clients, saturated")
	})
	t.Run("light-load", func(t *testing.T) {
		testMaxRequests(t, loadOpts{clients: 4, pause: 5 * time.Millisecond}, "4 light clients")
	})
}

func testMaxRequests(t *testing.T, opts loadOpts, what string) {
	const workers = 2
	s := startProcApp(t, "-w", strconv.Itoa(workers), "--max-requests", "50", "--max-requests-jitter", "10")
	var (
		minCount = 1 << 30
		maxCount = 0
		samples  = 0
		lowAt    []string
	)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(10 * time.Millisecond):
			}
			n := len(s.WorkerPids())
			samples++
			minCount = min(minCount, n)
			maxCount = max(maxCount, n)
			if n < workers && len(lowAt) < 10 {
				lowAt = append(lowAt, fmt.Sprintf("%s: %d", time.Now().Format("15:04:05.000"), n))
			}
		}
	}()
	load := startLoad(t, s.URL, opts)
	time.Sleep(5 * time.Second)
	recs := load.Stop()
	close(stopSampling)
	<-sampled
	sum := requireClean(t, "--max-requests 50 --max-requests-jitter 10, -w 2, "+what, recs)
	t.Logf("worker count samples: %d, min %d, max %d; recycled %d times",
		samples, minCount, maxCount, countLog(s, "Recycling worker"))
	if len(sum.pids) <= 2*workers {
		t.Errorf("only %d distinct worker pids served %d requests with --max-requests 50", len(sum.pids), sum.requests)
	}
	if want := sum.requests / 60 / 2; len(sum.pids) < want {
		t.Errorf("%d distinct pids for %d requests: recycling lags (want at least %d)", len(sum.pids), sum.requests, want)
	}
	if minCount < workers {
		t.Errorf("worker count dropped to %d (< -w %d) at: %v", minCount, workers, lowAt)
	}
	// No worker served far more than its limit. A worker keeps serving while
	// its replacement boots (replace before retire, so capacity never
	// drops), so it may pass the limit by what it serves in that time:
	// allow one second of a worker's share of the load, plus a batch.
	perWorkerPerSecond := sum.requests / 5 / workers
	bound := 60 + 32 + perWorkerPerSecond
	over := map[int]int{}
	for pid, n := range sum.pids {
		if n > bound {
			over[pid] = n
		}
	}
	if len(over) > 0 {
		t.Errorf("%d of %d workers served more than %d requests (limit 50..60, one batch and one second of load while the replacement boots): %v",
			len(over), len(sum.pids), bound, over)
	}
}

// --- 3. SIGKILL workers under load ------------------------------------------------

func TestProcmanKillWorkers(t *testing.T) {
	t.Parallel()
	s := startProcApp(t, "-w", "3")
	load := startLoad(t, s.URL, loadOpts{clients: 16, path: mixedPaths})
	time.Sleep(500 * time.Millisecond)
	kills := 0
	var killed []int
	for i := 0; i < 10; i++ {
		pids := liveWorkers(s)
		if len(pids) > 0 {
			p := pids[rand.IntN(len(pids))]
			if syscall.Kill(p, syscall.SIGKILL) == nil {
				kills++
				killed = append(killed, p)
			}
		}
		time.Sleep(time.Second)
	}
	recs := load.Stop()
	sum := summarize(recs)
	t.Logf("%d SIGKILLs (%v) under -w 3, 16 clients: %s", kills, killed, sum)
	gateway := 0
	for _, r := range sum.failures {
		switch {
		case r.errKind == "" && (r.status == 502 || r.status == 504) && r.attempts <= 1:
			gateway++
		default:
			t.Errorf("not allowed: %s", r)
		}
	}
	if gateway > kills {
		t.Errorf("%d responses 502/504 for %d kills: more than one per kill", gateway, kills)
	}
	if sum.status[200] == 0 {
		t.Errorf("no request succeeded")
	}
	// Still serving, with 3 workers.
	if !pollUntil(5*time.Second, func() bool { return len(liveWorkers(s)) == 3 }) {
		t.Errorf("workers after the kills: %v, want 3", liveWorkers(s))
	}
	for i := 0; i < 6; i++ {
		procPid(t, s)
	}
	if n := countLog(s, "exited unexpectedly"); n < kills {
		t.Errorf("%d \"exited unexpectedly\" lines for %d kills", n, kills)
	}
}

// --- 4. SIGTERM drains what was accepted -------------------------------------------

func TestProcmanTermDrain(t *testing.T) {
	t.Parallel()
	const graceful = 10 * time.Second
	s := startProcApp(t, "-w", "1", "--graceful-timeout", "10")
	load := startLoad(t, s.URL, loadOpts{
		clients:       8,
		path:          func(int, int) string { return "/sleep?ms=50" },
		stopOnRefused: true,
	})
	time.Sleep(1500 * time.Millisecond)
	signalled := time.Now()
	s.Signal(syscall.SIGTERM)
	code := s.Wait(graceful + 5*time.Second)
	exitAfter := time.Since(signalled)
	done := make(chan []loadRecord)
	go func() { done <- load.Stop() }()
	var recs []loadRecord
	select {
	case recs = <-done:
	case <-time.After(25 * time.Second):
		t.Fatal("the load did not stop")
	}
	if code != 0 {
		t.Errorf("exit code %d, want 0\n%s", code, s.Stderr())
	}
	if exitAfter > graceful {
		t.Errorf("taipan exited %v after SIGTERM, beyond --graceful-timeout %v", exitAfter, graceful)
	}
	var before, after []loadRecord
	for _, r := range recs {
		if r.start.Before(signalled) {
			before = append(before, r)
		} else {
			after = append(after, r)
		}
	}
	sb, sa := summarize(before), summarize(after)
	t.Logf("SIGTERM, -w 1, 8 clients of /sleep?ms=50: exit %d after %v", code, exitAfter.Round(time.Millisecond))
	t.Logf("  sent before the signal: %s", sb)
	t.Logf("  sent after the signal:  %s", sa)
	// Sent before the signal: 200, or refused when the request raced the
	// close of its idle keep-alive connection (the server had not read
	// it; the client re-sent it and the new connection was refused).
	inFlightAtSignal := 0
	for _, r := range before {
		if r.end.After(signalled) && r.errKind == "" {
			inFlightAtSignal++
			t.Logf("in flight at the signal: %s, answered %v after it", r, r.end.Sub(signalled).Round(time.Millisecond))
		}
		switch {
		case r.errKind == "" && r.status == 200:
		case r.errKind == "refused" && r.attempts > 1:
			t.Logf("raced the close of an idle connection: %s", r)
		default:
			t.Errorf("a request sent before SIGTERM failed: %s", r)
		}
	}
	if inFlightAtSignal < 4 {
		t.Errorf("only %d requests were in flight or queued at the signal; the scenario did not test the drain", inFlightAtSignal)
	}
	// Sent after the signal: never served by a new connection; refused.
	for _, r := range after {
		switch {
		case r.errKind == "refused":
		case r.errKind == "" && r.status == 200:
			t.Logf("served after the signal (was already read on a busy connection?): %s", r)
		default:
			t.Errorf("a request sent after SIGTERM got neither a 200 nor a refused connection: %s", r)
		}
	}
	if sa.errors["refused"] == 0 {
		t.Errorf("no connection was refused after SIGTERM")
	}
}

// --- 5. -t/--timeout with a traceback ------------------------------------------------

func TestProcmanTimeoutTraceback(t *testing.T) {
	t.Parallel()
	s := startProcApp(t, "-w", "1", "-t", "1")
	for _, tc := range []struct{ path, function string }{
		{"/hang?case=sleeping", "wait_for_the_lock_forever"},
		{"/spin?case=busy", "spin_until_the_end_of_time"},
	} {
		t.Run(tc.function, func(t *testing.T) {
			pid, _ := procPid(t, s)
			id := workerID(t, s, pid)
			start := time.Now()
			code, body := httpGet(t, s, tc.path)
			took := time.Since(start)
			t.Logf("%s: %d after %v", tc.path, code, took.Round(time.Millisecond))
			if code != 504 {
				t.Errorf("status %d (%q), want 504", code, body)
			}
			if took < 900*time.Millisecond || took > 5*time.Second {
				t.Errorf("504 after %v, want about 1 s (the monitor ticks and the stack dump add a little)", took)
			}
			marker := fmt.Sprintf("WORKER TIMEOUT: worker %d (pid %d)", id, pid)
			if !s.WaitLog(marker, 5*time.Second) {
				t.Fatalf("no %q in the log:\n%s", marker, s.Stderr())
			}
			entry := logEntry(s.Stderr(), marker)
			for _, want := range []string{"GET " + tc.path, tc.function, "procapp.py"} {
				if !strings.Contains(entry, want) {
					t.Errorf("the timeout entry lacks %q:\n%s", want, entry)
				}
			}
			if !pollUntil(3*time.Second, func() bool { return !pidAlive(pid) }) {
				t.Errorf("worker %d still alive after its timeout", pid)
			}
			next, _ := procPid(t, s)
			if next == pid {
				t.Errorf("the next request was served by the timed-out worker %d", pid)
			}
		})
	}
}

// --- 6. heartbeats --------------------------------------------------------------

func TestProcmanHeartbeat(t *testing.T) {
	t.Parallel()
	// The defaults (5 s / 30 s) would make this test take 35 s;
	// --heartbeat and --heartbeat-timeout shorten it.
	s := startProcApp(t, "-w", "2", "--heartbeat", "0.5", "--heartbeat-timeout", "2")
	before := liveWorkers(s)
	code, body := httpGet(t, s, "/freeze")
	if code != 200 {
		t.Fatalf("/freeze: %d %q", code, body)
	}
	frozen, _ := strconv.Atoi(strings.TrimSpace(body))
	id := workerID(t, s, frozen)
	frozeAt := time.Now()
	// No request now: a frozen worker on the idle list would get it.
	marker := fmt.Sprintf("WORKER UNRESPONSIVE: worker %d (pid %d)", id, frozen)
	if !s.WaitLog(marker, 15*time.Second) {
		t.Fatalf("no %q within 15 s:\n%s", marker, s.Stderr())
	}
	t.Logf("frozen worker %d replaced %v after it froze", frozen, time.Since(frozeAt).Round(time.Millisecond))
	entry := logEntry(s.Stderr(), marker)
	if !strings.Contains(entry, "hold_the_gil_in_c") {
		t.Errorf("the unresponsive entry does not show the thread holding the GIL:\n%s", entry)
	}
	if !pollUntil(5*time.Second, func() bool { return !pidAlive(frozen) }) {
		t.Fatalf("frozen worker %d still alive", frozen)
	}
	if !pollUntil(5*time.Second, func() bool { return len(liveWorkers(s)) == 2 }) {
		t.Fatalf("workers %v, want 2 after the replacement", liveWorkers(s))
	}
	after := liveWorkers(s)
	if slices.Contains(after, frozen) {
		t.Errorf("frozen pid %d still a worker", frozen)
	}
	newPid := false
	for _, p := range after {
		if !slices.Contains(before, p) {
			newPid = true
		}
	}
	if !newPid {
		t.Errorf("no new worker pid: before %v, after %v", before, after)
	}
	for i := 0; i < 4; i++ {
		procPid(t, s)
	}
	// The healthy worker answered its heartbeats and was left alone.
	if n := countLog(s, "WORKER UNRESPONSIVE"); n != 1 {
		t.Errorf("%d unresponsive workers, want 1:\n%s", n, s.Stderr())
	}
}

// --- 7. --max-rss -------------------------------------------------------------------

func TestProcmanMaxRSS(t *testing.T) {
	t.Parallel()
	// light: the scenario of docs/signals.md, a worker idle now and then.
	t.Run("light-load", func(t *testing.T) {
		testMaxRSS(t, loadOpts{clients: 4, pause: 5 * time.Millisecond}, "4 light clients")
	})
	// saturated: every worker always has work queued. "Checked between
	// requests" must still happen.
	t.Run("saturated", func(t *testing.T) {
		testMaxRSS(t, loadOpts{clients: 16, path: func(int, int) string { return "/sleep?ms=5" }}, "16 clients, saturated")
	})
}

func testMaxRSS(t *testing.T, opts loadOpts, what string) {
	s := startProcApp(t, "-w", "2", "--max-rss", "60")
	load := startLoad(t, s.URL, opts)
	time.Sleep(300 * time.Millisecond)
	code, body := httpGet(t, s, "/alloc?mb=80")
	if code != 200 {
		t.Fatalf("/alloc: %d %q", code, body)
	}
	fat, _ := strconv.Atoi(strings.TrimSpace(body))
	rss, _ := procStatusKB(fat, "VmRSS")
	t.Logf("worker %d RSS after /alloc?mb=80: %d MB", fat, rss>>10)
	marker := fmt.Sprintf("(pid %d): resident memory", fat)
	recycled := s.WaitLog(marker, 8*time.Second)
	if recycled && !pollUntil(10*time.Second, func() bool { return !pidAlive(fat) }) {
		t.Errorf("worker %d still alive after its recycling was logged", fat)
	}
	time.Sleep(500 * time.Millisecond)
	recs := load.Stop()
	sum := requireClean(t, "--max-rss 60, "+what, recs)
	if !recycled {
		rss, _ := procStatusKB(fat, "VmRSS")
		t.Fatalf("worker %d (RSS %d MB > --max-rss 60) not recycled within 8 s; it served %d of %d requests meanwhile; %d \"Recycling\" lines",
			fat, rss>>10, sum.pids[fat], sum.requests, countLog(s, "Recycling worker"))
	}
	if !regexp.MustCompile(fmt.Sprintf(`Recycling worker \d+ \(pid %d\): resident memory \d+ MB is above --max-rss 60 MB`, fat)).MatchString(s.Stderr()) {
		t.Errorf("no \"Recycling worker\" line for %d:\n%s", fat, s.Stderr())
	}
	late := map[int]bool{}
	for _, r := range recs[len(recs)*9/10:] {
		if r.pid > 0 {
			late[r.pid] = true
		}
	}
	if late[fat] {
		t.Errorf("the recycled worker %d still served at the end", fat)
	}
	if w := liveWorkers(s); len(w) != 2 || slices.Contains(w, fat) {
		t.Errorf("workers %v, want 2 without %d", w, fat)
	}
}

// --- 8. TTIN / TTOU -----------------------------------------------------------------

func TestProcmanScale(t *testing.T) {
	t.Parallel()
	s := startProcApp(t, "-w", "2")
	step := func(sig syscall.Signal, want int) {
		t.Helper()
		s.Signal(sig)
		if !pollUntil(5*time.Second, func() bool { return len(liveWorkers(s)) == want }) {
			t.Fatalf("after %v: workers %v, want %d\n%s", sig, liveWorkers(s), want, s.Stderr())
		}
		time.Sleep(time.Second)
		if n := len(liveWorkers(s)); n != want {
			t.Fatalf("a second after %v: %d workers, want %d", sig, n, want)
		}
		procPid(t, s)
	}
	step(syscall.SIGTTIN, 3)
	step(syscall.SIGTTIN, 4)
	step(syscall.SIGTTOU, 3)
	step(syscall.SIGTTOU, 2)
	step(syscall.SIGTTOU, 1)
	step(syscall.SIGTTOU, 1) // never below one
	step(syscall.SIGTTOU, 1)
	step(syscall.SIGTTIN, 2)
	if got := concurrentPids(t, s, 2); len(got) != 2 {
		t.Errorf("two concurrent requests were served by %v, want two workers", got)
	}
}

// TestProcmanScaleDuringReload: TTIN or TTOU while a reload's new workers
// boot changes the number of workers the reload ends with.
func TestProcmanScaleDuringReload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		want int
	}{{"TTIN", syscall.SIGTTIN, 3}, {"TTOU", syscall.SIGTTOU, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			delay := filepath.Join(dir, "boot_delay")
			os.WriteFile(delay, []byte("0"), 0o644)
			writeApp(t, dir, "slowboot.py", fmt.Sprintf("import time\ntime.sleep(float(open(%q).read()))\n", delay)+versionedApp("v1"))
			s := startProcess(t, "-w", "2", "--pythonpath", dir, "-e", "PYTHONDONTWRITEBYTECODE=1", "slowboot:app")
			if err := s.waitReady(30 * time.Second); err != nil {
				t.Fatalf("not ready: %v\n%s", err, s.Stderr())
			}
			os.WriteFile(delay, []byte("2"), 0o644) // the reload's workers take 2 s to import the app
			s.Signal(syscall.SIGHUP)
			if !s.WaitLog("Reloading: starting 2 new workers", 5*time.Second) {
				t.Fatalf("no reload:\n%s", s.Stderr())
			}
			time.Sleep(500 * time.Millisecond)
			s.Signal(tc.sig)
			if !s.WaitLog("Reloaded:", 15*time.Second) {
				t.Fatalf("the reload did not finish:\n%s", s.Stderr())
			}
			if !pollUntil(15*time.Second, func() bool { return len(liveWorkers(s)) == tc.want }) {
				t.Fatalf("after %s during a reload: workers %v, want %d\n%s", tc.name, liveWorkers(s), tc.want, s.Stderr())
			}
			time.Sleep(time.Second)
			if n := len(liveWorkers(s)); n != tc.want {
				t.Fatalf("a second later: %d workers, want %d\n%s", n, tc.want, s.Stderr())
			}
			procPid(t, s)
		})
	}
}

// TestProcmanQueueShared: requests that queue while every worker is busy
// are shared among the workers, not all sent to the first one free, where
// they would wait behind each other while the other worker idles.
func TestProcmanQueueShared(t *testing.T) {
	t.Parallel()
	s := startProcApp(t, "-w", "2")
	const n = 20
	counts := make(chan int, n)
	for range n {
		go func() {
			resp, err := timeoutClient(testTimeout).Get(s.URL + "/sleep?ms=200")
			if err != nil {
				t.Error(err)
				counts <- 0
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			counts <- p
		}()
	}
	served := map[int]int{}
	for range n {
		served[<-counts]++
	}
	if len(served) != 2 {
		t.Fatalf("%d requests served by %v, want both workers", n, served)
	}
	for pid, c := range served {
		if c < n/4 {
			t.Errorf("worker %d served %d of %d requests (%v): the queue was not shared", pid, c, n, served)
		}
	}
}

// concurrentPids sends n slow requests at once and returns the pids that
// served them.
func concurrentPids(t testing.TB, s *Server, n int) map[int]bool {
	t.Helper()
	type res struct {
		code int
		body string
		err  error
	}
	ch := make(chan res, n)
	for range n {
		go func() {
			resp, err := timeoutClient(testTimeout).Get(s.URL + "/sleep?ms=300")
			if err != nil {
				ch <- res{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			ch <- res{resp.StatusCode, string(b), err}
		}()
	}
	seen := map[int]bool{}
	for range n {
		r := <-ch
		if r.err != nil || r.code != 200 {
			t.Errorf("/sleep: %d %v", r.code, r.err)
			continue
		}
		p, _ := strconv.Atoi(strings.TrimSpace(r.body))
		seen[p] = true
	}
	return seen
}

// --- 9. --pid -------------------------------------------------------------------------

func TestProcmanPidFile(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "taipan.pid")
	s := startProcApp(t, "-w", "1", "--pid", pidFile)
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	if got := strings.TrimSpace(string(data)); got != strconv.Itoa(s.Pid()) {
		t.Errorf("pid file holds %q, taipan's pid is %d", got, s.Pid())
	}
	s.Signal(syscall.SIGTERM)
	if code := s.Wait(10 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file still there after exit (stat: %v)", err)
	}
}

// --- 10. --reload ---------------------------------------------------------------------

func TestProcmanReloadFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeApp(t, dir, "verapp.py", versionedApp("v1"))
	s := Start(t, "-w", "2", "--reload", "--chdir", dir, "-e", "PYTHONDONTWRITEBYTECODE=1", "verapp:app")
	if !s.WaitLog("Watching", 5*time.Second) {
		t.Fatalf("no \"Watching\" line:\n%s", s.Stderr())
	}
	load := startLoad(t, s.URL, loadOpts{clients: 4, pause: 5 * time.Millisecond, path: mixedPaths})
	time.Sleep(300 * time.Millisecond)
	for _, v := range []string{"v2", "v3"} {
		written := time.Now()
		writeApp(t, dir, "verapp.py", versionedApp(v))
		var got string
		if !pollUntil(5*time.Second, func() bool { _, got = procPid(t, s); return got == v }) {
			t.Fatalf("5 s after rewriting the module: version %q, want %q\n%s", got, v, s.Stderr())
		}
		t.Logf("%s served %v after the file was written", v, time.Since(written).Round(time.Millisecond))
		time.Sleep(500 * time.Millisecond)
	}
	recs := load.Stop()
	requireClean(t, "--reload, 4 light clients", recs)
	if n := countLog(s, "changed; reloading"); n < 2 {
		t.Errorf("%d \"changed; reloading\" lines, want 2", n)
	}
}

// --- 11. boot failures back off ---------------------------------------------------------

func TestProcmanBootFailureBackoff(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "fail-marker")
	s := startProcApp(t, "-w", "2", "-e", "PROCAPP_FAIL_MARKER="+marker)
	workers := liveWorkers(s)
	if len(workers) != 2 {
		t.Fatalf("workers %v", workers)
	}
	if err := os.WriteFile(marker, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	victim := workers[0]
	syscall.Kill(victim, syscall.SIGKILL)
	const failing = "A worker failed to boot, retrying in "
	if !waitLogCount(s, failing, 4, 10*time.Second) {
		t.Fatalf("want 4 boot failures, got %d:\n%s", countLog(s, failing), s.Stderr())
	}
	// The other worker serves meanwhile.
	for i := 0; i < 5; i++ {
		if p, _ := procPid(t, s); p != workers[1] {
			t.Errorf("served by %d, want the surviving worker %d", p, workers[1])
		}
	}
	re := regexp.MustCompile(regexp.QuoteMeta(failing) + `(\S+): `)
	var delays []time.Duration
	for _, m := range re.FindAllStringSubmatch(s.Stderr(), -1) {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("bad delay %q", m[1])
		}
		delays = append(delays, d)
	}
	t.Logf("backoff delays: %v", delays)
	for i := 1; i < len(delays); i++ {
		if delays[i] <= delays[i-1] {
			t.Errorf("delays do not grow: %v", delays)
			break
		}
	}
	if !strings.Contains(logEntry(s.Stderr(), failing), "procapp refuses to boot") {
		t.Errorf("the boot failure does not carry the traceback:\n%s", logEntry(s.Stderr(), failing))
	}
	if code := s.Wait(0); code != -1 {
		t.Fatalf("taipan exited (%d) while a worker failed to boot", code)
	}
	os.Remove(marker)
	if !pollUntil(10*time.Second, func() bool { return len(liveWorkers(s)) == 2 }) {
		t.Fatalf("workers %v 10 s after the marker was removed, want 2:\n%s", liveWorkers(s), s.Stderr())
	}
	if got := concurrentPids(t, s, 2); len(got) != 2 {
		t.Errorf("two concurrent requests were served by %v, want two workers", got)
	}
}

// --- 12. PID 1 reaps orphans -----------------------------------------------------------

func TestProcmanPID1Reaper(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare")
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "--kill-child",
		taipanBin, "--python", pythonPath(), "-b", addr, "-w", "2", "--pythonpath", appsDir(t), "procapp:app")
	var mu sync.Mutex
	var stderr bytes.Buffer
	cmd.Stdout = lockedWriter{&mu, &stderr}
	cmd.Stderr = lockedWriter{&mu, &stderr}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	log := func() string { mu.Lock(); defer mu.Unlock(); return stderr.String() }
	// taipan's pid outside the namespace: unshare's child.
	taipanHostPid := func() int {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		p, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		return p
	}
	t.Cleanup(func() {
		if p := taipanHostPid(); p > 0 {
			syscall.Kill(p, syscall.SIGTERM)
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			if p := taipanHostPid(); p > 0 {
				syscall.Kill(p, syscall.SIGKILL)
			}
			cmd.Process.Kill()
			<-exited
		}
	})
	if !pollUntil(30*time.Second, func() bool { return strings.Contains(log(), "Listening at") }) {
		t.Fatalf("taipan did not start in the namespace:\n%s", log())
	}
	if !strings.Contains(log(), "Listening at: http://"+addr+" (1)") {
		t.Fatalf("taipan is not PID 1 in the namespace:\n%s", log())
	}
	s := &Server{Addr: addr, URL: "http://" + addr}
	dir := t.TempDir()
	for i := 0; i < 5; i++ {
		out := filepath.Join(dir, fmt.Sprintf("ppid-%d", i))
		if code, body := httpGet(t, s, "/orphan?out="+out); code != 200 {
			t.Fatalf("/orphan: %d %q", code, body)
		}
		ppid, ok := waitMarker(out, 5*time.Second)
		if !ok {
			t.Fatalf("the grandchild did not report its parent")
		}
		if ppid != "1" {
			t.Errorf("the orphan's parent is %s, want 1 (taipan)", ppid)
		}
	}
	time.Sleep(time.Second)
	code, body := httpGet(t, s, "/zombies")
	if code != 200 {
		t.Fatalf("/zombies: %d", code)
	}
	t.Logf("zombies in the namespace a second after 5 orphans exited: %s", body)
	if !strings.HasPrefix(body, "0 ") {
		t.Errorf("zombies left in the namespace: %s\n%s", body, log())
	}
	// The workers (which taipan reaps through os/exec) are unaffected.
	for i := 0; i < 6; i++ {
		if code, _ := httpGet(t, s, "/pid"); code != 200 {
			t.Errorf("/pid: %d", code)
		}
	}
	if strings.Contains(log(), "exited unexpectedly") {
		t.Errorf("a worker died:\n%s", log())
	}
	// A worker killed inside the namespace is still replaced (the reaper
	// does not steal its exit status from os/exec).
	if code, _ := httpGet(t, s, "/sleep?ms=1"); code != 200 {
		t.Fatal("no answer")
	}
	if p := taipanHostPid(); p > 0 {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p, p))
		if f := strings.Fields(string(data)); len(f) > 0 {
			victim, _ := strconv.Atoi(f[0])
			syscall.Kill(victim, syscall.SIGKILL)
			if !pollUntil(5*time.Second, func() bool {
				return strings.Contains(log(), "exited unexpectedly") && strings.Count(log(), "Booted worker") >= 3
			}) {
				t.Errorf("a killed worker was not replaced in the namespace:\n%s", log())
			}
		}
	}
	if code, _ := httpGet(t, s, "/pid"); code != 200 {
		t.Errorf("/pid after the kill: %d", code)
	}
}

// --- 13. --post-fork ---------------------------------------------------------------------

func TestProcmanPostFork(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "postfork")
	s := startProcApp(t, "-w", "3", "--post-fork", "procapp:post_fork", "-e", "PROCAPP_POSTFORK_FILE="+file)
	check := func() {
		t.Helper()
		workers := liveWorkers(s)
		for _, p := range workers {
			workerID(t, s, p) // booted: the hook has run
		}
		data, _ := os.ReadFile(file)
		recorded := map[int]bool{}
		for _, f := range strings.Fields(string(data)) {
			p, _ := strconv.Atoi(f)
			recorded[p] = true
		}
		for _, p := range workers {
			if !recorded[p] {
				t.Errorf("worker %d is not in the post-fork file %v", p, keys(recorded))
			}
		}
	}
	check()
	victim := liveWorkers(s)[0]
	syscall.Kill(victim, syscall.SIGKILL)
	if !pollUntil(5*time.Second, func() bool { w := liveWorkers(s); return len(w) == 3 && !slices.Contains(w, victim) }) {
		t.Fatalf("no replacement for %d", victim)
	}
	check() // the replacement ran the hook too
}

// --- --preload (lightly: it is being finished) -------------------------------------------

func TestProcmanPreload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "postfork")
	writeApp(t, dir, "verapp.py", versionedApp("v1")+`

def post_fork():
    with open(os.environ["PROCAPP_POSTFORK_FILE"], "a") as f:
        f.write("%d\n" % os.getpid())
`)
	s := startProcess(t, "-w", "2", "--preload", "--pythonpath", dir, "-e", "PYTHONDONTWRITEBYTECODE=1",
		"-e", "PROCAPP_POSTFORK_FILE="+file, "--post-fork", "verapp:post_fork", "verapp:app")
	if err := s.waitReady(30 * time.Second); err != nil {
		out := s.Stderr()
		lower := strings.ToLower(out)
		if strings.Contains(lower, "preload") && (strings.Contains(lower, "not available") ||
			strings.Contains(lower, "not implemented") || strings.Contains(lower, "not supported")) {
			t.Skipf("--preload is not available yet: %s", strings.TrimSpace(out))
		}
		t.Fatalf("taipan --preload did not become ready: %v\n%s", err, out)
	}
	served := map[int]bool{}
	for i := 0; i < 10; i++ {
		p, v := procPid(t, s)
		if v != "v1" {
			t.Errorf("version %q, want v1", v)
		}
		served[p] = true
	}
	data, _ := os.ReadFile(file)
	for p := range served {
		if !strings.Contains(string(data), strconv.Itoa(p)+"\n") {
			t.Errorf("worker %d did not run the post-fork hook (file: %q)", p, data)
		}
	}
	writeApp(t, dir, "verapp.py", versionedApp("v2")+`

def post_fork():
    pass
`)
	s.Signal(syscall.SIGHUP)
	if !s.WaitLog("Reloaded:", 15*time.Second) {
		t.Fatalf("no reload with --preload:\n%s", s.Stderr())
	}
	if _, v := procPid(t, s); v != "v2" {
		t.Errorf("after HUP with --preload: version %q, want v2 (new code)", v)
	}
}
