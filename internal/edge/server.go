package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"taipan/internal/acceptor"
	"taipan/internal/logging"
)

// bufSize is the size of each connection's read and write buffers.
const bufSize = 4096

// Server serves HTTP/1.x on any number of listeners with one Handler.
type Server struct {
	cfg     Config
	handler Handler
	log     *logging.Logger

	readers sync.Pool // *bufio.Reader
	writers sync.Pool // *bufio.Writer
	bodies  sync.Pool // *[]byte of capacity bodyReadStep: request bodies
	date    dateCache

	shutting   atomic.Bool
	shutdownCh chan struct{} // closed when Shutdown begins
	h2         *h2Server
	drainUntil atomic.Int64 // unix nanoseconds: idle connections close then

	refusing atomic.Int32 // refused connections still being answered
	refusals refusalLog

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	perIP     map[string]int      // open connections by client address, with MaxConnectionsPerIP
	unixPaths map[string]struct{} // socket files created by Listen
}

// NewServer returns a Server running h with cfg (zero fields take their
// defaults) and reporting errors to log (nil: nowhere).
func NewServer(cfg Config, h Handler, log *logging.Logger) *Server {
	cfg.setDefaults()
	if log == nil {
		log = logging.New(io.Discard, logging.Critical)
	}
	s := &Server{
		cfg:        cfg,
		handler:    h,
		log:        log,
		listeners:  make(map[net.Listener]struct{}),
		shutdownCh: make(chan struct{}),
		conns:      make(map[*conn]struct{}),
		unixPaths:  make(map[string]struct{}),
	}
	if cfg.MaxConnectionsPerIP > 0 {
		s.perIP = make(map[string]int)
	}
	s.h2 = newH2Server(s)
	return s
}

// Config returns the Server's resolved configuration.
func (s *Server) Config() Config { return s.cfg }

// Listen opens a listener for addr, which is "host:port", "[::1]:port",
// ":port" or "unix:/path", with lc's socket options (nil for none). A stale
// unix socket file (one nobody accepts on) is removed first; Shutdown
// removes the socket file again.
func (s *Server) Listen(addr string, lc *net.ListenConfig) (net.Listener, error) {
	if lc == nil {
		lc = &net.ListenConfig{}
	}
	ctx := context.Background()
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return nil, fmt.Errorf("edge: listen %q: empty unix socket path", addr)
		}
		if err := removeStaleSocket(path); err != nil {
			return nil, fmt.Errorf("edge: listen %q: %w", addr, err)
		}
		ln, err := lc.Listen(ctx, "unix", path)
		if err != nil {
			return nil, fmt.Errorf("edge: listen %q: %w", addr, err)
		}
		s.mu.Lock()
		s.unixPaths[path] = struct{}{}
		s.mu.Unlock()
		return ln, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("edge: listen %q: want host:port, :port or unix:/path: %w", addr, err)
	}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("edge: listen %q: %w", addr, err)
	}
	return ln, nil
}

// removeStaleSocket deletes path if it is a unix socket no process accepts
// on. Anything else at path is left alone and reported.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by another server", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	return nil
}

// Serve accepts connections on ln and serves each on its own goroutine
// until ln fails or Shutdown is called, in which case it returns nil.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	serverName, serverPort := acceptor.ListenerName(ln.Addr())
	return acceptor.Loop(ln, "edge", s.log, s.shutting.Load, func(rwc net.Conn) {
		c, why := s.newConn(rwc, serverName, serverPort)
		switch {
		case c != nil:
			go c.serve()
		case why == refusedShutdown:
			rwc.Close()
		default:
			s.refuse(rwc, why)
		}
	})
}

// Shutdown stops the Server gracefully: listeners close, a connection with a
// request in progress closes after answering it, and an idle keep-alive
// connection closes after acceptor.IdleDrainGrace unless a request arrives
// on it first, which is then answered. (Closing idle connections at once
// loses requests that a client had already sent on them.) Shutdown waits
// for all connections to end; if ctx expires first it closes the remaining
// ones and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	drainUntil := time.Now().Add(acceptor.IdleDrainGrace)
	s.drainUntil.Store(drainUntil.UnixNano())
	if !s.shutting.Swap(true) {
		close(s.shutdownCh)
		s.h2.shutdown()
	}
	for ln := range s.listeners {
		ln.Close()
	}
	for path := range s.unixPaths {
		os.Remove(path)
	}
	clear(s.unixPaths)
	for c := range s.conns {
		if c.state == stateIdle {
			// Not closed at once: a request may be in flight towards it.
			// Its read ends at drainUntil; one that arrives before is
			// answered with Connection: close.
			c.rwc.SetReadDeadline(drainUntil)
		}
	}
	s.mu.Unlock()

	return acceptor.Drain(ctx, s.ConnCount, func() {
		s.mu.Lock()
		for c := range s.conns {
			c.state = stateClosed
			c.rwc.Close()
		}
		s.mu.Unlock()
	})
}

// ConnCount reports how many client connections are open: those running a
// request, idle keep-alive ones, and HTTP/2 ones. It is for metrics.
func (s *Server) ConnCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// drainDeadline is when idle connections close during a shutdown.
func (s *Server) drainDeadline() time.Time { return time.Unix(0, s.drainUntil.Load()) }

// newConn registers a connection. It returns nil and the reason when the
// connection is not to be served: during shutdown, or over a connection
// limit. The check is made before anything is allocated for the
// connection, under the lock that registers it anyway.
func (s *Server) newConn(rwc net.Conn, serverName, serverPort string) (*conn, refusal) {
	var host, port string
	if a := rwc.RemoteAddr(); a != nil && a.Network() != "unix" {
		host, port, _ = net.SplitHostPort(a.String())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting.Load() {
		return nil, refusedShutdown
	}
	if why := s.admit(host); why != admitted {
		return nil, why
	}
	c := &conn{srv: s, rwc: rwc, serverName: serverName, serverPort: serverPort, scheme: "http",
		remoteAddr: host, remotePort: port, state: stateIdle}
	if s.cfg.TLS != nil {
		c.rwc = tls.Server(rwc, s.cfg.TLS)
		c.scheme = "https"
	}
	s.conns[c] = struct{}{}
	return c, admitted
}

// admit applies the connection limits to a new connection from host ("" for
// a unix socket client) and counts it against its address. s.mu is held.
func (s *Server) admit(host string) refusal {
	if limit := s.cfg.MaxConnections; limit > 0 && len(s.conns) >= limit {
		return refusedTotal
	}
	if limit := s.cfg.MaxConnectionsPerIP; limit > 0 && host != "" {
		n := s.perIP[host]
		if n >= limit {
			return refusedPerIP
		}
		s.perIP[host] = n + 1
	}
	return admitted
}

// setState moves c to st; it reports false when Shutdown has already
// closed the connection.
func (s *Server) setState(c *conn, st connState) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.state == stateClosed {
		return false
	}
	c.state = st
	return true
}

// forget unregisters a closed connection.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return
	}
	delete(s.conns, c)
	if s.perIP != nil && c.remoteAddr != "" {
		if n := s.perIP[c.remoteAddr] - 1; n > 0 {
			s.perIP[c.remoteAddr] = n
		} else {
			delete(s.perIP, c.remoteAddr)
		}
	}
}

func (s *Server) getReader(r *connReader) *bufio.Reader {
	if br, ok := s.readers.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, bufSize)
}

func (s *Server) putReader(br *bufio.Reader) {
	br.Reset(nil)
	s.readers.Put(br)
}

// getBody returns an empty request body buffer of capacity bodyReadStep.
func (s *Server) getBody() *[]byte {
	if b, ok := s.bodies.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, bodyReadStep)
	return &b
}

func (s *Server) getWriter(w *connWriter) *bufio.Writer {
	if bw, ok := s.writers.Get().(*bufio.Writer); ok {
		bw.Reset(w)
		return bw
	}
	return bufio.NewWriterSize(w, bufSize)
}

func (s *Server) putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	s.writers.Put(bw)
}

// dateCache holds the Date header value, formatted at most once a second.
type dateCache struct {
	v atomic.Pointer[dateValue]
}

type dateValue struct {
	sec int64
	b   []byte // "Mon, 02 Jan 2006 15:04:05 GMT"
}

// get returns the formatted date for now; the slice must not be modified.
func (d *dateCache) get(now time.Time) []byte {
	sec := now.Unix()
	if v := d.v.Load(); v != nil && v.sec == sec {
		return v.b
	}
	v := &dateValue{sec: sec, b: now.UTC().AppendFormat(make([]byte, 0, 29), "Mon, 02 Jan 2006 15:04:05 GMT")}
	d.v.Store(v)
	return v.b
}
