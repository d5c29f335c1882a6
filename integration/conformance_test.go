package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/coordtest"
	"github.com/hasched/hasched/coord/etcd"
	"github.com/hasched/hasched/coord/zk"
	"github.com/hasched/hasched/internal/netproxy"
)

// The conformance suite, once per backend, each against a real server in a
// container. Scenario names are the same under both tests.

func TestConformanceEtcd(t *testing.T) {
	coordtest.Run(t, newEtcdHarness(t, startEtcd(t)))
}

func TestConformanceZooKeeper(t *testing.T) {
	coordtest.Run(t, newZKHarness(t, startZooKeeper(t)))
}

const (
	etcdSessionTTL   = 3 * time.Second
	zkSessionTimeout = 4 * time.Second
)

// etcdHarness opens sessions on one etcd server and expires them by revoking
// their lease through a client of its own.
type etcdHarness struct {
	endpoint string
	admin    *clientv3.Client
}

func newEtcdHarness(t testing.TB, endpoint string) *etcdHarness {
	t.Helper()
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	return &etcdHarness{endpoint: endpoint, admin: admin}
}

func (h *etcdHarness) Open(ctx context.Context, ns string) (coord.Coordinator, error) {
	return etcd.New(ctx, etcd.Config{Endpoints: []string{h.endpoint}, Namespace: ns, SessionTTL: etcdSessionTTL})
}

func (h *etcdHarness) ExpireSession(ctx context.Context, c coord.Coordinator) error {
	ec, ok := c.(*etcd.Coordinator)
	if !ok {
		return fmt.Errorf("not an etcd coordinator: %T", c)
	}
	_, err := h.admin.Revoke(ctx, ec.Lease())
	return err
}

func (h *etcdHarness) SessionTimeout() time.Duration { return etcdSessionTTL }

// zkHarness opens every session through a proxy of its own, so that one
// client can be cut off from ZooKeeper for longer than its session timeout:
// the server then expires the session, as it does for a partitioned client.
type zkHarness struct {
	server string
	// digest, if set, is every session's zk.Config.Digest.
	digest string

	mu      sync.Mutex
	proxies map[coord.Coordinator]*netproxy.Proxy
}

func newZKHarness(t testing.TB, server string) *zkHarness {
	h := &zkHarness{server: server, proxies: map[coord.Coordinator]*netproxy.Proxy{}}
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, p := range h.proxies {
			_ = p.Close()
		}
	})
	return h
}

func (h *zkHarness) Open(ctx context.Context, ns string) (coord.Coordinator, error) {
	p, err := netproxy.New(h.server)
	if err != nil {
		return nil, err
	}
	c, err := zk.New(ctx, zk.Config{Servers: []string{p.Addr()}, Namespace: ns, SessionTimeout: zkSessionTimeout, Digest: h.digest})
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	h.mu.Lock()
	h.proxies[c] = p
	h.mu.Unlock()
	return c, nil
}

func (h *zkHarness) ExpireSession(ctx context.Context, c coord.Coordinator) error {
	h.mu.Lock()
	p, ok := h.proxies[c]
	h.mu.Unlock()
	if !ok {
		return fmt.Errorf("coordinator %p was not opened by this harness", c)
	}
	p.Blackhole()
	defer p.Heal()
	// The server expires a silent session within its timeout plus a tick.
	t := time.NewTimer(zkSessionTimeout + 2*zkTickTime + 500*time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (h *zkHarness) SessionTimeout() time.Duration { return zkSessionTimeout }
