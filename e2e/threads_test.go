package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
)

// overlapPeaks sends n concurrent /overlap requests and returns, for each,
// the largest number of requests the worker process had in the app at once,
// and the pids and threads that served them.
func overlapPeaks(t *testing.T, s *Server, n int) (peaks []int, pids, threads map[string]bool) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	pids, threads = map[string]bool{}, map[string]bool{}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := timeoutClient(testTimeout).Get(s.URL + "/overlap?ms=400")
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var peak int
			var pid, thread string
			if _, err := fmt.Sscan(string(body), &peak, &pid, &thread); err != nil || resp.StatusCode != 200 {
				t.Errorf("overlap: %d %q", resp.StatusCode, body)
				return
			}
			mu.Lock()
			peaks = append(peaks, peak)
			pids[pid], threads[thread] = true, true
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(peaks) == 0 {
		t.Fatal("no /overlap request succeeded")
	}
	return peaks, pids, threads
}

// TestThreads: with --threads 4 one worker runs four requests at once, on
// four threads, and says so in wsgi.multithread.
func TestThreads(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1", "--threads", "4")
	peaks, pids, threads := overlapPeaks(t, s, 4)
	if len(pids) != 1 {
		t.Fatalf("served by %d processes, want the one worker: %v", len(pids), pids)
	}
	if slices.Max(peaks) != 4 || len(threads) != 4 {
		t.Fatalf("peak concurrency %v on threads %v, want 4 requests at once on 4 threads", peaks, threads)
	}
	var env map[string]any
	code, body := httpGet(t, s, "/environ")
	if code != 200 || json.Unmarshal([]byte(body), &env) != nil {
		t.Fatalf("environ: %d %s", code, body)
	}
	if env["wsgi.multithread"] != true {
		t.Fatalf("wsgi.multithread = %v with --threads 4", env["wsgi.multithread"])
	}
	if !strings.Contains(s.Stderr(), "with 4 threads each") {
		t.Errorf("start-up log does not mention the threads:\n%s", s.Stderr())
	}
}

// TestThreadsOne: without --threads the worker runs one request at a time
// and wsgi.multithread is False.
func TestThreadsOne(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	peaks, _, _ := overlapPeaks(t, s, 3)
	if slices.Max(peaks) != 1 {
		t.Fatalf("peak concurrency %v without --threads, want 1", peaks)
	}
	var env map[string]any
	_, body := httpGet(t, s, "/environ")
	if json.Unmarshal([]byte(body), &env) != nil || env["wsgi.multithread"] != false {
		t.Fatalf("wsgi.multithread = %v without --threads", env["wsgi.multithread"])
	}
}

// TestThreadsWithPreload: forked workers get their threads too.
func TestThreadsWithPreload(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1", "--threads", "3", "--preload")
	peaks, _, threads := overlapPeaks(t, s, 3)
	if slices.Max(peaks) != 3 || len(threads) != 3 {
		t.Fatalf("peak concurrency %v on threads %v, want 3 at once", peaks, threads)
	}
}
