package proxyproto

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"taipan/internal/edge"
	"taipan/internal/logging"
)

// testTimeout bounds every wait of these tests.
const testTimeout = 5 * time.Second

// loopback trusts the usual test client address.
func loopback() []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} }

// server is a wrapped loopback listener whose accepted connections arrive
// on conns.
type server struct {
	ln    net.Listener
	addr  string
	conns chan net.Conn
	errs  chan error
}

func listen(t *testing.T, cfg Config) *server {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: NewListener(raw, cfg), addr: raw.Addr().String(), conns: make(chan net.Conn, 16), errs: make(chan error, 1)}
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				s.errs <- err
				return
			}
			s.conns <- c
		}
	}()
	t.Cleanup(func() {
		s.ln.Close()
		for {
			select {
			case c := <-s.conns:
				c.Close()
			default:
				return
			}
		}
	})
	return s
}

// accept waits for the next accepted connection.
func (s *server) accept(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case err := <-s.errs:
		t.Fatalf("Accept: %v", err)
	case <-time.After(testTimeout):
		t.Fatal("no connection accepted")
	}
	return nil
}

// noAccept checks that no connection is accepted for a moment.
func (s *server) noAccept(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Fatalf("accepted a connection from %v", c.RemoteAddr())
	case <-time.After(d):
	}
}

// dial connects to s from local (nil: any loopback address).
func dial(t *testing.T, s *server, local net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout, LocalAddr: local}
	c, err := d.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { c.Close() })
	return c
}

func write(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// readAll reads exactly n bytes from c.
func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// expectClosed checks that the server closes c within d, and returns how
// long it took.
func expectClosed(t *testing.T, c net.Conn, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed within %v: n=%d err=%v", d, n, err)
	}
	return time.Since(start)
}

func TestHeaders(t *testing.T) {
	s := listen(t, Config{Trusted: loopback()})
	tests := []struct {
		name         string
		header       []byte
		remote, locl string // "" for the real addresses
	}{
		{"v1 TCP4", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"), "192.0.2.1:56324", "198.51.100.2:443"},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n"), "[2001:db8::1]:56324", "[2001:db8::2]:443"},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), "", ""},
		{"v2 TCP4", v2(cmdProxy, famTCP4, addrs4("192.0.2.1", "198.51.100.2", 56324, 443)), "192.0.2.1:56324", "198.51.100.2:443"},
		{"v2 TCP6 with TLVs", v2(cmdProxy, famTCP6, addrs6("2001:db8::1", "2001:db8::2", 56324, 443), tlv(0x01, "h2"), tlv(0x02, "example.com")),
			"[2001:db8::1]:56324", "[2001:db8::2]:443"},
		{"v2 LOCAL", v2(cmdLocal, famUnspec, nil), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, s, nil)
			// The header and the first data in one write: one packet.
			write(t, c, append(append([]byte(nil), tt.header...), "hello"...))
			sc := s.accept(t)
			wantRemote, wantLocal := tt.remote, tt.locl
			if wantRemote == "" {
				wantRemote, wantLocal = c.LocalAddr().String(), c.RemoteAddr().String()
			}
			if got := sc.RemoteAddr(); got.String() != wantRemote || got.Network() != "tcp" {
				t.Errorf("RemoteAddr = %v, want %s", got, wantRemote)
			}
			if _, ok := sc.RemoteAddr().(*net.TCPAddr); !ok {
				t.Errorf("RemoteAddr is a %T", sc.RemoteAddr())
			}
			if got := sc.LocalAddr().String(); got != wantLocal {
				t.Errorf("LocalAddr = %s, want %s", got, wantLocal)
			}
			if got := readN(t, sc, 5); got != "hello" {
				t.Errorf("read %q after the header", got)
			}
			write(t, c, []byte(" world"))
			if got := readN(t, sc, 6); got != " world" {
				t.Errorf("read %q", got)
			}
		})
	}
}

func TestFragmentedHeader(t *testing.T) {
	s := listen(t, Config{Trusted: loopback()})
	for _, header := range [][]byte{
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"),
		v2(cmdProxy, famTCP4, addrs4("192.0.2.1", "198.51.100.2", 56324, 443), tlv(0x01, "h2")),
	} {
		c := dial(t, s, nil)
		for i := range header {
			write(t, c, header[i:i+1])
			time.Sleep(time.Millisecond)
		}
		write(t, c, []byte("x"))
		sc := s.accept(t)
		if got := sc.RemoteAddr().String(); got != "192.0.2.1:56324" {
			t.Errorf("RemoteAddr = %s", got)
		}
		if got := readN(t, sc, 1); got != "x" {
			t.Errorf("read %q", got)
		}
	}
}

func TestUntrustedPeerClosed(t *testing.T) {
	// Only 127.0.0.2 is trusted; the first client dials from 127.0.0.1.
	s := listen(t, Config{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	c := dial(t, s, nil)
	write(t, c, []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"))
	expectClosed(t, c, testTimeout)
	s.noAccept(t, 50*time.Millisecond)

	c = dial(t, s, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)})
	write(t, c, []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"))
	if got := s.accept(t).RemoteAddr().String(); got != "192.0.2.1:56324" {
		t.Errorf("trusted peer: RemoteAddr = %s", got)
	}

	// TrustAll takes anyone.
	s = listen(t, Config{TrustAll: true})
	c = dial(t, s, nil)
	write(t, c, []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"))
	s.accept(t)
}

func TestBadHeaderClosed(t *testing.T) {
	// Debug logging on, to run that path.
	s := listen(t, Config{Trusted: loopback(), Timeout: 10 * time.Second, Log: logging.New(io.Discard, logging.Debug)})
	for _, in := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",
		"PROXY UNKNOWN " + strings.Repeat("x", 120),
		"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c",
	} {
		c := dial(t, s, nil)
		write(t, c, []byte(in))
		// Closed at once, not after the 10s timeout.
		if d := expectClosed(t, c, testTimeout); d > 2*time.Second {
			t.Errorf("%q: closed after %v", in, d)
		}
	}
	// A client that closes mid-header.
	c := dial(t, s, nil)
	write(t, c, []byte("PROXY TCP4 192"))
	c.Close()
	s.noAccept(t, 50*time.Millisecond)
}

func TestTimeout(t *testing.T) {
	s := listen(t, Config{Trusted: loopback(), Timeout: 200 * time.Millisecond})
	silent := dial(t, s, nil)
	partial := dial(t, s, nil)
	write(t, partial, []byte("PROXY TCP4 "))
	start := time.Now()
	for _, c := range []net.Conn{silent, partial} {
		expectClosed(t, c, testTimeout)
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Errorf("closed after %v, before the timeout", d)
		}
	}
	s.noAccept(t, 10*time.Millisecond)
}

func TestSlowClientDoesNotBlockAccept(t *testing.T) {
	s := listen(t, Config{Trusted: loopback()})
	slow := dial(t, s, nil)
	write(t, slow, []byte("PROX"))
	time.Sleep(20 * time.Millisecond) // let the slow one be accepted first
	fast := dial(t, s, nil)
	write(t, fast, []byte("PROXY TCP4 192.0.2.9 198.51.100.2 1 2\r\n"))
	start := time.Now()
	sc := s.accept(t)
	if got := sc.RemoteAddr().String(); got != "192.0.2.9:1" {
		t.Errorf("accepted %s first", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("accept took %v", d)
	}
	// The slow one still gets through once its header is complete.
	write(t, slow, []byte("Y TCP4 192.0.2.8 198.51.100.2 1 2\r\n"))
	if got := s.accept(t).RemoteAddr().String(); got != "192.0.2.8:1" {
		t.Errorf("slow client: RemoteAddr = %s", got)
	}
}

func TestConnFeatures(t *testing.T) {
	s := listen(t, Config{Trusted: loopback()})
	c := dial(t, s, nil)
	write(t, c, []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nab"))
	sc := s.accept(t)

	// Deadlines: buffered bytes first, then a read that times out.
	if got := readN(t, sc, 2); got != "ab" {
		t.Fatalf("read %q", got)
	}
	sc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	var ne net.Error
	if _, err := sc.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("read past the deadline: %v", err)
	}
	sc.SetDeadline(time.Time{})
	if err := sc.SetWriteDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Errorf("SetWriteDeadline: %v", err)
	}

	// ReadFrom from a file (sendfile underneath).
	rf, ok := sc.(io.ReaderFrom)
	if !ok {
		t.Fatal("no ReaderFrom")
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("file contents"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := io.CopyN(sc, f, 4); n != 4 || err != nil {
		t.Fatalf("CopyN: %d %v", n, err)
	}
	if n, err := rf.ReadFrom(f); n != 9 || err != nil {
		t.Fatalf("ReadFrom: %d %v", n, err)
	}
	if got := readN(t, c, 13); got != "file contents" {
		t.Errorf("client read %q", got)
	}

	// syscall.Conn for socket options.
	if _, ok := sc.(syscall.Conn); !ok {
		t.Error("no syscall.Conn")
	}

	// CloseWrite: the client sees EOF but can still send.
	cw, ok := sc.(interface{ CloseWrite() error })
	if !ok {
		t.Fatal("no CloseWrite")
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("client read after CloseWrite: %d %v", n, err)
	}
	write(t, c, []byte("still"))
	if got := readN(t, sc, 5); got != "still" {
		t.Errorf("read after CloseWrite %q", got)
	}
}

func TestClose(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(raw, Config{Trusted: loopback()})
	if ln.Addr().String() != raw.Addr().String() {
		t.Errorf("Addr = %v", ln.Addr())
	}
	errc := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		errc <- err
	}()
	// A client in the middle of its header when the listener closes.
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("PROXY "))
	time.Sleep(20 * time.Millisecond)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Accept still blocked after Close")
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Accept after Close: %v", err)
	}
	// The pending connection is closed once its header is complete.
	c.Write([]byte("TCP4 192.0.2.1 198.51.100.2 1 2\r\n"))
	c.SetReadDeadline(time.Now().Add(testTimeout))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("pending connection not closed: %d %v", n, err)
	}
}

// TestEdgeServer runs the HTTP engine on a PROXY listener: it must see
// the header's client address as the request's.
func TestEdgeServer(t *testing.T) {
	srv := edge.NewServer(edge.Config{}, edge.HandlerFunc(func(w edge.ResponseWriter, r *edge.Request) {
		body := fmt.Sprintf("%s %s %s:%s", r.RemoteAddr, r.RemotePort, r.ServerName, r.ServerPort)
		w.WriteHead(&edge.ResponseHead{Code: 200, Status: "200 OK"}, []byte(body), true)
	}), logging.New(io.Discard, logging.Error))
	raw, err := srv.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(NewListener(raw, Config{Trusted: loopback()})) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	// A silent connection must not hold up the next one.
	silent, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	for _, header := range [][]byte{
		[]byte("PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n"),
		v2(cmdProxy, famTCP6, addrs6("2001:db8::1", "2001:db8::2", 56324, 443)),
	} {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(testTimeout))
		req := append(append([]byte(nil), header...), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"...)
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		// ServerName/ServerPort describe the listener, not the header.
		if want := "2001:db8::1 56324 127.0.0.1:" + raw.Addr().(*net.TCPAddr).AddrPort().String()[len("127.0.0.1:"):]; string(body) != want {
			t.Errorf("handler saw %q, want %q", body, want)
		}
	}
}
