package server

import (
	"context"
	"errors"
	"sync"

	"taipan/internal/bridge"
	"taipan/internal/pool"
)

// pools is the main worker pool plus one pool per --lane. Signals and
// shutdown apply to all of them; scaling, to the main pool.
type pools struct {
	main  *pool.Pool
	lanes []bridge.Lane
}

func (ps *pools) all() []*pool.Pool {
	all := []*pool.Pool{ps.main}
	for _, l := range ps.lanes {
		all = append(all, l.Pool)
	}
	return all
}

// Start boots every pool at once; if one fails, those that started are
// stopped and the first error is returned.
func (ps *pools) Start() error {
	all := ps.all()
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, p := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.Start()
		}()
	}
	wg.Wait()
	var first error
	for _, err := range errs {
		if err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for i, p := range all {
			if errs[i] == nil {
				p.Close(ctx)
			}
		}
	}
	return first
}

// Reload reloads every pool, one after another.
func (ps *pools) Reload() error {
	var errs []error
	for _, p := range ps.all() {
		errs = append(errs, p.Reload())
	}
	return errors.Join(errs...)
}

// Scale changes the size of the main pool.
func (ps *pools) Scale(delta int) { ps.main.Scale(delta) }

// Kill ends every worker at once.
func (ps *pools) Kill() {
	for _, p := range ps.all() {
		p.Kill()
	}
}

// Close stops every pool.
func (ps *pools) Close(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range ps.all() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Close(ctx)
		}()
	}
	wg.Wait()
}

// OwnsPid reports whether any pool started pid and will reap it.
func (ps *pools) OwnsPid(pid int) bool {
	for _, p := range ps.all() {
		if p.OwnsPid(pid) {
			return true
		}
	}
	return false
}
