package cgi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"taipan/internal/edge"
	"taipan/internal/logging"
)

// Timings and limits of a script's process.
const (
	// killGrace is how long a script has to exit after SIGTERM before its
	// process group gets SIGKILL.
	killGrace = time.Second
	// lingerGrace is how long a script may keep running after closing its
	// output, and how long processes it leaves behind may keep the output
	// open after it exits, before its process group is killed.
	lingerGrace = time.Second
	// stderrDrain is how long finish waits for the script's standard
	// error to close after the script exited (a process left behind may
	// hold it open) before it stops reading.
	stderrDrain = 250 * time.Millisecond
	// maxStderrLine and maxStderrLines bound what one request's script
	// can put in the error log.
	maxStderrLine  = 4 << 10
	maxStderrLines = 100
)

// stopReason is why taipan killed a script.
type stopReason int32

const (
	stopRunning    stopReason = iota // not stopped
	stopTimeout                      // ran longer than Config.Timeout
	stopClientGone                   // the client left while the answer streamed
	stopAbandoned                    // Serve stopped relaying (bad output, a write error)
)

// process is one running script: its process group, the pipes to it, and
// the goroutines that feed its input, log its errors, reap it and watch
// the clock.
type process struct {
	cmd    *exec.Cmd
	name   string // SCRIPT_NAME, to tag log lines
	log    *logging.Logger
	stdout *os.File // read end of the script's standard output
	stdin  *os.File // write end of its standard input, nil without a body
	stderr *os.File // read end of its standard error
	pumps  sync.WaitGroup

	exited  chan struct{} // closed once the script is reaped
	waitErr error         // how it exited; set before exited is closed

	eof      chan struct{}          // closed by outputDone
	eofSeen  bool                   // outputDone was called (Serve's goroutine only)
	client   chan (<-chan struct{}) // ClientGone's channel, for the watchdog
	finished chan struct{}          // closed by finish: the watchdog returns

	abortOnce sync.Once
	reason    atomic.Int32 // a stopReason
}

// start runs script s with env as its whole environment and body on its
// standard input, in its own process group, and starts watching it: it is
// killed after timeout.
func start(s *script, env []string, body *edge.Body, timeout time.Duration, log *logging.Logger) (*process, error) {
	var parentEnds, childEnds []*os.File
	defer func() { closeAll(childEnds) }() // the child has its copies once started
	pipe := func() (r, w *os.File, err error) {
		if r, w, err = os.Pipe(); err != nil {
			return nil, nil, fmt.Errorf("creating a pipe: %w", err)
		}
		return r, w, nil
	}
	stdoutR, stdoutW, err := pipe()
	if err != nil {
		return nil, err
	}
	parentEnds, childEnds = append(parentEnds, stdoutR), append(childEnds, stdoutW)
	stderrR, stderrW, err := pipe()
	if err != nil {
		closeAll(parentEnds)
		return nil, err
	}
	parentEnds, childEnds = append(parentEnds, stderrR), append(childEnds, stderrW)

	cmd := &exec.Cmd{
		Path:   s.path,
		Args:   []string{s.path},
		Env:    env,
		Dir:    filepath.Dir(s.path),
		Stdout: stdoutW,
		Stderr: stderrW,
		// Its own process group, so that everything it starts can be
		// killed with it; and it dies with taipan rather than outlive it.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	var stdinW *os.File
	if body.Len() > 0 {
		// A pipe fed by a goroutine rather than the body's file itself:
		// a body held in memory has no file, and this way the script
		// sees the same kind of stdin either way.
		var stdinR *os.File
		if stdinR, stdinW, err = pipe(); err != nil {
			closeAll(parentEnds)
			return nil, err
		}
		parentEnds, childEnds = append(parentEnds, stdinW), append(childEnds, stdinR)
		cmd.Stdin = stdinR
	} // else exec gives the script /dev/null
	if err := cmd.Start(); err != nil {
		closeAll(parentEnds)
		return nil, err
	}

	p := &process{
		cmd:      cmd,
		name:     s.name,
		log:      log,
		stdout:   stdoutR,
		stdin:    stdinW,
		stderr:   stderrR,
		exited:   make(chan struct{}),
		eof:      make(chan struct{}),
		client:   make(chan (<-chan struct{}), 1),
		finished: make(chan struct{}),
	}
	go p.reap()
	go p.watch(timeout)
	p.pumps.Add(1)
	go p.logStderr()
	if stdinW != nil {
		p.pumps.Add(1)
		go p.feed(body.Reader())
	}
	return p, nil
}

// closeAll closes files, ignoring errors: they are pipe ends no longer needed.
func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// reap waits for the script to exit, which also frees its process table
// entry: no script is left a zombie.
func (p *process) reap() {
	p.waitErr = p.cmd.Wait()
	close(p.exited)
}

// feed copies the request body to the script's standard input and closes
// it. A script need not read its input: the copy then ends with EPIPE when
// the script exits, or when finish closes the pipe.
func (p *process) feed(body io.Reader) {
	defer p.pumps.Done()
	_, err := io.Copy(p.stdin, body)
	p.stdin.Close()
	if err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, os.ErrClosed) {
		p.log.Debugf("cgi: %s: writing the request body: %v", p.name, err)
	}
}

// logStderr copies the script's standard error to the log, a line at a
// time, tagged with the script's name. Longer lines than maxStderrLine are
// split, and past maxStderrLines lines the rest is read but dropped, so a
// chatty script neither blocks on a full pipe nor floods the log.
func (p *process) logStderr() {
	defer p.pumps.Done()
	br := bufio.NewReaderSize(p.stderr, maxStderrLine)
	for n := 0; ; {
		line, err := br.ReadSlice('\n')
		if line = bytes.TrimRight(line, "\r\n"); len(line) > 0 {
			n++
			switch {
			case n <= maxStderrLines:
				p.log.Warnf("cgi: %s: %s", p.name, line)
			case n == maxStderrLines+1:
				p.log.Warnf("cgi: %s: more than %d lines on stderr; dropping the rest", p.name, maxStderrLines)
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

// watch is the watchdog: it kills the script when it runs past timeout,
// when the client goes away while the answer streams, and when the script
// and its output do not end together (one of them ends, the other does not
// follow within lingerGrace). It returns when finish is called or once it
// has aborted the script.
func (p *process) watch(timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var (
		exited = p.exited
		eof    = p.eof
		gone   <-chan struct{}
		linger <-chan time.Time
	)
	for {
		select {
		case <-p.finished:
			return
		case <-deadline.C:
			p.log.Warnf("cgi: %s: still running after %v; killing it", p.name, timeout)
			p.abort(stopTimeout)
			return
		case gone = <-p.client:
		case <-gone:
			p.log.Debugf("cgi: %s: the client went away; killing the script", p.name)
			p.abort(stopClientGone)
			return
		case <-exited:
			exited, linger = nil, nil
			if eof != nil {
				linger = time.After(lingerGrace)
			}
		case <-eof:
			eof, linger = nil, nil
			if exited != nil {
				linger = time.After(lingerGrace)
			}
		case <-linger:
			linger = nil
			if exited == nil {
				p.log.Warnf("cgi: %s: exited leaving processes that hold its output open; killing them", p.name)
			} else {
				p.log.Warnf("cgi: %s: closed its output but kept running; killing it", p.name)
			}
			// Killing them ends the output (or the script) without
			// losing what is still in the pipe; the deadline still
			// covers a process that escaped the group.
			p.killGroup()
		}
	}
}

// watchClient makes the watchdog kill the script when gone is closed.
func (p *process) watchClient(gone <-chan struct{}) { p.client <- gone }

// outputDone tells the watchdog that the script's output has ended.
func (p *process) outputDone() {
	if !p.eofSeen {
		p.eofSeen = true
		close(p.eof)
	}
}

// stopReason reports why the script was killed, if it was.
func (p *process) stopReason() stopReason { return stopReason(p.reason.Load()) }

// abort kills the script's process group and closes the output pipe, so
// that a read of it returns even if a process outside the group still
// holds the other end. Only the first call has an effect; the reason it
// records is what Serve answers by (504 for a timeout).
func (p *process) abort(why stopReason) {
	p.abortOnce.Do(func() {
		p.reason.Store(int32(why))
		p.killGroup()
		p.stdout.Close()
	})
}

// killGroup sends the script's process group SIGTERM, then SIGKILL once the
// script has exited or killGrace has passed, for whatever it started and
// whatever ignored the SIGTERM.
//
// Once the script is reaped its pid could in principle be reused as a new
// group's id; the SIGKILL follows within moments, long before the kernel
// cycles through the pid space.
func (p *process) killGroup() {
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(killGrace):
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	p.cmd.Process.Kill() // in case the script moved itself to another group
}

// finish ends the script's run: a script whose output has not ended is
// killed; then it waits until the script is reaped and the goroutines
// around it have returned, closes the pipes, and logs an unsuccessful exit.
func (p *process) finish() {
	if !p.eofSeen {
		p.abort(stopAbandoned)
	}
	<-p.exited // bounded: after an end of output, the watchdog sees to it
	close(p.finished)
	if p.stdin != nil {
		p.stdin.Close() // a process left behind may hold stdin without reading
	}
	pumped := make(chan struct{})
	go func() {
		p.pumps.Wait()
		close(pumped)
	}()
	select {
	case <-pumped:
	case <-time.After(stderrDrain):
		p.stderr.Close() // held open by a process that escaped the group
		<-pumped
	}
	p.stderr.Close()
	p.stdout.Close()
	if p.waitErr != nil && p.stopReason() == stopRunning {
		p.log.Warnf("cgi: %s: %v", p.name, p.waitErr)
	}
}
