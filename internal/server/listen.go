package server

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"taipan/internal/config"
)

// listenOptions are the socket settings of every listener taipan opens.
type listenOptions struct {
	backlog   int
	reusePort bool
	umask     int // for unix sockets; -1 = leave the process umask alone
}

// systemdListeners returns the sockets systemd passed (socket activation:
// LISTEN_PID is this process and LISTEN_FDS counts descriptors from 3), or
// nil. The variables are cleared so the workers do not see them.
func systemdListeners() ([]net.Listener, error) {
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return nil, nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil, nil
	}
	clearSystemdEnv()
	var lns []net.Listener
	for fd := 3; fd < 3+n; fd++ {
		ln, err := fdListener(fd)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("systemd socket %d: %w", fd, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// keepSystemdSockets leaves systemd's sockets open for fd://N binds to
// name, but not inherited by workers, and clears the variables.
func keepSystemdSockets() {
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	n, err2 := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err == nil && err2 == nil && pid == os.Getpid() {
		for fd := 3; fd < 3+n; fd++ {
			unix.CloseOnExec(fd)
		}
	}
	clearSystemdEnv()
}

// clearSystemdEnv removes the socket-activation variables, which are meant
// for taipan alone, before workers inherit the environment.
func clearSystemdEnv() {
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
}

// fdListener turns an inherited listening socket into a net.Listener.
func fdListener(fd int) (net.Listener, error) {
	unix.CloseOnExec(fd) // workers must not inherit it
	f := os.NewFile(uintptr(fd), "fd://"+strconv.Itoa(fd))
	if f == nil {
		return nil, fmt.Errorf("fd %d is not open", fd)
	}
	defer f.Close() // FileListener dups it
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("fd %d is not a listening socket: %w", fd, err)
	}
	return ln, nil
}

// openListener opens the listener of one bind.
func openListener(b config.Bind, opts listenOptions, listen func(addr string, lc *net.ListenConfig) (net.Listener, error)) (net.Listener, error) {
	if n, ok := strings.CutPrefix(b.Addr, "fd://"); ok {
		fd, _ := strconv.Atoi(n) // checked by config
		return fdListener(fd)
	}
	lc := &net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if opts.reusePort && !strings.HasPrefix(network, "unix") {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	if strings.HasPrefix(b.Addr, "unix:") && opts.umask >= 0 {
		// The socket file gets its mode from the umask at bind time.
		old := syscall.Umask(opts.umask)
		defer syscall.Umask(old)
	}
	ln, err := listen(b.Addr, lc)
	if err != nil {
		return nil, err
	}
	if err := setBacklog(ln, opts.backlog); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// setBacklog calls listen(2) again with backlog: Go's net package always
// asks for the system maximum, and listen on a listening socket only
// changes its backlog.
func setBacklog(ln net.Listener, backlog int) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = unix.Listen(int(fd), backlog) }); err != nil {
		return err
	}
	if lerr != nil {
		return fmt.Errorf("setting the backlog: %w", lerr)
	}
	return nil
}
