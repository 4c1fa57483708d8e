package metrics

import (
	"math"
	"time"
)

// maxListedRequests bounds the requests listed per worker in /status.json:
// an ASGI worker may run a thousand at once, and a status page shows the
// longest-running few.
const maxListedRequests = 16

// Status is the document /status.json serves: the process, its recent
// traffic, and every live worker. docs/operations.md describes each field;
// tools that read it (a status page, taipan top) can decode it into this
// type.
type Status struct {
	Version       string    `json:"version"`
	Pid           int       `json:"pid"`
	Time          time.Time `json:"time"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Ready         bool      `json:"ready"`
	Draining      bool      `json:"draining"`
	Connections   int       `json:"connections"`

	RequestsTotal     uint64        `json:"requests_total"`
	WindowSeconds     int           `json:"window_seconds"`
	RequestsPerSecond float64       `json:"requests_per_second"`
	Latency           LatencyStatus `json:"latency_seconds"`

	QueueDepth int            `json:"queue_depth"`
	InFlight   int            `json:"in_flight"`
	Pools      []PoolStatus   `json:"pools"`
	Workers    []WorkerStatus `json:"workers"`
}

// LatencyStatus holds latency percentiles over the window, in seconds;
// each is null when no request was answered in the window.
type LatencyStatus struct {
	P50 *float64 `json:"p50"`
	P90 *float64 `json:"p90"`
	P99 *float64 `json:"p99"`
}

// PoolStatus is one worker pool: the main one, or a --lane's.
type PoolStatus struct {
	Name       string `json:"name"`
	Generation uint64 `json:"generation"`
	Size       int    `json:"size"`
	Workers    int    `json:"workers"`
	QueueDepth int    `json:"queue_depth"`
	InFlight   int    `json:"in_flight"`
}

// WorkerStatus is one live worker process.
type WorkerStatus struct {
	ID             int       `json:"id"`
	Pid            int       `json:"pid"`
	Pool           string    `json:"pool"`
	Generation     uint64    `json:"generation"`
	State          string    `json:"state"`
	Interface      string    `json:"interface"`
	Started        time.Time `json:"started"`
	UptimeSeconds  float64   `json:"uptime_seconds"`
	RequestsServed int       `json:"requests_served"`
	Slots          int       `json:"slots"`
	InFlight       int       `json:"in_flight"`
	Running        int       `json:"running"`
	RSSBytes       *int64    `json:"rss_bytes"`
	// Requests are the requests it is running, the longest-running first,
	// at most 16 of Running.
	Requests []RequestStatus `json:"requests"`
}

// RequestStatus is a request a worker is running.
type RequestStatus struct {
	Line       string  `json:"line"`
	AgeSeconds float64 `json:"age_seconds"`
}

// status assembles the Status document as of now.
func (s *Server) status(now time.Time) *Status {
	st := &Status{
		Version:       s.cfg.Version,
		Pid:           s.pid,
		Time:          now.UTC(),
		UptimeSeconds: seconds(now.Sub(s.cfg.Recorder.start)),
		Draining:      s.draining.Load(),
		Pools:         []PoolStatus{},
		Workers:       []WorkerStatus{},
	}
	if s.cfg.Conns != nil {
		st.Connections = s.cfg.Conns.ConnCount()
	}
	t := s.cfg.Recorder.Traffic(now)
	st.RequestsTotal = s.cfg.Recorder.Answered()
	st.WindowSeconds = int(t.Window / time.Second)
	st.RequestsPerSecond = math.Round(t.Rate*100) / 100
	if t.Requests > 0 {
		st.Latency = LatencyStatus{P50: secondsPtr(t.P50), P90: secondsPtr(t.P90), P99: secondsPtr(t.P99)}
	}
	ready := len(s.cfg.Pools) > 0
	for _, p := range s.cfg.Pools {
		snap := p.Pool.Snapshot()
		ready = ready && snap.Ready()
		ps := PoolStatus{Name: p.Name, Generation: snap.Gen, Size: snap.Size, Workers: len(snap.Workers), QueueDepth: snap.Queued}
		for _, w := range snap.Workers {
			ws := WorkerStatus{
				ID: w.ID, Pid: w.Pid, Pool: p.Name, Generation: w.Gen, State: string(w.State),
				Interface: w.Interface, Started: w.Started.UTC(), UptimeSeconds: seconds(now.Sub(w.Started)),
				RequestsServed: w.Served, Slots: w.Slots, InFlight: w.InFlight, Running: len(w.Running),
				Requests: make([]RequestStatus, 0, min(len(w.Running), maxListedRequests)),
			}
			if rss, err := s.rss(w.Pid); err == nil {
				ws.RSSBytes = &rss
			}
			for _, r := range w.Running[:min(len(w.Running), maxListedRequests)] {
				ws.Requests = append(ws.Requests, RequestStatus{Line: r.Line(), AgeSeconds: seconds(now.Sub(r.Started))})
			}
			ps.InFlight += w.InFlight
			st.Workers = append(st.Workers, ws)
		}
		st.QueueDepth += ps.QueueDepth
		st.InFlight += ps.InFlight
		st.Pools = append(st.Pools, ps)
	}
	st.Ready = ready && !st.Draining
	return st
}

// seconds is d in seconds, to the millisecond: finer digits are noise in a
// status page.
func seconds(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

// secondsPtr is d in seconds to the microsecond (percentiles are often
// under a millisecond), for a field that may be null.
func secondsPtr(d time.Duration) *float64 {
	v := math.Round(d.Seconds()*1e6) / 1e6
	return &v
}
