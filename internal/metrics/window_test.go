package metrics

import (
	"testing"
	"time"
)

func TestLatencyBuckets(t *testing.T) {
	// Every latency lands in a bucket whose representative value is within
	// 10% of it, across the whole range a request can take.
	for d := windowMinLatency; d < 500*time.Second; d = d * 11 / 10 {
		mid := bucketMid(latencyBucket(d))
		if ratio := float64(mid) / float64(d); ratio < 0.9 || ratio > 1.1 {
			t.Errorf("%v is reported as %v", d, mid)
		}
	}
	if b := latencyBucket(0); b != 0 {
		t.Errorf("0 in bucket %d", b)
	}
	if b := latencyBucket(time.Hour); b != windowBuckets-1 {
		t.Errorf("an hour in bucket %d, want the last", b)
	}
}

func TestWindowRateAndExpiry(t *testing.T) {
	w := newWindow()
	start := time.Unix(1_000_000, 0)
	// 5 requests a second for 20 seconds: 5 ms each, then one slow one.
	for sec := range 20 {
		for i := range 5 {
			w.observe(start.Add(time.Duration(sec)*time.Second+time.Duration(i)*100*time.Millisecond), 5*time.Millisecond)
		}
	}
	now := start.Add(19*time.Second + 500*time.Millisecond)
	tr := w.summary(now, start)
	// The window is the 10 s from 9.5 to 19.5: seconds 10..19 whole (50
	// requests) and half of second 9 (counted as 2.5).
	if tr.Requests != 53 {
		t.Errorf("%d requests in the window, want 53 (52.5)", tr.Requests)
	}
	if want := 52.5 / 10; tr.Rate < want*0.99 || tr.Rate > want*1.01 {
		t.Errorf("rate %v, want %v", tr.Rate, want)
	}
	if tr.P50 < 4500*time.Microsecond || tr.P99 > 5500*time.Microsecond {
		t.Errorf("percentiles %v %v, want about 5ms", tr.P50, tr.P99)
	}

	// A young window: the rate is over the time since counting began.
	fresh := newWindow()
	for i := range 15 {
		fresh.observe(start.Add(time.Duration(i)*time.Second/8), time.Millisecond)
	}
	young := fresh.summary(start.Add(2*time.Second), start)
	if young.Requests != 15 || young.Rate != 7.5 {
		t.Errorf("young window: %d requests at %v/s, want 15 at 7.5/s", young.Requests, young.Rate)
	}

	// Long after the traffic stopped, nothing is left.
	if tr := w.summary(start.Add(time.Minute), start); tr.Requests != 0 || tr.Rate != 0 || tr.P50 != 0 {
		t.Errorf("stale window: %+v", tr)
	}

	// A slot is reused for a later second without mixing in the old one.
	w.observe(start.Add(time.Minute), time.Second)
	tr = w.summary(start.Add(time.Minute), start)
	if tr.Requests != 1 || tr.P50 < 900*time.Millisecond || tr.P50 > 1100*time.Millisecond {
		t.Errorf("after reuse: %+v", tr)
	}
}

// TestWindowNeverOvercounts: after a burst, the rate over the window times
// its length never exceeds the requests answered, at any moment of the
// two seconds in which the burst leaves the window, and the burst is gone
// a window after it.
func TestWindowNeverOvercounts(t *testing.T) {
	w := newWindow()
	start := time.Unix(3_000_000, 0)
	for i := range 500 {
		w.observe(start.Add(500*time.Millisecond+time.Duration(i)*time.Millisecond), time.Millisecond)
	}
	for ms := 9000; ms <= 11100; ms += 50 {
		now := start.Add(time.Duration(ms) * time.Millisecond)
		tr := w.summary(now, start.Add(-time.Hour)) // a server up long before the burst
		if implied := tr.Rate * WindowSeconds; implied > 500*1.0001 {
			t.Errorf("at %v: %.2f req/s over %d s implies %.0f requests, only 500 were answered", now.Sub(start), tr.Rate, WindowSeconds, implied)
		}
		if tr.Requests > 500 {
			t.Errorf("at %v: %d requests in the window, only 500 were answered", now.Sub(start), tr.Requests)
		}
	}
	if tr := w.summary(start.Add(11*time.Second), start.Add(-time.Hour)); tr.Requests != 0 || tr.Rate != 0 {
		t.Errorf("a window after the burst: %+v", tr)
	}
}

func TestPercentileTail(t *testing.T) {
	w := newWindow()
	now := time.Unix(2_000_000, 0)
	for range 98 {
		w.observe(now, time.Millisecond)
	}
	w.observe(now, 2*time.Second)
	w.observe(now, 2*time.Second)
	tr := w.summary(now, now.Add(-time.Hour))
	if tr.P90 > 1100*time.Microsecond || tr.P99 < 1800*time.Millisecond {
		t.Errorf("p90 %v (want ~1ms), p99 %v (want ~2s)", tr.P90, tr.P99)
	}
}
