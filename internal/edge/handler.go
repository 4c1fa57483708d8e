// Package edge is taipan's HTTP front: listeners, the HTTP/1.1 connection
// loop, request parsing and limits, request-body buffering and response
// writing. It knows nothing about Python; what runs a request is a Handler.
package edge

import (
	"bufio"
	"io"
	"net"
	"os"
)

// HeaderField is one request or response header line, in the order received
// or produced. Names keep the case they arrived with.
type HeaderField struct {
	Name  string
	Value string
}

// Request is a complete HTTP/1.x request: its head is parsed and validated
// and its body, if any, is fully buffered before a Handler sees it, so a slow
// client never holds whatever serves the request.
type Request struct {
	Method     string
	Target     string // request-target exactly as received
	Path       string // path part of Target, still percent-encoded
	RawQuery   string // part of Target after '?', without the '?'
	Proto      string // "HTTP/1.1" or "HTTP/1.0"
	ProtoMinor int    // 1 or 0
	Header     []HeaderField
	Host       string // Host header value (may be empty for HTTP/1.0)
	Body       *Body  // never nil; Len() == 0 when there is no body

	// ScriptName and PathInfo are the SCRIPT_NAME and PATH_INFO (decoded,
	// as CGI has it) that a web server sent with a uwsgi or FastCGI
	// request, when it sent a PATH_INFO (GatewayPaths): the app gets them
	// as sent rather than ones derived from Path, since nginx's PATH_INFO
	// is the URI after its rewrites and its SCRIPT_NAME the prefix it
	// mounts the app at. Path stays the path of the REQUEST_URI.
	GatewayPaths bool
	ScriptName   string
	PathInfo     string

	// Worker and WorkerPid are set by the Handler when a Python worker
	// served the request; the access log reports them.
	Worker    int
	WorkerPid int

	RemoteAddr string // client IP, or "" for a unix socket
	RemotePort string // client port, or ""
	ServerName string // host part of the listener's address
	ServerPort string // port of the listener ("" for a unix socket)
	Scheme     string // "http" (or "https" once TLS exists)
}

// Body is a buffered request body: in memory up to a threshold, in an
// unlinked-on-release temporary file above it.
type Body struct {
	mem    []byte
	file   *os.File // non-nil when spilled to disk
	size   int64
	pooled *[]byte // mem's buffer, from the Server's pool (HTTP/1 bodies)
}

// NewMemoryBody returns a Body that holds b in memory.
func NewMemoryBody(b []byte) *Body { return &Body{mem: b, size: int64(len(b))} }

// Len is the body length in bytes.
func (b *Body) Len() int64 { return b.size }

// Bytes returns the body when it is held in memory, and nil, false when it
// was spilled to a file.
func (b *Body) Bytes() ([]byte, bool) {
	if b.file != nil {
		return nil, false
	}
	return b.mem, true
}

// FilePath is the path of the spill file, or "" when the body is in memory.
// The file stays in place until the request's Handler returns.
func (b *Body) FilePath() string {
	if b.file == nil {
		return ""
	}
	return b.file.Name()
}

// Reader returns a reader over the whole body.
func (b *Body) Reader() io.Reader {
	if b.file != nil {
		return io.NewSectionReader(b.file, 0, b.size)
	}
	return &sliceReader{b: b.mem}
}

// release removes the spill file, if any.
func (b *Body) release() {
	if b.file != nil {
		name := b.file.Name()
		b.file.Close()
		os.Remove(name)
		b.file = nil
	}
}

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// ResponseHead is the status line and header block a Handler produces.
type ResponseHead struct {
	Code   int    // status code, 100..999
	Status string // "200 OK": code, a space, the reason phrase
	Header []HeaderField
}

// ResponseWriter is how a Handler answers. The edge adds Date and Server,
// chooses between Content-Length, chunked and close-delimited framing,
// suppresses bodies for HEAD, 1xx, 204 and 304, and keeps the connection
// alive when it safely can.
type ResponseWriter interface {
	// WriteHead sends the status and headers. When complete is true, body
	// is the entire response body and the edge may add Content-Length;
	// otherwise body is the first part of a body that Write continues.
	// Header values have already been validated by the Handler (no CR, LF
	// or NUL; names are tokens).
	WriteHead(head *ResponseHead, body []byte, complete bool) error
	// Write sends the next part of the body and flushes it to the client.
	// An error means the client is gone; the Handler should stop producing.
	Write(p []byte) error
	// SendFile sends n bytes of f from offset (sendfile(2) where possible).
	SendFile(f *os.File, offset, n int64) error
	// Abort marks the response as broken: the edge closes the connection
	// without terminating the body, so the client sees a truncated response.
	Abort()
	// HeadWritten reports whether WriteHead has been called.
	HeadWritten() bool
	// Upgrade switches the connection to another protocol (a WebSocket):
	// it sends head, a 101 response whose headers (Upgrade and Connection
	// among them) go out as given, and hands the connection over. From then
	// on the edge neither reads nor writes it; it closes the connection when
	// Serve returns.
	Upgrade(head *ResponseHead) (*Upgraded, error)
	// ClientGone returns a channel closed if the client closes its
	// connection while the response is still being produced. Watching
	// starts at the first call (a read in the background, so call it only
	// for a response that may take a while, such as a stream) and ends
	// when Serve returns.
	ClientGone() <-chan struct{}
}

// Upgraded is a connection handed over by ResponseWriter.Upgrade.
type Upgraded struct {
	Conn net.Conn
	// Reader holds what the client sent after the request head and reads
	// Conn underneath; read through it, not Conn.
	Reader *bufio.Reader
	// ShuttingDown is closed when the server begins a graceful shutdown:
	// the protocol should say goodbye (WebSocket close 1001) and end.
	ShuttingDown <-chan struct{}
}

// Handler serves one request. When Serve returns, the response is finished
// (a chunked body is terminated, buffers are flushed) and the request body is
// released. A Handler that never calls WriteHead gets a 500. The Request,
// its Header slice, the bytes of its Body and the ResponseWriter are reused
// (the body's for another connection's request), so a Handler must not keep
// them, nor leave anything reading them, after Serve returns (the strings
// they hold may be kept).
type Handler interface {
	Serve(w ResponseWriter, r *Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w ResponseWriter, r *Request)

// Serve calls f(w, r).
func (f HandlerFunc) Serve(w ResponseWriter, r *Request) { f(w, r) }
