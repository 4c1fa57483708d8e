package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func freeAddr(t testing.TB) string {
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

func TestCLIVersion(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{"--version", "-v"} {
		code, out := runTaipan(t, 5*time.Second, flag)
		if code != 0 {
			t.Errorf("%s: exit %d, want 0; output %q", flag, code, out)
		}
		if !regexp.MustCompile(`^taipan \d+\.\d+\.\d+\n$`).MatchString(out) {
			t.Errorf("%s: output %q, want 'taipan X.Y.Z'", flag, out)
		}
	}
}

func TestCLIHelp(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{"--help", "-h"} {
		code, out := runTaipan(t, 5*time.Second, flag)
		if code != 0 {
			t.Errorf("%s: exit %d, want 0", flag, code)
		}
		for _, want := range []string{"Usage: taipan", "--bind", "--workers", "--python", "--root-path", "--access-logfile", "--limit-request-body"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %q:\n%s", flag, want, out)
			}
		}
	}
}

func TestCLIBadFlag(t *testing.T) {
	t.Parallel()
	cases := [][]string{
		{"--no-such-flag"},
		{"--workers", "0"},
		{"--workers", "many"},
		{"-b", "nonsense:port"},
		{"--log-level", "loud"},
		{"--root-path", "noslash"},
		{"-e", "NOEQUALS"},
		{"bad-module!:app"},
		{"a:b", "c:d"},
	}
	for _, args := range cases {
		start := time.Now()
		code, out := runTaipan(t, 5*time.Second, append([]string{"--python", pythonPath()}, args...)...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2; output %q", args, code, out)
		}
		if n := strings.Count(strings.TrimRight(out, "\n"), "\n"); n != 0 || out == "" {
			t.Errorf("%v: want a one-line message, got %q", args, out)
		}
		if !strings.HasPrefix(out, "taipan: ") {
			t.Errorf("%v: message %q does not start with 'taipan: '", args, out)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%v: took %v to reject", args, d)
		}
	}
	// The unknown flag is named in the message.
	_, out := runTaipan(t, 5*time.Second, "--no-such-flag")
	if !strings.Contains(out, "no-such-flag") {
		t.Errorf("message %q does not name the unknown flag", out)
	}
}

// TestCLIOldInterpreter: an interpreter older than 3.9 is refused with one
// line that names it and its version (Python 2.7 and 3.6 used to stop at a
// SyntaxError in taipan's own worker module). The stand-in answers the
// version question as the real one would.
func TestCLIOldInterpreter(t *testing.T) {
	t.Parallel()
	old := filepath.Join(t.TempDir(), "python3.6")
	if err := os.WriteFile(old, []byte("#!/bin/sh\nprintf 3.6.15\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out := runTaipan(t, 10*time.Second, "--python", old, "-b", freeAddr(t), "--pythonpath", appsDir(t), "testapp:app")
	want := "taipan: " + old + " is Python 3.6.15; taipan needs Python 3.9 or newer"
	if code != 2 || strings.TrimSpace(out) != want {
		t.Errorf("exit %d, output %q; want 2 and %q", code, out, want)
	}
}

func TestCLIMissingInterpreter(t *testing.T) {
	t.Parallel()
	code, out := runTaipan(t, 5*time.Second, "--python", "/nonexistent/python", "-b", freeAddr(t), "--pythonpath", appsDir(t), "testapp:app")
	if code == 0 {
		t.Fatalf("exit 0 with a missing interpreter; output %q", out)
	}
	if !strings.Contains(out, "/nonexistent/python") || !strings.Contains(strings.ToLower(out), "not found") {
		t.Errorf("message does not explain the missing interpreter: %q", out)
	}
}

// TestCLIAppNotCallable: a module whose app is not callable is refused at
// start, whether the callable is named or found by its default name;
// unnamed, it used to be served, and every request failed.
func TestCLIAppNotCallable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeApp(t, dir, "notcall.py", "app = 42\n")
	for _, spec := range []string{"notcall", "notcall:app"} {
		code, out := runTaipan(t, 15*time.Second, "--python", pythonPath(), "-b", freeAddr(t), "-w", "1", "--pythonpath", dir, spec)
		if code == 0 || !strings.Contains(out, "'notcall:app' is not callable (got int)") {
			t.Errorf("%s: exit %d, output:\n%s", spec, code, out)
		}
	}
}

func TestCLIAppImportFails(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ src, want string }{
		"importerr": {"import definitely_not_a_module_xyz\n", "definitely_not_a_module_xyz"},
		"syntaxerr": {"def app(environ, start_response)\n    return []\n", "SyntaxError"},
		"raiseserr": {"def helper_that_fails():\n    raise RuntimeError('app init exploded 42')\nhelper_that_fails()\n", "app init exploded 42"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeApp(t, dir, name+".py", c.src)
			start := time.Now()
			code, out := runTaipan(t, 15*time.Second, "--python", pythonPath(), "-b", freeAddr(t), "-w", "2",
				"--pythonpath", dir, name+":app")
			if code == 0 {
				t.Errorf("exit 0 for an app that fails to import")
			}
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("took %v to give up", d)
			}
			// A SyntaxError's report is its location, not a call stack.
			if name != "syntaxerr" && !strings.Contains(out, "Traceback (most recent call last)") {
				t.Errorf("no Python traceback in the output:\n%s", out)
			}
			if name == "syntaxerr" && (!strings.Contains(out, "syntaxerr.py") || !strings.Contains(out, "line 1")) {
				t.Errorf("SyntaxError report lacks the file and line:\n%s", out)
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("output lacks %q:\n%s", c.want, out)
			}
			if name == "raiseserr" && !strings.Contains(out, "helper_that_fails") {
				t.Errorf("traceback lacks the function name:\n%s", out)
			}
		})
	}
}

func TestCLIModuleWithoutApp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeApp(t, dir, "noapp.py", "def something_else(environ, start_response):\n    return []\n")
	code, out := runTaipan(t, 15*time.Second, "--python", pythonPath(), "-b", freeAddr(t), "-w", "1", "--pythonpath", dir, "noapp")
	if code == 0 {
		t.Fatalf("exit 0 for a module without application/app")
	}
	if !strings.Contains(out, "application") || !strings.Contains(out, "'app'") {
		t.Errorf("message does not say which names were looked for:\n%s", out)
	}
	// A named callable that does not exist.
	code, out = runTaipan(t, 15*time.Second, "--python", pythonPath(), "-b", freeAddr(t), "-w", "1", "--pythonpath", dir, "noapp:missing")
	if code == 0 || !strings.Contains(out, "missing") {
		t.Errorf("noapp:missing: exit %d, output:\n%s", code, out)
	}
}

const appFuncs = `
def make(text):
    def wsgi(environ, start_response):
        body = text.encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    return wsgi
`

func TestCLIDefaultCallable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeApp(t, dir, "both.py", appFuncs+"application = make('from-application')\napp = make('from-app')\n")
	writeApp(t, dir, "onlyapp.py", appFuncs+"app = make('only-app')\n")
	t.Run("application-first", func(t *testing.T) {
		t.Parallel()
		s := Start(t, "-w", "1", "--pythonpath", dir, "both")
		if code, body := httpGet(t, s, "/"); code != 200 || body != "from-application" {
			t.Errorf("got %d %q, want 200 from-application", code, body)
		}
	})
	t.Run("then-app", func(t *testing.T) {
		t.Parallel()
		s := Start(t, "-w", "1", "--pythonpath", dir, "onlyapp")
		if code, body := httpGet(t, s, "/"); code != 200 || body != "only-app" {
			t.Errorf("got %d %q, want 200 only-app", code, body)
		}
	})
	t.Run("explicit", func(t *testing.T) {
		t.Parallel()
		s := Start(t, "-w", "1", "--pythonpath", dir, "both:app")
		if code, body := httpGet(t, s, "/"); code != 200 || body != "from-app" {
			t.Errorf("got %d %q, want 200 from-app", code, body)
		}
	})
}

func TestCLIFactory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeApp(t, dir, "factory.py", appFuncs+"def create_app(name='factory-default'):\n    return make(name)\n")
	t.Run("noargs", func(t *testing.T) {
		t.Parallel()
		s := Start(t, "-w", "1", "--pythonpath", dir, "factory:create_app()")
		if code, body := httpGet(t, s, "/"); code != 200 || body != "factory-default" {
			t.Errorf("got %d %q", code, body)
		}
	})
	t.Run("args", func(t *testing.T) {
		t.Parallel()
		s := Start(t, "-w", "1", "--pythonpath", dir, "factory:create_app('given-arg')")
		if code, body := httpGet(t, s, "/"); code != 200 || body != "given-arg" {
			t.Errorf("got %d %q", code, body)
		}
	})
}

func TestCLIChdir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeApp(t, dir, "cwdapp.py", `import os
def app(environ, start_response):
    body = os.getcwd().encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
`)
	// No --pythonpath: the module is importable only because of --chdir.
	s := Start(t, "-w", "1", "--chdir", dir, "cwdapp")
	code, body := httpGet(t, s, "/")
	want, _ := filepath.EvalSymlinks(dir)
	got, _ := filepath.EvalSymlinks(body)
	if code != 200 || got != want {
		t.Errorf("got %d %q, want cwd %q", code, body, dir)
	}
	// A --chdir that is not a directory is a usage error.
	c, out := runTaipan(t, 5*time.Second, "--python", pythonPath(), "--chdir", filepath.Join(dir, "nope"), "cwdapp")
	if c != 2 || !strings.Contains(out, "nope") {
		t.Errorf("bad --chdir: exit %d, output %q", c, out)
	}
}

func TestCLIPythonPath(t *testing.T) {
	t.Parallel()
	a, b := t.TempDir(), t.TempDir()
	writeApp(t, a, "pp_main.py", "from pp_helper import TEXT\n"+appFuncs+"app = make(TEXT)\n")
	writeApp(t, b, "pp_helper.py", "TEXT = 'helper-from-second-dir'\n")
	s := Start(t, "-w", "1", "--pythonpath", a+","+b, "pp_main")
	if code, body := httpGet(t, s, "/"); code != 200 || body != "helper-from-second-dir" {
		t.Errorf("got %d %q", code, body)
	}
}

func TestCLIEnv(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1", "-e", "TAIPAN_TEST_ONE=first value", "--env", "TAIPAN_TEST_TWO=a=b")
	var env struct {
		Env map[string]string `json:"env"`
	}
	httpGetJSON(t, s, "/environ", &env)
	if env.Env["TAIPAN_TEST_ONE"] != "first value" || env.Env["TAIPAN_TEST_TWO"] != "a=b" {
		t.Errorf("worker os.environ: %v", env.Env)
	}
}

type environDump struct {
	Str          map[string]string `json:"str"`
	Types        map[string]string `json:"types"`
	Latin1Hex    map[string]string `json:"latin1_hex"`
	Version      []int             `json:"wsgi.version"`
	VersionTuple bool              `json:"wsgi.version_is_tuple"`
	Multithread  bool              `json:"wsgi.multithread"`
	Multiprocess bool              `json:"wsgi.multiprocess"`
	RunOnce      bool              `json:"wsgi.run_once"`
	URLScheme    string            `json:"wsgi.url_scheme"`
	PathLatin1   string            `json:"path_info_latin1"`
	HasRead      bool              `json:"has_read"`
	ErrorsWrite  bool              `json:"errors_has_write"`
	FileWrapper  bool              `json:"file_wrapper_callable"`
	Env          map[string]string `json:"env"`
}

func TestCLIRootPath(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1", "--root-path", "/prefix/")
	var e environDump
	httpGetJSON(t, s, "/prefix/environ/sub?x=1", &e)
	if e.Str["SCRIPT_NAME"] != "/prefix" || e.Str["PATH_INFO"] != "/environ/sub" {
		t.Errorf("SCRIPT_NAME %q PATH_INFO %q, want /prefix and /environ/sub", e.Str["SCRIPT_NAME"], e.Str["PATH_INFO"])
	}
	if e.Str["QUERY_STRING"] != "x=1" {
		t.Errorf("QUERY_STRING %q", e.Str["QUERY_STRING"])
	}
	// The prefix is stripped only on a segment boundary.
	code, body := httpGet(t, s, "/prefixenviron")
	if code != 404 || !strings.Contains(body, "/prefixenviron") {
		t.Errorf("/prefixenviron: %d %q (prefix must not be stripped mid-segment)", code, body)
	}
}

func TestCLIMultipleBinds(t *testing.T) {
	t.Parallel()
	a1, a2 := freeAddr(t), freeAddr(t)
	sock := filepath.Join(t.TempDir(), "t.sock")
	s := startTestApp(t, "-w", "1", "-b", a1, "-b", a2, "-b", "unix:"+sock)
	for _, a := range []string{a1, a2} {
		resp, body := httpDo(t, "GET", "http://"+a+"/environ", nil, nil)
		var e environDump
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", a, resp.StatusCode)
		}
		if err := jsonUnmarshal(body, &e); err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(a)
		if e.Str["SERVER_PORT"] != port {
			t.Errorf("via %s: SERVER_PORT %q, want %s", a, e.Str["SERVER_PORT"], port)
		}
	}
	c := unixClient(sock)
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://unix/pid")
	if err != nil {
		t.Fatalf("GET over unix socket: %v", err)
	}
	b := make([]byte, 64)
	n, _ := resp.Body.Read(b)
	resp.Body.Close()
	if resp.StatusCode != 200 || n == 0 {
		t.Errorf("unix socket: status %d body %q", resp.StatusCode, b[:n])
	}
	if !strings.Contains(s.Stderr(), "unix:"+sock) {
		t.Errorf("log does not mention the unix listener:\n%s", s.Stderr())
	}
}

func TestCLIUnixOnly(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "only.sock")
	s := startTestApp(t, "-w", "1", "-b", "unix:"+sock)
	_ = s
	c := unixClient(sock)
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://localhost/status?code=418")
	if err != nil {
		t.Fatalf("GET over unix socket: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 418 {
		t.Errorf("status %d, want 418", resp.StatusCode)
	}
}

func TestCLIIPv6(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	addr := fmt.Sprintf("[::1]:%d", port)
	s := startTestApp(t, "-w", "1", "-b", addr)
	var e environDump
	httpGetJSON(t, s, "/environ", &e)
	if e.Str["REMOTE_ADDR"] != "::1" {
		t.Errorf("REMOTE_ADDR %q, want ::1", e.Str["REMOTE_ADDR"])
	}
}

// --- the built-in demo ---------------------------------------------------------

func TestDemo(t *testing.T) {
	t.Parallel()
	s := Start(t, "-w", "2")
	t.Run("home", func(t *testing.T) {
		resp, body := httpDo(t, "GET", s.URL+"/", nil, nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("status %d content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, want := range []string{"<html", "taipan", "hello:app", "def app(environ, start_response)"} {
			if !strings.Contains(body, want) {
				t.Errorf("home page lacks %q", want)
			}
		}
	})
	t.Run("fib", func(t *testing.T) {
		code, body := httpGet(t, s, "/fib?n=20")
		if code != 200 || !strings.Contains(body, "6765") {
			t.Errorf("/fib?n=20: %d %q, want 6765", code, body)
		}
	})
	t.Run("sleep", func(t *testing.T) {
		start := time.Now()
		code, _ := httpGet(t, s, "/sleep?ms=50")
		if d := time.Since(start); code != 200 || d < 50*time.Millisecond {
			t.Errorf("/sleep?ms=50: %d after %v", code, d)
		}
	})
	t.Run("bad-param", func(t *testing.T) {
		if code, body := httpGet(t, s, "/fib?n=abc"); code != 400 {
			t.Errorf("/fib?n=abc: %d %q, want 400", code, body)
		}
		if code, _ := httpGet(t, s, "/fib?n=1000"); code != 400 {
			t.Errorf("/fib?n=1000: %d, want 400", code)
		}
	})
	if !strings.Contains(s.Stderr(), "built-in demo") {
		t.Errorf("log does not say the demo is served:\n%s", s.Stderr())
	}
}

// TestCLIBadValuesFailAlike runs values that used to be accepted (and then
// wrapped around, panicked, or failed only once taipan had started) both
// with --print-config and as a start: each must be refused the same way,
// with one line and exit 2, before anything starts.
func TestCLIBadValuesFailAlike(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--max-requests", "5", "--max-requests-jitter", "9223372036854775807"}, "--max-requests-jitter must be at most"},
		{[]string{"-t", "nan"}, `want a number of seconds from 0 to 1000000000, got "nan"`},
		{[]string{"--graceful-timeout", "1e300"}, `got "1e300"`},
		{[]string{"--keep-alive", "inf"}, `got "inf"`},
		{[]string{"--limit-request-body", "18014398509481985k"}, "too large"},
		{[]string{"--ws-max-size", "18014398509481985k"}, "too large"},
		{[]string{"--max-rss", "17592186044417"}, "--max-rss must be at most"},
		{[]string{"--limit-request-line", "9223372036854775807"}, "--limit-request-line must be between 1 and 1048576"},
		{[]string{"--limit-request-field_size", "9223372036854775807"}, "--limit-request-field_size must be between 1 and 1048576"},
		{[]string{"--tmp-dir", "/nonexistent/taipan-tmp"}, "--tmp-dir: /nonexistent/taipan-tmp: no such file or directory"},
		{[]string{"--header-timeout", "0"}, "--header-timeout must be positive"},
		{[]string{"-k", "gevent", "--threads", "4"}, "--threads does not apply to -k gevent"},
		{[]string{"--forwarded-allow-ips", "notanip"}, `--forwarded-allow-ips: "notanip" is not an IP address`},
		{[]string{"--forwarded-allow-ips", "10.0.0.0/33"}, `"10.0.0.0/33"`},
		{[]string{"--metrics-bind", "garbage"}, `--metrics-bind "garbage": want HOST:PORT`},
		{[]string{"--metrics-bind", "127.0.0.1:99999"}, `bad port "99999"`},
	}
	for _, tc := range cases {
		var first string
		for _, mode := range []string{"--print-config", "start"} {
			args := append([]string{"--python", pythonPath(), "-b", freeAddr(t), "--pythonpath", appsDir(t)}, tc.args...)
			if mode == "--print-config" {
				args = append(args, mode)
			}
			args = append(args, "testapp:app")
			code, out := runTaipan(t, 10*time.Second, args...)
			if code != 2 {
				t.Errorf("%v (%s): exit %d, want 2; output %q", tc.args, mode, code, out)
			}
			if n := strings.Count(strings.TrimRight(out, "\n"), "\n"); n != 0 || !strings.HasPrefix(out, "taipan: ") || !strings.Contains(out, tc.want) {
				t.Errorf("%v (%s): output %q, want one 'taipan: ' line with %q", tc.args, mode, out, tc.want)
			}
			if first == "" {
				first = out
			} else if out != first {
				t.Errorf("%v: --print-config says %q, a start %q", tc.args, first, out)
			}
		}
	}
}

// TestCLIClosedStdoutAndStderr runs taipan with its stdout (the access log)
// and stderr (the error log) piped to a reader that goes away, as in
// `taipan --access-logfile - app | head -n 2`: taipan must keep serving,
// as gunicorn does, instead of dying of SIGPIPE at its next log line.
func TestCLIClosedStdoutAndStderr(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	cmd := exec.Command(taipanBin, "--python", pythonPath(), "-b", addr, "-w", "1", "--access-logfile", "-",
		"--pythonpath", appsDir(t), "testapp:app")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	// Read the error log up to its first lines, then close both pipes.
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Listening at") {
			break
		}
	}
	stdout.Close()
	stderr.Close()
	for i := range 6 {
		path := "/pid"
		if i%2 == 1 {
			path = "/raise" // an error log entry too
		}
		resp, err := timeoutClient(5 * time.Second).Get("http://" + addr + path)
		if err != nil {
			select {
			case <-exited:
				t.Fatalf("request %d: taipan exited (%v) once its output pipes were closed", i, cmd.ProcessState)
			default:
				t.Fatalf("request %d: %v", i, err)
			}
		}
		resp.Body.Close()
		time.Sleep(300 * time.Millisecond) // past the access log's flush
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit %v after SIGTERM, want 0", cmd.ProcessState)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("taipan did not stop on SIGTERM")
	}
}
