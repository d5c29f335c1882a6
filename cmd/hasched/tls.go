package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// errNoCertificates is a CA file with no PEM certificate in it.
var errNoCertificates = errors.New("no PEM certificate found")

// loadAPITLS builds the REST API's server TLS (nil without --tls-cert) and
// the forwarding client's: it verifies the leader with --tls-ca (or the
// system's roots) and presents this process's certificate, for leaders
// that require client certificates (--tls-client-ca).
func loadAPITLS(a apiSecurityFlags) (server, forward *tls.Config, err error) {
	if (a.tlsCert == "") != (a.tlsKey == "") {
		return nil, nil, usagef("--tls-cert and --tls-key go together: set both or neither")
	}
	if a.tlsCert == "" {
		if a.tlsClientCA != "" || a.tlsCA != "" {
			return nil, nil, usagef("--tls-client-ca and --tls-ca need --tls-cert and --tls-key")
		}
		return nil, nil, nil
	}
	cert, err := tls.LoadX509KeyPair(a.tlsCert, a.tlsKey)
	if err != nil {
		return nil, nil, usagef("--tls-cert/--tls-key: %v", err)
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if a.tlsClientCA != "" {
		pool, err := loadCAFile(a.tlsClientCA)
		if err != nil {
			return nil, nil, usagef("--tls-client-ca: %v", err)
		}
		server.ClientCAs, server.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	forward = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if a.tlsCA != "" {
		if forward.RootCAs, err = loadCAFile(a.tlsCA); err != nil {
			return nil, nil, usagef("--tls-ca: %v", err)
		}
	}
	return server, forward, nil
}

// loadCAFile reads a PEM bundle into a pool.
func loadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: %w", path, errNoCertificates)
	}
	return pool, nil
}
