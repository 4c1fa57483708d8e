package e2e

import (
	"bytes"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// daemon is a program a test runs beside taipan (nginx, HAProxy): started
// in a process group of its own, its output kept, and stopped by its pid
// when the test ends.
type daemon struct {
	name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	exited chan struct{}
}

// startDaemon starts cmd, named name in messages, and stops it when t
// ends.
func startDaemon(t testing.TB, name string, cmd *exec.Cmd) *daemon {
	t.Helper()
	d := &daemon{name: name, cmd: cmd, exited: make(chan struct{})}
	cmd.Stdout = lockedWriter{&d.mu, &d.out}
	cmd.Stderr = lockedWriter{&d.mu, &d.out}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(d.stop)
	return d
}

// waitAccepting waits up to 10 s for addr to accept a connection, and
// fails t if it does not or the daemon exits first; logs gives what to
// show then.
func (d *daemon) waitAccepting(t testing.TB, addr string, logs func() string) {
	t.Helper()
	ready := pollUntil(10*time.Second, func() bool {
		select {
		case <-d.exited:
			return true
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	select {
	case <-d.exited:
		t.Fatalf("%s exited at start:\n%s", d.name, logs())
	default:
	}
	if !ready {
		t.Fatalf("%s did not accept on %s:\n%s", d.name, addr, logs())
	}
}

// stop ends the daemon by its pid: SIGTERM, then SIGKILL.
func (d *daemon) stop() {
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(5 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// output is what the daemon has written to stdout and stderr.
func (d *daemon) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}
