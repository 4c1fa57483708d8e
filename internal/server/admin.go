package server

import (
	"taipan/internal/edge"
	"taipan/internal/logging"
	"taipan/internal/metrics"
)

// accessLog is the edge's Config.AccessLog: the access log writer, the
// metrics recorder, both, or nil when there is neither (the edge then
// skips building records at all).
func accessLog(w *edge.AccessLogWriter, rec *metrics.Recorder) func(*edge.AccessRecord) {
	switch {
	case w == nil && rec == nil:
		return nil
	case rec == nil:
		return w.Log
	case w == nil:
		return rec.Observe
	}
	return func(r *edge.AccessRecord) {
		w.Log(r)
		rec.Observe(r)
	}
}

// openAdmin binds --metrics-bind and starts answering on it at once, so
// that /healthz and /readyz (503 until workers are ready) work while the
// app boots. It reports on every pool and the HTTP front end.
func openAdmin(addr string, rec *metrics.Recorder, p *pools, fr *front, log *logging.Logger) (*metrics.Server, error) {
	watched := []metrics.Pool{{Name: "main", Pool: p.main}}
	for _, l := range p.lanes {
		watched = append(watched, metrics.Pool{Name: l.Prefix, Pool: l.Pool})
	}
	admin, err := metrics.NewServer(metrics.Config{Recorder: rec, Pools: watched, Conns: fr.http, Version: Version, Log: log})
	if err != nil {
		return nil, err
	}
	if err := admin.Listen(addr); err != nil {
		return nil, err
	}
	admin.Serve()
	return admin, nil
}
