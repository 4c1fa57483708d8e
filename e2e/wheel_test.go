package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWheel builds the release wheel for this machine the way a release
// does (scripts/dist --host-only), checks that it is a well-formed wheel,
// installs it with pip into a fresh venv made by Debian's python3-venv,
// and serves an app with the taipan that pip put in the venv's bin/, under
// the venv's interpreter, over loopback.
func TestWheel(t *testing.T) {
	machine := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	if runtime.GOOS != "linux" || machine == "" {
		t.Skipf("taipan ships wheels for linux amd64 and arm64, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()

	// A fresh venv first: without python3-venv there is nothing to test.
	venv := filepath.Join(tmp, "venv")
	if out, err := exec.Command(pythonPath(), "-m", "venv", venv).CombinedOutput(); err != nil {
		msg := fmt.Sprintf("%s -m venv failed (apt-get install python3-venv): %v\n%s", pythonPath(), err, out)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	// Two builds of the wheel must be byte for byte the same.
	var wheels [2]string
	for i := range wheels {
		dir := filepath.Join(tmp, fmt.Sprintf("dist%d", i))
		wheels[i] = buildWheel(t, root, dir)
	}
	first, _ := os.ReadFile(wheels[0])
	second, _ := os.ReadFile(wheels[1])
	if filepath.Base(wheels[0]) != filepath.Base(wheels[1]) || !bytes.Equal(first, second) {
		t.Errorf("two builds gave different wheels: %s (%d bytes) and %s (%d bytes)",
			wheels[0], len(first), wheels[1], len(second))
	}
	wheel := wheels[0]
	version := checkWheel(t, wheel, machine)
	checkSums(t, filepath.Dir(wheel))

	// pip, offline and ignoring this machine's pip configuration.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PIP_") && !strings.HasPrefix(kv, "VIRTUAL_ENV=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PIP_CONFIG_FILE="+os.DevNull)
	pip := exec.Command(filepath.Join(venv, "bin", "python"), "-m", "pip", "install",
		"--no-index", "--no-deps", "--no-cache-dir", "--disable-pip-version-check", wheel)
	pip.Env = env
	if out, err := pip.CombinedOutput(); err != nil {
		t.Fatalf("pip install %s: %v\n%s", filepath.Base(wheel), err, out)
	}
	bin := filepath.Join(venv, "bin", "taipan")
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatalf("pip did not put taipan in the venv's bin/: %v", err)
	}
	if st.Mode().Perm()&0o111 == 0 {
		t.Fatalf("%s is not executable: %v", bin, st.Mode())
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || string(out) != "taipan "+version+"\n" {
		t.Fatalf("%s --version: %q, %v; want %q", bin, out, err, "taipan "+version)
	}

	appDir := filepath.Join(tmp, "app")
	if err := os.Mkdir(appDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeApp(t, appDir, "wheelapp.py", `import sys

def app(environ, start_response):
    body = ("prefix=%s\nversion=%d.%d\n" % (sys.prefix, sys.version_info[0], sys.version_info[1])).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`)
	wantPrefix, _ := filepath.EvalSymlinks(venv)

	// As after `. venv/bin/activate`: VIRTUAL_ENV names the interpreter,
	// and the venv's bin/ is first on PATH.
	t.Run("activated", func(t *testing.T) {
		// exec keeps the last of duplicate keys: these win over env's PATH.
		activated := append(slices.Clip(env), "VIRTUAL_ENV="+venv, "PATH="+filepath.Join(venv, "bin")+":"+os.Getenv("PATH"))
		found, err := lookPathIn("taipan", activated)
		if err != nil || found != bin {
			t.Fatalf("taipan on the activated PATH is %q (%v), want %s", found, err, bin)
		}
		s := startBinary(t, found, activated, "-w", "1", "--chdir", appDir, "wheelapp:app")
		checkServes(t, s, wantPrefix, version)
	})
	// Not activated: --python names the venv's interpreter.
	t.Run("python-flag", func(t *testing.T) {
		s := startBinary(t, bin, env, "--python", filepath.Join(venv, "bin", "python"), "-w", "1", "--chdir", appDir, "wheelapp:app")
		checkServes(t, s, wantPrefix, version)
	})
}

// buildWheel runs scripts/dist --host-only into dir and returns the wheel.
func buildWheel(t *testing.T, root, dir string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "dist"), "--host-only", "--out", dir)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/dist --host-only: %v\n%s", err, out)
	}
	found, _ := filepath.Glob(filepath.Join(dir, "taipan-*.whl"))
	if len(found) != 1 {
		t.Fatalf("scripts/dist made %d wheels in %s, want 1: %v", len(found), dir, found)
	}
	return found[0]
}

// checkWheel checks the wheel's name, tags, layout, modes, timestamps and
// RECORD against PEP 427, and returns its version.
func checkWheel(t *testing.T, path, machine string) string {
	t.Helper()
	name := filepath.Base(path)
	parts := strings.Split(strings.TrimSuffix(name, ".whl"), "-")
	if len(parts) != 5 || parts[0] != "taipan" || parts[2] != "py3" || parts[3] != "none" {
		t.Fatalf("wheel name %s: want taipan-VERSION-py3-none-PLATFORMS.whl", name)
	}
	version := parts[1]
	platforms := strings.Split(parts[4], ".")
	for _, want := range []string{"manylinux_2_17_" + machine, "manylinux2014_" + machine} {
		if !slices.Contains(platforms, want) {
			t.Errorf("wheel %s lacks platform tag %s", name, want)
		}
	}

	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer zr.Close()
	files := map[string][]byte{}
	var order []string
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s in %s: %v", f.Name, name, err)
		}
		files[f.Name] = data
		order = append(order, f.Name)
		if os.Getenv("SOURCE_DATE_EPOCH") == "" && !f.Modified.Equal(time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("%s: timestamp %v, want the fixed 1980-01-01", f.Name, f.Modified)
		}
		want := os.FileMode(0o644)
		if strings.HasSuffix(f.Name, ".data/scripts/taipan") {
			want = 0o755
		}
		if f.Mode() != want {
			t.Errorf("%s: mode %v in the zip, want %v", f.Name, f.Mode(), want)
		}
	}
	data := "taipan-" + version + ".data/"
	info := "taipan-" + version + ".dist-info/"
	wantFiles := []string{data + "scripts/taipan", info + "METADATA", info + "WHEEL", info + "RECORD"}
	if strings.Join(order, " ") != strings.Join(wantFiles, " ") {
		t.Fatalf("wheel holds %v, want %v", order, wantFiles)
	}

	wheelMeta := string(files[info+"WHEEL"])
	if !strings.Contains(wheelMeta, "Wheel-Version: 1.0\n") || !strings.Contains(wheelMeta, "Root-Is-Purelib: false\n") {
		t.Errorf("WHEEL:\n%s", wheelMeta)
	}
	var tags []string
	for _, line := range strings.Split(wheelMeta, "\n") {
		if tag, ok := strings.CutPrefix(line, "Tag: "); ok {
			tags = append(tags, tag)
		}
	}
	var wantTags []string
	for _, p := range platforms {
		wantTags = append(wantTags, "py3-none-"+p)
	}
	if strings.Join(tags, " ") != strings.Join(wantTags, " ") {
		t.Errorf("WHEEL tags %v, want %v (the name's tag set)", tags, wantTags)
	}
	meta := string(files[info+"METADATA"])
	for _, want := range []string{"Metadata-Version: ", "Name: taipan\n", "Version: " + version + "\n", "Requires-Python: >=3.9\n"} {
		if !strings.Contains(meta, want) {
			t.Errorf("METADATA lacks %q:\n%s", want, meta)
		}
	}

	// RECORD: every other file, with its urlsafe-base64 sha256 (no
	// padding) and size; RECORD itself without either.
	recorded := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(string(files[info+"RECORD"]), "\n"), "\n") {
		fields := strings.Split(line, ",")
		if len(fields) != 3 {
			t.Errorf("RECORD line %q: want path,hash,size", line)
			continue
		}
		path, hash, size := fields[0], fields[1], fields[2]
		recorded[path] = true
		if path == info+"RECORD" {
			if hash != "" || size != "" {
				t.Errorf("RECORD lists itself with a hash or size: %q", line)
			}
			continue
		}
		content, ok := files[path]
		if !ok {
			t.Errorf("RECORD lists %s, which the wheel lacks", path)
			continue
		}
		sum := sha256.Sum256(content)
		if want := "sha256=" + base64.RawURLEncoding.EncodeToString(sum[:]); hash != want {
			t.Errorf("RECORD hash of %s is %s, want %s", path, hash, want)
		}
		if size != strconv.Itoa(len(content)) {
			t.Errorf("RECORD size of %s is %s, want %d", path, size, len(content))
		}
	}
	for _, f := range order {
		if !recorded[f] {
			t.Errorf("RECORD does not list %s", f)
		}
	}

	// The binary in the wheel is a static ELF for this machine: no
	// program interpreter (dynamic loader), so no libc is needed.
	exe, err := elf.NewFile(bytes.NewReader(files[data+"scripts/taipan"]))
	if err != nil {
		t.Fatalf("the wheel's scripts/taipan is not an ELF binary: %v", err)
	}
	wantMachine := map[string]elf.Machine{"x86_64": elf.EM_X86_64, "aarch64": elf.EM_AARCH64}[machine]
	if exe.Machine != wantMachine {
		t.Errorf("the wheel's binary is for %v, want %v", exe.Machine, wantMachine)
	}
	for _, p := range exe.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the wheel's binary has a dynamic loader (PT_INTERP): it is not static")
		}
	}
	return version
}

// checkSums checks dir's SHA256SUMS against the files it names.
func checkSums(t *testing.T, dir string) {
	t.Helper()
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatalf("scripts/dist wrote no SHA256SUMS: %v", err)
	}
	entries, _ := filepath.Glob(filepath.Join(dir, "taipan-*"))
	lines := strings.Split(strings.TrimSpace(string(sums)), "\n")
	if len(lines) != len(entries) {
		t.Errorf("SHA256SUMS has %d lines for %d files:\n%s", len(lines), len(entries), sums)
	}
	for _, line := range lines {
		sum, file, ok := strings.Cut(line, "  ")
		if !ok {
			t.Errorf("SHA256SUMS line %q", line)
			continue
		}
		content, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Errorf("SHA256SUMS names %s: %v", file, err)
			continue
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(content)); got != sum {
			t.Errorf("SHA256SUMS: %s is %s, listed as %s", file, got, sum)
		}
	}
}

// startBinary runs the taipan at bin with env and args plus a -b on a free
// loopback port, and waits until it serves. It is stopped when the test ends.
func startBinary(t *testing.T, bin string, env []string, args ...string) *Server {
	t.Helper()
	s := &Server{t: t, exited: make(chan struct{})}
	s.Addr = freeAddr(t)
	s.URL = "http://" + s.Addr
	s.cmd = exec.Command(bin, append([]string{"-b", s.Addr}, args...)...)
	s.cmd.Env = env
	s.cmd.Stdout = lockedWriter{&s.mu, &s.stdout}
	s.cmd.Stderr = lockedWriter{&s.mu, &s.stderr}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.Stop)
	if err := s.waitReady(30 * time.Second); err != nil {
		s.Stop()
		t.Fatalf("%s did not become ready: %v\nstderr:\n%s", bin, err, s.Stderr())
	}
	return s
}

// checkServes GETs / and checks that the app ran under the venv's
// interpreter, and that the taipan serving it is the wheel's version.
func checkServes(t *testing.T, s *Server, wantPrefix, version string) {
	t.Helper()
	code, body := s.Get(t, "/")
	if code != 200 {
		t.Fatalf("GET /: %d %q\nstderr:\n%s", code, body, s.Stderr())
	}
	prefix, _, _ := strings.Cut(strings.TrimPrefix(body, "prefix="), "\n")
	if resolved, err := filepath.EvalSymlinks(prefix); err != nil || resolved != wantPrefix {
		t.Errorf("the app ran with sys.prefix %q, want the venv %s\nbody: %q", prefix, wantPrefix, body)
	}
	if !strings.Contains(s.Stderr(), "Starting taipan "+version) {
		t.Errorf("log does not say 'Starting taipan %s':\n%s", version, s.Stderr())
	}
}

// lookPathIn finds an executable on the PATH of env, as a shell started
// with env would.
func lookPathIn(name string, env []string) (string, error) {
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v // the last one counts, as for exec
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not on PATH %s", name, path)
}
