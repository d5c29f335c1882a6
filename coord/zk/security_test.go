package zk

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/pki"
)

func TestConfigFromURLReadsDigestAndTLS(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca, err := pki.NewCA("zk CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := write("ca.crt", string(ca.CertPEM))
	digestFile := write("digest", "hasched:pw\n")
	t.Setenv("HASCHED_TEST_ZK_DIGEST", "fromenv:pw2")
	parse := func(raw string) (Config, error) {
		t.Helper()
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return configFromURL(u)
	}
	cfg, err := parse("zk://h:2281/ns?" + url.Values{"digest-file": {digestFile}, "ca-file": {caFile}, "server-name": {"zk.local"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Digest != "hasched:pw" || cfg.TLS == nil || cfg.TLS.RootCAs == nil || cfg.TLS.ServerName != "zk.local" {
		t.Fatalf("parsed %+v", cfg)
	}
	cfg, err = parse("zk://h:2181/ns?digest-env=HASCHED_TEST_ZK_DIGEST")
	if err != nil || cfg.Digest != "fromenv:pw2" || cfg.TLS != nil {
		t.Fatalf("digest from the environment: %+v, %v", cfg, err)
	}
	for _, tc := range []struct {
		url  string
		want error
		says string
	}{
		{"zk://h/ns?digest-file=" + caFile, coord.ErrCredentials, "user:password"},
		{"zk://h/ns?digest-env=HASCHED_TEST_UNSET_VARIABLE", coord.ErrCredentials, "not set"},
		{"zk://h/ns?digest-env=HASCHED_TEST_ZK_DIGEST&digest-file=" + digestFile, coord.ErrCredentials, "name one"},
		{"zk://h/ns?digest=hasched:pw", coord.ErrUnsupportedURL, "digest"},
		{"zk://h/ns?key-file=" + caFile, coord.ErrCredentials, "go together"},
		{"zk://h/ns?tls=perhaps", coord.ErrUnsupportedURL, "tls"},
	} {
		_, err := parse(tc.url)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want %v saying %q", tc.url, err, tc.want, tc.says)
		}
		if err != nil && strings.Contains(err.Error(), "hasched:pw") {
			t.Errorf("%s: the error shows the digest: %v", tc.url, err)
		}
	}
}

// Nodes get the digest's ACL, creator-only; without a digest, ZooKeeper's
// open ACL as before.
func TestACLForDigest(t *testing.T) {
	if got := aclFor(""); len(got) != 1 || got[0].Scheme != "world" {
		t.Fatalf("no digest: %v", got)
	}
	got := aclFor("hasched:pw")
	if len(got) != 1 || got[0].Scheme != "digest" || got[0].Perms != zk.PermAll || !strings.HasPrefix(got[0].ID, "hasched:") || strings.Contains(got[0].ID, "pw") {
		t.Fatalf("digest: %v", got)
	}
}

// The dialer speaks TLS when configured, checking the server's certificate
// against the CA and the host dialled, within the dial timeout.
func TestDialerTLS(t *testing.T) {
	ca, err := pki.NewCA("zk CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue("zk", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hi"))
			_ = c.Close()
		}
	}()
	defer func() { _ = ln.Close(); <-done }()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	d := &dialer{conns: map[*trackedConn]struct{}{}, tls: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	nc, err := d.dial("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial with the CA: %v", err)
	}
	buf := make([]byte, 2)
	if _, err := nc.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read over TLS: %q, %v", buf, err)
	}
	_ = nc.Close()
	d.shutdown()

	wrong := &dialer{conns: map[*trackedConn]struct{}{}, tls: &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}}
	if nc, err := wrong.dial("tcp", ln.Addr().String(), 5*time.Second); err == nil {
		_ = nc.Close()
		t.Fatal("dial trusted a server of an unknown CA")
	}
	// A plain server, or one that never answers the handshake, fails
	// within the timeout.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start := time.Now()
	fresh := &dialer{conns: map[*trackedConn]struct{}{}, tls: d.tls}
	defer fresh.shutdown()
	if nc, err := fresh.dial("tcp", silent.Addr().String(), 300*time.Millisecond); err == nil {
		_ = nc.Close()
		t.Fatal("a handshake nobody answered succeeded")
	} else if errors.Is(err, errShutDown) {
		t.Fatalf("dial: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("a handshake nobody answered took %v", took)
	}
}
