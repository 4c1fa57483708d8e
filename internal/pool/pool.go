package pool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"taipan/internal/logging"
	"taipan/internal/wire"
)

// Config is the resolved configuration of a pool.
type Config struct {
	Spec        Spec
	Workers     int
	BootTimeout time.Duration // time a worker has to load the app (0 = no limit)
	StopTimeout time.Duration // time a worker has to exit after being asked, before SIGKILL (0 = 5 s; negative = none)
	MaxBatch    int           // most requests sent to a worker in one write (default 32)

	// Timeout is how long one request may run (0 = no limit). Past it the
	// worker's Python stack is logged, the worker is killed, the request
	// gets 504 and a replacement starts.
	Timeout time.Duration
	// HeartbeatInterval is how often an idle worker is pinged (default 5s);
	// one that has not answered within HeartbeatTimeout (default 30s) is
	// replaced.
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration

	// MaxRequests recycles a worker after it has served this many
	// requests, plus a random 0..MaxRequestsJitter (0 = never).
	MaxRequests       int
	MaxRequestsJitter int
	// MaxRSS recycles a worker whose resident memory exceeds it, in bytes,
	// checked between requests (0 = never). While requests run, a
	// memoryWatch samples busy workers and kills one that a request holds
	// above it.
	MaxRSS int64

	// Preload imports the app once in a fork server and forks the workers
	// from it.
	Preload bool

	// IDBase is added to worker ids, so that several pools (lanes) log
	// distinct ids.
	IDBase int

	// AsyncSlots is how many requests one ASGI worker runs at once on its
	// event loop (default 1000).
	AsyncSlots int

	// Threads is how many requests one worker runs at once, in a thread
	// pool (default 1: one at a time, fed in batches). A threaded worker is
	// sent no more requests than it has free threads; the rest wait in Go.
	Threads int

	// WorkersMin and WorkersMax, when WorkersMax > 0, let the pool grow
	// while requests wait longer than ScaleUpWait (default 100 ms) in the
	// queue, and shrink when a worker has been idle for ScaleDownIdle
	// (default 30 s).
	WorkersMin    int
	WorkersMax    int
	ScaleUpWait   time.Duration
	ScaleDownIdle time.Duration

	// Hooks report what happens in the pool (for metrics).
	Hooks Hooks
}

// Pool owns the workers. Requests wait in its queue, in Go, while every
// worker is busy; a worker that becomes idle takes its share of what is
// queued (up to MaxBatch) in one write, so under load it wakes once per
// batch, not once per request, and the other workers, free a moment
// later, find their share still queued (see shareLocked).
//
// Workers belong to a generation. Reload starts a whole new generation and,
// once it is ready, sends new requests to it while the old one finishes what
// it has and exits. A worker is recycled the same way: its replacement is
// started first and it retires only when that one is ready and it is idle,
// so capacity never drops.
type Pool struct {
	cfg   Config
	log   *logging.Logger
	spawn spawner

	mu      sync.Mutex
	queue   []*Job // FIFO of requests waiting for a worker
	idle    []*Worker
	workers map[int]*Worker
	size    int    // workers wanted in the current generation
	gen     uint64 // current generation
	closed  bool

	nextID   atomic.Int64
	iface    atomic.Pointer[string] // what the newest worker reported: "wsgi" or "asgi"
	stream   atomic.Uint32
	batches  atomic.Uint64 // writes of requests to workers
	sent     atomic.Uint64 // requests written to workers
	reloadMu sync.Mutex    // one reload at a time
	running  sync.WaitGroup
	stopped  chan struct{}
}

// New returns a pool; Start boots its workers.
func New(cfg Config, log *logging.Logger) *Pool {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if cfg.MaxBatch < 1 {
		cfg.MaxBatch = 32
	}
	if cfg.Threads < 1 {
		cfg.Threads = 1
	}
	if cfg.AsyncSlots < 1 {
		cfg.AsyncSlots = 1000
	}
	cfg.Spec.Threads = cfg.Threads
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = 30 * time.Second
	}
	if cfg.WorkersMax > 0 {
		cfg.WorkersMin = max(cfg.WorkersMin, 1)
		if cfg.ScaleUpWait <= 0 {
			cfg.ScaleUpWait = 100 * time.Millisecond
		}
		if cfg.ScaleDownIdle <= 0 {
			cfg.ScaleDownIdle = 30 * time.Second
		}
	}
	p := &Pool{cfg: cfg, log: log, workers: make(map[int]*Worker), size: cfg.Workers, stopped: make(chan struct{})}
	p.spawn = &execSpawner{spec: &p.cfg.Spec, timeout: cfg.BootTimeout, log: log}
	p.nextID.Store(int64(cfg.IDBase))
	return p
}

// Start boots every worker at once and waits until all are ready. If the app
// cannot be loaded, it stops what did start and returns the *BootError, so
// taipan can exit with the traceback instead of looping on restarts.
func (p *Pool) Start() error {
	if p.cfg.Preload {
		fs, err := newForkSpawner(&p.cfg.Spec, p.cfg.BootTimeout, p.log)
		if err != nil {
			return err
		}
		p.spawn = fs
	}
	workers, err := p.bootGeneration(p.cfg.Workers)
	if err != nil {
		p.spawn.close()
		return err
	}
	if err := p.checkMaxRSS(workers); err != nil {
		for _, w := range workers {
			go w.run(p)
			w.stop(p.cfg.StopTimeout)
		}
		p.spawn.close()
		return err
	}
	for _, w := range workers {
		p.adopt(w, 0)
	}
	go p.monitor()
	if p.Interface() == "asgi" {
		go p.nudgeLongRequests()
	}
	if p.cfg.MaxRSS > 0 {
		go newMemoryWatch(p).run()
	}
	return nil
}

// asgiWatchAfter is how long a request runs on an ASGI worker before its
// Handler is told to watch the client (Event.WatchClient). Watching costs
// a goroutine and a read; quick requests never need it, and a timer of
// their own cost each one about a microsecond.
const asgiWatchAfter = 100 * time.Millisecond

// nudgeLongRequests sends WatchClient, once, to each request that has run
// on an ASGI worker for asgiWatchAfter, until the pool stops.
func (p *Pool) nudgeLongRequests() {
	t := time.NewTicker(asgiWatchAfter / 2)
	defer t.Stop()
	var workers []*Worker
	for {
		select {
		case <-p.stopped:
			return
		case now := <-t.C:
			workers = p.workerList(workers)
			for _, w := range workers {
				w.nudge(now.Add(-asgiWatchAfter))
			}
		}
	}
}

// workerList returns the pool's workers in buf[:0], for a periodic pass
// that looks at each without holding the pool's lock.
func (p *Pool) workerList(buf []*Worker) []*Worker {
	p.mu.Lock()
	defer p.mu.Unlock()
	buf = buf[:0]
	for _, w := range p.workers {
		buf = append(buf, w)
	}
	return buf
}

// checkMaxRSS refuses a --max-rss below what a worker holds as soon as it
// has loaded the app: every worker would be recycled for its memory as soon
// as it started, endlessly.
func (p *Pool) checkMaxRSS(workers []*Worker) error {
	if p.cfg.MaxRSS <= 0 {
		return nil
	}
	for _, w := range workers {
		if rss, err := w.rssBytes(); err == nil && rss > p.cfg.MaxRSS {
			return fmt.Errorf("--max-rss %d MB is below the %d MB worker %d holds once it has loaded the app; raise it", p.cfg.MaxRSS>>20, rss>>20, w.ID)
		}
	}
	return nil
}

// bootGeneration starts n workers at once; all must become ready, or those
// that did are stopped and the first error is returned.
func (p *Pool) bootGeneration(n int) ([]*Worker, error) {
	type result struct {
		w   *Worker
		err error
	}
	results := make(chan result, n)
	for range n {
		id := int(p.nextID.Add(1))
		go func() {
			w, err := p.spawn.spawn(id)
			results <- result{w, err}
		}()
	}
	var booted []*Worker
	var firstErr error
	for range n {
		r := <-results
		if r.err != nil {
			if firstErr == nil {
				firstErr = r.err
			}
			continue
		}
		booted = append(booted, r.w)
	}
	if firstErr != nil {
		for _, w := range booted {
			go w.run(p)
			w.stop(p.cfg.StopTimeout)
		}
		return nil, firstErr
	}
	return booted, nil
}

// adopt puts a ready worker of generation gen to work and supervises it
// until it exits.
func (p *Pool) adopt(w *Worker, gen uint64) {
	w.gen = gen
	w.slots = p.cfg.Threads
	if w.Interface == "asgi" {
		w.slots = p.cfg.AsyncSlots
	}
	if p.cfg.MaxRequests > 0 {
		w.limit = p.cfg.MaxRequests
		if p.cfg.MaxRequestsJitter > 0 {
			w.limit += rand.IntN(p.cfg.MaxRequestsJitter + 1)
		}
	}
	p.log.Infof("Booted worker %d with pid %d (Python %s)", w.ID, w.Pid, w.Python)
	p.mu.Lock()
	p.workers[w.ID] = w
	if gen == p.gen {
		iface := w.Interface
		p.iface.Store(&iface)
	}
	p.mu.Unlock()
	p.running.Add(1)
	if h := p.cfg.Hooks.WorkerStarted; h != nil {
		h(w.ID, w.Pid)
	}
	go p.supervise(w)
	p.workerFree(w, 0)
}

// supervise waits for a worker to exit. An unexpected exit of a worker of the
// current generation starts a replacement; the requests it had not started
// go back to the front of the queue.
func (p *Pool) supervise(w *Worker) {
	defer p.running.Done()
	unstarted, err := w.run(p)
	w.mu.Lock()
	killed := w.killErr != nil
	reason := w.stopReason
	lost := describeLost(w.lost)
	w.mu.Unlock()
	p.mu.Lock()
	delete(p.workers, w.ID)
	p.removeIdle(w)
	closed := p.closed
	expected := w.retiring || w.gen != p.gen
	replace := !closed && !expected && !w.renewing
	if len(unstarted) > 0 && !closed {
		p.queue = append(unstarted, p.queue...)
	}
	p.mu.Unlock()
	switch {
	case len(unstarted) == 0:
	case closed:
		// No worker will take them now: they fail as the queue did.
		for _, j := range unstarted {
			j.deliver(Event{Err: ErrClosed})
		}
	default:
		p.dispatchQueued()
	}
	if h := p.cfg.Hooks.WorkerStopped; h != nil {
		switch {
		case !closed && !expected && !killed:
			reason = StopCrash // nobody asked it to go, whatever was planned for it
		case reason == "" && closed:
			reason = StopShutdown
		case reason == "":
			reason = StopCrash
		}
		h(w.ID, w.Pid, reason)
	}
	switch {
	case closed:
		return
	case expected:
		p.log.Infof("Worker %d (pid %d) stopped", w.ID, w.Pid)
		return
	case killed:
		// Already logged by whoever killed it.
	case err != nil:
		p.log.Errorf("Worker %d (pid %d) exited unexpectedly (%v)%s", w.ID, w.Pid, err, lost)
	default:
		p.log.Errorf("Worker %d (pid %d) exited unexpectedly%s", w.ID, w.Pid, lost)
	}
	if replace {
		p.replace(w.gen)
	}
}

// describeLost completes the log line of a worker that died: the requests
// it was running, which fail (502).
func describeLost(lines []string) string {
	switch len(lines) {
	case 0:
		return ""
	case 1:
		return " while running " + lines[0] + "; that request fails"
	}
	return fmt.Sprintf(" while running %s and %d more; those requests fail", lines[0], len(lines)-1)
}

// replace boots a worker for generation gen, retrying with exponential
// backoff (100 ms doubling to 30 s) while boots fail, and gives up when the
// pool closes or moves on to another generation.
func (p *Pool) replace(gen uint64) {
	backoff := 100 * time.Millisecond
	for {
		w, err := p.spawn.spawn(int(p.nextID.Add(1)))
		p.mu.Lock()
		current := !p.closed && p.gen == gen
		p.mu.Unlock()
		if err == nil {
			if !current {
				go w.run(p)
				w.stop(p.cfg.StopTimeout)
				return
			}
			p.adopt(w, gen)
			return
		}
		if !current {
			return
		}
		if h := p.cfg.Hooks.BootFailed; h != nil {
			h(err)
		}
		p.log.Errorf("A worker failed to boot, retrying in %v: %v", backoff, err)
		select {
		case <-time.After(backoff):
		case <-p.stopped:
			return
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// Submit queues a job; it is sent to the first idle worker.
func (p *Pool) Submit(j *Job) error {
	if p.cfg.WorkersMax > 0 || p.cfg.Hooks.Dispatched != nil {
		j.queued = time.Now()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if len(p.idle) > 0 && len(p.queue) == 0 {
		w := p.idleWorkerLocked()
		p.assignLocked(w, 1)
		p.mu.Unlock()
		p.dispatch(w, []*Job{j})
		return nil
	}
	p.queue = append(p.queue, j)
	p.mu.Unlock()
	return nil
}

// room is how many more requests w may be sent now: a one-at-a-time
// worker takes a whole batch once it has finished the last one; a threaded
// worker takes one request per free thread.
func (p *Pool) room(w *Worker) int {
	if w.slots <= 1 {
		if w.assigned > 0 {
			return 0
		}
		return p.cfg.MaxBatch
	}
	return w.slots - w.assigned
}

// assignLocked records n requests sent to w and takes it off the idle list
// when it has no room left.
func (p *Pool) assignLocked(w *Worker, n int) {
	w.assigned += n
	if p.room(w) <= 0 {
		p.removeIdle(w)
	}
}

// workerFree is called when w has finished done requests (0 when it has
// just been adopted): a retiring worker is stopped once it has nothing left;
// any other takes what is queued, as much as it has room for, or waits on
// the idle list.
func (p *Pool) workerFree(w *Worker, done int) {
	p.mu.Lock()
	if p.workers[w.ID] != w {
		p.mu.Unlock()
		return
	}
	w.assigned -= done
	if w.retiring || w.gen != p.gen {
		p.removeIdle(w)
		stop := w.assigned == 0
		p.mu.Unlock()
		if stop {
			go w.stop(p.cfg.StopTimeout)
		}
		return
	}
	if p.room(w) <= 0 {
		p.mu.Unlock()
		return // a batch is still running
	}
	p.mu.Unlock()
	// Between requests is when the limits apply: a busy worker never idles,
	// so waiting for it to sit on the idle list would never recycle it.
	if reason, why := p.overLimit(w); reason != "" {
		p.renew(w, reason, why)
	}
	p.mu.Lock()
	if p.workers[w.ID] != w || w.retiring {
		p.mu.Unlock()
		return
	}
	if len(p.queue) == 0 {
		p.listLocked(w)
		p.mu.Unlock()
		return
	}
	batch := p.takeLocked(p.shareLocked(w))
	p.assignLocked(w, len(batch))
	if p.room(w) > 0 {
		p.listLocked(w)
	}
	p.mu.Unlock()
	p.dispatch(w, batch)
}

// idleWorkerLocked picks the idle worker for the next request: the one
// running the fewest (workers that run many at once, ASGI or threaded, then
// share the load instead of one taking everything until it is full), and
// among equals the one idle most recently, whose caches are warm.
func (p *Pool) idleWorkerLocked() *Worker {
	best := p.idle[len(p.idle)-1]
	for i := len(p.idle) - 2; i >= 0; i-- {
		if w := p.idle[i]; w.assigned < best.assigned {
			best = w
		}
	}
	return best
}

// listLocked puts w on the idle list unless it is there.
func (p *Pool) listLocked(w *Worker) {
	for _, x := range p.idle {
		if x == w {
			return
		}
	}
	p.idle = append(p.idle, w)
}

// dispatchQueued hands queued jobs to idle workers (after jobs were put back).
func (p *Pool) dispatchQueued() {
	for {
		p.mu.Lock()
		if len(p.idle) == 0 || len(p.queue) == 0 {
			p.mu.Unlock()
			return
		}
		w := p.idleWorkerLocked()
		batch := p.takeLocked(p.shareLocked(w))
		p.assignLocked(w, len(batch))
		p.mu.Unlock()
		p.dispatch(w, batch)
	}
}

// shareLocked is how many queued jobs the idle worker w takes: as many as
// it has room for, but a worker that runs one request at a time takes only
// its share of the queue, the queue divided by the pool's size and rounded
// up. The requests of a batch run one after another, and a worker free a
// moment later cannot take what another was sent: were everything to go
// to the first worker free, of 20 requests of 200 ms queued for two
// workers one would run 19, in 3.8 s instead of 2. Under a steady load
// the queue refills between batches, so batches stay large where they
// matter (many fast requests).
func (p *Pool) shareLocked(w *Worker) int {
	n := min(len(p.queue), p.room(w))
	if w.slots <= 1 && p.size > 1 {
		n = min(n, (len(p.queue)+p.size-1)/p.size)
	}
	return n
}

// takeLocked removes and returns the first n queued jobs.
func (p *Pool) takeLocked(n int) []*Job {
	batch := make([]*Job, n)
	copy(batch, p.queue)
	clear(p.queue[:n])
	p.queue = p.queue[n:]
	if len(p.queue) == 0 {
		p.queue = nil
	}
	return batch
}

// dispatch sends a batch to a worker taken off the idle list. If the worker
// died in the meantime the jobs go back to the front of the queue.
func (p *Pool) dispatch(w *Worker, batch []*Job) {
	if h := p.cfg.Hooks.Dispatched; h != nil {
		// Before send: once sent, a job may already be back in the queue
		// (its worker died) and in another goroutine's hands.
		now := time.Now()
		for _, j := range batch {
			if !j.waitSeen {
				j.waitSeen = true
				h(now.Sub(j.queued))
			}
		}
	}
	if w.send(batch, p.nextStream) {
		p.batches.Add(1)
		p.sent.Add(uint64(len(batch)))
		return
	}
	p.mu.Lock()
	p.queue = append(batch, p.queue...)
	p.mu.Unlock()
	p.dispatchQueued()
}

func (p *Pool) nextStream() uint32 {
	for {
		if s := p.stream.Add(1); s != 0 {
			return s
		}
	}
}

func (p *Pool) removeIdle(w *Worker) {
	for i, x := range p.idle {
		if x == w {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			return
		}
	}
}

// retire stops w once it is idle (at once if it is idle now), for reason.
// Its WebSocket sessions, which would keep it busy for as long as their
// clients stay, are told to end (Job.Away).
func (p *Pool) retire(w *Worker, reason StopReason) {
	w.mu.Lock()
	if w.stopReason == "" {
		w.stopReason = reason
	}
	w.mu.Unlock()
	p.mu.Lock()
	w.retiring = true
	p.removeIdle(w)
	idle := w.assigned == 0 && p.workers[w.ID] == w
	p.mu.Unlock()
	if idle {
		go w.stop(p.cfg.StopTimeout)
		return
	}
	w.mu.Lock()
	for _, j := range w.inflight {
		j.goAway()
	}
	w.mu.Unlock()
}

// Interface is what the app's workers serve, as they reported it: "wsgi"
// or "asgi" ("" before the first worker is ready).
func (p *Pool) Interface() string {
	if s := p.iface.Load(); s != nil {
		return *s
	}
	return ""
}

// renew replaces w, for reason (why says more, for the log): it boots a new
// worker of w's generation, puts it to work, then retires w. While the new
// one boots, w keeps serving.
func (p *Pool) renew(w *Worker, reason StopReason, why string) {
	p.mu.Lock()
	if w.renewing || w.retiring || p.closed || w.gen != p.gen {
		p.mu.Unlock()
		return
	}
	w.renewing = true
	gen := w.gen
	p.mu.Unlock()
	p.log.Infof("Recycling worker %d (pid %d): %s; starting its replacement first", w.ID, w.Pid, why)
	go func() {
		p.replace(gen)
		p.retire(w, reason)
	}()
}

// Reload starts a new generation of workers with fresh code. Once all of
// them are ready, new requests go to them and the old generation finishes
// what it was sent, then exits. If the new code fails to load, the old
// generation keeps serving and the error is returned.
func (p *Pool) Reload() error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	n := p.size
	p.mu.Unlock()
	p.log.Infof("Reloading: starting %d new worker%s", n, plural(n))
	if r, ok := p.spawn.(reloader); ok {
		if err := r.reload(); err != nil {
			p.log.Errorf("Reload failed, still serving with the current workers: %v", err)
			p.reloaded(err)
			return err
		}
	}
	workers, err := p.bootGeneration(n)
	if err != nil {
		p.log.Errorf("Reload failed, still serving with the current workers:\n%v", err)
		p.reloaded(err)
		return err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		for _, w := range workers {
			go w.run(p)
			w.stop(p.cfg.StopTimeout)
		}
		return ErrClosed
	}
	p.gen++
	gen := p.gen
	// A scaling signal while the new generation booted changed the size
	// for the old one: a worker added then was of the old generation and
	// is dropped, one removed was an old one. The new generation makes up
	// the difference; later signals scale it directly.
	size := p.size
	var old []*Worker
	for _, w := range p.workers {
		old = append(old, w)
	}
	p.mu.Unlock()
	for _, w := range workers {
		p.adopt(w, gen)
	}
	for _, w := range old {
		p.retire(w, StopReload)
	}
	p.log.Infof("Reloaded: %d new worker%s serving; %d old one%s finishing", n, plural(n), len(old), plural(len(old)))
	if size != n {
		p.log.Infof("Scaling to %d worker%s, as asked during the reload", size, plural(size))
	}
	for range size - n {
		go p.replace(gen)
	}
	for _, w := range workers[:max(n-size, 0)] {
		p.retire(w, StopScaleDown)
	}
	p.reloaded(nil)
	return nil
}

// reloaded reports the outcome of a reload to Hooks.Reloaded.
func (p *Pool) reloaded(err error) {
	if h := p.cfg.Hooks.Reloaded; h != nil {
		h(err)
	}
}

// Scale changes the number of workers by delta (SIGTTIN/SIGTTOU), never
// below one, and, when the pool autoscales, not past --workers-min and
// --workers-max, which autoscaling would soon restore.
func (p *Pool) Scale(delta int) {
	if p.cfg.WorkersMax > 0 {
		p.mu.Lock()
		want := p.size + delta
		p.mu.Unlock()
		if want < p.cfg.WorkersMin || want > p.cfg.WorkersMax {
			p.log.Warnf("Not scaling to %d worker%s: autoscaling keeps between --workers-min %d and --workers-max %d",
				want, plural(want), p.cfg.WorkersMin, p.cfg.WorkersMax)
			return
		}
	}
	p.scale(delta, nil)
}

// scaleDown retires w and lowers the size by one.
func (p *Pool) scaleDown(w *Worker) { p.scale(-1, w) }

func (p *Pool) scale(delta int, chosen *Worker) {
	p.mu.Lock()
	if p.closed || p.size+delta < 1 {
		p.mu.Unlock()
		return
	}
	p.size += delta
	size, gen := p.size, p.gen
	var victim *Worker
	if delta < 0 && chosen != nil {
		victim = chosen
	} else if delta < 0 {
		// Prefer an idle worker; else any, which retires when idle.
		if n := len(p.idle); n > 0 {
			victim = p.idle[0]
		} else {
			for _, w := range p.workers {
				if !w.retiring && w.gen == gen {
					victim = w
					break
				}
			}
		}
	}
	p.mu.Unlock()
	p.log.Infof("Scaling to %d worker%s", size, plural(size))
	if victim != nil {
		p.retire(victim, StopScaleDown)
	}
	for range delta {
		go p.replace(gen)
	}
}

// monitor enforces request timeouts and heartbeats, and autoscales.
func (p *Pool) monitor() {
	tick := time.Second
	if p.cfg.Timeout > 0 {
		tick = min(tick, max(p.cfg.Timeout/10, 10*time.Millisecond))
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var lastScale time.Time
	for {
		select {
		case <-p.stopped:
			return
		case now := <-t.C:
			for _, w := range p.workerList(nil) {
				p.check(w, now)
			}
			if p.cfg.WorkersMax > 0 && now.Sub(lastScale) >= time.Second && p.autoscale(now) {
				lastScale = now
			}
		}
	}
}

// check looks at one worker: a request past the timeout, a heartbeat not
// answered. (Request and memory limits are checked between batches.)
func (p *Pool) check(w *Worker, now time.Time) {
	w.mu.Lock()
	busy := len(w.inflight) > 0
	var running *Job
	var elapsed time.Duration
	for _, j := range w.running() {
		if j.websocket {
			continue // a session lasts as long as its client wants
		}
		if d := now.Sub(j.started); d > elapsed {
			running, elapsed = j, d
		}
	}
	idleFor := now.Sub(w.lastSeen)
	pingAge := time.Duration(0)
	if !w.pingSent.IsZero() {
		pingAge = now.Sub(w.pingSent)
	}
	killed := w.killErr != nil || w.dead
	w.mu.Unlock()
	if killed {
		return
	}
	// An ASGI worker answers a heartbeat from its event loop even while it
	// runs requests, so it is pinged busy too: a blocked loop shows, and a
	// worker held by long WebSocket sessions is still watched.
	pingable := !busy || w.Interface == "asgi"
	if w.Interface == "asgi" && p.cfg.Timeout > 0 && running != nil && p.cancelTimedOut(w, now) {
		return
	}
	switch {
	case running != nil && p.cfg.Timeout > 0 && elapsed > p.cfg.Timeout:
		w.mu.Lock()
		w.killErr = ErrWorkerDied // claim it before the slow dump, so it happens once
		w.stopReason = StopTimeout
		running.timedOut = true
		w.mu.Unlock()
		go func() {
			stack := w.dumpStack()
			p.log.Criticalf("WORKER TIMEOUT: worker %d (pid %d) ran %s for %.1fs (limit %v); killing it. Python stack:\n%s",
				w.ID, w.Pid, running, elapsed.Seconds(), p.cfg.Timeout, stack)
			w.kill()
		}()
	case pingable && pingAge > p.cfg.HeartbeatTimeout:
		w.mu.Lock()
		w.killErr = ErrWorkerDied
		w.stopReason = StopHeartbeat
		w.mu.Unlock()
		go func() {
			stack := w.dumpStack()
			p.log.Criticalf("WORKER UNRESPONSIVE: worker %d (pid %d) has not answered a heartbeat for %.1fs; killing it. Python stack:\n%s",
				w.ID, w.Pid, pingAge.Seconds(), stack)
			w.kill()
		}()
	case pingable && pingAge == 0 && idleFor > p.cfg.HeartbeatInterval:
		w.ping(now)
	}
}

// asyncCancelGrace is how long an ASGI task has to end after its request
// timed out and it was cancelled, before its worker is killed.
const asyncCancelGrace = 2 * time.Second

// cancelTimedOut handles timeouts on an ASGI worker, where one request's
// task can be cancelled without killing the others: a request past the
// timeout is cancelled (CANCEL with the TIMEOUT flag; the worker logs its
// task's stack and ends the stream, and the client gets 504). It reports
// false when a cancelled task has not ended within asyncCancelGrace (the
// event loop is blocked), and the caller kills the worker.
func (p *Pool) cancelTimedOut(w *Worker, now time.Time) bool {
	w.mu.Lock()
	var cancel []*Job
	stuck := false
	for _, j := range w.inflight {
		switch {
		case j.websocket:
		case !j.cancelled.IsZero():
			stuck = stuck || now.Sub(j.cancelled) > asyncCancelGrace
		case now.Sub(j.started) > p.cfg.Timeout:
			j.timedOut, j.cancelled = true, now
			cancel = append(cancel, j)
		}
	}
	w.mu.Unlock()
	for _, j := range cancel {
		p.log.Errorf("Request timed out: worker %d (pid %d) ran %s for over %v; cancelling its task", w.ID, w.Pid, j, p.cfg.Timeout)
		w.write(wire.AppendHeader(nil, wire.Header{Kind: wire.KindCancel, Flags: wire.FlagCancelTimeout, Stream: j.stream}))
	}
	return !stuck
}

// overLimit reports why w should be recycled ("" if it should not), and
// the details for the log: it has served --max-requests, or its memory is
// above --max-rss (read from /proc at most every 100 ms per worker). renew
// ignores a worker already being replaced.
func (p *Pool) overLimit(w *Worker) (StopReason, string) {
	now := time.Now()
	w.mu.Lock()
	served, limit := w.served, w.limit
	readRSS := p.cfg.MaxRSS > 0 && now.Sub(w.rssChecked) >= 100*time.Millisecond
	if readRSS {
		w.rssChecked = now
	}
	w.mu.Unlock()
	if limit > 0 && served >= limit {
		return StopMaxRequests, fmt.Sprintf("served %d request%s (--max-requests)", served, plural(served))
	}
	if readRSS {
		if rss, err := w.rssBytes(); err == nil && rss > p.cfg.MaxRSS {
			return StopMaxRSS, fmt.Sprintf("resident memory %d MB is above --max-rss %d MB", rss>>20, p.cfg.MaxRSS>>20)
		}
	}
	return "", ""
}

// autoscale adds a worker when requests wait too long, or retires one that
// has been idle long, within WorkersMin..WorkersMax. It reports whether it
// changed the size.
func (p *Pool) autoscale(now time.Time) bool {
	p.mu.Lock()
	// How long has the oldest request that has not started been waiting?
	// It is either first in the queue or, batched, behind the request a
	// worker is running.
	waited := time.Duration(0)
	if len(p.queue) > 0 && !p.queue[0].queued.IsZero() {
		waited = now.Sub(p.queue[0].queued)
	}
	for _, w := range p.workers {
		w.mu.Lock()
		if !w.threaded() && len(w.inflight) > 1 && !w.inflight[1].queued.IsZero() {
			waited = max(waited, now.Sub(w.inflight[1].queued))
		}
		w.mu.Unlock()
	}
	size := p.size
	var idleLong *Worker
	for _, w := range p.idle {
		w.mu.Lock()
		if now.Sub(w.lastBusy) > p.cfg.ScaleDownIdle {
			idleLong = w
		}
		w.mu.Unlock()
	}
	p.mu.Unlock()
	switch {
	case waited > p.cfg.ScaleUpWait && size < p.cfg.WorkersMax:
		p.log.Infof("Requests wait %v for a worker: adding one", waited.Round(time.Millisecond))
		p.Scale(1)
		return true
	case idleLong != nil && size > p.cfg.WorkersMin:
		p.log.Infof("Worker %d idle for over %v: retiring it", idleLong.ID, p.cfg.ScaleDownIdle)
		p.scaleDown(idleLong)
		return true
	}
	return false
}

// Stats is a snapshot of the pool.
type Stats struct {
	Workers int    // live workers, all generations
	Idle    int    // workers waiting for work
	Queued  int    // requests waiting for a worker
	Pids    []int  // pids of live workers
	Size    int    // workers wanted
	Gen     uint64 // current generation
	Batches uint64 // writes of requests to workers so far
	Sent    uint64 // requests written to workers so far
}

// Stats reports the pool's current state.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Workers: len(p.workers), Idle: len(p.idle), Queued: len(p.queue), Size: p.size, Gen: p.gen,
		Batches: p.batches.Load(), Sent: p.sent.Load()}
	for _, w := range p.workers {
		s.Pids = append(s.Pids, w.Pid)
	}
	return s
}

// Close stops every worker: each is asked to exit (its socket is closed)
// and killed if it has not exited within the pool's StopTimeout or by the
// time ctx ends. Requests still queued are failed. Call it after the edge
// has drained, so nothing is in flight.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.stopped)
	queued := p.queue
	p.queue = nil
	workers := make([]*Worker, 0, len(p.workers))
	for _, w := range p.workers {
		workers = append(workers, w)
	}
	p.mu.Unlock()
	for _, j := range queued {
		j.deliver(Event{Err: ErrClosed})
	}
	grace := p.cfg.StopTimeout
	if ctx.Err() != nil {
		grace = 0 // stop now: a second signal, or the graceful timeout is over
		for _, w := range workers {
			w.shuttingDown()
		}
	} else if d, ok := ctx.Deadline(); ok {
		grace = min(grace, max(time.Until(d), 0))
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.stop(grace)
		}()
	}
	wg.Wait()
	p.running.Wait()
	p.spawn.close()
	if n := len(workers); n > 0 {
		p.log.Infof("Stopped %d worker%s", n, plural(n))
	}
	return nil
}

// OwnsPid reports whether pid is a process the pool started and will reap
// itself (so that an init-style reaper must leave it alone).
func (p *Pool) OwnsPid(pid int) bool {
	if o, ok := p.spawn.(interface{ ownsPid(int) bool }); ok && o.ownsPid(pid) {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		if w.Pid == pid {
			return true
		}
	}
	return false
}

// Kill ends every worker at once (fast shutdown). The requests they were
// running end with ErrShutdown.
func (p *Pool) Kill() {
	p.mu.Lock()
	for _, w := range p.workers {
		w.shuttingDown()
		w.kill()
	}
	p.mu.Unlock()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// IsBootError reports whether err means the app could not be loaded.
func IsBootError(err error) bool {
	var b *BootError
	return errors.As(err, &b)
}

// reloader is a spawner that must refresh itself before a reload (the fork
// server re-imports the app).
type reloader interface {
	reload() error
}
