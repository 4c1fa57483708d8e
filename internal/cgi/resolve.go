package cgi

import (
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// mount is a checked Mount.
type mount struct {
	prefix string // URL prefix without a trailing slash ("" for "/")
	dir    string // the directory as configured, for PATH_TRANSLATED
	real   string // dir with every symlink resolved: scripts must lie inside
}

// script is a request path resolved to an executable under a mount.
type script struct {
	path       string // absolute, symlinks resolved: the file executed
	name       string // SCRIPT_NAME: the prefix and the script's path below it
	pathInfo   string // PATH_INFO: the decoded rest of the path ("" or "/...")
	translated string // PATH_TRANSLATED: the mount's directory plus pathInfo
}

// refusal is why a request path names no script that may run: the status
// to answer and, for the log, the reason.
type refusal struct {
	code int
	why  string
}

// resolve finds the script that rest, the request path after the mount's
// prefix (still percent-encoded), names. It walks the decoded segments down
// from the mount's directory; the first that is a regular file is the
// script, provided it is executable. Dot-segments, NUL and backslashes are
// refused outright, hidden files are never run, and a symlink is followed
// only when its target lies inside the mount.
//
// The checks and the later exec are separate steps; the mount's directory
// belongs to the operator, so only someone who can already write there
// could race them.
func (m *mount) resolve(rest string) (*script, *refusal) {
	decoded, err := url.PathUnescape(rest)
	if err != nil {
		return nil, &refusal{http.StatusBadRequest, "bad percent-encoding in path"}
	}
	if strings.IndexByte(decoded, 0) >= 0 {
		return nil, &refusal{http.StatusBadRequest, "NUL in path"}
	}
	if strings.IndexByte(decoded, '\\') >= 0 {
		return nil, &refusal{http.StatusBadRequest, "backslash in path"}
	}
	segs := strings.Split(decoded, "/")
	for _, seg := range segs {
		if seg == "." || seg == ".." {
			return nil, &refusal{http.StatusBadRequest, "dot-segment in path"}
		}
	}

	dir, name := m.real, m.prefix
	for i, seg := range segs {
		if seg == "" {
			continue // the leading slash, a doubled or a trailing one
		}
		if seg[0] == '.' {
			return nil, &refusal{http.StatusNotFound, "hidden file " + seg}
		}
		p := filepath.Join(dir, seg)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, statRefusal(err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if p, err = filepath.EvalSymlinks(p); err != nil {
				return nil, statRefusal(err)
			}
			if !within(m.real, p) {
				return nil, &refusal{http.StatusForbidden, "symlink " + seg + " leads outside " + m.dir}
			}
			if fi, err = os.Stat(p); err != nil {
				return nil, statRefusal(err)
			}
		}
		name += "/" + seg
		switch {
		case fi.IsDir():
			dir = p
		case !fi.Mode().IsRegular():
			return nil, &refusal{http.StatusForbidden, p + " is not a regular file"}
		case fi.Mode().Perm()&0o111 == 0:
			return nil, &refusal{http.StatusForbidden, p + " is not executable"}
		default:
			s := &script{path: p, name: name}
			if i+1 < len(segs) {
				s.pathInfo = "/" + strings.Join(segs[i+1:], "/")
				s.translated = strings.TrimSuffix(m.dir, "/") + s.pathInfo
			}
			return s, nil
		}
	}
	return nil, &refusal{http.StatusNotFound, "no script in path (a directory)"}
}

// statRefusal turns a failed look-up into a refusal: 403 when the
// directories deny access, 404 otherwise (missing, dangling symlink, a name
// too long).
func statRefusal(err error) *refusal {
	if errors.Is(err, fs.ErrPermission) {
		return &refusal{http.StatusForbidden, err.Error()}
	}
	return &refusal{http.StatusNotFound, err.Error()}
}

// within reports whether the clean absolute path p is root or lies below it.
func within(root, p string) bool {
	if root == "/" {
		return true
	}
	rest, ok := strings.CutPrefix(p, root)
	return ok && (rest == "" || rest[0] == '/')
}
