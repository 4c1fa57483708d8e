// Package cgi runs CGI scripts (RFC 3875) mounted at URL prefixes
// (--cgi /cgi-bin=./cgi-bin), one process per request.
package cgi

import (
	"errors"
	"time"

	"taipan/internal/edge"
	"taipan/internal/logging"
)

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
	Env     []string      // KEY=VALUE passed to every script besides the CGI variables
}

// Handler runs the scripts.
type Handler struct {
	cfg Config
	log *logging.Logger
}

// New checks the mounts and returns a Handler.
func New(cfg Config, log *logging.Logger) (*Handler, error) {
	return nil, errors.New("cgi: not built yet")
}

// Match reports whether path (as sent, percent-encoded) falls under a mount.
func (h *Handler) Match(path string) bool { return false }

// Serve runs the script a request names and relays its answer.
func (h *Handler) Serve(w edge.ResponseWriter, r *edge.Request) {}
