package pool

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const memoryApp = `
import os, time

HOARD = []

def grow_without_bound():
    hoard = []
    while len(hoard) < 512:  # 1 GiB at most, should nothing stop it
        hoard.append(b"\x01" * (2 << 20))  # touched, so resident
        time.sleep(0.01)

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/grow":
        grow_without_bound()
    if path == "/hoard":
        HOARD.append(b"\x01" * (int(environ["QUERY_STRING"]) << 20))
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"]))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d" % os.getpid()]
`

// A request that allocates without bound is stopped by --max-rss while it
// runs: its stack is logged, its worker killed and replaced, and the
// request ends with ErrMemoryLimit.
func TestMemoryWatchKillsRunawayRequest(t *testing.T) {
	p, logs := newPool(t, 1, memoryApp)
	p.cfg.MaxRSS = 64 << 20
	var reasons []StopReason
	var mu sync.Mutex
	p.cfg.Hooks.WorkerStopped = func(id, pid int, reason StopReason) {
		mu.Lock()
		reasons = append(reasons, reason)
		mu.Unlock()
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	pid := p.Stats().Pids[0]
	j := job("/grow", "", "")
	p.Submit(j)
	if body, err := collect(t, j); !errors.Is(err, ErrMemoryLimit) {
		t.Fatalf("runaway request: body %q, err %v; want ErrMemoryLimit\n%s", body, err, logs)
	}
	entry := fmt.Sprintf("[CRITICAL] WORKER MEMORY LIMIT: worker 1 (pid %d) has ", pid)
	log := logs.String()
	if !strings.Contains(log, entry) {
		t.Fatalf("no %q in the log:\n%s", entry, log)
	}
	for _, want := range []string{"above --max-rss 64 MB, while running GET /grow? for ", "; killing it. Python stack:", "in grow_without_bound", "testapp.py"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	// Still serving, on a replacement.
	next := job("/sleep", "0", "")
	p.Submit(next)
	body, err := collect(t, next)
	if err != nil || body == fmt.Sprint(pid) {
		t.Fatalf("after the kill: body %q err %v, want another worker's pid (the killed one was %d)", body, err, pid)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reasons) != 1 || reasons[0] != StopMaxRSS {
		t.Errorf("stop reasons %v, want [max-rss]", reasons)
	}
}

// hoardPastLimit starts a one-worker pool with a 64 MiB --max-rss and runs a
// request that leaves its worker holding 96 MiB; it returns the pool, its
// log and the worker's pid.
func hoardPastLimit(t *testing.T) (*Pool, *logBuffer, int) {
	t.Helper()
	p, logs := newPool(t, 1, memoryApp)
	p.cfg.MaxRSS = 64 << 20
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	pid := p.Stats().Pids[0]
	j := job("/hoard", "96", "")
	p.Submit(j)
	if body, err := collect(t, j); err != nil || body != fmt.Sprint(pid) {
		p.Close(t.Context())
		t.Fatalf("/hoard: body %q err %v\n%s", body, err, logs)
	}
	return p, logs, pid
}

// A request that passes the limit and then ends is not killed: its worker
// is recycled between requests, the gentle way.
func TestMemoryWatchSparesARequestThatEnds(t *testing.T) {
	p, logs, pid := hoardPastLimit(t)
	defer p.Close(t.Context())
	// The next request, once the between-requests check may read /proc
	// again (every 100 ms at most), recycles the worker.
	time.Sleep(150 * time.Millisecond)
	j := job("/sleep", "0", "")
	p.Submit(j)
	if _, err := collect(t, j); err != nil {
		t.Fatal(err)
	}
	marker := fmt.Sprintf("Recycling worker 1 (pid %d): resident memory", pid)
	if !pollFor(10*time.Second, func() bool { return strings.Contains(logs.String(), marker) }) {
		t.Fatalf("no %q in the log:\n%s", marker, logs)
	}
	if strings.Contains(logs.String(), "WORKER MEMORY LIMIT") {
		t.Errorf("the worker was killed:\n%s", logs)
	}
}

// A worker that a request left above the limit and that then sits idle is
// recycled without waiting for another request.
func TestMemoryWatchRecyclesIdleWorker(t *testing.T) {
	p, logs, pid := hoardPastLimit(t)
	defer p.Close(t.Context())
	// No further request: the watch alone must notice.
	marker := fmt.Sprintf("Recycling worker 1 (pid %d): resident memory", pid)
	if !pollFor(10*time.Second, func() bool { return strings.Contains(logs.String(), marker) }) {
		t.Fatalf("no %q in the log:\n%s", marker, logs)
	}
	if !pollFor(10*time.Second, func() bool { s := p.Stats(); return len(s.Pids) == 1 && s.Pids[0] != pid }) {
		t.Fatalf("worker %d not replaced: %+v", pid, p.Stats())
	}
	if strings.Contains(logs.String(), "WORKER MEMORY LIMIT") {
		t.Errorf("the idle worker was killed, not recycled:\n%s", logs)
	}
}

// The rules of a sample, with the memory figures set by the test and real
// workers running real requests.
func TestMemoryWatchSamples(t *testing.T) {
	p, logs := newPool(t, 1, memoryApp) // MaxRSS 0: no watch of its own
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	const limit = 100 << 20
	var rss atomic.Int64
	m := newMemoryWatch(p)
	m.limit = limit
	m.rss = func(*Worker) (int64, error) { return rss.Load(), nil }
	worker := func() *Worker {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, w := range p.workers {
			if !w.retiring {
				return w
			}
		}
		return nil
	}
	running := func(w *Worker, j *Job) bool {
		return pollFor(5*time.Second, func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			r := w.running()
			return len(r) == 1 && r[0] == j
		})
	}

	// A worker that has served nothing is left alone even above the limit:
	// its replacement would be just as large.
	w := worker()
	rss.Store(2 * limit)
	m.sample(time.Now())
	time.Sleep(200 * time.Millisecond)
	if strings.Contains(logs.String(), "Recycling worker") {
		t.Fatalf("a fresh worker was recycled for its memory:\n%s", logs)
	}

	// An idle worker above the limit is recycled at once, the gentle way:
	// never counted among the busy ones that may be killed.
	rss.Store(limit)
	first := job("/sleep", "0", "")
	p.Submit(first)
	if _, err := collect(t, first); err != nil {
		t.Fatal(err)
	}
	rss.Store(2 * limit)
	m.sample(time.Now())
	if len(m.over) != 0 {
		t.Fatalf("an idle worker was counted as over the limit: %v", m.over)
	}
	if !pollFor(10*time.Second, func() bool { return strings.Contains(logs.String(), fmt.Sprintf("Recycling worker %d", w.ID)) }) {
		t.Fatalf("the idle worker above the limit was not recycled:\n%s", logs)
	}
	old := w
	if !pollFor(10*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.workers) == 1 && p.workers[old.ID] == nil
	}) {
		t.Fatalf("the recycled idle worker was not replaced:\n%s", logs)
	}
	rss.Store(limit)
	m.sample(time.Now())
	w = worker()

	// Above the limit at one sample, then below: nothing happens.
	a := job("/sleep", "0.6", "")
	p.Submit(a)
	if !running(w, a) {
		t.Fatal("the request did not start")
	}
	rss.Store(limit + 1)
	m.sample(time.Now())
	rss.Store(limit)
	m.sample(time.Now())
	rss.Store(limit + 1)
	m.sample(time.Now())
	if _, err := collect(t, a); err != nil {
		t.Fatalf("a request whose worker went above the limit at one sample in a row: %v", err)
	}

	// Above the limit at two samples, but the request running at the
	// second started after the first: the worker is recycled, not killed.
	b := job("/sleep", "0.6", "")
	p.Submit(b)
	if !running(w, b) {
		t.Fatal("the second request did not start")
	}
	m.sample(time.Now())
	if _, err := collect(t, b); err != nil {
		t.Fatalf("a request that started after the first sample above the limit: %v", err)
	}
	if !pollFor(10*time.Second, func() bool { return strings.Contains(logs.String(), fmt.Sprintf("Recycling worker %d", w.ID)) }) {
		t.Fatalf("the worker above the limit was not recycled:\n%s", logs)
	}
	old = w
	if !pollFor(10*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.workers) == 1 && p.workers[old.ID] == nil
	}) {
		t.Fatalf("the recycled worker was not replaced:\n%s", logs)
	}

	// Above the limit at two samples with the same request running: killed.
	w = worker()
	rss.Store(limit + 5<<20)
	c := job("/sleep", "30", "")
	p.Submit(c)
	if !running(w, c) {
		t.Fatal("the third request did not start")
	}
	m.sample(time.Now())
	m.sample(time.Now())
	if _, err := collect(t, c); !errors.Is(err, ErrMemoryLimit) {
		t.Fatalf("request held above the limit: %v, want ErrMemoryLimit\n%s", err, logs)
	}
	marker := fmt.Sprintf("WORKER MEMORY LIMIT: worker %d (pid %d) has 105 MB resident, above --max-rss 100 MB, while running GET /sleep?30 for ", w.ID, w.Pid)
	if !pollFor(5*time.Second, func() bool { return strings.Contains(logs.String(), marker) }) {
		t.Fatalf("no %q in the log:\n%s", marker, logs)
	}
	if strings.Count(logs.String(), "WORKER MEMORY LIMIT") != 1 {
		t.Errorf("want one kill:\n%s", logs)
	}
}

// pollFor polls cond until it holds or timeout passes.
func pollFor(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
