package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// statusOf fetches and decodes /status.json.
func statusOf(t *testing.T, admin string) statusDoc {
	t.Helper()
	code, body := adminGet(t, admin+"/status.json")
	if code != 200 {
		t.Fatalf("/status.json: %d %s", code, body)
	}
	var st statusDoc
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status.json: %v\n%s", err, body)
	}
	return st
}

// startSlow sends n requests for path in the background; the returned
// function waits for them.
func startSlow(t *testing.T, s *Server, path string, n int) (wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := timeoutClient(40 * time.Second).Get(s.URL + path)
			if err != nil {
				t.Errorf("GET %s: %v", path, err)
				return
			}
			resp.Body.Close()
		})
	}
	return wg.Wait
}

// waitRunning polls /status.json until busy workers run line, and returns
// that document.
func waitRunning(t *testing.T, admin, line string, busy int) statusDoc {
	t.Helper()
	var st statusDoc
	ok := pollUntil(10*time.Second, func() bool {
		st = statusOf(t, admin)
		n := 0
		for _, w := range st.Workers {
			if len(w.Requests) > 0 && w.Requests[0].Line == line {
				n++
			}
		}
		return n == busy
	})
	if !ok {
		t.Fatalf("timed out waiting for %d workers running %q: %+v", busy, line, st)
	}
	return st
}

// TestStatusCommand runs taipan status against a taipan with a slow
// request running and checks a row per worker with the right pid, and
// the slow request with its age.
func TestStatusCommand(t *testing.T) {
	t.Parallel()
	s, admin := startWithMetrics(t, "-w", "2")
	addr := strings.TrimPrefix(admin, "http://")
	wait := startSlow(t, s, "/sleep?ms=3000", 1)
	defer wait()
	st := waitRunning(t, admin, "GET /sleep?ms=3000", 1)

	for _, args := range [][]string{{"status", "--metrics-bind", addr}, {"status", addr}} {
		code, out := runTaipan(t, 10*time.Second, args...)
		if code != 0 {
			t.Fatalf("taipan %v: exit %d\n%s", args, code, out)
		}
		t.Logf("taipan %v:\n%s", args, out)
		if !strings.Contains(out, fmt.Sprintf("pid %d ", s.Pid())) || !strings.Contains(out, "workers 2 ") {
			t.Errorf("totals line lacks taipan's pid %d or the worker count", s.Pid())
		}
		rows := workerRows(out)
		if len(rows) != 2 {
			t.Fatalf("%d worker rows, want 2:\n%s", len(rows), out)
		}
		pids := map[int]bool{}
		for _, p := range s.WorkerPids() {
			pids[p] = true
		}
		for _, w := range st.Workers {
			if !pids[w.Pid] {
				t.Errorf("/status.json pid %d is not a worker of taipan (%v)", w.Pid, s.WorkerPids())
			}
			row := rows[w.Pid]
			if row == nil || row[0] != strconv.Itoa(w.ID) {
				t.Errorf("no row for worker %d pid %d: %v", w.ID, w.Pid, rows)
				continue
			}
			if len(w.Requests) > 0 {
				if row[3] != "busy" || !regexp.MustCompile(`^\d+\.\ds$`).MatchString(row[7]) ||
					strings.Join(row[8:], " ") != "GET /sleep?ms=3000" {
					t.Errorf("busy worker's row: %q", row)
				}
			} else if row[3] != "idle" || row[7] != "-" {
				t.Errorf("idle worker's row: %q", row)
			}
		}
	}
}

// workerRows parses taipan status's table into fields by pid.
func workerRows(out string) map[int][]string {
	rows := map[int][]string{}
	header := false
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "ID" {
			header = true
			continue
		}
		if header && len(f) >= 9 {
			if pid, err := strconv.Atoi(f[1]); err == nil {
				rows[pid] = f
			}
		}
	}
	return rows
}

// TestStatusUnreachable: both commands exit 1 with one line when nothing
// answers.
func TestStatusUnreachable(t *testing.T) {
	t.Parallel()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for _, cmd := range []string{"status", "top"} {
		code, out := runTaipan(t, 10*time.Second, cmd, "--metrics-bind", addr)
		if code != 1 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "taipan "+cmd+": cannot reach taipan at http://"+addr+"/status.json") {
			t.Errorf("taipan %s against nothing: exit %d %q", cmd, code, out)
		}
	}
}

// TestStatusTop runs taipan top, waits for a frame with the workers, and
// stops it with Ctrl-C (SIGINT): it exits 0.
func TestStatusTop(t *testing.T) {
	t.Parallel()
	s, admin := startWithMetrics(t, "-w", "2")
	var mu sync.Mutex
	var out bytes.Buffer
	cmd := exec.Command(taipanBin, "top", strings.TrimPrefix(admin, "http://"))
	cmd.Stdout = lockedWriter{&mu, &out}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	output := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	pids := s.WorkerPids()
	frames := func() bool {
		o := output()
		for _, p := range pids {
			if !strings.Contains(o, " "+strconv.Itoa(p)+" ") {
				return false
			}
		}
		return strings.Count(o, "\x1b[H") >= 2 // redrawn at least once
	}
	if !pollUntil(10*time.Second, frames) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("taipan top did not show workers %v twice:\n%q", pids, output())
	}
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("taipan top after Ctrl-C: %v\n%q", err, output())
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("taipan top did not exit on SIGINT")
	}
}

// chromium finds the browser, or skips (fails in CI).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium missing in CI (apt-get install chromium; see scripts/deps)")
	}
	t.Skip("chromium not installed (apt-get install chromium)")
	return ""
}

// runChromium runs headless Chromium on url with extra flags and returns
// its stdout.
func runChromium(t *testing.T, bin, url string, flags ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{
		"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000",
	}, flags...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", flags, err, stderr.String())
	}
	return stdout.String()
}

// TestStatusPageChromium loads the status page in headless Chromium under
// a known workload (three slow requests on two workers, some fast ones
// before) and checks that the page's script filled it with real numbers;
// then it takes a screenshot.
func TestStatusPageChromium(t *testing.T) {
	t.Parallel()
	bin := chromium(t)
	s, admin := startWithMetrics(t, "-w", "2")
	for range 10 {
		if code, _ := s.Get(t, "/pid"); code != 200 {
			t.Fatalf("/pid: %d", code)
		}
	}
	const slow = "/sleep?ms=8000"
	wait := startSlow(t, s, slow, 3)
	defer wait()
	st := waitRunning(t, admin, "GET "+slow, 2)

	dom := runChromium(t, bin, admin+"/", "--dump-dom")
	text := func(id string) string {
		m := regexp.MustCompile(`id="` + id + `"[^>]*>([^<]*)<`).FindStringSubmatch(dom)
		if m == nil {
			t.Errorf("no #%s in the DOM", id)
			return ""
		}
		return m[1]
	}
	number := regexp.MustCompile(`^\d+(\.\d+)?$`)
	for _, id := range []string{"rps", "queue", "inflight", "connections", "total", "pid"} {
		if v := text(id); !number.MatchString(v) {
			t.Errorf("#%s = %q, want a number", id, v)
		}
	}
	for _, id := range []string{"p50", "p90", "p99"} {
		if v := text(id); !regexp.MustCompile(`^\d+(\.\d+)? (µs|ms|s)$`).MatchString(v) {
			t.Errorf("#%s = %q, want a latency", id, v)
		}
	}
	if v, _ := strconv.Atoi(text("total")); v < 10 {
		t.Errorf("#total = %d, want at least the 10 fast requests", v)
	}
	if v := text("pid"); v != strconv.Itoa(s.Pid()) {
		t.Errorf("#pid = %s, want %d", v, s.Pid())
	}
	if v := text("ready"); v != "ready" {
		t.Errorf("#ready = %q", v)
	}
	if v := text("error"); v != "" {
		t.Errorf("#error = %q", v)
	}

	rows := regexp.MustCompile(`<tr class="worker-row" data-id="(\d+)" data-pid="(\d+)">`).FindAllStringSubmatch(dom, -1)
	if len(rows) != len(st.Workers) || len(rows) != 2 {
		t.Errorf("%d worker rows, want 2", len(rows))
	}
	pids := map[string]bool{}
	for _, w := range st.Workers {
		pids[strconv.Itoa(w.Pid)] = true
	}
	for _, r := range rows {
		if !pids[r[2]] {
			t.Errorf("row for pid %s, not a worker (%+v)", r[2], st.Workers)
		}
	}
	reqs := regexp.MustCompile(`<span class="req-age">(\d+\.\d)s</span><span class="req-line">GET `+regexp.QuoteMeta(slow)+`</span>`).FindAllStringSubmatch(dom, -1)
	if len(reqs) != 2 {
		t.Errorf("%d slow requests shown with an age, want 2", len(reqs))
	}
	if t.Failed() {
		t.Fatalf("DOM:\n%s", dom)
	}

	shot := filepath.Join(os.TempDir(), "taipan-e2e-status.png")
	os.Remove(shot)
	runChromium(t, bin, admin+"/", "--screenshot="+shot, "--window-size=1200,800")
	t.Logf("screenshot: %s", shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	b := img.Bounds()
	if b.Dx() != 1200 || b.Dy() != 800 {
		t.Errorf("screenshot is %dx%d, want 1200x800", b.Dx(), b.Dy())
	}
	colours := map[[4]uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 4 {
		for x := b.Min.X; x < b.Max.X; x += 4 {
			r, g, bl, a := img.At(x, y).RGBA()
			colours[[4]uint32{r, g, bl, a}] = true
		}
	}
	if len(colours) < 16 {
		t.Errorf("screenshot has %d colours: blank?", len(colours))
	}
}
