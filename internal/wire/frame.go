// Package wire is the Go side of taipan's framing between the edge and the
// Python workers: frame headers, the message kinds, and the marshal subset
// used for environs and response heads. docs/protocol.md is the spec.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Version is the protocol version this Go side speaks.
const Version = 1

// HeaderSize is the size of a frame header in bytes.
const HeaderSize = 12

// MaxPayload bounds a frame payload; larger lengths mean a corrupt stream.
const MaxPayload = 1<<31 - 1

// Kind is a message kind.
type Kind uint8

// Message kinds, Go to worker.
const (
	KindRequest Kind = 0x01
	KindCancel  Kind = 0x02
	KindPing    Kind = 0x03
	// KindWSReceive carries one WebSocket message from the client: the
	// app's websocket.receive event (FlagText for text).
	KindWSReceive Kind = 0x04
	// KindWSDisconnect says the client closed the WebSocket (u16 code, then
	// the UTF-8 reason): the app's websocket.disconnect event.
	KindWSDisconnect Kind = 0x05
)

// Message kinds, worker to Go.
const (
	KindReady     Kind = 0x10
	KindBootError Kind = 0x11
	KindHead      Kind = 0x12
	KindBody      Kind = 0x13
	KindFile      Kind = 0x14
	KindAbort     Kind = 0x15
	KindLog       Kind = 0x16
	KindPong      Kind = 0x17
	// KindWSAccept accepts a WebSocket: marshal (subprotocol or None,
	// [(name, value), ...]) for the 101 response.
	KindWSAccept Kind = 0x18
	// KindWSSend is one message from the app to the client (FlagText for text).
	KindWSSend Kind = 0x19
	// KindWSClose closes the WebSocket (u16 code, then the UTF-8 reason;
	// empty when the close was sent already). With FlagEnd it also ends the
	// stream: the app's task has returned.
	KindWSClose Kind = 0x1A
	// KindWSAck returns flow-control credit: u32 bytes of received messages
	// the app has consumed.
	KindWSAck Kind = 0x1B
)

func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "REQUEST"
	case KindCancel:
		return "CANCEL"
	case KindPing:
		return "PING"
	case KindPong:
		return "PONG"
	case KindReady:
		return "READY"
	case KindBootError:
		return "BOOT_ERROR"
	case KindHead:
		return "HEAD"
	case KindBody:
		return "BODY"
	case KindFile:
		return "FILE"
	case KindAbort:
		return "ABORT"
	case KindLog:
		return "LOG"
	case KindWSReceive:
		return "WS_RECEIVE"
	case KindWSDisconnect:
		return "WS_DISCONNECT"
	case KindWSAccept:
		return "WS_ACCEPT"
	case KindWSSend:
		return "WS_SEND"
	case KindWSClose:
		return "WS_CLOSE"
	case KindWSAck:
		return "WS_ACK"
	}
	return fmt.Sprintf("kind(0x%02x)", uint8(k))
}

// Frame flags.
const (
	FlagBodyFile  uint8 = 0x01 // REQUEST: body is in the file named by taipan.body_path
	FlagWebSocket uint8 = 0x02 // REQUEST: a WebSocket handshake; the scope's type is "websocket"
	FlagEnd       uint8 = 0x01 // HEAD, BODY, WS_CLOSE: this frame ends the stream
	// FlagClosing, beside FlagEnd on a HEAD or BODY frame of a worker that
	// runs one request at a time: the response is complete, but the app's
	// close() still runs. The worker is done with the stream at the first
	// frame of its next stream, or at an END frame of this one.
	FlagClosing uint8 = 0x02
	FlagText    uint8 = 0x01 // WS_RECEIVE, WS_SEND: a text message (UTF-8), else binary
	// FlagCancelTimeout marks a CANCEL sent because the request ran past
	// the timeout: an ASGI worker cancels the request's task.
	FlagCancelTimeout uint8 = 0x01
	// FlagPostFork marks a BOOT_ERROR from the --post-fork hook, which ran
	// after the app had loaded, rather than from loading the app.
	FlagPostFork uint8 = 0x01
)

// Header is a decoded frame header.
type Header struct {
	Length uint32
	Kind   Kind
	Flags  uint8
	Stream uint32
}

// AppendHeader appends the encoded header h to dst.
func AppendHeader(dst []byte, h Header) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, h.Length)
	dst = append(dst, byte(h.Kind), h.Flags, 0, 0)
	return binary.LittleEndian.AppendUint32(dst, h.Stream)
}

// ParseHeader decodes a frame header from the first HeaderSize bytes of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, errors.New("wire: short frame header")
	}
	h := Header{
		Length: binary.LittleEndian.Uint32(b[0:4]),
		Kind:   Kind(b[4]),
		Flags:  b[5],
		Stream: binary.LittleEndian.Uint32(b[8:12]),
	}
	if b[6] != 0 || b[7] != 0 {
		return h, fmt.Errorf("wire: reserved header bytes set in %v frame", h.Kind)
	}
	if h.Length > MaxPayload {
		return h, fmt.Errorf("wire: %v frame length %d too large", h.Kind, h.Length)
	}
	return h, nil
}

// AppendRequest appends a REQUEST frame: the encoded environ followed by an
// inline body (nil when the body travels as a file).
func AppendRequest(dst []byte, stream uint32, flags uint8, environ, body []byte) []byte {
	dst = AppendRequestHead(dst, stream, flags, environ, len(body))
	return append(dst, body...)
}

// AppendRequestHead appends a REQUEST frame without its inline body, which
// the caller writes right after it: bodyLen bytes. A large body can then go
// out by writev from where it already is, instead of being copied.
func AppendRequestHead(dst []byte, stream uint32, flags uint8, environ []byte, bodyLen int) []byte {
	dst = AppendHeader(dst, Header{
		Length: uint32(4 + len(environ) + bodyLen),
		Kind:   KindRequest,
		Flags:  flags,
		Stream: stream,
	})
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(environ)))
	return append(dst, environ...)
}

// Frame is one received frame. Payload belongs to the frame until Release.
// File is set for FILE frames only.
type Frame struct {
	Header
	Payload []byte
	File    *os.File

	pooled *[]byte // the Reader's buffer behind Payload, if it came from its pool
	pool   *sync.Pool
}

// Release gives the payload buffer back to the Reader for reuse; Payload
// must not be used afterwards. Streaming a large response then reuses a
// handful of buffers instead of allocating one per chunk.
func (f *Frame) Release() {
	if f.pooled != nil {
		f.pool.Put(f.pooled)
		f.pooled, f.Payload = nil, nil
	}
}

// pooledPayload is the size of the recycled payload buffers: the worker's
// streaming chunks are usually at most this large.
const pooledPayload = 64 << 10

// Reader reads frames from a worker's unix socket, collecting file
// descriptors passed with SCM_RIGHTS so that FILE frames can claim them.
// It is not safe for concurrent use.
type Reader struct {
	conn *net.UnixConn
	buf  []byte // buf[start:end] holds unparsed bytes
	oob  []byte
	fds  []int // received descriptors not yet claimed by a FILE frame
	bufs sync.Pool

	start, end int
}

// NewReader returns a Reader on conn.
func NewReader(conn *net.UnixConn) *Reader {
	r := &Reader{
		conn: conn,
		buf:  make([]byte, 64<<10),
		oob:  make([]byte, unix.CmsgSpace(4*8)),
	}
	r.bufs.New = func() any { b := make([]byte, pooledPayload); return &b }
	return r
}

// Next returns the next frame, blocking until it has fully arrived.
func (r *Reader) Next() (*Frame, error) {
	for r.end-r.start < HeaderSize {
		if err := r.fill(HeaderSize); err != nil {
			return nil, err
		}
	}
	h, err := ParseHeader(r.buf[r.start:])
	if err != nil {
		return nil, err
	}
	total := HeaderSize + int(h.Length)
	if r.end-r.start < total && h.Length > directPayload && h.Length <= pooledPayload {
		return r.nextDirect(h)
	}
	for r.end-r.start < total {
		if err := r.fill(total); err != nil {
			return nil, err
		}
	}
	f := &Frame{Header: h}
	if h.Length > 1024 && h.Length <= pooledPayload {
		f.pooled, f.pool = r.bufs.Get().(*[]byte), &r.bufs
		f.Payload = (*f.pooled)[:h.Length]
	} else {
		f.Payload = make([]byte, h.Length)
	}
	copy(f.Payload, r.buf[r.start+HeaderSize:r.start+total])
	r.start += total
	if r.start == r.end {
		r.start, r.end = 0, 0
	}
	if h.Kind == KindFile {
		if len(r.fds) == 0 {
			return nil, errors.New("wire: FILE frame arrived without a file descriptor")
		}
		f.File = os.NewFile(uintptr(r.fds[0]), "worker-file")
		r.fds = r.fds[1:]
	}
	return f, nil
}

// directPayload is the payload length above which a frame that has not
// fully arrived is read straight into its pooled buffer (nextDirect).
const directPayload = 8 << 10

// nextDirect completes a frame whose header is buffered by reading the rest
// of its payload from the socket straight into a pooled buffer: a large
// body chunk is then copied once out of the kernel, not a second time out
// of r.buf. It reads exactly the frame's bytes, and the buffer is never
// larger than pooledPayload, whatever the header announced.
func (r *Reader) nextDirect(h Header) (*Frame, error) {
	f := &Frame{Header: h}
	f.pooled, f.pool = r.bufs.Get().(*[]byte), &r.bufs
	f.Payload = (*f.pooled)[:h.Length]
	n := copy(f.Payload, r.buf[r.start+HeaderSize:r.end])
	r.start, r.end = 0, 0
	for n < len(f.Payload) {
		m, oobn, _, _, err := r.conn.ReadMsgUnix(f.Payload[n:], r.oob)
		m, oobn = max(m, 0), max(oobn, 0) // both are -1 when recvmsg fails
		if oobn > 0 {
			if perr := r.collectFDs(r.oob[:oobn]); perr != nil {
				f.Release()
				return nil, perr
			}
		}
		n += m
		if m == 0 {
			f.Release()
			if err == nil {
				err = io.EOF // recvmsg(2) returning nothing is end of file
			}
			return nil, err
		}
	}
	return f, nil
}

// Buffered reports whether a complete frame is already buffered, so the
// caller can tell whether Next will return without blocking.
func (r *Reader) Buffered() bool {
	if r.end-r.start < HeaderSize {
		return false
	}
	h, err := ParseHeader(r.buf[r.start:])
	return err != nil || r.end-r.start >= HeaderSize+int(h.Length)
}

// fill reads more bytes, making room for them towards a frame of need bytes.
func (r *Reader) fill(need int) error {
	if r.start > 0 && r.start+need > len(r.buf) {
		n := copy(r.buf, r.buf[r.start:r.end])
		r.start, r.end = 0, n
	}
	if r.end == len(r.buf) {
		// Full, and need is more than it holds. Grow with the bytes that
		// arrive rather than to the length the header announces, so that
		// a header alone cannot make the Reader allocate 2 GiB.
		grown := make([]byte, min(need, 2*len(r.buf)))
		r.end = copy(grown, r.buf[r.start:r.end])
		r.start = 0
		r.buf = grown
	}
	n, oobn, _, _, err := r.conn.ReadMsgUnix(r.buf[r.end:], r.oob)
	n, oobn = max(n, 0), max(oobn, 0) // both are -1 when recvmsg fails
	if oobn > 0 {
		if perr := r.collectFDs(r.oob[:oobn]); perr != nil {
			return perr
		}
	}
	r.end += n
	if n == 0 && err == nil {
		// recvmsg(2) returning nothing on a stream socket is end of file.
		return io.EOF
	}
	if err != nil && n == 0 {
		return err
	}
	return nil
}

func (r *Reader) collectFDs(oob []byte) error {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("wire: parse control message: %w", err)
	}
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		r.fds = append(r.fds, fds...)
	}
	return nil
}

// Close releases descriptors received but never claimed.
func (r *Reader) Close() {
	for _, fd := range r.fds {
		unix.Close(fd)
	}
	r.fds = nil
}
