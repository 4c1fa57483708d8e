package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The configuration tests run taipan in a directory of their own, with
// settings from a config file and TAIPAN_* variables instead of the flags
// Start adds.

// writeConfig writes a file into dir; %PYTHON% and %APPS% in content become
// the test interpreter and e2e/apps.
func writeConfig(t *testing.T, dir, name, content string) {
	t.Helper()
	content = strings.NewReplacer("%PYTHON%", pythonPath(), "%APPS%", appsDir(t)).Replace(content)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// configCommand is taipan run in dir with env added to the test's own
// environment.
func configCommand(dir string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(taipanBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// startIn starts taipan in dir, expecting it to serve on addr (which the
// test has configured somehow), and waits until it does.
func startIn(t *testing.T, dir, addr string, env []string, args ...string) *Server {
	t.Helper()
	s := &Server{t: t, exited: make(chan struct{}), Addr: addr, URL: "http://" + addr}
	s.cmd = configCommand(dir, env, args...)
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
	if err := s.waitReady(30 * time.Second); err != nil {
		s.Stop()
		t.Fatalf("taipan did not become ready: %v\nstderr:\n%s", err, s.Stderr())
	}
	return s
}

// runIn runs taipan to completion in dir and returns its exit code, stdout
// and stderr.
func runIn(t *testing.T, dir string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := configCommand(dir, env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("taipan %v did not exit; stderr:\n%s", args, stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

func TestConfigFileAndEnvironment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	writeConfig(t, dir, "taipan.toml", `
app = "testapp:app"
python = "%PYTHON%"
pythonpath = ["%APPS%"]
workers = 3
bind = "127.0.0.1:1"   # the environment's wins
env = ["TAIPAN_TEST_FROM=file"]
`)
	s := startIn(t, dir, addr, []string{
		"TAIPAN_BIND=" + addr,
		`TAIPAN_ENV=TAIPAN_TEST_FROM=env,TAIPAN_TEST_LIST=a\,b`,
	}, "--config", "taipan.toml")

	if !s.WaitLog("Using 3 workers", 10*time.Second) {
		t.Fatalf("workers from the file not used; log:\n%s", s.Stderr())
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(s.WorkerPids()) != 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if pids := s.WorkerPids(); len(pids) != 3 {
		t.Errorf("worker processes %v, want 3", pids)
	}
	var env struct {
		Env map[string]string `json:"env"`
	}
	httpGetJSON(t, s, "/environ", &env)
	if env.Env["TAIPAN_TEST_FROM"] != "env" || env.Env["TAIPAN_TEST_LIST"] != "a,b" {
		t.Errorf("TAIPAN_ENV should replace the file's env: worker sees %v", env.Env)
	}
}

func TestConfigPyprojectAndPrintConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeConfig(t, dir, "pyproject.toml", `
[project]
name = "mysite"

[tool.taipan]
app = "testapp:app"
python = "%PYTHON%"
workers = 5
max_requests = 100
`)
	env := []string{"TAIPAN_MAX_REQUESTS=9"}
	start := time.Now()
	code, out, errOut := runIn(t, dir, env, "--print-config", "-b", "127.0.0.1:1234")
	if code != 0 {
		t.Fatalf("exit %d; stderr %q", code, errOut)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("--print-config took %v: it should start nothing", d)
	}
	lines := map[string]string{} // setting → its line
	for _, l := range strings.Split(out, "\n") {
		if name, _, ok := strings.Cut(l, " = "); ok {
			lines[name] = l
		}
	}
	for name, want := range map[string][]string{
		"app":          {`"testapp:app"`, "# pyproject.toml"},
		"workers":      {"= 5", "# pyproject.toml"},
		"max-requests": {"= 9", "# env TAIPAN_MAX_REQUESTS"},
		"bind":         {`["127.0.0.1:1234"]`, "# flag"},
		"timeout":      {"= 30.0", "# default"},
		"python":       {pythonPath(), "# pyproject.toml"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[name], w) {
				t.Errorf("%s: line %q lacks %q; output:\n%s", name, lines[name], w, out)
			}
		}
	}

	code, out, errOut = runIn(t, dir, env, "--print-config=json")
	if code != 0 {
		t.Fatalf("json: exit %d; stderr %q", code, errOut)
	}
	var settings map[string]struct {
		Value  any    `json:"value"`
		Source string `json:"source"`
	}
	if err := json.Unmarshal([]byte(out), &settings); err != nil {
		t.Fatalf("--print-config=json: %v\n%s", err, out)
	}
	if w := settings["workers"]; w.Value != 5.0 || w.Source != "pyproject.toml" {
		t.Errorf("workers: %+v", w)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		file   string // taipan.toml, given with --config
		env    []string
		want   string
		noFile bool
	}{
		{name: "unknown key", file: "wrokers = 2\n", want: `taipan.toml: unknown key "wrokers"`},
		{name: "bad type", file: `workers = "four"` + "\n", want: `taipan.toml: workers: want an integer, got "four"`},
		{name: "malformed", file: "workers = 2\nthreads = = 3\n", want: "taipan.toml:2: "},
		{name: "bad value", file: "workers = 0\n", want: "--workers from taipan.toml"},
		{name: "unknown variable", env: []string{"TAIPAN_WROKERS=2"}, want: "TAIPAN_WROKERS", noFile: true},
		{name: "bad variable", env: []string{"TAIPAN_WORKERS=four"}, want: `env TAIPAN_WORKERS: want an integer, got "four"`, noFile: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"--python", pythonPath()}
			if !tc.noFile {
				writeConfig(t, dir, "taipan.toml", tc.file)
				args = append(args, "--config", "taipan.toml")
			}
			code, out, errOut := runIn(t, dir, tc.env, args...)
			if code != 2 {
				t.Errorf("exit %d, want 2; stderr %q", code, errOut)
			}
			if out != "" || strings.Count(strings.TrimRight(errOut, "\n"), "\n") != 0 {
				t.Errorf("want one line on stderr, got stdout %q stderr %q", out, errOut)
			}
			if !strings.HasPrefix(errOut, "taipan: ") || !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q, want %q in it", errOut, tc.want)
			}
		})
	}
}

// TestConfigPrintConfigReadsBack saves --print-config's output as a
// config file and reads it back: with -k gevent, the printed threads
// used to be --worker-connections, which --threads then refused.
func TestConfigPrintConfigReadsBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	args := []string{"--python", pythonPath(), "-k", "gevent", "--worker-connections", "5000", "testapp:app"}
	code, printed, errOut := runIn(t, dir, nil, append(args, "--print-config")...)
	if code != 0 {
		t.Fatalf("exit %d; stderr %q", code, errOut)
	}
	writeConfig(t, dir, "gv.toml", printed)
	code, again, errOut := runIn(t, dir, nil, "--config", "gv.toml", "--print-config")
	if code != 0 {
		t.Fatalf("reading the printed config back: exit %d; stderr %q\n%s", code, errOut, printed)
	}
	values := func(out string) []string {
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if v, _, _ := strings.Cut(l, "#"); strings.Contains(v, " = ") {
				lines = append(lines, strings.TrimSpace(v))
			}
		}
		return lines
	}
	if a, b := strings.Join(values(printed), "\n"), strings.Join(values(again), "\n"); a != b {
		t.Errorf("settings differ once read back:\n%s\n--- read back:\n%s", a, b)
	}
	for _, want := range []string{`worker-class = "gevent"`, "worker-connections = 5000", "threads = 1"} {
		if !strings.Contains(printed, want) {
			t.Errorf("output lacks %q:\n%s", want, printed)
		}
	}
}

// TestConfigKeepAliveZero checks --keep-alive 0 as gunicorn has it: no
// keep-alive, each response says Connection: close and the connection
// ends, rather than the default 5 s it silently meant.
func TestConfigKeepAliveZero(t *testing.T) {
	t.Parallel()
	for _, keepAlive := range []string{"0", "5"} {
		s := startTestApp(t, "-w", "1", "--keep-alive", keepAlive)
		c := dialRaw(t, s.Addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, _ := ReadResponse(t, br, "GET")
		if resp.StatusCode != 200 {
			t.Fatalf("--keep-alive %s: status %d", keepAlive, resp.StatusCode)
		}
		if want := keepAlive == "0"; resp.Close != want {
			t.Errorf("--keep-alive %s: Connection: close is %v, want %v (header %q)", keepAlive, resp.Close, want, resp.Header.Get("Connection"))
		}
		if keepAlive != "0" {
			continue
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := br.ReadByte(); err != io.EOF {
			t.Errorf("--keep-alive 0: connection still open after the response (read %v, %v)", n, err)
		}
	}
}
