// Package static serves files from directories mounted at URL prefixes
// (--static /assets=./public) without touching Python.
package static

import (
	"errors"

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
	mounts []Mount
	log    *logging.Logger
}

// New checks the mounts (each Dir must be a directory) and returns a Handler.
func New(mounts []Mount, log *logging.Logger) (*Handler, error) {
	return nil, errors.New("static: not built yet")
}

// Match reports whether path (the request path as sent, percent-encoded)
// falls under a mount; Serve then answers it, with 404 for a missing file.
func (h *Handler) Match(path string) bool { return false }

// Serve answers a request whose path Match accepted.
func (h *Handler) Serve(w edge.ResponseWriter, r *edge.Request) {}
