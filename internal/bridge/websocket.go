package bridge

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync"
	"taipan/internal/httpsyntax"
	"time"

	"taipan/internal/edge"
	"taipan/internal/pool"
	"taipan/internal/websocket"
	"taipan/internal/wire"
)

// WebSocketOptions are the limits of WebSocket sessions.
type WebSocketOptions struct {
	MaxMessageSize int64         // largest message from a client (default 16 MiB)
	PingInterval   time.Duration // keepalive pings (0 = none)
	PingTimeout    time.Duration // close when a ping is not answered this long (default 20s)
	WriteTimeout   time.Duration // bound on each write to the client (default 60s)
}

func (o *WebSocketOptions) setDefaults() {
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = 16 << 20
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 20 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 60 * time.Second
	}
}

// wsWindow is the flow-control window between Go and the app: Go stops
// reading a client's messages while this many bytes of them are queued in
// the worker and not yet taken by the app's receive() (WS_ACK returns them).
// Each message counts its payload plus wsMessageCost, so that empty
// messages cannot pile up without limit either.
const (
	wsWindow      = 1 << 20
	wsMessageCost = 16
)

// wsCloseWait is how long the server waits for the client's close frame
// after sending its own, before it closes the connection anyway.
const wsCloseWait = 5 * time.Second

var upgradeRequired = &edge.ResponseHead{Code: 426, Status: "426 Upgrade Required",
	Header: []edge.HeaderField{{Name: "Sec-WebSocket-Version", Value: "13"}, {Name: "Content-Type", Value: "text/plain; charset=utf-8"}}}

var badHandshake = &edge.ResponseHead{Code: 400, Status: "400 Bad Request",
	Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}}}

// isWebSocketUpgrade reports whether r asks for a WebSocket (RFC 6455
// section 4.2.1: a GET with Upgrade: websocket and Connection: upgrade).
func isWebSocketUpgrade(r *edge.Request) bool {
	if r.Method != "GET" {
		return false
	}
	var upgrade, connection bool
	for i := range r.Header {
		f := &r.Header[i]
		switch {
		case strings.EqualFold(f.Name, "Upgrade"):
			upgrade = upgrade || httpsyntax.HasToken(f.Value, "websocket")
		case strings.EqualFold(f.Name, "Connection"):
			connection = connection || httpsyntax.HasToken(f.Value, "upgrade")
		}
	}
	return upgrade && connection
}

// header returns the first value of the named request header.
func header(r *edge.Request, name string) (string, bool) {
	for i := range r.Header {
		if strings.EqualFold(r.Header[i].Name, name) {
			return r.Header[i].Value, true
		}
	}
	return "", false
}

// serveWebSocket runs a WebSocket handshake and session with an ASGI app.
// The app hears websocket.connect and answers: accept (Go completes the
// handshake with 101 and relays messages both ways until either side
// closes), close before accepting (403) or an HTTP response of its own.
func (b *Bridge) serveWebSocket(w edge.ResponseWriter, r *edge.Request, p *pool.Pool, s *scratch) {
	if v, _ := header(r, "Sec-WebSocket-Version"); strings.TrimSpace(v) != "13" {
		w.WriteHead(upgradeRequired, []byte("Upgrade Required: this server speaks WebSocket version 13\n"), true)
		return
	}
	key, _ := header(r, "Sec-WebSocket-Key")
	key = strings.TrimSpace(key)
	if r.ProtoMinor != 1 || !websocket.ValidKey(key) {
		w.WriteHead(badHandshake, []byte("Bad Request: invalid WebSocket handshake\n"), true)
		return
	}
	scope, _ := b.asgiScope(&s.environ, r, true)
	job := pool.NewWebSocketJob(r.Method, r.Target, scope)
	if err := p.Submit(job); err != nil {
		w.WriteHead(unavailable, []byte("Service Unavailable\n"), true)
		return
	}
	finished := false
	defer func() {
		// The access log names the worker that ran the request.
		r.Worker, r.WorkerPid = job.Worker()
		job.Release(!finished)
	}()

	// The handshake: wait for the app's answer to websocket.connect, or
	// for the client to leave first (the app then hears
	// websocket.disconnect).
	gone := w.ClientGone()
	for {
		var ev pool.Event
		select {
		case ev = <-job.Events():
		case <-gone:
			w.Abort()
			return
		}
		if ev.Kind == wire.KindWSAccept && ev.Err == nil {
			head, err := acceptHead(key, ev.Payload)
			ev.Release()
			if err != nil {
				b.log.Errorf("%s %s: invalid websocket.accept from the app: %v", r.Method, r.Target, err)
				w.WriteHead(internalError, []byte("Internal Server Error\n"), true)
				return
			}
			up, err := w.Upgrade(head)
			if err != nil {
				return // the client is gone; releasing the job tells the app
			}
			sess := &wsSession{b: b, r: r, job: job, up: up}
			finished = sess.run()
			return
		}
		// Anything else is an HTTP answer: a denial (403 for a close before
		// accepting, or the app's own response) or a failure.
		done, err := b.forward(w, r, s, &ev)
		ev.Release()
		if err == errResponseRefused {
			return // not finished: the release stops the app
		}
		if err != nil {
			w.Abort()
			return
		}
		if done {
			finished = true
			return
		}
	}
}

// acceptHead builds the 101 response from a WS_ACCEPT payload: marshal
// (subprotocol or None, [(name, value), ...]).
func acceptHead(key string, payload []byte) (*edge.ResponseHead, error) {
	v, _, err := wire.Unmarshal(payload)
	if err != nil {
		return nil, err
	}
	t, ok := v.([]wire.Value)
	if !ok || len(t) != 2 {
		return nil, errors.New("want (subprotocol, headers)")
	}
	head := &edge.ResponseHead{Code: 101, Status: "101 Switching Protocols", Header: []edge.HeaderField{
		{Name: "Upgrade", Value: "websocket"},
		{Name: "Connection", Value: "Upgrade"},
		{Name: "Sec-WebSocket-Accept", Value: websocket.AcceptKey(key)},
	}}
	if sub, ok := t[0].(string); ok && sub != "" {
		if !httpsyntax.ValidFieldValue(sub) {
			return nil, errors.New("invalid subprotocol")
		}
		head.Header = append(head.Header, edge.HeaderField{Name: "Sec-WebSocket-Protocol", Value: sub})
	}
	headers, ok := t[1].([]wire.Value)
	if !ok {
		return nil, errors.New("headers must be a list")
	}
	for _, h := range headers {
		pair, ok := h.([]wire.Value)
		if !ok || len(pair) != 2 {
			return nil, errors.New("a header must be a (name, value) pair")
		}
		name, ok1 := pair[0].(string)
		value, ok2 := pair[1].(string)
		if !ok1 || !ok2 || !httpsyntax.IsToken(name) || !httpsyntax.ValidFieldValue(value) {
			return nil, errors.New("invalid header")
		}
		switch strings.ToLower(name) {
		case "upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol", "content-length", "transfer-encoding":
			continue // the handshake's own, set above
		}
		head.Header = append(head.Header, edge.HeaderField{Name: name, Value: value})
	}
	return head, nil
}

// wsSession relays one accepted WebSocket between the client and the app.
// A reader goroutine takes the client's messages to the worker; run, on
// the Serve goroutine, takes the app's messages to the client and decides
// when the session ends.
type wsSession struct {
	b   *Bridge
	r   *edge.Request
	job *pool.Job
	up  *edge.Upgraded
	ws  *websocket.Conn

	flow wsFlow
	quit chan struct{} // closed when run returns: the reader stops
}

// wsFlow counts the message bytes sent to the app and not yet consumed.
type wsFlow struct {
	mu       sync.Mutex
	inflight int64
	credit   chan struct{} // signalled when inflight drops
}

func (f *wsFlow) add(n int64) {
	f.mu.Lock()
	f.inflight += n
	f.mu.Unlock()
}

func (f *wsFlow) ack(n int64) {
	f.mu.Lock()
	f.inflight = max(f.inflight-n, 0)
	f.mu.Unlock()
	select {
	case f.credit <- struct{}{}:
	default:
	}
}

func (f *wsFlow) full() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inflight >= wsWindow
}

// clientEnd is how the client's side ended: its close code and reason
// (CloseAbnormal when the connection dropped without a close frame).
type clientEnd struct {
	code   int
	reason string
}

// run relays until the session ends and reports whether the app's stream
// ended (else releasing the job cancels it).
func (sess *wsSession) run() (streamEnded bool) {
	opts := &sess.b.ws
	sess.ws = websocket.NewConn(sess.up.Conn, sess.up.Reader, websocket.Config{
		MaxMessageSize: opts.MaxMessageSize,
		WriteTimeout:   opts.WriteTimeout,
	})
	sess.flow.credit = make(chan struct{}, 1)
	sess.quit = make(chan struct{})
	clientDone := make(chan clientEnd, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		clientDone <- sess.readClient()
	}()
	defer func() {
		// The reader reads through the edge's buffered reader, which goes
		// back to a pool when Serve returns: it must have stopped by then.
		close(sess.quit)
		sess.up.Conn.SetReadDeadline(time.Now())
		<-readerDone
	}()

	var ping <-chan time.Time
	if opts.PingInterval > 0 {
		t := time.NewTicker(opts.PingInterval)
		defer t.Stop()
		ping = t.C
	}
	lastPing := time.Time{}
	var closing <-chan time.Time // set once this side has sent its close
	startClosing := func(code int, reason string) {
		sess.ws.WriteClose(code, reason)
		if closing == nil {
			closing = time.After(wsCloseWait)
		}
	}
	appDone := false
	clientGone := false
	away := sess.job.Away()
	shutdown := sess.up.ShuttingDown
	for {
		if appDone && clientGone {
			return true
		}
		select {
		case ev := <-sess.job.Events():
			end := ev.End()
			sess.fromApp(&ev, startClosing)
			ev.Release()
			if end {
				appDone = true
				if clientGone {
					return true
				}
			}
		case end := <-clientDone:
			clientGone = true
			clientDone = nil
			if !appDone {
				sess.tellApp(end)
				// The app has heard; whatever it still does for this
				// client is cancelled with the job.
				return false
			}
		case <-ping:
			if !lastPing.IsZero() && sess.ws.LastPong().Before(lastPing) && time.Since(lastPing) > opts.PingTimeout {
				startClosing(websocket.CloseInternalError, "keepalive ping timeout")
				sess.ws.Close()
				continue
			}
			if sess.ws.LastPong().After(lastPing) || lastPing.IsZero() {
				lastPing = time.Now()
				sess.ws.Ping(nil)
			}
		case <-away:
			away = nil
			startClosing(websocket.CloseGoingAway, "server reloading")
			sess.tellApp(clientEnd{code: websocket.CloseGoingAway})
		case <-shutdown:
			shutdown = nil
			startClosing(websocket.CloseGoingAway, "server shutting down")
			sess.tellApp(clientEnd{code: websocket.CloseGoingAway})
		case <-closing:
			// The client did not answer our close in time.
			sess.ws.Close()
			closing = nil
		}
	}
}

// fromApp carries out one event of the app's stream.
func (sess *wsSession) fromApp(ev *pool.Event, startClosing func(int, string)) {
	b, r := sess.b, sess.r
	if ev.Err != nil {
		// The worker died or was stopped: the app is gone.
		startClosing(websocket.CloseInternalError, "")
		return
	}
	switch ev.Kind {
	case wire.KindWSSend:
		op := websocket.OpBinary
		if ev.Flags&wire.FlagText != 0 {
			op = websocket.OpText
		}
		if err := sess.ws.WriteMessage(op, ev.Payload); err != nil && !errors.Is(err, websocket.ErrCloseSent) {
			sess.ws.Close() // a client that cannot be written is gone; the reader reports it
		}
	case wire.KindWSClose:
		code, reason := websocket.CloseNormal, ""
		if len(ev.Payload) >= 2 {
			code, reason = int(binary.LittleEndian.Uint16(ev.Payload)), string(ev.Payload[2:])
		}
		if !websocket.ValidCloseCode(code) {
			b.log.Warnf("%s %s: the app closed the WebSocket with code %d, which may not be sent; closing with 1011", r.Method, r.Target, code)
			code, reason = websocket.CloseInternalError, ""
		}
		if len(ev.Payload) > 0 || ev.Flags&wire.FlagEnd != 0 {
			startClosing(code, reason)
		}
	case wire.KindWSAck:
		if len(ev.Payload) == 4 {
			sess.flow.ack(int64(binary.LittleEndian.Uint32(ev.Payload)))
		}
	case wire.KindAbort:
		// The app raised after accepting.
		startClosing(websocket.CloseInternalError, "")
	default:
		b.log.Errorf("%s %s: unexpected %v frame from the worker during a WebSocket session", r.Method, r.Target, ev.Kind)
		startClosing(websocket.CloseInternalError, "")
	}
}

// tellApp delivers websocket.disconnect to the app.
func (sess *wsSession) tellApp(end clientEnd) {
	p := binary.LittleEndian.AppendUint16(nil, uint16(end.code))
	p = append(p, end.reason...)
	sess.job.Send(wire.KindWSDisconnect, 0, p)
}

// readClient takes the client's messages to the app until the client
// closes, drops or breaks the protocol, and says how it ended.
func (sess *wsSession) readClient() clientEnd {
	for {
		for sess.flow.full() {
			select {
			case <-sess.flow.credit:
			case <-sess.quit:
				return clientEnd{code: websocket.CloseAbnormal}
			}
		}
		op, data, err := sess.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			var pe *websocket.ProtocolError
			switch {
			case errors.As(err, &ce):
				return clientEnd{code: ce.Code, reason: ce.Reason}
			case errors.As(err, &pe):
				return clientEnd{code: pe.Code, reason: pe.Msg}
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				sess.b.log.Debugf("%s %s: WebSocket client dropped: %v", sess.r.Method, sess.r.Target, err)
			}
			return clientEnd{code: websocket.CloseAbnormal}
		}
		if sess.ws.CloseSent() {
			continue // closing: the app no longer listens
		}
		var flags uint8
		if op == websocket.OpText {
			flags = wire.FlagText
		}
		sess.flow.add(int64(len(data)) + wsMessageCost)
		if err := sess.job.Send(wire.KindWSReceive, flags, data); err != nil {
			return clientEnd{code: websocket.CloseAbnormal}
		}
	}
}
