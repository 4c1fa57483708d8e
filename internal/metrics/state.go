package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"taipan/internal/pool"
)

// Pool names a worker pool to report on.
type Pool struct {
	Name string // "main", or the path prefix of a --lane
	Pool Snapshotter
}

// Snapshotter is what the Server needs of a pool; *pool.Pool has it.
type Snapshotter interface {
	Snapshot() pool.Snapshot
}

// ConnCounter is what the Server needs of a front end: how many client
// connections it has open. *edge.Server has it.
type ConnCounter interface {
	ConnCount() int
}

// stateCollector reads what is cheaper to look at than to count, at
// scrape time: each pool's snapshot, each worker's memory, the open
// connections, readiness.
type stateCollector struct {
	pools []Pool
	conns ConnCounter // nil: not reported
	ready func() bool
	rss   func(pid int) (int64, error)

	queueDepth, workers, desired, inFlight *prometheus.Desc
	batches, sent, workerRSS               *prometheus.Desc
	connections, readyDesc                 *prometheus.Desc
}

func newStateCollector(pools []Pool, conns ConnCounter, ready func() bool, rss func(pid int) (int64, error)) *stateCollector {
	name := func(n string) string { return prometheus.BuildFQName(namespace, "", n) }
	return &stateCollector{
		pools: pools,
		conns: conns,
		ready: ready,
		rss:   rss,
		queueDepth: prometheus.NewDesc(name("queue_depth"),
			"Requests waiting in taipan's queue for a worker.", []string{"pool"}, nil),
		workers: prometheus.NewDesc(name("workers"),
			"Live workers by state: idle, busy (running a request), retiring (finishing before it exits).", []string{"pool", "state"}, nil),
		desired: prometheus.NewDesc(name("workers_desired"),
			"Workers the pool wants in its current generation (-w, TTIN/TTOU, autoscaling).", []string{"pool"}, nil),
		inFlight: prometheus.NewDesc(name("requests_in_flight"),
			"Requests sent to workers and not finished: running, or waiting their turn in a worker's batch.", []string{"pool"}, nil),
		batches: prometheus.NewDesc(name("worker_batches_total"),
			"Writes of requests to workers; requests_sent_total divided by this is the mean batch size.", []string{"pool"}, nil),
		sent: prometheus.NewDesc(name("worker_requests_sent_total"),
			"Requests written to workers.", []string{"pool"}, nil),
		workerRSS: prometheus.NewDesc(name("worker_rss_bytes"),
			"Resident memory of each worker process, read from /proc at scrape time.", []string{"pool", "worker"}, nil),
		connections: prometheus.NewDesc(name("http_connections"),
			"Client connections open on the HTTP listeners, idle keep-alive ones included.", nil, nil),
		readyDesc: prometheus.NewDesc(name("ready"),
			"1 while /readyz answers 200: workers are ready and taipan is not draining.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.queueDepth, c.workers, c.desired, c.inFlight,
		c.batches, c.sent, c.workerRSS, c.connections, c.readyDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	// Every state is reported on every scrape, zero or not, so that a
	// state that empties shows 0 instead of vanishing.
	workerStates := [...]pool.WorkerState{pool.WorkerIdle, pool.WorkerBusy, pool.WorkerRetiring}
	for _, p := range c.pools {
		s := p.Pool.Snapshot()
		var states [len(workerStates)]int
		inFlight := 0
		for _, w := range s.Workers {
			for i, st := range workerStates {
				if w.State == st {
					states[i]++
				}
			}
			inFlight += w.InFlight
			if rss, err := c.rss(w.Pid); err == nil {
				gauge(c.workerRSS, float64(rss), p.Name, strconv.Itoa(w.ID))
			}
		}
		gauge(c.queueDepth, float64(s.Queued), p.Name)
		for i, st := range workerStates {
			gauge(c.workers, float64(states[i]), p.Name, string(st))
		}
		gauge(c.desired, float64(s.Size), p.Name)
		gauge(c.inFlight, float64(inFlight), p.Name)
		ch <- prometheus.MustNewConstMetric(c.batches, prometheus.CounterValue, float64(s.Batches), p.Name)
		ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(s.Sent), p.Name)
	}
	if c.conns != nil {
		gauge(c.connections, float64(c.conns.ConnCount()))
	}
	ready := 0.0
	if c.ready() {
		ready = 1
	}
	gauge(c.readyDesc, ready)
}

// readRSS reads the resident set size of process pid from /proc.
func readRSS(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	// statm is "size resident shared text lib data dt", in pages.
	fields := bytes.Fields(data)
	if len(fields) < 2 {
		return 0, errors.New("short /proc/" + strconv.Itoa(pid) + "/statm")
	}
	pages, err := strconv.ParseInt(string(fields[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/statm: %w", pid, err)
	}
	return pages * int64(os.Getpagesize()), nil
}
