package static

import (
	"mime"
	"path"
	"strings"
)

// defaultType is sent for a file whose type is unknown: browsers neither
// render nor run it (with nosniff), they download it.
const defaultType = "application/octet-stream"

// webTypes are the types of the files web front ends are made of. They are
// fixed here so an answer does not depend on the machine's /etc/mime.types
// (which, for instance, may lack .mjs, .wasm or .avif, and which matter:
// browsers refuse module scripts and streaming WebAssembly compilation under
// any other type).
var webTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".htm":         "text/html; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".js":          "text/javascript; charset=utf-8", // RFC 9239
	".mjs":         "text/javascript; charset=utf-8",
	".json":        "application/json",
	".map":         "application/json", // source maps
	".webmanifest": "application/manifest+json",
	".xml":         "text/xml; charset=utf-8",
	".txt":         "text/plain; charset=utf-8",
	".csv":         "text/csv; charset=utf-8",
	".md":          "text/markdown; charset=utf-8",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".jpg":         "image/jpeg",
	".jpeg":        "image/jpeg",
	".gif":         "image/gif",
	".webp":        "image/webp",
	".avif":        "image/avif",
	".ico":         "image/x-icon",
	".woff":        "font/woff",
	".woff2":       "font/woff2",
	".ttf":         "font/ttf",
	".otf":         "font/otf",
	".wasm":        "application/wasm",
	".pdf":         "application/pdf",
	".mp4":         "video/mp4",
	".webm":        "video/webm",
	".mp3":         "audio/mpeg",
	".zip":         "application/zip",
	".gz":          "application/gzip",
}

// contentType is the Content-Type for a file name: the table above, then
// the system's MIME database, then application/octet-stream. Text types
// get "; charset=utf-8" when the database gave none: it is what almost
// every text file on a web server is, and without it browsers guess.
func contentType(name string) string {
	ext := strings.ToLower(path.Ext(name)) // no copy when already lower case
	if ext == "" {
		return defaultType
	}
	if t, ok := webTypes[ext]; ok {
		return t
	}
	t := mime.TypeByExtension(ext)
	switch {
	case t == "":
		return defaultType
	case strings.HasPrefix(t, "text/") && !strings.Contains(t, "charset="):
		return t + "; charset=utf-8"
	}
	return t
}
