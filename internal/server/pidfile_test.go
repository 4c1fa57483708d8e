package server

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestPidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "taipan.pid")
	holds := func() string {
		data, _ := os.ReadFile(path)
		return strings.TrimSpace(string(data))
	}
	// A live process that is not a taipan, and one that is gone: both
	// stale, so the file is taken over.
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	for _, stale := range []string{strconv.Itoa(sleep.Process.Pid), strconv.Itoa(gone.Process.Pid), ""} {
		os.WriteFile(path, []byte(stale+"\n"), 0o644)
		f, err := createPidFile(path, 4242)
		if err != nil {
			t.Fatalf("pid file holding %q: %v", stale, err)
		}
		if got := holds(); got != "4242" {
			t.Fatalf("pid file holding %q: now holds %q, want 4242", stale, got)
		}
		f.remove()
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("pid file not removed: %v", err)
		}
	}

	// A file that holds no pid (--pid settings.py) is left alone.
	const source = "DEBUG = False\n"
	os.WriteFile(path, []byte(source), 0o644)
	if _, err := createPidFile(path, 4242); err == nil || !strings.Contains(err.Error(), "holds no pid") {
		t.Fatalf("a file holding no pid: %v, want it refused", err)
	}
	if data, _ := os.ReadFile(path); string(data) != source {
		t.Fatalf("a file holding no pid was changed to %q", data)
	}

	// This process runs the same binary as itself: a taipan, for
	// isTaipan, so its pid file is refused to any other pid.
	if !isTaipan(os.Getpid()) {
		t.Fatal("isTaipan(own pid) = false")
	}
	os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	_, err := createPidFile(path, 4242)
	if want := "Already running on PID " + strconv.Itoa(os.Getpid()) + " (or pid file is stale)"; err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v, want an error with %q and the path", err, want)
	}
	if got := holds(); got != strconv.Itoa(os.Getpid()) {
		t.Fatalf("refused pid file changed to %q", got)
	}
	// Its own pid in the file (a container's pid 1 restarted) is no
	// obstacle.
	f, err := createPidFile(path, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}

	// The file is removed at exit only while it holds our pid.
	os.WriteFile(path, []byte("4243\n"), 0o644)
	f.remove()
	if got := holds(); got != "4243" {
		t.Fatalf("another process's pid file was removed or changed: %q", got)
	}
}
