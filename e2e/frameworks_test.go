package e2e

// Real frameworks through the real binary: a Flask app (apps/flaskapp.py), a
// Django 3.2 project with admin, sessions, CSRF and sqlite
// (apps/djangosite/), and a plain WSGI app wrapped in wsgiref's validator
// (apps/validated.py), all over loopback with Go's HTTP client.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math/rand"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fwTimeout bounds every request the tests in this file make.
const fwTimeout = 15 * time.Second

// client is an HTTP client with a deadline and, optionally, a cookie jar.
// Redirects are followed unless follow is false.
func fwClient(t testing.TB, jar bool, follow bool) *http.Client {
	t.Helper()
	c := &http.Client{
		Timeout:   fwTimeout,
		Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 8},
	}
	t.Cleanup(c.CloseIdleConnections)
	if jar {
		j, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Jar = j
	}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

// fwDo sends req with c and returns the response (body already read and
// closed) and the body.
func fwDo(t testing.TB, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(req.Context(), fwTimeout)
	defer cancel()
	req = req.WithContext(ctx)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, body
}

func fwRequest(t testing.TB, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func fwGet(t testing.TB, c *http.Client, url string) (*http.Response, []byte) {
	t.Helper()
	return fwDo(t, c, fwRequest(t, "GET", url, nil))
}

func fwPostForm(t testing.TB, c *http.Client, url string, form url.Values, header ...string) (*http.Response, []byte) {
	t.Helper()
	req := fwRequest(t, "POST", url, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return fwDo(t, c, req)
}

func fwJSON(t testing.TB, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("response is not JSON (%v): %q", err, fwTrunc(body))
	}
}

func fwTrunc(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "..."
	}
	return string(b)
}

func fwWantStatus(t testing.TB, s *Server, resp *http.Response, body []byte, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d\nbody: %s\ntaipan stderr:\n%s",
			resp.Request.Method, resp.Request.URL, resp.StatusCode, code, fwTrunc(body), s.Stderr())
	}
}

func fwSHA256(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// fwRandom returns n deterministic pseudo-random bytes.
func fwRandom(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// ---------------------------------------------------------------------------
// Flask

func startFlask(t *testing.T, extra ...string) *Server {
	t.Helper()
	requirePython(t, "flask", "python3-flask")
	args := append([]string{"--chdir", appsDir(t), "-w", "2", "-e", "PYTHONDONTWRITEBYTECODE=1"}, extra...)
	return Start(t, append(args, "flaskapp:app")...)
}

// fwMultipart builds a multipart/form-data body with one file and one field.
func fwMultipart(t testing.TB, filename string, data []byte, note string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.WriteField("note", note); err != nil {
		t.Fatal(err)
	}
	fw, err := mw.CreateFormFile("file", filename)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), buf.Bytes()
}

type fwUploadReply struct {
	Filename string `json:"filename"`
	Size     int    `json:"size"`
	SHA256   string `json:"sha256"`
	Note     string `json:"note"`
	Mimetype string `json:"mimetype"`
	Input    string `json:"input_type"`
}

func TestFlask(t *testing.T) {
	s := startFlask(t)
	c := fwClient(t, false, true)

	t.Run("Index", func(t *testing.T) {
		t.Parallel()
		resp, body := fwGet(t, c, s.URL+"/")
		fwWantStatus(t, s, resp, body, 200)
		if string(body) != "flask ok" {
			t.Fatalf("body %q", body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
	})

	t.Run("JSON", func(t *testing.T) {
		t.Parallel()
		resp, body := fwGet(t, c, s.URL+"/api/items/2")
		fwWantStatus(t, s, resp, body, 200)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		var item struct {
			ID   int      `json:"id"`
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		fwJSON(t, body, &item)
		if item.ID != 2 || item.Name != "gärtner – ünïcödé" || len(item.Tags) != 0 {
			t.Fatalf("item %+v", item)
		}
		if resp.ContentLength != int64(len(body)) {
			t.Errorf("Content-Length %d, body %d bytes", resp.ContentLength, len(body))
		}
	})

	t.Run("JSONPost", func(t *testing.T) {
		t.Parallel()
		payload := `{"greeting":"grüß dich","n":[1,2,3]}`
		req := fwRequest(t, "POST", s.URL+"/api/echo", strings.NewReader(payload))
		req.Header.Set("Content-Type", "application/json")
		resp, body := fwDo(t, c, req)
		fwWantStatus(t, s, resp, body, 200)
		var got struct {
			Received struct {
				Greeting string `json:"greeting"`
				N        []int  `json:"n"`
			} `json:"received"`
			ContentType string `json:"content_type"`
		}
		fwJSON(t, body, &got)
		if got.Received.Greeting != "grüß dich" || len(got.Received.N) != 3 || got.ContentType != "application/json" {
			t.Fatalf("got %+v", got)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		for _, path := range []string{"/gone", "/api/items/99", "/no/such/route", "/api/items/notanint"} {
			resp, body := fwGet(t, c, s.URL+path)
			fwWantStatus(t, s, resp, body, 404)
			if !strings.Contains(string(body), "Not Found") {
				t.Errorf("%s: body %q", path, body)
			}
		}
	})

	t.Run("MethodNotAllowed", func(t *testing.T) {
		t.Parallel()
		resp, body := fwGet(t, c, s.URL+"/form")
		fwWantStatus(t, s, resp, body, 405)
		if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "POST") {
			t.Errorf("Allow %q", allow)
		}
	})

	t.Run("Form", func(t *testing.T) {
		t.Parallel()
		form := url.Values{"name": {"José Ñúñez & co=1"}, "color": {"red", "blue", "grün"}}
		resp, body := fwPostForm(t, c, s.URL+"/form", form)
		fwWantStatus(t, s, resp, body, 200)
		var got struct {
			Name          string   `json:"name"`
			Colors        []string `json:"colors"`
			ContentLength int      `json:"content_length"`
		}
		fwJSON(t, body, &got)
		if got.Name != "José Ñúñez & co=1" || strings.Join(got.Colors, ",") != "red,blue,grün" ||
			got.ContentLength != len(form.Encode()) {
			t.Fatalf("got %+v", got)
		}
	})

	t.Run("UploadSmall", func(t *testing.T) {
		t.Parallel()
		data := fwRandom(10_000, 1)
		ct, body := fwMultipart(t, "small.bin", data, "tiny")
		req := fwRequest(t, "POST", s.URL+"/upload", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		resp, rbody := fwDo(t, c, req)
		fwWantStatus(t, s, resp, rbody, 200)
		var got fwUploadReply
		fwJSON(t, rbody, &got)
		if got.Size != len(data) || got.SHA256 != fwSHA256(data) || got.Filename != "small.bin" || got.Note != "tiny" {
			t.Fatalf("got %+v, want size %d sha256 %s", got, len(data), fwSHA256(data))
		}
		if got.Input != "BytesIO" {
			t.Errorf("a small body reached the app as %s, want inline (BytesIO)", got.Input)
		}
	})

	// 3 MB is above the default --body-memory-limit (1 MiB), so taipan
	// spills the body to a temporary file and the worker reads that.
	t.Run("UploadLarge", func(t *testing.T) {
		t.Parallel()
		data := fwRandom(3_000_000, 2)
		ct, body := fwMultipart(t, "big €.bin", data, "spilled to disk")
		req := fwRequest(t, "POST", s.URL+"/upload", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		resp, rbody := fwDo(t, c, req)
		fwWantStatus(t, s, resp, rbody, 200)
		var got fwUploadReply
		fwJSON(t, rbody, &got)
		if got.Size != len(data) || got.SHA256 != fwSHA256(data) || got.Note != "spilled to disk" {
			t.Fatalf("got %+v, want size %d sha256 %s", got, len(data), fwSHA256(data))
		}
		if got.Filename != "big €.bin" {
			t.Errorf("filename %q", got.Filename)
		}
		if got.Input != "BufferedReader" {
			t.Errorf("a 3 MB body reached the app as %s, want a spilled file (BufferedReader)", got.Input)
		}
	})

	// The same upload with chunked transfer encoding (no Content-Length from
	// the client): taipan must give the app the decoded length.
	t.Run("UploadLargeChunked", func(t *testing.T) {
		t.Parallel()
		data := fwRandom(3_000_000, 3)
		ct, body := fwMultipart(t, "chunked.bin", data, "chunked")
		// A reader of unknown length makes the client send chunked.
		req := fwRequest(t, "POST", s.URL+"/upload", io.MultiReader(bytes.NewReader(body)))
		req.Header.Set("Content-Type", ct)
		if req.ContentLength != 0 && req.ContentLength != -1 {
			t.Fatalf("request would not be chunked (ContentLength %d)", req.ContentLength)
		}
		resp, rbody := fwDo(t, c, req)
		fwWantStatus(t, s, resp, rbody, 200)
		var got fwUploadReply
		fwJSON(t, rbody, &got)
		if got.Size != len(data) || got.SHA256 != fwSHA256(data) || got.Note != "chunked" {
			t.Fatalf("got %+v, want size %d sha256 %s", got, len(data), fwSHA256(data))
		}
		if got.Input != "BufferedReader" {
			t.Errorf("a 3 MB chunked body reached the app as %s, want a spilled file", got.Input)
		}
	})

	// Expect: 100-continue: the client waits for the interim response
	// before sending the body (Go's client gives up waiting after
	// ExpectContinueTimeout and sends anyway, so also check it was quick).
	t.Run("UploadExpectContinue", func(t *testing.T) {
		t.Parallel()
		data := fwRandom(2_000_000, 4)
		ct, body := fwMultipart(t, "expect.bin", data, "expect")
		ec := &http.Client{Timeout: fwTimeout, Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
		defer ec.CloseIdleConnections()
		req := fwRequest(t, "POST", s.URL+"/upload", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Expect", "100-continue")
		start := time.Now()
		resp, rbody := fwDo(t, ec, req)
		fwWantStatus(t, s, resp, rbody, 200)
		var got fwUploadReply
		fwJSON(t, rbody, &got)
		if got.Size != len(data) || got.SHA256 != fwSHA256(data) {
			t.Fatalf("got %+v, want size %d sha256 %s", got, len(data), fwSHA256(data))
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("upload with Expect: 100-continue took %v: no 100 Continue from taipan?", d)
		}
	})

	t.Run("MultipleCookies", func(t *testing.T) {
		t.Parallel()
		jc := fwClient(t, true, true)
		resp, body := fwGet(t, jc, s.URL+"/cookies")
		fwWantStatus(t, s, resp, body, 200)
		if n := len(resp.Header.Values("Set-Cookie")); n != 3 {
			t.Fatalf("%d Set-Cookie headers, want 3: %q", n, resp.Header.Values("Set-Cookie"))
		}
		resp, body = fwGet(t, jc, s.URL+"/cookies")
		fwWantStatus(t, s, resp, body, 200)
		if !strings.Contains(string(body), `"seen":["first","second","third"]`) {
			t.Fatalf("cookies sent back were not all seen: %s", body)
		}
		// Two Cookie header lines are joined with "; " (not ", ").
		req := fwRequest(t, "GET", s.URL+"/cookies", nil)
		req.Header.Add("Cookie", "alpha=1")
		req.Header.Add("Cookie", "beta=2; gamma=3")
		resp, body = fwDo(t, c, req)
		fwWantStatus(t, s, resp, body, 200)
		if !strings.Contains(string(body), `"seen":["alpha","beta","gamma"]`) {
			t.Fatalf("two Cookie lines: app saw %s", body)
		}
	})

	t.Run("BigResponse", func(t *testing.T) {
		t.Parallel()
		n := 5 << 20
		resp, body := fwGet(t, c, fmt.Sprintf("%s/big?n=%d", s.URL, n))
		fwWantStatus(t, s, resp, body, 200)
		if len(body) != n || resp.ContentLength != int64(n) {
			t.Fatalf("got %d bytes, Content-Length %d, want %d", len(body), resp.ContentLength, n)
		}
		for i := range body {
			if body[i] != byte(i) {
				t.Fatalf("byte %d is %d, want %d", i, body[i], byte(i))
			}
		}
	})

	// An exception in the middle of a streamed body cannot become a 500:
	// taipan must cut the connection so the client sees a truncated body,
	// never a complete-looking one.
	t.Run("StreamFailure", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), fwTimeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/stream?n=10&fail_at=3&who=x", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		body, err := io.ReadAll(resp.Body)
		if err == nil {
			t.Fatalf("the failed stream ended cleanly with body %q", body)
		}
		if !strings.HasPrefix("chunk 0 of 10 for x\nchunk 1 of 10 for x\nchunk 2 of 10 for x\n", string(body)) {
			t.Errorf("partial body %q", body)
		}
		if !s.WaitLog("stream failed on purpose at chunk 3", 5*time.Second) {
			t.Fatalf("no traceback in the log:\n%s", s.Stderr())
		}
	})

	t.Run("Redirect", func(t *testing.T) {
		t.Parallel()
		nofollow := fwClient(t, false, false)
		resp, body := fwGet(t, nofollow, s.URL+"/old")
		fwWantStatus(t, s, resp, body, 302)
		loc, err := resp.Location()
		if err != nil {
			t.Fatalf("Location: %v (header %q)", err, resp.Header.Get("Location"))
		}
		if loc.Path != "/api/items/1" || loc.Host != s.Addr {
			t.Fatalf("Location %q resolves to %v", resp.Header.Get("Location"), loc)
		}
		// Following it lands on the JSON endpoint.
		resp, body = fwGet(t, c, s.URL+"/old")
		fwWantStatus(t, s, resp, body, 200)
		if resp.Request.URL.Path != "/api/items/1" || !strings.Contains(string(body), `"sprocket"`) {
			t.Fatalf("followed to %v: %q", resp.Request.URL, body)
		}
	})

	t.Run("Session", func(t *testing.T) {
		t.Parallel()
		jc := fwClient(t, true, true)
		value := "héllo wörld ✓"
		for i := 1; i <= 4; i++ {
			resp, body := fwPostForm(t, jc, s.URL+"/session/set", url.Values{"value": {fmt.Sprintf("%s %d", value, i)}})
			fwWantStatus(t, s, resp, body, 200)
			if sc := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(sc, "session=") || !strings.Contains(sc, "HttpOnly") {
				t.Fatalf("Set-Cookie %q", sc)
			}
			// Read it back several times: with two workers the reads land
			// on either; the signed cookie is all the state there is.
			for j := 0; j < 3; j++ {
				resp, body = fwGet(t, jc, s.URL+"/session/get")
				fwWantStatus(t, s, resp, body, 200)
				var got struct {
					Value *string `json:"value"`
					Count int     `json:"count"`
				}
				fwJSON(t, body, &got)
				if got.Value == nil || *got.Value != fmt.Sprintf("%s %d", value, i) || got.Count != i {
					t.Fatalf("round %d: session %s", i, body)
				}
			}
		}
		// Without the cookie the session is empty.
		resp, body := fwGet(t, c, s.URL+"/session/get")
		fwWantStatus(t, s, resp, body, 200)
		if string(bytes.TrimSpace(body)) != `{"count":0,"value":null}` {
			t.Fatalf("cookieless session %s", body)
		}
		// A tampered cookie is rejected (the session is empty again).
		req := fwRequest(t, "GET", s.URL+"/session/get", nil)
		u, _ := url.Parse(s.URL)
		var sess string
		for _, ck := range jc.Jar.Cookies(u) {
			if ck.Name == "session" {
				sess = ck.Value
			}
		}
		if sess == "" {
			t.Fatal("no session cookie in the jar")
		}
		req.Header.Set("Cookie", "session="+sess[:len(sess)-2]+"xx")
		resp, body = fwDo(t, c, req)
		fwWantStatus(t, s, resp, body, 200)
		if !strings.Contains(string(body), `"value":null`) {
			t.Fatalf("tampered cookie accepted: %s", body)
		}
	})

	t.Run("UnicodeQuery", func(t *testing.T) {
		t.Parallel()
		q := url.Values{"q": {"日本語 テキスト & more=yes"}, "tag": {"ä", "€", "🐍"}}
		resp, body := fwGet(t, c, s.URL+"/search?"+q.Encode())
		fwWantStatus(t, s, resp, body, 200)
		var got struct {
			Q    string   `json:"q"`
			Tags []string `json:"tags"`
			Path string   `json:"path"`
		}
		fwJSON(t, body, &got)
		if got.Q != "日本語 テキスト & more=yes" || strings.Join(got.Tags, "|") != "ä|€|🐍" || got.Path != "/search" {
			t.Fatalf("got %+v", got)
		}
	})

	t.Run("UnicodePath", func(t *testing.T) {
		t.Parallel()
		name := "ünïcödé 日本 🐍"
		u := s.URL + "/hello/" + url.PathEscape(name)
		resp, body := fwGet(t, c, u)
		fwWantStatus(t, s, resp, body, 200)
		var got struct {
			Name string `json:"name"`
			Path string `json:"path"`
			URL  string `json:"url"`
		}
		fwJSON(t, body, &got)
		if got.Name != name || got.Path != "/hello/"+name {
			t.Fatalf("got %+v", got)
		}
		if !strings.HasPrefix(got.URL, s.URL+"/hello/") {
			t.Errorf("request.url %q", got.URL)
		}
	})

	t.Run("Stream", func(t *testing.T) {
		t.Parallel()
		resp, body := fwGet(t, c, s.URL+"/stream?n=200&who="+url.QueryEscape("wörld"))
		fwWantStatus(t, s, resp, body, 200)
		var want strings.Builder
		for i := 0; i < 200; i++ {
			fmt.Fprintf(&want, "chunk %d of 200 for wörld\n", i)
		}
		if string(body) != want.String() {
			t.Fatalf("streamed body differs: got %d bytes, want %d\n%s", len(body), want.Len(), fwTrunc(body))
		}
		// A generator response has no length: it is sent chunked.
		if resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
			t.Errorf("ContentLength %d TransferEncoding %v, want chunked", resp.ContentLength, resp.TransferEncoding)
		}
	})

	download := bytes.Repeat(func() []byte {
		b := make([]byte, 256)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}(), 4096)

	t.Run("SendFile", func(t *testing.T) {
		t.Parallel()
		for i := 0; i < 3; i++ {
			resp, body := fwGet(t, c, s.URL+"/download")
			fwWantStatus(t, s, resp, body, 200)
			if !bytes.Equal(body, download) {
				t.Fatalf("download: got %d bytes (sha256 %s), want %d (sha256 %s)",
					len(body), fwSHA256(body), len(download), fwSHA256(download))
			}
			if resp.ContentLength != int64(len(download)) {
				t.Errorf("Content-Length %d", resp.ContentLength)
			}
			if cd := resp.Header.Get("Content-Disposition"); cd != "attachment; filename=data.bin" {
				t.Errorf("Content-Disposition %q", cd)
			}
			if resp.Header.Get("Last-Modified") == "" || resp.Header.Get("ETag") == "" {
				t.Errorf("no Last-Modified/ETag: %v", resp.Header)
			}
		}
	})

	t.Run("SendFileRange", func(t *testing.T) {
		t.Parallel()
		req := fwRequest(t, "GET", s.URL+"/download", nil)
		req.Header.Set("Range", "bytes=1000-1999")
		resp, body := fwDo(t, c, req)
		fwWantStatus(t, s, resp, body, 206)
		if !bytes.Equal(body, download[1000:2000]) {
			t.Fatalf("range body: %d bytes, want 1000 matching", len(body))
		}
		if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes 1000-1999/%d", len(download)) {
			t.Errorf("Content-Range %q", cr)
		}
	})

	t.Run("SendFileConditional", func(t *testing.T) {
		t.Parallel()
		resp, body := fwGet(t, c, s.URL+"/download")
		fwWantStatus(t, s, resp, body, 200)
		req := fwRequest(t, "GET", s.URL+"/download", nil)
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		resp2, body2 := fwDo(t, c, req)
		// Each worker writes its own copy of the file, so the ETag (mtime,
		// size, inode) may differ between workers: 304 or a full 200.
		switch resp2.StatusCode {
		case 304:
			if len(body2) != 0 {
				t.Fatalf("304 with a %d-byte body", len(body2))
			}
		case 200:
			if !bytes.Equal(body2, download) {
				t.Fatalf("200 with a wrong body (%d bytes)", len(body2))
			}
		default:
			fwWantStatus(t, s, resp2, body2, 304)
		}
	})

	t.Run("SendFileHead", func(t *testing.T) {
		t.Parallel()
		resp, body := fwDo(t, c, fwRequest(t, "HEAD", s.URL+"/download", nil))
		fwWantStatus(t, s, resp, body, 200)
		if len(body) != 0 {
			t.Fatalf("HEAD response has a %d-byte body", len(body))
		}
		if resp.ContentLength != int64(len(download)) {
			t.Errorf("HEAD Content-Length %d, want %d", resp.ContentLength, len(download))
		}
		// The connection must still be usable after HEAD.
		resp, body = fwGet(t, c, s.URL+"/api/items/1")
		fwWantStatus(t, s, resp, body, 200)
	})

	t.Run("AppError", func(t *testing.T) {
		t.Parallel()
		resp, body := fwGet(t, c, s.URL+"/boom")
		fwWantStatus(t, s, resp, body, 500)
		if !s.WaitLog("flask boom for the test", 5*time.Second) {
			t.Fatalf("Flask's traceback is not in the error log:\n%s", s.Stderr())
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := 0; i < 40; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				id := 1 + i%2
				ctx, cancel := context.WithTimeout(context.Background(), fwTimeout)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/api/items/%d", s.URL, id), nil)
				resp, err := c.Do(req)
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), fmt.Sprintf(`"id":%d`, id)) {
					errs <- fmt.Errorf("item %d: %d %q %v", id, resp.StatusCode, body, err)
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// With --root-path, Flask's url_for and request.script_root carry the prefix.
func TestFlaskRootPath(t *testing.T) {
	t.Parallel()
	s := startFlask(t, "--root-path", "/mnt/")
	c := fwClient(t, false, false)

	resp, body := fwGet(t, c, s.URL+"/mnt/old")
	fwWantStatus(t, s, resp, body, 302)
	if loc := resp.Header.Get("Location"); loc != "/mnt/api/items/1" && loc != s.URL+"/mnt/api/items/1" {
		t.Fatalf("Location %q, want /mnt/api/items/1", loc)
	}

	resp, body = fwGet(t, c, s.URL+"/mnt/search?q=x")
	fwWantStatus(t, s, resp, body, 200)
	var got struct {
		Path       string `json:"path"`
		ScriptRoot string `json:"script_root"`
	}
	fwJSON(t, body, &got)
	if got.Path != "/search" || got.ScriptRoot != "/mnt" {
		t.Fatalf("got %+v", got)
	}

	resp, body = fwGet(t, c, s.URL+"/mnt/api/items/1")
	fwWantStatus(t, s, resp, body, 200)
}

// ---------------------------------------------------------------------------
// Django

const (
	djangoUser     = "admin"
	djangoPassword = "secret-pass-123"
)

func djangoDir(t testing.TB) string { return filepath.Join(appsDir(t), "djangosite") }

// setupDjango migrates a fresh sqlite database in a temporary directory and
// creates the superuser; it returns the database path.
func setupDjango(t *testing.T) string {
	t.Helper()
	requirePython(t, "django", "python3-django")
	db := filepath.Join(t.TempDir(), "db.sqlite3")
	manage := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, pythonPath(), append([]string{"manage.py"}, args...)...)
		cmd.Dir = djangoDir(t)
		cmd.Env = append(os.Environ(),
			"DJANGO_DB_PATH="+db,
			"DJANGO_SETTINGS_MODULE=djangosite.settings",
			"PYTHONDONTWRITEBYTECODE=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("manage.py %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	manage("migrate", "--noinput")
	manage("shell", "-c", fmt.Sprintf(
		"from django.contrib.auth.models import User; User.objects.create_superuser(%q, 'a@example.com', %q)",
		djangoUser, djangoPassword))
	return db
}

func startDjango(t *testing.T, db string, extra ...string) *Server {
	t.Helper()
	args := []string{"--chdir", djangoDir(t),
		"-e", "DJANGO_DB_PATH=" + db,
		"-e", "DJANGO_SETTINGS_MODULE=djangosite.settings",
		"-e", "PYTHONDONTWRITEBYTECODE=1",
		"-w", "2"}
	args = append(args, extra...)
	return Start(t, append(args, "djangosite.wsgi:application")...)
}

var fwCSRFInputRe = regexp.MustCompile(`name="csrfmiddlewaretoken" value="([^"]+)"`)

// fwCSRFToken fetches url with c and returns the form's csrfmiddlewaretoken.
func fwCSRFToken(t testing.TB, s *Server, c *http.Client, url string) string {
	t.Helper()
	resp, body := fwGet(t, c, url)
	fwWantStatus(t, s, resp, body, 200)
	m := fwCSRFInputRe.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no csrfmiddlewaretoken in %s:\n%s", url, fwTrunc(body))
	}
	return html.UnescapeString(string(m[1]))
}

func fwCookie(c *http.Client, rawURL, name string) string {
	u, _ := url.Parse(rawURL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// adminLogin logs in through /admin/login/ with CSRF and returns the final
// response after redirects.
func adminLogin(t testing.TB, s *Server, c *http.Client, prefix string) (*http.Response, []byte) {
	t.Helper()
	loginURL := s.URL + prefix + "/admin/login/?next=" + prefix + "/admin/"
	token := fwCSRFToken(t, s, c, loginURL)
	if fwCookie(c, s.URL+prefix+"/admin/", "csrftoken") == "" {
		t.Fatalf("no csrftoken cookie after GET %s", loginURL)
	}
	form := url.Values{
		"csrfmiddlewaretoken": {token},
		"username":            {djangoUser},
		"password":            {djangoPassword},
		"next":                {prefix + "/admin/"},
	}
	return fwPostForm(t, c, loginURL, form, "Referer", loginURL)
}

func TestDjango(t *testing.T) {
	t.Parallel()
	db := setupDjango(t)
	s := startDjango(t, db)

	t.Run("AdminLogin", func(t *testing.T) {
		t.Parallel()
		c := fwClient(t, true, true)
		resp, body := adminLogin(t, s, c, "")
		fwWantStatus(t, s, resp, body, 200)
		if resp.Request.URL.Path != "/admin/" {
			t.Fatalf("login ended at %v, want /admin/\n%s", resp.Request.URL, fwTrunc(body))
		}
		if !strings.Contains(string(body), "Site administration") {
			t.Fatalf("no 'Site administration' on /admin/:\n%s", fwTrunc(body))
		}
		if !strings.Contains(string(body), "<strong>"+djangoUser+"</strong>") {
			t.Errorf("the user name is not on /admin/")
		}
		if fwCookie(c, s.URL+"/admin/", "sessionid") == "" {
			t.Errorf("no sessionid cookie after login")
		}
		// The session persists: another request (either worker) is logged in.
		for i := 0; i < 4; i++ {
			resp, body = fwGet(t, c, s.URL+"/admin/notes/note/")
			fwWantStatus(t, s, resp, body, 200)
			if resp.Request.URL.Path != "/admin/notes/note/" || !strings.Contains(string(body), "Select note to change") {
				t.Fatalf("changelist: %v\n%s", resp.Request.URL, fwTrunc(body))
			}
		}
	})

	t.Run("AdminLoginWrongPassword", func(t *testing.T) {
		t.Parallel()
		c := fwClient(t, true, false)
		loginURL := s.URL + "/admin/login/?next=/admin/"
		token := fwCSRFToken(t, s, c, loginURL)
		resp, body := fwPostForm(t, c, loginURL, url.Values{
			"csrfmiddlewaretoken": {token}, "username": {djangoUser}, "password": {"wrong"}, "next": {"/admin/"},
		}, "Referer", loginURL)
		fwWantStatus(t, s, resp, body, 200)
		if !strings.Contains(string(body), "Please enter the correct username and password") {
			t.Fatalf("no login error:\n%s", fwTrunc(body))
		}
	})

	t.Run("AdminLoginWithoutCSRF", func(t *testing.T) {
		t.Parallel()
		c := fwClient(t, true, false)
		loginURL := s.URL + "/admin/login/?next=/admin/"
		_ = fwCSRFToken(t, s, c, loginURL) // sets the csrftoken cookie
		resp, body := fwPostForm(t, c, loginURL, url.Values{
			"username": {djangoUser}, "password": {djangoPassword}, "next": {"/admin/"},
		}, "Referer", loginURL)
		fwWantStatus(t, s, resp, body, 403)
		if !strings.Contains(string(body), "CSRF") {
			t.Errorf("403 page does not mention CSRF:\n%s", fwTrunc(body))
		}
		// And with no cookie at all.
		c2 := fwClient(t, false, false)
		resp, body = fwPostForm(t, c2, loginURL, url.Values{
			"csrfmiddlewaretoken": {"x" + strings.Repeat("a", 63)}, "username": {djangoUser}, "password": {djangoPassword},
		}, "Referer", loginURL)
		fwWantStatus(t, s, resp, body, 403)
	})

	t.Run("AdminRequiresLogin", func(t *testing.T) {
		t.Parallel()
		c := fwClient(t, false, false)
		resp, body := fwGet(t, c, s.URL+"/admin/")
		fwWantStatus(t, s, resp, body, 302)
		if loc := resp.Header.Get("Location"); loc != "/admin/login/?next=/admin/" {
			t.Fatalf("Location %q", loc)
		}
	})

	t.Run("NotesThroughAdmin", func(t *testing.T) {
		t.Parallel()
		c := fwClient(t, true, true)
		resp, body := adminLogin(t, s, c, "")
		fwWantStatus(t, s, resp, body, 200)
		addURL := s.URL + "/admin/notes/note/add/"
		token := fwCSRFToken(t, s, c, addURL)
		title := "admin note ✓ " + strconv.FormatInt(time.Now().UnixNano(), 36)
		resp, body = fwPostForm(t, c, addURL, url.Values{
			"csrfmiddlewaretoken": {token}, "title": {title}, "body": {"from the admin"}, "_save": {"Save"},
		}, "Referer", addURL)
		fwWantStatus(t, s, resp, body, 200)
		if resp.Request.URL.Path != "/admin/notes/note/" {
			t.Fatalf("after add: at %v\n%s", resp.Request.URL, fwTrunc(body))
		}
		if !strings.Contains(string(body), html.EscapeString(title)) {
			t.Fatalf("new note not in the admin changelist:\n%s", fwTrunc(body))
		}
		// Visible from the public list too (either worker, same sqlite).
		for i := 0; i < 4; i++ {
			resp, body = fwGet(t, c, s.URL+"/notes/")
			fwWantStatus(t, s, resp, body, 200)
			if !strings.Contains(string(body), html.EscapeString(title)) {
				t.Fatalf("note %q not listed on /notes/:\n%s", title, fwTrunc(body))
			}
		}
	})

	t.Run("NotesForm", func(t *testing.T) {
		t.Parallel()
		c := fwClient(t, true, false)
		newURL := s.URL + "/notes/new/"
		token := fwCSRFToken(t, s, c, newURL)
		var titles []string
		for i := 0; i < 5; i++ {
			title := fmt.Sprintf("form note %d – ünïcödé <b>&</b> %d", i, time.Now().UnixNano())
			titles = append(titles, title)
			resp, body := fwPostForm(t, c, newURL, url.Values{
				"csrfmiddlewaretoken": {token}, "title": {title}, "body": {"line 1\r\nline 2"},
			}, "Referer", newURL)
			fwWantStatus(t, s, resp, body, 302)
			if loc := resp.Header.Get("Location"); loc != "/notes/" {
				t.Fatalf("Location %q", loc)
			}
		}
		resp, body := fwGet(t, c, s.URL+"/notes/")
		fwWantStatus(t, s, resp, body, 200)
		for _, title := range titles {
			if !strings.Contains(string(body), html.EscapeString(title)) {
				// Django escapes ' and " differently from Go; titles have neither.
				t.Errorf("note %q not on /notes/", title)
			}
		}
		// An invalid form (no title) re-renders with an error, not a 500.
		resp, body = fwPostForm(t, c, newURL, url.Values{"csrfmiddlewaretoken": {token}, "title": {""}}, "Referer", newURL)
		fwWantStatus(t, s, resp, body, 200)
		if !strings.Contains(string(body), "This field is required.") {
			t.Errorf("no validation error:\n%s", fwTrunc(body))
		}
		// Without the token: 403.
		resp, body = fwPostForm(t, c, newURL, url.Values{"title": {"no csrf"}}, "Referer", newURL)
		fwWantStatus(t, s, resp, body, 403)
	})

	t.Run("JSON", func(t *testing.T) {
		t.Parallel()
		c := fwClient(t, true, false)
		newURL := s.URL + "/notes/new/"
		token := fwCSRFToken(t, s, c, newURL)
		title := fmt.Sprintf("json note %d", time.Now().UnixNano())
		resp, body := fwPostForm(t, c, newURL, url.Values{
			"csrfmiddlewaretoken": {token}, "title": {title}, "body": {"Grüße"},
		}, "Referer", newURL)
		fwWantStatus(t, s, resp, body, 302)

		type note struct {
			ID    int    `json:"id"`
			Title string `json:"title"`
			Body  string `json:"body"`
		}
		var list struct {
			Count      int    `json:"count"`
			Notes      []note `json:"notes"`
			PID        int    `json:"pid"`
			ScriptName string `json:"script_name"`
			Path       string `json:"path"`
			Query      string `json:"query"`
		}
		pids := map[int]bool{}
		var found note
		for i := 0; i < 8; i++ {
			resp, body = fwGet(t, c, s.URL+"/notes/api/?q="+url.QueryEscape("ß ✓"))
			fwWantStatus(t, s, resp, body, 200)
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			fwJSON(t, body, &list)
			pids[list.PID] = true
			found = note{}
			for _, n := range list.Notes {
				if n.Title == title {
					found = n
				}
			}
			if found.ID == 0 || found.Body != "Grüße" {
				t.Fatalf("note %q not in the JSON list (pid %d): %s", title, list.PID, fwTrunc(body))
			}
			if list.Count != len(list.Notes) || list.ScriptName != "" || list.Path != "/notes/api/" || list.Query != "ß ✓" {
				t.Fatalf("list %+v", list)
			}
		}
		// Concurrent slow requests spread over both workers: each must see
		// the note, which the other (or the same) worker wrote to sqlite.
		for round := 0; round < 5 && len(pids) < 2; round++ {
			var wg sync.WaitGroup
			var mu sync.Mutex
			for i := 0; i < 4; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), fwTimeout)
					defer cancel()
					req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/notes/api/?sleep=0.3", nil)
					resp, err := c.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					defer resp.Body.Close()
					var l struct {
						PID   int    `json:"pid"`
						Notes []note `json:"notes"`
					}
					if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || resp.StatusCode != 200 {
						t.Errorf("status %d: %v", resp.StatusCode, err)
						return
					}
					ok := false
					for _, n := range l.Notes {
						ok = ok || n.Title == title
					}
					if !ok {
						t.Errorf("worker %d does not see note %q", l.PID, title)
					}
					mu.Lock()
					pids[l.PID] = true
					mu.Unlock()
				}()
			}
			wg.Wait()
		}
		if len(pids) < 2 {
			t.Errorf("all requests were served by worker(s) %v; want both workers", pids)
		}
		t.Logf("served by worker pids %v", pids)

		resp, body = fwGet(t, c, fmt.Sprintf("%s/notes/api/%d/", s.URL, found.ID))
		fwWantStatus(t, s, resp, body, 200)
		var one note
		fwJSON(t, body, &one)
		if one != found {
			t.Fatalf("detail %+v, want %+v", one, found)
		}
		resp, body = fwGet(t, c, s.URL+"/notes/api/999999/")
		fwWantStatus(t, s, resp, body, 404)
	})

	t.Run("DisallowedHost", func(t *testing.T) {
		t.Parallel()
		c := fwClient(t, false, false)
		req := fwRequest(t, "GET", s.URL+"/notes/", nil)
		req.Host = "evil.example.com"
		resp, body := fwDo(t, c, req)
		fwWantStatus(t, s, resp, body, 400)
	})

	t.Run("CommonMiddlewareSlash", func(t *testing.T) {
		t.Parallel()
		c := fwClient(t, false, false)
		resp, body := fwGet(t, c, s.URL+"/notes/api?x=1")
		fwWantStatus(t, s, resp, body, 301)
		if loc := resp.Header.Get("Location"); loc != "/notes/api/?x=1" {
			t.Fatalf("Location %q", loc)
		}
	})
}

// With --root-path /mount, Django builds every URL with the prefix.
func TestDjangoRootPath(t *testing.T) {
	t.Parallel()
	db := setupDjango(t)
	s := startDjango(t, db, "--root-path", "/mount")

	t.Run("AdminRedirect", func(t *testing.T) {
		t.Parallel()
		c := fwClient(t, false, false)
		resp, body := fwGet(t, c, s.URL+"/mount/admin/")
		fwWantStatus(t, s, resp, body, 302)
		if loc := resp.Header.Get("Location"); loc != "/mount/admin/login/?next=/mount/admin/" {
			t.Fatalf("Location %q, want /mount/admin/login/?next=/mount/admin/", loc)
		}
	})

	t.Run("AdminLogin", func(t *testing.T) {
		t.Parallel()
		c := fwClient(t, true, true)
		resp, body := adminLogin(t, s, c, "/mount")
		fwWantStatus(t, s, resp, body, 200)
		if resp.Request.URL.Path != "/mount/admin/" || !strings.Contains(string(body), "Site administration") {
			t.Fatalf("login ended at %v:\n%s", resp.Request.URL, fwTrunc(body))
		}
		if !strings.Contains(string(body), `href="/mount/admin/notes/note/"`) {
			t.Errorf("admin links lack the /mount prefix:\n%s", fwTrunc(body))
		}
		// Cookies are scoped to the prefix? Django's default path is "/",
		// so they are sent everywhere: fine either way, but they must work.
		resp, body = fwGet(t, c, s.URL+"/mount/admin/notes/note/")
		fwWantStatus(t, s, resp, body, 200)
		if resp.Request.URL.Path != "/mount/admin/notes/note/" {
			t.Fatalf("changelist redirected to %v", resp.Request.URL)
		}
	})

	t.Run("NotesForm", func(t *testing.T) {
		t.Parallel()
		c := fwClient(t, true, false)
		newURL := s.URL + "/mount/notes/new/"
		resp, body := fwGet(t, c, newURL)
		fwWantStatus(t, s, resp, body, 200)
		if !strings.Contains(string(body), `action="/mount/notes/new/"`) {
			t.Fatalf("form action lacks the prefix:\n%s", fwTrunc(body))
		}
		token := fwCSRFToken(t, s, c, newURL)
		resp, body = fwPostForm(t, c, newURL, url.Values{"csrfmiddlewaretoken": {token}, "title": {"mounted"}}, "Referer", newURL)
		fwWantStatus(t, s, resp, body, 302)
		if loc := resp.Header.Get("Location"); loc != "/mount/notes/" {
			t.Fatalf("Location %q, want /mount/notes/", loc)
		}
		resp, body = fwGet(t, c, s.URL+"/mount/notes/api/")
		fwWantStatus(t, s, resp, body, 200)
		var list struct {
			ScriptName string `json:"script_name"`
			Path       string `json:"path"`
			Notes      []struct {
				Title string `json:"title"`
			} `json:"notes"`
		}
		fwJSON(t, body, &list)
		if list.ScriptName != "/mount" || list.Path != "/mount/notes/api/" || len(list.Notes) != 1 || list.Notes[0].Title != "mounted" {
			t.Fatalf("list %s", body)
		}
	})
}

// ---------------------------------------------------------------------------
// wsgiref.validate

// fwCheckValidator fails t when the validator complained in taipan's log.
func fwCheckValidator(t testing.TB, s *Server) {
	t.Helper()
	log := s.Stderr()
	for _, bad := range []string{"AssertionError", "WSGIWarning", "Traceback", "Exception ignored"} {
		if strings.Contains(log, bad) {
			t.Fatalf("taipan's error log has %q:\n%s", bad, log)
		}
	}
}

func startValidated(t *testing.T, extra ...string) *Server {
	t.Helper()
	args := append([]string{"--chdir", appsDir(t), "-w", "2", "-e", "PYTHONDONTWRITEBYTECODE=1"}, extra...)
	s := Start(t, append(args, "validated:application")...)
	t.Cleanup(func() { fwCheckValidator(t, s) })
	return s
}

// fwLinesBody is a body of many lines of varied length, some long, with a
// last line without a newline.
func fwLinesBody(n int) []byte {
	var b bytes.Buffer
	r := rand.New(rand.NewSource(int64(n)))
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "line %d %s\n", i, strings.Repeat("x", r.Intn(300)))
	}
	b.WriteString("no newline at the end")
	return b.Bytes()
}

func TestValidator(t *testing.T) {
	t.Parallel()
	s := startValidated(t)
	c := fwClient(t, false, false)

	expectText := func(t *testing.T, resp *http.Response, body []byte, want string) {
		t.Helper()
		fwWantStatus(t, s, resp, body, 200)
		if string(body) != want {
			t.Fatalf("body %q, want %q", body, want)
		}
		fwCheckValidator(t, s)
	}

	t.Run("Root", func(t *testing.T) {
		t.Parallel()
		resp, body := fwGet(t, c, s.URL+"/")
		expectText(t, resp, body, "validated ok\n")
	})

	t.Run("Environ", func(t *testing.T) {
		t.Parallel()
		resp, body := fwGet(t, c, s.URL+"/environ?a=1&b=%C3%BC")
		fwWantStatus(t, s, resp, body, 200)
		var env map[string]any
		fwJSON(t, body, &env)
		want := map[string]any{
			"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/environ",
			"QUERY_STRING": "a=1&b=%C3%BC", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s = %#v, want %#v", k, env[k], v)
			}
		}
		host, port, _ := net.SplitHostPort(s.Addr)
		if env["SERVER_PORT"] != port || env["SERVER_NAME"] == "" || env["REMOTE_ADDR"] != host {
			t.Errorf("SERVER_NAME %v SERVER_PORT %v REMOTE_ADDR %v", env["SERVER_NAME"], env["SERVER_PORT"], env["REMOTE_ADDR"])
		}
		if env["HTTP_HOST"] != s.Addr {
			t.Errorf("HTTP_HOST %v", env["HTTP_HOST"])
		}
		if _, ok := env["CONTENT_LENGTH"]; ok {
			t.Errorf("GET without a body has CONTENT_LENGTH %v", env["CONTENT_LENGTH"])
		}
		if env["wsgi.multithread"] != false || env["wsgi.multiprocess"] != true || env["wsgi.run_once"] != false {
			t.Errorf("wsgi flags %v %v %v", env["wsgi.multithread"], env["wsgi.multiprocess"], env["wsgi.run_once"])
		}
		fwCheckValidator(t, s)
	})

	t.Run("Input", func(t *testing.T) {
		t.Parallel()
		small := fwLinesBody(50)
		large := fwLinesBody(15000) // ~2.3 MB: spilled to a file
		if len(large) <= 1<<20 {
			t.Fatalf("large body is only %d bytes", len(large))
		}
		modes := []string{"read", "readall", "readline", "readline-size", "readlines", "readlines-hint", "iter", "mixed"}
		for _, data := range [][]byte{small, large, {}} {
			for _, mode := range modes {
				for _, chunked := range []bool{false, true} {
					var r io.Reader = bytes.NewReader(data)
					if chunked {
						r = io.MultiReader(r)
					}
					req := fwRequest(t, "POST", s.URL+"/input?mode="+mode, r)
					req.Header.Set("Content-Type", "text/plain")
					resp, body := fwDo(t, c, req)
					fwWantStatus(t, s, resp, body, 200)
					got := string(body)
					prefix := fmt.Sprintf("mode=%s\nlength=%d\nsha256=%s\n", mode, len(data), fwSHA256(data))
					if !strings.HasPrefix(got, prefix) {
						t.Fatalf("%s (%d bytes, chunked %v): got\n%s\nwant prefix\n%s", mode, len(data), chunked, got, prefix)
					}
					wantInput := "BytesIO"
					if len(data) > 1<<20 {
						wantInput = "BufferedReader"
					}
					if !strings.HasSuffix(got, "\ninput="+wantInput+"\n") {
						t.Errorf("%s (%d bytes): wsgi.input %q, want %s", mode, len(data), got, wantInput)
					}
					if mode == "readline" || mode == "readlines" || mode == "iter" {
						lines := bytes.Count(data, []byte("\n"))
						if len(data) > 0 && data[len(data)-1] != '\n' {
							lines++
						}
						if !strings.Contains(got, fmt.Sprintf("\npieces=%d\n", lines)) {
							t.Errorf("%s: %q, want %d lines", mode, got, lines)
						}
					}
				}
			}
		}
		// Around the 1 MiB --body-memory-limit: at most 1 MiB stays in
		// memory, anything above is spilled.
		for _, n := range []int{1<<20 - 1, 1 << 20, 1<<20 + 1} {
			data := fwRandom(n, int64(n))
			resp, body := fwDo(t, c, fwRequest(t, "POST", s.URL+"/input?mode=read", bytes.NewReader(data)))
			fwWantStatus(t, s, resp, body, 200)
			want := fmt.Sprintf("length=%d\nsha256=%s\n", n, fwSHA256(data))
			if !strings.Contains(string(body), want) {
				t.Fatalf("%d bytes: got\n%s\nwant\n%s", n, body, want)
			}
			wantInput := "BytesIO"
			if n > 1<<20 {
				wantInput = "BufferedReader"
			}
			if !strings.HasSuffix(string(body), "\ninput="+wantInput+"\n") {
				t.Errorf("%d bytes: %q, want wsgi.input %s", n, body, wantInput)
			}
		}
		fwCheckValidator(t, s)
	})

	t.Run("Post", func(t *testing.T) {
		t.Parallel()
		form := url.Values{"name": {"Zoë"}, "item": {"1", "2", "3"}}
		resp, body := fwPostForm(t, c, s.URL+"/post", form)
		expectText(t, resp, body, "type=application/x-www-form-urlencoded\nname=Zoë\ncount=3\n")
		// An empty POST has CONTENT_LENGTH 0.
		req := fwRequest(t, "POST", s.URL+"/post", http.NoBody)
		resp, body = fwDo(t, c, req)
		expectText(t, resp, body, "type=\nname=\ncount=0\n")
		// GET is refused by the app with 405 and Allow.
		resp, body = fwGet(t, c, s.URL+"/post")
		fwWantStatus(t, s, resp, body, 405)
		if resp.Header.Get("Allow") != "POST" {
			t.Errorf("Allow %q", resp.Header.Get("Allow"))
		}
	})

	t.Run("Errors", func(t *testing.T) {
		t.Parallel()
		token := strconv.FormatInt(time.Now().UnixNano(), 36)
		resp, body := fwGet(t, c, s.URL+"/errors?token="+token)
		expectText(t, resp, body, "logged\n")
		for _, line := range []string{"validated: write token=", "validated: writelines-1 token=", "validated: writelines-2 token="} {
			if !s.WaitLog(line+token, 5*time.Second) {
				t.Fatalf("%q not in the error log:\n%s", line+token, s.Stderr())
			}
		}
	})

	t.Run("Stream", func(t *testing.T) {
		t.Parallel()
		token := strconv.FormatInt(time.Now().UnixNano(), 36)
		resp, body := fwGet(t, c, s.URL+"/stream?n=300&token="+token)
		var want strings.Builder
		for i := 0; i < 300; i++ {
			fmt.Fprintf(&want, "chunk %03d\n", i)
		}
		expectText(t, resp, body, want.String())
		if resp.ContentLength != -1 {
			t.Errorf("streamed response has Content-Length %d", resp.ContentLength)
		}
		// close() of the iterable was called.
		if !s.WaitLog("validated: stream closed token="+token, 5*time.Second) {
			t.Fatalf("the iterable's close() was not called:\n%s", s.Stderr())
		}
	})

	// The client goes away in the middle of a slow stream: taipan cancels
	// the stream and the worker calls close() on the iterable promptly,
	// instead of producing the remaining ~10 s of chunks for nobody.
	t.Run("Cancel", func(t *testing.T) {
		t.Parallel()
		token := strconv.FormatInt(time.Now().UnixNano(), 36)
		conn, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(fwTimeout))
		fmt.Fprintf(conn, "GET /stream?n=1000&delay=0.01&token=%s HTTP/1.1\r\nHost: x\r\n\r\n", token)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != "chunk 000\n" {
			t.Fatalf("first line %q, %v", line, err)
		}
		start := time.Now()
		conn.Close()
		if !s.WaitLog("validated: stream closed token="+token, 5*time.Second) {
			t.Fatalf("close() not called within 5 s of the client leaving:\n%s", s.Stderr())
		}
		t.Logf("close() called %v after the client left", time.Since(start))
	})

	t.Run("Lazy", func(t *testing.T) {
		t.Parallel()
		resp, body := fwGet(t, c, s.URL+"/lazy")
		expectText(t, resp, body, "lazy-1\nlazy-2\n")
	})

	t.Run("Write", func(t *testing.T) {
		t.Parallel()
		resp, body := fwGet(t, c, s.URL+"/write")
		expectText(t, resp, body, "written-1\nwritten-2\nreturned\n")
	})

	t.Run("Head", func(t *testing.T) {
		t.Parallel()
		want := strings.Repeat("head body ", 10) + "\n"
		resp, body := fwGet(t, c, s.URL+"/head")
		expectText(t, resp, body, want)
		resp, body = fwDo(t, c, fwRequest(t, "HEAD", s.URL+"/head", nil))
		fwWantStatus(t, s, resp, body, 200)
		if len(body) != 0 || resp.ContentLength != int64(len(want)) || resp.Header.Get("X-Head-Test") != "yes" {
			t.Fatalf("HEAD: body %q, Content-Length %d, headers %v", body, resp.ContentLength, resp.Header)
		}
		// HEAD on a streamed response: no body either, and the connection
		// stays in sync for the next request.
		resp, body = fwDo(t, c, fwRequest(t, "HEAD", s.URL+"/stream?n=3", nil))
		fwWantStatus(t, s, resp, body, 200)
		if len(body) != 0 {
			t.Fatalf("HEAD /stream has a body %q", body)
		}
		resp, body = fwGet(t, c, s.URL+"/")
		expectText(t, resp, body, "validated ok\n")
	})

	t.Run("ExcInfo", func(t *testing.T) {
		t.Parallel()
		resp, body := fwGet(t, c, s.URL+"/exc-info")
		fwWantStatus(t, s, resp, body, 503)
		if string(body) != "recovered\n" || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("body %q headers %v", body, resp.Header)
		}
		fwCheckValidator(t, s)
	})

	t.Run("FileWrapper", func(t *testing.T) {
		t.Parallel()
		want, err := os.ReadFile(filepath.Join(appsDir(t), "validated.py"))
		if err != nil {
			t.Fatal(err)
		}
		resp, body := fwGet(t, c, s.URL+"/file")
		expectText(t, resp, body, string(want))
	})

	t.Run("NoContent", func(t *testing.T) {
		t.Parallel()
		resp, body := fwGet(t, c, s.URL+"/empty")
		fwWantStatus(t, s, resp, body, 204)
		if len(body) != 0 {
			t.Fatalf("204 with body %q", body)
		}
		fwCheckValidator(t, s)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		resp, body := fwGet(t, c, s.URL+"/nope/%C3%BC")
		fwWantStatus(t, s, resp, body, 404)
		// PATH_INFO is latin-1 "bytes as str": the app sees the two UTF-8
		// bytes of ü as two code points and encodes them back as UTF-8.
		if string(body) != "not found: /nope/Ã¼\n" {
			t.Fatalf("body %q", body)
		}
		fwCheckValidator(t, s)
	})

	// An absolute-form request target (RFC 9112 3.2.2) must reach the app
	// as an ordinary path.
	t.Run("AbsoluteForm", func(t *testing.T) {
		t.Parallel()
		raw := s.Raw(t, "GET http://"+s.Addr+"/environ?x=1 HTTP/1.1\r\nHost: "+s.Addr+"\r\nConnection: close\r\n\r\n", 10*time.Second)
		resp, body := ReadResponse(t, bufio.NewReader(strings.NewReader(raw)), "GET")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d:\n%s\nstderr:\n%s", resp.StatusCode, body, s.Stderr())
		}
		var env map[string]any
		fwJSON(t, []byte(body), &env)
		if env["PATH_INFO"] != "/environ" || env["QUERY_STRING"] != "x=1" {
			t.Fatalf("PATH_INFO %v QUERY_STRING %v", env["PATH_INFO"], env["QUERY_STRING"])
		}
		fwCheckValidator(t, s)
	})

	// HTTP/1.0 requests: SERVER_PROTOCOL says so, and streamed responses
	// (no length) are delimited by closing the connection.
	t.Run("HTTP10", func(t *testing.T) {
		t.Parallel()
		raw := s.Raw(t, "GET /stream?n=4 HTTP/1.0\r\nHost: "+s.Addr+"\r\n\r\n", 10*time.Second)
		resp, body := ReadResponse(t, bufio.NewReader(strings.NewReader(raw)), "GET")
		if resp.StatusCode != 200 || body != "chunk 000\nchunk 001\nchunk 002\nchunk 003\n" {
			t.Fatalf("HTTP/1.0 stream: %d %q\nraw:\n%s", resp.StatusCode, body, raw)
		}
		raw = s.Raw(t, "GET /environ HTTP/1.0\r\n\r\n", 10*time.Second)
		resp, body = ReadResponse(t, bufio.NewReader(strings.NewReader(raw)), "GET")
		if resp.StatusCode != 200 {
			t.Fatalf("HTTP/1.0 without Host: %d %q\nstderr:\n%s", resp.StatusCode, body, s.Stderr())
		}
		var env map[string]any
		fwJSON(t, []byte(body), &env)
		if env["SERVER_PROTOCOL"] != "HTTP/1.0" {
			t.Fatalf("SERVER_PROTOCOL %v", env["SERVER_PROTOCOL"])
		}
		fwCheckValidator(t, s)
	})
}

// The validator checks SCRIPT_NAME and PATH_INFO under --root-path.
func TestValidatorRootPath(t *testing.T) {
	t.Parallel()
	s := startValidated(t, "--root-path", "/mount")
	c := fwClient(t, false, false)
	cases := []struct{ path, script, info string }{
		{"/mount/environ", "/mount", "/environ"},
		{"/mount", "/mount", ""},
		{"/mount/", "/mount", "/"},
		{"/mount/a%2Fb", "/mount", "/a/b"},
		{"/mountain/x", "/mount", "/mountain/x"}, // not under the mount: left alone
		{"/other", "/mount", "/other"},
	}
	for _, tc := range cases {
		resp, body := fwGet(t, c, s.URL+tc.path+"?dump=1")
		fwWantStatus(t, s, resp, body, 200)
		var env map[string]any
		fwJSON(t, body, &env)
		if env["SCRIPT_NAME"] != tc.script || env["PATH_INFO"] != tc.info {
			t.Errorf("%s: SCRIPT_NAME %q PATH_INFO %q, want %q %q", tc.path, env["SCRIPT_NAME"], env["PATH_INFO"], tc.script, tc.info)
		}
	}
	fwCheckValidator(t, s)
}
