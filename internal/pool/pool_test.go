package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"taipan/internal/logging"
	"taipan/internal/wire"
	"taipan/python"
)

const testApp = `
import os, time

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"]))
    if path == "/die":
        os._exit(1)
    if path == "/stream":
        start_response("200 OK", [])
        return (b"chunk%d;" % i for i in range(3))
    body = ("%s %d %s" % (path, os.getpid(), environ["wsgi.input"].read().decode())).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
`

func interpreter(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("TAIPAN_TEST_PYTHON"), "/usr/bin/python3", "python3"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("no python3")
	return ""
}

// newPool starts a pool of real workers running src as module testapp.
func newPool(t *testing.T, workers int, src string) (*Pool, *logBuffer) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "testapp.py"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, python.WorkerFile)
	if err := os.WriteFile(script, python.Worker, 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := logging.New(logs, logging.Debug)
	p := New(Config{
		Spec:        Spec{Python: interpreter(t), Script: script, App: "testapp:app", Dir: dir, Env: os.Environ()},
		Workers:     workers,
		BootTimeout: 20 * time.Second,
	}, log)
	return p, logs
}

// logBuffer collects log output for assertions while workers still write.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func job(path, query, body string) *Job {
	var e wire.EnvironEncoder
	e.Reset()
	e.Add("REQUEST_METHOD", "GET")
	e.Add("PATH_INFO", path)
	e.Add("QUERY_STRING", query)
	return NewJob("GET", path+"?"+query, e.Bytes(), []byte(body), false)
}

// collect reads a job's events to the end and returns the body and error.
func collect(t *testing.T, j *Job) (string, error) {
	t.Helper()
	defer j.Release(false)
	var body strings.Builder
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev := <-j.Events():
			if ev.Err != nil {
				return body.String(), ev.Err
			}
			switch ev.Kind {
			case wire.KindHead:
				h, err := wire.DecodeHead(ev.Payload)
				if err != nil {
					t.Fatal(err)
				}
				body.Write(h.Body)
			case wire.KindBody:
				body.Write(ev.Payload)
			}
			if ev.End() {
				return body.String(), nil
			}
		case <-timeout:
			t.Fatal("job did not finish")
		}
	}
}

func TestServeAndStream(t *testing.T) {
	p, _ := newPool(t, 1, testApp)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	j := job("/echo", "", "payload")
	if err := p.Submit(j); err != nil {
		t.Fatal(err)
	}
	body, err := collect(t, j)
	if err != nil || !strings.HasPrefix(body, "/echo ") || !strings.HasSuffix(body, " payload") {
		t.Fatalf("body %q, err %v", body, err)
	}
	j = job("/stream", "", "")
	p.Submit(j)
	if body, err := collect(t, j); err != nil || body != "chunk0;chunk1;chunk2;" {
		t.Fatalf("stream body %q, err %v", body, err)
	}
}

// While the only worker is busy, requests wait in Go's queue, and all of
// them are answered once it is free.
func TestRequestsQueueInGo(t *testing.T) {
	p, _ := newPool(t, 1, testApp)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	slow := job("/sleep", "0.5", "")
	p.Submit(slow)
	var quick []*Job
	for i := 0; i < 5; i++ {
		j := job("/q", "", "")
		quick = append(quick, j)
		p.Submit(j)
	}
	if s := p.Stats(); s.Queued != 5 || s.Idle != 0 {
		t.Fatalf("stats while busy: %+v, want 5 queued and no idle worker", s)
	}
	before := p.Stats()
	if _, err := collect(t, slow); err != nil {
		t.Fatal(err)
	}
	for _, j := range quick {
		if body, err := collect(t, j); err != nil || !strings.HasPrefix(body, "/q ") {
			t.Fatalf("queued job: %q %v", body, err)
		}
	}
	after := p.Stats()
	if after.Queued != 0 || after.Idle != 1 {
		t.Fatalf("stats after: %+v", after)
	}
	// The five requests that queued behind the slow one reached the worker
	// in a single write.
	if after.Batches-before.Batches != 1 || after.Sent-before.Sent != 5 {
		t.Fatalf("queued requests went in %d writes (%d requests), want 1 write of 5",
			after.Batches-before.Batches, after.Sent-before.Sent)
	}
}

// Bodies too large to copy into the frame buffer are written in place,
// after their own frame head: in one batch that mixes them with small
// ones, every request reaches the worker with its own body, whole.
func TestLargeBodiesInABatch(t *testing.T) {
	p, _ := newPool(t, 1, testApp)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	slow := job("/sleep", "0.3", "")
	p.Submit(slow)
	sizes := []int{copyBodyMax + 1, 3, 70000, 0, copyBodyMax, 200000, 5}
	var jobs []*Job
	for i, n := range sizes {
		body := strings.Repeat(string(rune('a'+i)), n)
		j := job(fmt.Sprintf("/b%d", i), "", body)
		jobs = append(jobs, j)
		p.Submit(j)
	}
	before := p.Stats()
	if _, err := collect(t, slow); err != nil {
		t.Fatal(err)
	}
	for i, j := range jobs {
		got, err := collect(t, j)
		want := strings.Repeat(string(rune('a'+i)), sizes[i])
		prefix := fmt.Sprintf("/b%d ", i)
		if err != nil || !strings.HasPrefix(got, prefix) || !strings.HasSuffix(got, " "+want) {
			t.Fatalf("request %d (body of %d bytes): got %d bytes %.40q..., err %v", i, sizes[i], len(got), got, err)
		}
	}
	if after := p.Stats(); after.Batches-before.Batches != 1 {
		t.Fatalf("the queued requests went in %d batches, want 1", after.Batches-before.Batches)
	}
}

// A worker that dies fails only its own request and is replaced.
func TestWorkerDeathIsContained(t *testing.T) {
	p, logs := newPool(t, 2, testApp)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	before := p.Stats().Pids
	j := job("/die", "", "")
	p.Submit(j)
	if _, err := collect(t, j); err != ErrWorkerDied {
		t.Fatalf("err = %v, want ErrWorkerDied", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	after := p.Stats().Pids
	for (len(after) != 2 || samePids(before, after)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		after = p.Stats().Pids
	}
	if len(after) != 2 || samePids(before, after) {
		t.Fatalf("pids before %v after %v: want a replacement", before, after)
	}
	j = job("/ok", "", "")
	p.Submit(j)
	if _, err := collect(t, j); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "exited unexpectedly") {
		t.Fatalf("no log of the death:\n%s", logs.String())
	}
}

func samePids(a, b []int) bool {
	m := map[int]bool{}
	for _, p := range a {
		m[p] = true
	}
	for _, p := range b {
		if !m[p] {
			return false
		}
	}
	return true
}

func TestBootErrorCarriesTraceback(t *testing.T) {
	p, _ := newPool(t, 2, "import nonexistent_module_xyz\n")
	err := p.Start()
	if !IsBootError(err) {
		t.Fatalf("Start = %v, want a BootError", err)
	}
	if !strings.Contains(err.Error(), "Traceback") || !strings.Contains(err.Error(), "nonexistent_module_xyz") {
		t.Fatalf("boot error lacks the traceback: %v", err)
	}
}

func TestCloseStopsWorkers(t *testing.T) {
	p, _ := newPool(t, 2, testApp)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	pids := p.Stats().Pids
	p.Close(t.Context())
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("worker %d still running after Close", pid)
		}
	}
	if err := p.Submit(job("/x", "", "")); err != ErrClosed {
		t.Fatalf("Submit after Close = %v", err)
	}
}

// TestCloseAfterDeadline: Close with its time over stops a worker in the
// middle of a batch. The request it was running ends with ErrShutdown (the
// edge answers 503 and logs it as cut short, not as a crash); those of the
// batch it had not started end with ErrClosed, as queued ones do, rather
// than waiting in a queue that no worker will take again.
func TestCloseAfterDeadline(t *testing.T) {
	p, _ := newPool(t, 1, testApp)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	first := job("/sleep", "0.3", "")
	p.Submit(first)
	// Queued behind the first, these reach the worker as one batch.
	long := job("/sleep", "10", "")
	p.Submit(long)
	rest := []*Job{job("/q", "", ""), job("/q", "", "")}
	for _, j := range rest {
		p.Submit(j)
	}
	if _, err := collect(t, first); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the batch to be sent", func() bool { return p.Stats().Queued == 0 })
	time.Sleep(200 * time.Millisecond) // the worker is in the long request
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	p.Close(ctx)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close after its deadline took %v", d)
	}
	if _, err := collect(t, long); !errors.Is(err, ErrShutdown) {
		t.Errorf("the running request ended with %v, want ErrShutdown", err)
	}
	for i, j := range rest {
		if _, err := collect(t, j); !errors.Is(err, ErrClosed) {
			t.Errorf("unstarted request %d ended with %v, want ErrClosed", i, err)
		}
	}
}

// With --workers-min/--workers-max the pool grows while requests wait and
// shrinks again once workers sit idle.
func TestAutoscale(t *testing.T) {
	p, logs := newPool(t, 1, testApp)
	p.cfg.WorkersMin, p.cfg.WorkersMax = 1, 2
	p.cfg.ScaleUpWait, p.cfg.ScaleDownIdle = 50*time.Millisecond, 700*time.Millisecond
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	var jobs []*Job
	for range 6 {
		j := job("/sleep", "0.3", "")
		jobs = append(jobs, j)
		p.Submit(j)
	}
	grew := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !grew; time.Sleep(20 * time.Millisecond) {
		s := p.Stats()
		grew = s.Size == 2 && s.Workers == 2
	}
	if !grew {
		t.Fatalf("pool did not grow to 2 workers while requests waited: %+v\n%s", p.Stats(), logs)
	}
	for _, j := range jobs {
		if _, err := collect(t, j); err != nil {
			t.Fatal(err)
		}
	}
	shrank := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !shrank; time.Sleep(50 * time.Millisecond) {
		s := p.Stats()
		shrank = s.Size == 1 && s.Workers == 1
	}
	if !shrank {
		t.Fatalf("pool did not shrink back to 1 idle worker: %+v\n%s", p.Stats(), logs)
	}
}

// SIGTTIN and SIGTTOU (Scale) stay within --workers-min and --workers-max
// when the pool autoscales.
func TestScaleWithinAutoscaleBounds(t *testing.T) {
	p, logs := newPool(t, 1, testApp)
	p.cfg.WorkersMin, p.cfg.WorkersMax = 1, 2
	p.cfg.ScaleUpWait, p.cfg.ScaleDownIdle = time.Hour, time.Hour
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	p.Scale(-1)
	if s := p.Stats(); s.Size != 1 {
		t.Fatalf("TTOU below --workers-min: size %d\n%s", s.Size, logs)
	}
	p.Scale(1)
	p.Scale(1)
	if s := p.Stats(); s.Size != 2 {
		t.Fatalf("TTIN past --workers-max: size %d\n%s", s.Size, logs)
	}
	if n := strings.Count(logs.String(), "Not scaling to"); n != 2 {
		t.Errorf("%d refusals logged, want 2:\n%s", n, logs)
	}
}

// A threaded worker runs as many requests at once as it has threads; it is
// sent no more, and the rest wait in Go's queue.
func TestThreadedWorker(t *testing.T) {
	p, _ := newPool(t, 1, testApp)
	p.cfg.Threads = 3
	p.cfg.Spec.Threads = 3
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	var jobs []*Job
	for range 4 {
		j := job("/sleep", "0.5", "")
		jobs = append(jobs, j)
		p.Submit(j)
	}
	// Three run at once; the fourth waits in Go.
	var s Stats
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if s = p.Stats(); s.Sent == 3 {
			break
		}
	}
	if s.Sent != 3 || s.Queued != 1 {
		t.Fatalf("stats with 4 requests for 3 threads: %+v, want 3 sent and 1 queued", s)
	}
	// Each of the three completes; the fourth goes to the first free thread.
	for _, j := range jobs[:3] {
		if body, err := collect(t, j); err != nil || !strings.HasPrefix(body, "/sleep ") {
			t.Fatalf("%q %v", body, err)
		}
	}
	if _, err := collect(t, jobs[3]); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Sent != 4 || s.Idle != 1 {
		t.Fatalf("stats after: %+v", s)
	}
}

// When a threaded worker is killed for a timeout, the request that timed
// out gets ErrTimeout and the others it was running ErrWorkerDied.
func TestThreadedTimeout(t *testing.T) {
	p, logs := newPool(t, 1, testApp)
	p.cfg.Threads, p.cfg.Spec.Threads = 2, 2
	p.cfg.Timeout = 500 * time.Millisecond
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	long := job("/sleep", "30", "")
	p.Submit(long)
	time.Sleep(300 * time.Millisecond)
	other := job("/sleep", "30", "")
	p.Submit(other)
	if _, err := collect(t, long); err != ErrTimeout {
		t.Fatalf("timed-out job: %v, want ErrTimeout", err)
	}
	if _, err := collect(t, other); err != ErrWorkerDied {
		t.Fatalf("other job on the killed worker: %v, want ErrWorkerDied", err)
	}
	if !strings.Contains(logs.String(), "WORKER TIMEOUT") {
		t.Fatalf("no timeout in the log:\n%s", logs)
	}
}

// Workers that run many requests at once share them: each new request goes
// to the idle worker running the fewest, not to one worker until it is full.
func TestConcurrentWorkersShareLoad(t *testing.T) {
	p, _ := newPool(t, 2, testApp)
	p.cfg.Threads, p.cfg.Spec.Threads = 4, 4
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	var jobs []*Job
	for range 4 {
		j := job("/sleep", "0.3", "")
		jobs = append(jobs, j)
		if err := p.Submit(j); err != nil {
			t.Fatal(err)
		}
	}
	perPid := map[string]int{}
	for _, j := range jobs {
		body, err := collect(t, j)
		if err != nil {
			t.Fatal(err)
		}
		perPid[strings.Fields(body)[1]]++
	}
	if len(perPid) != 2 || !allEqual(perPid, 2) {
		t.Fatalf("4 requests on 2 workers of 4 threads went %v, want 2 and 2", perPid)
	}
}

func allEqual(m map[string]int, n int) bool {
	for _, v := range m {
		if v != n {
			return false
		}
	}
	return true
}
