package edge

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// sampleRecord is a request with every field set.
func sampleRecord() *AccessRecord {
	return &AccessRecord{
		RemoteAddr:   "203.0.113.7",
		Start:        time.Date(2000, 10, 10, 13, 55, 36, 0, time.FixedZone("", -7*3600)),
		Duration:     1234567 * time.Microsecond,
		RequestLine:  "POST /a/b%20c?x=1&y=2 HTTP/1.1",
		Method:       "POST",
		Target:       "/a/b%20c?x=1&y=2",
		Proto:        "HTTP/1.1",
		Status:       201,
		BodyBytes:    42,
		Referer:      "http://ref.example/",
		UserAgent:    "agent/1.0",
		RequestBytes: 17,
		Header: []HeaderField{
			{Name: "Host", Value: "example.com"},
			{Name: "Authorization", Value: "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret:x"))},
			{Name: "X-Request-Id", Value: "abc-123"},
			{Name: "x-request-id", Value: "second"},
			{Name: "X-Quoted", Value: `say "hi"`},
		},
		Worker:    3,
		WorkerPid: 4321,
	}
}

func mustFormat(t testing.TB, spec string, getenv func(string) string) AccessFormat {
	t.Helper()
	f, err := ParseAccessFormat(spec, getenv)
	if err != nil {
		t.Fatalf("ParseAccessFormat(%q): %v", spec, err)
	}
	return f
}

func TestAccessFormatAtoms(t *testing.T) {
	r := sampleRecord()
	env := func(k string) string {
		if k == "DEPLOY" {
			return `blue"green`
		}
		return ""
	}
	pid := fmt.Sprintf("<%d>", os.Getpid())
	for _, tc := range []struct{ spec, want string }{
		{"%(h)s", "203.0.113.7"},
		{"%(l)s", "-"},
		{"%(u)s", "alice"},
		{"%(t)s", "[10/Oct/2000:13:55:36 -0700]"},
		{"%(r)s", "POST /a/b%20c?x=1&y=2 HTTP/1.1"},
		{"%(m)s", "POST"},
		{"%(U)s", "/a/b%20c"},
		{"%(q)s", "x=1&y=2"},
		{"%(H)s", "HTTP/1.1"},
		{"%(s)s", "201"},
		{"%(B)s", "42"},
		{"%(b)s", "42"},
		{"%(f)s", "http://ref.example/"},
		{"%(a)s", "agent/1.0"},
		{"%(T)s", "1"},
		{"%(D)s", "1234567"},
		{"%(M)s", "1234"},
		{"%(L)s", "1.234567"},
		{"%(p)s", pid},
		{"%(w)s", "3"},
		{"%(wp)s", "4321"},
		{"%({X-Request-Id}i)s", "abc-123"}, // the first of two
		{"%({x-REQUEST-id}i)s", "abc-123"}, // case-insensitive
		{"%({X-Quoted}i)s", `say \"hi\"`},  // gunicorn's escaping
		{"%({X-Missing}i)s", "-"},
		{"%({DEPLOY}e)s", `blue\"green`},
		{"%({NOPE}e)s", "-"},
		{"100%% %(s)s", "100% 201"},
		{"plain text", "plain text"},
		{`[%(m)s|%(U)s|%(s)s]`, "[POST|/a/b%20c|201]"},
		{GunicornFormat, `203.0.113.7 - alice [10/Oct/2000:13:55:36 -0700] "POST /a/b%20c?x=1&y=2 HTTP/1.1" 201 42 "http://ref.example/" "agent/1.0"`},
	} {
		got := string(mustFormat(t, tc.spec, env)(nil, r))
		if got != tc.want+"\n" {
			t.Errorf("%s: got %q, want %q", tc.spec, got, tc.want+"\n")
		}
	}
}

func TestAccessFormatEmptyValues(t *testing.T) {
	// A request rejected while parsing: no method, headers or worker.
	r := &AccessRecord{Start: time.Unix(0, 0).UTC(), RequestLine: "BAD", Status: 400}
	f := mustFormat(t, "%(h)s %(u)s %(m)s %(U)s [%(q)s] %(H)s %(B)s %(b)s %(f)s %(a)s %(w)s %(wp)s %(L)s %({Host}i)s", nil)
	if got, want := string(f(nil, r)), "- - - - [] - 0 - - - - - 0.000000 -\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestAccessFormatNotUTF8: header bytes that are not UTF-8 (obs-text)
// reach the text log as U+FFFD, so every line is UTF-8, in the default
// format and in one with any atom; UTF-8 passes through unchanged.
func TestAccessFormatNotUTF8(t *testing.T) {
	r := sampleRecord()
	r.UserAgent = "latin\xe9 \"q\""
	r.Referer = "caf\u00e9"
	r.Header = append(r.Header, HeaderField{Name: "X-Raw", Value: "a\xff\xfeb"})
	custom := mustFormat(t, `"%(a)s" %({X-Raw}i)s %(f)s`, nil)
	for name, line := range map[string]string{
		"default": string(r.AppendGunicorn(nil)),
		"custom":  string(custom(nil, r)),
	} {
		if !utf8.ValidString(line) {
			t.Errorf("%s: line is not UTF-8: %q", name, line)
		}
		if !strings.Contains(line, "caf\u00e9") {
			t.Errorf("%s: UTF-8 Referer not kept: %q", name, line)
		}
	}
	if got, want := string(custom(nil, r)), "\"latin\ufffd \\\"q\\\"\" a\ufffdb caf\u00e9\n"; got != want {
		t.Errorf("custom format: got %q, want %q", got, want)
	}
}

func TestAccessFormatTargets(t *testing.T) {
	for _, tc := range []struct{ target, path, query string }{
		{"/x", "/x", ""},
		{"/x?", "/x", ""},
		{"/x?a=1?b", "/x", "a=1?b"},
		{"/x#frag", "/x", ""},
		{"*", "*", ""},
		{"http://h.example:8080/p?q=1", "/p", "q=1"},
		{"http://h.example?q", "/", "q"},
		{"", "", ""},
	} {
		path, query := splitTarget(tc.target)
		if path != tc.path || query != tc.query {
			t.Errorf("splitTarget(%q) = %q, %q; want %q, %q", tc.target, path, query, tc.path, tc.query)
		}
	}
}

func TestAccessFormatBasicUser(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct{ auth, want string }{
		{"Basic " + b64("bob:pw"), "bob"},
		{"basic " + b64("bob:pw"), "bob"},
		{"Basic   " + b64("bob:pw") + "  ", "bob"},
		{"Basic " + b64("b:"), "b"},
		{"Basic " + b64("bo:p"), "bo"},                         // padded "=="
		{"Basic " + b64("bob:pa"), "bob"},                      // padded "="
		{"Basic " + strings.TrimRight(b64("bo:p"), "="), "bo"}, // unpadded: accepted
		{"Basic " + b64(`a"b:pw`), `a\"b`},
		{"Basic " + b64("Zoë:pw"), "Zoë"},
		{"Basic " + b64("nocolon"), "-"},
		{"Basic " + b64(":pw"), "-"},
		{"Basic " + b64("a\nb:pw"), "-"},
		{"Basic " + b64("\xff\xfe:pw"), "-"},
		{"Basic !!!!", "-"},
		{"Basic " + b64("bob:pw") + "=", "-"},
		{"Basic " + b64("bob:pw")[:4] + "=" + b64("bob:pw")[5:], "-"},
		{"Basic " + b64("bob:p") + "*", "-"}, // bad character in the password part
		{"Bearer abc", "-"},
		{"Basic", "-"},
	} {
		r := &AccessRecord{Header: []HeaderField{{Name: "Authorization", Value: tc.auth}}}
		got := string(appendBasicUser([]byte("prefix|"), r.Header))
		if got != "prefix|"+tc.want {
			t.Errorf("%q: got %q, want %q", tc.auth, got, "prefix|"+tc.want)
		}
	}
}

func TestAccessFormatErrors(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"%(x)s", "unknown atom %(x)s"},
		{"%(h)s %(zz)s", "unknown atom %(zz)s"},
		{"%(h)d", "atom %(h): want %(h)s, got 'd'"},
		{"%(h)", "atom %(h): want %(h)s, got nothing"},
		{"%(h", `unterminated atom "%(h"`},
		{"50% off", "stray % at byte 2"},
		{"%s", "stray % at byte 0"},
		{"%({X-Served-By}o)s", "atom %({X-Served-By}o)s: response headers are not supported"},
		{"%({}i)s", "unknown atom %({}i)s"},
		{"%({Host}x)s", "unknown atom %({Host}x)s"},
		{"", "empty format"},
	} {
		_, err := ParseAccessFormat(tc.spec, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseAccessFormat(%q) = %v, want an error containing %q", tc.spec, err, tc.want)
		}
	}
}

// The compiled default format and AppendGunicorn (what the access log has
// always written) agree byte for byte.
func TestAccessFormatDefaultIsGunicorn(t *testing.T) {
	f := mustFormat(t, GunicornFormat, nil)
	records := []*AccessRecord{
		sampleRecord(),
		{RemoteAddr: "127.0.0.1", Start: time.Date(2026, 11, 22, 18, 19, 53, 0, time.UTC),
			RequestLine: "GET /x?y=1 HTTP/1.1", Status: 200, BodyBytes: 12, UserAgent: "curl/7.88.1"},
		{Start: time.Unix(1, 0).UTC(), RequestLine: "GET / HTTP/1.1", Status: 400, BodyBytes: 0},
		{RemoteAddr: "::1", Start: time.Unix(2, 0).UTC(), RequestLine: `GET /"q" HTTP/1.1`, Status: 204,
			Referer: `a"b`, UserAgent: `"quoted"`},
	}
	for _, r := range records {
		if got, want := string(f(nil, r)), string(r.AppendGunicorn(nil)); got != want {
			t.Errorf("compiled default:\n got %q\nwant %q", got, want)
		}
	}
	// The layout of the access log before formats existed, for a request
	// without Basic authentication or quotes.
	r := records[1]
	if got, want := string(f(nil, r)), `127.0.0.1 - - [22/Nov/2026:18:19:53 +0000] "GET /x?y=1 HTTP/1.1" 200 12 "-" "curl/7.88.1"`+"\n"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestAccessJSON(t *testing.T) {
	r := sampleRecord()
	r.UserAgent = "quote\" backslash\\ newline\n tab\t nul\x00 latin1\xe9 sep\u2028 ünï"
	line := AppendAccessJSON(nil, r)
	if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
		t.Fatalf("not one line: %q", line)
	}
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	want := map[string]any{
		"remote_addr":  "203.0.113.7",
		"time":         "2000-10-10T13:55:36.000-07:00",
		"method":       "POST",
		"path":         "/a/b%20c",
		"query":        "x=1&y=2",
		"protocol":     "HTTP/1.1",
		"status":       201.0,
		"bytes_out":    42.0,
		"bytes_in":     17.0,
		"duration_ms":  1234.567,
		"referer":      "http://ref.example/",
		"user_agent":   "quote\" backslash\\ newline\n tab\t nul\x00 latin1\ufffd sep\u2028 ünï",
		"worker":       3.0,
		"worker_pid":   4321.0,
		"request_line": "POST /a/b%20c?x=1&y=2 HTTP/1.1",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("fields %v, want %d of them", got, len(want))
	}

	// No worker: null.
	r = &AccessRecord{Start: time.Unix(0, 0).UTC(), Status: 404}
	got = nil
	if err := json.Unmarshal(AppendAccessJSON(nil, r), &got); err != nil {
		t.Fatal(err)
	}
	if v, ok := got["worker"]; !ok || v != nil {
		t.Errorf("worker = %#v, want null", v)
	}
}

// Formatting allocates nothing once the output buffer has grown.
func TestAccessFormatAllocs(t *testing.T) {
	all := mustFormat(t, `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s "%(f)s" "%(a)s" %(T)s %(D)s %(M)s %(L)s %(p)s %(w)s %(wp)s %({X-Request-Id}i)s %({X-Quoted}i)s %({HOME}e)s`, nil)
	r := sampleRecord()
	r.Header[1].Value = "Basic " + base64.StdEncoding.EncodeToString([]byte(`al"ice:pw`)) // the escaping path too
	buf := make([]byte, 0, 4096)
	for name, f := range map[string]AccessFormat{
		"all atoms": all,
		"default":   mustFormat(t, GunicornFormat, nil),
		"json":      AppendAccessJSON,
	} {
		if n := testing.AllocsPerRun(100, func() { buf = f(buf[:0], r) }); n != 0 {
			t.Errorf("%s: %v allocations per record", name, n)
		}
	}
	w := NewAccessLogWriterFormat(discard{}, time.Hour, all)
	defer w.Close()
	w.Log(r)
	if n := testing.AllocsPerRun(100, func() { w.Log(r) }); n != 0 {
		t.Errorf("AccessLogWriter.Log: %v allocations per record", n)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// wholeLines records the writes it gets and checks each holds whole lines.
type wholeLines struct {
	mu     sync.Mutex
	writes int
	bad    []string
	buf    bytes.Buffer
}

func (w *wholeLines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	if len(p) == 0 || p[len(p)-1] != '\n' {
		w.bad = append(w.bad, fmt.Sprintf("write of %d bytes ends mid-line", len(p)))
	}
	w.buf.Write(p)
	return len(p), nil
}

// The writer never splits a line between two writes, whatever the line
// sizes, so a log file reopened between writes gets no torn line.
func TestAccessLogWriterWholeLines(t *testing.T) {
	out := &wholeLines{}
	f := mustFormat(t, "%(r)s", nil)
	w := NewAccessLogWriterFormat(out, time.Hour, f)
	var want bytes.Buffer
	for i := 0; i < 400; i++ {
		line := fmt.Sprintf("%d %s", i, strings.Repeat("x", (i*7919)%20000))
		w.Log(&AccessRecord{RequestLine: line})
		want.WriteString(line + "\n")
		if i%97 == 0 {
			w.Flush()
		}
	}
	w.Log(&AccessRecord{RequestLine: strings.Repeat("y", 200<<10)}) // larger than the buffer
	want.WriteString(strings.Repeat("y", 200<<10) + "\n")
	w.Close()
	if len(out.bad) > 0 {
		t.Errorf("%d of %d writes split a line: %v", len(out.bad), out.writes, out.bad[0])
	}
	if out.buf.String() != want.String() {
		t.Errorf("lines lost or reordered: got %d bytes, want %d", out.buf.Len(), want.Len())
	}
}

// flakyWriter fails its writes while fail is set.
type flakyWriter struct {
	fail bool
	buf  bytes.Buffer
}

func (f *flakyWriter) Write(p []byte) (int, error) {
	if f.fail {
		return 0, errors.New("no space left on device")
	}
	return f.buf.Write(p)
}

// A failed write is reported once, its lines are dropped, and the writer
// works again once its output does (a bufio.Writer alone stays broken).
func TestAccessLogWriterWriteErrors(t *testing.T) {
	out := &flakyWriter{fail: true}
	w := NewAccessLogWriterFormat(out, time.Hour, mustFormat(t, "%(r)s", nil))
	var reported []error
	w.OnWriteError = func(err error) { reported = append(reported, err) }
	w.Log(&AccessRecord{RequestLine: "lost 1"})
	w.Flush()
	w.Log(&AccessRecord{RequestLine: "lost 2"})
	w.Flush()
	out.fail = false
	w.Log(&AccessRecord{RequestLine: "kept"})
	w.Flush()
	out.fail = true
	w.Log(&AccessRecord{RequestLine: "lost 3"})
	w.Flush()
	out.fail = false
	w.Close()
	if got := out.buf.String(); got != "kept\n" {
		t.Errorf("written %q, want only the line logged while writes worked", got)
	}
	if len(reported) != 2 {
		t.Errorf("%d errors reported, want 2 (one a failing streak): %v", len(reported), reported)
	}
}

func BenchmarkAccessFormat(b *testing.B) {
	r := sampleRecord()
	for _, bc := range []struct {
		name string
		f    AccessFormat
	}{
		{"AppendGunicorn", func(dst []byte, r *AccessRecord) []byte { return r.AppendGunicorn(dst) }},
		{"default", mustFormat(b, GunicornFormat, nil)},
		{"all-atoms", mustFormat(b, `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s "%(f)s" "%(a)s" %(T)s %(D)s %(M)s %(L)s %(p)s %(w)s %(wp)s %({X-Request-Id}i)s`, nil)},
		{"json", AppendAccessJSON},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 1024)
			for b.Loop() {
				buf = bc.f(buf[:0], r)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}
