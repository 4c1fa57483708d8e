// Package logging is taipan's error log: leveled lines in gunicorn's layout,
// "[2026-11-22 18:19:53 +0000] [1234] [INFO] message", written whole so lines
// from many goroutines and workers never interleave.
package logging

import (
	"fmt"
	"io"
	"os"
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

// Logger writes leveled lines to one destination. It is safe for concurrent use.
type Logger struct {
	mu    sync.Mutex
	out   io.Writer
	min   Level
	pid   int
	clock func() time.Time
}

// New returns a Logger writing lines at min and above to out.
func New(out io.Writer, min Level) *Logger {
	return &Logger{out: out, min: min, pid: os.Getpid(), clock: time.Now}
}

// Enabled reports whether lines at l are written.
func (lg *Logger) Enabled(l Level) bool { return l >= lg.min }

// Logf writes one line at level l. A message spanning several lines (a
// Python traceback) keeps its line breaks after the prefix.
func (lg *Logger) Logf(l Level, format string, args ...any) {
	if l < lg.min {
		return
	}
	msg := fmt.Sprintf(format, args...)
	msg = strings.TrimRight(msg, "\n")
	line := fmt.Sprintf("[%s] [%d] [%s] %s\n", lg.clock().Format("2006-01-02 15:04:05 -0700"), lg.pid, levelNames[l], msg)
	lg.mu.Lock()
	io.WriteString(lg.out, line)
	lg.mu.Unlock()
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

// Raw writes p as it is, under the same lock as log lines; used to relay
// output that is already line-formatted.
func (lg *Logger) Raw(p []byte) {
	lg.mu.Lock()
	lg.out.Write(p)
	lg.mu.Unlock()
}
