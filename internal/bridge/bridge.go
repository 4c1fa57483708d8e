// Package bridge connects the HTTP edge to the Python worker pool: it turns
// each request into a WSGI environ, submits it as a job, and streams the
// worker's response frames back to the client.
package bridge

import (
	"errors"
	"strconv"
	"strings"
	"sync"

	"taipan/internal/edge"
	"taipan/internal/logging"
	"taipan/internal/pool"
	"taipan/internal/wire"
)

// Bridge is the edge.Handler that serves requests with a pool of WSGI workers.
type Bridge struct {
	pool       *pool.Pool
	log        *logging.Logger
	scriptName string // --root-path, without a trailing slash
	lanes      []Lane
	fixed      []byte // encoded environ keys that are the same for every request
	ws         WebSocketOptions
	scratch    sync.Pool
}

// Options are the facts about the deployment that the environ reports.
type Options struct {
	RootPath     string // becomes SCRIPT_NAME ("" or "/" for none)
	Multiprocess bool   // wsgi.multiprocess: more than one worker process
	Multithread  bool   // wsgi.multithread: a worker runs requests concurrently
	Lanes        []Lane // pools reserved for path prefixes
	WebSocket    WebSocketOptions
}

// Lane sends the requests whose path starts with Prefix (as whole
// segments) to its own pool.
type Lane struct {
	Prefix string
	Pool   *pool.Pool
}

// New returns a Bridge that sends requests to p.
func New(p *pool.Pool, opts Options, log *logging.Logger) *Bridge {
	b := &Bridge{pool: p, log: log, scriptName: strings.TrimRight(opts.RootPath, "/"), lanes: opts.Lanes, ws: opts.WebSocket}
	b.ws.setDefaults()
	// The keys that never change are encoded once; the worker adds only
	// wsgi.input, wsgi.errors and wsgi.file_wrapper, which must be objects.
	var e wire.EnvironEncoder
	e.Reset()
	e.AddIntPair("wsgi.version", 1, 0)
	e.AddBool("wsgi.multithread", opts.Multithread)
	e.AddBool("wsgi.multiprocess", opts.Multiprocess)
	e.AddBool("wsgi.run_once", false)
	e.Add("SERVER_SOFTWARE", "taipan")
	b.fixed = e.Pairs()
	b.scratch.New = func() any { return new(scratch) }
	return b
}

var (
	badGateway = &edge.ResponseHead{Code: 502, Status: "502 Bad Gateway",
		Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}}}
	gatewayTimeout = &edge.ResponseHead{Code: 504, Status: "504 Gateway Timeout",
		Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}}}
	internalError = &edge.ResponseHead{Code: 500, Status: "500 Internal Server Error",
		Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}}}
	unavailable = &edge.ResponseHead{Code: 503, Status: "503 Service Unavailable",
		Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}, {Name: "Connection", Value: "close"}}}
)

// scratch is the per-request working memory of Serve, recycled between
// requests so that the hot path does not allocate it each time.
type scratch struct {
	environ wire.EnvironEncoder
	head    wire.ResponseHead
	out     edge.ResponseHead
}

// Serve runs one request on a worker.
func (b *Bridge) Serve(w edge.ResponseWriter, r *edge.Request) {
	s := b.scratch.Get().(*scratch)
	// The environ bytes are referenced by the queued job until a worker's
	// batch copies them, which happens before any response; s is free
	// again once Serve returns.
	defer b.scratch.Put(s)
	p := b.route(r.Path)
	var environ []byte
	var bodyFile bool
	if p.Interface() == "asgi" {
		if isWebSocketUpgrade(r) {
			b.serveWebSocket(w, r, p, s)
			return
		}
		environ, bodyFile = b.asgiScope(&s.environ, r, false)
	} else {
		// A WSGI app gets an upgrade request as a plain request, as under
		// gunicorn: it sees the Upgrade header and answers over HTTP.
		environ, bodyFile = b.environ(&s.environ, r)
	}
	var inline []byte
	if !bodyFile {
		inline, _ = r.Body.Bytes()
	}
	job := pool.NewJob(r.Method, r.Target, environ, inline, bodyFile)
	if err := p.Submit(job); err != nil {
		w.WriteHead(unavailable, []byte("Service Unavailable\n"), true)
		return
	}
	finished := false
	defer func() {
		// The access log names the worker that ran the request.
		r.Worker, r.WorkerPid = job.Worker()
		job.Release(!finished)
	}()
	// The client is watched once a response streams, or once an ASGI
	// request has run a while (the pool says so), so that the app hears of
	// a client that leaves a long poll before anything was sent.
	var gone <-chan struct{}
	for {
		select {
		case ev := <-job.Events():
			if ev.WatchClient {
				if gone == nil {
					gone = w.ClientGone()
				}
				continue
			}
			done, err := b.forward(w, r, s, &ev)
			ev.Release()
			if err == errResponseRefused {
				return // not finished: the release stops the app
			}
			if err != nil {
				// The client is gone: stop the app producing for nobody.
				w.Abort()
				return
			}
			if done {
				finished = true
				return
			}
			if gone == nil && w.HeadWritten() {
				// A streaming response may wait long between parts (server-
				// sent events, long polls): notice a client that leaves
				// meanwhile, so the app hears of it (CANCEL, http.disconnect).
				gone = w.ClientGone()
			}
		case <-gone:
			w.Abort()
			return
		}
	}
}

// route picks the pool for a request path: its lane's, or the main one.
func (b *Bridge) route(path string) *pool.Pool {
	for i := range b.lanes {
		if l := &b.lanes[i]; strings.HasPrefix(path, l.Prefix) && (len(path) == len(l.Prefix) || path[len(l.Prefix)] == '/') {
			return l.Pool
		}
	}
	return b.pool
}

// serverPort is SERVER_PORT, which PEP 3333 says is never empty. A unix
// socket has no port: then it is the Host header's, else the scheme's
// default, as gunicorn gives it.
func serverPort(r *edge.Request) string {
	if r.ServerPort != "" {
		return r.ServerPort
	}
	if i := strings.LastIndexByte(r.Host, ':'); i >= 0 && !strings.HasSuffix(r.Host, "]") {
		return r.Host[i+1:]
	}
	if r.Scheme == "https" {
		return "443"
	}
	return "80"
}

// errResponseRefused is forward's answer when it refused a response head
// that the app is still streaming a body after: the client has a 500, and
// the request must be cancelled on its worker.
var errResponseRefused = errors.New("bridge: response refused mid-stream")

// forward writes one response event to the client. It reports whether the
// response is complete, and an error when the client can no longer be written
// (or errResponseRefused).
func (b *Bridge) forward(w edge.ResponseWriter, r *edge.Request, s *scratch, ev *pool.Event) (done bool, err error) {
	if ev.Err != nil {
		if errors.Is(ev.Err, pool.ErrShutdown) {
			// Not the app's fault, and not a crash: taipan is stopping.
			// A client with no response yet is told to come back.
			b.log.Warnf("%s %s: cut short: %v", r.Method, r.Target, ev.Err)
			if !w.HeadWritten() {
				return true, w.WriteHead(unavailable, []byte("Service Unavailable\n"), true)
			}
			w.Abort()
			return true, nil
		}
		if !w.HeadWritten() {
			if errors.Is(ev.Err, pool.ErrClosed) {
				return true, w.WriteHead(unavailable, []byte("Service Unavailable\n"), true)
			}
			if errors.Is(ev.Err, pool.ErrTimeout) {
				return true, w.WriteHead(gatewayTimeout, []byte("Gateway Timeout\n"), true)
			}
			b.log.Errorf("%s %s: %v", r.Method, r.Target, ev.Err)
			return true, w.WriteHead(badGateway, []byte("Bad Gateway\n"), true)
		}
		w.Abort()
		return true, nil
	}
	switch ev.Kind {
	case wire.KindHead:
		h := &s.head
		if err := wire.DecodeHeadInto(ev.Payload, h); err != nil {
			b.log.Errorf("%s %s: invalid response from the app: %v", r.Method, r.Target, err)
			if werr := w.WriteHead(internalError, []byte("Internal Server Error\n"), true); werr != nil {
				return true, werr
			}
			if ev.Flags&wire.FlagEnd == 0 {
				// The app goes on producing a body that nobody will get
				// (an endless stream would hold its worker for good).
				return true, errResponseRefused
			}
			return true, nil
		}
		out := &s.out
		out.Code, out.Status, out.Header = h.Code, h.Status, out.Header[:0]
		for _, f := range h.Header {
			out.Header = append(out.Header, edge.HeaderField{Name: f[0], Value: f[1]})
		}
		end := ev.Flags&wire.FlagEnd != 0
		return end, w.WriteHead(out, h.Body, end)
	case wire.KindBody:
		if len(ev.Payload) > 0 {
			if err := w.Write(ev.Payload); err != nil {
				return true, err
			}
		}
		return ev.Flags&wire.FlagEnd != 0, nil
	case wire.KindFile:
		defer ev.File.Close()
		offset, count, err := pool.FileRange(ev)
		if err != nil {
			b.log.Errorf("%s %s: %v", r.Method, r.Target, err)
			w.Abort()
			return true, nil
		}
		return false, w.SendFile(ev.File, offset, count)
	case wire.KindAbort:
		if !w.HeadWritten() {
			return true, w.WriteHead(internalError, []byte("Internal Server Error\n"), true)
		}
		w.Abort()
		return true, nil
	}
	b.log.Errorf("%s %s: unexpected %v frame from worker", r.Method, r.Target, ev.Kind)
	w.Abort()
	return true, nil
}

// environ encodes the CGI and HTTP_ keys of r as the worker expects them
// (docs/protocol.md). It reports whether the body travels as a file.
func (b *Bridge) environ(e *wire.EnvironEncoder, r *edge.Request) ([]byte, bool) {
	e.Reset()
	e.AddPairs(b.fixed)
	e.Add("REQUEST_METHOD", r.Method)
	e.Add("SERVER_PROTOCOL", r.Proto)
	scriptName, pathInfo := b.paths(r)
	e.Add("SCRIPT_NAME", scriptName)
	e.AddBytes("PATH_INFO", pathInfo)
	e.Add("QUERY_STRING", r.RawQuery)
	e.Add("RAW_URI", r.Target)
	e.Add("REQUEST_URI", r.Target)
	e.Add("SERVER_NAME", r.ServerName)
	e.Add("SERVER_PORT", serverPort(r))
	e.Add("REMOTE_ADDR", r.RemoteAddr)
	e.Add("REMOTE_PORT", r.RemotePort)
	e.Add("wsgi.url_scheme", r.Scheme)
	if n := r.Body.Len(); n > 0 || r.Method == "POST" || r.Method == "PUT" || r.Method == "PATCH" {
		e.Add("CONTENT_LENGTH", strconv.FormatInt(n, 10))
	}
	addHeaders(e, r.Header)
	bodyFile := false
	if path := r.Body.FilePath(); path != "" {
		e.Add("taipan.body_path", path)
		bodyFile = true
	}
	return e.Bytes(), bodyFile
}

// paths returns the SCRIPT_NAME and PATH_INFO (decoded) of r. Over HTTP,
// SCRIPT_NAME is --root-path, and PATH_INFO the path with it removed from
// the front when it is there. A web server's own pair, from uwsgi or
// FastCGI, is taken as sent, as uWSGI and flup do: its SCRIPT_NAME wins
// over --root-path, which is removed from the front of its PATH_INFO only
// when it sent no SCRIPT_NAME (nginx's uwsgi_params sends none), as from
// an HTTP path.
func (b *Bridge) paths(r *edge.Request) (string, []byte) {
	var pathInfo []byte
	switch {
	case r.GatewayPaths && r.ScriptName != "":
		return r.ScriptName, []byte(r.PathInfo)
	case r.GatewayPaths:
		pathInfo = []byte(r.PathInfo)
	case r.Path != "*":
		// OPTIONS * has no path; PEP 3333 (and wsgiref.validate) want
		// PATH_INFO empty or starting with '/'. RAW_URI still says "*".
		pathInfo = percentDecode(r.Path)
	}
	if b.scriptName != "" && hasPathPrefix(pathInfo, b.scriptName) {
		pathInfo = pathInfo[len(b.scriptName):]
	}
	return b.scriptName, pathInfo
}

// addHeaders adds the HTTP_* keys, joining repeated headers. Names with '_'
// are dropped: after the '-' to '_' mapping they would be indistinguishable
// from the real header (X_Forwarded_For forging X-Forwarded-For).
func addHeaders(e *wire.EnvironEncoder, header []edge.HeaderField) {
	for i := range header {
		f := &header[i]
		if strings.IndexByte(f.Name, '_') >= 0 || isFraming(f.Name) || seen(header[:i], f.Name) {
			continue
		}
		value := f.Value
		for j := i + 1; j < len(header); j++ {
			if g := &header[j]; len(g.Name) == len(f.Name) && strings.EqualFold(g.Name, f.Name) {
				sep := ", "
				if strings.EqualFold(f.Name, "Cookie") {
					sep = "; "
				}
				value += sep + g.Value
			}
		}
		if strings.EqualFold(f.Name, "Content-Type") {
			e.Add("CONTENT_TYPE", value)
			continue
		}
		e.AddHTTP(f.Name, value)
	}
}

// isFraming reports the headers that describe the request's framing, which
// the edge has dealt with: CONTENT_LENGTH is the buffered body's length.
func isFraming(name string) bool {
	return strings.EqualFold(name, "Content-Length") || strings.EqualFold(name, "Transfer-Encoding")
}

// seen reports whether an earlier header has the same name (then its value
// was already joined into that one's).
func seen(earlier []edge.HeaderField, name string) bool {
	for i := range earlier {
		if len(earlier[i].Name) == len(name) && strings.EqualFold(earlier[i].Name, name) {
			return true
		}
	}
	return false
}

// percentDecode decodes %XX escapes into raw bytes; a malformed escape is
// kept as it is, as gunicorn and uWSGI do.
func percentDecode(s string) []byte {
	if strings.IndexByte(s, '%') < 0 {
		return []byte(s)
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return out
}

// hasPathPrefix reports whether path starts with prefix as whole segments.
func hasPathPrefix(path []byte, prefix string) bool {
	return len(path) >= len(prefix) && string(path[:len(prefix)]) == prefix &&
		(len(path) == len(prefix) || path[len(prefix)] == '/')
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
