package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCGI runs taipan with --cgi beside the Python test app: scripts under
// the prefix answer, the app answers everything else, and --cgi-timeout
// turns a script that runs too long into a 504; --cgi-env reaches scripts.
func TestCGI(t *testing.T) {
	dir := t.TempDir()
	scripts := map[string]string{
		"hello.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhello from %s%s\\n' \"$SCRIPT_NAME\" \"$PATH_INFO\"\n",
		"env.sh":   "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n%s\\n' \"$GREETING\"\n",
		"slow.sh":  "#!/bin/sh\nsleep 30\n",
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := startTestApp(t, "--cgi", "/cgi-bin="+dir, "--cgi-timeout", "1", "--cgi-env", "GREETING=hi there")

	if code, body := httpGet(t, s, "/cgi-bin/hello.sh/extra"); code != 200 || body != "hello from /cgi-bin/hello.sh/extra\n" {
		t.Errorf("CGI script: %d %q", code, body)
	}
	if code, body := httpGet(t, s, "/cgi-bin/env.sh"); code != 200 || body != "hi there\n" {
		t.Errorf("--cgi-env: %d %q", code, body)
	}
	if code, body := httpGet(t, s, "/environ"); code != 200 || !strings.Contains(body, `"wsgi.url_scheme"`) {
		t.Errorf("the app beside CGI: %d %q", code, body)
	}
	if code, _ := httpGet(t, s, "/cgi-bin/missing.sh"); code != 404 {
		t.Errorf("missing script: %d, want 404", code)
	}

	begin := time.Now()
	code, _ := httpGet(t, s, "/cgi-bin/slow.sh")
	if took := time.Since(begin); code != 504 || took > 10*time.Second {
		t.Errorf("slow script: %d after %v, want 504 after about 1s", code, took)
	}
	if !s.WaitLog("cgi: /cgi-bin/slow.sh: still running after 1s", 5*time.Second) {
		t.Errorf("no timeout line in the log:\n%s", s.Stderr())
	}
}
