package bridge

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"taipan/internal/edge"
	"taipan/internal/wire"
)

// asgiScope encodes r as an ASGI http or websocket scope (docs/protocol.md),
// complete but for the objects the worker adds ("asgi", "state",
// "extensions"). Headers go as received, in order, names lower-cased, so
// repeated headers stay apart; only the framing headers are replaced by the
// buffered body's content-length. It reports whether the body travels as a
// file.
func (b *Bridge) asgiScope(e *wire.EnvironEncoder, r *edge.Request, websocket bool) ([]byte, bool) {
	e.Reset()
	scheme := r.Scheme
	if websocket {
		e.Add("type", "websocket")
		if scheme == "https" {
			scheme = "wss"
		} else {
			scheme = "ws"
		}
	} else {
		e.Add("type", "http")
		e.Add("method", r.Method)
	}
	e.Add("scheme", scheme)
	e.Add("http_version", strings.TrimPrefix(r.Proto, "HTTP/"))
	// The request target without the query, decoded, and without
	// root_path: WSGI's PATH_INFO, as paths gives it, for a request from a
	// web server too; "*" for OPTIONS * (where PATH_INFO is empty).
	// raw_path is the path as the client sent it (REQUEST_URI's, from a
	// web server).
	rootPath, path := b.paths(r)
	if r.Path == "*" && !r.GatewayPaths {
		path = []byte("*")
	}
	if utf8.Valid(path) {
		e.AddUTF8("path", string(path))
	} else {
		e.AddUTF8("path", strings.ToValidUTF8(string(path), "\uFFFD"))
	}
	e.AddBytesValue("raw_path", []byte(r.Path))
	e.AddBytesValue("query_string", []byte(r.RawQuery))
	e.Add("root_path", rootPath)

	mark := e.BeginList("headers")
	n := 0
	var subprotocols []string
	for i := range r.Header {
		f := &r.Header[i]
		if isFraming(f.Name) {
			continue
		}
		if websocket && strings.EqualFold(f.Name, "Sec-WebSocket-Protocol") {
			subprotocols = appendTokens(subprotocols, f.Value)
		}
		e.AppendHeaderItem(f.Name, f.Value)
		n++
	}
	if l := r.Body.Len(); l > 0 || r.Method == "POST" || r.Method == "PUT" || r.Method == "PATCH" {
		e.AppendHeaderItem("content-length", strconv.FormatInt(l, 10))
		n++
	}
	e.EndList(mark, n)
	if websocket {
		mark := e.BeginList("subprotocols")
		for _, p := range subprotocols {
			e.AppendStrItem(p)
		}
		e.EndList(mark, len(subprotocols))
	}
	addHostPort(e, "client", r.RemoteAddr, r.RemotePort)
	addHostPort(e, "server", r.ServerName, r.ServerPort)
	bodyFile := false
	if path := r.Body.FilePath(); path != "" {
		e.Add("taipan.body_path", path)
		bodyFile = true
	}
	return e.Bytes(), bodyFile
}

// addHostPort adds an ASGI (host, port) pair, or None for a unix socket.
func addHostPort(e *wire.EnvironEncoder, key, host, port string) {
	n, err := strconv.Atoi(port)
	if err != nil {
		e.AddNone(key)
		return
	}
	e.AddHostPort(key, host, int32(n))
}

// appendTokens appends the comma-separated, trimmed, non-empty items of v.
func appendTokens(dst []string, v string) []string {
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			dst = append(dst, item)
		}
	}
	return dst
}
