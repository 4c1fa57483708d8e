// Package logging is taipan's error log: leveled entries in gunicorn's
// layout, "[2026-11-22 18:19:53 +0000] [1234] [INFO] message", or one JSON
// object per line, each written whole so entries from many goroutines and
// workers never interleave.
package logging

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Level orders log lines by severity.
type Level int

// The levels, named as in gunicorn's --log-level.
const (
	Debug Level = iota
	Info
	Warning
	Error
	Critical
)

var levelNames = [...]string{"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}

func (l Level) String() string { return levelNames[l] }

// ParseLevel reads a --log-level value (case-insensitive; "warn" is accepted).
func ParseLevel(s string) (Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return Debug, nil
	case "info":
		return Info, nil
	case "warning", "warn":
		return Warning, nil
	case "error":
		return Error, nil
	case "critical":
		return Critical, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warning, error or critical)", s)
}

// Format is the layout of the error log's entries. It is a flag.Value, so
// --log-format can be declared with flag.Var.
type Format int

// The formats.
const (
	// Text is gunicorn's layout; a multi-line message keeps its line
	// breaks after the prefix.
	Text Format = iota
	// JSON is one object per entry and per line: time, level, pid,
	// message, and worker and worker_pid for entries from a worker.
	JSON
)

func (f Format) String() string {
	if f == JSON {
		return "json"
	}
	return "text"
}

// Set parses "text" or "json".
func (f *Format) Set(s string) error {
	switch strings.ToLower(s) {
	case "text":
		*f = Text
	case "json":
		*f = JSON
	default:
		return fmt.Errorf("unknown log format %q (want text or json)", s)
	}
	return nil
}

// Layouts of the entry time.
const (
	textTime = "2006-01-02 15:04:05 -0700"
	// JSONTime is RFC 3339 with milliseconds, the time of JSON log entries.
	JSONTime = "2006-01-02T15:04:05.000Z07:00"
)

// maxKeptEntry bounds the entry buffer a Logger keeps between entries, so
// one huge traceback does not pin its memory for the life of the process.
const maxKeptEntry = 64 << 10

// Logger writes leveled entries to one destination. It is safe for
// concurrent use.
type Logger struct {
	mu     sync.Mutex
	out    io.Writer
	buf    []byte // the entry being written, reused; guarded by mu
	min    Level
	format Format
	pid    int
	clock  func() time.Time
}

// New returns a Logger writing text entries at min and above to out.
func New(out io.Writer, min Level) *Logger { return NewFormat(out, min, Text) }

// NewFormat returns a Logger writing entries at min and above to out in
// format f. Each entry reaches out in one Write call.
func NewFormat(out io.Writer, min Level, f Format) *Logger {
	return &Logger{out: out, min: min, format: f, pid: os.Getpid(), clock: time.Now}
}

// Enabled reports whether lines at l are written.
func (lg *Logger) Enabled(l Level) bool { return l >= lg.min }

// Logf writes one entry at level l. A message spanning several lines (a
// Python traceback) stays one entry.
func (lg *Logger) Logf(l Level, format string, args ...any) {
	if l < lg.min {
		return
	}
	lg.write(l, 0, 0, fmt.Sprintf(format, args...))
}

// WorkerLogf writes one entry at level l that came from the Python worker
// with the given id and pid (a LOG frame: a traceback, a message of the
// app's logging). Text entries carry "[worker ID pid PID]" before the
// message, JSON entries worker and worker_pid fields.
func (lg *Logger) WorkerLogf(l Level, worker, pid int, format string, args ...any) {
	if l < lg.min {
		return
	}
	lg.write(l, worker, pid, fmt.Sprintf(format, args...))
}

// Debugf logs at Debug.
func (lg *Logger) Debugf(format string, args ...any) { lg.Logf(Debug, format, args...) }

// Infof logs at Info.
func (lg *Logger) Infof(format string, args ...any) { lg.Logf(Info, format, args...) }

// Warnf logs at Warning.
func (lg *Logger) Warnf(format string, args ...any) { lg.Logf(Warning, format, args...) }

// Errorf logs at Error.
func (lg *Logger) Errorf(format string, args ...any) { lg.Logf(Error, format, args...) }

// Criticalf logs at Critical.
func (lg *Logger) Criticalf(format string, args ...any) { lg.Logf(Critical, format, args...) }

// Raw writes p as it is, under the same lock as entries; used to relay
// output that is already line-formatted. In JSON format each line of p
// becomes an Info entry instead, so the log stays one object per line.
func (lg *Logger) Raw(p []byte) {
	if lg.format == JSON {
		for line := range strings.Lines(string(p)) {
			lg.write(Info, 0, 0, line)
		}
		return
	}
	lg.mu.Lock()
	lg.out.Write(p)
	lg.mu.Unlock()
}

// write formats one entry and writes it with one Write, whatever the level
// (the callers filter).
func (lg *Logger) write(l Level, worker, pid int, msg string) {
	msg = strings.TrimRight(msg, "\r\n")
	now := lg.clock()
	lg.mu.Lock()
	defer lg.mu.Unlock()
	b := lg.buf[:0]
	if lg.format == JSON {
		b = lg.appendJSON(b, now, l, worker, pid, msg)
	} else {
		b = lg.appendText(b, now, l, worker, pid, msg)
	}
	lg.out.Write(b)
	if cap(b) > maxKeptEntry {
		b = nil
	}
	lg.buf = b
}

func (lg *Logger) appendText(b []byte, now time.Time, l Level, worker, pid int, msg string) []byte {
	b = append(b, '[')
	b = now.AppendFormat(b, textTime)
	b = append(b, "] ["...)
	b = strconv.AppendInt(b, int64(lg.pid), 10)
	b = append(b, "] ["...)
	b = append(b, levelNames[l]...)
	b = append(b, "] "...)
	if worker != 0 || pid != 0 {
		b = append(b, "[worker "...)
		b = strconv.AppendInt(b, int64(worker), 10)
		b = append(b, " pid "...)
		b = strconv.AppendInt(b, int64(pid), 10)
		b = append(b, "] "...)
	}
	b = append(b, msg...)
	return append(b, '\n')
}

func (lg *Logger) appendJSON(b []byte, now time.Time, l Level, worker, pid int, msg string) []byte {
	b = append(b, `{"time":"`...)
	b = now.AppendFormat(b, JSONTime)
	b = append(b, `","level":"`...)
	b = append(b, levelNames[l]...)
	b = append(b, `","pid":`...)
	b = strconv.AppendInt(b, int64(lg.pid), 10)
	if worker != 0 || pid != 0 {
		b = append(b, `,"worker":`...)
		b = strconv.AppendInt(b, int64(worker), 10)
		b = append(b, `,"worker_pid":`...)
		b = strconv.AppendInt(b, int64(pid), 10)
	}
	b = append(b, `,"message":`...)
	b = AppendJSONString(b, msg)
	return append(b, "}\n"...)
}
