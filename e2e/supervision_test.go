package e2e

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stopChildren kills the processes whose pids the spawnchild app wrote to
// file: the test started them, through the app.
func stopChildren(t *testing.T, file string) {
	t.Cleanup(func() {
		b, _ := os.ReadFile(file)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// TestSupervisionChildHoldsOutput: a process the app starts inherits the
// worker's output pipes and outlives it. taipan must not wait for it: an
// import that fails still stops taipan at once with the traceback, and a
// worker that dies is replaced at once.
func TestSupervisionChildHoldsOutput(t *testing.T) {
	t.Parallel()
	t.Run("import fails", func(t *testing.T) {
		t.Parallel()
		pids := filepath.Join(t.TempDir(), "children")
		stopChildren(t, pids)
		start := time.Now()
		code, out := runTaipan(t, 20*time.Second, "--python", pythonPath(), "--pythonpath", appsDir(t),
			"-b", freeAddr(t), "-w", "1", "-e", "CHILD_PID_FILE="+pids, "-e", "SPAWN_FAIL=1", "spawnchild:app")
		if code == 0 || !strings.Contains(out, "the import failed after starting a child process") {
			t.Fatalf("exit %d, want non-zero with the traceback:\n%s", code, out)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("taipan took %v to give up: it waited for the app's child process", took)
		}
	})
	t.Run("worker dies", func(t *testing.T) {
		t.Parallel()
		pids := filepath.Join(t.TempDir(), "children")
		stopChildren(t, pids)
		s := Start(t, "--pythonpath", appsDir(t), "-w", "1", "-e", "CHILD_PID_FILE="+pids, "spawnchild:app")
		_, first := s.Get(t, "/")
		s.Get(t, "/exit")
		start := time.Now()
		client := timeoutClient(2 * time.Second)
		var now string
		if !pollUntil(10*time.Second, func() bool {
			resp, err := client.Get(s.URL + "/")
			if err != nil {
				return false
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			now = string(b)
			return resp.StatusCode == 200 && now != first
		}) || time.Since(start) > 10*time.Second {
			t.Fatalf("worker %s was not replaced within 10 s (last answer %q)\n%s", first, now, s.Stderr())
		}
	})
}

// TestSupervisionMaxRSSBelowFreshWorker: a --max-rss below what a worker
// holds once the app is loaded would recycle workers endlessly; taipan
// refuses it at start.
func TestSupervisionMaxRSSBelowFreshWorker(t *testing.T) {
	t.Parallel()
	code, out := runTaipan(t, 30*time.Second, "--python", pythonPath(), "--pythonpath", appsDir(t),
		"-b", freeAddr(t), "-w", "1", "--max-rss", "1", "testapp:app")
	if code == 0 || !strings.Contains(out, "--max-rss 1 MB is below the") {
		t.Fatalf("exit %d, want a start-up error naming --max-rss:\n%s", code, out)
	}
	if n := strings.Count(out, "Booted worker"); n > 1 {
		t.Errorf("%d workers booted, want 1:\n%s", n, out)
	}
}

// TestSupervisionSecondSignalStopsAtOnce: a second stop signal during the
// drain stops taipan at once, in-flight request or not.
func TestSupervisionSecondSignalStopsAtOnce(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1", "-t", "0")
	go func() {
		resp, err := timeoutClient(testTimeout).Get(s.URL + "/sleep?ms=20000")
		if err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(300 * time.Millisecond)
	s.Signal(syscall.SIGTERM)
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	s.Signal(syscall.SIGINT)
	if code := s.Wait(10 * time.Second); code == -1 {
		t.Fatalf("taipan still running 10 s after the second signal\n%s", s.Stderr())
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("taipan took %v to stop after the second signal, want at once", took)
	}
}

// TestSupervisionPostForkFails: a --post-fork hook that raises stops taipan
// with the hook's traceback, blamed on the hook and not on the app, with
// or without --preload.
func TestSupervisionPostForkFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeApp(t, dir, "pfapp.py", `
def app(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]

def boom():
    raise RuntimeError("the hook exploded")
`)
	for _, preload := range []bool{false, true} {
		args := []string{"--python", pythonPath(), "--chdir", dir, "-b", freeAddr(t), "-w", "1", "--post-fork", "pfapp:boom"}
		if preload {
			args = append(args, "--preload")
		}
		code, out := runTaipan(t, 30*time.Second, append(args, "pfapp:app")...)
		if code == 0 || !strings.Contains(out, "Failed to run the post-fork hook 'pfapp:boom'") ||
			!strings.Contains(out, "the hook exploded") || !strings.Contains(out, "taipan: the --post-fork hook failed") ||
			strings.Contains(out, "Failed to load the app") {
			t.Errorf("preload %v: exit %d, want non-zero with the hook's traceback:\n%s", preload, code, out)
		}
	}
}

// TestSupervisionPreloadAppExits: with --preload, an app that exits as it
// is imported is reported as such, not as a bare end of file.
func TestSupervisionPreloadAppExits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeApp(t, dir, "exitapp.py", "import os\nos._exit(0)\n")
	code, out := runTaipan(t, 30*time.Second, "--python", pythonPath(), "--chdir", dir, "-b", freeAddr(t), "-w", "1", "--preload", "exitapp:app")
	if code == 0 || !strings.Contains(out, "exited while starting, with status 0") {
		t.Errorf("exit %d, want non-zero saying the fork server exited:\n%s", code, out)
	}
}
