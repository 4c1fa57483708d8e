package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestUnixSocketUmask: --umask sets the mode of the socket file taipan
// creates.
func TestUnixSocketUmask(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		umask string
		want  os.FileMode
	}{{"077", 0o700}, {"002", 0o775}} {
		sock := filepath.Join(t.TempDir(), "app.sock")
		startTestApp(t, "-w", "1", "-b", "unix:"+sock, "--umask", tc.umask)
		st, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != tc.want {
			t.Errorf("--umask %s: socket mode %v, want %v", tc.umask, st.Mode(), tc.want)
		}
		resp, err := unixClient(sock).Get("http://unix/pid")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
}

// TestInheritedSockets: taipan serves a listening socket it inherits, named
// with fd://N, or passed by systemd socket activation (LISTEN_FDS,
// LISTEN_PID) when no --bind is given.
func TestInheritedSockets(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"fd", "systemd"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		ln.Close() // the duplicate in f stays open and listening
		args := []string{"--python", pythonPath(), "-w", "1", "--chdir", appsDir(t), "testapp:app"}
		var cmd *exec.Cmd
		if mode == "fd" {
			cmd = exec.Command(taipanBin, append(args, "-b", "fd://3")...)
		} else {
			// systemd sets LISTEN_PID to the pid of the process it execs; a
			// shell that execs taipan keeps its pid, $$.
			cmd = exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`, taipanBin)
			cmd.Args = append(cmd.Args, args...)
		}
		cmd.ExtraFiles = []*os.File{f} // becomes fd 3
		var stderr lockedBuffer
		cmd.Stderr = &stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		addr := ln.Addr().String()
		ok := pollUntil(30*time.Second, func() bool {
			resp, err := http.Get("http://" + addr + "/pid")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if !ok {
			t.Fatalf("%s: the inherited socket was not served:\n%s", mode, stderr.String())
		}
		if mode == "systemd" && strings.Contains(stderr.String(), "127.0.0.1:8000") {
			t.Errorf("systemd: taipan also bound the default address:\n%s", stderr.String())
		}
	}
}

// TestReusePortAndBacklog: with --reuse-port two taipans share a port and
// both serve; without it the second fails with a clear message. --backlog
// reaches listen(2) (ss shows it as the listener's Send-Q).
func TestReusePortAndBacklog(t *testing.T) {
	t.Parallel()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a := startTestApp(t, "-w", "1", "-b", addr, "--reuse-port", "--backlog", "77")
	b := startTestApp(t, "-w", "1", "-b", addr, "--reuse-port")
	pids := map[string]bool{}
	for i := 0; i < 200 && len(pids) < 2; i++ {
		c, err := net.Dial("tcp", addr) // a new connection each time: the kernel picks a listener
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		body, _ := io.ReadAll(c)
		c.Close()
		if i := strings.LastIndex(string(body), "\r\n\r\n"); i >= 0 {
			pids[strings.TrimSpace(string(body[i+4:]))] = true
		}
	}
	if len(pids) != 2 {
		t.Errorf("200 connections reached %d server(s) (%v), want both", len(pids), pids)
	}
	if out, err := exec.Command("ss", "-Hltn", "sport = :"+strings.Split(addr, ":")[1]).Output(); err == nil {
		if !strings.Contains(string(out), " 77 ") {
			t.Errorf("--backlog 77: ss shows\n%s", out)
		}
	} else {
		t.Logf("ss not available (%v); backlog not checked", err)
	}
	_, _ = a, b

	code, out := runTaipan(t, 20*time.Second, "--python", pythonPath(), "-w", "1", "-b", addr)
	if code == 0 || !strings.Contains(out, "cannot listen on "+addr) || !strings.Contains(out, "address already in use") {
		t.Errorf("a second taipan without --reuse-port: exit %d\n%s", code, out)
	}
}

// lockedBuffer is a buffer a process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
