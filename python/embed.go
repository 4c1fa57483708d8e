// Package python holds taipan's Python side, embedded in the binary: the
// worker module that runs apps and the built-in demo app.
package python

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
)

// Worker is the source of taipan_worker.py.
//
//go:embed taipan_worker.py
var Worker []byte

// Demo is the source of taipan_demo.py, the app served when none is named.
//
//go:embed taipan_demo.py
var Demo []byte

// WorkerFile and DemoModule name the files Install writes.
const (
	WorkerFile = "taipan_worker.py"
	DemoModule = "taipan_demo"
)

// Install writes the embedded modules into a new private directory and
// returns its path; the caller removes it when taipan exits.
func Install() (dir string, err error) {
	dir, err = os.MkdirTemp("", "taipan-")
	if err != nil {
		return "", fmt.Errorf("create directory for the python worker: %w", err)
	}
	for name, src := range map[string][]byte{WorkerFile: Worker, DemoModule + ".py": Demo} {
		if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("write %s: %w", name, err)
		}
	}
	return dir, nil
}
