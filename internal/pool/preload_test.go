package pool

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// preloadApp records the pid of every process that imports it (imports.log)
// and of every worker the post-fork hook runs in (hooks.log).
const preloadApp = `
import gc, os, time

VERSION = "v1"
HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = os.urandom(8).hex()  # module state made once, at import

with open(os.path.join(HERE, "imports.log"), "a") as f:
    f.write("%d\n" % os.getpid())

def post_fork():
    with open(os.path.join(HERE, "hooks.log"), "a") as f:
        f.write("%d\n" % os.getpid())

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"]))
    if path == "/pid":
        body = "%d %s %s" % (os.getpid(), TOKEN, VERSION)
    elif path == "/frozen":
        body = str(gc.get_freeze_count() > 0)
    else:
        body = "%s %d %s" % (path, os.getpid(), VERSION)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
`

// newPreloadPool is newPool with --preload (and the post-fork hook).
func newPreloadPool(t *testing.T, workers int, src string) (*Pool, *logBuffer) {
	t.Helper()
	p, logs := newPool(t, workers, src)
	p.cfg.Preload = true
	p.cfg.Spec.PostFork = "testapp:post_fork"
	// A rewritten module must not be read from a stale .pyc of the same
	// size and second.
	p.cfg.Spec.Env = append(p.cfg.Spec.Env, "PYTHONDONTWRITEBYTECODE=1")
	return p, logs
}

func get(t *testing.T, p *Pool, path string) string {
	t.Helper()
	j := job(path, "", "")
	if err := p.Submit(j); err != nil {
		t.Fatal(err)
	}
	body, err := collect(t, j)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return body
}

// pidsIn reads a file of one pid per line.
func pidsIn(t *testing.T, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	return pids
}

func forkServerOf(t *testing.T, p *Pool) *forkServer {
	t.Helper()
	fs, ok := p.spawn.(*forkSpawner)
	if !ok {
		t.Fatalf("spawner is %T, want *forkSpawner", p.spawn)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.cur
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPreloadImportsOnceAndForks(t *testing.T) {
	p, _ := newPreloadPool(t, 3, preloadApp)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	dir := p.cfg.Spec.Dir
	server := forkServerOf(t, p)

	imports := pidsIn(t, filepath.Join(dir, "imports.log"))
	if len(imports) != 1 || imports[0] != server.pid {
		t.Fatalf("the app was imported by %v, want once, by the fork server %d", imports, server.pid)
	}
	workers := p.Stats().Pids
	if len(workers) != 3 {
		t.Fatalf("workers %v", workers)
	}
	// The post-fork hook ran in every worker, and only there.
	hooks := pidsIn(t, filepath.Join(dir, "hooks.log"))
	slices.Sort(hooks)
	slices.Sort(workers)
	if !slices.Equal(hooks, workers) {
		t.Fatalf("post-fork hook ran in %v, want the workers %v", hooks, workers)
	}
	// Requests are served by the forked workers, which share the state the
	// import made.
	seen := map[string]bool{}
	tokens := map[string]bool{}
	for range 30 {
		fields := strings.Fields(get(t, p, "/pid"))
		if len(fields) != 3 {
			t.Fatalf("/pid answered %q", fields)
		}
		seen[fields[0]] = true
		tokens[fields[1]] = true
		if fields[0] == strconv.Itoa(server.pid) {
			t.Fatalf("the fork server %d served a request", server.pid)
		}
	}
	if len(tokens) != 1 {
		t.Fatalf("workers have different module state: %v", tokens)
	}
	for pid := range seen {
		n, _ := strconv.Atoi(pid)
		if !slices.Contains(workers, n) {
			t.Fatalf("request served by pid %d, not a worker %v", n, workers)
		}
	}
	if got := get(t, p, "/frozen"); got != "True" {
		t.Fatalf("gc.get_freeze_count() > 0 in a worker: %s, want True (gc.freeze before fork)", got)
	}
	if imports := pidsIn(t, filepath.Join(dir, "imports.log")); len(imports) != 1 {
		t.Fatalf("the app was imported again: %v", imports)
	}
}

func TestPreloadKilledWorkerIsReplaced(t *testing.T) {
	p, logs := newPreloadPool(t, 2, preloadApp)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	before := p.Stats().Pids
	j := job("/sleep", "30", "")
	p.Submit(j)
	// Find the worker running it and kill it.
	var victim int
	waitFor(t, "the request to start", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, w := range p.workers {
			w.mu.Lock()
			busy := len(w.inflight) > 0
			w.mu.Unlock()
			if busy {
				victim = w.Pid
				return true
			}
		}
		return false
	})
	time.Sleep(100 * time.Millisecond) // let it get into the app
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := collect(t, j); err != ErrWorkerDied {
		t.Fatalf("err = %v, want ErrWorkerDied", err)
	}
	waitFor(t, "a replacement worker", func() bool {
		after := p.Stats().Pids
		return len(after) == 2 && !slices.Contains(after, victim)
	})
	after := p.Stats().Pids
	if samePids(before, after) {
		t.Fatalf("pids before %v after %v", before, after)
	}
	for range 5 {
		get(t, p, "/ok")
	}
	if !strings.Contains(logs.String(), "signal: killed") {
		t.Errorf("the log does not say how the worker died:\n%s", logs.String())
	}
	// Still imported once: the replacement was forked too.
	if imports := pidsIn(t, filepath.Join(p.cfg.Spec.Dir, "imports.log")); len(imports) != 1 {
		t.Fatalf("imports %v", imports)
	}
}

func TestPreloadReload(t *testing.T) {
	p, _ := newPreloadPool(t, 2, preloadApp)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	dir := p.cfg.Spec.Dir
	oldServer := forkServerOf(t, p)
	oldWorkers := p.Stats().Pids
	if got := get(t, p, "/pid"); !strings.HasSuffix(got, " v1") {
		t.Fatalf("/pid = %q", got)
	}

	write := func(src string) {
		if err := os.WriteFile(filepath.Join(dir, "testapp.py"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(strings.Replace(preloadApp, `VERSION = "v1"`, `VERSION = "v2"`, 1))
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	newServer := forkServerOf(t, p)
	if newServer == oldServer {
		t.Fatal("reload kept the fork server")
	}
	for range 10 {
		if got := get(t, p, "/pid"); !strings.HasSuffix(got, " v2") {
			t.Fatalf("after reload /pid = %q, want v2", got)
		}
	}
	// The old workers exit, and then the old fork server.
	waitFor(t, "the old workers and fork server to exit", func() bool {
		for _, pid := range append(oldWorkers, oldServer.pid) {
			if alive(pid) {
				return false
			}
		}
		return true
	})
	if imports := pidsIn(t, filepath.Join(dir, "imports.log")); len(imports) != 2 || imports[1] != newServer.pid {
		t.Fatalf("imports %v, want the old then the new fork server (%d)", imports, newServer.pid)
	}

	// New code that fails to import: the reload fails, v2 keeps serving.
	v2Workers := p.Stats().Pids
	write(preloadApp + "\nraise RuntimeError('broken v3')\n")
	err := p.Reload()
	if !IsBootError(err) || !strings.Contains(err.Error(), "broken v3") || !strings.Contains(err.Error(), "Traceback") {
		t.Fatalf("Reload = %v, want a BootError with the traceback", err)
	}
	if forkServerOf(t, p) != newServer || !alive(newServer.pid) {
		t.Fatal("a failed reload replaced the fork server")
	}
	for range 5 {
		if got := get(t, p, "/pid"); !strings.HasSuffix(got, " v2") {
			t.Fatalf("after a failed reload /pid = %q, want v2", got)
		}
	}
	if after := p.Stats().Pids; !samePids(v2Workers, after) || len(after) != len(v2Workers) {
		t.Fatalf("workers changed by a failed reload: %v -> %v", v2Workers, after)
	}
	// Replacements still come from the v2 fork server.
	syscall.Kill(v2Workers[0], syscall.SIGKILL)
	waitFor(t, "a replacement", func() bool {
		pids := p.Stats().Pids
		return len(pids) == 2 && !slices.Contains(pids, v2Workers[0])
	})
	for range 5 {
		if got := get(t, p, "/pid"); !strings.HasSuffix(got, " v2") {
			t.Fatalf("/pid = %q, want v2", got)
		}
	}
}

func TestPreloadBootError(t *testing.T) {
	p, _ := newPreloadPool(t, 2, "import nonexistent_module_xyz\n")
	err := p.Start()
	if !IsBootError(err) {
		t.Fatalf("Start = %v, want a BootError", err)
	}
	if !strings.Contains(err.Error(), "Traceback") || !strings.Contains(err.Error(), "nonexistent_module_xyz") {
		t.Fatalf("boot error lacks the traceback: %v", err)
	}
}

// A post-fork hook that raises fails the boot like an import error.
func TestPreloadPostForkHookError(t *testing.T) {
	p, _ := newPreloadPool(t, 2, preloadApp+"\ndef bad_hook():\n    raise ValueError('no fork for you')\n")
	p.cfg.Spec.PostFork = "testapp:bad_hook"
	err := p.Start()
	if !IsBootError(err) || !strings.Contains(err.Error(), "no fork for you") {
		t.Fatalf("Start = %v, want a BootError from the hook", err)
	}
}

func TestPreloadCloseLeavesNothing(t *testing.T) {
	p, _ := newPreloadPool(t, 3, preloadApp)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	server := forkServerOf(t, p)
	pids := append(p.Stats().Pids, server.pid)
	get(t, p, "/x")
	p.Close(t.Context())
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d still running after Close", pid)
		}
	}
}

// If the fork server dies its workers die with it, and the pool recovers
// with a new fork server.
func TestPreloadForkServerDeath(t *testing.T) {
	p, logs := newPreloadPool(t, 2, preloadApp)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	server := forkServerOf(t, p)
	workers := p.Stats().Pids
	if err := syscall.Kill(server.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the workers to die with their fork server", func() bool {
		for _, pid := range workers {
			if alive(pid) {
				return false
			}
		}
		return true
	})
	// A spawn from the dead server fails at once.
	pipes, err := newWorkerPipes()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = server.fork(999, pipes, time.Time{}, 0)
	pipes.closeAll()
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("fork on a dead fork server: %v after %v", err, time.Since(start))
	}
	waitFor(t, "new workers", func() bool {
		pids := p.Stats().Pids
		return len(pids) == 2 && !slices.Contains(pids, workers[0]) && !slices.Contains(pids, workers[1])
	})
	if s := forkServerOf(t, p); s == server || !alive(s.pid) {
		t.Fatal("no new fork server")
	}
	get(t, p, "/ok")
	if !strings.Contains(logs.String(), "fork server") {
		t.Errorf("the death was not logged:\n%s", logs.String())
	}
}

// Signal never reaches a pid the fork server has reported reaped.
func TestForkProcessSignalAfterExit(t *testing.T) {
	p := &forkProcess{pid: os.Getpid(), pidfd: -1, done: make(chan struct{})}
	p.finish(errors.New("gone"))
	if err := p.Signal(syscall.SIGKILL); !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("Signal after exit = %v", err)
	}
	if err := p.Wait(); err == nil || err.Error() != "gone" {
		t.Fatalf("Wait = %v", err)
	}
}

// A request past the timeout gets the worker's Python stack logged: the
// forked worker's faulthandler writes to the traceback pipe.
func TestPreloadTimeoutDumpsStack(t *testing.T) {
	p, logs := newPreloadPool(t, 1, preloadApp)
	p.cfg.Timeout = 500 * time.Millisecond
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	j := job("/sleep", "30", "")
	p.Submit(j)
	if _, err := collect(t, j); err != ErrTimeout {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	log := logs.String()
	if !strings.Contains(log, "WORKER TIMEOUT") || !strings.Contains(log, "testapp.py") || !strings.Contains(log, "in app") {
		t.Fatalf("no Python stack in the log:\n%s", log)
	}
	waitFor(t, "a replacement", func() bool { return len(p.Stats().Pids) == 1 })
	get(t, p, "/ok")
}
