package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// inDir runs the test in a fresh working directory, so no pyproject.toml
// but the test's own is found; it returns the directory.
func inDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// environ turns KEY=VALUE pairs into what ParseEnviron takes.
func environ(kv ...string) []string { return kv }

// sourceOf is where --print-config says setting name came from.
func sourceOf(t *testing.T, c *Config, name string) string {
	t.Helper()
	for _, s := range c.Settings {
		if s.Name == name {
			return s.Source
		}
	}
	t.Fatalf("no setting %q in %v", name, c.Settings)
	return ""
}

// wantUsageError checks err is a one-line UsageError containing every want.
func wantUsageError(t *testing.T, err error, want ...string) {
	t.Helper()
	var ue *UsageError
	if !errors.As(err, &ue) {
		t.Fatalf("want a UsageError, got %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("message is not one line: %q", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message %q lacks %q", err, w)
		}
	}
}

func TestPrecedence(t *testing.T) {
	inDir(t)
	py := fakePython(t)
	writeFile(t, "taipan.toml", `
workers = 2
max-requests = 10
threads = 3
`)
	env := environ("TAIPAN_WORKERS=3", "TAIPAN_MAX_REQUESTS=20")
	c, action, err := ParseEnviron([]string{"--python", py, "--config", "taipan.toml", "-w", "4"}, env)
	if err != nil || action != Serve {
		t.Fatal(action, err)
	}
	if c.Workers != 4 || c.MaxRequests != 20 || c.Threads != 3 || c.Backlog != 2048 {
		t.Fatalf("flag > env > file > default broken: workers %d, max-requests %d, threads %d, backlog %d", c.Workers, c.MaxRequests, c.Threads, c.Backlog)
	}
	for name, want := range map[string]string{
		"workers":      "flag",
		"max-requests": "env TAIPAN_MAX_REQUESTS",
		"threads":      "taipan.toml",
		"backlog":      "default",
		"python":       "flag",
	} {
		if got := sourceOf(t, c, name); got != want {
			t.Errorf("%s: source %q, want %q", name, got, want)
		}
	}
	// Without the flag, the environment wins; without both, the file.
	c, _, err = ParseEnviron([]string{"--python", py, "--config", "taipan.toml"}, env)
	if err != nil || c.Workers != 3 {
		t.Fatalf("env should beat file: %v %v", c.Workers, err)
	}
	c, _, err = ParseEnviron([]string{"--python", py, "--config", "taipan.toml"}, nil)
	if err != nil || c.Workers != 2 || sourceOf(t, c, "workers") != "taipan.toml" {
		t.Fatalf("file should beat default: %v %v", c.Workers, err)
	}
}

func TestParseReadsEnvironmentThroughGetenv(t *testing.T) {
	inDir(t)
	py := fakePython(t)
	getenv := func(k string) string {
		return map[string]string{"TAIPAN_WORKERS": "5", "TAIPAN_PYTHON": py, "TAIPAN_NOT_A_SETTING": "x"}[k]
	}
	// Parse cannot list the environment, so the unknown variable passes.
	c, _, err := Parse(nil, getenv)
	if err != nil || c.Workers != 5 || c.Python != py {
		t.Fatalf("%v %v", c, err)
	}
	if got := sourceOf(t, c, "python"); got != "env TAIPAN_PYTHON" {
		t.Errorf("python source %q", got)
	}
}

func TestListsFromEnvironment(t *testing.T) {
	dir := inDir(t)
	py := fakePython(t)
	c, _, err := ParseEnviron([]string{"--python", py, "-w", "3"}, environ(
		"TAIPAN_BIND=127.0.0.1:9001, unix:/tmp/t.sock",
		`TAIPAN_ENV=A=1,B=x\,y,C=back\\slash,D=C:\path`,
		"TAIPAN_PYTHONPATH=one,two",
		"TAIPAN_LANE=/reports=1",
		"TAIPAN_STATIC=/assets="+dir,
	))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Binds, []Bind{{"http", "127.0.0.1:9001"}, {"http", "unix:/tmp/t.sock"}}) || !c.BindsGiven {
		t.Errorf("binds %v", c.Binds)
	}
	if want := []string{"A=1", "B=x,y", `C=back\slash`, `D=C:\path`}; !reflect.DeepEqual(c.Env, want) {
		t.Errorf("env %q, want %q", c.Env, want)
	}
	if !reflect.DeepEqual(c.PythonPath, []string{"one", "two"}) {
		t.Errorf("pythonpath %q", c.PythonPath)
	}
	if !reflect.DeepEqual(c.Lanes, []Lane{{"/reports", 1}}) || !reflect.DeepEqual(c.Static, []Mount{{"/assets", dir}}) {
		t.Errorf("lanes %v static %v", c.Lanes, c.Static)
	}
	// A list on the command line replaces the environment's; it is not merged.
	c, _, err = ParseEnviron([]string{"--python", py, "-b", "127.0.0.1:9002"}, environ("TAIPAN_BIND=127.0.0.1:9001"))
	if err != nil || !reflect.DeepEqual(c.Binds, []Bind{{"http", "127.0.0.1:9002"}}) {
		t.Fatalf("binds %v %v", c.Binds, err)
	}
}

func TestSplitList(t *testing.T) {
	for in, want := range map[string][]string{
		"a,b":           {"a", "b"},
		" a , b ,":      {"a", "b"},
		`a\,b,c`:        {"a,b", "c"},
		`a\\,b`:         {`a\`, "b"},
		`a\b`:           {`a\b`},
		"":              nil,
		`trailing\`:     {`trailing\`},
		`K=V=W,\,lead`:  {"K=V=W", ",lead"},
		"one item only": {"one item only"},
	} {
		if got := splitList(in); !reflect.DeepEqual(got, want) {
			t.Errorf("splitList(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIntegersFromEnvironmentAreDecimal(t *testing.T) {
	inDir(t)
	py := fakePython(t)
	c, _, err := ParseEnviron([]string{"--python", py}, environ("TAIPAN_WORKERS=010"))
	if err != nil || c.Workers != 10 {
		t.Errorf("TAIPAN_WORKERS=010: %d %v, want 10", c.Workers, err)
	}
	if _, _, err := ParseEnviron([]string{"--python", py}, environ("TAIPAN_WORKERS=0x10")); err == nil {
		t.Error("TAIPAN_WORKERS=0x10 accepted")
	}
}

func TestBooleansFromEnvironment(t *testing.T) {
	inDir(t)
	py := fakePython(t)
	for v, want := range map[string]bool{"true": true, "1": true, "YES": true, "on": true, "false": false, "0": false, "no": false, "Off": false} {
		c, _, err := ParseEnviron([]string{"--python", py}, environ("TAIPAN_REUSE_PORT="+v))
		if err != nil || c.ReusePort != want {
			t.Errorf("TAIPAN_REUSE_PORT=%s: %v %v", v, c.ReusePort, err)
		}
	}
	// An empty variable counts as unset.
	c, _, err := ParseEnviron([]string{"--python", py}, environ("TAIPAN_WORKERS="))
	if err != nil || sourceOf(t, c, "workers") != "default" {
		t.Fatalf("empty TAIPAN_WORKERS: %v", err)
	}
}

func TestEnvironmentErrors(t *testing.T) {
	inDir(t)
	py := fakePython(t)
	cases := map[string]struct {
		env  []string
		want []string
	}{
		"unknown":          {environ("TAIPAN_WROKERS=4"), []string{"unknown environment variable TAIPAN_WROKERS", "did you mean TAIPAN_WORKERS?"}},
		"unknown, no hint": {environ("TAIPAN_ZZZ=1"), []string{"TAIPAN_ZZZ", "names no setting"}},
		"bad integer":      {environ("TAIPAN_WORKERS=four"), []string{`env TAIPAN_WORKERS: want an integer, got "four"`}},
		"bad boolean":      {environ("TAIPAN_PRELOAD=maybe"), []string{"env TAIPAN_PRELOAD", `"maybe"`}},
		"bad seconds":      {environ("TAIPAN_TIMEOUT=soon"), []string{"env TAIPAN_TIMEOUT", "seconds"}},
		"bad size":         {environ("TAIPAN_LIMIT_REQUEST_BODY=lots"), []string{"env TAIPAN_LIMIT_REQUEST_BODY", `"lots"`}},
		"nan seconds":      {environ("TAIPAN_TIMEOUT=nan"), []string{"env TAIPAN_TIMEOUT", "from 0 to 1000000000", `"nan"`}},
		"huge seconds":     {environ("TAIPAN_GRACEFUL_TIMEOUT=1e300"), []string{"env TAIPAN_GRACEFUL_TIMEOUT", `"1e300"`}},
		"huge size":        {environ("TAIPAN_WS_MAX_SIZE=18014398509481985k"), []string{"env TAIPAN_WS_MAX_SIZE", "too large"}},
		"huge jitter":      {environ("TAIPAN_MAX_REQUESTS_JITTER=9223372036854775807"), []string{"--max-requests-jitter must be at most", "(--max-requests-jitter from env TAIPAN_MAX_REQUESTS_JITTER)"}},
		"aliases":          {environ("TAIPAN_LOG_FILE=a", "TAIPAN_ERROR_LOGFILE=b"), []string{"TAIPAN_ERROR_LOGFILE and TAIPAN_LOG_FILE"}},
		"bad app":          {environ("TAIPAN_APP=my-app"), []string{"env TAIPAN_APP", "my-app"}},
		"invalid value":    {environ("TAIPAN_WORKERS=0"), []string{"--workers must be at least 1", "(--workers from env TAIPAN_WORKERS)"}},
		"missing config":   {environ("TAIPAN_CONFIG=nope.toml"), []string{"nope.toml", "no such file"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := ParseEnviron([]string{"--python", py}, tc.env)
			wantUsageError(t, err, tc.want...)
		})
	}
	// The test suite's and the benchmarks' own variables are not settings,
	// and not errors.
	if _, _, err := ParseEnviron([]string{"--python", py}, environ("TAIPAN_TEST_PYTHON=/usr/bin/python3", "TAIPAN_BIN=/tmp/taipan", "OTHER=1")); err != nil {
		t.Fatal(err)
	}
	// --help and --version work whatever the environment holds.
	if _, action, err := ParseEnviron([]string{"--help"}, environ("TAIPAN_WROKERS=4")); err != nil || action != ShowHelp {
		t.Fatal(action, err)
	}
}

func TestFileValues(t *testing.T) {
	dir := inDir(t)
	py := fakePython(t)
	writeFile(t, "taipan.toml", `
app = "hello:app"
python = "`+py+`"
bind = "127.0.0.1:9003"          # one string is a list of one
env = ["A=1", "B=x,y"]
max_requests = 7                 # '_' as well as '-'
graceful-timeout = 2.5
keep-alive = 3
limit-request-body = "10m"
body-memory-limit = 4096
preload = true
log-level = "warning"
static = ["/assets=`+dir+`"]
`)
	c, _, err := ParseEnviron([]string{"--config", "taipan.toml"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.App != "hello:app" || c.Python != py || !reflect.DeepEqual(c.Binds, []Bind{{"http", "127.0.0.1:9003"}}) || !reflect.DeepEqual(c.Env, []string{"A=1", "B=x,y"}) {
		t.Errorf("%+v", c)
	}
	if c.MaxRequests != 7 || c.GracefulTimeout != 2500*time.Millisecond || c.KeepAlive != 3*time.Second || c.LimitRequestBody != 10<<20 || c.BodyMemoryLimit != 4096 {
		t.Errorf("%+v", c)
	}
	if !c.Preload || c.LogLevel.String() == "info" || len(c.Static) != 1 {
		t.Errorf("%+v", c)
	}
	if got := sourceOf(t, c, "app"); got != "taipan.toml" {
		t.Errorf("app source %q", got)
	}
	// The app argument beats the file's, and TAIPAN_APP.
	c, _, err = ParseEnviron([]string{"--config", "taipan.toml", "other:app"}, environ("TAIPAN_APP=env:app"))
	if err != nil || c.App != "other:app" || sourceOf(t, c, "app") != "argument" {
		t.Fatalf("%v %v", c.App, err)
	}
	c, _, err = ParseEnviron([]string{"--config", "taipan.toml"}, environ("TAIPAN_APP=env:app"))
	if err != nil || c.App != "env:app" || sourceOf(t, c, "app") != "env TAIPAN_APP" {
		t.Fatalf("%v %v", c.App, err)
	}
}

func TestFileErrors(t *testing.T) {
	inDir(t)
	py := fakePython(t)
	cases := map[string]struct {
		content string
		want    []string
	}{
		"unknown key":      {"wrokers = 4", []string{`taipan.toml: unknown key "wrokers"`, `did you mean "workers"?`}},
		"bad type":         {`workers = "four"`, []string{`taipan.toml: workers: want an integer, got "four"`}},
		"float for int":    {"workers = 2.5", []string{"taipan.toml: workers: want an integer, got 2.5"}},
		"bad boolean":      {`preload = "yes"`, []string{`taipan.toml: preload: want true or false, got "yes"`}},
		"bad list":         {"bind = [8000]", []string{"taipan.toml: bind: want an array of strings, got 8000 in it"}},
		"table":            {"[workers]\nn = 1", []string{"taipan.toml: workers: want an integer, got a table"}},
		"bad value":        {"timeout = -1", []string{"taipan.toml: timeout:", `"-1"`}},
		"nan seconds":      {"timeout = nan", []string{"taipan.toml: timeout:", "from 0 to 1000000000", `"NaN"`}},
		"inf seconds":      {"graceful-timeout = inf", []string{"taipan.toml: graceful-timeout:", `"+Inf"`}},
		"huge seconds":     {"keep-alive = 1e300", []string{"taipan.toml: keep-alive:", `"1e+300"`}},
		"huge size":        {`limit-request-body = "18014398509481985k"`, []string{"taipan.toml: limit-request-body:", "too large"}},
		"huge size int":    {"body-memory-limit = 9223372036854775807", []string{"taipan.toml: body-memory-limit:", "too large"}},
		"huge line limit":  {"limit-request-line = 9223372036854775807", []string{"--limit-request-line must be between", "(--limit-request-line from taipan.toml)"}},
		"invalid value":    {"workers = 0", []string{"--workers must be at least 1", "(--workers from taipan.toml)"}},
		"bad app":          {`app = "my-app"`, []string{"taipan.toml: app: bad app"}},
		"app not a string": {"app = 1", []string{"taipan.toml: app: want a string"}},
		"command line":     {`config = "other.toml"`, []string{`taipan.toml: "config" can only be given on the command line`}},
		"two spellings":    {"max-requests = 1\nmax_requests = 2", []string{`"max-requests" and "max_requests" are the same setting`}},
		"alias twice":      {"log-file = \"a\"\nerror-logfile = \"b\"", []string{`"error-logfile" and "log-file" are the same setting`}},
		"malformed":        {"workers = 2\nthreads = = 3\n", []string{"taipan.toml:2: "}},
		"short key":        {"w = 2", []string{`unknown key "w"`}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			writeFile(t, "taipan.toml", tc.content)
			_, _, err := ParseEnviron([]string{"--python", py, "--config", "taipan.toml"}, nil)
			wantUsageError(t, err, tc.want...)
		})
	}
	_, _, err := ParseEnviron([]string{"--python", py, "--config", "missing.toml"}, nil)
	wantUsageError(t, err, "config file missing.toml: no such file or directory")
}

func TestPyproject(t *testing.T) {
	dir := inDir(t)
	py := fakePython(t)
	parse := func(args ...string) (*Config, error) {
		c, _, err := ParseEnviron(append([]string{"--python", py}, args...), nil)
		return c, err
	}

	// No pyproject.toml, or one without [tool.taipan]: the defaults.
	c, err := parse()
	if err != nil || sourceOf(t, c, "workers") != "default" {
		t.Fatal(err)
	}
	writeFile(t, "pyproject.toml", "[project]\nname = \"mysite\"\n\n[tool.black]\nline-length = 100\n")
	if c, err = parse(); err != nil || sourceOf(t, c, "workers") != "default" {
		t.Fatal(err)
	}

	// [tool.taipan] is read from the working directory.
	writeFile(t, "pyproject.toml", "[project]\nname = \"mysite\"\n\n[tool.taipan]\nworkers = 3\napp = \"mysite.wsgi:application\"\n")
	c, err = parse()
	if err != nil || c.Workers != 3 || c.App != "mysite.wsgi:application" || sourceOf(t, c, "workers") != "pyproject.toml" {
		t.Fatalf("%v %v", c, err)
	}

	// --config replaces it, and --config '' reads no file at all.
	writeFile(t, "taipan.toml", "workers = 5\n")
	if c, err = parse("--config", "taipan.toml"); err != nil || c.Workers != 5 || c.App != "" {
		t.Fatalf("%v %v", c, err)
	}
	if c, err = parse("--config", ""); err != nil || sourceOf(t, c, "workers") != "default" {
		t.Fatalf("%v %v", c, err)
	}
	// So does TAIPAN_CONFIG.
	c, _, err = ParseEnviron([]string{"--python", py}, environ("TAIPAN_CONFIG="+filepath.Join(dir, "taipan.toml")))
	if err != nil || c.Workers != 5 {
		t.Fatalf("%v %v", c, err)
	}

	// Errors name the file and the table.
	writeFile(t, "pyproject.toml", "[tool.taipan]\nworkers = \"four\"\n")
	_, err = parse()
	wantUsageError(t, err, `pyproject.toml [tool.taipan]: workers: want an integer, got "four"`)
	writeFile(t, "pyproject.toml", "[tool.taipan]\nwrokers = 4\n")
	_, err = parse()
	wantUsageError(t, err, `pyproject.toml [tool.taipan]: unknown key "wrokers"`)
	writeFile(t, "pyproject.toml", "[tool.taipan]\nworkers = 4\n[tool.taipan.extra]\n")
	_, err = parse()
	wantUsageError(t, err, `pyproject.toml [tool.taipan]: unknown key "extra"`)
	writeFile(t, "pyproject.toml", "[project]\nname = = 1\n")
	_, err = parse()
	wantUsageError(t, err, "pyproject.toml:2: ")
	writeFile(t, "pyproject.toml", "[tool]\ntaipan = 1\n")
	_, err = parse()
	wantUsageError(t, err, "pyproject.toml: tool.taipan must be a table")

	// A pyproject.toml named with --config must have the table.
	writeFile(t, "pyproject.toml", "[project]\nname = \"mysite\"\n")
	_, err = parse("--config", "pyproject.toml")
	wantUsageError(t, err, "pyproject.toml has no [tool.taipan] table")

	// Only the working directory is searched, not its parents.
	writeFile(t, "pyproject.toml", "[tool.taipan]\nworkers = 3\n")
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	t.Chdir(sub)
	if c, err = parse(); err != nil || sourceOf(t, c, "workers") != "default" {
		t.Fatalf("parent pyproject.toml was read: %v %v", c, err)
	}
}

func TestPrintConfig(t *testing.T) {
	inDir(t)
	py := fakePython(t)
	writeFile(t, "pyproject.toml", "[tool.taipan]\nthreads = 4\nbind = [\"127.0.0.1:9004\", \"unix:/tmp/t.sock\"]\n")
	c, action, err := ParseEnviron([]string{"--python", py, "--print-config", "hello:app"}, environ("TAIPAN_WORKERS=3"))
	if err != nil || action != PrintConfig {
		t.Fatal(action, err)
	}
	var out bytes.Buffer
	if _, err := c.Settings.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, line := range []string{
		`app = "hello:app"`, "# argument",
		"workers = 3", "# env TAIPAN_WORKERS",
		"threads = 4", "# pyproject.toml",
		`bind = ["127.0.0.1:9004", "unix:/tmp/t.sock"]`,
		`python = "` + py + `"`, "# flag",
		`worker-class = "gthread"`, // after validation: --threads > 1 means gthread
		"graceful-timeout = 30.0", "# default",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("output lacks %q:\n%s", line, text)
		}
	}
	// The sources line up, and every setting is there once.
	col := -1
	lines := strings.Split(strings.TrimSpace(text), "\n")[1:]
	for _, l := range lines {
		if i := strings.Index(l, "  # "); i != col && col != -1 && len(l) < maxAligned {
			t.Errorf("source not aligned: %q", l)
		} else if col == -1 {
			col = i
		}
	}
	if len(lines) != len(c.Settings) {
		t.Errorf("%d lines for %d settings", len(lines), len(c.Settings))
	}

	_, action, err = ParseEnviron([]string{"--python", py, "--print-config=json"}, nil)
	if err != nil || action != PrintConfigJSON {
		t.Fatal(action, err)
	}
	js, err := json.Marshal(c.Settings)
	if err != nil {
		t.Fatal(err)
	}
	var decoded map[string]struct {
		Value  any
		Source string
	}
	if err := json.Unmarshal(js, &decoded); err != nil {
		t.Fatal(err)
	}
	if w := decoded["workers"]; w.Value != 3.0 || w.Source != "env TAIPAN_WORKERS" {
		t.Errorf("workers: %+v", w)
	}
	if b := decoded["bind"].Value.([]any); len(b) != 2 {
		t.Errorf("bind: %v", b)
	}
	if len(decoded) != len(c.Settings) {
		t.Errorf("%d JSON entries for %d settings", len(decoded), len(c.Settings))
	}
}

// TestPrintConfigReadsBack checks that --print-config's output is a
// config file that gives the same settings, -k gevent included: its
// --threads used to show --worker-connections, which --threads refused.
func TestPrintConfigReadsBack(t *testing.T) {
	inDir(t)
	py := fakePython(t)
	for _, args := range [][]string{
		{"-k", "gevent", "--worker-connections", "5000"},
		{"--threads", "8", "--keep-alive", "0", "--graceful-timeout", "2.5", "--limit-request-body", "10m", "--max-rss", "512"},
	} {
		c, _, err := ParseEnviron(append([]string{"--python", py, "--print-config"}, args...), nil)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		var out bytes.Buffer
		if _, err := c.Settings.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		writeFile(t, "printed.toml", out.String())
		back, _, err := ParseEnviron([]string{"--config", "printed.toml"}, nil)
		if err != nil {
			t.Fatalf("%v: reading the printed config back: %v\n%s", args, err, out.String())
		}
		for i, s := range c.Settings {
			if b := back.Settings[i]; b.Name != s.Name || !reflect.DeepEqual(b.Value, s.Value) {
				t.Errorf("%v: %s = %v, read back as %s = %v", args, s.Name, s.Value, b.Name, b.Value)
			}
		}
		if back.Threads != c.Threads || back.WorkerClass != c.WorkerClass || back.KeepAlive != c.KeepAlive {
			t.Errorf("%v: threads %d, -k %s, keep-alive %v; read back %d, %s, %v", args, c.Threads, c.WorkerClass, c.KeepAlive, back.Threads, back.WorkerClass, back.KeepAlive)
		}
	}
}

// TestEverySettingHasItsOwnNames guards the mapping from flags to
// variables and keys: no two settings may share one, and every flag
// but the command-line-only ones is a setting.
func TestEverySettingHasItsOwnNames(t *testing.T) {
	fs, settings := flagsAndSettings(t)
	owner := map[string]string{}
	for _, s := range settings {
		for _, n := range append(s.envNames(), s.keys()...) {
			if o, dup := owner[n]; dup {
				t.Errorf("%s is claimed by both --%s and --%s", n, o, s.name)
			}
			owner[n] = s.name
		}
	}
	covered := map[string]bool{}
	for _, s := range settings {
		for _, n := range s.names {
			covered[n] = true
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !covered[f.Name] && !commandLineOnly(f.Name) {
			t.Errorf("--%s is not a setting", f.Name)
		}
	})
	for _, want := range []string{"workers", "limit-request-field_size", "error-logfile"} {
		found := false
		for _, s := range settings {
			found = found || s.name == want
		}
		if !found {
			t.Errorf("no setting named %q", want)
		}
	}
}
