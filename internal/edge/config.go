package edge

import (
	"crypto/tls"
	"os"
	"time"
)

// Defaults for Config fields left at their zero value. The request limits
// match gunicorn's so that an application moved to taipan sees the same
// rejections.
const (
	DefaultLimitRequestLine      = 4094
	DefaultLimitRequestFields    = 100
	DefaultLimitRequestFieldSize = 8190
	DefaultLimitRequestBody      = 1 << 30
	DefaultBodyMemoryLimit       = 1 << 20
	DefaultReadHeaderTimeout     = 10 * time.Second
	DefaultBodyReadTimeout       = 30 * time.Second
	DefaultKeepAliveTimeout      = 5 * time.Second
	DefaultWriteTimeout          = 60 * time.Second
	DefaultServerHeader          = "taipan"
)

// NoBodyLimit, set as Config.LimitRequestBody, disables the request body
// size limit (zero means "use the default" like every other field).
const NoBodyLimit int64 = -1

// NoKeepAlive, set as Config.KeepAliveTimeout, turns keep-alive off: an
// HTTP/1.1 connection is closed after one response, which says
// Connection: close (gunicorn's keepalive = 0).
const NoKeepAlive time.Duration = -1

// Config holds the resolved settings of a Server. A zero field means the
// default documented on it; NewServer fills the defaults in.
type Config struct {
	// LimitRequestLine is the longest request line accepted, in bytes
	// without the line terminator; a longer one gets 414 (default 4094).
	LimitRequestLine int
	// LimitRequestFields is the largest number of header fields accepted;
	// more get 431 (default 100).
	LimitRequestFields int
	// LimitRequestFieldSize is the longest header line accepted, in bytes
	// without the line terminator; a longer one gets 431 (default 8190).
	LimitRequestFieldSize int
	// LimitRequestBody is the largest request body accepted; a larger one
	// gets 413 (default 1 GiB; NoBodyLimit or any negative value: no limit).
	LimitRequestBody int64
	// BodyMemoryLimit is the largest body kept in memory; larger bodies are
	// spilled to a temporary file in TempDir (default 1 MiB).
	BodyMemoryLimit int64
	// TempDir is where spilled bodies go (default os.TempDir()).
	TempDir string

	// ReadHeaderTimeout bounds the time to receive a whole request head,
	// counted from its first byte (default 10s). On expiry the client gets
	// 408 and the connection is closed.
	ReadHeaderTimeout time.Duration
	// BodyReadTimeout bounds each wait for request body bytes (default 30s).
	BodyReadTimeout time.Duration
	// KeepAliveTimeout bounds the idle time between requests on a
	// keep-alive connection (default 5s; NoKeepAlive or any negative
	// value: one request per connection).
	KeepAliveTimeout time.Duration
	// WriteTimeout bounds each write to the client, and each write carries
	// at most writeSlice bytes (of a file, 4 MiB), so a client that stops
	// reading is dropped while a slow one that keeps reading is not
	// (default 60s). Over HTTP/2 it bounds each write to the connection.
	WriteTimeout time.Duration

	// MaxConnections bounds the client connections open at once (HTTP/1
	// and HTTP/2, idle keep-alive ones included); 0 means no limit.
	// Beyond it a new connection is answered 503 and closed, without a
	// goroutine of its own for more than a moment and never reaching the
	// Handler.
	MaxConnections int
	// MaxConnectionsPerIP bounds the connections open at once from one
	// client address, as MaxConnections does for all (0: no limit). Unix
	// socket clients have no address and are not counted.
	MaxConnectionsPerIP int
	// MaxRequestsPerConnection is how many requests an HTTP/1.1
	// keep-alive connection carries before the edge closes it (the last
	// response says Connection: close); 0 means no limit.
	MaxRequestsPerConnection int

	// ServerHeader is the Server response header value, added unless the
	// Handler set one (default "taipan"; see OmitServerHeader).
	ServerHeader string
	// OmitServerHeader leaves the Server header out of the responses the
	// edge writes, whatever ServerHeader says. A Handler's own Server
	// header still goes out.
	OmitServerHeader bool
	// AccessLog, when non-nil, is called once per answered request,
	// including requests rejected by the parser once their request line
	// was read. The record is reused after the call returns.
	AccessLog func(*AccessRecord)

	// TLS, when set, makes every listener the Server serves speak HTTPS;
	// with "h2" among its NextProtos, clients that choose it by ALPN get
	// HTTP/2.
	TLS *tls.Config
	// H2C lets cleartext connections speak HTTP/2: with prior knowledge
	// (the connection starts with the HTTP/2 preface) or by upgrading an
	// HTTP/1.1 request (Upgrade: h2c).
	H2C bool
}

// DefaultConfig returns a Config with every field at its default.
func DefaultConfig() Config {
	var c Config
	c.setDefaults()
	return c
}

// WithDefaults returns c with its zero fields replaced by their defaults,
// for front ends that apply the same limits as the Server.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

// setDefaults replaces zero fields by their defaults.
func (c *Config) setDefaults() {
	if c.LimitRequestLine <= 0 {
		c.LimitRequestLine = DefaultLimitRequestLine
	}
	if c.LimitRequestFields <= 0 {
		c.LimitRequestFields = DefaultLimitRequestFields
	}
	if c.LimitRequestFieldSize <= 0 {
		c.LimitRequestFieldSize = DefaultLimitRequestFieldSize
	}
	if c.LimitRequestBody == 0 {
		c.LimitRequestBody = DefaultLimitRequestBody
	} else if c.LimitRequestBody < 0 {
		c.LimitRequestBody = NoBodyLimit
	}
	if c.BodyMemoryLimit <= 0 {
		c.BodyMemoryLimit = DefaultBodyMemoryLimit
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.BodyReadTimeout <= 0 {
		c.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if c.KeepAliveTimeout == 0 {
		c.KeepAliveTimeout = DefaultKeepAliveTimeout
	} else if c.KeepAliveTimeout < 0 {
		c.KeepAliveTimeout = NoKeepAlive
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxConnections < 0 {
		c.MaxConnections = 0
	}
	if c.MaxConnectionsPerIP < 0 {
		c.MaxConnectionsPerIP = 0
	}
	if c.MaxRequestsPerConnection < 0 {
		c.MaxRequestsPerConnection = 0
	}
	if c.OmitServerHeader {
		c.ServerHeader = ""
	} else if c.ServerHeader == "" {
		c.ServerHeader = DefaultServerHeader
	}
}

// bodyTooLarge reports whether n body bytes exceed the limit.
func (c *Config) bodyTooLarge(n int64) bool {
	return c.LimitRequestBody >= 0 && n > c.LimitRequestBody
}

// bodyGrowsTooLarge reports whether n more bytes on a body of have bytes
// exceed the limit. It compares without adding: a chunk size near the top
// of int64, as a client may announce, would make the sum wrap negative and
// pass.
func (c *Config) bodyGrowsTooLarge(have, n int64) bool {
	return c.LimitRequestBody >= 0 && n > c.LimitRequestBody-have
}
