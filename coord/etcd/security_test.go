package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/coordtest"
	"github.com/hasched/hasched/internal/pki"
)

// writeFile writes a test's file, 0600.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TLS and credentials come from the URL's query, secrets from files or the
// environment; mistakes are refused, not ignored.
func TestConfigFromURLReadsTLSAndCredentials(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue("client")
	if err != nil {
		t.Fatal(err)
	}
	caFile := writeFile(t, dir, "ca.crt", string(ca.CertPEM))
	certFile := writeFile(t, dir, "c.crt", string(pair.CertPEM))
	keyFile := writeFile(t, dir, "c.key", string(pair.KeyPEM))
	pwFile := writeFile(t, dir, "pw", "s3cret\n")
	t.Setenv("HASCHED_TEST_ETCD_PW", "fromenv")

	parse := func(raw string) (Config, error) {
		t.Helper()
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", raw, err)
		}
		return configFromURL(u)
	}
	q := url.Values{"ca-file": {caFile}, "cert-file": {certFile}, "key-file": {keyFile}, "server-name": {"etcd.local"},
		"username": {"hasched"}, "password-file": {pwFile}}
	cfg, err := parse("etcd://h:2379/ns?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS == nil || cfg.TLS.RootCAs == nil || len(cfg.TLS.Certificates) != 1 || cfg.TLS.ServerName != "etcd.local" {
		t.Fatalf("TLS not configured from the files: %+v", cfg.TLS)
	}
	if cfg.Username != "hasched" || cfg.Password != "s3cret" {
		t.Fatalf("credentials %q/%q, want hasched/s3cret (the file's line break dropped)", cfg.Username, cfg.Password)
	}
	cfg, err = parse("etcd://hasched@h:2379/ns?tls=true&password-env=HASCHED_TEST_ETCD_PW")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS == nil || cfg.TLS.RootCAs != nil || cfg.Username != "hasched" || cfg.Password != "fromenv" {
		t.Fatalf("tls=true with the system roots and the password from the environment: %+v", cfg)
	}
	if cfg, err := parse("etcd://h:2379/ns"); err != nil || cfg.TLS != nil {
		t.Fatalf("a URL without TLS parameters: TLS %v, %v", cfg.TLS, err)
	}

	for _, tc := range []struct {
		url  string
		want error
		says string
	}{
		{"etcd://h:2379/ns?cert-file=" + certFile, coord.ErrCredentials, "key-file"},
		{"etcd://h:2379/ns?ca-file=" + filepath.Join(dir, "missing"), coord.ErrCredentials, "missing"},
		{"etcd://h:2379/ns?ca-file=" + pwFile, coord.ErrCredentials, "no PEM"},
		{"etcd://h:2379/ns?tls=maybe", coord.ErrUnsupportedURL, "tls"},
		{"etcd://h:2379/ns?username=u", coord.ErrUnsupportedURL, "no password"},
		{"etcd://h:2379/ns?password-file=" + pwFile, coord.ErrUnsupportedURL, "without a username"},
		{"etcd://u@h:2379/ns?username=u&password-file=" + pwFile, coord.ErrUnsupportedURL, "both"},
		{"etcd://u:p@h:2379/ns?password-file=" + pwFile, coord.ErrUnsupportedURL, "both"},
		{"etcd://h:2379/ns?username=u&password-file=" + pwFile + "&password-env=HASCHED_TEST_ETCD_PW", coord.ErrCredentials, "name one"},
		{"etcd://h:2379/ns?username=u&password-env=HASCHED_TEST_UNSET_VARIABLE", coord.ErrCredentials, "not set"},
		{"etcd://h:2379/ns?password=p", coord.ErrUnsupportedURL, "password"},
	} {
		_, err := parse(tc.url)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: got error %v, want %v saying %q", tc.url, err, tc.want, tc.says)
		}
	}
}

// refused fails the test unless a Put through cfg is refused.
func refused(t *testing.T, what string, cfg clientv3.Config) {
	t.Helper()
	cfg.DialTimeout = 2 * time.Second
	cfg.Logger = zap.NewNop()
	cli, err := clientv3.New(cfg)
	if err != nil {
		return // refused at once
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/hasched/n/002/config/job/evil", "{}"); err == nil {
		t.Errorf("%s: a Put was accepted", what)
	}
}

// The embedded server of `hasched serve` (issue 9, finding 4): before, any
// local user could put a job's config and delete the election key on
// http://127.0.0.1:2379, and hasched ran the job. Now a client needs the
// certificate hasched made in its data directory, readable by its user
// only; hasched itself works, and a restart on the same directory keeps the
// CA and still ends the earlier run's sessions.
func TestEmbeddedServesOnlyClientsWithItsCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "etcd")
	start := func() *Embedded {
		t.Helper()
		// The defaults, but on free ports.
		e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: dir, ClientURL: "https://127.0.0.1:0", PeerURL: "https://127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e := start()
	defer func() { _ = e.Close() }()
	ep := e.Endpoints()[0]
	if !strings.HasPrefix(ep, "https://") {
		t.Fatalf("endpoint %s is not https", ep)
	}
	host := strings.TrimPrefix(ep, "https://")

	// Everything in the TLS directory is its user's alone.
	tlsDir := filepath.Join(dir, "tls")
	if fi, err := os.Stat(tlsDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("TLS directory: %v, %v; want mode 0700", fi, err)
	}
	entries, err := os.ReadDir(tlsDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 6 {
		t.Errorf("TLS directory holds %d files, want 6 (CA, server and client certificates and keys)", len(entries))
	}
	for _, de := range entries {
		fi, err := de.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", de.Name(), fi.Mode().Perm())
		}
	}

	// Other local users: plain HTTP, TLS without a certificate, a
	// certificate of another CA.
	refused(t, "plain http", clientv3.Config{Endpoints: []string{"http://" + host}})
	refused(t, "TLS without a client certificate", clientv3.Config{Endpoints: []string{ep}, TLS: &tls.Config{RootCAs: e.ClientTLS().RootCAs, MinVersion: tls.VersionTLS12}})
	otherCA, err := pki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := otherCA.Issue("hasched")
	if err != nil {
		t.Fatal(err)
	}
	otherCert, err := tls.X509KeyPair(other.CertPEM, other.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	refused(t, "a certificate of another CA", clientv3.Config{Endpoints: []string{ep},
		TLS: &tls.Config{RootCAs: e.ClientTLS().RootCAs, Certificates: []tls.Certificate{otherCert}, MinVersion: tls.VersionTLS12}})
	// The peer listener asks for the certificate too.
	peer := e.etcd.Config().AdvertisePeerUrls[0]
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.ClientTLS().RootCAs, MinVersion: tls.VersionTLS12}}}
	if resp, err := hc.Get(peer.String() + "/members"); err == nil {
		_ = resp.Body.Close()
		t.Errorf("the peer listener answered a client without a certificate: %s", resp.Status)
	}

	// hasched itself.
	c, err := New(ctx, Config{Endpoints: e.Endpoints(), TLS: e.ClientTLS(), SessionTTL: 5 * time.Second})
	if err != nil {
		t.Fatalf("hasched's own client: %v", err)
	}
	if _, err := c.Create(ctx, "/config/job/ok", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Campaign(ctx, "/ha/election", []byte("first")); err != nil {
		t.Fatal(err)
	}
	// An unclean stop: the session stays on the member.
	caBefore, err := os.ReadFile(filepath.Join(tlsDir, caCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.Close() // its revoke fails: the server is gone

	e = start()
	caAfter, err := os.ReadFile(filepath.Join(tlsDir, caCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(caAfter) != string(caBefore) {
		t.Error("a restart made a new CA: clients given the old one stop working")
	}
	if _, err := e.EndPreviousSessions(ctx); err != nil {
		t.Fatalf("EndPreviousSessions after a restart: %v", err)
	}
	c, err = New(ctx, Config{Endpoints: e.Endpoints(), TLS: e.ClientTLS(), SessionTTL: 5 * time.Second})
	if err != nil {
		t.Fatalf("hasched's own client after a restart: %v", err)
	}
	defer c.Close()
	if _, err := c.Get(ctx, "/config/job/ok"); err != nil {
		t.Fatalf("data after a restart: %v", err)
	}
	if _, err := c.Leader(ctx, "/ha/election"); !errors.Is(err, coord.ErrNoLeader) {
		t.Fatalf("Leader after EndPreviousSessions = %v, want ErrNoLeader", err)
	}
	refused(t, "plain http after a restart", clientv3.Config{Endpoints: []string{"http://" + strings.TrimPrefix(e.Endpoints()[0], "https://")}})
	f := e.ClientTLSFiles()
	for _, p := range []string{f.CA, f.Cert, f.Key} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("ClientTLSFiles: %v", err)
		}
	}
}

// A CA key another user could read may have been copied: the embedded
// server makes a new CA rather than trust it.
func TestEmbeddedRenewsACAKeyOthersCouldRead(t *testing.T) {
	dir := t.TempDir()
	first, err := preparePKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, caKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	second, err := preparePKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, caKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key after: %v, %v", fi, err)
	}
	// The new client certificate does not verify against the old CA.
	leaf, err := x509.ParseCertificate(second.client.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: first.client.RootCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Fatal("the CA was kept although its key was world-readable")
	}
}

// authServer is an embedded server that asks for client certificates and
// has etcd's auth on, with a root user whose password is in a file.
type authServer struct {
	e            *Embedded
	host         string
	passwordFile string
}

const testRootPassword = "r00t-pw"

// authTTL is the session TTL on the auth server: auth checks make every
// request a little slower, and a password session's renewals wait for an
// Authenticate (see authHarness), which on this project's loaded 2-core
// machine took longer than the 1.5s a 2s TTL leaves.
const authTTL = 5 * time.Second

// startAuthServer starts the server; with certUser, the CN of the client
// certificate ("hasched") is a user too, with the root role and no
// password: etcd then takes a client presenting that certificate as that
// user, without a token.
func startAuthServer(t *testing.T, certUser bool) *authServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: filepath.Join(t.TempDir(), "etcd"), ClientURL: "https://127.0.0.1:0", PeerURL: "https://127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), TLS: e.ClientTLS(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.UserAdd(ctx, "root", testRootPassword); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if certUser {
		if _, err := cli.UserAddWithOptions(ctx, "hasched", "", &clientv3.UserAddOptions{NoPassword: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.UserGrantRole(ctx, "hasched", "root"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	return &authServer{
		e:            e,
		host:         strings.TrimPrefix(e.Endpoints()[0], "https://"),
		passwordFile: writeFile(t, t.TempDir(), "root-password", testRootPassword+"\n"),
	}
}

// url is an etcd:// URL for ns with the server's certificates and, with
// password, the root user, the password from a file.
func (s *authServer) url(ns string, password bool) string {
	f := s.e.ClientTLSFiles()
	q := url.Values{"ttl": {authTTL.String()}, "ca-file": {f.CA}, "cert-file": {f.Cert}, "key-file": {f.Key}}
	if password {
		q.Set("username", "root")
		q.Set("password-file", s.passwordFile)
	}
	return "etcd://" + s.host + "/" + ns + "?" + q.Encode()
}

// An etcd with --client-cert-auth and auth enabled (issue 9, finding 7: no
// URL could configure TLS or credentials): the URL's certificates and
// password get hasched in; a client without either is refused.
func TestURLWithTLSAndAuth(t *testing.T) {
	s := startAuthServer(t, false)
	ctx := testContext(t)
	c, err := coord.Open(ctx, s.url(namespace(t), true))
	if err != nil {
		t.Fatalf("coord.Open with TLS and a password: %v", err)
	}
	defer c.Close()
	if _, err := c.Create(ctx, "/config/job/a", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	tlsCfg := s.e.ClientTLS()
	refused(t, "the certificate without a password", clientv3.Config{Endpoints: s.e.Endpoints(), TLS: tlsCfg})
	refused(t, "a wrong password", clientv3.Config{Endpoints: s.e.Endpoints(), TLS: tlsCfg, Username: "root", Password: "guess"})
	refused(t, "the password without a certificate", clientv3.Config{Endpoints: s.e.Endpoints(),
		TLS: &tls.Config{RootCAs: tlsCfg.RootCAs, MinVersion: tls.VersionTLS12}, Username: "root", Password: testRootPassword})
	if _, err := coord.Open(ctx, "etcd://"+s.host+"/"+namespace(t)+"?dial-timeout=2s"); err == nil {
		t.Fatal("coord.Open without TLS or credentials succeeded")
	}
}

// authHarness runs the conformance suite on the TLS and auth server,
// opening every session by URL: as the certificate's user, the way to run
// hasched on an etcd with auth. With a password instead, clientv3
// authenticates again before every stream it opens (etcd #11954), so every
// renewal waits for a raft write and a bcrypt comparison; on this project's
// loaded 2-core machine, five sessions doing that at once missed their
// renewal windows.
type authHarness struct {
	s   *authServer
	raw *clientv3.Client
}

func (h *authHarness) Open(ctx context.Context, ns string) (coord.Coordinator, error) {
	return coord.Open(ctx, h.s.url(ns, false))
}

func (h *authHarness) ExpireSession(ctx context.Context, c coord.Coordinator) error {
	ec, ok := c.(*Coordinator)
	if !ok {
		return errors.New("ExpireSession: not an etcd Coordinator")
	}
	_, err := h.raw.Revoke(ctx, ec.Lease())
	return err
}

func (h *authHarness) SessionTimeout() time.Duration { return authTTL }

func TestConformanceTLSAndAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the whole suite once more")
	}
	s := startAuthServer(t, true)
	raw, err := clientv3.New(clientv3.Config{Endpoints: s.e.Endpoints(), TLS: s.e.ClientTLS(), Username: "root", Password: testRootPassword,
		DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	// The certificate is the identity: without it, nothing.
	refused(t, "no certificate", clientv3.Config{Endpoints: s.e.Endpoints(), TLS: &tls.Config{RootCAs: s.e.ClientTLS().RootCAs, MinVersion: tls.VersionTLS12}})
	coordtest.Run(t, &authHarness{s: s, raw: raw})
}

// A ./data made by a hasched before TLS (plain http:// client and peer
// URLs) starts with TLS on the next run and keeps its data.
func TestEmbeddedUpgradesAPlainDataDirToTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "etcd")
	e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: dir, ClientURL: "http://127.0.0.1:0", PeerURL: "http://127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(ctx, Config{Endpoints: e.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, "/config/job/old", []byte("1")); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	_ = e.Close()

	e, err = StartEmbedded(ctx, EmbeddedConfig{Dir: dir, ClientURL: "https://127.0.0.1:0", PeerURL: "https://127.0.0.1:0"})
	if err != nil {
		t.Fatalf("restart with TLS on a plain data dir: %v", err)
	}
	defer e.Close()
	if _, err := e.EndPreviousSessions(ctx); err != nil {
		t.Fatal(err)
	}
	c, err = New(ctx, Config{Endpoints: e.Endpoints(), TLS: e.ClientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n, err := c.Get(ctx, "/config/job/old"); err != nil || string(n.Value) != "1" {
		t.Fatalf("the old data: %q, %v", n.Value, err)
	}
	refused(t, "plain http after the upgrade", clientv3.Config{Endpoints: []string{"http://" + strings.TrimPrefix(e.Endpoints()[0], "https://")}})
}
