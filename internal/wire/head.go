package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"taipan/internal/httpsyntax"
)

// ResponseHead is a decoded and validated HEAD frame.
type ResponseHead struct {
	Code   int
	Status string // "200 OK", latin-1 bytes
	Header [][2]string
	Body   []byte // first body bytes carried by the frame
}

// DecodeHead decodes a HEAD payload: u32 length, marshal (status, headers),
// then body bytes. It rejects anything that could corrupt or split the HTTP
// response: a malformed or informational status, non-token header names,
// control characters (CR, LF, NUL and the rest) in values, and characters
// outside latin-1.
func DecodeHead(p []byte) (*ResponseHead, error) {
	h := new(ResponseHead)
	if err := DecodeHeadInto(p, h); err != nil {
		return nil, err
	}
	return h, nil
}

// DecodeHeadInto is DecodeHead reusing h, and the capacity of h.Header.
// Body aliases p.
func DecodeHeadInto(p []byte, h *ResponseHead) error {
	if len(p) < 4 {
		return errors.New("short HEAD frame")
	}
	n := int(binary.LittleEndian.Uint32(p))
	if n > len(p)-4 {
		return errors.New("HEAD frame: head length exceeds payload")
	}
	h.Header = h.Header[:0]
	h.Body = p[4+n:]
	status, err := decodeHeadFast(p[4:4+n], h)
	if err == errNotFast {
		h.Header = h.Header[:0]
		status, err = decodeHeadGeneric(p[4:4+n], h)
	}
	if err != nil {
		return err
	}
	h.Status = status
	if h.Code, err = parseStatus(h.Status); err != nil {
		return err
	}
	for i := range h.Header {
		f := &h.Header[i]
		if !httpsyntax.IsToken(f[0]) {
			return fmt.Errorf("header name %q is not a valid token", f[0])
		}
		for j := 0; j < len(f[1]); j++ {
			// field-value (RFC 9110 section 5.5): visible characters,
			// obs-text, SP and HTAB. CR, LF and NUL would split or
			// truncate the response; other controls are refused too.
			if c := f[1][j]; c < ' ' && c != '\t' || c == 0x7f {
				return fmt.Errorf("header %s: value contains a control character (%#02x)", f[0], c)
			}
		}
		// A field value has no leading or trailing whitespace (RFC 9110
		// section 5.5). Django's cookies start with a space, which would
		// go out as "Set-Cookie:  a=1" (gunicorn strips it too).
		f[1] = strings.Trim(f[1], " \t")
	}
	return nil
}

var errNotFast = errors.New("not the plain encoding")

// decodeHeadFast reads the encoding the worker produces (marshal version 2:
// no back-references) straight into h, without building generic values.
// It returns errNotFast for any other valid-looking encoding.
func decodeHeadFast(b []byte, h *ResponseHead) (string, error) {
	d := decoder{b: b}
	if n, err := d.sequence(); err != nil || n != 2 {
		return "", errNotFast
	}
	status, err := d.str()
	if err != nil {
		return "", err
	}
	n, err := d.sequence()
	if err != nil {
		return "", err
	}
	if n > len(b) {
		return "", errShort
	}
	for range n {
		if k, err := d.sequence(); err != nil || k != 2 {
			return "", errNotFast
		}
		name, err := d.str()
		if err != nil {
			return "", err
		}
		value, err := d.str()
		if err != nil {
			return "", err
		}
		h.Header = append(h.Header, [2]string{name, value})
	}
	if d.off != len(b) {
		return "", errors.New("HEAD frame: trailing bytes after head")
	}
	return status, nil
}

// sequence reads a tuple or list header and returns its length.
func (d *decoder) sequence() (int, error) {
	if d.off >= len(d.b) {
		return 0, errShort
	}
	switch d.b[d.off] {
	case mTuple, mList:
		d.off++
		n, err := d.u32()
		return int(n), err
	case mSmallTuple:
		d.off++
		if d.off >= len(d.b) {
			return 0, errShort
		}
		d.off++
		return int(d.b[d.off-1]), nil
	}
	return 0, errNotFast
}

// str reads a str or a bytes object in any of marshal's string encodings
// (no references) and returns the bytes it stands for on the wire: a bytes
// object as it is, a str as latin-1 (WSGI sends str, ASGI bytes).
func (d *decoder) str() (string, error) {
	if d.off >= len(d.b) {
		return "", errShort
	}
	code := d.b[d.off]
	d.off++
	var n int
	switch code {
	case mUnicode, mInterned, mASCII, mASCIIInt, mString:
		u, err := d.u32()
		if err != nil {
			return "", err
		}
		n = int(u)
	case mShortASCII, mShortInt:
		if d.off >= len(d.b) {
			return "", errShort
		}
		n = int(d.b[d.off])
		d.off++
	default:
		return "", errNotFast
	}
	s, err := d.take(n)
	if err != nil {
		return "", err
	}
	if v, ok := commonHeadStrings[string(s)]; ok {
		// No allocation for what nearly every response says. The common
		// strings are ASCII, the same in UTF-8 (a str) and on the wire.
		return v, nil
	}
	if code == mUnicode || code == mInterned {
		return latin1(string(s))
	}
	return string(s), nil
}

// commonHeadStrings holds status lines, header names and values that most
// responses repeat, so that decoding them costs a lookup rather than an
// allocation each. It is never written after initialisation.
var commonHeadStrings = func() map[string]string {
	m := make(map[string]string)
	for _, v := range []string{
		"200 OK", "201 Created", "204 No Content", "301 Moved Permanently", "302 Found",
		"304 Not Modified", "400 Bad Request", "401 Unauthorized", "403 Forbidden",
		"404 Not Found", "405 Method Not Allowed", "500 Internal Server Error",
		"Content-Type", "Content-Length", "Cache-Control", "Location", "Set-Cookie",
		"Vary", "ETag", "Last-Modified", "Server", "Date", "Connection",
		"content-type", "content-length", "cache-control", "location", "set-cookie",
		"vary", "etag", "last-modified", "server", "date", "connection",
		"text/plain", "text/plain; charset=utf-8", "text/html", "text/html; charset=utf-8",
		"application/json", "application/octet-stream", "Cookie", "no-cache",
	} {
		m[v] = v
	}
	return m
}()

// decodeHeadGeneric handles any encoding the general decoder understands.
func decodeHeadGeneric(b []byte, h *ResponseHead) (string, error) {
	v, used, err := Unmarshal(b)
	if err != nil {
		return "", fmt.Errorf("HEAD frame: %w", err)
	}
	if used != len(b) {
		return "", errors.New("HEAD frame: trailing bytes after head")
	}
	t, ok := v.([]Value)
	if !ok || len(t) != 2 {
		return "", errors.New("HEAD frame: want (status, headers)")
	}
	status, err := wireString(t[0])
	if err != nil {
		return "", fmt.Errorf("status: %w", err)
	}
	list, ok := t[1].([]Value)
	if !ok {
		return "", errors.New("headers must be a list of (name, value) tuples")
	}
	for _, item := range list {
		pair, ok := item.([]Value)
		if !ok || len(pair) != 2 {
			return "", errors.New("headers must be a list of (name, value) tuples")
		}
		name, err := wireString(pair[0])
		if err != nil {
			return "", fmt.Errorf("header name %v: %w", pair[0], err)
		}
		value, err := wireString(pair[1])
		if err != nil {
			return "", fmt.Errorf("header %s: %w", name, err)
		}
		h.Header = append(h.Header, [2]string{name, value})
	}
	return status, nil
}

// wireString is the bytes a decoded str (latin-1) or bytes value stands for.
func wireString(v Value) (string, error) {
	switch v := v.(type) {
	case string:
		return latin1(v)
	case []byte:
		return string(v), nil
	}
	return "", errors.New("must be str or bytes")
}

func parseStatus(s string) (int, error) {
	if len(s) < 4 || s[3] != ' ' {
		return 0, fmt.Errorf("status %q: want three digits, a space and a reason", s)
	}
	code := 0
	for i := 0; i < 3; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("status %q: want three digits, a space and a reason", s)
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 {
		// A 1xx status is interim (RFC 9110 section 15.2): a client that
		// gets one as the answer waits on for the final response, and on
		// a kept-alive connection takes the next request's response for
		// it. The app has no way to send an interim response here.
		return 0, fmt.Errorf("status %q: an informational (1xx) status cannot be the final response", s)
	}
	for i := 4; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return 0, fmt.Errorf("status %q: control character in reason", s)
		}
	}
	return code, nil
}

// latin1 turns the UTF-8 form of a Python str into its latin-1 bytes,
// failing on code points above U+00FF.
func latin1(s string) (string, error) {
	if isASCII(s) {
		return s, nil
	}
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff || r == utf8.RuneError {
			return "", errors.New("not latin-1 (PEP 3333 requires latin-1 native strings)")
		}
		out = append(out, byte(r))
	}
	return string(out), nil
}
