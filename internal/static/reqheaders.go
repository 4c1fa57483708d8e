package static

import (
	"net/http"
	"strings"
	"time"

	"taipan/internal/edge"
)

// field is one request header as received: its first line's value and
// how many lines of it there were.
type field struct {
	name  string
	value string
	n     int
}

// requestFields are the request headers this package reads, found in one
// pass over the request's header lines (a browser sends a dozen or more;
// looking each one up would walk them all every time).
type requestFields struct {
	r *edge.Request // for joining a repeated list-valued header

	ifMatch, ifNoneMatch, ifModifiedSince, ifUnmodifiedSince field
	ifRange, rangeSpec, acceptEncoding                       field
}

// read collects the headers of r that this package reads. (A method
// filling the caller's value, so it stays on the stack.)
func (f *requestFields) read(r *edge.Request) {
	*f = requestFields{
		r:                 r,
		ifMatch:           field{name: "If-Match"},
		ifNoneMatch:       field{name: "If-None-Match"},
		ifModifiedSince:   field{name: "If-Modified-Since"},
		ifUnmodifiedSince: field{name: "If-Unmodified-Since"},
		ifRange:           field{name: "If-Range"},
		rangeSpec:         field{name: "Range"},
		acceptEncoding:    field{name: "Accept-Encoding"},
	}
	for i := range r.Header {
		h := &r.Header[i]
		var dst *field
		// The length picks the candidate, so most lines cost one compare.
		switch len(h.Name) {
		case len("Range"):
			dst = &f.rangeSpec
		case len("If-Match"): // and If-Range
			dst = &f.ifMatch
			if !strings.EqualFold(h.Name, dst.name) {
				dst = &f.ifRange
			}
		case len("If-None-Match"):
			dst = &f.ifNoneMatch
		case len("Accept-Encoding"):
			dst = &f.acceptEncoding
		case len("If-Modified-Since"):
			dst = &f.ifModifiedSince
		case len("If-Unmodified-Since"):
			dst = &f.ifUnmodifiedSince
		}
		if dst == nil || !strings.EqualFold(h.Name, dst.name) {
			continue
		}
		if dst.n == 0 {
			dst.value = h.Value
		}
		dst.n++
	}
}

// list returns a list-valued header (RFC 9110 5.3: its lines may be split
// or repeated) with its lines joined by commas, and whether it was sent.
func (f *requestFields) list(fd field) (string, bool) {
	if fd.n <= 1 {
		return fd.value, fd.n == 1
	}
	var sb strings.Builder
	for i := range f.r.Header {
		if h := &f.r.Header[i]; strings.EqualFold(h.Name, fd.name) {
			if sb.Len() > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(h.Value)
		}
	}
	return sb.String(), true
}

// single returns a header that may appear once, and false when it is
// absent or repeated (a repeated one is ignored, like an invalid one).
func (fd field) single() (string, bool) {
	return fd.value, fd.n == 1
}

// date returns an HTTP-date header's time, and false when it is absent,
// repeated or not a valid date: RFC 9110 13.1.3 and 13.1.4 say to ignore
// it then.
func (fd field) date() (time.Time, bool) {
	v, ok := fd.single()
	if !ok {
		return time.Time{}, false
	}
	t, err := http.ParseTime(strings.TrimSpace(v))
	return t, err == nil
}
