package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestLane: --lane /overlap=1 sends every /overlap request to one reserved
// worker, one at a time, while other requests keep being served by the
// other worker, even while the lane is busy.
func TestLane(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "2", "--lane", "/overlap=1")
	type result struct {
		peaks []int
		pids  map[string]bool
	}
	done := make(chan result, 1)
	go func() {
		peaks, pids, _ := overlapPeaks(t, s, 3) // 3 × 400 ms, serialized: about 1.2 s
		done <- result{peaks, pids}
	}()
	time.Sleep(200 * time.Millisecond)
	code, pid := httpGet(t, s, "/pid")
	select {
	case <-done:
		t.Fatal("a request outside the lane waited for the lane's requests")
	default:
	}
	if code != 200 {
		t.Fatalf("/pid: %d", code)
	}
	r := <-done
	if len(r.pids) != 1 {
		t.Fatalf("lane requests served by %v, want its one worker", r.pids)
	}
	for lanePid := range r.pids {
		if strings.TrimSpace(pid) == lanePid {
			t.Fatalf("/pid was served by the lane's worker %s", lanePid)
		}
	}
	for _, p := range r.peaks {
		if p != 1 {
			t.Fatalf("lane peaks %v: its one worker ran more than one request at once", r.peaks)
		}
	}
	if !strings.Contains(s.Stderr(), "Lane /overlap: 1 worker reserved") {
		t.Errorf("no lane line in the log:\n%s", s.Stderr())
	}
}

func TestLaneBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-w", "2", "--lane", "/a=2"},
		{"-w", "3", "--lane", "/=1"},
		{"-w", "3", "--lane", "a=1"},
		{"-w", "3", "--lane", "/a=0"},
		{"-w", "3", "--lane", "/a"},
	} {
		code, out := runTaipan(t, 5*time.Second, append([]string{"--python", pythonPath()}, args...)...)
		if code != 2 || !strings.Contains(out, "--lane") || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Errorf("taipan %v: exit %d, output %q; want exit 2 and one line about --lane", args, code, out)
		}
	}
}
