package websocket

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// ioTimeout bounds every blocking step of a test, so a bug shows up as a
// failure rather than a hung test binary.
const ioTimeout = 10 * time.Second

// cframe is a frame as a client sends it. The zero values give a masked
// frame with the minimal length encoding.
type cframe struct {
	fin      bool
	rsv      byte // already shifted: 0x40, 0x20, 0x10
	op       Opcode
	payload  []byte
	unmasked bool
	lenBytes int    // 0: minimal encoding; 2 or 8: force that extended length
	length   uint64 // announced length when setLen, whatever the payload
	setLen   bool
}

func (f cframe) encode() []byte {
	b := []byte{byte(f.op) | f.rsv}
	if f.fin {
		b[0] |= 0x80
	}
	n := uint64(len(f.payload))
	if f.setLen {
		n = f.length
	}
	enc := f.lenBytes
	if enc == 0 {
		switch {
		case n > 0xffff:
			enc = 8
		case n > 125:
			enc = 2
		}
	}
	var maskBit byte = 0x80
	if f.unmasked {
		maskBit = 0
	}
	switch enc {
	case 2:
		b = append(b, maskBit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	case 8:
		b = append(b, maskBit|127)
		b = binary.BigEndian.AppendUint64(b, n)
	default:
		b = append(b, maskBit|byte(n))
	}
	if f.unmasked {
		return append(b, f.payload...)
	}
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], rand.Uint32())
	key[0] |= 1 // never the all-zero key, which would hide a missing unmask
	b = append(b, key[:]...)
	for i, c := range f.payload {
		b = append(b, c^key[i%4])
	}
	return b
}

func text(s string) cframe    { return cframe{fin: true, op: OpText, payload: []byte(s)} }
func binaryf(p []byte) cframe { return cframe{fin: true, op: OpBinary, payload: p} }
func ping(s string) cframe    { return cframe{fin: true, op: OpPing, payload: []byte(s)} }
func pong(s string) cframe    { return cframe{fin: true, op: OpPong, payload: []byte(s)} }

func closef(code int, reason string) cframe {
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return cframe{fin: true, op: OpClose, payload: append(p, reason...)}
}

func encodeAll(frames ...cframe) []byte {
	var b []byte
	for _, f := range frames {
		b = append(b, f.encode()...)
	}
	return b
}

// sframe is a frame as the server sent it.
type sframe struct {
	fin     bool
	rsv     byte
	op      Opcode
	payload []byte
	hdrLen  int
}

// readFrame reads one server frame, insisting on what RFC 6455 requires
// of a server: no mask, and the minimal length encoding.
func readFrame(r io.Reader) (sframe, error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:2]); err != nil {
		return sframe{}, err
	}
	f := sframe{fin: h[0]&0x80 != 0, rsv: h[0] & 0x70, op: Opcode(h[0] & 0x0f), hdrLen: 2}
	if h[1]&0x80 != 0 {
		return f, errors.New("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(r, h[:2]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(h[:2]))
		f.hdrLen += 2
		if n <= 125 {
			return f, fmt.Errorf("non-minimal 16-bit length %d", n)
		}
	case 127:
		if _, err := io.ReadFull(r, h[:8]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(h[:8])
		f.hdrLen += 8
		if n <= 0xffff {
			return f, fmt.Errorf("non-minimal 64-bit length %d", n)
		}
	}
	if n > 64<<20 {
		return f, fmt.Errorf("implausible frame length %d", n)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return f, err
	}
	return f, nil
}

// client is the test's end of the connection.
type client struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (srv, cli net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		ch <- result{c, err}
	}()
	cli, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		cli.Close()
		t.Fatal(r.err)
	}
	t.Cleanup(func() {
		r.c.Close()
		cli.Close()
	})
	return r.c, cli
}

// newPair returns a server Conn and the client end talking to it. The
// server's reads time out after ioTimeout.
func newPair(t *testing.T, cfg Config) (*Conn, *client) {
	t.Helper()
	srv, cli := tcpPair(t)
	c := NewConn(srv, bufio.NewReader(srv), cfg)
	if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	return c, &client{t: t, conn: cli, br: bufio.NewReader(cli)}
}

func (c *client) write(b []byte) error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	_, err := c.conn.Write(b)
	return err
}

// send writes frames with one Write. It must only be used for amounts the
// socket buffers hold, since the server may not be reading yet.
func (c *client) send(frames ...cframe) {
	c.t.Helper()
	if err := c.write(encodeAll(frames...)); err != nil {
		c.t.Fatalf("client write: %v", err)
	}
}

// sendAsync writes frames from another goroutine, for amounts that need
// the server to read concurrently. The result arrives on the channel.
func (c *client) sendAsync(frames ...cframe) <-chan error {
	b := encodeAll(frames...)
	ch := make(chan error, 1)
	go func() { ch <- c.write(b) }()
	return ch
}

func (c *client) next() (sframe, error) {
	if err := c.conn.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		return sframe{}, err
	}
	return readFrame(c.br)
}

func (c *client) mustNext() sframe {
	c.t.Helper()
	f, err := c.next()
	if err != nil {
		c.t.Fatalf("client read frame: %v", err)
	}
	if !f.fin || f.rsv != 0 {
		c.t.Fatalf("server frame fin=%v rsv=%#x, want fin and no rsv", f.fin, f.rsv)
	}
	return f
}

// expectClose reads the next frame, which must be a close frame with
// code (or an empty one when code is CloseNoStatus), and returns its
// reason.
func (c *client) expectClose(code int) string {
	c.t.Helper()
	f := c.mustNext()
	if f.op != OpClose {
		c.t.Fatalf("server sent opcode %#x %q, want close", byte(f.op), f.payload)
	}
	if code == CloseNoStatus {
		if len(f.payload) != 0 {
			c.t.Fatalf("close payload %q, want empty", f.payload)
		}
		return ""
	}
	if len(f.payload) < 2 {
		c.t.Fatalf("close payload %q, want code %d", f.payload, code)
	}
	if got := int(binary.BigEndian.Uint16(f.payload)); got != code {
		c.t.Fatalf("close code %d (reason %q), want %d", got, f.payload[2:], code)
	}
	if len(f.payload) > 125 || !utf8.Valid(f.payload[2:]) {
		c.t.Fatalf("close payload of %d bytes, reason valid UTF-8: %v", len(f.payload), utf8.Valid(f.payload[2:]))
	}
	return string(f.payload[2:])
}

// expectEOF checks that the server sent nothing more before closing.
func (c *client) expectEOF() {
	c.t.Helper()
	f, err := c.next()
	if err != io.EOF {
		c.t.Fatalf("after close: frame %+v, err %v; want EOF", f, err)
	}
}

func TestAcceptKey(t *testing.T) {
	// The example of RFC 6455 section 1.3.
	if got, want := AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; got != want {
		t.Errorf("AcceptKey = %q, want %q", got, want)
	}
	if AcceptKey("a") == AcceptKey("b") {
		t.Error("AcceptKey ignores its key")
	}
}

func TestValidKey(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"dGhlIHNhbXBsZSBub25jZQ==", true},
		{"AAAAAAAAAAAAAAAAAAAAAA==", true},
		{"/////////////////////w==", true},
		{"", false},
		{"dGhlIHNhbXBsZSBub25jZQ", false},       // no padding
		{"dGhlIHNhbXBsZSBub25jZR==", false},     // non-zero padding bits
		{"dGhlIHNhbXBsZSBub25jZQ=", false},      // short padding
		{"dGhlIHNhbXBsZSBub25jZQ===", false},    // 25 characters
		{"dGhlIHNhbXBsZSBub25jZ!==", false},     // not base64
		{"dGhlIHNhbXBsZSBub25j\nQ==", false},    // newline
		{"dGhlIHNhbXBsZSBub25jZS4=", false},     // 17 bytes
		{"dGhlIHNhbXBsZSBub25jZS4u", false},     // 18 bytes
		{"dGhlIHNhbXBsZSBub25jZQ==x", false},    // trailing garbage
		{"dGhlIHNhbXBsZSBub25jZQ== ", false},    // trailing space
		{"dGhlIHNhbXBsZSBub25jZQ-_", false},     // URL alphabet
		{"dGhlIHNhbXBsZSBub25j====", false},     // 15 bytes, over-padded
		{"dGhlIHNhbXBsZSBub25jZQ==\r\n", false}, // CRLF
	}
	for _, tt := range tests {
		if got := ValidKey(tt.key); got != tt.want {
			t.Errorf("ValidKey(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}

func TestValidCloseCode(t *testing.T) {
	valid := []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999}
	invalid := []int{-1, 0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535, 1 << 20}
	for _, c := range valid {
		if !ValidCloseCode(c) {
			t.Errorf("ValidCloseCode(%d) = false, want true", c)
		}
	}
	for _, c := range invalid {
		if ValidCloseCode(c) {
			t.Errorf("ValidCloseCode(%d) = true, want false", c)
		}
	}
}

// pattern returns n bytes that differ from one position to the next, so
// a misplaced or unmasked byte shows.
func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>8)
	}
	return p
}

func TestReadMessageSizes(t *testing.T) {
	sizes := []int{0, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 65537, 2 << 20}
	for _, op := range []Opcode{OpText, OpBinary} {
		for _, n := range sizes {
			t.Run(fmt.Sprintf("%s/%d", op.name(), n), func(t *testing.T) {
				c, cl := newPair(t, Config{})
				want := pattern(n)
				if op == OpText {
					want = bytes.Repeat([]byte("é"), n/2)
					if n%2 == 1 {
						want = append(want, 'x')
					}
				}
				errc := cl.sendAsync(cframe{fin: true, op: op, payload: want})
				gotOp, got, err := c.ReadMessage()
				if err != nil {
					t.Fatalf("ReadMessage: %v", err)
				}
				if gotOp != op || !bytes.Equal(got, want) {
					t.Fatalf("ReadMessage = %v, %d bytes (equal: %v); want %v, %d bytes", gotOp, len(got), bytes.Equal(got, want), op, len(want))
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func TestReadMessageNonMinimalLength(t *testing.T) {
	c, cl := newPair(t, Config{})
	cl.send(
		cframe{fin: true, op: OpBinary, payload: []byte("hello"), lenBytes: 2},
		cframe{fin: true, op: OpBinary, payload: []byte("world"), lenBytes: 8},
		cframe{fin: true, op: OpText, lenBytes: 8},
		cframe{fin: true, op: OpPing, payload: []byte("p"), lenBytes: 2},
		text("end"),
	)
	for _, want := range []string{"hello", "world", "", "end"} {
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("ReadMessage: %v", err)
		}
		if string(got) != want {
			t.Fatalf("ReadMessage = %q, want %q", got, want)
		}
	}
	if f := cl.mustNext(); f.op != OpPong || string(f.payload) != "p" {
		t.Fatalf("server sent %#x %q, want pong %q", byte(f.op), f.payload, "p")
	}
}

func TestReadMessageSequence(t *testing.T) {
	// Back-to-back messages in one segment, including one whose buffer
	// the next message reuses.
	c, cl := newPair(t, Config{})
	cl.send(text("first message"), binaryf([]byte{1, 2, 3}), text(""), text("four"))
	for _, want := range []struct {
		op Opcode
		p  string
	}{{OpText, "first message"}, {OpBinary, "\x01\x02\x03"}, {OpText, ""}, {OpText, "four"}} {
		op, p, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("ReadMessage: %v", err)
		}
		if op != want.op || string(p) != want.p {
			t.Fatalf("ReadMessage = %v %q, want %v %q", op, p, want.op, want.p)
		}
	}
}

func TestFragmentedWithControlFrames(t *testing.T) {
	c, cl := newPair(t, Config{})
	before := time.Now()
	cl.send(
		cframe{op: OpText, payload: []byte("Hel")},
		ping("abc"),
		cframe{op: OpContinuation, payload: []byte("lo w")},
		pong("zz"),
		cframe{op: OpContinuation, payload: []byte("or\xc3")}, // a rune split across fragments
		ping(""),
		cframe{fin: true, op: OpContinuation, payload: []byte("\xa9ld")},
		cframe{op: OpBinary, payload: []byte{0}},
		cframe{op: OpContinuation},
		cframe{fin: true, op: OpContinuation, payload: []byte{1, 2}},
	)
	op, p, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("ReadMessage: %v", err)
	}
	if op != OpText || string(p) != "Hello woréld" {
		t.Fatalf("ReadMessage = %v %q, want text %q", op, p, "Hello woréld")
	}
	op, p, err = c.ReadMessage()
	if err != nil {
		t.Fatalf("ReadMessage: %v", err)
	}
	if op != OpBinary || !bytes.Equal(p, []byte{0, 1, 2}) {
		t.Fatalf("ReadMessage = %v %q, want binary 00 01 02", op, p)
	}
	for _, want := range []string{"abc", ""} {
		f := cl.mustNext()
		if f.op != OpPong || string(f.payload) != want {
			t.Fatalf("server sent %#x %q, want pong %q", byte(f.op), f.payload, want)
		}
	}
	if lp := c.LastPong(); lp.Before(before) || lp.After(time.Now()) {
		t.Fatalf("LastPong = %v, want between %v and now", lp, before)
	}
}

func TestLastPongZero(t *testing.T) {
	c, cl := newPair(t, Config{})
	if !c.LastPong().IsZero() {
		t.Fatal("LastPong not zero before any pong")
	}
	cl.send(text("x"))
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if !c.LastPong().IsZero() {
		t.Fatal("LastPong set without a pong")
	}
}

func TestMaxControlPayload(t *testing.T) {
	// 125 bytes is the largest control payload, and it is echoed whole.
	c, cl := newPair(t, Config{})
	payload := strings.Repeat("p", 125)
	cl.send(ping(payload), text("x"))
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if f := cl.mustNext(); f.op != OpPong || string(f.payload) != payload {
		t.Fatalf("server sent %#x with %d bytes, want pong with 125", byte(f.op), len(f.payload))
	}
}

func TestProtocolErrors(t *testing.T) {
	tests := []struct {
		name   string
		frames []cframe
		msgs   int // whole messages the server reads before the violation
		code   int
	}{
		{"unmasked", []cframe{{fin: true, op: OpText, payload: []byte("hi"), unmasked: true}}, 0, CloseProtocolError},
		{"unmasked ping", []cframe{{fin: true, op: OpPing, unmasked: true}}, 0, CloseProtocolError},
		{"rsv1", []cframe{{fin: true, rsv: 0x40, op: OpText, payload: []byte("hi")}}, 0, CloseProtocolError},
		{"rsv2", []cframe{{fin: true, rsv: 0x20, op: OpBinary}}, 0, CloseProtocolError},
		{"rsv3", []cframe{{fin: true, rsv: 0x10, op: OpPing}}, 0, CloseProtocolError},
		{"rsv on continuation", []cframe{{op: OpText, payload: []byte("a")}, {fin: true, rsv: 0x40, op: OpContinuation}}, 0, CloseProtocolError},
		{"opcode 3", []cframe{{fin: true, op: 3}}, 0, CloseProtocolError},
		{"opcode 7", []cframe{{fin: true, op: 7, payload: []byte("x")}}, 0, CloseProtocolError},
		{"opcode 0xB", []cframe{{fin: true, op: 0xB}}, 0, CloseProtocolError},
		{"opcode 0xF", []cframe{{fin: true, op: 0xF}}, 0, CloseProtocolError},
		{"fragmented ping", []cframe{{op: OpPing, payload: []byte("a")}}, 0, CloseProtocolError},
		{"fragmented close", []cframe{{op: OpClose}}, 0, CloseProtocolError},
		{"fragmented pong inside message", []cframe{{op: OpText, payload: []byte("a")}, {op: OpPong}}, 0, CloseProtocolError},
		{"ping payload 126", []cframe{ping(strings.Repeat("x", 126))}, 0, CloseProtocolError},
		{"close payload 126", []cframe{closef(CloseNormal, strings.Repeat("x", 124))}, 0, CloseProtocolError},
		{"pong payload 126, 64-bit length", []cframe{{fin: true, op: OpPong, payload: make([]byte, 126), lenBytes: 8}}, 0, CloseProtocolError},
		{"continuation without start", []cframe{{fin: true, op: OpContinuation, payload: []byte("x")}}, 0, CloseProtocolError},
		{"continuation after a whole message", []cframe{text("a"), {fin: true, op: OpContinuation}}, 1, CloseProtocolError},
		{"text during fragmented text", []cframe{{op: OpText, payload: []byte("a")}, text("b")}, 0, CloseProtocolError},
		{"binary during fragmented text", []cframe{{op: OpText, payload: []byte("a")}, {op: OpContinuation}, binaryf(nil)}, 0, CloseProtocolError},
		{"length msb set", []cframe{{fin: true, op: OpBinary, setLen: true, length: 1 << 63, lenBytes: 8}}, 0, CloseProtocolError},
		{"length all ones", []cframe{{fin: true, op: OpBinary, setLen: true, length: 1<<64 - 1, lenBytes: 8}}, 0, CloseProtocolError},
		{"invalid UTF-8", []cframe{text("ok \xff")}, 0, CloseInvalidPayload},
		{"surrogate in UTF-8", []cframe{text("\xed\xa0\x80")}, 0, CloseInvalidPayload},
		{"truncated rune at end", []cframe{text("a\xe2\x82")}, 0, CloseInvalidPayload},
		{"invalid UTF-8 across fragments", []cframe{{op: OpText, payload: []byte("a\xe2\x82")}, {fin: true, op: OpContinuation, payload: []byte("(")}}, 0, CloseInvalidPayload},
		{"invalid UTF-8 after a good message", []cframe{text("good"), text("\xc0\xaf")}, 1, CloseInvalidPayload},
		{"close with 1-byte payload", []cframe{{fin: true, op: OpClose, payload: []byte{3}}}, 0, CloseProtocolError},
		{"close code 1005", []cframe{closef(CloseNoStatus, "")}, 0, CloseProtocolError},
		{"close code 1006", []cframe{closef(CloseAbnormal, "")}, 0, CloseProtocolError},
		{"close code 1004", []cframe{closef(1004, "")}, 0, CloseProtocolError},
		{"close code 1015", []cframe{closef(1015, "")}, 0, CloseProtocolError},
		{"close code 999", []cframe{closef(999, "x")}, 0, CloseProtocolError},
		{"close code 0", []cframe{closef(0, "")}, 0, CloseProtocolError},
		{"close code 2999", []cframe{closef(2999, "")}, 0, CloseProtocolError},
		{"close code 5000", []cframe{closef(5000, "")}, 0, CloseProtocolError},
		{"close reason not UTF-8", []cframe{closef(CloseNormal, "bye \xff")}, 0, CloseInvalidPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, cl := newPair(t, Config{})
			cl.send(tt.frames...)
			for range tt.msgs {
				if _, _, err := c.ReadMessage(); err != nil {
					t.Fatalf("ReadMessage before the violation: %v", err)
				}
			}
			op, p, err := c.ReadMessage()
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("ReadMessage = %v %q, %v; want *ProtocolError", op, p, err)
			}
			if pe.Code != tt.code || pe.Msg == "" {
				t.Fatalf("ProtocolError %+v, want code %d and a message", pe, tt.code)
			}
			if !c.CloseSent() {
				t.Error("CloseSent false after a protocol error")
			}
			if reason := cl.expectClose(tt.code); reason != pe.Msg {
				t.Errorf("close reason %q, want %q", reason, pe.Msg)
			}
			// The error is final, and nothing else was sent.
			if _, _, err2 := c.ReadMessage(); err2 != err {
				t.Errorf("second ReadMessage = %v, want the same %v", err2, err)
			}
			c.Close()
			cl.expectEOF()
		})
	}
}

// TestViolationAnsweredEarly checks that violations visible in the first
// two header bytes are answered without waiting for the rest of the frame.
func TestViolationAnsweredEarly(t *testing.T) {
	c, cl := newPair(t, Config{})
	b := cframe{fin: true, op: OpText, payload: []byte("x"), unmasked: true}.encode()
	if err := cl.write(b[:2]); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.ReadMessage()
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Code != CloseProtocolError {
		t.Fatalf("ReadMessage error %v, want ProtocolError 1002", err)
	}
	cl.expectClose(CloseProtocolError)
}

func TestMessageTooBig(t *testing.T) {
	const limit = 1024
	tests := []struct {
		name     string
		cfg      Config
		frames   []cframe
		bufBelow int // the server's message buffer must stay smaller
	}{
		{
			// Only the header is sent: a server that tried to read the
			// payload would time out instead of answering 1009.
			name:     "single frame header",
			cfg:      Config{MaxMessageSize: limit},
			frames:   []cframe{{fin: true, op: OpBinary, setLen: true, length: 1 << 30}},
			bufBelow: 1,
		},
		{
			name:     "single frame one over",
			cfg:      Config{MaxMessageSize: limit},
			frames:   []cframe{{fin: true, op: OpText, setLen: true, length: limit + 1}},
			bufBelow: 1,
		},
		{
			name:     "default limit 16 MiB",
			cfg:      Config{},
			frames:   []cframe{{fin: true, op: OpBinary, setLen: true, length: 16<<20 + 1}},
			bufBelow: 1,
		},
		{
			name: "fragmented total",
			cfg:  Config{MaxMessageSize: limit},
			frames: []cframe{
				{op: OpBinary, payload: pattern(600)},
				ping("in between"),
				{op: OpContinuation, setLen: true, length: 600},
			},
			bufBelow: 4096 + 1,
		},
		{
			name: "fragmented huge continuation",
			cfg:  Config{MaxMessageSize: limit},
			frames: []cframe{
				{op: OpText, payload: []byte("abc")},
				{fin: true, op: OpContinuation, setLen: true, length: 1 << 40},
			},
			bufBelow: 4096 + 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, cl := newPair(t, tt.cfg)
			if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
				t.Fatal(err)
			}
			cl.send(tt.frames...)
			_, _, err := c.ReadMessage()
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Code != CloseMessageTooBig {
				t.Fatalf("ReadMessage error %v, want ProtocolError 1009", err)
			}
			if cap(c.msg) >= tt.bufBelow {
				t.Errorf("message buffer grew to %d bytes, want < %d", cap(c.msg), tt.bufBelow)
			}
			for {
				f := cl.mustNext()
				if f.op == OpPong {
					continue
				}
				if f.op != OpClose || len(f.payload) < 2 || binary.BigEndian.Uint16(f.payload) != CloseMessageTooBig {
					t.Fatalf("server sent %#x %q, want close 1009", byte(f.op), f.payload)
				}
				break
			}
		})
	}
}

// TestAnnouncedLengthNotAllocated checks that the message buffer grows
// with the bytes that arrive, not with the length a header announces.
func TestAnnouncedLengthNotAllocated(t *testing.T) {
	c, cl := newPair(t, Config{})
	b := cframe{fin: true, op: OpBinary, setLen: true, length: 15 << 20}.encode()
	if err := cl.write(append(b, pattern(100)...)); err != nil {
		t.Fatal(err)
	}
	if err := cl.conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadMessage(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadMessage error %v, want io.ErrUnexpectedEOF", err)
	}
	if cap(c.msg) > 64<<10 {
		t.Fatalf("message buffer grew to %d bytes for 100 received", cap(c.msg))
	}
}

func TestMessageAtLimit(t *testing.T) {
	const limit = 1024
	c, cl := newPair(t, Config{MaxMessageSize: limit})
	cl.send(
		binaryf(pattern(limit)),
		cframe{op: OpBinary, payload: pattern(1000)},
		cframe{fin: true, op: OpContinuation, payload: pattern(24)},
	)
	for _, want := range [][]byte{pattern(limit), append(pattern(1000), pattern(24)...)} {
		_, p, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("ReadMessage: %v", err)
		}
		if !bytes.Equal(p, want) {
			t.Fatalf("ReadMessage returned %d bytes, not the %d sent", len(p), len(want))
		}
	}
}

func TestPeerClose(t *testing.T) {
	tests := []struct {
		name   string
		frame  cframe
		code   int
		reason string
	}{
		{"normal with reason", closef(CloseNormal, "bye now"), CloseNormal, "bye now"},
		{"going away", closef(CloseGoingAway, ""), CloseGoingAway, ""},
		{"application code", closef(4999, "app"), 4999, "app"},
		{"library code", closef(3000, "é"), 3000, "é"},
		{"max reason", closef(CloseNormal, strings.Repeat("r", 123)), CloseNormal, strings.Repeat("r", 123)},
		{"empty", cframe{fin: true, op: OpClose}, CloseNoStatus, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, cl := newPair(t, Config{})
			cl.send(tt.frame)
			_, _, err := c.ReadMessage()
			var ce *CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("ReadMessage error %v, want *CloseError", err)
			}
			if ce.Code != tt.code || ce.Reason != tt.reason {
				t.Fatalf("CloseError %+v, want code %d reason %q", ce, tt.code, tt.reason)
			}
			if !c.CloseSent() {
				t.Error("CloseSent false after echoing the close")
			}
			// The echo carries the code only.
			if reason := cl.expectClose(tt.code); reason != "" {
				t.Errorf("echo reason %q, want none", reason)
			}
			if _, _, err2 := c.ReadMessage(); err2 != err {
				t.Errorf("second ReadMessage = %v, want the same %v", err2, err)
			}
			if err := c.WriteMessage(OpText, []byte("late")); err != ErrCloseSent {
				t.Errorf("WriteMessage after close = %v, want ErrCloseSent", err)
			}
			c.Close()
			cl.expectEOF()
		})
	}
}

// TestServerInitiatedClose has the server close first: the peer's close
// ends the handshake without a second close frame, and a ping that
// arrives in between goes unanswered.
func TestServerInitiatedClose(t *testing.T) {
	c, cl := newPair(t, Config{})
	if err := c.WriteClose(CloseGoingAway, "shutting down"); err != nil {
		t.Fatal(err)
	}
	if reason := cl.expectClose(CloseGoingAway); reason != "shutting down" {
		t.Fatalf("close reason %q", reason)
	}
	// Data that was in flight is still delivered (RFC 6455 section 1.4).
	cl.send(text("in flight"), ping("late"), closef(CloseNormal, ""))
	op, p, err := c.ReadMessage()
	if err != nil || op != OpText || string(p) != "in flight" {
		t.Fatalf("ReadMessage = %v %q %v, want the in-flight text", op, p, err)
	}
	_, _, err = c.ReadMessage()
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != CloseNormal {
		t.Fatalf("ReadMessage error %v, want CloseError 1000", err)
	}
	c.Close()
	cl.expectEOF()
}

func TestWriteCloseOnce(t *testing.T) {
	c, cl := newPair(t, Config{})
	if c.CloseSent() {
		t.Fatal("CloseSent before any close")
	}
	if err := c.WriteClose(CloseNormal, "first"); err != nil {
		t.Fatal(err)
	}
	if !c.CloseSent() {
		t.Fatal("CloseSent false after WriteClose")
	}
	if err := c.WriteClose(CloseGoingAway, "second"); err != nil {
		t.Fatalf("second WriteClose = %v, want nil", err)
	}
	if err := c.WriteMessage(OpText, []byte("x")); err != ErrCloseSent {
		t.Fatalf("WriteMessage after close = %v, want ErrCloseSent", err)
	}
	if err := c.WriteMessage(OpBinary, nil); !errors.Is(err, ErrCloseSent) {
		t.Fatalf("WriteMessage after close = %v, want ErrCloseSent", err)
	}
	if err := c.Ping([]byte("x")); err != ErrCloseSent {
		t.Fatalf("Ping after close = %v, want ErrCloseSent", err)
	}
	if reason := cl.expectClose(CloseNormal); reason != "first" {
		t.Fatalf("close reason %q, want %q", reason, "first")
	}
	c.Close()
	cl.expectEOF()
}

func TestWriteCloseEmpty(t *testing.T) {
	for _, code := range []int{0, CloseNoStatus} {
		c, cl := newPair(t, Config{})
		if err := c.WriteClose(code, "dropped: no code to carry it"); err != nil {
			t.Fatal(err)
		}
		cl.expectClose(CloseNoStatus)
	}
}

func TestWriteCloseInvalidCode(t *testing.T) {
	c, cl := newPair(t, Config{})
	for _, code := range []int{CloseAbnormal, 1004, 1015, 999, 5000, -1} {
		if err := c.WriteClose(code, ""); err == nil {
			t.Errorf("WriteClose(%d) = nil, want an error", code)
		}
	}
	if c.CloseSent() {
		t.Fatal("an invalid WriteClose counted as sent")
	}
	if err := c.WriteClose(CloseInternalError, ""); err != nil {
		t.Fatal(err)
	}
	cl.expectClose(CloseInternalError)
}

func TestWriteCloseReasonTruncation(t *testing.T) {
	tests := []struct {
		name   string
		reason string
		want   string
	}{
		{"fits", strings.Repeat("a", 123), strings.Repeat("a", 123)},
		{"ascii", strings.Repeat("a", 200), strings.Repeat("a", 123)},
		{"two-byte rune across the limit", strings.Repeat("a", 122) + "é", strings.Repeat("a", 122)},
		{"three-byte runes", strings.Repeat("€", 50), strings.Repeat("€", 41)},
		{"four-byte rune across the limit", strings.Repeat("a", 121) + "😀", strings.Repeat("a", 121)},
		{"two-byte runes", strings.Repeat("é", 70), strings.Repeat("é", 61)},
		{"invalid UTF-8 replaced", "bad \xff", "bad \uFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, cl := newPair(t, Config{})
			if err := c.WriteClose(CloseGoingAway, tt.reason); err != nil {
				t.Fatal(err)
			}
			if got := cl.expectClose(CloseGoingAway); got != tt.want {
				t.Fatalf("reason %q (%d bytes), want %q (%d bytes)", got, len(got), tt.want, len(tt.want))
			}
		})
	}
}

func TestWriteMessage(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 65535, 65536, copyLimit - 1, copyLimit, copyLimit + 1, 2 << 20}
	c, cl := newPair(t, Config{})
	for _, op := range []Opcode{OpText, OpBinary} {
		for _, n := range sizes {
			want := pattern(n)
			errc := make(chan error, 1)
			go func() { errc <- c.WriteMessage(op, want) }()
			f := cl.mustNext()
			if err := <-errc; err != nil {
				t.Fatalf("WriteMessage(%v, %d bytes): %v", op, n, err)
			}
			if f.op != op || !bytes.Equal(f.payload, want) {
				t.Fatalf("client got %v with %d bytes (equal: %v), want %v with %d", f.op, len(f.payload), bytes.Equal(f.payload, want), op, n)
			}
			wantHdr := 2
			switch {
			case n > 65535:
				wantHdr = 10
			case n > 125:
				wantHdr = 4
			}
			if f.hdrLen != wantHdr {
				t.Fatalf("%d-byte payload sent with a %d-byte header, want %d", n, f.hdrLen, wantHdr)
			}
		}
	}
	for _, op := range []Opcode{OpContinuation, OpClose, OpPing, OpPong, 3} {
		if err := c.WriteMessage(op, nil); err == nil {
			t.Errorf("WriteMessage(%#x) = nil, want an error", byte(op))
		}
	}
}

func TestPing(t *testing.T) {
	c, cl := newPair(t, Config{})
	if err := c.Ping(make([]byte, 126)); err == nil {
		t.Fatal("Ping with 126 bytes = nil, want an error")
	}
	if err := c.Ping([]byte("are you there")); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"are you there", ""} {
		if f := cl.mustNext(); f.op != OpPing || string(f.payload) != want {
			t.Fatalf("client got %#x %q, want ping %q", byte(f.op), f.payload, want)
		}
	}
}

func TestEOF(t *testing.T) {
	full := cframe{fin: true, op: OpBinary, payload: pattern(10)}.encode()
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"between messages", nil, io.EOF},
		{"after a whole message", text("x").encode(), io.EOF},
		{"one header byte", full[:1], io.ErrUnexpectedEOF},
		{"no masking key", full[:2], io.ErrUnexpectedEOF},
		{"half the masking key", full[:4], io.ErrUnexpectedEOF},
		{"mid extended length", cframe{fin: true, op: OpBinary, payload: pattern(300)}.encode()[:3], io.ErrUnexpectedEOF},
		{"mid payload", full[:len(full)-7], io.ErrUnexpectedEOF},
		{"no payload", full[:6], io.ErrUnexpectedEOF},
		{"mid control payload", ping("abcdef").encode()[:8], io.ErrUnexpectedEOF},
		{"between fragments", cframe{op: OpText, payload: []byte("a")}.encode(), io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, cl := newPair(t, Config{})
			if err := cl.write(tt.data); err != nil {
				t.Fatal(err)
			}
			if err := cl.conn.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			var err error
			for err == nil {
				_, _, err = c.ReadMessage()
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadMessage error %v, want errors.Is %v", err, tt.want)
			}
			if tt.want == io.ErrUnexpectedEOF && errors.Is(err, io.EOF) {
				t.Fatalf("ReadMessage error %v matches io.EOF inside a frame", err)
			}
			if c.CloseSent() {
				t.Error("an I/O error sent a close frame")
			}
		})
	}
}

func TestReadDeadline(t *testing.T) {
	c, _ := newPair(t, Config{})
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.ReadMessage()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadMessage error %v, want os.ErrDeadlineExceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("ReadMessage error %v is not a net.Error timeout", err)
	}
	if _, _, err2 := c.ReadMessage(); err2 != err {
		t.Fatalf("second ReadMessage = %v, want the same %v", err2, err)
	}
}

func TestWriteTimeout(t *testing.T) {
	c, _ := newPair(t, Config{WriteTimeout: 100 * time.Millisecond})
	// The client never reads: once the socket buffers are full the write
	// must give up after WriteTimeout.
	big := make([]byte, 8<<20)
	start := time.Now()
	var err error
	for i := 0; i < 64 && err == nil; i++ {
		err = c.WriteMessage(OpBinary, big)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WriteMessage error %v, want os.ErrDeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("writes took %v to time out", d)
	}
	// A timed-out write may have left half a frame: later writes fail too.
	if err2 := c.WriteMessage(OpText, []byte("x")); err2 == nil {
		t.Fatal("WriteMessage after a failed write = nil, want an error")
	}
}

// TestBufferedBeforeNewConn has frames arrive in the same segment as the
// upgrade request, so the HTTP layer's reader holds them before the Conn
// exists.
func TestBufferedBeforeNewConn(t *testing.T) {
	srv, cli := tcpPair(t)
	cl := &client{t: t, conn: cli, br: bufio.NewReader(cli)}
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	frames := encodeAll(text("early"), ping("p1"), cframe{op: OpBinary, payload: []byte("frag")})
	req := "GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if err := cl.write(append([]byte(req), frames...)); err != nil {
		t.Fatal(err)
	}

	if err := srv.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(srv)
	hreq, err := http.ReadRequest(br)
	if err != nil {
		t.Fatal(err)
	}
	if !ValidKey(hreq.Header.Get("Sec-WebSocket-Key")) {
		t.Fatalf("ValidKey(%q) = false", hreq.Header.Get("Sec-WebSocket-Key"))
	}
	// Peek makes sure the frames are in br, not still in the socket.
	if _, err := br.Peek(len(frames)); err != nil {
		t.Fatal(err)
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + AcceptKey(hreq.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"
	if _, err := srv.Write([]byte(resp)); err != nil {
		t.Fatal(err)
	}
	c := NewConn(srv, br, Config{})

	hresp, err := http.ReadResponse(cl.br, hreq)
	if err != nil {
		t.Fatal(err)
	}
	if hresp.StatusCode != http.StatusSwitchingProtocols || hresp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake response %v %v", hresp.Status, hresp.Header)
	}

	// The rest of the fragmented message comes later, from the socket.
	cl.send(cframe{fin: true, op: OpContinuation, payload: []byte("ment")})
	for _, want := range []struct {
		op Opcode
		p  string
	}{{OpText, "early"}, {OpBinary, "fragment"}} {
		op, p, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("ReadMessage: %v", err)
		}
		if op != want.op || string(p) != want.p {
			t.Fatalf("ReadMessage = %v %q, want %v %q", op, p, want.op, want.p)
		}
	}
	if f := cl.mustNext(); f.op != OpPong || string(f.payload) != "p1" {
		t.Fatalf("client got %#x %q, want pong %q", byte(f.op), f.payload, "p1")
	}
}

// TestConcurrentWriters has several goroutines write messages, small ones
// and ones big enough for the writev path, while ReadMessage answers the
// client's pings; every frame the client sees must be whole, and each
// writer's messages must arrive intact and in order.
func TestConcurrentWriters(t *testing.T) {
	const (
		writers   = 8
		perWriter = 100
		pings     = 100
	)
	c, cl := newPair(t, Config{})

	readDone := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				readDone <- err
				return
			}
		}
	}()

	// payloadFor is what writer w sends as its message seq.
	payloadFor := func(w, seq int) []byte {
		n := 5 + (seq*4099+w*131)%(3*copyLimit)
		if seq%10 == 0 {
			n += 100 << 10
		}
		p := make([]byte, n)
		p[0] = byte(w)
		binary.BigEndian.PutUint32(p[1:], uint32(seq))
		for i := 5; i < n; i++ {
			p[i] = byte(i + w + seq)
		}
		return p
	}

	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	for w := range writers {
		wg.Go(func() {
			for seq := range perWriter {
				if err := c.WriteMessage(OpBinary, payloadFor(w, seq)); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range pings {
			if err := cl.write(ping(fmt.Sprintf("ping %d", i)).encode()); err != nil {
				errs <- fmt.Errorf("client ping: %w", err)
				return
			}
		}
	})

	next := make([]int, writers)
	pongs := 0
	for received := 0; received < writers*perWriter || pongs < pings; {
		f := cl.mustNext()
		switch f.op {
		case OpPong:
			if want := fmt.Sprintf("ping %d", pongs); string(f.payload) != want {
				t.Fatalf("pong %q, want %q", f.payload, want)
			}
			pongs++
		case OpBinary:
			if len(f.payload) < 5 || int(f.payload[0]) >= writers {
				t.Fatalf("malformed message of %d bytes", len(f.payload))
			}
			w := int(f.payload[0])
			seq := int(binary.BigEndian.Uint32(f.payload[1:]))
			if seq != next[w] {
				t.Fatalf("writer %d: message %d arrived, want %d", w, seq, next[w])
			}
			if !bytes.Equal(f.payload, payloadFor(w, seq)) {
				t.Fatalf("writer %d message %d: payload corrupted", w, seq)
			}
			next[w]++
			received++
		default:
			t.Fatalf("unexpected frame %#x", byte(f.op))
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	cl.send(closef(CloseNormal, ""))
	var ce *CloseError
	if err := <-readDone; !errors.As(err, &ce) || ce.Code != CloseNormal {
		t.Fatalf("reader ended with %v, want CloseError 1000", err)
	}
	cl.expectClose(CloseNormal)
}

// TestReadMessageAllocs checks that reading messages, including fragments
// and answered pings, does not allocate once the buffer has grown.
func TestReadMessageAllocs(t *testing.T) {
	const runs = 100
	c, cl := newPair(t, Config{})
	group := encodeAll(
		ping("ping"),
		cframe{op: OpText, payload: bytes.Repeat([]byte("b"), 50)},
		pong("x"),
		cframe{fin: true, op: OpContinuation, payload: bytes.Repeat([]byte("a"), 3000)},
	)
	// AllocsPerRun calls the function once more to warm up.
	all := bytes.Repeat(group, runs+1)
	errc := make(chan error, 1)
	go func() { errc <- cl.write(all) }()
	var err error
	allocs := testing.AllocsPerRun(runs, func() {
		var p []byte
		if _, p, err = c.ReadMessage(); err == nil && len(p) != 3050 {
			err = fmt.Errorf("message of %d bytes, want 3050", len(p))
		}
	})
	if err != nil {
		t.Fatalf("ReadMessage: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if allocs != 0 {
		t.Errorf("ReadMessage allocates %v times per message, want 0", allocs)
	}
}
