package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"

	"taipan/internal/cgi"
	"taipan/internal/config"
	"taipan/internal/edge"
	"taipan/internal/fastcgi"
	"taipan/internal/forwarded"
	"taipan/internal/logging"
	"taipan/internal/proxyproto"
	"taipan/internal/static"
	"taipan/internal/uwsgi"
)

// front is everything that faces clients: the handler chain (forwarded
// headers, static files, CGI, then the app), the listeners, and a server
// for each protocol spoken on them.
type front struct {
	log     *logging.Logger
	http    *edge.Server
	uwsgi   *uwsgi.Server
	fastcgi *fastcgi.Server
	certs   *certStore // nil without TLS

	listeners []boundListener
	serving   sync.WaitGroup
}

// boundListener is an open listener and the protocol it speaks.
type boundListener struct {
	ln       net.Listener
	protocol string // "http", "uwsgi" or "fastcgi"
}

// router sends a request to static files, a CGI script or the app, by path.
type router struct {
	static *static.Handler
	cgi    *cgi.Handler
	app    edge.Handler
}

func (rt *router) Serve(w edge.ResponseWriter, r *edge.Request) {
	switch {
	case rt.static != nil && rt.static.Match(r.Path):
		rt.static.Serve(w, r)
	case rt.cgi != nil && rt.cgi.Match(r.Path):
		rt.cgi.Serve(w, r)
	default:
		rt.app.Serve(w, r)
	}
}

// newFront builds the handler chain around app and a server per protocol.
func newFront(cfg *config.Config, ecfg edge.Config, app edge.Handler, log *logging.Logger) (*front, *forwarded.Trust, error) {
	rt := &router{app: app}
	if len(cfg.Static) > 0 {
		mounts := make([]static.Mount, len(cfg.Static))
		for i, m := range cfg.Static {
			mounts[i] = static.Mount{Prefix: m.Prefix, Dir: m.Dir}
		}
		h, err := static.New(mounts, log)
		if err != nil {
			return nil, nil, fmt.Errorf("--static: %w", err)
		}
		rt.static = h
	}
	if len(cfg.CGI) > 0 {
		mounts := make([]cgi.Mount, len(cfg.CGI))
		for i, m := range cfg.CGI {
			mounts[i] = cgi.Mount{Prefix: m.Prefix, Dir: m.Dir}
		}
		h, err := cgi.New(cgi.Config{Mounts: mounts, Timeout: cfg.CGITimeout, Env: cfg.CGIEnv}, log)
		if err != nil {
			return nil, nil, fmt.Errorf("--cgi: %w", err)
		}
		rt.cgi = h
	}
	trust, err := forwarded.ParseTrust(cfg.ForwardedAllowIPs)
	if err != nil {
		return nil, nil, fmt.Errorf("--forwarded-allow-ips: %w", err)
	}
	trust.SetXForwardedHost(cfg.ForwardedHost)
	if err := trust.SetHeaders(cfg.ForwardedHeaders); err != nil {
		return nil, nil, fmt.Errorf("--forwarded-headers: %w", err)
	}
	trust.SetLogger(log)
	var routed edge.Handler = rt
	if rt.static == nil && rt.cgi == nil {
		routed = app
	}
	// Forwarding headers apply to the HTTP listeners only. Over uwsgi and
	// FastCGI, nginx itself reports the client (REMOTE_ADDR, HTTPS), and
	// any X-Forwarded-For there came from the client, through nginx.
	h := forwarded.Handler(trust, routed)

	f := &front{log: log}
	if cfg.CertFile != "" {
		certs, err := newCertStore(cfg.CertFile, cfg.KeyFile, cfg.CACerts, cfg.CertReqs)
		if err != nil {
			return nil, nil, err
		}
		f.certs = certs
		ecfg.TLS = certs.config()
	}
	ecfg.H2C = cfg.H2C
	f.http = edge.NewServer(ecfg, h, log)
	f.uwsgi = uwsgi.NewServer(ecfg, routed, log)
	f.fastcgi = fastcgi.NewServer(ecfg, routed, log)
	return f, trust, nil
}

// listen opens every bind (or takes systemd's sockets when there are
// binds from it), before any worker starts, so a taken port is reported
// at once.
func (f *front) listen(cfg *config.Config, inherited []net.Listener, trust *forwarded.Trust) error {
	opts := listenOptions{backlog: cfg.Backlog, reusePort: cfg.ReusePort, umask: cfg.Umask}
	for _, ln := range inherited {
		f.listeners = append(f.listeners, boundListener{ln: ln, protocol: "http"})
	}
	if len(inherited) == 0 {
		for _, b := range cfg.Binds {
			ln, err := openListener(b, opts, f.http.Listen)
			if err != nil {
				f.closeListeners()
				return fmt.Errorf("cannot listen on %s: %v", b, err)
			}
			f.listeners = append(f.listeners, boundListener{ln: ln, protocol: b.Protocol})
		}
	}
	if cfg.ProxyProtocol {
		for i := range f.listeners {
			if l := &f.listeners[i]; l.ln.Addr().Network() == "tcp" {
				l.ln = proxyproto.NewListener(l.ln, proxyproto.Config{Trusted: trust.Prefixes(), TrustAll: trust.All(), Log: f.log})
			}
		}
	}
	return nil
}

func (f *front) closeListeners() {
	for _, l := range f.listeners {
		l.ln.Close()
	}
}

// serve starts serving every listener.
func (f *front) serve() {
	for _, l := range f.listeners {
		f.log.Infof("Listening at: %s (%d)", describe(l.ln, l.protocol, f.certs != nil), os.Getpid())
		f.serving.Add(1)
		go func() {
			defer f.serving.Done()
			var err error
			switch l.protocol {
			case "uwsgi":
				err = f.uwsgi.Serve(l.ln)
			case "fastcgi":
				err = f.fastcgi.Serve(l.ln)
			default:
				err = f.http.Serve(l.ln)
			}
			if err != nil {
				f.log.Errorf("listener %s: %v", describe(l.ln, l.protocol, f.certs != nil), err)
			}
		}()
	}
}

// shutdown drains every server; it returns an error if ctx ended first.
func (f *front) shutdown(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, s := range []interface{ Shutdown(context.Context) error }{f.http, f.uwsgi, f.fastcgi} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Shutdown(ctx)
		}()
	}
	wg.Wait()
	f.serving.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// reloadCerts rereads the certificate and key (SIGHUP): new connections
// get the new ones, established ones keep theirs.
func (f *front) reloadCerts() {
	if f.certs == nil {
		return
	}
	if err := f.certs.reload(); err != nil {
		f.log.Errorf("TLS: keeping the current certificate: %v", err)
		return
	}
	f.log.Infof("TLS: reloaded %s", f.certs.certFile)
}

func describe(ln net.Listener, protocol string, tls bool) string {
	a := ln.Addr()
	scheme := protocol
	if protocol == "http" && tls {
		scheme = "https"
	}
	if a.Network() == "unix" {
		return scheme + "+unix:" + a.String()
	}
	return scheme + "://" + a.String()
}
