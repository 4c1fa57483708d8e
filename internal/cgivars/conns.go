package cgivars

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"taipan/internal/acceptor"
	"taipan/internal/edge"
	"taipan/internal/logging"
)

// Lingering close, after refusing a request that was not read whole: shut
// the write side, so that the web server sees the answer end, and read and
// drop what it still sends until it closes, each read waiting at most
// lingerTimeout, lingerMaxRead bytes in all. nginx may send a whole request
// body before it reads the answer (and, for FastCGI without keep-conn,
// wait for the close before passing it on): a connection closed under it
// makes it answer 502 instead of passing our 413 on. Beyond lingerMaxRead,
// closing is cheaper than reading.
const (
	lingerTimeout = 500 * time.Millisecond
	lingerMaxRead = 64 << 20
)

// ResolveConfig returns cfg with its zero fields set to their defaults,
// the edge's own, so the two front ends and the HTTP engine agree.
func ResolveConfig(cfg edge.Config) edge.Config {
	return cfg.WithDefaults()
}

// connState tracks a connection for Shutdown.
type connState int

const (
	stateIdle   connState = iota // waiting for the first byte of a request
	stateActive                  // reading, serving or answering a request
	stateClosed                  // closed by Shutdown
)

// Conns is the listeners and connections of one protocol's server: what
// Serve accepts and Shutdown drains.
type Conns struct {
	proto        string // "uwsgi" or "fastcgi", for messages
	writeTimeout time.Duration
	log          *logging.Logger

	shutting   atomic.Bool
	drainUntil atomic.Int64 // unix nanoseconds: idle connections close then

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*Conn]struct{}
}

// NewConns returns an empty Conns for proto whose connections give each
// write writeTimeout.
func NewConns(proto string, writeTimeout time.Duration, log *logging.Logger) *Conns {
	return &Conns{
		proto:        proto,
		writeTimeout: writeTimeout,
		log:          log,
		listeners:    make(map[net.Listener]struct{}),
		conns:        make(map[*Conn]struct{}),
	}
}

// ShuttingDown reports whether Shutdown has begun; a connection then
// carries no request after the one in progress.
func (s *Conns) ShuttingDown() bool { return s.shutting.Load() }

// Serve accepts connections on ln and runs serve for each on its own
// goroutine, closing the connection when serve returns. It returns nil
// once Shutdown has closed ln, and an error if ln fails otherwise.
func (s *Conns) Serve(ln net.Listener, serve func(*Conn)) error {
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
	return acceptor.Loop(ln, s.proto, s.log, s.shutting.Load, func(rwc net.Conn) {
		c := s.add(rwc, serverName, serverPort)
		if c == nil {
			rwc.Close()
			return
		}
		go func() {
			defer s.forget(c)
			defer c.rwc.Close()
			serve(c)
		}()
	})
}

// Shutdown closes the listeners and waits for the connections to end: one
// serving a request ends after answering it, an idle one after
// acceptor.IdleDrainGrace unless a request arrives first, which is then
// answered (nginx opens a connection and sends at once, and reuses a
// FastCGI keep-conn connection at any time).
// If ctx ends first, it closes the rest and returns ctx.Err().
func (s *Conns) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	drainUntil := time.Now().Add(acceptor.IdleDrainGrace)
	s.drainUntil.Store(drainUntil.UnixNano())
	s.shutting.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		if c.state == stateIdle {
			c.rwc.SetReadDeadline(drainUntil)
		}
	}
	s.mu.Unlock()

	return acceptor.Drain(ctx, s.open, func() {
		s.mu.Lock()
		for c := range s.conns {
			c.state = stateClosed
			c.rwc.Close()
		}
		s.mu.Unlock()
	})
}

// open reports how many connections are open.
func (s *Conns) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Conns) add(rwc net.Conn, serverName, serverPort string) *Conn {
	c := &Conn{rwc: rwc, set: s, Addrs: Addrs{ServerName: serverName, ServerPort: serverPort}}
	if a := rwc.RemoteAddr(); a != nil && a.Network() != "unix" {
		c.Addrs.RemoteAddr, c.Addrs.RemotePort, _ = net.SplitHostPort(a.String())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting.Load() {
		return nil
	}
	s.conns[c] = struct{}{}
	return c
}

func (s *Conns) forget(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// setState moves c to st; it reports false when Shutdown has closed c.
func (s *Conns) setState(c *Conn, st connState) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.state == stateClosed {
		return false
	}
	c.state = st
	return true
}

// Conn is an accepted connection. As an io.Reader and io.Writer it gives
// each read and write its timeout.
type Conn struct {
	rwc   net.Conn
	set   *Conns
	state connState // guarded by set.mu

	// Addrs are the connection's own addresses.
	Addrs Addrs

	perRead       time.Duration // when > 0, each Read gets a fresh deadline
	readDeadline  time.Time     // the deadline last given to rwc
	writeDeadline time.Time
}

// deadlineSlack is how much later than the deadline in force a new one may
// be and still not be applied: re-arming a runtime timer on every read is
// a cost worth skipping, in exchange for a timeout up to 1/64 early.
func deadlineSlack(timeout time.Duration) time.Duration { return timeout / 64 }

// Read reads from the connection, with a fresh deadline when ReadTimeout
// set one per read.
func (c *Conn) Read(p []byte) (int, error) {
	if c.perRead > 0 {
		d := time.Now().Add(c.perRead)
		if late := d.Sub(c.readDeadline); c.readDeadline.IsZero() || late < 0 || late > deadlineSlack(c.perRead) {
			c.setReadDeadline(d)
		}
	}
	return c.rwc.Read(p)
}

// Write writes to the connection within the write timeout.
func (c *Conn) Write(p []byte) (int, error) {
	c.armWrite()
	return c.rwc.Write(p)
}

func (c *Conn) armWrite() {
	timeout := c.set.writeTimeout
	d := time.Now().Add(timeout)
	if late := d.Sub(c.writeDeadline); c.writeDeadline.IsZero() || late < 0 || late > deadlineSlack(timeout) {
		c.writeDeadline = d
		c.rwc.SetWriteDeadline(d)
	}
}

// ReadDeadline makes every read end by t (the zero time: never).
func (c *Conn) ReadDeadline(t time.Time) {
	c.perRead = 0
	c.setReadDeadline(t)
}

// ReadTimeout gives each read its own timeout d, as for a request body.
func (c *Conn) ReadTimeout(d time.Duration) { c.perRead = d }

func (c *Conn) setReadDeadline(t time.Time) {
	c.readDeadline = t
	c.rwc.SetReadDeadline(t)
}

// WaitIdle waits, as an idle connection, for the first byte of a request
// to reach br (which reads c) for at most timeout, or until the drain
// deadline during a Shutdown. It reports false when no request came: the
// wait timed out, the peer closed, or Shutdown closed the connection.
func (c *Conn) WaitIdle(br *bufio.Reader, timeout time.Duration) bool {
	if br.Buffered() > 0 {
		return true
	}
	s := c.set
	if !s.setState(c, stateIdle) {
		return false
	}
	c.ReadDeadline(time.Now().Add(timeout))
	if s.shutting.Load() {
		// Set after our own deadline, so that a Shutdown that began
		// between the two cannot have its drain deadline overwritten.
		c.ReadDeadline(time.Unix(0, s.drainUntil.Load()))
	}
	if _, err := br.Peek(1); err != nil {
		return false
	}
	return s.setState(c, stateActive)
}

// SendFile copies n bytes of f from offset straight to the connection, in
// slices that each get the write timeout. Copying from an *os.File to the
// net.Conn lets the runtime use sendfile(2).
func (c *Conn) SendFile(f *os.File, offset, n int64) (int64, error) {
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	const slice = 4 << 20
	var sent int64
	for sent < n {
		c.writeDeadline = time.Now().Add(c.set.writeTimeout)
		c.rwc.SetWriteDeadline(c.writeDeadline)
		m, err := io.CopyN(c.rwc, f, min(n-sent, slice))
		sent += m
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// LingerClose ends a connection whose peer may still be sending: it shuts
// the write side, drains input until the peer closes (within the bounds
// above), and closes.
func (c *Conn) LingerClose() {
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		c.ReadTimeout(lingerTimeout)
		io.CopyN(io.Discard, c, lingerMaxRead)
	}
	c.rwc.Close()
}

// Reset closes the connection abortively where TCP allows (an RST), so that
// the web server sees an error rather than the end of a body delimited by
// the connection's close. Over a unix socket it is a plain close.
func (c *Conn) Reset() {
	if l, ok := c.rwc.(interface{ SetLinger(int) error }); ok {
		l.SetLinger(0)
	}
	c.rwc.Close()
}

// Watch is a background read during a response that notices the web server
// closing the connection (its client went away), for ClientGone.
type Watch struct {
	gone chan struct{}
	done chan struct{}
}

// Gone is closed when the watch saw the peer go away.
func (w *Watch) Gone() <-chan struct{} { return w.gone }

// StartWatch clears the read deadline and runs read on a goroutine until it
// returns; read reports whether the peer is gone. Stop interrupts it with
// a read deadline in the past, which read must take as "not gone".
func (c *Conn) StartWatch(read func() (gone bool)) *Watch {
	w := &Watch{gone: make(chan struct{}), done: make(chan struct{})}
	c.ReadDeadline(time.Time{})
	go func() {
		defer close(w.done)
		if read() {
			close(w.gone)
		}
	}()
	return w
}

// StopWatch ends w's read, if it still runs, and waits for it, so that the
// connection can be read again.
func (c *Conn) StopWatch(w *Watch) {
	if w == nil {
		return
	}
	c.rwc.SetReadDeadline(time.Now()) // wakes the read
	<-w.done
	c.ReadDeadline(time.Time{})
}

// RawRead reads the connection without touching deadlines: for a Watch's
// read, which Stop interrupts with one.
func (c *Conn) RawRead(p []byte) (int, error) { return c.rwc.Read(p) }

// IsTimeout reports whether err is a read or write deadline passing.
func IsTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
