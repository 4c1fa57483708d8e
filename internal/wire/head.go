package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
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
// response: a malformed status, non-token header names, CR, LF or NUL in
// values, and characters outside latin-1.
func DecodeHead(p []byte) (*ResponseHead, error) {
	if len(p) < 4 {
		return nil, errors.New("short HEAD frame")
	}
	n := int(binary.LittleEndian.Uint32(p))
	if n > len(p)-4 {
		return nil, errors.New("HEAD frame: head length exceeds payload")
	}
	v, used, err := Unmarshal(p[4 : 4+n])
	if err != nil {
		return nil, fmt.Errorf("HEAD frame: %w", err)
	}
	if used != n {
		return nil, errors.New("HEAD frame: trailing bytes after head")
	}
	t, ok := v.([]Value)
	if !ok || len(t) != 2 {
		return nil, errors.New("HEAD frame: want (status, headers)")
	}
	status, ok := t[0].(string)
	if !ok {
		return nil, errors.New("status must be a str")
	}
	if status, err = latin1(status); err != nil {
		return nil, fmt.Errorf("status %q: %w", status, err)
	}
	code, err := parseStatus(status)
	if err != nil {
		return nil, err
	}
	list, ok := t[1].([]Value)
	if !ok {
		return nil, errors.New("headers must be a list of (name, value) tuples")
	}
	h := &ResponseHead{Code: code, Status: status, Body: p[4+n:]}
	h.Header = make([][2]string, 0, len(list))
	for _, item := range list {
		pair, ok := item.([]Value)
		if !ok || len(pair) != 2 {
			return nil, errors.New("headers must be a list of (name, value) tuples")
		}
		name, ok1 := pair[0].(string)
		value, ok2 := pair[1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("header %v: name and value must be str", pair[0])
		}
		if !isToken(name) {
			return nil, fmt.Errorf("header name %q is not a valid token", name)
		}
		if value, err = latin1(value); err != nil {
			return nil, fmt.Errorf("header %s: %w", name, err)
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; c == '\r' || c == '\n' || c == 0 {
				return nil, fmt.Errorf("header %s: value contains CR, LF or NUL", name)
			}
		}
		h.Header = append(h.Header, [2]string{name, value})
	}
	return h, nil
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
	if code < 100 {
		return 0, fmt.Errorf("status %q: code below 100", s)
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

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' || c == '*' ||
			c == '+' || c == '-' || c == '.' || c == '^' || c == '_' || c == '`' || c == '|' || c == '~':
		default:
			return false
		}
	}
	return true
}
