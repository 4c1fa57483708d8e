package e2e

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testPKI is a certificate authority made by the test: a root, an
// intermediate that signs the server and client certificates, and files
// in the PEM forms taipan reads.
type testPKI struct {
	t        *testing.T
	dir      string
	root     *x509.Certificate
	rootKey  crypto.Signer
	inter    *x509.Certificate
	interKey crypto.Signer
	serial   int64
	RootFile string // the root, for clients
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{t: t, dir: t.TempDir(), serial: 1}
	p.root, p.rootKey = p.issue("taipan test root", nil, nil, true, nil, ecKey(t))
	p.inter, p.interKey = p.issue("taipan test intermediate", p.root, p.rootKey, true, nil, ecKey(t))
	p.RootFile = p.write("root.pem", pemCert(p.root))
	return p
}

func ecKey(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (p *testPKI) issue(cn string, parent *x509.Certificate, parentKey crypto.Signer, ca bool, usage []x509.ExtKeyUsage, key crypto.Signer) (*x509.Certificate, crypto.Signer) {
	p.t.Helper()
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		ExtKeyUsage:  usage,
	}
	if ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		p.t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		p.t.Fatal(err)
	}
	return cert, key
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func pemKey(t *testing.T, k crypto.Signer) []byte {
	if rk, ok := k.(*rsa.PrivateKey); ok { // the traditional PKCS #1 form
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func (p *testPKI) write(name string, data []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// server issues a server certificate and writes the chain (leaf, then the
// intermediate) and key to name.pem and name.key.
func (p *testPKI) server(name string, key crypto.Signer) (certFile, keyFile string, cert *x509.Certificate) {
	cert, _ = p.issue("127.0.0.1", p.inter, p.interKey, false, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, key)
	certFile = p.write(name+".pem", append(pemCert(cert), pemCert(p.inter)...))
	keyFile = p.write(name+".key", pemKey(p.t, key))
	return certFile, keyFile, cert
}

// client issues a client certificate.
func (p *testPKI) client(cn string) tls.Certificate {
	key := ecKey(p.t)
	cert, _ := p.issue(cn, p.inter, p.interKey, false, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, key)
	return tls.Certificate{Certificate: [][]byte{cert.Raw, p.inter.Raw}, PrivateKey: key}
}

func (p *testPKI) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.root)
	return pool
}

func tlsClient(pool *x509.CertPool, h2 bool, certs ...tls.Certificate) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// TestTLS: HTTPS with an ECDSA and an RSA certificate chain, HTTP/2 by
// ALPN and HTTP/1.1 beside it, https in the environ, curl and Python's ssl
// as clients, no TLS below 1.2.
func TestTLS(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"ecdsa", ecKey(t)}, {"rsa", rsaKey}} {
		certFile, keyFile, _ := pki.server(tc.name, tc.key)
		s := startTestApp(t, "-w", "1", "--certfile", certFile, "--keyfile", keyFile)
		if !strings.Contains(s.Stderr(), "Listening at: https://") {
			t.Errorf("%s: the log does not say https:\n%s", tc.name, s.Stderr())
		}
		for _, h2 := range []bool{true, false} {
			resp, err := tlsClient(pki.pool(), h2).Get("https://" + s.Addr + "/environ")
			if err != nil {
				t.Fatalf("%s h2=%v: %v\n%s", tc.name, h2, err, s.Stderr())
			}
			var env struct {
				Scheme string            `json:"wsgi.url_scheme"`
				Str    map[string]string `json:"str"`
			}
			json.NewDecoder(resp.Body).Decode(&env)
			resp.Body.Close()
			wantMajor, wantProto := 1, "HTTP/1.1"
			if h2 {
				wantMajor, wantProto = 2, "HTTP/2"
			}
			if resp.ProtoMajor != wantMajor || env.Scheme != "https" || env.Str["SERVER_PROTOCOL"] != wantProto {
				t.Errorf("%s h2=%v: %s, scheme %q, SERVER_PROTOCOL %q", tc.name, h2, resp.Proto, env.Scheme, env.Str["SERVER_PROTOCOL"])
			}
		}
		// curl and Python's ssl, trusting only the test's root CA.
		out, err := exec.Command("curl", "-sS", "--cacert", pki.RootFile, "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "https://"+s.Addr+"/pid").CombinedOutput()
		if err != nil || string(out) != "2 200" {
			t.Errorf("%s: curl over TLS: %q %v", tc.name, out, err)
		}
		py := "import ssl, sys, urllib.request; ctx = ssl.create_default_context(cafile=sys.argv[1]); " +
			"r = urllib.request.urlopen('https://' + sys.argv[2] + '/pid', context=ctx); print(r.status, r.read().decode().strip() != '')"
		out, err = exec.Command(pythonPath(), "-c", py, pki.RootFile, s.Addr).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "200 True" {
			t.Errorf("%s: Python over TLS: %q %v", tc.name, out, err)
		}
		old := &tls.Config{RootCAs: pki.pool(), MaxVersion: tls.VersionTLS11}
		if c, err := tls.Dial("tcp", s.Addr, old); err == nil {
			c.Close()
			t.Errorf("%s: a TLS 1.1 handshake succeeded", tc.name)
		}
	}
}

// TestTLSClientCertificates: with --cert-reqs required, a client without a
// certificate from --ca-certs cannot connect; with optional it can.
func TestTLSClientCertificates(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	certFile, keyFile, _ := pki.server("server", ecKey(t))
	caFile := pki.write("clients.pem", pemCert(pki.root))
	for _, mode := range []string{"required", "optional"} {
		s := startTestApp(t, "-w", "1", "--certfile", certFile, "--keyfile", keyFile, "--ca-certs", caFile, "--cert-reqs", mode)
		resp, err := tlsClient(pki.pool(), true, pki.client("alice")).Get("https://" + s.Addr + "/pid")
		if err != nil {
			t.Fatalf("%s, with a client certificate: %v", mode, err)
		}
		resp.Body.Close()
		_, err = tlsClient(pki.pool(), true).Get("https://" + s.Addr + "/pid")
		if (err == nil) != (mode == "optional") {
			t.Errorf("%s, without a client certificate: err %v", mode, err)
		}
		// A certificate from another CA is refused either way.
		other := newPKI(t).client("mallory")
		if _, err := tlsClient(pki.pool(), true, other).Get("https://" + s.Addr + "/pid"); err == nil {
			t.Errorf("%s: a certificate from an unknown CA was accepted", mode)
		}
	}
}

// TestTLSReload: SIGHUP rereads the certificate; new connections get the
// new one while an established connection keeps working.
func TestTLSReload(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	certFile, keyFile, first := pki.server("server", ecKey(t))
	s := startTestApp(t, "-w", "1", "--certfile", certFile, "--keyfile", keyFile)
	conf := &tls.Config{RootCAs: pki.pool(), NextProtos: []string{"http/1.1"}}
	old, err := tls.Dial("tcp", s.Addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if got := old.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("serial %v, want %v", got, first.SerialNumber)
	}
	_, _, second := pki.server("server", ecKey(t)) // same file names, new certificate and key
	s.Signal(syscall.SIGHUP)
	if !s.WaitLog("TLS: reloaded", 10*time.Second) {
		t.Fatalf("no reload in the log:\n%s", s.Stderr())
	}
	c, err := tls.Dial("tcp", s.Addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := c.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(second.SerialNumber) != 0 {
		t.Fatalf("after SIGHUP: serial %v, want the new %v", got, second.SerialNumber)
	}
	// The connection made before the reload still serves requests.
	old.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(old, "GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(old), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("old connection after the reload: %v %v", resp, err)
	}
	// A broken certificate file is refused and the current one stays.
	os.WriteFile(certFile, []byte("not a certificate"), 0o600)
	s.Signal(syscall.SIGHUP)
	if !s.WaitLog("keeping the current certificate", 10*time.Second) {
		t.Fatalf("no refusal in the log:\n%s", s.Stderr())
	}
	if _, err := tlsClient(pki.pool(), true).Get("https://" + s.Addr + "/pid"); err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}
}

// TestHTTP2Conformance runs h2spec (every case) over TLS, and h2load for a
// few thousand requests over TLS and over h2c.
func TestHTTP2Conformance(t *testing.T) {
	t.Parallel()
	h2spec := installH2spec(t)
	pki := newPKI(t)
	certFile, keyFile, _ := pki.server("server", ecKey(t))
	s := startTestApp(t, "-w", "2", "--certfile", certFile, "--keyfile", keyFile)
	_, port, _ := net.SplitHostPort(s.Addr)
	out, err := exec.Command(h2spec, "-h", "127.0.0.1", "-p", port, "-t", "-k", "-o", "5").CombinedOutput()
	summary := regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`).FindStringSubmatch(string(out))
	if err != nil || summary == nil || summary[4] != "0" || summary[1] != summary[2] {
		t.Fatalf("h2spec: %v %v\n%s", err, summary, out)
	}
	t.Logf("h2spec over TLS: %s", summary[0])

	h2load, err := exec.LookPath("h2load")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("h2load missing in CI (apt-get install nghttp2-client)")
		}
		t.Skip("h2load not installed (apt-get install nghttp2-client)")
	}
	c := startTestApp(t, "-w", "2", "--h2c")
	for _, url := range []string{"https://" + s.Addr + "/pid", "http://" + c.Addr + "/pid"} {
		out, err := exec.Command(h2load, "-n", "4000", "-c", "8", "-m", "8", url).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "4000 succeeded, 0 failed, 0 errored") || !strings.Contains(string(out), "h2") {
			t.Fatalf("h2load %s: %v\n%s", url, err, out)
		}
	}
}

// TestH2CEndToEnd: with --h2c, curl speaks HTTP/2 in cleartext by prior
// knowledge and by Upgrade; without it, HTTP/1.1 only.
func TestH2CEndToEnd(t *testing.T) {
	t.Parallel()
	s := startTestApp(t, "-w", "1", "--h2c")
	for _, flag := range []string{"--http2-prior-knowledge", "--http2"} {
		out, err := exec.Command("curl", "-sS", flag, "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "http://"+s.Addr+"/pid").CombinedOutput()
		if err != nil || string(out) != "2 200" {
			t.Errorf("curl %s: %q %v", flag, out, err)
		}
	}
	plain := startTestApp(t, "-w", "1")
	out, _ := exec.Command("curl", "-sS", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "http://"+plain.Addr+"/pid").CombinedOutput()
	if string(out) != "1.1 200" {
		t.Errorf("without --h2c, curl --http2: %q", out)
	}
}

// installH2spec builds h2spec (pinned) from the Go module proxy into a
// directory kept for the test run.
func installH2spec(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "taipan-e2e-h2spec")
	bin := filepath.Join(dir, "h2spec")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("go", "install", "github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible")
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("installing h2spec: %v\n%s", err, out)
	}
	return bin
}

// TestTLSASGI: an ASGI app over HTTPS sees scheme https, over HTTP/2
// http_version "2".
func TestTLSASGI(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	certFile, keyFile, _ := pki.server("server", ecKey(t))
	s := startASGI(t, "fastapi_app", "-w", "1", "--certfile", certFile, "--keyfile", keyFile)
	resp, err := tlsClient(pki.pool(), true).Get("https://" + s.Addr + "/scope")
	if err != nil {
		t.Fatal(err)
	}
	var sc map[string]any
	json.NewDecoder(resp.Body).Decode(&sc)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || sc["scheme"] != "https" || sc["http_version"] != "2" {
		t.Fatalf("%s: scope %v", resp.Proto, sc)
	}
}
