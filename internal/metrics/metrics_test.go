package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"taipan/internal/edge"
	"taipan/internal/pool"
)

// fakePool is a Snapshotter that returns a fixed snapshot.
type fakePool struct{ snap pool.Snapshot }

func (f *fakePool) Snapshot() pool.Snapshot { return f.snap }

// fakeConns is a ConnCounter with a fixed count.
type fakeConns int

func (c fakeConns) ConnCount() int { return int(c) }

// newTestServer returns a Server over rec reporting on pools, with RSS
// read from rss instead of /proc.
func newTestServer(t *testing.T, rec *Recorder, conns ConnCounter, rss map[int]int64, pools ...Pool) *Server {
	t.Helper()
	s, err := NewServer(Config{Recorder: rec, Pools: pools, Conns: conns, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	fake := func(pid int) (int64, error) {
		if v, ok := rss[pid]; ok {
			return v, nil
		}
		return 0, errors.New("no such process")
	}
	s.rss = fake
	return s
}

// scrape fetches /metrics from h and returns every sample as
// `name{label="value",...}` (labels sorted) → value; a histogram gives
// its _count and _sum.
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	if rr.Code != 200 {
		t.Fatalf("/metrics: %d %s", rr.Code, rr.Body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rr.Body)
	if err != nil {
		t.Fatalf("/metrics is not valid text format: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.Metric {
			key := sampleKey(name, m.Label)
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[sampleKey(name+"_count", m.Label)] = float64(m.GetHistogram().GetSampleCount())
				out[sampleKey(name+"_sum", m.Label)] = m.GetHistogram().GetSampleSum()
			default:
				out[key] = m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

func sampleKey(name string, labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return name
	}
	parts := make([]string, len(labels))
	for i, l := range labels {
		parts[i] = fmt.Sprintf("%s=%q", l.GetName(), l.GetValue())
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

func wantSample(t *testing.T, got map[string]float64, key string, want float64) {
	t.Helper()
	v, ok := got[key]
	if !ok {
		t.Errorf("no sample %s", key)
		return
	}
	if v != want {
		t.Errorf("%s = %v, want %v", key, v, want)
	}
}

func record(method string, status int, d time.Duration, in, out int64) *edge.AccessRecord {
	return &edge.AccessRecord{Method: method, Status: status, Start: time.Now().Add(-d), Duration: d, RequestBytes: in, BodyBytes: out}
}

func TestObserveCountsRequests(t *testing.T) {
	rec := NewRecorder()
	s := newTestServer(t, rec, nil, nil)
	for range 3 {
		rec.Observe(record("GET", 200, 2*time.Millisecond, 0, 100))
	}
	rec.Observe(record("POST", 201, 30*time.Millisecond, 500, 10))
	rec.Observe(record("BREW", 418, time.Millisecond, 0, 0)) // a method of the client's invention
	rec.Observe(record("", 400, 0, 0, 20))                   // rejected while parsing
	rec.Observe(record("GET", 999, 0, 0, 0))                 // a status no RFC defines
	got := scrape(t, s.Handler())
	wantSample(t, got, `taipan_http_requests_total{method="GET",status="200"}`, 3)
	wantSample(t, got, `taipan_http_requests_total{method="POST",status="201"}`, 1)
	wantSample(t, got, `taipan_http_requests_total{method="other",status="418"}`, 1)
	wantSample(t, got, `taipan_http_requests_total{method="other",status="400"}`, 1)
	wantSample(t, got, `taipan_http_requests_total{method="GET",status="other"}`, 1)
	wantSample(t, got, `taipan_http_request_duration_seconds_count`, 7)
	wantSample(t, got, `taipan_http_request_body_bytes_total`, 500)
	wantSample(t, got, `taipan_http_response_body_bytes_total`, 330)
	if sum := got["taipan_http_request_duration_seconds_sum"]; sum < 0.035 || sum > 0.037 {
		t.Errorf("duration sum %v, want 0.036", sum)
	}
	if rec.Answered() != 7 {
		t.Errorf("Answered() = %d, want 7", rec.Answered())
	}
	// The Go and process collectors are in the same registry.
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("no go_goroutines")
	}
	if _, ok := got["process_resident_memory_bytes"]; !ok {
		t.Error("no process_resident_memory_bytes")
	}
}

// TestObserveDoesNotAllocate guards the per-request cost: once a method and
// status have been seen, counting another request allocates nothing.
func TestObserveDoesNotAllocate(t *testing.T) {
	rec := NewRecorder()
	r := record("GET", 200, 3*time.Millisecond, 10, 1000)
	rec.Observe(r)
	if n := testing.AllocsPerRun(1000, func() { rec.Observe(r) }); n != 0 {
		t.Errorf("Observe allocates %v times per request", n)
	}
}

func BenchmarkObserve(b *testing.B) {
	rec := NewRecorder()
	r := record("GET", 200, 3*time.Millisecond, 10, 1000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec.Observe(r)
		}
	})
}

// BenchmarkAccessLogOnly is the access log writer alone, for comparison:
// the cost the edge already pays per request when --access-logfile is on.
func BenchmarkAccessLogOnly(b *testing.B) {
	w := edge.NewAccessLogWriter(io.Discard, time.Second)
	defer w.Close()
	r := record("GET", 200, 3*time.Millisecond, 10, 1000)
	r.RequestLine, r.RemoteAddr = "GET / HTTP/1.1", "127.0.0.1"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Log(r)
		}
	})
}

func TestPoolHooks(t *testing.T) {
	rec := NewRecorder()
	s := newTestServer(t, rec, nil, nil)
	h := rec.PoolHooks()
	h.WorkerStarted(1, 100)
	h.WorkerStarted(2, 101)
	h.WorkerStopped(1, 100, pool.StopCrash)
	h.WorkerStopped(2, 101, pool.StopTimeout)
	h.WorkerStopped(3, 102, pool.StopMaxRequests)
	h.WorkerStopped(4, 103, pool.StopShutdown) // not a restart
	h.BootFailed(errors.New("ImportError"))
	h.Reloaded(nil)
	h.Reloaded(errors.New("SyntaxError"))
	h.Dispatched(2 * time.Millisecond)
	h.Dispatched(0)
	got := scrape(t, s.Handler())
	wantSample(t, got, `taipan_workers_started_total`, 2)
	wantSample(t, got, `taipan_worker_restarts_total{reason="crash"}`, 1)
	wantSample(t, got, `taipan_worker_restarts_total{reason="timeout"}`, 1)
	wantSample(t, got, `taipan_worker_restarts_total{reason="max-requests"}`, 1)
	wantSample(t, got, `taipan_worker_restarts_total{reason="heartbeat"}`, 0) // present before it happens
	if _, ok := got[`taipan_worker_restarts_total{reason="shutdown"}`]; ok {
		t.Error("a worker stopped by the shutdown counted as a restart")
	}
	wantSample(t, got, `taipan_worker_boot_failures_total`, 1)
	wantSample(t, got, `taipan_reloads_total{result="success"}`, 1)
	wantSample(t, got, `taipan_reloads_total{result="failure"}`, 1)
	wantSample(t, got, `taipan_queue_wait_seconds_count`, 2)
	wantSample(t, got, `taipan_queue_wait_seconds_sum`, 0.002)
}

// snapshotFixture is a pool of three workers: one idle, one running a
// request, one retiring.
func snapshotFixture(now time.Time) pool.Snapshot {
	return pool.Snapshot{
		Time: now, Gen: 1, Size: 2, Queued: 4, Batches: 10, Sent: 25,
		Workers: []pool.WorkerSnapshot{
			{ID: 3, Pid: 300, Gen: 1, State: pool.WorkerIdle, Interface: "wsgi", Started: now.Add(-time.Minute), Served: 7, Slots: 1},
			{ID: 4, Pid: 400, Gen: 1, State: pool.WorkerBusy, Interface: "wsgi", Started: now.Add(-time.Minute), Served: 9, Slots: 1, InFlight: 3,
				Running: []pool.RequestSnapshot{{Method: "GET", Target: "/report?y=2025", Started: now.Add(-1500 * time.Millisecond)}}},
			{ID: 1, Pid: 100, Gen: 0, State: pool.WorkerRetiring, Interface: "wsgi", Started: now.Add(-time.Hour), Served: 1000, Slots: 1, InFlight: 1,
				Running: []pool.RequestSnapshot{{Method: "POST", Target: "/upload", Started: now.Add(-3 * time.Second)}}},
		},
	}
}

func TestStateMetrics(t *testing.T) {
	rec := NewRecorder()
	main := &fakePool{snap: snapshotFixture(time.Now())}
	lane := &fakePool{snap: pool.Snapshot{Size: 1}} // booting: no worker yet
	s := newTestServer(t, rec, fakeConns(5), map[int]int64{300: 30 << 20, 400: 40 << 20},
		Pool{Name: "main", Pool: main}, Pool{Name: "/reports", Pool: lane})
	got := scrape(t, s.Handler())
	wantSample(t, got, `taipan_queue_depth{pool="main"}`, 4)
	wantSample(t, got, `taipan_queue_depth{pool="/reports"}`, 0)
	wantSample(t, got, `taipan_workers{pool="main",state="idle"}`, 1)
	wantSample(t, got, `taipan_workers{pool="main",state="busy"}`, 1)
	wantSample(t, got, `taipan_workers{pool="main",state="retiring"}`, 1)
	wantSample(t, got, `taipan_workers{pool="/reports",state="idle"}`, 0)
	wantSample(t, got, `taipan_workers_desired{pool="main"}`, 2)
	wantSample(t, got, `taipan_requests_in_flight{pool="main"}`, 4)
	wantSample(t, got, `taipan_worker_batches_total{pool="main"}`, 10)
	wantSample(t, got, `taipan_worker_requests_sent_total{pool="main"}`, 25)
	wantSample(t, got, `taipan_worker_rss_bytes{pool="main",worker="3"}`, 30<<20)
	wantSample(t, got, `taipan_worker_rss_bytes{pool="main",worker="4"}`, 40<<20)
	if _, ok := got[`taipan_worker_rss_bytes{pool="main",worker="1"}`]; ok {
		t.Error("RSS reported for a worker whose /proc entry cannot be read")
	}
	wantSample(t, got, `taipan_http_connections`, 5)
	wantSample(t, got, `taipan_ready`, 0) // the lane has no worker yet

	lane.snap = pool.Snapshot{Size: 1, Workers: []pool.WorkerSnapshot{{ID: 1001, Pid: 1001, State: pool.WorkerIdle}}}
	wantSample(t, scrape(t, s.Handler()), `taipan_ready`, 1)
}

// get answers path from h and returns the status and body.
func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest("GET", path, nil))
	return rr.Code, rr.Body.String()
}

func TestHealthAndReadiness(t *testing.T) {
	p := &fakePool{snap: pool.Snapshot{Size: 1}}
	s := newTestServer(t, NewRecorder(), nil, nil, Pool{Name: "main", Pool: p})
	h := s.Handler()
	check := func(path string, wantCode int, wantBody string) {
		t.Helper()
		code, body := get(t, h, path)
		if code != wantCode || !strings.Contains(body, wantBody) {
			t.Errorf("%s: %d %q, want %d %q", path, code, body, wantCode, wantBody)
		}
	}
	// Booting: alive, not ready.
	check("/healthz", 200, "ok")
	check("/readyz", 503, "no worker ready")

	p.snap.Workers = []pool.WorkerSnapshot{{ID: 1, Pid: 10, State: pool.WorkerIdle}}
	check("/readyz", 200, "ok")

	// A reload in progress: the old generation still serves until the
	// new one takes over, so readiness holds.
	p.snap.Gen = 1
	p.snap.Workers = []pool.WorkerSnapshot{{ID: 1, Pid: 10, State: pool.WorkerRetiring}}
	check("/readyz", 503, "no worker ready") // only retiring workers left
	p.snap.Workers = append(p.snap.Workers, pool.WorkerSnapshot{ID: 2, Pid: 11, Gen: 1, State: pool.WorkerBusy})
	check("/readyz", 200, "ok")

	s.Drain()
	check("/readyz", 503, "draining")
	check("/healthz", 200, "ok") // draining is still alive

	p.snap.Closed = true
	check("/healthz", 503, "stopped")
	check("/", 200, "/status.json")
	if code, _ := get(t, h, "/nope"); code != 404 {
		t.Errorf("/nope: %d, want 404", code)
	}
}

func TestStatusJSON(t *testing.T) {
	rec := NewRecorder()
	now := time.Now()
	for i := range 100 {
		rec.Observe(&edge.AccessRecord{Method: "GET", Status: 200, Start: now.Add(-time.Second), Duration: time.Duration(i+1) * time.Millisecond})
	}
	snap := snapshotFixture(now)
	// A busy ASGI worker: more requests than the status lists.
	asgi := pool.WorkerSnapshot{ID: 5, Pid: 500, Gen: 1, State: pool.WorkerBusy, Interface: "asgi", Started: now, Slots: 1000, InFlight: 40}
	for i := range 40 {
		asgi.Running = append(asgi.Running, pool.RequestSnapshot{Method: "GET", Target: fmt.Sprintf("/ws/%d", i), Started: now.Add(-time.Duration(40-i) * time.Second)})
	}
	snap.Workers = append(snap.Workers, asgi)
	s := newTestServer(t, rec, fakeConns(2), map[int]int64{400: 1234}, Pool{Name: "main", Pool: &fakePool{snap: snap}})

	code, body := get(t, s.Handler(), "/status.json")
	if code != 200 {
		t.Fatalf("/status.json: %d %s", code, body)
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, body)
	}
	if st.Version != "test" || st.Pid != os.Getpid() || !st.Ready || st.Draining || st.Connections != 2 {
		t.Errorf("header fields: %+v", st)
	}
	if st.RequestsTotal != 100 || st.WindowSeconds != WindowSeconds || st.RequestsPerSecond <= 0 {
		t.Errorf("traffic: total %d window %d rate %v", st.RequestsTotal, st.WindowSeconds, st.RequestsPerSecond)
	}
	// Latencies are 1..100 ms: p50 ≈ 50 ms, p90 ≈ 90 ms, p99 ≈ 99 ms, within 10%.
	for _, c := range []struct {
		name string
		got  *float64
		want float64
	}{{"p50", st.Latency.P50, 0.050}, {"p90", st.Latency.P90, 0.090}, {"p99", st.Latency.P99, 0.099}} {
		if c.got == nil || *c.got < c.want*0.9 || *c.got > c.want*1.1 {
			t.Errorf("latency %s = %v, want about %v", c.name, c.got, c.want)
		}
	}
	if st.QueueDepth != 4 || st.InFlight != 44 || len(st.Pools) != 1 || st.Pools[0].Workers != 4 || st.Pools[0].Generation != 1 {
		t.Errorf("pool summary: queue %d in flight %d pools %+v", st.QueueDepth, st.InFlight, st.Pools)
	}
	if len(st.Workers) != 4 {
		t.Fatalf("%d workers, want 4", len(st.Workers))
	}
	busy := st.Workers[1]
	if busy.ID != 4 || busy.State != "busy" || busy.Pool != "main" || busy.RequestsServed != 9 || busy.InFlight != 3 || busy.Running != 1 {
		t.Errorf("busy worker: %+v", busy)
	}
	if busy.RSSBytes == nil || *busy.RSSBytes != 1234 {
		t.Errorf("busy worker RSS %v, want 1234", busy.RSSBytes)
	}
	if len(busy.Requests) != 1 || busy.Requests[0].Line != "GET /report?y=2025" || busy.Requests[0].AgeSeconds < 1.5 || busy.Requests[0].AgeSeconds > 2 {
		t.Errorf("busy worker requests: %+v", busy.Requests)
	}
	idle := st.Workers[0]
	if idle.State != "idle" || idle.RSSBytes != nil || idle.Requests == nil || len(idle.Requests) != 0 || idle.UptimeSeconds < 60 || idle.UptimeSeconds > 61 {
		t.Errorf("idle worker: %+v", idle)
	}
	if !strings.Contains(body, `"requests": []`) || !strings.Contains(body, `"rss_bytes": null`) {
		t.Errorf("empty lists must be [] and unknown RSS null:\n%s", body)
	}
	a := st.Workers[3]
	if a.Running != 40 || len(a.Requests) != maxListedRequests || a.Requests[0].Line != "GET /ws/0" {
		t.Errorf("asgi worker: running %d, listed %d, first %+v", a.Running, len(a.Requests), a.Requests[0])
	}

	// No traffic in the window: percentiles are null, not zero.
	code, body = get(t, newTestServer(t, NewRecorder(), nil, nil).Handler(), "/status.json")
	if code != 200 || !strings.Contains(body, `"p50": null`) || !strings.Contains(body, `"workers": []`) {
		t.Errorf("idle status: %d\n%s", code, body)
	}
}

func TestReadRSS(t *testing.T) {
	rss, err := readRSS(os.Getpid())
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if rss < 1<<20 {
		t.Errorf("our own RSS is %d bytes", rss)
	}
	if _, err := readRSS(1 << 30); err == nil {
		t.Error("RSS of a process that does not exist")
	}
}

func TestServerListenServeShutdown(t *testing.T) {
	p := &fakePool{snap: pool.Snapshot{Workers: []pool.WorkerSnapshot{{ID: 1, Pid: os.Getpid(), State: pool.WorkerIdle}}}}
	s, err := NewServer(Config{Recorder: NewRecorder(), Pools: []Pool{{Name: "main", Pool: p}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen("localhost"); err == nil {
		t.Error("Listen accepted an address without a port")
	}
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	base := "http://" + s.Addr().String()
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/status.json"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still answering after Shutdown")
	}
	if _, err := NewServer(Config{}); err == nil {
		t.Error("NewServer without a Recorder")
	}
}
