package worker_test

import (
	"context"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hasched/hasched/coord/etcd"
	"github.com/hasched/hasched/internal/etcdtest"
	"github.com/hasched/hasched/internal/netproxy"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/store"
	"github.com/hasched/hasched/scheduler/worker"
)

// etcdServer serves the package's etcd tests.
var etcdServer etcdtest.Shared

// etcdConfig is a session config for a namespace of the test's own on the
// shared embedded server.
func etcdConfig(t *testing.T) etcd.Config {
	t.Helper()
	return etcdServer.Config(t, "worker", 3*time.Second)
}

// A worker cut off from etcd kills its tasks before the cluster can expire
// its lease (and so before the leader could run them elsewhere).
func TestCutOffWorkerKillsItsTasksBeforeItsLeaseExpires(t *testing.T) {
	cfg := etcdConfig(t)
	u, err := url.Parse(cfg.Endpoints[0])
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := netproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	viaProxy := cfg
	viaProxy.Endpoints = []string{proxy.Addr()}

	r := newRigOn(t, etcdtest.Opener(cfg), nil)
	r.open = etcdtest.Opener(viaProxy)
	dir := t.TempDir()
	// No watchdog: this is the worker's own safety clock at work.
	rn := r.start("w1", dir, func(c *worker.Config) { c.WatchdogCommand = []string{"/bin/true"} })
	t.Cleanup(proxy.Heal) // so that the sessions close promptly
	info := rn.w.Info()
	led := ledger(t, dir, "t1")
	r.place("w1", info.Incarnation, task("t1", longTask(led, filepath.Join(dir, "never"))))
	pid := ledgerPid(t, led)
	r.waitState(info.ID(), "t1", executor.StateRunning)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := r.leader.Watch(ctx, store.WorkerPath(info.ID()))
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-events; !ev.Exists {
		t.Fatal("the registration is missing before the cut")
	}
	var died atomic.Int64
	go func() {
		for pidAlive(pid) && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		died.Store(time.Now().UnixNano())
	}()
	proxy.Blackhole()
	cut := time.Now()
	var gone time.Time
	for ev := range events {
		if !ev.Exists {
			gone = time.Now()
			break
		}
	}
	if gone.IsZero() {
		t.Fatal("the watch ended before the registration went")
	}
	d := died.Load()
	if d == 0 {
		t.Fatalf("the task still ran when the cluster expired the worker's lease, %v after the cut", gone.Sub(cut))
	}
	if diedAt := time.Unix(0, d); !diedAt.Before(gone) {
		t.Fatalf("the task died at %v, after its registration went at %v", diedAt, gone)
	} else {
		t.Logf("cut at 0, task dead at %v, registration gone at %v", diedAt.Sub(cut), gone.Sub(cut))
	}
}
