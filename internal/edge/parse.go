package edge

import (
	"bufio"
	"errors"
	"strings"
	"taipan/internal/httpsyntax"
)

// maxLeadingEmptyLines is how many empty lines may precede a request line
// (RFC 9112 section 2.2 lets a server skip at least one).
const maxLeadingEmptyLines = 8

// httpError is a request the parser refuses: the client gets code and a
// short plain-text body, and the connection is closed.
type httpError struct {
	code   int
	status string // "400 Bad Request"
	reason string // what was wrong, for the response body
}

func (e *httpError) Error() string { return e.status + ": " + e.reason }

func badRequest(reason string) *httpError {
	return &httpError{400, "400 Bad Request", reason}
}

var (
	errLineTooLong = errors.New("edge: line too long")
)

// fieldSpan locates one header field inside conn.hbuf.
type fieldSpan struct {
	nameStart, nameEnd int
	valStart, valEnd   int
}

// readLine reads one line of at most limit bytes (terminator excluded),
// appending its content to c.hbuf, and returns the content's start and end
// in c.hbuf. Both CRLF and a bare LF end a line.
func (c *conn) readLine(limit int) (start, end int, err error) {
	start = len(c.hbuf)
	for {
		frag, err := c.br.ReadSlice('\n')
		if len(c.hbuf)-start+len(frag) > limit+2 {
			return start, start, errLineTooLong
		}
		c.hbuf = append(c.hbuf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return start, start, err
		}
		break
	}
	end = len(c.hbuf) - 1 // drop LF
	if end > start && c.hbuf[end-1] == '\r' {
		end--
	}
	c.hbuf = c.hbuf[:end]
	if end-start > limit {
		return start, end, errLineTooLong
	}
	return start, end, nil
}

// readHead reads and validates a request head into c.req. It returns an
// *httpError for a malformed request, or the I/O error that interrupted it.
func (c *conn) readHead() error {
	cfg := &c.srv.cfg
	c.hbuf = c.hbuf[:0]
	c.fields = c.fields[:0]
	c.reqLine = ""

	var lstart, lend int
	for empty := 0; ; empty++ {
		var err error
		lstart, lend, err = c.readLine(cfg.LimitRequestLine)
		if err == errLineTooLong {
			return &httpError{414, "414 URI Too Long", "request line too long"}
		}
		if err != nil {
			return err
		}
		if lend > lstart {
			break
		}
		if empty >= maxLeadingEmptyLines {
			return badRequest("too many empty lines before request line")
		}
	}
	rl, herr := parseRequestLine(c.hbuf[lstart:lend])
	if herr != nil {
		c.reqLine = string(c.hbuf[lstart:lend])
		return herr
	}

	for {
		start, end, err := c.readLine(cfg.LimitRequestFieldSize)
		if err == errLineTooLong {
			c.reqLine = string(c.hbuf[lstart:lend])
			return &httpError{431, "431 Request Header Fields Too Large", "header field too long"}
		}
		if err != nil {
			return err
		}
		if start == end {
			break
		}
		if len(c.fields) >= cfg.LimitRequestFields {
			c.reqLine = string(c.hbuf[lstart:lend])
			return &httpError{431, "431 Request Header Fields Too Large", "too many header fields"}
		}
		f, herr := scanField(c.hbuf, start, end)
		if herr != nil {
			c.reqLine = string(c.hbuf[lstart:lend])
			return herr
		}
		c.fields = append(c.fields, f)
	}

	// One string holds the whole head; every Request string is a slice of
	// it, so a request costs a single allocation for its text.
	s := string(c.hbuf)
	c.reqLine = s[lstart:lend]
	return c.buildRequest(s, lstart, rl)
}

// requestLine holds offsets of the request-line parts relative to the line.
type requestLine struct {
	methodEnd   int
	targetStart int
	targetEnd   int
	minor       int
}

// parseRequestLine validates "METHOD SP request-target SP HTTP/1.x".
func parseRequestLine(line []byte) (requestLine, *httpError) {
	var rl requestLine
	sp1 := indexByte(line, ' ')
	if sp1 <= 0 {
		return rl, badRequest("malformed request line")
	}
	for _, b := range line[:sp1] {
		if !httpsyntax.IsTokenChar(b) {
			return rl, badRequest("invalid method")
		}
	}
	rest := line[sp1+1:]
	sp2 := indexByte(rest, ' ')
	if sp2 <= 0 {
		return rl, badRequest("malformed request line")
	}
	for _, b := range rest[:sp2] {
		if b <= ' ' || b >= 0x7f {
			return rl, badRequest("invalid request target")
		}
	}
	proto := rest[sp2+1:]
	switch string(proto) {
	case "HTTP/1.1":
		rl.minor = 1
	case "HTTP/1.0":
		rl.minor = 0
	default:
		if len(proto) == 8 && string(proto[:5]) == "HTTP/" && isDigit(proto[5]) && proto[6] == '.' && isDigit(proto[7]) {
			return rl, &httpError{505, "505 HTTP Version Not Supported", "unsupported HTTP version"}
		}
		return rl, badRequest("malformed HTTP version")
	}
	rl.methodEnd = sp1
	rl.targetStart = sp1 + 1
	rl.targetEnd = sp1 + 1 + sp2
	return rl, nil
}

// scanField validates the header line hbuf[start:end] as "name: value".
func scanField(hbuf []byte, start, end int) (fieldSpan, *httpError) {
	line := hbuf[start:end]
	if line[0] == ' ' || line[0] == '\t' {
		return fieldSpan{}, badRequest("obsolete line folding in header")
	}
	colon := indexByte(line, ':')
	if colon <= 0 {
		return fieldSpan{}, badRequest("malformed header field")
	}
	for _, b := range line[:colon] {
		if !httpsyntax.IsTokenChar(b) {
			return fieldSpan{}, badRequest("invalid header field name")
		}
	}
	vs, ve := colon+1, len(line)
	for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
		vs++
	}
	for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
		ve--
	}
	for _, b := range line[vs:ve] {
		if (b < ' ' && b != '\t') || b == 0x7f {
			return fieldSpan{}, badRequest("invalid character in header field value")
		}
	}
	return fieldSpan{start, start + colon, start + vs, start + ve}, nil
}

// buildRequest fills c.req from the validated head text s and applies the
// message-framing rules of RFC 9112 section 6.
func (c *conn) buildRequest(s string, lstart int, rl requestLine) error {
	r := &c.req
	hdr := r.Header[:0]
	*r = Request{}
	r.Method = s[lstart : lstart+rl.methodEnd]
	r.Target = s[lstart+rl.targetStart : lstart+rl.targetEnd]
	r.ProtoMinor = rl.minor
	if rl.minor == 1 {
		r.Proto = "HTTP/1.1"
	} else {
		r.Proto = "HTTP/1.0"
	}
	r.Scheme = c.scheme
	r.RemoteAddr, r.RemotePort = c.remoteAddr, c.remotePort
	r.ServerName, r.ServerPort = c.serverName, c.serverPort

	st := &c.st
	*st = reqState{contentLength: -1}
	hosts, hostIndex := 0, -1
	var hostField string
	var te []string
	for _, f := range c.fields {
		name := s[f.nameStart:f.nameEnd]
		value := s[f.valStart:f.valEnd]
		hdr = append(hdr, HeaderField{Name: name, Value: value})
		switch len(name) {
		case 4:
			if strings.EqualFold(name, "host") {
				hosts++
				r.Host = value
				hostField = value
				hostIndex = len(hdr) - 1
			}
		case 6:
			if strings.EqualFold(name, "expect") {
				if !strings.EqualFold(value, "100-continue") {
					st.expectFailed = true
				} else {
					st.expectContinue = true
				}
			}
		case 7:
			if strings.EqualFold(name, "referer") {
				st.referer = value
			}
		case 10:
			if strings.EqualFold(name, "connection") {
				forEachToken(value, func(t string) {
					if strings.EqualFold(t, "close") {
						st.connClose = true
					} else if strings.EqualFold(t, "keep-alive") {
						st.connKeepAlive = true
					}
				})
			} else if strings.EqualFold(name, "user-agent") {
				st.userAgent = value
			}
		case 14:
			if strings.EqualFold(name, "content-length") {
				// RFC 9110 section 8.6 lets a recipient accept a repeated
				// or listed identical length; refusing every repetition
				// leaves no room for two parsers to disagree.
				if st.contentLength >= 0 {
					r.Header = hdr
					return badRequest("more than one Content-Length")
				}
				n, herr := parseDecimal(value)
				if herr != nil {
					r.Header = hdr
					return herr
				}
				st.contentLength = n
			}
		case 17:
			if strings.EqualFold(name, "transfer-encoding") {
				te = append(te, value)
			}
		}
	}
	r.Header = hdr

	if err := c.parseTarget(rl.minor); err != nil {
		return err
	}
	if hosts > 1 {
		return badRequest("more than one Host header")
	}
	if hosts == 0 && rl.minor == 1 {
		return badRequest("missing Host header")
	}
	// RFC 9112 section 3.2: an invalid Host gets 400 even when an
	// absolute-form target supplies the authority. An empty one is valid.
	if hostField != "" && !httpsyntax.ValidHost(hostField, false) {
		return badRequest("invalid Host header")
	}
	if r.Host != hostField {
		// An absolute-form target's authority replaced Host (RFC 9112
		// section 3.2.2: the Host field MUST be ignored). The Handler sees
		// it in the header fields too, where apps look for it (HTTP_HOST,
		// the ASGI host header).
		if hostIndex >= 0 {
			r.Header[hostIndex].Value = r.Host
		} else {
			r.Header = append(r.Header, HeaderField{Name: "Host", Value: r.Host})
		}
	}
	if te != nil {
		if rl.minor == 0 {
			return badRequest("Transfer-Encoding in an HTTP/1.0 request")
		}
		if st.contentLength >= 0 {
			return badRequest("both Content-Length and Transfer-Encoding")
		}
		if err := checkTransferEncoding(te); err != nil {
			return err
		}
		st.chunked = true
	}
	if st.expectFailed {
		return &httpError{417, "417 Expectation Failed", "unsupported expectation"}
	}
	if st.contentLength > 0 && c.srv.cfg.bodyTooLarge(st.contentLength) {
		return &httpError{413, "413 Content Too Large", "request body too large"}
	}
	if rl.minor == 1 {
		st.keepAlive = !st.connClose
	} else {
		st.keepAlive = st.connKeepAlive && !st.connClose
	}
	return nil
}

// parseTarget splits c.req.Target into Path and RawQuery, handling the
// origin, absolute and asterisk forms (RFC 9112 section 3.2). A CONNECT
// request (authority-form) is refused: the edge is not a proxy.
func (c *conn) parseTarget(minor int) error {
	r := &c.req
	t := r.Target
	if r.Method == "CONNECT" {
		// RFC 9110 section 9.3.6: the target is host and port, nothing else.
		if !httpsyntax.ValidHost(t, true) {
			return badRequest("CONNECT needs an authority-form target")
		}
		return &httpError{501, "501 Not Implemented", "CONNECT is not supported"}
	}
	if i := strings.IndexByte(t, '#'); i >= 0 {
		t = t[:i]
	}
	switch {
	case t == "*":
		if r.Method != "OPTIONS" {
			return badRequest("asterisk target outside OPTIONS")
		}
		r.Path = "*"
		return nil
	case strings.HasPrefix(t, "/"):
	case hasPrefixFold(t, "http://") || hasPrefixFold(t, "https://"):
		rest := t[strings.IndexByte(t, ':')+3:]
		end := strings.IndexAny(rest, "/?")
		if end < 0 {
			end = len(rest)
		}
		authority := rest[:end]
		// RFC 9110 sections 4.2.1 and 4.2.4: no empty host, no userinfo.
		if !httpsyntax.ValidHost(authority, false) {
			return badRequest("invalid authority in absolute-form target")
		}
		t = rest[end:]
		if t == "" || t[0] == '?' {
			t = "/" + t
		}
		// RFC 9112 section 3.2.2: the target's authority replaces Host.
		r.Host = authority
	default:
		return badRequest("invalid request target")
	}
	if i := strings.IndexByte(t, '?'); i >= 0 {
		r.Path, r.RawQuery = t[:i], t[i+1:]
	} else {
		r.Path = t
	}
	return nil
}

// parseDecimal parses a Content-Length value, 1*DIGIT (RFC 9110 section
// 8.6); leading zeros are allowed, signs and lists are not.
func parseDecimal(s string) (int64, *httpError) {
	if s == "" {
		return 0, badRequest("empty Content-Length")
	}
	var n int64
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !isDigit(b) {
			return 0, badRequest("invalid Content-Length")
		}
		if n > (1<<63-1-9)/10 {
			return 0, badRequest("Content-Length overflows")
		}
		n = n*10 + int64(b-'0')
	}
	return n, nil
}

// checkTransferEncoding accepts exactly one "chunked" as the final coding.
func checkTransferEncoding(values []string) *httpError {
	var codings []string
	for _, v := range values {
		forEachListElem(v, func(e string) { codings = append(codings, e) })
	}
	if len(codings) == 0 {
		return badRequest("empty Transfer-Encoding")
	}
	chunked := 0
	for i, cd := range codings {
		if strings.EqualFold(cd, "chunked") {
			chunked++
			if i != len(codings)-1 || chunked > 1 {
				return badRequest("chunked must be the final transfer coding, once")
			}
		}
	}
	for _, cd := range codings {
		if !strings.EqualFold(cd, "chunked") {
			return &httpError{501, "501 Not Implemented", "unsupported transfer coding"}
		}
	}
	return nil
}

// forEachListElem calls fn for each non-empty, OWS-trimmed element of a
// comma-separated list.
func forEachListElem(v string, fn func(string)) {
	for v != "" {
		var e string
		if i := strings.IndexByte(v, ','); i >= 0 {
			e, v = v[:i], v[i+1:]
		} else {
			e, v = v, ""
		}
		e = strings.Trim(e, " \t")
		if e != "" {
			fn(e)
		}
	}
}

// forEachToken is forEachListElem for token lists such as Connection.
func forEachToken(v string, fn func(string)) { forEachListElem(v, fn) }

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }
