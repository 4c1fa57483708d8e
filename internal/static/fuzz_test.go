package static

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"taipan/internal/edge"
)

// secretWord is in every file outside the mounts, and in none inside.
const secretWord = "SECRET"

// fuzzTree is a directory holding two mounted directories, public/ (at
// /assets) and site/ (at /), beside files and directories that must never
// be served: secret.txt, secretdir/, and publicity/, whose name starts
// with "public". Symlinks inside the mounts point out of them every way
// there is.
type fuzzTree struct {
	public, site string // real paths, symlinks resolved
}

func newFuzzTree(f *testing.F) fuzzTree {
	top, err := filepath.EvalSymlinks(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	tr := fuzzTree{public: filepath.Join(top, "public"), site: filepath.Join(top, "site")}
	for _, rel := range []string{"secret.txt", "secretdir/secret.txt", "publicity/secret.txt", "site-secret/secret.txt"} {
		writeFile(f, top, rel, "TOP "+secretWord+" in "+rel)
	}
	pub, site := tr.public, tr.site
	writeFile(f, pub, "hello.txt", "hello, world\n")
	writeFile(f, pub, "index.html", "<h1>assets</h1>")
	writeFile(f, pub, "sub/deeper/file.txt", "deep")
	writeFile(f, pub, "sub/index.html", "<h1>sub</h1>")
	writeFile(f, pub, "app.js", "console.log(1)")
	writeFile(f, pub, "app.js.gz", "GZIP")
	writeFile(f, pub, ".well-known/security.txt", "Contact: mailto:sec@example.com")
	writeFile(f, pub, "sp ace/ü.txt", "unicode")
	writeFile(f, pub, "100%.txt", "percent")
	writeFile(f, site, "page.txt", "site page")
	writeFile(f, site, "index.html", "<h1>site</h1>")
	writeFile(f, site, "assetsx/file.txt", "not under /assets")
	for link, target := range map[string]string{
		pub + "/link-in.txt":            "hello.txt",
		pub + "/sub/link-up.txt":        "../hello.txt",
		pub + "/linkdir-in":             "sub/deeper",
		pub + "/link-out.txt":           "../secret.txt",
		pub + "/link-abs-out.txt":       filepath.Join(top, "secret.txt"),
		pub + "/linkdir-out":            "../secretdir",
		pub + "/linkdir-abs-out":        filepath.Join(top, "secretdir"),
		pub + "/link-tricky.txt":        "sub/../../secret.txt",
		pub + "/link-sibling":           "../publicity",
		pub + "/link-site.txt":          "../site/page.txt",
		pub + "/sub/link-chain":         "../linkdir-out",
		pub + "/link-loop":              "link-loop",
		site + "/link-out.txt":          "../site-secret/secret.txt",
		site + "/linkdir-out":           "../secretdir",
		site + "/link-root":             "/",
		site + "/assets":                "../secretdir",
		site + "/link-proc":             "/proc/self/root" + top + "/secret.txt",
		site + "/assetsx/link-back.txt": "../../public/hello.txt",
	} {
		symlink(f, target, link)
	}
	if err := syscall.Mkfifo(filepath.Join(site, "fifo"), 0o644); err != nil {
		f.Fatal(err)
	}
	return tr
}

// fileWriter is an edge.ResponseWriter that records the response and
// checks every file the Handler sends: its real path, read from
// /proc/self/fd while it is open, must lie inside root, and its bytes
// must not be a secret.
type fileWriter struct {
	t     *testing.T
	roots []string // the directories a file may come from

	heads    int
	head     *edge.ResponseHead
	sentFrom string // the root of the file sent, if any
}

func (w *fileWriter) WriteHead(head *edge.ResponseHead, body []byte, complete bool) error {
	w.heads++
	w.head = head
	if strings.Contains(string(body), secretWord) {
		w.t.Fatalf("a %d answer carries a secret: %q", head.Code, body)
	}
	return nil
}

func (w *fileWriter) SendFile(f *os.File, offset, n int64) error {
	real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		w.t.Fatalf("SendFile: %v", err)
	}
	for _, root := range w.roots {
		if strings.HasPrefix(real, root+"/") {
			w.sentFrom = root
		}
	}
	if w.sentFrom == "" {
		w.t.Fatalf("sent %s, which is outside %q", real, w.roots)
	}
	buf := make([]byte, n)
	m, _ := f.ReadAt(buf, offset)
	if strings.Contains(string(buf[:m]), secretWord) {
		w.t.Fatalf("sent %s, a secret: %q", real, buf[:m])
	}
	return nil
}

func (w *fileWriter) Write(p []byte) error {
	w.t.Fatalf("static answers with WriteHead and SendFile, not Write")
	return nil
}
func (w *fileWriter) Abort()                                             {}
func (w *fileWriter) HeadWritten() bool                                  { return w.heads > 0 }
func (w *fileWriter) Upgrade(*edge.ResponseHead) (*edge.Upgraded, error) { return nil, nil }
func (w *fileWriter) ClientGone() <-chan struct{}                        { return nil }

var _ edge.ResponseWriter = (*fileWriter)(nil)

// location is the Location header of head, or "".
func location(head *edge.ResponseHead) string {
	for _, f := range head.Header {
		if f.Name == "Location" {
			return f.Value
		}
	}
	return ""
}

// FuzzResolve asks Handlers with mounts at /assets and at / for arbitrary
// request paths, on a real directory tree, and checks that every file
// they send lies inside a mounted directory (its real path, not the name
// asked for: symlinks in the tree lead out in every way they can), inside
// the one the path is under when it was decoded, and holds no secret.
// Every request gets exactly one answer, and a redirect stays on this
// server.
func FuzzResolve(f *testing.F) {
	tr := newFuzzTree(f)
	both, err := New([]Mount{{Prefix: "/assets", Dir: tr.public}, {Prefix: "/", Dir: tr.site}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { both.Close() })
	assets, err := New([]Mount{{Prefix: "/assets", Dir: tr.public}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { assets.Close() })

	for _, p := range []string{
		"/assets/hello.txt", "/assets/sub/", "/assets/sub", "/assets", "/", "/page.txt",
		"/assets/../secret.txt", "/assets/%2e%2e/secret.txt", "/assets/..%2fsecret.txt",
		"/assets%2f..%2fsecret.txt", "/assets/..\\secret.txt", "/assets/..%5csecret.txt",
		"/assets/hello.txt%00.png", "/assets/bad%zz", "/%61ssets/hello.txt", "/assets//sub//deeper/file.txt",
		"/assets/link-out.txt", "/assets/link-abs-out.txt", "/assets/linkdir-out/secret.txt",
		"/assets/linkdir-abs-out/secret.txt", "/assets/link-tricky.txt", "/assets/link-sibling/secret.txt",
		"/assets/link-site.txt", "/assets/sub/link-chain/secret.txt", "/assets/link-loop", "/assets/linkdir-in/file.txt",
		"/link-out.txt", "/linkdir-out/secret.txt", "/link-root/etc/passwd", "/link-proc", "/fifo",
		"/assetsx/file.txt", "/assetsx/link-back.txt", "/assets/100%25.txt", "/assets/sp%20ace/%C3%BC.txt",
		"/assets/.well-known/security.txt", "/..", "/.%2e/secret.txt", "//secret.txt", "/assets/sub/..",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		for _, h := range []*Handler{both, assets} {
			if !h.Match(path) {
				continue
			}
			w := &fileWriter{t: t, roots: []string{tr.public, tr.site}}
			h.Serve(w, &edge.Request{Method: "GET", Path: path, Target: path})
			if w.heads != 1 {
				t.Fatalf("%q: %d answers", path, w.heads)
			}
			if w.sentFrom != "" {
				// The mount is chosen on the decoded path.
				decoded, err := url.PathUnescape(path)
				if err != nil {
					t.Fatalf("%q: sent a file for a path that does not decode: %v", path, err)
				}
				want := tr.site
				if underPrefix(decoded, "/assets") {
					want = tr.public
				}
				if w.sentFrom != want {
					t.Fatalf("%q: sent a file from %s, want one from %s", path, w.sentFrom, want)
				}
			}
			if w.head.Code == 301 {
				loc := location(w.head)
				if !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") || strings.ContainsAny(loc, "\\\r\n") {
					t.Fatalf("%q: redirected to %q, off this server", path, loc)
				}
			}
		}
	})
}
