package websocket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// unixPair returns both ends of a connected unix stream socket pair: a
// real connection, and cheaper to make than a TCP one for every fuzz
// input.
func unixPair(t testing.TB) (srv, cli *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "ws")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
	}
	return conns[0], conns[1]
}

// How a client's byte stream ends, read as RFC 6455 has it.
const (
	endEOF       = iota // cleanly, between messages
	endTruncated        // inside a frame or a fragmented message
	endPeerClose        // with a valid close frame
	endViolation        // with a protocol violation
)

// outcome is what reading a client's byte stream must give: the data
// messages in order, the payload of every ping before the end (each owed
// a pong), and how it ends, with the close code (the peer's, or the one a
// violation calls for) and the peer's close reason.
type outcome struct {
	msgs   []message
	pings  [][]byte
	end    int
	code   int
	reason string
}

type message struct {
	op      Opcode
	payload []byte
}

// readClient reads a client's byte stream from the text of RFC 6455
// section 5: a server with no extension negotiated and a message size
// limit of max.
func readClient(b []byte, max int64) outcome {
	var o outcome
	violation := func(code int) outcome {
		o.end, o.code = endViolation, code
		return o
	}
	var msg []byte
	msgOp := OpContinuation // none in progress
	for {
		if len(b) < 2 {
			if len(b) == 0 && msgOp == OpContinuation {
				o.end = endEOF
			} else {
				o.end = endTruncated
			}
			return o
		}
		fin, rsv, op := b[0]&0x80 != 0, b[0]&0x70, Opcode(b[0]&0x0f)
		masked, length := b[1]&0x80 != 0, uint64(b[1]&0x7f)
		control := op >= 0x8
		switch {
		case rsv != 0: // section 5.2: no extension, so RSV1-3 must be 0
			return violation(CloseProtocolError)
		case op == OpText || op == OpBinary:
			if msgOp != OpContinuation { // 5.4: no interleaving
				return violation(CloseProtocolError)
			}
		case op == OpContinuation:
			if msgOp == OpContinuation {
				return violation(CloseProtocolError)
			}
		case op == OpClose || op == OpPing || op == OpPong:
			if !fin { // 5.5: control frames are not fragmented
				return violation(CloseProtocolError)
			}
		default: // 5.2: reserved opcodes
			return violation(CloseProtocolError)
		}
		if !masked { // 5.1: a client masks every frame
			return violation(CloseProtocolError)
		}
		ext := map[uint64]int{126: 2, 127: 8}[length]
		if len(b) < 2+ext+4 {
			o.end = endTruncated
			return o
		}
		switch ext {
		case 2:
			length = uint64(binary.BigEndian.Uint16(b[2:]))
		case 8:
			length = binary.BigEndian.Uint64(b[2:])
			if length>>63 != 0 {
				return violation(CloseProtocolError)
			}
		}
		if control && length > 125 { // 5.5
			return violation(CloseProtocolError)
		}
		key := b[2+ext : 2+ext+4]
		b = b[2+ext+4:]
		if !control {
			if msgOp == OpContinuation {
				msgOp = op
			}
			if int64(length) > max-int64(len(msg)) {
				return violation(CloseMessageTooBig)
			}
		}
		if uint64(len(b)) < length {
			o.end = endTruncated
			return o
		}
		p := make([]byte, length)
		for i := range p {
			p[i] = b[i] ^ key[i%4]
		}
		b = b[length:]
		switch op {
		case OpPing:
			o.pings = append(o.pings, p)
		case OpPong:
		case OpClose: // 5.5.1, 7.4
			switch {
			case len(p) == 0:
				o.end, o.code = endPeerClose, CloseNoStatus
				return o
			case len(p) == 1:
				return violation(CloseProtocolError)
			}
			code := int(binary.BigEndian.Uint16(p))
			if !ValidCloseCode(code) {
				return violation(CloseProtocolError)
			}
			if !utf8.Valid(p[2:]) {
				return violation(CloseInvalidPayload)
			}
			o.end, o.code, o.reason = endPeerClose, code, string(p[2:])
			return o
		default:
			msg = append(msg, p...)
			if fin {
				if msgOp == OpText && !utf8.Valid(msg) {
					return violation(CloseInvalidPayload)
				}
				o.msgs = append(o.msgs, message{msgOp, msg})
				msg, msgOp = nil, OpContinuation
			}
		}
	}
}

// serverFrames reads what the server sent until it closed.
func serverFrames(out []byte) ([]sframe, error) {
	var frames []sframe
	r := bytes.NewReader(out)
	for r.Len() > 0 {
		f, err := readFrame(r)
		if err != nil {
			return frames, fmt.Errorf("after %d frames: %w", len(frames), err)
		}
		frames = append(frames, f)
	}
	return frames, nil
}

// FuzzReadMessage sends an arbitrary byte stream as a client to a Conn
// over a real socket and checks everything ReadMessage does against an
// independent reading of RFC 6455: the messages it returns, in order; how
// and with which error it ends (clean EOF, truncation, the peer's close,
// or a violation: reserved bits, reserved or misplaced opcodes, unmasked
// frames, fragmented or over-125-byte control frames, an oversized
// message, invalid UTF-8 or close codes); that the error sticks; and that
// the server's frames are a pong for every ping, then the close frame the
// ending calls for, all unmasked with minimal lengths. Its message buffer
// must grow with the bytes that arrive, not with lengths frames announce.
func FuzzReadMessage(f *testing.F) {
	f.Add(encodeAll(text("hello"), binaryf(pattern(300))), uint16(1024))
	f.Add(encodeAll(cframe{op: OpText, payload: []byte("frag")}, ping("p"), cframe{fin: true, op: OpContinuation, payload: []byte("ment")}, closef(1000, "bye")), uint16(100))
	f.Add(encodeAll(cframe{fin: true, op: OpBinary, setLen: true, length: 1 << 40}), uint16(0xffff))
	f.Add(encodeAll(cframe{fin: true, op: OpPing, payload: pattern(126)}), uint16(10))
	f.Add(encodeAll(cframe{fin: true, op: OpText, rsv: 0x40, payload: []byte("x")}), uint16(10))
	f.Add(encodeAll(cframe{fin: true, op: 0x3}), uint16(10))
	f.Add(encodeAll(cframe{fin: true, op: OpText, unmasked: true, payload: []byte("x")}), uint16(10))
	f.Add(encodeAll(text("\xff"), closef(1005, "")), uint16(10))
	f.Add(encodeAll(cframe{fin: true, op: OpBinary, lenBytes: 8, payload: []byte("long form")}, pong("")), uint16(10))
	f.Fuzz(func(t *testing.T, stream []byte, limit uint16) {
		maxSize := int64(limit) + 1
		want := readClient(stream, maxSize)

		srv, cli := unixPair(t)
		defer cli.Close()
		deadline := time.Now().Add(10 * time.Second)
		srv.SetReadDeadline(deadline)
		cli.SetDeadline(deadline)
		go func() { // the server may stop reading: a write error ends this
			if _, err := cli.Write(stream); err == nil {
				cli.CloseWrite()
			}
		}()
		type readResult struct {
			out []byte
			err error
		}
		read := make(chan readResult, 1)
		go func() {
			out, err := io.ReadAll(cli)
			read <- readResult{out, err}
		}()

		c := NewConn(srv, nil, Config{MaxMessageSize: maxSize})
		var err error
		for i := 0; ; i++ {
			var op Opcode
			var p []byte
			op, p, err = c.ReadMessage()
			if err != nil {
				if len(want.msgs) != i {
					t.Fatalf("message %d: %v; want %d messages", i, err, len(want.msgs))
				}
				break
			}
			if i >= len(want.msgs) {
				t.Fatalf("message %d: %v %q, want no more messages", i, op, p)
			}
			if m := want.msgs[i]; op != m.op || !bytes.Equal(p, m.payload) {
				t.Fatalf("message %d: %v %q, want %v %q", i, op, p, m.op, m.payload)
			}
		}
		if limit := 2*len(stream) + 2*minGrow; cap(c.msg) > limit {
			t.Fatalf("message buffer of %d bytes after receiving %d", cap(c.msg), len(stream))
		}
		if _, _, again := c.ReadMessage(); again != err {
			t.Fatalf("the error did not stick: %v, then %v", err, again)
		}
		c.Close()

		var ce *CloseError
		var pe *ProtocolError
		switch want.end {
		case endEOF:
			if !errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("ended with %v, want io.EOF", err)
			}
		case endTruncated:
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("ended with %v, want io.ErrUnexpectedEOF", err)
			}
		case endPeerClose:
			if !errors.As(err, &ce) || ce.Code != want.code || ce.Reason != want.reason {
				t.Fatalf("ended with %v, want the peer's close %d %q", err, want.code, want.reason)
			}
		case endViolation:
			if !errors.As(err, &pe) || pe.Code != want.code {
				t.Fatalf("ended with %v, want a protocol error %d", err, want.code)
			}
		}

		res := <-read
		// A unix socket closed with unread input resets its peer once
		// the peer has read what was sent: the frames are all there.
		if res.err != nil && !errors.Is(res.err, syscall.ECONNRESET) {
			t.Fatalf("reading the server's frames: %v", res.err)
		}
		frames, ferr := serverFrames(res.out)
		if ferr != nil {
			t.Fatalf("the server sent %q: %v", res.out, ferr)
		}
		for i, f := range frames {
			if !f.fin || f.rsv != 0 {
				t.Fatalf("server frame %d: fin %v, rsv %#x", i, f.fin, f.rsv)
			}
			if i < len(want.pings) {
				if f.op != OpPong || !bytes.Equal(f.payload, want.pings[i]) {
					t.Fatalf("server frame %d: %v %q, want a pong %q", i, f.op, f.payload, want.pings[i])
				}
				continue
			}
			if i > len(want.pings) || f.op != OpClose || want.end != endPeerClose && want.end != endViolation {
				t.Fatalf("server frame %d: %v %q after the pongs, want at most a close frame (end %d)", i, f.op, f.payload, want.end)
			}
			code := CloseNoStatus
			if len(f.payload) >= 2 {
				code = int(binary.BigEndian.Uint16(f.payload))
			}
			if code != want.code || len(f.payload) == 1 || !utf8.Valid(f.payload[min(2, len(f.payload)):]) {
				t.Fatalf("close frame %q, want code %d", f.payload, want.code)
			}
		}
		closes := len(frames) - len(want.pings)
		if wantClose := want.end == endPeerClose || want.end == endViolation; closes < 0 || wantClose != (closes == 1) {
			t.Fatalf("the server sent %d frames for %d pings, ending %d", len(frames), len(want.pings), want.end)
		}
	})
}
