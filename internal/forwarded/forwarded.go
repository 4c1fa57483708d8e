// Package forwarded applies X-Forwarded-For/-Proto/-Host and RFC 7239
// Forwarded headers from trusted proxies (--forwarded-allow-ips).
package forwarded

import (
	"errors"
	"net/netip"

	"taipan/internal/edge"
)

// Trust is the set of peers whose forwarding headers are believed.
type Trust struct {
	all  bool
	nets []netip.Prefix
}

// ParseTrust reads a comma-separated list of IPs and CIDRs, or "*".
func ParseTrust(spec string) (*Trust, error) { return nil, errors.New("forwarded: not built yet") }

// All reports whether every peer is trusted ("*").
func (t *Trust) All() bool { return t.all }

// Prefixes returns the trusted networks (nil with "*").
func (t *Trust) Prefixes() []netip.Prefix { return t.nets }

// Handler applies the headers of trusted peers to the request, then calls next.
func Handler(t *Trust, next edge.Handler) edge.Handler { return next }
