package pool

// --preload: one Python process, the fork server, imports the app once and
// forks every worker from itself (copy-on-write). Go still supervises each
// worker as if it had started it: it makes the worker's socketpair and pipes
// and passes the child ends to the fork server over a control socket, and
// the fork server, whose children the workers are, reaps them and reports
// each exit. The control protocol is described in python/taipan_worker.py.

import (
	"bufio"
	"encoding/json"
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

const (
	controlBufSize = 256 << 10 // larger than any control message
	// forkServerGrace is how long a fork server has to exit after its
	// control socket is closed, before it is killed.
	forkServerGrace = 5 * time.Second
	// orphanWait bounds the wait for a worker whose fork server died: it
	// gets SIGKILL from the kernel (PR_SET_PDEATHSIG) or from us.
	orphanWait = 5 * time.Second
)

var errForkServerClosed = errors.New("the fork server is closed")

// forkSpawner forks workers from a fork server. A reload starts a new fork
// server with fresh code; the old one stays until its last worker has been
// reaped, since only it can reap them.
type forkSpawner struct {
	spec    *Spec
	timeout time.Duration
	log     *logging.Logger

	startMu sync.Mutex // one fork server start at a time (reload, restart)

	mu      sync.Mutex
	cur     *forkServer
	servers map[*forkServer]bool // every fork server not yet shut down, cur included
	closed  bool
}

// newForkSpawner starts the fork server for --preload. If the app cannot be
// imported it returns a *BootError with the traceback.
func newForkSpawner(spec *Spec, timeout time.Duration, log *logging.Logger) (spawner, error) {
	s := &forkSpawner{spec: spec, timeout: timeout, log: log, servers: make(map[*forkServer]bool)}
	srv, err := s.start()
	if err != nil {
		return nil, err
	}
	s.cur = srv
	s.servers[srv] = true
	return s, nil
}

// start starts a fork server and waits until it has imported the app.
func (s *forkSpawner) start() (*forkServer, error) {
	srv, err := startForkServer(s.spec, s.timeout, s.log)
	if err != nil {
		return nil, err
	}
	srv.onIdle = func() { s.retired(srv) }
	s.log.Infof("Fork server (pid %d) imported the app (Python %s); workers are forked from it", srv.pid, srv.python)
	return srv, nil
}

// server returns the fork server to fork from. If the current one died it
// starts another (which imports the code on disk now).
func (s *forkSpawner) server() (*forkServer, error) {
	s.mu.Lock()
	srv, closed := s.cur, s.closed
	s.mu.Unlock()
	if closed {
		return nil, errForkServerClosed
	}
	if !srv.isDead() {
		return srv, nil
	}
	s.startMu.Lock()
	defer s.startMu.Unlock()
	s.mu.Lock()
	srv, closed = s.cur, s.closed
	s.mu.Unlock()
	if closed {
		return nil, errForkServerClosed
	}
	if !srv.isDead() {
		return srv, nil // restarted meanwhile
	}
	s.log.Errorf("The fork server (pid %d) is gone (%v); starting a new one", srv.pid, srv.deathReason())
	nsrv, err := s.start()
	if err != nil {
		return nil, fmt.Errorf("the fork server (pid %d) died and a new one could not start: %w", srv.pid, err)
	}
	if !s.install(nsrv) {
		return nil, errForkServerClosed
	}
	return nsrv, nil
}

// install makes srv the fork server new workers come from and retires the
// previous one. It reports false (and stops srv) if the spawner is closed.
func (s *forkSpawner) install(srv *forkServer) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		srv.shutdown()
		return false
	}
	old := s.cur
	s.cur = srv
	s.servers[srv] = true
	s.mu.Unlock()
	old.retire()
	return true
}

// retired is called once a retired fork server has no workers left.
func (s *forkSpawner) retired(srv *forkServer) {
	s.mu.Lock()
	if !s.servers[srv] || s.cur == srv {
		s.mu.Unlock()
		return
	}
	delete(s.servers, srv)
	s.mu.Unlock()
	dead := srv.isDead()
	srv.shutdown()
	if !dead {
		s.log.Infof("Old fork server (pid %d) stopped: its last worker has exited", srv.pid)
	}
}

// reload starts a fork server that imports the app's code afresh; new
// workers are forked from it. The old one is stopped once its last worker
// has exited. If the new code cannot be imported, the old server stays.
func (s *forkSpawner) reload() error {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	srv, err := s.start()
	if err != nil {
		return err
	}
	if !s.install(srv) {
		return ErrClosed
	}
	return nil
}

func (s *forkSpawner) close() {
	s.mu.Lock()
	s.closed = true
	servers := make([]*forkServer, 0, len(s.servers))
	for srv := range s.servers {
		servers = append(servers, srv)
	}
	clear(s.servers)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.shutdown()
		}()
	}
	wg.Wait()
}

func (s *forkSpawner) spawn(id int) (*Worker, error) {
	srv, err := s.server()
	if err != nil {
		return nil, err
	}
	pipes, err := newWorkerPipes()
	if err != nil {
		return nil, err
	}
	var deadline time.Time
	if s.timeout > 0 {
		deadline = time.Now().Add(s.timeout)
	}
	proc, err := srv.fork(id, pipes, deadline, s.timeout)
	pipes.closeChildEnds()
	if err != nil {
		pipes.closeAll()
		return nil, err
	}
	w := newWorker(id, proc, pipes, s.log)
	var timeout time.Duration
	if s.timeout > 0 {
		timeout = max(time.Until(deadline), time.Millisecond)
	}
	if err := w.awaitReady(timeout); err != nil {
		return nil, w.abortBoot(err, s.spec.Python)
	}
	return w, nil
}

// controlMsg is any message on the control socket; see taipan_worker.py.
type controlMsg struct {
	Ready      *int    `json:"ready,omitempty"`
	Pid        int     `json:"pid,omitempty"`
	Python     string  `json:"python,omitempty"`
	BootError  *string `json:"boot_error,omitempty"`
	Spawn      *int    `json:"spawn,omitempty"`
	Spawned    *int    `json:"spawned,omitempty"`
	SpawnError *int    `json:"spawn_error,omitempty"`
	Error      string  `json:"error,omitempty"`
	Exited     *int    `json:"exited,omitempty"`
	Status     int     `json:"status,omitempty"`
}

// forkReply answers one spawn request.
type forkReply struct {
	proc *forkProcess
	err  error
}

// forkServer is one running fork server process.
type forkServer struct {
	pid    int
	python string
	cmd    *exec.Cmd
	conn   *net.UnixConn
	log    *logging.Logger
	onIdle func() // called when a retired server has no workers left

	wmu sync.Mutex // one control message written at a time

	exited  chan struct{} // closed once the process has been reaped
	waitErr error         // its exit status, set before exited closes
	dead    chan struct{} // closed when the control socket reached its end
	readers sync.WaitGroup

	mu       sync.Mutex
	waiters  map[int]chan forkReply // spawn requests by worker id
	procs    map[int]*forkProcess   // forked workers not yet reported exited, by pid
	retiring bool
	stopping bool
	stopOnce sync.Once
}

// startForkServer starts a fork server and waits, up to timeout, until it
// has imported the app.
func startForkServer(spec *Spec, timeout time.Duration, log *logging.Logger) (*forkServer, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "taipan-fork-server")
	child := os.NewFile(uintptr(fds[1]), "taipan-fork-server-child")
	defer child.Close()
	fc, err := net.FileConn(parent)
	parent.Close()
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	conn := fc.(*net.UnixConn)
	outR, outW, err := os.Pipe()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	args := []string{"-u", spec.Script, "--fork-server", "--fd", "3", "--app", spec.App,
		"--protocol", strconv.Itoa(wire.Version)}
	for _, p := range spec.PythonPath {
		args = append(args, "--pythonpath", p)
	}
	if spec.PostFork != "" {
		args = append(args, "--post-fork", spec.PostFork)
	}
	if spec.Threads > 1 {
		args = append(args, "--threads", strconv.Itoa(spec.Threads))
	}
	args = append(args, spec.interfaceArgs()...)
	cmd := exec.Command(spec.Python, args...)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	cmd.ExtraFiles = []*os.File{child}
	cmd.Stdout, cmd.Stderr = outW, outW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	outW.Close()
	child.Close()
	if err != nil {
		conn.Close()
		outR.Close()
		return nil, fmt.Errorf("start %s: %w", spec.Python, err)
	}
	srv := &forkServer{
		pid:     cmd.Process.Pid,
		cmd:     cmd,
		conn:    conn,
		log:     log,
		exited:  make(chan struct{}),
		dead:    make(chan struct{}),
		waiters: make(map[int]chan forkReply),
		procs:   make(map[int]*forkProcess),
	}
	srv.readers.Add(1)
	go func() {
		defer srv.readers.Done()
		relayLines(outR, log)
	}()
	go func() {
		srv.waitErr = cmd.Wait()
		close(srv.exited)
	}()

	msg, err := srv.first(timeout)
	if err != nil {
		srv.abortStart()
		return nil, srv.startError(err, timeout, spec.Python)
	}
	if msg.BootError != nil {
		srv.abortStart()
		return nil, &BootError{Text: *msg.BootError}
	}
	if msg.Ready == nil || *msg.Ready != wire.Version {
		srv.abortStart()
		return nil, fmt.Errorf("fork server (pid %d): expected ready for protocol %d, got %+v", srv.pid, wire.Version, msg)
	}
	srv.python = msg.Python
	srv.readers.Add(1)
	go srv.readLoop()
	return srv, nil
}

// first reads the fork server's first message: ready or boot_error.
func (srv *forkServer) first(timeout time.Duration) (*controlMsg, error) {
	if timeout > 0 {
		srv.conn.SetReadDeadline(time.Now().Add(timeout))
		defer srv.conn.SetReadDeadline(time.Time{})
	}
	buf := make([]byte, controlBufSize)
	n, err := srv.conn.Read(buf)
	if n == 0 && (err == nil || errors.Is(err, io.EOF)) {
		return nil, errEOF // it exited: startError says how
	}
	if err != nil {
		return nil, err
	}
	var msg controlMsg
	if err := json.Unmarshal(buf[:n], &msg); err != nil {
		return nil, fmt.Errorf("fork server (pid %d): bad control message: %w", srv.pid, err)
	}
	return &msg, nil
}

var errEOF = errors.New("end of file")

// startError explains why the fork server did not report ready.
func (srv *forkServer) startError(err error, timeout time.Duration, python string) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("the fork server (pid %d) did not load the app within %v", srv.pid, timeout)
	case errors.Is(err, errEOF):
		if srv.waitErr == nil {
			return fmt.Errorf("the fork server (pid %d) exited while starting, with status 0, before reporting ready: does the app exit (sys.exit, os._exit) as it is imported, or is %s not a Python interpreter?", srv.pid, python)
		}
		return fmt.Errorf("the fork server (pid %d) exited while starting: %v", srv.pid, srv.waitErr)
	}
	return err
}

// abortStart stops a fork server that did not become ready.
func (srv *forkServer) abortStart() {
	srv.mu.Lock()
	srv.stopping = true
	srv.mu.Unlock()
	close(srv.dead)
	srv.conn.Close()
	srv.waitExit()
	// Its output, but not for long: a process the app started may hold
	// the pipe open (Worker.awaitOutput).
	waitAtMost(&srv.readers, outputDrain)
}

// waitExit waits for the process to exit, killing it after forkServerGrace.
func (srv *forkServer) waitExit() {
	select {
	case <-srv.exited:
	case <-time.After(forkServerGrace):
		srv.log.Warnf("The fork server (pid %d) did not exit within %v; killing it", srv.pid, forkServerGrace)
		srv.cmd.Process.Kill()
		<-srv.exited
	}
}

// relayLines copies a process's output, line by line, to the error log, so
// a print() or a warning is never lost or torn. A line longer than the
// buffer passes through in pieces.
func relayLines(r *os.File, log *logging.Logger) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' && err == nil {
				log.Raw(line)
				continue
			}
			if line[len(line)-1] != '\n' {
				line = append(line, '\n')
			}
			log.Raw(line)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (srv *forkServer) isDead() bool {
	select {
	case <-srv.dead:
		return true
	default:
		return false
	}
}

// deathReason says how the fork server ended, once it is dead.
func (srv *forkServer) deathReason() string {
	select {
	case <-srv.exited:
		if srv.waitErr != nil {
			return srv.waitErr.Error()
		}
		return "exit status 0"
	case <-time.After(time.Second):
		return "its control socket closed"
	}
}

// fork asks the fork server for worker id, with the child ends of pipes,
// and waits for its pid until deadline (zero: no limit), which is timeout
// from now.
func (srv *forkServer) fork(id int, pipes *workerPipes, deadline time.Time, timeout time.Duration) (*forkProcess, error) {
	ch := make(chan forkReply, 1)
	srv.mu.Lock()
	if srv.isDead() || srv.stopping {
		srv.mu.Unlock()
		return nil, fmt.Errorf("cannot fork worker %d: the fork server (pid %d) is not running", id, srv.pid)
	}
	srv.waiters[id] = ch
	srv.mu.Unlock()
	defer srv.checkIdle()

	msg, _ := json.Marshal(controlMsg{Spawn: &id})
	rights := unix.UnixRights(int(pipes.childSock.Fd()), int(pipes.childTB.Fd()), int(pipes.childOut.Fd()))
	srv.wmu.Lock()
	srv.conn.SetWriteDeadline(deadline)
	_, _, err := srv.conn.WriteMsgUnix(msg, rights, nil)
	srv.wmu.Unlock()
	if err != nil {
		srv.dropWaiter(id)
		return nil, fmt.Errorf("cannot fork worker %d: fork server (pid %d): %w", id, srv.pid, err)
	}

	var timer <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timer = t.C
	}
	select {
	case r := <-ch:
		return r.proc, r.err
	case <-srv.dead:
		if srv.dropWaiter(id) {
			return nil, fmt.Errorf("cannot fork worker %d: the fork server (pid %d) exited", id, srv.pid)
		}
	case <-timer:
		if srv.dropWaiter(id) {
			return nil, fmt.Errorf("the fork server (pid %d) did not fork worker %d within %v", srv.pid, id, timeout)
		}
	}
	// The reply came as we gave up: it is in the channel.
	r := <-ch
	return r.proc, r.err
}

// dropWaiter withdraws a spawn request; false means its reply was already
// delivered to the waiter's channel.
func (srv *forkServer) dropWaiter(id int) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if _, ok := srv.waiters[id]; ok {
		delete(srv.waiters, id)
		return true
	}
	return false
}

// retire marks the server as no longer forking; it stops once its last
// worker has been reaped.
func (srv *forkServer) retire() {
	srv.mu.Lock()
	srv.retiring = true
	srv.mu.Unlock()
	srv.checkIdle()
}

// checkIdle calls onIdle when a retired server has nothing left to do.
func (srv *forkServer) checkIdle() {
	srv.mu.Lock()
	idle := srv.retiring && !srv.stopping && len(srv.procs) == 0 && len(srv.waiters) == 0
	srv.mu.Unlock()
	if idle && srv.onIdle != nil {
		go srv.onIdle()
	}
}

// shutdown closes the control socket, which tells the fork server to kill
// any worker it still has and exit, and waits until it has.
func (srv *forkServer) shutdown() {
	srv.stopOnce.Do(func() {
		srv.mu.Lock()
		srv.stopping = true
		srv.mu.Unlock()
		srv.conn.CloseWrite()
		srv.waitExit()
		srv.readers.Wait()
		srv.conn.Close()
	})
}

// readLoop handles the fork server's messages until its control socket ends.
func (srv *forkServer) readLoop() {
	defer srv.readers.Done()
	buf := make([]byte, controlBufSize)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := srv.conn.ReadMsgUnix(buf, oob)
		fds := receivedFds(oob[:oobn])
		if err != nil || n == 0 {
			closeFds(fds)
			srv.ended(err)
			return
		}
		var msg controlMsg
		if err := json.Unmarshal(buf[:n], &msg); err != nil {
			closeFds(fds)
			srv.log.Errorf("Fork server (pid %d): bad control message %q: %v", srv.pid, buf[:min(n, 200)], err)
			continue
		}
		switch {
		case msg.Spawned != nil:
			pidfd := -1
			if len(fds) > 0 {
				pidfd = fds[0]
				closeFds(fds[1:])
			}
			srv.spawned(*msg.Spawned, msg.Pid, pidfd)
		case msg.SpawnError != nil:
			closeFds(fds)
			srv.reply(*msg.SpawnError, forkReply{err: fmt.Errorf("fork server (pid %d) could not fork worker %d: %s", srv.pid, *msg.SpawnError, msg.Error)})
		case msg.Exited != nil:
			closeFds(fds)
			srv.mu.Lock()
			p := srv.procs[*msg.Exited]
			delete(srv.procs, *msg.Exited)
			srv.mu.Unlock()
			if p != nil {
				p.finish(exitError(unix.WaitStatus(msg.Status)))
				srv.checkIdle()
			}
		default:
			closeFds(fds)
			srv.log.Warnf("Fork server (pid %d): unexpected control message %q", srv.pid, buf[:min(n, 200)])
		}
	}
}

// spawned records a forked worker and hands it to whoever asked for it.
func (srv *forkServer) spawned(id, pid, pidfd int) {
	p := &forkProcess{pid: pid, pidfd: pidfd, done: make(chan struct{})}
	srv.mu.Lock()
	srv.procs[pid] = p
	ch, ok := srv.waiters[id]
	delete(srv.waiters, id)
	if ok {
		ch <- forkReply{proc: p} // buffered; sent under the lock, see dropWaiter
	}
	srv.mu.Unlock()
	if !ok {
		// Nobody waits for it any more (the spawn timed out): its socket is
		// closed, so it exits on its own; make sure.
		p.Signal(syscall.SIGKILL)
	}
}

// reply answers a spawn request, if it is still waited for.
func (srv *forkServer) reply(id int, r forkReply) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if ch, ok := srv.waiters[id]; ok {
		delete(srv.waiters, id)
		ch <- r
	}
}

// ended handles the end of the control socket: the fork server exited (or
// is exiting). Its workers die with it; their Wait returns once they have.
func (srv *forkServer) ended(err error) {
	srv.mu.Lock()
	stopping := srv.stopping
	procs := srv.procs
	srv.procs = make(map[int]*forkProcess)
	close(srv.dead)
	srv.mu.Unlock()
	for _, p := range procs {
		go p.orphaned()
	}
	if !stopping {
		reason := srv.deathReason()
		if err != nil && !errors.Is(err, io.EOF) {
			reason = err.Error()
		}
		srv.log.Errorf("The fork server (pid %d) exited unexpectedly (%s); its %d worker%s die with it", srv.pid, reason, len(procs), plural(len(procs)))
	}
}

// receivedFds parses the descriptors passed with a control message.
func receivedFds(oob []byte) []int {
	if len(oob) == 0 {
		return nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
	return fds
}

func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// exitError turns a wait status into what exec.Cmd.Wait would have said.
func exitError(ws unix.WaitStatus) error {
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		return nil
	case ws.Exited():
		return fmt.Errorf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		if ws.CoreDump() {
			return fmt.Errorf("signal: %v (core dumped)", ws.Signal())
		}
		return fmt.Errorf("signal: %v", ws.Signal())
	}
	return fmt.Errorf("wait status %#x", int(ws))
}

// forkProcess is a worker forked by the fork server. The fork server reaps
// it; Wait returns when it reported the exit.
type forkProcess struct {
	pid  int
	done chan struct{}

	mu     sync.Mutex
	pidfd  int // -1 when the kernel has no pidfds
	exited bool
	err    error
}

func (p *forkProcess) Pid() int { return p.pid }

// Signal sends sig unless the exit was reported: the pid may have been
// reused since. With a pidfd even the moment between the fork server's reap
// and its report is safe.
func (p *forkProcess) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return os.ErrProcessDone
	}
	if p.pidfd >= 0 {
		return unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
	}
	return unix.Kill(p.pid, sig)
}

func (p *forkProcess) Wait() error {
	<-p.done
	return p.err
}

// finish records the exit, once.
func (p *forkProcess) finish(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return
	}
	p.exited = true
	p.err = err
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
	close(p.done)
}

// orphaned finishes a worker whose fork server is gone: it is killed (the
// kernel does it too, PR_SET_PDEATHSIG) and waited for, within orphanWait.
func (p *forkProcess) orphaned() {
	p.mu.Lock()
	pidfd := p.pidfd
	if pidfd >= 0 && !p.exited {
		unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
	}
	p.mu.Unlock()
	deadline := time.Now().Add(orphanWait)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		if p.exited {
			p.mu.Unlock()
			return
		}
		gone := false
		if p.pidfd >= 0 {
			fds := []unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}
			n, _ := unix.Poll(fds, 0)
			gone = n > 0
		} else {
			// Without a pidfd the pid cannot be told from a reused one;
			// the kernel kills it with its parent, so wait for that.
			gone = unix.Kill(p.pid, 0) == unix.ESRCH
		}
		p.mu.Unlock()
		if gone {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.finish(errors.New("its fork server exited"))
}
