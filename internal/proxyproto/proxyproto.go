// Package proxyproto reads the PROXY protocol header (v1 text, v2 binary)
// that a load balancer sends first on each connection, so that the client's
// real address reaches the app.
//
// The specification is HAProxy's "The PROXY protocol, versions 1 & 2"
// (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
//
// Design: the header of each connection is read by a goroutine of its own,
// before Accept returns the connection. A background loop accepts raw
// connections and starts those goroutines; Accept hands out the connections
// whose header is complete, in the order they complete. So a slow or silent
// client holds nothing but its own goroutine (until Config.Timeout closes
// it), and the returned connection's RemoteAddr is final from the start,
// which the HTTP engine relies on: it reads RemoteAddr right after Accept,
// in its accept loop.
package proxyproto

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"taipan/internal/acceptor"
	"taipan/internal/logging"
)

// DefaultTimeout bounds the wait for a header when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Config of a PROXY protocol listener.
type Config struct {
	// Trusted are the peers allowed to send a PROXY header; a connection
	// from anyone else is closed.
	Trusted []netip.Prefix
	// TrustAll accepts a header from any peer (--forwarded-allow-ips '*').
	TrustAll bool
	// Timeout bounds the wait for the header (default 5s).
	Timeout time.Duration
	// Log, when set, gets a debug line for each connection closed because
	// of its header. Nothing is logged above debug: these are the peer's
	// mistakes, and a port scan would otherwise flood the log.
	Log *logging.Logger
}

// NewListener wraps ln: each accepted connection's header is read and its
// RemoteAddr (and LocalAddr) become the addresses the header names. A
// connection from an untrusted peer, or whose header is missing, malformed
// or late, is closed without a word and never returned by Accept. With the
// LOCAL command (v2, a proxy's health check) or an UNKNOWN or unspecified
// protocol, the connection keeps its real addresses.
func NewListener(ln net.Listener, cfg Config) net.Listener {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &listener{
		Listener: ln,
		cfg:      cfg,
		ready:    make(chan net.Conn),
		errc:     make(chan error),
		stopped:  make(chan struct{}),
		closing:  make(chan struct{}),
	}
}

// listener is the net.Listener NewListener returns.
type listener struct {
	net.Listener
	cfg Config

	start   sync.Once     // starts acceptLoop at the first Accept
	ready   chan net.Conn // connections whose header has been read
	errc    chan error    // temporary errors of the underlying Accept
	stopped chan struct{} // closed when acceptLoop has ended
	err     error         // why acceptLoop ended; read after stopped is closed

	closeOnce sync.Once
	closing   chan struct{} // closed by Close
}

// Accept returns the next connection whose PROXY header has been read.
func (l *listener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.stopped:
		return nil, l.err
	}
}

// Close closes the underlying listener, which ends the accept loop; a
// connection whose header is still being read is closed once it has been
// read or has timed out.
func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.closing) })
	return l.Listener.Close()
}

// acceptLoop accepts raw connections and reads each one's header on its
// own goroutine. Temporary errors go to an Accept caller, which backs off
// before asking again; any other error ends the loop and is what every
// later Accept returns.
func (l *listener) acceptLoop() {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			if acceptor.Retryable(err) {
				select {
				case l.errc <- err:
				case <-l.closing:
				}
				continue
			}
			l.err = err
			close(l.stopped)
			return
		}
		go l.handshake(raw)
	}
}

// handshake reads raw's header and hands the connection to Accept, or
// closes it.
func (l *listener) handshake(raw net.Conn) {
	c, err := l.open(raw)
	if err != nil {
		raw.Close()
		if lg := l.cfg.Log; lg != nil {
			lg.Debugf("proxy protocol: closing connection from %s: %v", raw.RemoteAddr(), err)
		}
		return
	}
	select {
	case l.ready <- c:
	case <-l.stopped:
		raw.Close()
	}
}

// open checks that raw's peer may send a header, reads it within the
// timeout and returns the connection that reports its addresses.
func (l *listener) open(raw net.Conn) (*conn, error) {
	if !l.cfg.TrustAll && !trusted(l.cfg.Trusted, raw.RemoteAddr()) {
		return nil, errors.New("peer not trusted to send a PROXY header")
	}
	if err := raw.SetReadDeadline(time.Now().Add(l.cfg.Timeout)); err != nil {
		return nil, err
	}
	h, rest, err := readHeader(raw)
	if err != nil {
		return nil, err
	}
	if err := raw.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	c := &conn{Conn: raw, remote: raw.RemoteAddr(), local: raw.LocalAddr()}
	if h.src != nil {
		c.remote, c.local = h.src, h.dst
	}
	if len(rest) > 0 {
		c.buf = rest
		c.buffered.Store(true)
	}
	return c, nil
}

// trusted reports whether addr is in one of the prefixes.
func trusted(prefixes []netip.Prefix, addr net.Addr) bool {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr()
	default:
		ap, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return false
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// conn is an accepted connection whose header has been read. Bytes that
// arrived with the header are returned by Read before anything else.
type conn struct {
	net.Conn
	remote, local net.Addr

	mu       sync.Mutex
	buf      []byte      // read past the header, not yet returned; guarded by mu
	buffered atomic.Bool // len(buf) > 0: lets Read skip mu once drained
}

// Read returns the bytes read past the header first, then reads the
// underlying connection.
func (c *conn) Read(p []byte) (int, error) {
	if c.buffered.Load() {
		c.mu.Lock()
		if len(c.buf) > 0 {
			n := copy(p, c.buf)
			c.buf = c.buf[n:]
			if len(c.buf) == 0 {
				c.buf = nil
				c.buffered.Store(false)
			}
			c.mu.Unlock()
			return n, nil
		}
		c.mu.Unlock()
	}
	return c.Conn.Read(p)
}

// RemoteAddr is the source address the header named (the client), or the
// peer's address for LOCAL and UNKNOWN headers.
func (c *conn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr is the destination address the header named, or the socket's
// own address for LOCAL and UNKNOWN headers.
func (c *conn) LocalAddr() net.Addr { return c.local }

// CloseWrite shuts down the writing side, which the HTTP engine does
// before a lingering close.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return &net.OpError{Op: "close", Net: c.remote.Network(), Source: c.local, Addr: c.remote, Err: errors.ErrUnsupported}
}

// ReadFrom lets io.Copy to the connection use the underlying connection's
// ReadFrom, hence sendfile(2) or splice(2) for a file. Writing is not
// affected by the header, which was consumed before Accept returned.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// writerOnly hides every method of a Writer but Write, so that io.Copy
// does not come back to ReadFrom.
type writerOnly struct{ io.Writer }

// SyscallConn gives access to the underlying socket, for socket options.
// Reading through it would bypass the bytes buffered by Read.
func (c *conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, &net.OpError{Op: "raw-conn", Net: c.remote.Network(), Source: c.local, Addr: c.remote, Err: errors.ErrUnsupported}
}
