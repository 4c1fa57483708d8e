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

// ValidHost reports whether s is uri-host [ ":" port ] (RFC 9110 section
// 7.2, RFC 3986 section 3.2.2): a Host value or the authority of a request
// target, which has no userinfo. The host must not be empty; with needPort,
// as for CONNECT, neither may the port be.
func ValidHost(s string, needPort bool) bool {
	var host, port string
	hasPort := false
	if len(s) > 0 && s[0] == '[' {
		// IP-literal: an IPv6 address or IPvFuture.
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		host = s[1:end]
		for i := 0; i < len(host); i++ {
			if c := host[i]; !isUnreserved(c) && !isSubDelim(c) && c != ':' {
				return false
			}
		}
		switch rest := s[end+1:]; {
		case rest == "":
		case rest[0] == ':':
			port, hasPort = rest[1:], true
		default:
			return false
		}
	} else {
		// reg-name, which covers IPv4 addresses.
		host = s
		if i := strings.IndexByte(s, ':'); i >= 0 {
			host, port, hasPort = s[:i], s[i+1:], true
		}
		for i := 0; i < len(host); i++ {
			switch c := host[i]; {
			case isUnreserved(c) || isSubDelim(c):
			case c == '%' && i+2 < len(host) && isHex(host[i+1]) && isHex(host[i+2]):
				i += 2
			default:
				return false
			}
		}
	}
	if host == "" || needPort && (!hasPort || port == "") {
		return false
	}
	for i := 0; i < len(port); i++ {
		if !isDigit(port[i]) {
			return false
		}
	}
	return true
}

// isUnreserved reports whether c is an RFC 3986 unreserved character.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~'
}

// isSubDelim reports whether c is an RFC 3986 sub-delims character.
func isSubDelim(c byte) bool {
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=':
		return true
	}
	return false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
