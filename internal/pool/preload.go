package pool

import (
	"errors"
	"time"

	"taipan/internal/logging"
)

// newForkSpawner starts the fork server for --preload.
func newForkSpawner(spec *Spec, timeout time.Duration, log *logging.Logger) (spawner, error) {
	return nil, errors.New("--preload is not available yet")
}
