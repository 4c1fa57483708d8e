package server

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// pidFile is the --pid file of this taipan.
type pidFile struct {
	path string
	pid  int // ours, as written
}

// createPidFile writes pid to path, as gunicorn does: unless the file
// names another taipan that is still running, which is an error (two
// taipans sharing a pid file would send each other's signals astray, and
// the first to stop would delete the other's file). A file left by a
// taipan that is gone is replaced.
//
// A file that holds something other than a pid is not overwritten either:
// "--pid settings.py" is a slip, and the file would be replaced and then
// deleted at exit.
func createPidFile(path string, pid int) (*pidFile, error) {
	if old, ok := readPid(path); ok && old != pid && isTaipan(old) {
		return nil, fmt.Errorf("--pid %s: Already running on PID %d (or pid file is stale)", path, old)
	} else if !ok {
		if data, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(data)) > 0 {
			return nil, fmt.Errorf("--pid %s: the file exists and holds no pid; not overwriting it", path)
		}
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("--pid: %w", err)
	}
	return &pidFile{path: path, pid: pid}, nil
}

// remove deletes the file if it still holds our pid: a taipan started
// since, which found ours stale, owns it now.
func (f *pidFile) remove() {
	if pid, ok := readPid(f.path); ok && pid == f.pid {
		os.Remove(f.path)
	}
}

// readPid reads the pid a pid file holds; ok is false when there is no
// file or it holds no pid.
func readPid(path string) (pid int, ok bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
	return pid, err == nil && pid > 0
}

// isTaipan reports whether pid is a running taipan. A pid file outlives
// its process (kill -9, a reboot), and its pid may since have gone to an
// unrelated process, which must not keep taipan from starting: so the
// process must run a program named taipan, or this very binary. Where
// /proc cannot tell, a live process counts, as in gunicorn.
func isTaipan(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false // gone (EPERM: alive, another user's)
	}
	proc := "/proc/" + strconv.Itoa(pid)
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return true // alive, and /proc cannot tell what it runs (no /proc, hidepid)
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0}) // empty for a zombie
	if strings.HasPrefix(filepath.Base(string(argv0)), "taipan") {
		return true
	}
	exe, err := os.Stat(proc + "/exe")
	if err != nil {
		return false
	}
	self, err := os.Executable()
	if err != nil {
		return false
	}
	st, err := os.Stat(self)
	return err == nil && os.SameFile(exe, st)
}
