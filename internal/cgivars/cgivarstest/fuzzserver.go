package cgivarstest

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"taipan/internal/edge"
	"taipan/internal/logging"
)

// FuzzIOTimeout bounds each exchange of a fuzz iteration: a server that
// neither answers nor closes by then is looping or waiting for bytes a
// closed connection will never bring.
const FuzzIOTimeout = 10 * time.Second

// FuzzBodyLimit is the server's LimitRequestBody in the fuzz targets, low
// so that the fuzzer reaches the 413 path.
const FuzzBodyLimit = 1 << 20

// FuzzAllocSlack is what one exchange may allocate besides a few times
// its input: buffers, requests, responses.
const FuzzAllocSlack = 4 << 20

// Served is what a FuzzServer's Handler saw of a request.
type Served struct {
	Method string
	Body   []byte
}

// Server is what the uwsgi and FastCGI servers have in common.
type Server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// FuzzServer is a real uwsgi or FastCGI server on a unix socket whose
// Handler records the requests it gets, for the packages' fuzz targets.
type FuzzServer struct {
	path string

	mu   sync.Mutex
	seen []Served
}

// StartFuzzServer starts the server newServer returns on a unix socket and
// stops it when the fuzz test ends.
func StartFuzzServer(f *testing.F, newServer func(edge.Config, edge.Handler, *logging.Logger) Server) *FuzzServer {
	fs := &FuzzServer{path: filepath.Join(f.TempDir(), "fuzz.sock")}
	h := edge.HandlerFunc(func(w edge.ResponseWriter, r *edge.Request) {
		body, err := io.ReadAll(r.Body.Reader())
		if err != nil {
			panic(err)
		}
		fs.mu.Lock()
		fs.seen = append(fs.seen, Served{Method: r.Method, Body: body})
		fs.mu.Unlock()
		w.WriteHead(&edge.ResponseHead{Code: 200, Status: "200 OK",
			Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain"}}}, []byte("served"), true)
	})
	cfg := edge.Config{LimitRequestBody: FuzzBodyLimit, TempDir: f.TempDir()}
	srv := newServer(cfg, h, logging.New(io.Discard, logging.Critical))
	ln, err := net.Listen("unix", fs.path)
	if err != nil {
		f.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; err != nil {
			f.Errorf("Serve: %v", err)
		}
	})
	return fs
}

// Exchange sends raw on a new connection, shuts the write side, and
// returns what came back until the server closed, with the requests the
// Handler saw meanwhile and how many bytes the process allocated.
func (fs *FuzzServer) Exchange(t *testing.T, raw []byte) (out []byte, seen []Served, allocated uint64) {
	fs.mu.Lock()
	fs.seen = nil
	fs.mu.Unlock()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	c, err := net.Dial("unix", fs.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(FuzzIOTimeout))
	go func() { // a refused request may never be read whole
		if _, err := c.Write(raw); err == nil {
			c.(*net.UnixConn).CloseWrite()
		}
	}()
	out, err = io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server neither answered nor closed within %v (got %q)", FuzzIOTimeout, out)
	}

	runtime.ReadMemStats(&after)
	fs.mu.Lock()
	seen = fs.seen
	fs.mu.Unlock()
	return out, seen, after.TotalAlloc - before.TotalAlloc
}
