package forwarded

import (
	"fmt"
	"strings"
	"taipan/internal/httpsyntax"

	"taipan/internal/edge"
)

// param is a Forwarded parameter taipan uses; "by" and extensions are
// parsed and ignored.
type param uint8

const (
	pFor param = iota
	pProto
	pHost
	numParams
)

// paramOf maps a parameter name (case-insensitive) to its param.
func paramOf(name string) (param, bool) {
	switch {
	case strings.EqualFold(name, "for"):
		return pFor, true
	case strings.EqualFold(name, "proto"):
		return pProto, true
	case strings.EqualFold(name, "host"):
		return pHost, true
	}
	return 0, false
}

// element is one forwarded-element: what one proxy says about the request
// it received. Values are unquoted and unescaped.
type element struct {
	vals [numParams]string
	set  uint8 // bit p is set when parameter p is present
}

func (e *element) has(p param) bool { return e.set&(1<<p) != 0 }

// appendElements parses the elements of every Forwarded header field of h,
// in order. Any syntax error anywhere fails the whole lot: a quoted string
// can hide commas, so after an error even the element boundaries are
// unknown.
func appendElements(dst []element, h []edge.HeaderField) ([]element, error) {
	for i := range h {
		if kindOf(h[i].Name) != kForwarded {
			continue
		}
		var err error
		if dst, err = parseForwarded(dst, h[i].Value); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

// parseForwarded appends the elements of one Forwarded field value
// (RFC 7239 section 4):
//
//	Forwarded         = 1#forwarded-element
//	forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
//	forwarded-pair    = token "=" value
//	value             = token / quoted-string
//
// Empty list elements are skipped, as RFC 9110 section 5.6.1 asks, and
// optional whitespace is allowed around ";" as well as ",", as real proxies
// write it. A parameter repeated within an element is an error.
func parseForwarded(dst []element, s string) ([]element, error) {
	i := 0
	for {
		i = skipOWS(s, i)
		if i == len(s) {
			return dst, nil
		}
		if s[i] == ',' {
			i++
			continue
		}
		var e element
		for {
			i = skipOWS(s, i)
			if i == len(s) || s[i] == ',' {
				break
			}
			if s[i] == ';' {
				i++
				continue
			}
			start := i
			for i < len(s) && httpsyntax.IsTokenChar(s[i]) {
				i++
			}
			name := s[start:i]
			if name == "" {
				return nil, syntaxError(s, i, "want a parameter name")
			}
			if i == len(s) || s[i] != '=' {
				return nil, syntaxError(s, i, "want '=' after "+name)
			}
			val, next, ok := parseValue(s, i+1)
			if !ok {
				return nil, syntaxError(s, next, "bad value of "+name)
			}
			i = next
			if p, known := paramOf(name); known {
				if e.has(p) {
					return nil, syntaxError(s, start, "repeated "+name)
				}
				e.vals[p] = val
				e.set |= 1 << p
			}
			i = skipOWS(s, i)
			if i < len(s) && s[i] != ',' && s[i] != ';' {
				return nil, syntaxError(s, i, "want ';' or ','")
			}
		}
		dst = append(dst, e)
	}
}

// syntaxError describes a Forwarded value that does not parse at byte i.
func syntaxError(s string, i int, what string) error {
	return fmt.Errorf("malformed Forwarded header %q: %s at byte %d", s, what, i)
}

// parseValue reads a token or a quoted-string starting at s[i]; it returns
// the value, the index after it and whether it is well formed (otherwise
// the index is where it went wrong).
func parseValue(s string, i int) (string, int, bool) {
	if i < len(s) && s[i] == '"' {
		return parseQuoted(s, i)
	}
	start := i
	for i < len(s) && httpsyntax.IsTokenChar(s[i]) {
		i++
	}
	return s[start:i], i, i > start
}

// parseQuoted reads the quoted-string at s[i] (RFC 9110 section 5.6.4).
func parseQuoted(s string, i int) (string, int, bool) {
	i++ // the opening quote
	start := i
	escaped := false
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			v := s[start:i]
			if escaped {
				v = unescape(v)
			}
			return v, i + 1, true
		case c == '\\':
			if i+1 == len(s) || !isQuotedPairChar(s[i+1]) {
				return "", i, false
			}
			escaped = true
			i++
		case !isQdtext(c):
			return "", i, false
		}
	}
	return "", i, false // unterminated
}

// unescape removes the backslashes of quoted-pairs from a validated
// quoted-string body.
func unescape(v string) string {
	var b strings.Builder
	b.Grow(len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

func skipOWS(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// isQdtext reports the characters allowed unescaped in a quoted-string.
func isQdtext(c byte) bool {
	return c == '\t' || c == ' ' || c == 0x21 || 0x23 <= c && c <= 0x5b || 0x5d <= c && c <= 0x7e || c >= 0x80
}

// isQuotedPairChar reports the characters a backslash may escape.
func isQuotedPairChar(c byte) bool {
	return c == '\t' || c == ' ' || 0x21 <= c && c <= 0x7e || c >= 0x80
}
