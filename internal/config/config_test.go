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

func TestHelpAndVersion(t *testing.T) {
	for args, want := range map[string]Action{"--help": ShowHelp, "-h": ShowHelp, "--version": ShowVersion, "-v": ShowVersion} {
		_, action, err := Parse([]string{args}, noenv)
		if err != nil || action != want {
			t.Errorf("%s: %v %v", args, action, err)
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
		"bad bind":           {"-b", "localhost"},
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
		"bad uwsgi bind":     {"-b", "uwsgi://nowhere"},
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
