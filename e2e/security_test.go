package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Security basics, tried against the real binary: response splitting
// through the app's headers, the Server header, tracebacks, directory
// traversal, private temporary files.

// h2cClient speaks HTTP/2 in cleartext with prior knowledge (for --h2c).
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: testTimeout, Transport: &http.Transport{Protocols: &p}}
}

// badHeaderKinds are limitsapp's ways of putting CR, LF or NUL in a
// response head (BAD_HEADERS there).
var badHeaderKinds = []string{"crlf", "lf", "cr", "nul", "name", "status"}

// TestSecurityHeaderInjection: a response head with CR, LF or NUL in a
// header value or name, or in the status, is replaced by a 500 whatever
// the interface (WSGI, ASGI) and protocol (HTTP/1.1, HTTP/2), whether the
// body is complete or streamed; nothing of it reaches the client, the
// error log says why, and the worker serves the next request.
func TestSecurityHeaderInjection(t *testing.T) {
	t.Parallel()
	for _, iface := range []string{"wsgi", "asgi"} {
		t.Run(iface, func(t *testing.T) {
			t.Parallel()
			app := "limitsapp:app"
			if iface == "asgi" {
				app = "limitsapp:asgi"
			}
			s := Start(t, "--pythonpath", appsDir(t), "-w", "1", "--h2c", app)
			tried, rejected := 0, 0
			var targets []string
			for _, kind := range badHeaderKinds {
				for _, stream := range []string{"", "&stream=1"} {
					if iface == "asgi" && stream != "" {
						continue // the ASGI app sends its head once either way
					}
					targets = append(targets, "/bad?kind="+kind+stream)
				}
			}
			for _, target := range targets {
				tried++
				out := s.Raw(t, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
				ok := strings.HasPrefix(out, "HTTP/1.1 500 ") &&
					!strings.Contains(strings.ToLower(out), "injected") && !strings.Contains(out, "never-sent")
				if !ok {
					t.Errorf("HTTP/1.1 %s: %q", target, out)
				}

				tried++
				resp, err := h2cClient().Get(s.URL + target)
				if err != nil {
					t.Errorf("HTTP/2 %s: %v", target, err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				h2ok := resp.ProtoMajor == 2 && resp.StatusCode == 500 && resp.Header.Get("X-Injected") == "" &&
					resp.Header.Get("X-Evil") == "" && !strings.Contains(string(body), "never-sent")
				if !h2ok {
					t.Errorf("HTTP/%d %s: %d %v %q", resp.ProtoMajor, target, resp.StatusCode, resp.Header, body)
				}
				if ok {
					rejected++
				}
				if h2ok {
					rejected++
				}
			}
			// Each refusal is logged with the request and the reason.
			for _, target := range targets {
				line := "GET " + target + ": invalid response from the app: "
				if !s.WaitLog(line, 3*time.Second) {
					t.Errorf("no log line %q:\n%s", line, s.Stderr())
				}
			}
			log := s.Stderr()
			for _, why := range []string{"value contains a control character", "is not a valid token"} {
				if !strings.Contains(log, why) {
					t.Errorf("the log never says %q:\n%s", why, log)
				}
			}
			if code, body := httpGet(t, s, "/hello"); code != 200 || body != "hello" {
				t.Errorf("the worker after the rejected heads: %d %q", code, body)
			}
			t.Logf("%s: %d of %d responses with CR, LF or NUL in their head were replaced by a 500", iface, rejected, tried)
		})
	}
}

// serverHeaders returns the Server header lines of a raw HTTP/1.1 answer.
func serverHeaders(out string) []string {
	head, _, _ := strings.Cut(out, "\r\n\r\n")
	var got []string
	for _, line := range strings.Split(head, "\r\n")[1:] {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "server") {
			got = append(got, strings.TrimSpace(value))
		}
	}
	return got
}

// TestSecurityServerHeader: --server-header sets the Server header of
// every response the edge writes (the app's, the edge's own errors,
// HTTP/2), none leaves it out, an app's own Server header is kept, and a
// value that could split a response is refused at startup.
func TestSecurityServerHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		flag []string
		want []string // the Server headers of a response the app leaves it to taipan
	}{
		{nil, []string{"taipan"}},
		{[]string{"--server-header", "Acme/2.0 (internal)"}, []string{"Acme/2.0 (internal)"}},
		{[]string{"--server-header", "none"}, nil},
		{[]string{"--server-header", ""}, nil},
	} {
		t.Run(fmt.Sprint(tc.flag), func(t *testing.T) {
			t.Parallel()
			s := startLimitsApp(t, append([]string{"-w", "1", "--h2c"}, tc.flag...)...)
			for _, raw := range []string{
				"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", // the app's answer
				"GET /hello HTTP/1.1\r\n\r\n",                                 // 400 from the edge
				"BROKEN\r\n\r\n",                                              // 400 from the edge
			} {
				out := s.Raw(t, raw, 5*time.Second)
				if got := serverHeaders(out); fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("%q: Server %q, want %q", statusLine(out), got, tc.want)
				}
			}
			resp, err := h2cClient().Get(s.URL + "/hello")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Values("Server"); resp.ProtoMajor != 2 || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("HTTP/%d: Server %q, want %q", resp.ProtoMajor, got, tc.want)
			}
			// The app's own Server header is the only one.
			out := s.Raw(t, "GET /server HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
			if got := serverHeaders(out); len(got) != 1 || got[0] != "app-own/1.0" {
				t.Errorf("the app's Server header: got %q", got)
			}
		})
	}
	for _, bad := range []string{"x\r\nX-Injected: 1", "x\ny", " padded "} {
		code, out := runTaipan(t, 30*time.Second, "--python", pythonPath(), "--server-header", bad, "--pythonpath", appsDir(t), "limitsapp:app")
		if code == 0 || !strings.Contains(out, "--server-header") {
			t.Errorf("--server-header %q: exit %d, output %q", bad, code, out)
		}
	}
}

// TestSecurityNoTraceback: an app's exception answers a plain 500 that
// tells the client nothing of the code, WSGI and ASGI alike; the
// traceback goes to the error log. With --debug the 500 carries the
// traceback, and the variable that turns it on does not reach the app.
func TestSecurityNoTraceback(t *testing.T) {
	t.Parallel()
	const secret = "limitsapp-secret-boom" // SECRET in limitsapp.py
	for _, app := range []string{"limitsapp:app", "limitsapp:asgi"} {
		for _, debug := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s debug=%v", app, debug), func(t *testing.T) {
				t.Parallel()
				args := []string{"--pythonpath", appsDir(t), "-w", "1"}
				if debug {
					args = append(args, "--debug")
				}
				s := Start(t, append(args, app)...)
				for i := range 3 {
					code, body := httpGet(t, s, "/raise")
					if code != 500 {
						t.Errorf("request %d: status %d, want 500", i, code)
					}
					hasTrace := strings.Contains(body, "Traceback (most recent call last)") && strings.Contains(body, secret)
					if debug && !hasTrace {
						t.Errorf("request %d: with --debug the 500 lacks the traceback: %q", i, body)
					}
					if !debug && (body != "Internal Server Error" || strings.Contains(body, secret)) {
						t.Errorf("request %d: the 500 tells the client about the code: %q", i, body)
					}
				}
				if !s.WaitLog(secret, 3*time.Second) || !strings.Contains(s.Stderr(), "Traceback (most recent call last)") {
					t.Errorf("the traceback is not in the error log:\n%s", s.Stderr())
				}
				if debug != strings.Contains(s.Stderr(), "--debug: the tracebacks of app errors are sent to clients") {
					t.Errorf("--debug %v, and the start-up warning about it: %v", debug, !debug)
				}
				if app == "limitsapp:app" {
					if code, body := httpGet(t, s, "/env?name=TAIPAN_WORKER_DEBUG"); code != 200 || body != "<unset>" {
						t.Errorf("the app sees TAIPAN_WORKER_DEBUG: %d %q", code, body)
					}
				}
			})
		}
	}
}

// TestSecurityTraversal: requests that try to leave a --static or --cgi
// directory (dot-segments raw and percent-encoded, encoded slashes and
// backslashes, double encoding, overlong UTF-8, symlinks pointing out)
// get no file and run no script from outside it.
func TestSecurityTraversal(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	public := filepath.Join(root, "public")
	cgiDir := filepath.Join(root, "cgi")
	for _, d := range []string{public, cgiDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path, content string, mode os.FileMode) {
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(public, "hello.txt"), "public hello", 0o644)
	write(filepath.Join(root, "secret.txt"), "SECRET-FILE", 0o644)
	write(filepath.Join(cgiDir, "ok.sh"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\ncgi ok'\n", 0o755)
	write(filepath.Join(root, "outside.sh"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nSECRET-SCRIPT'\n", 0o755)
	for link, target := range map[string]string{
		filepath.Join(public, "link.txt"): filepath.Join(root, "secret.txt"),
		filepath.Join(public, "up"):       root,
		filepath.Join(cgiDir, "link.sh"):  filepath.Join(root, "outside.sh"),
		filepath.Join(cgiDir, "up"):       root,
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	s := startLimitsApp(t, "-w", "1", "--static", "/static="+public, "--cgi", "/cgi-bin="+cgiDir)

	// The mounts work.
	if code, body := httpGet(t, s, "/static/hello.txt"); code != 200 || body != "public hello" {
		t.Fatalf("/static/hello.txt: %d %q", code, body)
	}
	if code, body := httpGet(t, s, "/cgi-bin/ok.sh"); code != 200 || body != "cgi ok" {
		t.Fatalf("/cgi-bin/ok.sh: %d %q", code, body)
	}
	escapes := []string{
		"/../secret.txt",
		"/%2e%2e/secret.txt",
		"/%2E%2E/secret.txt",
		"/.%2e/secret.txt",
		"/..%2fsecret.txt",
		"/..%2Fsecret.txt",
		"/%2e%2e%2fsecret.txt",
		"/..%5csecret.txt",
		"/..\\secret.txt",
		"/%252e%252e/secret.txt",
		"//../secret.txt",
		"/./../secret.txt",
		"/hello.txt/../../secret.txt",
		"/%c0%ae%c0%ae/secret.txt",
		"/link.txt",
		"/up/secret.txt",
		"/../outside.sh",
		"/%2e%2e/outside.sh",
		"/..%2foutside.sh",
		"/link.sh",
		"/up/outside.sh",
	}
	tried, refused := 0, 0
	codes := map[int]int{}
	for _, prefix := range []string{"/static", "/cgi-bin"} {
		for _, e := range escapes {
			tried++
			target := prefix + e
			code, out := statusOfRaw(t, s, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			codes[code]++
			if strings.Contains(out, "SECRET") || code < 400 || code >= 500 {
				t.Errorf("GET %s: %d %q", target, code, out)
				continue
			}
			refused++
		}
	}
	t.Logf("%d of %d attempts to leave a --static or --cgi directory were refused with a 4xx (statuses: %v)", refused, tried, codes)
}

// TestSecurityPrivateFiles: the directory taipan unpacks the worker
// module into is private to its user (the request-body spill files, mode
// 0600, are checked by TestLimitsBodySpill and TestLimitsClientDisconnect).
func TestSecurityPrivateFiles(t *testing.T) {
	t.Parallel()
	s := startLimitsApp(t, "-w", "1")
	pids := s.WorkerPids()
	if len(pids) == 0 {
		t.Fatal("no worker")
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pids[0]))
	if err != nil {
		t.Fatal(err)
	}
	var script string
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		if strings.HasSuffix(arg, "taipan_worker.py") {
			script = arg
		}
	}
	if script == "" {
		t.Fatalf("no taipan_worker.py on the worker's command line %q", cmdline)
	}
	fi, err := os.Stat(filepath.Dir(script))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %v, want drwx------", filepath.Dir(script), fi.Mode())
	}
}
