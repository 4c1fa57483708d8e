// Package cgivarstest is the Handler the uwsgi and FastCGI package tests
// serve: one endpoint per behaviour they check, answering through the
// edge.ResponseWriter the way the bridge does.
package cgivarstest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"taipan/internal/edge"
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
