// Package pool runs the Python workers: it starts and supervises worker
// processes, queues requests in Go while every worker is busy, and hands
// each idle worker everything queued for it as one batch.
package pool

import (
	"errors"
	"os"
	"sync"
	"time"

	"taipan/internal/wire"
)

// ErrWorkerDied is the Err of the event that ends a job whose worker exited
// before finishing it.
var ErrWorkerDied = errors.New("worker died while handling the request")

// ErrTimeout ends a job that ran past the request timeout; its worker was
// killed.
var ErrTimeout = errors.New("request timed out")

// ErrMemoryLimit ends the jobs of a worker that was killed because its
// resident memory stayed above --max-rss while it ran a request.
var ErrMemoryLimit = errors.New("worker killed: its resident memory passed --max-rss while it ran the request")

// ErrClosed is returned by Submit once the pool is shutting down, and ends
// a job that was still waiting for a worker when the pool closed.
var ErrClosed = errors.New("pool is closed")

// ErrShutdown ends a job whose worker the pool stopped without waiting for
// it: Close once the time for finishing requests (the graceful timeout)
// was over, or Kill (a fast stop).
var ErrShutdown = errors.New("taipan stopped before the request finished")

// Event is one step of a job's response, delivered in order.
type Event struct {
	Kind    wire.Kind // HEAD, BODY, FILE or ABORT; zero when Err is set
	Flags   uint8
	Payload []byte
	File    *os.File // FILE events only; the receiver closes it
	Err     error    // set when the job cannot complete (worker died)
	// WatchClient, alone in an event, says the request of an ASGI worker
	// has run for a while (asgiWatchAfter): its client should be watched,
	// so that the app hears if it leaves (http.disconnect).
	WatchClient bool

	frame *wire.Frame
}

// Release recycles the event's payload buffer once it has been written out.
func (e *Event) Release() {
	if e.frame != nil {
		e.frame.Release()
		e.frame = nil
	}
}

// End reports whether this event finishes the job.
func (e *Event) End() bool {
	switch e.Kind {
	case wire.KindAbort:
		return true
	case wire.KindHead, wire.KindBody, wire.KindWSClose:
		return e.Flags&wire.FlagEnd != 0
	}
	return e.Err != nil
}

// Job is one request on its way to a worker and its response on the way back.
type Job struct {
	method   string // for logs
	target   string
	environ  []byte // marshal-encoded environ
	body     []byte // inline body; nil when bodyFile
	bodyFile bool
	// websocket marks a WebSocket session: it lasts as long as the client
	// stays, so no request timeout applies, and its worker retiring tells
	// it to close (Away).
	websocket bool
	away      chan struct{} // closed when the session should end (WebSocket only)
	awayOnce  sync.Once

	stream uint32
	queued time.Time // when it was submitted (only kept when autoscaling or Hooks.Dispatched wants it)
	// waitSeen is set once Hooks.Dispatched has seen the job, so that a job
	// put back in the queue by a dying worker is not counted twice. Only
	// the goroutine dispatching the job touches it.
	waitSeen bool

	// Guarded by the worker's mutex:
	started   time.Time // when it started running, or last produced output
	began     time.Time // when it started running (for Snapshot)
	closing   bool      // its response is complete, the app's close() runs (wire.FlagClosing)
	nudged    bool      // a WatchClient event was sent
	timedOut  bool      // it ran past the timeout
	cancelled time.Time // when its ASGI task was cancelled for it
	events    chan Event
	gone      chan struct{} // closed when the receiver stops listening

	mu       sync.Mutex
	worker   *Worker // set once dispatched
	released bool
}

// NewJob returns a job for an encoded environ and an inline body. With
// bodyFile set, the body is in the file named by the environ's
// taipan.body_path and body must be nil. method and target name the request
// in logs.
func NewJob(method, target string, environ, body []byte, bodyFile bool) *Job {
	return &Job{
		method:   method,
		target:   target,
		environ:  environ,
		body:     body,
		bodyFile: bodyFile,
		events:   make(chan Event, 4),
		gone:     make(chan struct{}),
	}
}

// NewWebSocketJob returns a job for a WebSocket handshake whose scope is
// encoded in environ. Its stream stays open while the session lasts: frames
// go to the app with Send and come back as events.
func NewWebSocketJob(method, target string, environ []byte) *Job {
	j := NewJob(method, target, environ, nil, false)
	j.websocket = true
	j.away = make(chan struct{})
	return j
}

// Away is closed when a WebSocket session should end because its worker is
// being retired (a reload, a recycle): the client should be told to
// reconnect, which brings it to a new worker. Nil for other jobs.
func (j *Job) Away() <-chan struct{} { return j.away }

// goAway closes Away once.
func (j *Job) goAway() {
	if j.away != nil {
		j.awayOnce.Do(func() { close(j.away) })
	}
}

// Send writes a frame of kind for the job's stream to its worker: a
// WebSocket message or disconnect. It fails when the job has no live worker.
func (j *Job) Send(kind wire.Kind, flags uint8, payload []byte) error {
	j.mu.Lock()
	w, stream, released := j.worker, j.stream, j.released
	j.mu.Unlock()
	if w == nil || released {
		return errNotRunning
	}
	buf := make([]byte, 0, wire.HeaderSize+len(payload))
	buf = wire.AppendHeader(buf, wire.Header{Length: uint32(len(payload)), Kind: kind, Flags: flags, Stream: stream})
	buf = append(buf, payload...)
	if !w.write(buf) {
		return errNotRunning
	}
	return nil
}

var errNotRunning = errors.New("the request is not running on a worker")

// Events delivers the response. The channel is not closed: the receiver
// stops at the event for which End reports true.
func (j *Job) Events() <-chan Event { return j.events }

// Release tells the pool the receiver no longer listens. If the response is
// still being produced, the worker is told to stop (CANCEL) and whatever it
// still sends for this job is dropped. Release is idempotent.
func (j *Job) Release(cancel bool) {
	j.mu.Lock()
	if j.released {
		j.mu.Unlock()
		return
	}
	j.released = true
	w := j.worker
	j.mu.Unlock()
	close(j.gone)
	if cancel && w != nil {
		w.cancel(j.stream)
	}
}

// deliver hands an event to the receiver, or drops it if the receiver left.
func (j *Job) deliver(ev Event) {
	select {
	case j.events <- ev:
	case <-j.gone:
		if ev.File != nil {
			ev.File.Close()
		}
		ev.Release()
	}
}

func (j *Job) assign(w *Worker, stream uint32) {
	j.mu.Lock()
	j.worker = w
	j.stream = stream
	j.mu.Unlock()
}

// String is the request line, for logs.
func (j *Job) String() string { return j.method + " " + j.target }

// Worker reports the id and pid of the worker the job was last dispatched
// to, or zeros while it is queued (or if it never ran). Once the response
// has ended it names the worker that ran the job, even one that then died
// or timed out; the access log reports it.
func (j *Job) Worker() (id, pid int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.worker == nil {
		return 0, 0
	}
	return j.worker.ID, j.worker.Pid
}
