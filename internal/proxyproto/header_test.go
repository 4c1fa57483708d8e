package proxyproto

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// v2 builds a version 2 header: command, family/protocol, address block
// and TLVs.
func v2(cmd, fam byte, addrs []byte, tlvs ...[]byte) []byte {
	b := []byte(v2Signature)
	b = append(b, 0x20|cmd, fam, 0, 0)
	b = append(b, addrs...)
	for _, t := range tlvs {
		b = append(b, t...)
	}
	binary.BigEndian.PutUint16(b[14:16], uint16(len(b)-v2FixedLen))
	return b
}

// tlv builds a type-length-value record.
func tlv(typ byte, value string) []byte {
	return append([]byte{typ, byte(len(value) >> 8), byte(len(value))}, value...)
}

// addrs4 and addrs6 build address blocks.
func addrs4(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	b := append(s[:], d[:]...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sport), dport)
}

func addrs6(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	b := append(s[:], d[:]...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sport), dport)
}

func addrString(a *net.TCPAddr) string {
	if a == nil {
		return "real"
	}
	return a.String()
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		src, dst string // "real" when the connection keeps its addresses
	}{
		{"v1 TCP4", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"), "192.0.2.1:56324", "198.51.100.2:443"},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n"), "[2001:db8::1]:65535", "[2001:db8::2]:0"},
		{"v1 TCP6 mapped", []byte("PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n"), "192.0.2.1:1", "[::1]:2"},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), "real", "real"},
		{"v1 UNKNOWN with junk", []byte("PROXY UNKNOWN ffff::1 ffff::2 a b c d e f\r\n"), "real", "real"},
		{"v1 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
			"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"},
		{"v2 TCP4", v2(cmdProxy, famTCP4, addrs4("192.0.2.1", "198.51.100.2", 56324, 443)), "192.0.2.1:56324", "198.51.100.2:443"},
		{"v2 TCP6", v2(cmdProxy, famTCP6, addrs6("2001:db8::1", "2001:db8::2", 56324, 443)), "[2001:db8::1]:56324", "[2001:db8::2]:443"},
		{"v2 TCP4 with TLVs", v2(cmdProxy, famTCP4, addrs4("192.0.2.1", "198.51.100.2", 1, 2), tlv(0x01, "h2"), tlv(0x02, "example.com"), tlv(0x04, "")),
			"192.0.2.1:1", "198.51.100.2:2"},
		{"v2 TCP6 with a large TLV", v2(cmdProxy, famTCP6, addrs6("2001:db8::1", "2001:db8::2", 1, 2), tlv(0xEE, strings.Repeat("x", 3000))),
			"[2001:db8::1]:1", "[2001:db8::2]:2"},
		{"v2 LOCAL", v2(cmdLocal, famUnspec, nil), "real", "real"},
		{"v2 LOCAL with addresses", v2(cmdLocal, famTCP4, addrs4("192.0.2.1", "198.51.100.2", 1, 2)), "real", "real"},
		{"v2 UNSPEC", v2(cmdProxy, famUnspec, nil), "real", "real"},
		{"v2 UNIX", v2(cmdProxy, famUnixStrm, make([]byte, 216)), "real", "real"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append(append([]byte(nil), tt.in...), "GET / HTTP/1.1\r\n"...)
			h, n, need, err := parseHeader(in)
			if err != nil || need != 0 {
				t.Fatalf("parseHeader: need %d, err %v", need, err)
			}
			if n != len(tt.in) {
				t.Errorf("header length %d, want %d", n, len(tt.in))
			}
			if src, dst := addrString(h.src), addrString(h.dst); src != tt.src || dst != tt.dst {
				t.Errorf("addresses %s -> %s, want %s -> %s", src, dst, tt.src, tt.dst)
			}
			// Every proper prefix asks for more instead of failing.
			for i := range len(tt.in) {
				if _, _, need, err := parseHeader(tt.in[:i]); err != nil || need <= 0 {
					t.Fatalf("prefix of %d bytes: need %d, err %v", i, need, err)
				}
			}
		})
	}
}

func TestParseHeaderErrors(t *testing.T) {
	good4 := addrs4("192.0.2.1", "198.51.100.2", 1, 2)
	badVersion := v2(cmdProxy, famTCP4, good4)
	badVersion[12] = 0x11
	tests := []struct {
		name string
		in   []byte
	}{
		{"HTTP request", []byte("GET / HTTP/1.1\r\n")},
		{"TLS", []byte{0x16, 0x03, 0x01}},
		{"early mismatch", []byte("PRX")},
		{"v1 lower case", []byte("proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n")},
		{"v1 no space", []byte("PROXY\r\n")},
		{"v1 LF only", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n")},
		{"v1 too long", []byte("PROXY UNKNOWN " + strings.Repeat("x", 100))},
		{"v1 bad protocol", []byte("PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n")},
		{"v1 missing port", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n")},
		{"v1 extra field", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n")},
		{"v1 double space", []byte("PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n")},
		{"v1 TCP4 with IPv6", []byte("PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n")},
		{"v1 TCP6 with IPv4", []byte("PROXY TCP6 192.0.2.1 2001:db8::1 1 2\r\n")},
		{"v1 bad address", []byte("PROXY TCP4 192.0.2.300 198.51.100.2 1 2\r\n")},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n")},
		{"v1 port too big", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n")},
		{"v1 port leading zero", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n")},
		{"v1 port sign", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 +1 2\r\n")},
		{"v2 bad signature", append([]byte("\r\n\r\n\x00\r\nQUIT\r"), 0x21, 0x11, 0, 0)},
		{"v2 bad version", badVersion},
		{"v2 bad command", v2(0x2, famTCP4, good4)},
		{"v2 TCP4 short", v2(cmdProxy, famTCP4, good4[:11])},
		{"v2 TCP6 short", v2(cmdProxy, famTCP6, good4)},
		{"v2 UDP", v2(cmdProxy, 0x12, good4)},
		{"v2 bad family", v2(cmdProxy, 0x41, good4)},
	}
	for _, tt := range tests {
		if _, _, need, err := parseHeader(tt.in); err == nil {
			t.Errorf("%s: no error (need %d)", tt.name, need)
		}
	}
}

// oneByte is a reader that returns one byte per Read.
type oneByte struct{ r *bytes.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 1)]) }

func TestReadHeaderByteByByte(t *testing.T) {
	for _, in := range [][]byte{
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"),
		v2(cmdProxy, famTCP6, addrs6("2001:db8::1", "2001:db8::2", 1, 2), tlv(0xEE, strings.Repeat("x", 1000))),
	} {
		h, rest, err := readHeader(oneByte{bytes.NewReader(append(in, "rest"...))})
		if err != nil || h.src == nil {
			t.Fatalf("readHeader: %v %v", h, err)
		}
		if len(rest) != 0 {
			t.Errorf("read past the header one byte at a time: %q", rest)
		}
	}
	h, rest, err := readHeader(bytes.NewReader([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\nGET / HTTP/1.1\r\n")))
	if err != nil || h.src == nil || string(rest) != "GET / HTTP/1.1\r\n" {
		t.Errorf("readHeader = %v, %q, %v", h, rest, err)
	}
	if _, _, err := readHeader(bytes.NewReader([]byte("PROXY TCP4"))); err == nil {
		t.Error("truncated header: no error")
	}
}

// v1Line is the version 1 header that says what h says (TCP only).
func v1Line(h header) []byte {
	proto := "TCP6"
	if h.src.IP.To4() != nil && h.dst.IP.To4() != nil {
		proto = "TCP4"
	}
	src, dst := h.src.AddrPort(), h.dst.AddrPort()
	if proto == "TCP6" {
		// A v4 address in a TCP6 header is spelled mapped.
		src = netip.AddrPortFrom(netip.AddrFrom16(src.Addr().As16()), src.Port())
		dst = netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
	}
	return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", proto, src.Addr(), dst.Addr(), src.Port(), dst.Port())
}

// v2Block is the version 2 header that says what h says (TCP only),
// with tlvs after the addresses.
func v2Block(h header, tlvs []byte) []byte {
	src, dst := h.src.AddrPort(), h.dst.AddrPort()
	var fam byte
	var addrs []byte
	if src.Addr().Is4() && dst.Addr().Is4() {
		fam = famTCP4
		s, d := src.Addr().As4(), dst.Addr().As4()
		addrs = append(s[:], d[:]...)
	} else {
		fam = famTCP6
		s, d := src.Addr().As16(), dst.Addr().As16()
		addrs = append(s[:], d[:]...)
	}
	addrs = binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(addrs, src.Port()), dst.Port())
	return v2(cmdProxy, fam, addrs, tlvs)
}

func sameHeader(a, b header) bool {
	return addrString(a.src) == addrString(b.src) && addrString(a.dst) == addrString(b.dst)
}

// FuzzParseHeader checks parseHeader on any bytes, and readHeader, which
// calls it as bytes arrive, with every kind of header among the seeds: v1
// TCP4, TCP6 and UNKNOWN; v2 LOCAL, PROXY over TCP4, TCP6, UNIX, UNSPEC
// and unsupported families, with and without TLVs. A header it accepts
// has a length within the input and both addresses or neither; every
// proper prefix of it asks for more bytes instead of failing, and what
// follows it changes nothing; read one byte at a time it comes out the
// same, with the rest of the input read after it or left unread; its addresses are the ones
// on the wire; and re-encoded as v1 and as v2 (its TLV bytes kept) it
// parses to the same addresses.
func FuzzParseHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 65535 0\r\nGET /"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("PROXY UNKNOWN ffff::1 ffff::2 a b c d e f\r\n"))
	f.Add(v2(cmdProxy, famTCP4, addrs4("192.0.2.1", "198.51.100.2", 1, 2), tlv(1, "x")))
	f.Add(v2(cmdProxy, famTCP6, addrs6("2001:db8::1", "::ffff:192.0.2.1", 1, 2), tlv(0x02, "example.com"), tlv(0xEE, strings.Repeat("x", 300))))
	f.Add(v2(cmdProxy, famUnixStrm, make([]byte, 216)))
	f.Add(v2(cmdProxy, famUnspec, nil))
	f.Add(v2(cmdProxy, 0x12, addrs4("192.0.2.1", "198.51.100.2", 1, 2)))
	f.Add(v2(cmdLocal, famUnspec, nil))
	f.Add(v2(cmdLocal, famTCP4, addrs4("192.0.2.1", "198.51.100.2", 1, 2)))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, need, err := parseHeader(b)
		r := bytes.NewReader(b)
		rh, rest, rerr := readHeader(oneByte{r})
		rest = append(rest, b[len(b)-r.Len():]...) // and what it left unread
		switch {
		case err != nil:
			if rerr == nil {
				t.Fatalf("parseHeader: %v, but readHeader accepted %v", err, rh)
			}
			return
		case need > 0:
			if n != 0 {
				t.Errorf("need %d with length %d", need, n)
			}
			if rerr == nil {
				t.Fatalf("parseHeader needs %d more bytes, but readHeader accepted %v", need, rh)
			}
			return
		case n <= 0 || n > len(b):
			t.Fatalf("header length %d of %d bytes", n, len(b))
		case (h.src == nil) != (h.dst == nil):
			t.Fatalf("half an address pair: %v", h)
		}
		if rerr != nil || !sameHeader(rh, h) || !bytes.Equal(rest, b[n:]) {
			t.Fatalf("read one byte at a time: %v, rest %q, %v; parseHeader: %v, rest %q", rh, rest, rerr, h, b[n:])
		}
		for i := range n {
			if _, _, need, err := parseHeader(b[:i]); err != nil || need <= 0 {
				t.Fatalf("prefix of %d bytes of a %d-byte header: need %d, err %v", i, n, need, err)
			}
		}
		if h2, n2, need2, err2 := parseHeader(b[:n]); err2 != nil || need2 != 0 || n2 != n || !sameHeader(h2, h) {
			t.Fatalf("the header alone: %v, %d, need %d, %v; with what follows: %v", h2, n2, need2, err2, h)
		}
		if h.src == nil {
			return
		}

		// The addresses are the ones on the wire.
		var tlvs []byte
		if b[0] == v1Prefix[0] {
			f := strings.Split(string(b[len(v1Prefix):n-2]), " ")
			for i, a := range []*net.TCPAddr{h.src, h.dst} {
				want := netip.MustParseAddr(f[1+i]).Unmap()
				if a.AddrPort().Addr() != want || strconv.Itoa(a.Port) != f[3+i] {
					t.Fatalf("v1 address %d: %v, want %v port %s", i, a, want, f[3+i])
				}
			}
		} else {
			body := b[v2FixedLen:n]
			alen := 12
			if b[13] == famTCP6 {
				alen = 36
			}
			w := alen/2 - 2 // bytes of one address
			for i, a := range []*net.TCPAddr{h.src, h.dst} {
				ip, _ := netip.AddrFromSlice(body[i*w : (i+1)*w])
				port := binary.BigEndian.Uint16(body[2*w+2*i:])
				if a.AddrPort() != netip.AddrPortFrom(ip.Unmap(), port) {
					t.Fatalf("v2 address %d: %v, want %v:%d", i, a, ip.Unmap(), port)
				}
			}
			tlvs = body[alen:]
		}

		// Re-encoded, in both versions, it says the same.
		for _, enc := range [][]byte{v1Line(h), v2Block(h, tlvs)} {
			h2, n2, need2, err2 := parseHeader(enc)
			if err2 != nil || need2 != 0 || n2 != len(enc) || !sameHeader(h2, h) {
				t.Fatalf("%v re-encoded as %q parses to %v, %d, need %d, %v", h, enc, h2, n2, need2, err2)
			}
		}
	})
}
