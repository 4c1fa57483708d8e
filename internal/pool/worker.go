package pool

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"taipan/internal/logging"
	"taipan/internal/wire"
)

// Worker is one Python worker process and the socket to it. Its reader
// goroutine delivers response frames to jobs; its writer goroutine sends
// batches and control frames, so neither direction can stall the other.
type Worker struct {
	ID        int
	Pid       int
	Python    string // interpreter version the worker reported
	Interface string // "wsgi" or "asgi", as the worker reported
	started   time.Time

	proc   process
	conn   *net.UnixConn
	reader *wire.Reader
	log    *logging.Logger
	writes chan outgoing
	done   chan struct{} // closed when the worker has exited and been reaped
	relay  sync.WaitGroup

	slots int // requests it runs at once (its threads); 1 = one at a time, fed in batches. Set before its first job.

	tbMu sync.Mutex
	tb   []byte // what faulthandler wrote since the last dump request

	mu         sync.Mutex
	gen        uint64 // generation, advanced by each reload
	inflight   []*Job // jobs sent and not finished, in the order the worker runs them
	finished   int    // jobs finished and not yet reported to the pool
	dead       bool
	killErr    error     // why taipan killed it, given to the job it was running
	lost       []string  // request lines of the jobs it was running when it died, for the log
	served     int       // requests finished
	limit      int       // recycle after this many requests (0 = never)
	lastSeen   time.Time // when it last finished a batch or answered a heartbeat
	lastBusy   time.Time // when it last finished a batch
	pingSent   time.Time // zero when no heartbeat is outstanding
	rssChecked time.Time // when --max-rss was last checked

	// stopReason (guarded by mu) is why taipan stops it, for
	// Hooks.WorkerStopped; "" when it was not asked to go.
	stopReason StopReason

	// Guarded by the pool's mutex:
	assigned int  // requests sent to it and not finished
	retiring bool // stop it as soon as it is idle
	renewing bool // a replacement is being started for it
}

// newWorker wraps a started process.
func newWorker(id int, proc process, pipes *workerPipes, log *logging.Logger) *Worker {
	w := &Worker{
		ID:       id,
		Pid:      proc.Pid(),
		started:  time.Now(),
		proc:     proc,
		conn:     pipes.conn,
		reader:   wire.NewReader(pipes.conn),
		log:      log,
		writes:   make(chan outgoing, 64),
		done:     make(chan struct{}),
		lastSeen: time.Now(),
		lastBusy: time.Now(),
	}
	w.relay.Add(2)
	go w.relayOutput(pipes.output)
	go w.collectTracebacks(pipes.tracebacks)
	return w
}

// awaitReady reads the worker's first frame: READY or BOOT_ERROR.
func (w *Worker) awaitReady(timeout time.Duration) error {
	if timeout > 0 {
		w.conn.SetReadDeadline(time.Now().Add(timeout))
		defer w.conn.SetReadDeadline(time.Time{})
	}
	f, err := w.reader.Next()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("worker %d (pid %d) did not load the app within %v", w.ID, w.Pid, timeout)
		}
		return err
	}
	switch f.Kind {
	case wire.KindReady:
		var ready struct {
			Protocol  int    `json:"protocol"`
			Python    string `json:"python"`
			Interface string `json:"interface"`
		}
		if err := json.Unmarshal(f.Payload, &ready); err != nil {
			return fmt.Errorf("worker %d: bad READY frame: %w", w.ID, err)
		}
		if ready.Protocol != wire.Version {
			return fmt.Errorf("worker %d speaks protocol %d, taipan speaks %d", w.ID, ready.Protocol, wire.Version)
		}
		w.Python, w.Interface = ready.Python, ready.Interface
		return nil
	case wire.KindBootError:
		return &BootError{Text: string(f.Payload), PostFork: f.Flags&wire.FlagPostFork != 0}
	}
	return fmt.Errorf("worker %d: expected READY, got %v", w.ID, f.Kind)
}

// relayOutput copies the worker's stdout and stderr to the error log, one
// entry per line tagged with the worker's id and pid, until the worker
// exits (its last partial line included).
func (w *Worker) relayOutput(r *os.File) {
	defer w.relay.Done()
	defer r.Close()
	w.log.Relay(r, w.ID, w.Pid)
}

// outputDrain bounds how long a worker that has exited may keep its output
// pipes open: see awaitOutput.
const outputDrain = time.Second

// awaitOutput waits, once the worker has exited, for the rest of its output
// to reach the log (a traceback it wrote as it died). Not for long: a
// process the app started inherits the pipes and may hold them open for as
// long as it lives, and that must not hold up the worker's replacement, a
// boot error or a shutdown. Whatever it writes is still relayed.
func (w *Worker) awaitOutput() { waitAtMost(&w.relay, outputDrain) }

// waitAtMost waits for wg, but no longer than d. The goroutine that waits
// on goes away once wg is done.
func waitAtMost(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// collectTracebacks keeps what the worker's faulthandler writes, for dumpStack.
func (w *Worker) collectTracebacks(r *os.File) {
	defer w.relay.Done()
	defer r.Close()
	buf := make([]byte, 16<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			w.tbMu.Lock()
			if len(w.tb) < 1<<20 {
				w.tb = append(w.tb, buf[:n]...)
			}
			w.tbMu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// dumpStack asks the worker for the Python stack of all its threads
// (faulthandler, on SIGUSR1: it works even while Python code holds the GIL
// in a loop) and returns what it wrote, waiting until the output settles.
func (w *Worker) dumpStack() string {
	w.tbMu.Lock()
	w.tb = w.tb[:0]
	w.tbMu.Unlock()
	if err := w.proc.Signal(syscall.SIGUSR1); err != nil {
		return fmt.Sprintf("(no traceback: %v)", err)
	}
	// faulthandler writes the whole dump at once from its signal handler:
	// it is complete once nothing has been added for a few polls. (Short
	// polls matter when the worker is killed for its memory, which grows
	// while we wait.)
	deadline := time.Now().Add(2 * time.Second)
	last, still := -1, 0
	for time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		w.tbMu.Lock()
		n := len(w.tb)
		w.tbMu.Unlock()
		if n > 0 && n == last {
			if still++; still == 3 {
				break
			}
			continue
		}
		last, still = n, 0
	}
	w.tbMu.Lock()
	defer w.tbMu.Unlock()
	if len(w.tb) == 0 {
		return "(the worker wrote no traceback)"
	}
	return strings.TrimRight(string(w.tb), "\n")
}

// run serves the worker until it exits: the writer goroutine plus the read
// loop. It returns the jobs the worker had been sent but not started (to be
// run elsewhere) and the reason it stopped.
func (w *Worker) run(p *Pool) (unstarted []*Job, err error) {
	go w.writeLoop()
	waited := make(chan error, 1)
	go func() {
		err := w.proc.Wait()
		// The process is gone, but a child the app forked may hold its
		// end of the socket open, and then the end of file would never
		// come: the reads end once what the worker sent has been read.
		w.conn.CloseRead()
		waited <- err
	}()
	err = w.readLoop(p)
	unstarted = w.failInflight()
	w.conn.Close()
	waitErr := <-waited
	w.awaitOutput()
	w.reader.Close()
	close(w.done)
	if waitErr != nil {
		return unstarted, waitErr
	}
	return unstarted, err
}

// outgoing is bytes queued for the worker: whole frames, the last of which
// may end in body, a request body written from where the edge buffered it.
type outgoing struct {
	head, body []byte
}

// writeLoop sends what is queued for the worker. Everything queued by the
// time it wakes goes out in one writev, so requests that arrive together
// (many connections on an ASGI or threaded worker) cost the worker one read.
func (w *Worker) writeLoop() {
	var bufs net.Buffers
	for {
		select {
		case o := <-w.writes:
			bufs = o.appendTo(bufs[:0])
			// Let the goroutines that are ready to run (connections with a
			// request read) queue theirs first, so they share this write
			// and the worker's wake-up. Without it the writer runs as soon
			// as the first one queues, and every request travels alone.
			runtime.Gosched()
		gather:
			for len(bufs) < 64 {
				select {
				case o := <-w.writes:
					bufs = o.appendTo(bufs)
				default:
					break gather
				}
			}
			var err error
			if len(bufs) == 1 {
				_, err = w.conn.Write(bufs[0])
			} else {
				batch := bufs // WriteTo consumes the slice it is called on
				_, err = batch.WriteTo(w.conn)
			}
			clear(bufs)
			if err != nil {
				// The read loop sees the same failure and cleans up.
				w.conn.Close()
				return
			}
		case <-w.done:
			return
		}
	}
}

func (o outgoing) appendTo(bufs net.Buffers) net.Buffers {
	bufs = append(bufs, o.head)
	if len(o.body) > 0 {
		bufs = append(bufs, o.body)
	}
	return bufs
}

// readLoop delivers frames to the jobs they belong to until the socket fails.
func (w *Worker) readLoop(p *Pool) error {
	for {
		f, err := w.reader.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		switch f.Kind {
		case wire.KindLog:
			w.logFrame(f.Payload)
			f.Release()
			continue
		case wire.KindPong:
			w.mu.Lock()
			w.pingSent = time.Time{}
			w.lastSeen = time.Now()
			w.mu.Unlock()
			f.Release()
			continue
		}
		j, settled := w.job(f.Stream)
		if settled != nil {
			// The worker has moved on to this stream: the close() of the
			// previous one has returned.
			w.finishAndFree(p, settled, false)
		}
		if j == nil {
			if f.File != nil {
				f.File.Close()
			}
			w.log.Warnf("worker %d: %v frame for unknown stream %d", w.ID, f.Kind, f.Stream)
			f.Release()
			continue
		}
		if j.closing {
			// The END after close(): the client has had its response.
			f.Release()
			w.finishAndFree(p, j, true)
			continue
		}
		ev := Event{Kind: f.Kind, Flags: f.Flags, Payload: f.Payload, File: f.File, frame: f}
		if f.Kind == wire.KindAbort && w.timedOut(j) {
			// The task was cancelled for the timeout: the client gets 504.
			ev = Event{Err: ErrTimeout, frame: f}
		}
		end := ev.End()
		if end && ev.Flags&wire.FlagClosing != 0 && (ev.Kind == wire.KindHead || ev.Kind == wire.KindBody) {
			// The response is complete and goes to the client now; the
			// worker stays busy with the stream while close() runs.
			w.markClosing(j)
			j.deliver(ev)
			continue
		}
		j.deliver(ev)
		if end {
			w.finishAndFree(p, j, true)
		} else {
			w.progress(j)
		}
	}
}

// timedOut reports whether j ran past the timeout.
func (w *Worker) timedOut(j *Job) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return j.timedOut
}

// job finds the in-flight job of a stream. For a worker that runs one
// request at a time, a frame of a later stream also settles the first
// in-flight job if it was closing (wire.FlagClosing): its close() has
// returned. settled is that job, for the caller to finish. A threaded
// worker's closing job waits for its own END.
func (w *Worker) job(stream uint32) (j, settled *Job) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, x := range w.inflight {
		if x.stream == stream {
			j = x
			break
		}
	}
	if j != nil && !w.threaded() && w.inflight[0] != j && w.inflight[0].closing {
		settled = w.inflight[0]
	}
	return j, settled
}

// nudge sends WatchClient to each of w's requests (WebSocket sessions
// aside) that began before t and has not had it. The send does not wait: a
// job whose events are backed up is nudged at a later tick.
func (w *Worker) nudge(t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, j := range w.inflight {
		if j.nudged || j.websocket || j.began.IsZero() || j.began.After(t) {
			continue
		}
		select {
		case j.events <- Event{WatchClient: true}:
			j.nudged = true
		default:
		}
	}
}

// markClosing records that j's response is complete while the app's
// close() still runs. On a one-at-a-time worker the job that comes next may
// start at any moment: its clock starts now, and until j is settled it is
// the one counted running.
func (w *Worker) markClosing(j *Job) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	j.closing, j.started = true, now
	if !w.threaded() && len(w.inflight) > 1 && w.inflight[0] == j {
		w.inflight[1].started, w.inflight[1].began = now, now
	}
}

// progress records that a running job produced output: a response that
// streams is not hung, so the timeout counts from its latest part (a long
// download to a slow client is not killed, unlike gunicorn's sync worker).
func (w *Worker) progress(j *Job) {
	w.mu.Lock()
	j.started = time.Now()
	w.mu.Unlock()
}

// finish records that j is done and returns how many finished jobs to
// report to the pool: each one for a threaded worker, the whole batch once
// it is done for a one-at-a-time worker. With startNext, the next job of
// the batch counts as started now (not when a closing job is settled: the
// next one started earlier, and its clock with it).
func (w *Worker) finish(j *Job, startNext bool) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, x := range w.inflight {
		if x == j {
			w.inflight = append(w.inflight[:i], w.inflight[i+1:]...)
			break
		}
	}
	w.served++
	w.finished++
	now := time.Now()
	if len(w.inflight) == 0 {
		w.lastSeen, w.lastBusy = now, now
	} else if !w.threaded() {
		if startNext {
			w.inflight[0].started, w.inflight[0].began = now, now // the next job of the batch starts running now
		}
		return 0
	}
	n := w.finished
	w.finished = 0
	return n
}

// finishAndFree finishes j and tells the pool of the jobs done, if the
// worker has room again.
func (w *Worker) finishAndFree(p *Pool, j *Job, startNext bool) {
	if n := w.finish(j, startNext); n > 0 {
		p.workerFree(w, n)
	}
}

// threaded reports whether the worker runs its requests at once (all of
// its in-flight jobs are running) rather than one after another. slots is
// set before the worker gets any job and never changes.
func (w *Worker) threaded() bool { return w.slots > 1 }

// running returns the jobs the worker is running now.
func (w *Worker) running() []*Job {
	from, to := w.runningSpan()
	return w.inflight[from:to]
}

// runningSpan is where running's jobs stand in inflight. For a
// one-at-a-time worker it is the first job, or, while the first is closing
// (its close() may have returned unseen), the next one, which may have
// started: a timeout or a crash is then its doing, and it is not run again
// elsewhere.
func (w *Worker) runningSpan() (from, to int) {
	switch {
	case w.threaded() || len(w.inflight) == 0:
		return 0, len(w.inflight)
	case w.inflight[0].closing && len(w.inflight) > 1:
		return 1, 2
	}
	return 0, 1
}

func (w *Worker) logFrame(p []byte) {
	if len(p) == 0 {
		return
	}
	level := logging.Error
	switch {
	case p[0] <= 10:
		level = logging.Debug
	case p[0] <= 20:
		level = logging.Info
	case p[0] <= 30:
		level = logging.Warning
	case p[0] <= 40:
		level = logging.Error
	default:
		level = logging.Critical
	}
	w.log.WorkerLogf(level, w.ID, w.Pid, "%s", p[1:])
}

// failInflight ends the jobs the worker was running (they may have had side
// effects, so they are not retried) and returns those it never started, so
// they can run elsewhere.
func (w *Worker) failInflight() []*Job {
	w.mu.Lock()
	w.dead = true
	from, to := w.runningSpan()
	running, rest := w.inflight[from:to], w.inflight[to:]
	w.inflight = nil
	reason := w.killErr
	timedOut := make([]bool, len(running))
	for i, j := range running {
		timedOut[i] = j.timedOut
		w.lost = append(w.lost, j.String())
	}
	w.mu.Unlock()
	if reason == nil {
		reason = ErrWorkerDied
	}
	for i, j := range running {
		if timedOut[i] {
			j.deliver(Event{Err: ErrTimeout})
		} else {
			j.deliver(Event{Err: reason})
		}
	}
	for _, j := range rest {
		j.assign(nil, 0)
	}
	return rest
}

// copyBodyMax is the largest request body copied into the frame buffer.
// Larger ones are written from the edge's buffer by writev: a 64 KiB upload
// copied into a fresh frame cost a large allocation, its zeroing and the
// copy, about a tenth of the Go CPU of the request.
const copyBodyMax = 8 << 10

// send writes a batch of jobs as one write. It reports false when the worker
// is already dead, and the caller must queue the jobs elsewhere.
func (w *Worker) send(jobs []*Job, nextStream func() uint32) bool {
	size := 0
	for _, j := range jobs {
		size += wire.HeaderSize + 4 + len(j.environ)
		if len(j.body) <= copyBodyMax {
			size += len(j.body)
		}
	}
	buf := make([]byte, 0, size) // never grows: frame heads below alias it
	var items []outgoing         // set when a body is written in place
	start := 0                   // where buf's unqueued frames begin
	w.mu.Lock()
	if w.dead {
		w.mu.Unlock()
		return false
	}
	now := time.Now()
	if len(w.inflight) == 0 {
		jobs[0].started, jobs[0].began = now, now
	}
	for _, j := range jobs {
		if w.threaded() {
			j.started, j.began = now, now
		}
		stream := nextStream()
		j.assign(w, stream)
		w.inflight = append(w.inflight, j)
		var flags uint8
		if j.bodyFile {
			flags = wire.FlagBodyFile
		}
		if j.websocket {
			flags |= wire.FlagWebSocket
		}
		if len(j.body) <= copyBodyMax {
			buf = wire.AppendRequest(buf, stream, flags, j.environ, j.body)
			continue
		}
		// The frames so far and this one's head, then its body in place.
		buf = wire.AppendRequestHead(buf, stream, flags, j.environ, len(j.body))
		items = append(items, outgoing{head: buf[start:len(buf):len(buf)], body: j.body})
		start = len(buf)
	}
	w.mu.Unlock()
	if items == nil {
		w.write(buf)
		return true
	}
	if start < len(buf) {
		items = append(items, outgoing{head: buf[start:]})
	}
	for _, o := range items {
		w.queue(o)
	}
	return true
}

// cancel tells the worker to stop producing the response of a stream.
func (w *Worker) cancel(stream uint32) {
	if j, _ := w.job(stream); j != nil {
		w.write(wire.AppendHeader(nil, wire.Header{Kind: wire.KindCancel, Stream: stream}))
	}
}

// ping sends a heartbeat; the worker answers PONG when it is idle.
func (w *Worker) ping(now time.Time) {
	w.mu.Lock()
	w.pingSent = now
	w.mu.Unlock()
	w.write(wire.AppendHeader(nil, wire.Header{Kind: wire.KindPing}))
}

// write queues b for the writer goroutine; false if the worker is gone.
func (w *Worker) write(b []byte) bool { return w.queue(outgoing{head: b}) }

// queue queues o for the writer goroutine; false if the worker is gone.
func (w *Worker) queue(o outgoing) bool {
	select {
	case w.writes <- o:
		return true
	case <-w.done:
		return false
	}
}

// stop asks the worker to exit by closing its socket, and kills it if it is
// still running after grace.
func (w *Worker) stop(grace time.Duration) {
	w.conn.CloseWrite()
	select {
	case <-w.done:
	case <-time.After(grace):
		// An ASGI app's lifespan shutdown, or an atexit hook, is cut
		// short: say so, or its missing work is a mystery. (No grace is
		// a stop-now, which the log has already said.)
		if grace > 0 {
			w.log.Warnf("Worker %d (pid %d) did not exit within %v of being asked; killing it", w.ID, w.Pid, grace)
		}
		w.kill()
		<-w.done
	}
}

// shuttingDown records, before the pool stops w without waiting for its
// requests, that they end with ErrShutdown: taipan cut them short, the
// worker did not fail. A reason already claimed (a timeout) stands.
func (w *Worker) shuttingDown() {
	w.mu.Lock()
	if w.killErr == nil {
		w.killErr = ErrShutdown
	}
	w.mu.Unlock()
}

// kill ends the process at once.
func (w *Worker) kill() {
	w.proc.Signal(syscall.SIGKILL)
}

// rssBytes reads the worker's resident set size from /proc.
func (w *Worker) rssBytes() (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(w.Pid) + "/statm")
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		return 0, errors.New("short /proc statm")
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

// fileRange decodes a FILE frame's payload.
func fileRange(p []byte) (offset, count int64, err error) {
	if len(p) != 16 {
		return 0, 0, errors.New("FILE frame: want 16 bytes of offset and count")
	}
	return int64(binary.LittleEndian.Uint64(p)), int64(binary.LittleEndian.Uint64(p[8:])), nil
}

// FileRange decodes the offset and count of a FILE event.
func FileRange(ev *Event) (offset, count int64, err error) { return fileRange(ev.Payload) }
