package edge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Lingering close: after answering and deciding to close, the edge shuts
// its write side and drains what the client still sends for a moment, so
// that unread request bytes do not make the kernel reset the connection
// and destroy the response before the client reads it.
const (
	lingerTimeout = 500 * time.Millisecond
	lingerMaxRead = 256 << 10
)

// maxRetainedHead is the largest head buffer a connection keeps between
// requests.
const maxRetainedHead = 64 << 10

// connState tracks a connection for Shutdown.
type connState int

const (
	stateIdle   connState = iota // waiting for the first byte of a request
	stateActive                  // reading, serving or answering a request
	stateClosed                  // closed by Shutdown
)

// reqState is what the parser learned about the current request beyond
// the Request fields: framing, connection management, log fields.
type reqState struct {
	contentLength  int64 // -1 when absent
	chunked        bool
	expectContinue bool
	expectFailed   bool
	connClose      bool
	connKeepAlive  bool
	keepAlive      bool // the client allows another request after this one
	referer        string
	userAgent      string
}

// conn is one client connection. Its buffers and request structures are
// reused from one request to the next, so a Handler must not keep the
// Request, its Header slice or the ResponseWriter after Serve returns.
type conn struct {
	srv        *Server
	rwc        net.Conn
	serverName string
	serverPort string
	remoteAddr string
	remotePort string
	scheme     string    // "http", or "https" on TLS
	state      connState // guarded by srv.mu

	cr connReader
	cw connWriter
	br *bufio.Reader
	bw *bufio.Writer

	hbuf    []byte      // request head text, line terminators removed
	lbuf    []byte      // chunked framing line
	wbuf    []byte      // response head being built
	fields  []fieldSpan // header fields within hbuf
	reqLine string      // request line, for the access log

	req    Request
	st     reqState
	body   Body
	resp   response
	rec    AccessRecord
	linger bool // drain input before closing
	served int  // requests read, counted only with MaxRequestsPerConnection

	peek    [1]byte // a byte read by a ClientGone watch, not yet consumed
	hasPeek bool

	// raw lets an idle connection wait for input without holding its read
	// and write buffers (nil unless the connection is a bare TCP or unix
	// socket); waitFn and waited are the callback it is given.
	raw    syscall.RawConn
	waitFn func(uintptr) bool
	waited bool

	readDeadline  time.Time // last deadline given to rwc, see setReadDeadline
	writeDeadline time.Time
}

// deadlineSlack is how much later than the deadline in force a new one may
// be and still not be applied. Setting a deadline re-arms a runtime timer,
// a cost worth skipping on every keep-alive request; in exchange a timeout
// may fire up to 1/64 of its length early.
func deadlineSlack(timeout time.Duration) time.Duration { return timeout / 64 }

// setReadDeadline applies d unless the deadline in force is at most slack
// earlier. An earlier deadline is always applied.
func (c *conn) setReadDeadline(d time.Time, slack time.Duration) {
	if late := d.Sub(c.readDeadline); late >= 0 && late <= slack && !c.readDeadline.IsZero() {
		return
	}
	c.readDeadline = d
	c.rwc.SetReadDeadline(d)
}

// setWriteDeadline is setReadDeadline for writes.
func (c *conn) setWriteDeadline(d time.Time, slack time.Duration) {
	if late := d.Sub(c.writeDeadline); late >= 0 && late <= slack && !c.writeDeadline.IsZero() {
		return
	}
	c.writeDeadline = d
	c.rwc.SetWriteDeadline(d)
}

// connReader is the bufio.Reader's source. Before blocking on the socket it
// flushes pending output, which is what lets pipelined responses batch up
// while requests are still buffered and go out once input runs dry.
type connReader struct {
	c       *conn
	perRead time.Duration // when > 0, a fresh read deadline for each read
}

func (r *connReader) Read(p []byte) (int, error) {
	c := r.c
	if c.hasPeek && len(p) > 0 {
		c.hasPeek = false
		p[0] = c.peek[0]
		return 1, nil
	}
	if c.bw.Buffered() > 0 {
		if err := c.bw.Flush(); err != nil {
			return 0, err
		}
	}
	if r.perRead > 0 {
		c.setReadDeadline(time.Now().Add(r.perRead), deadlineSlack(r.perRead))
	}
	return c.rwc.Read(p)
}

// writeSlice is the most one write to the client carries under one
// WriteTimeout. A larger write (a big response body handed over whole)
// goes out in slices, each with a fresh deadline, so the timeout bounds
// how long a client may stop reading, as nginx's send_timeout does, not
// how long a slow but steady client may take over the whole body.
const writeSlice = 256 << 10

// connWriter is the bufio.Writer's sink; each write, or each writeSlice
// of a larger one, gets WriteTimeout.
type connWriter struct{ c *conn }

func (w *connWriter) Write(p []byte) (int, error) {
	c := w.c
	timeout := c.srv.cfg.WriteTimeout
	if len(p) <= writeSlice {
		c.setWriteDeadline(time.Now().Add(timeout), deadlineSlack(timeout))
		return c.rwc.Write(p)
	}
	n := 0
	for n < len(p) {
		c.setWriteDeadline(time.Now().Add(timeout), deadlineSlack(timeout))
		m, err := c.rwc.Write(p[n:min(n+writeSlice, len(p))])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// headBuffered reports whether br already holds the end of a request head
// (an empty line), so that reading the head needs no socket read. Empty lines
// before a request line can make it answer true early; the idle deadline in
// force then still bounds the read.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, []byte("\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
}

// serve runs the connection's request loop.
func (c *conn) serve() {
	s := c.srv
	cfg := &s.cfg
	c.cr.c = c
	c.cw.c = c
	c.resp.c = c
	// Only a bare socket: a wrapper (a PROXY protocol reader, TLS) may hold
	// input the socket no longer shows.
	var sc syscall.Conn
	switch conn := c.rwc.(type) {
	case *net.TCPConn:
		sc = conn
	case *net.UnixConn:
		sc = conn
	}
	if sc != nil {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.waitFn = c.waitReadable
		}
	}
	c.acquireBuffers()
	defer c.close()

	if tc, ok := c.rwc.(*tls.Conn); ok {
		proto, err := c.tlsHandshake(tc)
		if err != nil {
			s.log.Debugf("edge: TLS handshake with %s: %v", c.rwc.RemoteAddr(), err)
			return
		}
		if proto == "h2" {
			if s.setState(c, stateActive) {
				s.h2.serveConn(c, tc, nil, nil)
			}
			return
		}
	}

	wait := cfg.ReadHeaderTimeout // for the first request of the connection
	for first := true; ; first = false {
		if c.buffered() == 0 {
			// Nothing pipelined: send what is pending, then wait idle.
			if c.bw != nil {
				if err := c.bw.Flush(); err != nil {
					return
				}
			}
			if !s.setState(c, stateIdle) {
				return
			}
			c.setReadDeadline(time.Now().Add(wait), deadlineSlack(wait))
			if s.shutting.Load() {
				// Draining. The last response kept the connection alive,
				// so the client may be sending its next request right now:
				// wait a moment for it (it is answered with Connection:
				// close) instead of cutting it off unanswered.
				c.readDeadline = s.drainDeadline()
				c.rwc.SetReadDeadline(c.readDeadline)
			}
			if !c.awaitInput() {
				return
			}
			if !s.setState(c, stateActive) {
				return
			}
		}
		if first && cfg.H2C && c.scheme == "http" && c.hasH2Preface() {
			c.serveH2Prior()
			return
		}
		wait = cfg.KeepAliveTimeout
		start := time.Now()
		if !headBuffered(c.br) {
			// The head is still arriving: it has ReadHeaderTimeout from
			// its first byte. A head already buffered needs no read.
			c.setReadDeadline(start.Add(cfg.ReadHeaderTimeout), deadlineSlack(cfg.ReadHeaderTimeout))
		}
		if !c.serveOne(start) {
			return
		}
	}
}

// serveOne reads, serves and answers one request; it reports whether the
// connection may carry another.
func (c *conn) serveOne(start time.Time) bool {
	c.st = reqState{contentLength: -1}
	c.req.RemoteAddr = "" // set again once this request's head is parsed
	if cap(c.hbuf) > maxRetainedHead {
		c.hbuf = nil // an unusually large head: do not keep its buffer
	}
	if err := c.readHead(); err != nil {
		c.readFailed(err, start)
		return false
	}
	if err := c.readBody(); err != nil {
		c.readFailed(err, start)
		return false
	}
	if c.srv.cfg.KeepAliveTimeout == NoKeepAlive {
		c.st.keepAlive = false // keep-alive is off: Connection: close
	}
	if limit := c.srv.cfg.MaxRequestsPerConnection; limit > 0 {
		c.served++
		if c.served >= limit {
			c.st.keepAlive = false // this response says Connection: close
		}
	}
	if c.srv.cfg.H2C && c.scheme == "http" {
		if settings, ok := h2cUpgrade(&c.req); ok {
			c.upgradeToH2C(settings)
			c.releaseBody()
			return false
		}
	}
	keep := c.runHandler(start)
	c.releaseBody()
	if !keep && !c.resp.upgraded {
		// An upgraded connection's protocol has ended it; lingering is
		// for unread HTTP request bytes.
		c.linger = true
	}
	return keep
}

// runHandler calls the Handler, finishes its response and logs it.
func (c *conn) runHandler(start time.Time) bool {
	s := c.srv
	w := &c.resp
	w.reset()
	if c.br.Buffered() == 0 && c.bw.Buffered() == 0 {
		// The request is read whole and nothing follows it yet. While the
		// Handler waits for a worker, which under load can take a while
		// for thousands of connections at once, the connection does not
		// need its buffers; the response takes them back when it starts.
		c.releaseBuffers()
	}
	func() {
		defer func() {
			if p := recover(); p != nil {
				w.panicked = true
				s.log.Errorf("edge: panic serving %s %s: %v\n%s", c.req.Method, c.req.Target, p, debug.Stack())
			}
		}()
		s.handler.Serve(w, &c.req)
	}()
	w.finish()
	if s.cfg.AccessLog != nil {
		c.logAccess(start, w.Code, w.Written)
	}
	return !w.closeAfter && w.Err == nil
}

// readFailed answers a request that could not be read: a parse error gets
// its status, a timeout gets 408, a spill failure 507 or 500; a client that
// went away gets nothing.
func (c *conn) readFailed(err error, start time.Time) {
	var he *httpError
	var se *spillError
	var ne net.Error
	switch {
	case errors.As(err, &he):
	case errors.As(err, &se):
		c.srv.log.Errorf("%v", se)
		he = bufferFailure(se)
	case errors.As(err, &ne) && ne.Timeout():
		he = &httpError{408, "408 Request Timeout", "timed out reading the request"}
	default:
		return // EOF, reset: nobody to answer
	}
	c.linger = true
	n := c.writeError(he)
	if c.srv.cfg.AccessLog != nil && c.reqLine != "" {
		c.logAccess(start, he.code, n)
	}
}

// writeError sends a short plain-text error response with Connection:
// close and returns the body length.
func (c *conn) writeError(he *httpError) int64 {
	reason := he.status
	if len(reason) > 4 {
		reason = reason[4:]
	}
	body := reason + ": " + he.reason + "\n"
	b := c.wbuf[:0]
	b = append(b, "HTTP/1.1 "...)
	b = append(b, he.status...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\nConnection: close\r\n"...)
	b = c.appendDateServer(b, false, false)
	b = append(b, "\r\n"...)
	// A response to HEAD ends after its header section (RFC 9112 section
	// 6.3), an error too: a client would read the body as the next
	// response.
	sent := 0
	if !strings.HasPrefix(c.reqLine, "HEAD ") {
		b = append(b, body...)
		sent = len(body)
	}
	c.wbuf = b
	c.setWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout), 0)
	c.bw.Write(b)
	c.bw.Flush()
	return int64(sent)
}

// appendDateServer appends the Date and Server header lines the Handler
// did not supply.
func (c *conn) appendDateServer(b []byte, hasDate, hasServer bool) []byte {
	if !hasDate {
		b = append(b, "Date: "...)
		b = append(b, c.srv.date.get(time.Now())...)
		b = append(b, "\r\n"...)
	}
	if !hasServer && c.srv.cfg.ServerHeader != "" {
		b = append(b, "Server: "...)
		b = append(b, c.srv.cfg.ServerHeader...)
		b = append(b, "\r\n"...)
	}
	return b
}

// logAccess reports the current request to the access log.
func (c *conn) logAccess(start time.Time, status int, bodyBytes int64) {
	r := &c.rec
	client := c.remoteAddr
	if c.req.RemoteAddr != "" && c.reqLine != "" {
		client = c.req.RemoteAddr // as the Handler saw it: a trusted proxy's client
	}
	*r = AccessRecord{
		RemoteAddr:  client,
		Start:       start,
		Duration:    time.Since(start),
		RequestLine: c.reqLine,
		Method:      c.req.Method,
		Target:      c.req.Target,
		Proto:       c.req.Proto,
		Status:      status,
		BodyBytes:   bodyBytes,
		Referer:     c.st.referer,
		UserAgent:   c.st.userAgent,
	}
	if c.reqLine != "" && c.req.Method != "" {
		r.Header, r.Worker, r.WorkerPid = c.req.Header, c.req.Worker, c.req.WorkerPid
		r.RequestBytes = c.body.Len()
	}
	c.srv.cfg.AccessLog(r)
}

// awaitInput waits, within the read deadline in force, until the client
// sends something, and reports whether it did. With nothing buffered, the
// wait happens on the socket itself with the buffers back in their pools,
// so an idle keep-alive connection costs its goroutine and little else
// (8 KiB less each: 80 MB for 10,000 idle clients). The wait needs no
// extra system call in the usual case: a peek finds the socket empty where
// a read would have, the netpoller says when it becomes readable, and the
// buffered reader then reads as it would have.
func (c *conn) awaitInput() bool {
	if c.raw != nil && !c.hasPeek && c.buffered() == 0 {
		c.releaseBuffers()
		c.waited = false
		if err := c.raw.Read(c.waitFn); err != nil {
			return false
		}
	}
	c.acquireBuffers()
	_, err := c.br.Peek(1)
	return err == nil
}

// waitReadable is the RawConn.Read callback of awaitInput. Its first call
// looks without consuming (MSG_PEEK) whether input (or end of file) is
// already there, which it must: the runtime forgets readiness it saw
// before, and the socket is edge-triggered. If nothing is there, declining
// makes the runtime wait for the socket to become readable, and the call
// after that ends the wait.
func (c *conn) waitReadable(fd uintptr) bool {
	if c.waited {
		return true
	}
	c.waited = true
	var b [1]byte
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return errno != unix.EAGAIN
}

// buffered reports how many request bytes the read buffer holds; none
// when the connection has given its buffers back.
func (c *conn) buffered() int {
	if c.br == nil {
		return 0
	}
	return c.br.Buffered()
}

// acquireBuffers takes a read and a write buffer from the pools, unless the
// connection holds them. The two are held and given back together.
func (c *conn) acquireBuffers() {
	if c.br == nil {
		c.br = c.srv.getReader(&c.cr)
		c.bw = c.srv.getWriter(&c.cw)
	}
}

// releaseBuffers gives the (empty, flushed) buffers back to the pools.
func (c *conn) releaseBuffers() {
	if c.br != nil {
		c.srv.putReader(c.br)
		c.srv.putWriter(c.bw)
		c.br, c.bw = nil, nil
	}
}

// close flushes pending output, closes the connection (lingering when the
// client may still be sending) and returns the buffers to their pools.
func (c *conn) close() {
	s := c.srv
	c.acquireBuffers() // the deferred flush and linger below expect them
	c.bw.Flush()
	if c.linger {
		if tc, ok := c.rwc.(interface{ CloseWrite() error }); ok && tc.CloseWrite() == nil {
			c.setReadDeadline(time.Now().Add(lingerTimeout), 0)
			io.CopyN(io.Discard, c.rwc, lingerMaxRead)
		}
	}
	c.rwc.Close()
	c.releaseBody()
	c.releaseBuffers()
	s.forget(c)
}

// sendFile copies n bytes of f from offset straight to the socket, in
// slices so each gets a fresh WriteTimeout. Copying from the *os.File to
// the net.Conn lets the runtime use sendfile(2).
func (c *conn) sendFile(f *os.File, offset, n int64) (int64, error) {
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	const slice = 4 << 20
	var sent int64
	for sent < n {
		c.setWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout), 0)
		m, err := io.CopyN(c.rwc, f, min(n-sent, slice))
		sent += m
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}
