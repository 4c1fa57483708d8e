package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// writes records each Write call separately.
type writes struct {
	mu sync.Mutex
	w  []string
}

func (c *writes) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.w = append(c.w, string(p))
	return len(p), nil
}

func (c *writes) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.w...)
}

func fixedClock(lg *Logger) *Logger {
	lg.clock = func() time.Time { return time.Date(2026, 11, 22, 18, 19, 53, 123456789, time.UTC) }
	lg.pid = 1234
	return lg
}

func TestText(t *testing.T) {
	out := &writes{}
	lg := fixedClock(New(out, Info))
	lg.Debugf("hidden")
	lg.Infof("Listening at: %s", "http://127.0.0.1:8000")
	lg.Errorf("Error handling request GET /\nTraceback (most recent call last):\n  boom\n")
	lg.WorkerLogf(Warning, 3, 4321, "from the app")
	lg.WorkerLogf(Debug, 3, 4321, "hidden too")
	want := []string{
		"[2026-11-22 18:19:53 +0000] [1234] [INFO] Listening at: http://127.0.0.1:8000\n",
		"[2026-11-22 18:19:53 +0000] [1234] [ERROR] Error handling request GET /\nTraceback (most recent call last):\n  boom\n",
		"[2026-11-22 18:19:53 +0000] [1234] [WARNING] [worker 3 pid 4321] from the app\n",
	}
	if got := out.all(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

type jsonEntry struct {
	Time      string `json:"time"`
	Level     string `json:"level"`
	Pid       int    `json:"pid"`
	Worker    *int   `json:"worker"`
	WorkerPid *int   `json:"worker_pid"`
	Message   string `json:"message"`
}

func parseJSONEntries(t *testing.T, s string) []jsonEntry {
	t.Helper()
	var entries []jsonEntry
	for line := range strings.Lines(s) {
		var e jsonEntry
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("entry %q: %v", line, err)
		}
		entries = append(entries, e)
	}
	return entries
}

func TestJSON(t *testing.T) {
	var buf bytes.Buffer
	lg := fixedClock(NewFormat(&buf, Info, JSON))
	lg.Infof("Listening at: %s", "http://127.0.0.1:8000")
	tb := "Error handling request GET /\nTraceback (most recent call last):\n  File \"app.py\", line 1\nRuntimeError: \"boom\" \\ \x01 \xff"
	lg.WorkerLogf(Error, 3, 4321, "%s", tb)
	lg.Raw([]byte("fork server line 1\nfork server line 2\n"))
	entries := parseJSONEntries(t, buf.String())
	if len(entries) != 4 {
		t.Fatalf("%d entries, want 4:\n%s", len(entries), buf.String())
	}
	e := entries[0]
	if e.Time != "2026-11-22T18:19:53.123Z" || e.Level != "INFO" || e.Pid != 1234 || e.Worker != nil || e.WorkerPid != nil || e.Message != "Listening at: http://127.0.0.1:8000" {
		t.Errorf("entry %+v", e)
	}
	e = entries[1]
	wantTB := strings.Replace(tb, "\xff", "\ufffd", 1)
	if e.Level != "ERROR" || e.Worker == nil || *e.Worker != 3 || e.WorkerPid == nil || *e.WorkerPid != 4321 || e.Message != wantTB {
		t.Errorf("traceback entry %+v", e)
	}
	if entries[2].Message != "fork server line 1" || entries[3].Message != "fork server line 2" {
		t.Errorf("raw lines: %+v", entries[2:])
	}
}

func TestFormatFlag(t *testing.T) {
	var f Format
	for _, tc := range []struct {
		in   string
		want Format
	}{{"json", JSON}, {"JSON", JSON}, {"text", Text}} {
		if err := f.Set(tc.in); err != nil || f != tc.want || !strings.EqualFold(f.String(), tc.in) {
			t.Errorf("Set(%q): %v, %v", tc.in, f, err)
		}
	}
	if err := f.Set("xml"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("Set(xml): %v", err)
	}
}

func TestRelay(t *testing.T) {
	out := &writes{}
	lg := fixedClock(New(out, Critical)) // the app's output is shown at every level
	long := strings.Repeat("x", maxOutputLine+10)
	r := strings.NewReader("first line\r\n\nsecond\n" + long + "\nno newline at exit")
	lg.Relay(r, 7, 999)
	prefix := "[2026-11-22 18:19:53 +0000] [1234] [INFO] [worker 7 pid 999] "
	want := []string{
		prefix + "first line\n",
		prefix + "\n",
		prefix + "second\n",
		prefix + long[:maxOutputLine] + "\n",
		prefix + long[maxOutputLine:] + "\n",
		prefix + "no newline at exit\n",
	}
	got := out.all()
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %.80q, want %.80q", i, got[i], want[i])
		}
	}

	var buf bytes.Buffer
	lg = fixedClock(NewFormat(&buf, Info, JSON))
	lg.Relay(strings.NewReader("hello \"app\"\npartial"), 2, 55)
	entries := parseJSONEntries(t, buf.String())
	if len(entries) != 2 || entries[0].Message != `hello "app"` || entries[1].Message != "partial" ||
		*entries[0].Worker != 2 || *entries[0].WorkerPid != 55 {
		t.Errorf("JSON relay: %s", buf.String())
	}
}

// Relayed lines from many workers and log entries from many goroutines
// come out whole.
func TestConcurrentEntriesWhole(t *testing.T) {
	out := &writes{}
	lg := New(out, Info)
	var wg sync.WaitGroup
	for w := 1; w <= 4; w++ {
		pr, pw := io.Pipe()
		wg.Add(2)
		go func() { defer wg.Done(); lg.Relay(pr, w, 100+w) }()
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				fmt.Fprintf(pw, "worker-%d-line-%d\n", w, i)
				lg.Infof("taipan-%d-%d", w, i)
			}
			pw.Close()
		}()
	}
	wg.Wait()
	entry := regexp.MustCompile(`^\[[^\]]+\] \[\d+\] \[INFO\] (\[worker (\d) pid 10(\d)\] worker-(\d)-line-\d+|taipan-\d-\d+)\n$`)
	got := out.all()
	if len(got) != 4*200*2 {
		t.Errorf("%d entries, want %d", len(got), 4*200*2)
	}
	for _, e := range got {
		m := entry.FindStringSubmatch(e)
		if m == nil || m[2] != m[3] || m[3] != m[4] {
			t.Fatalf("torn or mistagged entry %q", e)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `"quoted"`, `back\slash`, "nl\ncr\rtab\t", "\x00\x01\x1f\x7f",
		"ünïcødé 日本", "emoji 😀", "bad \xff\xfe utf8", "torn \xe6\x97", "sep \u2028 \u2029",
		"<script>&", strings.Repeat("ab\"", 100),
	} {
		b := AppendJSONString([]byte("x"), s)
		if b[0] != 'x' {
			t.Fatalf("prefix lost")
		}
		var got string
		if err := json.Unmarshal(b[1:], &got); err != nil {
			t.Errorf("%q: %s does not parse: %v", s, b[1:], err)
			continue
		}
		want, _ := json.Marshal(s) // encoding/json's reading of s
		var wantS string
		json.Unmarshal(want, &wantS)
		if got != wantS {
			t.Errorf("%q: round trip %q, want %q", s, got, wantS)
		}
		if bytes.ContainsAny(b, "\n\r") {
			t.Errorf("%q: raw line break in %s", s, b)
		}
	}
	if n := testing.AllocsPerRun(100, func() { AppendJSONString(make([]byte, 0, 64), "a \"b\"\n\xff") }); n > 1 {
		t.Errorf("%v allocations", n)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("hello\n\"x\"\xff")
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
		want, _ := json.Marshal(s)
		var wantS string
		json.Unmarshal(want, &wantS)
		if got != wantS {
			t.Fatalf("%q: got %q, want %q", s, got, wantS)
		}
	})
}

// logrotate: rename the file, Reopen, and writes go to a new file at the
// path; the renamed file keeps what came before. Writes racing the reopen
// land whole in one file or the other.
func TestFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "error.log")
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lg := New(f, Info)
	lg.Infof("before")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	lg.Infof("after rename, before reopen") // still the old file
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	lg.Infof("after reopen")
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), "before") || !strings.Contains(string(old), "before reopen") || strings.Contains(string(old), "after reopen") {
		t.Errorf("old file: %q", old)
	}
	if strings.Count(string(cur), "\n") != 1 || !strings.Contains(string(cur), "after reopen") {
		t.Errorf("new file: %q", cur)
	}

	// Concurrent writers while rotating repeatedly: nothing lost or torn.
	var wg sync.WaitGroup
	const writers, each = 4, 300
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				fmt.Fprintf(f, "w%d-%d %s\n", w, i, strings.Repeat("z", i))
			}
		}()
	}
	for i := 2; i < 12; i++ {
		time.Sleep(time.Millisecond)
		os.Rename(path, fmt.Sprintf("%s.%d", path, i))
		if err := f.Reopen(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	seen := map[string]bool{}
	files, _ := filepath.Glob(path + "*")
	for _, name := range files {
		b, _ := os.ReadFile(name)
		for line := range strings.Lines(string(b)) {
			id, zs, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
			var w, i int
			if _, err := fmt.Sscanf(id, "w%d-%d", &w, &i); !ok || err != nil {
				continue // the entries of the first part
			}
			if len(zs) != i || !strings.HasSuffix(line, "\n") {
				t.Errorf("torn line in %s: %q", name, line)
			}
			seen[id] = true
		}
	}
	if len(seen) != writers*each {
		t.Errorf("%d of %d lines found across %d files", len(seen), writers*each, len(files))
	}

	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x\n")); err == nil {
		t.Errorf("write after Close succeeded")
	}
	if err := f.Reopen(); err == nil {
		t.Errorf("Reopen after Close succeeded")
	}
}

func TestFileReopenFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "access.log")
	os.Mkdir(filepath.Dir(path), 0o755)
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	os.Rename(filepath.Dir(path), filepath.Join(dir, "moved")) // the path can no longer be created
	if err := f.Reopen(); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Reopen: %v, want an error naming %s", err, path)
	}
	if _, err := f.Write([]byte("still here\n")); err != nil {
		t.Errorf("write after a failed reopen: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "moved", "access.log"))
	if string(b) != "still here\n" {
		t.Errorf("old file: %q", b)
	}
}
