package uwsgi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"taipan/internal/edge"
	"taipan/internal/logging"
)

// fuzzIOTimeout bounds each exchange of a fuzz iteration: a server that
// neither answers nor closes by then is looping or waiting for bytes a
// closed connection will never bring.
const fuzzIOTimeout = 10 * time.Second

// fuzzBodyLimit is the server's LimitRequestBody in the fuzz target, low
// so that the fuzzer reaches the 413 path.
const fuzzBodyLimit = 1 << 20

// fuzzAllocSlack is what one exchange may allocate besides a few times
// its input: buffers, the request, the response.
const fuzzAllocSlack = 4 << 20

// served is what the fuzz Handler saw of a request.
type served struct {
	method string
	body   []byte
}

// fuzzServer is a real Server on a unix socket whose Handler records the
// requests it gets.
type fuzzServer struct {
	path string

	mu   sync.Mutex
	seen []served
}

func startFuzzServer(f *testing.F) *fuzzServer {
	fs := &fuzzServer{path: filepath.Join(f.TempDir(), "uwsgi.sock")}
	h := edge.HandlerFunc(func(w edge.ResponseWriter, r *edge.Request) {
		body, err := io.ReadAll(r.Body.Reader())
		if err != nil {
			panic(err)
		}
		fs.mu.Lock()
		fs.seen = append(fs.seen, served{method: r.Method, body: body})
		fs.mu.Unlock()
		w.WriteHead(&edge.ResponseHead{Code: 200, Status: "200 OK",
			Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain"}}}, []byte("served"), true)
	})
	cfg := edge.Config{LimitRequestBody: fuzzBodyLimit, TempDir: f.TempDir()}
	srv := NewServer(cfg, h, logging.New(io.Discard, logging.Critical))
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

// exchange sends raw on a new connection, shuts the write side, and
// returns what came back until the server closed, with the requests the
// Handler saw meanwhile and how many bytes the process allocated.
func (fs *fuzzServer) exchange(t *testing.T, raw []byte) (out []byte, seen []served, allocated uint64) {
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
	c.SetDeadline(time.Now().Add(fuzzIOTimeout))
	go func() { // a refused packet may never be read whole
		if _, err := c.Write(raw); err == nil {
			c.(*net.UnixConn).CloseWrite()
		}
	}()
	out, err = io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server neither answered nor closed within %v (got %q)", fuzzIOTimeout, out)
	}

	runtime.ReadMemStats(&after)
	fs.mu.Lock()
	seen = fs.seen
	fs.mu.Unlock()
	return out, seen, after.TotalAlloc - before.TotalAlloc
}

// refPacket is a uwsgi request packet as this test reads it, from the
// format in the package comment: modifier1 0, the little-endian uint16
// size of the vars block, modifier2, then the block of uint16
// length-prefixed keys and values; the body follows.
type refPacket struct {
	vars      [][2]string
	bodyStart int
}

// parsePacket reads the packet at the start of b; ok is false when the
// header or the vars block is missing, truncated or malformed.
func parsePacket(b []byte) (p refPacket, ok bool) {
	if len(b) < 4 || b[0] != 0 {
		return p, false
	}
	size := int(binary.LittleEndian.Uint16(b[1:3]))
	if len(b) < 4+size {
		return p, false
	}
	block := b[4 : 4+size]
	field := func() (string, bool) {
		if len(block) < 2 {
			return "", false
		}
		n := int(binary.LittleEndian.Uint16(block))
		if len(block) < 2+n {
			return "", false
		}
		s := string(block[2 : 2+n])
		block = block[2+n:]
		return s, true
	}
	for len(block) > 0 {
		k, ok1 := field()
		v, ok2 := field()
		if !ok1 || !ok2 {
			return p, false
		}
		p.vars = append(p.vars, [2]string{k, v})
	}
	p.bodyStart = 4 + size
	return p, true
}

// notUWSGI reports whether b is cut short before the end of its vars block
// or has a modifier1 other than 0: the server cannot tell what it is
// talking to, and should not answer.
func notUWSGI(b []byte) bool {
	return len(b) < 4 || b[0] != 0 || len(b) < 4+int(binary.LittleEndian.Uint16(b[1:3]))
}

// last is the value of the last variable named name, and whether there
// is one; with nonEmpty, of the last one with a value.
func (p refPacket) last(name string, nonEmpty bool) (string, bool) {
	for i := len(p.vars) - 1; i >= 0; i-- {
		if p.vars[i][0] == name && (!nonEmpty || p.vars[i][1] != "") {
			return p.vars[i][1], true
		}
	}
	return "", false
}

// plainDecimal parses s when it is nothing but a few decimal digits.
func plainDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 15 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// FuzzPacket sends arbitrary bytes to a real Server as nginx's uwsgi_pass
// would send a request packet, and checks the outcome against a reading of
// the packet format: a packet that is not uwsgi (modifier1 other than 0,
// a truncated header or vars block) is closed unanswered, a malformed
// one is never served; a request that is served got the method of its last
// REQUEST_METHOD and a body of its last non-empty CONTENT_LENGTH bytes taken from just after
// the vars; every answer is one well-formed HTTP/1.1 response; the server
// answers or closes promptly; and no length in the packet makes it
// allocate more than a few times what was sent.
func FuzzPacket(f *testing.F) {
	fs := startFuzzServer(f)
	f.Add(packet(nginxVars("GET", "/echo?x=1"), nil))
	f.Add(packet(nginxVars("POST", "/echo", [2]string{"CONTENT_LENGTH", "5"}), []byte("hello")))
	f.Add(packet(nginxVars("POST", "/echo", [2]string{"CONTENT_LENGTH", "99999999999"}), []byte("short")))
	f.Add(packet([][2]string{{"REQUEST_METHOD", "GET"}, {"HTTP_X_A", "1"}, {"PATH_INFO", "/a b"}}, nil))
	f.Add([]byte{0, 0xff, 0xff, 0, 0xff, 0xff})
	f.Add([]byte{5, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, seen, allocated := fs.exchange(t, raw)
		if limit := fuzzAllocSlack + 4*uint64(len(raw)); allocated > limit {
			t.Errorf("one exchange of %d bytes allocated %d bytes (limit %d)", len(raw), allocated, limit)
		}
		p, ok := parsePacket(raw)
		if !ok && len(seen) != 0 {
			t.Fatalf("a malformed packet served %d requests", len(seen))
		}
		if notUWSGI(raw) && len(out) != 0 {
			t.Fatalf("a packet that is not uwsgi got %q, want the connection closed unanswered", out)
		}
		if len(seen) > 1 {
			t.Fatalf("one packet served %d requests", len(seen))
		}
		if len(out) == 0 {
			if len(seen) != 0 {
				t.Fatal("a served request got no answer")
			}
			return // the body was cut short: nobody to answer
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
		if err != nil {
			t.Fatalf("the answer %q is not an HTTP response: %v", out, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.ContentLength != int64(len(body)) {
			t.Fatalf("the answer %q: body of %d bytes, Content-Length %d: %v", out, len(body), resp.ContentLength, err)
		}
		if len(seen) == 0 {
			// Refused: a malformed packet may be, for a variable the
			// server read before it reached the malformation.
			if resp.StatusCode < 400 {
				t.Fatalf("a request that was not served got %q", out)
			}
			return
		}
		s := seen[0]
		if resp.StatusCode != 200 || s.method != "HEAD" && string(body) != "served" {
			t.Fatalf("a served request got %q", out)
		}
		if m, _ := p.last("REQUEST_METHOD", false); s.method != m {
			t.Fatalf("served method %q, want the last REQUEST_METHOD, %q", s.method, m)
		}
		if end := p.bodyStart + len(s.body); end > len(raw) || !bytes.Equal(s.body, raw[p.bodyStart:end]) {
			t.Fatalf("served body %q is not the bytes after the vars, %q", s.body, raw[p.bodyStart:])
		}
		want := int64(0)
		if cl, ok := p.last("CONTENT_LENGTH", true); ok {
			n, plain := plainDecimal(cl)
			if !plain {
				return // the Builder's business; a plain number is enough to check
			}
			want = n
		}
		if int64(len(s.body)) != want {
			t.Fatalf("served a body of %d bytes, CONTENT_LENGTH says %d", len(s.body), want)
		}
	})
}
