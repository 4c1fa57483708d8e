package acceptor

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"taipan/internal/logging"
)

// flakyListener is a real loopback listener whose Accept fails with err
// the first fails times: running out of file descriptors cannot be
// arranged for one listener without starving the whole test process.
type flakyListener struct {
	net.Listener
	err   error
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, l.err
	}
	return l.Listener.Accept()
}

func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestLoopRetriesTemporaryFailures: after two EMFILE failures the loop
// still accepts a client, logs each failure with its back-off, and ends
// with nil once the listener is closed for a shutdown.
func TestLoopRetriesTemporaryFailures(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	ln := &flakyListener{Listener: listenTCP(t), err: emfile}
	ln.fails.Store(2)
	var logs bytes.Buffer
	log := logging.New(&logs, logging.Info)
	var stopping atomic.Bool
	accepted := make(chan net.Conn, 1)
	done := make(chan error, 1)
	go func() {
		done <- Loop(ln, "edge", log, stopping.Load, func(c net.Conn) { accepted <- c })
	}()

	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not accept after two temporary failures")
	}
	stopping.Store(true)
	ln.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Loop after a shutdown closed its listener = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not end when its listener closed")
	}
	for _, want := range []string{"edge: accept on " + ln.Addr().String(), "too many open files; retrying in 5ms", "retrying in 10ms"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// TestLoopReturnsLastingFailures: a listener closed by something other
// than a shutdown ends the loop with its error, named.
func TestLoopReturnsLastingFailures(t *testing.T) {
	ln := listenTCP(t)
	ln.Close()
	err := Loop(ln, "uwsgi", logging.New(&bytes.Buffer{}, logging.Info), func() bool { return false }, func(c net.Conn) { c.Close() })
	if err == nil || !errors.Is(err, net.ErrClosed) || !strings.HasPrefix(err.Error(), "uwsgi: accept on ") {
		t.Fatalf("Loop on a closed listener = %v, want a uwsgi: accept error wrapping net.ErrClosed", err)
	}
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ENFILE)}, true},
		{os.ErrDeadlineExceeded, true},
		{&net.OpError{Op: "accept", Err: net.ErrClosed}, false},
		{errors.New("other"), false},
	} {
		if got := Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestDrain(t *testing.T) {
	var open atomic.Int32
	open.Store(3)
	go func() {
		for open.Load() > 0 {
			time.Sleep(5 * time.Millisecond)
			open.Add(-1)
		}
	}()
	closed := false
	if err := Drain(context.Background(), func() int { return int(open.Load()) }, func() { closed = true }); err != nil || closed {
		t.Fatalf("Drain as the connections end = %v (closeAll called: %v), want nil without closeAll", err, closed)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := Drain(ctx, func() int { return 1 }, func() { closed = true })
	if !errors.Is(err, context.DeadlineExceeded) || !closed {
		t.Fatalf("Drain past its deadline = %v (closeAll called: %v), want DeadlineExceeded after closeAll", err, closed)
	}
}

func TestListenerName(t *testing.T) {
	tcp := listenTCP(t)
	if name, port := ListenerName(tcp.Addr()); name != "127.0.0.1" || port != tcp.Addr().(*net.TCPAddr).AddrPort().String()[len("127.0.0.1:"):] {
		t.Errorf("ListenerName(%v) = %q, %q", tcp.Addr(), name, port)
	}
	unix, err := net.Listen("unix", filepath.Join(t.TempDir(), "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close()
	if name, port := ListenerName(unix.Addr()); name != "localhost" || port != "" {
		t.Errorf("ListenerName(unix) = %q, %q, want localhost and no port", name, port)
	}
}
