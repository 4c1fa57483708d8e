package e2e

// Fault tests (docs/operations.md, "Faults"): a worker killed, hung, out of
// memory or flooding its output, the disk for request bodies full, the
// interpreter missing. Each injects its fault while a small steady load of
// ordinary requests runs against the same taipan, and checks the status
// the faulted request gets, the line taipan logs, that taipan still serves
// afterwards, and that no request of the load was lost. The counts are
// logged as "fault ...: load tried=N failed=M; faulted tried=N ..." lines,
// the figures of docs/reliability.md.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
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

// faultLoad is the background load of every fault test: a few keep-alive
// clients asking for /pid with a short pause, bounded by loadHardCap and
// loadMaxRequests.
var faultLoad = loadOpts{clients: 3, pause: 5 * time.Millisecond}

// faultServer is a taipan serving e2e/apps/faultapp.py with --metrics-bind,
// and the load running against it.
type faultServer struct {
	*Server
	admin string // base URL of the --metrics-bind listener
	load  *loadGen
}

// startFault starts taipan with args and the background load, and lets the
// load run a moment before the fault.
func startFault(t *testing.T, args ...string) *faultServer {
	t.Helper()
	return startFaultLoad(t, faultLoad, args...)
}

// startFaultLoad is startFault with another background load.
func startFaultLoad(t *testing.T, load loadOpts, args ...string) *faultServer {
	t.Helper()
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	full := append([]string{"--metrics-bind", admin, "--pythonpath", appsDir(t)}, args...)
	s := Start(t, append(full, "faultapp:app")...)
	fs := &faultServer{Server: s, admin: "http://" + admin, load: startLoad(t, s.URL, load)}
	time.Sleep(300 * time.Millisecond)
	return fs
}

// finish lets the load run a moment after the fault, stops it, requires
// that every request of it succeeded and that taipan still serves, and logs
// the counts: faulted requests tried and how many failed (as they should).
func (fs *faultServer) finish(t *testing.T, fault string, faultedTried, faultedFailed int) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	sum := requireClean(t, fault+": background load", fs.load.Stop())
	t.Logf("fault %s: load tried=%d failed=%d; faulted tried=%d failed=%d; lost beyond the faulted=%d",
		fault, sum.requests, len(sum.failures), faultedTried, faultedFailed, len(sum.failures))
	for i := range 3 {
		if code, body := httpGet(t, fs.Server, "/pid"); code != 200 {
			t.Errorf("after the fault, request %d: %d %q", i, code, body)
		}
	}
}

// runningWorker waits until /status.json shows a worker running a request
// whose line is line, and returns its id and pid.
func (fs *faultServer) runningWorker(t *testing.T, line string) (id, pid int) {
	t.Helper()
	var last string
	found := pollUntil(10*time.Second, func() bool {
		_, body := adminGet(t, fs.admin+"/status.json")
		last = body
		var st statusDoc
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("/status.json: %v\n%s", err, body)
		}
		for _, w := range st.Workers {
			for _, r := range w.Requests {
				if r.Line == line {
					id, pid = w.ID, w.Pid
					return true
				}
			}
		}
		return false
	})
	if !found {
		t.Fatalf("no worker running %q in /status.json:\n%s", line, last)
	}
	return id, pid
}

// getAsync sends GET url on its own connection and delivers the status
// and body, or the error as the body with status 0, within 20 s.
func getAsync(url string) <-chan [2]string {
	out := make(chan [2]string, 1)
	go func() {
		c := timeoutClient(20 * time.Second)
		defer c.CloseIdleConnections()
		resp, err := c.Get(url)
		if err != nil {
			out <- [2]string{"0", err.Error()}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			out <- [2]string{"0", "reading body: " + err.Error()}
			return
		}
		out <- [2]string{strconv.Itoa(resp.StatusCode), string(b)}
	}()
	return out
}

// awaitResponse waits for getAsync's answer.
func awaitResponse(t *testing.T, ch <-chan [2]string) (int, string) {
	t.Helper()
	select {
	case r := <-ch:
		code, _ := strconv.Atoi(r[0])
		return code, r[1]
	case <-time.After(30 * time.Second):
		t.Fatal("the faulted request got no answer within 30 s")
		return 0, ""
	}
}

// requireLogLine waits until a line of the error log matches the regular
// expression re (anchored to the whole line) and returns its offset.
func requireLogLine(t *testing.T, s *Server, re string) int {
	t.Helper()
	rx := regexp.MustCompile(`(?m)^` + re + `$`)
	var loc []int
	if !pollUntil(10*time.Second, func() bool { loc = rx.FindStringIndex(s.Stderr()); return loc != nil }) {
		t.Fatalf("no log line matching\n  %s\nin:\n%s", re, s.Stderr())
	}
	return loc[0]
}

// logPrefix matches the start of an error log line at level.
func logPrefix(level string) string {
	return `\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[` + level + `\] `
}

// requireReplaced waits until the pool has n live workers again, the one
// with pid not among them.
func requireReplaced(t *testing.T, s *Server, pid, n int) {
	t.Helper()
	if !pollUntil(10*time.Second, func() bool {
		w := liveWorkers(s)
		return len(w) == n && !slices.Contains(w, pid)
	}) {
		t.Fatalf("workers %v: want %d, without %d", liveWorkers(s), n, pid)
	}
}

// A worker killed with SIGKILL in the middle of a request: that request
// gets 502, the log says which worker died of what while running what, a
// replacement starts, and no other request is lost.
func TestFaultWorkerSIGKILL(t *testing.T) {
	t.Parallel()
	fs := startFault(t, "-w", "2")
	faulted := getAsync(fs.URL + "/block?s=30")
	id, pid := fs.runningWorker(t, "GET /block?s=30")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	code, body := awaitResponse(t, faulted)
	if code != 502 || body != "Bad Gateway\n" {
		t.Errorf("the request on the killed worker: %d %q, want 502 \"Bad Gateway\\n\"", code, body)
	}
	requireLogLine(t, fs.Server, logPrefix("ERROR")+regexp.QuoteMeta(fmt.Sprintf(
		"Worker %d (pid %d) exited unexpectedly (signal: killed) while running GET /block?s=30; that request fails", id, pid)))
	requireReplaced(t, fs.Server, pid, 2)
	fs.finish(t, "worker SIGKILL", 1, 1)
}

// A request that spins in Python forever is stopped by --timeout: it gets
// 504, the worker's Python stack is logged before the worker is killed, a
// replacement starts, and no other request is lost.
func TestFaultWorkerHang(t *testing.T) {
	t.Parallel()
	fs := startFault(t, "-w", "2", "--timeout", "2")
	faulted := getAsync(fs.URL + "/spin")
	id, pid := fs.runningWorker(t, "GET /spin")
	code, body := awaitResponse(t, faulted)
	if code != 504 || body != "Gateway Timeout\n" {
		t.Errorf("the hung request: %d %q, want 504 \"Gateway Timeout\\n\"", code, body)
	}
	at := requireLogLine(t, fs.Server, logPrefix("CRITICAL")+regexp.QuoteMeta(fmt.Sprintf(
		"WORKER TIMEOUT: worker %d (pid %d) ran GET /spin for ", id, pid))+`\d+\.\ds \(limit 2s\); killing it\. Python stack:`)
	requireReplaced(t, fs.Server, pid, 2)
	entry := logEntry(fs.Stderr()[at:], "WORKER TIMEOUT")
	for _, want := range []string{"thread 0x", "faultapp.py", "in spin_forever", "in spin_view"} {
		if !strings.Contains(entry, want) {
			t.Errorf("the timeout entry lacks %q:\n%s", want, entry)
		}
	}
	// The stack was logged before the worker was killed and replaced.
	if !pollUntil(5*time.Second, func() bool { return strings.Contains(fs.Stderr()[at:], "Booted worker") }) {
		t.Errorf("no replacement booted after the timeout entry:\n%s", fs.Stderr())
	}
	fs.finish(t, "worker hang (--timeout 2)", 1, 1)
}

// A fault on a request that reached its worker in a batch, behind requests
// that were queued before it: those requests are answered as soon as each
// is done, not held back by the faulted one, and the fault is blamed on
// the request that caused it, which runs once (it is not run again on
// another worker as if it had not started). Also when the requests before
// it answer as Flask does, with responses complete before their close()
// (the worker then tells Go that one has returned only by starting the next).
func TestFaultInBatch(t *testing.T) {
	t.Parallel()
	t.Run("after list responses", func(t *testing.T) { testFaultInBatch(t, faultLoad) })
	iterLoad := faultLoad
	iterLoad.path = func(int, int) string { return "/pid?iter" }
	t.Run("after responses complete before close", func(t *testing.T) { testFaultInBatch(t, iterLoad) })
}

func testFaultInBatch(t *testing.T, load loadOpts) {
	for _, tc := range []struct {
		name, path string
		kill       bool // SIGKILL the worker running path, else --timeout stops it
		status     int
		logLine    func(id, pid int) string
	}{
		{"hang", "/spin", false, 504, func(id, pid int) string {
			return logPrefix("CRITICAL") + regexp.QuoteMeta(fmt.Sprintf("WORKER TIMEOUT: worker %d (pid %d) ran GET /spin for ", id, pid)) + `\d+\.\ds \(limit 2s\); killing it\. Python stack:`
		}},
		{"kill", "/block?s=3", true, 502, func(id, pid int) string {
			return logPrefix("ERROR") + regexp.QuoteMeta(fmt.Sprintf("Worker %d (pid %d) exited unexpectedly (signal: killed) while running GET /block?s=3; that request fails", id, pid))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := startFaultLoad(t, load, "-w", "1", "--timeout", "2")
			// Occupy the only worker, so that the load's requests and then
			// the faulted one queue in Go and reach it as one batch.
			occupier := getAsync(fs.URL + "/block?s=0.5")
			fs.runningWorker(t, "GET /block?s=0.5")
			if !pollUntil(5*time.Second, func() bool {
				var st statusDoc
				_, body := adminGet(t, fs.admin+"/status.json")
				return json.Unmarshal([]byte(body), &st) == nil && st.QueueDepth > 0
			}) {
				t.Fatal("no request of the load queued behind the occupier")
			}
			faulted := getAsync(fs.URL + tc.path)
			id, pid := fs.runningWorker(t, "GET "+tc.path)
			if tc.kill {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			if code, body := awaitResponse(t, occupier); code != 200 {
				t.Errorf("the occupier: %d %q", code, body)
			}
			if code, body := awaitResponse(t, faulted); code != tc.status {
				t.Errorf("GET %s: %d %q, want %d", tc.path, code, body, tc.status)
			}
			requireLogLine(t, fs.Server, tc.logLine(id, pid))
			requireReplaced(t, fs.Server, pid, 1)
			if n := countLog(fs.Server, "WORKER TIMEOUT") + countLog(fs.Server, "exited unexpectedly"); n != 1 {
				t.Errorf("%d workers lost, want 1:\n%s", n, fs.Stderr())
			}
			fs.finish(t, tc.name+" of a request batched behind others (-w 1)", 1, 1)
		})
	}
}

// A request that allocates without bound is stopped by --max-rss while it
// runs: it gets 502, the worker's stack and its memory are logged before
// it is killed, a replacement starts, and no other request is lost.
func TestFaultWorkerOutOfMemory(t *testing.T) {
	t.Parallel()
	fs := startFault(t, "-w", "2", "--max-rss", "100")
	faulted := getAsync(fs.URL + "/alloc")
	id, pid := fs.runningWorker(t, "GET /alloc")
	code, body := awaitResponse(t, faulted)
	if code != 502 || body != "Bad Gateway\n" {
		t.Errorf("the runaway request: %d %q, want 502 \"Bad Gateway\\n\"", code, body)
	}
	at := requireLogLine(t, fs.Server, logPrefix("CRITICAL")+regexp.QuoteMeta(fmt.Sprintf(
		"WORKER MEMORY LIMIT: worker %d (pid %d) has ", id, pid))+
		`(\d+) MB resident, above --max-rss 100 MB, while running GET /alloc for \d+\.\ds; killing it\. Python stack:`)
	requireLogLine(t, fs.Server, logPrefix("ERROR")+regexp.QuoteMeta(
		"GET /alloc: worker killed: its resident memory passed --max-rss while it ran the request"))
	requireReplaced(t, fs.Server, pid, 2)
	entry := logEntry(fs.Stderr()[at:], "WORKER MEMORY LIMIT")
	for _, want := range []string{"faultapp.py", "in allocate_without_bound", "in alloc_view"} {
		if !strings.Contains(entry, want) {
			t.Errorf("the memory limit entry lacks %q:\n%s", want, entry)
		}
	}
	if m := regexp.MustCompile(`has (\d+) MB resident`).FindStringSubmatch(entry); m != nil {
		t.Logf("the runaway worker was killed at %s MB resident (--max-rss 100)", m[1])
	}
	fs.finish(t, "worker out of memory (--max-rss 100)", 1, 1)
}

// An app that writes megabytes to stdout and stderr per request, on every
// worker at once: every line reaches the log whole, once, tagged with its
// worker, and the other requests all complete.
func TestFaultNoisyApp(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"sync", []string{"-w", "3"}},
		{"threads", []string{"-w", "1", "--threads", "4"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			fs := startFault(t, mode.args...)
			const requests, concurrent, kb = 8, 3, 1024
			type result struct {
				tag  string
				code int
				body string
			}
			results := make(chan result, requests)
			sem := make(chan struct{}, concurrent)
			var wg sync.WaitGroup
			for i := range requests {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sem <- struct{}{}
					defer func() { <-sem }()
					tag := fmt.Sprintf("r%d", i)
					r := <-getAsync(fmt.Sprintf("%s/spew?tag=%s&kb=%d", fs.URL, tag, kb)) // answers within its client's timeout
					code, _ := strconv.Atoi(r[0])
					results <- result{tag, code, r[1]}
				}()
			}
			wg.Wait()
			close(results)
			want := map[string]int{} // tag -> lines per stream
			pids := map[string]string{}
			failed := 0
			for r := range results {
				f := strings.Fields(r.body)
				if r.code != 200 || len(f) != 2 {
					t.Errorf("/spew?tag=%s: %d %q", r.tag, r.code, r.body)
					failed++
					continue
				}
				pids[r.tag] = f[0]
				want[r.tag], _ = strconv.Atoi(f[1])
			}
			// Every line the app wrote is one whole log entry, once.
			lineRE := regexp.MustCompile(`^` + logPrefix("INFO") + `\[worker \d+ pid (\d+)\] spew (r\d+) (out|err) (\d{5}) x{1000} end$`)
			seen := map[string]int{}
			if !pollUntil(10*time.Second, func() bool { return strings.Count(fs.Stderr(), " spew ") >= 2*requests*want["r0"] }) {
				t.Logf("the log still lacks lines after 10 s")
			}
			bad := 0
			for _, line := range strings.Split(fs.Stderr(), "\n") {
				if !strings.Contains(line, "spew ") {
					continue
				}
				m := lineRE.FindStringSubmatch(line)
				if m == nil {
					if bad++; bad <= 3 {
						t.Errorf("a spew line is not whole (%d bytes): %.300q", len(line), line)
					}
					continue
				}
				if pids[m[2]] != m[1] {
					t.Errorf("line of %s tagged with pid %s, want %s", m[2], m[1], pids[m[2]])
				}
				seen[m[2]+" "+m[3]+" "+m[4]]++
			}
			lines, lost, twice := 0, 0, 0
			for tag, n := range want {
				for _, stream := range []string{"out", "err"} {
					for seq := range n {
						lines++
						switch seen[fmt.Sprintf("%s %s %05d", tag, stream, seq)] {
						case 0:
							lost++
						case 1:
						default:
							twice++
						}
					}
				}
			}
			t.Logf("%d requests wrote %d lines (%.1f MB) to stdout and stderr: %d lost, %d logged twice, %d broken",
				len(want), lines, float64(lines*1025)/(1<<20), lost, twice, bad)
			if lines == 0 || lost > 0 || twice > 0 || bad > 0 {
				t.Errorf("%d lines: %d lost, %d logged more than once, %d broken", lines, lost, twice, bad)
			}
			fs.finish(t, "app writing "+strconv.Itoa(2*kb)+" KB of output per request ("+mode.name+")", requests, failed)
		})
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory, unmounted
// when the test ends, or skips the test when mounting is not permitted.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a %s tmpfs for the disk-full test (needs root and CAP_SYS_ADMIN): %v", size, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// spillFailureStatus is what a request gets when its body cannot be
// buffered to --tmp-dir because the disk is full (docs/operations.md,
// "Faults"), and spillFailureBody its body.
const (
	spillFailureStatus = 507
	spillFailureBody   = "Insufficient Storage: no space left to buffer the request body\n"
)

// The disk where request bodies spill is full: the upload gets a clear
// error, the log names the directory and the cause, no partial file is
// left behind, and an upload that fits afterwards works, in a file of mode
// 0600. The rest of the traffic is untouched.
func TestFaultDiskFullSpill(t *testing.T) {
	t.Parallel()
	spool := mountTmpfs(t, "256k")
	fs := startFault(t, "-w", "2", "--tmp-dir", spool, "--body-memory-limit", "16k")
	// Larger than the tmpfs, but not by more than taipan reads while it
	// lingers after the error (256 KiB): the client has sent it all and
	// reads the answer. A larger upload gets the same answer, but the
	// connection is then reset under what remains of it, as after a 413,
	// and a client that is still writing may report that instead.
	big := make([]byte, 384<<10)
	rand.Read(big)
	tried, failed := 0, 0
	for _, chunked := range []bool{false, true} {
		var body io.Reader = bytes.NewReader(big)
		if chunked {
			body = io.MultiReader(body) // no length known: sent chunked
		}
		req, err := http.NewRequest("POST", fs.URL+"/upload", body)
		if err != nil {
			t.Fatal(err)
		}
		c := timeoutClient(testTimeout)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("upload of 384 KiB (chunked %v) into a 256 KiB tmpfs: %v", chunked, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.CloseIdleConnections()
		tried++
		if resp.StatusCode != 200 {
			failed++
		}
		if resp.StatusCode != spillFailureStatus || string(got) != spillFailureBody {
			t.Errorf("upload of 384 KiB (chunked %v) into a 256 KiB tmpfs: %d %q, want %d", chunked, resp.StatusCode, got, spillFailureStatus)
		}
	}
	line := logPrefix("ERROR") + regexp.QuoteMeta("edge: could not buffer a request body in "+spool+" (--tmp-dir) after ") +
		`\d+` + regexp.QuoteMeta(" bytes: write "+spool+"/taipan-body-") + `\d+-\d+: no space left on device`
	requireLogLine(t, fs.Server, line)
	lineRE := regexp.MustCompile(`(?m)^` + line + `$`)
	count := func() int { return len(lineRE.FindAllString(fs.Stderr(), -1)) }
	if !pollUntil(5*time.Second, func() bool { return count() >= tried }) || count() != tried {
		t.Errorf("%d disk-full lines for %d uploads:\n%s", count(), tried, fs.Stderr())
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Errorf("files left in the spool: %v", left)
	}

	// An upload that fits: spilled (over --body-memory-limit) into the now
	// empty tmpfs, given to the app whole, in a file only taipan's user
	// can read.
	small := big[:100<<10]
	resp, got := httpDo(t, "POST", fs.URL+"/upload", bytes.NewReader(small), nil)
	sum := sha256.Sum256(small)
	if want := fmt.Sprintf("%d %s 0600", len(small), hex.EncodeToString(sum[:])); resp.StatusCode != 200 || got != want {
		t.Errorf("upload of 100 KiB after the disk-full ones: %d %q, want 200 %q", resp.StatusCode, got, want)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Errorf("files left in the spool after a served upload: %v", left)
	}
	fs.finish(t, "disk full for body spooling (256 KiB tmpfs, 384 KiB uploads)", tried, failed)
}

// The interpreter is missing at start-up: taipan says so in one line and
// exits 2 before starting anything. (TestCLIMissingInterpreter checks a
// missing path's message; here every way to be missing, exactly.)
func TestFaultInterpreterMissing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dangling := filepath.Join(dir, "dangling-python3")
	if err := os.Symlink("/nonexistent/python3", dangling); err != nil {
		t.Fatal(err)
	}
	notExec := filepath.Join(dir, "python3")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, python := range []string{"/nonexistent/python3", dangling, notExec, dir} {
		code, out := runTaipan(t, 5*time.Second, "--python", python, "-b", freeAddr(t), "--pythonpath", appsDir(t), "faultapp:app")
		want := fmt.Sprintf("taipan: python interpreter %q (from --python) not found or not executable\n", python)
		if code != 2 || out != want {
			t.Errorf("--python %s: exit %d, output %q; want exit 2 and %q", python, code, out, want)
		}
	}
	// Something that runs but is not Python: the first worker's failure
	// is the message, and taipan exits 1.
	code, out := runTaipan(t, 10*time.Second, "--python", "/bin/true", "-w", "2", "-b", freeAddr(t), "--pythonpath", appsDir(t), "faultapp:app")
	if code != 1 || !regexp.MustCompile(`(?m)^`+logPrefix("CRITICAL")+`worker \d+ \(pid \d+\) exited while starting, with status 0, before reporting ready: does the app exit \(sys\.exit, os\._exit\) as it is imported, or is /bin/true not a Python interpreter\?$`).MatchString(out) ||
		!strings.HasSuffix(out, "\ntaipan: workers failed to start\n") {
		t.Errorf("--python /bin/true: exit %d, output:\n%s", code, out)
	}
	t.Logf("fault interpreter missing at start-up: exit 2 with one line; not a Python: exit 1")
}

// The interpreter disappears while taipan runs (a virtualenv removed under
// it) and a worker dies mid-request: that request gets 502, and the
// replacement cannot start, which is logged and retried with a backoff
// while the other worker serves everything; once the interpreter is back,
// the pool is whole again.
func TestFaultInterpreterGoneAtRuntime(t *testing.T) {
	t.Parallel()
	link := filepath.Join(t.TempDir(), "python3")
	if err := os.Symlink(pythonPath(), link); err != nil {
		t.Fatal(err)
	}
	fs := startFault(t, "--python", link, "-w", "2")
	faulted := getAsync(fs.URL + "/block?s=30")
	_, pid := fs.runningWorker(t, "GET /block?s=30")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code, body := awaitResponse(t, faulted); code != 502 {
		t.Errorf("the request on the killed worker: %d %q, want 502", code, body)
	}
	requireLogLine(t, fs.Server, logPrefix("ERROR")+regexp.QuoteMeta("A worker failed to boot, retrying in 100ms: start "+link+": fork/exec "+link+": no such file or directory"))
	if !waitLogCount(fs.Server, "A worker failed to boot", 2, 5*time.Second) {
		t.Errorf("the failed boot was not retried:\n%s", fs.Stderr())
	}
	if err := os.Symlink(pythonPath(), link); err != nil {
		t.Fatal(err)
	}
	requireReplaced(t, fs.Server, pid, 2)
	fs.finish(t, "interpreter gone at runtime, worker killed", 1, 1)
}

// A taipan killed while bodies were spooled cannot remove its files; the
// next start removes them, says so, and leaves a live taipan's files alone.
func TestFaultStaleSpillsRemoved(t *testing.T) {
	t.Parallel()
	spool := t.TempDir()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(spool, fmt.Sprintf("taipan-body-%d-1", gone.Process.Pid))
	live := filepath.Join(spool, fmt.Sprintf("taipan-body-%d-1", os.Getpid()))
	for _, p := range []string{stale, live} {
		if err := os.WriteFile(p, []byte("a body"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := Start(t, "--tmp-dir", spool, "--pythonpath", appsDir(t), "faultapp:app")
	if !s.WaitLog("Removed 1 request body file(s) in "+spool+" left by a taipan that was killed", 5*time.Second) {
		t.Errorf("no log line about the stale file; log:\n%s", s.Stderr())
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the dead taipan's file is still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the live process's file was removed: %v", err)
	}
	if code, _ := httpGet(t, s, "/pid"); code != 200 {
		t.Errorf("serving after the cleanup: %d", code)
	}
}
