package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startWS serves an app of wsapp.py.
func startWS(t *testing.T, app string, args ...string) *Server {
	t.Helper()
	requirePython(t, "fastapi", "python3-fastapi")
	requirePython(t, "websockets", "python3-websockets")
	return Start(t, append(append([]string{"--pythonpath", appsDir(t)}, args...), "wsapp:"+app)...)
}

// wsClient runs a scenario of wsclient.py (python3-websockets) and decodes
// the JSON it prints last.
func wsClient(t *testing.T, s *Server, scenario, marker string, out any) {
	t.Helper()
	cmd := exec.Command(pythonPath(), filepath.Join(appsDir(t), "wsclient.py"), scenario, "ws://"+s.Addr, marker)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("wsclient %s: %v\n%s\ntaipan:\n%s", scenario, err, b, s.Stderr())
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), out); err != nil {
		t.Fatalf("wsclient %s printed %q: %v", scenario, b, err)
	}
}

// TestWebSocketStarlette: a Starlette app through python3-websockets: text
// and binary messages, a 5 MiB message, a fragmented one, an empty one,
// ping/pong, subprotocol and accept headers, the websocket scope, denial
// (403), a close by the app with its code and reason, and an app that raises
// (1011).
func TestWebSocketStarlette(t *testing.T) {
	t.Parallel()
	s := startWS(t, "starlette_app", "-w", "1")
	marker := filepath.Join(t.TempDir(), "marker")
	var got struct {
		Text             string
		Bytes            []byte
		BigOK            bool `json:"big_ok"`
		Fragmented       string
		Empty            []byte
		Pong             bool
		Subprotocol      string
		XSession         string `json:"x_session"`
		Scope            map[string]any
		SubprotocolClose []any `json:"subprotocol_close"`
		Deny             any
		AppClose         []any `json:"app_close"`
		Explode          []any
	}
	wsClient(t, s, "starlette", marker, &got)
	if got.Text != "héllo ✓" || !bytes.Equal(got.Bytes, []byte("\x00\xffbin")) || !got.BigOK || got.Fragmented != "fragmented" || len(got.Empty) != 0 || !got.Pong {
		t.Errorf("echo: %+v", got)
	}
	if got.Subprotocol != "chat.v1" || got.XSession != "abc123" {
		t.Errorf("accept: subprotocol %q, x-session %q", got.Subprotocol, got.XSession)
	}
	sc := got.Scope
	if sc["path"] != "/ws/subprotocol" || sc["query_string"] != "a=1&b=%20" || sc["scheme"] != "ws" || sc["http_version"] != "1.1" ||
		!reflect.DeepEqual(sc["offered"], []any{"chat.v2", "chat.v1"}) || !reflect.DeepEqual(sc["extensions"], []any{"websocket.http.response"}) {
		t.Errorf("scope: %v", sc)
	}
	// Headers arrive as sent: repeated ones stay apart, names lower-cased.
	var repeats []any
	for _, h := range sc["headers"].([]any) {
		if pair := h.([]any); pair[0] == "x-repeat" {
			repeats = append(repeats, pair[1])
		}
	}
	if !reflect.DeepEqual(repeats, []any{"one", "two"}) {
		t.Errorf("repeated header: %v in %v", repeats, sc["headers"])
	}
	if !reflect.DeepEqual(got.SubprotocolClose, []any{1000.0, ""}) {
		t.Errorf("close after the app's websocket.close(): %v", got.SubprotocolClose)
	}
	if got.Deny != 403.0 {
		t.Errorf("close before accept: %v, want HTTP 403", got.Deny)
	}
	if !reflect.DeepEqual(got.AppClose, []any{4001.0, "bye"}) {
		t.Errorf("app close: %v, want [4001 bye]", got.AppClose)
	}
	if !reflect.DeepEqual(got.Explode, []any{1011.0, ""}) {
		t.Errorf("app raised: %v, want 1011", got.Explode)
	}
	if !s.WaitLog("websocket handler exploded 99", 5*time.Second) {
		t.Errorf("no traceback logged for the app that raised:\n%s", s.Stderr())
	}
	want := "accepted\ndisconnect 1000\nafter close: websocket.disconnect 4001\n"
	if m, _ := waitMarker(marker, 5*time.Second); !pollUntil(5*time.Second, func() bool { m, _ = waitMarker(marker, time.Second); return m == want }) {
		t.Errorf("the app saw %q, want %q", m, want)
	}
}

// TestWebSocketTwoReaders: an app that waits in receive() from two tasks at
// once gets each message once, and neither task is left waiting (a second
// receive() used to take the first one's wake-up).
func TestWebSocketTwoReaders(t *testing.T) {
	t.Parallel()
	s := startWS(t, "starlette_app", "-w", "1")
	var got struct{ Report string }
	wsClient(t, s, "two_readers", "", &got)
	if got.Report != "pending=0 A:one B:two" && got.Report != "pending=0 A:two B:one" {
		t.Errorf("the app's two readers report %q, want both messages taken and none pending", got.Report)
	}
}

// TestWebSocketFastAPI: a FastAPI websocket route with a path parameter;
// the client's close code and reason reach the app.
func TestWebSocketFastAPI(t *testing.T) {
	t.Parallel()
	s := startWS(t, "fastapi_app", "-w", "1")
	marker := filepath.Join(t.TempDir(), "marker")
	var got struct{ Replies []map[string]any }
	wsClient(t, s, "fastapi", marker, &got)
	if len(got.Replies) != 2 || got.Replies[0]["item_id"] != 7.0 || got.Replies[1]["text"] != "second" {
		t.Fatalf("replies: %v", got.Replies)
	}
	if m, ok := waitMarker(marker, 5*time.Second); !ok || m != "disconnect 4321\n" {
		t.Fatalf("the app saw %q, want the client's code 4321", m)
	}
}

// TestWebSocketFlowControl: 8 MiB sent to an app that does not read for a
// second all arrive, in order (Go stops reading the client while the
// worker's queue is full); 20,000 messages pushed by the app all arrive in
// order.
func TestWebSocketFlowControl(t *testing.T) {
	t.Parallel()
	s := startWS(t, "starlette_app", "-w", "1")
	var in struct {
		Count int
		Match bool
	}
	wsClient(t, s, "count", "", &in)
	if in.Count != 8192 || !in.Match {
		t.Fatalf("client to app: %+v, want 8192 messages with the same digest", in)
	}
	var out struct {
		Count   int
		InOrder bool `json:"in_order"`
		Close   int
	}
	wsClient(t, s, "push", "", &out)
	if out.Count != 20000 || !out.InOrder || out.Close != 1000 {
		t.Fatalf("app to client: %+v", out)
	}
}

// TestWebSocketMaxSize: a message above --ws-max-size closes the session
// with 1009, and the app hears it.
func TestWebSocketMaxSize(t *testing.T) {
	t.Parallel()
	s := startWS(t, "starlette_app", "-w", "1", "--ws-max-size", "64k")
	marker := filepath.Join(t.TempDir(), "marker")
	var got struct{ Close []any }
	wsClient(t, s, "too_big", marker, &got)
	if len(got.Close) == 0 || got.Close[0] != 1009.0 {
		t.Fatalf("close %v, want 1009", got.Close)
	}
	if m, _ := waitMarker(marker, 5*time.Second); !pollUntil(5*time.Second, func() bool { m, _ = waitMarker(marker, time.Second); return strings.Contains(m, "disconnect 1009") }) {
		t.Fatalf("the app saw %q", m)
	}
}

// TestWebSocketDenialResponse: an app can refuse the handshake with an HTTP
// response of its own (websocket.http.response), streamed.
func TestWebSocketDenialResponse(t *testing.T) {
	t.Parallel()
	s := startWS(t, "raw_app", "-w", "1")
	resp, body := rawResponse(t, s, wsHandshake("/ws", "13", wsKey()), "GET")
	if resp.StatusCode != 401 || body != "no entry" || resp.Header.Get("X-Reason") != "token" {
		t.Fatalf("denial: %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

// TestWebSocketHandshakeErrors: a wrong version gets 426 with the version
// taipan speaks; a malformed key gets 400. Neither reaches the app.
func TestWebSocketHandshakeErrors(t *testing.T) {
	t.Parallel()
	s := startWS(t, "starlette_app", "-w", "1")
	resp, _ := rawResponse(t, s, wsHandshake("/ws/echo", "8", wsKey()), "GET")
	if resp.StatusCode != 426 || resp.Header.Get("Sec-WebSocket-Version") != "13" {
		t.Errorf("version 8: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = rawResponse(t, s, wsHandshake("/ws/echo", "13", "short"), "GET")
	if resp.StatusCode != 400 {
		t.Errorf("bad key: %d", resp.StatusCode)
	}
	// The worker is unharmed.
	if code, body := httpGet(t, s, "/"); code != 200 || body != "hello from starlette" {
		t.Errorf("GET /: %d %q", code, body)
	}
}

// TestWebSocketRawClient drives the protocol by hand: the handshake's
// Sec-WebSocket-Accept, a client ping answered with its payload, an
// unmasked frame (1002, the app hears 1002), and a client that vanishes
// without a close frame (the app hears 1006).
func TestWebSocketRawClient(t *testing.T) {
	t.Parallel()
	s := startWS(t, "starlette_app", "-w", "1")
	dir := t.TempDir()

	marker := filepath.Join(dir, "protocol")
	c, br := wsDial(t, s, "/ws/echo?marker="+marker)
	wsWrite(t, c, 0x9, []byte("ping!"), true)
	if op, p := wsRead(t, br); op != 0xA || string(p) != "ping!" {
		t.Fatalf("ping answered with op %x %q", op, p)
	}
	wsWrite(t, c, 0x1, []byte("masked"), true)
	if op, p := wsRead(t, br); op != 0x1 || string(p) != "masked" {
		t.Fatalf("echo: op %x %q", op, p)
	}
	wsWrite(t, c, 0x1, []byte("unmasked"), false)
	if op, p := wsRead(t, br); op != 0x8 || len(p) < 2 || binary.BigEndian.Uint16(p) != 1002 {
		t.Fatalf("unmasked frame answered with op %x %q, want close 1002", op, p)
	}
	if m, _ := waitMarker(marker, 5*time.Second); !pollUntil(5*time.Second, func() bool { m, _ = waitMarker(marker, time.Second); return strings.Contains(m, "disconnect 1002") }) {
		t.Fatalf("the app saw %q, want disconnect 1002", m)
	}

	marker = filepath.Join(dir, "abrupt")
	c, br = wsDial(t, s, "/ws/echo?marker="+marker)
	wsWrite(t, c, 0x2, []byte{1, 2, 3}, true)
	if op, p := wsRead(t, br); op != 0x2 || !bytes.Equal(p, []byte{1, 2, 3}) {
		t.Fatalf("echo: op %x %v", op, p)
	}
	c.Close()
	if m, _ := waitMarker(marker, 5*time.Second); !pollUntil(5*time.Second, func() bool { m, _ = waitMarker(marker, time.Second); return strings.Contains(m, "disconnect 1006") }) {
		t.Fatalf("the app saw %q, want disconnect 1006", m)
	}
}

// TestWebSocketClientLeavesBeforeAccept: a client that gives up while the
// app has not answered its handshake yet is reported to the app as
// websocket.disconnect.
func TestWebSocketClientLeavesBeforeAccept(t *testing.T) {
	t.Parallel()
	s := startWS(t, "starlette_app", "-w", "1")
	marker := filepath.Join(t.TempDir(), "slow-accept")
	c := dialRaw(t, s.Addr)
	io.WriteString(c, wsHandshake("/ws/slow-accept?marker="+marker, "13", wsKey()))
	time.Sleep(300 * time.Millisecond) // the app has the handshake and waits
	c.Close()
	var m string
	if !pollUntil(5*time.Second, func() bool {
		m, _ = waitMarker(marker, time.Second)
		return strings.Contains(m, "websocket.disconnect")
	}) {
		t.Fatalf("the app saw %q, want websocket.disconnect\n%s", m, s.Stderr())
	}
}

// TestWebSocketKeepalive: taipan pings; a client that never answers is
// closed with 1011 once --ws-ping-timeout passes.
func TestWebSocketKeepalive(t *testing.T) {
	t.Parallel()
	s := startWS(t, "starlette_app", "-w", "1", "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.5")
	marker := filepath.Join(t.TempDir(), "marker")
	c, br := wsDial(t, s, "/ws/echo?marker="+marker)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	pings := 0
	for {
		op, p := wsRead(t, br)
		if op == 0x9 {
			pings++
			continue // not answered
		}
		if op != 0x8 || len(p) < 2 || binary.BigEndian.Uint16(p) != 1011 || pings == 0 {
			t.Fatalf("got op %x %q after %d pings, want close 1011", op, p, pings)
		}
		break
	}
	if m, _ := waitMarker(marker, 5*time.Second); !pollUntil(5*time.Second, func() bool { m, _ = waitMarker(marker, time.Second); return strings.Contains(m, "disconnect 1006") }) {
		t.Fatalf("the app saw %q", m)
	}
}

// TestWebSocketShutdownAndReload: on a reload (SIGHUP) an open session is
// closed with 1001 so its client reconnects to the new workers; on SIGTERM
// it is closed with 1001 too and taipan exits without waiting out
// --graceful-timeout.
func TestWebSocketShutdownAndReload(t *testing.T) {
	t.Parallel()
	s := startWS(t, "starlette_app", "-w", "1", "--graceful-timeout", "30")
	dir := t.TempDir()
	for _, step := range []struct {
		sig    syscall.Signal
		name   string
		reason string
	}{{syscall.SIGHUP, "hup", "server reloading"}, {syscall.SIGTERM, "term", "server shutting down"}} {
		marker := filepath.Join(dir, step.name)
		cmd := exec.Command(pythonPath(), filepath.Join(appsDir(t), "wsclient.py"), "hold", "ws://"+s.Addr, marker)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		if !lines.Scan() || !strings.Contains(lines.Text(), "established") {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("no session: %q %s\n%s", lines.Text(), stderr.String(), s.Stderr())
		}
		s.Signal(step.sig)
		start := time.Now()
		var got struct{ Close []any }
		if !lines.Scan() || json.Unmarshal(lines.Bytes(), &got) != nil {
			t.Fatalf("client output %q", lines.Text())
		}
		cmd.Wait()
		if !reflect.DeepEqual(got.Close, []any{1001.0, step.reason}) {
			t.Fatalf("after %v: close %v, want [1001 %s]", step.sig, got.Close, step.reason)
		}
		if m, _ := waitMarker(marker, 5*time.Second); !pollUntil(5*time.Second, func() bool { m, _ = waitMarker(marker, time.Second); return strings.Contains(m, "disconnect 1001") }) {
			t.Fatalf("after %v the app saw %q", step.sig, m)
		}
		if step.sig == syscall.SIGHUP {
			// The new generation serves new sessions.
			if !pollUntil(10*time.Second, func() bool { code, _ := s.Get(t, "/"); return code == 200 }) {
				t.Fatal("not serving after the reload")
			}
			continue
		}
		if code := s.Wait(10 * time.Second); code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("taipan took %v to exit with a WebSocket open", d)
		}
	}
}

// TestWebSocketToWSGI: a WSGI app gets an upgrade request as a plain
// request (as under gunicorn) and answers it over HTTP.
func TestWebSocketToWSGI(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1")
	resp, body := rawResponse(t, s, wsHandshake("/environ", "13", wsKey()), "GET")
	if resp.StatusCode != 200 || !strings.Contains(body, "websocket") {
		t.Fatalf("WSGI app: %d %q", resp.StatusCode, body)
	}
}

func wsKey() string {
	var k [16]byte
	rand.Read(k[:])
	return base64.StdEncoding.EncodeToString(k[:])
}

func wsHandshake(path, version, key string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: " + version + "\r\nSec-WebSocket-Key: " + key + "\r\n\r\n"
}

// wsDial opens a WebSocket by hand and checks the 101 response.
func wsDial(t *testing.T, s *Server, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := dialRaw(t, s.Addr)
	key := wsKey()
	io.WriteString(c, wsHandshake(path, "13", key))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) ||
		!strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
	}
	return c, br
}

// wsWrite sends one final frame, masked as a client must (or not, to break
// the protocol).
func wsWrite(t *testing.T, c net.Conn, op byte, p []byte, masked bool) {
	t.Helper()
	b := []byte{0x80 | op}
	maskBit := byte(0)
	if masked {
		maskBit = 0x80
	}
	switch {
	case len(p) < 126:
		b = append(b, maskBit|byte(len(p)))
	case len(p) < 1<<16:
		b = append(b, maskBit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
	default:
		b = append(b, maskBit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
	}
	if masked {
		key := []byte{0x12, 0x34, 0x56, 0x78}
		b = append(b, key...)
		for i, x := range p {
			b = append(b, x^key[i%4])
		}
	} else {
		b = append(b, p...)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// wsRead reads one frame from the server, which must be unmasked and final.
func wsRead(t *testing.T, br *bufio.Reader) (byte, []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		t.Fatalf("frame header %x: want FIN and no mask from a server", h)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		io.ReadFull(br, l[:])
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		io.ReadFull(br, l[:])
		n = binary.BigEndian.Uint64(l[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		t.Fatalf("reading a %d-byte payload: %v", n, err)
	}
	return h[0] & 0x0f, p
}

// An app that raises before it accepts a WebSocket gets the handshake
// answered 500: a plain one, or with --debug one that carries the
// traceback, as for HTTP requests.
func TestWebSocketHandshakeErrorDebug(t *testing.T) {
	for _, debug := range []bool{false, true} {
		t.Run(fmt.Sprintf("debug=%v", debug), func(t *testing.T) {
			args := []string{"-w", "1"}
			if debug {
				args = append(args, "--debug")
			}
			s := startWS(t, "starlette_app", args...)
			c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "GET /ws/explode-early HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			hasTrace := strings.Contains(string(body), "websocket handshake exploded 98")
			if resp.StatusCode != 500 || hasTrace != debug {
				t.Errorf("status %d, body %q: want 500 with the traceback only with --debug", resp.StatusCode, body)
			}
		})
	}
}
