// Package httpsyntax holds the few RFC 9110 character rules that several
// of taipan's front ends check (HTTP/1.1, WebSocket, uwsgi/FastCGI, CGI,
// forwarded headers, the worker's response heads), so that they all agree.
package httpsyntax

import "strings"

// IsTokenChar reports whether c may appear in a token (tchar, RFC 9110
// section 5.6.2).
func IsTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// IsToken reports whether s is a non-empty token: a valid field name.
func IsToken[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if !IsTokenChar(s[i]) {
			return false
		}
	}
	return len(s) > 0
}

// ValidFieldValue reports whether v may be a field value as taipan writes
// it: no control characters but tab, so no CR, LF or NUL can split a head.
func ValidFieldValue[T string | []byte](v T) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// HasToken reports whether the comma-separated list holds token,
// compared case-insensitively (Connection: upgrade, Upgrade: websocket).
func HasToken(list, token string) bool {
	for item := range strings.SplitSeq(list, ",") {
		if strings.EqualFold(strings.TrimSpace(item), token) {
			return true
		}
	}
	return false
}
