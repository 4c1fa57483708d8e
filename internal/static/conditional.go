package static

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// validators are what conditional requests compare against: the selected
// representation's entity tag and modification time.
type validators struct {
	etag    string    // strong, quoted
	modTime time.Time // whole seconds, as sent in Last-Modified
}

// makeETag builds a strong entity tag from a file's modification time (to
// the nanosecond, which most file systems keep) and size, as nginx does
// (it uses seconds), plus the content coding for a precompressed variant,
// so the br, gzip and identity forms of one file never share a tag.
// Content is not hashed: that would mean reading every file. A file
// rewritten with the same size within the same mtime tick, or builds that
// pin every mtime (SOURCE_DATE_EPOCH) and keep a changed file's size, would
// keep their tag; both are rare enough to accept, as nginx and Go's
// http.FileServer do.
func makeETag(modTime time.Time, size int64, tag string) string {
	b := make([]byte, 0, 48)
	b = append(b, '"')
	b = strconv.AppendInt(b, modTime.UnixNano(), 16)
	b = append(b, '-')
	b = strconv.AppendInt(b, size, 16)
	if tag != "" {
		b = append(b, '-')
		b = append(b, tag...)
	}
	b = append(b, '"')
	return string(b)
}

// precondition is the outcome of evaluating a request's preconditions.
type precondition int

const (
	proceed      precondition = iota // answer normally
	notModified                      // 304
	failedPrecon                     // 412
)

// evalPreconditions applies RFC 9110 13.2.2 steps 1 to 4 for a GET or HEAD
// of a representation that exists: If-Match, else If-Unmodified-Since (412
// when false); then If-None-Match, else If-Modified-Since (304 when false).
// If-Range is step 5, for the range handling.
func evalPreconditions(f *requestFields, v validators) precondition {
	if im, ok := f.list(f.ifMatch); ok {
		if !etagListMatch(im, v.etag, false) {
			return failedPrecon
		}
	} else if t, ok := f.ifUnmodifiedSince.date(); ok {
		if v.modTime.After(t) {
			return failedPrecon
		}
	}
	if inm, ok := f.list(f.ifNoneMatch); ok {
		if etagListMatch(inm, v.etag, true) {
			return notModified
		}
	} else if t, ok := f.ifModifiedSince.date(); ok {
		if !v.modTime.After(t) {
			return notModified
		}
	}
	return proceed
}

// ifRangeHolds reports whether a Range header may be honoured given the
// request's If-Range (RFC 9110 13.1.5): true without one; with an entity
// tag, only when it is strong and equal to ours; with a date, only when it
// equals our Last-Modified exactly. Otherwise the client's partial copy is
// stale, and it gets the whole representation.
func ifRangeHolds(f *requestFields, v validators) bool {
	if f.ifRange.n == 0 {
		return true
	}
	val, ok := f.ifRange.single()
	if !ok {
		return false
	}
	val = strings.TrimSpace(val)
	if strings.HasPrefix(val, `"`) || strings.HasPrefix(val, "W/") {
		tag, rest, ok := scanETag(val)
		return ok && rest == "" && strongMatch(tag, v.etag)
	}
	t, err := http.ParseTime(val)
	return err == nil && t.Equal(v.modTime)
}

// etagListMatch reports whether the If-Match or If-None-Match value list
// ("*" or comma-separated entity tags) matches etag, comparing weakly
// (If-None-Match) or strongly (If-Match). A malformed list matches only as
// far as it could be read.
func etagListMatch(list, etag string, weak bool) bool {
	list = strings.TrimSpace(list)
	if list == "*" {
		return true // the representation exists
	}
	for {
		list = strings.TrimLeft(list, " \t,")
		if list == "" {
			return false
		}
		tag, rest, ok := scanETag(list)
		if !ok {
			return false
		}
		if weak && weakMatch(tag, etag) || !weak && strongMatch(tag, etag) {
			return true
		}
		list = rest
	}
}

// scanETag reads one entity-tag (RFC 9110 8.8.3: an optional W/ and a
// quoted string of etagc characters) from the start of s and returns it
// and the rest of s.
func scanETag(s string) (tag, rest string, ok bool) {
	start := 0
	if strings.HasPrefix(s, "W/") {
		start = 2
	}
	if len(s) < start+2 || s[start] != '"' {
		return "", "", false
	}
	for i := start + 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[:i+1], s[i+1:], true
		case c == 0x21 || 0x23 <= c && c <= 0x7e || c >= 0x80:
		default:
			return "", "", false
		}
	}
	return "", "", false
}

// strongMatch is RFC 9110's strong comparison: both tags strong and equal.
func strongMatch(a, b string) bool {
	return a == b && !strings.HasPrefix(a, "W/")
}

// weakMatch is RFC 9110's weak comparison: equal once any W/ is dropped.
func weakMatch(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}
