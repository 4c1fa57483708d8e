// Package cgi runs CGI scripts (RFC 3875) mounted at URL prefixes
// (--cgi /cgi-bin=./cgi-bin), one process per request.
//
// A request under a mount names a script by its path: the first path
// segment, walking down from the mount's directory, that is an executable
// regular file is the script, and the rest of the path is its PATH_INFO.
// The script runs in its own process group with the RFC 3875
// meta-variables as its whole environment, the request body on its
// standard input and its working directory set to its own directory. What
// it writes to standard output is a CGI response: a header block, an empty
// line, the body. Its standard error goes to taipan's error log.
//
// A script that runs longer than the timeout, or whose client goes away
// while its answer streams, is killed with its whole process group, and
// every script is reaped before Serve returns.
package cgi

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"taipan/internal/edge"
	"taipan/internal/logging"
)

// DefaultTimeout is how long a script may run when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Mount maps the URL path Prefix ("/cgi-bin", no trailing slash) to the
// directory Dir holding the scripts.
type Mount struct {
	Prefix string
	Dir    string
}

// Config of the CGI handler.
type Config struct {
	Mounts  []Mount
	Timeout time.Duration // a script running longer is killed (default 30s)
	// Env is KEY=VALUE passed to every script besides the CGI variables;
	// an entry replaces a variable of the same name (PATH, SERVER_NAME).
	Env []string
}

// Handler runs the scripts. It is safe for concurrent use.
type Handler struct {
	cfg    Config
	mounts []mount // longest prefix first, so nested mounts win
	log    *logging.Logger
}

// New checks the mounts and returns a Handler. Each Prefix must start with
// '/' ("/", or "" as --cgi /=DIR leaves it, mounts the whole URL space) and
// each Dir must be an absolute path to a directory. Entries of Env must be
// KEY=VALUE.
func New(cfg Config, log *logging.Logger) (*Handler, error) {
	if len(cfg.Mounts) == 0 {
		return nil, errors.New("no mounts")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	for _, kv := range cfg.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.IndexByte(kv, 0) >= 0 {
			return nil, fmt.Errorf("environment entry %q is not KEY=VALUE", kv)
		}
	}
	cfg.Env = slices.Clone(cfg.Env)
	h := &Handler{cfg: cfg, log: log}
	for _, m := range cfg.Mounts {
		mt, err := newMount(m)
		if err != nil {
			return nil, err
		}
		for _, o := range h.mounts {
			if o.prefix == mt.prefix {
				return nil, fmt.Errorf("prefix %q mounted twice", m.Prefix)
			}
		}
		h.mounts = append(h.mounts, mt)
	}
	slices.SortStableFunc(h.mounts, func(a, b mount) int { return len(b.prefix) - len(a.prefix) })
	return h, nil
}

// newMount checks one Mount and resolves the real path of its directory,
// the boundary no script may lie outside of.
func newMount(m Mount) (mount, error) {
	if m.Prefix != "" && !strings.HasPrefix(m.Prefix, "/") {
		return mount{}, fmt.Errorf("prefix %q must start with '/'", m.Prefix)
	}
	if !filepath.IsAbs(m.Dir) {
		return mount{}, fmt.Errorf("mount %s: directory %q is not an absolute path", m.Prefix, m.Dir)
	}
	real, err := filepath.EvalSymlinks(m.Dir)
	if err != nil {
		return mount{}, fmt.Errorf("mount %s: %w", m.Prefix, err)
	}
	if st, err := os.Stat(real); err != nil {
		return mount{}, fmt.Errorf("mount %s: %w", m.Prefix, err)
	} else if !st.IsDir() {
		return mount{}, fmt.Errorf("mount %s: %s is not a directory", m.Prefix, m.Dir)
	}
	return mount{
		prefix: strings.TrimRight(m.Prefix, "/"),
		dir:    filepath.Clean(m.Dir),
		real:   real,
	}, nil
}

// Match reports whether path (as sent, percent-encoded) falls under a
// mount: it is the prefix itself or continues it with a '/'.
func (h *Handler) Match(path string) bool { return h.mountFor(path) != nil }

// mountFor returns the mount path falls under, or nil.
func (h *Handler) mountFor(path string) *mount {
	if !strings.HasPrefix(path, "/") {
		return nil // "*" of OPTIONS *
	}
	for i := range h.mounts {
		if rest, ok := strings.CutPrefix(path, h.mounts[i].prefix); ok && (rest == "" || rest[0] == '/') {
			return &h.mounts[i]
		}
	}
	return nil
}

// Serve runs the script a request names and relays its answer.
func (h *Handler) Serve(w edge.ResponseWriter, r *edge.Request) {
	m := h.mountFor(r.Path)
	if m == nil {
		answerError(w, http.StatusNotFound)
		return
	}
	s, ref := m.resolve(r.Path[len(m.prefix):])
	if ref != nil {
		if ref.code == http.StatusForbidden {
			// Usually a mistake in the mount (a script left without
			// its x bit, a symlink out): worth the operator's eye.
			h.log.Warnf("cgi: %s: %s", r.Path, ref.why)
		} else {
			h.log.Debugf("cgi: %s: %s", r.Path, ref.why)
		}
		answerError(w, ref.code)
		return
	}
	p, err := start(s, h.environ(r, s), r.Body, h.cfg.Timeout, h.log)
	if err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, fs.ErrPermission):
			code = http.StatusForbidden // a noexec mount, an unreadable interpreter
		case errors.Is(err, fs.ErrNotExist):
			err = fmt.Errorf("%w (is the interpreter its #! line names installed?)", err)
		}
		h.log.Errorf("cgi: %s: %v", s.name, err)
		answerError(w, code)
		return
	}
	defer p.finish()
	h.relay(w, s, p)
}

// relay turns the script's output into the HTTP response: it parses the
// header block, sends a short answer whole, and streams a longer one.
func (h *Handler) relay(w edge.ResponseWriter, s *script, p *process) {
	block, body, err := readHead(p.stdout)
	if err == nil {
		var head *edge.ResponseHead
		head, err = parseHead(block)
		if err == nil {
			h.relayBody(w, s, p, head, body)
			return
		}
	}
	switch {
	case p.stopReason() == stopTimeout:
		answerError(w, http.StatusGatewayTimeout)
		return
	case errors.Is(err, errNoOutput), errors.Is(err, errShortHead):
		p.outputDone() // finish waits for the exit status and logs it
	}
	h.log.Warnf("cgi: %s: bad output: %v", s.name, err)
	answerError(w, http.StatusBadGateway)
}

// relayBody sends head and the body that follows it. A script that has
// finished within coalesceWait, with a short body, is answered in one piece
// (the edge can then add Content-Length and keep the connection alive);
// anything else streams, each read of the script's output flushed to the
// client as it comes.
func (h *Handler) relayBody(w edge.ResponseWriter, s *script, p *process, head *edge.ResponseHead, body []byte) {
	complete := false
	if len(body) < smallBody {
		var err error
		body, complete, err = gather(p.stdout, body)
		if p.stopReason() == stopTimeout {
			// Even an end of output seen now may be the kill's doing.
			answerError(w, http.StatusGatewayTimeout)
			return
		}
		if err != nil {
			h.log.Warnf("cgi: %s: reading output: %v", s.name, err)
			answerError(w, http.StatusBadGateway)
			return
		}
	}
	if complete {
		p.outputDone()
	}
	if err := w.WriteHead(head, body, complete); err != nil || complete {
		return // on error the client is gone; finish kills the script
	}
	p.watchClient(w.ClientGone())
	buf := make([]byte, readChunk)
	for {
		n, err := p.stdout.Read(buf)
		if n > 0 {
			if werr := w.Write(buf[:n]); werr != nil {
				h.log.Debugf("cgi: %s: %v", s.name, werr)
				return
			}
		}
		if err != nil {
			if p.stopReason() != stopRunning {
				// Killed mid-answer, whether the read saw the end of
				// output or the closed pipe: the client must see the
				// answer cut short, not complete.
				w.Abort()
			} else if errors.Is(err, io.EOF) {
				p.outputDone()
			} else {
				h.log.Warnf("cgi: %s: reading output: %v", s.name, err)
				w.Abort()
			}
			return
		}
	}
}

// answerError sends a short plain-text answer with the status code.
func answerError(w edge.ResponseWriter, code int) {
	text := http.StatusText(code)
	w.WriteHead(&edge.ResponseHead{
		Code:   code,
		Status: strconv.Itoa(code) + " " + text,
		Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}},
	}, []byte(text+"\n"), true)
}
