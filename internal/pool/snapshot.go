package pool

import (
	"slices"
	"time"
)

// Hooks are called by a pool as things happen in it, so that metrics can
// count events that a snapshot taken now and then would miss (a worker
// that crashed and was replaced between two scrapes). Any of them may be
// nil. They run synchronously on the pool's goroutines, Dispatched once per
// request: they must return quickly and must not call back into the pool.
type Hooks struct {
	// Dispatched is called once per request, when it is first written to
	// a worker, with how long it waited in the pool's queue for one.
	Dispatched func(wait time.Duration)
	// WorkerStarted is called when a booted worker is put to work.
	WorkerStarted func(id, pid int)
	// WorkerStopped is called when a worker that had been put to work has
	// exited, with the reason it went.
	WorkerStopped func(id, pid int, reason StopReason)
	// BootFailed is called when a worker meant to replace or add to the
	// current generation fails to boot (it is retried with a backoff).
	BootFailed func(err error)
	// Reloaded is called when a reload has ended: err is nil when the new
	// generation serves, else why the old one keeps serving.
	Reloaded func(err error)
}

// StopReason says why a worker exited.
type StopReason string

// Reasons a worker exits.
const (
	StopCrash       StopReason = "crash"        // it exited on its own (an exception in the worker, os._exit, the OOM killer, kill -9)
	StopTimeout     StopReason = "timeout"      // killed: a request ran past --timeout
	StopHeartbeat   StopReason = "heartbeat"    // killed: it did not answer a heartbeat within --heartbeat-timeout
	StopMaxRequests StopReason = "max-requests" // recycled after --max-requests
	StopMaxRSS      StopReason = "max-rss"      // recycled: its memory passed --max-rss
	StopReload      StopReason = "reload"       // replaced by a new generation (SIGHUP, --reload)
	StopScaleDown   StopReason = "scale-down"   // retired by SIGTTOU or the autoscaler
	StopShutdown    StopReason = "shutdown"     // the pool closed
)

// WorkerState is what a worker is doing when a Snapshot is taken.
type WorkerState string

// Worker states.
const (
	WorkerIdle     WorkerState = "idle"     // no request sent to it
	WorkerBusy     WorkerState = "busy"     // at least one request sent to it and not finished
	WorkerRetiring WorkerState = "retiring" // finishing what it has, then exiting (reload, recycle, scale-down)
)

// Snapshot is a pool's state at one moment, for status pages and metrics.
// It is a copy: nothing in it changes afterwards.
type Snapshot struct {
	Time    time.Time // when it was taken
	Gen     uint64    // current generation (advanced by each reload)
	Size    int       // workers wanted in the current generation
	Queued  int       // requests waiting in the pool's queue for a worker
	Closed  bool      // the pool has shut down
	Batches uint64    // writes of requests to workers so far
	Sent    uint64    // requests written to workers so far
	Workers []WorkerSnapshot
}

// WorkerSnapshot is one live worker in a Snapshot.
type WorkerSnapshot struct {
	ID        int
	Pid       int
	Gen       uint64
	State     WorkerState
	Interface string    // "wsgi" or "asgi"
	Started   time.Time // when its process was started
	Served    int       // requests it has finished
	Slots     int       // requests it runs at once (1: one at a time, in batches)
	// InFlight is how many requests were sent to it and have not finished:
	// those running plus, for a one-at-a-time worker, the rest of its
	// batch, which wait their turn in it.
	InFlight int
	// Running are the requests it is running now, the longest-running
	// first.
	Running []RequestSnapshot
}

// RequestSnapshot is a request running on a worker.
type RequestSnapshot struct {
	Method  string
	Target  string
	Started time.Time // when the worker started running it
}

// Line is the request as logs show it: method and target.
func (r RequestSnapshot) Line() string { return r.Method + " " + r.Target }

// Ready reports whether some worker takes new requests: one of the
// current generation that is not retiring. It is false while the first
// workers boot, while a crashed single worker is replaced, and once the
// pool has closed.
func (s *Snapshot) Ready() bool {
	if s.Closed {
		return false
	}
	for i := range s.Workers {
		if w := &s.Workers[i]; w.Gen == s.Gen && w.State != WorkerRetiring {
			return true
		}
	}
	return false
}

// Snapshot reports the pool's state and each live worker's, ordered by
// worker id. It holds the pool's lock for a copy of the state only, and
// suits being called every second or so.
func (p *Pool) Snapshot() Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Snapshot{
		Time:    time.Now(),
		Gen:     p.gen,
		Size:    p.size,
		Queued:  len(p.queue),
		Closed:  p.closed,
		Batches: p.batches.Load(),
		Sent:    p.sent.Load(),
		Workers: make([]WorkerSnapshot, 0, len(p.workers)),
	}
	for _, w := range p.workers {
		ws := WorkerSnapshot{ID: w.ID, Pid: w.Pid, Gen: w.gen, Interface: w.Interface, Started: w.started, Slots: w.slots}
		w.mu.Lock()
		ws.Served = w.served
		ws.InFlight = len(w.inflight)
		running := w.running()
		if len(running) > 0 {
			ws.Running = make([]RequestSnapshot, 0, len(running))
			for _, j := range running {
				ws.Running = append(ws.Running, RequestSnapshot{Method: j.method, Target: j.target, Started: j.began})
			}
		}
		w.mu.Unlock()
		switch {
		case w.retiring || w.gen != p.gen:
			ws.State = WorkerRetiring
		case ws.InFlight > 0:
			ws.State = WorkerBusy
		default:
			ws.State = WorkerIdle
		}
		slices.SortFunc(ws.Running, func(a, b RequestSnapshot) int { return a.Started.Compare(b.Started) })
		s.Workers = append(s.Workers, ws)
	}
	slices.SortFunc(s.Workers, func(a, b WorkerSnapshot) int { return a.ID - b.ID })
	return s
}
