package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Log formats, worker output and log rotation (docs/operations.md, "Logs"),
// with e2e/apps/logapp.py: testapp's routes plus /out, /long, /partial and
// /exit, which write to the worker's stdout and stderr.

// startLogApp runs taipan serving logapp:app with args. It waits until
// taipan accepts connections and ready holds (the harness's own check
// reads stderr, which is empty when the error log goes to a file).
func startLogApp(t *testing.T, ready func(*Server) bool, args ...string) *Server {
	t.Helper()
	full := append([]string{"--pythonpath", appsDir(t)}, args...)
	full = append(full, "logapp:app")
	s := startProcess(t, full...)
	ok := pollUntil(30*time.Second, func() bool {
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
		return ready == nil || ready(s)
	})
	if !ok {
		t.Fatalf("taipan not ready; stderr:\n%s", s.Stderr())
	}
	return s
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// lineWith waits for the line of text() that contains substr.
func lineWith(text func() string, substr string) (string, bool) {
	var found string
	ok := pollUntil(5*time.Second, func() bool {
		for line := range strings.Lines(text()) {
			if strings.Contains(line, substr) {
				found = strings.TrimSuffix(line, "\n")
				return true
			}
		}
		return false
	})
	return found, ok
}

// A format with every atom, parsed back field by field.
func TestLogsAccessFormat(t *testing.T) {
	t.Parallel()
	atoms := []string{"h", "l", "u", "t", "r", "m", "U", "q", "H", "s", "B", "b", "f", "a", "T", "D", "M", "L", "p", "w", "wp",
		"{X-Trace}i", "{x-missing}i", "{LOGS_TEST_VAR}e"}
	var format []string
	for _, a := range atoms {
		format = append(format, "%("+a+")s")
	}
	s := startLogApp(t, func(s *Server) bool { return strings.Contains(s.Stderr(), "Listening at") },
		"-w", "1", "-e", "LOGS_TEST_VAR=from-env", "--access-logfile", "-",
		"--access-logformat", "<"+strings.Join(format, "|")+"> 100%%")

	before := time.Now().Add(-time.Second)
	resp, body := httpDo(t, "GET", s.URL+"/pid?tag=atoms&x=1", nil, map[string]string{
		"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:secret")),
		"X-Trace":       "trace-42",
		"Referer":       "http://ref.example/page",
		"User-Agent":    "logs-e2e/1.0",
	})
	after := time.Now().Add(time.Second)
	if resp.StatusCode != 200 {
		t.Fatalf("/pid: %d", resp.StatusCode)
	}
	line, ok := lineWith(s.Stdout, "tag=atoms")
	if !ok {
		t.Fatalf("no access line on stdout:\n%s", s.Stdout())
	}
	m := regexp.MustCompile(`^<(.*)> 100%$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("line %q does not follow the format", line)
	}
	fields := strings.Split(m[1], "|")
	if len(fields) != len(atoms) {
		t.Fatalf("%d fields for %d atoms: %q", len(fields), len(atoms), line)
	}
	got := map[string]string{}
	for i, a := range atoms {
		got[a] = fields[i]
	}
	want := map[string]string{
		"h": "127.0.0.1", "l": "-", "u": "alice",
		"r": "GET /pid?tag=atoms&x=1 HTTP/1.1", "m": "GET", "U": "/pid", "q": "tag=atoms&x=1", "H": "HTTP/1.1",
		"s": "200", "B": strconv.Itoa(len(body)), "b": strconv.Itoa(len(body)),
		"f": "http://ref.example/page", "a": "logs-e2e/1.0",
		"p": fmt.Sprintf("<%d>", s.Pid()), "w": "1", "wp": strings.TrimSpace(body),
		"{X-Trace}i": "trace-42", "{x-missing}i": "-", "{LOGS_TEST_VAR}e": "from-env",
	}
	for a, v := range want {
		if got[a] != v {
			t.Errorf("%%(%s)s = %q, want %q", a, got[a], v)
		}
	}
	ts, err := time.Parse("[02/Jan/2006:15:04:05 -0700]", got["t"])
	if err != nil || ts.Before(before) || ts.After(after) {
		t.Errorf("%%(t)s = %q (%v), want the time of the request", got["t"], err)
	}
	// The request times agree with each other.
	us, errD := strconv.ParseInt(got["D"], 10, 64)
	ms, errM := strconv.ParseInt(got["M"], 10, 64)
	sec, errT := strconv.ParseInt(got["T"], 10, 64)
	dec, errL := strconv.ParseFloat(got["L"], 64)
	if errD != nil || errM != nil || errT != nil || errL != nil || us <= 0 || us > 10_000_000 ||
		ms != us/1000 || sec != us/1_000_000 || fmt.Sprintf("%.6f", dec) != got["L"] || int64(dec*1e6+0.5) != us {
		t.Errorf("request times disagree: T=%s D=%s M=%s L=%s", got["T"], got["D"], got["M"], got["L"])
	}
}

// A bad format stops taipan before it starts, naming the atom.
func TestLogsAccessFormatErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ format, want string }{
		{"%(h)s %(nope)s", "%(nope)s"},
		{"%({X-Id}o)s", "%({X-Id}o)s"},
		{"%(h)d", "%(h)"},
		{"50% %(h)s", "stray %"},
	} {
		code, out := runTaipan(t, 10*time.Second, "--python", pythonPath(), "--access-logfile", "-", "--access-logformat", tc.format)
		if code != 2 || !strings.Contains(out, "--access-logformat") || !strings.Contains(out, tc.want) {
			t.Errorf("--access-logformat %q: exit %d, output %q; want 2 and a message naming %q", tc.format, code, out, tc.want)
		}
	}
}

type accessJSON struct {
	RemoteAddr  string  `json:"remote_addr"`
	Time        string  `json:"time"`
	Method      string  `json:"method"`
	Path        string  `json:"path"`
	Query       string  `json:"query"`
	Protocol    string  `json:"protocol"`
	Status      int     `json:"status"`
	BytesOut    int64   `json:"bytes_out"`
	BytesIn     int64   `json:"bytes_in"`
	DurationMS  float64 `json:"duration_ms"`
	Referer     string  `json:"referer"`
	UserAgent   string  `json:"user_agent"`
	Worker      *int    `json:"worker"`
	WorkerPid   *int    `json:"worker_pid"`
	RequestLine string  `json:"request_line"`
}

// decodeStrict parses one JSON line, refusing fields the test does not know.
func decodeStrict(t *testing.T, line string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("log line %q: %v", line, err)
	}
}

func TestLogsAccessJSON(t *testing.T) {
	t.Parallel()
	s := startLogApp(t, func(s *Server) bool { return strings.Contains(s.Stderr(), "Listening at") },
		"-w", "1", "--access-logfile", "-", "--access-log-json")
	resp, body := httpDo(t, "POST", s.URL+"/echo?tag=json1", strings.NewReader("hello body"), map[string]string{
		"Content-Type": "text/plain",
		"User-Agent":   "agent \"quoted\" \\ back",
		"Referer":      "http://ref.example/",
	})
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	pid := workerPid(t, s)
	httpGet(t, s, "/status?code=404&tag=json2")

	line, ok := lineWith(s.Stdout, "tag=json1")
	if !ok {
		t.Fatalf("no access line:\n%s", s.Stdout())
	}
	var e accessJSON
	decodeStrict(t, line, &e)
	ts, err := time.Parse(time.RFC3339, e.Time)
	if err != nil || time.Since(ts) > time.Minute || !regexp.MustCompile(`\.\d{3}(Z|[+-]\d\d:\d\d)$`).MatchString(e.Time) {
		t.Errorf("time %q: want RFC 3339 with milliseconds, now (%v)", e.Time, err)
	}
	if e.RemoteAddr != "127.0.0.1" || e.Method != "POST" || e.Path != "/echo" || e.Query != "tag=json1" ||
		e.Protocol != "HTTP/1.1" || e.Status != 200 || e.BytesOut != int64(len(body)) || e.BytesIn != int64(len("hello body")) ||
		e.DurationMS <= 0 || e.Referer != "http://ref.example/" || e.UserAgent != "agent \"quoted\" \\ back" ||
		e.RequestLine != "POST /echo?tag=json1 HTTP/1.1" {
		t.Errorf("entry %+v\nfrom %s", e, line)
	}
	if e.Worker == nil || *e.Worker != 1 || e.WorkerPid == nil || *e.WorkerPid != pid {
		t.Errorf("worker %v pid %v, want 1 and %d", e.Worker, e.WorkerPid, pid)
	}

	line, ok = lineWith(s.Stdout, "tag=json2")
	if !ok {
		t.Fatalf("no access line for the 404:\n%s", s.Stdout())
	}
	e = accessJSON{}
	decodeStrict(t, line, &e)
	if e.Status != 404 || e.Method != "GET" || e.BytesIn != 0 {
		t.Errorf("404 entry %+v", e)
	}
	// Every line is one JSON object.
	for line := range strings.Lines(s.Stdout()) {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("not JSON: %q", line)
		}
	}
}

type errorJSON struct {
	Time      string `json:"time"`
	Level     string `json:"level"`
	Pid       int    `json:"pid"`
	Worker    *int   `json:"worker"`
	WorkerPid *int   `json:"worker_pid"`
	Message   string `json:"message"`
}

func TestLogsErrorJSON(t *testing.T) {
	t.Parallel()
	s := startLogApp(t, func(s *Server) bool { return strings.Contains(s.Stderr(), "Listening at") },
		"-w", "1", "--log-format", "json")
	pid := workerPid(t, s)
	httpGet(t, s, "/raise")
	httpGet(t, s, "/out?tag=json-out")
	if !s.WaitLog("logapp-stderr json-out", 5*time.Second) || !s.WaitLog("boom-before-start-response", 5*time.Second) {
		t.Fatalf("the traceback or the app's output is missing:\n%s", s.Stderr())
	}
	var entries []errorJSON
	for line := range strings.Lines(s.Stderr()) {
		var e errorJSON
		decodeStrict(t, line, &e)
		entries = append(entries, e)
	}
	find := func(substr string) *errorJSON {
		for i := range entries {
			if strings.Contains(entries[i].Message, substr) {
				return &entries[i]
			}
		}
		t.Fatalf("no entry with %q", substr)
		return nil
	}
	listening := find("Listening at")
	if listening.Level != "INFO" || listening.Pid != s.Pid() || listening.Worker != nil || listening.WorkerPid != nil {
		t.Errorf("taipan's entry %+v", listening)
	}
	if _, err := time.Parse(time.RFC3339, listening.Time); err != nil {
		t.Errorf("time %q: %v", listening.Time, err)
	}
	// The traceback is one entry, from the worker.
	tb := find("boom-before-start-response")
	if tb.Level != "ERROR" || tb.Worker == nil || *tb.Worker != 1 || tb.WorkerPid == nil || *tb.WorkerPid != pid ||
		!strings.Contains(tb.Message, "GET /raise") || !strings.Contains(tb.Message, "\nTraceback (most recent call last):\n") ||
		!strings.HasSuffix(tb.Message, "RuntimeError: boom-before-start-response") {
		t.Errorf("traceback entry %+v", tb)
	}
	for _, want := range []string{"logapp-stdout json-out", "logapp-stderr json-out"} {
		e := find(want)
		if e.Message != want || e.Worker == nil || *e.Worker != 1 || e.WorkerPid == nil || *e.WorkerPid != pid {
			t.Errorf("output entry %+v, want message %q from worker 1 pid %d", e, want, pid)
		}
	}
}

// The app's stdout and stderr: one entry per line, tagged with the worker;
// a long line is split into bounded entries, and a last line without a
// newline is written when the worker exits.
func TestLogsWorkerOutput(t *testing.T) {
	t.Parallel()
	s := startLogApp(t, func(s *Server) bool { return strings.Contains(s.Stderr(), "Listening at") }, "-w", "1")
	pid := workerPid(t, s)
	httpGet(t, s, "/out?tag=t1")
	tag := fmt.Sprintf(`\[INFO\] \[worker 1 pid %d\] `, pid)
	for _, want := range []string{"logapp-stdout t1", "logapp-stderr t1"} {
		re := regexp.MustCompile(`(?m)^\[[^\]]+\] \[\d+\] ` + tag + want + `$`)
		if !pollUntil(5*time.Second, func() bool { return re.MatchString(s.Stderr()) }) {
			t.Errorf("no tagged entry %q:\n%s", want, s.Stderr())
		}
	}

	httpGet(t, s, "/long?n=150000&tag=long-end")
	if !s.WaitLog(" long-end\n", 5*time.Second) {
		t.Fatalf("the long line's end is missing")
	}
	total := 0
	for line := range strings.Lines(s.Stderr()) {
		if _, rest, ok := strings.Cut(line, fmt.Sprintf("[worker 1 pid %d] ", pid)); ok && strings.HasPrefix(rest, "LLL") {
			rest = strings.TrimSuffix(rest, "\n")
			if len(rest) > 64<<10 {
				t.Errorf("an entry of %d bytes: long lines are not bounded", len(rest))
			}
			total += strings.Count(rest, "L")
		}
	}
	if total != 150000 {
		t.Errorf("%d of the long line's 150000 bytes relayed", total)
	}

	httpGet(t, s, "/partial?tag=tail")
	time.Sleep(200 * time.Millisecond)
	if strings.Contains(s.Stderr(), "logapp-partial tail") {
		t.Errorf("a partial line was written before it ended or the worker exited")
	}
	httpGet(t, s, "/exit") // the worker exits: 502
	re := regexp.MustCompile(`(?m)^\[[^\]]+\] \[\d+\] ` + tag + `logapp-partial tail$`)
	if !pollUntil(5*time.Second, func() bool { return re.MatchString(s.Stderr()) }) {
		t.Errorf("the partial line was not written when the worker exited:\n%s", s.Stderr())
	}
}

// The worker and pid in the access log are those of the worker that
// answered, as its /pid response says.
func TestLogsWorkerInAccessLog(t *testing.T) {
	t.Parallel()
	static := t.TempDir()
	if err := os.WriteFile(filepath.Join(static, "a.txt"), []byte("static\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startLogApp(t, func(s *Server) bool { return strings.Count(s.Stderr(), "Booted worker") >= 2 },
		"-w", "2", "--static", "/assets="+static,
		"--access-logfile", "-", "--access-logformat", "%(U)s %(q)s w=%(w)s wp=%(wp)s")
	// Concurrent requests, so that both workers serve some.
	const n = 12
	pids := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := httpGet(t, s, fmt.Sprintf("/sleep?ms=50&n=%d", i))
			var ms int
			if _, err := fmt.Sscanf(body, "slept %d ms pid %d", &ms, &pids[i]); code != 200 || err != nil {
				t.Errorf("request %d: %d %q", i, code, body)
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		line, ok := lineWith(s.Stdout, fmt.Sprintf("&n=%d ", i))
		if !ok {
			t.Fatalf("no access line for request %d:\n%s", i, s.Stdout())
		}
		m := regexp.MustCompile(`^/sleep ms=50&n=\d+ w=(\d+) wp=(\d+)$`).FindStringSubmatch(line)
		if m == nil || m[2] != strconv.Itoa(pids[i]) {
			t.Errorf("request %d answered by pid %d, logged as %q", i, pids[i], line)
			continue
		}
		seen[m[1]+"/"+m[2]] = true
	}
	if len(seen) != 2 {
		t.Errorf("workers logged: %v, want the two", seen)
	}
	// A static file needs no worker: '-'.
	if code, _ := httpGet(t, s, "/assets/a.txt"); code != 200 {
		t.Fatalf("static file: %d", code)
	}
	// (An empty query string is empty, as in gunicorn.)
	if line, ok := lineWith(s.Stdout, "/assets/a.txt"); !ok || line != "/assets/a.txt  w=- wp=-" {
		t.Errorf("static file logged as %q, want no worker", line)
	}
}

// logrotate's rotation without copying: rename the files, SIGUSR1, and
// the lines that follow go to new files at the original paths, while the
// renamed files keep every line from before.
func TestLogsReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	access, errlog := filepath.Join(dir, "access.log"), filepath.Join(dir, "error.log")
	s := startLogApp(t, func(*Server) bool { return strings.Contains(readFile(errlog), "Listening at") },
		"-w", "2", "--access-logfile", access, "--error-logfile", errlog)
	const n = 10
	for i := 0; i < n; i++ {
		httpGet(t, s, fmt.Sprintf("/out?tag=before-%d", i))
	}
	if err := os.Rename(access, access+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(errlog, errlog+".1"); err != nil {
		t.Fatal(err)
	}
	// Between the rename and the signal lines still go to the renamed
	// files. (The worker's output reaches the log, and the access line its
	// buffer, just after the response: wait for them.)
	httpGet(t, s, "/out?tag=before-renamed")
	if !pollUntil(5*time.Second, func() bool {
		return strings.Contains(readFile(errlog+".1"), "logapp-stderr before-renamed") &&
			strings.Contains(readFile(access+".1"), "tag=before-renamed")
	}) {
		t.Fatalf("lines logged after the rename are not in the renamed files:\n%s\n%s", readFile(access+".1"), readFile(errlog+".1"))
	}
	s.Signal(syscall.SIGUSR1)
	if !pollUntil(5*time.Second, func() bool {
		_, errA := os.Stat(access)
		_, errE := os.Stat(errlog)
		return errA == nil && errE == nil
	}) {
		t.Fatalf("no new log files after SIGUSR1; old error log:\n%s", readFile(errlog+".1"))
	}
	for i := 0; i < n; i++ {
		httpGet(t, s, fmt.Sprintf("/out?tag=after-%d", i))
	}
	s.Stop() // flushes the access log
	if s.Wait(10*time.Second) != 0 {
		t.Errorf("taipan did not exit 0")
	}

	oldA, newA := readFile(access+".1"), readFile(access)
	oldE, newE := readFile(errlog+".1"), readFile(errlog)
	check := func(name, text string, prefix string, want int, format string) {
		t.Helper()
		for i := 0; i < want; i++ {
			if c := strings.Count(text, fmt.Sprintf(format, prefix, i)); c != 1 {
				t.Errorf("%s: %q appears %d times, want once:\n%s", name, fmt.Sprintf(format, prefix, i), c, text)
			}
		}
	}
	check("old access log", oldA, "before", n, "GET /out?tag=%s-%d HTTP/1.1")
	check("new access log", newA, "after", n, "GET /out?tag=%s-%d HTTP/1.1")
	check("old error log", oldE, "before", n, "] logapp-stdout %s-%d\n")
	check("old error log", oldE, "before", n, "] logapp-stderr %s-%d\n")
	check("new error log", newE, "after", n, "] logapp-stdout %s-%d\n")
	check("new error log", newE, "after", n, "] logapp-stderr %s-%d\n")
	for _, f := range []struct{ name, text, notWant string }{
		{"old access log", oldA, "after-"}, {"old error log", oldE, "after-"},
		{"new access log", newA, "before-"}, {"new error log", newE, "before-"},
	} {
		if strings.Contains(f.text, f.notWant) {
			t.Errorf("%s has %q lines:\n%s", f.name, f.notWant, f.text)
		}
	}
	if !strings.Contains(oldE, "Handling signal: usr1") || !strings.Contains(newE, "Shutting down: Master") {
		t.Errorf("the signal's line or the shutdown's is misplaced:\nold:\n%s\nnew:\n%s", oldE, newE)
	}
	// Every line of every file is whole: an access line or an error log entry.
	accessLine := regexp.MustCompile(`^127\.0\.0\.1 - - \[[^\]]+\] "GET /out\?tag=[a-z0-9-]+ HTTP/1\.1" 200 \d+ "-" "Go-http-client/1\.1"$`)
	for name, text := range map[string]string{"old access log": oldA, "new access log": newA} {
		for line := range strings.Lines(text) {
			if !accessLine.MatchString(strings.TrimSuffix(line, "\n")) {
				t.Errorf("%s: torn or foreign line %q", name, line)
			}
		}
	}
	for name, text := range map[string]string{"old error log": oldE, "new error log": newE} {
		for line := range strings.Lines(text) {
			if !errorLogLine.MatchString(line) {
				t.Errorf("%s: torn or foreign line %q", name, line)
			}
		}
	}
}
