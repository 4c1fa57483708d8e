package static

import (
	"strings"
)

// rejection says why a request path cannot name a file, and the status
// that tells the client so: 400 for a path that is malformed, 404 for one
// that is well formed but can never name a file we serve (so it reveals
// nothing about what exists).
type rejection struct {
	status int
	reason string
}

func (e *rejection) Error() string { return e.reason }

var (
	errBadEscape     = &rejection{400, "malformed percent-encoding"}
	errNUL           = &rejection{400, "NUL byte in path"}
	errEncodedSlash  = &rejection{404, "encoded slash (%2F) in path"}
	errBackslash     = &rejection{404, "backslash in path"}
	errDotSegment    = &rejection{404, "dot segment in path"}
	errDotfile       = &rejection{404, "dotfile in path"}
	errOutsideMounts = &rejection{404, "path outside every mount"}
)

// wellKnown is the one dot-directory that is served: RFC 8615's
// /.well-known/, which ACME challenges, security.txt and the like live in.
const wellKnown = ".well-known"

// decodePath percent-decodes a request path as sent. It refuses, rather
// than decodes, what could change how the path splits into names: an
// encoded slash (a file name cannot contain '/', and decoding it would let
// "..%2f" slip past anything that looked at the raw path) and backslashes,
// encoded or not (a separator on Windows, and in browsers' URL parsing). NUL
// cannot be part of a file name either and is a classic truncation trick.
// Dot segments are not handled here but by splitName, after decoding, so
// "%2e%2e" is caught like "..".
func decodePath(raw string) (string, error) {
	if strings.IndexByte(raw, '%') < 0 {
		// Nothing to decode: the common case allocates nothing.
		if strings.IndexByte(raw, '\\') >= 0 {
			return "", errBackslash
		}
		if strings.IndexByte(raw, 0) >= 0 {
			return "", errNUL
		}
		return raw, nil
	}
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' {
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return "", errBadEscape
			}
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
			if c == '/' {
				return "", errEncodedSlash
			}
		}
		switch c {
		case 0:
			return "", errNUL
		case '\\':
			return "", errBackslash
		}
		b = append(b, c)
	}
	return string(b), nil
}

// splitName turns rel, the decoded path below a mount ("" or "/..."), into
// a name relative to the mount's directory ("." for the directory itself)
// and whether rel ended in a slash (a request for a directory's index).
// Empty segments are skipped, as nginx's merge_slashes does. Any segment
// starting with a dot is refused: "." and ".." (no way up, and no aliases
// of one file under many URLs), and dotfiles (.env, .git/, .htpasswd),
// which are deployment leftovers, not content; .well-known alone is let
// through.
func splitName(rel string) (name string, slash bool, err error) {
	for seg := range strings.SplitSeq(rel, "/") {
		if seg == "" || seg[0] != '.' || seg == wellKnown {
			continue
		}
		if seg == "." || seg == ".." {
			return "", false, errDotSegment
		}
		return "", false, errDotfile
	}
	slash = strings.HasSuffix(rel, "/")
	name = strings.Trim(rel, "/")
	switch {
	case name == "":
		return ".", slash, nil
	case !strings.Contains(name, "//"):
		return name, slash, nil // the common case: a substring of rel
	}
	var sb strings.Builder
	for seg := range strings.SplitSeq(name, "/") {
		if seg != "" {
			if sb.Len() > 0 {
				sb.WriteByte('/')
			}
			sb.WriteString(seg)
		}
	}
	return sb.String(), slash, nil
}

// underPrefix reports whether the decoded path p is prefix or lies below
// it, by whole segments: "/assets" and "/assets/x" are under "/assets",
// "/assetsx" is not. The prefix "" (a mount at "/") holds every path.
func underPrefix(p, prefix string) bool {
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || p[len(prefix)] == '/'
}

// rawUnderPrefix is underPrefix for a path as sent, decoding escapes as it
// compares, so "/%61ssets/x" is recognised as "/assets/x" (the Python app
// would decode it so) and "/assets%2Fx" as under "/assets" (where it is
// then refused) instead of reaching the app. It allocates nothing: it runs
// for every request, most of which are not for static files. A malformed
// escape is compared as it stands; Serve refuses it later.
func rawUnderPrefix(p, prefix string) bool {
	i := 0
	for j := 0; j < len(prefix); j++ {
		c, n := decodedByte(p, i)
		if n == 0 || c != prefix[j] {
			return false
		}
		i += n
	}
	c, n := decodedByte(p, i)
	return n == 0 || c == '/'
}

// decodedByte returns the byte p[i:] starts with, decoding a %XX escape,
// and how many bytes of p it took (0 at the end of p).
func decodedByte(p string, i int) (byte, int) {
	if i >= len(p) {
		return 0, 0
	}
	if p[i] == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
		return unhex(p[i+1])<<4 | unhex(p[i+2]), 3
	}
	return p[i], 1
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
