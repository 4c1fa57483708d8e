package server

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"taipan/internal/logging"
)

// watchSources watches dirs, recursively, for changes to .py files and
// sends the changed file's name on changed, at most once per quiet period
// (an editor's save is often several events). It returns a stop func.
func watchSources(dirs []string, changed chan<- string, log *logging.Logger) (stop func(), err error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // unreadable parts are skipped, not fatal
			}
			if d.IsDir() {
				if name := d.Name(); path != dir && (strings.HasPrefix(name, ".") || name == "__pycache__" || name == "node_modules") {
					return filepath.SkipDir
				}
				return w.Add(path)
			}
			return nil
		})
		if err != nil {
			w.Close()
			return nil, err
		}
	}
	log.Infof("Watching %s for .py changes (--reload)", strings.Join(dirs, ", "))
	go func() {
		const quiet = 200 * time.Millisecond
		var pending string
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for {
			select {
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Has(fsnotify.Create) {
					// Watch new directories too.
					if info, err := os.Stat(ev.Name); err == nil && info.IsDir() {
						w.Add(ev.Name)
					}
				}
				if strings.HasSuffix(ev.Name, ".py") && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 {
					pending = ev.Name
					timer.Reset(quiet)
				}
			case <-timer.C:
				select {
				case changed <- pending:
				default: // a reload is already pending
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warnf("--reload: %v", err)
			}
		}
	}()
	return func() { w.Close() }, nil
}
