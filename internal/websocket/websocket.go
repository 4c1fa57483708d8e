// Package websocket implements the server side of RFC 6455 framing for
// connections the edge has already upgraded: the accept-key computation
// for the handshake, and a Conn that reads whole messages from the client
// and writes messages to it. No extension is negotiated, so every RSV bit
// on the wire is a protocol error.
package websocket

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Opcode is a frame opcode (RFC 6455 section 5.2).
type Opcode byte

// Frame opcodes. The others (0x3-0x7, 0xB-0xF) are reserved.
const (
	OpContinuation Opcode = 0x0
	OpText         Opcode = 0x1
	OpBinary       Opcode = 0x2
	OpClose        Opcode = 0x8
	OpPing         Opcode = 0x9
	OpPong         Opcode = 0xA
)

// Close status codes (RFC 6455 section 7.4.1).
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseUnsupportedData = 1003
	CloseNoStatus        = 1005 // never sent: the close frame had no code
	CloseAbnormal        = 1006 // never sent: the connection dropped without a close frame
	CloseInvalidPayload  = 1007
	ClosePolicyViolation = 1008
	CloseMessageTooBig   = 1009
	CloseInternalError   = 1011
)

// Defaults for a zero Config.
const (
	defaultMaxMessageSize = 16 << 20
	defaultWriteTimeout   = 60 * time.Second
)

const (
	// acceptGUID is the fixed GUID of RFC 6455 section 1.3.
	acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

	// maxControlPayload is the limit on a control frame's payload
	// (RFC 6455 section 5.5).
	maxControlPayload = 125

	// maxHeaderSize is 2 bytes of flags and length, 8 of extended length
	// and 4 of masking key.
	maxHeaderSize = 14

	// copyLimit is the largest payload a write copies behind its header
	// to send both with one Write; larger payloads go out with writev
	// (net.Buffers) instead, since copying them costs more than the
	// second iovec.
	copyLimit = 8 << 10

	// maxRetainedMessage is the largest message buffer a Conn keeps from
	// one ReadMessage to the next. A connection that once received a big
	// message should not hold megabytes while it idles.
	maxRetainedMessage = 1 << 20

	// minGrow is the smallest step by which the message buffer grows.
	// The buffer grows with the bytes that actually arrive, not with the
	// length a frame header announces, so a peer cannot make the server
	// allocate MaxMessageSize by sending a header alone.
	minGrow = 4 << 10
)

// ErrCloseSent is returned by the write methods once this side has sent
// its close frame: RFC 6455 section 5.5.1 forbids data frames after it.
var ErrCloseSent = errors.New("websocket: close frame already sent")

// AcceptKey computes Sec-WebSocket-Accept for a Sec-WebSocket-Key:
// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
func AcceptKey(key string) string {
	h := sha1.New()
	io.WriteString(h, key)
	io.WriteString(h, acceptGUID)
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// ValidKey reports whether a Sec-WebSocket-Key is the base64 encoding of
// 16 bytes (RFC 6455 section 4.1): 24 characters with canonical padding.
func ValidKey(key string) bool {
	if len(key) != 24 {
		return false
	}
	var buf [18]byte
	// Strict rejects non-zero padding bits, so each 16-byte value has
	// exactly one accepted spelling. The length check above keeps out CR
	// and LF, which even the strict decoder skips.
	n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(key))
	return err == nil && n == 16
}

// ValidCloseCode reports whether code may appear in a close frame on the
// wire: the codes RFC 6455 section 7.4 and the IANA registry define for
// use in frames (1000-1003 and 1007-1014), and the ranges for libraries
// and applications (3000-4999). 1004 is reserved, 1005, 1006 and 1015
// stand for conditions that are never sent, and the rest is unassigned.
func ValidCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// CloseError is what ReadMessage returns when the peer sent a close frame.
// Code is CloseNoStatus when the frame carried no code.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Code == CloseNoStatus {
		return "websocket: peer closed the connection without a status code"
	}
	if e.Reason == "" {
		return fmt.Sprintf("websocket: peer closed the connection with code %d", e.Code)
	}
	return fmt.Sprintf("websocket: peer closed the connection with code %d: %s", e.Code, e.Reason)
}

// ProtocolError is what ReadMessage returns when the peer broke the
// protocol; the Conn has already sent a close frame with Code (1002, 1007
// or 1009) and Msg as its reason.
type ProtocolError struct {
	Code int
	Msg  string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("websocket: protocol error (close %d): %s", e.Code, e.Msg)
}

// Config of a Conn.
type Config struct {
	// MaxMessageSize is the largest message accepted, after reassembly
	// of fragments; a larger one is answered with close 1009. <=0 means
	// 16 MiB.
	MaxMessageSize int64

	// WriteTimeout bounds each write of a frame to the client, so that a
	// client that stops reading cannot block writers forever. <=0 means
	// 60s.
	WriteTimeout time.Duration
}

// Conn is the server side of an upgraded connection.
//
// One goroutine may call ReadMessage while others call the write methods;
// the write methods are safe for concurrent use, each frame is written
// whole under a mutex.
type Conn struct {
	rwc          net.Conn
	br           *bufio.Reader
	maxSize      int64
	writeTimeout time.Duration

	// Read side, owned by the goroutine calling ReadMessage.
	hdr     [maxHeaderSize]byte
	ctrl    [maxControlPayload]byte
	msg     []byte // the message being reassembled; returned to the caller
	readErr error  // sticky: once set, every ReadMessage returns it

	// Write side. closeSent is written under wmu but read without it, so
	// that CloseSent and the ping handler do not wait behind a slow write.
	wmu       sync.Mutex
	wbuf      []byte // header, and the payload when it is small
	writeErr  error  // sticky: after a failed write the stream may hold a partial frame
	closeSent atomic.Bool

	pongMu   sync.Mutex
	lastPong time.Time
}

// NewConn wraps an upgraded server-side connection. br holds bytes the
// HTTP layer already buffered from rwc (it reads from rwc underneath); all
// reads go through br. A nil br reads from rwc with a new bufio.Reader.
func NewConn(rwc net.Conn, br *bufio.Reader, cfg Config) *Conn {
	if br == nil {
		br = bufio.NewReader(rwc)
	}
	maxSize := cfg.MaxMessageSize
	if maxSize <= 0 {
		maxSize = defaultMaxMessageSize
	}
	// The message is held in a []byte, so on 32-bit platforms the limit
	// cannot exceed what an int can index.
	maxSize = min(maxSize, math.MaxInt)
	wt := cfg.WriteTimeout
	if wt <= 0 {
		wt = defaultWriteTimeout
	}
	return &Conn{rwc: rwc, br: br, maxSize: maxSize, writeTimeout: wt}
}

// frameHeader is a decoded frame header.
type frameHeader struct {
	fin    bool
	op     Opcode
	length int64
	key    [4]byte
}

// ReadMessage returns the next whole data message (OpText or OpBinary) and
// its payload. The payload is valid until the next call of ReadMessage
// (the buffer is reused).
//
// Control frames are handled inside: a ping is answered with a pong
// carrying the same payload (unless a close was already sent); a pong
// records the time (LastPong); a close frame returns *CloseError and, if
// this side has not sent a close yet, answers with a close frame echoing
// the peer's code (or an empty close frame when the peer's had no code).
// Violations send a close frame with the right code and return
// *ProtocolError. I/O errors (EOF, reset, deadline) are returned wrapped
// with context; errors.Is sees through the wrapping. EOF between messages
// is io.EOF, EOF inside a message is io.ErrUnexpectedEOF.
//
// Every error is final: the stream position is unknown afterwards, so
// later calls return the same error. After a *CloseError or
// *ProtocolError the caller should Close the Conn (RFC 6455 section 7.1.1
// has the server close the TCP connection first).
//
// ReadMessage must only be called from one goroutine at a time; it may
// run concurrently with the write methods.
func (c *Conn) ReadMessage() (Opcode, []byte, error) {
	if c.readErr != nil {
		return 0, nil, c.readErr
	}
	op, p, err := c.readMessage()
	if err != nil {
		c.readErr = err
		return 0, nil, err
	}
	return op, p, nil
}

func (c *Conn) readMessage() (Opcode, []byte, error) {
	if cap(c.msg) > maxRetainedMessage {
		c.msg = nil
	}
	c.msg = c.msg[:0]
	// msgOp is the opcode of the message in progress, OpContinuation
	// until its first frame arrives.
	msgOp := OpContinuation
	for {
		h, err := c.readHeader(msgOp != OpContinuation)
		if err != nil {
			return 0, nil, err
		}
		if h.op.isControl() {
			if err := c.handleControl(h); err != nil {
				return 0, nil, err
			}
			continue
		}
		if h.op != OpContinuation {
			msgOp = h.op
		}
		// Checked against the header, before any of the payload is
		// read, so an oversized message costs no memory.
		if h.length > c.maxSize-int64(len(c.msg)) {
			return 0, nil, c.fail(CloseMessageTooBig,
				fmt.Sprintf("message exceeds %d bytes", c.maxSize))
		}
		if err := c.readData(int(h.length), h.key); err != nil {
			return 0, nil, err
		}
		if !h.fin {
			continue
		}
		if msgOp == OpText && !utf8.Valid(c.msg) {
			return 0, nil, c.fail(CloseInvalidPayload, "text message is not valid UTF-8")
		}
		return msgOp, c.msg, nil
	}
}

// readHeader reads and validates one frame header. inMessage tells
// whether a fragmented message is in progress, for the fragmentation
// rules and to tell a clean EOF from a truncated message. Violations that
// the first two bytes reveal are answered before the rest of the header
// is read, so a peer that stalls after a bad start still gets its close.
func (c *Conn) readHeader(inMessage bool) (frameHeader, error) {
	var h frameHeader
	b := c.hdr[:2]
	if _, err := io.ReadFull(c.br, b); err != nil {
		if err == io.EOF && inMessage {
			err = io.ErrUnexpectedEOF
		}
		return h, fmt.Errorf("websocket: read frame header: %w", err)
	}
	h.fin = b[0]&0x80 != 0
	h.op = Opcode(b[0] & 0x0f)
	masked := b[1]&0x80 != 0
	length := int64(b[1] & 0x7f)

	if b[0]&0x70 != 0 {
		return h, c.fail(CloseProtocolError, "reserved bits set without a negotiated extension")
	}
	switch h.op {
	case OpText, OpBinary:
		if inMessage {
			return h, c.fail(CloseProtocolError, "new data frame while a fragmented message is in progress")
		}
	case OpContinuation:
		if !inMessage {
			return h, c.fail(CloseProtocolError, "continuation frame without a message in progress")
		}
	case OpClose, OpPing, OpPong:
		if !h.fin {
			return h, c.fail(CloseProtocolError, "fragmented control frame")
		}
	default:
		return h, c.fail(CloseProtocolError, fmt.Sprintf("unknown opcode %#x", byte(h.op)))
	}
	if !masked {
		return h, c.fail(CloseProtocolError, "client frame is not masked")
	}

	n := 4 // masking key
	switch length {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	b = c.hdr[2 : 2+n]
	if _, err := io.ReadFull(c.br, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, fmt.Errorf("websocket: read frame header: %w", err)
	}
	switch length {
	case 126:
		length = int64(binary.BigEndian.Uint16(b))
		b = b[2:]
	case 127:
		l := binary.BigEndian.Uint64(b)
		if l>>63 != 0 {
			return h, c.fail(CloseProtocolError, "frame length has the most significant bit set")
		}
		length = int64(l)
		b = b[8:]
	}
	// Non-minimal length encodings are accepted: RFC 6455 section 5.2
	// asks senders for the minimal one but does not have receivers
	// reject the others. The limit on control frames is on the length,
	// however it is spelled.
	if h.op.isControl() && length > maxControlPayload {
		return h, c.fail(CloseProtocolError, "control frame payload exceeds 125 bytes")
	}
	h.length = length
	copy(h.key[:], b)
	return h, nil
}

// readData appends n payload bytes to c.msg and unmasks them. The buffer
// grows with the data that arrives rather than with n, at least
// geometrically so that a big frame is not copied too often.
func (c *Conn) readData(n int, key [4]byte) error {
	start := len(c.msg)
	for n > 0 {
		if len(c.msg) == cap(c.msg) {
			grow := min(n, max(cap(c.msg), minGrow))
			c.msg = slices.Grow(c.msg, grow)
		}
		k := min(n, cap(c.msg)-len(c.msg))
		m, err := io.ReadFull(c.br, c.msg[len(c.msg):len(c.msg)+k])
		c.msg = c.msg[:len(c.msg)+m]
		n -= m
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("websocket: read frame payload: %w", err)
		}
	}
	unmask(key, c.msg[start:])
	return nil
}

// handleControl reads the payload of a control frame and acts on it.
func (c *Conn) handleControl(h frameHeader) error {
	p := c.ctrl[:h.length]
	if _, err := io.ReadFull(c.br, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("websocket: read control frame payload: %w", err)
	}
	unmask(h.key, p)
	switch h.op {
	case OpPing:
		// Once a close is sent no other frame may follow it, and the peer
		// expects none, so a late ping goes unanswered: ErrCloseSent.
		if err := c.writeControl(OpPong, p); err != nil && !errors.Is(err, ErrCloseSent) {
			return fmt.Errorf("websocket: answer ping: %w", err)
		}
	case OpPong:
		now := time.Now()
		c.pongMu.Lock()
		c.lastPong = now
		c.pongMu.Unlock()
	case OpClose:
		return c.handleClose(p)
	}
	return nil
}

// handleClose validates the peer's close frame, echoes it and returns the
// *CloseError (or *ProtocolError) that ends ReadMessage.
func (c *Conn) handleClose(p []byte) error {
	code := CloseNoStatus
	var reason []byte
	switch {
	case len(p) == 1:
		return c.fail(CloseProtocolError, "close frame payload of 1 byte")
	case len(p) >= 2:
		code = int(binary.BigEndian.Uint16(p))
		reason = p[2:]
		if !ValidCloseCode(code) {
			return c.fail(CloseProtocolError, fmt.Sprintf("invalid close code %d", code))
		}
		if !utf8.Valid(reason) {
			return c.fail(CloseInvalidPayload, "close reason is not valid UTF-8")
		}
	}
	// The echo completes the closing handshake (RFC 6455 section 5.5.1).
	// Its failure is not reported: the peer is going away either way and
	// the CloseError says more than a write error would.
	_ = c.WriteClose(code, "")
	return &CloseError{Code: code, Reason: string(reason)}
}

// fail sends a close frame for a protocol violation and returns the
// matching *ProtocolError. The write's own failure is dropped: the
// violation is what the caller needs to know.
func (c *Conn) fail(code int, msg string) error {
	_ = c.WriteClose(code, msg)
	return &ProtocolError{Code: code, Msg: msg}
}

// WriteMessage sends one unfragmented, unmasked data frame (OpText or
// OpBinary). It does not check that a text payload is valid UTF-8; that
// is the caller's promise. It returns ErrCloseSent after a close frame was
// sent.
func (c *Conn) WriteMessage(op Opcode, data []byte) error {
	if !op.isData() {
		return fmt.Errorf("websocket: WriteMessage with opcode %#x, want text or binary", byte(op))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent.Load() {
		return ErrCloseSent
	}
	return c.writeFrame(op, data)
}

// WriteClose sends a close frame with code and reason (reason truncated to
// fit the 125-byte control-frame limit on a UTF-8 boundary, and invalid
// UTF-8 in it replaced). Code 0 or CloseNoStatus sends an empty close
// frame; other codes must satisfy ValidCloseCode. Only the first call
// sends; later calls return nil without sending.
func (c *Conn) WriteClose(code int, reason string) error {
	var buf [maxControlPayload]byte
	var p []byte
	if code != 0 && code != CloseNoStatus {
		if !ValidCloseCode(code) {
			return fmt.Errorf("websocket: invalid close code %d", code)
		}
		binary.BigEndian.PutUint16(buf[:], uint16(code))
		if !utf8.ValidString(reason) {
			reason = strings.ToValidUTF8(reason, "\uFFFD")
		}
		n := len(reason)
		if n > maxControlPayload-2 {
			n = maxControlPayload - 2
			for n > 0 && !utf8.RuneStart(reason[n]) {
				n--
			}
		}
		p = buf[:2+copy(buf[2:], reason[:n])]
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent.Load() {
		return nil
	}
	// Marked before the write: even a failed write may have put part of
	// the frame on the wire, and nothing may follow it.
	c.closeSent.Store(true)
	return c.writeFrame(OpClose, p)
}

// Ping sends a ping frame with payload (<=125 bytes). It returns
// ErrCloseSent after a close frame was sent.
func (c *Conn) Ping(payload []byte) error {
	if len(payload) > maxControlPayload {
		return fmt.Errorf("websocket: ping payload of %d bytes exceeds %d", len(payload), maxControlPayload)
	}
	return c.writeControl(OpPing, payload)
}

// writeControl writes a ping or pong frame unless a close was sent.
func (c *Conn) writeControl(op Opcode, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent.Load() {
		return ErrCloseSent
	}
	return c.writeFrame(op, payload)
}

// writeFrame writes one unmasked final frame. The caller holds c.wmu.
func (c *Conn) writeFrame(op Opcode, payload []byte) error {
	if c.writeErr != nil {
		return c.writeErr
	}
	if err := c.rwc.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		c.writeErr = fmt.Errorf("websocket: set write deadline: %w", err)
		return c.writeErr
	}
	c.wbuf = appendHeader(c.wbuf[:0], op, len(payload))
	var err error
	if len(payload) <= copyLimit {
		c.wbuf = append(c.wbuf, payload...)
		_, err = c.rwc.Write(c.wbuf)
	} else {
		bufs := net.Buffers{c.wbuf, payload}
		_, err = bufs.WriteTo(c.rwc)
	}
	if err != nil {
		c.writeErr = fmt.Errorf("websocket: write %s frame: %w", op.name(), err)
		return c.writeErr
	}
	return nil
}

// appendHeader appends the header of an unmasked final frame with a
// payload of n bytes, using the minimal length encoding.
func appendHeader(b []byte, op Opcode, n int) []byte {
	b = append(b, 0x80|byte(op))
	switch {
	case n <= 125:
		b = append(b, byte(n))
	case n <= math.MaxUint16:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return b
}

// unmask XORs b with the masking key, starting at key position 0 (each
// frame's payload has its own key). It works eight bytes at a time: a
// multi-megabyte message would otherwise spend noticeable time here.
func unmask(key [4]byte, b []byte) {
	if len(b) >= 8 {
		k := uint64(binary.LittleEndian.Uint32(key[:]))
		k |= k << 32
		for len(b) >= 8 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k)
			b = b[8:]
		}
	}
	// A multiple of 8 bytes was consumed, so the key position is 0 again.
	for i := range b {
		b[i] ^= key[i&3]
	}
}

// LastPong is when the last pong arrived (zero if none yet).
func (c *Conn) LastPong() time.Time {
	c.pongMu.Lock()
	defer c.pongMu.Unlock()
	return c.lastPong
}

// CloseSent reports whether this side has sent its close frame.
func (c *Conn) CloseSent() bool {
	return c.closeSent.Load()
}

// SetReadDeadline sets the deadline of the underlying connection's reads.
// A ReadMessage that hits it fails with an error that matches
// os.ErrDeadlineExceeded, and the Conn cannot be read from afterwards.
func (c *Conn) SetReadDeadline(t time.Time) error {
	return c.rwc.SetReadDeadline(t)
}

// Close closes the underlying connection (without a close frame).
func (c *Conn) Close() error {
	return c.rwc.Close()
}

func (op Opcode) isControl() bool { return op&0x8 != 0 }

func (op Opcode) isData() bool { return op == OpText || op == OpBinary }

// name is the opcode's name for error messages.
func (op Opcode) name() string {
	switch op {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return fmt.Sprintf("opcode %#x", byte(op))
}
