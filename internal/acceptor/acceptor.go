// Package acceptor holds what taipan's servers on its listeners share: the
// HTTP edge and the uwsgi and FastCGI front ends. That is the accept loop,
// which outlives temporary failures such as running out of file
// descriptors; the wait for connections to end at shutdown; and the server
// name and port a listener gives the requests it carries.
package acceptor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"taipan/internal/logging"
)

// IdleDrainGrace is how long a shutdown leaves an idle connection open for
// a request that may already be on its way: a client (or nginx) may have
// sent one on a kept-alive connection just as the shutdown began, and
// closing the connection at once would lose it.
const IdleDrainGrace = time.Second

// drainPollInterval is how often Drain checks whether the last connection
// has ended.
const drainPollInterval = 10 * time.Millisecond

// Backoff bounds between retries of a failing Accept.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// Loop accepts connections on ln and passes each to handle, which must not
// block (it starts the connection's goroutine). A temporary failure is
// logged and retried after a pause that doubles from 5 ms up to 1 s, so
// that running out of file descriptors slows the server down instead of
// stopping it. Any other failure ends the loop: Loop returns nil when
// stopping reports true (a shutdown closed ln), else the error, prefixed
// with name ("edge", "uwsgi", ...) as are the log lines.
func Loop(ln net.Listener, name string, log *logging.Logger, stopping func() bool, handle func(net.Conn)) error {
	var backoff time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if stopping() {
				return nil
			}
			if Retryable(err) {
				backoff = min(max(2*backoff, minBackoff), maxBackoff)
				log.Errorf("%s: accept on %s: %v; retrying in %v", name, ln.Addr(), err, backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("%s: accept on %s: %w", name, ln.Addr(), err)
		}
		backoff = 0
		handle(rwc)
	}
}

// Retryable reports accept errors worth retrying: timeouts and the errors
// the syscall package calls temporary (EMFILE and ENFILE, out of file
// descriptors in the process or the system; EINTR). The runtime already
// retries a connection aborted before it was accepted.
func Retryable(err error) bool {
	var ne interface {
		Timeout() bool
		Temporary() bool
	}
	return errors.As(err, &ne) && (ne.Timeout() || ne.Temporary())
}

// Drain waits until open reports no connection left. If ctx ends first, it
// calls closeAll and returns ctx.Err(). Connections end on their own
// goroutines, which are not told about the wait, so Drain polls.
func Drain(ctx context.Context, open func() int, closeAll func()) error {
	t := time.NewTicker(drainPollInterval)
	defer t.Stop()
	for open() > 0 {
		select {
		case <-ctx.Done():
			closeAll()
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// ListenerName is the server name and port a listener at a gives requests
// that do not name one (SERVER_NAME and SERVER_PORT in WSGI terms): the
// host and port it listens on, or "localhost" and no port for a unix
// socket.
func ListenerName(a net.Addr) (name, port string) {
	if a.Network() == "unix" {
		return "localhost", ""
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), ""
	}
	return host, port
}
