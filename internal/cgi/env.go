package cgi

import (
	"strconv"
	"strings"

	"taipan/internal/edge"
)

// defaultPath is the PATH scripts get: taipan's own PATH is not theirs.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// environ builds a script's whole environment: PATH, the RFC 3875 section
// 4.1 meta-variables for r, an HTTP_* variable per request header, then
// Config.Env. Nothing of taipan's own environment is passed on. The exec
// package keeps the last of duplicate keys, so Config.Env can replace any
// variable (PATH, or SERVER_NAME behind a proxy) and no header can replace
// a meta-variable.
func (h *Handler) environ(r *edge.Request, s *script) []string {
	env := make([]string, 0, 24+len(r.Header)+len(h.cfg.Env))
	set := func(k, v string) { env = append(env, k+"="+v) }

	set("PATH", defaultPath)
	set("GATEWAY_INTERFACE", "CGI/1.1")
	set("SERVER_SOFTWARE", "taipan")
	set("SERVER_NAME", serverName(r))
	set("SERVER_PORT", serverPort(r))
	set("SERVER_PROTOCOL", r.Proto)
	set("REQUEST_METHOD", r.Method)
	set("REQUEST_URI", r.Target)
	set("SCRIPT_NAME", s.name)
	set("PATH_INFO", s.pathInfo)
	if s.pathInfo != "" {
		set("PATH_TRANSLATED", s.translated)
	}
	set("QUERY_STRING", r.RawQuery)
	set("REMOTE_ADDR", r.RemoteAddr)
	set("REMOTE_HOST", r.RemoteAddr) // no reverse DNS look-ups, as RFC 3875 allows
	set("REMOTE_PORT", r.RemotePort)
	set("AUTH_TYPE", "") // taipan authenticates no one
	if n := r.Body.Len(); n > 0 {
		set("CONTENT_LENGTH", strconv.FormatInt(n, 10))
	}
	if r.Scheme == "https" {
		set("HTTPS", "on")
	}
	env = appendHeaderVars(env, r.Header)
	return append(env, h.cfg.Env...)
}

// appendHeaderVars appends CONTENT_TYPE and an HTTP_* variable for each
// request header (RFC 3875 section 4.1.18), repeated headers joined into
// one. It leaves out:
//   - names with anything but letters, digits and '-': "X_Forwarded_For"
//     would become the same variable as "X-Forwarded-For", letting a client
//     pass off its own value as one a proxy in front set;
//   - Proxy, which would become HTTP_PROXY, the variable HTTP clients read
//     their outgoing proxy from (the "httpoxy" hole);
//   - Proxy-Authorization, credentials meant for a proxy, not for scripts;
//   - Content-Length and Transfer-Encoding: the body on stdin is decoded
//     and its length is in CONTENT_LENGTH.
func appendHeaderVars(env []string, fields []edge.HeaderField) []string {
	var keys []string // in order of first appearance
	values := make(map[string]string, len(fields))
	for _, f := range fields {
		if !plainName(f.Name) {
			continue
		}
		key := "HTTP_" + varName(f.Name)
		switch key {
		case "HTTP_PROXY", "HTTP_PROXY_AUTHORIZATION", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING":
			continue
		case "HTTP_CONTENT_TYPE":
			key = "CONTENT_TYPE"
		}
		if old, ok := values[key]; ok {
			sep := ", "
			if key == "HTTP_COOKIE" {
				sep = "; " // how cookie-pairs are separated (RFC 6265 section 5.4)
			}
			values[key] = old + sep + f.Value
			continue
		}
		keys = append(keys, key)
		values[key] = f.Value
	}
	for _, k := range keys {
		env = append(env, k+"="+values[k])
	}
	return env
}

// plainName reports whether a header name has only letters, digits and '-'.
func plainName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return name != ""
}

// varName upper-cases a plain header name and turns '-' into '_'.
func varName(name string) string {
	b := []byte(name)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = c - ('a' - 'A')
		case c == '-':
			b[i] = '_'
		}
	}
	return string(b)
}

// serverName is the host the client asked for, from Host without its
// port, else the host of the listener's address.
func serverName(r *edge.Request) string {
	host := r.Host
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			host = host[:i+1] // an IPv6 literal keeps its brackets (RFC 3875 section 4.1.14)
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if host == "" {
		return r.ServerName
	}
	return host
}

// serverPort is the listener's port; a unix socket has none, so the
// scheme's default stands in for it.
func serverPort(r *edge.Request) string {
	switch {
	case r.ServerPort != "":
		return r.ServerPort
	case r.Scheme == "https":
		return "443"
	}
	return "80"
}
