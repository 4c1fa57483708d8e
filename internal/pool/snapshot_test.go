package pool

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// hookLog records what a pool reports through its Hooks.
type hookLog struct {
	mu       sync.Mutex
	waits    []time.Duration
	started  []int
	stopped  map[int]StopReason
	failures int
	reloads  []error
}

func (h *hookLog) hooks() Hooks {
	h.stopped = map[int]StopReason{}
	return Hooks{
		Dispatched: func(wait time.Duration) {
			h.mu.Lock()
			h.waits = append(h.waits, wait)
			h.mu.Unlock()
		},
		WorkerStarted: func(id, pid int) {
			h.mu.Lock()
			h.started = append(h.started, id)
			h.mu.Unlock()
		},
		WorkerStopped: func(id, pid int, reason StopReason) {
			h.mu.Lock()
			h.stopped[id] = reason
			h.mu.Unlock()
		},
		BootFailed: func(error) {
			h.mu.Lock()
			h.failures++
			h.mu.Unlock()
		},
		Reloaded: func(err error) {
			h.mu.Lock()
			h.reloads = append(h.reloads, err)
			h.mu.Unlock()
		},
	}
}

// waitStopped waits until worker id has been reported stopped and returns
// the reason.
func (h *hookLog) waitStopped(t *testing.T, id int) StopReason {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		r, ok := h.stopped[id]
		h.mu.Unlock()
		if ok {
			return r
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("worker %d was not reported stopped", id)
	return ""
}

// waitSnapshot polls p's snapshot until cond holds.
func waitSnapshot(t *testing.T, p *Pool, what string, cond func(Snapshot) bool) Snapshot {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := p.Snapshot()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last snapshot %+v", what, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSnapshotAndHooks(t *testing.T) {
	p, _ := newPool(t, 1, testApp)
	var h hookLog
	p.cfg.Hooks = h.hooks()
	if s := p.Snapshot(); s.Ready() || len(s.Workers) != 0 {
		t.Fatalf("ready before Start: %+v", s)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	s := p.Snapshot()
	if !s.Ready() || len(s.Workers) != 1 || s.Workers[0].State != WorkerIdle || s.Workers[0].Pid <= 0 || s.Workers[0].Interface != "wsgi" {
		t.Fatalf("after Start: %+v", s)
	}
	first := s.Workers[0].ID

	// One slow request runs, a second waits in the queue.
	slow, queued := job("/sleep", "0.5", ""), job("/echo", "", "x")
	if err := p.Submit(slow); err != nil {
		t.Fatal(err)
	}
	s = waitSnapshot(t, p, "a busy worker", func(s Snapshot) bool {
		return len(s.Workers) == 1 && s.Workers[0].State == WorkerBusy
	})
	if err := p.Submit(queued); err != nil {
		t.Fatal(err)
	}
	s = p.Snapshot()
	w := s.Workers[0]
	if s.Queued != 1 || w.InFlight != 1 || len(w.Running) != 1 || w.Running[0].Line() != "GET /sleep?0.5" || time.Since(w.Running[0].Started) > time.Second {
		t.Errorf("while busy: queued %d, worker %+v", s.Queued, w)
	}
	collect(t, slow)
	collect(t, queued)
	h.mu.Lock()
	waits := slices.Clone(h.waits)
	h.mu.Unlock()
	if len(waits) != 2 || waits[0] > 100*time.Millisecond || waits[1] < 300*time.Millisecond {
		t.Errorf("queue waits %v: want one short, one behind the 0.5 s request", waits)
	}
	// The worker is told a job finished just after its receiver is.
	s = waitSnapshot(t, p, "an idle worker", func(s Snapshot) bool { return s.Workers[0].State == WorkerIdle })
	if s.Workers[0].Served != 2 || s.Sent != 2 || s.Queued != 0 || len(s.Workers[0].Running) != 0 {
		t.Errorf("after both: %+v", s)
	}

	// A crash is reported as such, and its replacement as started.
	die := job("/die", "", "")
	p.Submit(die)
	collect(t, die)
	if r := h.waitStopped(t, first); r != StopCrash {
		t.Errorf("crashed worker stopped for %q", r)
	}
	waitSnapshot(t, p, "a replacement", func(s Snapshot) bool { return s.Ready() })

	// A reload retires the generation with reason reload.
	s = p.Snapshot()
	second := s.Workers[0].ID
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := h.waitStopped(t, second); r != StopReload {
		t.Errorf("reloaded worker stopped for %q", r)
	}
	s = waitSnapshot(t, p, "the new generation", func(s Snapshot) bool { return len(s.Workers) == 1 })
	if s.Gen != 1 || s.Workers[0].Gen != 1 || !s.Ready() {
		t.Errorf("after reload: %+v", s)
	}

	// Scaling down retires a worker with reason scale-down.
	p.Scale(1)
	s = waitSnapshot(t, p, "two workers", func(s Snapshot) bool { return len(s.Workers) == 2 })
	p.Scale(-1)
	h.mu.Lock()
	nStopped := len(h.stopped)
	h.mu.Unlock()
	waitSnapshot(t, p, "one worker", func(s Snapshot) bool { return len(s.Workers) == 1 })
	h.mu.Lock()
	var scaled []StopReason
	for _, r := range h.stopped {
		if r == StopScaleDown {
			scaled = append(scaled, r)
		}
	}
	h.mu.Unlock()
	if nStopped != 2 || len(scaled) != 1 {
		t.Errorf("scale-down: %d stopped before, %d scale-downs after", nStopped, len(scaled))
	}

	p.Close(t.Context())
	last := s.Workers[0].ID
	if r := h.waitStopped(t, last); r != StopShutdown && r != StopScaleDown {
		t.Errorf("worker stopped by Close for %q", r)
	}
	if s := p.Snapshot(); !s.Closed || s.Ready() {
		t.Errorf("after Close: %+v", s)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.reloads) != 1 || h.reloads[0] != nil || h.failures != 0 || len(h.started) != 4 {
		t.Errorf("reloads %v, boot failures %d, started %v", h.reloads, h.failures, h.started)
	}
}

func TestStopReasonsForLimits(t *testing.T) {
	t.Run("max-requests", func(t *testing.T) {
		p, _ := newPool(t, 1, testApp)
		var h hookLog
		p.cfg.Hooks = h.hooks()
		p.cfg.MaxRequests = 1
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		defer p.Close(t.Context())
		id := p.Snapshot().Workers[0].ID
		j := job("/echo", "", "")
		p.Submit(j)
		collect(t, j)
		if r := h.waitStopped(t, id); r != StopMaxRequests {
			t.Errorf("stopped for %q", r)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		p, _ := newPool(t, 1, testApp)
		var h hookLog
		p.cfg.Hooks = h.hooks()
		p.cfg.Timeout = 300 * time.Millisecond
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		defer p.Close(t.Context())
		id := p.Snapshot().Workers[0].ID
		j := job("/sleep", "5", "")
		p.Submit(j)
		if _, err := collect(t, j); err != ErrTimeout {
			t.Errorf("job ended with %v, want ErrTimeout", err)
		}
		if r := h.waitStopped(t, id); r != StopTimeout {
			t.Errorf("stopped for %q", r)
		}
	})
}

func TestSnapshotReady(t *testing.T) {
	for _, c := range []struct {
		name string
		s    Snapshot
		want bool
	}{
		{"no workers", Snapshot{}, false},
		{"idle", Snapshot{Workers: []WorkerSnapshot{{State: WorkerIdle}}}, true},
		{"busy", Snapshot{Workers: []WorkerSnapshot{{State: WorkerBusy}}}, true},
		{"only retiring", Snapshot{Workers: []WorkerSnapshot{{State: WorkerRetiring}}}, false},
		{"old generation only", Snapshot{Gen: 2, Workers: []WorkerSnapshot{{Gen: 1, State: WorkerBusy}}}, false},
		{"closed", Snapshot{Closed: true, Workers: []WorkerSnapshot{{State: WorkerIdle}}}, false},
	} {
		if got := c.s.Ready(); got != c.want {
			t.Errorf("%s: Ready() = %v, want %v", c.name, got, c.want)
		}
	}
}
