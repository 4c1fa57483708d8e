package static

import (
	"math"
	"strconv"
	"strings"
)

// byteRange is the part of a file a 206 response carries.
type byteRange struct {
	start, length int64
}

// contentRange is the Content-Range value for r within a file of size bytes.
func (r byteRange) contentRange(size int64) string {
	b := make([]byte, 0, 64)
	b = append(b, "bytes "...)
	b = strconv.AppendInt(b, r.start, 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, r.start+r.length-1, 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, size, 10)
	return string(b)
}

// rangeOutcome is what a Range header asks of the response.
type rangeOutcome int

const (
	// rangeWhole: send the whole file with 200. The header is absent,
	// unparsable, in another unit, or lists several ranges: RFC 9110 14.2
	// lets a server ignore Range, and a multipart/byteranges answer is not
	// worth its cost for the rare clients that ask for one.
	rangeWhole rangeOutcome = iota
	// rangePartial: send the one range with 206.
	rangePartial
	// rangeUnsatisfiable: no range overlaps the file; 416.
	rangeUnsatisfiable
)

// parseRange reads a Range header value (RFC 9110 14.1.2) for a file of
// size bytes (size > 0). Of the forms "bytes=0-99", "bytes=100-" and
// "bytes=-500", a last position past the end is cut to the end, a suffix
// longer than the file means the whole file, and a first position at or
// past the end is unsatisfiable.
func parseRange(v string, size int64) (byteRange, rangeOutcome) {
	unit, set, ok := strings.Cut(v, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return byteRange{}, rangeWhole
	}
	var first byteRange
	specs, satisfiable := 0, 0
	for spec := range strings.SplitSeq(set, ",") {
		spec = strings.Trim(spec, " \t")
		if spec == "" {
			continue // an empty list element (RFC 9110 5.6.1)
		}
		specs++
		from, to, ok := strings.Cut(spec, "-")
		if !ok {
			return byteRange{}, rangeWhole
		}
		var r byteRange
		if from == "" {
			// suffix-range: the last n bytes.
			n, ok := parseDigits(to)
			if !ok {
				return byteRange{}, rangeWhole
			}
			if n == 0 {
				continue
			}
			n = min(n, size)
			r = byteRange{start: size - n, length: n}
		} else {
			start, ok := parseDigits(from)
			if !ok {
				return byteRange{}, rangeWhole
			}
			end := int64(math.MaxInt64)
			if to != "" {
				if end, ok = parseDigits(to); !ok || end < start {
					return byteRange{}, rangeWhole
				}
			}
			if start >= size {
				continue
			}
			end = min(end, size-1)
			r = byteRange{start: start, length: end - start + 1}
		}
		if satisfiable == 0 {
			first = r
		}
		satisfiable++
	}
	switch {
	case specs == 0:
		return byteRange{}, rangeWhole
	case satisfiable == 0:
		return byteRange{}, rangeUnsatisfiable
	case specs > 1:
		return byteRange{}, rangeWhole
	}
	return first, rangePartial
}

// parseDigits parses a non-empty string of ASCII digits; values too large
// for an int64 saturate, which for file offsets means "past the end".
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (math.MaxInt64-9)/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
