package zk

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/coordtest"
	"github.com/hasched/hasched/internal/netproxy"
)

// Environment of TestTLSToASecureClientPort: a ZooKeeper secureClientPort
// (host:port, comma-separated) that asks for client certificates, and the
// PEM files of a CA it trusts and of a client certificate it signed.
const (
	envTLSServers = "HASCHED_ZK_TEST_TLS_SERVERS"
	envTLSCA      = "HASCHED_ZK_TEST_TLS_CA"
	envTLSCert    = "HASCHED_ZK_TEST_TLS_CERT"
	envTLSKey     = "HASCHED_ZK_TEST_TLS_KEY"
)

// hasched reaches a secureClientPort by URL (tls, ca-file, cert-file,
// key-file), with digest ACLs on top; a plain client there gets no session.
func TestTLSToASecureClientPort(t *testing.T) {
	servers := os.Getenv(envTLSServers)
	if servers == "" {
		t.Skip(envTLSServers + " not set: a ZooKeeper secureClientPort with ssl.clientAuth=need")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Setenv("HASCHED_TEST_ZK_DIGEST", testDigest)
	ns := uniqueNS(t, "tls")
	q := url.Values{"ca-file": {os.Getenv(envTLSCA)}, "cert-file": {os.Getenv(envTLSCert)}, "key-file": {os.Getenv(envTLSKey)},
		"digest-env": {"HASCHED_TEST_ZK_DIGEST"}, "session-timeout": {"2s"}}
	c, err := coord.Open(ctx, "zk://"+servers+"/"+ns+"?"+q.Encode())
	if err != nil {
		t.Fatalf("coord.Open over TLS: %v", err)
	}
	defer c.Close()
	if _, err := c.Create(ctx, "/config/job/a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Get(ctx, "/config/job/a"); err != nil || string(n.Value) != "a" {
		t.Fatalf("Get over TLS = %q, %v", n.Value, err)
	}
	if _, err := c.Campaign(ctx, "/ha/election", []byte("me")); err != nil {
		t.Fatal(err)
	}

	// Plain, and TLS without the client certificate: no session.
	plain, _, err := zk.Connect(strings.Split(servers, ","), 2*time.Second, zk.WithLogger(zk.DefaultLogger))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	time.Sleep(2 * time.Second)
	if plain.State() == zk.StateHasSession {
		t.Error("a plain client got a session on the secure port")
	}
	q.Del("cert-file")
	q.Del("key-file")
	q.Set("connect-timeout", "3s")
	if c2, err := coord.Open(ctx, "zk://"+servers+"/"+ns+"?"+q.Encode()); err == nil {
		_ = c2.Close()
		t.Error("a client without a certificate got a session")
	}
}

// The conformance suite over TLS with digest ACLs: the whole contract holds
// on a secured ensemble.
func TestConformanceOverTLSWithDigest(t *testing.T) {
	servers := os.Getenv(envTLSServers)
	if servers == "" {
		t.Skip(envTLSServers + " not set: a ZooKeeper secureClientPort with ssl.clientAuth=need")
	}
	cfg, err := coord.TLSFiles{CA: os.Getenv(envTLSCA), Cert: os.Getenv(envTLSCert), Key: os.Getenv(envTLSKey)}.Config()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{servers: strings.Split(servers, ","), log: testLogger(), proxies: map[coord.Coordinator][]*netproxy.Proxy{}, digest: testDigest, tls: cfg}
	t.Cleanup(h.close)
	coordtest.Run(t, h)
}
