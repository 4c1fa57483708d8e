// Package cgivarstest is the Handler the uwsgi and FastCGI package tests
// serve: one endpoint per behaviour they check, answering through the
// edge.ResponseWriter the way the bridge does.
package cgivarstest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"taipan/internal/edge"
	"taipan/internal/logging"
)

// Echo is what /echo reports about the request it got.
type Echo struct {
	Method, Target, Path, RawQuery, Proto string
	ProtoMinor                            int
	Host                                  string
	Header                                []edge.HeaderField
	RemoteAddr, RemotePort                string
	ServerName, ServerPort                string
	Scheme                                string
	GatewayPaths                          bool
	ScriptName, PathInfo                  string
	BodyLen                               int64
	BodySHA256                            string
	Spilled                               bool // the body was in a file
	SpillExists                           bool // and the file existed while serving
}

// Handler serves the test endpoints. Make it with New.
type Handler struct {
	// Entered receives the path of /slow and /watch requests when they
	// start.
	Entered chan string
	// Release lets /slow requests finish (close it, or send).
	Release chan struct{}
	// Gone receives, for each /watch request, whether ClientGone fired.
	Gone chan bool
	// File is what /file sends (SendFile).
	File *os.File

	mu        sync.Mutex
	spillPath string
}

// New returns a Handler whose /file sends a temporary file holding
// fileContent.
func New(t testing.TB, fileContent string) *Handler {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "sendfile-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(fileContent); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &Handler{Entered: make(chan string, 8), Release: make(chan struct{}), Gone: make(chan bool, 8), File: f}
}

// SpillPath is the spill file of the last /echo body that had one.
func (h *Handler) SpillPath() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.spillPath
}

func text(code int, status string, extra ...edge.HeaderField) *edge.ResponseHead {
	return &edge.ResponseHead{Code: code, Status: status, Header: append([]edge.HeaderField{{Name: "Content-Type", Value: "text/plain"}}, extra...)}
}

// Serve routes by path.
func (h *Handler) Serve(w edge.ResponseWriter, r *edge.Request) {
	switch r.Path {
	case "/echo":
		e := Echo{
			Method: r.Method, Target: r.Target, Path: r.Path, RawQuery: r.RawQuery, Proto: r.Proto, ProtoMinor: r.ProtoMinor,
			Host: r.Host, Header: r.Header, RemoteAddr: r.RemoteAddr, RemotePort: r.RemotePort,
			ServerName: r.ServerName, ServerPort: r.ServerPort, Scheme: r.Scheme, BodyLen: r.Body.Len(),
			GatewayPaths: r.GatewayPaths, ScriptName: r.ScriptName, PathInfo: r.PathInfo,
		}
		sum := sha256.New()
		io.Copy(sum, r.Body.Reader())
		e.BodySHA256 = hex.EncodeToString(sum.Sum(nil))
		if p := r.Body.FilePath(); p != "" {
			e.Spilled = true
			_, err := os.Stat(p)
			e.SpillExists = err == nil
			h.mu.Lock()
			h.spillPath = p
			h.mu.Unlock()
		}
		b, _ := json.Marshal(e)
		w.WriteHead(&edge.ResponseHead{Code: 200, Status: "200 OK", Header: []edge.HeaderField{{Name: "Content-Type", Value: "application/json"}}}, b, true)
	case "/stream":
		// Unknown length: the protocol delimits the body.
		w.WriteHead(text(200, "200 OK"), []byte("a"), false)
		w.Write([]byte("b"))
		w.Write(nil)
		w.Write([]byte("cd"))
	case "/big":
		// A streamed body spanning several FastCGI records.
		w.WriteHead(text(200, "200 OK"), nil, false)
		chunk := make([]byte, 50000)
		for i := range 5 {
			for j := range chunk {
				chunk[j] = byte('a' + i)
			}
			w.Write(chunk)
		}
	case "/cl":
		w.WriteHead(text(200, "200 OK", edge.HeaderField{Name: "Content-Length", Value: "5"}), []byte("he"), false)
		w.Write([]byte("llo"))
	case "/clshort":
		// Promises 10 bytes, sends 5: the response must end broken.
		w.WriteHead(text(200, "200 OK", edge.HeaderField{Name: "Content-Length", Value: "10"}), []byte("hello"), false)
	case "/abort":
		w.WriteHead(text(200, "200 OK"), []byte("partial"), false)
		w.Abort()
	case "/hop":
		w.WriteHead(text(201, "201 Created",
			edge.HeaderField{Name: "Connection", Value: "close"},
			edge.HeaderField{Name: "Keep-Alive", Value: "timeout=5"},
			edge.HeaderField{Name: "Transfer-Encoding", Value: "chunked"},
			edge.HeaderField{Name: "Upgrade", Value: "h2c"},
			edge.HeaderField{Name: "X-Kept", Value: "yes"},
			edge.HeaderField{Name: "Server", Value: "app"},
		), []byte("hop"), true)
	case "/204":
		w.WriteHead(&edge.ResponseHead{Code: 204, Status: "204 No Content"}, nil, true)
	case "/nohead":
	case "/panic":
		panic("boom")
	case "/upgrade":
		_, err := w.Upgrade(&edge.ResponseHead{Code: 101, Status: "101 Switching Protocols"})
		msg := "upgrade error: none"
		if err != nil {
			msg = "upgrade error: yes"
		}
		w.WriteHead(text(200, "200 OK"), []byte(msg), true)
	case "/file":
		fi, _ := h.File.Stat()
		w.WriteHead(text(200, "200 OK", edge.HeaderField{Name: "Content-Length", Value: strconv.FormatInt(fi.Size()-2, 10)}), nil, false)
		w.SendFile(h.File, 2, fi.Size()-2)
	case "/slow":
		h.Entered <- r.Path
		<-h.Release
		w.WriteHead(text(200, "200 OK"), []byte("slow done"), true)
	case "/watch":
		// Streams a head, then waits for the peer to leave, or 2s.
		w.WriteHead(text(200, "200 OK"), []byte("head;"), false)
		h.Entered <- r.Path
		select {
		case <-w.ClientGone():
			h.Gone <- true
			w.Abort()
		case <-time.After(2 * time.Second):
			w.Write([]byte("tail;"))
			h.Gone <- false
		}
	default:
		w.WriteHead(text(404, "404 Not Found"), []byte("not found: "+r.Path), true)
	}
}

// TestServer is a uwsgi or FastCGI Server running the test Handler on a
// loopback port, with its error log and access records kept for the
// test's assertions. Make it with StartTestServer.
type TestServer struct {
	Srv  Server
	H    *Handler
	Addr string
	// Served receives what Serve returned; the cleanup waits on it, so a
	// test that takes it puts a value back.
	Served chan error

	mu     sync.Mutex
	log    bytes.Buffer
	access []edge.AccessRecord
}

// StartTestServer starts the Server newServer returns with cfg and the
// test Handler, and shuts it down when the test ends.
func StartTestServer(t *testing.T, cfg edge.Config, newServer func(edge.Config, edge.Handler, *logging.Logger) Server) *TestServer {
	t.Helper()
	ts := &TestServer{H: New(t, "0123456789abcdef"), Served: make(chan error, 1)}
	cfg.AccessLog = func(r *edge.AccessRecord) {
		ts.mu.Lock()
		ts.access = append(ts.access, *r)
		ts.mu.Unlock()
	}
	ts.Srv = newServer(cfg, ts.H, logging.New(testLogWriter{ts}, logging.Debug))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.Addr = ln.Addr().String()
	go func() { ts.Served <- ts.Srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.Srv.Shutdown(ctx)
		if err := <-ts.Served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

type testLogWriter struct{ ts *TestServer }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.ts.mu.Lock()
	defer w.ts.mu.Unlock()
	return w.ts.log.Write(p)
}

// ErrorLog is what the Server has logged so far.
func (ts *TestServer) ErrorLog() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.log.String()
}

// Access returns the access records so far.
func (ts *TestServer) Access() []edge.AccessRecord {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]edge.AccessRecord(nil), ts.access...)
}
