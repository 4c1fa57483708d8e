package edge

import (
	"errors"
	"fmt"
	"strings"
)

// The errors a ResponseWriter returns when it is used against the rules.
var (
	ErrHeadWritten  = errors.New("WriteHead called twice")
	ErrNoHead       = errors.New("body written before WriteHead")
	ErrResponseDone = errors.New("response used after the Handler returned")
	ErrBodyTooLong  = errors.New("response body longer than its Content-Length")
)

// Progress is what a ResponseWriter has sent of its response, with the
// rules every writer applies whatever carries the bytes (HTTP/1.1 here, the
// uwsgi and FastCGI protocols in cgivars): one head; no body before it,
// after the Handler returned, or for a response that has none (HEAD, 1xx,
// 204, 304); and no body byte past the Content-Length the head declared.
type Progress struct {
	HeadSent bool
	Done     bool  // the Handler returned
	NoBody   bool  // HEAD, 1xx, 204 or 304: no body bytes go out
	Aborted  bool  // the body must not be ended as if it were complete
	Code     int   // status code sent, 0 before the head
	Length   int64 // Content-Length sent, or -1
	Written  int64 // body bytes sent
	Cut      bool  // body bytes past Length were dropped
	Err      error // first write error: the peer is gone
}

// NewProgress returns the Progress of a response not yet started.
func NewProgress() Progress { return Progress{Length: -1} }

// StartHead records that the head of a code response to a method request
// goes out, or returns why it may not. It reports whether code allows a
// body at all (a HEAD response still declares the GET's length).
func (p *Progress) StartHead(code int, method string) (bodyAllowed bool, err error) {
	if p.Done {
		return false, ErrResponseDone
	}
	if p.HeadSent {
		return false, ErrHeadWritten
	}
	p.HeadSent = true
	p.Code = code
	bodyAllowed = allowsBody(code)
	p.NoBody = method == "HEAD" || !bodyAllowed
	return bodyAllowed, nil
}

// allowsBody reports whether a response with status code may have a body.
func allowsBody(code int) bool { return code >= 200 && code != 204 && code != 304 }

// DeclareLength takes the value of a Content-Length header in the head
// being started and reports whether the header goes out. It does not for a
// status without a body, nor after a length is already declared (the first
// counts), nor when the value is not 1*DIGIT; invalid reports that case,
// for the caller to log.
func (p *Progress) DeclareLength(value string) (keep, invalid bool) {
	if !allowsBody(p.Code) || p.Length >= 0 {
		return false, false
	}
	n, herr := parseDecimal(strings.Trim(value, " \t"))
	if herr != nil {
		return false, true
	}
	p.Length = n
	return true, false
}

// CheckBody returns the error a body write gets now, or nil.
func (p *Progress) CheckBody() error {
	switch {
	case p.Done:
		return ErrResponseDone
	case !p.HeadSent:
		return ErrNoHead
	}
	return p.Err
}

// Allow returns how many of n body bytes may go out: all of them, or those
// that fit in the declared Content-Length, with over reporting the cut.
func (p *Progress) Allow(n int64) (allowed int64, over bool) {
	if p.Length >= 0 {
		if rem := p.Length - p.Written; n > rem {
			p.Cut = true
			return rem, true
		}
	}
	return n, false
}

// Short reports a body that ended before the length its head declared.
func (p *Progress) Short() bool { return !p.NoBody && p.Length >= 0 && p.Written < p.Length }

// Mismatch says, for the log, how a finished response's body disagreed
// with its Content-Length, or returns "" when it did not (or the peer went
// away first). Every writer logs it: the client sees only a cut body or a
// connection or stream that ends early, not why.
func (p *Progress) Mismatch() string {
	switch {
	case p.Err != nil:
		return ""
	case p.Cut:
		return fmt.Sprintf("the body was longer than its Content-Length (%d bytes); it was cut there", p.Length)
	case p.Short():
		return fmt.Sprintf("the response ended after %d of the %d bytes its Content-Length announced", p.Written, p.Length)
	}
	return ""
}
