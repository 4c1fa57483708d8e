package uwsgi

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net/http"
	"strconv"
	"testing"

	"taipan/internal/cgivars/cgivarstest"
)

// refPacket is a uwsgi request packet as this test reads it, from the
// format in the package comment: modifier1 0 (or 30, WSGI with SCRIPT_NAME
// stripped from PATH_INFO), the little-endian uint16
// size of the vars block, modifier2, then the block of uint16
// length-prefixed keys and values; the body follows.
type refPacket struct {
	vars      [][2]string
	bodyStart int
}

// parsePacket reads the packet at the start of b; ok is false when the
// header or the vars block is missing, truncated or malformed.
func parsePacket(b []byte) (p refPacket, ok bool) {
	if len(b) < 4 || !wsgiModifier(b[0]) {
		return p, false
	}
	size := int(binary.LittleEndian.Uint16(b[1:3]))
	if len(b) < 4+size {
		return p, false
	}
	block := b[4 : 4+size]
	field := func() (string, bool) {
		if len(block) < 2 {
			return "", false
		}
		n := int(binary.LittleEndian.Uint16(block))
		if len(block) < 2+n {
			return "", false
		}
		s := string(block[2 : 2+n])
		block = block[2+n:]
		return s, true
	}
	for len(block) > 0 {
		k, ok1 := field()
		v, ok2 := field()
		if !ok1 || !ok2 {
			return p, false
		}
		p.vars = append(p.vars, [2]string{k, v})
	}
	p.bodyStart = 4 + size
	return p, true
}

// notUWSGI reports whether b is cut short before the end of its vars block
// or has a modifier1 other than 0 or 30: the server cannot tell what it is
// talking to, and should not answer.
func notUWSGI(b []byte) bool {
	return len(b) < 4 || !wsgiModifier(b[0]) || len(b) < 4+int(binary.LittleEndian.Uint16(b[1:3]))
}

// wsgiModifier reports whether modifier1 m is one the server runs: 0, or
// 30 (nginx's uwsgi_modifier1 30).
func wsgiModifier(m byte) bool { return m == 0 || m == 30 }

// last is the value of the last variable named name, and whether there
// is one; with nonEmpty, of the last one with a value.
func (p refPacket) last(name string, nonEmpty bool) (string, bool) {
	for i := len(p.vars) - 1; i >= 0; i-- {
		if p.vars[i][0] == name && (!nonEmpty || p.vars[i][1] != "") {
			return p.vars[i][1], true
		}
	}
	return "", false
}

// plainDecimal parses s when it is nothing but a few decimal digits.
func plainDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 15 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// FuzzPacket sends arbitrary bytes to a real Server as nginx's uwsgi_pass
// would send a request packet, and checks the outcome against a reading of
// the packet format: a packet that is not uwsgi (modifier1 other than 0 or 30,
// a truncated header or vars block) is closed unanswered, a malformed
// one is never served; a request that is served got the method of its last
// REQUEST_METHOD and a body of its last non-empty CONTENT_LENGTH bytes taken from just after
// the vars; every answer is one well-formed HTTP/1.1 response; the server
// answers or closes promptly; and no length in the packet makes it
// allocate more than a few times what was sent.
func FuzzPacket(f *testing.F) {
	fs := cgivarstest.StartFuzzServer(f, newServer)
	f.Add(packet(nginxVars("GET", "/echo?x=1"), nil))
	f.Add(packet(nginxVars("POST", "/echo", [2]string{"CONTENT_LENGTH", "5"}), []byte("hello")))
	f.Add(packet(nginxVars("POST", "/echo", [2]string{"CONTENT_LENGTH", "99999999999"}), []byte("short")))
	f.Add(packet([][2]string{{"REQUEST_METHOD", "GET"}, {"HTTP_X_A", "1"}, {"PATH_INFO", "/a b"}}, nil))
	f.Add([]byte{0, 0xff, 0xff, 0, 0xff, 0xff})
	f.Add([]byte{5, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, seen, allocated := fs.Exchange(t, raw)
		if limit := cgivarstest.FuzzAllocSlack + 4*uint64(len(raw)); allocated > limit {
			t.Errorf("one exchange of %d bytes allocated %d bytes (limit %d)", len(raw), allocated, limit)
		}
		p, ok := parsePacket(raw)
		if !ok && len(seen) != 0 {
			t.Fatalf("a malformed packet served %d requests", len(seen))
		}
		if notUWSGI(raw) && len(out) != 0 {
			t.Fatalf("a packet that is not uwsgi got %q, want the connection closed unanswered", out)
		}
		if len(seen) > 1 {
			t.Fatalf("one packet served %d requests", len(seen))
		}
		if len(out) == 0 {
			if len(seen) != 0 {
				t.Fatal("a served request got no answer")
			}
			return // the body was cut short: nobody to answer
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
		if err != nil {
			t.Fatalf("the answer %q is not an HTTP response: %v", out, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.ContentLength != int64(len(body)) {
			t.Fatalf("the answer %q: body of %d bytes, Content-Length %d: %v", out, len(body), resp.ContentLength, err)
		}
		if len(seen) == 0 {
			// Refused: a malformed packet may be, for a variable the
			// server read before it reached the malformation.
			if resp.StatusCode < 400 {
				t.Fatalf("a request that was not served got %q", out)
			}
			return
		}
		s := seen[0]
		if resp.StatusCode != 200 || s.Method != "HEAD" && string(body) != "served" {
			t.Fatalf("a served request got %q", out)
		}
		if m, _ := p.last("REQUEST_METHOD", false); s.Method != m {
			t.Fatalf("served method %q, want the last REQUEST_METHOD, %q", s.Method, m)
		}
		if end := p.bodyStart + len(s.Body); end > len(raw) || !bytes.Equal(s.Body, raw[p.bodyStart:end]) {
			t.Fatalf("served body %q is not the bytes after the vars, %q", s.Body, raw[p.bodyStart:])
		}
		want := int64(0)
		if cl, ok := p.last("CONTENT_LENGTH", true); ok {
			n, plain := plainDecimal(cl)
			if !plain {
				return // the Builder's business; a plain number is enough to check
			}
			want = n
		}
		if int64(len(s.Body)) != want {
			t.Fatalf("served a body of %d bytes, CONTENT_LENGTH says %d", len(s.Body), want)
		}
	})
}
