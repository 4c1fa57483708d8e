package bridge

import (
	"bytes"
	"testing"

	"taipan/internal/edge"
	"taipan/internal/logging"
	"taipan/internal/pool"
	"taipan/internal/wire"
)

func TestPercentDecode(t *testing.T) {
	cases := map[string]string{
		"/plain":        "/plain",
		"/caf%C3%A9":    "/caf\xc3\xa9",
		"/a%2Fb":        "/a/b",
		"/bad%zz":       "/bad%zz",
		"/end%4":        "/end%4",
		"/end%":         "/end%",
		"/%ff%00x":      "/\xff\x00x",
		"/sp%20ace%20":  "/sp ace ",
		"/mixed%41%6a%": "/mixedAj%",
	}
	for in, want := range cases {
		if got := percentDecode(in); string(got) != want {
			t.Errorf("percentDecode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRootPath(t *testing.T) {
	b := New(nil, Options{RootPath: "/app/"}, logging.New(&bytes.Buffer{}, logging.Error))
	for path, want := range map[string][2]string{
		"/app/x":   {"/app", "/x"},
		"/app":     {"/app", ""},
		"/apple":   {"/app", "/apple"},
		"/other/x": {"/app", "/other/x"},
	} {
		r := &edge.Request{Method: "GET", Path: path, Proto: "HTTP/1.1", Body: edge.NewMemoryBody(nil), Scheme: "http"}
		env, _ := b.environ(new(wire.EnvironEncoder), r)
		if !bytes.Contains(env, []byte("z\x0bSCRIPT_NAMEz"+string(rune(len(want[0])))+want[0])) ||
			!bytes.Contains(env, []byte("z\x09PATH_INFOz"+string(rune(len(want[1])))+want[1])) {
			t.Errorf("path %q: environ %q, want SCRIPT_NAME %q PATH_INFO %q", path, env, want[0], want[1])
		}
	}
}

// A web server's SCRIPT_NAME and PATH_INFO (uwsgi, FastCGI) reach the app
// as sent, not the REQUEST_URI's path: its SCRIPT_NAME wins over
// --root-path, which is removed from the front of its PATH_INFO only when
// it sent no SCRIPT_NAME. The ASGI scope has them as root_path and path,
// and the path as sent as raw_path.
func TestGatewayPaths(t *testing.T) {
	for _, tc := range []struct {
		name, rootPath, uri, script, pathInfo string
		want                                  [2]string
	}{
		{"mounted", "", "/mnt/foo", "/mnt", "/foo", [2]string{"/mnt", "/foo"}},
		{"rewritten", "", "/old/x", "", "/new/x", [2]string{"", "/new/x"}},
		{"SCRIPT_NAME wins over --root-path", "/app", "/mnt/foo", "/mnt", "/foo", [2]string{"/mnt", "/foo"}},
		{"--root-path under uwsgi_params", "/app", "/app/foo", "", "/app/foo", [2]string{"/app", "/foo"}},
		{"--root-path not there", "/app", "/other", "", "/other", [2]string{"/app", "/other"}},
	} {
		b := New(nil, Options{RootPath: tc.rootPath}, logging.New(&bytes.Buffer{}, logging.Error))
		r := &edge.Request{Method: "GET", Target: tc.uri, Path: tc.uri, Proto: "HTTP/1.1", Body: edge.NewMemoryBody(nil), Scheme: "http",
			GatewayPaths: true, ScriptName: tc.script, PathInfo: tc.pathInfo}
		env, _ := b.environ(new(wire.EnvironEncoder), r)
		for _, want := range []string{"z\x0bSCRIPT_NAMEz" + string(rune(len(tc.want[0]))) + tc.want[0],
			"z\x09PATH_INFOz" + string(rune(len(tc.want[1]))) + tc.want[1],
			"z\x0bREQUEST_URIz" + string(rune(len(tc.uri))) + tc.uri, "z\x07RAW_URIz" + string(rune(len(tc.uri))) + tc.uri} {
			if !bytes.Contains(env, []byte(want)) {
				t.Errorf("%s: environ lacks %q:\n%q", tc.name, want, env)
			}
		}
		scope, _ := b.asgiScope(new(wire.EnvironEncoder), r, false)
		for _, want := range []string{"z\x09root_pathz" + string(rune(len(tc.want[0]))) + tc.want[0],
			"z\x04pathz" + string(rune(len(tc.want[1]))) + tc.want[1]} {
			if !bytes.Contains(scope, []byte(want)) {
				t.Errorf("%s: scope lacks %q:\n%q", tc.name, want, scope)
			}
		}
		if want := "raw_paths" + string(rune(len(tc.uri))) + "\x00\x00\x00" + tc.uri; !bytes.Contains(scope, []byte(want)) {
			t.Errorf("%s: scope lacks raw_path %q:\n%q", tc.name, tc.uri, scope)
		}
	}
}

// Headers with underscores are dropped, repeated headers joined, and
// Content-Type becomes CONTENT_TYPE.
func TestHeaders(t *testing.T) {
	b := New(nil, Options{}, logging.New(&bytes.Buffer{}, logging.Error))
	r := &edge.Request{Method: "POST", Path: "/", Proto: "HTTP/1.1", Body: edge.NewMemoryBody([]byte("abc")), Scheme: "http",
		Header: []edge.HeaderField{
			{Name: "X-Forwarded-For", Value: "1.1.1.1"},
			{Name: "X_Forwarded_For", Value: "6.6.6.6"},
			{Name: "Accept", Value: "a"},
			{Name: "accept", Value: "b"},
			{Name: "Cookie", Value: "a=1"},
			{Name: "Cookie", Value: "b=2"},
			{Name: "Content-Type", Value: "text/plain"},
			{Name: "Content-Length", Value: "3"},
		}}
	env, _ := b.environ(new(wire.EnvironEncoder), r)
	for _, want := range []string{"z\x14HTTP_X_FORWARDED_FORz\x071.1.1.1", "z\x0bHTTP_ACCEPTz\x04a, b", "z\x0bHTTP_COOKIEz\x08a=1; b=2",
		"z\x0cCONTENT_TYPEz\x0atext/plain", "z\x0eCONTENT_LENGTHz\x013"} {
		if !bytes.Contains(env, []byte(want)) {
			t.Errorf("environ lacks %q:\n%q", want, env)
		}
	}
	for _, bad := range []string{"6.6.6.6", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"} {
		if bytes.Contains(env, []byte(bad)) {
			t.Errorf("environ has %q:\n%q", bad, env)
		}
	}
}

// SERVER_PORT is never empty (PEP 3333), not even on a unix socket, where
// the listener has no port.
func TestServerPortOnUnixSocket(t *testing.T) {
	b := New(nil, Options{}, logging.New(&bytes.Buffer{}, logging.Error))
	for _, tc := range []struct{ host, scheme, serverPort, want string }{
		{"localhost", "http", "", "80"},
		{"localhost", "https", "", "443"},
		{"example.com:8080", "http", "", "8080"},
		{"[::1]", "http", "", "80"},
		{"[::1]:9000", "https", "", "9000"},
		{"", "http", "", "80"},
		{"example.com:8080", "http", "8000", "8000"}, // a TCP listener's own port
	} {
		r := &edge.Request{Method: "GET", Path: "/", Proto: "HTTP/1.1", Body: edge.NewMemoryBody(nil),
			Scheme: tc.scheme, Host: tc.host, ServerName: "localhost", ServerPort: tc.serverPort}
		env, _ := b.environ(new(wire.EnvironEncoder), r)
		if want := "z\x0bSERVER_PORTz" + string(rune(len(tc.want))) + tc.want; !bytes.Contains(env, []byte(want)) {
			t.Errorf("Host %q, %s, listener port %q: environ %q, want SERVER_PORT %q", tc.host, tc.scheme, tc.serverPort, env, tc.want)
		}
	}
}

func TestRoute(t *testing.T) {
	mainPool, lanePool := new(pool.Pool), new(pool.Pool)
	b := New(mainPool, Options{Lanes: []Lane{{Prefix: "/reports", Pool: lanePool}}}, logging.New(&bytes.Buffer{}, logging.Error))
	for path, want := range map[string]*pool.Pool{
		"/reports":        lanePool,
		"/reports/":       lanePool,
		"/reports/2026/q": lanePool,
		"/reportsx":       mainPool,
		"/":               mainPool,
		"/other/reports":  mainPool,
	} {
		if got := b.route(path); got != want {
			t.Errorf("route(%q) went to the wrong pool", path)
		}
	}
}

// An ASGI scope's path is the target without its query, so "*" for
// OPTIONS * (WSGI's PATH_INFO is empty there).
func TestASGIPathOfAsteriskTarget(t *testing.T) {
	b := New(nil, Options{}, logging.New(&bytes.Buffer{}, logging.Error))
	for target, want := range map[string]string{"*": "*", "/a%20b": "/a b"} {
		r := &edge.Request{Method: "OPTIONS", Target: target, Path: target, Proto: "HTTP/1.1", Body: edge.NewMemoryBody(nil), Scheme: "http"}
		env, _ := b.asgiScope(new(wire.EnvironEncoder), r, false)
		if pair := "z\x04pathz" + string(rune(len(want))) + want; !bytes.Contains(env, []byte(pair)) {
			t.Errorf("target %q: scope %q, want path %q", target, env, want)
		}
	}
}
