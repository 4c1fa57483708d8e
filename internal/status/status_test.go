package status

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"taipan/internal/metrics"
)

func ptr[T any](v T) *T { return &v }

// sample is a Status with a busy worker (two requests, one listed), an idle
// one whose RSS could not be read, and a control character in a line.
func sample() *metrics.Status {
	return &metrics.Status{
		Version: "0.1.0", Pid: 4221, UptimeSeconds: 3725, Ready: true, Connections: 12,
		RequestsTotal: 181234, WindowSeconds: 10, RequestsPerSecond: 52.4,
		Latency:    metrics.LatencyStatus{P50: ptr(0.000421), P90: ptr(0.02362), P99: ptr(1.5)},
		QueueDepth: 3, InFlight: 2,
		Workers: []metrics.WorkerStatus{
			{ID: 1, Pid: 4231, Pool: "main", State: "busy", RequestsServed: 90211, Running: 2, RSSBytes: ptr(int64(31457280)),
				Requests: []metrics.RequestStatus{{Line: "GET /reports?year=2025", AgeSeconds: 75.2}, {Line: "GET /b", AgeSeconds: 0.1}}},
			{ID: 2, Pid: 4229, Pool: "main", State: "idle", RequestsServed: 91023},
			{ID: 3, Pid: 4230, Pool: "/api", State: "busy", Running: 1, RSSBytes: ptr(int64(900)),
				Requests: []metrics.RequestStatus{{Line: "GET /api/\x1b[2Jx", AgeSeconds: 1.25}}},
		},
	}
}

func TestRender(t *testing.T) {
	var b bytes.Buffer
	if err := Render(&b, sample(), 0); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for _, want := range []string{
		"taipan 0.1.0  pid 4221  up 1h02m  ready  workers 3  connections 12  queue 3  in flight 2",
		"52.40 req/s over 10s  total 181234  latency p50 421µs  p90 23.6ms  p99 1.50s",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no line %q in\n%s", want, out)
		}
	}
	if len(lines) != 7 { // 2 totals, a blank, the header, 3 workers
		t.Fatalf("%d lines, want 7:\n%s", len(lines), out)
	}
	for i, want := range [][]string{
		{"ID", "PID", "POOL", "STATE", "SERVED", "RSS", "RUN", "AGE", "REQUEST"},
		{"1", "4231", "main", "busy", "90211", "30.0M", "2", "1m15s", "GET", "/reports?year=2025", "(+1)"},
		{"2", "4229", "main", "idle", "91023", "-", "0", "-", "-"},
		{"3", "4230", "/api", "busy", "0", "900B", "1", "1.2s", "GET", "/api/?[2Jx"},
	} {
		if got := strings.Fields(lines[3+i]); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("row %d: %q, want %q", i, got, want)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("a control character from a request line reached the terminal: %q", out)
	}
}

func TestRenderStates(t *testing.T) {
	st := &metrics.Status{Version: "x", Draining: true}
	var b bytes.Buffer
	Render(&b, st, 0)
	if !strings.Contains(b.String(), "  draining  workers 0") || !strings.Contains(b.String(), "p50 -  p90 -  p99 -") {
		t.Errorf("draining, no traffic:\n%s", b.String())
	}
	b.Reset()
	Render(&b, &metrics.Status{}, 0)
	if !strings.Contains(b.String(), "  not ready  ") {
		t.Errorf("not ready:\n%s", b.String())
	}
}

func TestFormats(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{uptime(0), "0s"}, {uptime(59.9), "59s"}, {uptime(187), "3m07s"}, {uptime(7500), "2h05m"}, {uptime(97300), "1d03h"},
		{requestAge(0.04), "0.0s"}, {requestAge(12.46), "12.5s"}, {requestAge(61), "1m01s"},
		{rss(ptr(int64(2048))), "2.0K"}, {rss(ptr(int64(5 << 30))), "5.0G"}, {rss(ptr(int64(3 << 40))), "3072.0G"},
		{cut("GET /abcdef", 8), "GET /ab…"}, {cut("GET /", 8), "GET /"}, {cut("GET /", 0), "GET /"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestNewClient(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:9100":     "http://127.0.0.1:9100/status.json",
		":9100":              "http://127.0.0.1:9100/status.json",
		"0.0.0.0:9100":       "http://127.0.0.1:9100/status.json",
		"[::1]:9100":         "http://[::1]:9100/status.json",
		"http://h:1/admin/":  "http://h:1/admin/status.json",
		"admin.internal:900": "http://admin.internal:900/status.json",
	} {
		c, err := NewClient(addr)
		if err != nil || c.URL != want {
			t.Errorf("NewClient(%q) = %v, %v; want %s", addr, c, err, want)
		}
	}
	for _, bad := range []string{"9100", "127.0.0.1:99999", "127.0.0.1:0", "h:http", "h:-1"} {
		if _, err := NewClient(bad); err == nil {
			t.Errorf("NewClient(%q): no error", bad)
		}
	}
}

func TestParseArgs(t *testing.T) {
	env := func(v string) Env {
		return Env{Stderr: &bytes.Buffer{}, Getenv: func(k string) string {
			if k == "TAIPAN_METRICS_BIND" {
				return v
			}
			return ""
		}}
	}
	for _, c := range []struct {
		args      []string
		envAddr   string
		want      string
		wantError bool
	}{
		{nil, "", DefaultAddr, false},
		{nil, "10.0.0.1:9", "10.0.0.1:9", false},
		{[]string{"--metrics-bind", "h:1"}, "10.0.0.1:9", "h:1", false},
		{[]string{"--metrics-bind=h:1"}, "", "h:1", false},
		{[]string{"h:2"}, "", "h:2", false},
		{[]string{"--metrics-bind", "h:1", "h:2"}, "", "", true},
		{[]string{"h:1", "h:2"}, "", "", true},
		{[]string{"--bogus"}, "", "", true},
	} {
		got, err := parseArgs("status", c.args, env(c.envAddr))
		if (err != nil) != c.wantError || got != c.want {
			t.Errorf("parseArgs(%q) = %q, %v; want %q (error %v)", c.args, got, err, c.want, c.wantError)
		}
	}
}

func TestMain(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status.json" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(sample())
	}))
	defer srv.Close()
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), "status", args, Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }})
		return code, out.String(), errOut.String()
	}
	if code, out, errOut := run(srv.Listener.Addr().String()); code != 0 || !strings.Contains(out, "GET /reports?year=2025 (+1)") || errOut != "" {
		t.Errorf("status: %d\n%s\n%s", code, out, errOut)
	}
	if code, _, errOut := run("--metrics-bind", srv.URL+"/nope/"); code != 1 || !strings.Contains(errOut, "404 Not Found") || !strings.Contains(errOut, "--metrics-bind address?") {
		t.Errorf("404: %d %q", code, errOut)
	}
	// An app's port answers its own page: not taken for a broken taipan.
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello from the app")) }))
	defer app.Close()
	if code, _, errOut := run(app.Listener.Addr().String()); code != 1 || !strings.Contains(errOut, "not taipan's status") || !strings.Contains(errOut, "--metrics-bind address?") {
		t.Errorf("an app's port: %d %q", code, errOut)
	}
	addr := srv.Listener.Addr().String()
	srv.Close()
	code, out, errOut := run(addr)
	if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "taipan status: cannot reach taipan at http://"+addr+"/status.json: ") {
		t.Errorf("unreachable: %d %q %q", code, out, errOut)
	}
	for args, want := range map[string]string{
		"--bogus":        "taipan status: unknown flag --bogus (see taipan status --help)\n",
		"--metrics-bind": "taipan status: flag --metrics-bind needs a value\n",
	} {
		if code, _, errOut := run(args); code != 2 || errOut != want {
			t.Errorf("%s: exit %d %q, want 2 and %q alone", args, code, errOut, want)
		}
	}
	if code, _, _ := run("a:1", "b:2"); code != 2 {
		t.Errorf("two addresses: exit %d, want 2", code)
	}
	if code, _, errOut := run("127.0.0.1:99999"); code != 2 || !strings.Contains(errOut, "from 1 to 65535") {
		t.Errorf("port out of range: exit %d %q, want 2 and the range", code, errOut)
	}
}

func TestTop(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(sample())
	}))
	defer srv.Close()
	c, _ := NewClient(srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	// Quit once the first frame is drawn (the clear screen is a write of
	// its own before it).
	if err := Top(ctx, c, strings.NewReader(""), writeFunc(func(p []byte) {
		out.Write(p)
		if bytes.Contains(p, []byte(ansiClearBelow)) {
			cancel()
		}
	})); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.HasPrefix(s, ansiClearScreen+ansiHome) || !strings.Contains(s, "GET /reports?year=2025") || !strings.HasSuffix(s, ansiClearBelow) {
		t.Errorf("top's frame: %q", s)
	}
	c.URL = srv.URL + "/unreachable"
	srv.Close()
	if err := Top(context.Background(), c, nil, &out); err == nil || !strings.Contains(err.Error(), "cannot reach taipan") {
		t.Error("top against nothing: no error")
	}
}

// writeFunc is an io.Writer calling itself.
type writeFunc func(p []byte)

func (f writeFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }
