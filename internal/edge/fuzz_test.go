package edge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"taipan/internal/httpsyntax"
	"taipan/internal/logging"
)

// Fuzz targets for the HTTP/1.1 parser and the chunked decoder, seeded from
// the conformance corpus. A crasher that go test -fuzz finds is written to
// testdata/fuzz/<Target>/ and stays there as a regression seed.

// fuzzServeLimit bounds one fuzz input's connection: the engine must finish
// with it (answer, or give up at the end of input) well within this.
const fuzzServeLimit = 10 * time.Second

// fuzzBodyLimit is the fuzz servers' body limit and memory limit, so bodies
// never spill to disk and a declared chunk size costs little memory.
const fuzzBodyLimit = 64 << 10

// memConn is an in-memory net.Conn: reads come from in, in pieces no larger
// than next() says, then io.EOF; writes collect in out. Deadlines are
// ignored, since input never blocks. done is closed when the server closes
// the connection.
type memConn struct {
	in   []byte
	next func() int // nil: as much as the reader asks for
	out  bytes.Buffer
	done chan struct{}
	once sync.Once
}

func (m *memConn) Read(p []byte) (int, error) {
	if len(m.in) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(m.in))
	if m.next != nil {
		n = min(n, m.next())
	}
	copy(p, m.in[:n])
	m.in = m.in[n:]
	return n, nil
}

func (m *memConn) Write(p []byte) (int, error)      { return m.out.Write(p) }
func (m *memConn) Close() error                     { m.once.Do(func() { close(m.done) }); return nil }
func (m *memConn) LocalAddr() net.Addr              { return memAddr() }
func (m *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 4321} }
func (m *memConn) SetDeadline(time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }

func memAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 80} }

// memListener hands the Server the memConns sent on conns.
type memListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *memListener) Addr() net.Addr { return memAddr() }

// memServer is a Server with conformanceHandler serving in-memory
// connections through its ordinary Serve loop.
type memServer struct {
	srv *Server
	ln  *memListener
}

func newMemServer(tb testing.TB) *memServer {
	cfg := Config{LimitRequestBody: fuzzBodyLimit, BodyMemoryLimit: fuzzBodyLimit}
	ms := &memServer{
		srv: NewServer(cfg, HandlerFunc(conformanceHandler), logging.New(io.Discard, logging.Error)),
		ln:  &memListener{conns: make(chan net.Conn), closed: make(chan struct{})},
	}
	done := make(chan error, 1)
	go func() { done <- ms.srv.Serve(ms.ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ms.srv.Shutdown(ctx)
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return ms
}

// serve runs one connection over data, read in pieces of next() bytes,
// and returns everything the server wrote.
func (ms *memServer) serve(t *testing.T, data []byte, next func() int) []byte {
	t.Helper()
	mc := &memConn{in: data, next: next, done: make(chan struct{})}
	timeout := time.After(fuzzServeLimit)
	select {
	case ms.ln.conns <- mc:
	case <-timeout:
		t.Fatal("the server does not accept connections")
	}
	select {
	case <-mc.done:
	case <-timeout:
		t.Fatalf("connection still being served after %v", fuzzServeLimit)
	}
	return mc.out.Bytes()
}

// withoutDates blanks the Date header values, the only part of the output
// that depends on the time.
func withoutDates(b []byte) []byte {
	out := bytes.Clone(b)
	const date = "\r\nDate: "
	const width = len("Mon, 02 Jan 2006 15:04:05 GMT")
	for i := 0; ; {
		j := bytes.Index(out[i:], []byte(date))
		if j < 0 || i+j+len(date)+width > len(out) {
			return out
		}
		i += j + len(date)
		copy(out[i:i+width], bytes.Repeat([]byte{'D'}, width))
	}
}

// checkResponses checks the server's output for one connection: a series
// of responses, each 100 Continue, a 200 from the handler for a request
// that is well-formed, or a 4xx/5xx that ends the connection.
func checkResponses(out []byte) error {
	br := bufio.NewReader(bytes.NewReader(out))
	for i := 1; ; i++ {
		if _, err := br.Peek(1); err == io.EOF {
			return nil
		}
		// Every 200 here has a Content-Length (0 for HEAD too), so
		// reading as for GET never reads into the next response.
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			return fmt.Errorf("response %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		// An error answering HEAD has no body (RFC 9112 section 6.3)
		// and ends the output; read as for GET, its body is cut short.
		headError := resp.StatusCode >= 400 && errors.Is(err, io.ErrUnexpectedEOF) && len(body) == 0
		if err != nil && !headError {
			return fmt.Errorf("response %d body: %v", i, err)
		}
		switch code := resp.StatusCode; {
		case code == 100:
		case code == 200:
			rec, err := decodeSeen(resp.Header.Get("X-Seen"))
			if err != nil {
				return fmt.Errorf("response %d: %v", i, err)
			}
			if err := wellFormed(rec); err != nil {
				return fmt.Errorf("response %d: the handler got a malformed request: %v (%+v)", i, err, rec)
			}
		case 400 <= code && code <= 599:
			if !resp.Close {
				return fmt.Errorf("response %d: %d without Connection: close", i, code)
			}
			if br.Buffered() > 0 {
				return fmt.Errorf("response %d: %d %q followed by more output", i, code, body)
			}
		default:
			return fmt.Errorf("response %d: unexpected status %d", i, code)
		}
	}
}

// wellFormed checks a request the handler received against RFC 9112,
// independently of the parser: the rules a request must meet to get past
// the edge.
func wellFormed(r seenRecord) error {
	if !httpsyntax.IsToken(r.method) {
		return fmt.Errorf("method %q is not a token", r.method)
	}
	if r.method == "CONNECT" {
		return errors.New("CONNECT reached the handler")
	}
	if r.proto != "HTTP/1.1" && r.proto != "HTTP/1.0" {
		return fmt.Errorf("proto %q", r.proto)
	}
	if r.target == "" {
		return errors.New("empty target")
	}
	for i := 0; i < len(r.target); i++ {
		if c := r.target[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("byte %#x in target", c)
		}
	}
	if r.path != "*" && !strings.HasPrefix(r.path, "/") || r.path == "*" && r.method != "OPTIONS" {
		return fmt.Errorf("path %q for %s", r.path, r.method)
	}
	var hosts, cls, tes int
	var cl string
	var codings []string
	for _, f := range r.header {
		if !httpsyntax.IsToken(f.Name) {
			return fmt.Errorf("field name %q", f.Name)
		}
		if !httpsyntax.ValidFieldValue(f.Value) || strings.TrimLeft(f.Value, " \t") != f.Value || strings.TrimRight(f.Value, " \t") != f.Value {
			return fmt.Errorf("field value %q", f.Value)
		}
		switch strings.ToLower(f.Name) {
		case "host":
			hosts++
		case "content-length":
			cls++
			cl = f.Value
		case "transfer-encoding":
			tes++
			for _, e := range strings.Split(f.Value, ",") {
				if e = strings.Trim(e, " \t"); e != "" {
					codings = append(codings, e)
				}
			}
		}
	}
	if hosts > 1 || hosts == 0 && r.proto == "HTTP/1.1" {
		return fmt.Errorf("%d Host fields in %s", hosts, r.proto)
	}
	switch {
	case cls > 0 && tes > 0:
		return errors.New("both Content-Length and Transfer-Encoding")
	case cls > 1:
		return errors.New("more than one Content-Length")
	case cls == 1:
		n, err := strconv.ParseUint(cl, 10, 63)
		if err != nil || cl[0] == '+' {
			return fmt.Errorf("Content-Length %q", cl)
		}
		if uint64(len(r.body)) != n {
			return fmt.Errorf("body of %d bytes for Content-Length %d", len(r.body), n)
		}
	case tes > 0:
		if r.proto != "HTTP/1.1" {
			return errors.New("Transfer-Encoding in HTTP/1.0")
		}
		// The edge decodes chunked only: it must be the one coding.
		if len(codings) != 1 || !strings.EqualFold(codings[0], "chunked") {
			return fmt.Errorf("transfer codings %q accepted", codings)
		}
	case r.body != "":
		return fmt.Errorf("body %q without framing", r.body)
	}
	return nil
}

// FuzzParseRequest feeds arbitrary bytes to the real connection loop as a
// client's request stream, read all at once and in pieces chosen by seed.
// Both must give the same output, and that output must be well-formed
// responses: 200s for well-formed requests, or a 4xx/5xx that ends the
// connection.
func FuzzParseRequest(f *testing.F) {
	for i, tc := range conformanceCorpus() {
		f.Add([]byte(tc.raw), uint64(i))
	}
	f.Add([]byte("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"), uint64(7))
	ms := newMemServer(f)
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		whole := ms.serve(t, data, nil)
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		maxRead := 1 + int(seed%64)
		split := ms.serve(t, data, func() int { return 1 + rng.IntN(maxRead) })
		if a, b := withoutDates(whole), withoutDates(split); !bytes.Equal(a, b) {
			t.Fatalf("output differs with reads of up to %d bytes:\nwhole: %q\nsplit: %q", maxRead, a, b)
		}
		if err := checkResponses(whole); err != nil {
			t.Fatalf("%v\ninput:  %q\noutput: %q", err, data, whole)
		}
	})
}

// chunkedResult is what decoding a chunked body produced.
type chunkedResult struct {
	body     []byte
	consumed int // input bytes read, when err is nil
	err      error
}

// decodeChunked runs conn.readChunked over in through a bufio.Reader of
// bufSize bytes, reading one byte at a time when oneByte is set.
func decodeChunked(t *testing.T, srv *Server, in []byte, bufSize int, oneByte bool) chunkedResult {
	t.Helper()
	rd := bytes.NewReader(in)
	var src io.Reader = rd
	if oneByte {
		src = iotest.OneByteReader(rd)
	}
	c := &conn{srv: srv, br: bufio.NewReaderSize(src, bufSize)}
	sink := bodySink{memLimit: srv.cfg.BodyMemoryLimit, dir: os.TempDir()} // never used: see below
	err := c.readChunked(&sink)
	if sink.file != nil {
		sink.discard()
		t.Fatal("chunked body spilled to a file under the body limit")
	}
	// After a failed read, mem may be longer than what was read into it
	// (it is grown to the announced chunk size first); size counts the
	// bytes that arrived.
	if sink.size > int64(len(sink.mem)) || err == nil && sink.size != int64(len(sink.mem)) {
		t.Fatalf("body sink holds %d bytes but counted %d", len(sink.mem), sink.size)
	}
	return chunkedResult{body: sink.mem[:sink.size], consumed: len(in) - rd.Len() - c.br.Buffered(), err: err}
}

// refDecodeChunked is a reference chunked decoder written straight from
// RFC 9112 section 7.1 and as lenient as it allows: anything after ";" in
// a chunk-size line is an extension, and trailer lines are skipped unread.
// It reports the body and how many bytes the chunked data took.
func refDecodeChunked(in []byte) (body []byte, consumed int, ok bool) {
	s := string(in)
	pos := 0
	line := func() (string, bool) {
		i := strings.Index(s[pos:], "\r\n")
		if i < 0 {
			return "", false
		}
		l := s[pos : pos+i]
		pos += i + 2
		return l, true
	}
	body = []byte{}
	for {
		l, ok := line()
		if !ok {
			return nil, 0, false
		}
		size, _, ext := strings.Cut(l, ";")
		if ext {
			size = strings.TrimRight(size, " \t")
		}
		n, err := strconv.ParseUint(size, 16, 63)
		if err != nil {
			return nil, 0, false
		}
		if n == 0 {
			for {
				l, ok := line()
				if !ok {
					return nil, 0, false
				}
				if l == "" {
					return body, pos, true
				}
			}
		}
		if uint64(len(s)-pos) < n+2 || s[pos+int(n):pos+int(n)+2] != "\r\n" {
			return nil, 0, false
		}
		body = append(body, s[pos:pos+int(n)]...)
		pos += int(n) + 2
	}
}

// errorCode is the status an error from readChunked becomes, 0 for I/O.
func errorCode(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.code
	}
	return 0
}

// FuzzChunked feeds arbitrary bytes to the chunked decoder. It must not
// panic, must never produce more body than it read, must decode the same
// way whatever the read sizes, and whatever it accepts the reference
// decoder must accept with the same body and length.
func FuzzChunked(f *testing.F) {
	for _, tc := range conformanceCorpus() {
		if i := strings.Index(tc.raw, "\r\n\r\n"); i >= 0 && strings.Contains(strings.ToLower(tc.raw[:i]), "transfer-encoding: chunked") {
			f.Add([]byte(tc.raw[i+4:]))
		}
	}
	f.Add([]byte("5;a=\"x\\\"y\"\r\nhello\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\n"))
	srv := NewServer(Config{LimitRequestBody: fuzzBodyLimit, BodyMemoryLimit: fuzzBodyLimit}, nil, logging.New(io.Discard, logging.Error))
	f.Fuzz(func(t *testing.T, in []byte) {
		got := decodeChunked(t, srv, in, bufSize, false)
		small := decodeChunked(t, srv, in, 16, true)
		if len(got.body) > len(in) || len(got.body) > got.consumed && got.err == nil {
			t.Fatalf("decoded %d bytes from %d (consumed %d)", len(got.body), len(in), got.consumed)
		}
		if (got.err == nil) != (small.err == nil) || errorCode(got.err) != errorCode(small.err) {
			t.Fatalf("read sizes change the outcome: %v, then %v", got.err, small.err)
		}
		if got.err != nil {
			return
		}
		if !bytes.Equal(got.body, small.body) || got.consumed != small.consumed {
			t.Fatalf("read sizes change the body: %q (%d), then %q (%d)", got.body, got.consumed, small.body, small.consumed)
		}
		ref, n, ok := refDecodeChunked(in)
		if !ok {
			t.Fatalf("accepted %q (body %q), which the reference decoder refuses", in, got.body)
		}
		if !bytes.Equal(ref, got.body) || n != got.consumed {
			t.Fatalf("body %q ending at %d, reference %q ending at %d", got.body, got.consumed, ref, n)
		}
	})
}
