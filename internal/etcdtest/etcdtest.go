// Package etcdtest gives a package's tests one embedded etcd server,
// started on first use and shared, each test in a namespace of its own.
//
//	var etcdServer etcdtest.Shared
//
//	func TestMain(m *testing.M) { os.Exit(etcdServer.Main(m)) }
//
//	cfg := etcdServer.Config(t, "sched", 2*time.Second)
package etcdtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/etcd"
)

// Shared is a lazily started embedded etcd server. The zero value is ready
// to use; Stop it in TestMain once the tests have run.
type Shared struct {
	once   sync.Once
	server *etcd.Embedded
	dir    string
	err    error
	ns     atomic.Int64
}

// Config is a session config for a fresh namespace (prefix-N) on the
// server, with the given lease TTL. Under -short the test is skipped: the
// server takes seconds to start, so make test runs it.
func (s *Shared) Config(t testing.TB, prefix string, ttl time.Duration) etcd.Config {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: starts an embedded etcd server (make test runs it)")
	}
	s.once.Do(func() {
		s.dir, s.err = os.MkdirTemp("", "hasched-etcdtest-")
		if s.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.server, s.err = etcd.StartEmbedded(ctx, etcd.EmbeddedConfig{
			Dir: s.dir, ClientURL: "http://127.0.0.1:0", PeerURL: "http://127.0.0.1:0",
		})
	})
	if s.err != nil {
		t.Fatalf("start the embedded etcd server: %v", s.err)
	}
	return etcd.Config{
		Endpoints:  s.server.Endpoints(),
		Namespace:  fmt.Sprintf("%s-%d", prefix, s.ns.Add(1)),
		SessionTTL: ttl,
	}
}

// Opener opens sessions with cfg.
func Opener(cfg etcd.Config) func(context.Context) (coord.Coordinator, error) {
	return func(ctx context.Context) (coord.Coordinator, error) {
		c, err := etcd.New(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}

// Main runs a package's tests, stops the server and, if they passed, fails
// the run on goroutines they leaked (the server's own are gone by then);
// TestMain exits with what it returns.
func (s *Shared) Main(m *testing.M) int {
	code := m.Run()
	s.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	return code
}

// Stop stops the server, if it was started, and removes its data.
func (s *Shared) Stop() {
	if s.server != nil {
		_ = s.server.Close()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
