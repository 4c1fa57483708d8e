package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"taipan/internal/logging"
)

// fakePython makes an executable file to stand in as an interpreter path;
// Parse only checks that it exists and is executable.
func fakePython(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "python")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func noenv(string) string { return "" }

func TestDefaults(t *testing.T) {
	py := fakePython(t)
	c, action, err := Parse([]string{"--python", py}, noenv)
	if err != nil || action != Serve {
		t.Fatal(action, err)
	}
	if c.App != "" || !reflect.DeepEqual(c.Binds, []Bind{{"http", "127.0.0.1:8000"}}) || c.BindsGiven || c.Workers != runtime.NumCPU() {
		t.Fatalf("defaults: %+v", c)
	}
	if c.LogLevel != logging.Info || c.GracefulTimeout != 30*time.Second || c.LimitRequestLine != 4094 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestFlagsBeforeAndAfterApp(t *testing.T) {
	py := fakePython(t)
	c, _, err := Parse([]string{"-b", "0.0.0.0:8080", "hello:app", "-w", "4", "--bind", "unix:/tmp/x.sock", "-b", "uwsgi://127.0.0.1:9000", "-b", "fd://3",
		"--python", py, "-e", "A=1", "--env", "B=x=y", "--pythonpath", "a,b", "--root-path", "/p",
		"--graceful-timeout", "2.5", "--limit-request-body", "10m", "--log-level", "WARNING"}, noenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.App != "hello:app" || c.Workers != 4 || !reflect.DeepEqual(c.Binds, []Bind{{"http", "0.0.0.0:8080"}, {"http", "unix:/tmp/x.sock"}, {"uwsgi", "127.0.0.1:9000"}, {"http", "fd://3"}}) {
		t.Fatalf("%+v", c)
	}
	if !reflect.DeepEqual(c.Env, []string{"A=1", "B=x=y"}) || !reflect.DeepEqual(c.PythonPath, []string{"a", "b"}) {
		t.Fatalf("%+v", c)
	}
	if c.RootPath != "/p" || c.GracefulTimeout != 2500*time.Millisecond || c.LimitRequestBody != 10<<20 || c.LogLevel != logging.Warning {
		t.Fatalf("%+v", c)
	}
}

// gunicorn's attached short forms (-w2, -b127.0.0.1:8000, -t60, -kgevent,
// -eK=V) and a bind without a port (port 8000) work as they do there.
func TestGunicornArgumentForms(t *testing.T) {
	py := fakePython(t)
	c, _, err := Parse([]string{"-w2", "-b127.0.0.1", "-b[::1]", "-buwsgi://localhost:9000", "-btcp://127.0.0.1:9001", "-t60", "-eK=V", "--python", py, "hello:app"}, noenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Workers != 2 || c.Timeout != time.Minute || !reflect.DeepEqual(c.Env, []string{"K=V"}) ||
		!reflect.DeepEqual(c.Binds, []Bind{{"http", "127.0.0.1:8000"}, {"http", "[::1]:8000"}, {"uwsgi", "localhost:9000"}, {"http", "127.0.0.1:9001"}}) {
		t.Fatalf("%+v", c)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for args, want := range map[string]Action{"--help": ShowHelp, "-h": ShowHelp, "--version": ShowVersion, "-v": ShowVersion} {
		_, action, err := Parse([]string{args}, noenv)
		if err != nil || action != want {
			t.Errorf("%s: %v %v", args, action, err)
		}
	}
}

// TestIntegersAreDecimal: integer flags are read in base 10, as gunicorn
// reads them: the flag package's own took -w 010 for 8 workers and 0x10
// for 16.
func TestIntegersAreDecimal(t *testing.T) {
	py := fakePython(t)
	c, _, err := Parse([]string{"--python", py, "-w", "010", "--max-requests", "0100", "--backlog", "+64"}, noenv)
	if err != nil || c.Workers != 10 || c.MaxRequests != 100 || c.Backlog != 64 {
		t.Fatalf("workers %d, max-requests %d, backlog %d (%v), want 10, 100, 64", c.Workers, c.MaxRequests, c.Backlog, err)
	}
	for _, v := range []string{"0x10", "0b11", "0o7", "1_000"} {
		if _, _, err := Parse([]string{"--python", py, "-w", v}, noenv); err == nil || err.Error() != `-w: invalid value "`+v+`": not a number` {
			t.Errorf("-w %s: %v", v, err)
		}
	}
	if _, _, err := Parse([]string{"--python", py, "--max-rss", "99999999999999999999"}, noenv); err == nil || !strings.HasSuffix(err.Error(), "out of range") {
		t.Errorf("--max-rss 99999999999999999999: %v", err)
	}
}

// TestFlagValuesThatLookLikeFlags: "-", negative numbers and the --flag=V
// form stay values.
func TestFlagValuesThatLookLikeFlags(t *testing.T) {
	py := fakePython(t)
	c, _, err := Parse([]string{"--python", py, "--access-logfile", "-", "--error-logfile=--odd", "hello:app"}, noenv)
	if err != nil || c.AccessLogFile != "-" || c.ErrorLogFile != "--odd" {
		t.Fatalf("%+v %v", c, err)
	}
	if _, _, err := Parse([]string{"--python", py, "--max-requests", "-5"}, noenv); err != nil && strings.Contains(err.Error(), "follows it") {
		t.Errorf("a negative number taken for a flag: %v", err)
	}
}

// TestPrintConfigCatchesConflicts: mistakes a start would only meet when it
// listens or mounts are found by the settings' own checks, so that
// --print-config reports them too.
func TestPrintConfigCatchesConflicts(t *testing.T) {
	py := fakePython(t)
	dir := t.TempDir()
	for args, want := range map[string]string{
		"--static /s=" + dir + " --static /s/=" + dir:     "--static: /s is given twice (" + dir + " and " + dir + ")",
		"-b 127.0.0.1:9100 --metrics-bind 127.0.0.1:9100": "--metrics-bind 127.0.0.1:9100 is also a -b address; give the metrics listener a port of its own",
	} {
		_, _, err := Parse(append([]string{"--python", py, "--print-config"}, strings.Fields(args)...), noenv)
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}

// TestAutoscaleNeedsBothBounds: one of --workers-min and --workers-max
// alone is named as what is missing.
func TestAutoscaleNeedsBothBounds(t *testing.T) {
	py := fakePython(t)
	for args, want := range map[string]string{
		"--workers-max 2": "--workers-max 2 needs --workers-min too (autoscaling goes between the two)",
		"--workers-min 2": "--workers-min 2 needs --workers-max too (autoscaling goes between the two)",
	} {
		if _, _, err := Parse(append([]string{"--python", py}, strings.Fields(args)...), noenv); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}

// TestFlagErrorWording: a value the flag package refuses is reported as
// every other bad value is, with the flag spelt as --help spells it.
func TestFlagErrorWording(t *testing.T) {
	py := fakePython(t)
	for args, want := range map[string]string{
		"-w many":                             `-w: invalid value "many": not a number`,
		"--workers many":                      `--workers: invalid value "many": not a number`,
		"--log-format xml":                    `--log-format: invalid value "xml": unknown log format "xml" (want text or json)`,
		"--reload=maybe":                      `--reload: invalid value "maybe": want true or false`,
		"--backlog 1e99":                      `--backlog: invalid value "1e99": not a number`,
		"--nope":                              `unknown flag --nope (see taipan --help)`,
		"--wrokers 2":                         `unknown flag --wrokers (did you mean --workers?)`,
		"--max-request 5":                     `unknown flag --max-request (did you mean --max-requests?)`,
		"-q":                                  `unknown flag -q (see taipan --help)`,
		"--bind":                              `flag --bind needs a value`,
		"--access-logfile --reload hello:app": `flag --access-logfile needs a value, but --reload follows it (write --access-logfile=--reload if that is the value)`,
		"-b --print-config":                   `flag -b needs a value, but --print-config follows it (write -b=--print-config if that is the value)`,
	} {
		_, _, err := Parse(append([]string{"--python", py}, strings.Fields(args)...), noenv)
		if err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", args, err, want)
		}
	}
}

func TestBadInput(t *testing.T) {
	py := fakePython(t)
	cases := map[string][]string{
		"unknown flag":       {"--nope"},
		"missing value":      {"-w"},
		"bad workers":        {"-w", "0"},
		"not a number":       {"-w", "many"},
		"two apps":           {"a:app", "b:app"},
		"bad module":         {"my-app:app"},
		"empty callable":     {"hello:"},
		"bad bind":           {"-b", "localhost:"},
		"ipv6 no brackets":   {"-b", "::1:8000"},
		"bad port":           {"-b", "127.0.0.1:99999"},
		"bad env":            {"-e", "NOEQUALS"},
		"bad level":          {"--log-level", "loud"},
		"relative root path": {"--root-path", "app"},
		"missing chdir":      {"--chdir", "/nonexistent/dir"},
		"bad size":           {"--limit-request-body", "lots"},
		"negative seconds":   {"--graceful-timeout", "-1"},
		"bad fd bind":        {"-b", "fd://x"},
		"fd bind below 3":    {"-b", "fd://1"},
		"bad uwsgi bind":     {"-b", "uwsgi://nowhere:x"},
		"static no dir":      {"--static", "/assets=/nonexistent/dir"},
		"static no prefix":   {"--static", "assets=/tmp"},
		"cgi no equals":      {"--cgi", "/cgi-bin"},
		"cert without key":   {"--certfile", "/tmp/c.pem"},
		"bad cert reqs":      {"--certfile", "c", "--keyfile", "k", "--ca-certs", "ca", "--cert-reqs", "maybe"},
		"cert reqs no ca":    {"--certfile", "c", "--keyfile", "k", "--cert-reqs", "required"},
		"bad umask":          {"--umask", "999"},
		"zero backlog":       {"--backlog", "0"},
		"ws max size":        {"--ws-max-size", "0"},
		"forwarded headers":  {"--forwarded-headers", "both"},
		"proxy trusts none":  {"--proxy-protocol", "--forwarded-allow-ips", ""},
	}
	for name, args := range cases {
		_, _, err := Parse(append([]string{"--python", py}, args...), noenv)
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Errorf("%s: want a UsageError, got %v", name, err)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: message is not one line: %q", name, err)
		}
	}
}

func TestFindPython(t *testing.T) {
	py := fakePython(t)
	venv := t.TempDir()
	os.MkdirAll(filepath.Join(venv, "bin"), 0o755)
	os.Symlink(py, filepath.Join(venv, "bin", "python"))
	env := func(k string) string {
		if k == "VIRTUAL_ENV" {
			return venv
		}
		return ""
	}
	c, _, err := Parse(nil, env)
	if err != nil || c.Python != filepath.Join(venv, "bin", "python") {
		t.Fatalf("VIRTUAL_ENV not used: %v %v", c, err)
	}
	c, _, err = Parse([]string{"--python", py}, env)
	if err != nil || c.Python != py {
		t.Fatalf("--python not preferred: %v %v", c, err)
	}
	_, _, err = Parse([]string{"--python", "/nonexistent/python3"}, env)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("missing interpreter: %v", err)
	}
}

// TestOutOfRange checks that values past what taipan can represent or
// sensibly use are refused with a message naming the flag, instead of
// wrapping around (a size, --max-rss), turning negative (seconds) or
// panicking later (--max-requests-jitter).
func TestOutOfRange(t *testing.T) {
	py := fakePython(t)
	cases := map[string]struct {
		args []string
		want []string
	}{
		"jitter":           {[]string{"--max-requests", "5", "--max-requests-jitter", "9223372036854775807"}, []string{"--max-requests-jitter must be at most 1000000000"}},
		"max requests":     {[]string{"--max-requests", "9223372036854775807"}, []string{"--max-requests must be at most 1000000000"}},
		"max rss wraps":    {[]string{"--max-rss", "17592186044417"}, []string{"--max-rss must be at most 1073741824 MB"}},
		"seconds nan":      {[]string{"-t", "nan"}, []string{"-t: invalid value", "from 0 to 1000000000", `"nan"`}},
		"seconds inf":      {[]string{"--graceful-timeout", "inf"}, []string{"-graceful-timeout", `"inf"`}},
		"seconds -inf":     {[]string{"--keep-alive", "-Inf"}, []string{"-keep-alive", `"-Inf"`}},
		"seconds 1e300":    {[]string{"--graceful-timeout", "1e300"}, []string{"-graceful-timeout", `"1e300"`}},
		"seconds 1e400":    {[]string{"--boot-timeout", "1e400"}, []string{"-boot-timeout", `"1e400"`}},
		"seconds 1e10":     {[]string{"--heartbeat", "1e10"}, []string{"-heartbeat", `"1e10"`}},
		"size wraps":       {[]string{"--limit-request-body", "18014398509481985k"}, []string{"-limit-request-body", "too large"}},
		"size wraps ws":    {[]string{"--ws-max-size", "18014398509481985k"}, []string{"-ws-max-size", "too large"}},
		"size past int64":  {[]string{"--body-memory-limit", "99999999999999999999"}, []string{"-body-memory-limit", "too large"}},
		"size past 1 PiB":  {[]string{"--limit-request-body", "1048577g"}, []string{"-limit-request-body", "too large"}},
		"request line":     {[]string{"--limit-request-line", "9223372036854775807"}, []string{"--limit-request-line must be between 1 and 1048576"}},
		"field size":       {[]string{"--limit-request-field_size", "9223372036854775807"}, []string{"--limit-request-field_size must be between 1 and 1048576"}},
		"field size alias": {[]string{"--limit-request-field-size", "1048577"}, []string{"--limit-request-field_size must be between"}},
		"fields":           {[]string{"--limit-request-fields", "32769"}, []string{"--limit-request-fields must be between 1 and 32768"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := Parse(append([]string{"--python", py}, tc.args...), noenv)
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("want a UsageError, got %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("message is not one line: %q", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
		})
	}
	// The bounds themselves are accepted.
	c, _, err := Parse([]string{"--python", py, "--max-requests", "1000000000", "--max-requests-jitter", "1000000000", "--max-rss", "1073741824",
		"-t", "1e9", "--limit-request-body", "1048576g", "--limit-request-line", "1048576", "--limit-request-field_size", "1048576", "--limit-request-fields", "32768"}, noenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxRSS != 1<<50 || c.Timeout != 1e9*time.Second || c.LimitRequestBody != 1<<50 || c.LimitRequestLine != 1<<20 {
		t.Errorf("%+v", c)
	}
}

func TestKeepAliveAndHeaderTimeoutZero(t *testing.T) {
	py := fakePython(t)
	// --keep-alive 0 turns keep-alive off, as in gunicorn; it is not
	// replaced by the default.
	c, _, err := Parse([]string{"--python", py, "--keep-alive", "0"}, noenv)
	if err != nil || c.KeepAlive != 0 {
		t.Fatalf("--keep-alive 0: %v %v", c, err)
	}
	// A head may not take forever.
	_, _, err = Parse([]string{"--python", py, "--header-timeout", "0"}, noenv)
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--header-timeout must be positive") {
		t.Fatalf("--header-timeout 0: %v", err)
	}
}

func TestTmpDir(t *testing.T) {
	py := fakePython(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for arg, want := range map[string]string{
		"/nonexistent/dir": "--tmp-dir: /nonexistent/dir: no such file or directory",
		file:               "--tmp-dir: " + file + " is not a directory",
	} {
		_, _, err := Parse([]string{"--python", py, "--tmp-dir", arg}, noenv)
		var ue *UsageError
		if !errors.As(err, &ue) || err.Error() != want {
			t.Errorf("--tmp-dir %s: got %v, want %q", arg, err, want)
		}
	}
	if os.Geteuid() != 0 { // root may write anywhere
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		_, _, err := Parse([]string{"--python", py, "--tmp-dir", ro}, noenv)
		if err == nil || !strings.Contains(err.Error(), "is not writable") {
			t.Errorf("read-only --tmp-dir: %v", err)
		}
	}
	t.Chdir(dir)
	c, _, err := Parse([]string{"--python", py, "--tmp-dir", "."}, noenv)
	if err != nil || c.TmpDir != dir {
		t.Fatalf("--tmp-dir .: %q %v", c.TmpDir, err)
	}
	// Without --tmp-dir, the default ($TMPDIR, else /tmp) is checked alike.
	badTMPDIR := func(k string) string {
		if k == "TMPDIR" {
			return "/nonexistent/tmp"
		}
		return ""
	}
	_, _, err = Parse([]string{"--python", py}, badTMPDIR)
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "/nonexistent/tmp: no such file or directory; set --tmp-dir") {
		t.Errorf("$TMPDIR missing: %v", err)
	}
}

// TestStartChecksAtParse covers values that used to pass --print-config
// and fail only once taipan started: both must fail alike, as usage errors.
func TestStartChecksAtParse(t *testing.T) {
	py := fakePython(t)
	cases := map[string]struct {
		args []string
		want string
	}{
		"not an ip":        {[]string{"--forwarded-allow-ips", "notanip"}, `--forwarded-allow-ips: "notanip" is not an IP address`},
		"bad prefix":       {[]string{"--forwarded-allow-ips", "127.0.0.1,10.0.0.0/33"}, `--forwarded-allow-ips: "10.0.0.0/33"`},
		"metrics no port":  {[]string{"--metrics-bind", "garbage"}, `--metrics-bind "garbage": want HOST:PORT`},
		"metrics bad port": {[]string{"--metrics-bind", "127.0.0.1:99999"}, `--metrics-bind "127.0.0.1:99999": bad port "99999"`},
		"gevent threads":   {[]string{"-k", "gevent", "--threads", "4"}, "--threads does not apply to -k gevent"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for _, extra := range [][]string{nil, {"--print-config"}} {
				_, _, err := Parse(append(append([]string{"--python", py}, extra...), tc.args...), noenv)
				var ue *UsageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%v: got %v, want a UsageError with %q", extra, err, tc.want)
				}
			}
		})
	}
	c, _, err := Parse([]string{"--python", py, "--forwarded-allow-ips", " 10.0.0.0/8, ::1,*", "--metrics-bind", "[::1]:0"}, noenv)
	if err != nil || c.MetricsBind != "[::1]:0" {
		t.Fatalf("good values refused: %v", err)
	}
}
