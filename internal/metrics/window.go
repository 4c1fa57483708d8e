package metrics

import (
	"math"
	"sync"
	"time"
)

// WindowSeconds is how far back Traffic looks: long enough to smooth a
// burst, short enough that a status page shows a change within seconds.
const WindowSeconds = 10

// Latencies are kept in logarithmic buckets, bucketsPerOctave to each
// doubling from windowMinLatency up (about 600 s at the top): a percentile
// read from them is off by at most half a bucket, under 10%, and
// recording one costs a logarithm and an increment.
const (
	bucketsPerOctave = 4
	windowBuckets    = 96
	windowMinLatency = 50 * time.Microsecond
)

// window counts requests and their latencies in one-second slots over the
// last WindowSeconds seconds, for requests per second and latency
// percentiles that reflect now (the Prometheus histograms hold the whole
// history, and percentiles over a time range are Prometheus's job).
type window struct {
	mu    sync.Mutex
	slots [WindowSeconds + 1]windowSlot // the current second, the whole ones before it, and the one partly inside
}

// windowSlot is one second of requests.
type windowSlot struct {
	sec     int64 // unix second it counts; a slot whose sec is past is stale
	count   uint64
	buckets [windowBuckets]uint32
}

func newWindow() *window { return &window{} }

// observe counts a request that ended at end and took d.
func (w *window) observe(end time.Time, d time.Duration) {
	sec := end.Unix()
	b := latencyBucket(d)
	w.mu.Lock()
	s := &w.slots[uint64(sec)%uint64(len(w.slots))]
	if s.sec != sec {
		*s = windowSlot{sec: sec}
	}
	s.count++
	s.buckets[b]++
	w.mu.Unlock()
}

// summary reports the window as of now; since is when counting began, so
// that the rate over a window not yet full is not understated.
//
// The window is the last WindowSeconds seconds exactly: the current second
// so far, the WindowSeconds-1 whole seconds before it, and of the second
// before those the part still inside, its count weighted by that part (as
// if its requests were spread evenly over it). So the rate times
// WindowSeconds never exceeds what was answered. Percentiles count that
// oldest second whole.
func (w *window) summary(now, since time.Time) Traffic {
	nowSec := now.Unix()
	oldest := nowSec - WindowSeconds
	inside := 1 - float64(now.Nanosecond())/1e9 // of the oldest second
	var whole, partial uint64
	var buckets [windowBuckets]uint64
	w.mu.Lock()
	for i := range w.slots {
		s := &w.slots[i]
		if s.sec < oldest || s.sec > nowSec {
			continue
		}
		if s.sec == oldest {
			partial = s.count
		} else {
			whole += s.count
		}
		for b, n := range s.buckets {
			buckets[b] += uint64(n)
		}
	}
	w.mu.Unlock()

	span := time.Duration(WindowSeconds) * time.Second
	if up := now.Sub(since); up < span {
		span = max(up, time.Second)
	}
	total := whole + partial
	count := float64(whole) + float64(partial)*inside
	t := Traffic{Window: WindowSeconds * time.Second, Requests: uint64(math.Round(count))}
	if total == 0 {
		return t
	}
	t.Rate = count / span.Seconds()
	t.P50 = percentile(&buckets, total, 0.50)
	t.P90 = percentile(&buckets, total, 0.90)
	t.P99 = percentile(&buckets, total, 0.99)
	return t
}

// latencyBucket is the bucket that counts d: bucket 0 holds everything
// under windowMinLatency, bucket i ≥ 1 latencies from
// windowMinLatency·2^((i-1)/bucketsPerOctave) up to
// windowMinLatency·2^(i/bucketsPerOctave).
func latencyBucket(d time.Duration) int {
	if d < windowMinLatency {
		return 0
	}
	i := 1 + int(math.Log2(float64(d)/float64(windowMinLatency))*bucketsPerOctave)
	return min(i, windowBuckets-1)
}

// bucketMid is a representative latency of bucket i: the geometric middle
// of its bounds.
func bucketMid(i int) time.Duration {
	if i == 0 {
		return windowMinLatency / 2
	}
	return time.Duration(float64(windowMinLatency) * math.Exp2((float64(i)-0.5)/bucketsPerOctave))
}

// percentile is the latency below which fraction q of the total counted in
// buckets fall.
func percentile(buckets *[windowBuckets]uint64, total uint64, q float64) time.Duration {
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, n := range buckets {
		seen += n
		if seen >= rank && n > 0 {
			return bucketMid(i)
		}
	}
	return bucketMid(windowBuckets - 1)
}
