package etcd

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/hasched/hasched/coord"
)

// testTTL is the shortest session TTL embedded etcd grants with its default
// heartbeat (100ms) and election timeout (1s): 1.5 × the election timeout,
// rounded up to whole seconds.
const testTTL = 2 * time.Second

// One embedded server serves every test of the package, started on first
// use; tests keep apart by namespace.
var (
	serverOnce sync.Once
	server     *Embedded
	serverDir  string
	serverErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if server != nil {
		_ = server.Close()
	}
	if serverDir != "" {
		_ = os.RemoveAll(serverDir)
	}
	if code == 0 {
		// Close waits for every goroutine a Coordinator starts, and the
		// clients and the server are closed by now: nothing may remain.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// endpoints starts the shared embedded server if needed.
func endpoints(t testing.TB) []string {
	t.Helper()
	serverOnce.Do(func() {
		serverDir, serverErr = os.MkdirTemp("", "hasched-etcd-test-")
		if serverErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		server, serverErr = StartEmbedded(ctx, EmbeddedConfig{
			Dir:       serverDir,
			ClientURL: "https://127.0.0.1:0",
			PeerURL:   "https://127.0.0.1:0",
		})
	})
	if serverErr != nil {
		t.Fatalf("start the embedded etcd server: %v", serverErr)
	}
	return server.Endpoints()
}

// clientTLS is the shared server's client TLS configuration: every test
// talks to it as hasched does to its embedded etcd.
func clientTLS(t testing.TB) *tls.Config {
	t.Helper()
	endpoints(t)
	return server.ClientTLS()
}

// rawClient is a plain client on the shared server, for looking behind the
// Coordinator's back.
func rawClient(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints(t), TLS: clientTLS(t), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("raw client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

var nsCounter atomic.Int64

// namespace is a namespace of the test's own.
func namespace(t testing.TB) string {
	name := regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-")
	return fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.Trim(name, "-"))
}

// open opens a session in ns, closed when the test ends.
func open(t testing.TB, ns string) *Coordinator {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, Config{Endpoints: endpoints(t), TLS: clientTLS(t), Namespace: ns, SessionTTL: testTTL})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// harness runs the conformance suite on the shared embedded server.
type harness struct {
	endpoints []string
	tls       *tls.Config
	raw       *clientv3.Client
}

func (h *harness) Open(ctx context.Context, ns string) (coord.Coordinator, error) {
	return New(ctx, Config{Endpoints: h.endpoints, TLS: h.tls, Namespace: ns, SessionTTL: testTTL})
}

// ExpireSession revokes the session's lease, which the cluster does itself
// when a lease's TTL runs out without a keep-alive.
func (h *harness) ExpireSession(ctx context.Context, c coord.Coordinator) error {
	ec, ok := c.(*Coordinator)
	if !ok {
		return fmt.Errorf("ExpireSession: %T is not an etcd Coordinator", c)
	}
	_, err := h.raw.Revoke(ctx, ec.Lease())
	return err
}

func (h *harness) SessionTimeout() time.Duration { return testTTL }
