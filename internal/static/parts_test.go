package static

import (
	"testing"
)

// These test each layer on its own: the end-to-end tests in static_test.go
// cannot tell which of the path checks or os.Root stopped a traversal.

func TestDecodePath(t *testing.T) {
	for _, tc := range []struct {
		raw, want string
		status    int // 0: accepted
	}{
		{"/assets/app.js", "/assets/app.js", 0},
		{"/assets/%61pp.js", "/assets/app.js", 0},
		{"/assets/%2e%2e/x", "/assets/../x", 0}, // splitName refuses it
		{"/assets/%C3%BC", "/assets/\u00fc", 0},
		{"/a%20b%25c", "/a b%c", 0},
		{"/assets/..%2fx", "", 404},
		{"/assets/..%2Fx", "", 404},
		{"/assets/a\\b", "", 404},
		{"/assets/a%5cb", "", 404},
		{"/assets/a%00b", "", 400},
		{"/assets/a\x00b", "", 400},
		{"/assets/%zz", "", 400},
		{"/assets/%2", "", 400},
		{"/assets/%", "", 400},
	} {
		got, err := decodePath(tc.raw)
		switch {
		case tc.status == 0 && (err != nil || got != tc.want):
			t.Errorf("decodePath(%q) = %q, %v; want %q", tc.raw, got, err, tc.want)
		case tc.status != 0 && (err == nil || err.(*rejection).status != tc.status):
			t.Errorf("decodePath(%q) = %q, %v; want a %d rejection", tc.raw, got, err, tc.status)
		}
	}
}

func TestSplitName(t *testing.T) {
	for _, tc := range []struct {
		rel, name string
		slash, ok bool
	}{
		{"", ".", false, true},
		{"/", ".", true, true},
		{"/a.js", "a.js", false, true},
		{"/d/", "d", true, true},
		{"/d//e///f.js", "d/e/f.js", false, true},
		{"//", ".", true, true},
		{"/.well-known/x", ".well-known/x", false, true},
		{"/..", "", false, false},
		{"/a/../b", "", false, false},
		{"/./a", "", false, false},
		{"/a/.", "", false, false},
		{"/.env", "", false, false},
		{"/.git/config", "", false, false},
		{"/a/.htpasswd", "", false, false},
		{"/...", "", false, false},
		{"/a..b/c", "a..b/c", false, true}, // dots inside a name are fine
	} {
		name, slash, err := splitName(tc.rel)
		if (err == nil) != tc.ok || name != tc.name || slash != tc.slash {
			t.Errorf("splitName(%q) = %q, %v, %v; want %q, %v, ok=%v", tc.rel, name, slash, err, tc.name, tc.slash, tc.ok)
		}
	}
}

func TestHashedName(t *testing.T) {
	for name, want := range map[string]bool{
		"app.3f9a2c1e.js":           true, // webpack/Parcel, hex 8
		"main-5d41402abc4b2a76.css": true, // Next.js, hex 16
		"app.3f9a2c1e1234.css":      true, // Django, hex 12
		"application-0d4f1b1c94e7a4d8f1e0a0e4ad1d4bd4e1e5b0f4d6c8c0e7d5b9a1a7c3f2e1d0.js": true, // Rails, hex 64
		"index-BxH3k9Qz.js":   true, // Vite, base64url
		"main-5QXW2KQT.js":    true, // esbuild, base32
		"app.3f9a2c1e.js.map": true, // source map of a hashed file
		"chunk.abcdef12.js":   true, // hex with a long letter run
		"app.js":              false,
		"jquery-3.6.0.min.js": false,
		"polyfills.js":        false,
		"vendor.bundle.js":    false,
		"report-20240115.pdf": false, // a date: digits only
		"deadbeef.js":         false, // the name itself, not a segment
		"3f9a2c1e.js":         false,
		"icon-Settings.svg":   false, // a word: no digit
		"button-Submit01.png": false, // a word with digits: 5 lowercase in a row
		"final2024-v2.pdf":    false,
		"app.3f9a2c1.js":      false, // 7 chars
		"index-DiwrgTda.js":   false, // base64url without a digit: missed, safely
		"app.3f9a2c1e":        false, // the hash is the extension
		"a.b_c3f9a2c1e.js":    false, // underscore
		"noext":               false,
		"app.3f9a2c1e3f9a2c1e3f9a2c1e3f9a2c1e.js":                                      true,  // hex 32
		"app.3f9a2c1e3f9a2c1e3f9a2c1e3f9a2c1e3f9a2c1e.js":                              true,  // hex 40
		"app.3F9A2C1E3F9A2C1E3F9A2C1E3F9A2C1E.js":                                      true,  // upper hex, 32
		"app.3F9A2C1E3F9A2C1E3F9A2C1E3F9A2C1E3F9A2C1E.js":                              false, // upper, 40 > 32
		"app.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0.js":     false, // hex 65
		"main-5d41402abc4b2a76-extra.css":                                              true,
		"very-long-descriptive-name-without-any-digits-at-all-whatsoever.component.js": false,
	} {
		if got := hashedName(name); got != want {
			t.Errorf("hashedName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestParseRange(t *testing.T) {
	const size = 1000
	for _, tc := range []struct {
		v       string
		outcome rangeOutcome
		start   int64
		length  int64
	}{
		{"bytes=0-99", rangePartial, 0, 100},
		{"bytes=100-", rangePartial, 100, 900},
		{"bytes=-500", rangePartial, 500, 500},
		{"bytes=-5000", rangePartial, 0, 1000},
		{"bytes=999-", rangePartial, 999, 1},
		{"bytes=990-99999999999999999999999", rangePartial, 990, 10},
		{"bytes=1000-", rangeUnsatisfiable, 0, 0},
		{"bytes=99999999999999999999999-", rangeUnsatisfiable, 0, 0},
		{"bytes=-0", rangeUnsatisfiable, 0, 0},
		{"bytes=0-1,3-4", rangeWhole, 0, 0},
		{"bytes=5000-,6000-", rangeUnsatisfiable, 0, 0},
		{"bytes=", rangeWhole, 0, 0},
		{"bytes=,", rangeWhole, 0, 0},
		{"bytes=5-4", rangeWhole, 0, 0},
		{"bytes=+1-2", rangeWhole, 0, 0},
		{"bytes=1", rangeWhole, 0, 0},
		{"bytes=--1", rangeWhole, 0, 0},
		{"bytes=0x10-", rangeWhole, 0, 0},
		{"pages=1-2", rangeWhole, 0, 0},
	} {
		r, outcome := parseRange(tc.v, size)
		if outcome != tc.outcome || outcome == rangePartial && (r.start != tc.start || r.length != tc.length) {
			t.Errorf("parseRange(%q) = %+v, %v; want %d+%d, %v", tc.v, r, outcome, tc.start, tc.length, tc.outcome)
		}
	}
}

func TestAcceptedCodings(t *testing.T) {
	for _, tc := range []struct {
		ae    string
		order []string // accepted codings, best first
	}{
		{"", nil},
		{"gzip, deflate, br", []string{"br", "gzip"}},
		{"gzip;q=1.0, br;q=0.8", []string{"gzip", "br"}},
		{"br;q=0", nil},
		{"br;q=0.000, gzip;q=0.001", []string{"gzip"}},
		{"*", []string{"br", "gzip"}},
		{"*;q=0.5, gzip", []string{"gzip", "br"}},
		{"*;q=0, gzip", []string{"gzip"}},
		{"x-gzip", []string{"gzip"}},
		{"BR ; Q=0.3", []string{"br"}},
		{"identity, deflate", nil},
	} {
		order, n := preference(acceptedCodings(tc.ae))
		var got []string
		for _, i := range order[:n] {
			got = append(got, codings[i].token)
		}
		if len(got) != len(tc.order) {
			t.Errorf("Accept-Encoding %q: %v, want %v", tc.ae, got, tc.order)
			continue
		}
		for i := range got {
			if got[i] != tc.order[i] {
				t.Errorf("Accept-Encoding %q: %v, want %v", tc.ae, got, tc.order)
				break
			}
		}
	}
}

func TestETagListMatch(t *testing.T) {
	const tag = `"abc-12"`
	for _, tc := range []struct {
		list         string
		weak, strong bool
	}{
		{`"abc-12"`, true, true},
		{`W/"abc-12"`, true, false},
		{`"x", "abc-12"`, true, true},
		{`"x",W/"abc-12"`, true, false},
		{`*`, true, true},
		{` * `, true, true},
		{`"abc-1"`, false, false},
		{`abc-12`, false, false},
		{`"abc-12`, false, false},
		{`"a,b", "abc-12"`, true, true}, // a comma inside a tag
		{`garbage, "abc-12"`, false, false},
		{``, false, false},
	} {
		if got := etagListMatch(tc.list, tag, true); got != tc.weak {
			t.Errorf("weak match %q: %v", tc.list, got)
		}
		if got := etagListMatch(tc.list, tag, false); got != tc.strong {
			t.Errorf("strong match %q: %v", tc.list, got)
		}
	}
}
