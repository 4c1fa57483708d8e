package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"taipan/internal/httpsyntax"

	"golang.org/x/sys/unix"
)

// fuzzIOTimeout bounds every read of a fuzz iteration, so that a Reader
// that waits for bytes that will never come fails instead of hanging.
const fuzzIOTimeout = 10 * time.Second

// fileContent is what the file passed with FILE frames holds.
const fileContent = "passed with SCM_RIGHTS"

// socketPair returns the Go side of a connected unix stream socket pair,
// as a worker's socket is, and the peer's raw descriptor.
func socketPair(t testing.TB) (*net.UnixConn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "go-side")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		t.Fatal(err)
	}
	return c.(*net.UnixConn), fds[1]
}

// passFile creates the file FILE frames carry, once per fuzz process.
func passFile(f *testing.F) *os.File {
	p := filepath.Join(f.TempDir(), "passed")
	if err := os.WriteFile(p, []byte(fileContent), 0o600); err != nil {
		f.Fatal(err)
	}
	file, err := os.Open(p)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { file.Close() })
	return file
}

// segment is bytes a worker writes in one call, with a file descriptor
// attached when fd >= 0.
type segment struct {
	b  []byte
	fd int
}

// send writes the segments to the peer descriptor as a worker would
// (sendmsg with SCM_RIGHTS for a FILE frame), then shuts its write side
// so that the Reader sees end of file. It stops at the first failure: the
// Reader may have stopped reading.
func send(peer int, segs []segment) {
	defer unix.Shutdown(peer, unix.SHUT_WR)
	for _, s := range segs {
		if s.fd >= 0 {
			if err := unix.Sendmsg(peer, s.b, unix.UnixRights(s.fd), nil, 0); err != nil {
				return
			}
			continue
		}
		for b := s.b; len(b) > 0; {
			n, err := unix.Write(peer, b)
			if err != nil {
				return
			}
			b = b[n:]
		}
	}
}

// refFrame is a frame as this test reads the stream itself, from the
// table in docs/protocol.md: a 12-byte little-endian header (length, kind,
// flags, two reserved zero bytes, stream) and length bytes of payload.
type refFrame struct {
	h       Header
	payload []byte
	raw     []byte // header and payload, as they are in the stream
}

// splitFrames cuts stream into the complete, valid frames it starts with,
// and returns what follows them: a partial frame, an invalid header, or
// nothing.
func splitFrames(stream []byte) (frames []refFrame, rest []byte) {
	for len(stream) >= HeaderSize {
		length := binary.LittleEndian.Uint32(stream[0:4])
		if stream[6] != 0 || stream[7] != 0 || length > MaxPayload {
			break
		}
		end := HeaderSize + int(length)
		if end > len(stream) {
			break
		}
		frames = append(frames, refFrame{
			h: Header{
				Length: length,
				Kind:   Kind(stream[4]),
				Flags:  stream[5],
				Stream: binary.LittleEndian.Uint32(stream[8:12]),
			},
			payload: stream[HeaderSize:end],
			raw:     stream[:end],
		})
		stream = stream[end:]
	}
	return frames, stream
}

// segments turns frames and the rest of a stream into what a worker
// writes: each FILE frame with the descriptor of file attached.
func segments(frames []refFrame, rest []byte, file *os.File) []segment {
	var segs []segment
	var plain []byte
	for _, fr := range frames {
		if fr.h.Kind != KindFile {
			plain = append(plain, fr.raw...)
			continue
		}
		if len(plain) > 0 {
			segs = append(segs, segment{b: plain, fd: -1})
			plain = nil
		}
		segs = append(segs, segment{b: fr.raw, fd: int(file.Fd())})
	}
	plain = append(plain, rest...)
	return append(segs, segment{b: plain, fd: -1})
}

// readerBufLimit is the most buffer a Reader may hold after receiving
// received bytes: its initial 64 KiB, or twice what has arrived. A length
// announced in a header must not be allocated before the bytes arrive.
func readerBufLimit(received int) int {
	return max(64<<10, 2*(received+HeaderSize))
}

// checkPayload decodes a payload the way the Go side does for its kind,
// and checks what the decoders promise.
func checkPayload(t *testing.T, fr *Frame) {
	switch fr.Kind {
	case KindHead:
		h, err := DecodeHead(fr.Payload)
		if err != nil {
			return
		}
		for _, kv := range h.Header {
			if !httpsyntax.IsToken(kv[0]) || strings.ContainsAny(kv[1], "\r\n\x00") {
				t.Fatalf("HEAD: accepted unsafe header %q", kv)
			}
		}
		if h.Code < 100 || !strings.HasPrefix(h.Status, strconv.Itoa(h.Code)+" ") {
			t.Fatalf("HEAD: accepted status %q (code %d)", h.Status, h.Code)
		}
		// Reusing a ResponseHead, as the bridge does, gives the same result.
		reused := &ResponseHead{Header: [][2]string{{"Stale", "header"}}}
		if err := DecodeHeadInto(fr.Payload, reused); err != nil || !reflect.DeepEqual(reused, h) {
			t.Fatalf("HEAD: DecodeHeadInto = %+v, %v; DecodeHead = %+v", reused, err, h)
		}
	case KindWSAccept:
		if _, n, err := Unmarshal(fr.Payload); err == nil && (n <= 0 || n > len(fr.Payload)) {
			t.Fatalf("WS_ACCEPT: Unmarshal used %d of %d bytes", n, len(fr.Payload))
		}
	case KindFile:
		if fr.File == nil {
			t.Fatal("FILE frame without its file")
		}
		buf := make([]byte, len(fileContent)+1)
		n, _ := fr.File.ReadAt(buf, 0)
		fr.File.Close()
		if string(buf[:n]) != fileContent {
			t.Fatalf("FILE frame's file reads %q, want %q", buf[:n], fileContent)
		}
	}
}

// FuzzReader feeds a byte stream, as a worker would write it to its
// socket, to the Reader Go reads workers with, and decodes every frame's
// payload as the Go side does for its kind. Frames must come out exactly
// as a reading of docs/protocol.md cuts the stream, FILE frames with the
// descriptor sent with them; an invalid header or a truncated frame must
// end the stream with an error; and the Reader's buffer must grow with the
// bytes that arrive, not with the lengths headers announce.
func FuzzReader(f *testing.F) {
	file := passFile(f)
	head := []byte("\x1e\x00\x00\x00(\x02\x00\x00\x00u\x06\x00\x00\x00200 OK[\x00\x00\x00\x00body")
	accept := []byte(")\x02N[\x01\x00\x00\x00)\x02z\x01az\x01b")
	var seed []byte
	seed = AppendHeader(seed, Header{Length: 10, Kind: KindReady})
	seed = append(seed, `{"pid": 1}`...)
	seed = AppendHeader(seed, Header{Length: uint32(len(head)), Kind: KindHead, Stream: 1})
	seed = append(seed, head...)
	seed = AppendHeader(seed, Header{Length: 3, Kind: KindBody, Flags: FlagEnd, Stream: 1})
	seed = append(seed, "abc"...)
	seed = AppendHeader(seed, Header{Length: 16, Kind: KindFile, Stream: 2})
	seed = append(seed, make([]byte, 16)...)
	seed = AppendHeader(seed, Header{Length: 5, Kind: KindLog, Stream: 0})
	seed = append(seed, "\x14oops"...)
	seed = AppendHeader(seed, Header{Kind: KindPong})
	seed = AppendHeader(seed, Header{Length: uint32(len(accept)), Kind: KindWSAccept, Stream: 3})
	seed = append(seed, accept...)
	seed = AppendHeader(seed, Header{Length: 2, Kind: KindWSSend, Flags: FlagText, Stream: 3})
	seed = append(seed, "hi"...)
	seed = AppendHeader(seed, Header{Length: 4, Kind: KindWSAck, Stream: 3})
	seed = append(seed, 1, 0, 0, 0)
	seed = AppendHeader(seed, Header{Length: 2, Kind: KindWSClose, Flags: FlagEnd, Stream: 3})
	seed = append(seed, 0xe8, 0x03)
	seed = AppendHeader(seed, Header{Length: 4, Kind: KindAbort, Stream: 4})
	seed = append(seed, "boom"...)
	f.Add(seed)
	f.Add([]byte("\x00\x00\x00\x00\x13\x00\x01\x00\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		frames, rest := splitFrames(stream)
		conn, peer := socketPair(t)
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			send(peer, segments(frames, rest, file))
		}()
		defer func() {
			conn.Close() // unblocks a sender the Reader stopped reading
			<-sent
			unix.Close(peer)
		}()
		conn.SetReadDeadline(time.Now().Add(fuzzIOTimeout))

		r := NewReader(conn)
		defer r.Close()
		for i := 0; ; i++ {
			fr, err := r.Next()
			if limit := readerBufLimit(len(stream)); len(r.buf) > limit {
				t.Fatalf("frame %d: the Reader holds a %d-byte buffer after receiving %d bytes (limit %d)",
					i, len(r.buf), len(stream), limit)
			}
			if i == len(frames) {
				if err == nil {
					t.Fatalf("frame %d: the Reader returned %v frame %+v past the end of the valid frames (rest %q)", i, fr.Kind, fr.Header, rest)
				}
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("the Reader waited for more than the stream holds: %v", err)
				}
				if len(rest) == 0 && !errors.Is(err, io.EOF) {
					t.Fatalf("clean end of stream: got %v, want io.EOF", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("frame %d (%+v): %v", i, frames[i].h, err)
			}
			want := frames[i]
			if fr.Header != want.h || !bytes.Equal(fr.Payload, want.payload) {
				t.Fatalf("frame %d: got %+v with %d bytes, want %+v with %d bytes", i, fr.Header, len(fr.Payload), want.h, len(want.payload))
			}
			if (fr.File != nil) != (fr.Kind == KindFile) {
				t.Fatalf("frame %d: %v frame with file %v", i, fr.Kind, fr.File)
			}
			checkPayload(t, fr)
			fr.Release()
		}
	})
}

// latin1UTF8 is the UTF-8 spelling of the str whose code points are the
// bytes of s: what Python sees of a "bytes as str" value.
func latin1UTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}

// decodeDict reads a marshal dict with Unmarshal, item by item: the
// environ of a REQUEST frame, in order.
func decodeDict(b []byte) ([][2]Value, error) {
	if len(b) == 0 || b[0] != mDict {
		return nil, errors.New("not a dict")
	}
	var items [][2]Value
	off := 1
	for {
		if off >= len(b) {
			return nil, errors.New("dict not terminated")
		}
		if b[off] == mNull {
			off++
			break
		}
		var kv [2]Value
		for i := range kv {
			v, n, err := Unmarshal(b[off:])
			if err != nil {
				return nil, err
			}
			kv[i] = v
			off += n
		}
		items = append(items, kv)
	}
	if off != len(b) {
		return nil, errors.New("bytes after the dict")
	}
	return items, nil
}

// httpKey is the environ key AddHTTP makes of a header name.
func httpKey(name string) string {
	return "HTTP_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// FuzzEncodeRoundTrip builds frames with the encoders, a REQUEST whose
// environ uses every EnvironEncoder method and a frame of any kind, sends
// them over a socket pair and reads them back with the Reader: headers and
// payloads must come back as built, and the environ must decode, item by
// item, to the values that went in (strings as latin-1 str, as PEP 3333
// wants).
func FuzzEncodeRoundTrip(f *testing.F) {
	file := passFile(f)
	f.Add(uint32(7), uint8(KindBody), uint8(FlagEnd), "Content-Type", "text/plain; charset=caf\xe9", []byte("body"), int32(8080))
	f.Add(uint32(0), uint8(KindFile), uint8(0), "X", strings.Repeat("v", 300), make([]byte, 16), int32(-1))
	f.Add(uint32(1<<32-1), uint8(0xff), uint8(0xff), "", "\xff\x00", []byte(nil), int32(0))
	f.Fuzz(func(t *testing.T, stream uint32, kind, flags uint8, key, value string, body []byte, port int32) {
		// The header alone.
		h := Header{Length: stream, Kind: Kind(kind), Flags: flags, Stream: ^stream}
		got, err := ParseHeader(AppendHeader(nil, h))
		if h.Length <= MaxPayload && (err != nil || got != h) {
			t.Fatalf("ParseHeader(AppendHeader(%+v)) = %+v, %v", h, got, err)
		}
		if h.Length > MaxPayload && err == nil {
			t.Fatalf("ParseHeader accepted length %d", h.Length)
		}

		// An environ with every kind of value, and what it must decode to.
		var e EnvironEncoder
		e.Reset()
		var want [][2]Value
		e.Add(key, value)
		want = append(want, [2]Value{latin1UTF8(key), latin1UTF8(value)})
		if httpsyntax.IsToken(key) {
			e.AddHTTP(key, value)
			want = append(want, [2]Value{httpKey(key), latin1UTF8(value)})
		}
		e.AddBytes(key, body)
		want = append(want, [2]Value{latin1UTF8(key), latin1UTF8(string(body))})
		text := strings.ToValidUTF8(value, "\uFFFD")
		e.AddUTF8(key, text)
		want = append(want, [2]Value{latin1UTF8(key), text})
		e.AddBytesValue(key, body)
		want = append(want, [2]Value{latin1UTF8(key), append([]byte(nil), body...)})
		e.AddNone(key)
		want = append(want, [2]Value{latin1UTF8(key), nil})
		e.AddBool(key, port%2 == 0)
		want = append(want, [2]Value{latin1UTF8(key), port%2 == 0})
		e.AddIntPair(key, port, -port)
		want = append(want, [2]Value{latin1UTF8(key), []Value{int64(port), int64(-port)}})
		e.AddHostPort(key, value, port)
		want = append(want, [2]Value{latin1UTF8(key), []Value{latin1UTF8(value), int64(port)}})
		mark := e.BeginList(key)
		items := []Value{}
		if isASCII(key) {
			e.AppendHeaderItem(key, value)
			items = append(items, []Value{append([]byte(nil), strings.ToLower(key)...), append([]byte(nil), value...)})
		}
		e.AppendStrItem(text)
		items = append(items, text)
		e.EndList(mark, len(items))
		want = append(want, [2]Value{latin1UTF8(key), items})
		pairs := e.Pairs()
		environ := append([]byte(nil), e.Bytes()...)
		var copied EnvironEncoder
		copied.Reset()
		copied.AddPairs(pairs)
		if !bytes.Equal(copied.Bytes(), environ) {
			t.Fatal("AddPairs(Pairs()) does not rebuild the environ")
		}

		// The frames: a REQUEST, a frame of the fuzzed kind (FILE with a
		// descriptor, as the worker sends it), and an empty PING.
		reqFlags := flags & (FlagBodyFile | FlagWebSocket)
		request := AppendRequest(nil, stream, reqFlags, environ, body)
		other := AppendHeader(nil, Header{Length: uint32(len(body)), Kind: Kind(kind), Flags: flags, Stream: stream})
		other = append(other, body...)
		ping := AppendHeader(nil, Header{Kind: KindPing})
		segs := []segment{{b: request, fd: -1}, {b: other, fd: -1}, {b: ping, fd: -1}}
		if Kind(kind) == KindFile {
			segs[1].fd = int(file.Fd())
		}
		wantFrames := []Header{
			{Length: uint32(4 + len(environ) + len(body)), Kind: KindRequest, Flags: reqFlags, Stream: stream},
			{Length: uint32(len(body)), Kind: Kind(kind), Flags: flags, Stream: stream},
			{Kind: KindPing},
		}

		conn, peer := socketPair(t)
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			send(peer, segs)
		}()
		defer func() {
			conn.Close()
			<-sent
			unix.Close(peer)
		}()
		conn.SetReadDeadline(time.Now().Add(fuzzIOTimeout))
		r := NewReader(conn)
		defer r.Close()
		for i, wh := range wantFrames {
			fr, err := r.Next()
			if err != nil {
				t.Fatalf("frame %d (%+v): %v", i, wh, err)
			}
			if fr.Header != wh {
				t.Fatalf("frame %d: header %+v, want %+v", i, fr.Header, wh)
			}
			switch i {
			case 0:
				p := fr.Payload
				if len(p) < 4 || int(binary.LittleEndian.Uint32(p)) != len(environ) {
					t.Fatalf("REQUEST: environ length prefix wrong in %d-byte payload", len(p))
				}
				env, rest := p[4:4+len(environ)], p[4+len(environ):]
				if !bytes.Equal(rest, body) {
					t.Fatalf("REQUEST body %q, want %q", rest, body)
				}
				items, err := decodeDict(env)
				if err != nil {
					t.Fatalf("environ %q does not decode: %v", env, err)
				}
				if !reflect.DeepEqual(items, want) {
					t.Fatalf("environ decodes to\n%#v\nwant\n%#v", items, want)
				}
			case 1:
				if !bytes.Equal(fr.Payload, body) {
					t.Fatalf("%v payload %q, want %q", fr.Kind, fr.Payload, body)
				}
				if fr.Kind == KindFile {
					checkPayload(t, fr)
				}
			}
			fr.Release()
		}
		if fr, err := r.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last frame: %v, %v; want io.EOF", fr, err)
		}
	})
}
