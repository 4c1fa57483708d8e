package pool

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"taipan/internal/logging"
	"taipan/internal/wire"
)

// Spec says how to start a worker process.
type Spec struct {
	Python     string   // interpreter path
	Script     string   // path of taipan_worker.py
	App        string   // MODULE[:CALLABLE]
	Dir        string   // working directory ("" = taipan's)
	Env        []string // full environment
	PythonPath []string // extra sys.path entries
	PostFork   string   // MODULE:CALLABLE run in each worker after it starts ("" = none)
	Threads    int      // requests a worker runs at once (set by the pool from Config.Threads)
	Gevent     bool     // run requests in greenlets (-k gevent)
	Interface  string   // "auto" (detect), "wsgi" or "asgi"
	Loop       string   // ASGI event loop: "auto", "asyncio" or "uvloop"
}

// args is the worker's command line after the interpreter.
func (s *Spec) args() []string {
	args := []string{"-u", s.Script, "--fd", "3", "--traceback-fd", "4", "--app", s.App,
		"--protocol", strconv.Itoa(wire.Version)}
	for _, p := range s.PythonPath {
		args = append(args, "--pythonpath", p)
	}
	if s.PostFork != "" {
		args = append(args, "--post-fork", s.PostFork)
	}
	if s.Threads > 1 {
		args = append(args, "--threads", strconv.Itoa(s.Threads))
	}
	if s.Gevent {
		args = append(args, "--worker-class", "gevent")
	}
	return append(args, s.interfaceArgs()...)
}

// interfaceArgs are the worker flags for the app interface and event loop.
func (s *Spec) interfaceArgs() []string {
	var args []string
	if s.Interface != "" {
		args = append(args, "--interface", s.Interface)
	}
	if s.Loop != "" {
		args = append(args, "--loop", s.Loop)
	}
	return args
}

// BootError is returned when a worker could not load the app. Text holds
// the worker's explanation, with the Python traceback.
type BootError struct {
	Text     string
	PostFork bool // the --post-fork hook failed, after the app had loaded
}

func (e *BootError) Error() string { return e.Text }

// process is a running worker process, however it was started.
type process interface {
	Pid() int
	Signal(sig syscall.Signal) error
	// Wait blocks until the process has exited and been reaped.
	Wait() error
}

// execProcess is a worker started by exec: taipan's own child.
type execProcess struct {
	cmd   *exec.Cmd
	owner *execSpawner
}

func (p execProcess) Pid() int                        { return p.cmd.Process.Pid }
func (p execProcess) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

func (p execProcess) Wait() error {
	err := p.cmd.Wait()
	p.owner.live.Delete(p.cmd.Process.Pid)
	return err
}

// spawner starts workers. The default starts each with exec; --preload
// forks them from a process that has already imported the app.
type spawner interface {
	// spawn starts worker id and waits, up to the boot timeout, for READY.
	spawn(id int) (*Worker, error)
	// close releases the spawner (the fork server, if any).
	close()
}

// execSpawner starts every worker as a fresh interpreter that imports the app.
type execSpawner struct {
	spec    *Spec
	timeout time.Duration
	log     *logging.Logger
	live    sync.Map // pids started and not yet waited for
}

func (s *execSpawner) close() {}

// ownsPid reports whether pid is a worker this spawner started and has not
// yet reaped.
func (s *execSpawner) ownsPid(pid int) bool {
	_, ok := s.live.Load(pid)
	return ok
}

// workerPipes are the parent's ends of what a worker is started with.
type workerPipes struct {
	conn       *net.UnixConn // the protocol socket
	childSock  *os.File      // fd 3 in the child
	tracebacks *os.File      // read end of fd 4, where faulthandler writes
	childTB    *os.File
	output     *os.File // read end of the child's stdout and stderr
	childOut   *os.File
}

// newWorkerPipes makes the socketpair and pipes a worker needs.
func newWorkerPipes() (*workerPipes, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "taipan-worker")
	p := &workerPipes{childSock: os.NewFile(uintptr(fds[1]), "taipan-worker-child")}
	fc, err := net.FileConn(parent)
	parent.Close()
	if err != nil {
		p.childSock.Close()
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	p.conn = fc.(*net.UnixConn)
	if p.tracebacks, p.childTB, err = os.Pipe(); err != nil {
		p.closeAll()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	if p.output, p.childOut, err = os.Pipe(); err != nil {
		p.closeAll()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	return p, nil
}

// closeChildEnds drops the parent's copies of the child's ends once the child
// has them; keeping them open would hide the end of file that tells us the
// worker died.
func (p *workerPipes) closeChildEnds() {
	for _, f := range []*os.File{p.childSock, p.childTB, p.childOut} {
		if f != nil {
			f.Close()
		}
	}
}

func (p *workerPipes) closeAll() {
	p.closeChildEnds()
	if p.conn != nil {
		p.conn.Close()
	}
	if p.tracebacks != nil {
		p.tracebacks.Close()
	}
	if p.output != nil {
		p.output.Close()
	}
}

func (s *execSpawner) spawn(id int) (*Worker, error) {
	pipes, err := newWorkerPipes()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(s.spec.Python, s.spec.args()...)
	cmd.Dir = s.spec.Dir
	cmd.Env = s.spec.Env
	cmd.ExtraFiles = []*os.File{pipes.childSock, pipes.childTB}
	cmd.Stdout, cmd.Stderr = pipes.childOut, pipes.childOut
	// Own process group: a Ctrl-C in the terminal reaches taipan, which then
	// shuts the workers down in order, instead of interrupting requests.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	pipes.closeChildEnds()
	if err != nil {
		pipes.closeAll()
		return nil, fmt.Errorf("start %s: %w", s.spec.Python, err)
	}
	s.live.Store(cmd.Process.Pid, true)
	w := newWorker(id, execProcess{cmd, s}, pipes, s.log)
	if err := w.awaitReady(s.timeout); err != nil {
		return nil, w.abortBoot(err, s.spec.Python)
	}
	return w, nil
}

// abortBoot cleans up after a worker that did not become ready and explains why.
func (w *Worker) abortBoot(err error, python string) error {
	w.conn.Close()
	var boot *BootError
	if !errors.As(err, &boot) {
		// A worker that explains itself exits on its own; any other
		// failure leaves a process that may still be running.
		w.kill()
	}
	waitErr := w.proc.Wait()
	w.awaitOutput()
	if errors.Is(err, io.EOF) {
		// It exited before saying anything: wrong interpreter, a syntax
		// error in the worker, a signal. Its output is in the log.
		if waitErr == nil {
			return fmt.Errorf("worker %d (pid %d) exited while starting, with status 0, before reporting ready: does the app exit (sys.exit, os._exit) as it is imported, or is %s not a Python interpreter?", w.ID, w.Pid, python)
		}
		return fmt.Errorf("worker %d (pid %d) exited while starting: %v", w.ID, w.Pid, waitErr)
	}
	return err
}
