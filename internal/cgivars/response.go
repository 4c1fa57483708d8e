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

var (
	errHeadWritten  = errors.New("WriteHead called twice")
	errNoHead       = errors.New("body written before WriteHead")
	errResponseDone = errors.New("response used after the Handler returned")
	errBodyTooLong  = errors.New("response body longer than its Content-Length")
	// ErrUpgrade is what Upgrade returns: the gateway protocols carry one
	// request and its response, and nginx's uwsgi_pass and fastcgi_pass
	// never hand a connection over (a WebSocket needs proxy_pass).
	ErrUpgrade = errors.New("protocol upgrades (WebSocket) are not supported over uwsgi or FastCGI; use proxy_pass to taipan's HTTP listener")
)

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

	method      string
	target      string // for log messages
	headWritten bool
	done        bool  // Finish was called
	noBody      bool  // HEAD, 1xx, 204 or 304: no body bytes go out
	aborted     bool  // Abort was called, or the Handler panicked
	code        int   // status sent
	clen        int64 // Content-Length sent, or -1
	written     int64 // body bytes sent
	err         error // first write error: the web server is gone
	head        []byte
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
	*w = Response{out: w.out, style: w.style, server: w.server, log: w.log, head: w.head[:0], method: method, target: target, clen: -1}
}

// HeadWritten reports whether WriteHead has been called.
func (w *Response) HeadWritten() bool { return w.headWritten }

// Abort marks the response broken: the protocol ends it so that the web
// server sees it truncated instead of complete.
func (w *Response) Abort() { w.aborted = true }

// Upgrade fails: see ErrUpgrade.
func (w *Response) Upgrade(*edge.ResponseHead) (*edge.Upgraded, error) { return nil, ErrUpgrade }

// Status is the status code sent, 0 before WriteHead.
func (w *Response) Status() int { return w.code }

// BodyBytes is how many body bytes went out.
func (w *Response) BodyBytes() int64 { return w.written }

// WriteHead sends the head, choosing Content-Length when it can, then
// body; it flushes only when Write is to continue the body.
func (w *Response) WriteHead(head *edge.ResponseHead, body []byte, complete bool) error {
	if w.done {
		return errResponseDone
	}
	if w.headWritten {
		return errHeadWritten
	}
	w.headWritten = true
	code := head.Code
	w.code = code
	bodyAllowed := code >= 200 && code != 204 && code != 304
	isHead := w.method == "HEAD"
	w.noBody = isHead || !bodyAllowed

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
		case isHopByHop(f.Name):
			continue
		case strings.EqualFold(f.Name, "Content-Length"):
			if !bodyAllowed || w.clen >= 0 {
				continue
			}
			n, ok := parseDecimal(strings.Trim(f.Value, " \t"))
			if !ok {
				w.log.Warnf("dropping invalid response Content-Length %q for %s %s", f.Value, w.method, w.target)
				continue
			}
			w.clen = n
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
	if bodyAllowed && w.clen < 0 && complete && (!isHead || len(body) > 0) {
		// A complete body has a known length. (An empty one answering
		// HEAD says nothing about the length of the GET's.) Without a
		// length the protocol delimits the body: uwsgi by closing the
		// connection, FastCGI by its records.
		w.clen = int64(len(body))
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, w.clen, 10)
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

// isHopByHop reports the response headers that describe one HTTP
// connection; the web server in front manages its own.
func isHopByHop(name string) bool {
	for _, h := range [...]string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade"} {
		if strings.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// fail records a write error: the web server is gone.
func (w *Response) fail(err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("writing response: %w", err)
	}
	return w.err
}

// writeBody buffers p, without the bytes past a declared Content-Length.
func (w *Response) writeBody(p []byte) error {
	if w.err != nil {
		return w.err
	}
	if len(p) == 0 || w.noBody {
		return nil
	}
	over := false
	if w.clen >= 0 {
		if rem := w.clen - w.written; int64(len(p)) > rem {
			p, over = p[:rem], true
		}
	}
	if _, err := w.out.Write(p); err != nil {
		return w.fail(err)
	}
	w.written += int64(len(p))
	if over {
		return errBodyTooLong
	}
	return nil
}

// Write sends the next part of the body and flushes it.
func (w *Response) Write(p []byte) error {
	if w.done {
		return errResponseDone
	}
	if !w.headWritten {
		return errNoHead
	}
	if err := w.writeBody(p); err != nil {
		return err
	}
	if len(p) == 0 || w.noBody {
		return nil
	}
	if err := w.out.Flush(); err != nil {
		return w.fail(err)
	}
	return nil
}

// SendFile sends n bytes of f from offset.
func (w *Response) SendFile(f *os.File, offset, n int64) error {
	if w.done {
		return errResponseDone
	}
	if !w.headWritten {
		return errNoHead
	}
	if w.err != nil {
		return w.err
	}
	if n <= 0 || w.noBody {
		return nil
	}
	over := false
	if w.clen >= 0 {
		if rem := w.clen - w.written; n > rem {
			n, over = rem, true
		}
	}
	sent, err := w.out.SendFile(f, offset, n)
	w.written += sent
	if err != nil {
		w.aborted = true // the body is short, whatever the cause
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
		return errBodyTooLong
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
	if !w.headWritten && w.err == nil {
		w.WriteHead(&edge.ResponseHead{
			Code:   500,
			Status: "500 Internal Server Error",
			Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}},
		}, []byte("Internal Server Error\n"), true)
	} else if panicked {
		w.aborted = true
	}
	w.done = true
	short := !w.noBody && w.clen >= 0 && w.written < w.clen
	return w.err == nil && !w.aborted && !short
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
		Status:      w.code,
		BodyBytes:   w.written,
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
