package server

import (
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"taipan/internal/logging"
)

// startReaper reaps orphaned processes reparented to taipan when it runs as
// PID 1 (a container's init): zombies whose parent is taipan and that are
// not its own workers, which os/exec reaps itself. It returns a stop func.
func startReaper(owned func(pid int) bool, log *logging.Logger) (stop func()) {
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-sigchld:
				reapOrphans(owned, log)
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sigchld)
		close(done)
	}
}

// reapOrphans waits for every zombie child that is not owned.
func reapOrphans(owned func(pid int) bool, log *logging.Logger) {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) S ppid ...": comm may hold spaces, so parse after ')'.
		rest := string(stat)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) < 2 || fields[0] != "Z" || fields[1] != strconv.Itoa(self) || owned(pid) {
			continue
		}
		var ws unix.WaitStatus
		if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil && got == pid {
			log.Debugf("Reaped orphaned process %d", pid)
		}
	}
}
