// Package fastcgi serves taipan's Handler over the FastCGI protocol, so that an
// nginx in front can keep speaking fastcgi_pass to taipan.
//
// taipan is a FastCGI responder (the FastCGI 1.0 specification): a request
// is BEGIN_REQUEST, PARAMS records up to an empty one, STDIN records up to an
// empty one; the response is a CGI head ("Status: 200 OK", headers, an empty
// line) and the body in STDOUT records, an empty STDOUT and END_REQUEST.
//
// A connection carries one request at a time: a BEGIN_REQUEST for another
// request id while one is in progress gets END_REQUEST(CANT_MPX_CONN), and
// GET_VALUES says FCGI_MPXS_CONNS=0. With FCGI_KEEP_CONN (nginx's
// fastcgi_keep_conn on) the connection waits for the next request, for at
// most edge.Config.KeepAliveTimeout; without it, it is closed after
// END_REQUEST. ABORT_REQUEST ends a request whose body is still arriving at
// once, and one being served as soon as its Handler returns: the
// Handler's ClientGone fires, further writes fail and END_REQUEST follows.
// A response that breaks off (an Abort, a body shorter than its
// Content-Length) ends with the connection closed before END_REQUEST, which
// nginx reports as an error instead of taking the body as complete.
package fastcgi

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"taipan/internal/cgivars"
	"taipan/internal/edge"
	"taipan/internal/logging"
)

// Record format and values, from the FastCGI 1.0 specification.
const (
	version1   = 1
	headerLen  = 8
	maxContent = 65535
	maxPadding = 255

	typeBeginRequest    = 1
	typeAbortRequest    = 2
	typeEndRequest      = 3
	typeParams          = 4
	typeStdin           = 5
	typeStdout          = 6
	typeStderr          = 7
	typeData            = 8
	typeGetValues       = 9
	typeGetValuesResult = 10
	typeUnknownType     = 11

	roleResponder = 1
	flagKeepConn  = 1

	// endLen is the empty STDOUT and the END_REQUEST that end a response.
	endLen = headerLen + headerLen + 8

	statusRequestComplete = 0
	statusCantMpxConn     = 1
	statusUnknownRole     = 3
)

const (
	// readBufSize holds a whole record, content and padding, so that its
	// content is read in place.
	readBufSize = headerLen + maxContent + maxPadding + 1
	// stdoutContent is the most body a STDOUT record carries: with its
	// header it makes 32 KiB, and as a multiple of 8 it needs no padding.
	stdoutContent = 32<<10 - headerLen
	// advertisedMaxConns answers FCGI_MAX_CONNS and FCGI_MAX_REQS. taipan
	// sets no limit of its own (the Python pool queues requests); this is
	// a web server's usual number of connections, for one that sizes its
	// pool from it.
	advertisedMaxConns = 1024
)

// Server accepts FastCGI connections and serves their requests with a Handler.
type Server struct {
	cfg   edge.Config
	h     edge.Handler
	log   *logging.Logger
	conns *cgivars.Conns

	readers sync.Pool // *bufio.Reader of readBufSize
	outBufs sync.Pool // *[]byte for STDOUT records
}

// NewServer returns a Server running h, with cfg's limits and timeouts
// (zero fields take the edge's defaults).
func NewServer(cfg edge.Config, h edge.Handler, log *logging.Logger) *Server {
	cfg = cgivars.ResolveConfig(cfg)
	return &Server{cfg: cfg, h: h, log: log, conns: cgivars.NewConns("fastcgi", cfg.WriteTimeout, log)}
}

// Serve accepts connections on ln until it is closed. It returns nil once
// Shutdown has closed ln.
func (s *Server) Serve(ln net.Listener) error { return s.conns.Serve(ln, s.serveConn) }

// Shutdown stops accepting, lets requests in progress finish, and returns
// when they have, or when ctx ends; then it closes the remaining
// connections and returns ctx.Err(). A keep-conn connection is closed
// after the request it is serving.
func (s *Server) Shutdown(ctx context.Context) error { return s.conns.Shutdown(ctx) }

// conn is one connection, reading records and serving its requests in turn.
type conn struct {
	srv *Server
	c   *cgivars.Conn
	br  *bufio.Reader

	// wmu keeps records whole: the watch behind ClientGone answers
	// management records while the Handler writes STDOUT.
	wmu sync.Mutex
	out stdout

	id          uint16 // the request in progress, 0 for none
	peerAborted atomic.Bool
	broken      bool   // the watch stopped inside a record: the stream is lost
	params      []byte // a name-value pair split across PARAMS records
	vars        cgivars.Builder
	req         edge.Request
	resp        response
	rec         edge.AccessRecord
}

func (s *Server) serveConn(c *cgivars.Conn) {
	br, _ := s.readers.Get().(*bufio.Reader)
	if br == nil {
		br = bufio.NewReaderSize(nil, readBufSize)
	}
	bp, _ := s.outBufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, headerLen+stdoutContent+7+endLen)
		bp = &b
	}
	br.Reset(c)
	defer func() {
		br.Reset(nil)
		s.readers.Put(br)
		s.outBufs.Put(bp)
	}()
	cn := &conn{srv: s, c: c, br: br}
	cn.out = stdout{cn: cn, buf: (*bp)[:headerLen]}
	cn.resp.cn = cn
	cn.resp.Init(&cn.out, cgivars.HeadStyle{StatusPrefix: "Status: "}, s.cfg.ServerHeader, s.log)
	cn.serve()
}

// serve answers management records and serves requests until the
// connection ends.
func (cn *conn) serve() {
	cfg := &cn.srv.cfg
	wait := cfg.ReadHeaderTimeout // for the first request
	for {
		if !cn.c.WaitIdle(cn.br, wait) {
			return
		}
		// From its first byte a request has ReadHeaderTimeout to bring its
		// PARAMS.
		cn.c.ReadDeadline(time.Now().Add(cfg.ReadHeaderTimeout))
		rec, err := cn.readRecord()
		if err != nil {
			cn.drop(err)
			return
		}
		if rec.typ != typeBeginRequest || rec.id == 0 {
			if err := cn.other(rec); err != nil {
				cn.drop(err)
				return
			}
			continue
		}
		if !cn.serveRequest(rec) || cn.srv.conns.ShuttingDown() {
			return
		}
		wait = cfg.KeepAliveTimeout
	}
}

// record is one record read; content is valid until the next read.
type record struct {
	typ     uint8
	id      uint16
	content []byte
}

// protocolError is input that is not FastCGI as the specification has it:
// the connection is closed, as the record stream cannot be trusted.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "fastcgi: " + e.msg }

func protocolErrorf(format string, args ...any) error {
	return &protocolError{fmt.Sprintf(format, args...)}
}

// readRecord reads the next record, its padding skipped.
func (cn *conn) readRecord() (record, error) {
	h, err := cn.br.Peek(headerLen)
	if err != nil {
		return record{}, noEOF(err, len(h))
	}
	if h[0] != version1 {
		return record{}, protocolErrorf("record version %d, want 1: is this a FastCGI client?", h[0])
	}
	rec := record{typ: h[1], id: binary.BigEndian.Uint16(h[2:4])}
	n := int(binary.BigEndian.Uint16(h[4:6]))
	pad := int(h[6])
	cn.br.Discard(headerLen)
	p, err := cn.br.Peek(n + pad)
	if err != nil {
		return record{}, noEOF(err, 1)
	}
	rec.content = p[:n]
	cn.br.Discard(n + pad) // p stays valid until the next read
	return rec, nil
}

// noEOF turns an EOF after some bytes of a record into ErrUnexpectedEOF.
func noEOF(err error, got int) error {
	if err == io.EOF && got > 0 {
		return io.ErrUnexpectedEOF
	}
	return err
}

// next reads records until one of the request in progress, dealing with
// the others on the way.
func (cn *conn) next() (record, error) {
	for {
		rec, err := cn.readRecord()
		if err != nil {
			return rec, err
		}
		if rec.id == cn.id && rec.typ != typeBeginRequest {
			return rec, nil
		}
		if err := cn.other(rec); err != nil {
			return rec, err
		}
	}
}

// other deals with a record that is not part of the request in progress:
// management records are answered, a second request is refused, and the
// records of requests that are not active are ignored, as the
// specification says.
func (cn *conn) other(rec record) error {
	switch {
	case rec.id == 0:
		return cn.management(rec)
	case rec.typ == typeBeginRequest:
		if rec.id == cn.id {
			return protocolErrorf("BEGIN_REQUEST for request %d, which is in progress", rec.id)
		}
		return cn.endRequest(rec.id, statusCantMpxConn)
	case rec.typ == typeAbortRequest, rec.typ == typeParams, rec.typ == typeStdin, rec.typ == typeData:
		return nil
	}
	return protocolErrorf("unexpected record type %d for request %d", rec.typ, rec.id)
}

// management answers a record for request id 0: GET_VALUES gets the
// values taipan knows, anything else UNKNOWN_TYPE.
func (cn *conn) management(rec record) error {
	if rec.typ != typeGetValues {
		b := make([]byte, headerLen, headerLen+8)
		b = append(b, rec.typ, 0, 0, 0, 0, 0, 0, 0)
		return cn.send(frame(b, typeUnknownType, 0))
	}
	b := make([]byte, headerLen, 128)
	p := rec.content
	for len(p) > 0 {
		name, _, rest, complete, err := nextPair(p, maxContent)
		if err != nil || !complete {
			return protocolErrorf("malformed GET_VALUES")
		}
		p = rest
		var v string
		switch string(name) {
		case "FCGI_MAX_CONNS", "FCGI_MAX_REQS":
			v = strconv.Itoa(advertisedMaxConns)
		case "FCGI_MPXS_CONNS":
			v = "0"
		default:
			continue
		}
		b = appendPair(b, name, v)
	}
	return cn.send(frame(b, typeGetValuesResult, 0))
}

// serveRequest reads the request begin starts, serves it and answers it.
// It reports whether the connection carries on.
func (cn *conn) serveRequest(begin record) bool {
	cfg := &cn.srv.cfg
	if len(begin.content) < 8 {
		cn.drop(protocolErrorf("BEGIN_REQUEST body of %d bytes, want 8", len(begin.content)))
		return false
	}
	role := binary.BigEndian.Uint16(begin.content[0:2])
	keep := begin.content[2]&flagKeepConn != 0
	if role != roleResponder {
		// Its PARAMS and STDIN, for an inactive request, are ignored.
		return cn.endRequest(begin.id, statusUnknownRole) == nil && keep
	}
	cn.id = begin.id
	defer func() { cn.id = 0 }()
	start := time.Now()

	aborted, err := cn.readParams()
	if err == nil && !aborted {
		if n := cn.vars.ContentLength(); cfg.LimitRequestBody >= 0 && n > cfg.LimitRequestBody {
			err = cgivars.ErrBodyTooLarge
		}
	}
	var body *edge.Body
	if err == nil && !aborted {
		body, aborted, err = cn.readStdin()
	}
	switch {
	case err != nil:
		cn.refuse(err, start)
		return false
	case aborted:
		return cn.endRequest(cn.id, statusRequestComplete) == nil && keep
	}
	defer body.Release()

	// The whole request has been read: a refusal from here on leaves the
	// connection usable.
	r := &cn.req
	w := &cn.resp
	if err := cn.vars.Build(r, body, &cn.c.Addrs); err != nil {
		return cn.answer(cgivars.Refusal(err, cn.srv.log), start) && keep
	}
	if n := cn.vars.ContentLength(); n >= 0 && n != body.Len() {
		return cn.answer(&cgivars.Error{Code: 400, Status: "400 Bad Request", Reason: "STDIN length differs from CONTENT_LENGTH"}, start) && keep
	}

	cn.peerAborted.Store(false)
	cn.broken = false
	cn.out.reset(cn.id)
	w.Reset(r.Method, r.Target)
	panicked := cgivars.Run(cn.srv.h, w, r, cn.srv.log)
	cn.c.StopWatch(w.watch)
	w.watch = nil
	whole := w.Finish(panicked)
	cgivars.LogAccess(cfg, &cn.rec, r, start, &w.Response)
	switch {
	case cn.peerAborted.Load():
		// The specification's answer to ABORT_REQUEST, whatever went out.
		return cn.out.end() == nil && keep && !cn.broken
	case !whole || cn.broken:
		return false
	}
	return cn.out.end() == nil && keep
}

// readParams reads PARAMS records into cn.vars up to the empty one. It
// reports whether the web server aborted the request meanwhile.
func (cn *conn) readParams() (aborted bool, err error) {
	cn.vars.Reset(cgivars.LimitsFor(&cn.srv.cfg))
	cn.params = cn.params[:0]
	for {
		rec, err := cn.next()
		if err != nil {
			return false, err
		}
		switch rec.typ {
		case typeParams:
			if len(rec.content) == 0 {
				if len(cn.params) > 0 {
					return false, protocolErrorf("PARAMS end inside a name-value pair")
				}
				return false, nil
			}
			if err := cn.addParams(rec.content); err != nil {
				return false, err
			}
		case typeAbortRequest:
			return true, nil
		default:
			return false, protocolErrorf("record type %d before the end of PARAMS", rec.typ)
		}
	}
}

// addParams decodes the name-value pairs in p, keeping a pair that
// continues in the next record in cn.params.
func (cn *conn) addParams(p []byte) error {
	limit := cgivars.LimitsFor(&cn.srv.cfg).MaxVar()
	buf := p
	if len(cn.params) > 0 {
		cn.params = append(cn.params, p...)
		buf = cn.params
	}
	for len(buf) > 0 {
		name, value, rest, complete, err := nextPair(buf, limit)
		if err != nil {
			return err
		}
		if !complete {
			break // the rest comes in the next record
		}
		if err := cn.vars.Add(name, value); err != nil {
			return err
		}
		buf = rest
	}
	cn.params = append(cn.params[:0], buf...)
	return nil
}

// readStdin buffers STDIN records up to the empty one. It reports whether
// the web server aborted the request meanwhile.
func (cn *conn) readStdin() (body *edge.Body, aborted bool, err error) {
	cfg := &cn.srv.cfg
	cn.c.ReadTimeout(cfg.BodyReadTimeout)
	var buf *edge.BodyBuffer
	defer func() {
		if buf != nil && body == nil {
			buf.Discard()
		}
	}()
	for {
		rec, err := cn.next()
		if err != nil {
			return nil, false, err
		}
		switch rec.typ {
		case typeStdin:
			if len(rec.content) == 0 {
				if buf == nil {
					return edge.NewMemoryBody(nil), false, nil
				}
				return buf.Body(), false, nil
			}
			if buf == nil {
				buf = edge.NewBodyBuffer(cfg.BodyMemoryLimit, cfg.TempDir)
			}
			if cfg.LimitRequestBody >= 0 && buf.Len()+int64(len(rec.content)) > cfg.LimitRequestBody {
				return nil, false, cgivars.ErrBodyTooLarge
			}
			if _, err := buf.Write(rec.content); err != nil {
				return nil, false, &cgivars.BufferError{Err: err}
			}
		case typeAbortRequest:
			return nil, true, nil
		case typeData:
			// A filter's second stream; a responder has no use for it.
		default:
			return nil, false, protocolErrorf("record type %d after the end of PARAMS", rec.typ)
		}
	}
}

// refuse answers a request that could not be read, if there is anyone to
// answer, and closes the connection lingering, as the web server may still
// be sending the request.
func (cn *conn) refuse(err error, start time.Time) {
	e := cgivars.Refusal(err, cn.srv.log)
	if e == nil {
		cn.drop(err)
		return
	}
	cn.vars.Build(&cn.req, edge.NewMemoryBody(nil), &cn.c.Addrs) // for the log
	cn.answer(e, start)
	cn.c.LingerClose()
}

// answer sends e as the response to the request in progress and ends it.
// It reports whether that went well.
func (cn *conn) answer(e *cgivars.Error, start time.Time) bool {
	w := &cn.resp
	cn.out.reset(cn.id)
	w.Reset(cn.req.Method, cn.req.Target)
	w.WriteError(e)
	whole := w.Finish(false)
	if cn.req.Method != "" {
		cgivars.LogAccess(&cn.srv.cfg, &cn.rec, &cn.req, start, &w.Response)
	}
	return whole && cn.out.end() == nil
}

// drop logs why a connection is being closed without an answer, when that
// is news: not for a web server that went away.
func (cn *conn) drop(err error) {
	var pe *protocolError
	if errors.As(err, &pe) {
		cn.srv.log.Warnf("%v (closing the connection from %s)", pe, cn.c.Addrs.RemoteAddr)
	}
}

// endRequest sends END_REQUEST for id, with application status 0.
func (cn *conn) endRequest(id uint16, protocolStatus byte) error {
	return cn.send(appendEndRequest(nil, id, protocolStatus))
}

func appendEndRequest(b []byte, id uint16, protocolStatus byte) []byte {
	return append(b, version1, typeEndRequest, byte(id>>8), byte(id), 0, 8, 0, 0,
		0, 0, 0, 0, protocolStatus, 0, 0, 0)
}

var errPeerAborted = errors.New("fastcgi: the web server aborted the request")

// frame fills in the header of the record in b, whose first headerLen
// bytes are reserved for it and the rest is content, and pads it to a
// multiple of 8.
func frame(b []byte, typ uint8, id uint16) []byte {
	n := len(b) - headerLen
	pad := -n & 7
	b[0], b[1] = version1, typ
	binary.BigEndian.PutUint16(b[2:4], id)
	binary.BigEndian.PutUint16(b[4:6], uint16(n))
	b[6], b[7] = byte(pad), 0
	return append(b, "\x00\x00\x00\x00\x00\x00\x00"[:pad]...)
}

// send writes whole records in one write.
func (cn *conn) send(b []byte) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	_, err := cn.c.Write(b)
	return err
}

// nextPair decodes the name-value pair at the start of b; complete is
// false when b holds only part of it. A pair larger than limit is refused
// before its bytes arrive.
func nextPair(b []byte, limit int) (name, value, rest []byte, complete bool, err error) {
	nlen, n1, ok := pairLen(b)
	if !ok {
		return nil, nil, b, false, nil
	}
	vlen, n2, ok := pairLen(b[n1:])
	if !ok {
		return nil, nil, b, false, nil
	}
	if nlen+vlen > limit {
		return nil, nil, nil, false, cgivars.ErrVarTooLarge
	}
	start := n1 + n2
	if len(b)-start < nlen+vlen {
		return nil, nil, b, false, nil
	}
	name = b[start : start+nlen]
	value = b[start+nlen : start+nlen+vlen]
	return name, value, b[start+nlen+vlen:], true, nil
}

// pairLen decodes a name-value pair length: one byte below 128, else four
// bytes with the top bit set.
func pairLen(b []byte) (n, size int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	if b[0]>>7 == 0 {
		return int(b[0]), 1, true
	}
	if len(b) < 4 {
		return 0, 0, false
	}
	return int(binary.BigEndian.Uint32(b) & 0x7fffffff), 4, true
}

// appendPair appends a name-value pair with short lengths (both under 128).
func appendPair(b, name []byte, value string) []byte {
	b = append(b, byte(len(name)), byte(len(value)))
	b = append(b, name...)
	return append(b, value...)
}

// stdout is the response framing: it gathers the response into STDOUT
// records of the request in progress, each sent when full or flushed.
type stdout struct {
	cn  *conn
	id  uint16
	buf []byte // headerLen reserved bytes, then the content so far
}

func (s *stdout) reset(id uint16) {
	s.id = id
	s.buf = s.buf[:headerLen]
}

func (s *stdout) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		room := headerLen + stdoutContent - len(s.buf)
		if room == 0 {
			if err := s.Flush(); err != nil {
				return n, err
			}
			continue
		}
		k := min(room, len(p))
		s.buf = append(s.buf, p[:k]...)
		p = p[k:]
		n += k
	}
	return n, nil
}

func (s *stdout) Flush() error {
	if len(s.buf) == headerLen {
		return nil
	}
	if s.cn.peerAborted.Load() {
		// The web server wants no more of this response.
		s.buf = s.buf[:headerLen]
		return errPeerAborted
	}
	err := s.cn.send(frame(s.buf, typeStdout, s.id))
	s.buf = s.buf[:headerLen]
	return err
}

// end ends the request: what is buffered, the empty STDOUT that closes the
// stream and END_REQUEST go out in one write, so that the web server gets
// the end of a response with its last bytes.
func (s *stdout) end() error {
	b := s.buf[:0]
	if len(s.buf) > headerLen && !s.cn.peerAborted.Load() {
		b = frame(s.buf, typeStdout, s.id)
	}
	b = append(b, version1, typeStdout, byte(s.id>>8), byte(s.id), 0, 0, 0, 0)
	b = appendEndRequest(b, s.id, statusRequestComplete)
	err := s.cn.send(b)
	s.buf = s.buf[:headerLen]
	return err
}

// ReadFrom reads r into STDOUT records, straight into the record buffer.
func (s *stdout) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if len(s.buf) == headerLen+stdoutContent {
			if err := s.Flush(); err != nil {
				return total, err
			}
		}
		n, err := r.Read(s.buf[len(s.buf) : headerLen+stdoutContent])
		s.buf = s.buf[:len(s.buf)+n]
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// SendFile copies the file into STDOUT records: FastCGI frames every body
// byte, so there is no handing the socket to sendfile(2).
func (s *stdout) SendFile(f *os.File, offset, n int64) (int64, error) {
	m, err := io.Copy(s, io.NewSectionReader(f, offset, n))
	if err == nil && m < n {
		err = io.EOF
	}
	if err == nil {
		err = s.Flush()
	}
	return m, err
}

// response is FastCGI's edge.ResponseWriter.
type response struct {
	cgivars.Response
	cn    *conn
	watch *cgivars.Watch
}

// ClientGone watches the connection for nginx closing it (its client went
// away) or sending ABORT_REQUEST for this request. Other records arriving
// meanwhile are dealt with as between requests.
func (w *response) ClientGone() <-chan struct{} {
	if w.watch == nil {
		w.watch = w.cn.c.StartWatch(w.cn.watchRecords)
	}
	return w.watch.Gone()
}

// watchRecords reads records while the Handler runs, until the peer leaves,
// aborts the request or breaks the protocol (true), or StopWatch
// interrupts it between records (false). Interrupted inside a record, it
// marks the connection broken.
func (cn *conn) watchRecords() bool {
	for {
		if _, err := cn.br.Peek(1); err != nil {
			return !cgivars.IsTimeout(err)
		}
		rec, err := cn.readRecord()
		if err != nil {
			cn.broken = true
			return !cgivars.IsTimeout(err)
		}
		switch {
		case rec.id == cn.id && rec.typ == typeAbortRequest:
			cn.peerAborted.Store(true)
			return true
		case rec.id == cn.id && rec.typ == typeData:
		case rec.id == cn.id && rec.typ != typeBeginRequest:
			cn.broken = true
			cn.srv.log.Warnf("fastcgi: record type %d for request %d while serving it (closing the connection from %s)", rec.typ, rec.id, cn.c.Addrs.RemoteAddr)
			return true
		default:
			if err := cn.other(rec); err != nil {
				cn.broken = true
				cn.drop(err)
				return true
			}
		}
	}
}
