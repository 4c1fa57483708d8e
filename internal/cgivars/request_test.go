package cgivars

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"taipan/internal/edge"
)

func build(t *testing.T, lim Limits, body *edge.Body, vars ...string) (*edge.Request, error) {
	t.Helper()
	var b Builder
	b.Reset(lim)
	for i := 0; i+1 < len(vars); i += 2 {
		if err := b.Add([]byte(vars[i]), []byte(vars[i+1])); err != nil {
			return nil, err
		}
	}
	r := &edge.Request{}
	err := b.Build(r, body, &Addrs{RemoteAddr: "10.0.0.1", RemotePort: "999", ServerName: "sock", ServerPort: "9000"})
	return r, err
}

var defaultLimits = Limits{URI: 4094, Field: 8190, Headers: 100}

func TestBuild(t *testing.T) {
	empty := edge.NewMemoryBody(nil)
	cases := []struct {
		name string
		vars []string
		body *edge.Body
		want edge.Request
	}{
		{
			name: "nginx uwsgi_params",
			vars: []string{"REQUEST_METHOD", "POST", "REQUEST_URI", "/a%20b?x=1", "PATH_INFO", "/a b", "QUERY_STRING", "x=1",
				"CONTENT_TYPE", "text/plain", "CONTENT_LENGTH", "3", "SERVER_PROTOCOL", "HTTP/1.0", "REQUEST_SCHEME", "https",
				"REMOTE_ADDR", "203.0.113.9", "REMOTE_PORT", "4242", "SERVER_NAME", "example.org", "SERVER_PORT", "443",
				"HTTP_HOST", "example.org", "HTTP_X_FORWARDED_FOR", "1.2.3.4", "HTTP_CONTENT_LENGTH", "3", "HTTP_TRANSFER_ENCODING", "chunked"},
			body: edge.NewMemoryBody([]byte("abc")),
			want: edge.Request{Method: "POST", Target: "/a%20b?x=1", Path: "/a%20b", RawQuery: "x=1", Proto: "HTTP/1.0", ProtoMinor: 0,
				Header: []edge.HeaderField{{Name: "Content-Type", Value: "text/plain"}, {Name: "Content-Length", Value: "3"},
					{Name: "Host", Value: "example.org"}, {Name: "X-Forwarded-For", Value: "1.2.3.4"}},
				Host: "example.org", GatewayPaths: true, PathInfo: "/a b", RemoteAddr: "203.0.113.9", RemotePort: "4242", ServerName: "example.org", ServerPort: "443", Scheme: "https"},
		},
		{
			name: "CGI pieces, socket addresses, HTTP/2 served as 1.1",
			vars: []string{"REQUEST_METHOD", "GET", "SCRIPT_NAME", "/app", "PATH_INFO", "/a b?%", "QUERY_STRING", "q", "SERVER_PROTOCOL", "HTTP/2.0", "HTTPS", "1"},
			want: edge.Request{Method: "GET", Target: "/app/a%20b%3F%25?q", Path: "/app/a%20b%3F%25", RawQuery: "q", Proto: "HTTP/1.1", ProtoMinor: 1,
				GatewayPaths: true, ScriptName: "/app", PathInfo: "/a b?%", RemoteAddr: "10.0.0.1", RemotePort: "999", ServerName: "sock", ServerPort: "9000", Scheme: "https"},
		},
		{
			name: "absolute-form target, no path",
			vars: []string{"REQUEST_METHOD", "OPTIONS", "REQUEST_URI", "http://example.org?x", "HTTP_ACCEPT_ENCODING", "gzip", "HTTP_DNT", "1"},
			want: edge.Request{Method: "OPTIONS", Target: "http://example.org?x", Path: "/", RawQuery: "x", Proto: "HTTP/1.1", ProtoMinor: 1,
				Header:     []edge.HeaderField{{Name: "Accept-Encoding", Value: "gzip"}, {Name: "Dnt", Value: "1"}},
				RemoteAddr: "10.0.0.1", RemotePort: "999", ServerName: "sock", ServerPort: "9000", Scheme: "http"},
		},
	}
	for _, c := range cases {
		body := c.body
		if body == nil {
			body = empty
		}
		r, err := build(t, defaultLimits, body, c.vars...)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		c.want.Body = body
		if !reflect.DeepEqual(*r, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, *r, c.want)
		}
	}
}

// The web server's SCRIPT_NAME and PATH_INFO are what the app gets when
// it sent a PATH_INFO, while the target and its path stay the REQUEST_URI;
// without a PATH_INFO (fastcgi_params, whose SCRIPT_NAME is the whole
// path) the app's are derived from the target as before. Modifier1 30
// removes SCRIPT_NAME from the front of PATH_INFO.
func TestGatewayPaths(t *testing.T) {
	type want struct {
		gateway                bool
		script, pathInfo       string
		target, path, rawQuery string
	}
	cases := []struct {
		name  string
		strip bool
		vars  []string
		want  want
	}{
		{"mounted", false, []string{"REQUEST_URI", "/mnt/foo?q", "SCRIPT_NAME", "/mnt", "PATH_INFO", "/foo"},
			want{true, "/mnt", "/foo", "/mnt/foo?q", "/mnt/foo", "q"}},
		{"rewritten by nginx", false, []string{"REQUEST_URI", "/old/x", "PATH_INFO", "/new/x"},
			want{true, "", "/new/x", "/old/x", "/old/x", ""}},
		{"fastcgi_split_path_info", false, []string{"REQUEST_URI", "/fcsplit/sub/path", "SCRIPT_NAME", "/fcsplit", "PATH_INFO", "/sub/path"},
			want{true, "/fcsplit", "/sub/path", "/fcsplit/sub/path", "/fcsplit/sub/path", ""}},
		{"empty PATH_INFO", false, []string{"REQUEST_URI", "/mnt", "SCRIPT_NAME", "/mnt", "PATH_INFO", ""},
			want{true, "/mnt", "", "/mnt", "/mnt", ""}},
		{"trailing slash of SCRIPT_NAME moves", false, []string{"REQUEST_URI", "/app/x", "SCRIPT_NAME", "/app/", "PATH_INFO", "x"},
			want{true, "/app", "/x", "/app/x", "/app/x", ""}},
		{"SCRIPT_NAME /", false, []string{"REQUEST_URI", "/", "SCRIPT_NAME", "/", "PATH_INFO", ""},
			want{true, "", "/", "/", "/", ""}},
		{"fastcgi_params: no PATH_INFO", false, []string{"REQUEST_URI", "/a%20b", "SCRIPT_NAME", "/a b"},
			want{false, "", "", "/a%20b", "/a%20b", ""}},
		{"modifier1 30", true, []string{"REQUEST_URI", "/mnt/foo", "SCRIPT_NAME", "/mnt", "PATH_INFO", "/mnt/foo"},
			want{true, "/mnt", "/foo", "/mnt/foo", "/mnt/foo", ""}},
		{"modifier1 30, the mount itself", true, []string{"REQUEST_URI", "/mnt", "SCRIPT_NAME", "/mnt/", "PATH_INFO", "/mnt"},
			want{true, "/mnt", "", "/mnt", "/mnt", ""}},
		{"modifier1 30, whole segments only", true, []string{"REQUEST_URI", "/mntx", "SCRIPT_NAME", "/mnt", "PATH_INFO", "/mntx"},
			want{true, "/mnt", "/mntx", "/mntx", "/mntx", ""}},
		{"modifier1 30, no REQUEST_URI", true, []string{"SCRIPT_NAME", "/mnt", "PATH_INFO", "/mnt/a b", "QUERY_STRING", "q"},
			want{true, "/mnt", "/a b", "/mnt/a%20b?q", "/mnt/a%20b", "q"}},
		{"no modifier1 30, nothing stripped", false, []string{"REQUEST_URI", "/mnt/foo", "SCRIPT_NAME", "/mnt", "PATH_INFO", "/mnt/foo"},
			want{true, "/mnt", "/mnt/foo", "/mnt/foo", "/mnt/foo", ""}},
	}
	for _, c := range cases {
		var b Builder
		b.Reset(defaultLimits)
		if c.strip {
			b.StripScriptName()
		}
		b.Add([]byte("REQUEST_METHOD"), []byte("GET"))
		for i := 0; i+1 < len(c.vars); i += 2 {
			if err := b.Add([]byte(c.vars[i]), []byte(c.vars[i+1])); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
		r := &edge.Request{}
		if err := b.Build(r, edge.NewMemoryBody(nil), &Addrs{}); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		got := want{r.GatewayPaths, r.ScriptName, r.PathInfo, r.Target, r.Path, r.RawQuery}
		if got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}
	// Reset forgets modifier1 30.
	var b Builder
	b.StripScriptName()
	b.Reset(defaultLimits)
	for _, kv := range [][2]string{{"REQUEST_METHOD", "GET"}, {"SCRIPT_NAME", "/mnt"}, {"PATH_INFO", "/mnt/foo"}} {
		b.Add([]byte(kv[0]), []byte(kv[1]))
	}
	r := &edge.Request{}
	if b.Build(r, edge.NewMemoryBody(nil), &Addrs{}); r.PathInfo != "/mnt/foo" {
		t.Errorf("after Reset: PATH_INFO %q, want it whole", r.PathInfo)
	}
}

func TestBuildRefusals(t *testing.T) {
	lim := Limits{URI: 20, Field: 30, Headers: 2}
	cases := []struct {
		name string
		vars []string
		code int
	}{
		{"no method", []string{"REQUEST_URI", "/"}, 400},
		{"method not a token", []string{"REQUEST_METHOD", "G T", "REQUEST_URI", "/"}, 400},
		{"target not a path", []string{"REQUEST_METHOD", "GET", "REQUEST_URI", "x"}, 400},
		{"control character in the target", []string{"REQUEST_METHOD", "GET", "REQUEST_URI", "/\x01"}, 400},
		{"long REQUEST_URI", []string{"REQUEST_METHOD", "GET", "REQUEST_URI", "/" + strings.Repeat("a", 20)}, 414},
		{"long rebuilt target", []string{"REQUEST_METHOD", "GET", "PATH_INFO", "/" + strings.Repeat(" ", 10)}, 414},
		{"long header", []string{"REQUEST_METHOD", "GET", "HTTP_X", strings.Repeat("a", 30)}, 431},
		{"too many headers", []string{"REQUEST_METHOD", "GET", "HTTP_A", "1", "HTTP_B", "2", "HTTP_C", "3"}, 431},
		{"bad header name", []string{"REQUEST_METHOD", "GET", "HTTP_A:B", "1"}, 400},
		{"bad header value", []string{"REQUEST_METHOD", "GET", "HTTP_A", "1\n2"}, 400},
		{"bad CONTENT_LENGTH", []string{"REQUEST_METHOD", "GET", "CONTENT_LENGTH", "+1"}, 400},
	}
	for _, c := range cases {
		_, err := build(t, lim, edge.NewMemoryBody(nil), c.vars...)
		var e *Error
		if !errors.As(err, &e) || e.Code != c.code {
			t.Errorf("%s: %v, want %d", c.name, err, c.code)
		}
	}
}
