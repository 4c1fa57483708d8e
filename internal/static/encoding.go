package static

import (
	"strings"
)

// coding is a content coding a file may exist in, precompressed, beside
// the file itself (app.js.br, app.js.gz).
type coding struct {
	token  string // the Content-Encoding value
	suffix string // appended to the file name
	tag    string // appended to the ETag, so every encoding has its own
}

// codings in order of preference between equal q-values: brotli is smaller.
var codings = [...]coding{
	{token: "br", suffix: ".br", tag: "br"},
	{token: "gzip", suffix: ".gz", tag: "gz"},
}

// hasCodingSuffix reports whether name is itself a precompressed file
// (served as such when asked for by that name), which has no siblings.
func hasCodingSuffix(name string) bool {
	for _, c := range codings {
		if strings.HasSuffix(name, c.suffix) {
			return true
		}
	}
	return false
}

// acceptedCodings returns, for each of codings, the q-value the client's
// Accept-Encoding (all its lines, joined) gives it: 0 means not acceptable.
// Per RFC 9110 12.5.3 a coding is acceptable when listed with a non-zero q
// or, when not listed, if "*" is (with a non-zero q); x-gzip is gzip. An
// absent Accept-Encoding accepts any coding in theory, but in practice
// means a client that cannot decode anything: it gets the file as is.
func acceptedCodings(ae string) [len(codings)]float64 {
	var q [len(codings)]float64
	var listed [len(codings)]bool
	star, hasStar := 0.0, false
	for elem := range strings.SplitSeq(ae, ",") {
		name, params, _ := strings.Cut(elem, ";")
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		qv := qValue(params)
		if name == "*" {
			star, hasStar = qv, true
			continue
		}
		if strings.EqualFold(name, "x-gzip") {
			name = "gzip"
		}
		for i, c := range codings {
			if strings.EqualFold(name, c.token) {
				q[i], listed[i] = qv, true
			}
		}
	}
	for i := range q {
		if !listed[i] && hasStar {
			q[i] = star
		}
	}
	return q
}

// qValue returns the weight among the parameters of an Accept-Encoding
// element (";q=0.5"), or 1 when it has none.
func qValue(params string) float64 {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		return parseQ(strings.TrimSpace(v))
	}
	return 1
}

// parseQ reads a qvalue (RFC 9110 12.4.2: "1", "0", "0.5", "0.001").
// Leniently: any value starting with '0' is read as a fraction, so "0",
// "0.0" and "0.0000" all mean "not acceptable"; anything else (a 1, or a
// malformed weight) counts as 1.
func parseQ(v string) float64 {
	if v == "" || v[0] != '0' {
		return 1
	}
	q, scale := 0.0, 0.1
	if len(v) > 1 && v[1] == '.' {
		for _, c := range v[2:] {
			if c < '0' || c > '9' {
				break
			}
			q += float64(c-'0') * scale
			scale /= 10
		}
	}
	return q
}

// preference returns the indexes of codings the client accepts, the
// highest q first (ties in the order of codings), and how many there are.
func preference(q [len(codings)]float64) ([len(codings)]int, int) {
	var order [len(codings)]int
	n := 0
	for i := range codings {
		if q[i] <= 0 {
			continue
		}
		j := n
		for j > 0 && q[order[j-1]] < q[i] {
			order[j] = order[j-1]
			j--
		}
		order[j] = i
		n++
	}
	return order, n
}
