package logging

import (
	"fmt"
	"os"
	"sync"
)

// File is a log file opened for appending that can be reopened at the same
// path. It serves logrotate's rotation without copying: logrotate renames
// the file and sends SIGUSR1, and Reopen creates a new file at the path.
// Every Write lands whole in one file or the other, so a rotation neither
// loses nor splits what callers write in one call (an entry, a batch of
// whole access log lines). File is safe for concurrent use.
type File struct {
	path string
	mu   sync.RWMutex // held shared by Write, exclusively by Reopen and Close
	f    *os.File
}

// OpenFile opens (creating it if needed) the log file at path for
// appending.
func OpenFile(path string) (*File, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &File{path: path, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}

// Name is the path the File was opened at.
func (f *File) Name() string { return f.path }

// Write appends p to the current file. Writers share the file: O_APPEND
// places each write(2) whole at the end.
func (f *File) Write(p []byte) (int, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.f == nil {
		return 0, os.ErrClosed
	}
	return f.f.Write(p)
}

// Reopen opens the path again and switches writes to it once the writes
// in progress are done, then closes the old file. If the path cannot be
// opened, the old file stays in use and the error says why.
func (f *File) Reopen() error {
	nf, err := openAppend(f.path)
	if err != nil {
		return fmt.Errorf("reopen %s: %w", f.path, err)
	}
	f.mu.Lock()
	old := f.f
	if old == nil { // closed meanwhile
		f.mu.Unlock()
		nf.Close()
		return fmt.Errorf("reopen %s: %w", f.path, os.ErrClosed)
	}
	f.f = nf
	f.mu.Unlock()
	return old.Close()
}

// Close closes the file; later Writes fail with os.ErrClosed.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.f = nil
	return err
}
