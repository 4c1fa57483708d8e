package edge

import (
	"bufio"
	"io"
	"strconv"
	"sync"
	"time"
)

// AccessRecord describes one answered request for the access log. Its
// strings point into the request; a logger must format or copy them before
// returning.
type AccessRecord struct {
	RemoteAddr  string // client IP, "" for a unix socket
	Start       time.Time
	Duration    time.Duration
	RequestLine string // "GET /x?y=1 HTTP/1.1"
	Method      string // "" when the request was rejected while parsing
	Target      string
	Proto       string
	Status      int
	BodyBytes   int64 // response body bytes sent
	Referer     string
	UserAgent   string

	RequestBytes int64         // request body bytes received
	Header       []HeaderField // the request's headers (nil when it was rejected while parsing)
	Worker       int           // id of the Python worker that served it (0: none, e.g. a static file)
	WorkerPid    int
}

// AppendGunicorn appends r in gunicorn's default access log format,
// GunicornFormat ('%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s"
// "%(a)s"'), and a newline. It is what ParseAccessFormat(GunicornFormat)
// writes, without the loop over compiled atoms.
func (r *AccessRecord) AppendGunicorn(dst []byte) []byte {
	dst = appendAtom(dst, r.RemoteAddr)
	dst = append(dst, " - "...)
	dst = appendBasicUser(dst, r.Header)
	dst = append(dst, ' ')
	dst = r.Start.AppendFormat(dst, "[02/Jan/2006:15:04:05 -0700]")
	dst = append(dst, " \""...)
	dst = appendEscaped(dst, r.RequestLine)
	dst = append(dst, "\" "...)
	dst = strconv.AppendInt(dst, int64(r.Status), 10)
	dst = append(dst, ' ')
	dst = appendCountOrDash(dst, r.BodyBytes)
	dst = append(dst, " \""...)
	dst = appendAtom(dst, r.Referer)
	dst = append(dst, "\" \""...)
	dst = appendAtom(dst, r.UserAgent)
	dst = append(dst, "\"\n"...)
	return dst
}

// DefaultAccessLogFlush is how often an AccessLogWriter flushes by default.
const DefaultAccessLogFlush = 200 * time.Millisecond

// AccessLogWriter formats access records into a buffer that a background
// goroutine flushes periodically, so logging costs a formatted append per
// request instead of a write(2). Each write it makes holds whole lines
// only, so a log file reopened between two writes gets no torn line.
type AccessLogWriter struct {
	// OnWriteError, when set before the first Log, hears of a failed write
	// (a full disk, a closed pipe) once, and again only after a write has
	// succeeded since. The lines of a failed write are dropped; later
	// ones are tried again.
	OnWriteError func(error)

	mu      sync.Mutex
	w       io.Writer
	bw      *bufio.Writer
	format  AccessFormat
	line    []byte
	closed  bool
	failing bool // the last write failed
	stop    chan struct{}
	done    chan struct{}
}

// NewAccessLogWriter returns an AccessLogWriter writing gunicorn's default
// format to w and flushing every interval (DefaultAccessLogFlush when
// interval <= 0). Close it to flush the rest and stop its goroutine.
func NewAccessLogWriter(w io.Writer, interval time.Duration) *AccessLogWriter {
	return NewAccessLogWriterFormat(w, interval, nil)
}

// NewAccessLogWriterFormat is NewAccessLogWriter with the line format:
// one compiled by ParseAccessFormat, AppendAccessJSON, or nil for
// gunicorn's default.
func NewAccessLogWriterFormat(w io.Writer, interval time.Duration, format AccessFormat) *AccessLogWriter {
	if interval <= 0 {
		interval = DefaultAccessLogFlush
	}
	if format == nil {
		format = func(dst []byte, r *AccessRecord) []byte { return r.AppendGunicorn(dst) }
	}
	a := &AccessLogWriter{
		w:      w,
		bw:     bufio.NewWriterSize(w, 64<<10),
		format: format,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go a.flusher(interval)
	return a
}

func (a *AccessLogWriter) flusher(interval time.Duration) {
	defer close(a.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			a.mu.Lock()
			if a.bw.Buffered() > 0 {
				a.flushLocked()
			}
			a.mu.Unlock()
		}
	}
}

// Log formats r and buffers the line. It suits Config.AccessLog.
func (a *AccessLogWriter) Log(r *AccessRecord) {
	a.mu.Lock()
	if !a.closed {
		a.line = a.format(a.line[:0], r)
		if len(a.line) > a.bw.Available() && a.bw.Buffered() > 0 {
			// bufio would fill the buffer with part of the line and
			// write it: flush whole lines first.
			a.flushLocked()
		}
		a.bw.Write(a.line)
		if cap(a.line) > 64<<10 {
			a.line = nil // an outsized line's buffer is not kept
		}
	}
	a.mu.Unlock()
}

// Flush writes the buffered lines now; a log file about to be reopened
// gets every line logged before.
func (a *AccessLogWriter) Flush() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.flushLocked()
}

// flushLocked writes the buffered lines. On failure it drops them and
// starts afresh (a bufio.Writer that failed once fails for good), and
// tells OnWriteError if the writes were working until now.
func (a *AccessLogWriter) flushLocked() error {
	err := a.bw.Flush()
	if err != nil {
		a.bw.Reset(a.w)
		if !a.failing && a.OnWriteError != nil {
			a.OnWriteError(err)
		}
	}
	a.failing = err != nil
	return err
}

// Close flushes buffered lines and stops the flusher. Later Logs are
// dropped.
func (a *AccessLogWriter) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	close(a.stop)
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.flushLocked()
}
