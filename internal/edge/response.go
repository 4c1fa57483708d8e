package edge

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// response implements ResponseWriter for one request on a conn. It is
// reused for every request of the connection.
type response struct {
	c *conn

	Progress // what has gone out, and the rules every writer applies

	panicked   bool // the Handler panicked
	chunked    bool // Transfer-Encoding: chunked framing
	closeAfter bool // close the connection after this response
	upgraded   bool // handed over by Upgrade
	watch      *clientWatch
}

// clientWatch is a background read that notices a client going away.
type clientWatch struct {
	gone chan struct{} // closed when the client has closed its end
	done chan struct{} // closed when the read has returned
}

// ClientGone starts watching the connection for the client going away.
func (w *response) ClientGone() <-chan struct{} {
	if w.watch != nil {
		return w.watch.gone
	}
	c := w.c
	w.watch = &clientWatch{gone: make(chan struct{}), done: make(chan struct{})}
	if c.buffered() > 0 || c.hasPeek {
		// The client already sent more (a pipelined request): it is
		// there, and its bytes must stay where they are.
		close(w.watch.done)
		return w.watch.gone
	}
	c.readDeadline = time.Time{}
	c.rwc.SetReadDeadline(time.Time{})
	go func(wt *clientWatch) {
		defer close(wt.done)
		n, err := c.rwc.Read(c.peek[:])
		if n > 0 {
			c.hasPeek = true // the start of the next request: keep it
			return
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			close(wt.gone)
		}
	}(w.watch)
	return w.watch.gone
}

// StatusClientClosed is the status recorded for a request whose client left
// before it was answered: nginx's 499. It is never sent.
const StatusClientClosed = 499

// clientLeft reports whether a ClientGone watch has seen the client go.
func (w *response) clientLeft() bool {
	if w.watch == nil {
		return false
	}
	select {
	case <-w.watch.gone:
		return true
	default:
		return false
	}
}

// stopWatch ends the background read, if any, before the connection reads again.
func (w *response) stopWatch() {
	if w.watch == nil {
		return
	}
	c := w.c
	c.rwc.SetReadDeadline(time.Now()) // wakes the read
	<-w.watch.done
	c.readDeadline = time.Time{}
	c.rwc.SetReadDeadline(time.Time{})
	w.watch = nil
}

func (w *response) reset() {
	c := w.c
	*w = response{c: c, Progress: NewProgress()}
}

// HeadWritten reports whether WriteHead has been called.
func (w *response) HeadWritten() bool { return w.HeadSent }

// Abort makes the edge close the connection without finishing the body.
func (w *response) Abort() {
	w.Aborted = true
	w.closeAfter = true
}

// headerKind classifies response header names the edge treats specially.
type headerKind int

const (
	hOther headerKind = iota
	hConnection
	hHopByHop
	hContentLength
	hServer
	hDate
)

// HopByHop reports the response headers that describe one connection
// (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade).
// Every writer drops those a Handler gives: the connection is the writer's
// to describe, and behind uwsgi or FastCGI the web server's.
func HopByHop(name string) bool {
	k := classifyResponseHeader(name)
	return k == hConnection || k == hHopByHop
}

func classifyResponseHeader(name string) headerKind {
	switch len(name) {
	case 4:
		if strings.EqualFold(name, "date") {
			return hDate
		}
	case 6:
		if strings.EqualFold(name, "server") {
			return hServer
		}
	case 7:
		if strings.EqualFold(name, "upgrade") {
			return hHopByHop
		}
	case 10:
		if strings.EqualFold(name, "connection") {
			return hConnection
		}
		if strings.EqualFold(name, "keep-alive") {
			return hHopByHop
		}
	case 14:
		if strings.EqualFold(name, "content-length") {
			return hContentLength
		}
	case 16:
		if strings.EqualFold(name, "proxy-connection") {
			return hHopByHop
		}
	case 17:
		if strings.EqualFold(name, "transfer-encoding") {
			return hHopByHop
		}
	}
	return hOther
}

// WriteHead sends the status line and headers, choosing the framing, and
// then body. It flushes only when the body is to be continued by Write.
func (w *response) WriteHead(head *ResponseHead, body []byte, complete bool) error {
	c := w.c
	r := &c.req
	code := head.Code
	bodyAllowed, err := w.StartHead(code, r.Method)
	if err != nil {
		return err
	}
	c.acquireBuffers() // given back while the Handler waited (runHandler)
	isHead := r.Method == "HEAD"

	b := append(c.wbuf[:0], "HTTP/1.1 "...)
	if head.Status != "" {
		b = append(b, head.Status...)
	} else {
		b = strconv.AppendInt(b, int64(code), 10)
		b = append(b, ' ')
		b = append(b, reasonPhrase(code)...)
	}
	b = append(b, "\r\n"...)

	var hasDate, hasServer bool
	for i := range head.Header {
		f := &head.Header[i]
		switch classifyResponseHeader(f.Name) {
		case hConnection:
			forEachToken(f.Value, func(t string) {
				if strings.EqualFold(t, "close") {
					w.closeAfter = true
				}
			})
			continue
		case hHopByHop:
			continue
		case hContentLength:
			keep, invalid := w.DeclareLength(f.Value)
			if invalid {
				c.srv.log.Warnf("edge: dropping invalid response Content-Length %q for %s %s", f.Value, r.Method, r.Target)
			}
			if !keep {
				continue
			}
		case hServer:
			hasServer = true
		case hDate:
			hasDate = true
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}

	if bodyAllowed && w.Length < 0 {
		switch {
		case complete:
			w.Length = int64(len(body))
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, w.Length, 10)
			b = append(b, "\r\n"...)
		case isHead:
			// The length is unknown, but a HEAD response has no body.
		case r.ProtoMinor == 1:
			w.chunked = true
			b = append(b, "Transfer-Encoding: chunked\r\n"...)
		default:
			w.closeAfter = true // HTTP/1.0: the body ends at close
		}
	}

	keep := c.st.keepAlive && !w.closeAfter && !c.srv.shutting.Load()
	if keep && r.ProtoMinor == 0 && !w.NoBody && w.Length < 0 {
		keep = false
	}
	if !keep {
		w.closeAfter = true
		b = append(b, "Connection: close\r\n"...)
	} else if r.ProtoMinor == 0 {
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	b = c.appendDateServer(b, hasDate, hasServer)
	b = append(b, "\r\n"...)
	c.wbuf = b

	if _, err := c.bw.Write(b); err != nil {
		return w.fail(err)
	}
	if err := w.writeBody(body); err != nil {
		return err
	}
	if !complete {
		if err := c.bw.Flush(); err != nil {
			return w.fail(err)
		}
	}
	return nil
}

var errNotSwitching = errors.New("edge: Upgrade needs a 101 response")

// Upgrade sends a 101 response and hands the connection over.
func (w *response) Upgrade(head *ResponseHead) (*Upgraded, error) {
	if head.Code != 101 {
		return nil, errNotSwitching
	}
	if _, err := w.StartHead(101, w.c.req.Method); err != nil {
		return nil, err
	}
	w.upgraded = true
	w.closeAfter = true
	// The new protocol reads the connection itself; a byte the watch
	// read meanwhile reaches it first (conn.hasPeek).
	w.stopWatch()
	c := w.c
	c.acquireBuffers()
	b := append(c.wbuf[:0], "HTTP/1.1 "...)
	if head.Status != "" {
		b = append(b, head.Status...)
	} else {
		b = append(b, "101 Switching Protocols"...)
	}
	b = append(b, "\r\n"...)
	var hasDate, hasServer bool
	for i := range head.Header {
		f := &head.Header[i]
		switch classifyResponseHeader(f.Name) {
		case hServer:
			hasServer = true
		case hDate:
			hasDate = true
		case hContentLength:
			continue
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	b = c.appendDateServer(b, hasDate, hasServer)
	b = append(b, "\r\n"...)
	c.wbuf = b
	if _, err := c.bw.Write(b); err != nil {
		return nil, w.fail(err)
	}
	if err := c.bw.Flush(); err != nil {
		return nil, w.fail(err)
	}
	// The new protocol manages its own deadlines.
	c.readDeadline, c.writeDeadline = time.Time{}, time.Time{}
	c.rwc.SetDeadline(time.Time{})
	c.cr.perRead = 0
	return &Upgraded{Conn: c.rwc, Reader: c.br, ShuttingDown: c.srv.shutdownCh}, nil
}

// fail records a write error: the client is gone, the connection closes.
func (w *response) fail(err error) error {
	if w.Err == nil {
		w.Err = fmt.Errorf("edge: writing response: %w", err)
	}
	w.closeAfter = true
	return w.Err
}

// writeBody frames p into the write buffer without flushing. Bytes beyond
// a declared Content-Length are never sent.
func (w *response) writeBody(p []byte) error {
	if w.Err != nil {
		return w.Err
	}
	if len(p) == 0 || w.NoBody {
		return nil
	}
	n, over := w.Allow(int64(len(p)))
	p = p[:n]
	bw := w.c.bw
	if w.chunked {
		var hdr [18]byte
		h := strconv.AppendInt(hdr[:0], int64(len(p)), 16)
		h = append(h, '\r', '\n')
		bw.Write(h)
		bw.Write(p)
		if _, err := bw.WriteString("\r\n"); err != nil {
			return w.fail(err)
		}
	} else if len(p) > 0 {
		if _, err := bw.Write(p); err != nil {
			return w.fail(err)
		}
	}
	w.Written += int64(len(p))
	if over {
		w.closeAfter = true
		return ErrBodyTooLong
	}
	return nil
}

// Write sends the next part of the body and flushes it.
func (w *response) Write(p []byte) error {
	if err := w.CheckBody(); err != nil {
		return err
	}
	if err := w.writeBody(p); err != nil {
		return err
	}
	if len(p) == 0 || w.NoBody {
		return nil
	}
	if err := w.c.bw.Flush(); err != nil {
		return w.fail(err)
	}
	return nil
}

// SendFile sends n bytes of f from offset. With length- or close-delimited
// framing the bytes go straight from the file to the socket (sendfile(2)
// for TCP); with chunked framing they form one chunk.
func (w *response) SendFile(f *os.File, offset, n int64) error {
	if err := w.CheckBody(); err != nil {
		return err
	}
	if n <= 0 || w.NoBody {
		return nil
	}
	n, over := w.Allow(n)
	c := w.c
	if w.chunked {
		var hdr [18]byte
		h := strconv.AppendInt(hdr[:0], n, 16)
		h = append(h, '\r', '\n')
		c.bw.Write(h)
	}
	if err := c.bw.Flush(); err != nil {
		return w.fail(err)
	}
	sent, err := c.sendFile(f, offset, n)
	w.Written += sent
	if err != nil {
		// The framing is broken either way; never terminate the body.
		w.Aborted = true
		w.closeAfter = true
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("edge: sendfile %s: file ended after %d of %d bytes", f.Name(), sent, n)
		}
		return w.fail(err)
	}
	if w.chunked {
		c.bw.WriteString("\r\n")
		if err := c.bw.Flush(); err != nil {
			return w.fail(err)
		}
	}
	if over {
		w.closeAfter = true
		return ErrBodyTooLong
	}
	return nil
}

// finish completes the response after the Handler returned: a 500 when no
// head was written (nothing, if the client left and the Handler gave up),
// the terminating chunk, or a close when the body is incomplete.
func (w *response) finish() {
	left := w.clientLeft()
	w.stopWatch()
	if !w.HeadSent && w.Err == nil && w.Aborted && left {
		// The client went away before any answer and the Handler gave up
		// for that reason. Nothing is written: it would reach nobody, or a
		// client that only half-closed would take it for the app's. The
		// access log and metrics record nginx's 499 (client closed
		// request), not a server error.
		w.Code = StatusClientClosed
	} else if !w.HeadSent && w.Err == nil {
		w.WriteHead(&ResponseHead{
			Code:   500,
			Status: "500 Internal Server Error",
			Header: []HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}},
		}, []byte("Internal Server Error\n"), true)
	} else if w.panicked {
		w.Aborted = true
		w.closeAfter = true
	}
	w.Done = true
	switch {
	case w.Err != nil:
	case w.Aborted:
		w.closeAfter = true
	case w.chunked:
		if _, err := w.c.bw.WriteString("0\r\n\r\n"); err != nil {
			w.fail(err)
		}
	case w.Short():
		w.closeAfter = true // the client sees the body end early
	}
	if m := w.Mismatch(); m != "" {
		w.c.srv.log.Errorf("%s %s: %s", w.c.req.Method, w.c.req.Target, m)
	}
}

// reasonPhrase returns the reason phrase for codes a Handler may send
// without a Status string.
func reasonPhrase(code int) string {
	switch code {
	case 100:
		return "Continue"
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 204:
		return "No Content"
	case 206:
		return "Partial Content"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 304:
		return "Not Modified"
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 412:
		return "Precondition Failed"
	case 413:
		return "Content Too Large"
	case 416:
		return "Range Not Satisfiable"
	case 500:
		return "Internal Server Error"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	}
	return "Unknown"
}
