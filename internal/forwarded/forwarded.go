// Package forwarded applies X-Forwarded-For/-Proto/-Host and RFC 7239
// Forwarded headers from trusted proxies (--forwarded-allow-ips).
//
// A request whose direct peer is trusted has its client address, scheme and
// host replaced by what the proxies say; a request from anyone else is left
// exactly as it arrived (its forwarding headers still reach the app as
// ordinary headers, as with gunicorn). See Handler for the rules.
package forwarded

import (
	"fmt"
	"net/netip"
	"strings"

	"taipan/internal/edge"
	"taipan/internal/httpsyntax"
	"taipan/internal/logging"
)

// Trust is the set of peers whose forwarding headers are believed.
type Trust struct {
	all    bool
	nets   []netip.Prefix
	family kind            // the header family that is read (SetHeaders), without kXHost
	xHost  bool            // X-Forwarded-Host is read with the x-forwarded family (SetXForwardedHost)
	log    *logging.Logger // nil: ignored headers are not reported
}

// ParseTrust reads a comma-separated list of IP addresses and CIDR
// prefixes, or "*" for every peer. Spaces around items and empty items are
// ignored; an empty spec trusts nobody, not even unix-socket peers, which
// turns forwarding headers off. IPv4-mapped IPv6 forms are treated as the
// IPv4 addresses they carry. The error names the first bad item.
func ParseTrust(spec string) (*Trust, error) {
	t := &Trust{family: kXFor | kXProto | kXSsl}
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		switch item {
		case "":
			continue
		case "*":
			t.all = true
			continue
		}
		p, err := parsePrefix(item)
		if err != nil {
			return nil, err
		}
		t.nets = append(t.nets, p)
	}
	if t.all {
		t.nets = nil
	}
	return t, nil
}

// parsePrefix reads one trust-list item: an address or a CIDR prefix.
func parsePrefix(item string) (netip.Prefix, error) {
	bad := func() (netip.Prefix, error) {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address, a CIDR prefix or *", item)
	}
	if strings.IndexByte(item, '/') >= 0 {
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return bad()
		}
		if a := p.Addr(); a.Is4In6() {
			if p.Bits() < 96 {
				return bad() // spans more than the mapped IPv4 space
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(item)
	if err != nil || a.Zone() != "" {
		return bad()
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// All reports whether every peer is trusted ("*").
func (t *Trust) All() bool { return t != nil && t.all }

// Prefixes returns the trusted networks (nil with "*").
func (t *Trust) Prefixes() []netip.Prefix {
	if t == nil {
		return nil
	}
	return t.nets
}

// Header families, for SetHeaders.
const (
	XForwarded = "x-forwarded" // X-Forwarded-For, -Proto (or -Ssl); -Host with SetXForwardedHost
	RFC7239    = "forwarded"   // Forwarded
)

// SetHeaders chooses the one header family that is read; the other is
// ignored even from a trusted peer. Reading both would let a client spoof:
// a proxy sets or appends to the family it knows and passes the other
// through from the client untouched (nginx's proxy_add_x_forwarded_for
// leaves a client's Forwarded header alone). The default is XForwarded,
// what nginx, HAProxy and most load balancers set.
func (t *Trust) SetHeaders(family string) error {
	switch family {
	case XForwarded:
		t.family = kXFor | kXProto | kXSsl
	case RFC7239:
		t.family = kForwarded
	default:
		return fmt.Errorf("want %s or %s, got %q", XForwarded, RFC7239, family)
	}
	return nil
}

// SetXForwardedHost makes the x-forwarded family include X-Forwarded-Host,
// which is off by default, as in Django (USE_X_FORWARDED_HOST) and
// werkzeug's ProxyFix: unlike X-Forwarded-For, which nginx's
// proxy_add_x_forwarded_for appends to, a proxy that does not set
// X-Forwarded-Host itself passes on the client's, and the client would
// choose the host the app builds its links with. RFC 7239's host= comes
// from the same element as the client's address, one a proxy wrote, and
// needs no switch.
func (t *Trust) SetXForwardedHost(on bool) { t.xHost = on }

// kinds is the set of headers that are read.
func (t *Trust) kinds() kind {
	if t.xHost && t.family&kXFor != 0 {
		return t.family | kXHost
	}
	return t.family
}

// SetLogger makes Handler report, at debug level, the forwarding headers
// it ignores because they are malformed. Call it before serving.
func (t *Trust) SetLogger(lg *logging.Logger) { t.log = lg }

// none reports whether t trusts nobody at all.
func (t *Trust) none() bool { return t == nil || !t.all && len(t.nets) == 0 }

// contains reports whether a is a trusted address.
func (t *Trust) contains(a netip.Addr) bool {
	if t.all {
		return true
	}
	a = a.Unmap()
	for _, p := range t.nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// trustsPeer reports whether the direct peer, an IP address string or ""
// for a unix socket, may send forwarding headers. A unix-socket peer is
// trusted unless nobody is: only local processes allowed by the socket
// file's permissions can connect, which in practice is the proxy (gunicorn
// does the same).
func (t *Trust) trustsPeer(remote string) bool {
	if remote == "" {
		return true // t.none() was ruled out by Handler
	}
	a, err := netip.ParseAddr(remote)
	return err == nil && t.contains(a)
}

// Handler applies the headers of trusted peers to the request, then calls
// next.
//
// For a request whose direct peer is trusted:
//
//   - Only one header family is read (SetHeaders): X-Forwarded-For gives
//     the client, X-Forwarded-Proto (or, without it, X-Forwarded-Ssl:
//     on/off) the scheme and, with SetXForwardedHost, X-Forwarded-Host the
//     host; or RFC 7239 Forwarded gives all three.
//   - The client is found by walking the hops from the right (the one the
//     nearest proxy added) and skipping those that are themselves trusted
//     addresses; the first other hop is the client, or the leftmost when
//     all are trusted (nginx's real_ip_recursive). Hops left of it were
//     written by the client and are never used, so a client cannot spoof
//     its address by sending these headers through a proxy that appends.
//   - Proto and host come from the same Forwarded element as the client.
//     An X-Forwarded-Proto/-Host list is read at the position matching the
//     client's hop counted from the right (each proxy appends to both), or
//     at its leftmost entry when it is shorter; without X-Forwarded-For its
//     rightmost entry is used.
//   - RemoteAddr becomes the client's address (an IPv4-mapped address is
//     unmapped) or, for an "unknown" or obfuscated node, that identifier as
//     written; RemotePort becomes the port the proxy gave with it, or "0"
//     when it gave none, since the peer's port belongs to the proxy's
//     connection (ASGI then sees (client, 0), as with uvicorn). A Forwarded
//     element without for= leaves both unchanged.
//   - Scheme becomes "http" or "https". Host becomes the forwarded host, and
//     so does the Host header field (added when absent), so that HTTP_HOST
//     and ASGI headers agree with it. ServerName and ServerPort keep
//     describing the listening socket, which is what ASGI's "server" means;
//     PEP 3333 URL reconstruction prefers HTTP_HOST anyway.
//
// The headers themselves are left in place for the app. Values are
// validated before anything is changed: a malformed value that the rules
// above would use (bad syntax, an address that is not one, a proto other
// than http or https, an invalid host) leaves the request untouched, and is
// logged at debug level when Trust.SetLogger was called.
//
// A request carrying none of these headers costs one pass over the header
// names and no allocation.
func Handler(t *Trust, next edge.Handler) edge.Handler {
	if t.none() {
		return next
	}
	return &handler{trust: t, next: next}
}

type handler struct {
	trust *Trust
	next  edge.Handler
}

func (h *handler) Serve(w edge.ResponseWriter, r *edge.Request) {
	if kinds := scan(r.Header) & h.trust.kinds(); kinds != 0 && h.trust.trustsPeer(r.RemoteAddr) {
		ch, err := h.trust.resolve(r.Header, kinds)
		if err != nil {
			if lg := h.trust.log; lg != nil && lg.Enabled(logging.Debug) {
				peer := r.RemoteAddr
				if peer == "" {
					peer = "unix socket"
				}
				lg.Debugf("forwarded: ignoring the forwarding headers from %s: %v", peer, err)
			}
		} else {
			ch.apply(r)
		}
	}
	h.next.Serve(w, r)
}

// kind is a bit set of the forwarding headers a request carries.
type kind uint8

const (
	kForwarded kind = 1 << iota
	kXFor
	kXProto
	kXHost
	kXSsl
)

// kindOf returns the kind of header name, or 0.
func kindOf(name string) kind {
	// Switching on the length first keeps the common case (an unrelated
	// header) to one comparison.
	switch len(name) {
	case len("Forwarded"):
		if strings.EqualFold(name, "Forwarded") {
			return kForwarded
		}
	case len("X-Forwarded-For"): // and X-Forwarded-Ssl
		if strings.EqualFold(name, "X-Forwarded-For") {
			return kXFor
		}
		if strings.EqualFold(name, "X-Forwarded-Ssl") {
			return kXSsl
		}
	case len("X-Forwarded-Host"):
		if strings.EqualFold(name, "X-Forwarded-Host") {
			return kXHost
		}
	case len("X-Forwarded-Proto"):
		if strings.EqualFold(name, "X-Forwarded-Proto") {
			return kXProto
		}
	}
	return 0
}

// scan returns the kinds of forwarding headers in h.
func scan(h []edge.HeaderField) kind {
	var k kind
	for i := range h {
		k |= kindOf(h[i].Name)
	}
	return k
}

// change is what a set of forwarding headers says about a request.
type change struct {
	setClient  bool
	addr, port string
	scheme     string // "" leaves Scheme alone
	host       string // "" leaves Host alone
}

// apply writes c into r.
func (c *change) apply(r *edge.Request) {
	if c.setClient {
		r.RemoteAddr, r.RemotePort = c.addr, c.port
	}
	if c.scheme != "" {
		r.Scheme = c.scheme
	}
	if c.host != "" {
		r.Host = c.host
		for i := range r.Header {
			if f := &r.Header[i]; len(f.Name) == len("Host") && strings.EqualFold(f.Name, "Host") {
				f.Value = c.host
				return
			}
		}
		r.Header = append(r.Header, edge.HeaderField{Name: "Host", Value: c.host})
	}
}

// setNode makes n the client of c.
func (c *change) setNode(n node) {
	c.setClient = true
	c.addr, c.port = n.name, n.port
	if n.addr.IsValid() {
		c.addr = n.addr.Unmap().String()
	}
	if c.port == "" {
		c.port = "0"
	}
}

// resolve works out the change that the headers of kinds in h ask for.
func (t *Trust) resolve(h []edge.HeaderField, kinds kind) (change, error) {
	if kinds&kForwarded != 0 {
		var buf [4]element
		elems, err := appendElements(buf[:0], h)
		if err != nil {
			return change{}, err
		}
		if len(elems) > 0 {
			return t.fromForwarded(elems)
		}
		// Only empty list elements: as if there were no Forwarded header.
	}
	return t.fromXForwarded(h, kinds)
}

// fromForwarded resolves RFC 7239 elements.
func (t *Trust) fromForwarded(elems []element) (change, error) {
	var c change
	i := len(elems) - 1
	var n node
	for ; i >= 0; i-- {
		e := &elems[i]
		if !e.has(pFor) {
			break
		}
		var ok bool
		if n, ok = parseNode(e.vals[pFor]); !ok {
			return change{}, fmt.Errorf("bad Forwarded for=%q", e.vals[pFor])
		}
		if i == 0 || !n.addr.IsValid() || !t.contains(n.addr) {
			c.setNode(n)
			break
		}
	}
	e := &elems[max(i, 0)]
	if e.has(pProto) {
		if c.scheme = parseScheme(e.vals[pProto]); c.scheme == "" {
			return change{}, fmt.Errorf("bad Forwarded proto=%q", e.vals[pProto])
		}
	}
	if e.has(pHost) {
		if c.host = e.vals[pHost]; !validHost(c.host) {
			return change{}, fmt.Errorf("bad Forwarded host=%q", c.host)
		}
	}
	return c, nil
}

// fromXForwarded resolves the X-Forwarded-* headers.
func (t *Trust) fromXForwarded(h []edge.HeaderField, kinds kind) (change, error) {
	var c change
	var buf [8]string // reused for each header in turn: the walk is done with fors before proto is read
	hops := 0         // how many X-Forwarded-For entries, from the right, up to the client's
	if kinds&kXFor != 0 {
		fors := appendItems(buf[:0], h, kXFor)
		for i := len(fors) - 1; i >= 0; i-- {
			n, ok := parseNode(fors[i])
			if !ok {
				return change{}, fmt.Errorf("bad X-Forwarded-For entry %q", fors[i])
			}
			if i == 0 || !n.addr.IsValid() || !t.contains(n.addr) {
				c.setNode(n)
				hops = len(fors) - i
				break
			}
		}
	}
	if kinds&kXProto != 0 {
		if v, ok := pick(appendItems(buf[:0], h, kXProto), hops); ok {
			if c.scheme = parseScheme(v); c.scheme == "" {
				return change{}, fmt.Errorf("bad X-Forwarded-Proto %q", v)
			}
		}
	} else if kinds&kXSsl != 0 {
		if v, ok := pick(appendItems(buf[:0], h, kXSsl), hops); ok {
			switch {
			case strings.EqualFold(v, "on"):
				c.scheme = "https"
			case strings.EqualFold(v, "off"):
				c.scheme = "http"
			default:
				return change{}, fmt.Errorf("bad X-Forwarded-Ssl %q", v)
			}
		}
	}
	if kinds&kXHost != 0 {
		if v, ok := pick(appendItems(buf[:0], h, kXHost), hops); ok {
			if !validHost(v) {
				return change{}, fmt.Errorf("bad X-Forwarded-Host %q", v)
			}
			c.host = v
		}
	}
	return c, nil
}

// pick returns the entry of vals added by the same proxy as the client's
// X-Forwarded-For hop, hops entries from the right, clamped to the leftmost
// entry; with hops == 0 (no X-Forwarded-For) the rightmost entry.
func pick(vals []string, hops int) (string, bool) {
	if len(vals) == 0 {
		return "", false
	}
	if hops == 0 {
		return vals[len(vals)-1], true
	}
	return vals[max(len(vals)-hops, 0)], true
}

// appendItems appends the non-empty, trimmed comma-separated items of every
// header of kind k in h, in order.
func appendItems(dst []string, h []edge.HeaderField, k kind) []string {
	for i := range h {
		if kindOf(h[i].Name) != k {
			continue
		}
		for item := range strings.SplitSeq(h[i].Value, ",") {
			if item = strings.Trim(item, " \t"); item != "" {
				dst = append(dst, item)
			}
		}
	}
	return dst
}

// parseScheme returns "http" or "https" for v in any case, or "".
func parseScheme(v string) string {
	switch {
	case strings.EqualFold(v, "http"):
		return "http"
	case strings.EqualFold(v, "https"):
		return "https"
	}
	return ""
}

// node is a forwarded hop: an RFC 7239 node or an X-Forwarded-For entry.
type node struct {
	addr netip.Addr // valid when the node is an IP address
	name string     // otherwise "unknown" or an obfuscated identifier
	port string     // a numeric port, or "" when absent or obfuscated
}

// parseNode reads IPv4[:port], [IPv6][:port], a bare IPv6 address,
// unknown[:port] or an obfuscated _identifier[:port] (RFC 7239 section 6).
func parseNode(s string) (node, bool) {
	var n node
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return n, false
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return n, false
		}
		n.addr = a
		rest := s[end+1:]
		if rest == "" {
			return n, true
		}
		if rest[0] != ':' {
			return n, false
		}
		port = rest[1:]
	} else {
		if a, err := netip.ParseAddr(s); err == nil {
			// IPv4, or IPv6 without the brackets RFC 7239 asks for.
			if a.Zone() != "" {
				return n, false
			}
			n.addr = a
			return n, true
		}
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			host, port = s[:i], s[i+1:]
		}
		switch a, err := netip.ParseAddr(host); {
		case err == nil && a.Is4():
			n.addr = a
		case strings.EqualFold(host, "unknown"):
			n.name = "unknown"
		case isObfuscated(host):
			n.name = host
		default:
			return n, false
		}
		if port == "" && host == s {
			return n, true
		}
	}
	switch {
	case validPort(port):
		n.port = port
	case isObfuscated(port):
		// A hidden port says nothing usable.
	default:
		return n, false
	}
	return n, true
}

// isObfuscated reports an RFC 7239 obfuscated identifier: "_" followed by
// letters, digits, ".", "_" or "-".
func isObfuscated(s string) bool {
	if len(s) < 2 || s[0] != '_' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// validPort reports 1 to 5 digits with a value of at most 65535.
func validPort(s string) bool {
	if len(s) == 0 || len(s) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n <= 65535
}

// maxHostLen bounds a forwarded host: a 255-byte name and a port.
const maxHostLen = 255 + len(":65535")

// validHost reports whether h may replace the Host: the URI grammar the
// edge applies to a client's Host (httpsyntax.ValidHost), and more, since a
// forwarded value is trusted further: a length bound, a port of 1 to 5
// digits up to 65535, and a bracketed literal that is a real IPv6 address.
func validHost(h string) bool {
	if len(h) > maxHostLen || !httpsyntax.ValidHost(h, false) {
		return false
	}
	rest := h
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if a, err := netip.ParseAddr(h[1:end]); err != nil || !a.Is6() || a.Zone() != "" {
			return false
		}
		rest = h[end+1:]
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		return validPort(rest[i+1:])
	}
	return true
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
