package static

import "path"

// Cache-Control values. A file whose name carries a hash of its content
// changes name when it changes, so it may be cached for good (a year is
// the customary "forever"; immutable spares browsers the revalidation on
// reload). Any other file may change under the same name, so caches must
// revalidate it each time (a cheap 304 thanks to the ETag): without a
// Cache-Control they would apply heuristic freshness (RFC 9111 4.2.2,
// typically a tenth of the file's age) and keep serving an old index.html
// for hours after a deploy.
const (
	cacheHashed   = "public, max-age=31536000, immutable"
	cacheUnhashed = "no-cache"
)

// cacheControl is the Cache-Control header for a file name.
func cacheControl(name string) string {
	if hashedName(path.Base(name)) {
		return cacheHashed
	}
	return cacheUnhashed
}

// hashedName reports whether a file name carries a content hash, as the
// names bundlers and asset pipelines produce do:
//
//	app.3f9a2c1e.js                 webpack, Parcel, Django's ManifestStaticFilesStorage
//	main-5d41402abc4b2a76.css       Next.js, Rails, Phoenix (after a dash)
//	index-BxH3k9Qz.js, main-5QXW2KQT.js   Vite/Rollup (base64url), esbuild (base32)
//
// The name is cut at every '.' and '-'. A hash segment is any piece except
// the first (the name proper) and the last (the extension) that is either
//
//   - hex: 8 to 64 characters of [0-9a-f], at least one digit and one
//     letter (so a date such as 20240115 is not a hash), or
//   - alphanumeric: 8 to 32 characters of [A-Za-z0-9], at least one digit
//     and one letter, and no run of 5 or more lowercase letters (so words
//     such as "Submit01" or "final2024" are not hashes).
//
// The rule leans towards "not hashed": calling a file that changes in place
// immutable would pin stale copies in browsers for a year, while missing a
// hash only costs a revalidation. Hashes containing '-' or '_' (base64url
// ones can) are therefore cut apart and mostly not recognised.
func hashedName(base string) bool {
	last := -1 // start of the extension: the last '.'
	for i := len(base) - 1; i > 0; i-- {
		if base[i] == '.' {
			last = i
			break
		}
	}
	if last < 0 {
		return false
	}
	start := -1 // start of the current segment, after a separator
	for i := 0; i <= last; i++ {
		if c := base[i]; c != '.' && c != '-' && i != last {
			continue
		}
		if start >= 0 && hashSegment(base[start:i]) {
			return true
		}
		start = i + 1
	}
	return false
}

// hashSegment reports whether s looks like a content hash (see hashedName).
func hashSegment(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	var digits, lower, upper, other, lowerRun, maxLowerRun int
	hexOnly := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			digits++
			lowerRun = 0
		case 'a' <= c && c <= 'z':
			lower++
			lowerRun++
			maxLowerRun = max(maxLowerRun, lowerRun)
			if c > 'f' {
				hexOnly = false
			}
		case 'A' <= c && c <= 'Z':
			upper++
			lowerRun = 0
			hexOnly = false
		default:
			other++
		}
	}
	if other > 0 || digits == 0 || lower+upper == 0 {
		return false
	}
	if hexOnly {
		return true
	}
	return len(s) <= 32 && maxLowerRun < 5
}
