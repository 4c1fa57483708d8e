package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// statusDoc is /status.json as docs/operations.md documents it (decoded
// independently of the Go types that produce it, so a renamed field
// fails here).
type statusDoc struct {
	Version           string  `json:"version"`
	Pid               int     `json:"pid"`
	Ready             bool    `json:"ready"`
	Draining          bool    `json:"draining"`
	Connections       int     `json:"connections"`
	RequestsTotal     uint64  `json:"requests_total"`
	WindowSeconds     int     `json:"window_seconds"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	Latency           struct {
		P50, P90, P99 *float64
	} `json:"latency_seconds"`
	QueueDepth int `json:"queue_depth"`
	InFlight   int `json:"in_flight"`
	Pools      []struct {
		Name       string `json:"name"`
		Size       int    `json:"size"`
		Workers    int    `json:"workers"`
		QueueDepth int    `json:"queue_depth"`
	} `json:"pools"`
	Workers []struct {
		ID             int    `json:"id"`
		Pid            int    `json:"pid"`
		Pool           string `json:"pool"`
		State          string `json:"state"`
		RequestsServed int    `json:"requests_served"`
		RSSBytes       *int64 `json:"rss_bytes"`
		Running        int    `json:"running"`
		Requests       []struct {
			Line       string  `json:"line"`
			AgeSeconds float64 `json:"age_seconds"`
		} `json:"requests"`
	} `json:"workers"`
}

// startWithMetrics runs the test app with --metrics-bind on a free port
// and returns the server and the admin base URL.
func startWithMetrics(t *testing.T, args ...string) (*Server, string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := startTestApp(t, append([]string{"--metrics-bind", addr}, args...)...)
	return s, "http://" + addr
}

// adminGet fetches an admin URL and returns status and body.
func adminGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := timeoutClient(testTimeout)
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// scrapeMetrics fetches /metrics, parses the Prometheus text format and
// returns every sample keyed `name{label="value",...}` (labels sorted); a
// histogram gives name_count and name_sum.
func scrapeMetrics(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	code, body := adminGet(t, admin+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.Metric {
			parts := make([]string, 0, len(m.Label))
			for _, l := range m.Label {
				parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(parts)
			labels := ""
			if len(parts) > 0 {
				labels = "{" + strings.Join(parts, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[name+labels] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[name+labels] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_count"+labels] = float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"+labels] = m.GetHistogram().GetSampleSum()
			default:
				out[name+labels] = m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

// pollMetrics scrapes until cond holds for the samples, and returns them.
func pollMetrics(t *testing.T, admin, what string, cond func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	var m map[string]float64
	if !pollUntil(10*time.Second, func() bool { m = scrapeMetrics(t, admin); return cond(m) }) {
		t.Fatalf("timed out waiting for %s; metrics:\n%v", what, m)
	}
	return m
}

// TestMetricsFollowTraffic scrapes /metrics before and after known work
// and checks that each metric moved as it should.
func TestMetricsFollowTraffic(t *testing.T) {
	t.Parallel()
	s, admin := startWithMetrics(t, "-w", "2")
	if code, body := adminGet(t, admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	// Start returns once the main listener serves, which is after the
	// workers booted: ready.
	if code, body := adminGet(t, admin+"/readyz"); code != 200 {
		t.Errorf("/readyz: %d %q", code, body)
	}
	before := scrapeMetrics(t, admin)
	if before["taipan_workers_started_total"] != 2 || before[`taipan_workers{pool="main",state="idle"}`] != 2 || before["taipan_ready"] != 1 {
		t.Errorf("at start: started %v, idle %v, ready %v", before["taipan_workers_started_total"],
			before[`taipan_workers{pool="main",state="idle"}`], before["taipan_ready"])
	}

	// Known work: 7 GET 200, 3 GET 404, 2 POST with a 1000-byte body.
	bytesOut := 0
	for range 7 {
		_, body := httpGet(t, s, "/status?code=200")
		bytesOut += len(body)
	}
	for range 3 {
		_, body := httpGet(t, s, "/status?code=404")
		bytesOut += len(body)
	}
	for range 2 {
		resp, body := httpDo(t, "POST", s.URL+"/echo?format=sha", strings.NewReader(strings.Repeat("x", 1000)), nil)
		if resp.StatusCode != 200 {
			t.Fatalf("POST /echo: %d", resp.StatusCode)
		}
		bytesOut += len(body)
	}
	after := scrapeMetrics(t, admin)
	delta := func(key string) float64 { return after[key] - before[key] }
	for key, want := range map[string]float64{
		`taipan_http_requests_total{method="GET",status="200"}`:  7,
		`taipan_http_requests_total{method="GET",status="404"}`:  3,
		`taipan_http_requests_total{method="POST",status="200"}`: 2,
		`taipan_http_request_duration_seconds_count`:             12,
		`taipan_queue_wait_seconds_count`:                        12,
		`taipan_http_request_body_bytes_total`:                   2000,
		`taipan_http_response_body_bytes_total`:                  float64(bytesOut),
		`taipan_worker_requests_sent_total{pool="main"}`:         12,
	} {
		if got := delta(key); got != want {
			t.Errorf("%s moved by %v, want %v", key, got, want)
		}
	}
	if d := delta("taipan_http_request_duration_seconds_sum"); d <= 0 || d > 12*5 {
		t.Errorf("latency sum moved by %v", d)
	}

	// RSS is reported for every live worker, and status.json agrees.
	var st statusDoc
	code, body := adminGet(t, admin+"/status.json")
	if code != 200 || jsonUnmarshal(body, &st) != nil {
		t.Fatalf("/status.json: %d %s", code, body)
	}
	if len(st.Workers) != 2 || !st.Ready || st.Draining || st.RequestsTotal < 12 || st.WindowSeconds != 10 || st.RequestsPerSecond <= 0 || st.Latency.P50 == nil {
		t.Errorf("status.json: %s", body)
	}
	served := 0
	for _, w := range st.Workers {
		served += w.RequestsServed
		rss := after[fmt.Sprintf(`taipan_worker_rss_bytes{pool="main",worker="%d"}`, w.ID)]
		if rss < 1<<20 || w.RSSBytes == nil || *w.RSSBytes < 1<<20 || w.Pool != "main" || w.State != "idle" {
			t.Errorf("worker %d: metric RSS %v, status %+v", w.ID, rss, w)
		}
	}
	if served != 12 {
		t.Errorf("workers served %d requests, want 12", served)
	}

	// A worker that dies is counted as a crash, and its replacement as
	// started.
	if code, _ := httpGet(t, s, "/die"); code != 502 {
		t.Errorf("/die: %d, want 502", code)
	}
	pollMetrics(t, admin, "the crash and the replacement", func(m map[string]float64) bool {
		return m[`taipan_worker_restarts_total{reason="crash"}`]-before[`taipan_worker_restarts_total{reason="crash"}`] == 1 &&
			m["taipan_workers_started_total"] == 3 && m[`taipan_workers{pool="main",state="idle"}`] == 2
	})
	if m := scrapeMetrics(t, admin); m[`taipan_http_requests_total{method="GET",status="502"}`] != 1 {
		t.Errorf("the 502 was not counted")
	}

	// More slow requests than workers: two run, two wait in the queue.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := timeoutClient(testTimeout).Get(s.URL + "/sleep?ms=1500")
			if err != nil {
				t.Errorf("slow request: %v", err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	busy := pollMetrics(t, admin, "two busy workers and a queue", func(m map[string]float64) bool {
		return m[`taipan_queue_depth{pool="main"}`] >= 1 && m[`taipan_workers{pool="main",state="busy"}`] == 2
	})
	if busy[`taipan_requests_in_flight{pool="main"}`] < 2 || busy[`taipan_workers{pool="main",state="idle"}`] != 0 {
		t.Errorf("while busy: in flight %v, idle %v", busy[`taipan_requests_in_flight{pool="main"}`], busy[`taipan_workers{pool="main",state="idle"}`])
	}
	code, body = adminGet(t, admin+"/status.json")
	if code != 200 || jsonUnmarshal(body, &st) != nil {
		t.Fatalf("/status.json: %d %s", code, body)
	}
	if st.QueueDepth < 1 || st.InFlight < 2 {
		t.Errorf("status.json while busy: queue %d in flight %d", st.QueueDepth, st.InFlight)
	}
	for _, w := range st.Workers {
		if w.State != "busy" || w.Running != 1 || len(w.Requests) != 1 || w.Requests[0].Line != "GET /sleep?ms=1500" || w.Requests[0].AgeSeconds > 2 {
			t.Errorf("busy worker in status.json: %+v", w)
		}
	}
	waitedBefore := busy["taipan_queue_wait_seconds_sum"]
	wg.Wait()
	m := scrapeMetrics(t, admin)
	// The two that queued waited about 1.5 s each for a worker.
	if waited := m["taipan_queue_wait_seconds_sum"] - waitedBefore; waited < 2 {
		t.Errorf("queue wait grew by %.2fs, want about 3s", waited)
	}
	if m[`taipan_queue_depth{pool="main"}`] != 0 {
		t.Errorf("queue depth %v after the work", m[`taipan_queue_depth{pool="main"}`])
	}

	// A client holding a keep-alive connection is counted while it holds it.
	pollMetrics(t, admin, "no connections", func(m map[string]float64) bool { return m["taipan_http_connections"] == 0 })
	c := dialRaw(t, s.Addr)
	fmt.Fprintf(c, "GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := ReadResponse(t, bufio.NewReader(c), "GET"); resp.StatusCode != 200 {
		t.Fatalf("keep-alive GET: %d", resp.StatusCode)
	}
	if m := scrapeMetrics(t, admin); m["taipan_http_connections"] != 1 {
		t.Errorf("connections open while a client holds one: %v", m["taipan_http_connections"])
	}
	c.Close()
	pollMetrics(t, admin, "the connection to close", func(m map[string]float64) bool { return m["taipan_http_connections"] == 0 })

	// A reload replaces both workers, with reason reload.
	s.Signal(syscall.SIGHUP)
	pollMetrics(t, admin, "the reload", func(m map[string]float64) bool {
		return m[`taipan_reloads_total{result="success"}`] == 1 && m[`taipan_worker_restarts_total{reason="reload"}`] == 2
	})
}

// TestReadyzDuringDrain: from SIGTERM on, /readyz answers 503 while the
// main listener still finishes the request in flight; /healthz stays 200
// through the drain, and taipan exits 0.
func TestReadyzDuringDrain(t *testing.T) {
	t.Parallel()
	s, admin := startWithMetrics(t, "-w", "1", "--graceful-timeout", "10")
	if code, body := adminGet(t, admin+"/readyz"); code != 200 || body != "ok\n" {
		t.Fatalf("/readyz before the drain: %d %q", code, body)
	}
	type result struct {
		code int
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := timeoutClient(testTimeout).Get(s.URL + "/sleep?ms=2000")
		if err != nil {
			slow <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- result{code: resp.StatusCode, body: string(b), err: err}
	}()
	pollMetrics(t, admin, "the slow request to run", func(m map[string]float64) bool {
		return m[`taipan_workers{pool="main",state="busy"}`] == 1
	})
	s.Signal(syscall.SIGTERM)
	var code int
	var body string
	if !pollUntil(2*time.Second, func() bool { code, body = adminGet(t, admin+"/readyz"); return code == 503 }) {
		t.Fatalf("/readyz after SIGTERM: %d %q, want 503", code, body)
	}
	select {
	case r := <-slow:
		t.Fatalf("the slow request ended (%+v) before /readyz turned 503", r)
	default:
	}
	if !strings.Contains(body, "draining") {
		t.Errorf("/readyz body %q, want the reason", body)
	}
	if code, _ := adminGet(t, admin+"/healthz"); code != 200 {
		t.Errorf("/healthz during the drain: %d, want 200", code)
	}
	if m := scrapeMetrics(t, admin); m["taipan_ready"] != 0 {
		t.Errorf("taipan_ready %v during the drain", m["taipan_ready"])
	}
	var st statusDoc
	if code, body := adminGet(t, admin+"/status.json"); code != 200 || jsonUnmarshal(body, &st) != nil || !st.Draining || st.Ready {
		t.Errorf("/status.json during the drain: %d %s", code, body)
	}
	r := <-slow
	if r.err != nil || r.code != 200 || !strings.HasPrefix(r.body, "slept 2000 ms") {
		t.Errorf("the request in flight: %+v, want 200", r)
	}
	if code := s.Wait(15 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0\n%s", code, s.Stderr())
	}
	// The admin listener closed last, with the process.
	if _, err := http.Get(admin + "/healthz"); err == nil {
		t.Error("the admin listener outlived taipan")
	}
}

// TestMetricsBindErrors: a bad or taken --metrics-bind stops taipan before
// any worker starts, with a message naming the flag.
func TestMetricsBindErrors(t *testing.T) {
	t.Parallel()
	// A malformed address is bad configuration (exit 2, as every bad
	// setting); a taken one fails at start (exit 1).
	for addr, want := range map[string]int{"nonsense": 2, takenAddr(t): 1} {
		bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		code, out := runTaipan(t, 20*time.Second, "--python", pythonPath(), "-b", bind, "--metrics-bind", addr)
		if code != want || !strings.Contains(out, "--metrics-bind") || strings.Contains(out, "Booted worker") {
			t.Errorf("--metrics-bind %s: exit %d, want %d\n%s", addr, code, want, out)
		}
	}
}

// takenAddr returns a loopback address something listens on for as long
// as the test runs.
func takenAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}
