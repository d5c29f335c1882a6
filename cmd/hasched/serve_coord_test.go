package main

import (
	"context"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hasched/hasched/coord"
)

// freePort is a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// The embedded etcd of `make run` (issue 9, finding 4): before, every local
// user could write hasched's jobs on http://127.0.0.1:2379. Now a plain
// client is refused, hasched leads, a client with the certificates in
// <data-dir>/etcd/tls gets in, and a restart on the same data directory
// leads again.
func TestServeEmbeddedEtcdRefusesOtherLocalClients(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an embedded etcd (make test runs it)")
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	cport, pport := freePort(t), freePort(t)
	flags := serveFlags{
		coord: coordEmbedded, dataDir: dataDir,
		// http:// as command lines before this change wrote it: served as https://.
		embeddedClientURL: "http://127.0.0.1:" + strconv.Itoa(cport),
		embeddedPeerURL:   "https://127.0.0.1:" + strconv.Itoa(pport),
	}
	hostPort := "127.0.0.1:" + strconv.Itoa(cport)
	for run := 1; run <= 2; run++ {
		p := startProcess(t, "run"+strconv.Itoa(run), flags)
		eventually(t, "the process leads", 30*time.Second, func() error {
			_, _, err := leaderOf(t, p)
			return err
		})
		if st, err := p.client.Status(ctxT(t)); err != nil || !strings.HasPrefix(st.Coordinator, "embedded etcd at https://") {
			t.Fatalf("status: %+v, %v", st, err)
		}

		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + hostPort}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err = cli.Put(ctx, "/hasched/n/003/config/job/evil", `{"jobName":"evil"}`)
		cancel()
		_ = cli.Close()
		if err == nil {
			t.Fatal("a plain client wrote to the embedded etcd")
		}

		tlsDir := filepath.Join(dataDir, "etcd", "tls")
		q := url.Values{"ca-file": {filepath.Join(tlsDir, "ca.crt")}, "cert-file": {filepath.Join(tlsDir, "client.crt")}, "key-file": {filepath.Join(tlsDir, "client.key")}}
		c, err := coord.Open(ctxT(t), "etcd://"+hostPort+"/hasched?"+q.Encode())
		if err != nil {
			t.Fatalf("a client with the data directory's certificates: %v", err)
		}
		if _, err := c.Leader(ctxT(t), "/ha/election"); err != nil {
			t.Fatalf("Leader through the certificates: %v", err)
		}
		_ = c.Close()
		p.stop(t)
	}
}

func TestServeEmbeddedEtcdDefaultsToTLS(t *testing.T) {
	fs := newServeCmd().Flags()
	for _, name := range []string{"embedded-client-url", "embedded-peer-url"} {
		if v := fs.Lookup(name).DefValue; !strings.HasPrefix(v, "https://127.0.0.1:") {
			t.Errorf("--%s defaults to %s, want https on 127.0.0.1", name, v)
		}
	}
	cfg, err := serveFlags{coord: "embedded", dataDir: "d", listen: "127.0.0.1:8899", executor: "local", logLevel: "info",
		embeddedClientURL: "http://127.0.0.1:2379", embeddedPeerURL: "http://127.0.0.1:2380"}.validate()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.embeddedClientURL != "https://127.0.0.1:2379" || cfg.embeddedPeerURL != "https://127.0.0.1:2380" {
		t.Fatalf("embedded URLs %s, %s: want them served as https://", cfg.embeddedClientURL, cfg.embeddedPeerURL)
	}
}

// Credentials never reach the status or the log through --coord.
func TestServeRedactsCoordCredentials(t *testing.T) {
	for _, raw := range []string{
		"etcd://u:secret@h1:2379/ns?username=u",
		"etcd://h1:2379/ns?password=secret",
		"zk://h1:2181/ns?digest=hasched:secret",
		"zk://h1:2181/ns?auth=digest:hasched:secret",
	} {
		cfg, err := serveFlags{coord: raw, dataDir: "d", listen: "127.0.0.1:8899", executor: "local", logLevel: "info"}.validate()
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if strings.Contains(cfg.coordDisplay, "secret") {
			t.Errorf("coordDisplay %q shows the secret", cfg.coordDisplay)
		}
	}
	_, err := serveFlags{coord: "etcd://u:secret@h1:2379/%zz", dataDir: "d", listen: "127.0.0.1:8899", executor: "local", logLevel: "info"}.validate()
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("a --coord that does not parse: %v", err)
	}
}
