package edge

import (
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"taipan/internal/logging"
)

// refusal is why a new connection is not served.
type refusal int

const (
	admitted        refusal = iota
	refusedShutdown         // the Server is shutting down
	refusedTotal            // over Config.MaxConnections
	refusedPerIP            // over Config.MaxConnectionsPerIP
)

// A refused connection is answered on a goroutine of its own so that the
// accept loop never waits on a client. That goroutine lives at most
// refuseTimeout, and at most maxRefusing of them run at once: beyond that,
// refused connections are closed without an answer, so a flood costs a
// bounded amount of memory however fast it comes.
const (
	refuseTimeout = lingerTimeout
	refuseMaxRead = 64 << 10
	maxRefusing   = 256
)

// refusalLogInterval is the least time between two log lines about
// refused connections.
const refusalLogInterval = time.Second

// refuse answers a connection that is over a limit: a short 503 with
// Connection: close, then a close that drains what the client already
// sent for a moment (closing with its request unread would make the kernel
// reset the connection, which can destroy the 503 before the client reads
// it). Over TLS the connection is closed without a word: an answer would
// need a handshake, the very cost the limit is there to avoid.
func (s *Server) refuse(rwc net.Conn, why refusal) {
	s.refusals.note(s.log, why, &s.cfg)
	if s.cfg.TLS != nil {
		rwc.Close()
		return
	}
	if s.refusing.Add(1) > maxRefusing {
		s.refusing.Add(-1)
		rwc.Close()
		return
	}
	go func() {
		defer s.refusing.Add(-1)
		rwc.SetDeadline(time.Now().Add(refuseTimeout))
		if _, err := rwc.Write(s.refusalResponse(why)); err == nil {
			if cw, ok := rwc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				io.CopyN(io.Discard, rwc, refuseMaxRead)
			}
		}
		rwc.Close()
	}()
}

// refusalResponse is the 503 sent to a refused connection.
func (s *Server) refusalResponse(why refusal) []byte {
	body := "Service Unavailable: too many connections\n"
	if why == refusedPerIP {
		body = "Service Unavailable: too many connections from your address\n"
	}
	b := make([]byte, 0, 256)
	b = append(b, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\nConnection: close\r\nDate: "...)
	b = append(b, s.date.get(time.Now())...)
	b = append(b, "\r\n"...)
	if s.cfg.ServerHeader != "" {
		b = append(b, "Server: "...)
		b = append(b, s.cfg.ServerHeader...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	return append(b, body...)
}

// refusalLog reports refused connections to the error log at most once per
// refusalLogInterval, with how many were refused since the last report, so
// that a flood costs a line a second rather than one per connection. What
// is refused after a report is reported when the interval ends, so the end
// of a burst does not wait for the next refusal, which may be hours away.
type refusalLog struct {
	total   atomic.Int64 // refused over MaxConnections since the last report
	perIP   atomic.Int64 // refused over MaxConnectionsPerIP since the last report
	last    atomic.Int64 // unix nanoseconds of the last report
	pending atomic.Bool  // a report is due when the interval ends
}

// note counts one refusal and logs the counts if the last report is old
// enough, else makes sure they are logged when the interval ends.
func (l *refusalLog) note(log *logging.Logger, why refusal, cfg *Config) {
	switch why {
	case refusedTotal:
		l.total.Add(1)
	case refusedPerIP:
		l.perIP.Add(1)
	}
	now := time.Now().UnixNano()
	last := l.last.Load()
	if wait := last + int64(refusalLogInterval) - now; wait > 0 {
		if l.pending.CompareAndSwap(false, true) {
			time.AfterFunc(time.Duration(wait), func() {
				l.last.Store(time.Now().UnixNano())
				l.pending.Store(false)
				l.report(log, cfg)
			})
		}
		return
	}
	if l.last.CompareAndSwap(last, now) {
		l.report(log, cfg)
	}
}

// report logs the refusals counted since the last report, if any.
func (l *refusalLog) report(log *logging.Logger, cfg *Config) {
	if n := l.total.Swap(0); n > 0 {
		log.Warnf("edge: refused %d connection%s: %d open, the most --max-connections allows", n, plural(n), cfg.MaxConnections)
	}
	if n := l.perIP.Swap(0); n > 0 {
		log.Warnf("edge: refused %d connection%s from addresses that had %d open, the most --max-connections-per-ip allows", n, plural(n), cfg.MaxConnectionsPerIP)
	}
}

func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}
