// Package server assembles taipan from a resolved Config: logs, the Python
// worker pool, the HTTP edge and its listeners, and signal handling.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"taipan/internal/bridge"
	"taipan/internal/config"
	"taipan/internal/edge"
	"taipan/internal/logging"
	"taipan/internal/pool"
	"taipan/python"
)

// Version is taipan's version, printed by --version and logged at start.
const Version = "0.1.0"

// ExitError carries the exit status for a failure that has already been
// explained to the user (printed to the error log or stderr).
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// Run serves until SIGTERM or SIGINT and a graceful drain. stdout receives the
// access log when it is "-", stderr the error log when it is "-".
func Run(cfg *config.Config, stdout, stderr io.Writer) error {
	errOut, closeErrLog, err := openLog(cfg.ErrorLogFile, stderr)
	if err != nil {
		return &ExitError{Code: 1, Msg: fmt.Sprintf("--error-logfile: %v", err)}
	}
	defer closeErrLog()
	log := logging.New(errOut, cfg.LogLevel)

	var access *edge.AccessLogWriter
	if cfg.AccessLogFile != "" {
		out, closeAccess, err := openLog(cfg.AccessLogFile, stdout)
		if err != nil {
			return &ExitError{Code: 1, Msg: fmt.Sprintf("--access-logfile: %v", err)}
		}
		defer closeAccess()
		access = edge.NewAccessLogWriter(out, 200*time.Millisecond)
		defer access.Close()
	}

	// systemd's sockets, if it passed any; the variables are cleared before
	// the workers inherit the environment.
	inherited, err := systemdListeners()
	if err != nil {
		return &ExitError{Code: 1, Msg: err.Error()}
	}
	if len(inherited) > 0 && cfg.BindsGiven {
		for _, l := range inherited {
			l.Close()
		}
		inherited = nil
	}

	pyDir, err := python.Install()
	if err != nil {
		return &ExitError{Code: 1, Msg: err.Error()}
	}
	defer os.RemoveAll(pyDir)

	app := cfg.App
	if app == "" {
		app = python.DemoModule + ":app"
	}
	poolCfg := pool.Config{
		Spec: pool.Spec{
			Python:     cfg.Python,
			Script:     filepath.Join(pyDir, python.WorkerFile),
			App:        app,
			Dir:        cfg.Chdir,
			Env:        append(os.Environ(), cfg.Env...),
			PythonPath: cfg.PythonPath,
			PostFork:   cfg.PostFork,
			Gevent:     cfg.WorkerClass == "gevent",
			Interface:  cfg.Interface,
			Loop:       cfg.Loop,
		},
		AsyncSlots:        cfg.WorkerConnections,
		Workers:           cfg.Workers,
		Threads:           cfg.Threads,
		BootTimeout:       cfg.BootTimeout,
		Timeout:           cfg.Timeout,
		HeartbeatInterval: cfg.Heartbeat,
		HeartbeatTimeout:  cfg.HeartbeatTimeout,
		MaxRequests:       cfg.MaxRequests,
		MaxRequestsJitter: cfg.MaxRequestsJitter,
		MaxRSS:            cfg.MaxRSS,
		Preload:           cfg.Preload,
		WorkersMin:        cfg.WorkersMin,
		WorkersMax:        cfg.WorkersMax,
	}
	p := &pools{}
	for i, l := range cfg.Lanes {
		// A lane is a pool of its own, fixed in size; its worker ids start
		// at 1000 × its number, so logs tell the pools apart.
		laneCfg := poolCfg
		laneCfg.Workers, laneCfg.WorkersMin, laneCfg.WorkersMax = l.Workers, 0, 0
		laneCfg.IDBase = 1000 * (i + 1)
		p.lanes = append(p.lanes, bridge.Lane{Prefix: l.Prefix, Pool: pool.New(laneCfg, log)})
		poolCfg.Workers -= l.Workers
	}
	p.main = pool.New(poolCfg, log)

	ecfg := edge.Config{
		LimitRequestLine:      cfg.LimitRequestLine,
		LimitRequestFields:    cfg.LimitRequestFields,
		LimitRequestFieldSize: cfg.LimitRequestFieldSize,
		LimitRequestBody:      cfg.LimitRequestBody,
		BodyMemoryLimit:       cfg.BodyMemoryLimit,
		TempDir:               cfg.TmpDir,
		ReadHeaderTimeout:     cfg.HeaderTimeout,
		KeepAliveTimeout:      cfg.KeepAlive,
		ServerHeader:          "taipan",
	}
	if cfg.LimitRequestBody == 0 {
		ecfg.LimitRequestBody = edge.NoBodyLimit
	}
	if access != nil {
		ecfg.AccessLog = access.Log
	}
	br := bridge.New(p.main, bridge.Options{
		RootPath:     cfg.RootPath,
		Multiprocess: cfg.Workers > 1 || cfg.WorkersMax > 1,
		Multithread:  cfg.Threads > 1,
		Lanes:        p.lanes,
		WebSocket: bridge.WebSocketOptions{
			MaxMessageSize: cfg.WSMaxSize,
			PingInterval:   cfg.WSPingInterval,
			PingTimeout:    cfg.WSPingTimeout,
			WriteTimeout:   edge.DefaultWriteTimeout,
		},
	}, log)
	fr, trust, err := newFront(cfg, ecfg, br, log)
	if err != nil {
		return &ExitError{Code: 1, Msg: err.Error()}
	}
	// Bind first: a taken port is reported before any Python starts.
	if err := fr.listen(cfg, inherited, trust); err != nil {
		return &ExitError{Code: 1, Msg: err.Error()}
	}
	closeListeners := fr.closeListeners

	// Signals are caught from here on, so a Ctrl-C while workers boot
	// still stops them cleanly.
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU)
	defer signal.Stop(signals)
	if os.Getpid() == 1 {
		// As a container's init, orphaned processes are reparented to us
		// and must be reaped, or they stay zombies.
		stopReaper := startReaper(p.OwnsPid, log)
		defer stopReaper()
	}
	if cfg.PidFile != "" {
		if err := os.WriteFile(cfg.PidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			closeListeners()
			return &ExitError{Code: 1, Msg: fmt.Sprintf("--pid: %v", err)}
		}
		defer os.Remove(cfg.PidFile)
	}

	log.Infof("Starting taipan %s", Version)
	if err := p.Start(); err != nil {
		closeListeners()
		var boot *pool.BootError
		if errors.As(err, &boot) {
			log.Criticalf("%s", strings.TrimRight(boot.Text, "\n"))
			return &ExitError{Code: 3, Msg: "the app failed to load (traceback above)"}
		}
		log.Criticalf("%v", err)
		return &ExitError{Code: 1, Msg: "workers failed to start"}
	}
	if cfg.App == "" {
		log.Infof("No app given: serving the built-in demo (taipan --help shows how to serve yours)")
	}

	fr.serve()
	threads := ""
	switch {
	case cfg.WorkerClass == "gevent":
		threads = fmt.Sprintf(" (gevent, up to %d requests each)", cfg.Threads)
	case cfg.Threads > 1:
		threads = fmt.Sprintf(" with %d threads each", cfg.Threads)
	}
	log.Infof("Using %d worker%s%s (%s) for %s", cfg.Workers, plural(cfg.Workers), threads, cfg.Python, app)
	for _, l := range cfg.Lanes {
		log.Infof("Lane %s: %d worker%s reserved for its requests", l.Prefix, l.Workers, plural(l.Workers))
	}

	reloads := make(chan string, 1)
	if cfg.Reload {
		dirs := append([]string{cfg.Chdir}, cfg.PythonPath...)
		if dirs[0] == "" {
			dirs[0] = "."
		}
		stopWatch, err := watchSources(dirs, reloads, log)
		if err != nil {
			log.Errorf("--reload: %v", err)
		} else {
			defer stopWatch()
		}
	}

	fast := false
	for stop := false; !stop; {
		select {
		case why := <-reloads:
			log.Infof("%s changed; reloading", why)
			go p.Reload()
		case sig := <-signals:
			switch sig {
			case syscall.SIGHUP:
				log.Infof("Handling signal: hup")
				fr.reloadCerts()
				go p.Reload()
			case syscall.SIGTTIN:
				log.Infof("Handling signal: ttin")
				p.Scale(1)
			case syscall.SIGTTOU:
				log.Infof("Handling signal: ttou")
				p.Scale(-1)
			case syscall.SIGINT, syscall.SIGQUIT:
				fast, stop = true, true
			default:
				stop = true
			}
			if stop {
				log.Infof("Handling signal: %s", signalName(sig))
			}
		}
	}

	if fast {
		// Quick shutdown: close everything now; in-flight requests are cut.
		log.Infof("Stopping now")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		p.Kill()
		fr.shutdown(ctx)
		p.Close(ctx)
		log.Infof("Shutting down: Master")
		return nil
	}
	log.Infof("Finishing in-flight and queued requests (up to %v)", cfg.GracefulTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.GracefulTimeout)
	defer cancel()
	go func() {
		// Another stop signal means: stop now.
		for {
			select {
			case s := <-signals:
				if s == syscall.SIGTERM || s == syscall.SIGINT || s == syscall.SIGQUIT {
					log.Warnf("Handling signal: %s; stopping now", signalName(s))
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := fr.shutdown(ctx); err != nil {
		log.Warnf("Graceful timeout reached; closing the remaining connections")
	}
	p.Close(ctx)
	log.Infof("Shutting down: Master")
	return nil
}

// openLog opens a log destination: "-" is the given standard stream.
func openLog(name string, std io.Writer) (io.Writer, func(), error) {
	if name == "-" {
		return std, func() {}, nil
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func signalName(s os.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "term"
	case syscall.SIGINT:
		return "int"
	case syscall.SIGQUIT:
		return "quit"
	}
	return s.String()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
