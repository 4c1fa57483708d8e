// Package static serves files from directories mounted at URL prefixes
// (--static /assets=./public) in Go, so requests for them never reach
// Python.
//
// It answers GET and HEAD (405 otherwise) with what a user of nginx
// expects: Content-Type from the extension, Last-Modified and ETag, the
// conditional requests of RFC 9110 section 13 (304, 412), single byte
// ranges (206, 416), precompressed .br and .gz siblings chosen by
// Accept-Encoding, a year of caching for names carrying a content hash,
// index.html for directories and a redirect to add their trailing slash.
// Bodies go out with sendfile(2).
//
// Nothing outside a mount's directory can be reached: the path is decoded
// here and refused if it holds dot segments, encoded slashes, backslashes or
// NUL bytes, dotfiles are not served, and every file is opened through an
// os.Root, which resolves symlinks itself and refuses any that leads out.
package static

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"taipan/internal/edge"
	"taipan/internal/logging"
)

// Mount maps the URL path Prefix ("/assets", no trailing slash) to Dir.
type Mount struct {
	Prefix string
	Dir    string
}

// Handler serves the mounts.
type Handler struct {
	mounts []mount // longest prefix first, so a nested mount wins
	log    *logging.Logger
}

// mount is a Mount with its directory opened as an os.Root: every file is
// opened relative to it, so neither a path nor a symlink can lead out.
type mount struct {
	prefix string // "" for a mount at "/"
	root   *os.Root
	memo   *metaCache
}

// indexFile is what a request for a directory ("/assets/docs/") serves.
const indexFile = "index.html"

// openFlags open files for reading without blocking: opening a FIFO that
// someone left in a mount would otherwise wait for a writer forever. (It
// also spares Go a pair of fcntl calls per open. Reads of regular files
// ignore O_NONBLOCK, and so does sendfile.)
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK

// New checks the mounts (each Dir must be a directory) and returns a Handler.
// A Prefix of "/" or "" mounts Dir at the root: it then takes every request.
func New(mounts []Mount, log *logging.Logger) (*Handler, error) {
	if log == nil {
		log = logging.New(io.Discard, logging.Critical)
	}
	h := &Handler{log: log}
	for _, m := range mounts {
		prefix := m.Prefix
		if prefix == "/" {
			prefix = ""
		}
		if err := checkPrefix(prefix); err != nil {
			h.Close()
			return nil, fmt.Errorf("static: mount %s=%s: %w", m.Prefix, m.Dir, err)
		}
		if slices.ContainsFunc(h.mounts, func(o mount) bool { return o.prefix == prefix }) {
			h.Close()
			return nil, fmt.Errorf("static: %s is mounted twice", m.Prefix)
		}
		if !filepath.IsAbs(m.Dir) {
			h.Close()
			return nil, fmt.Errorf("static: mount %s=%s: the directory must be an absolute path", m.Prefix, m.Dir)
		}
		root, err := os.OpenRoot(m.Dir)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("static: mount %s: %w", m.Prefix, err)
		}
		h.mounts = append(h.mounts, mount{prefix: prefix, root: root, memo: new(metaCache)})
	}
	slices.SortStableFunc(h.mounts, func(a, b mount) int { return len(b.prefix) - len(a.prefix) })
	return h, nil
}

// checkPrefix accepts "" or a clean absolute URL path without a trailing
// slash.
func checkPrefix(p string) error {
	switch {
	case p == "":
		return nil
	case p[0] != '/':
		return errors.New("the URL prefix must start with '/'")
	case path.Clean(p) != p:
		return errors.New("the URL prefix must be a clean path (no trailing slash, no //, . or ..)")
	case strings.ContainsAny(p, "?#%\\\x00"):
		return errors.New("the URL prefix must not contain ?, #, %, backslashes or NUL")
	}
	return nil
}

// Close releases the mounted directories. The Handler must not be used
// afterwards.
func (h *Handler) Close() error {
	var errs []error
	for _, m := range h.mounts {
		errs = append(errs, m.root.Close())
	}
	h.mounts = nil
	return errors.Join(errs...)
}

// Match reports whether path (the request path as sent, percent-encoded)
// falls under a mount; Serve then answers it, with 404 for a missing file.
// Escapes are decoded for the comparison, so "/%61ssets/x" is under
// "/assets" as the app would see it.
func (h *Handler) Match(path string) bool {
	for i := range h.mounts {
		if rawUnderPrefix(path, h.mounts[i].prefix) {
			return true
		}
	}
	return false
}

// Serve answers a request whose path Match accepted.
func (h *Handler) Serve(w edge.ResponseWriter, r *edge.Request) {
	if r.Method != "GET" && r.Method != "HEAD" {
		h.replyError(w, http.StatusMethodNotAllowed, edge.HeaderField{Name: "Allow", Value: "GET, HEAD"})
		return
	}
	p, err := decodePath(r.Path)
	if err != nil {
		h.reject(w, r, err)
		return
	}
	m := h.mountOf(p)
	if m == nil {
		h.reject(w, r, errOutsideMounts)
		return
	}
	name, slash, err := splitName(p[len(m.prefix):])
	if err != nil {
		h.reject(w, r, err)
		return
	}
	h.serveName(w, r, m, name, slash)
}

// mountOf returns the mount the decoded path p lies under, or nil.
func (h *Handler) mountOf(p string) *mount {
	for i := range h.mounts {
		if underPrefix(p, h.mounts[i].prefix) {
			return &h.mounts[i]
		}
	}
	return nil
}

// serveName answers for name (relative to m's directory; slash when the
// path ended in '/'): the file, a directory's index, or a redirect adding
// a directory's trailing slash.
func (h *Handler) serveName(w edge.ResponseWriter, r *edge.Request, m *mount, name string, slash bool) {
	f, fi, err := m.open(name)
	if err != nil {
		h.openFailed(w, r, m, name, err)
		return
	}
	switch {
	case fi.IsDir():
		f.Close()
		if !slash {
			// Relative links in the index resolve against the directory
			// only with the slash.
			h.redirectToDir(w, r, m, name)
			return
		}
		name = path.Join(name, indexFile)
		if f, fi, err = m.open(name); err != nil {
			h.openFailed(w, r, m, name, err)
			return
		}
	case slash:
		// "file.txt/": a file is not a directory (as open(2) says too).
		f.Close()
		h.replyError(w, http.StatusNotFound)
		return
	}
	defer f.Close()
	if !fi.Mode().IsRegular() {
		// A directory named index.html, a FIFO, a device, a socket:
		// nothing to send. No listings either.
		h.replyError(w, http.StatusNotFound)
		return
	}
	var fields requestFields
	fields.read(r)
	rep := representation{file: f, meta: m.meta(name, identity, fi)}
	vary := false
	if !hasCodingSuffix(name) {
		var sib *os.File
		sib, rep, vary = h.precompressed(&fields, m, name, rep)
		if sib != nil {
			defer sib.Close()
		}
	}
	h.sendRepresentation(w, r, &fields, rep, vary)
}

// open opens name in the mount's directory and stats it.
func (m *mount) open(name string) (*os.File, fs.FileInfo, error) {
	f, err := m.root.OpenFile(name, openFlags, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// representation is the file chosen to answer a request: the file asked
// for, or a precompressed sibling of it.
type representation struct {
	file     *os.File
	meta     *fileMeta
	encoding coding // zero for the file as it is
}

// precompressed picks the representation of name to send: a sibling
// (name.br, name.gz) in a coding the client accepts, the best first, or
// orig. It also reports whether the answer must carry Vary:
// Accept-Encoding, which it must whenever a usable sibling exists, even
// when the client gets orig, so that caches do not hand orig to clients
// that would have got the sibling (or the reverse). A sibling older than
// the file is a leftover of an earlier build, and not used. The sibling
// file returned, if any, is for the caller to close.
func (h *Handler) precompressed(f *requestFields, m *mount, name string, orig representation) (*os.File, representation, bool) {
	usable := m.usableSiblings(name, orig.meta)
	if usable == 0 {
		return nil, orig, false
	}
	ae, _ := f.list(f.acceptEncoding)
	order, n := preference(acceptedCodings(ae))
	for _, i := range order[:n] {
		if usable&(1<<i) == 0 {
			continue
		}
		c := codings[i]
		sib, fi, err := m.open(name + c.suffix)
		if err != nil {
			// Removed since it was looked up, most likely.
			h.log.Debugf("static: %s: %v", m.prefix+"/"+name+c.suffix, err)
			continue
		}
		if !fi.Mode().IsRegular() || fi.ModTime().Before(orig.meta.modTime) {
			sib.Close()
			continue
		}
		return sib, representation{file: sib, meta: m.meta(name, i, fi), encoding: c}, true
	}
	return nil, orig, true
}

// sendRepresentation answers with rep: 304 or 412 per the preconditions,
// else 200, 206 or 416 per the Range.
func (h *Handler) sendRepresentation(w edge.ResponseWriter, r *edge.Request, f *requestFields, rep representation, vary bool) {
	meta := rep.meta
	v := validators{etag: meta.etag, modTime: meta.lastModSecond}
	hdr := make([]edge.HeaderField, 0, 12)
	hdr = append(hdr,
		edge.HeaderField{Name: "ETag", Value: meta.etag},
		edge.HeaderField{Name: "Last-Modified", Value: meta.lastModified},
		edge.HeaderField{Name: "Cache-Control", Value: meta.cacheControl},
		edge.HeaderField{Name: "Accept-Ranges", Value: "bytes"},
	)
	if vary {
		hdr = append(hdr, edge.HeaderField{Name: "Vary", Value: "Accept-Encoding"})
	}
	switch evalPreconditions(f, v) {
	case notModified:
		// RFC 9110 15.4.5: the validators, Cache-Control and Vary a 200
		// would carry, and no content headers.
		h.writeHead(w, r, http.StatusNotModified, hdr, nil)
		return
	case failedPrecon:
		h.replyError(w, http.StatusPreconditionFailed)
		return
	}

	code, part, length := http.StatusOK, byteRange{start: 0, length: meta.size}, meta.contentLength
	if rh, ok := f.rangeSpec.single(); ok && meta.size > 0 && ifRangeHolds(f, v) {
		// (A repeated Range is ignored, like an unparsable one; so is a
		// Range on an empty file, which no range can select bytes of.)
		br, outcome := parseRange(rh, meta.size)
		switch outcome {
		case rangePartial:
			code, part, length = http.StatusPartialContent, br, strconv.FormatInt(br.length, 10)
			hdr = append(hdr, edge.HeaderField{Name: "Content-Range", Value: br.contentRange(meta.size)})
		case rangeUnsatisfiable:
			h.replyError(w, http.StatusRequestedRangeNotSatisfiable,
				edge.HeaderField{Name: "Content-Range", Value: "bytes */" + meta.contentLength},
				edge.HeaderField{Name: "Accept-Ranges", Value: "bytes"})
			return
		}
	}
	hdr = append(hdr,
		edge.HeaderField{Name: "Content-Type", Value: meta.contentType},
		edge.HeaderField{Name: "X-Content-Type-Options", Value: "nosniff"},
		edge.HeaderField{Name: "Content-Length", Value: length},
	)
	if rep.encoding.token != "" {
		hdr = append(hdr, edge.HeaderField{Name: "Content-Encoding", Value: rep.encoding.token})
	}
	if !h.writeHead(w, r, code, hdr, nil) || r.Method == "HEAD" {
		return
	}
	if err := w.SendFile(rep.file, part.start, part.length); err != nil {
		h.sendFailed(r, rep, part, err)
	}
}

// sendFailed logs a SendFile error: a client that went away is routine, a
// file that shrank while it was being sent (rewritten in place instead of
// replaced by a rename) is worth a warning.
func (h *Handler) sendFailed(r *edge.Request, rep representation, part byteRange, err error) {
	if fi, serr := rep.file.Stat(); serr == nil && fi.Size() < part.start+part.length {
		h.log.Warnf("static: %s %s: %s changed size while being sent (%d bytes, was %d): %v",
			r.Method, r.Path, rep.file.Name(), fi.Size(), rep.meta.size, err)
		return
	}
	h.log.Debugf("static: %s %s: sending %s: %v", r.Method, r.Path, rep.file.Name(), err)
}

// redirectToDir answers a directory asked for without its trailing slash
// with a 301 to the same path with it (and the same query). The Location
// is rebuilt from the decoded, checked segments rather than echoed, so it
// is always a clean path on this server: never "//host/...", which a
// browser would follow to another site.
func (h *Handler) redirectToDir(w edge.ResponseWriter, r *edge.Request, m *mount, name string) {
	var sb strings.Builder
	sb.WriteString(m.prefix)
	if name != "." {
		for seg := range strings.SplitSeq(name, "/") {
			sb.WriteByte('/')
			sb.WriteString(url.PathEscape(seg))
		}
	}
	sb.WriteByte('/')
	if r.RawQuery != "" {
		sb.WriteByte('?')
		sb.WriteString(r.RawQuery)
	}
	h.replyError(w, http.StatusMovedPermanently, edge.HeaderField{Name: "Location", Value: sb.String()})
}

// reject answers a request path that cannot name a file.
func (h *Handler) reject(w edge.ResponseWriter, r *edge.Request, err error) {
	status := http.StatusNotFound
	var rj *rejection
	if errors.As(err, &rj) {
		status = rj.status
	}
	h.log.Debugf("static: %s %s: %d: %v", r.Method, r.Path, status, err)
	h.replyError(w, status)
}

// openFailed answers a request whose file could not be opened: 404 when
// it does not exist (or is not a file, or os.Root refused a symlink that
// leads out of the mount), 403 when the server may not read it, 500 (and
// an error in the log) when something unexpected went wrong.
func (h *Handler) openFailed(w edge.ResponseWriter, r *edge.Request, m *mount, name string, err error) {
	var errno syscall.Errno
	switch {
	case errors.Is(err, fs.ErrNotExist),
		errors.As(err, &errno) && (errno == syscall.ENOTDIR || errno == syscall.ENAMETOOLONG):
		h.replyError(w, http.StatusNotFound)
	case errors.Is(err, fs.ErrPermission):
		h.log.Warnf("static: %s %s: %v", r.Method, r.Path, err)
		h.replyError(w, http.StatusForbidden)
	case errors.As(err, &errno) && errno == syscall.ELOOP:
		h.log.Warnf("static: %s %s: %v", r.Method, r.Path, err)
		h.replyError(w, http.StatusNotFound)
	case !errors.As(err, &errno):
		// Not a system call's error: os.Root refused the path. The name
		// has no ".." (splitName saw to that), so a symlink led out of
		// the directory, or was absolute.
		h.log.Warnf("static: %s %s: refused by os.Root: %v (symlinks must be relative and stay inside %s)", r.Method, r.Path, err, m.root.Name())
		h.replyError(w, http.StatusNotFound)
	default:
		h.log.Errorf("static: %s %s: opening %s in %s: %v", r.Method, r.Path, name, m.root.Name(), err)
		h.replyError(w, http.StatusInternalServerError)
	}
}

// replyError sends a short text/plain answer for status (an error, or a
// redirect), with extra headers.
func (h *Handler) replyError(w edge.ResponseWriter, status int, extra ...edge.HeaderField) {
	hdr := make([]edge.HeaderField, 0, 2+len(extra))
	hdr = append(hdr,
		edge.HeaderField{Name: "Content-Type", Value: "text/plain; charset=utf-8"},
		edge.HeaderField{Name: "X-Content-Type-Options", Value: "nosniff"},
	)
	hdr = append(hdr, extra...)
	h.writeHead(w, nil, status, hdr, []byte(http.StatusText(status)+"\n"))
}

// writeHead sends the response head, and body when it is not nil (the
// whole body: the edge adds its Content-Length). A file's body follows
// with SendFile. It reports whether the head went out; when it did not,
// the client is gone.
func (h *Handler) writeHead(w edge.ResponseWriter, r *edge.Request, status int, hdr []edge.HeaderField, body []byte) bool {
	head := &edge.ResponseHead{Code: status, Status: statusLine(status), Header: hdr}
	var err error
	if body != nil {
		err = w.WriteHead(head, body, true)
	} else {
		err = w.WriteHead(head, nil, false)
	}
	if err != nil {
		if r != nil {
			h.log.Debugf("static: %s %s: %v", r.Method, r.Path, err)
		}
		return false
	}
	return true
}

// statusLine is "code reason" for the statuses this package sends.
func statusLine(code int) string {
	switch code {
	case http.StatusOK:
		return "200 OK"
	case http.StatusPartialContent:
		return "206 Partial Content"
	case http.StatusMovedPermanently:
		return "301 Moved Permanently"
	case http.StatusNotModified:
		return "304 Not Modified"
	}
	return strconv.Itoa(code) + " " + http.StatusText(code)
}
