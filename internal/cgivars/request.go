// Package cgivars is what taipan's gateway front ends, uwsgi and FastCGI,
// share. Both receive a request from a web server (nginx) as CGI variables
// plus a body, answer it with a CGI- or HTTP-style head plus a body, and run
// their connections the way the HTTP engine in package edge does:
//
//   - Builder turns the CGI variables into an edge.Request, with limits;
//   - Response implements the edge's response rules (Date and Server,
//     hop-by-hop headers dropped, Content-Length for complete bodies, no
//     body for HEAD, 204 and 304, a 500 for a Handler that said nothing)
//     over a protocol's own body framing;
//   - Conns tracks listeners and connections for a graceful Shutdown, and
//     Conn applies the edge.Config timeouts to every read and write.
package cgivars

import (
	"bytes"
	"strconv"
	"strings"
	"taipan/internal/httpsyntax"

	"taipan/internal/edge"
)

// metaVarAllowance is how many variables besides the HTTP_ ones a request
// may carry. nginx's uwsgi_params and fastcgi_params send about twenty.
const metaVarAllowance = 64

// Limits bound the CGI variables of one request, as edge.Config bounds an
// HTTP request head.
type Limits struct {
	URI     int // longest REQUEST_URI (LimitRequestLine); more gets 414
	Field   int // longest HTTP_ variable as a header line (LimitRequestFieldSize); more gets 431
	Headers int // most HTTP_ variables (LimitRequestFields); more gets 431
}

// LimitsFor returns the Limits matching cfg's HTTP request limits.
func LimitsFor(cfg *edge.Config) Limits {
	return Limits{URI: cfg.LimitRequestLine, Field: cfg.LimitRequestFieldSize, Headers: cfg.LimitRequestFields}
}

// MaxVar is the largest name plus value any variable may have; a protocol
// that learns a variable's size before its bytes rejects larger ones
// without buffering them.
func (l Limits) MaxVar() int { return max(l.URI, l.Field) + len("REQUEST_URI") }

// Error is a request the web server sent that taipan refuses with an HTTP
// status, as the HTTP engine refuses a bad request head.
type Error struct {
	Code   int
	Status string // "431 Request Header Fields Too Large"
	Reason string // said in the response body and the error log
}

func (e *Error) Error() string { return e.Status + ": " + e.Reason }

func badRequest(reason string) *Error { return &Error{400, "400 Bad Request", reason} }

func tooLarge(reason string) *Error {
	return &Error{431, "431 Request Header Fields Too Large", reason}
}

var (
	// ErrBodyTooLarge answers a body over edge.Config.LimitRequestBody.
	ErrBodyTooLarge = &Error{413, "413 Content Too Large", "request body too large"}
	// ErrVarTooLarge answers a variable over Limits.MaxVar.
	ErrVarTooLarge = tooLarge("variable too long")
)

// Addrs are a connection's own addresses, the fallback when the web server
// does not send REMOTE_ADDR, SERVER_NAME and the like.
type Addrs struct {
	RemoteAddr string // peer IP, "" for a unix socket
	RemotePort string
	ServerName string // listener host, "localhost" for a unix socket
	ServerPort string
}

// Builder collects the CGI variables of one request and turns them into an
// edge.Request. A connection keeps one and resets it for each request.
type Builder struct {
	lim      Limits
	nvars    int
	headers  []edge.HeaderField // from HTTP_ variables, in arrival order
	clen     int64              // CONTENT_LENGTH, or -1
	err      *Error             // first refusal; later variables are ignored
	method   string
	uri      string
	hasURI   bool
	script   string
	pathInfo string
	hasPath  bool // PATH_INFO was sent, even empty
	strip    bool // StripScriptName
	query    string
	proto    string
	ctype    string
	host     string
	https    bool
	remote   string
	rport    string
	sname    string
	sport    string
}

// Reset readies b for a new request under lim.
func (b *Builder) Reset(lim Limits) {
	*b = Builder{lim: lim, headers: b.headers[:0], clen: -1}
}

// Add records one variable; name and value are copied. It returns the
// *Error the request is to be refused with, and keeps returning it: the
// caller stops reading variables and answers it.
func (b *Builder) Add(name, value []byte) error {
	if b.err != nil {
		return b.err
	}
	b.nvars++
	if b.nvars > b.lim.Headers+metaVarAllowance {
		return b.fail(tooLarge("too many variables"))
	}
	if len(name) > len("HTTP_") && bytes.HasPrefix(name, []byte("HTTP_")) {
		return b.addHeader(name[len("HTTP_"):], value)
	}
	if len(name)+len(value) > b.lim.MaxVar() {
		return b.fail(tooLarge("variable " + string(name) + " too long"))
	}
	switch string(name) {
	case "REQUEST_METHOD":
		b.method = string(value)
	case "REQUEST_URI":
		if len(value) > b.lim.URI {
			return b.fail(&Error{414, "414 URI Too Long", "REQUEST_URI too long"})
		}
		b.uri, b.hasURI = string(value), len(value) > 0
	case "SCRIPT_NAME":
		b.script = string(value)
	case "PATH_INFO":
		b.pathInfo, b.hasPath = string(value), true
	case "QUERY_STRING":
		b.query = string(value)
	case "SERVER_PROTOCOL":
		b.proto = string(value)
	case "CONTENT_TYPE":
		b.ctype = string(value)
	case "CONTENT_LENGTH":
		if len(value) == 0 {
			break
		}
		n, ok := parseDecimal(value)
		if !ok {
			return b.fail(badRequest("invalid CONTENT_LENGTH"))
		}
		b.clen = n
	case "HTTPS":
		b.https = b.https || strings.EqualFold(string(value), "on") || string(value) == "1"
	case "REQUEST_SCHEME":
		b.https = b.https || strings.EqualFold(string(value), "https")
	case "REMOTE_ADDR":
		b.remote = string(value)
	case "REMOTE_PORT":
		b.rport = string(value)
	case "SERVER_NAME":
		b.sname = string(value)
	case "SERVER_PORT":
		b.sport = string(value)
	}
	return nil
}

// addHeader records the header an HTTP_ variable stands for.
func (b *Builder) addHeader(upper, value []byte) error {
	// A header line is "Name: value", which is what the HTTP engine's
	// LimitRequestFieldSize counts.
	if len(upper)+2+len(value) > b.lim.Field {
		return b.fail(tooLarge("header " + string(upper) + " too long"))
	}
	switch string(upper) {
	case "CONTENT_LENGTH", "CONTENT_TYPE", "TRANSFER_ENCODING":
		// The body's framing is the gateway protocol's business, and its
		// length and type come as CONTENT_LENGTH and CONTENT_TYPE; nginx
		// sends the client's headers too, which would only duplicate them.
		return nil
	}
	if len(b.headers) >= b.lim.Headers {
		return b.fail(tooLarge("too many headers"))
	}
	name, ok := headerName(upper)
	if !ok {
		return b.fail(badRequest("invalid header variable HTTP_" + string(upper)))
	}
	if !httpsyntax.ValidFieldValue(value) {
		return b.fail(badRequest("control character in HTTP_" + string(upper)))
	}
	v := string(value)
	if name == "Host" && b.host == "" {
		b.host = v
	}
	b.headers = append(b.headers, edge.HeaderField{Name: name, Value: v})
	return nil
}

func (b *Builder) fail(e *Error) error {
	b.err = e
	return e
}

// StripScriptName makes Build remove SCRIPT_NAME from the front of
// PATH_INFO, which is what uWSGI does for a request with modifier1 30
// (nginx's uwsgi_modifier1 30): it is for a configuration that sets
// SCRIPT_NAME next to uwsgi_params, whose PATH_INFO is the whole path.
// Reset forgets it.
func (b *Builder) StripScriptName() { b.strip = true }

// ContentLength is CONTENT_LENGTH, or -1 when the web server sent none.
func (b *Builder) ContentLength() int64 { return b.clen }

// Build fills r from the variables, with body as its body; addrs stand in
// for addresses the web server did not send. r's Header slice is reused.
// What the variables could not be checked for one at a time (a method, a
// target) is checked here. On error r still holds what is known of the
// request, for the access log.
//
// When the web server sent a PATH_INFO, the request carries it and
// SCRIPT_NAME for the app (edge.Request.GatewayPaths), as uWSGI and flup
// pass them on. Without one, as under nginx's fastcgi_params, whose
// SCRIPT_NAME is the whole path, the app's are derived from the target.
func (b *Builder) Build(r *edge.Request, body *edge.Body, addrs *Addrs) error {
	script, pathInfo := b.script, b.pathInfo
	if b.hasPath {
		script, pathInfo = b.gatewayPaths()
	}
	target := b.uri
	var err error
	if !b.hasURI {
		// CGI's pieces: PATH_INFO is decoded, the target is not.
		target = script + escapePath(pathInfo)
		if target == "" {
			target = "/"
		}
		if b.query != "" {
			target += "?" + b.query
		}
		if len(target) > b.lim.URI {
			err = &Error{414, "414 URI Too Long", "SCRIPT_NAME, PATH_INFO and QUERY_STRING too long"}
		}
	}
	path, query, terr := splitTarget(target)
	header := r.Header[:0]
	if b.ctype != "" {
		header = append(header, edge.HeaderField{Name: "Content-Type", Value: b.ctype})
	}
	if b.clen >= 0 || body.Len() > 0 {
		// The buffered body is what the app gets, and what it is told.
		header = append(header, edge.HeaderField{Name: "Content-Length", Value: strconv.FormatInt(body.Len(), 10)})
	}
	header = append(header, b.headers...)
	remote, rport := addrs.RemoteAddr, addrs.RemotePort
	if b.remote != "" {
		// The port that goes with nginx's REMOTE_ADDR, not the socket's
		// peer port, which is nginx's own.
		remote, rport = b.remote, b.rport
	}
	*r = edge.Request{
		Method:     b.method,
		Target:     target,
		Path:       path,
		RawQuery:   query,
		Proto:      "HTTP/1.1",
		ProtoMinor: 1,
		Header:     header,
		Host:       b.host,
		Body:       body,
		RemoteAddr: remote,
		RemotePort: rport,
		ServerName: or(b.sname, addrs.ServerName),
		ServerPort: or(b.sport, addrs.ServerPort),
		Scheme:     "http",
	}
	if b.hasPath {
		r.GatewayPaths, r.ScriptName, r.PathInfo = true, script, pathInfo
	}
	switch b.proto {
	case "HTTP/1.0", "HTTP/0.9":
		r.Proto, r.ProtoMinor = "HTTP/1.0", 0
	}
	// Anything else, HTTP/2.0 and HTTP/3.0 from nginx among them, is
	// served as HTTP/1.1: the Request speaks only HTTP/1.x, and what
	// differs in later versions is the web server's business.
	if b.https {
		r.Scheme = "https"
	}
	switch {
	case b.err != nil:
		return b.err
	case b.method == "" || !httpsyntax.IsToken(b.method):
		return badRequest("missing or invalid REQUEST_METHOD")
	case err != nil:
		return err
	case terr != nil:
		return terr
	}
	return nil
}

// gatewayPaths returns SCRIPT_NAME and PATH_INFO as the app is to see
// them. SCRIPT_NAME loses any trailing slash, which moves to the front of
// PATH_INFO if that has none: PEP 3333 wants "" and "/" rather than "/"
// and "" (wsgiref.validate insists), and fastcgi_split_path_info with a
// pattern like ^(/app/)(.*)$ sends "/app/" and "x". With StripScriptName,
// SCRIPT_NAME is then removed from the front of PATH_INFO when it is there
// as whole segments ("/mnt" from "/mnt/x" and "/mnt", not from "/mntx").
func (b *Builder) gatewayPaths() (script, pathInfo string) {
	script, pathInfo = b.script, b.pathInfo
	if trimmed := strings.TrimRight(script, "/"); len(trimmed) < len(script) {
		script = trimmed
		if !strings.HasPrefix(pathInfo, "/") {
			pathInfo = "/" + pathInfo
		}
	}
	if b.strip && script != "" && strings.HasPrefix(pathInfo, script) &&
		(len(pathInfo) == len(script) || pathInfo[len(script)] == '/') {
		pathInfo = pathInfo[len(script):]
	}
	return script, pathInfo
}

// splitTarget splits a request target into its path and query. Besides
// origin-form ("/p?q") it takes "*" and an absolute-form URI, whose path it
// keeps.
func splitTarget(target string) (path, query string, err error) {
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == 0x7f {
			return target, "", badRequest("control character or space in the request target")
		}
	}
	path, query, _ = strings.Cut(target, "?")
	switch {
	case strings.HasPrefix(path, "/"), path == "*":
	case strings.Contains(path, "://"):
		_, rest, _ := strings.Cut(path, "://")
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			path = rest[i:]
		} else {
			path = "/"
		}
	default:
		return path, query, badRequest("request target is not a path")
	}
	return path, query, nil
}

// headerName turns the part of an HTTP_ variable after the prefix into a
// header name: X_FORWARDED_FOR becomes X-Forwarded-For.
func headerName(upper []byte) (string, bool) {
	var sb strings.Builder
	sb.Grow(len(upper))
	start := true
	for i := 0; i < len(upper); i++ {
		c := upper[i]
		switch {
		case c == '_':
			c = '-'
			start = true
		case 'A' <= c && c <= 'Z':
			if !start {
				c += 'a' - 'A'
			}
			start = false
		case httpsyntax.IsTokenChar(c):
			start = false
		default:
			return "", false
		}
		sb.WriteByte(c)
	}
	return sb.String(), true
}

// escapePath percent-encodes what may not appear in a request path, so
// that a decoded PATH_INFO becomes a target again.
func escapePath(s string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	out := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		if c := s[i]; needsEscape(c) {
			out = append(out, '%', hex[c>>4], hex[c&15])
		} else {
			out = append(out, c)
		}
	}
	return string(out)
}

func needsEscape(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '%' || c == '?' || c == '#' || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' || c == '`' || c == '{' || c == '|' || c == '}'
}

// parseDecimal parses a non-negative decimal of at most 18 digits, so it
// cannot overflow.
func parseDecimal[T string | []byte](v T) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func or(s, fallback string) string {
	if s != "" {
		return s
	}
	return fallback
}
