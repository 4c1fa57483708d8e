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
// '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"', and a
// newline.
func (r *AccessRecord) AppendGunicorn(dst []byte) []byte {
	dst = appendOrDash(dst, r.RemoteAddr)
	dst = append(dst, " - - "...)
	dst = r.Start.AppendFormat(dst, "[02/Jan/2006:15:04:05 -0700]")
	dst = append(dst, " \""...)
	dst = append(dst, r.RequestLine...)
	dst = append(dst, "\" "...)
	dst = strconv.AppendInt(dst, int64(r.Status), 10)
	dst = append(dst, ' ')
	if r.BodyBytes > 0 {
		dst = strconv.AppendInt(dst, r.BodyBytes, 10)
	} else {
		dst = append(dst, '-')
	}
	dst = append(dst, " \""...)
	dst = appendOrDash(dst, r.Referer)
	dst = append(dst, "\" \""...)
	dst = appendOrDash(dst, r.UserAgent)
	dst = append(dst, "\"\n"...)
	return dst
}

func appendOrDash(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, '-')
	}
	return append(dst, s...)
}

// DefaultAccessLogFlush is how often an AccessLogWriter flushes by default.
const DefaultAccessLogFlush = 200 * time.Millisecond

// AccessLogWriter formats access records in gunicorn's format into a
// buffer that a background goroutine flushes periodically, so logging
// costs a formatted append per request instead of a write(2).
type AccessLogWriter struct {
	mu     sync.Mutex
	bw     *bufio.Writer
	line   []byte
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

// NewAccessLogWriter returns an AccessLogWriter writing to w and flushing
// every interval (DefaultAccessLogFlush when interval <= 0). Close it to
// flush the rest and stop its goroutine.
func NewAccessLogWriter(w io.Writer, interval time.Duration) *AccessLogWriter {
	if interval <= 0 {
		interval = DefaultAccessLogFlush
	}
	a := &AccessLogWriter{
		bw:   bufio.NewWriterSize(w, 64<<10),
		stop: make(chan struct{}),
		done: make(chan struct{}),
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
				a.bw.Flush()
			}
			a.mu.Unlock()
		}
	}
}

// Log formats r and buffers the line. It suits Config.AccessLog.
func (a *AccessLogWriter) Log(r *AccessRecord) {
	a.mu.Lock()
	if !a.closed {
		a.line = r.AppendGunicorn(a.line[:0])
		a.bw.Write(a.line)
	}
	a.mu.Unlock()
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
	return a.bw.Flush()
}
