// Package metrics is taipan's admin side: Prometheus metrics, health and
// readiness checks, and a JSON snapshot of the workers for status pages,
// served on a listener of their own (--metrics-bind).
//
// A Recorder counts what happens as it happens: answered requests, from the
// access-record stream the edge produces (Observe), and pool events such as
// a worker crashing (PoolHooks). A Server reads the rest at scrape time
// from the pools' snapshots and the edge's connection count, so state that
// changes on every request (queue depth, busy workers) costs nothing until
// somebody looks.
package metrics

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"taipan/internal/edge"
	"taipan/internal/pool"
)

// namespace prefixes taipan's own metric names.
const namespace = "taipan"

// numMethods is how many method label values there are (see method).
const numMethods = 10

// method maps a request method to its label value and an index below
// numMethods. The standard methods have values of their own; any other
// (or none, for a request rejected while parsing) is "other", so that
// clients cannot grow the number of series. The value is a literal, never
// m itself, which points into a connection's reused buffer.
func method(m string) (int, string) {
	switch m {
	case "GET":
		return 0, "GET"
	case "HEAD":
		return 1, "HEAD"
	case "POST":
		return 2, "POST"
	case "PUT":
		return 3, "PUT"
	case "DELETE":
		return 4, "DELETE"
	case "PATCH":
		return 5, "PATCH"
	case "OPTIONS":
		return 6, "OPTIONS"
	case "CONNECT":
		return 7, "CONNECT"
	case "TRACE":
		return 8, "TRACE"
	}
	return numMethods - 1, "other"
}

// Status codes 100..599 have counters of their own; anything else an app
// might send is counted under "other".
const (
	minStatus = 100
	maxStatus = 599
)

// Recorder counts answered requests and pool events into a Prometheus
// registry of its own, which also holds the Go runtime and process
// collectors. Its methods are safe for concurrent use.
type Recorder struct {
	reg   *prometheus.Registry
	start time.Time

	requests *prometheus.CounterVec // method, status
	// counters caches requests' children, so that counting a request
	// neither hashes label values nor allocates: a child is looked up once
	// per method and status, then kept here.
	counters  [numMethods][maxStatus - minStatus + 1]atomic.Pointer[prometheus.Counter]
	answered  atomic.Uint64 // requests observed, for status.json
	latency   prometheus.Histogram
	bytesIn   prometheus.Counter
	bytesOut  prometheus.Counter
	window    *window
	queueWait prometheus.Histogram

	restarts     *prometheus.CounterVec // reason
	started      prometheus.Counter
	bootFailures prometheus.Counter
	reloads      *prometheus.CounterVec // result
}

// NewRecorder returns a Recorder with every metric at zero.
//
// Histogram buckets are in seconds. A request takes from about a
// millisecond (a static file, a cached page) to a minute (a report, the
// longest --timeout most deployments allow); a wait in the queue is usually
// far shorter than a request, so its buckets start lower.
func NewRecorder() *Recorder {
	r := &Recorder{
		reg:    prometheus.NewRegistry(),
		start:  time.Now(),
		window: newWindow(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests answered, by method and status code.",
		}, []string{"method", "status"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Time from the start of a request to the end of its response.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_request_body_bytes_total",
			Help: "Request body bytes received.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_response_body_bytes_total",
			Help: "Response body bytes sent.",
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "queue_wait_seconds",
			Help:    "Time a request waited in taipan's queue before a worker took it.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "worker_restarts_total",
			Help: "Workers that exited while taipan kept running, by reason.",
		}, []string{"reason"}),
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "workers_started_total",
			Help: "Workers booted and put to work.",
		}),
		bootFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "worker_boot_failures_total",
			Help: "Replacement or added workers that failed to boot (each is retried).",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "reloads_total",
			Help: "Reloads (SIGHUP, --reload), by result: success, or failure when the new code did not load.",
		}, []string{"result"}),
	}
	// Series that are known in advance start at zero, so that rate() and
	// increase() see their first event instead of their appearance.
	for _, reason := range []pool.StopReason{pool.StopCrash, pool.StopTimeout, pool.StopHeartbeat,
		pool.StopMaxRequests, pool.StopMaxRSS, pool.StopReload, pool.StopScaleDown} {
		r.restarts.WithLabelValues(string(reason))
	}
	r.reloads.WithLabelValues("success")
	r.reloads.WithLabelValues("failure")
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.requests, r.latency, r.bytesIn, r.bytesOut, r.queueWait,
		r.restarts, r.started, r.bootFailures, r.reloads,
	)
	return r
}

// register adds a collector to the registry.
func (r *Recorder) register(c prometheus.Collector) error {
	if err := r.reg.Register(c); err != nil {
		return fmt.Errorf("metrics: registering collectors: %w", err)
	}
	return nil
}

// Observe counts one answered request. It suits edge.Config.AccessLog
// (through a fan-out when there is an access log too) and is called on
// every request, so it does not allocate: it reads the record and keeps
// nothing of it.
func (r *Recorder) Observe(rec *edge.AccessRecord) {
	r.counter(rec.Method, rec.Status).Inc()
	r.answered.Add(1)
	r.latency.Observe(rec.Duration.Seconds())
	if rec.RequestBytes > 0 {
		r.bytesIn.Add(float64(rec.RequestBytes))
	}
	if rec.BodyBytes > 0 {
		r.bytesOut.Add(float64(rec.BodyBytes))
	}
	r.window.observe(rec.Start.Add(rec.Duration), rec.Duration)
}

// counter returns the requests counter for method and status.
func (r *Recorder) counter(m string, status int) prometheus.Counter {
	i, label := method(m)
	if status < minStatus || status > maxStatus {
		return r.requests.WithLabelValues(label, "other")
	}
	slot := &r.counters[i][status-minStatus]
	if c := slot.Load(); c != nil {
		return *c
	}
	c := r.requests.WithLabelValues(label, statusLabel(status))
	slot.Store(&c) // a racing Store keeps an equal child: the vector returns the same one
	return c
}

// statusLabel formats a status code; it runs once per code.
func statusLabel(code int) string { return strconv.Itoa(code) }

// PoolHooks returns the hooks through which a pool reports its events to
// the Recorder; give them to every pool (pool.Config.Hooks).
func (r *Recorder) PoolHooks() pool.Hooks {
	return pool.Hooks{
		Dispatched: func(wait time.Duration) { r.queueWait.Observe(wait.Seconds()) },
		WorkerStarted: func(id, pid int) {
			r.started.Inc()
		},
		WorkerStopped: func(id, pid int, reason pool.StopReason) {
			if reason != pool.StopShutdown { // leaving with taipan is no restart
				r.restarts.WithLabelValues(string(reason)).Inc()
			}
		},
		BootFailed: func(error) { r.bootFailures.Inc() },
		Reloaded: func(err error) {
			if err != nil {
				r.reloads.WithLabelValues("failure").Inc()
				return
			}
			r.reloads.WithLabelValues("success").Inc()
		},
	}
}

// Traffic is a summary of the requests answered over the last few
// seconds.
type Traffic struct {
	Window   time.Duration // how far back it looks
	Requests uint64        // requests answered in the window
	Rate     float64       // requests per second over the window
	// P50, P90 and P99 are latency percentiles over the window, within
	// about 10%; zero when no request was answered in it.
	P50, P90, P99 time.Duration
}

// Traffic summarizes the requests answered over the last WindowSeconds
// seconds, as of now.
func (r *Recorder) Traffic(now time.Time) Traffic { return r.window.summary(now, r.start) }

// Answered is how many requests have been answered since the Recorder was
// made.
func (r *Recorder) Answered() uint64 { return r.answered.Load() }
