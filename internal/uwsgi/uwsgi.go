// Package uwsgi serves taipan's Handler over the uwsgi protocol, so that an
// nginx in front can keep speaking uwsgi_pass to taipan.
//
// A request is a 4-byte header (modifier1, which must be 0 for WSGI, or 30
// for WSGI with SCRIPT_NAME removed from the front of PATH_INFO; the size
// of the vars block as a little-endian uint16; modifier2, ignored),
// the vars block (each variable a little-endian uint16 length and a key,
// then the same for its value), then CONTENT_LENGTH bytes of body. The
// answer is a plain HTTP/1.1 response on the same connection.
//
// A connection carries one request and is closed after the response, as
// uWSGI does it and as nginx's uwsgi module expects: it never reuses a
// uwsgi connection, and it reads a response without Content-Length up to
// the close. So a body of unknown length (a stream) is delimited by the
// close, never chunked: nginx's uwsgi module does not decode chunked
// responses. A response that breaks off (an Abort, a body shorter than its
// Content-Length) ends with a TCP reset, so that nginx reports an error
// instead of taking a close-delimited body as complete; over a unix socket
// a close is all there is.
package uwsgi

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"taipan/internal/cgivars"
	"taipan/internal/edge"
	"taipan/internal/logging"
)

const (
	headerLen    = 4
	modifierWSGI = 0
	// modifierManagePathInfo is uWSGI's UWSGI_MODIFIER_MANAGE_PATH_INFO,
	// nginx's "uwsgi_modifier1 30": a WSGI request whose SCRIPT_NAME is to
	// be removed from the front of its PATH_INFO.
	modifierManagePathInfo = 30
	// readBufSize holds the largest vars block (65535 bytes), which is
	// read whole into the reader's buffer.
	readBufSize  = 1 << 16
	writeBufSize = 8 << 10
)

// Server accepts uwsgi connections and serves their requests with a Handler.
type Server struct {
	cfg   edge.Config
	h     edge.Handler
	log   *logging.Logger
	conns *cgivars.Conns

	readers sync.Pool // *bufio.Reader of readBufSize
	writers sync.Pool // *bufio.Writer of writeBufSize
}

// NewServer returns a Server running h, with cfg's limits and timeouts
// (zero fields take the edge's defaults).
func NewServer(cfg edge.Config, h edge.Handler, log *logging.Logger) *Server {
	cfg = cgivars.ResolveConfig(cfg)
	return &Server{cfg: cfg, h: h, log: log, conns: cgivars.NewConns("uwsgi", cfg.WriteTimeout, log)}
}

// Serve accepts connections on ln until it is closed. It returns nil once
// Shutdown has closed ln.
func (s *Server) Serve(ln net.Listener) error { return s.conns.Serve(ln, s.serveConn) }

// Shutdown stops accepting, lets requests in progress finish, and returns
// when they have, or when ctx ends; then it closes the remaining
// connections and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error { return s.conns.Shutdown(ctx) }

// conn is one connection and the request it carries.
type conn struct {
	srv  *Server
	c    *cgivars.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	vars cgivars.Builder
	req  edge.Request
	resp response
	rec  edge.AccessRecord
}

func (s *Server) serveConn(c *cgivars.Conn) {
	br, _ := s.readers.Get().(*bufio.Reader)
	if br == nil {
		br = bufio.NewReaderSize(nil, readBufSize)
	}
	bw, _ := s.writers.Get().(*bufio.Writer)
	if bw == nil {
		bw = bufio.NewWriterSize(nil, writeBufSize)
	}
	br.Reset(c)
	bw.Reset(c)
	defer func() {
		br.Reset(nil)
		bw.Reset(nil)
		s.readers.Put(br)
		s.writers.Put(bw)
	}()
	cn := &conn{srv: s, c: c, br: br, bw: bw}
	cn.resp.c = c
	cn.resp.Init(plain{bw, c}, cgivars.HeadStyle{StatusPrefix: "HTTP/1.1 ", Extra: "Connection: close\r\n"}, s.cfg.ServerHeader, s.log)
	cn.serve()
}

// serve reads the request, runs the Handler and answers. The connection
// is closed when it returns.
func (cn *conn) serve() {
	cfg := &cn.srv.cfg
	// nginx connects when it has a request to send: until its first byte
	// the connection is idle, which Shutdown gives a moment.
	if !cn.c.WaitIdle(cn.br, cfg.ReadHeaderTimeout) {
		return
	}
	start := time.Now()
	cn.c.ReadDeadline(start.Add(cfg.ReadHeaderTimeout))
	cn.vars.Reset(cgivars.LimitsFor(cfg))
	err := cn.readVars()
	var body *edge.Body
	if err == nil {
		body, err = cn.readBody()
	}
	if err != nil {
		cn.vars.Build(&cn.req, edge.NewMemoryBody(nil), &cn.c.Addrs) // for the log
		cn.refuse(err, start)
		return
	}
	defer body.Release()
	if err := cn.vars.Build(&cn.req, body, &cn.c.Addrs); err != nil {
		cn.refuse(err, start)
		return
	}

	r := &cn.req
	w := &cn.resp
	w.Reset(r.Method, r.Target)
	panicked := cgivars.Run(cn.srv.h, w, r, cn.srv.log)
	cn.c.StopWatch(w.watch)
	w.watch = nil
	whole := w.Finish(panicked) && cn.bw.Flush() == nil
	cgivars.LogAccess(cfg, &cn.rec, r, start, &w.Response)
	if !whole {
		cn.c.Reset()
	}
}

// protocolError is input that is not uwsgi: the connection is closed
// without an answer, as there is no telling what the peer would make of
// one.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "uwsgi: " + e.msg }

// readVars reads the packet header and the vars block into cn.vars.
func (cn *conn) readVars() error {
	hdr, err := cn.br.Peek(headerLen)
	if err != nil {
		return err
	}
	switch hdr[0] {
	case modifierWSGI:
	case modifierManagePathInfo:
		cn.vars.StripScriptName()
	default:
		// Other modifiers ask for what taipan does not run (PSGI, Rack,
		// the uWSGI internals): there is no answering them sensibly.
		return &protocolError{fmt.Sprintf("modifier1 %d is not WSGI (0, or 30 to strip SCRIPT_NAME from PATH_INFO): is this a uwsgi client?", hdr[0])}
	}
	size := int(binary.LittleEndian.Uint16(hdr[1:3]))
	cn.br.Discard(headerLen)
	block, err := cn.br.Peek(size)
	if err != nil {
		return err
	}
	defer cn.br.Discard(size)
	for len(block) > 0 {
		var key, val []byte
		var ok bool
		if key, block, ok = lengthPrefixed(block); !ok {
			return &protocolError{"truncated variable name in the vars block"}
		}
		if val, block, ok = lengthPrefixed(block); !ok {
			return &protocolError{"truncated variable value in the vars block"}
		}
		if err := cn.vars.Add(key, val); err != nil {
			return err
		}
	}
	return nil
}

// lengthPrefixed splits a little-endian uint16 length and that many bytes
// off b.
func lengthPrefixed(b []byte) (field, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.LittleEndian.Uint16(b))
	if len(b)-2 < n {
		return nil, nil, false
	}
	return b[2 : 2+n], b[2+n:], true
}

// readBody buffers the CONTENT_LENGTH bytes that follow the vars.
func (cn *conn) readBody() (*edge.Body, error) {
	cfg := &cn.srv.cfg
	n := cn.vars.ContentLength()
	if n <= 0 {
		return edge.NewMemoryBody(nil), nil
	}
	if cfg.LimitRequestBody >= 0 && n > cfg.LimitRequestBody {
		return nil, cgivars.ErrBodyTooLarge
	}
	cn.c.ReadTimeout(cfg.BodyReadTimeout)
	buf := edge.NewBodyBuffer(cfg.BodyMemoryLimit, cfg.TempDir)
	for n > 0 {
		p, err := cn.br.Peek(int(min(n, int64(cn.br.Size()))))
		if len(p) > 0 {
			if _, werr := buf.Write(p); werr != nil {
				buf.Discard()
				return nil, &cgivars.BufferError{Err: werr}
			}
			cn.br.Discard(len(p))
			n -= int64(len(p))
		}
		if err != nil && n > 0 {
			buf.Discard()
			return nil, err
		}
	}
	return buf.Body(), nil
}

// refuse answers a request that could not be read, if there is anyone to
// answer, and closes the connection lingering, as the web server may still
// be sending the body.
func (cn *conn) refuse(err error, start time.Time) {
	e := cgivars.Refusal(err, cn.srv.log)
	if e == nil {
		if pe, ok := err.(*protocolError); ok {
			cn.srv.log.Warnf("%v (closing the connection from %s)", pe, cn.c.Addrs.RemoteAddr)
		}
		return
	}
	w := &cn.resp
	w.Reset(cn.req.Method, cn.req.Target)
	w.WriteError(e)
	w.Finish(false)
	cn.bw.Flush()
	if cn.req.Method != "" {
		cgivars.LogAccess(&cn.srv.cfg, &cn.rec, &cn.req, start, &w.Response)
	}
	cn.c.LingerClose()
}

// plain is uwsgi's response framing: none; the body is the bytes after the
// head.
type plain struct {
	*bufio.Writer
	c *cgivars.Conn
}

// SendFile flushes, then copies from the file straight to the socket
// (sendfile(2) over TCP).
func (p plain) SendFile(f *os.File, offset, n int64) (int64, error) {
	if err := p.Flush(); err != nil {
		return 0, err
	}
	return p.c.SendFile(f, offset, n)
}

// response is uwsgi's edge.ResponseWriter.
type response struct {
	cgivars.Response
	c     *cgivars.Conn
	watch *cgivars.Watch
}

// ClientGone watches the connection for nginx closing it, which it does
// when its client goes away (unless uwsgi_ignore_client_abort is on). The
// request has been read whole, so any read ending in EOF or an error means
// the peer is gone; bytes it might still send are discarded.
func (w *response) ClientGone() <-chan struct{} {
	if w.watch == nil {
		w.watch = w.c.StartWatch(func() bool {
			var buf [512]byte
			for {
				if _, err := w.c.RawRead(buf[:]); err != nil {
					return !cgivars.IsTimeout(err)
				}
			}
		})
	}
	return w.watch.Gone()
}
