package pool

import (
	"bufio"
	"encoding/binary"
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

// Spec says how to start a worker process.
type Spec struct {
	Python     string   // interpreter path
	Script     string   // path of taipan_worker.py
	App        string   // MODULE[:CALLABLE]
	Dir        string   // working directory ("" = taipan's)
	Env        []string // full environment
	PythonPath []string // extra sys.path entries
}

// BootError is returned when a worker could not load the app. Text holds
// the worker's explanation, with the Python traceback.
type BootError struct {
	Text string
}

func (e *BootError) Error() string { return e.Text }

// Worker is one Python worker process and the socket to it. Its reader
// goroutine delivers response frames to jobs; its writer goroutine sends
// batches and cancels, so neither direction can stall the other.
type Worker struct {
	ID      int
	Pid     int
	Python  string // interpreter version the worker reported
	started time.Time

	cmd    *exec.Cmd
	conn   *net.UnixConn
	reader *wire.Reader
	log    *logging.Logger
	writes chan []byte
	done   chan struct{} // closed when the worker has exited and been reaped
	relay  sync.WaitGroup

	mu       sync.Mutex
	inflight map[uint32]*Job
	dead     bool
}

// startWorker starts a worker and waits, up to timeout, for it to load the
// app and report READY.
func startWorker(spec *Spec, id int, timeout time.Duration, log *logging.Logger) (*Worker, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "taipan-worker")
	child := os.NewFile(uintptr(fds[1]), "taipan-worker-child")
	fc, err := net.FileConn(parent)
	parent.Close()
	if err != nil {
		child.Close()
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	conn := fc.(*net.UnixConn)

	args := []string{"-u", spec.Script, "--fd", "3", "--app", spec.App,
		"--protocol", strconv.Itoa(wire.Version)}
	for _, p := range spec.PythonPath {
		args = append(args, "--pythonpath", p)
	}
	cmd := exec.Command(spec.Python, args...)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	cmd.ExtraFiles = []*os.File{child}
	// Own process group: a Ctrl-C in the terminal reaches taipan, which then
	// shuts the workers down in order, instead of interrupting requests.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	outR, outW, err := os.Pipe()
	if err != nil {
		conn.Close()
		child.Close()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = outW, outW
	err = cmd.Start()
	// The child has its own copies now; keeping ours open would hide the
	// end of file that tells us the worker died.
	child.Close()
	outW.Close()
	if err != nil {
		conn.Close()
		outR.Close()
		return nil, fmt.Errorf("start %s: %w", spec.Python, err)
	}

	w := &Worker{
		ID:       id,
		Pid:      cmd.Process.Pid,
		started:  time.Now(),
		cmd:      cmd,
		conn:     conn,
		reader:   wire.NewReader(conn),
		log:      log,
		writes:   make(chan []byte, 4),
		done:     make(chan struct{}),
		inflight: make(map[uint32]*Job),
	}
	w.relay.Add(1)
	go w.relayOutput(outR)

	if err := w.awaitReady(timeout); err != nil {
		w.conn.Close()
		var boot *BootError
		if !errors.As(err, &boot) {
			// A worker that explains itself exits on its own; any other
			// failure leaves a process that may still be running.
			w.kill()
		}
		waitErr := w.cmd.Wait()
		w.relay.Wait()
		if errors.Is(err, io.EOF) {
			// It exited before saying anything: wrong interpreter, a
			// syntax error in the worker, a signal. Its output is in the log.
			if waitErr == nil {
				return nil, fmt.Errorf("worker %d (pid %d) exited while starting, with status 0, before reporting ready: is %s a Python interpreter?", id, w.Pid, spec.Python)
			}
			return nil, fmt.Errorf("worker %d (pid %d) exited while starting: %v", id, w.Pid, waitErr)
		}
		return nil, err
	}
	return w, nil
}

// awaitReady reads the worker's first frame: READY or BOOT_ERROR.
func (w *Worker) awaitReady(timeout time.Duration) error {
	if timeout > 0 {
		w.conn.SetReadDeadline(time.Now().Add(timeout))
		defer w.conn.SetReadDeadline(time.Time{})
	}
	f, err := w.reader.Next()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("worker %d (pid %d) did not load the app within %v", w.ID, w.Pid, timeout)
		}
		return err
	}
	switch f.Kind {
	case wire.KindReady:
		var ready struct {
			Protocol int    `json:"protocol"`
			Python   string `json:"python"`
		}
		if err := json.Unmarshal(f.Payload, &ready); err != nil {
			return fmt.Errorf("worker %d: bad READY frame: %w", w.ID, err)
		}
		if ready.Protocol != wire.Version {
			return fmt.Errorf("worker %d speaks protocol %d, taipan speaks %d", w.ID, ready.Protocol, wire.Version)
		}
		w.Python = ready.Python
		return nil
	case wire.KindBootError:
		return &BootError{Text: string(f.Payload)}
	}
	return fmt.Errorf("worker %d: expected READY, got %v", w.ID, f.Kind)
}

// relayOutput copies the worker's stdout and stderr, line by line, to the
// error log, so a print() or a warning is never lost or torn.
func (w *Worker) relayOutput(r *os.File) {
	defer w.relay.Done()
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' && err == nil {
				// A line longer than the buffer: pass it through in pieces.
				w.log.Raw(line)
				continue
			}
			if line[len(line)-1] != '\n' {
				line = append(line, '\n')
			}
			w.log.Raw(line)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// run serves the worker until it exits: the writer goroutine plus the read
// loop. It returns the reason the worker stopped.
func (w *Worker) run(p *Pool) error {
	go w.writeLoop()
	err := w.readLoop(p)
	w.conn.Close()
	waitErr := w.cmd.Wait()
	w.relay.Wait()
	w.reader.Close()
	close(w.done)
	if waitErr != nil {
		return waitErr
	}
	return err
}

func (w *Worker) writeLoop() {
	for {
		select {
		case b := <-w.writes:
			if _, err := w.conn.Write(b); err != nil {
				// The read loop sees the same failure and cleans up.
				w.conn.Close()
				return
			}
		case <-w.done:
			return
		}
	}
}

// readLoop delivers frames to the jobs they belong to until the socket fails.
func (w *Worker) readLoop(p *Pool) error {
	for {
		f, err := w.reader.Next()
		if err != nil {
			w.failInflight()
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if f.Kind == wire.KindLog {
			w.logFrame(f.Payload)
			f.Release()
			continue
		}
		w.mu.Lock()
		j := w.inflight[f.Stream]
		w.mu.Unlock()
		if j == nil {
			if f.File != nil {
				f.File.Close()
			}
			w.log.Warnf("worker %d: %v frame for unknown stream %d", w.ID, f.Kind, f.Stream)
			f.Release()
			continue
		}
		ev := Event{Kind: f.Kind, Flags: f.Flags, Payload: f.Payload, File: f.File, frame: f}
		end := ev.End()
		j.deliver(ev)
		if end {
			w.mu.Lock()
			delete(w.inflight, f.Stream)
			idle := len(w.inflight) == 0
			w.mu.Unlock()
			if idle {
				p.workerIdle(w)
			}
		}
	}
}

func (w *Worker) logFrame(p []byte) {
	if len(p) == 0 {
		return
	}
	level := logging.Error
	switch {
	case p[0] <= 10:
		level = logging.Debug
	case p[0] <= 20:
		level = logging.Info
	case p[0] <= 30:
		level = logging.Warning
	case p[0] <= 40:
		level = logging.Error
	default:
		level = logging.Critical
	}
	w.log.Logf(level, "[worker %d pid %d] %s", w.ID, w.Pid, p[1:])
}

// failInflight ends every job the worker still owed a response.
func (w *Worker) failInflight() {
	w.mu.Lock()
	w.dead = true
	jobs := w.inflight
	w.inflight = nil
	w.mu.Unlock()
	for _, j := range jobs {
		j.deliver(Event{Err: ErrWorkerDied})
	}
}

// send writes a batch of jobs as one write. It reports false when the worker
// is already dead, and the caller must queue the jobs elsewhere.
func (w *Worker) send(jobs []*Job, nextStream func() uint32) bool {
	size := 0
	for _, j := range jobs {
		size += wire.HeaderSize + 4 + len(j.environ) + len(j.body)
	}
	buf := make([]byte, 0, size)
	w.mu.Lock()
	if w.dead {
		w.mu.Unlock()
		return false
	}
	for _, j := range jobs {
		stream := nextStream()
		j.assign(w, stream)
		w.inflight[stream] = j
		var flags uint8
		if j.bodyFile {
			flags = wire.FlagBodyFile
		}
		buf = wire.AppendRequest(buf, stream, flags, j.environ, j.body)
	}
	w.mu.Unlock()
	w.write(buf)
	return true
}

// cancel tells the worker to stop producing the response of a stream.
func (w *Worker) cancel(stream uint32) {
	w.mu.Lock()
	_, live := w.inflight[stream]
	w.mu.Unlock()
	if live {
		w.write(wire.AppendHeader(nil, wire.Header{Kind: wire.KindCancel, Stream: stream}))
	}
}

func (w *Worker) write(b []byte) {
	select {
	case w.writes <- b:
	case <-w.done:
	}
}

// stop asks the worker to exit by closing its socket, and kills it if it is
// still running after grace.
func (w *Worker) stop(grace time.Duration) {
	w.conn.CloseWrite()
	select {
	case <-w.done:
	case <-time.After(grace):
		w.kill()
		<-w.done
	}
}

// kill ends the process at once.
func (w *Worker) kill() {
	if w.cmd.Process != nil {
		w.cmd.Process.Kill()
	}
}

// InflightCount reports how many requests the worker is handling.
func (w *Worker) InflightCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.inflight)
}

// fileRange decodes a FILE frame's payload.
func fileRange(p []byte) (offset, count int64, err error) {
	if len(p) != 16 {
		return 0, 0, errors.New("FILE frame: want 16 bytes of offset and count")
	}
	return int64(binary.LittleEndian.Uint64(p)), int64(binary.LittleEndian.Uint64(p[8:])), nil
}

// FileRange decodes the offset and count of a FILE event.
func FileRange(ev *Event) (offset, count int64, err error) { return fileRange(ev.Payload) }
