// Package server assembles taipan from a resolved Config: logs, the Python
// worker pool, the HTTP edge and its listeners, and signal handling.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"taipan/internal/bridge"
	"taipan/internal/config"
	"taipan/internal/edge"
	"taipan/internal/logging"
	"taipan/internal/metrics"
	"taipan/internal/pool"
	"taipan/python"
)

// Version is taipan's version, printed by --version and logged at start.
// It is a variable so that release builds can stamp it with
// -ldflags "-X taipan/internal/server.Version=...".
var Version = "0.1.0"

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
	// A closed stdout or stderr (taipan --access-logfile - app | head)
	// must not stop the server, as it does not stop gunicorn. A Go program
	// dies of SIGPIPE when a write to its fd 1 or 2 finds the pipe closed,
	// unless SIGPIPE is notified: then the write fails with EPIPE, as on
	// any other descriptor, and the logs drop what they cannot write.
	// Notified rather than ignored, since an ignored signal would stay
	// ignored in the workers and CGI scripts taipan starts; and not
	// stopped on return, so that the exit status survives the final
	// message to a closed stderr.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)

	if err := checkInterpreter(cfg.Python); err != nil {
		return &ExitError{Code: 2, Msg: err.Error()}
	}

	logs := &logFiles{}
	defer logs.close()
	errOut, err := logs.open(cfg.ErrorLogFile, stderr)
	if err != nil {
		return &ExitError{Code: 1, Msg: fmt.Sprintf("--error-logfile: %v", err)}
	}
	log := logging.NewFormat(errOut, cfg.LogLevel, cfg.LogFormat)

	var access *edge.AccessLogWriter
	if cfg.AccessLogFile != "" {
		format, err := accessFormat(cfg)
		if err != nil {
			return &ExitError{Code: 1, Msg: fmt.Sprintf("--access-logformat: %v", err)}
		}
		out, err := logs.open(cfg.AccessLogFile, stdout)
		if err != nil {
			return &ExitError{Code: 1, Msg: fmt.Sprintf("--access-logfile: %v", err)}
		}
		access = edge.NewAccessLogWriterFormat(out, 200*time.Millisecond, format)
		access.OnWriteError = func(err error) {
			log.Errorf("Writing the access log: %v; its lines are dropped until a write succeeds again", err)
		}
		defer access.Close() // before logs.close: the last lines are flushed to the file
		logs.access = access
	}

	// Signals are caught from here on, before the pid file tells anyone
	// where to send them; those that come before the workers are up are
	// handled once they boot, except the stop signals, which stop the
	// boot.
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR1)
	defer signal.Stop(signals)

	// The pid file first, as gunicorn does: a taipan already running with
	// it is reported before this one binds or starts anything.
	if cfg.PidFile != "" {
		pf, err := createPidFile(cfg.PidFile, os.Getpid())
		if err != nil {
			return &ExitError{Code: 1, Msg: err.Error()}
		}
		defer pf.remove()
	}

	// systemd's sockets, if it passed any and no --bind was given (with
	// --bind, they stay open for fd://N binds to name); the variables are
	// cleared before the workers inherit the environment.
	var inherited []net.Listener
	if cfg.BindsGiven {
		keepSystemdSockets()
	} else if inherited, err = systemdListeners(); err != nil {
		return &ExitError{Code: 1, Msg: err.Error()}
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
			Env:        workerEnv(cfg),
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
		StopTimeout:       stopTimeout(cfg.GracefulTimeout),
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
	var rec *metrics.Recorder // counts requests and worker events for --metrics-bind
	if cfg.MetricsBind != "" {
		rec = metrics.NewRecorder()
		poolCfg.Hooks = rec.PoolHooks()
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
		BodyReadTimeout:       cfg.BodyTimeout,
		KeepAliveTimeout:      cfg.KeepAlive,
		WriteTimeout:          cfg.WriteTimeout,

		MaxConnections:           cfg.MaxConnections,
		MaxConnectionsPerIP:      cfg.MaxConnectionsPerIP,
		MaxRequestsPerConnection: cfg.MaxRequestsPerConnection,

		ServerHeader:     cfg.ServerHeader,
		OmitServerHeader: cfg.ServerHeader == "",
	}
	if cfg.LimitRequestBody == 0 {
		ecfg.LimitRequestBody = edge.NoBodyLimit
	}
	if cfg.KeepAlive == 0 {
		ecfg.KeepAliveTimeout = edge.NoKeepAlive // --keep-alive 0, as gunicorn's keepalive = 0
	}
	spillDir := cfg.TmpDir
	if spillDir == "" {
		spillDir = os.TempDir()
	}
	if n, err := edge.RemoveStaleSpills(spillDir); err != nil {
		log.Warnf("%v", err)
	} else if n > 0 {
		log.Infof("Removed %d request body file(s) in %s left by a taipan that was killed", n, spillDir)
	}
	ecfg.AccessLog = accessLog(access, rec)
	br := bridge.New(p.main, bridge.Options{
		RootPath:     cfg.RootPath,
		Multiprocess: cfg.Workers > 1 || cfg.WorkersMax > 1,
		Multithread:  cfg.Threads > 1,
		Lanes:        p.lanes,
		WebSocket: bridge.WebSocketOptions{
			MaxMessageSize: cfg.WSMaxSize,
			PingInterval:   cfg.WSPingInterval,
			PingTimeout:    cfg.WSPingTimeout,
			WriteTimeout:   cfg.WriteTimeout,
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
	var admin *metrics.Server
	if rec != nil {
		if admin, err = openAdmin(cfg.MetricsBind, rec, p, fr, log); err != nil {
			closeListeners()
			return &ExitError{Code: 1, Msg: err.Error()}
		}
		// Closed last, after the drain: probes and scrapes watch all of it.
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			admin.Shutdown(ctx)
		}()
	}

	if os.Getpid() == 1 {
		// As a container's init, orphaned processes are reparented to us
		// and must be reaped, or they stay zombies.
		stopReaper := startReaper(p.OwnsPid, log)
		defer stopReaper()
	}
	log.Infof("Starting taipan %s", Version)
	if cfg.Debug {
		log.Warnf("--debug: the tracebacks of app errors are sent to clients; never use it in production")
	}
	stopped, err := awaitBoot(p.Start, signals, logs, log)
	if stopped {
		closeListeners()
		log.Infof("Shutting down: Master")
		return nil
	}
	if err != nil {
		closeListeners()
		var boot *pool.BootError
		if errors.As(err, &boot) {
			log.Criticalf("%s", strings.TrimRight(boot.Text, "\n"))
			above := "(see above)" // a message of the app's, as a lifespan startup failure gives
			if strings.Contains(boot.Text, "Traceback (most recent call last)") {
				above = "(traceback above)"
			}
			if f := cfg.ErrorLogFile; f != "" && f != "-" {
				above = "(see " + f + ")" // the log is not where this line goes
			}
			msg := "the app failed to load " + above
			if boot.PostFork {
				msg = "the --post-fork hook failed " + above
			}
			return &ExitError{Code: 3, Msg: msg}
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
			case syscall.SIGUSR1:
				log.Infof("Handling signal: usr1")
				logs.reopen(log)
			case syscall.SIGINT, syscall.SIGQUIT:
				fast, stop = true, true
			default:
				stop = true
			}
			if stop {
				log.Infof("Handling signal: %s", signalName(sig))
				if admin != nil {
					admin.Drain() // /readyz fails from now on, before the listeners close
				}
			}
		}
	}

	if !fast && cfg.DrainDelay > 0 {
		fast = drainDelay(cfg.DrainDelay, signals, logs, log)
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
				if s == syscall.SIGUSR1 {
					log.Infof("Handling signal: usr1")
					logs.reopen(log)
				}
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
	// When the graceful timeout ends (or a second signal comes) with
	// requests still running, their workers are stopped before the
	// connections close: each of those requests then ends with a 503 its
	// client still gets, and a log line, rather than a bare disconnect.
	edgeCtx, closeConns := context.WithCancel(context.Background())
	defer closeConns()
	cutShort := make(chan struct{})
	go func() {
		defer close(cutShort)
		select {
		case <-ctx.Done():
		case <-edgeCtx.Done():
			return // the edge drained in time
		}
		if edgeCtx.Err() != nil {
			return // both at once: the edge drained
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) { // not a second signal, which has been logged
			log.Warnf("Graceful timeout reached; stopping the workers and closing the remaining connections")
		}
		p.Close(ctx)
		select {
		case <-time.After(cutShortWrite):
		case <-edgeCtx.Done():
		}
		closeConns()
	}()
	fr.shutdown(edgeCtx)
	closeConns()
	<-cutShort
	p.Close(ctx)
	log.Infof("Shutting down: Master")
	return nil
}

// cutShortWrite is how long the edge has, once the graceful timeout has
// stopped the workers, to write the 503s of the requests they were running
// before every connection left is closed.
const cutShortWrite = time.Second

// awaitBoot runs start, which boots the workers, and waits for it. A stop
// signal (TERM, INT, QUIT) meanwhile ends the wait at once, stopped, as it
// ends gunicorn's boot: an app can take long to import, and Ctrl-C must
// not wait for it. The pools cannot stop a boot in progress; the workers
// still booting die with taipan, of the SIGKILL their parent's death sends
// them (PR_SET_PDEATHSIG). SIGUSR1 reopens the logs at once; the other
// signals are handled once the workers are up.
func awaitBoot(start func() error, signals chan os.Signal, logs *logFiles, log *logging.Logger) (stopped bool, err error) {
	started := make(chan error, 1)
	go func() { started <- start() }()
	var later []os.Signal
	defer func() {
		for _, s := range later {
			select {
			case signals <- s: // for the main loop, in order
			default: // more than it holds: dropped, as signal.Notify does
			}
		}
	}()
	for {
		select {
		case err := <-started:
			return false, err
		case s := <-signals:
			switch s {
			case syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT:
				log.Infof("Handling signal: %s; stopping while the workers boot", signalName(s))
				return true, nil
			case syscall.SIGUSR1:
				log.Infof("Handling signal: usr1")
				logs.reopen(log)
			default:
				later = append(later, s)
			}
		}
	}
}

// drainDelay keeps serving for d after SIGTERM (--drain-delay) while
// /readyz already answers 503, so that load balancers and Kubernetes
// endpoints stop sending new connections before the listeners close.
// Another SIGTERM ends the delay early; SIGINT or SIGQUIT end it and ask
// for a quick stop, which drainDelay reports as fast.
func drainDelay(d time.Duration, signals <-chan os.Signal, logs *logFiles, log *logging.Logger) (fast bool) {
	log.Infof("Not ready (/readyz 503); still serving for %v (--drain-delay) before closing the listeners", d)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return false
		case s := <-signals:
			switch s {
			case syscall.SIGUSR1:
				log.Infof("Handling signal: usr1")
				logs.reopen(log)
			case syscall.SIGTERM:
				log.Infof("Handling signal: term; ending the drain delay")
				return false
			case syscall.SIGINT, syscall.SIGQUIT:
				log.Infof("Handling signal: %s", signalName(s))
				return true
			default:
				log.Infof("Ignoring signal %s during the drain delay", s)
			}
		}
	}
}

// workerDebugVar tells the worker to put the traceback of an app's
// exception in the 500 response (--debug). The worker removes it from its
// environment before loading the app.
const workerDebugVar = "TAIPAN_WORKER_DEBUG"

// workerEnv is the workers' environment: taipan's own, then -e's, with
// workerDebugVar set only by --debug.
func workerEnv(cfg *config.Config) []string {
	env := make([]string, 0, len(os.Environ())+len(cfg.Env)+1)
	for _, kv := range append(os.Environ(), cfg.Env...) {
		if !strings.HasPrefix(kv, workerDebugVar+"=") {
			env = append(env, kv)
		}
	}
	if cfg.Debug {
		env = append(env, workerDebugVar+"=1")
	}
	return env
}

// logFiles are the log files taipan writes, which SIGUSR1 reopens after
// logrotate has renamed them.
type logFiles struct {
	files  []*logging.File
	access *edge.AccessLogWriter // flushed before the files are reopened
}

// open opens a log destination: "-" is the given standard stream, which a
// reopen leaves alone.
func (l *logFiles) open(name string, std io.Writer) (io.Writer, error) {
	if name == "-" {
		return std, nil
	}
	f, err := logging.OpenFile(name)
	if err != nil {
		return nil, err
	}
	l.files = append(l.files, f)
	return f, nil
}

// reopen opens every log file again at its path. The access lines logged
// so far are written to the old file first; a file that cannot be
// reopened is logged and kept.
func (l *logFiles) reopen(log *logging.Logger) {
	if l.access != nil {
		if err := l.access.Flush(); err != nil {
			log.Errorf("Flushing the access log: %v", err)
		}
	}
	for _, f := range l.files {
		if err := f.Reopen(); err != nil {
			log.Errorf("Keeping the log file: %v", err)
		}
	}
}

func (l *logFiles) close() {
	for _, f := range l.files {
		f.Close()
	}
}

// accessFormat is the access log's line format: JSON, the compiled
// --access-logformat, or nil for gunicorn's default.
func accessFormat(cfg *config.Config) (edge.AccessFormat, error) {
	switch {
	case cfg.AccessLogJSON:
		return edge.AppendAccessJSON, nil
	case cfg.AccessLogFormat == "" || cfg.AccessLogFormat == edge.GunicornFormat:
		return nil, nil // AppendGunicorn, the same lines without a loop over atoms
	}
	return edge.ParseAccessFormat(cfg.AccessLogFormat, workerGetenv(cfg.Env))
}

// workerGetenv looks a variable up as the workers see it: set by -e, else
// in taipan's environment. It resolves the access log's %({Var}e)s atoms.
func workerGetenv(env []string) func(string) string {
	return func(key string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if k, v, _ := strings.Cut(env[i], "="); k == key {
				return v
			}
		}
		return os.Getenv(key)
	}
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

// stopTimeout is the pool's StopTimeout for --graceful-timeout: as with
// gunicorn's graceful_timeout, it is also how long a stopped or restarted
// worker has to exit. --graceful-timeout 0 means no time at all, which the
// pool spells as a negative duration (its zero is the default).
func stopTimeout(graceful time.Duration) time.Duration {
	if graceful == 0 {
		return -1
	}
	return graceful
}
