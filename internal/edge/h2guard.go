package edge

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"

	"golang.org/x/net/http2/hpack"
)

// h2Guard sits between an HTTP/2 client and x/net/http2's server and
// corrects two places where that server departs from RFC 9113:
//
//   - A SETTINGS frame that names a setting twice is valid (the values are
//     processed in order, section 6.5.3); the server rejects the whole
//     connection. The guard keeps only the last value of each setting,
//     which is what processing them in order leaves.
//   - A request with a connection-specific header field or a TE other
//     than "trailers" is malformed and must be a stream error (section
//     8.2.2); the server answers it 400 instead, handing the app a request
//     that should not exist. The guard ends the connection, which the RFC
//     allows for any stream error.
//
// It reads whole frames (at most h2MaxFrame of payload, the size the
// server advertises) and mirrors the client's HPACK state to see header
// fields; anything it cannot judge it passes on unchanged for the server
// to judge.
type h2Guard struct {
	net.Conn
	src     func([]byte) (int, error) // reads the client's bytes
	buf     []byte                    // backing store of in, reused
	in      []byte                    // bytes read, not yet framed
	out     []byte                    // framed bytes ready for the server
	preface int                       // preface bytes still to pass through
	raw     bool                      // give up framing: pass bytes as they come
	dec     *hpack.Decoder
	block   []byte // header block being collected (HEADERS + CONTINUATION)
	bad     bool   // the header block being decoded broke the rules
}

// h2MaxFrame is the largest frame payload the server accepts
// (SETTINGS_MAX_FRAME_SIZE), also the guard's framing limit.
const h2MaxFrame = 16 << 10

// h2HeaderTable is the HPACK dynamic table size the server advertises.
const h2HeaderTable = 4096

var errMalformedH2 = errors.New("edge: malformed HTTP/2 request (connection-specific header field)")

// newH2Guard wraps c; read is how the client's bytes are read (c.Read, or a
// reader that first replays bytes already buffered). withPreface says
// whether those bytes start with the connection preface.
func newH2Guard(c net.Conn, read func([]byte) (int, error), withPreface bool) *h2Guard {
	g := &h2Guard{Conn: c, src: read}
	if withPreface {
		g.preface = len(h2Preface)
	}
	g.dec = hpack.NewDecoder(h2HeaderTable, g.checkField)
	return g
}

func (g *h2Guard) checkField(f hpack.HeaderField) {
	switch strings.ToLower(f.Name) {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		g.bad = true
	case "te":
		if f.Value != "trailers" {
			g.bad = true
		}
	}
}

func (g *h2Guard) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		if g.raw && len(g.in) > 0 {
			g.out, g.in = g.in, nil
			break
		}
		if err := g.frame(); err != nil {
			return 0, err
		}
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	return n, nil
}

// fill reads more client bytes into in, reading straight into its
// buffer. The buffer holds two whole frames, so once the unread bytes move
// to its front there is always room for the rest of a frame.
func (g *h2Guard) fill() error {
	if g.buf == nil {
		g.buf = make([]byte, 2*(h2MaxFrame+9))
		g.in = g.buf[:0]
	}
	if cap(g.in)-len(g.in) < 4096 {
		n := copy(g.buf, g.in)
		g.in = g.buf[:n]
	}
	n, err := g.src(g.in[len(g.in):cap(g.in)])
	g.in = g.in[:len(g.in)+n]
	if n > 0 {
		return nil
	}
	return err
}

// frame moves the next complete frame (or the preface) from in to out.
func (g *h2Guard) frame() error {
	if g.raw {
		return g.fill()
	}
	if g.preface > 0 {
		if len(g.in) == 0 {
			return g.fill()
		}
		n := min(g.preface, len(g.in))
		g.out = append(g.out[:0], g.in[:n]...)
		g.in = g.in[n:]
		g.preface -= n
		return nil
	}
	if len(g.in) < 9 {
		return g.fill()
	}
	length := int(g.in[0])<<16 | int(g.in[1])<<8 | int(g.in[2])
	if length > h2MaxFrame {
		g.raw = true // the server rejects the frame itself
		return nil
	}
	if len(g.in) < 9+length {
		return g.fill()
	}
	f := g.in[:9+length]
	g.in = g.in[9+length:]
	typ, flags := f[3], f[4]
	switch typ {
	case 0x4: // SETTINGS
		if flags&0x1 == 0 {
			f = dedupeSettings(f)
		}
	case 0x1: // HEADERS
		frag, ok := headersFragment(f[9:], flags)
		if !ok {
			break // the server reports the framing error
		}
		g.block = append(g.block[:0], frag...)
		if flags&0x4 != 0 && g.endBlock() {
			return errMalformedH2
		}
	case 0x9: // CONTINUATION
		g.block = append(g.block, f[9:]...)
		if flags&0x4 != 0 && g.endBlock() {
			return errMalformedH2
		}
	}
	g.out = append(g.out[:0], f...)
	return nil
}

// endBlock decodes a complete header block and reports whether it holds a
// field the RFC forbids. An undecodable block is left to the server.
func (g *h2Guard) endBlock() bool {
	g.bad = false
	if _, err := g.dec.Write(g.block); err != nil {
		g.raw = true // out of step with the client: stop judging
		return false
	}
	if err := g.dec.Close(); err != nil {
		g.raw = true
		return false
	}
	return g.bad
}

// headersFragment strips a HEADERS payload's padding and priority fields.
func headersFragment(p []byte, flags byte) ([]byte, bool) {
	pad := 0
	if flags&0x8 != 0 { // PADDED
		if len(p) < 1 {
			return nil, false
		}
		pad = int(p[0])
		p = p[1:]
	}
	if flags&0x20 != 0 { // PRIORITY
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, false
	}
	return p[:len(p)-pad], true
}

// dedupeSettings returns frame f with only the last value of each setting.
func dedupeSettings(f []byte) []byte {
	p := f[9:]
	if len(p)%6 != 0 {
		return f // the server reports the size error
	}
	n := len(p) / 6
	last := make(map[uint16]int, n)
	for i := range n {
		last[binary.BigEndian.Uint16(p[i*6:])] = i
	}
	if len(last) == n {
		return f
	}
	out := make([]byte, 9, 9+len(last)*6)
	copy(out, f[:9])
	for i := range n {
		if last[binary.BigEndian.Uint16(p[i*6:])] == i {
			out = append(out, p[i*6:i*6+6]...)
		}
	}
	l := len(out) - 9
	out[0], out[1], out[2] = byte(l>>16), byte(l>>8), byte(l)
	return out
}
