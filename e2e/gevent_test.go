package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestGevent: with -k gevent one worker runs many requests at once, each in
// a greenlet, because the standard library is monkey-patched before the app
// is imported (time.sleep yields).
func TestGevent(t *testing.T) {
	t.Parallel()
	requirePython(t, "gevent", "python3-gevent")
	s := startTestApp(t, "-w", "1", "-k", "gevent")
	peaks, pids, _ := overlapPeaks(t, s, 10)
	if len(pids) != 1 || slices.Max(peaks) != 10 {
		t.Fatalf("peak concurrency %v in processes %v, want 10 requests at once in one worker", peaks, pids)
	}
	var env map[string]any
	_, body := httpGet(t, s, "/environ")
	if json.Unmarshal([]byte(body), &env) != nil || env["wsgi.multithread"] != true {
		t.Fatalf("wsgi.multithread = %v with -k gevent", env["wsgi.multithread"])
	}
	if !strings.Contains(s.Stderr(), "gevent, up to 1000 requests each") {
		t.Errorf("start-up log does not mention gevent:\n%s", s.Stderr())
	}
}

// TestGeventMissing: -k gevent with an interpreter that cannot import gevent
// stops taipan at once with a message that says how to install it.
func TestGeventMissing(t *testing.T) {
	t.Parallel()
	// A gevent package that fails to import, first on the worker's path.
	shadow := t.TempDir()
	os.MkdirAll(filepath.Join(shadow, "gevent"), 0o755)
	writeApp(t, filepath.Join(shadow, "gevent"), "__init__.py", "raise ImportError('no gevent here')\n")
	code, out := runTaipan(t, 20*time.Second, "--python", pythonPath(), "-b", "127.0.0.1:0", "-w", "1", "-k", "gevent",
		"-e", "PYTHONPATH="+shadow, "--pythonpath", appsDir(t), "testapp:app")
	if code == 0 {
		t.Fatalf("exit code 0 without gevent:\n%s", out)
	}
	if !strings.Contains(out, "-k gevent needs gevent") || !strings.Contains(out, "python3-gevent") {
		t.Fatalf("no clear message about gevent:\n%s", out)
	}
}
