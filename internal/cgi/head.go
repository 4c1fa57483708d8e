package cgi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"taipan/internal/httpsyntax"
	"time"

	"taipan/internal/edge"
)

// Limits and timings of reading a script's output.
const (
	// maxHeadSize bounds the header block a script may write; a longer one
	// is answered with 502.
	maxHeadSize = 64 << 10
	// smallBody is the most body gather collects to send a response whole.
	smallBody = 64 << 10
	// coalesceWait is how long gather waits for a script to finish after
	// its header block before the response starts streaming instead.
	coalesceWait = 50 * time.Millisecond
	// readChunk is the size of the reads a streamed response is relayed in.
	readChunk = 32 << 10
)

var (
	errNoOutput     = errors.New("the script wrote nothing")
	errShortHead    = errors.New("output ended inside the header block (no empty line after the headers)")
	errHeadTooLarge = fmt.Errorf("header block longer than %d bytes", maxHeadSize)
)

// readHead reads from r until the empty line that ends a CGI header block
// (lines may end in LF or CRLF). It returns the block, without the empty
// line, and the bytes of the body read along with it.
func readHead(r io.Reader) (block, body []byte, err error) {
	buf := make([]byte, 0, 4<<10)
	scanned := 0 // start of the first line not yet known to be complete
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf)) // double
		}
		n, rerr := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		for {
			i := bytes.IndexByte(buf[scanned:], '\n')
			if i < 0 {
				break
			}
			line := buf[scanned : scanned+i]
			if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
				if scanned > maxHeadSize {
					return nil, nil, errHeadTooLarge
				}
				return buf[:scanned], buf[scanned+i+1:], nil
			}
			scanned += i + 1
		}
		if len(buf) >= maxHeadSize {
			return nil, nil, errHeadTooLarge
		}
		switch {
		case rerr == io.EOF && len(buf) == 0:
			return nil, nil, errNoOutput
		case rerr == io.EOF:
			return nil, nil, errShortHead
		case rerr != nil:
			return nil, nil, rerr
		}
	}
}

// parseHead turns a CGI header block (RFC 3875 section 6) into the head of
// the HTTP response:
//   - Status: "404 Not Found" or "404" sets the status (200 and up); it
//     is not passed on.
//   - Location: makes a redirect, 302 unless Status says otherwise. A local
//     redirect (a path, RFC 3875 section 6.2.2) is answered the same way,
//     for the client to follow, rather than served internally.
//   - Content-Type: required, except in a redirect and for 204 and 304.
//   - Other fields pass through. Names must be tokens and values free of
//     control characters; folded lines are refused.
//
// Status, Location and Content-Type may each appear once.
func parseHead(block []byte) (*edge.ResponseHead, error) {
	head := &edge.ResponseHead{}
	var hasStatus, hasLocation, hasType bool
	for _, raw := range bytes.SplitAfter(block, []byte("\n")) {
		if len(raw) == 0 {
			continue // after the final line break
		}
		line := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
		if line[0] == ' ' || line[0] == '\t' {
			return nil, fmt.Errorf("folded header line %s", quote(line))
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !httpsyntax.IsToken(name) {
			return nil, fmt.Errorf("malformed header line %s", quote(line))
		}
		value = strings.Trim(value, " \t")
		if !httpsyntax.ValidFieldValue(value) {
			return nil, fmt.Errorf("control character in header %s: %s", name, quote(value))
		}
		switch {
		case strings.EqualFold(name, "Status"):
			if hasStatus {
				return nil, errors.New("header Status given twice")
			}
			hasStatus = true
			code, status, err := parseStatus(value)
			if err != nil {
				return nil, err
			}
			head.Code, head.Status = code, status
			continue // the status line carries it
		case strings.EqualFold(name, "Location"):
			if hasLocation {
				return nil, errors.New("header Location given twice")
			}
			if value == "" {
				return nil, errors.New("empty Location header")
			}
			hasLocation = true
		case strings.EqualFold(name, "Content-Type"):
			if hasType {
				return nil, errors.New("header Content-Type given twice")
			}
			hasType = true
		}
		head.Header = append(head.Header, edge.HeaderField{Name: name, Value: value})
	}
	if !hasStatus {
		head.Code, head.Status = http.StatusOK, "200 OK"
		if hasLocation {
			head.Code, head.Status = http.StatusFound, "302 Found"
		}
	}
	if !hasType && !hasLocation && head.Code != http.StatusNoContent && head.Code != http.StatusNotModified {
		return nil, errors.New("no Content-Type header (a document response needs one, RFC 3875 section 6.3.1)")
	}
	return head, nil
}

// parseStatus reads a Status header value: three digits, then optionally a
// space and a reason phrase. Without a phrase the standard one is used.
func parseStatus(v string) (int, string, error) {
	digits, reason, _ := strings.Cut(v, " ")
	code, err := strconv.Atoi(digits)
	if err != nil || len(digits) != 3 || digits[0] == '+' || digits[0] == '-' {
		return 0, "", fmt.Errorf("malformed Status %s", quote(v))
	}
	if code < 200 {
		return 0, "", fmt.Errorf("status %d is not a final response", code)
	}
	reason = strings.TrimLeft(reason, " ")
	if reason == "" {
		reason = http.StatusText(code) // may be "": "599 " is still a valid status line
	}
	return code, digits + " " + reason, nil
}

// gather reads the output that follows the header block into body for up
// to coalesceWait and smallBody bytes. It reports whether the output ended
// (EOF) within those bounds, so that the response can be sent whole.
func gather(f *os.File, body []byte) ([]byte, bool, error) {
	if f.SetReadDeadline(time.Now().Add(coalesceWait)) != nil {
		return body, false, nil // not pollable: just stream
	}
	defer f.SetReadDeadline(time.Time{})
	if cap(body) < smallBody {
		body = append(make([]byte, 0, smallBody), body...)
	}
	for len(body) < smallBody {
		n, err := f.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		switch {
		case err == io.EOF:
			return body, true, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			return body, false, nil
		case err != nil:
			return body, false, err
		}
	}
	return body, false, nil
}

// quote quotes s for a log line, cut short when long.
func quote(s string) string {
	if len(s) > 80 {
		return strconv.Quote(s[:80]) + "..."
	}
	return strconv.Quote(s)
}
