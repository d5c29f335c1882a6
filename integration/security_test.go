package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/coordtest"
	"github.com/hasched/hasched/coord/etcd"
	"github.com/hasched/hasched/internal/pki"
)

// Issue 9, finding 7: the coordination path had no transport security and
// no access control. These run the backends configured as an operator
// would secure them, hasched configured by URL alone.

// secureEtcd is an etcd container serving TLS that asks for client
// certificates, with etcd's auth on and a root user.
type secureEtcd struct {
	endpoint      string // host:port
	ca, cert, key string // the client's PEM files; its CN is no user
	// userCert and userKey are a certificate whose CN is the etcd user
	// "hasched": etcd takes it as that user, without a password.
	userCert, userKey string
	passwordFile      string
	clientTLS         *tls.Config
	rootPassword      string
	otherClientTLS    *tls.Config // a certificate of another CA
}

// writeTestFile writes a file of the test's own, 0600.
func writeTestFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func tlsFor(t testing.TB, ca *pki.CA, pair pki.Pair) *tls.Config {
	t.Helper()
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// startSecureEtcd runs etcd with --client-cert-auth on certificates made
// here, then enables auth with a root user through the client API.
func startSecureEtcd(t testing.TB) *secureEtcd {
	t.Helper()
	ca, err := pki.NewCA("hasched test etcd CA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Issue("etcd0", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	// The CN is no etcd user: the certificate alone authorizes nothing
	// once auth is on.
	client, err := ca.Issue("hasched-client")
	if err != nil {
		t.Fatal(err)
	}
	userPair, err := ca.Issue("hasched")
	if err != nil {
		t.Fatal(err)
	}
	c := startContainer(t, imageFromEnv(etcdImageEnv, defaultEtcdImage),
		testcontainers.WithFiles(
			testcontainers.ContainerFile{Reader: bytes.NewReader(ca.CertPEM), ContainerFilePath: "/certs/ca.crt", FileMode: 0o644},
			testcontainers.ContainerFile{Reader: bytes.NewReader(server.CertPEM), ContainerFilePath: "/certs/server.crt", FileMode: 0o644},
			testcontainers.ContainerFile{Reader: bytes.NewReader(server.KeyPEM), ContainerFilePath: "/certs/server.key", FileMode: 0o644},
		),
		testcontainers.WithCmd("etcd",
			"--name", "etcd0",
			"--data-dir", "/var/lib/etcd/data",
			"--listen-client-urls", "https://0.0.0.0:2379",
			"--advertise-client-urls", "https://127.0.0.1:2379",
			"--cert-file", "/certs/server.crt",
			"--key-file", "/certs/server.key",
			"--trusted-ca-file", "/certs/ca.crt",
			"--client-cert-auth"),
		testcontainers.WithExposedPorts("2379/tcp"),
		testcontainers.WithWaitStrategyAndDeadline(time.Minute, wait.ForLog("ready to serve client requests")),
	)
	s := &secureEtcd{endpoint: hostPort(t, c, "2379/tcp"), clientTLS: tlsFor(t, ca, client), rootPassword: "root-pw-for-the-test"}
	other, err := pki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	otherPair, err := other.Issue("hasched-client")
	if err != nil {
		t.Fatal(err)
	}
	s.otherClientTLS = tlsFor(t, other, otherPair)
	s.otherClientTLS.RootCAs = s.clientTLS.RootCAs

	dir := t.TempDir()
	s.ca = writeTestFile(t, dir, "ca.crt", ca.CertPEM)
	s.cert = writeTestFile(t, dir, "client.crt", client.CertPEM)
	s.key = writeTestFile(t, dir, "client.key", client.KeyPEM)
	s.passwordFile = writeTestFile(t, dir, "password", []byte(s.rootPassword+"\n"))
	s.userCert = writeTestFile(t, dir, "hasched.crt", userPair.CertPEM)
	s.userKey = writeTestFile(t, dir, "hasched.key", userPair.KeyPEM)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{s.endpoint}, TLS: s.clientTLS, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.UserAdd(ctx, "root", s.rootPassword); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UserAddWithOptions(ctx, "hasched", "", &clientv3.UserAddOptions{NoPassword: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UserGrantRole(ctx, "hasched", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// url is the --coord URL for ns: certificates and user by query, the
// password from a file.
func (s *secureEtcd) url(ns string, ttl time.Duration) string {
	q := url.Values{"ttl": {ttl.String()}, "ca-file": {s.ca}, "cert-file": {s.cert}, "key-file": {s.key},
		"username": {"root"}, "password-file": {s.passwordFile}}
	return "etcd://" + s.endpoint + "/" + ns + "?" + q.Encode()
}

// certURL is the --coord URL for ns with the certificate of the user
// "hasched" as the identity, no password.
func (s *secureEtcd) certURL(ns string, ttl time.Duration) string {
	q := url.Values{"ttl": {ttl.String()}, "ca-file": {s.ca}, "cert-file": {s.userCert}, "key-file": {s.userKey}}
	return "etcd://" + s.endpoint + "/" + ns + "?" + q.Encode()
}

// etcdRefuses fails the test unless a Put through cfg fails.
func etcdRefuses(t *testing.T, what string, cfg clientv3.Config) {
	t.Helper()
	cfg.DialTimeout, cfg.Logger = 3*time.Second, zap.NewNop()
	cli, err := clientv3.New(cfg)
	if err != nil {
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/hasched/n/003/config/job/evil", "{}"); err == nil {
		t.Errorf("%s: a Put was accepted", what)
	}
}

func TestEtcdWithTLSAndAuth(t *testing.T) {
	s := startSecureEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := coord.Open(ctx, s.url("secure", etcdAuthTTL))
	if err != nil {
		t.Fatalf("coord.Open by URL with TLS and a password: %v", err)
	}
	defer c.Close()
	if _, err := c.Create(ctx, "/config/job/a", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	etcdRefuses(t, "plain", clientv3.Config{Endpoints: []string{s.endpoint}})
	etcdRefuses(t, "TLS without a certificate", clientv3.Config{Endpoints: []string{s.endpoint},
		TLS: &tls.Config{RootCAs: s.clientTLS.RootCAs, MinVersion: tls.VersionTLS12}, Username: "root", Password: s.rootPassword})
	etcdRefuses(t, "a certificate of another CA", clientv3.Config{Endpoints: []string{s.endpoint}, TLS: s.otherClientTLS, Username: "root", Password: s.rootPassword})
	etcdRefuses(t, "the certificate without a password", clientv3.Config{Endpoints: []string{s.endpoint}, TLS: s.clientTLS})
	etcdRefuses(t, "a wrong password", clientv3.Config{Endpoints: []string{s.endpoint}, TLS: s.clientTLS, Username: "root", Password: "guess"})
	byCert, err := coord.Open(ctx, s.certURL("secure", etcdAuthTTL))
	if err != nil {
		t.Fatalf("coord.Open by URL as the certificate's user: %v", err)
	}
	defer byCert.Close()
	if _, err := byCert.Get(ctx, "/config/job/a"); err != nil {
		t.Fatalf("Get as the certificate's user: %v", err)
	}
	if st := coord.RedactURL(s.url("secure", etcdAuthTTL)); strings.Contains(st, s.rootPassword) {
		t.Errorf("the redacted URL shows the password: %s", st)
	}
}

// etcdAuthTTL is longer than the plain suite's TTL: auth checks slow every
// request a little, and a password session authenticates (a raft write and
// a bcrypt comparison) before every stream it opens, every renewal's
// included (etcd #11954).
const etcdAuthTTL = 5 * time.Second

// secureEtcdHarness opens every session by URL on the TLS and auth etcd,
// as the certificate's user (the way to run on an etcd with auth: no
// Authenticate before every stream).
type secureEtcdHarness struct {
	s     *secureEtcd
	admin *clientv3.Client
}

func (h *secureEtcdHarness) Open(ctx context.Context, ns string) (coord.Coordinator, error) {
	return coord.Open(ctx, h.s.certURL(ns, etcdAuthTTL))
}

func (h *secureEtcdHarness) ExpireSession(ctx context.Context, c coord.Coordinator) error {
	ec, ok := c.(*etcd.Coordinator)
	if !ok {
		return errors.New("not an etcd coordinator")
	}
	_, err := h.admin.Revoke(ctx, ec.Lease())
	return err
}

func (h *secureEtcdHarness) SessionTimeout() time.Duration { return etcdAuthTTL }

func TestConformanceEtcdTLSAndAuth(t *testing.T) {
	s := startSecureEtcd(t)
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{s.endpoint}, TLS: s.clientTLS, Username: "root", Password: s.rootPassword,
		DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	coordtest.Run(t, &secureEtcdHarness{s: s, admin: admin})
}

const zkTestDigest = "hasched:zk-digest-for-the-test"

// ZooKeeper with digest ACLs: hasched's nodes are closed to a client
// without the digest, and hasched works.
func TestZooKeeperDigestACLs(t *testing.T) {
	server := startZooKeeper(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Setenv("HASCHED_TEST_ZK_DIGEST", zkTestDigest)
	c, err := coord.Open(ctx, "zk://"+server+"/secure?digest-env=HASCHED_TEST_ZK_DIGEST")
	if err != nil {
		t.Fatalf("coord.Open with a digest: %v", err)
	}
	defer c.Close()
	if _, err := c.Create(ctx, "/config/job/a", []byte(`{"jobName":"a"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Campaign(ctx, "/ha/election", []byte("me")); err != nil {
		t.Fatal(err)
	}
	anon, _, err := zk.Connect([]string{server}, 5*time.Second, zk.WithLogger(zk.DefaultLogger))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, _, err := anon.Get("/secure/config/job/a"); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("an unauthenticated Get: %v, want ErrNoAuth", err)
	}
	if _, err := anon.Set("/secure/config/job/a", []byte("evil"), -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("an unauthenticated Set: %v, want ErrNoAuth", err)
	}
	if _, _, err := anon.Children("/secure/ha/election"); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("an unauthenticated Children of the election: %v, want ErrNoAuth", err)
	}
	if _, err := coord.Open(ctx, "zk://"+server+"/secure?connect-timeout=5s"); err == nil {
		t.Error("coord.Open without the digest got into the namespace")
	}
}

func TestConformanceZooKeeperDigest(t *testing.T) {
	h := newZKHarness(t, startZooKeeper(t))
	h.digest = zkTestDigest
	coordtest.Run(t, h)
}
