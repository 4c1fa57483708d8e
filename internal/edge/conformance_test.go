package edge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"taipan/internal/logging"
)

// This file is an HTTP/1.1 conformance corpus for the edge's request parser,
// written from RFC 9110 (semantics) and RFC 9112 (HTTP/1.1 messages). Every
// row is a raw request stream, the RFC section that decides it, and what must
// happen: the status of each response, whether the server must then close the
// connection, and for accepted requests what the Handler saw. Where an RFC
// leaves the server a choice (MAY, or SHOULD with a reason to differ), the
// row says which one the edge makes and why.
//
// TestConformance feeds each row to a real Server over loopback TCP whole,
// one byte per write, and in random splits. Run it with -v to see the
// per-category summary; TAIPAN_SPLIT_SEED repeats a run's random splits.

// seen is what the Handler must see for an accepted request.
type seen struct {
	method, target, path, query, host, proto string
	body                                     string
	// fields holds selected header fields: name (any case) -> the values
	// of its field lines in order. An empty list means the field must be
	// absent (a trailer, say, must not have been merged into the header).
	fields map[string][]string
}

// see returns an HTTP/1.1 request with no body and no selected fields.
func see(method, target, path, query, host string) seen {
	return seen{method: method, target: target, path: path, query: query, host: host, proto: "HTTP/1.1"}
}

// getRoot is what the Handler sees for GET / with Host: h.
func getRoot() seen { return see("GET", "/", "/", "", "h") }

func (s seen) withBody(b string) seen { s.body = b; return s }
func (s seen) http10() seen           { s.proto = "HTTP/1.0"; return s }

// field requires the field lines named name to carry exactly values (none:
// the field must be absent).
func (s seen) field(name string, values ...string) seen {
	m := make(map[string][]string, len(s.fields)+1)
	for k, v := range s.fields {
		m[k] = v
	}
	m[name] = values
	s.fields = m
	return s
}

// wantResp is one expected response: its status and, for a request the
// Handler served, what it saw.
type wantResp struct {
	status int
	seen   *seen
	head   bool // the answer to a HEAD request the Handler never saw
}

// outcome is everything a row expects from the server.
type outcome struct {
	resps []wantResp
	// close: after the last response the server closes the connection
	// (announcing it with Connection: close) and answers nothing more.
	// Otherwise the connection stays usable: a probe request sent after the
	// row is answered, which also proves the row's framing consumed exactly
	// its own bytes.
	close bool
}

// ok expects each request to be served with 200 and the connection kept.
func ok(ss ...seen) outcome {
	var o outcome
	for i := range ss {
		o.resps = append(o.resps, wantResp{status: 200, seen: &ss[i]})
	}
	return o
}

// okClose is ok, and then the server closes the connection.
func okClose(ss ...seen) outcome {
	o := ok(ss...)
	o.close = true
	return o
}

// reject expects one error response with code, then a closed connection.
func reject(code int) outcome {
	return outcome{resps: []wantResp{{status: code}}, close: true}
}

// rejectHead is reject for a HEAD request: the error response ends after
// its header section, as any response to HEAD (RFC 9112 section 6.3).
func rejectHead(code int) outcome {
	return outcome{resps: []wantResp{{status: code, head: true}}, close: true}
}

// rejects reports whether the row expects the edge to refuse something.
func (o outcome) rejects() bool {
	for _, r := range o.resps {
		if r.status >= 400 {
			return true
		}
	}
	return false
}

// conformanceCase is one row of the corpus.
type conformanceCase struct {
	category string
	name     string
	rfc      string // the section that decides the row, and the choice made when there is one
	raw      string
	want     outcome
}

// Categories, in the order the summary lists them.
const (
	catRequestLine = "request-line"
	catMethod      = "method"
	catVersion     = "version"
	catFieldSyntax = "field-syntax"
	catHost        = "host"
	catCL          = "content-length"
	catTE          = "transfer-encoding"
	catChunked     = "chunked-body"
	catCLTE        = "cl+te"
	catLineEnd     = "line-endings"
	catPipeline    = "pipelining"
	catTarget      = "target-encoding"
)

// head builds a request head: the start line, the field lines, and the
// empty line, all ended by CRLF.
func head(start string, fields ...string) string {
	var b strings.Builder
	b.WriteString(start)
	b.WriteString("\r\n")
	for _, f := range fields {
		b.WriteString(f)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// get is "GET target HTTP/1.1" with Host: h and the given extra fields.
func getReq(target string, fields ...string) string {
	return head("GET "+target+" HTTP/1.1", append([]string{"Host: h"}, fields...)...)
}

// withCL is a POST / with the given Content-Length value and bytes after
// the head.
func withCL(cl, rest string) string {
	return head("POST / HTTP/1.1", "Host: h", "Content-Length: "+cl) + rest
}

// withTE is a POST / with the given Transfer-Encoding value and bytes
// after the head.
func withTE(te, rest string) string {
	return head("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: "+te) + rest
}

// chunkedPost is a POST / with Transfer-Encoding: chunked and the given
// body bytes.
func chunkedPost(body string) string { return withTE("chunked", body) }

// postSeen is what the Handler sees for POST / with Host: h and body b.
func postSeen(b string) seen { return see("POST", "/", "/", "", "h").withBody(b) }

// conformanceCorpus returns the corpus. Section numbers are RFC 9112's
// ("9112 §6.3") or RFC 9110's ("9110 §7.2").
func conformanceCorpus() []conformanceCase {
	long := strings.Repeat("a", DefaultLimitRequestLine)
	longField := "X-Long: " + strings.Repeat("v", DefaultLimitRequestFieldSize)
	manyFields := make([]string, 0, DefaultLimitRequestFields+1)
	manyFields = append(manyFields, "Host: h")
	for i := 0; i < DefaultLimitRequestFields; i++ {
		manyFields = append(manyFields, "X-F"+strconv.Itoa(i)+": v")
	}
	manyTrailers := strings.Repeat("X-T: v\r\n", DefaultLimitRequestFields+1)
	allTchar := "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

	return []conformanceCase{
		// Request line: the four forms of request-target and the
		// single-SP grammar.
		{catRequestLine, "origin-form root", "9112 §3.2.1", getReq("/"), ok(getRoot())},
		{catRequestLine, "origin-form path and query", "9112 §3.2.1", getReq("/a/b?x=1&y=2"), ok(see("GET", "/a/b?x=1&y=2", "/a/b", "x=1&y=2", "h"))},
		{catRequestLine, "origin-form empty query", "9112 §3.2.1", getReq("/a?"), ok(see("GET", "/a?", "/a", "", "h"))},
		{catRequestLine, "origin-form ? inside query", "9112 §3.2.1, RFC 3986 §3.4", getReq("/a?b?c"), ok(see("GET", "/a?b?c", "/a", "b?c", "h"))},
		{catRequestLine, "origin-form / inside query", "9112 §3.2.1, RFC 3986 §3.4", getReq("/a?x=/y"), ok(see("GET", "/a?x=/y", "/a", "x=/y", "h"))},
		{catRequestLine, "origin-form empty segments", "9112 §3.2.1", getReq("//a//b/"), ok(see("GET", "//a//b/", "//a//b/", "", "h"))},
		{catRequestLine, "origin-form dot segments kept", "9112 §3.2.1 (normalising is the app's business)", getReq("/a/../b/./c"), ok(see("GET", "/a/../b/./c", "/a/../b/./c", "", "h"))},
		{catRequestLine, "absolute-form: target authority replaces Host", "9112 §3.2.2 MUST ignore Host", head("GET http://example.com/p?q=1 HTTP/1.1", "Host: other"), ok(see("GET", "http://example.com/p?q=1", "/p", "q=1", "example.com").field("Host", "example.com"))},
		{catRequestLine, "absolute-form in HTTP/1.0 without Host", "9112 §3.2.2", head("GET http://example.com/p HTTP/1.0", "Connection: keep-alive"), ok(see("GET", "http://example.com/p", "/p", "", "example.com").http10().field("Host", "example.com"))},
		{catRequestLine, "absolute-form with port", "9112 §3.2.2", head("GET http://example.com:8080/p HTTP/1.1", "Host: h"), ok(see("GET", "http://example.com:8080/p", "/p", "", "example.com:8080"))},
		{catRequestLine, "absolute-form https", "9112 §3.2.2", head("GET https://example.com/p HTTP/1.1", "Host: h"), ok(see("GET", "https://example.com/p", "/p", "", "example.com"))},
		{catRequestLine, "absolute-form empty path", "9112 §3.2.2, 9110 §4.2.3 (empty path is /)", head("GET http://example.com HTTP/1.1", "Host: h"), ok(see("GET", "http://example.com", "/", "", "example.com"))},
		{catRequestLine, "absolute-form empty path with query", "9112 §3.2.2, 9110 §4.2.3", head("GET http://example.com?x HTTP/1.1", "Host: h"), ok(see("GET", "http://example.com?x", "/", "x", "example.com"))},
		{catRequestLine, "absolute-form scheme is case-insensitive", "9110 §4.2.3, RFC 3986 §3.1", head("GET HTTP://example.com/p HTTP/1.1", "Host: h"), ok(see("GET", "HTTP://example.com/p", "/p", "", "example.com"))},
		{catRequestLine, "absolute-form IPv6 literal", "9112 §3.2.2, RFC 3986 §3.2.2", head("GET http://[::1]:8080/p HTTP/1.1", "Host: h"), ok(see("GET", "http://[::1]:8080/p", "/p", "", "[::1]:8080"))},
		{catRequestLine, "absolute-form with userinfo", "9110 §4.2.4 treat userinfo as an error", head("GET http://u:p@example.com/ HTTP/1.1", "Host: h"), reject(400)},
		{catRequestLine, "absolute-form empty host", "9110 §4.2.1 MUST reject an empty host", head("GET http:///p HTTP/1.1", "Host: h"), reject(400)},
		{catRequestLine, "absolute-form empty host with port", "9110 §4.2.1 MUST reject an empty host", head("GET http://:80/p HTTP/1.1", "Host: h"), reject(400)},
		{catRequestLine, "absolute-form invalid host characters", "9110 §4.2.1, RFC 3986 §3.2.2", head("GET http://a<b>/p HTTP/1.1", "Host: h"), reject(400)},
		{catRequestLine, "absolute-form invalid port", "9110 §4.2.1, RFC 3986 §3.2.3", head("GET http://example.com:8x/p HTTP/1.1", "Host: h"), reject(400)},
		{catRequestLine, "absolute-form other scheme", "9112 §3.2.2 (an origin server serves http and https)", head("GET ftp://example.com/p HTTP/1.1", "Host: h"), reject(400)},
		{catRequestLine, "absolute-form still needs Host in HTTP/1.1", "9112 §3.2 MUST 400 without Host", head("GET http://example.com/p HTTP/1.1"), reject(400)},
		{catRequestLine, "asterisk-form OPTIONS", "9112 §3.2.4", head("OPTIONS * HTTP/1.1", "Host: h"), ok(see("OPTIONS", "*", "*", "", "h"))},
		{catRequestLine, "asterisk-form with GET", "9112 §3.2.4 only for OPTIONS", getReq("*"), reject(400)},
		{catRequestLine, "asterisk-form with a suffix", "9112 §3.2.4", head("OPTIONS *x HTTP/1.1", "Host: h"), reject(400)},
		{catRequestLine, "authority-form CONNECT: not a proxy", "9112 §3.2.3, 9110 §9.3.6 and §9.1 SHOULD 501 for a method not implemented", head("CONNECT example.com:443 HTTP/1.1", "Host: example.com:443"), reject(501)},
		{catRequestLine, "authority-form CONNECT without port", "9110 §9.3.6 the port is required", head("CONNECT example.com HTTP/1.1", "Host: example.com"), reject(400)},
		{catRequestLine, "CONNECT with origin-form", "9110 §9.3.6 CONNECT takes authority-form only", head("CONNECT / HTTP/1.1", "Host: h"), reject(400)},
		{catRequestLine, "authority-form with GET", "9112 §3.2.3 only for CONNECT", getReq("example.com:80"), reject(400)},
		{catRequestLine, "relative target", "9112 §3.2", getReq("a/b"), reject(400)},
		{catRequestLine, "empty target", "9112 §3", head("GET  HTTP/1.1", "Host: h"), reject(400)},
		{catRequestLine, "no version (HTTP/0.9 form)", "9112 §3", "GET /\r\n\r\n", reject(400)},
		{catRequestLine, "two SP after method", "9112 §3 MAY parse on whitespace; strict is safe", head("GET  / HTTP/1.1", "Host: h"), reject(400)},
		{catRequestLine, "two SP before version", "9112 §3 MAY parse on whitespace; strict is safe", head("GET /  HTTP/1.1", "Host: h"), reject(400)},
		{catRequestLine, "trailing SP", "9112 §3 MAY ignore trailing whitespace; strict is safe", head("GET / HTTP/1.1 ", "Host: h"), reject(400)},
		{catRequestLine, "HTAB separator", "9112 §3 MAY treat HTAB as SP; strict is safe", head("GET\t/ HTTP/1.1", "Host: h"), reject(400)},
		{catRequestLine, "VT separator", "9112 §3", head("GET\x0b/ HTTP/1.1", "Host: h"), reject(400)},
		{catRequestLine, "leading SP", "9112 §3", head(" GET / HTTP/1.1", "Host: h"), reject(400)},
		{catRequestLine, "empty line before request", "9112 §2.2 SHOULD ignore at least one", "\r\n" + getReq("/"), ok(getRoot())},
		{catRequestLine, "bare LF lines before request", "9112 §2.2", "\n\n" + getReq("/"), ok(getRoot())},
		{catRequestLine, "too many empty lines before request", "9112 §2.2 (ignoring a reasonable number, 8)", strings.Repeat("\r\n", 9) + getReq("/"), reject(400)},
		{catRequestLine, "request line at the limit", "9112 §3 (limit 4094)", getReq("/" + long[:DefaultLimitRequestLine-len("GET / HTTP/1.1")]), ok(see("GET", "/"+long[:DefaultLimitRequestLine-len("GET / HTTP/1.1")], "/"+long[:DefaultLimitRequestLine-len("GET / HTTP/1.1")], "", "h"))},
		{catRequestLine, "request line over the limit", "9112 §3 MUST 414 for a target longer than it parses", getReq("/" + long), reject(414)},

		// Methods: any token, case-sensitive.
		{catMethod, "GET", "9110 §9.3.1", getReq("/"), ok(getRoot())},
		{catMethod, "HEAD", "9110 §9.3.2", head("HEAD / HTTP/1.1", "Host: h"), ok(see("HEAD", "/", "/", "", "h"))},
		{catMethod, "POST with body", "9110 §9.3.3", withCL("2", "hi"), ok(postSeen("hi"))},
		{catMethod, "PUT with body", "9110 §9.3.4", head("PUT /r HTTP/1.1", "Host: h", "Content-Length: 2") + "hi", ok(see("PUT", "/r", "/r", "", "h").withBody("hi"))},
		{catMethod, "DELETE", "9110 §9.3.5", head("DELETE /r HTTP/1.1", "Host: h"), ok(see("DELETE", "/r", "/r", "", "h"))},
		{catMethod, "OPTIONS origin-form", "9110 §9.3.7", head("OPTIONS /r HTTP/1.1", "Host: h"), ok(see("OPTIONS", "/r", "/r", "", "h"))},
		{catMethod, "TRACE passed to the app", "9110 §9.3.8", head("TRACE / HTTP/1.1", "Host: h"), ok(see("TRACE", "/", "/", "", "h"))},
		{catMethod, "PATCH", "9110 §9.1 (RFC 5789)", head("PATCH /r HTTP/1.1", "Host: h", "Content-Length: 1") + "x", ok(see("PATCH", "/r", "/r", "", "h").withBody("x"))},
		{catMethod, "extension method", "9110 §9.1, §16.1", head("PROPFIND / HTTP/1.1", "Host: h"), ok(see("PROPFIND", "/", "/", "", "h"))},
		{catMethod, "lowercase is another method", "9110 §9.1 case-sensitive", head("get / HTTP/1.1", "Host: h"), ok(see("get", "/", "/", "", "h"))},
		{catMethod, "every tchar", "9110 §5.6.2 method = token", head(allTchar+" / HTTP/1.1", "Host: h"), ok(see(allTchar, "/", "/", "", "h"))},
		{catMethod, "long method", "9110 §9.1", head(strings.Repeat("M", 200)+" / HTTP/1.1", "Host: h"), ok(see(strings.Repeat("M", 200), "/", "/", "", "h"))},
		{catMethod, "parenthesis", "9110 §5.6.2 not a tchar", head("G(T / HTTP/1.1", "Host: h"), reject(400)},
		{catMethod, "slash", "9110 §5.6.2", head("GE/T / HTTP/1.1", "Host: h"), reject(400)},
		{catMethod, "colon", "9110 §5.6.2", head("GET: / HTTP/1.1", "Host: h"), reject(400)},
		{catMethod, "at sign", "9110 §5.6.2", head("G@T / HTTP/1.1", "Host: h"), reject(400)},
		{catMethod, "double quote", "9110 §5.6.2", head("G\"T / HTTP/1.1", "Host: h"), reject(400)},
		{catMethod, "NUL", "9110 §5.6.2", head("G\x00T / HTTP/1.1", "Host: h"), reject(400)},
		{catMethod, "non-ASCII", "9110 §5.6.2", head("G\xc3\x89T / HTTP/1.1", "Host: h"), reject(400)},
		{catMethod, "DEL", "9110 §5.6.2", head("GET\x7f / HTTP/1.1", "Host: h"), reject(400)},

		// HTTP-version.
		{catVersion, "HTTP/1.1", "9112 §2.3", getReq("/"), ok(getRoot())},
		{catVersion, "HTTP/1.0 closes by default", "9112 §9.3", head("GET / HTTP/1.0", "Host: h"), okClose(getRoot().http10())},
		{catVersion, "HTTP/1.0 keep-alive", "9112 §9.3, Appendix C.2.2", head("GET / HTTP/1.0", "Host: h", "Connection: keep-alive"), ok(getRoot().http10())},
		{catVersion, "HTTP/1.0 without Host", "9112 §3.2 (Host required in HTTP/1.1 only)", head("GET / HTTP/1.0"), okClose(see("GET", "/", "/", "", "").http10())},
		{catVersion, "HTTP/1.2", "9110 §2.5 SHOULD process as 1.1; the edge answers 505: no HTTP/1.2 exists to be compatible with", head("GET / HTTP/1.2", "Host: h"), reject(505)},
		{catVersion, "HTTP/2.0", "9110 §15.6.6", head("GET / HTTP/2.0", "Host: h"), reject(505)},
		{catVersion, "HTTP/3.0", "9110 §15.6.6", head("GET / HTTP/3.0", "Host: h"), reject(505)},
		{catVersion, "HTTP/0.9", "9110 §15.6.6", head("GET / HTTP/0.9", "Host: h"), reject(505)},
		{catVersion, "lowercase name", "9112 §2.3 HTTP-name is case-sensitive", head("GET / http/1.1", "Host: h"), reject(400)},
		{catVersion, "no minor", "9112 §2.3", head("GET / HTTP/1", "Host: h"), reject(400)},
		{catVersion, "two-digit minor", "9112 §2.3 one DIGIT", head("GET / HTTP/1.10", "Host: h"), reject(400)},
		{catVersion, "two-digit major", "9112 §2.3 one DIGIT", head("GET / HTTP/01.1", "Host: h"), reject(400)},
		{catVersion, "no dot", "9112 §2.3", head("GET / HTTP/11", "Host: h"), reject(400)},
		{catVersion, "three parts", "9112 §2.3", head("GET / HTTP/1.1.1", "Host: h"), reject(400)},
		{catVersion, "letters", "9112 §2.3", head("GET / HTTP/a.b", "Host: h"), reject(400)},
		{catVersion, "HTTPS name", "9112 §2.3", head("GET / HTTPS/1.1", "Host: h"), reject(400)},
		{catVersion, "space inside", "9112 §2.3", head("GET / HTTP /1.1", "Host: h"), reject(400)},
		{catVersion, "garbage", "9112 §2.3", head("GET / FOO", "Host: h"), reject(400)},

		// Field syntax.
		{catFieldSyntax, "simple field", "9112 §5", getReq("/", "X-A: b"), ok(getRoot().field("X-A", "b"))},
		{catFieldSyntax, "no OWS after colon", "9112 §5 OWS is optional", getReq("/", "X-A:b"), ok(getRoot().field("X-A", "b"))},
		{catFieldSyntax, "OWS trimmed both sides", "9112 §5, 9110 §5.5", getReq("/", "X-A: \t b \t "), ok(getRoot().field("X-A", "b"))},
		{catFieldSyntax, "empty value", "9110 §5.5 field-value may be empty", getReq("/", "X-A:"), ok(getRoot().field("X-A", ""))},
		{catFieldSyntax, "whitespace-only value", "9110 §5.5", getReq("/", "X-A:  \t "), ok(getRoot().field("X-A", ""))},
		{catFieldSyntax, "inner whitespace kept", "9110 §5.5", getReq("/", "X-A: b \t c"), ok(getRoot().field("X-A", "b \t c"))},
		{catFieldSyntax, "obs-text kept", "9110 §5.5 field-vchar includes obs-text", getReq("/", "X-A: caf\xc3\xa9 \xff"), ok(getRoot().field("X-A", "caf\xc3\xa9 \xff"))},
		{catFieldSyntax, "colon in value", "9112 §5 the first colon ends the name", getReq("/", "X-A: b:c: d"), ok(getRoot().field("X-A", "b:c: d"))},
		{catFieldSyntax, "every tchar in name", "9110 §5.1 field-name = token", getReq("/", allTchar+": v"), ok(getRoot().field(allTchar, "v"))},
		{catFieldSyntax, "name case kept, matched case-insensitively", "9110 §5.1", getReq("/", "x-MiXeD: v"), ok(getRoot().field("X-Mixed", "v"))},
		{catFieldSyntax, "repeated field lines in order", "9110 §5.3", getReq("/", "X-A: 1", "X-B: 2", "X-A: 3"), ok(getRoot().field("X-A", "1", "3").field("X-B", "2"))},
		{catFieldSyntax, "list value kept as sent", "9110 §5.6.1", getReq("/", "Accept: a/b, c/d;q=0.5"), ok(getRoot().field("Accept", "a/b, c/d;q=0.5"))},
		{catFieldSyntax, "SP before colon", "9112 §5.1 MUST 400", getReq("/", "X-A : b"), reject(400)},
		{catFieldSyntax, "HTAB before colon", "9112 §5.1 MUST 400", getReq("/", "X-A\t: b"), reject(400)},
		{catFieldSyntax, "no colon", "9112 §5", getReq("/", "X-A b"), reject(400)},
		{catFieldSyntax, "empty name", "9110 §5.1", getReq("/", ": b"), reject(400)},
		{catFieldSyntax, "SP inside name", "9110 §5.1", getReq("/", "X A: b"), reject(400)},
		{catFieldSyntax, "parenthesis in name", "9110 §5.1", getReq("/", "X(A): b"), reject(400)},
		{catFieldSyntax, "slash in name", "9110 §5.1", getReq("/", "X/A: b"), reject(400)},
		{catFieldSyntax, "non-ASCII name", "9110 §5.1", getReq("/", "X-\xc3\xa9: b"), reject(400)},
		{catFieldSyntax, "NUL in name", "9110 §5.1", getReq("/", "X\x00A: b"), reject(400)},
		{catFieldSyntax, "obs-fold with SP", "9112 §5.2 MUST reject with 400 or replace; reject is safe", getReq("/", "X-A: b", " c"), reject(400)},
		{catFieldSyntax, "obs-fold with HTAB", "9112 §5.2", getReq("/", "X-A: b", "\tc"), reject(400)},
		{catFieldSyntax, "whitespace before first field line", "9112 §2.2 MUST reject or ignore the line; reject is safe", head("GET / HTTP/1.1", " X-A: b", "Host: h"), reject(400)},
		{catFieldSyntax, "whitespace-only field line", "9112 §5.2", getReq("/", " "), reject(400)},
		{catFieldSyntax, "NUL in value", "9110 §5.5 MUST reject or replace NUL; reject is safe", getReq("/", "X-A: a\x00b"), reject(400)},
		{catFieldSyntax, "SOH in value", "9110 §5.5 field-vchar", getReq("/", "X-A: a\x01b"), reject(400)},
		{catFieldSyntax, "ESC in value", "9110 §5.5 field-vchar", getReq("/", "X-A: a\x1bb"), reject(400)},
		{catFieldSyntax, "DEL in value", "9110 §5.5 field-vchar", getReq("/", "X-A: a\x7fb"), reject(400)},
		{catFieldSyntax, "VT in value", "9110 §5.5 field-vchar", getReq("/", "X-A: a\x0bb"), reject(400)},
		{catFieldSyntax, "field line at the limit", "9112 §5 (limit 8190)", getReq("/", longField[:DefaultLimitRequestFieldSize]), ok(getRoot().field("X-Long", longField[len("X-Long: "):DefaultLimitRequestFieldSize]))},
		{catFieldSyntax, "field line over the limit", "9110 §15.5 / RFC 6585 §5: 431", getReq("/", longField), reject(431)},
		{catFieldSyntax, "fields at the count limit", "RFC 6585 §5 (limit 100)", head("GET / HTTP/1.1", manyFields[:DefaultLimitRequestFields]...), ok(getRoot().field("X-F98", "v"))},
		{catFieldSyntax, "fields over the count limit", "RFC 6585 §5: 431", head("GET / HTTP/1.1", manyFields...), reject(431)},

		// Host.
		{catHost, "host name", "9110 §7.2", getReq("/"), ok(getRoot())},
		{catHost, "host and port", "9110 §7.2", head("GET / HTTP/1.1", "Host: example.com:8080"), ok(see("GET", "/", "/", "", "example.com:8080"))},
		{catHost, "IPv4 and port", "9110 §7.2, RFC 3986 §3.2.2", head("GET / HTTP/1.1", "Host: 127.0.0.1:80"), ok(see("GET", "/", "/", "", "127.0.0.1:80"))},
		{catHost, "IPv6 literal and port", "9110 §7.2, RFC 3986 §3.2.2", head("GET / HTTP/1.1", "Host: [::1]:8000"), ok(see("GET", "/", "/", "", "[::1]:8000"))},
		{catHost, "empty port", "RFC 3986 §3.2.3 port = *DIGIT", head("GET / HTTP/1.1", "Host: h:"), ok(see("GET", "/", "/", "", "h:"))},
		{catHost, "empty value", "9110 §7.2 an empty Host is allowed", head("GET / HTTP/1.1", "Host:"), ok(see("GET", "/", "/", "", ""))},
		{catHost, "underscore and trailing dot", "RFC 3986 §3.2.2 reg-name", head("GET / HTTP/1.1", "Host: my_host.example."), ok(see("GET", "/", "/", "", "my_host.example."))},
		{catHost, "pct-encoded reg-name", "RFC 3986 §3.2.2 reg-name allows pct-encoded", head("GET / HTTP/1.1", "Host: ex%41mple"), ok(see("GET", "/", "/", "", "ex%41mple"))},
		{catHost, "field name case-insensitive", "9110 §5.1", head("GET / HTTP/1.1", "hOsT: h"), ok(getRoot())},
		{catHost, "missing in HTTP/1.1", "9112 §3.2 MUST 400", head("GET / HTTP/1.1"), reject(400)},
		{catHost, "two Host lines", "9112 §3.2 MUST 400", head("GET / HTTP/1.1", "Host: h", "Host: h"), reject(400)},
		{catHost, "two Host lines, different case", "9112 §3.2 MUST 400", head("GET / HTTP/1.1", "Host: h", "host: h"), reject(400)},
		{catHost, "two Host lines in HTTP/1.0", "9112 §3.2 MUST 400 (any request message)", head("GET / HTTP/1.0", "Host: a", "Host: b"), reject(400)},
		{catHost, "Host list", "9112 §3.2 MUST 400 for an invalid value", head("GET / HTTP/1.1", "Host: a, b"), reject(400)},
		{catHost, "SP inside", "9112 §3.2 invalid value", head("GET / HTTP/1.1", "Host: a b"), reject(400)},
		{catHost, "userinfo", "9112 §3.2 invalid value (uri-host has no userinfo)", head("GET / HTTP/1.1", "Host: u@h"), reject(400)},
		{catHost, "path", "9112 §3.2 invalid value", head("GET / HTTP/1.1", "Host: h/p"), reject(400)},
		{catHost, "query", "9112 §3.2 invalid value", head("GET / HTTP/1.1", "Host: h?x"), reject(400)},
		{catHost, "letters in port", "9112 §3.2 invalid value", head("GET / HTTP/1.1", "Host: h:8o"), reject(400)},
		{catHost, "two ports", "9112 §3.2 invalid value", head("GET / HTTP/1.1", "Host: h:80:80"), reject(400)},
		{catHost, "empty host with port", "9110 §4.2.1 empty host is invalid for http", head("GET / HTTP/1.1", "Host: :80"), reject(400)},
		{catHost, "unbracketed IPv6", "9112 §3.2 invalid value", head("GET / HTTP/1.1", "Host: ::1"), reject(400)},
		{catHost, "unclosed IPv6 bracket", "9112 §3.2 invalid value", head("GET / HTTP/1.1", "Host: [::1"), reject(400)},
		{catHost, "junk after IPv6 bracket", "9112 §3.2 invalid value", head("GET / HTTP/1.1", "Host: [::1]x"), reject(400)},
		{catHost, "bad pct-encoding", "9112 §3.2 invalid value", head("GET / HTTP/1.1", "Host: ex%zzample"), reject(400)},
		{catHost, "non-ASCII", "9112 §3.2 invalid value (IDNs travel as A-labels)", head("GET / HTTP/1.1", "Host: caf\xc3\xa9"), reject(400)},
		{catHost, "invalid Host with absolute-form", "9112 §3.2 MUST 400 for an invalid Host, whatever the target", head("GET http://example.com/ HTTP/1.1", "Host: a b"), reject(400)},

		// Content-Length.
		{catCL, "body", "9112 §6.2", withCL("3", "abc"), ok(postSeen("abc"))},
		{catCL, "zero", "9112 §6.2", withCL("0", ""), ok(postSeen(""))},
		{catCL, "leading zeros", "9110 §8.6 Content-Length = 1*DIGIT", withCL("003", "abc"), ok(postSeen("abc"))},
		{catCL, "many leading zeros", "9110 §8.6", withCL("00000000000000000000000003", "abc"), ok(postSeen("abc"))},
		{catCL, "OWS around value", "9112 §5", head("POST / HTTP/1.1", "Host: h", "Content-Length: \t3 ") + "abc", ok(postSeen("abc"))},
		{catCL, "field name case-insensitive", "9110 §5.1", head("POST / HTTP/1.1", "Host: h", "content-LENGTH: 3") + "abc", ok(postSeen("abc"))},
		{catCL, "body on GET", "9112 §6.3 (framing does not depend on the method)", head("GET / HTTP/1.1", "Host: h", "Content-Length: 2") + "hi", ok(getRoot().withBody("hi"))},
		{catCL, "body in HTTP/1.0 keep-alive", "9112 §6.2", head("POST / HTTP/1.0", "Content-Length: 3", "Connection: keep-alive") + "abc", ok(see("POST", "/", "/", "", "").http10().withBody("abc"))},
		{catCL, "CR LF bytes in body", "9112 §6.2 (content is opaque)", withCL("6", "a\r\nb\nc"), ok(postSeen("a\r\nb\nc"))},
		{catCL, "plus sign", "9110 §8.6", withCL("+3", "abc"), reject(400)},
		{catCL, "minus sign", "9110 §8.6", withCL("-3", "abc"), reject(400)},
		{catCL, "decimal point", "9110 §8.6", withCL("3.0", "abc"), reject(400)},
		{catCL, "hex", "9110 §8.6", withCL("0x3", "abc"), reject(400)},
		{catCL, "exponent", "9110 §8.6", withCL("3e0", "abc"), reject(400)},
		{catCL, "underscore", "9110 §8.6", withCL("1_0", "abc"), reject(400)},
		{catCL, "SP between digits", "9110 §8.6", withCL("1 0", "abc"), reject(400)},
		{catCL, "non-ASCII digit", "9110 §8.6", withCL("\xef\xbc\x93", "abc"), reject(400)},
		{catCL, "empty", "9112 §6.3 invalid Content-Length", withCL("", "abc"), reject(400)},
		{catCL, "identical list", "9110 §8.6, 9112 §6.3 MAY accept; rejecting cannot desynchronise", withCL("3, 3", "abc"), reject(400)},
		{catCL, "different list", "9112 §6.3 MUST treat as an error", withCL("3, 4", "abcd"), reject(400)},
		{catCL, "list with empty element", "9110 §8.6 MAY accept a list; rejecting is safe", withCL(", 3", "abc"), reject(400)},
		{catCL, "identical field lines", "9110 §8.6 MAY accept; rejecting cannot desynchronise", head("POST / HTTP/1.1", "Host: h", "Content-Length: 3", "Content-Length: 3") + "abc", reject(400)},
		{catCL, "different field lines", "9112 §6.3 MUST treat as an error", head("POST / HTTP/1.1", "Host: h", "Content-Length: 3", "Content-Length: 4") + "abcd", reject(400)},
		{catCL, "overflows int64", "9110 §8.6 anticipate large numbers, no overflow", withCL("9223372036854775808", ""), reject(400)},
		{catCL, "twenty digits", "9110 §8.6", withCL("99999999999999999999", ""), reject(400)},
		{catCL, "over the body limit", "9110 §15.5.14 413", withCL("100000000", ""), reject(413)},

		// Transfer-Encoding header.
		{catTE, "chunked", "9112 §6.1, §7.1", chunkedPost("3\r\nabc\r\n0\r\n\r\n"), ok(postSeen("abc"))},
		{catTE, "coding name case-insensitive", "9112 §7", withTE("Chunked", "3\r\nabc\r\n0\r\n\r\n"), ok(postSeen("abc"))},
		{catTE, "field name case-insensitive", "9110 §5.1", head("POST / HTTP/1.1", "Host: h", "transfer-ENCODING: chunked") + "3\r\nabc\r\n0\r\n\r\n", ok(postSeen("abc"))},
		{catTE, "OWS around coding", "9110 §5.6.1", withTE(" chunked\t", "3\r\nabc\r\n0\r\n\r\n"), ok(postSeen("abc"))},
		{catTE, "empty list elements ignored", "9110 §5.6.1 MUST ignore empty elements", withTE(", chunked ,", "3\r\nabc\r\n0\r\n\r\n"), ok(postSeen("abc"))},
		{catTE, "chunked not final", "9112 §6.3 MUST 400 and close", withTE("chunked, gzip", "3\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catTE, "chunked twice", "9112 §7 MUST NOT apply chunked twice", withTE("chunked, chunked", "3\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catTE, "chunked twice across field lines", "9112 §7, 9110 §5.3", head("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked") + "0\r\n\r\n", reject(400)},
		{catTE, "unknown coding before chunked", "9112 §6.1 SHOULD 501 for a coding not understood", withTE("gzip, chunked", "0\r\n\r\n"), reject(501)},
		{catTE, "unknown coding on its own line", "9112 §6.1, 9110 §5.3 lines combine", head("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: gzip", "Transfer-Encoding: chunked") + "0\r\n\r\n", reject(501)},
		{catTE, "unknown coding alone", "9112 §6.1 SHOULD 501; §6.3 asks 400 when chunked is not final; either closes, the edge answers 501", withTE("gzip", ""), reject(501)},
		{catTE, "identity", "9112 §7 (identity is no longer a coding)", withTE("identity", ""), reject(501)},
		{catTE, "near-miss name", "9112 §6.1", withTE("xchunked", ""), reject(501)},
		{catTE, "empty value", "9112 §6.1 transfer-coding list needs one element", withTE("", ""), reject(400)},
		{catTE, "in HTTP/1.0", "9112 §6.1 treat the framing as faulty; rejecting is safe", head("POST / HTTP/1.0", "Transfer-Encoding: chunked") + "0\r\n\r\n", reject(400)},
		{catTE, "body over the limit", "9110 §15.5.14 413", chunkedPost("7fffffffffffffff\r\n"), reject(413)},
		{catTE, "size that wraps the running total", "9110 §15.5.14 413 (sum of chunk sizes must not overflow)", chunkedPost("1\r\na\r\n7fffffffffffffff\r\n" + strings.Repeat("x", 1000)), reject(413)},

		// Chunked body: chunk-size, extensions, trailers.
		{catChunked, "several chunks", "9112 §7.1", chunkedPost("3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n"), ok(postSeen("abcdef"))},
		{catChunked, "empty body", "9112 §7.1", chunkedPost("0\r\n\r\n"), ok(postSeen(""))},
		{catChunked, "uppercase hex", "9112 §7.1 HEXDIG", chunkedPost("A\r\n0123456789\r\n0\r\n\r\n"), ok(postSeen("0123456789"))},
		{catChunked, "lowercase hex", "9112 §7.1, RFC 5234 HEXDIG is case-insensitive", chunkedPost("a\r\n0123456789\r\n0\r\n\r\n"), ok(postSeen("0123456789"))},
		{catChunked, "leading zeros", "9112 §7.1 1*HEXDIG", chunkedPost("0003\r\nabc\r\n000\r\n\r\n"), ok(postSeen("abc"))},
		{catChunked, "sixteen hex digits with leading zeros", "9112 §7.1 anticipate large numbers", chunkedPost("0000000000000003\r\nabc\r\n0\r\n\r\n"), ok(postSeen("abc"))},
		{catChunked, "CR LF inside chunk data", "9112 §7.1 (chunk-data is opaque)", chunkedPost("5\r\na\r\nbc\r\n0\r\n\r\n"), ok(postSeen("a\r\nbc"))},
		{catChunked, "extension", "9112 §7.1.1 MUST ignore unknown extensions", chunkedPost("3;name=value\r\nabc\r\n0\r\n\r\n"), ok(postSeen("abc"))},
		{catChunked, "extension without value", "9112 §7.1.1", chunkedPost("3;flag\r\nabc\r\n0\r\n\r\n"), ok(postSeen("abc"))},
		{catChunked, "quoted extension value", "9112 §7.1.1 chunk-ext-val = token / quoted-string", chunkedPost("3;n=\"a b;c\"\r\nabc\r\n0\r\n\r\n"), ok(postSeen("abc"))},
		{catChunked, "quoted-pair in extension", "9110 §5.6.4", chunkedPost("3;n=\"a\\\"b\"\r\nabc\r\n0\r\n\r\n"), ok(postSeen("abc"))},
		{catChunked, "several extensions", "9112 §7.1.1", chunkedPost("3;a=1;b;c=\"x\"\r\nabc\r\n0\r\n\r\n"), ok(postSeen("abc"))},
		{catChunked, "BWS around extension", "9112 §7.1.1 BWS", chunkedPost("3 ; a = 1 ;\tb\r\nabc\r\n0\r\n\r\n"), ok(postSeen("abc"))},
		{catChunked, "extension on last chunk", "9112 §7.1.1", chunkedPost("3\r\nabc\r\n0;done\r\n\r\n"), ok(postSeen("abc"))},
		{catChunked, "extension without name", "9112 §7.1.1 chunk-ext-name = token", chunkedPost("3;=1\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "extension name with SP", "9112 §7.1.1", chunkedPost("3;a b\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "extension with empty value", "9112 §7.1.1 token is 1*tchar", chunkedPost("3;a=\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "extension value not a token", "9112 §7.1.1", chunkedPost("3;a=@\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "unterminated quoted value", "9110 §5.6.4", chunkedPost("3;a=\"b\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "junk after quoted value", "9112 §7.1.1", chunkedPost("3;a=\"b\"c\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "extension without semicolon", "9112 §7.1.1", chunkedPost("3 a=1\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "extensions over the line limit", "9112 §7.1.1 limit extensions, 4xx past it", chunkedPost("3;a=" + strings.Repeat("b", 5000) + "\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "SP after chunk-size", "9112 §7.1 (BWS only before ;)", chunkedPost("3 \r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "SP before chunk-size", "9112 §7.1", chunkedPost(" 3\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "0x prefix", "9112 §7.1", chunkedPost("0x3\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "plus sign", "9112 §7.1", chunkedPost("+3\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "minus sign", "9112 §7.1", chunkedPost("-3\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "empty chunk-size", "9112 §7.1", chunkedPost("\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "non-hex chunk-size", "9112 §7.1", chunkedPost("g\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "chunk-size overflows int64", "9112 §7.1 MUST NOT overflow", chunkedPost("10000000000000000\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "data longer than chunk-size", "9112 §7.1 CRLF after chunk-data", chunkedPost("3\r\nabcd\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "data shorter than chunk-size", "9112 §7.1", chunkedPost("4\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "bare LF after chunk-size", "9112 §7.1 CRLF; bare LF in framing is a smuggling vector", chunkedPost("3\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "bare LF after chunk-data", "9112 §7.1", chunkedPost("3\r\nabc\n0\r\n\r\n"), reject(400)},
		{catChunked, "bare CR after chunk-size", "9112 §2.2 MUST treat bare CR as invalid", chunkedPost("3\r\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "bare LF ending the body", "9112 §7.1", chunkedPost("3\r\nabc\r\n0\r\n\n"), reject(400)},
		{catChunked, "control character in extension", "9112 §7.1.1", chunkedPost("3;a=\x01\r\nabc\r\n0\r\n\r\n"), reject(400)},
		{catChunked, "trailer not merged", "9110 §6.5.1 MUST NOT merge a trailer into the header", chunkedPost("3\r\nabc\r\n0\r\nX-T: v\r\n\r\n"), ok(postSeen("abc").field("X-T"))},
		{catChunked, "trailer Host not merged", "9110 §6.5.1", chunkedPost("3\r\nabc\r\n0\r\nHost: evil\r\n\r\n"), ok(postSeen("abc").field("Host", "h"))},
		{catChunked, "trailer Content-Length not merged", "9110 §6.5.1", chunkedPost("3\r\nabc\r\n0\r\nContent-Length: 9\r\n\r\n"), ok(postSeen("abc").field("Content-Length"))},
		{catChunked, "trailer Transfer-Encoding not merged", "9110 §6.5.1", chunkedPost("0\r\nTransfer-Encoding: gzip\r\n\r\n"), ok(postSeen("").field("Transfer-Encoding", "chunked"))},
		{catChunked, "several trailers", "9112 §7.1.2", chunkedPost("0\r\nA: 1\r\nB: 2\r\nA: 3\r\n\r\n"), ok(postSeen("").field("A").field("B"))},
		{catChunked, "trailer with empty value", "9112 §7.1.2, 9110 §5.5", chunkedPost("0\r\nA:\r\n\r\n"), ok(postSeen("").field("A"))},
		{catChunked, "trailer obs-fold", "9112 §5.2", chunkedPost("0\r\nA: 1\r\n 2\r\n\r\n"), reject(400)},
		{catChunked, "trailer without colon", "9112 §7.1.2 field-line", chunkedPost("0\r\nA 1\r\n\r\n"), reject(400)},
		{catChunked, "trailer SP before colon", "9112 §5.1 MUST 400", chunkedPost("0\r\nA : 1\r\n\r\n"), reject(400)},
		{catChunked, "trailer name not a token", "9110 §5.1", chunkedPost("0\r\nA(b): 1\r\n\r\n"), reject(400)},
		{catChunked, "trailer NUL in value", "9110 §5.5", chunkedPost("0\r\nA: 1\x002\r\n\r\n"), reject(400)},
		{catChunked, "trailer bare LF", "9112 §7.1.2", chunkedPost("0\r\nA: 1\n\r\n"), reject(400)},
		{catChunked, "trailer line over the limit", "RFC 6585 §5: 431", chunkedPost("0\r\nA: " + strings.Repeat("v", DefaultLimitRequestFieldSize) + "\r\n\r\n"), reject(431)},
		{catChunked, "trailers over the count limit", "RFC 6585 §5: 431", chunkedPost("0\r\n" + manyTrailers + "\r\n"), reject(431)},
		{catChunked, "last chunk without the final CRLF eats the next request", "9112 §7.1.2 (the probe's request line is not a trailer field)", chunkedPost("0\r\n"), reject(400)},

		// Content-Length and Transfer-Encoding together.
		{catCLTE, "CL then TE", "9112 §6.1 MAY reject, MUST close; rejecting is safe", head("POST / HTTP/1.1", "Host: h", "Content-Length: 3", "Transfer-Encoding: chunked") + "0\r\n\r\n", reject(400)},
		{catCLTE, "TE then CL", "9112 §6.1", head("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked", "Content-Length: 3") + "0\r\n\r\n", reject(400)},
		{catCLTE, "CL zero and TE", "9112 §6.1", head("POST / HTTP/1.1", "Host: h", "Content-Length: 0", "Transfer-Encoding: chunked") + "0\r\n\r\n", reject(400)},
		{catCLTE, "CL and unknown TE", "9112 §6.1", head("POST / HTTP/1.1", "Host: h", "Content-Length: 3", "Transfer-Encoding: gzip") + "abc", reject(400)},
		{catCLTE, "CL and empty TE", "9112 §6.1", head("POST / HTTP/1.1", "Host: h", "Content-Length: 3", "Transfer-Encoding:") + "abc", reject(400)},
		{catCLTE, "invalid CL and TE", "9112 §6.3", head("POST / HTTP/1.1", "Host: h", "Content-Length: x", "Transfer-Encoding: chunked") + "0\r\n\r\n", reject(400)},
		{catCLTE, "case variants", "9110 §5.1", head("POST / HTTP/1.1", "Host: h", "content-length: 3", "TRANSFER-ENCODING: Chunked") + "0\r\n\r\n", reject(400)},
		{catCLTE, "HTTP/1.0 with both", "9112 §6.1, §6.3", head("POST / HTTP/1.0", "Content-Length: 3", "Transfer-Encoding: chunked") + "0\r\n\r\n", reject(400)},
		{catCLTE, "TE with SP before colon and CL", "9112 §5.1 MUST 400", head("POST / HTTP/1.1", "Host: h", "Transfer-Encoding : chunked", "Content-Length: 3") + "abc", reject(400)},
		{catCLTE, "TE after CL list", "9112 §6.1", head("POST / HTTP/1.1", "Host: h", "Content-Length: 3, 3", "Transfer-Encoding: chunked") + "0\r\n\r\n", reject(400)},

		// Line endings.
		{catLineEnd, "bare LF everywhere in the head", "9112 §2.2 MAY accept LF alone (nothing behind the edge reparses the head)", "GET / HTTP/1.1\nHost: h\n\n", ok(getRoot())},
		{catLineEnd, "mixed CRLF and LF", "9112 §2.2", "GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n\n", ok(getRoot().field("X-A", "b"))},
		{catLineEnd, "bare LF before a CL body", "9112 §2.2", "POST / HTTP/1.1\nHost: h\nContent-Length: 2\n\nhi", ok(postSeen("hi"))},
		{catLineEnd, "bare CR inside request line", "9112 §2.2 MUST treat bare CR as invalid or replace it", "GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", reject(400)},
		{catLineEnd, "bare CR ending request line", "9112 §2.2", "GET / HTTP/1.1\rHost: h\r\n\r\n", reject(400)},
		{catLineEnd, "CR CR LF after request line", "9112 §2.2", "GET / HTTP/1.1\r\r\nHost: h\r\n\r\n", reject(400)},
		{catLineEnd, "bare CR inside field name", "9112 §2.2", getReq("/", "X\rA: b"), reject(400)},
		{catLineEnd, "bare CR inside field value", "9112 §2.2, 9110 §5.5", getReq("/", "X-A: a\rb"), reject(400)},
		{catLineEnd, "CR CR LF after field line", "9112 §2.2", "GET / HTTP/1.1\r\nHost: h\r\r\n\r\n", reject(400)},
		{catLineEnd, "bare CR as the empty line", "9112 §2.2", "GET / HTTP/1.1\r\nHost: h\r\n\r\r\n", reject(400)},
		{catLineEnd, "bare CR before request line", "9112 §2.2", "\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", reject(400)},
		{catLineEnd, "bare CR in CL body is data", "9112 §6.2", withCL("3", "a\rb"), ok(postSeen("a\rb"))},

		// Pipelining and Connection.
		{catPipeline, "two requests", "9112 §9.3.2", getReq("/1") + getReq("/2"), ok(see("GET", "/1", "/1", "", "h"), see("GET", "/2", "/2", "", "h"))},
		{catPipeline, "bodies between requests", "9112 §9.3.2, §6.3", withCL("2", "hi") + chunkedPost("1\r\nx\r\n0\r\n\r\n") + getReq("/3"), ok(postSeen("hi"), postSeen("x"), see("GET", "/3", "/3", "", "h"))},
		{catPipeline, "close on the first", "9112 §9.6 MUST NOT process further requests", getReq("/1", "Connection: close") + getReq("/2"), okClose(see("GET", "/1", "/1", "", "h"))},
		{catPipeline, "close on the second", "9112 §9.6", getReq("/1") + getReq("/2", "Connection: close") + getReq("/3"), okClose(see("GET", "/1", "/1", "", "h"), see("GET", "/2", "/2", "", "h"))},
		{catPipeline, "close after a body", "9112 §9.6", head("POST / HTTP/1.1", "Host: h", "Content-Length: 2", "Connection: close") + "hi" + getReq("/2"), okClose(postSeen("hi"))},
		{catPipeline, "close token case-insensitive", "9110 §7.6.1", getReq("/", "Connection: CLOSE") + getReq("/2"), okClose(getRoot())},
		{catPipeline, "close among other options", "9110 §7.6.1", getReq("/", "Connection: keep-alive, close") + getReq("/2"), okClose(getRoot())},
		{catPipeline, "close on a second Connection line", "9110 §7.6.1, §5.3", getReq("/", "Connection: keep-alive", "Connection: close") + getReq("/2"), okClose(getRoot())},
		{catPipeline, "not quite close", "9110 §7.6.1 options are whole tokens", getReq("/", "Connection: closed") + getReq("/2"), ok(getRoot(), see("GET", "/2", "/2", "", "h"))},
		{catPipeline, "HTTP/1.0 then more", "9112 §9.3 HTTP/1.0 closes by default", head("GET / HTTP/1.0") + getReq("/2"), okClose(see("GET", "/", "/", "", "").http10())},
		{catPipeline, "HTTP/1.0 keep-alive then more", "9112 Appendix C.2.2", head("GET / HTTP/1.0", "Connection: keep-alive") + getReq("/2"), ok(see("GET", "/", "/", "", "").http10(), see("GET", "/2", "/2", "", "h"))},
		{catPipeline, "HTTP/1.0 keep-alive and close", "9110 §7.6.1", head("GET / HTTP/1.0", "Connection: keep-alive, close") + getReq("/2"), okClose(see("GET", "/", "/", "", "").http10())},
		{catPipeline, "bad request after a good one", "9112 §9.3.2 (answered in order, then closed)", getReq("/1") + head("GET  / HTTP/1.1", "Host: h"), outcome{resps: []wantResp{{status: 200, seen: &seen{method: "GET", target: "/1", path: "/1", host: "h", proto: "HTTP/1.1"}}, {status: 400}}, close: true}},
		{catPipeline, "empty lines between requests", "9112 §2.2", getReq("/1") + "\r\n\r\n" + getReq("/2"), ok(see("GET", "/1", "/1", "", "h"), see("GET", "/2", "/2", "", "h"))},
		{catPipeline, "HEAD rejected: no body", "9112 §6.3 a HEAD response ends after its header section, an error too", head("HEAD / HTTP/1.1", "Host: h", "Bad Field: x"), rejectHead(400)},
		{catPipeline, "HEAD then GET", "9112 §6.3 a HEAD response has no content", head("HEAD / HTTP/1.1", "Host: h") + getReq("/2"), ok(see("HEAD", "/", "/", "", "h"), see("GET", "/2", "/2", "", "h"))},

		// Percent-encoding and non-ASCII in the target.
		{catTarget, "pct-encoded space kept encoded", "RFC 3986 §2.1 (decoding is the gateway's job)", getReq("/a%20b"), ok(see("GET", "/a%20b", "/a%20b", "", "h"))},
		{catTarget, "encoded slash kept", "RFC 3986 §2.2", getReq("/a%2Fb"), ok(see("GET", "/a%2Fb", "/a%2Fb", "", "h"))},
		{catTarget, "lowercase hex", "RFC 3986 §2.1", getReq("/caf%c3%a9"), ok(see("GET", "/caf%c3%a9", "/caf%c3%a9", "", "h"))},
		{catTarget, "encoded ? and # in path", "RFC 3986 §2.2", getReq("/a%3Fb%23c?x=%26"), ok(see("GET", "/a%3Fb%23c?x=%26", "/a%3Fb%23c", "x=%26", "h"))},
		{catTarget, "encoded NUL passed on", "RFC 3986 §2.1 (refusing %00 is the app's call)", getReq("/a%00b"), ok(see("GET", "/a%00b", "/a%00b", "", "h"))},
		{catTarget, "malformed pct-encoding passed on", "9112 §3.2 SHOULD 400; the edge passes it on as gunicorn and uWSGI do", getReq("/a%zz"), ok(see("GET", "/a%zz", "/a%zz", "", "h"))},
		{catTarget, "truncated pct-encoding passed on", "9112 §3.2 SHOULD 400; passed on as gunicorn does", getReq("/a%4"), ok(see("GET", "/a%4", "/a%4", "", "h"))},
		{catTarget, "sub-delims and : @", "RFC 3986 §3.3 pchar", getReq("/a;b=c,d!$&'()*+:@"), ok(see("GET", "/a;b=c,d!$&'()*+:@", "/a;b=c,d!$&'()*+:@", "", "h"))},
		{catTarget, "unencoded { | } in query passed on", "9112 §3.2 SHOULD 400; browsers send these unencoded, so the edge accepts them", getReq("/a?x={|}^"), ok(see("GET", "/a?x={|}^", "/a", "x={|}^", "h"))},
		{catTarget, "fragment dropped", "9112 §3.2 no fragment in a target; SHOULD 400, the edge drops it as most servers do", getReq("/a?q#frag"), ok(see("GET", "/a?q#frag", "/a", "q", "h"))},
		{catTarget, "raw UTF-8", "9112 §3.2, RFC 3986 §2 ASCII only; rejecting is safe", getReq("/caf\xc3\xa9"), reject(400)},
		{catTarget, "raw 0x80", "RFC 3986 §2", getReq("/a\x80"), reject(400)},
		{catTarget, "raw 0xFF", "RFC 3986 §2", getReq("/a\xff"), reject(400)},
		{catTarget, "raw NUL", "9112 §3.2", getReq("/a\x00b"), reject(400)},
		{catTarget, "raw SOH", "9112 §3.2", getReq("/a\x01b"), reject(400)},
		{catTarget, "raw HTAB", "9112 §3", getReq("/a\tb"), reject(400)},
		{catTarget, "raw DEL", "9112 §3.2", getReq("/a\x7fb"), reject(400)},
		{catTarget, "raw non-ASCII in query", "RFC 3986 §3.4", getReq("/a?q=\xe2\x82\xac"), reject(400)},
	}
}

// conformanceProbe follows every row on the wire: answered when the row
// leaves the connection usable, ignored when the row must close it.
const conformanceProbe = "GET /probe HTTP/1.1\r\nHost: probe\r\n\r\n"

// conformanceHandler answers every request with 200 and an X-Seen header
// recording what it saw, so the client can compare (headers, unlike a
// body, survive HEAD).
func conformanceHandler(w ResponseWriter, r *Request) {
	var body []byte
	if b, ok := r.Body.Bytes(); ok {
		body = b
	} else {
		body, _ = io.ReadAll(r.Body.Reader())
	}
	w.WriteHead(&ResponseHead{Code: 200, Status: "200 OK", Header: []HeaderField{
		{"X-Seen", encodeSeen(r, body)},
	}}, nil, true)
}

// encodeSeen writes the request as a list of Go-quoted ASCII strings:
// method, target, path, query, host, proto, body, then name and value of
// each header field.
func encodeSeen(r *Request, body []byte) string {
	parts := []string{r.Method, r.Target, r.Path, r.RawQuery, r.Host, r.Proto, string(body)}
	for _, f := range r.Header {
		parts = append(parts, f.Name, f.Value)
	}
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.QuoteToASCII(p))
	}
	return b.String()
}

// seenRecord is a decoded X-Seen header.
type seenRecord struct {
	method, target, path, query, host, proto, body string
	header                                         []HeaderField
}

func decodeSeen(s string) (seenRecord, error) {
	var parts []string
	for s != "" {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return seenRecord{}, fmt.Errorf("decoding X-Seen at %q: %w", s, err)
		}
		u, _ := strconv.Unquote(q)
		parts = append(parts, u)
		s = strings.TrimPrefix(s[len(q):], " ")
	}
	if len(parts) < 7 || len(parts)%2 != 1 {
		return seenRecord{}, fmt.Errorf("X-Seen has %d parts", len(parts))
	}
	rec := seenRecord{parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6], nil}
	for i := 7; i < len(parts); i += 2 {
		rec.header = append(rec.header, HeaderField{parts[i], parts[i+1]})
	}
	return rec, nil
}

// compare reports how rec differs from want, or "".
func (want *seen) compare(rec seenRecord) string {
	var diffs []string
	check := func(what, got, want string) {
		if got != want {
			diffs = append(diffs, fmt.Sprintf("%s %q, want %q", what, got, want))
		}
	}
	check("method", rec.method, want.method)
	check("target", rec.target, want.target)
	check("path", rec.path, want.path)
	check("query", rec.query, want.query)
	check("host", rec.host, want.host)
	check("proto", rec.proto, want.proto)
	check("body", rec.body, want.body)
	names := make([]string, 0, len(want.fields))
	for name := range want.fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		var got []string
		for _, f := range rec.header {
			if strings.EqualFold(f.Name, name) {
				got = append(got, f.Value)
			}
		}
		if !slices.Equal(got, want.fields[name]) {
			diffs = append(diffs, fmt.Sprintf("field %s %q, want %q", name, got, want.fields[name]))
		}
	}
	return strings.Join(diffs, "; ")
}

// startConformanceServer runs a Server with conformanceHandler on a
// loopback port and returns its address.
func startConformanceServer(t *testing.T) string {
	t.Helper()
	cfg := Config{
		LimitRequestBody:  1 << 20,
		ReadHeaderTimeout: 5 * time.Second,
		BodyReadTimeout:   5 * time.Second,
	}
	srv := NewServer(cfg, HandlerFunc(conformanceHandler), logging.New(io.Discard, logging.Error))
	ln, err := srv.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// splitting is one way of cutting a row's bytes into writes.
type splitting struct {
	name string
	cut  func(b []byte) [][]byte
}

func whole(b []byte) [][]byte { return [][]byte{b} }

func byteByByte(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

// randomSplit cuts b at up to 12 random places.
func randomSplit(rng *rand.Rand, b []byte) [][]byte {
	if len(b) < 2 {
		return [][]byte{b}
	}
	n := 1 + rng.Intn(min(len(b)-1, 12))
	cuts := make([]int, 0, n+2)
	cuts = append(cuts, 0, len(b))
	for range n {
		cuts = append(cuts, 1+rng.Intn(len(b)-1))
	}
	sort.Ints(cuts)
	cuts = slices.Compact(cuts)
	out := make([][]byte, 0, len(cuts)-1)
	for i := 1; i < len(cuts); i++ {
		out = append(out, b[cuts[i-1]:cuts[i]])
	}
	return out
}

// splitSeed returns TAIPAN_SPLIT_SEED, or a fresh seed.
func splitSeed(t *testing.T) int64 {
	if s := os.Getenv("TAIPAN_SPLIT_SEED"); s != "" {
		seed, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("TAIPAN_SPLIT_SEED: %v", err)
		}
		return seed
	}
	return time.Now().UnixNano()
}

// randomSplitsPerRow is how many random splittings each row gets.
const randomSplitsPerRow = 3

// conformanceTally counts a category's rows for the summary.
type conformanceTally struct {
	rows, rejectRows, acceptRows, rejectedOK, acceptedOK int
}

func TestConformance(t *testing.T) {
	addr := startConformanceServer(t)
	seed := splitSeed(t)
	t.Logf("random splits: seed %d (TAIPAN_SPLIT_SEED=%d repeats them)", seed, seed)

	corpus := conformanceCorpus()
	var mu sync.Mutex
	tallies := map[string]*conformanceTally{}
	var order []string
	names := map[string]bool{}
	for _, tc := range corpus {
		if names[tc.category+"/"+tc.name] {
			t.Fatalf("duplicate row %s/%s", tc.category, tc.name)
		}
		names[tc.category+"/"+tc.name] = true
		if tallies[tc.category] == nil {
			tallies[tc.category] = &conformanceTally{}
			order = append(order, tc.category)
		}
		tl := tallies[tc.category]
		tl.rows++
		if tc.want.rejects() {
			tl.rejectRows++
		} else {
			tl.acceptRows++
		}
	}

	t.Run("rows", func(t *testing.T) {
		for i, tc := range corpus {
			rng := rand.New(rand.NewSource(seed + int64(i)))
			t.Run(tc.category+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				stream := []byte(tc.raw + conformanceProbe)
				splits := []splitting{{"whole", whole}, {"byte-by-byte", byteByByte}}
				for k := range randomSplitsPerRow {
					parts := randomSplit(rng, stream)
					splits = append(splits, splitting{fmt.Sprintf("random-%d", k), func([]byte) [][]byte { return parts }})
				}
				passed := true
				for _, sp := range splits {
					parts := sp.cut(stream)
					if err := runConformanceRow(addr, tc, parts); err != nil {
						passed = false
						t.Errorf("%s [%s]\n  %s\n  request %q\n  split %d parts", tc.rfc, sp.name, err, tc.raw, len(parts))
					}
				}
				if passed {
					mu.Lock()
					if tc.want.rejects() {
						tallies[tc.category].rejectedOK++
					} else {
						tallies[tc.category].acceptedOK++
					}
					mu.Unlock()
				}
			})
		}
	})

	var total conformanceTally
	t.Logf("%-18s %5s %18s %18s", "category", "rows", "rejected-correctly", "accepted-correctly")
	for _, cat := range order {
		tl := tallies[cat]
		t.Logf("%-18s %5d %18s %18s", cat, tl.rows,
			fmt.Sprintf("%d/%d", tl.rejectedOK, tl.rejectRows), fmt.Sprintf("%d/%d", tl.acceptedOK, tl.acceptRows))
		total.rows += tl.rows
		total.rejectRows += tl.rejectRows
		total.acceptRows += tl.acceptRows
		total.rejectedOK += tl.rejectedOK
		total.acceptedOK += tl.acceptedOK
	}
	t.Logf("%-18s %5d %18s %18s", "total", total.rows,
		fmt.Sprintf("%d/%d", total.rejectedOK, total.rejectRows), fmt.Sprintf("%d/%d", total.acceptedOK, total.acceptRows))
	t.Logf("each row fed whole, byte by byte and in %d random splits", randomSplitsPerRow)
}

// runConformanceRow sends parts (the row followed by the probe) on a fresh
// connection and checks the responses against the row.
func runConformanceRow(addr string, tc conformanceCase, parts [][]byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	c.SetDeadline(time.Now().Add(10 * time.Second))

	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for _, p := range parts {
			if _, err := c.Write(p); err != nil {
				return // the server may close before reading everything
			}
		}
	}()
	defer func() {
		c.Close()
		<-wrote
	}()

	br := bufio.NewReader(c)
	read := func(method string) (*http.Response, error) {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, err
	}
	for i, w := range tc.want.resps {
		method := "GET"
		if w.head || w.seen != nil && w.seen.method == "HEAD" {
			method = "HEAD"
		}
		resp, err := read(method)
		if err != nil {
			return fmt.Errorf("response %d: %v", i+1, err)
		}
		if resp.StatusCode != w.status {
			return fmt.Errorf("response %d: status %d, want %d", i+1, resp.StatusCode, w.status)
		}
		if w.seen != nil {
			rec, err := decodeSeen(resp.Header.Get("X-Seen"))
			if err != nil {
				return fmt.Errorf("response %d: %v", i+1, err)
			}
			if d := w.seen.compare(rec); d != "" {
				return fmt.Errorf("response %d: handler saw: %s", i+1, d)
			}
		}
		last := i == len(tc.want.resps)-1
		if resp.Close && !(last && tc.want.close) {
			return fmt.Errorf("response %d: Connection: close, want the connection kept", i+1)
		}
		if last && tc.want.close && !resp.Close {
			return fmt.Errorf("response %d: no Connection: close, want the connection closed", i+1)
		}
	}
	if tc.want.close {
		if b, err := br.ReadByte(); err != io.EOF {
			return fmt.Errorf("after the last response: read %q, %v; want the connection closed", b, err)
		}
		return nil
	}
	resp, err := read("GET")
	if err != nil {
		return fmt.Errorf("probe: %v", err)
	}
	rec, err := decodeSeen(resp.Header.Get("X-Seen"))
	if err != nil || rec.path != "/probe" {
		return fmt.Errorf("probe: status %d, handler saw %+v (%v); want the probe served", resp.StatusCode, rec, err)
	}
	return nil
}
