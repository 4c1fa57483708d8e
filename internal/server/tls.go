package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// certStore holds the server certificate, reloadable while connections
// are served: each handshake takes the current one.
type certStore struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
	clientCAs         *x509.CertPool
	clientAuth        tls.ClientAuthType
}

// newCertStore loads the certificate chain and key (PEM, RSA or ECDSA)
// and, for client certificates, the CA bundle.
func newCertStore(certFile, keyFile, caFile, certReqs string) (*certStore, error) {
	s := &certStore{certFile: certFile, keyFile: keyFile}
	if err := s.reload(); err != nil {
		return nil, err
	}
	switch certReqs {
	case "optional":
		s.clientAuth = tls.VerifyClientCertIfGiven
	case "required":
		s.clientAuth = tls.RequireAndVerifyClientCert
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-certs: %w", err)
		}
		s.clientCAs = x509.NewCertPool()
		if !s.clientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-certs: %s holds no PEM certificate", caFile)
		}
	}
	return s, nil
}

// reload reads the certificate and key again; on error the current pair
// stays.
func (s *certStore) reload() error {
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("--certfile/--keyfile: %w", err)
	}
	if len(cert.Certificate) == 0 {
		return errors.New("--certfile: no certificate")
	}
	s.cert.Store(&cert)
	return nil
}

// config is the TLS configuration of the HTTP listeners: TLS 1.2 and up,
// Go's default (modern, AEAD-only for 1.2) cipher suites, HTTP/2 offered
// first by ALPN.
func (s *certStore) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		},
		ClientAuth: s.clientAuth,
		ClientCAs:  s.clientCAs,
	}
}
