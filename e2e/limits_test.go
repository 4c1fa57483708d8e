package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The resource limits of the edge, each tried against the real binary:
// connection limits, requests per connection, slowloris and slow-read
// clients, clients that leave half-way, and request bodies spilled to disk.

// startLimitsApp runs taipan serving e2e/apps/limitsapp.py's WSGI app.
func startLimitsApp(t testing.TB, args ...string) *Server {
	t.Helper()
	full := append([]string{"--pythonpath", appsDir(t)}, args...)
	return Start(t, append(full, "limitsapp:app")...)
}

// keptConn is a keep-alive connection that has been answered once, so
// the server has accepted and registered it.
type keptConn struct {
	c  net.Conn
	br *bufio.Reader
}

// dialKept opens a connection from laddr (nil: any) and has it answered
// once.
func dialKept(t testing.TB, s *Server, laddr net.Addr) *keptConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: laddr}
	c, err := d.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatalf("dial %s from %v: %v", s.Addr, laddr, err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { c.Close() })
	k := &keptConn{c: c, br: bufio.NewReader(c)}
	if code, body := k.get(t, "/hello"); code != 200 {
		t.Fatalf("first request on a kept connection: %d %q", code, body)
	}
	return k
}

// get sends a GET on the kept connection and reads the answer.
func (k *keptConn) get(t testing.TB, path string) (int, string) {
	t.Helper()
	if _, err := io.WriteString(k.c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp, body := ReadResponse(t, k.br, "GET")
	return resp.StatusCode, body
}

// appSeen is how many requests the limitsapp's worker has seen.
func appSeen(t testing.TB, k *keptConn) int {
	t.Helper()
	code, body := k.get(t, "/count")
	n, err := strconv.Atoi(body)
	if code != 200 || err != nil {
		t.Fatalf("/count: %d %q", code, body)
	}
	return n
}

// oneShot sends a GET /hello on a new connection from laddr (nil: any),
// reads until the server closes it, and returns what came back. closed
// is false when the read ended on the client's own deadline.
func oneShot(t testing.TB, s *Server, laddr net.Addr) (out string, closed bool) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: laddr}
	c, err := d.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	b, err := io.ReadAll(c)
	var ne net.Error
	return string(b), !(errors.As(err, &ne) && ne.Timeout())
}

// isRefusal reports whether out is the edge's 503 for a connection over a
// limit, ended by the server.
func isRefusal(out string, closed bool, why string) bool {
	return closed && strings.HasPrefix(out, "HTTP/1.1 503 ") && strings.Contains(out, "\r\nConnection: close\r\n") &&
		strings.HasSuffix(out, "\r\n\r\nService Unavailable: "+why+"\n")
}

// refusedLine is the edge's log line about connections refused over a limit.
var refusedLine = regexp.MustCompile(`edge: refused (\d+) connections?[^\n]*the most (--max-connections(?:-per-ip)?) allows`)

// loggedRefusals adds up the connections the log says were refused over
// the limit set by flag.
func loggedRefusals(stderr, flag string) int {
	n := 0
	for _, m := range refusedLine.FindAllStringSubmatch(stderr, -1) {
		if m[2] == flag {
			k, _ := strconv.Atoi(m[1])
			n += k
		}
	}
	return n
}

// TestLimitsMaxConnections: with --max-connections 4 and four connections
// open (idle keep-alive), a fifth gets a 503 and is closed without
// reaching the app; the refusals are logged, but not once each; closing
// one connection makes room for the next.
func TestLimitsMaxConnections(t *testing.T) {
	t.Parallel()
	s := startLimitsApp(t, "-w", "1", "--max-connections", "4", "--keep-alive", "30")
	var held []*keptConn
	for range 4 {
		held = append(held, dialKept(t, s, nil))
	}
	before := appSeen(t, held[0])

	const tries = 50
	var mu sync.Mutex
	refused := 0
	var wg sync.WaitGroup
	for range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, closed := oneShot(t, s, nil)
			mu.Lock()
			defer mu.Unlock()
			if isRefusal(out, closed, "too many connections") {
				refused++
			} else {
				t.Errorf("a connection over --max-connections got %q (closed by the server: %v)", out, closed)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d of %d connections over --max-connections were refused with 503", refused, tries)
	if after := appSeen(t, held[0]); after != before {
		t.Errorf("the app saw %d requests from refused connections", after-before)
	}
	// Every refusal is counted in the log, the last ones too (reported
	// when the rate limit's interval ends, not at the next refusal). The
	// log may count more: the harness's start-up probes (connections it
	// opens and closes at once) can be refused too.
	if !pollUntil(3*time.Second, func() bool { return loggedRefusals(s.Stderr(), "--max-connections") >= tries }) {
		t.Fatalf("the log counts %d refused connections, want at least %d:\n%s", loggedRefusals(s.Stderr(), "--max-connections"), tries, s.Stderr())
	}
	if n := strings.Count(s.Stderr(), "edge: refused"); n > tries/4 {
		t.Errorf("%d log lines about %d refusals; want them rate-limited:\n%s", n, tries, s.Stderr())
	}
	// The held connections still work, and one closed makes room.
	for i, k := range held {
		if code, _ := k.get(t, "/hello"); code != 200 {
			t.Errorf("held connection %d: %d", i, code)
		}
	}
	held[3].c.Close()
	if !pollUntil(5*time.Second, func() bool {
		out, _ := oneShot(t, s, nil)
		return strings.HasPrefix(out, "HTTP/1.1 200 ")
	}) {
		t.Errorf("no room for a new connection after one of the four closed")
	}
}

// TestLimitsMaxConnectionsPerIP: --max-connections-per-ip 2 refuses a
// third connection from 127.0.0.1 while 127.0.0.2 is still served.
func TestLimitsMaxConnectionsPerIP(t *testing.T) {
	t.Parallel()
	s := startLimitsApp(t, "-w", "1", "--max-connections-per-ip", "2", "--keep-alive", "30")
	one := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	two := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	a := dialKept(t, s, one)
	dialKept(t, s, one)
	before := appSeen(t, a)
	for i := range 10 {
		if out, closed := oneShot(t, s, one); !isRefusal(out, closed, "too many connections from your address") {
			t.Errorf("third connection from 127.0.0.1 (try %d): %q, closed %v", i, out, closed)
		}
	}
	// Another address has its own allowance.
	b := dialKept(t, s, two)
	dialKept(t, s, two)
	if out, closed := oneShot(t, s, two); !isRefusal(out, closed, "too many connections from your address") {
		t.Errorf("third connection from 127.0.0.2: %q, closed %v", out, closed)
	}
	if after := appSeen(t, a); after != before+2 {
		t.Errorf("the app saw %d requests, want the 2 from 127.0.0.2", after-before)
	}
	if !pollUntil(3*time.Second, func() bool { return loggedRefusals(s.Stderr(), "--max-connections-per-ip") >= 11 }) {
		t.Errorf("the log counts %d refused connections, want at least the 11 above:\n%s", loggedRefusals(s.Stderr(), "--max-connections-per-ip"), s.Stderr())
	}
	b.c.Close()
	if !pollUntil(5*time.Second, func() bool {
		out, _ := oneShot(t, s, two)
		return strings.HasPrefix(out, "HTTP/1.1 200 ")
	}) {
		t.Errorf("127.0.0.2 closed one of its two connections, yet a new one is still refused")
	}
}

// TestLimitsBodyTimeout: a client that stops in the middle of its request
// body gets 408 once it has sent nothing for --body-timeout seconds, and
// the request never reaches the app; one that keeps sending, however
// slowly, is not cut off.
func TestLimitsBodyTimeout(t *testing.T) {
	t.Parallel()
	s := startLimitsApp(t, "-w", "1", "--body-timeout", "1")
	k := dialKept(t, s, nil)
	before := appSeen(t, k)

	c := dialRaw(t, s.Addr)
	start := time.Now()
	io.WriteString(c, "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
	resp, _ := ReadResponse(t, bufio.NewReader(c), "POST")
	waited := time.Since(start)
	if resp.StatusCode != 408 || waited < 900*time.Millisecond || waited > 5*time.Second {
		t.Errorf("a body stalled after 3 of 10 bytes: %d after %v, want 408 after about 1 s", resp.StatusCode, waited.Round(time.Millisecond))
	}

	// Three pauses of 0.6 s each, 1.8 s in all: each is within the timeout.
	c = dialRaw(t, s.Addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
	for _, b := range []string{"a", "b", "c", "d"} {
		time.Sleep(600 * time.Millisecond)
		io.WriteString(c, b)
	}
	if resp, body := ReadResponse(t, br, "POST"); resp.StatusCode != 200 {
		t.Errorf("a body sent a byte every 0.6 s: %d %q, want 200", resp.StatusCode, body)
	}
	if after := appSeen(t, k); after != before+1 {
		t.Errorf("the app saw %d requests, want 1: the slow body's, not the stalled one", after-before)
	}
}

// TestLimitsMaxRequestsPerConnection: the Nth request of a keep-alive
// connection is answered with Connection: close and the connection ends;
// pipelined requests beyond it are not run.
func TestLimitsMaxRequestsPerConnection(t *testing.T) {
	t.Parallel()
	s := startLimitsApp(t, "-w", "1", "--max-requests-per-connection", "3")
	c := dialRaw(t, s.Addr)
	br := bufio.NewReader(c)
	for i := 1; i <= 3; i++ {
		io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, _ := ReadResponse(t, br, "GET")
		if resp.StatusCode != 200 || resp.Close != (i == 3) {
			t.Errorf("request %d: %d, Connection: close %v", i, resp.StatusCode, resp.Close)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("the connection stayed open after its third request: %v", err)
	}

	k := dialKept(t, s, nil)
	before := appSeen(t, k) // the second request of k; its third closes it
	c = dialRaw(t, s.Addr)
	io.WriteString(c, strings.Repeat("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 5))
	out, _ := io.ReadAll(c)
	if n := strings.Count(string(out), "HTTP/1.1 200 "); n != 3 {
		t.Errorf("5 pipelined requests: %d answered, want 3", n)
	}
	if after := appSeen(t, k); after != before+3 {
		t.Errorf("the app ran %d of the 5 pipelined requests, want 3", after-before)
	}
}

// TestLimitsSlowloris: 200 connections trickling a request head one byte
// a second hold no worker: the one worker answers normal requests while
// they are all open, and each of them gets 408 and is closed at the
// header timeout. None reaches the app.
func TestLimitsSlowloris(t *testing.T) {
	t.Parallel()
	s := startLimitsApp(t, "-w", "1", "--header-timeout", "3")
	k := dialKept(t, s, nil)
	before := appSeen(t, k)
	k.c.Close()

	const conns = 200
	head := "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 100)
	type result struct {
		out      string
		closedAt time.Time
		err      error
	}
	results := make([]result, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conns {
		c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		c.SetDeadline(time.Now().Add(12 * time.Second))
		defer c.Close()
		wg.Add(2)
		stop := make(chan struct{})
		go func() { // one byte a second, until the server hangs up
			defer wg.Done()
			for j := 0; j < len(head); j++ {
				if _, err := c.Write([]byte{head[j]}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
			}
		}()
		go func() {
			defer wg.Done()
			defer close(stop)
			b, err := io.ReadAll(c)
			results[i] = result{string(b), time.Now(), err}
		}()
	}

	// Normal requests, while every slow connection is open.
	var served time.Time
	for i := range 5 {
		if code, body := httpGet(t, s, "/hello"); code != 200 || body != "hello" {
			t.Errorf("normal request %d during the slowloris: %d %q", i, code, body)
		}
		served = time.Now()
	}
	wg.Wait()

	got408 := 0
	firstClose := results[0].closedAt
	for i, r := range results {
		if r.closedAt.Before(firstClose) {
			firstClose = r.closedAt
		}
		if r.err != nil {
			t.Errorf("slow connection %d not closed by the server (after %v): %v", i, r.closedAt.Sub(start), r.err)
			continue
		}
		if strings.HasPrefix(r.out, "HTTP/1.1 408 ") && strings.Contains(r.out, "\r\nConnection: close\r\n") {
			got408++
		} else {
			t.Errorf("slow connection %d got %q", i, r.out)
		}
	}
	t.Logf("%d of %d slowloris connections got 408 and were closed; the last normal request was answered %v after they opened, the first of them closed after %v",
		got408, conns, served.Sub(start).Round(time.Millisecond), firstClose.Sub(start).Round(time.Millisecond))
	if !served.Before(firstClose) {
		t.Errorf("the normal requests were answered only once slow connections were closed (%v >= %v): they waited behind them",
			served.Sub(start), firstClose.Sub(start))
	}
	k = dialKept(t, s, nil)
	if after := appSeen(t, k); after != before+5+1 {
		t.Errorf("the app saw %d requests, want the 5 normal ones and the kept connection's", after-before)
	}
}

// dialWindow opens a connection whose receive buffer is rcvbuf bytes (set
// before connecting, so the window is small from the start, and not grown
// by the kernel), so that a client that reads slowly soon stops the
// server's writes.
func dialWindow(t testing.TB, addr string, rcvbuf int) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestLimitsSlowReader: a client that asks for a large response and does
// not read it holds no worker, and is disconnected after --write-timeout
// (it gets only what the kernel had buffered); a streaming response to
// such a client frees the worker (and runs the iterable's close()) once
// the write times out.
func TestLimitsSlowReader(t *testing.T) {
	t.Parallel()
	s := startLimitsApp(t, "-w", "1", "--write-timeout", "1", "--access-logfile", "-")
	const size = 16 << 20

	t.Run("whole-body", func(t *testing.T) {
		c := dialWindow(t, s.Addr, 16<<10)
		c.SetDeadline(time.Now().Add(testTimeout))
		target := fmt.Sprintf("/big?kb=%d", size>>10)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target)
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil { // the head: Go has the whole body
			t.Fatal(err)
		}
		// The only worker handed the body over and is free.
		if code, body := httpGet(t, s, "/hello"); code != 200 || body != "hello" {
			t.Errorf("the one worker is held by a client that does not read: %d %q", code, body)
		}
		// The response ends (and is logged) when the write times out,
		// though the client reads nothing.
		if !pollUntil(10*time.Second, func() bool { return strings.Contains(s.Stdout(), `"GET `+target+` HTTP/1.1" 200 `) }) {
			t.Fatalf("the response to a client that does not read did not end:\n%s", s.Stdout())
		}
		// What the kernel had buffered still arrives, then the end.
		n, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server kept the connection of a client that stopped reading open (read %d bytes)", n)
		}
		if n >= size {
			t.Errorf("the client got the whole %d-byte response although it read nothing past --write-timeout", n)
		}
		t.Logf("a client that stopped reading got %d of %d bytes (what the kernel had buffered), then the connection closed (%v)", n, size, err)
	})

	t.Run("stream", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "closed")
		c := dialWindow(t, s.Addr, 16<<10)
		fmt.Fprintf(c, "GET /stream?pause=0&marker=%s HTTP/1.1\r\nHost: x\r\n\r\n", url.QueryEscape(marker))
		if _, ok := waitMarker(marker, 10*time.Second); !ok {
			t.Fatalf("close() of a stream to a client that does not read was not called")
		}
		if code, body := httpGet(t, s, "/hello"); code != 200 || body != "hello" {
			t.Errorf("the worker was not freed after the write timeout: %d %q", code, body)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("the stream's connection is still open after the write timeout")
			}
		}
	})
}

// TestLimitsSlowSteadyReader: a slow client that keeps reading gets a
// large response whole, although taking it lasts well past
// --write-timeout: the timeout bounds how long the client takes nothing,
// not the whole transfer.
func TestLimitsSlowSteadyReader(t *testing.T) {
	t.Parallel()
	s := startLimitsApp(t, "-w", "1", "--write-timeout", "2")
	const size = 12 << 20
	c := dialWindow(t, s.Addr, 256<<10)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET /big?kb=%d HTTP/1.1\r\nHost: x\r\n\r\n", size>>10)
	br := bufio.NewReaderSize(c, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	var n int64
	for {
		m, err := io.CopyN(io.Discard, resp.Body, 256<<10)
		n += m
		if err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // at most ~2.5 MB/s
	}
	took := time.Since(start)
	if n != size {
		t.Errorf("a client reading steadily got %d of %d bytes in %v", n, size, took)
	}
	t.Logf("a client reading steadily got %d bytes in %v with --write-timeout 2", n, took.Round(time.Millisecond))
}

// spillFiles lists the request-body files in dir.
func spillFiles(dir string) []string {
	names, _ := filepath.Glob(filepath.Join(dir, "taipan-body-*"))
	return names
}

// TestLimitsClientDisconnect: a client that leaves half-way through its
// request body or through a streaming response frees everything: the
// partly written spill file is removed, the worker serves the next
// request, and the response iterable's close() runs.
func TestLimitsClientDisconnect(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	s := startLimitsApp(t, "-w", "1", "--body-memory-limit", "64k", "--tmp-dir", tmp)
	const rounds = 3

	t.Run("mid-request", func(t *testing.T) {
		k := dialKept(t, s, nil)
		before := appSeen(t, k)
		for i := range rounds {
			c := dialRaw(t, s.Addr)
			io.WriteString(c, "POST /spill HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n")
			c.Write(bytes.Repeat([]byte("b"), 1<<20))
			if !pollUntil(5*time.Second, func() bool { return len(spillFiles(tmp)) == 1 }) {
				t.Fatalf("round %d: no spill file for a body past --body-memory-limit: %v", i, spillFiles(tmp))
			}
			if fi, err := os.Stat(spillFiles(tmp)[0]); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("round %d: spill file mode %v (%v), want 0600", i, fi.Mode(), err)
			}
			c.Close()
			if !pollUntil(5*time.Second, func() bool { return len(spillFiles(tmp)) == 0 }) {
				t.Errorf("round %d: spill file left after the client left mid-body: %v", i, spillFiles(tmp))
			}
		}
		if after := appSeen(t, k); after != before {
			t.Errorf("the app saw %d of the abandoned requests", after-before)
		}
	})

	t.Run("mid-response", func(t *testing.T) {
		for i := range rounds {
			marker := filepath.Join(t.TempDir(), "closed")
			c := dialRaw(t, s.Addr)
			fmt.Fprintf(c, "POST /stream?marker=%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", url.QueryEscape(marker), 512<<10)
			c.Write(bytes.Repeat([]byte("b"), 512<<10))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			if _, err := io.CopyN(io.Discard, resp.Body, 64<<10); err != nil {
				t.Fatalf("round %d: reading the stream: %v", i, err)
			}
			if len(spillFiles(tmp)) != 1 {
				t.Errorf("round %d: the streaming request's body is not in a spill file: %v", i, spillFiles(tmp))
			}
			c.Close()
			if _, ok := waitMarker(marker, 5*time.Second); !ok {
				t.Errorf("round %d: close() not called after the client left mid-response", i)
			}
			if !pollUntil(5*time.Second, func() bool { return len(spillFiles(tmp)) == 0 }) {
				t.Errorf("round %d: spill file left after the client left mid-response: %v", i, spillFiles(tmp))
			}
			if code, body := httpGet(t, s, "/hello"); code != 200 || body != "hello" {
				t.Errorf("round %d: the one worker is not free after the client left: %d %q", i, code, body)
			}
		}
	})
}

// TestLimitsBodySpill: a body above --body-memory-limit reaches the app
// from a file in --tmp-dir that only taipan's user can read, and the file
// is gone when the response is finished, with Content-Length, chunked,
// and over HTTP/2.
func TestLimitsBodySpill(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	s := startLimitsApp(t, "-w", "1", "--body-memory-limit", "64k", "--tmp-dir", tmp, "--h2c")
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	clients := map[string]*http.Client{
		"http1": timeoutClient(testTimeout),
		"h2c":   {Timeout: testTimeout, Transport: &http.Transport{Protocols: &h2}},
	}
	for _, name := range []string{"http1", "h2c"} {
		for _, chunked := range []bool{false, true} {
			var r io.Reader = bytes.NewReader(body)
			if chunked {
				r = io.MultiReader(r) // unknown length
			}
			resp, err := clients[name].Post(s.URL+"/spill", "application/octet-stream", r)
			if err != nil {
				t.Fatalf("%s chunked=%v: %v", name, chunked, err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var path, mode string
			var uid, n int
			if _, err := fmt.Sscanf(string(out), "%s %s %d %d", &path, &mode, &uid, &n); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s chunked=%v: %d %q", name, chunked, resp.StatusCode, out)
			}
			if filepath.Dir(path) != tmp || mode != "600" || uid != os.Getuid() || n != len(body) {
				t.Errorf("%s chunked=%v: the app read %d bytes from %s, mode %s, owner %d; want %d bytes from a file in %s, mode 600, owner %d",
					name, chunked, n, path, mode, uid, len(body), tmp, os.Getuid())
			}
			if !pollUntil(3*time.Second, func() bool { _, err := os.Stat(path); return os.IsNotExist(err) }) {
				t.Errorf("%s chunked=%v: %s still there after the response", name, chunked, path)
			}
		}
	}
	if left := spillFiles(tmp); len(left) != 0 {
		t.Errorf("spill files left: %v", left)
	}
}

// An HTTP/2 client that grants no flow-control window (it does not read)
// has its stream reset at --write-timeout, as an HTTP/1.1 client that stops
// reading has its connection closed; the server goes on serving.
func TestLimitsH2StalledStream(t *testing.T) {
	t.Parallel()
	s := startLimitsApp(t, "-w", "1", "--h2c", "--write-timeout", "2")
	c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	// A window of zero: the server may send headers but no body bytes.
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", s.Addr}, {":path", "/big?kb=64"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no RST_STREAM for the stalled stream after %v: %v", time.Since(start), err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.DataFrame:
			if len(f.Data()) > 0 {
				t.Fatalf("the server sent %d body bytes with no window granted", len(f.Data()))
			}
		case *http2.RSTStreamFrame:
			if f.StreamID != 1 {
				t.Fatalf("RST_STREAM for stream %d", f.StreamID)
			}
			t.Logf("stream reset with %v after %v", f.ErrCode, time.Since(start).Round(time.Millisecond))
			if code, body := httpGet(t, s, "/hello"); code != 200 || body != "hello" {
				t.Fatalf("after the reset: %d %q", code, body)
			}
			return
		}
	}
}
