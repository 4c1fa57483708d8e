// Package e2e runs the real taipan binary with real Python workers and talks
// to it over loopback with real clients. Nothing is mocked.
//
// The interpreter is /usr/bin/python3 (Debian's, which has Flask and Django)
// unless TAIPAN_TEST_PYTHON names another.
package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var taipanBin string // built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "taipan-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	taipanBin = filepath.Join(dir, "taipan")
	build := exec.Command("go", "build", "-o", taipanBin, "../cmd/taipan")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as shipped: static, no cgo
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building taipan:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// pythonPath is the interpreter the tests give taipan.
func pythonPath() string {
	if p := os.Getenv("TAIPAN_TEST_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

// appsDir is the directory of the test apps (e2e/apps).
func appsDir(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "apps")
}

// requirePython skips the test when a Python module is missing, saying how
// to install it; scripts/deps installs everything the suite needs.
func requirePython(t testing.TB, module, pkg string) {
	t.Helper()
	if err := exec.Command(pythonPath(), "-c", "import "+module).Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python module %s missing in CI (apt-get install %s)", module, pkg)
		}
		t.Skipf("python module %s not installed (apt-get install %s)", module, pkg)
	}
}

// Server is a running taipan process.
type Server struct {
	t    testing.TB
	cmd  *exec.Cmd
	Addr string // host:port of the first TCP bind
	URL  string // http://Addr

	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	exited chan struct{}
	err    error
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lockedWriter lets the process write its output while tests read it.
type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// Start runs taipan with args plus --python and a -b on a free port (unless
// args already has -b), and waits until it accepts connections. The server
// is stopped when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	s := startProcess(t, args...)
	if err := s.waitReady(30 * time.Second); err != nil {
		s.Stop()
		t.Fatalf("taipan did not become ready: %v\nstderr:\n%s", err, s.Stderr())
	}
	return s
}

// startProcess runs taipan without waiting for readiness.
func startProcess(t testing.TB, args ...string) *Server {
	t.Helper()
	full := []string{"--python", pythonPath()}
	hasBind := false
	for _, a := range args {
		if a == "-b" || a == "--bind" || strings.HasPrefix(a, "--bind=") {
			hasBind = true
		}
	}
	s := &Server{t: t, exited: make(chan struct{})}
	if !hasBind {
		s.Addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		full = append(full, "-b", s.Addr)
	} else {
		for i, a := range args {
			if (a == "-b" || a == "--bind") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "unix:") {
				s.Addr = args[i+1]
				break
			}
		}
	}
	s.URL = "http://" + s.Addr
	full = append(full, args...)
	s.cmd = exec.Command(taipanBin, full...)
	s.cmd.Stdout = lockedWriter{&s.mu, &s.stdout}
	s.cmd.Stderr = lockedWriter{&s.mu, &s.stderr}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start taipan: %v", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("taipan exited: %v", s.err)
		default:
		}
		if s.Addr == "" {
			if strings.Contains(s.Stderr(), "Listening at") {
				return nil
			}
		} else if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.Close()
			if strings.Contains(s.Stderr(), "Listening at") {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %v", timeout)
}

// Stderr is everything taipan wrote to stderr so far (the error log).
func (s *Server) Stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// Stdout is everything taipan wrote to stdout so far.
func (s *Server) Stdout() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stdout.String()
}

// WaitLog waits until the error log contains substr.
func (s *Server) WaitLog(substr string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(s.Stderr(), substr) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Signal sends sig to the taipan process.
func (s *Server) Signal(sig syscall.Signal) {
	s.cmd.Process.Signal(sig)
}

// Wait waits for taipan to exit and returns its exit code (-1 on timeout).
func (s *Server) Wait(timeout time.Duration) int {
	select {
	case <-s.exited:
		if s.cmd.ProcessState == nil {
			return -1
		}
		return s.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		return -1
	}
}

// Stop ends taipan (SIGTERM, then SIGKILL of its process group) and waits.
// It is safe to call more than once.
func (s *Server) Stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
}

// WorkerPids lists the pids of taipan's Python workers (its children).
func (s *Server) WorkerPids() []int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", s.cmd.Process.Pid, s.cmd.Process.Pid))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		var pid int
		fmt.Sscan(f, &pid)
		pids = append(pids, pid)
	}
	// Children may live on other threads' lists too.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", s.cmd.Process.Pid))
	seen := map[int]bool{}
	for _, p := range pids {
		seen[p] = true
	}
	for _, tf := range tasks {
		data, _ := os.ReadFile(tf)
		for _, f := range strings.Fields(string(data)) {
			var pid int
			fmt.Sscan(f, &pid)
			if !seen[pid] {
				seen[pid] = true
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// Pid is taipan's own pid.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Get fetches path with a plain client and returns status and body.
func (s *Server) Get(t testing.TB, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(s.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// Raw sends raw bytes on a new connection, half-closes nothing, and returns
// everything received until the server closes or timeout passes.
func (s *Server) Raw(t testing.TB, raw string, timeout time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	out, _ := io.ReadAll(c)
	return string(out)
}

// ReadResponse reads one response from br (for keep-alive and pipelining tests).
func ReadResponse(t testing.TB, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading response body: %v", err)
	}
	return resp, string(body)
}

// writeApp writes a Python module into dir.
func writeApp(t testing.TB, dir, name, src string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runTaipan runs taipan to completion (for CLI errors) and returns exit
// code and combined output.
func runTaipan(t testing.TB, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(taipanBin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("taipan %v did not exit within %v; output:\n%s", args, timeout, out.String())
	}
	return cmd.ProcessState.ExitCode(), out.String()
}
