// Package fastcgi serves taipan's Handler over the fastcgi protocol, so that an
// nginx in front can keep speaking fastcgi_pass to taipan.
package fastcgi

import (
	"context"
	"errors"
	"net"

	"taipan/internal/edge"
	"taipan/internal/logging"
)

// Server accepts fastcgi connections and serves their requests with a Handler.
type Server struct {
	cfg edge.Config
	h   edge.Handler
	log *logging.Logger
}

// NewServer returns a Server running h, with cfg's limits and timeouts.
func NewServer(cfg edge.Config, h edge.Handler, log *logging.Logger) *Server {
	return &Server{cfg: cfg, h: h, log: log}
}

// Serve accepts connections on ln until it is closed.
func (s *Server) Serve(ln net.Listener) error { return errors.New("fastcgi: not built yet") }

// Shutdown stops accepting, lets requests in progress finish, and returns
// when they have, or when ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return nil }
