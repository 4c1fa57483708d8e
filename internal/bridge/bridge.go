// Package bridge connects the HTTP edge to the Python worker pool: it turns
// each request into a WSGI environ, submits it as a job, and streams the
// worker's response frames back to the client.
package bridge

import (
	"errors"
	"strconv"
	"strings"

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
}

// New returns a Bridge. rootPath becomes SCRIPT_NAME ("" or "/" for none).
func New(p *pool.Pool, rootPath string, log *logging.Logger) *Bridge {
	return &Bridge{pool: p, log: log, scriptName: strings.TrimRight(rootPath, "/")}
}

var (
	badGateway = &edge.ResponseHead{Code: 502, Status: "502 Bad Gateway",
		Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}}}
	internalError = &edge.ResponseHead{Code: 500, Status: "500 Internal Server Error",
		Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}}}
	unavailable = &edge.ResponseHead{Code: 503, Status: "503 Service Unavailable",
		Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}, {Name: "Connection", Value: "close"}}}
)

// Serve runs one request on a worker.
func (b *Bridge) Serve(w edge.ResponseWriter, r *edge.Request) {
	environ, bodyFile := b.environ(r)
	var inline []byte
	if !bodyFile {
		inline, _ = r.Body.Bytes()
	}
	job := pool.NewJob(environ, inline, bodyFile)
	if err := b.pool.Submit(job); err != nil {
		w.WriteHead(unavailable, []byte("Service Unavailable\n"), true)
		return
	}
	finished := false
	defer func() { job.Release(!finished) }()
	for ev := range job.Events() {
		done, err := b.forward(w, r, &ev)
		ev.Release()
		if err != nil {
			// The client is gone: stop the app producing for nobody.
			w.Abort()
			return
		}
		if done {
			finished = true
			return
		}
	}
}

// forward writes one response event to the client. It reports whether the
// response is complete, and an error when the client can no longer be written.
func (b *Bridge) forward(w edge.ResponseWriter, r *edge.Request, ev *pool.Event) (done bool, err error) {
	if ev.Err != nil {
		if !w.HeadWritten() {
			if errors.Is(ev.Err, pool.ErrClosed) {
				return true, w.WriteHead(unavailable, []byte("Service Unavailable\n"), true)
			}
			b.log.Errorf("%s %s: %v", r.Method, r.Target, ev.Err)
			return true, w.WriteHead(badGateway, []byte("Bad Gateway\n"), true)
		}
		w.Abort()
		return true, nil
	}
	switch ev.Kind {
	case wire.KindHead:
		h, err := wire.DecodeHead(ev.Payload)
		if err != nil {
			b.log.Errorf("%s %s: invalid response from the app: %v", r.Method, r.Target, err)
			return true, w.WriteHead(internalError, []byte("Internal Server Error\n"), true)
		}
		head := &edge.ResponseHead{Code: h.Code, Status: h.Status, Header: make([]edge.HeaderField, len(h.Header))}
		for i, f := range h.Header {
			head.Header[i] = edge.HeaderField{Name: f[0], Value: f[1]}
		}
		end := ev.Flags&wire.FlagEnd != 0
		return end, w.WriteHead(head, h.Body, end)
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
func (b *Bridge) environ(r *edge.Request) ([]byte, bool) {
	var e wire.EnvironEncoder
	e.Reset()
	e.Add("REQUEST_METHOD", r.Method)
	e.Add("SERVER_PROTOCOL", r.Proto)
	var pathInfo []byte
	if r.Path != "*" {
		// OPTIONS * has no path; PEP 3333 (and wsgiref.validate) want
		// PATH_INFO empty or starting with '/'. RAW_URI still says "*".
		pathInfo = percentDecode(r.Path)
	}
	scriptName := b.scriptName
	if scriptName != "" && hasPathPrefix(pathInfo, scriptName) {
		pathInfo = pathInfo[len(scriptName):]
	}
	e.Add("SCRIPT_NAME", scriptName)
	e.AddBytes("PATH_INFO", pathInfo)
	e.Add("QUERY_STRING", r.RawQuery)
	e.Add("RAW_URI", r.Target)
	e.Add("REQUEST_URI", r.Target)
	e.Add("SERVER_NAME", r.ServerName)
	e.Add("SERVER_PORT", r.ServerPort)
	e.Add("REMOTE_ADDR", r.RemoteAddr)
	e.Add("REMOTE_PORT", r.RemotePort)
	e.Add("wsgi.url_scheme", r.Scheme)
	if n := r.Body.Len(); n > 0 || r.Method == "POST" || r.Method == "PUT" || r.Method == "PATCH" {
		e.Add("CONTENT_LENGTH", strconv.FormatInt(n, 10))
	}
	addHeaders(&e, r.Header)
	bodyFile := false
	if path := r.Body.FilePath(); path != "" {
		e.Add("taipan.body_path", path)
		bodyFile = true
	}
	return e.Bytes(), bodyFile
}

// addHeaders adds HTTP_* keys, joining repeated headers. Names with '_' are
// dropped: after the '-' to '_' mapping they would be indistinguishable from
// the real header (X_Forwarded_For forging X-Forwarded-For).
func addHeaders(e *wire.EnvironEncoder, header []edge.HeaderField) {
	seen := make(map[string]int, len(header))
	keys := make([]string, 0, len(header))
	values := make([]string, 0, len(header))
	for _, f := range header {
		if strings.IndexByte(f.Name, '_') >= 0 {
			continue
		}
		key := cgiKey(f.Name)
		if key == "HTTP_CONTENT_LENGTH" || key == "HTTP_TRANSFER_ENCODING" {
			// CONTENT_LENGTH describes the buffered body; the framing
			// headers of the request are the edge's business.
			continue
		}
		if key == "HTTP_CONTENT_TYPE" {
			key = "CONTENT_TYPE"
		}
		if i, ok := seen[key]; ok {
			sep := ", "
			if key == "HTTP_COOKIE" {
				sep = "; "
			}
			values[i] += sep + f.Value
			continue
		}
		seen[key] = len(keys)
		keys = append(keys, key)
		values = append(values, f.Value)
	}
	for i, k := range keys {
		e.Add(k, values[i])
	}
}

// cgiKey maps a header name to its environ key: HTTP_ + upper case, '-' to '_'.
func cgiKey(name string) string {
	b := make([]byte, 5+len(name))
	copy(b, "HTTP_")
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-':
			c = '_'
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		}
		b[5+i] = c
	}
	return string(b)
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
