package edge

//lint:file-ignore SA1019 x/net/http2's Server is deprecated in favour of net/http's built-in HTTP/2, but net/http serves only whole listeners and has no h2c Upgrade; the edge needs to hand over single connections (after TLS ALPN, a prior-knowledge preface or an Upgrade: h2c request), which only http2.Server.ServeConn offers.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"taipan/internal/httpsyntax"
	"time"

	"golang.org/x/net/http2"
)

// HTTP/2 is served by golang.org/x/net/http2, which does the framing,
// HPACK, flow control and stream management; the edge adapts each stream
// to its own Request and ResponseWriter, so a Handler serves HTTP/1.1 and
// HTTP/2 alike. Bodies are buffered before the Handler runs, as for
// HTTP/1.1, so a slow uploader never holds a worker.

// h2Preface is how an HTTP/2 connection with prior knowledge begins.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// h2IdleTimeout is how long an HTTP/2 connection with no open stream stays
// open. Browsers keep HTTP/2 connections for many requests, so this is
// longer than the HTTP/1.1 keep-alive timeout.
const h2IdleTimeout = 2 * time.Minute

// h2Server is the HTTP/2 side of a Server.
type h2Server struct {
	srv  *Server
	h2   *http2.Server
	base *http.Server // only for graceful shutdown: its Shutdown sends GOAWAY on every connection
}

func newH2Server(s *Server) *h2Server {
	h := &h2Server{srv: s, h2: &http2.Server{
		IdleTimeout:      h2IdleTimeout,
		MaxReadFrameSize: 16 << 10,
		// A client that stops reading the connection is dropped as an
		// HTTP/1.1 one is; the timeout restarts whenever bytes go out.
		WriteByteTimeout: s.cfg.WriteTimeout,
	}}
	h.base = &http.Server{
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ErrorLog:          nil,
	}
	// ConfigureServer links the two, so base.Shutdown starts a graceful
	// shutdown (GOAWAY, then close once streams finish) of every
	// connection served by h2.
	http2.ConfigureServer(h.base, h.h2)
	return h
}

// serveConn serves an HTTP/2 connection until it closes. upgrade is the
// HTTP/1.1 request that asked for h2c by Upgrade (it becomes stream 1),
// or nil.
func (h *h2Server) serveConn(c *conn, rwc net.Conn, upgrade *http.Request, settings []byte) {
	var guarded net.Conn = newH2Guard(rwc, rwc.Read, true)
	if tc, ok := rwc.(*tls.Conn); ok {
		// The server checks the TLS version and cipher suite through it.
		guarded = tlsGuard{guarded.(*h2Guard), tc}
	}
	rwc = guarded
	opts := &http2.ServeConnOpts{
		Context:        context.Background(),
		BaseConfig:     h.base,
		Handler:        &h2Handler{srv: h.srv, c: c},
		UpgradeRequest: upgrade,
		Settings:       settings,
	}
	h.h2.ServeConn(rwc, opts)
}

// shutdown sends GOAWAY on every HTTP/2 connection.
func (h *h2Server) shutdown() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // base serves no listener of its own: only its hooks matter
	h.base.Shutdown(ctx)
}

// tlsGuard is an h2Guard over TLS, showing the TLS state to the server.
type tlsGuard struct {
	*h2Guard
	tc *tls.Conn
}

func (g tlsGuard) ConnectionState() tls.ConnectionState { return g.tc.ConnectionState() }

// bufferedConn is a net.Conn whose first reads come from a bufio.Reader
// that already holds the start of the stream (the HTTP/2 preface read
// while looking for an HTTP/1.1 request).
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) {
	if b.br != nil && b.br.Buffered() > 0 {
		return b.br.Read(p)
	}
	return b.Conn.Read(p)
}

// h2Handler adapts net/http's view of an HTTP/2 stream to a Handler.
type h2Handler struct {
	srv *Server
	c   *conn
}

// h2Stream is the per-stream memory of ServeHTTP, recycled: under load
// many streams run at once, and their garbage is most of what HTTP/2 costs.
type h2Stream struct {
	req  Request
	resp h2Response
	body Body
	rec  AccessRecord
}

var h2Streams = sync.Pool{New: func() any { return new(h2Stream) }}

func (h *h2Handler) ServeHTTP(rw http.ResponseWriter, hr *http.Request) {
	s, c := h.srv, h.c
	start := time.Now()
	st := h2Streams.Get().(*h2Stream)
	r := &st.req
	*r = Request{
		Method:     hr.Method,
		Target:     hr.RequestURI,
		Proto:      "HTTP/2",
		ProtoMinor: 1, // HTTP/1.1 semantics for the Handler's decisions
		Host:       hr.Host,
		Scheme:     c.scheme,
		RemoteAddr: c.remoteAddr,
		RemotePort: c.remotePort,
		ServerName: c.serverName,
		ServerPort: c.serverPort,
		Header:     st.req.Header[:0],
	}
	if r.Target == "" {
		r.Target = hr.URL.RequestURI()
	}
	r.Path, r.RawQuery, _ = strings.Cut(r.Target, "?")
	if hr.Method == "OPTIONS" && r.Target == "*" {
		r.Path = "*"
	}
	r.Header = append(r.Header, HeaderField{Name: "Host", Value: hr.Host})
	for name, values := range hr.Header {
		for _, v := range values {
			r.Header = append(r.Header, HeaderField{Name: name, Value: v})
		}
	}
	herr := h.checkRequest(r)
	w := &st.resp
	*w = h2Response{rw: rw, req: hr, srv: s, Progress: NewProgress()}
	defer func() {
		if s.cfg.AccessLog != nil {
			st.rec = AccessRecord{
				RemoteAddr:   r.RemoteAddr,
				Start:        start,
				Duration:     time.Since(start),
				RequestLine:  r.Method + " " + r.Target + " HTTP/2.0",
				Method:       r.Method,
				Target:       r.Target,
				Proto:        "HTTP/2.0",
				Status:       w.Code,
				BodyBytes:    w.Written,
				Referer:      hr.Referer(),
				UserAgent:    hr.UserAgent(),
				RequestBytes: st.body.Len(),
				Header:       r.Header,
				Worker:       r.Worker,
				WorkerPid:    r.WorkerPid,
			}
			s.cfg.AccessLog(&st.rec)
		}
		clear(r.Header) // drop the strings before the memory is reused
		st.body = Body{}
		h2Streams.Put(st)
	}()

	if herr == nil {
		herr = h.readBody(rw, hr, &st.body)
	}
	if herr != nil {
		w.WriteHead(&ResponseHead{Code: herr.code, Status: herr.status,
			Header: []HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}}},
			[]byte(herr.status[4:]+": "+herr.reason+"\n"), true)
		return
	}
	defer st.body.release()
	r.Body = &st.body
	s.handler.Serve(w, r)
	w.finish()
}

// checkRequest applies to an HTTP/2 request what the HTTP/1.1 parser
// checks: the limits on the target and the header fields (HPACK lets a
// client send far more than they allow), and no CONNECT (the edge is not
// a proxy; a 2xx would tell the client a tunnel was open).
func (h *h2Handler) checkRequest(r *Request) *httpError {
	cfg := &h.srv.cfg
	switch {
	case r.Method == "CONNECT":
		return &httpError{501, "501 Not Implemented", "CONNECT is not supported"}
	case len(r.Method)+len(r.Target)+len(" HTTP/1.1")+1 > cfg.LimitRequestLine:
		return &httpError{414, "414 URI Too Long", "request target too long"}
	case len(r.Header) > cfg.LimitRequestFields:
		return &httpError{431, "431 Request Header Fields Too Large", "too many header fields"}
	}
	for _, f := range r.Header {
		if len(f.Name)+len(": ")+len(f.Value) > cfg.LimitRequestFieldSize {
			return &httpError{431, "431 Request Header Fields Too Large", "header field too long"}
		}
	}
	return nil
}

// readBody buffers the request body into b as the HTTP/1.1 engine does,
// with the same bound on each wait for body bytes.
func (h *h2Handler) readBody(rw http.ResponseWriter, hr *http.Request, b *Body) *httpError {
	cfg := &h.srv.cfg
	if hr.Body == nil || hr.Body == http.NoBody {
		return nil
	}
	if hr.ContentLength > 0 && cfg.bodyTooLarge(hr.ContentLength) {
		return &httpError{413, "413 Content Too Large", "request body too large"}
	}
	buf := NewBodyBuffer(cfg.BodyMemoryLimit, cfg.TempDir)
	limit := int64(-1)
	if cfg.LimitRequestBody >= 0 {
		limit = cfg.LimitRequestBody
	}
	body := &h2BodyReader{body: hr.Body, rc: http.NewResponseController(rw), timeout: cfg.BodyReadTimeout}
	defer body.disarm()
	var src io.Reader = body
	if limit >= 0 {
		src = io.LimitReader(body, limit+1)
	}
	if _, err := io.Copy(buf, src); err != nil {
		buf.Discard()
		var se *spillError
		switch {
		case errors.As(err, &se):
			h.srv.log.Errorf("%v", se)
			return bufferFailure(se)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return &httpError{408, "408 Request Timeout", "timed out reading the request"}
		}
		return &httpError{400, "400 Bad Request", "incomplete request body"}
	}
	if limit >= 0 && buf.Len() > limit {
		buf.Discard()
		return &httpError{413, "413 Content Too Large", "request body too large"}
	}
	*b = *buf.Body()
	return nil
}

// h2BodyReader gives each read of an HTTP/2 request body a fresh deadline,
// as the HTTP/1.1 engine gives each read of a body: a stream whose client
// stops sending its body ends with 408 instead of staying open. Setting a
// deadline costs a message to the connection's goroutine, so it is not
// moved again for small steps.
type h2BodyReader struct {
	body    io.Reader
	rc      *http.ResponseController
	timeout time.Duration
	armed   time.Time // when the deadline was last set; zero: none is set
}

func (r *h2BodyReader) Read(p []byte) (int, error) {
	now := time.Now()
	if r.armed.IsZero() || now.Sub(r.armed) > r.timeout/64 {
		r.armed = now
		r.rc.SetReadDeadline(now.Add(r.timeout))
	}
	return r.body.Read(p)
}

// disarm clears the deadline, if one was set.
func (r *h2BodyReader) disarm() {
	if !r.armed.IsZero() {
		r.rc.SetReadDeadline(time.Time{})
	}
}

// h2Response is a ResponseWriter for one HTTP/2 stream. It applies the
// rules of the HTTP/1.1 writer (Progress) before x/net/http2 sees a byte:
// a body the status or method does not allow is dropped, not an error that
// would reset the stream, and none goes out past the declared length.
type h2Response struct {
	rw    http.ResponseWriter
	req   *http.Request
	srv   *Server
	armed time.Time // when the stream's write deadline was last set

	Progress // what has gone out
}

// smallH2Body is the largest complete response body written without a
// stream write deadline.
const smallH2Body = 16 << 10

// armWriteDeadline bounds the writes that follow by WriteTimeout. A client
// that stops granting flow-control window (it does not read) leaves a write
// waiting forever, and the worker behind it with it; at the deadline x/net
// resets the stream and the write fails, as the HTTP/1 engine closes a
// connection whose client stops reading. Setting it costs a message to the
// connection's goroutine, so it is not moved again for small steps.
func (w *h2Response) armWriteDeadline() {
	timeout := w.srv.cfg.WriteTimeout
	now := time.Now()
	if !w.armed.IsZero() && now.Sub(w.armed) < timeout/64 {
		return
	}
	w.armed = now
	http.NewResponseController(w.rw).SetWriteDeadline(now.Add(timeout))
}

func (w *h2Response) HeadWritten() bool { return w.HeadSent }

func (w *h2Response) WriteHead(head *ResponseHead, body []byte, complete bool) error {
	bodyAllowed, err := w.StartHead(head.Code, w.req.Method)
	if err != nil {
		return err
	}
	hdr := w.rw.Header()
	var hasServer bool
	for _, f := range head.Header {
		switch classifyResponseHeader(f.Name) {
		case hConnection, hHopByHop:
			continue // connection-specific headers are not allowed in HTTP/2
		case hServer:
			hasServer = true
		case hContentLength:
			keep, invalid := w.DeclareLength(f.Value)
			if invalid {
				w.srv.log.Warnf("edge: dropping invalid response Content-Length %q for %s %s", f.Value, w.req.Method, w.req.URL.RequestURI())
			}
			if !keep {
				continue
			}
		}
		if strings.EqualFold(f.Name, "Transfer-Encoding") {
			continue
		}
		hdr.Add(f.Name, f.Value)
	}
	if !hasServer && w.srv.cfg.ServerHeader != "" {
		hdr.Set("Server", w.srv.cfg.ServerHeader)
	}
	if complete && bodyAllowed && w.Length < 0 {
		// As over HTTP/1.1: the length the Handler declared stands (a HEAD
		// response's is GET's, RFC 9110 section 8.6), and a body that
		// does not match it is cut or ends the stream in a reset.
		w.Length = int64(len(body))
		hdr.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.rw.WriteHeader(head.Code)
	if len(body) > 0 && !w.NoBody {
		// A small complete response is written without a stream deadline:
		// arming one costs a message to the connection's goroutine, a few
		// percent of a small request, and a stalled one holds only this
		// goroutine and at most smallH2Body bytes until the connection
		// ends, bounded by its stream limit. No worker waits on it.
		if complete && len(body) <= smallH2Body && (w.Length < 0 || int64(len(body)) <= w.Length) {
			n, err := w.rw.Write(body)
			w.Written += int64(n)
			if err != nil {
				return err
			}
		} else if err := w.writeBody(body); err != nil {
			return err
		}
	}
	if !complete {
		return http.NewResponseController(w.rw).Flush()
	}
	return nil
}

func (w *h2Response) Write(p []byte) error {
	if err := w.CheckBody(); err != nil {
		return err
	}
	if len(p) == 0 || w.NoBody {
		return nil
	}
	if err := w.writeBody(p); err != nil {
		return err
	}
	return http.NewResponseController(w.rw).Flush()
}

// writeBody writes p, without the bytes past a declared length, in slices,
// each under a fresh write deadline, so that the deadline bounds a client
// that stops reading, not a slow but steady one.
func (w *h2Response) writeBody(p []byte) error {
	n, over := w.Allow(int64(len(p)))
	for p = p[:n]; len(p) > 0; {
		w.armWriteDeadline()
		n, err := w.rw.Write(p[:min(len(p), writeSlice)])
		w.Written += int64(n)
		if err != nil {
			return w.fail(err)
		}
		p = p[n:]
	}
	if over {
		return ErrBodyTooLong
	}
	return nil
}

// fail records a write error: the stream is gone.
func (w *h2Response) fail(err error) error {
	if w.Err == nil {
		w.Err = err
	}
	return err
}

func (w *h2Response) SendFile(f *os.File, offset, n int64) error {
	if err := w.CheckBody(); err != nil {
		return err
	}
	if n <= 0 || w.NoBody {
		return nil
	}
	n, over := w.Allow(n)
	for n > 0 {
		w.armWriteDeadline()
		m, err := io.Copy(w.rw, io.NewSectionReader(f, offset, min(n, writeSlice)))
		w.Written += m
		if err != nil {
			return w.fail(err)
		}
		if m == 0 {
			return io.ErrUnexpectedEOF // the file is shorter than announced
		}
		offset += m
		n -= m
	}
	if err := http.NewResponseController(w.rw).Flush(); err != nil {
		return w.fail(err)
	}
	if over {
		return ErrBodyTooLong
	}
	return nil
}

// Abort resets the stream once the Handler returns, so the client sees
// the response fail instead of end.
func (w *h2Response) Abort() { w.Aborted = true }

func (w *h2Response) ClientGone() <-chan struct{} { return w.req.Context().Done() }

var errUpgradeH2 = errors.New("edge: protocol upgrades are not available over HTTP/2")

func (w *h2Response) Upgrade(*ResponseHead) (*Upgraded, error) { return nil, errUpgradeH2 }

// finish completes the stream after the Handler returned.
func (w *h2Response) finish() {
	if w.Aborted {
		if !w.HeadSent && w.req.Context().Err() != nil {
			w.Code = StatusClientClosed // for the access log, as over HTTP/1.1
		}
		panic(http.ErrAbortHandler) // http2 resets the stream
	}
	if !w.HeadSent {
		w.WriteHead(&ResponseHead{Code: 500, Status: "500 Internal Server Error",
			Header: []HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}}},
			[]byte("Internal Server Error\n"), true)
	}
	w.Done = true
	if m := w.Mismatch(); m != "" {
		w.srv.log.Errorf("%s %s: %s", w.req.Method, w.req.URL.RequestURI(), m)
	}
	if w.Err == nil && w.Short() {
		// A body shorter than its Content-Length is a malformed response
		// (RFC 9113 section 8.1.1): the stream is reset, not ended, so the
		// client cannot take it for complete.
		panic(http.ErrAbortHandler)
	}
}

// h2cUpgrade reports whether r asks to switch to HTTP/2 (RFC 7540 section
// 3.2: Upgrade: h2c, with HTTP2-Settings, both named in Connection).
func h2cUpgrade(r *Request) (settings string, ok bool) {
	var upgrade, conn bool
	for _, f := range r.Header {
		switch {
		case strings.EqualFold(f.Name, "Upgrade"):
			upgrade = upgrade || httpsyntax.HasToken(f.Value, "h2c")
		case strings.EqualFold(f.Name, "Connection"):
			conn = conn || httpsyntax.HasToken(f.Value, "upgrade") && httpsyntax.HasToken(f.Value, "http2-settings")
		case strings.EqualFold(f.Name, "HTTP2-Settings"):
			settings, ok = f.Value, true
		}
	}
	return settings, ok && upgrade && conn
}

// upgradeToH2C answers an h2c Upgrade request with 101 and serves the
// connection as HTTP/2, with the request as stream 1.
func (c *conn) upgradeToH2C(settings string) {
	r := &c.req
	hr, err := http.NewRequest(r.Method, "http://"+r.Host+"/", r.Body.Reader())
	if err != nil {
		return
	}
	// Stream 1 must look like any HTTP/2 request: an origin-form (or
	// asterisk) target, the authority as Host only, and none of the HTTP/1
	// connection's own fields (RFC 9113 section 8.2.2), the upgrade's
	// among them.
	hr.RequestURI = r.Target
	if r.Target != "*" && !strings.HasPrefix(r.Target, "/") {
		hr.RequestURI = r.Path // absolute-form: the authority is r.Host
		if r.RawQuery != "" {
			hr.RequestURI += "?" + r.RawQuery
		}
	}
	hr.ContentLength = r.Body.Len()
	for _, f := range r.Header {
		if !h2cDropsField(f.Name, r.Header) {
			hr.Header.Add(f.Name, f.Value)
		}
	}
	hr.Host = r.Host
	hr.RemoteAddr = c.rwc.RemoteAddr().String()
	raw, err := decodeSettings(settings)
	if err != nil {
		c.writeError(&httpError{400, "400 Bad Request", "invalid HTTP2-Settings"})
		return
	}
	c.bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
	if c.bw.Flush() != nil {
		return
	}
	c.rwc.SetDeadline(time.Time{})
	c.srv.h2.serveConn(c, &bufferedConn{Conn: c.rwc, br: c.br}, hr, raw)
}

// h2cDropsField reports whether an upgrading request's field stays behind
// with the HTTP/1 connection: Host (HTTP/2 carries it as the authority),
// the connection-specific fields, HTTP2-Settings, and any field the
// Connection header names.
func h2cDropsField(name string, header []HeaderField) bool {
	if HopByHop(name) || strings.EqualFold(name, "Host") || strings.EqualFold(name, "HTTP2-Settings") ||
		strings.EqualFold(name, "TE") {
		return true
	}
	for _, f := range header {
		if strings.EqualFold(f.Name, "Connection") && httpsyntax.HasToken(f.Value, name) {
			return true
		}
	}
	return false
}

// decodeSettings decodes the base64url HTTP2-Settings value.
func decodeSettings(v string) ([]byte, error) {
	v = strings.TrimRight(strings.TrimSpace(v), "=")
	return base64.RawURLEncoding.DecodeString(v)
}

// serveH2Prior serves a cleartext connection that began with the HTTP/2
// preface (prior knowledge).
func (c *conn) serveH2Prior() {
	c.rwc.SetDeadline(time.Time{})
	c.srv.h2.serveConn(c, &bufferedConn{Conn: c.rwc, br: c.br}, nil, nil)
}

// hasH2Preface reports whether the connection starts with the HTTP/2
// preface. It reads only as far as the input still matches, so a short
// HTTP/1 request is never waited on for bytes that will not come.
func (c *conn) hasH2Preface() bool {
	for n := 1; ; n++ {
		b, err := c.br.Peek(n)
		if err != nil || !strings.HasPrefix(h2Preface, string(b)) {
			return false
		}
		if len(b) == len(h2Preface) {
			return true
		}
	}
}

// tlsHandshake completes the TLS handshake within ReadHeaderTimeout and
// reports the protocol chosen by ALPN ("" if none).
func (c *conn) tlsHandshake(tc *tls.Conn) (string, error) {
	tc.SetDeadline(time.Now().Add(c.srv.cfg.ReadHeaderTimeout))
	if err := tc.Handshake(); err != nil {
		return "", err
	}
	tc.SetDeadline(time.Time{})
	return tc.ConnectionState().NegotiatedProtocol, nil
}
