package edge

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"taipan/internal/logging"
)

// GunicornFormat is gunicorn's default access_log_format, the layout of
// AppendGunicorn.
const GunicornFormat = `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`

// AccessFormat appends one access log line for r, newline included, to
// dst and returns the extended buffer. It must not keep r or its strings.
type AccessFormat func(dst []byte, r *AccessRecord) []byte

// opKind is what one step of a compiled access log format appends.
type opKind uint8

const (
	opLiteral        opKind = iota // text, fixed when the format was compiled
	opRemoteAddr                   // h
	opUser                         // u: the Basic auth user name
	opTime                         // t
	opRequestLine                  // r
	opMethod                       // m
	opPath                         // U
	opQuery                        // q
	opProto                        // H
	opStatus                       // s
	opBytes                        // B
	opBytesOrDash                  // b
	opReferer                      // f
	opUserAgent                    // a
	opSeconds                      // T
	opMicros                       // D
	opMillis                       // M
	opDecimalSeconds               // L
	opWorker                       // w (taipan's)
	opWorkerPid                    // wp (taipan's)
	opRequestHeader                // {Name}i
)

// simpleAtom returns the op of one of gunicorn's one-letter atoms that
// vary by request (and taipan's w and wp). l, p and {Var}e do not vary and
// are compiled to text.
func simpleAtom(name string) (opKind, bool) {
	switch name {
	case "h":
		return opRemoteAddr, true
	case "u":
		return opUser, true
	case "t":
		return opTime, true
	case "r":
		return opRequestLine, true
	case "m":
		return opMethod, true
	case "U":
		return opPath, true
	case "q":
		return opQuery, true
	case "H":
		return opProto, true
	case "s":
		return opStatus, true
	case "B":
		return opBytes, true
	case "b":
		return opBytesOrDash, true
	case "f":
		return opReferer, true
	case "a":
		return opUserAgent, true
	case "T":
		return opSeconds, true
	case "D":
		return opMicros, true
	case "M":
		return opMillis, true
	case "L":
		return opDecimalSeconds, true
	case "w":
		return opWorker, true
	case "wp":
		return opWorkerPid, true
	}
	return 0, false
}

// formatOp is one step of a compiled format: text for opLiteral (already
// escaped), the header name for opRequestHeader.
type formatOp struct {
	kind opKind
	text string
}

// accessFormat is a format compiled once at start, so that formatting a
// record is a loop over ops that appends into the caller's buffer and
// allocates nothing.
type accessFormat struct {
	ops []formatOp
}

// ParseAccessFormat compiles spec, an access log format in gunicorn's
// access_log_format syntax: Python's %(name)s atoms, %% for a percent
// sign, anything else kept as it is. The atoms are gunicorn's:
//
//	h  remote address ('-' for a unix socket)
//	l  '-'
//	u  user name from Basic authentication, or '-'
//	t  time the request started, [10/Oct/2000:13:55:36 -0700]
//	r  request line
//	m  method
//	U  URL path, without the query string (still percent-encoded)
//	q  query string
//	H  protocol
//	s  status
//	B  response body length
//	b  response body length, '-' when 0
//	f  Referer
//	a  User-Agent
//	T  request time in whole seconds
//	D  request time in microseconds
//	M  request time in milliseconds
//	L  request time in decimal seconds, 0.012345
//	p  process id, <1234> (taipan's)
//	{Header}i  a request header (case-insensitive; the first), or '-'
//	{Var}e     an environment variable, looked up once with getenv
//	           (os.Getenv when nil), or '-'
//
// taipan adds w, the id of the Python worker that served the request, and
// wp, its pid ('-' for both when no worker did, e.g. a static file). As in
// gunicorn, a '"' in a text atom is written \" so quoted fields stay
// parseable. gunicorn's {Header}o (response headers) is not supported: the
// access record does not carry the response headers.
//
// An unknown atom, another conversion than s or a stray % is an error
// that names it.
func ParseAccessFormat(spec string, getenv func(string) string) (AccessFormat, error) {
	if spec == "" {
		return nil, errors.New("empty format")
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	f := &accessFormat{}
	var lit []byte // pending literal text
	literal := func() {
		if len(lit) > 0 {
			f.ops = append(f.ops, formatOp{kind: opLiteral, text: string(lit)})
			lit = lit[:0]
		}
	}
	for i := 0; i < len(spec); {
		j := strings.IndexByte(spec[i:], '%')
		if j < 0 {
			lit = append(lit, spec[i:]...)
			break
		}
		lit = append(lit, spec[i:i+j]...)
		i += j
		rest := spec[i:]
		if strings.HasPrefix(rest, "%%") {
			lit = append(lit, '%')
			i += 2
			continue
		}
		if !strings.HasPrefix(rest, "%(") {
			return nil, fmt.Errorf("stray %% at byte %d of %q: atoms are written %%(name)s, a literal %% as %%%%", i, spec)
		}
		end := strings.IndexByte(rest, ')')
		if end < 0 {
			return nil, fmt.Errorf("unterminated atom %q: want %%(name)s", rest)
		}
		name := rest[2:end]
		if end+1 >= len(rest) || rest[end+1] != 's' {
			conv := "nothing"
			if end+1 < len(rest) {
				conv = strconv.QuoteRune(rune(rest[end+1]))
			}
			return nil, fmt.Errorf("atom %%(%s): want %%(%s)s, got %s after it (only the s conversion is supported)", name, name, conv)
		}
		i += end + 2
		if kind, ok := simpleAtom(name); ok {
			literal()
			f.ops = append(f.ops, formatOp{kind: kind})
			continue
		}
		switch {
		case name == "l":
			lit = append(lit, '-')
		case name == "p":
			lit = append(lit, '<')
			lit = strconv.AppendInt(lit, int64(os.Getpid()), 10)
			lit = append(lit, '>')
		case isBraced(name, 'i'):
			literal()
			f.ops = append(f.ops, formatOp{kind: opRequestHeader, text: name[1 : len(name)-2]})
		case isBraced(name, 'e'):
			lit = appendAtom(lit, getenv(name[1:len(name)-2]))
		case isBraced(name, 'o'):
			return nil, fmt.Errorf("atom %%(%s)s: response headers are not supported in taipan's access log", name)
		default:
			return nil, fmt.Errorf("unknown atom %%(%s)s (known: h l u t r m U q H s B b f a T D M L p w wp {Header}i {Var}e)", name)
		}
	}
	literal()
	return f.append, nil
}

// isBraced reports whether name is {X}c with a non-empty X.
func isBraced(name string, c byte) bool {
	return len(name) > 3 && name[0] == '{' && name[len(name)-2] == '}' && name[len(name)-1] == c
}

// append formats r; it is the AccessFormat of f.
func (f *accessFormat) append(dst []byte, r *AccessRecord) []byte {
	for i := range f.ops {
		op := &f.ops[i]
		switch op.kind {
		case opLiteral:
			dst = append(dst, op.text...)
		case opRemoteAddr:
			dst = appendAtom(dst, r.RemoteAddr)
		case opUser:
			dst = appendBasicUser(dst, r.Header)
		case opTime:
			dst = r.Start.AppendFormat(dst, "[02/Jan/2006:15:04:05 -0700]")
		case opRequestLine:
			dst = appendEscaped(dst, r.RequestLine)
		case opMethod:
			dst = appendAtom(dst, r.Method)
		case opPath:
			path, _ := splitTarget(r.Target)
			dst = appendAtom(dst, path)
		case opQuery:
			_, query := splitTarget(r.Target)
			dst = appendEscaped(dst, query)
		case opProto:
			dst = appendAtom(dst, r.Proto)
		case opStatus:
			dst = strconv.AppendInt(dst, int64(r.Status), 10)
		case opBytes:
			dst = strconv.AppendInt(dst, r.BodyBytes, 10)
		case opBytesOrDash:
			dst = appendCountOrDash(dst, r.BodyBytes)
		case opReferer:
			dst = appendAtom(dst, r.Referer)
		case opUserAgent:
			dst = appendAtom(dst, r.UserAgent)
		case opSeconds:
			dst = strconv.AppendInt(dst, int64(r.Duration/time.Second), 10)
		case opMicros:
			dst = strconv.AppendInt(dst, r.Duration.Microseconds(), 10)
		case opMillis:
			dst = strconv.AppendInt(dst, r.Duration.Milliseconds(), 10)
		case opDecimalSeconds:
			dst = appendDecimalSeconds(dst, r.Duration)
		case opWorker:
			dst = appendCountOrDash(dst, int64(r.Worker))
		case opWorkerPid:
			dst = appendCountOrDash(dst, int64(r.WorkerPid))
		case opRequestHeader:
			v, _ := headerValue(r.Header, op.text)
			dst = appendAtom(dst, v)
		}
	}
	return append(dst, '\n')
}

// appendAtom appends a text atom as gunicorn writes it: '-' when empty,
// and with '"' escaped as \".
func appendAtom(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, '-')
	}
	return appendEscaped(dst, s)
}

// appendEscaped appends s with '"' escaped as \", as gunicorn's SafeAtoms
// does, so a User-Agent cannot end its quoted field early. Bytes that are
// not UTF-8 (header values may carry any octet from 0x80 up) become
// U+FFFD, as in the JSON format, so the log stays UTF-8 for whatever
// reads it; UTF-8 passes through as it came.
func appendEscaped(dst []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		dst = append(dst, '\\', '"')
		s = s[i+1:]
	}
}

func appendCountOrDash(dst []byte, n int64) []byte {
	if n <= 0 {
		return append(dst, '-')
	}
	return strconv.AppendInt(dst, n, 10)
}

// appendDecimalSeconds appends d as gunicorn's L atom: seconds with six
// decimals.
func appendDecimalSeconds(dst []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	dst = strconv.AppendInt(dst, int64(d/time.Second), 10)
	dst = append(dst, '.')
	us := int64(d%time.Second) / int64(time.Microsecond)
	for div := int64(100000); div > 0; div /= 10 {
		dst = append(dst, byte('0'+us/div%10))
	}
	return dst
}

// splitTarget returns the path and query of a request-target; the
// absolute form loses its scheme and authority, the fragment is dropped.
func splitTarget(t string) (path, query string) {
	if i := strings.IndexByte(t, '#'); i >= 0 {
		t = t[:i]
	}
	if len(t) > 0 && t[0] != '/' && t != "*" {
		if i := strings.Index(t, "://"); i >= 0 {
			rest := t[i+3:]
			if j := strings.IndexAny(rest, "/?"); j >= 0 {
				t = rest[j:]
			} else {
				t = ""
			}
		}
	}
	path, query, _ = strings.Cut(t, "?")
	if path == "" && t != "" {
		path = "/"
	}
	return path, query
}

// headerValue returns the first value of the named header.
func headerValue(header []HeaderField, name string) (string, bool) {
	for i := range header {
		if len(header[i].Name) == len(name) && strings.EqualFold(header[i].Name, name) {
			return header[i].Value, true
		}
	}
	return "", false
}

// appendBasicUser appends the user name of an "Authorization: Basic"
// header, or '-' when there is none or it does not decode (as gunicorn).
// Only the user name is decoded: the password is checked for valid
// base64 but never written to memory in clear. A name that is not UTF-8
// or holds control characters (a forged line break) is also '-'.
func appendBasicUser(dst []byte, header []HeaderField) []byte {
	v, ok := headerValue(header, "Authorization")
	if !ok || len(v) < 6 || !strings.EqualFold(v[:6], "basic ") {
		return append(dst, '-')
	}
	cred := strings.TrimSpace(v[6:])
	start := len(dst)
	var acc, bits uint
	colon := false
	for i := 0; i < len(cred); i++ {
		c := cred[i]
		if c == '=' {
			if strings.Trim(cred[i:], "=") != "" || len(cred)%4 != 0 {
				return append(dst[:start], '-')
			}
			break
		}
		d := base64Value(c)
		if d < 0 {
			return append(dst[:start], '-')
		}
		if colon {
			continue // the password: validated, not decoded
		}
		acc = acc<<6 | uint(d)
		bits += 6
		if bits >= 8 {
			bits -= 8
			b := byte(acc >> bits)
			acc &= 1<<bits - 1
			if b == ':' {
				colon = true
				continue
			}
			dst = append(dst, b)
		}
	}
	user := dst[start:]
	if !colon || len(user) == 0 || !utf8.Valid(user) || hasControl(user) {
		return append(dst[:start], '-')
	}
	if bytes.IndexByte(user, '"') >= 0 {
		// Rare: the name is escaped into the space after it, then moved back.
		end := len(dst)
		for _, b := range dst[start:end] {
			if b == '"' {
				dst = append(dst, '\\')
			}
			dst = append(dst, b)
		}
		n := copy(dst[start:], dst[end:])
		dst = dst[:start+n]
	}
	return dst
}

func base64Value(c byte) int {
	switch {
	case 'A' <= c && c <= 'Z':
		return int(c - 'A')
	case 'a' <= c && c <= 'z':
		return int(c-'a') + 26
	case '0' <= c && c <= '9':
		return int(c-'0') + 52
	case c == '+':
		return 62
	case c == '/':
		return 63
	}
	return -1
}

func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}

// AppendAccessJSON is the AccessFormat of --access-log-json: one JSON
// object per line with every field of r. Strings are escaped (bytes that
// are not UTF-8 become U+FFFD); time is RFC 3339 with milliseconds,
// duration_ms has microsecond precision, and worker and worker_pid are
// null when no Python worker served the request.
func AppendAccessJSON(dst []byte, r *AccessRecord) []byte {
	path, query := splitTarget(r.Target)
	dst = append(dst, `{"remote_addr":`...)
	dst = logging.AppendJSONString(dst, r.RemoteAddr)
	dst = append(dst, `,"time":"`...)
	dst = r.Start.AppendFormat(dst, logging.JSONTime)
	dst = append(dst, `","method":`...)
	dst = logging.AppendJSONString(dst, r.Method)
	dst = append(dst, `,"path":`...)
	dst = logging.AppendJSONString(dst, path)
	dst = append(dst, `,"query":`...)
	dst = logging.AppendJSONString(dst, query)
	dst = append(dst, `,"protocol":`...)
	dst = logging.AppendJSONString(dst, r.Proto)
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(r.Status), 10)
	dst = append(dst, `,"bytes_out":`...)
	dst = strconv.AppendInt(dst, r.BodyBytes, 10)
	dst = append(dst, `,"bytes_in":`...)
	dst = strconv.AppendInt(dst, r.RequestBytes, 10)
	dst = append(dst, `,"duration_ms":`...)
	dst = strconv.AppendFloat(dst, float64(r.Duration.Microseconds())/1000, 'f', 3, 64)
	dst = append(dst, `,"referer":`...)
	dst = logging.AppendJSONString(dst, r.Referer)
	dst = append(dst, `,"user_agent":`...)
	dst = logging.AppendJSONString(dst, r.UserAgent)
	dst = append(dst, `,"worker":`...)
	dst = appendIntOrNull(dst, r.Worker)
	dst = append(dst, `,"worker_pid":`...)
	dst = appendIntOrNull(dst, r.WorkerPid)
	dst = append(dst, `,"request_line":`...)
	dst = logging.AppendJSONString(dst, r.RequestLine)
	return append(dst, "}\n"...)
}

func appendIntOrNull(dst []byte, n int) []byte {
	if n <= 0 {
		return append(dst, "null"...)
	}
	return strconv.AppendInt(dst, int64(n), 10)
}
