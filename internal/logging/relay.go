package logging

import (
	"bufio"
	"errors"
	"io"
)

// maxOutputLine bounds one entry of relayed output: a longer line becomes
// several entries of at most this many bytes, so a process printing
// without newlines cannot make taipan buffer without limit.
const maxOutputLine = 64 << 10

// Relay copies a worker process's output (its stdout and stderr) to the
// log until r ends: each line one Info entry tagged with the worker's id
// and pid, like WorkerLogf's. A partial last line is written when r ends
// (the worker exited). The app's output is written at every --log-level:
// it is not taipan's to filter, and it is often how an app reports its
// trouble.
func (lg *Logger) Relay(r io.Reader, worker, pid int) {
	br := bufio.NewReaderSize(r, maxOutputLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			lg.write(Info, worker, pid, string(line))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}
