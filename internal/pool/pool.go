package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"taipan/internal/logging"
)

// Config is the resolved configuration of a pool.
type Config struct {
	Spec        Spec
	Workers     int
	BootTimeout time.Duration // time a worker has to load the app (0 = no limit)
	StopTimeout time.Duration // time a worker has to exit after being asked, before SIGKILL
	MaxBatch    int           // most requests sent to a worker in one write (default 32)
}

// Pool owns the workers. Requests wait in its queue, in Go, while every
// worker is busy; a worker that becomes idle takes everything queued (up to
// MaxBatch) in one write, so under load it wakes once per batch, not once
// per request.
type Pool struct {
	cfg Config
	log *logging.Logger

	mu      sync.Mutex
	queue   []*Job // FIFO of requests waiting for a worker
	idle    []*Worker
	workers map[int]*Worker
	closed  bool

	stream  atomic.Uint32
	batches atomic.Uint64  // writes of requests to workers
	sent    atomic.Uint64  // requests written to workers
	running sync.WaitGroup // one per worker slot supervisor
	stopped chan struct{}
}

// New returns a pool; Start boots its workers.
func New(cfg Config, log *logging.Logger) *Pool {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if cfg.MaxBatch < 1 {
		cfg.MaxBatch = 32
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	return &Pool{cfg: cfg, log: log, workers: make(map[int]*Worker), stopped: make(chan struct{})}
}

// Start boots every worker at once and waits until all are ready. If the app
// cannot be loaded, it stops what did start and returns the *BootError, so
// taipan can exit with the traceback instead of looping on restarts.
func (p *Pool) Start() error {
	type result struct {
		w   *Worker
		err error
	}
	results := make(chan result, p.cfg.Workers)
	for id := 1; id <= p.cfg.Workers; id++ {
		go func(id int) {
			w, err := startWorker(&p.cfg.Spec, id, p.cfg.BootTimeout, p.log)
			results <- result{w, err}
		}(id)
	}
	var booted []*Worker
	var firstErr error
	for range p.cfg.Workers {
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
		return firstErr
	}
	for _, w := range booted {
		p.log.Infof("Booted worker %d with pid %d (Python %s)", w.ID, w.Pid, w.Python)
		p.adopt(w)
	}
	return nil
}

// adopt puts a ready worker to work and supervises it until it exits.
func (p *Pool) adopt(w *Worker) {
	p.mu.Lock()
	p.workers[w.ID] = w
	p.mu.Unlock()
	p.running.Add(1)
	go p.supervise(w)
	p.workerIdle(w)
}

// supervise waits for a worker to exit and starts its replacement, backing
// off when replacements keep failing.
func (p *Pool) supervise(w *Worker) {
	defer p.running.Done()
	err := w.run(p)
	p.mu.Lock()
	delete(p.workers, w.ID)
	p.removeIdle(w)
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return
	}
	if err != nil {
		p.log.Errorf("Worker %d (pid %d) exited unexpectedly: %v", w.ID, w.Pid, err)
	} else {
		p.log.Errorf("Worker %d (pid %d) exited unexpectedly", w.ID, w.Pid)
	}
	p.replace(w.ID)
}

// replace boots a new worker for slot id, retrying with exponential backoff
// (100 ms doubling to 30 s) while boots fail.
func (p *Pool) replace(id int) {
	backoff := 100 * time.Millisecond
	for {
		w, err := startWorker(&p.cfg.Spec, id, p.cfg.BootTimeout, p.log)
		if err == nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				go w.run(p)
				w.stop(p.cfg.StopTimeout)
				return
			}
			p.log.Infof("Booted worker %d with pid %d", w.ID, w.Pid)
			p.adopt(w)
			return
		}
		p.log.Errorf("Worker %d failed to boot, retrying in %v: %v", id, backoff, err)
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
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if n := len(p.idle); n > 0 && len(p.queue) == 0 {
		w := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		p.dispatch(w, []*Job{j})
		return nil
	}
	p.queue = append(p.queue, j)
	p.mu.Unlock()
	return nil
}

// workerIdle is called when a worker has finished everything it was sent:
// it takes the next batch from the queue, or waits on the idle list.
func (p *Pool) workerIdle(w *Worker) {
	p.mu.Lock()
	if p.workers[w.ID] != w {
		p.mu.Unlock()
		return
	}
	if len(p.queue) == 0 {
		p.idle = append(p.idle, w)
		p.mu.Unlock()
		return
	}
	n := min(len(p.queue), p.cfg.MaxBatch)
	batch := make([]*Job, n)
	copy(batch, p.queue)
	clear(p.queue[:n])
	p.queue = p.queue[n:]
	if len(p.queue) == 0 {
		p.queue = nil
	}
	p.mu.Unlock()
	p.dispatch(w, batch)
}

// dispatch sends a batch to a worker taken off the idle list. If the worker
// died in the meantime the jobs go back to the front of the queue.
func (p *Pool) dispatch(w *Worker, batch []*Job) {
	if w.send(batch, p.nextStream) {
		p.batches.Add(1)
		p.sent.Add(uint64(len(batch)))
		return
	}
	p.mu.Lock()
	p.queue = append(batch, p.queue...)
	var next *Worker
	if n := len(p.idle); n > 0 {
		next = p.idle[n-1]
		p.idle = p.idle[:n-1]
	}
	p.mu.Unlock()
	if next != nil {
		p.workerIdle(next)
	}
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

// Stats is a snapshot of the pool.
type Stats struct {
	Workers int    // live workers
	Idle    int    // workers waiting for work
	Queued  int    // requests waiting for a worker
	Pids    []int  // pids of live workers
	Batches uint64 // writes of requests to workers so far
	Sent    uint64 // requests written to workers so far
}

// Stats reports the pool's current state.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Workers: len(p.workers), Idle: len(p.idle), Queued: len(p.queue), Batches: p.batches.Load(), Sent: p.sent.Load()}
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
	if d, ok := ctx.Deadline(); ok {
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
	if n := len(workers); n > 0 {
		p.log.Infof("Stopped %d worker%s", n, plural(n))
	}
	return nil
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

// String describes the pool for logs.
func (p *Pool) String() string {
	return fmt.Sprintf("pool of %d %s workers for %s", p.cfg.Workers, p.cfg.Spec.Python, p.cfg.Spec.App)
}
