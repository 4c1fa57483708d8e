package static

import (
	"os"
	"testing"

	"taipan/internal/edge"
)

// discardWriter is an edge.ResponseWriter that drops everything, so the
// benchmark measures the handler alone: path checks, open, stat,
// headers.
type discardWriter struct{ headWritten bool }

func (w *discardWriter) WriteHead(*edge.ResponseHead, []byte, bool) error {
	w.headWritten = true
	return nil
}
func (w *discardWriter) Write([]byte) error                                 { return nil }
func (w *discardWriter) SendFile(*os.File, int64, int64) error              { return nil }
func (w *discardWriter) Abort()                                             {}
func (w *discardWriter) HeadWritten() bool                                  { return w.headWritten }
func (w *discardWriter) Upgrade(*edge.ResponseHead) (*edge.Upgraded, error) { return nil, nil }
func (w *discardWriter) ClientGone() <-chan struct{}                        { return nil }

var (
	_ edge.ResponseWriter = (*discardWriter)(nil)
)

// browserHeaders is what a browser sends for a stylesheet.
var browserHeaders = []edge.HeaderField{
	{Name: "Host", Value: "example.com"},
	{Name: "User-Agent", Value: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"},
	{Name: "Accept", Value: "text/css,*/*;q=0.1"},
	{Name: "Accept-Language", Value: "en-US,en;q=0.5"},
	{Name: "Accept-Encoding", Value: "gzip, deflate, br, zstd"},
	{Name: "Referer", Value: "https://example.com/"},
	{Name: "Connection", Value: "keep-alive"},
	{Name: "Cookie", Value: "session=0123456789abcdef"},
	{Name: "Sec-Fetch-Dest", Value: "style"},
	{Name: "Sec-Fetch-Mode", Value: "no-cors"},
	{Name: "Sec-Fetch-Site", Value: "same-origin"},
	{Name: "Priority", Value: "u=2"},
	{Name: "Pragma", Value: "no-cache"},
	{Name: "Cache-Control", Value: "no-cache"},
}

func BenchmarkServe(b *testing.B) {
	dir := b.TempDir()
	writeFile(b, dir, "small.css", string(pattern(4096)))
	writeFile(b, dir, "app.js", "x")
	writeFile(b, dir, "app.js.br", "y")
	h, err := New([]Mount{{"/static", dir}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	for _, bc := range []struct {
		name, path string
		header     []edge.HeaderField
	}{
		{"plain", "/static/small.css", nil},
		{"browser", "/static/small.css", browserHeaders},
		{"br", "/static/app.js", []edge.HeaderField{{Name: "Accept-Encoding", Value: "gzip, deflate, br"}}},
		{"304", "/static/small.css", []edge.HeaderField{{Name: "If-None-Match", Value: makeETag(fileTime, 4096, "")}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := &edge.Request{Method: "GET", Path: bc.path, Header: bc.header}
			w := &discardWriter{}
			b.ReportAllocs()
			for b.Loop() {
				w.headWritten = false
				h.Serve(w, r)
			}
		})
	}
}
