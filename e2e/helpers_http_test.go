package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testTimeout bounds every single network operation of these tests.
const testTimeout = 15 * time.Second

// startTestApp runs taipan serving e2e/apps/testapp.py with extra args.
func startTestApp(t testing.TB, args ...string) *Server {
	t.Helper()
	full := append([]string{"--pythonpath", appsDir(t)}, args...)
	full = append(full, "testapp:app")
	return Start(t, full...)
}

// client is an http.Client with an overall timeout and no connection reuse
// between tests.
func timeoutClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DisableCompression: true,
			DialContext:        (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		},
	}
}

// fetch does one request with a deadline and returns the response (body
// already read into the returned string).
func httpDo(t testing.TB, method, url string, body io.Reader, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := timeoutClient(testTimeout)
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, string(b)
}

// get is a GET with a deadline; returns status and body.
func httpGet(t testing.TB, s *Server, path string) (int, string) {
	t.Helper()
	resp, body := httpDo(t, "GET", s.URL+path, nil, nil)
	return resp.StatusCode, body
}

// getJSON GETs path, requires 200, and decodes the JSON body into v.
func httpGetJSON(t testing.TB, s *Server, path string, v any) {
	t.Helper()
	code, body := httpGet(t, s, path)
	if code != 200 {
		t.Fatalf("GET %s: status %d, body %q", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: bad JSON %q: %v", path, body, err)
	}
}

// dial opens a raw TCP connection with a deadline for everything on it.
func dialRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { c.Close() })
	return c
}

// rawResponse sends raw on a fresh connection and parses the first response.
func rawResponse(t testing.TB, s *Server, raw, method string) (*http.Response, string) {
	t.Helper()
	c := dialRaw(t, s.Addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return ReadResponse(t, bufio.NewReader(c), method)
}

// statusOfRaw sends raw and returns the status code of whatever came back
// (0 when nothing parseable came back).
func statusOfRaw(t testing.TB, s *Server, raw string) (int, string) {
	t.Helper()
	out := s.Raw(t, raw, 5*time.Second)
	var code int
	if _, err := fmt.Sscanf(out, "HTTP/1.1 %d", &code); err != nil {
		fmt.Sscanf(out, "HTTP/1.0 %d", &code)
	}
	return code, out
}

// procStatusKB reads a field (VmRSS, VmHWM) of /proc/PID/status in kB.
func procStatusKB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// pidAlive reports whether /proc/PID exists (and is not a zombie).
func pidAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// State is the field after the ")" of the command name.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// waitFile waits until path exists and returns its content.
func waitMarker(path string, timeout time.Duration) (string, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return string(b), true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", false
}

// waitFor polls cond until it holds or timeout passes.
func pollUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// unixClient is an http.Client that dials the unix socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{
		Timeout: testTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		},
	}
}

// workerPid asks the testapp for the pid of the worker that answered.
func workerPid(t testing.TB, s *Server) int {
	t.Helper()
	code, body := httpGet(t, s, "/pid")
	if code != 200 {
		t.Fatalf("/pid: %d %q", code, body)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(body))
	if err != nil {
		t.Fatalf("/pid: %q", body)
	}
	return pid
}

func jsonUnmarshal(s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("bad JSON %q: %w", s, err)
	}
	return nil
}
