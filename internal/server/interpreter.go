package server

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// minPython is the oldest CPython the worker module runs on.
var minPython = [2]int{3, 9}

// checkInterpreter asks the interpreter for its version before any worker
// starts. An older one cannot even compile the worker module (Python 2.7
// and 3.6 stop at its first line, a SyntaxError that names taipan's file
// rather than the interpreter), so it is refused here with one line. An
// interpreter that does not answer is left to the workers' boot, whose
// errors explain what it is.
func checkInterpreter(python string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c",
		`import sys; sys.stdout.write("%d.%d.%d" % tuple(sys.version_info[:3]))`).Output()
	if err != nil {
		return nil
	}
	version := strings.TrimSpace(string(out))
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return nil
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return nil
	}
	if major < minPython[0] || major == minPython[0] && minor < minPython[1] {
		return fmt.Errorf("%s is Python %s; taipan needs Python %d.%d or newer", python, version, minPython[0], minPython[1])
	}
	return nil
}
