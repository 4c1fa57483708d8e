package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

const (
	// v1Prefix starts a version 1 (text) header.
	v1Prefix = "PROXY "
	// v1MaxLen is the longest version 1 header, CRLF included.
	v1MaxLen = 107
	// v2Signature starts a version 2 (binary) header.
	v2Signature = "\r\n\r\n\x00\r\nQUIT\n"
	// v2FixedLen is the signature, version/command, family/protocol and
	// length; the address block and TLVs follow.
	v2FixedLen = 16
	// firstRead is the buffer of the first read: room for any v1 header
	// and a v2 header with addresses and a few TLVs, plus what the client
	// sent after it in the same packet.
	firstRead = 512
)

// Version 2 commands and address family/protocol bytes.
const (
	cmdLocal    = 0x0
	cmdProxy    = 0x1
	famUnspec   = 0x00
	famTCP4     = 0x11
	famTCP6     = 0x21
	famUnixStrm = 0x31
)

// header is what a PROXY header says. src and dst are nil when the
// connection keeps its real addresses (LOCAL, UNKNOWN, UNSPEC, AF_UNIX).
type header struct {
	src, dst *net.TCPAddr
}

// readHeader reads a v1 or v2 header from r. It returns the header and the
// bytes that arrived after it. It reads as much as r has, so that a header
// arriving one byte at a time costs no more than one in a single packet,
// and rejects a stream as soon as its first bytes cannot start a header.
func readHeader(r io.Reader) (header, []byte, error) {
	buf := make([]byte, 0, firstRead)
	for {
		h, n, need, err := parseHeader(buf)
		if err != nil {
			return header{}, nil, err
		}
		if need == 0 {
			return h, buf[n:], nil
		}
		if free := cap(buf) - len(buf); free < need {
			grown := make([]byte, len(buf), len(buf)+need)
			copy(grown, buf)
			buf = grown
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil && m == 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return header{}, nil, fmt.Errorf("reading PROXY header: %w", err)
		}
	}
}

// parseHeader parses the header at the start of b. It returns the header
// and its length, or how many more bytes it needs at least (need > 0), or
// an error as soon as b cannot be the start of a valid header.
func parseHeader(b []byte) (h header, n, need int, err error) {
	if len(b) == 0 {
		return header{}, 0, 1, nil
	}
	switch b[0] {
	case v1Prefix[0]:
		return parseV1(b)
	case v2Signature[0]:
		return parseV2(b)
	}
	return header{}, 0, 0, errors.New("no PROXY header")
}

// parseV1 parses a text header:
//
//	PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n
//	PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n
//	PROXY UNKNOWN[ anything]\r\n
func parseV1(b []byte) (header, int, int, error) {
	if p := b[:min(len(b), len(v1Prefix))]; string(p) != v1Prefix[:len(p)] {
		return header{}, 0, 0, errors.New("no PROXY header")
	}
	end := bytes.IndexByte(b[:min(len(b), v1MaxLen)], '\n')
	if end < 0 {
		if len(b) >= v1MaxLen {
			return header{}, 0, 0, errors.New("PROXY v1 header longer than 107 bytes")
		}
		return header{}, 0, 1, nil
	}
	if end == 0 || b[end-1] != '\r' {
		return header{}, 0, 0, errors.New("PROXY v1 header not ended by CRLF")
	}
	line := string(b[len(v1Prefix) : end-1])
	h, err := parseV1Line(line)
	if err != nil {
		return header{}, 0, 0, fmt.Errorf("PROXY v1 header %q: %w", b[:end-1], err)
	}
	return h, end + 1, 0, nil
}

// parseV1Line parses what follows "PROXY " up to the CRLF.
func parseV1Line(line string) (header, error) {
	var f [5]string
	nf := 0
	for rest := line; ; {
		i := 0
		for i < len(rest) && rest[i] != ' ' {
			i++
		}
		if nf == len(f) {
			if f[0] == "UNKNOWN" {
				break
			}
			return header{}, errors.New("too many fields")
		}
		f[nf] = rest[:i]
		nf++
		if i == len(rest) {
			break
		}
		rest = rest[i+1:]
	}
	switch f[0] {
	case "UNKNOWN":
		// The proxy could not tell; the receiver must use the real
		// addresses, and ignore whatever follows.
		return header{}, nil
	case "TCP4", "TCP6":
	default:
		return header{}, fmt.Errorf("unknown protocol %q", f[0])
	}
	if nf != 5 {
		return header{}, errors.New("want protocol, two addresses and two ports")
	}
	src, err1 := parseV1Addr(f[1], f[3], f[0] == "TCP4")
	dst, err2 := parseV1Addr(f[2], f[4], f[0] == "TCP4")
	if err := errors.Join(err1, err2); err != nil {
		return header{}, err
	}
	return header{src: src, dst: dst}, nil
}

// parseV1Addr parses an address and a decimal port of a v1 header.
func parseV1Addr(addr, port string, v4 bool) (*net.TCPAddr, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" || a.Is4() != v4 {
		return nil, fmt.Errorf("bad address %q", addr)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || len(port) > 1 && port[0] == '0' {
		return nil, fmt.Errorf("bad port %q", port)
	}
	return tcpAddr(a, uint16(p)), nil
}

// parseV2 parses a binary header: the 12-byte signature, a version and
// command byte, an address family and protocol byte, the big-endian length
// of what follows, then the addresses and optional TLVs, which are skipped.
func parseV2(b []byte) (header, int, int, error) {
	if p := b[:min(len(b), len(v2Signature))]; string(p) != v2Signature[:len(p)] {
		return header{}, 0, 0, errors.New("no PROXY header")
	}
	if len(b) < v2FixedLen {
		return header{}, 0, v2FixedLen - len(b), nil
	}
	if v := b[12] >> 4; v != 2 {
		return header{}, 0, 0, fmt.Errorf("PROXY v2 header with version %d", v)
	}
	cmd, fam := b[12]&0xf, b[13]
	if cmd != cmdLocal && cmd != cmdProxy {
		return header{}, 0, 0, fmt.Errorf("PROXY v2 header with command %#x", cmd)
	}
	n := v2FixedLen + int(binary.BigEndian.Uint16(b[14:16]))
	if len(b) < n {
		return header{}, 0, n - len(b), nil
	}
	if cmd == cmdLocal {
		// Sent by the proxy itself (a health check): real addresses.
		return header{}, n, 0, nil
	}
	body := b[v2FixedLen:n]
	switch fam {
	case famTCP4:
		if len(body) < 12 {
			return header{}, 0, 0, errors.New("PROXY v2 TCP4 address block too short")
		}
		src := netip.AddrFrom4([4]byte(body[0:4]))
		dst := netip.AddrFrom4([4]byte(body[4:8]))
		return header{
			src: tcpAddr(src, binary.BigEndian.Uint16(body[8:10])),
			dst: tcpAddr(dst, binary.BigEndian.Uint16(body[10:12])),
		}, n, 0, nil
	case famTCP6:
		if len(body) < 36 {
			return header{}, 0, 0, errors.New("PROXY v2 TCP6 address block too short")
		}
		src := netip.AddrFrom16([16]byte(body[0:16]))
		dst := netip.AddrFrom16([16]byte(body[16:32]))
		return header{
			src: tcpAddr(src, binary.BigEndian.Uint16(body[32:34])),
			dst: tcpAddr(dst, binary.BigEndian.Uint16(body[34:36])),
		}, n, 0, nil
	case famUnspec, famUnixStrm:
		// Nothing a TCP address can say: keep the real addresses, as
		// the specification allows.
		return header{}, n, 0, nil
	}
	return header{}, 0, 0, fmt.Errorf("PROXY v2 header with unsupported family/protocol %#02x", fam)
}

// tcpAddr makes a *net.TCPAddr, an IPv4-mapped IPv6 address becoming the
// IPv4 address, as the net package reports dual-stack peers.
func tcpAddr(a netip.Addr, port uint16) *net.TCPAddr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a.Unmap(), port))
}
