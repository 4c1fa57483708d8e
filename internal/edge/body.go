package edge

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"taipan/internal/httpsyntax"
)

// maxChunkLine bounds a chunk-size line including its extensions.
const maxChunkLine = 4096

// bodyReadStep is how much buffer a body in memory gains before its bytes
// arrive: the whole of a body up to this size is read in one step.
const bodyReadStep = 64 << 10

// bodySink accumulates a request body in memory and moves it to a
// temporary file once it grows past memLimit.
type bodySink struct {
	mem      []byte
	file     *os.File
	size     int64
	memLimit int64
	dir      string
}

// readFrom appends exactly n bytes from br to the body.
func (s *bodySink) readFrom(br *bufio.Reader, n int64) error {
	// Compared without adding, which could wrap for a huge chunk size.
	if s.file == nil && n > s.memLimit-s.size {
		if err := s.spill(); err != nil {
			return err
		}
	}
	if s.file == nil {
		// In steps, so that memory follows the bytes that arrive, not the
		// length announced: a client announcing a large body and sending
		// nothing must not make every connection hold BodyMemoryLimit.
		for n > 0 {
			step := min(n, bodyReadStep)
			old := len(s.mem)
			s.mem = grow(s.mem, int(step))
			if _, err := io.ReadFull(br, s.mem[old:old+int(step)]); err != nil {
				return noEOF(err)
			}
			s.size += step
			n -= step
		}
		return nil
	}
	m, err := io.CopyN(s.file, br, n)
	s.size += m
	if err != nil {
		if m < n && !isFileError(err) {
			return noEOF(err)
		}
		return s.writeFailed(err)
	}
	return nil
}

// spill moves the in-memory part of the body to a new temporary file.
func (s *bodySink) spill() error {
	f, err := os.CreateTemp(s.dir, spillPrefix+strconv.Itoa(os.Getpid())+"-*") // mode 0600: bodies may hold secrets
	if err != nil {
		return &spillError{fmt.Errorf("edge: could not create a request body file in %s (--tmp-dir): %w", s.dir, err)}
	}
	if _, err := f.Write(s.mem); err != nil {
		f.Close()
		os.Remove(f.Name())
		return s.writeFailed(err)
	}
	s.file = f
	s.mem = nil
	return nil
}

// writeFailed describes a failed write to the spill file (the disk is
// full, most likely) for the error log: where, and after how many bytes.
// The caller discards the partial file.
func (s *bodySink) writeFailed(err error) error {
	return &spillError{fmt.Errorf("edge: could not buffer a request body in %s (--tmp-dir) after %d bytes: %w", s.dir, s.size, err)}
}

// spillPrefix begins every spill file's name; the pid of the taipan that
// wrote it follows, so that a later start can tell the files a killed
// taipan left behind (RemoveStaleSpills) from those of one still running.
const spillPrefix = "taipan-body-"

// RemoveStaleSpills removes the spill files in dir whose taipan is no
// longer running: one killed with SIGKILL, or by the OOM killer, cannot
// remove its own. It returns how many it removed. Files of live processes,
// and names it does not recognise, are left alone.
func RemoveStaleSpills(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("edge: looking for stale request body files: %w", err)
	}
	removed := 0
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), spillPrefix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		if os.Remove(filepath.Join(dir, e.Name())) == nil {
			removed++
		}
	}
	return removed, nil
}

// processAlive reports whether a process with this pid exists (signal 0
// checks without sending; EPERM means it exists under another user).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// discard removes a partly written spill file.
func (s *bodySink) discard() {
	if s.file != nil {
		name := s.file.Name()
		s.file.Close()
		os.Remove(name)
		s.file = nil
	}
}

// spillError is a local failure (disk full, unwritable TempDir) while
// buffering a body: the client gets 507 when the disk is full, 500
// otherwise, and the error is logged (docs/operations.md, "Faults").
type spillError struct{ err error }

// bufferFailure is the answer to a request whose body could not be
// buffered because of err.
func bufferFailure(err error) *httpError {
	if StorageFull(err) {
		return &httpError{507, "507 Insufficient Storage", "no space left to buffer the request body"}
	}
	return &httpError{500, "500 Internal Server Error", "could not buffer the request body"}
}

// StorageFull reports whether err comes from a full disk or an exhausted
// quota. A request whose body cannot be buffered for that reason is
// answered 507 (RFC 4918 section 11.5): it says what happened, keeps the
// failure apart from the app's 500s, and does not invite the retry a 503
// would, of a large upload into the same full disk.
func StorageFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

func (e *spillError) Error() string { return e.err.Error() }
func (e *spillError) Unwrap() error { return e.err }

// isFileError reports whether err came from the spill file rather than the
// connection; io.CopyN only tells us which side failed through the error.
func isFileError(err error) bool {
	_, ok := err.(*os.PathError)
	return ok
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, max(2*cap(b), len(b)+n))
	copy(nb, b)
	return nb
}

// noEOF turns EOF inside a body into ErrUnexpectedEOF: the client hung up
// before sending what it announced.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readBody buffers the request body announced by c.st into c.body.
func (c *conn) readBody() error {
	cfg := &c.srv.cfg
	st := &c.st
	c.body = Body{}
	c.req.Body = &c.body
	if !st.chunked && st.contentLength <= 0 {
		return nil
	}
	if st.expectContinue && c.req.ProtoMinor == 1 {
		c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := c.bw.Flush(); err != nil {
			return err
		}
	}
	c.cr.perRead = cfg.BodyReadTimeout
	defer func() { c.cr.perRead = 0 }()

	sink := bodySink{memLimit: cfg.BodyMemoryLimit, dir: cfg.TempDir}
	var err error
	if st.chunked {
		err = c.readChunked(&sink)
	} else {
		switch {
		case st.contentLength <= min(sink.memLimit, bodyReadStep):
			// Small enough for one pooled buffer: no allocation to zero
			// and collect for each upload.
			c.body.pooled = c.srv.getBody()
			sink.mem = (*c.body.pooled)[:0]
		case st.contentLength <= sink.memLimit:
			sink.mem = make([]byte, 0, bodyReadStep)
		}
		err = sink.readFrom(c.br, st.contentLength)
	}
	if err != nil {
		sink.discard()
		return err
	}
	c.body = Body{mem: sink.mem, file: sink.file, size: sink.size, pooled: c.body.pooled}
	return nil
}

// releaseBody removes the body's spill file and gives its pooled buffer
// back. It runs once the Handler has returned: the Handler contract is
// that nothing reads the Request, its Body included, after that. (The
// bridge returns only when its worker has answered, so has read the whole
// request, or when the request never reached one.)
func (c *conn) releaseBody() {
	c.body.release()
	if c.body.pooled != nil {
		c.srv.bodies.Put(c.body.pooled)
		c.body.pooled, c.body.mem = nil, nil
	}
}

// readChunked decodes a chunked body (RFC 9112 section 7.1) into sink.
// Extensions are ignored and trailer fields are read and dropped.
func (c *conn) readChunked(sink *bodySink) error {
	cfg := &c.srv.cfg
	for {
		line, err := c.readStrictLine(maxChunkLine)
		if err == errLineTooLong {
			return badRequest("chunk size line too long")
		}
		if err != nil {
			return err
		}
		size, herr := parseChunkSize(line)
		if herr != nil {
			return herr
		}
		if size == 0 {
			return c.skipTrailers()
		}
		if cfg.bodyGrowsTooLarge(sink.size, size) {
			return &httpError{413, "413 Content Too Large", "request body too large"}
		}
		if err := sink.readFrom(c.br, size); err != nil {
			return err
		}
		var crlf [2]byte
		if _, err := io.ReadFull(c.br, crlf[:]); err != nil {
			return noEOF(err)
		}
		if crlf != [2]byte{'\r', '\n'} {
			return badRequest("missing CRLF after chunk data")
		}
	}
}

// skipTrailers reads the trailer section after the last chunk and drops it.
func (c *conn) skipTrailers() error {
	cfg := &c.srv.cfg
	for n := 0; ; n++ {
		line, err := c.readStrictLine(cfg.LimitRequestFieldSize)
		if err == errLineTooLong {
			return &httpError{431, "431 Request Header Fields Too Large", "trailer field too long"}
		}
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		if n >= cfg.LimitRequestFields {
			return &httpError{431, "431 Request Header Fields Too Large", "too many trailer fields"}
		}
		// A field line as in the header section (RFC 9112 section 5):
		// no obs-fold, a token name, no whitespace before the colon.
		// readStrictLine has already refused control characters.
		colon := indexByte(line, ':')
		if colon <= 0 || !httpsyntax.IsToken(line[:colon]) {
			return badRequest("malformed trailer field")
		}
	}
}

// readStrictLine reads a CRLF-terminated line of at most limit bytes into
// c.lbuf and returns its content. A bare LF or CR is an error: inside
// chunked framing leniency invites request smuggling.
func (c *conn) readStrictLine(limit int) ([]byte, error) {
	c.lbuf = c.lbuf[:0]
	for {
		frag, err := c.br.ReadSlice('\n')
		if len(c.lbuf)+len(frag) > limit+2 {
			return nil, errLineTooLong
		}
		c.lbuf = append(c.lbuf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return nil, noEOF(err)
		}
		break
	}
	n := len(c.lbuf)
	if n < 2 || c.lbuf[n-2] != '\r' {
		return nil, badRequest("chunked framing line not ended by CRLF")
	}
	line := c.lbuf[:n-2]
	for _, b := range line {
		if (b < ' ' && b != '\t') || b == 0x7f {
			return nil, badRequest("control character in chunked framing")
		}
	}
	return line, nil
}

// parseChunkSize parses a chunk-size line without its CRLF: "1*HEXDIG"
// followed by chunk extensions (RFC 9112 section 7.1.1), which must be
// well-formed but are otherwise ignored.
func parseChunkSize(line []byte) (int64, *httpError) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		v, ok := hexVal(line[i])
		if !ok {
			break
		}
		if n > (1<<63-1)>>4 {
			return 0, badRequest("chunk size overflows")
		}
		n = n<<4 | int64(v)
	}
	if i == 0 {
		return 0, badRequest("invalid chunk size")
	}
	if !validChunkExt(line[i:]) {
		return 0, badRequest("invalid chunk extension")
	}
	return n, nil
}

// validChunkExt reports whether b is a chunk-ext (RFC 9112 section 7.1.1):
//
//	*( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//
// where the name is a token and the value a token or quoted-string. Bad
// whitespace is allowed only where the grammar puts it, so a chunk-size
// followed by spaces and nothing else is refused.
func validChunkExt(b []byte) bool {
	for len(b) > 0 {
		b = trimBWS(b)
		if len(b) == 0 || b[0] != ';' {
			return false
		}
		b = trimBWS(b[1:])
		n := tokenLen(b)
		if n == 0 {
			return false
		}
		b = b[n:]
		if v := trimBWS(b); len(v) > 0 && v[0] == '=' {
			v = trimBWS(v[1:])
			if len(v) > 0 && v[0] == '"' {
				n = quotedStringLen(v)
			} else {
				n = tokenLen(v)
			}
			if n == 0 {
				return false
			}
			b = v[n:]
		}
	}
	return true
}

// trimBWS drops leading spaces and tabs.
func trimBWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// tokenLen is the length of the token at the start of b (0 if none).
func tokenLen(b []byte) int {
	n := 0
	for n < len(b) && httpsyntax.IsTokenChar(b[n]) {
		n++
	}
	return n
}

// quotedStringLen is the length of the quoted-string (RFC 9110 section
// 5.6.4) at the start of b, quotes included, or 0 if b does not start with
// a complete one.
func quotedStringLen(b []byte) int {
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i == len(b) || !isQuotedPairChar(b[i]) {
				return 0
			}
		case !isQDText(c):
			return 0
		}
	}
	return 0
}

// isQDText reports whether c may appear unescaped in a quoted-string.
func isQDText(c byte) bool {
	return c == '\t' || c == ' ' || c == 0x21 || 0x23 <= c && c <= 0x5b || 0x5d <= c && c <= 0x7e || c >= 0x80
}

// isQuotedPairChar reports whether c may follow a backslash in a
// quoted-string.
func isQuotedPairChar(c byte) bool {
	return c == '\t' || ' ' <= c && c <= 0x7e || c >= 0x80
}

func hexVal(b byte) (byte, bool) {
	switch {
	case '0' <= b && b <= '9':
		return b - '0', true
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10, true
	case 'A' <= b && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}

// BodyBuffer collects a request body for a front end other than the HTTP/1
// engine (HTTP/2, uwsgi, FastCGI): in memory up to a limit, then in a
// temporary file, exactly as the engine buffers its own.
type BodyBuffer struct {
	sink bodySink
}

// NewBodyBuffer returns a buffer that spills to a file in tempDir ("" for
// the system's) past memLimit bytes.
func NewBodyBuffer(memLimit int64, tempDir string) *BodyBuffer {
	if tempDir == "" {
		tempDir = os.TempDir()
	}
	return &BodyBuffer{sink: bodySink{memLimit: memLimit, dir: tempDir}}
}

// Write appends p.
func (b *BodyBuffer) Write(p []byte) (int, error) {
	s := &b.sink
	if s.file == nil && s.size+int64(len(p)) > s.memLimit {
		if err := s.spill(); err != nil {
			return 0, err
		}
	}
	if s.file == nil {
		s.mem = append(s.mem, p...)
		s.size += int64(len(p))
		return len(p), nil
	}
	n, err := s.file.Write(p)
	s.size += int64(n)
	if err != nil {
		return n, s.writeFailed(err)
	}
	return n, nil
}

// Len is how many bytes were written.
func (b *BodyBuffer) Len() int64 { return b.sink.size }

// Body returns the collected body; the buffer must not be written again.
// Release the body when the request is done.
func (b *BodyBuffer) Body() *Body {
	s := &b.sink
	return &Body{mem: s.mem, file: s.file, size: s.size}
}

// Discard removes what was collected (a request abandoned half-way).
func (b *BodyBuffer) Discard() { b.sink.discard() }

// Release removes the body's spill file, if any. The HTTP/1 engine
// releases its own bodies; other front ends call this when the Handler
// has returned.
func (b *Body) Release() { b.release() }
