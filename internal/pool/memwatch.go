package pool

import (
	"fmt"
	"strings"
	"time"
)

// memoryWatchInterval is how often a memoryWatch samples the busy workers;
// memoryConfirmInterval is how soon it looks again once one is above the
// limit.
const (
	memoryWatchInterval   = 250 * time.Millisecond
	memoryConfirmInterval = 100 * time.Millisecond
)

// memoryWatch enforces --max-rss while requests run. Between requests the
// limit recycles a worker gently (overLimit, renew), but a request that
// allocates without bound never ends, so its worker is never between
// requests: without the watch it would grow until the kernel's OOM killer
// picked a process, perhaps not even a worker.
//
// Every memoryWatchInterval the watch reads the resident memory of each
// worker from /proc (one small read per worker), and memoryConfirmInterval
// after a sample that found a busy one above the limit. An idle worker
// above the limit is recycled the gentle way at once. A worker above the limit at two
// samples in a row, running a request that had already started at the
// first of them, is killed: its Python stack is logged first, the requests
// it was running get ErrMemoryLimit (502) and a replacement starts. Two
// samples rather than one let a request that passes the limit and then
// ends (it built one large response) finish; its worker is then recycled
// the gentle way. A busy worker above the limit whose requests are all
// new, or are WebSocket sessions, is recycled gently too.
type memoryWatch struct {
	pool  *Pool
	limit int64
	// rss reads a worker's resident memory in bytes (Worker.rssBytes; a
	// test may substitute its own figures).
	rss func(*Worker) (int64, error)
	// over holds the workers that were above the limit at the last
	// sample, with when it was taken.
	over map[*Worker]time.Time
}

// newMemoryWatch returns the watch for p's --max-rss.
func newMemoryWatch(p *Pool) *memoryWatch {
	return &memoryWatch{pool: p, limit: p.cfg.MaxRSS, rss: (*Worker).rssBytes, over: make(map[*Worker]time.Time)}
}

// run samples until the pool stops.
func (m *memoryWatch) run() {
	t := time.NewTimer(memoryWatchInterval)
	defer t.Stop()
	for {
		select {
		case <-m.pool.stopped:
			return
		case now := <-t.C:
			m.sample(now)
			if len(m.over) > 0 {
				t.Reset(memoryConfirmInterval)
			} else {
				t.Reset(memoryWatchInterval)
			}
		}
	}
}

// sample looks at every busy worker once.
func (m *memoryWatch) sample(now time.Time) {
	p := m.pool
	workers := p.workerList(nil)
	over := make(map[*Worker]time.Time, len(m.over))
	for _, w := range workers {
		if m.check(w, now) {
			over[w] = now
		}
	}
	m.over = over // forgets the workers that have gone
}

// check samples w and reports whether it is busy and above the limit. It
// kills w, or has it recycled, as the type's comment says.
func (m *memoryWatch) check(w *Worker, now time.Time) bool {
	w.mu.Lock()
	busy := len(w.inflight) > 0
	gone := w.killErr != nil || w.dead
	fresh := w.served == 0 && !busy
	w.mu.Unlock()
	if gone || fresh {
		// A worker that has served nothing holds only what loading the
		// app took: replacing it would bring one just as large, again and
		// again (a reload to bigger code can get here; at start, Start
		// refuses such a limit).
		return false
	}
	rss, err := m.rss(w)
	if err != nil || rss <= m.limit {
		return false // unreadable: the worker has just exited
	}
	if !busy {
		// Idle and above the limit (a request left it large): recycled
		// now rather than at its next request, which on a quiet pool may
		// not come for a long time. (renew ignores a worker already
		// being replaced.)
		m.pool.renew(w, StopMaxRSS, fmt.Sprintf("resident memory %d MB is above --max-rss %d MB", rss>>20, m.limit>>20))
		return false
	}
	prev, wasOver := m.over[w]
	if !wasOver {
		return true // look again at the next sample
	}
	if held := w.runningSince(prev); len(held) > 0 {
		m.kill(w, rss, held, now)
		return true
	}
	// Above the limit with only new requests or WebSocket sessions: no
	// request holds the memory, the worker does. (renew ignores a worker
	// already being replaced.)
	m.pool.renew(w, StopMaxRSS, fmt.Sprintf("resident memory %d MB is above --max-rss %d MB", rss>>20, m.limit>>20))
	return true
}

// kill logs w's Python stack and kills it for running held while above the
// limit, unless something else is already killing it.
func (m *memoryWatch) kill(w *Worker, rss int64, held []*Job, now time.Time) {
	w.mu.Lock()
	if w.killErr != nil || w.dead {
		w.mu.Unlock()
		return
	}
	w.killErr = ErrMemoryLimit // claim it before the slow dump, so it happens once
	w.stopReason = StopMaxRSS
	running := describeRequests(held, now)
	w.mu.Unlock()
	log := m.pool.log
	go func() {
		stack := w.dumpStack()
		log.Criticalf("WORKER MEMORY LIMIT: worker %d (pid %d) has %d MB resident, above --max-rss %d MB, while running %s; killing it. Python stack:\n%s",
			w.ID, w.Pid, rss>>20, m.limit>>20, running, stack)
		w.kill()
	}()
}

// runningSince returns the requests (WebSocket sessions aside) that w is
// running and that started no later than t.
func (w *Worker) runningSince(t time.Time) []*Job {
	w.mu.Lock()
	defer w.mu.Unlock()
	var held []*Job
	for _, j := range w.running() {
		if !j.websocket && !j.began.IsZero() && !j.began.After(t) {
			held = append(held, j)
		}
	}
	return held
}

// describeRequests names the requests for a log line: the longest-running
// one with its age, and how many more there are. The caller holds the
// worker's lock (for began).
func describeRequests(jobs []*Job, now time.Time) string {
	oldest := jobs[0]
	for _, j := range jobs[1:] {
		if j.began.Before(oldest.began) {
			oldest = j
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s for %.1fs", oldest, now.Sub(oldest.began).Seconds())
	if n := len(jobs) - 1; n > 0 {
		fmt.Fprintf(&b, " (and %d more request%s)", n, plural(n))
	}
	return b.String()
}
