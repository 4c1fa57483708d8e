package wire

import (
	"bytes"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"taipan/internal/httpsyntax"
	"testing"

	"golang.org/x/sys/unix"
)

// python returns an interpreter to check encodings against real marshal.
func python(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("TAIPAN_TEST_PYTHON"), "/usr/bin/python3", "python3"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("no python3 to check marshal encodings against")
	return ""
}

// runPython runs code with data on stdin and returns stdout.
func runPython(t testing.TB, code string, stdin []byte) string {
	t.Helper()
	cmd := exec.Command(python(t), "-c", code)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("python failed: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	return string(out)
}

func TestHeaderRoundTrip(t *testing.T) {
	h := Header{Length: 1234, Kind: KindHead, Flags: FlagEnd, Stream: 0xdeadbeef}
	b := AppendHeader(nil, h)
	if len(b) != HeaderSize {
		t.Fatalf("header is %d bytes, want %d", len(b), HeaderSize)
	}
	got, err := ParseHeader(b)
	if err != nil || got != h {
		t.Fatalf("ParseHeader = %+v, %v; want %+v", got, err, h)
	}
	b[6] = 1
	if _, err := ParseHeader(b); err == nil {
		t.Fatal("reserved byte set: want an error")
	}
}

// The environ Go writes must load in real Python as the dict we meant,
// including latin-1 "bytes as str" values.
func TestEnvironLoadsInPython(t *testing.T) {
	var e EnvironEncoder
	e.Reset()
	e.Add("REQUEST_METHOD", "GET")
	e.AddBytes("PATH_INFO", []byte("/caf\xc3\xa9/\xff"))
	e.Add("HTTP_X_LONG", strings.Repeat("x", 300))
	e.Add("EMPTY", "")
	e.AddHTTP("x-Forwarded-for", "1.2.3.4")
	enc := e.Bytes()
	out := runPython(t, `
import marshal, sys
d = marshal.loads(sys.stdin.buffer.read())
for k in sorted(d):
    print(k, d[k].encode("latin-1").hex(), type(d[k]).__name__)
`, enc)
	want := strings.Join([]string{
		"EMPTY  str",
		"HTTP_X_FORWARDED_FOR " + hex.EncodeToString([]byte("1.2.3.4")) + " str",
		"HTTP_X_LONG " + hex.EncodeToString([]byte(strings.Repeat("x", 300))) + " str",
		"PATH_INFO " + hex.EncodeToString([]byte("/caf\xc3\xa9/\xff")) + " str",
		"REQUEST_METHOD " + hex.EncodeToString([]byte("GET")) + " str",
	}, "\n") + "\n"
	if out != want {
		t.Fatalf("python decoded:\n%s\nwant:\n%s", out, want)
	}
}

// An ASGI scope Go writes loads in real Python with the types the ASGI spec
// names: str, bytes, a list of bytes pairs, (host, port) tuples, None.
func TestScopeLoadsInPython(t *testing.T) {
	var e EnvironEncoder
	e.Reset()
	e.Add("type", "http")
	e.AddUTF8("path", "/café/✓")
	e.AddBytesValue("raw_path", []byte("/caf%C3%A9/%E2%9C%93"))
	e.AddBytesValue("query_string", nil)
	mark := e.BeginList("headers")
	e.AppendHeaderItem("X-Repeat", "one")
	e.AppendHeaderItem("X-REPEAT", "tw\xe9")
	e.EndList(mark, 2)
	mark = e.BeginList("subprotocols")
	e.AppendStrItem("chat.v1")
	e.EndList(mark, 1)
	e.AddHostPort("client", "127.0.0.1", 54321)
	e.AddNone("server")
	out := runPython(t, `
import marshal, sys
d = marshal.loads(sys.stdin.buffer.read())
print(repr(sorted(d.items())))
`, e.Bytes())
	want := "[('client', ('127.0.0.1', 54321)), ('headers', [(b'x-repeat', b'one'), (b'x-repeat', b'tw\\xe9')]), " +
		"('path', '/café/✓'), ('query_string', b''), ('raw_path', b'/caf%C3%A9/%E2%9C%93'), ('server', None), " +
		"('subprotocols', ['chat.v1']), ('type', 'http')]\n"
	if out != want {
		t.Fatalf("python decoded:\n%s\nwant:\n%s", out, want)
	}
}

// Heads produced by real marshal.dumps, in every format version, decode.
func TestDecodeHeadFromPython(t *testing.T) {
	out := runPython(t, `
import marshal, struct, sys
for v in (2, 3, 4):
    head = marshal.dumps(("404 Not Found", [("Content-Type", "text/plain"), ("X-Name", "caf\u00e9"), ("Set-Cookie", "a=1"), ("Set-Cookie", "a=1")]), v)
    sys.stdout.buffer.write(struct.pack("<I", len(head)) + head + b"body")
    sys.stdout.buffer.write(b"\n--\n")
`, nil)
	parts := strings.Split(out, "\n--\n")
	for i, part := range parts[:3] {
		h, err := DecodeHead([]byte(part))
		if err != nil {
			t.Fatalf("marshal version %d: %v", i+2, err)
		}
		want := &ResponseHead{Code: 404, Status: "404 Not Found", Header: [][2]string{
			{"Content-Type", "text/plain"}, {"X-Name", "caf\xe9"}, {"Set-Cookie", "a=1"}, {"Set-Cookie", "a=1"},
		}, Body: []byte("body")}
		if !reflect.DeepEqual(h, want) {
			t.Fatalf("marshal version %d: got %+v, want %+v", i+2, h, want)
		}
	}
}

// ASGI apps' headers are bytes; the worker passes them through as they are.
func TestDecodeHeadBytes(t *testing.T) {
	out := runPython(t, `
import marshal, struct, sys
h = marshal.dumps(("200 OK", [(b"content-type", b"text/plain; charset=\xe9"), [b"x-list", b"1"]]), 2)
sys.stdout.buffer.write(struct.pack("<I", len(h)) + h + b"body")
`, nil)
	h, err := DecodeHead([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"content-type", "text/plain; charset=\xe9"}, {"x-list", "1"}}
	if h.Code != 200 || !reflect.DeepEqual(h.Header, want) || string(h.Body) != "body" {
		t.Fatalf("got %+v", h)
	}
}

// Header values lose leading and trailing whitespace (RFC 9110 section
// 5.5): Django's cookies start with a space.
func TestDecodeHeadTrimsValues(t *testing.T) {
	out := runPython(t, `
import marshal, struct, sys
h = marshal.dumps(("200 OK", [("Set-Cookie", " a=1; Path=/"), ("X-Tab", "\tv \t"), ("X-Inner", "a  b")]), 2)
sys.stdout.buffer.write(struct.pack("<I", len(h)) + h)
`, nil)
	h, err := DecodeHead([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"Set-Cookie", "a=1; Path=/"}, {"X-Tab", "v"}, {"X-Inner", "a  b"}}
	if !reflect.DeepEqual(h.Header, want) {
		t.Fatalf("got %q, want %q", h.Header, want)
	}
}

func TestDecodeHeadRejects(t *testing.T) {
	cases := map[string]string{
		"CRLF in value":    `("200 OK", [("X-A", "1\r\nX-Injected: 1")])`,
		"LF in value":      `("200 OK", [("X-A", "1\nX")])`,
		"NUL in value":     `("200 OK", [("X-A", "1\x00")])`,
		"space in name":    `("200 OK", [("X A", "1")])`,
		"empty name":       `("200 OK", [("", "1")])`,
		"not latin-1":      `("200 OK", [("X-A", "\u20ac")])`,
		"bad status":       `("OK", [])`,
		"short status":     `("200", [])`,
		"status code text": `("2x0 OK", [])`,
		"int value":        `("200 OK", [("X-A", 1)])`,
		"CRLF in bytes":    `("200 OK", [(b"X-A", b"1\r\nX-Injected: 1")])`,
		"bytes bad name":   `("200 OK", [(b"X A", b"1")])`,
		"headers not list": `("200 OK", None)`,
		"CR in status":     `("200 OK\r\nX: y", [])`,
		"SOH in value":     `("200 OK", [("X-A", "a\x01b")])`,
		"DEL in value":     `("200 OK", [("X-A", "a\x7fb")])`,
		"1xx status":       `("103 Early Hints", [])`,
		"101 status":       `("101 Switching Protocols", [("Upgrade", "x")])`,
	}
	var code strings.Builder
	code.WriteString("import marshal, struct, sys\n")
	for name, expr := range cases {
		code.WriteString("h = marshal.dumps(" + expr + ", 2)\n")
		code.WriteString("sys.stdout.buffer.write(struct.pack('<I', len(h)) + h + b'\\n--" + name + "--\\n')\n")
	}
	out := runPython(t, code.String(), nil)
	for name := range cases {
		marker := "\n--" + name + "--\n"
		i := strings.Index(out, marker)
		if i < 0 {
			t.Fatalf("%s: no output", name)
		}
		// Each payload ends right before its marker; find its start.
		start := 0
		for other := range cases {
			m := "\n--" + other + "--\n"
			if j := strings.Index(out, m); j >= 0 && j+len(m) <= i && j+len(m) > start {
				start = j + len(m)
			}
		}
		if _, err := DecodeHead([]byte(out[start:i])); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func TestUnmarshalRefs(t *testing.T) {
	// marshal version 4 of (s, [(s, s)]) where s is the same interned
	// string uses FLAG_REF and 'r' back-references.
	out := runPython(t, `
import marshal, sys
s = sys.intern("Content-Type")
sys.stdout.buffer.write(marshal.dumps(("200 OK", [(s, s), (s, s)]), 4))
`, nil)
	v, n, err := Unmarshal([]byte(out))
	if err != nil || n != len(out) {
		t.Fatalf("Unmarshal: %v (used %d of %d)", err, n, len(out))
	}
	want := []Value{"200 OK", []Value{[]Value{"Content-Type", "Content-Type"}, []Value{"Content-Type", "Content-Type"}}}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("got %#v, want %#v", v, want)
	}
}

func TestUnmarshalTruncated(t *testing.T) {
	full := []byte("(\x02\x00\x00\x00u\x06\x00\x00\x00200 OK[\x00\x00\x00\x00")
	for i := 0; i < len(full); i++ {
		if _, _, err := Unmarshal(full[:i]); err == nil {
			t.Fatalf("prefix of %d bytes decoded without error", i)
		}
	}
	if _, _, err := Unmarshal(full); err != nil {
		t.Fatal(err)
	}
}

// The Reader reassembles frames split across reads and hands a FILE frame
// the descriptor that travelled with it.
func TestReaderFramesAndFDs(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "a")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer := fds[1]
	defer unix.Close(peer)

	tmp, err := os.CreateTemp(t.TempDir(), "file")
	if err != nil {
		t.Fatal(err)
	}
	tmp.WriteString("file contents")

	big := bytes.Repeat([]byte("b"), 200<<10) // larger than the reader's buffer
	var stream []byte
	stream = AppendHeader(stream, Header{Length: 3, Kind: KindBody, Stream: 7})
	stream = append(stream, "abc"...)
	stream = AppendHeader(stream, Header{Length: uint32(len(big)), Kind: KindBody, Flags: FlagEnd, Stream: 7})
	stream = append(stream, big...)
	// Frames between 8 KiB and 64 KiB that have not fully arrived are read
	// straight into their pooled buffers (nextDirect): exactly their own
	// bytes, whatever is behind them.
	var direct [][]byte
	for i, n := range []int{8<<10 + 1, 64 << 10, 30000, 9000} {
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(i*31 + j%251)
		}
		direct = append(direct, p)
		stream = AppendHeader(stream, Header{Length: uint32(n), Kind: KindBody, Stream: uint32(10 + i)})
		stream = append(stream, p...)
	}
	go func() {
		// Dribble the first frames in small pieces.
		for i := 0; i < len(stream); i += 7000 {
			end := min(i+7000, len(stream))
			unix.Write(peer, stream[i:end])
		}
		fileFrame := AppendHeader(nil, Header{Length: 16, Kind: KindFile, Stream: 9})
		fileFrame = append(fileFrame, make([]byte, 16)...)
		unix.Sendmsg(peer, fileFrame, unix.UnixRights(int(tmp.Fd())), nil, 0)
	}()

	r := NewReader(c.(*net.UnixConn))
	f1, err := r.Next()
	if err != nil || string(f1.Payload) != "abc" || f1.Stream != 7 {
		t.Fatalf("frame 1: %+v %v", f1, err)
	}
	f2, err := r.Next()
	if err != nil || !bytes.Equal(f2.Payload, big) || f2.Flags != FlagEnd {
		t.Fatalf("frame 2: len %d, %v", len(f2.Payload), err)
	}
	for i, want := range direct {
		fd, err := r.Next()
		if err != nil || !bytes.Equal(fd.Payload, want) || fd.Stream != uint32(10+i) {
			t.Fatalf("direct frame %d: stream %d, %d bytes (want %d), %v", i, fd.Stream, len(fd.Payload), len(want), err)
		}
		fd.Release()
	}
	f3, err := r.Next()
	if err != nil || f3.Kind != KindFile || f3.File == nil {
		t.Fatalf("frame 3: %+v %v", f3, err)
	}
	defer f3.File.Close()
	buf := make([]byte, 64)
	n, _ := f3.File.ReadAt(buf, 0)
	if string(buf[:n]) != "file contents" {
		t.Fatalf("passed file reads %q", buf[:n])
	}
}

func FuzzDecodeHead(f *testing.F) {
	f.Add([]byte("\x1e\x00\x00\x00(\x02\x00\x00\x00u\x06\x00\x00\x00200 OK[\x00\x00\x00\x00body"))
	f.Add([]byte("\x05\x00\x00\x00r\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHead(b)
		if err != nil {
			return
		}
		for _, kv := range h.Header {
			if !httpsyntax.IsToken(kv[0]) || strings.ContainsAny(kv[1], "\r\n\x00") {
				t.Fatalf("accepted unsafe header %q", kv)
			}
		}
	})
}

// BenchmarkDecodeHeadHello decodes the HEAD a hello-world WSGI app's worker
// sends (marshal version 2, as head_frame writes it).
func BenchmarkDecodeHeadHello(b *testing.B) {
	out := runPython(b, `
import marshal, struct, sys
h = marshal.dumps(("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")]), 2)
sys.stdout.buffer.write(struct.pack("<I", len(h)) + h + b"Hello, World!")
`, nil)
	payload := []byte(out)
	var h ResponseHead
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeHeadInto(payload, &h); err != nil {
			b.Fatal(err)
		}
	}
}
