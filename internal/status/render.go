package status

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"taipan/internal/metrics"
)

// Render writes st as a compact table: two totals lines, then one line
// per worker with its oldest running request and that request's age.
// Request lines longer than width columns are cut (width <= 0: never).
func Render(w io.Writer, st *metrics.Status, width int) error {
	state := "ready"
	switch {
	case st.Draining:
		state = "draining"
	case !st.Ready:
		state = "not ready"
	}
	fmt.Fprintf(w, "taipan %s  pid %d  up %s  %s  workers %d  connections %d  queue %d  in flight %d\n",
		st.Version, st.Pid, uptime(st.UptimeSeconds), state, len(st.Workers), st.Connections, st.QueueDepth, st.InFlight)
	fmt.Fprintf(w, "%.2f req/s over %ds  total %d  latency p50 %s  p90 %s  p99 %s\n\n",
		st.RequestsPerSecond, st.WindowSeconds, st.RequestsTotal,
		latency(st.Latency.P50), latency(st.Latency.P90), latency(st.Latency.P99))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPID\tPOOL\tSTATE\tSERVED\tRSS\tRUN\tAGE\tREQUEST")
	for _, wk := range st.Workers {
		age, line := "-", "-"
		if len(wk.Requests) > 0 {
			age = requestAge(wk.Requests[0].AgeSeconds)
			line = clean(wk.Requests[0].Line)
			if more := wk.Running - 1; more > 0 {
				line = fmt.Sprintf("%s (+%d)", line, more)
			}
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n",
			wk.ID, wk.Pid, wk.Pool, wk.State, wk.RequestsServed, rss(wk.RSSBytes), wk.Running, age, cut(line, width))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing status: %w", err)
	}
	return nil
}

// uptime is a duration in seconds as 45s, 3m07s, 2h05m or 4d03h.
func uptime(s float64) string {
	d := time.Duration(s) * time.Second
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// requestAge is a request's age: 0.3s, 12.5s, then as uptime past a
// minute.
func requestAge(s float64) string {
	if s < 60 {
		return fmt.Sprintf("%.1fs", s)
	}
	return uptime(s)
}

// latency is a percentile in seconds, in a readable unit; "-" when there
// was no request in the window.
func latency(s *float64) string {
	switch {
	case s == nil:
		return "-"
	case *s < 0.001:
		return fmt.Sprintf("%.0fµs", *s*1e6)
	case *s < 1:
		return fmt.Sprintf("%.1fms", *s*1e3)
	}
	return fmt.Sprintf("%.2fs", *s)
}

// rss is a resident set size in binary units; "-" when it could not be
// read.
func rss(b *int64) string {
	if b == nil {
		return "-"
	}
	if *b < 1024 {
		return fmt.Sprintf("%dB", *b)
	}
	v, unit := float64(*b)/1024, "K"
	for _, next := range []string{"M", "G"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, next
	}
	return fmt.Sprintf("%.1f%s", v, unit)
}

// cut shortens s to at most width runes, marking the cut with "…".
func cut(s string, width int) string {
	if width <= 0 {
		return s
	}
	r := []rune(s)
	if len(r) <= width {
		return s
	}
	if width == 1 {
		return "…"
	}
	return string(r[:width-1]) + "…"
}

// clean replaces control characters (a request line is whatever a client
// sent) so that they cannot move the terminal's cursor or change its
// colours.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}
