package metrics

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"taipan/internal/logging"
)

// Config is what a Server reports on.
type Config struct {
	Recorder *Recorder   // counts requests and pool events; required
	Pools    []Pool      // the pools, main first; the process is ready when each has a ready worker
	Conns    ConnCounter // the HTTP front end; nil leaves connections out
	Version  string      // taipan's version, for /status.json
	Log      *logging.Logger
}

// Server serves the admin endpoints on a listener of its own, apart from
// the clients' (it is net/http: this is no hot path, and it must keep
// answering while the edge drains):
//
//	/metrics      Prometheus text format
//	/healthz      200 while the pools run (liveness)
//	/readyz       200 while workers are ready and taipan is not draining
//	/status.json  the workers and recent traffic, for status pages
//	/             a live status page that polls /status.json
type Server struct {
	cfg      Config
	pid      int
	rss      func(pid int) (int64, error) // readRSS, but for tests
	handler  http.Handler
	draining atomic.Bool

	srv    *http.Server
	ln     net.Listener
	served chan struct{} // closed when Serve's goroutine returns
}

// NewServer returns a Server for cfg and adds the collectors that read the
// pools and connections at scrape time to the Recorder's registry (so one
// Recorder serves one Server).
func NewServer(cfg Config) (*Server, error) {
	if cfg.Recorder == nil {
		return nil, errors.New("metrics: NewServer needs a Recorder")
	}
	s := &Server{cfg: cfg, pid: os.Getpid(), rss: readRSS}
	rss := func(pid int) (int64, error) { return s.rss(pid) }
	if err := cfg.Recorder.register(newStateCollector(cfg.Pools, cfg.Conns, s.ready, rss)); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Recorder.reg, promhttp.HandlerOpts{
		ErrorLog:      s.errorLog("metrics: "),
		ErrorHandling: promhttp.ContinueOnError, // a failing collector should not hide the others
		Registry:      cfg.Recorder.reg,         // counts its own errors
	}))
	mux.HandleFunc("GET /healthz", s.serveHealthz)
	mux.HandleFunc("GET /readyz", s.serveReadyz)
	mux.HandleFunc("GET /status.json", s.serveStatus)
	mux.HandleFunc("GET /{$}", serveIndex)
	s.handler = mux
	return s, nil
}

// Handler serves the admin endpoints (what Serve serves).
func (s *Server) Handler() http.Handler { return s.handler }

// Listen opens the admin listener on addr (host:port). Call it early, so
// that a taken port is reported before workers start.
func (s *Server) Listen(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("--metrics-bind %q: want HOST:PORT: %v", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics-bind: %w", err)
	}
	s.ln = ln
	return nil
}

// Addr is the address Listen bound.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers on the listener opened by Listen, in the background, until
// Shutdown.
func (s *Server) Serve() {
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          s.errorLog("metrics server: "),
	}
	s.served = make(chan struct{})
	if s.cfg.Log != nil {
		s.cfg.Log.Infof("Metrics and health checks at http://%s/metrics, /healthz, /readyz, /status.json", s.ln.Addr())
	}
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && s.cfg.Log != nil {
			s.cfg.Log.Errorf("metrics listener %s: %v", s.ln.Addr(), err)
		}
	}()
}

// Drain marks taipan as draining: /readyz answers 503 from now on, so that
// a load balancer stops sending traffic while in-flight requests finish.
// Everything else keeps answering.
func (s *Server) Drain() { s.draining.Store(true) }

// Shutdown closes the listener and waits for the requests being answered,
// until ctx ends. Call it last, once the edge and the pools have stopped,
// so that probes and scrapes see the whole drain.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		if s.ln != nil {
			return s.ln.Close()
		}
		return nil
	}
	err := s.srv.Shutdown(ctx)
	<-s.served
	return err
}

// ready reports whether taipan takes traffic: not draining, and every pool
// has a ready worker of its current generation.
func (s *Server) ready() bool {
	ok, _ := s.readiness()
	return ok
}

// readiness is ready's answer and, when false, why.
func (s *Server) readiness() (bool, string) {
	if s.draining.Load() {
		return false, "draining"
	}
	for _, p := range s.cfg.Pools {
		snap := p.Pool.Snapshot()
		if !snap.Ready() {
			if snap.Closed {
				return false, "stopped"
			}
			return false, "no worker ready in pool " + p.Name
		}
	}
	return true, "ok"
}

// serveHealthz answers liveness: 200 while the pools run, booting,
// serving or draining; 503 once they have stopped.
func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	for _, p := range s.cfg.Pools {
		if snap := p.Pool.Snapshot(); snap.Closed {
			plain(w, http.StatusServiceUnavailable, "stopped")
			return
		}
	}
	plain(w, http.StatusOK, "ok")
}

// serveReadyz answers readiness: 200 "ok", or 503 with the reason.
func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	if ok, why := s.readiness(); !ok {
		plain(w, http.StatusServiceUnavailable, why)
		return
	}
	plain(w, http.StatusOK, "ok")
}

// serveStatus answers /status.json.
func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s.status(time.Now())); err != nil {
		http.Error(w, "encoding status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// statusPage is the live status page served at /: one self-contained HTML
// file (inline CSS and JS, nothing fetched but /status.json).
//
//go:embed status.html
var statusPage []byte

// statusPagePolicy lets the page run its own inline script and style and
// fetch from this listener, and nothing else.
const statusPagePolicy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// serveIndex serves the status page, for whoever opens the address in a
// browser.
func serveIndex(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", statusPagePolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(statusPage)
}

// plain writes a one-line text/plain answer that is never cached.
func plain(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

// errorLog is a standard library logger that writes to taipan's error log
// (or discards when there is none), for net/http and promhttp.
func (s *Server) errorLog(prefix string) *log.Logger {
	if s.cfg.Log == nil {
		return log.New(io.Discard, "", 0)
	}
	return log.New(logWriter{s.cfg.Log}, prefix, 0)
}

// logWriter turns the lines a *log.Logger writes into error log entries.
type logWriter struct{ log *logging.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Warnf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}
