// Package config turns taipan's command line into a typed, validated Config
// before anything starts: every bad flag is reported here, once, as one
// clear line.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"taipan/internal/edge"
	"taipan/internal/forwarded"
	"taipan/internal/httpsyntax"
	"taipan/internal/logging"
)

// Config is everything taipan needs to run, resolved and checked.
type Config struct {
	// Settings is every setting as resolved, with where each came from
	// (the command line, the environment, a config file or the default).
	Settings Settings

	App   string // MODULE[:CALLABLE]; "" serves the built-in demo
	Binds []Bind // listeners
	// BindsGiven is set when --bind was given; otherwise sockets passed by
	// systemd (LISTEN_FDS) are used instead of the default bind.
	BindsGiven bool
	Workers    int
	Threads    int // requests per worker at once (threads, or greenlets with gevent)
	// WorkerClass is the concurrency model of a worker: "sync" (one request
	// at a time), "gthread" (--threads), or "gevent" (greenlets).
	WorkerClass string
	// WorkerConnections is how many requests a gevent or ASGI worker runs at once.
	WorkerConnections int
	Interface         string // "auto", "wsgi" or "asgi"
	Loop              string // ASGI event loop: "auto", "asyncio" or "uvloop"
	Python            string // absolute path of the interpreter
	Chdir             string
	PythonPath        []string
	Env               []string // KEY=VALUE for the workers
	RootPath          string   // SCRIPT_NAME

	LogLevel      logging.Level
	AccessLogFile string // "" none, "-" stdout
	ErrorLogFile  string // "-" stderr
	// AccessLogFormat is the access log's line in gunicorn's
	// access_log_format syntax, checked here ("" = gunicorn's default);
	// AccessLogJSON writes JSON objects instead.
	AccessLogFormat string
	AccessLogJSON   bool
	LogFormat       logging.Format // the error log's: text or JSON

	GracefulTimeout time.Duration
	// DrainDelay is how long taipan keeps serving after SIGTERM, with
	// /readyz already answering 503, before the graceful shutdown begins:
	// time for load balancers to stop sending new connections.
	DrainDelay  time.Duration
	BootTimeout time.Duration

	// The process manager.
	Timeout           time.Duration // per request; 0 = none
	Heartbeat         time.Duration // ping idle workers this often
	HeartbeatTimeout  time.Duration // replace one silent this long
	MaxRequests       int
	MaxRequestsJitter int
	MaxRSS            int64 // bytes; 0 = no limit
	Preload           bool
	PostFork          string // MODULE:CALLABLE
	Reload            bool   // restart workers when .py files change
	Lanes             []Lane // workers reserved for path prefixes
	WorkersMin        int    // autoscaling bounds; WorkersMax 0 = off
	WorkersMax        int
	PidFile           string

	LimitRequestLine      int
	LimitRequestFields    int
	LimitRequestFieldSize int
	LimitRequestBody      int64
	BodyMemoryLimit       int64
	TmpDir                string
	KeepAlive             time.Duration
	HeaderTimeout         time.Duration
	BodyTimeout           time.Duration // the longest pause while a client sends a request body
	WriteTimeout          time.Duration // the time a client has to take each piece (256 KiB) of its response
	// Connection limits of the HTTP listeners (0 = none): open at once in
	// all and from one client address, and requests per keep-alive
	// connection.
	MaxConnections           int
	MaxConnectionsPerIP      int
	MaxRequestsPerConnection int
	// ServerHeader is the Server response header; "" leaves it out.
	ServerHeader string
	// Debug puts the traceback of an app's exception in the 500 response
	// (development only).
	Debug bool

	// WebSocket (ASGI apps): the largest message accepted from a client,
	// and the keepalive pings (a client that does not answer one within
	// WSPingTimeout is disconnected; interval 0 = no pings).
	WSMaxSize      int64
	WSPingInterval time.Duration
	WSPingTimeout  time.Duration

	// The edge.
	Static            []Mount       // served by Go from disk
	CGI               []Mount       // CGI scripts, one process per request
	CGITimeout        time.Duration // a CGI script running longer is killed
	CGIEnv            []string      // KEY=VALUE given to every CGI script
	ForwardedAllowIPs string        // peers whose X-Forwarded-*/Forwarded headers and PROXY headers are trusted
	ForwardedHeaders  string        // the header family read from them: "x-forwarded" or "forwarded"
	ForwardedHost     bool          // the x-forwarded family includes X-Forwarded-Host
	ProxyProtocol     bool          // TCP listeners expect a PROXY protocol header (v1 or v2)
	CertFile, KeyFile string        // TLS for the http listeners
	CACerts           string        // CA bundle for client certificates
	CertReqs          string        // client certificates: "none", "optional" or "required"
	H2C               bool          // cleartext HTTP/2 (prior knowledge and Upgrade: h2c)
	Umask             int           // applied while creating unix sockets; -1 leaves it alone
	Backlog           int           // listen(2) backlog
	ReusePort         bool          // SO_REUSEPORT, so several taipans can share a port

	MetricsBind string // HOST:PORT of the metrics and health listener; "" = none
}

// Bind is one listener: what it speaks and where.
type Bind struct {
	// Protocol is "http" (HTTP/1.1, and HTTP/2 over TLS or with --h2c),
	// "uwsgi" or "fastcgi" (for an nginx in front speaking uwsgi_pass or
	// fastcgi_pass).
	Protocol string
	// Addr is "host:port", "[::1]:port", "unix:/path" or "fd://N" (an
	// inherited, already listening socket).
	Addr string
}

func (b Bind) String() string {
	if b.Protocol == "http" {
		return b.Addr
	}
	return b.Protocol + "://" + b.Addr
}

// Mount maps a URL path prefix to a directory (--static, --cgi).
type Mount struct {
	Prefix string // "/assets": starts with '/', no trailing slash
	Dir    string // absolute
}

// Lane reserves Workers of the -w workers for requests whose path starts
// with Prefix (as whole segments); those requests run only there.
type Lane struct {
	Prefix  string
	Workers int
}

// Action is what the command line asks for besides serving.
type Action int

// Actions.
const (
	Serve Action = iota
	ShowHelp
	ShowVersion
	PrintConfig     // --print-config: print Config.Settings and exit
	PrintConfigJSON // --print-config=json
)

// UsageError is a bad command line; the message is one line for the user.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &UsageError{msg: fmt.Sprintf(format, args...)}
}

// Defaults.
const (
	DefaultBind = "127.0.0.1:8000"
)

// Upper bounds of integer settings, past any sensible value; each keeps
// what is computed from its setting from overflowing.
const (
	maxRequests   = 1_000_000_000 // --max-requests, --max-requests-jitter
	maxHeadLine   = 1 << 20       // --limit-request-line, --limit-request-field_size
	maxHeadFields = 32768         // --limit-request-fields, gunicorn's own ceiling
)

// parse resolves args (without the program name) into a Config. src adds
// --config and --print-config, and fills in the flags args leave unset
// from the environment and the config file (see Parse). getenv looks up
// $VIRTUAL_ENV.
func parse(args []string, getenv func(string) string, src *sources) (*Config, Action, error) {
	c := &Config{
		Workers:               runtime.NumCPU(),
		Threads:               1,
		LogLevel:              logging.Info,
		ErrorLogFile:          "-",
		GracefulTimeout:       30 * time.Second,
		Timeout:               30 * time.Second,
		Heartbeat:             5 * time.Second,
		HeartbeatTimeout:      30 * time.Second,
		BootTimeout:           60 * time.Second,
		LimitRequestLine:      4094,
		LimitRequestFields:    100,
		LimitRequestFieldSize: 8190,
		LimitRequestBody:      1 << 30,
		BodyMemoryLimit:       1 << 20,
		KeepAlive:             5 * time.Second,
		HeaderTimeout:         10 * time.Second,
		BodyTimeout:           30 * time.Second,
		WriteTimeout:          60 * time.Second,
		ServerHeader:          "taipan",
		WSMaxSize:             16 << 20,
		WSPingInterval:        20 * time.Second,
		WSPingTimeout:         20 * time.Second,
		CGITimeout:            30 * time.Second,
		ForwardedAllowIPs:     "127.0.0.1,::1",
		ForwardedHeaders:      "x-forwarded",
		CertReqs:              "none",
		Umask:                 -1,
		Backlog:               2048,
	}
	fs := flag.NewFlagSet("taipan", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	src.define(fs)
	var (
		binds, envs, paths, lanes listFlag
		python, logLevel          string
		help, version             bool
		graceful, boot, keepAlive = seconds(c.GracefulTimeout), seconds(c.BootTimeout), seconds(c.KeepAlive)
		drainDelay                seconds
		headerTimeout             = seconds(c.HeaderTimeout)
		bodyTimeout               = seconds(c.BodyTimeout)
		writeTimeout              = seconds(c.WriteTimeout)
		timeout                   = seconds(c.Timeout)
		heartbeat, hbTimeout      = seconds(c.Heartbeat), seconds(c.HeartbeatTimeout)
		maxRSSMB                  int64
		threads                   int // the flag's; c.Threads is resolved from it and -k
		workerConnections         int
		bodyLimit, bodyMemory     = size(c.LimitRequestBody), size(c.BodyMemoryLimit)
		wsMaxSize                 = size(c.WSMaxSize)
		wsPing, wsPingTimeout     = seconds(c.WSPingInterval), seconds(c.WSPingTimeout)
		statics, cgis, cgiEnv     listFlag
		cgiTimeout                = seconds(c.CGITimeout)
		umask                     string
	)
	logLevel = "info"
	both := func(short, long string, fn func(name string)) { fn(short); fn(long) }
	both("b", "bind", func(n string) { fs.Var(&binds, n, "") })
	both("w", "workers", func(n string) { decimalVar(fs, &c.Workers, n, c.Workers) })
	both("e", "env", func(n string) { fs.Var(&envs, n, "") })
	both("h", "help", func(n string) { fs.BoolVar(&help, n, false, "") })
	both("v", "version", func(n string) { fs.BoolVar(&version, n, false, "") })
	decimalVar(fs, &threads, "threads", c.Threads)
	both("k", "worker-class", func(n string) { fs.StringVar(&c.WorkerClass, n, "sync", "") })
	decimalVar(fs, &workerConnections, "worker-connections", 1000)
	fs.StringVar(&c.Interface, "interface", "auto", "")
	fs.StringVar(&c.Loop, "loop", "auto", "")
	fs.StringVar(&python, "python", "", "")
	fs.StringVar(&c.Chdir, "chdir", "", "")
	fs.Var(&paths, "pythonpath", "")
	fs.StringVar(&c.RootPath, "root-path", "", "")
	fs.StringVar(&logLevel, "log-level", logLevel, "")
	fs.StringVar(&c.AccessLogFile, "access-logfile", "", "")
	fs.StringVar(&c.ErrorLogFile, "error-logfile", c.ErrorLogFile, "")
	fs.StringVar(&c.ErrorLogFile, "log-file", c.ErrorLogFile, "")
	fs.StringVar(&c.AccessLogFormat, "access-logformat", "", "")
	fs.BoolVar(&c.AccessLogJSON, "access-log-json", false, "")
	fs.Var(&c.LogFormat, "log-format", "")
	fs.Var(&graceful, "graceful-timeout", "")
	fs.Var(&drainDelay, "drain-delay", "")
	fs.Var(&boot, "boot-timeout", "")
	both("t", "timeout", func(n string) { fs.Var(&timeout, n, "") })
	fs.Var(&heartbeat, "heartbeat", "")
	fs.Var(&hbTimeout, "heartbeat-timeout", "")
	decimalVar(fs, &c.MaxRequests, "max-requests", 0)
	decimalVar(fs, &c.MaxRequestsJitter, "max-requests-jitter", 0)
	decimalVar(fs, &maxRSSMB, "max-rss", 0)
	fs.BoolVar(&c.Preload, "preload", false, "")
	fs.Var(&lanes, "lane", "")
	decimalVar(fs, &c.WorkersMin, "workers-min", 0)
	decimalVar(fs, &c.WorkersMax, "workers-max", 0)
	fs.StringVar(&c.PostFork, "post-fork", "", "")
	fs.BoolVar(&c.Reload, "reload", false, "")
	fs.StringVar(&c.PidFile, "pid", "", "")
	fs.Var(&keepAlive, "keep-alive", "")
	fs.Var(&headerTimeout, "header-timeout", "")
	fs.Var(&bodyTimeout, "body-timeout", "")
	fs.Var(&writeTimeout, "write-timeout", "")
	decimalVar(fs, &c.MaxConnections, "max-connections", 0)
	decimalVar(fs, &c.MaxConnectionsPerIP, "max-connections-per-ip", 0)
	decimalVar(fs, &c.MaxRequestsPerConnection, "max-requests-per-connection", 0)
	fs.StringVar(&c.ServerHeader, "server-header", c.ServerHeader, "")
	fs.BoolVar(&c.Debug, "debug", false, "")
	decimalVar(fs, &c.LimitRequestLine, "limit-request-line", c.LimitRequestLine)
	decimalVar(fs, &c.LimitRequestFields, "limit-request-fields", c.LimitRequestFields)
	decimalVar(fs, &c.LimitRequestFieldSize, "limit-request-field_size", c.LimitRequestFieldSize)
	decimalVar(fs, &c.LimitRequestFieldSize, "limit-request-field-size", c.LimitRequestFieldSize)
	fs.Var(&bodyLimit, "limit-request-body", "")
	fs.Var(&bodyMemory, "body-memory-limit", "")
	fs.StringVar(&c.TmpDir, "tmp-dir", "", "")
	fs.Var(&wsMaxSize, "ws-max-size", "")
	fs.Var(&wsPing, "ws-ping-interval", "")
	fs.Var(&wsPingTimeout, "ws-ping-timeout", "")
	fs.Var(&statics, "static", "")
	fs.Var(&cgis, "cgi", "")
	fs.Var(&cgiTimeout, "cgi-timeout", "")
	fs.Var(&cgiEnv, "cgi-env", "")
	fs.StringVar(&c.ForwardedAllowIPs, "forwarded-allow-ips", c.ForwardedAllowIPs, "")
	fs.StringVar(&c.ForwardedHeaders, "forwarded-headers", c.ForwardedHeaders, "")
	fs.BoolVar(&c.ForwardedHost, "forwarded-host", false, "")
	fs.BoolVar(&c.ProxyProtocol, "proxy-protocol", false, "")
	fs.StringVar(&c.CertFile, "certfile", "", "")
	fs.StringVar(&c.KeyFile, "keyfile", "", "")
	fs.StringVar(&c.CACerts, "ca-certs", "", "")
	fs.StringVar(&c.CertReqs, "cert-reqs", c.CertReqs, "")
	fs.BoolVar(&c.H2C, "h2c", false, "")
	fs.StringVar(&umask, "umask", "", "")
	decimalVar(fs, &c.Backlog, "backlog", c.Backlog)
	fs.BoolVar(&c.ReusePort, "reuse-port", false, "")
	fs.StringVar(&c.MetricsBind, "metrics-bind", "", "")

	args = splitAttachedShortValues(args)
	if err := flagAsValue(fs, args); err != nil {
		return nil, Serve, err
	}
	// Flags may come before or after the app, as with gunicorn.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, ShowHelp, nil
			}
			return nil, Serve, usagef("%s", flagError(err, fs))
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	if help {
		return nil, ShowHelp, nil
	}
	if version {
		return nil, ShowVersion, nil
	}
	if err := src.apply(positional); err != nil {
		return nil, Serve, err
	}
	if len(positional) == 0 && src.app != "" {
		positional = []string{src.app}
	}
	if len(positional) > 1 {
		return nil, Serve, usagef("expected one app (MODULE[:CALLABLE]), got %d: %s", len(positional), strings.Join(positional, " "))
	}
	if len(positional) == 1 {
		c.App = positional[0]
		if err := checkAppSpec(c.App); err != nil {
			return nil, Serve, err
		}
	}

	var err error
	if c.LogLevel, err = logging.ParseLevel(logLevel); err != nil {
		return nil, Serve, usagef("--log-level: %v", err)
	}
	if c.AccessLogFormat != "" && c.AccessLogJSON {
		return nil, Serve, usagef("--access-logformat and --access-log-json exclude each other")
	}
	if c.AccessLogFormat != "" {
		if _, err := edge.ParseAccessFormat(c.AccessLogFormat, getenv); err != nil {
			return nil, Serve, usagef("--access-logformat: %v", err)
		}
	}
	if c.Workers < 1 {
		return nil, Serve, usagef("--workers must be at least 1, got %d", c.Workers)
	}
	if threads < 1 || threads > 1024 {
		return nil, Serve, usagef("--threads must be between 1 and 1024, got %d", threads)
	}
	c.Threads = threads
	if workerConnections < 1 || workerConnections > 100000 {
		return nil, Serve, usagef("--worker-connections must be between 1 and 100000, got %d", workerConnections)
	}
	c.WorkerConnections = workerConnections
	if c.Interface != "auto" && c.Interface != "wsgi" && c.Interface != "asgi" {
		return nil, Serve, usagef("--interface must be auto, wsgi or asgi, got %q", c.Interface)
	}
	if c.Loop != "auto" && c.Loop != "asyncio" && c.Loop != "uvloop" {
		return nil, Serve, usagef("--loop must be auto, asyncio or uvloop, got %q", c.Loop)
	}
	switch c.WorkerClass {
	case "sync", "gthread":
		// As gunicorn: --threads above 1 means threads; gthread alone, 1 thread.
		if c.Threads > 1 {
			c.WorkerClass = "gthread"
		}
	case "gevent":
		// A gevent worker runs --worker-connections greenlets, not
		// threads. The flag keeps its own value, so --print-config's
		// output reads back.
		if threads > 1 {
			return nil, Serve, usagef("--threads does not apply to -k gevent, whose workers each run up to --worker-connections requests in greenlets; drop --threads, or use -k gthread")
		}
		c.Threads = workerConnections
		if c.Preload {
			return nil, Serve, usagef("--preload cannot be combined with -k gevent yet (the fork server does not monkey-patch)")
		}
	default:
		return nil, Serve, usagef("-k/--worker-class must be sync, gthread or gevent, got %q", c.WorkerClass)
	}
	c.BindsGiven = len(binds) > 0
	if len(binds) == 0 {
		binds = []string{DefaultBind}
	}
	for _, b := range binds {
		bind, err := parseBind(b)
		if err != nil {
			return nil, Serve, err
		}
		c.Binds = append(c.Binds, bind)
	}
	for _, kv := range envs {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, Serve, usagef("--env wants KEY=VALUE, got %q", kv)
		}
		c.Env = append(c.Env, kv)
	}
	if c.Chdir != "" {
		if c.Chdir, err = filepath.Abs(c.Chdir); err != nil {
			return nil, Serve, usagef("--chdir: %v", err)
		}
		if st, err := os.Stat(c.Chdir); err != nil || !st.IsDir() {
			return nil, Serve, usagef("--chdir: %s is not a directory", c.Chdir)
		}
	}
	for _, p := range paths {
		for _, part := range strings.Split(p, ",") {
			if part = strings.TrimSpace(part); part != "" {
				c.PythonPath = append(c.PythonPath, part)
			}
		}
	}
	if c.RootPath != "" && !strings.HasPrefix(c.RootPath, "/") {
		return nil, Serve, usagef("--root-path must start with '/', got %q", c.RootPath)
	}
	if c.ErrorLogFile == "" {
		c.ErrorLogFile = "-"
	}
	c.GracefulTimeout, c.BootTimeout = time.Duration(graceful), time.Duration(boot)
	c.DrainDelay = time.Duration(drainDelay)
	c.Timeout = time.Duration(timeout)
	c.Heartbeat, c.HeartbeatTimeout = time.Duration(heartbeat), time.Duration(hbTimeout)
	if c.Heartbeat <= 0 || c.HeartbeatTimeout <= 0 {
		return nil, Serve, usagef("--heartbeat and --heartbeat-timeout must be positive")
	}
	if c.MaxRequests < 0 || c.MaxRequestsJitter < 0 || maxRSSMB < 0 {
		return nil, Serve, usagef("--max-requests, --max-requests-jitter and --max-rss must not be negative")
	}
	// Bounded so that a worker's limit (--max-requests plus a random part
	// of the jitter) cannot overflow, nor the jitter's range panic.
	if c.MaxRequests > maxRequests {
		return nil, Serve, usagef("--max-requests must be at most %d, got %d", maxRequests, c.MaxRequests)
	}
	if c.MaxRequestsJitter > maxRequests {
		return nil, Serve, usagef("--max-requests-jitter must be at most %d, got %d", maxRequests, c.MaxRequestsJitter)
	}
	if maxRSSMB > maxBytes>>20 {
		return nil, Serve, usagef("--max-rss must be at most %d MB (1 PiB), got %d", maxBytes>>20, maxRSSMB)
	}
	c.MaxRSS = maxRSSMB << 20
	laneWorkers := 0
	for _, l := range lanes {
		prefix, n, ok := strings.Cut(l, "=")
		workers, err := strconv.Atoi(n)
		if !ok || !strings.HasPrefix(prefix, "/") || err != nil || workers < 1 {
			return nil, Serve, usagef("--lane wants PREFIX=WORKERS, e.g. /reports=1, got %q", l)
		}
		prefix = strings.TrimRight(prefix, "/")
		if prefix == "" {
			return nil, Serve, usagef("--lane %q would take every request; name a path prefix such as /reports", l)
		}
		c.Lanes = append(c.Lanes, Lane{Prefix: prefix, Workers: workers})
		laneWorkers += workers
	}
	if laneWorkers > 0 && laneWorkers >= c.Workers {
		return nil, Serve, usagef("--lane reserves %d of the %d workers; leave at least one for other requests (raise -w)", laneWorkers, c.Workers)
	}
	if c.WorkersMin != 0 || c.WorkersMax != 0 {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "w" || f.Name == "workers" })
		switch {
		case c.WorkersMin == 0:
			return nil, Serve, usagef("--workers-max %d needs --workers-min too (autoscaling goes between the two)", c.WorkersMax)
		case c.WorkersMax == 0:
			return nil, Serve, usagef("--workers-min %d needs --workers-max too (autoscaling goes between the two)", c.WorkersMin)
		}
		if c.WorkersMin < 1 || c.WorkersMax < c.WorkersMin {
			return nil, Serve, usagef("--workers-min and --workers-max want 1 <= min <= max, got %d and %d", c.WorkersMin, c.WorkersMax)
		}
		if !explicit {
			c.Workers = c.WorkersMin // autoscaling starts small
		}
		if c.Workers < c.WorkersMin || c.Workers > c.WorkersMax {
			return nil, Serve, usagef("--workers %d is outside --workers-min %d .. --workers-max %d", c.Workers, c.WorkersMin, c.WorkersMax)
		}
	}
	if c.PostFork != "" {
		if mod, fn, ok := strings.Cut(c.PostFork, ":"); !ok || !isIdentifier(fn) || checkAppSpec(mod) != nil {
			return nil, Serve, usagef("--post-fork wants MODULE:CALLABLE, got %q", c.PostFork)
		}
	}
	if c.PidFile != "" {
		if c.PidFile, err = filepath.Abs(c.PidFile); err != nil {
			return nil, Serve, usagef("--pid: %v", err)
		}
	}
	c.KeepAlive, c.HeaderTimeout = time.Duration(keepAlive), time.Duration(headerTimeout)
	c.WriteTimeout, c.BodyTimeout = time.Duration(writeTimeout), time.Duration(bodyTimeout)
	if c.HeaderTimeout <= 0 {
		// No "0 = no limit": a client could then hold a connection open
		// forever by sending its head a byte at a time.
		return nil, Serve, usagef("--header-timeout must be positive")
	}
	if c.WriteTimeout <= 0 {
		return nil, Serve, usagef("--write-timeout must be positive")
	}
	if c.BodyTimeout <= 0 {
		return nil, Serve, usagef("--body-timeout must be positive")
	}
	if c.MaxConnections < 0 || c.MaxConnectionsPerIP < 0 || c.MaxRequestsPerConnection < 0 {
		return nil, Serve, usagef("--max-connections, --max-connections-per-ip and --max-requests-per-connection must not be negative")
	}
	if strings.EqualFold(c.ServerHeader, "none") {
		c.ServerHeader = ""
	}
	if !httpsyntax.ValidFieldValue(c.ServerHeader) || strings.TrimSpace(c.ServerHeader) != c.ServerHeader {
		return nil, Serve, usagef("--server-header %q: want a header value (printable, no CR or LF, no spaces around it), or none", c.ServerHeader)
	}
	c.LimitRequestBody, c.BodyMemoryLimit = int64(bodyLimit), int64(bodyMemory)
	if c.TmpDir != "" {
		// Checked now: a missing or read-only directory would otherwise
		// fail only the first request whose body spills (500).
		if c.TmpDir, err = filepath.Abs(c.TmpDir); err != nil {
			return nil, Serve, usagef("--tmp-dir: %v", err)
		}
		if err := checkWritableDir(c.TmpDir); err != nil {
			return nil, Serve, usagef("--tmp-dir: %v", err)
		}
	} else {
		// The default, $TMPDIR or /tmp, is where large bodies spill too.
		dir := getenv("TMPDIR")
		if dir == "" {
			dir = "/tmp"
		}
		if err := checkWritableDir(dir); err != nil {
			return nil, Serve, usagef("the temporary directory ($TMPDIR, else /tmp), where large request bodies go: %v; set --tmp-dir", err)
		}
	}
	if c.Static, err = parseMounts("--static", statics); err != nil {
		return nil, Serve, err
	}
	if c.CGI, err = parseMounts("--cgi", cgis); err != nil {
		return nil, Serve, err
	}
	for _, kv := range cgiEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, Serve, usagef("--cgi-env wants KEY=VALUE, got %q", kv)
		}
	}
	c.CGIEnv = cgiEnv
	c.CGITimeout = time.Duration(cgiTimeout)
	if c.CGITimeout <= 0 {
		return nil, Serve, usagef("--cgi-timeout must be positive")
	}
	if c.ForwardedHeaders != "x-forwarded" && c.ForwardedHeaders != "forwarded" {
		return nil, Serve, usagef("--forwarded-headers must be x-forwarded or forwarded, got %q", c.ForwardedHeaders)
	}
	if _, err := forwarded.ParseTrust(c.ForwardedAllowIPs); err != nil {
		return nil, Serve, usagef("--forwarded-allow-ips: %v", err)
	}
	if c.ProxyProtocol && strings.TrimSpace(strings.ReplaceAll(c.ForwardedAllowIPs, ",", "")) == "" {
		return nil, Serve, usagef("--proxy-protocol needs --forwarded-allow-ips to name the proxies allowed to send PROXY headers")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, Serve, usagef("--certfile and --keyfile go together")
	}
	switch c.CertReqs {
	case "0", "none":
		c.CertReqs = "none"
	case "1", "optional":
		c.CertReqs = "optional"
	case "2", "required":
		c.CertReqs = "required"
	default:
		return nil, Serve, usagef("--cert-reqs must be none, optional or required (or 0, 1, 2), got %q", c.CertReqs)
	}
	if c.CertReqs != "none" && c.CACerts == "" {
		return nil, Serve, usagef("--cert-reqs %s needs --ca-certs, the CAs that sign client certificates", c.CertReqs)
	}
	if c.CACerts != "" && c.CertFile == "" {
		return nil, Serve, usagef("--ca-certs needs --certfile and --keyfile (client certificates need TLS)")
	}
	for _, f := range []*string{&c.CertFile, &c.KeyFile, &c.CACerts} {
		if *f != "" {
			if *f, err = filepath.Abs(*f); err != nil {
				return nil, Serve, usagef("%v", err)
			}
		}
	}
	if umask != "" {
		m, err := strconv.ParseUint(umask, 0, 32)
		if strings.HasPrefix(umask, "0") && !strings.HasPrefix(umask, "0o") && !strings.HasPrefix(umask, "0x") {
			m, err = strconv.ParseUint(umask, 8, 32)
		}
		if err != nil || m > 0o777 {
			return nil, Serve, usagef("--umask wants an octal mode such as 007 or 0o077, got %q", umask)
		}
		c.Umask = int(m)
	}
	if c.Backlog < 1 {
		return nil, Serve, usagef("--backlog must be positive, got %d", c.Backlog)
	}
	c.WSMaxSize = int64(wsMaxSize)
	c.WSPingInterval, c.WSPingTimeout = time.Duration(wsPing), time.Duration(wsPingTimeout)
	if c.WSMaxSize <= 0 || c.WSMaxSize > 1<<30 {
		return nil, Serve, usagef("--ws-max-size must be between 1 and 1 GiB, got %d", c.WSMaxSize)
	}
	if c.WSPingInterval < 0 || c.WSPingTimeout <= 0 {
		return nil, Serve, usagef("--ws-ping-interval must not be negative and --ws-ping-timeout must be positive")
	}
	// The head of a request is held in memory whole, and a line is read
	// up to its limit plus CRLF: the bounds keep both sane (and the sum
	// from overflowing, which refused every request).
	if c.LimitRequestLine <= 0 || c.LimitRequestLine > maxHeadLine {
		return nil, Serve, usagef("--limit-request-line must be between 1 and %d (1 MiB), got %d", maxHeadLine, c.LimitRequestLine)
	}
	if c.LimitRequestFieldSize <= 0 || c.LimitRequestFieldSize > maxHeadLine {
		return nil, Serve, usagef("--limit-request-field_size must be between 1 and %d (1 MiB), got %d", maxHeadLine, c.LimitRequestFieldSize)
	}
	if c.LimitRequestFields <= 0 || c.LimitRequestFields > maxHeadFields {
		return nil, Serve, usagef("--limit-request-fields must be between 1 and %d, got %d", maxHeadFields, c.LimitRequestFields)
	}
	if c.MetricsBind != "" {
		if err := checkMetricsBind(c.MetricsBind); err != nil {
			return nil, Serve, err
		}
		for _, b := range c.Binds {
			if b.Addr == c.MetricsBind {
				return nil, Serve, usagef("--metrics-bind %s is also a -b address; give the metrics listener a port of its own", c.MetricsBind)
			}
		}
	}
	if c.Python, err = findPython(python, getenv); err != nil {
		return nil, Serve, err
	}
	return c, Serve, nil
}

// checkWritableDir reports why dir cannot take new files, if it cannot:
// it is missing, not a directory, or not writable (permissions, a
// read-only file system).
func checkWritableDir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %v", dir, errors.Unwrap(err))
	case !st.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("%s is not writable: %v", dir, err)
	}
	return nil
}

// checkMetricsBind checks a --metrics-bind address as the listener will
// take it, HOST:PORT, so that a bad one is a usage error here rather than
// a failure once taipan has started.
func checkMetricsBind(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("--metrics-bind %q: want HOST:PORT (%v)", addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return usagef("--metrics-bind %q: bad port %q", addr, port)
	}
	return nil
}

// findPython resolves the interpreter: --python, else $VIRTUAL_ENV's, else
// python3 on $PATH.
func findPython(flagValue string, getenv func(string) string) (string, error) {
	name, source := flagValue, "--python"
	if name == "" {
		if venv := getenv("VIRTUAL_ENV"); venv != "" {
			name, source = filepath.Join(venv, "bin", "python"), "$VIRTUAL_ENV"
		} else {
			name, source = "python3", "$PATH"
		}
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", usagef("python interpreter %q (from %s) not found or not executable", name, source)
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return path, nil
}

func checkAppSpec(spec string) error {
	module, callable, _ := strings.Cut(spec, ":")
	if module == "" || strings.HasPrefix(module, "-") {
		return usagef("bad app %q: want MODULE[:CALLABLE], e.g. hello:app or mysite.wsgi:application", spec)
	}
	for _, part := range strings.Split(module, ".") {
		if !isIdentifier(part) {
			return usagef("bad app %q: %q is not a Python module name", spec, module)
		}
	}
	if strings.Contains(spec, ":") && strings.TrimSpace(callable) == "" {
		return usagef("bad app %q: nothing after ':'", spec)
	}
	return nil
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || r > 127 || i > 0 && '0' <= r && r <= '9' {
			continue
		}
		return false
	}
	return true
}

// parseBind reads a --bind value: [PROTOCOL://]ADDRESS, where PROTOCOL is
// http (the default), uwsgi or fastcgi, and ADDRESS is HOST:PORT,
// [::1]:PORT, unix:/PATH or fd://N.
func parseBind(b string) (Bind, error) {
	bind := Bind{Protocol: "http", Addr: b}
	for _, p := range []string{"http", "uwsgi", "fastcgi"} {
		if rest, ok := strings.CutPrefix(b, p+"://"); ok {
			bind = Bind{Protocol: p, Addr: rest}
		}
	}
	if rest, ok := strings.CutPrefix(b, "tcp://"); ok {
		bind.Addr = rest // gunicorn's spelling of a plain TCP address
	}
	addr := bind.Addr
	if n, ok := strings.CutPrefix(addr, "fd://"); ok {
		if fd, err := strconv.Atoi(n); err != nil || fd < 3 {
			return bind, usagef("--bind %q: want fd://N with N an inherited descriptor (3 or more)", b)
		}
		return bind, nil
	}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return bind, usagef("--bind %q: empty unix socket path", b)
		}
		return bind, nil
	}
	host, port, err := splitHostPort(addr)
	if err != nil {
		return bind, usagef("--bind %q: %v (want [http://|uwsgi://|fastcgi://]HOST:PORT, [::1]:PORT, unix:/PATH or fd://N)", b, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return bind, usagef("--bind %q: bad port %q", b, port)
	}
	bind.Addr = net.JoinHostPort(host, port) // a HOST alone gets port 8000, as in gunicorn
	return bind, nil
}

// parseMounts reads PREFIX=DIR values of flag.
func parseMounts(flag string, values []string) ([]Mount, error) {
	var mounts []Mount
	for _, v := range values {
		prefix, dir, ok := strings.Cut(v, "=")
		if !ok || !strings.HasPrefix(prefix, "/") || dir == "" {
			return nil, usagef("%s wants /URL/PREFIX=DIR, e.g. %s /assets=./public, got %q", flag, flag, v)
		}
		prefix = strings.TrimRight(prefix, "/")
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, usagef("%s %q: %v", flag, v, err)
		}
		if st, err := os.Stat(abs); err != nil || !st.IsDir() {
			return nil, usagef("%s %q: %s is not a directory", flag, v, abs)
		}
		for _, m := range mounts {
			if m.Prefix == prefix {
				return nil, usagef("%s: %s is given twice (%s and %s)", flag, displayPrefix(prefix), m.Dir, abs)
			}
		}
		mounts = append(mounts, Mount{Prefix: prefix, Dir: abs})
	}
	return mounts, nil
}

// displayPrefix is a mount prefix as the user wrote it: "/" for the root,
// which is stored as "".
func displayPrefix(prefix string) string {
	if prefix == "" {
		return "/"
	}
	return prefix
}

// splitAttachedShortValues turns gunicorn's attached short forms (-w2,
// -b127.0.0.1:8000, -t60, -kgevent, -eKEY=VALUE) into the flag and its
// value, which the flag package wants apart. Arguments after "--" are left
// alone.
func splitAttachedShortValues(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && strings.IndexByte("bwekt", a[1]) >= 0 && a[2] != '=' {
			out = append(out, a[:2], a[2:])
			continue
		}
		out = append(out, a)
	}
	return out
}

// defaultBindPort is the port of a bind address given without one, as in
// gunicorn.
const defaultBindPort = "8000"

func splitHostPort(b string) (host, port string, err error) {
	if strings.HasPrefix(b, "[") {
		end := strings.Index(b, "]")
		if end < 0 {
			return "", "", errors.New("missing ]")
		}
		if end+1 == len(b) {
			return b[1:end], defaultBindPort, nil
		}
		if b[end+1] != ':' {
			return "", "", errors.New("want [IPv6]:PORT")
		}
		return b[1:end], b[end+2:], nil
	}
	i := strings.LastIndex(b, ":")
	if i < 0 {
		return b, defaultBindPort, nil
	}
	if strings.Contains(b[:i], ":") {
		return "", "", errors.New("IPv6 addresses need brackets")
	}
	return b[:i], b[i+1:], nil
}

func flagError(err error, fs *flag.FlagSet) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		var names []string
		fs.VisitAll(func(f *flag.Flag) {
			if len(f.Name) > 1 {
				names = append(names, f.Name)
			}
		})
		if len(name) > 1 {
			if guess := suggest(name, names); guess != "" {
				return fmt.Sprintf("unknown flag %s%s", dashed(name), didYouMean(dashed(guess)))
			}
		}
		return fmt.Sprintf("unknown flag %s (see taipan --help)", dashed(name))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Sprintf("flag %s needs a value", dashed(name))
	}
	// The flag package's "invalid value "V" for flag -NAME: REASON" (and
	// "invalid boolean value "V" for -NAME: REASON"), said the way every
	// other bad value is: "--NAME: invalid value "V": REASON".
	for _, prefix := range []string{"invalid value ", "invalid boolean value "} {
		rest, ok := strings.CutPrefix(msg, prefix)
		if !ok {
			continue
		}
		value, rest, ok := strings.Cut(rest, " for ")
		if !ok {
			break
		}
		rest = strings.TrimPrefix(strings.TrimPrefix(rest, "flag "), "-")
		name, reason, _ := strings.Cut(rest, ": ")
		switch {
		case reason == "parse error" && prefix == "invalid boolean value ":
			reason = "want true or false"
		case reason == "parse error":
			reason = "not a number"
		case reason == "value out of range":
			reason = "out of range"
		}
		return fmt.Sprintf("%s: invalid value %s: %s", dashed(name), value, reason)
	}
	return msg
}

// decimal is an integer flag read in base 10 only. The flag package's own
// integer flags read 010 as 8 and 0x10 as 16: -w 010 would start eight
// workers where gunicorn starts ten.
type decimal[T int | int64] struct{ p *T }

// decimalVar defines an integer flag with a default.
func decimalVar[T int | int64](fs *flag.FlagSet, p *T, name string, value T) {
	*p = value
	fs.Var(decimal[T]{p}, name, "")
}

func (d decimal[T]) String() string {
	if d.p == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*d.p), 10)
}

// Get makes decimal a flag.Getter, as the flag package's integers are.
func (d decimal[T]) Get() any { return *d.p }

func (d decimal[T]) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) || err == nil && int64(T(n)) != n:
		return errors.New("out of range")
	case err != nil:
		return errors.New("not a number")
	}
	*d.p = T(n)
	return nil
}

// flagAsValue refuses a flag that takes a value followed by another flag,
// as in "--access-logfile --reload": the flag package would take
// "--reload" for the file's name and leave reloading off, silently
// (gunicorn says "expected one argument"). A value that only looks like a
// flag can be given as --access-logfile=--reload; "-" and negative numbers
// are values.
func flagAsValue(fs *flag.FlagSet, args []string) error {
	for i := 0; i+1 < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return nil
		}
		if len(arg) < 2 || arg[0] != '-' || strings.Contains(arg, "=") {
			continue
		}
		f := fs.Lookup(strings.TrimLeft(arg, "-"))
		if f == nil {
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		next := args[i+1]
		name, _, _ := strings.Cut(strings.TrimLeft(next, "-"), "=")
		if len(next) > 1 && next[0] == '-' && name != "" && fs.Lookup(name) != nil {
			return usagef("flag %s needs a value, but %s follows it (write %s=%s if that is the value)", dashed(f.Name), next, dashed(f.Name), next)
		}
		i++ // the value
	}
	return nil
}

// dashed spells a flag name as taipan --help does: -w, --workers.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// seconds is a duration given in (possibly fractional) seconds, as gunicorn does.
type seconds time.Duration

func (s *seconds) String() string {
	return strconv.FormatFloat(time.Duration(*s).Seconds(), 'f', -1, 64)
}

// maxSeconds bounds every seconds value (about 31 years): far past any
// sensible timeout, and far enough below the largest time.Duration (about
// 292 years) that a deadline computed from one cannot overflow. Without it
// 1e300 or inf became a negative duration, and nan an arbitrary one.
const maxSeconds = 1_000_000_000

// Set parses every seconds value, whether from a flag, the environment or
// the config file: a finite number from 0 to maxSeconds.
func (s *seconds) Set(v string) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	// !(f >= 0 && f <= maxSeconds) also refuses NaN, which compares false.
	if (err != nil && !errors.Is(err, strconv.ErrRange)) || !(f >= 0 && f <= maxSeconds) {
		return fmt.Errorf("want a number of seconds from 0 to %d, got %q", maxSeconds, v)
	}
	*s = seconds(f * float64(time.Second))
	return nil
}

// size is a byte count; k, m and g suffixes (powers of 1024) are accepted.
type size int64

func (s *size) String() string { return strconv.FormatInt(int64(*s), 10) }

// maxBytes bounds every byte count (1 PiB): past any real body, message or
// memory size, and far from where int64 arithmetic on one could
// overflow. Without it, 18014398509481985k wrapped around to 1024.
const maxBytes = 1 << 50

// Set parses every size, whether from a flag, the environment or the
// config file: a whole number of bytes, or of KiB, MiB or GiB with a k, m
// or g suffix, from 0 to maxBytes.
func (s *size) Set(v string) error {
	mult := int64(1)
	t := strings.ToLower(strings.TrimSpace(v))
	t = strings.TrimSuffix(t, "b")
	switch {
	case strings.HasSuffix(t, "k"):
		mult, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "m"):
		mult, t = 1<<20, t[:len(t)-1]
	case strings.HasSuffix(t, "g"):
		mult, t = 1<<30, t[:len(t)-1]
	}
	n, err := strconv.ParseInt(t, 10, 64)
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange), n < 0:
		return fmt.Errorf("want a size in bytes (suffix k, m or g allowed), got %q", v)
	case err != nil, n > maxBytes/mult: // compared before multiplying, which could wrap
		return fmt.Errorf("size %q is too large (at most %d bytes, 1 PiB)", v, int64(maxBytes))
	}
	*s = size(n * mult)
	return nil
}

// Usage is the --help text.
const Usage = `Usage: taipan [OPTIONS] [MODULE[:CALLABLE]]
       taipan status|top [--metrics-bind ADDR | ADDR]

Serve a Python WSGI application from a Go edge and Python worker processes.
MODULE[:CALLABLE] names the app: CALLABLE defaults to "application", then
"app"; "factory()" calls a factory. With no app, taipan serves a built-in demo.

Examples:
  taipan hello:app
  taipan -b 0.0.0.0:8080 -w 4 mysite.wsgi:application
  taipan --python ./venv/bin/python 'app:create_app()'

Commands (for a taipan running with --metrics-bind ADDR; ADDR defaults to
$TAIPAN_METRICS_BIND, else 127.0.0.1:9100; its / is a live status page):
  status    print its workers, their current requests and recent traffic once
  top       the same, redrawn every second until q or Ctrl-C

Server:
  -b, --bind ADDR            listen on ADDR: HOST:PORT (HOST alone: port 8000),
                             [::1]:PORT, unix:/PATH or fd://N (an inherited
                             socket), optionally prefixed with uwsgi:// or
                             fastcgi:// to speak those protocols to an nginx
                             in front; repeatable (default 127.0.0.1:8000, or
                             the sockets systemd passes)
  -w, --workers N            Python worker processes (default: one per CPU)
      --threads N            requests each worker runs at once, in threads
                             (for I/O-bound apps; default 1; not with -k gevent)
  -k, --worker-class K       sync (default), gthread (with --threads) or gevent
                             (each request in a greenlet; needs python3-gevent)
      --worker-connections N requests a gevent or ASGI worker runs at once
                             (default 1000)
      --interface I          auto (default: ASGI for an async callable, else
                             WSGI), wsgi or asgi
      --loop L               ASGI event loop: auto (uvloop when importable),
                             asyncio or uvloop
      --graceful-timeout S   on SIGTERM, seconds to finish in-flight and
                             queued requests before stopping (SIGINT and
                             SIGQUIT stop at once); also how long a stopped
                             or restarted worker has to exit (an ASGI
                             lifespan shutdown) before it is killed
                             (default 30)
      --drain-delay S        on SIGTERM, seconds to keep serving while /readyz
                             already answers 503, before the graceful shutdown
                             begins, so load balancers stop sending first
                             (default 0)
      --boot-timeout S       seconds a worker has to load the app (default 60;
                             0 = no limit)
  -t, --timeout S            seconds a request may run without sending output;
                             past it the worker's Python stack is logged, the
                             worker is replaced and the request gets 504
                             (default 30, 0 = no limit)
      --heartbeat S          ping idle workers (and ASGI workers) every S seconds
                             (default 5)
      --heartbeat-timeout S  replace a worker that has not answered a ping for S
                             seconds (default 30)
      --max-requests N       recycle a worker after N requests; it serves on
                             until its replacement is ready (default 0 = never)
      --max-requests-jitter N  add a random 0..N to --max-requests per worker
      --max-rss MB           recycle a worker whose resident memory passes MB
                             between requests; kill one that a request holds
                             above MB (sampled every 250 ms; default 0 = never)
      --lane PREFIX=N        reserve N of the -w workers for requests whose path
                             starts with PREFIX (they run only there), so one
                             slow endpoint cannot occupy every worker; repeatable
      --workers-min N, --workers-max N
                             autoscale between N and M workers: add one while
                             requests wait over 100 ms, retire one idle for 30 s
      --preload              import the app once and fork the workers from it
      --post-fork MOD:FN     call FN() in each worker after it starts or forks
      --reload               restart the workers when a .py file changes (development)
      --pid FILE             write taipan's pid to FILE (refused while the
                             taipan it names runs; removed at exit)
      --keep-alive S         idle seconds before a keep-alive connection is
                             closed (default 5, 0 = one request per connection)
      --header-timeout S     seconds a client has to send a request head (default 10)
      --body-timeout S       seconds a client may pause while it sends a request
                             body; past them it gets 408 (default 30)
      --write-timeout S      seconds a client has to take each 256 KiB of its
                             response before it is disconnected (default 60)

Edge:
      --static PREFIX=DIR    serve the files of DIR at URL PREFIX from Go
                             (sendfile, ETag, ranges, .gz/.br); repeatable
      --cgi PREFIX=DIR       run the CGI scripts of DIR at URL PREFIX; repeatable
      --cgi-timeout S        kill a CGI script running longer (default 30)
      --cgi-env KEY=VALUE    set a variable for every CGI script; repeatable
      --certfile FILE, --keyfile FILE
                             serve HTTPS (and HTTP/2) with this PEM certificate
                             chain and key; SIGHUP reloads them
      --ca-certs FILE        CA bundle that signs client certificates
      --cert-reqs MODE       client certificates: none, optional or required
      --h2c                  also speak cleartext HTTP/2 (prior knowledge, Upgrade)
      --forwarded-allow-ips LIST
                             comma-separated IPs and CIDRs (or *) whose
                             X-Forwarded-*, Forwarded and PROXY headers are
                             trusted (default 127.0.0.1,::1)
      --forwarded-headers F  which family to read from them: x-forwarded
                             (X-Forwarded-For/-Proto, the default) or
                             forwarded (RFC 7239); the other is ignored, since
                             a proxy passes the family it does not set through
                             from the client
      --forwarded-host       also take the host from X-Forwarded-Host; only
                             if the proxy always sets it, since one that does
                             not passes on the client's own
      --proxy-protocol       TCP listeners expect a PROXY protocol v1/v2 header
      --umask MODE           umask for unix sockets (e.g. 007)
      --backlog N            listen backlog (default 2048)
      --reuse-port           SO_REUSEPORT: several taipans may share the port
      --max-connections N    client connections open at once (idle keep-alive
                             ones included); beyond, new ones get 503 and are
                             closed (default 0 = no limit)
      --max-connections-per-ip N
                             the same, for the connections of one client
                             address (default 0 = no limit)
      --max-requests-per-connection N
                             close a keep-alive connection after N requests
                             (default 0 = no limit)
      --server-header VALUE  the Server response header (default taipan; none
                             leaves it out)
      --debug                show the traceback of an app's exception in the 500
                             response (development only: it tells clients about
                             your code)

Python:
      --python PATH          interpreter (default: $VIRTUAL_ENV/bin/python, else python3)
      --chdir DIR            change to DIR before loading the app
      --pythonpath DIRS      comma-separated directories to add to sys.path
  -e, --env KEY=VALUE        set an environment variable in the workers; repeatable
      --root-path PATH       mount the app under PATH (SCRIPT_NAME)

Limits:
      --limit-request-line N        longest request line, bytes (default 4094, at
                                    most 1048576; 414 beyond)
      --limit-request-fields N      most header fields (default 100, at most 32768;
                                    431 beyond)
      --limit-request-field_size N  longest header line, bytes (default 8190, at
                                    most 1048576; 431 beyond)
      --limit-request-body SIZE     largest request body (default 1g, 0 = none; 413 beyond)
      --body-memory-limit SIZE      bodies above this are buffered in a temporary
                                    file instead of memory (default 1m)
      --tmp-dir DIR                 where those files go; it must exist and be
                                    writable (default $TMPDIR or /tmp)
      --ws-max-size SIZE            largest WebSocket message from a client
                                    (default 16m; close 1009 beyond)
      --ws-ping-interval S          ping WebSocket clients every S seconds
                                    (default 20, 0 = never)
      --ws-ping-timeout S           close a WebSocket whose client has not answered
                                    a ping for S seconds (default 20)

Logging:
      --log-level LEVEL      debug, info, warning, error or critical (default info)
      --access-logfile FILE  access log, gunicorn's format; "-" is stdout (default none)
      --error-logfile FILE   error log; "-" is stderr (default -)
      --access-logformat FMT access log line, gunicorn's atoms, e.g.
                             '%(h)s "%(r)s" %(s)s %(D)s %(w)s' (default
                             gunicorn's; see docs/operations.md)
      --access-log-json      access log as one JSON object per line
      --log-format F         error log as text (default) or json
      --metrics-bind ADDR    serve /metrics (Prometheus), /healthz, /readyz,
                             /status.json and a live status page (/) on
                             HOST:PORT (default: off)
  SIGUSR1 reopens the log files (after logrotate renames them).

Configuration:
      --config FILE          read settings from this TOML file instead of the
                             [tool.taipan] table of ./pyproject.toml
      --print-config[=json]  print every setting, resolved, and where it came
                             from, then exit
  Every flag can also be set in the environment, as TAIPAN_ and its long name
  (TAIPAN_WORKERS=4; lists comma-separated), or in the config file
  (workers = 4). The command line wins, then the environment, then the
  file; see docs/configuration.md.

  -h, --help                 show this help
  -v, --version              show the version
`
