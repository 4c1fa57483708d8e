package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// nginxPath is Debian's nginx; scripts/deps installs it.
const nginxPath = "/usr/sbin/nginx"

// requireNginx skips the test when nginx is not installed, and fails it in
// CI, where scripts/deps must have installed it.
func requireNginx(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(nginxPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing in CI (apt-get install nginx): %v", nginxPath, err)
		}
		t.Skipf("%s not installed (apt-get install nginx)", nginxPath)
	}
}

// nginxProc is a running nginx, in the foreground and unprivileged: every
// path it writes is in its own directory.
type nginxProc struct {
	*daemon
	dir string
}

// startNginx writes conf (the http block's content, with DIR standing for
// nginx's directory) into a whole configuration, starts nginx and waits
// until it accepts on addr. It is stopped when the test ends.
func startNginx(t *testing.T, dir, addr, httpBlock string) *nginxProc {
	t.Helper()
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := `daemon off;
master_process off;
worker_processes 1;
pid DIR/nginx.pid;
error_log DIR/error.log info;
events { worker_connections 64; }
http {
    access_log DIR/access.log;
    client_body_temp_path DIR/client_body;
    proxy_temp_path DIR/proxy;
    fastcgi_temp_path DIR/fastcgi;
    uwsgi_temp_path DIR/uwsgi;
    scgi_temp_path DIR/scgi;
    client_max_body_size 10m;
` + httpBlock + `
}
`
	conf = strings.ReplaceAll(conf, "DIR", dir)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &nginxProc{dir: dir}
	n.daemon = startDaemon(t, "nginx", exec.Command(nginxPath, "-c", confPath, "-p", dir, "-e", filepath.Join(dir, "error.log")))
	n.waitAccepting(t, addr, func() string { return n.output() + "\n" + n.errorLog() })
	return n
}

func (n *nginxProc) errorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
	return string(b)
}

// portClient does one request per connection and remembers the local port
// of the last one, which nginx reports as REMOTE_PORT.
type portClient struct {
	http.Client
	mu   sync.Mutex
	port string
}

func newPortClient() *portClient {
	pc := &portClient{}
	pc.Timeout = testTimeout
	pc.Transport = &http.Transport{
		DisableKeepAlives:  true,
		DisableCompression: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			if err == nil {
				_, port, _ := net.SplitHostPort(c.LocalAddr().String())
				pc.mu.Lock()
				pc.port = port
				pc.mu.Unlock()
			}
			return c, err
		},
	}
	return pc
}

func (pc *portClient) lastPort() string {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.port
}

func (pc *portClient) do(t *testing.T, method, url string, body []byte, header map[string]string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := pc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp, string(b)
}

// TestNginx puts real nginx in front of taipan over uwsgi_pass and
// fastcgi_pass (TCP with fastcgi_keep_conn, and a unix socket) and checks
// that requests and responses survive the trip.
func TestNginx(t *testing.T) {
	requireNginx(t)
	dir := t.TempDir()
	uwsgiPort, fcgiPort := freePort(t), freePort(t)
	fcgiSock := filepath.Join(dir, "fcgi.sock")
	startTestApp(t,
		"--limit-request-body", "5m", // under nginx's client_max_body_size
		"-b", fmt.Sprintf("127.0.0.1:%d", freePort(t)), // first: the harness waits on it
		"-b", fmt.Sprintf("uwsgi://127.0.0.1:%d", uwsgiPort),
		"-b", fmt.Sprintf("fastcgi://127.0.0.1:%d", fcgiPort),
		"-b", "fastcgi://unix:"+fcgiSock,
	)

	fronts := []struct {
		name, pass string
		port       int
	}{
		{"uwsgi", fmt.Sprintf(`
            include /etc/nginx/uwsgi_params;
            uwsgi_pass 127.0.0.1:%d;`, uwsgiPort), freePort(t)},
		{"fastcgi-keepconn", `
            include /etc/nginx/fastcgi_params;
            fastcgi_pass taipan_fastcgi;
            fastcgi_keep_conn on;`, freePort(t)},
		{"fastcgi-unix", `
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:` + fcgiSock + `;`, freePort(t)},
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, `
    upstream taipan_fastcgi {
        server 127.0.0.1:%d;
        keepalive 4;
    }`, fcgiPort)
	for _, f := range fronts {
		buffering := "uwsgi_buffering off;"
		if strings.HasPrefix(f.name, "fastcgi") {
			buffering = "fastcgi_buffering off;"
		}
		debugLog := ""
		if f.name == "fastcgi-keepconn" {
			// An nginx built --with-debug (Debian's) says at debug level
			// when it reuses a kept connection.
			debugLog = "error_log DIR/keepalive.log debug;"
		}
		fmt.Fprintf(&conf, `
    server {
        listen 127.0.0.1:%d;
        server_name taipan.test;
        %s
        location / {%s
        }
        location ~ ^/(stream|close)$ {%s
            %s
        }
    }`, f.port, debugLog, f.pass, f.pass, buffering)
	}
	ng := startNginx(t, dir, fmt.Sprintf("127.0.0.1:%d", fronts[0].port), conf.String())

	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			base := fmt.Sprintf("http://127.0.0.1:%d", f.port)
			checkThroughNginx(t, base, f.port)
			checkClientGone(t, base)
		})
	}

	keep, _ := os.ReadFile(filepath.Join(dir, "keepalive.log"))
	for _, line := range strings.Split(ng.errorLog()+string(keep), "\n") {
		if strings.Contains(line, "[debug]") {
			continue
		}
		for _, bad := range []string{"upstream prematurely closed", "upstream sent", "[error]", "[alert]", "[emerg]", "[crit]"} {
			if strings.Contains(line, bad) {
				t.Errorf("nginx logged: %s", line)
			}
		}
	}
	if v, _ := exec.Command(nginxPath, "-V").CombinedOutput(); !bytes.Contains(v, []byte("--with-debug")) {
		t.Log("nginx built without --with-debug: cannot check that it reused keep-conn connections")
	} else if !bytes.Contains(keep, []byte("get keepalive peer: using connection")) {
		t.Errorf("nginx never reused a fastcgi_keep_conn connection (keepalive.log has %d bytes)", len(keep))
	}
}

// checkClientGone leaves a never-ending stream half-way: nginx closes its
// connection to taipan, and the app hears of it (its iterable is closed).
func checkClientGone(t *testing.T, base string) {
	marker := filepath.Join(t.TempDir(), "closed")
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	fmt.Fprintf(c, "GET /close?stream=forever&marker=%s HTTP/1.1\r\nHost: x\r\n\r\n", marker)
	buf := make([]byte, 256)
	if n, err := io.ReadAtLeast(c, buf, 1); err != nil || !bytes.Contains(buf[:n], []byte("200 OK")) {
		t.Fatalf("stream: %q, %v", buf[:n], err)
	}
	c.Close()
	if got, ok := waitMarker(marker, 10*time.Second); !ok || got != "closed" {
		t.Errorf("the app's iterable was not closed after the client left (marker %q)", got)
	}
}

// checkThroughNginx sends requests to the nginx server at base, which passes
// them to the test app.
func checkThroughNginx(t *testing.T, base string, port int) {
	pc := newPortClient()

	// The CGI variables: nginx's view of the client, the request line, the
	// headers. A client's own X-Forwarded-For passes through nginx but does
	// not replace the client nginx reports: forwarding headers apply to
	// HTTP listeners only.
	resp, body := pc.do(t, "GET", base+"/environ/sub%20dir?a=1&b=two", nil, map[string]string{
		"X-Custom": "hello", "User-Agent": "nginx-e2e", "X-Request-Id": "req-42", "X-Forwarded-For": "6.6.6.6",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("GET /environ: %d %q", resp.StatusCode, body)
	}
	var env struct {
		Str map[string]string `json:"str"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("bad JSON %q: %v", body, err)
	}
	want := map[string]string{
		"REQUEST_METHOD":    "GET",
		"PATH_INFO":         "/environ/sub dir",
		"QUERY_STRING":      "a=1&b=two",
		"REQUEST_URI":       "/environ/sub%20dir?a=1&b=two",
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"REMOTE_ADDR":       "127.0.0.1",
		"REMOTE_PORT":       pc.lastPort(), // the client's, not nginx's
		"SERVER_NAME":       "taipan.test",
		"SERVER_PORT":       strconv.Itoa(port),
		"HTTP_HOST":         "127.0.0.1",
		"HTTP_X_CUSTOM":     "hello",
		"HTTP_USER_AGENT":   "nginx-e2e",
		"HTTP_X_REQUEST_ID": "req-42",
		"wsgi.url_scheme":   "http",
	}
	for k, v := range want {
		if got, ok := env.Str[k]; !ok || got != v {
			t.Errorf("%s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	for _, k := range []string{"HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "CONTENT_LENGTH"} {
		if v, ok := env.Str[k]; ok {
			t.Errorf("%s = %q for a GET without a body", k, v)
		}
	}

	// Bodies: a small one, and one over 1 MiB (nginx spools it to its
	// temp dir, taipan spills it to a file).
	resp, body = pc.do(t, "POST", base+"/echo", []byte("small=body&x=1"), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	var echo struct {
		Len           int    `json:"len"`
		Data          string `json:"data"`
		ContentLength string `json:"content_length"`
		ContentType   string `json:"content_type"`
		SHA256        string `json:"sha256"`
	}
	if err := json.Unmarshal([]byte(body), &echo); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /echo: %d %q", resp.StatusCode, body)
	}
	if echo.Data != "small=body&x=1" || echo.ContentLength != "14" || echo.ContentType != "application/x-www-form-urlencoded" {
		t.Errorf("small POST: %+v", echo)
	}
	big := make([]byte, 3<<20+12345)
	for i := range big {
		big[i] = byte(i*7 + i>>11)
	}
	sum := sha256.Sum256(big)
	_, body = pc.do(t, "POST", base+"/echo?format=sha", big, nil)
	if err := json.Unmarshal([]byte(body), &echo); err != nil {
		t.Fatalf("big POST: %q", body)
	}
	if echo.Len != len(big) || echo.SHA256 != hex.EncodeToString(sum[:]) || echo.ContentLength != strconv.Itoa(len(big)) {
		t.Errorf("POST of %d bytes arrived as %d bytes (CONTENT_LENGTH %s), sha256 %s", len(big), echo.Len, echo.ContentLength, echo.SHA256)
	}

	// A body over taipan's limit but under nginx's: taipan's 413 must reach
	// the client, though nginx may still be sending the body when it comes.
	if resp, body = pc.do(t, "POST", base+"/echo", make([]byte, 7<<20), nil); resp.StatusCode != 413 {
		t.Errorf("POST over --limit-request-body: %d %q", resp.StatusCode, body)
	}

	// A streamed response (no Content-Length), through an unbuffered
	// location: its parts reach the client as the app yields them.
	req, _ := http.NewRequest("GET", base+"/stream?chunks=3&size=4&delay_ms=400", nil)
	start := time.Now()
	sresp, err := pc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 4)
	if _, err := io.ReadFull(sresp.Body, first); err != nil {
		t.Fatal(err)
	}
	firstAt := time.Since(start)
	rest, err := io.ReadAll(sresp.Body)
	sresp.Body.Close()
	doneAt := time.Since(start)
	if err != nil || string(first)+string(rest) != "000011112222" || sresp.ContentLength != -1 {
		t.Errorf("stream: %q%q (Content-Length %d), %v", first, rest, sresp.ContentLength, err)
	}
	if doneAt-firstAt < 400*time.Millisecond {
		t.Errorf("stream: first part at %v, end at %v: the parts were not streamed", firstAt, doneAt)
	}
	resp, body = pc.do(t, "GET", base+"/big?mb=2", nil, nil)
	if resp.StatusCode != 200 || len(body) != 2<<20 || strings.Trim(body, "x") != "" {
		t.Errorf("2 MiB stream: %d, %d bytes", resp.StatusCode, len(body))
	}

	// HEAD: the GET's headers, no body.
	resp, body = pc.do(t, "HEAD", base+"/environ", nil, nil)
	if resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("HEAD: %d %q %v", resp.StatusCode, body, resp.Header)
	}

	// Errors of the app.
	if resp, body = pc.do(t, "GET", base+"/raise", nil, nil); resp.StatusCode != 500 {
		t.Errorf("app exception: %d %q", resp.StatusCode, body)
	}
	if resp, body = pc.do(t, "GET", base+"/status?code=404", nil, nil); resp.StatusCode != 404 || body != "status 404" {
		t.Errorf("404: %d %q", resp.StatusCode, body)
	}
	if resp, _ = pc.do(t, "GET", base+"/status?code=204", nil, nil); resp.StatusCode != 204 {
		t.Errorf("204: %d", resp.StatusCode)
	}
}

// TestNginxGatewayPaths: the app gets SCRIPT_NAME and PATH_INFO as nginx
// sends them, as under uWSGI and flup, while REQUEST_URI and RAW_URI stay
// the URI the client sent: nginx's SCRIPT_NAME wins over --root-path, a
// rewritten URI is the PATH_INFO, fastcgi_split_path_info splits, and
// uwsgi_modifier1 30 removes SCRIPT_NAME from the front of PATH_INFO.
func TestNginxGatewayPaths(t *testing.T) {
	requireNginx(t)
	dir := t.TempDir()
	uwsgiPort, fcgiPort, port, fcPort := freePort(t), freePort(t), freePort(t), freePort(t)
	startTestApp(t,
		"--root-path", "/app",
		"-b", fmt.Sprintf("127.0.0.1:%d", freePort(t)), // first: the harness waits on it
		"-b", fmt.Sprintf("uwsgi://127.0.0.1:%d", uwsgiPort),
		"-b", fmt.Sprintf("fastcgi://127.0.0.1:%d", fcgiPort),
	)
	uw := fmt.Sprintf("include /etc/nginx/uwsgi_params; uwsgi_pass 127.0.0.1:%d;", uwsgiPort)
	fc := fmt.Sprintf("include /etc/nginx/fastcgi_params; fastcgi_pass 127.0.0.1:%d;", fcgiPort)
	ng := startNginx(t, dir, fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf(`
    server {
        listen 127.0.0.1:%d;
        server_name taipan.test;
        location /app/ { %[2]s }
        location /mnt/ { %[2]s uwsgi_param SCRIPT_NAME /mnt; uwsgi_modifier1 30; }
        location /old/ { rewrite ^/old/(.*)$ /app/$1 break; %[2]s }
        location /fcsplit/ {
            fastcgi_split_path_info ^(/fcsplit)(/.*)$;
            %[3]s
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param PATH_INFO $fastcgi_path_info;
        }
    }
    server {
        listen 127.0.0.1:%[4]d;
        server_name taipan.test;
        location / { %[3]s }
    }`, port, uw, fc, fcPort))

	pc := newPortClient()
	for _, tc := range []struct {
		port                  int
		uri, script, pathInfo string
	}{
		{port, "/app/environ/a%20b?q=1", "/app", "/environ/a b"},   // uwsgi_params: --root-path
		{port, "/mnt/environ/x?q=1", "/mnt", "/environ/x"},         // modifier1 30
		{port, "/old/environ/x?q=1", "/app", "/environ/x"},         // rewritten to /app/environ/x
		{port, "/fcsplit/environ/x?q=1", "/fcsplit", "/environ/x"}, // fastcgi_split_path_info
		{fcPort, "/app/environ/x?q=1", "/app", "/environ/x"},       // fastcgi_params: from REQUEST_URI
	} {
		resp, body := pc.do(t, "GET", fmt.Sprintf("http://127.0.0.1:%d%s", tc.port, tc.uri), nil, nil)
		var env struct {
			Str map[string]string `json:"str"`
		}
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &env) != nil {
			t.Errorf("%s: %d %q", tc.uri, resp.StatusCode, body)
			continue
		}
		for k, v := range map[string]string{"SCRIPT_NAME": tc.script, "PATH_INFO": tc.pathInfo,
			"REQUEST_URI": tc.uri, "RAW_URI": tc.uri, "QUERY_STRING": "q=1"} {
			if got, ok := env.Str[k]; !ok || got != v {
				t.Errorf("%s: %s = %q (present %v), want %q", tc.uri, k, got, ok, v)
			}
		}
	}
	for _, line := range strings.Split(ng.errorLog(), "\n") {
		for _, bad := range []string{"upstream prematurely closed", "[error]", "[alert]", "[emerg]", "[crit]"} {
			if strings.Contains(line, bad) {
				t.Errorf("nginx logged: %s", line)
			}
		}
	}
}
