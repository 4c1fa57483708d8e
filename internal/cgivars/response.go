package cgivars

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"taipan/internal/edge"
	"taipan/internal/logging"
)

// ErrUpgrade is what Upgrade returns: the gateway protocols carry one
// request and its response, and nginx's uwsgi_pass and fastcgi_pass never
// hand a connection over (a WebSocket needs proxy_pass).
var ErrUpgrade = errors.New("protocol upgrades (WebSocket) are not supported over uwsgi or FastCGI; use proxy_pass to taipan's HTTP listener")

// Framing carries a response's bytes in a protocol's framing: as they are
// for uwsgi, in STDOUT records for FastCGI.
type Framing interface {
	// Write buffers p; an error means the web server is gone.
	Write(p []byte) (int, error)
	// Flush sends what is buffered.
	Flush() error
	// SendFile sends n bytes of f from offset after what is buffered, and
	// returns how many it sent.
	SendFile(f *os.File, offset, n int64) (int64, error)
}

// HeadStyle is how a protocol starts its response head.
type HeadStyle struct {
	// StatusPrefix comes before the status: "HTTP/1.1 " for a status
	// line, "Status: " for a CGI Status header.
	StatusPrefix string
	// Extra is header lines added to every head, each ending in CRLF.
	Extra string
}

// Response implements edge.ResponseWriter, but for ClientGone, over a
// Framing: it applies the edge's rules and leaves the framing to the
// protocol. A protocol's ResponseWriter embeds it and adds ClientGone.
// It is reused for each request of a connection.
type Response struct {
	out    Framing
	style  HeadStyle
	server string // Server header value, "" for none
	log    *logging.Logger

	method string
	target string // for log messages
	head   []byte

	edge.Progress // what has gone out, under the edge's rules
}

// Init sets where the Response writes, how its heads start, the Server
// header value and the log for dropped headers.
func (w *Response) Init(out Framing, style HeadStyle, server string, log *logging.Logger) {
	w.out, w.style, w.server, w.log = out, style, server, log
}

// Reset readies w to answer a request with method and target (target is
// only used in log messages; both may be "" for a request that could not
// be read).
func (w *Response) Reset(method, target string) {
	*w = Response{out: w.out, style: w.style, server: w.server, log: w.log, head: w.head[:0], method: method, target: target, Progress: edge.NewProgress()}
}

// HeadWritten reports whether WriteHead has been called.
func (w *Response) HeadWritten() bool { return w.HeadSent }

// Abort marks the response broken: the protocol ends it so that the web
// server sees it truncated instead of complete.
func (w *Response) Abort() { w.Aborted = true }

// Upgrade fails: see ErrUpgrade.
func (w *Response) Upgrade(*edge.ResponseHead) (*edge.Upgraded, error) { return nil, ErrUpgrade }

// WriteHead sends the head, choosing Content-Length when it can, then
// body; it flushes only when Write is to continue the body.
func (w *Response) WriteHead(head *edge.ResponseHead, body []byte, complete bool) error {
	code := head.Code
	bodyAllowed, err := w.StartHead(code, w.method)
	if err != nil {
		return err
	}
	isHead := w.method == "HEAD"

	b := append(w.head[:0], w.style.StatusPrefix...)
	if head.Status != "" {
		b = append(b, head.Status...)
	} else {
		b = strconv.AppendInt(b, int64(code), 10)
		b = append(b, ' ')
		b = append(b, http.StatusText(code)...)
	}
	b = append(b, "\r\n"...)
	var hasDate, hasServer bool
	for i := range head.Header {
		f := &head.Header[i]
		switch {
		case edge.HopByHop(f.Name):
			continue
		case strings.EqualFold(f.Name, "Content-Length"):
			keep, invalid := w.DeclareLength(f.Value)
			if invalid {
				w.log.Warnf("dropping invalid response Content-Length %q for %s %s", f.Value, w.method, w.target)
			}
			if !keep {
				continue
			}
		case strings.EqualFold(f.Name, "Date"):
			hasDate = true
		case strings.EqualFold(f.Name, "Server"):
			hasServer = true
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	if bodyAllowed && w.Length < 0 && complete && (!isHead || len(body) > 0) {
		// A complete body has a known length. (An empty one answering
		// HEAD says nothing about the length of the GET's.) Without a
		// length the protocol delimits the body: uwsgi by closing the
		// connection, FastCGI by its records.
		w.Length = int64(len(body))
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, w.Length, 10)
		b = append(b, "\r\n"...)
	}
	if !hasDate {
		b = append(b, "Date: "...)
		b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
		b = append(b, "\r\n"...)
	}
	if !hasServer && w.server != "" {
		b = append(b, "Server: "...)
		b = append(b, w.server...)
		b = append(b, "\r\n"...)
	}
	b = append(b, w.style.Extra...)
	b = append(b, "\r\n"...)
	w.head = b

	if _, err := w.out.Write(b); err != nil {
		return w.fail(err)
	}
	if err := w.writeBody(body); err != nil {
		return err
	}
	if !complete {
		if err := w.out.Flush(); err != nil {
			return w.fail(err)
		}
	}
	return nil
}

// fail records a write error: the web server is gone.
func (w *Response) fail(err error) error {
	if w.Err == nil {
		w.Err = fmt.Errorf("writing response: %w", err)
	}
	return w.Err
}

// writeBody buffers p, without the bytes past a declared Content-Length.
func (w *Response) writeBody(p []byte) error {
	if w.Err != nil {
		return w.Err
	}
	if len(p) == 0 || w.NoBody {
		return nil
	}
	n, over := w.Allow(int64(len(p)))
	p = p[:n]
	if _, err := w.out.Write(p); err != nil {
		return w.fail(err)
	}
	w.Written += int64(len(p))
	if over {
		return edge.ErrBodyTooLong
	}
	return nil
}

// Write sends the next part of the body and flushes it.
func (w *Response) Write(p []byte) error {
	if err := w.CheckBody(); err != nil {
		return err
	}
	if err := w.writeBody(p); err != nil {
		return err
	}
	if len(p) == 0 || w.NoBody {
		return nil
	}
	if err := w.out.Flush(); err != nil {
		return w.fail(err)
	}
	return nil
}

// SendFile sends n bytes of f from offset.
func (w *Response) SendFile(f *os.File, offset, n int64) error {
	if err := w.CheckBody(); err != nil {
		return err
	}
	if n <= 0 || w.NoBody {
		return nil
	}
	n, over := w.Allow(n)
	sent, err := w.out.SendFile(f, offset, n)
	w.Written += sent
	if err != nil {
		w.Aborted = true // the body is short, whatever the cause
		var pe *os.PathError
		switch {
		case errors.Is(err, io.EOF):
			return fmt.Errorf("sendfile %s: file ended after %d of %d bytes", f.Name(), sent, n)
		case errors.As(err, &pe):
			return fmt.Errorf("sendfile: %w", err)
		}
		return w.fail(err)
	}
	if over {
		return edge.ErrBodyTooLong
	}
	return nil
}

// Finish completes the response after the Handler returned, panicked
// telling whether it panicked: it writes a 500 when there was no head. It
// reports whether the response is whole; the protocol then sends what is
// buffered and ends the response (FastCGI in the same write as its last
// records). When it is not whole (an Abort, a panic after the head, a
// failed write, a body shorter than its Content-Length), the protocol
// must end it so that the web server sees it broken.
func (w *Response) Finish(panicked bool) (whole bool) {
	if !w.HeadSent && w.Err == nil {
		w.WriteHead(&edge.ResponseHead{
			Code:   500,
			Status: "500 Internal Server Error",
			Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}},
		}, []byte("Internal Server Error\n"), true)
	} else if panicked {
		w.Aborted = true
	}
	w.Done = true
	if m := w.Mismatch(); m != "" {
		w.log.Errorf("%s %s: %s", w.method, w.target, m)
	}
	return w.Err == nil && !w.Aborted && !w.Short()
}

// BufferError is a local failure to buffer a request body (disk full, an
// unwritable TempDir): the request is answered 507 (disk full) or 500, and
// the error logged.
type BufferError struct{ Err error }

func (e *BufferError) Error() string { return "buffering the request body: " + e.Err.Error() }
func (e *BufferError) Unwrap() error { return e.Err }

var (
	errInternal    = &Error{500, "500 Internal Server Error", "could not buffer the request body"}
	errStorageFull = &Error{507, "507 Insufficient Storage", "no space left to buffer the request body"}
	errTimeout     = &Error{408, "408 Request Timeout", "timed out reading the request"}
)

// Refusal is the answer to a request that could not be read because of
// err, as the HTTP engine answers: an *Error as it says, 507 or 500 for a
// BufferError (logged), 408 for a timeout, and nil, no answer, when the
// web server went away or broke the protocol.
func Refusal(err error, log *logging.Logger) *Error {
	var e *Error
	var be *BufferError
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &be):
		log.Errorf("%v", be)
		if edge.StorageFull(be) {
			return errStorageFull
		}
		return errInternal
	case IsTimeout(err):
		return errTimeout
	}
	return nil
}

// WriteError answers a request that is refused before any Handler runs.
func (w *Response) WriteError(e *Error) {
	reason := e.Status
	if _, r, ok := strings.Cut(e.Status, " "); ok {
		reason = r
	}
	w.WriteHead(&edge.ResponseHead{
		Code:   e.Code,
		Status: e.Status,
		Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}},
	}, []byte(reason+": "+e.Reason+"\n"), true)
}

// Run calls h.Serve(w, r) and reports whether it panicked; the panic is
// logged, as the HTTP engine logs it.
func Run(h edge.Handler, w edge.ResponseWriter, r *edge.Request, log *logging.Logger) (panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			panicked = true
			log.Errorf("panic serving %s %s: %v\n%s", r.Method, r.Target, p, debug.Stack())
		}
	}()
	h.Serve(w, r)
	return false
}

// LogAccess reports an answered request to the access log, if there is one
// (cfg.AccessLog). rec is the connection's record, reused.
func LogAccess(cfg *edge.Config, rec *edge.AccessRecord, r *edge.Request, start time.Time, w *Response) {
	if cfg.AccessLog == nil {
		return
	}
	*rec = edge.AccessRecord{
		RemoteAddr:  r.RemoteAddr,
		Start:       start,
		Duration:    time.Since(start),
		RequestLine: r.Method + " " + r.Target + " " + r.Proto,
		Method:      r.Method,
		Target:      r.Target,
		Proto:       r.Proto,
		Status:      w.Code,
		BodyBytes:   w.Written,
		Header:      r.Header,
		Worker:      r.Worker,
		WorkerPid:   r.WorkerPid,
	}
	if r.Body != nil {
		rec.RequestBytes = r.Body.Len()
	}
	for i := range r.Header {
		switch f := &r.Header[i]; {
		case rec.Referer == "" && strings.EqualFold(f.Name, "Referer"):
			rec.Referer = f.Value
		case rec.UserAgent == "" && strings.EqualFold(f.Name, "User-Agent"):
			rec.UserAgent = f.Value
		}
	}
	cfg.AccessLog(rec)
}
