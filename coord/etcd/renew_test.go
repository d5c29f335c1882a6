package etcd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/netproxy"
	"github.com/hasched/hasched/internal/wait"
)

// proxyToServer is a proxy to the test server, closed when the test ends,
// for a test to cut its clients off with.
func proxyToServer(t *testing.T) *netproxy.Proxy {
	t.Helper()
	u, err := url.Parse(endpoints(t)[0])
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := netproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	return proxy
}

// A session cut off from the cluster counts itself lost (Done and Lost
// close, calls fail with ErrSessionLost) before the cluster expires its
// lease, so before another candidate can win: here the other candidate's
// view of when the cut-off leader's key vanished.
func TestCutOffSessionEndsBeforeTheClusterExpiresItsLease(t *testing.T) {
	ns := namespace(t)
	ctx := testContext(t)
	proxy := proxyToServer(t)

	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := New(cctx, Config{Endpoints: []string{proxy.Addr()}, TLS: clientTLS(t), Namespace: ns, SessionTTL: testTTL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	l, err := c.Campaign(ctx, "/e", []byte("cut"))
	if err != nil {
		t.Fatal(err)
	}
	raw := rawClient(t)
	key := l.(*Leadership).Key()
	// Watch the leader's key from the other side, from a revision at which
	// it exists.
	resp, err := raw.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the leader key: %v, %v", resp, err)
	}
	wch := raw.Watch(ctx, key, clientv3.WithRev(resp.Header.Revision+1))

	proxy.Blackhole()
	cut := time.Now()
	var lost, done time.Time
	lostCh, doneCh := l.Lost(), c.Done()
	for lostCh != nil || doneCh != nil {
		select {
		case <-lostCh:
			lost, lostCh = time.Now(), nil
		case <-doneCh:
			done, doneCh = time.Now(), nil
		case <-time.After(3 * testTTL):
			t.Fatal("the cut-off session did not end")
		}
	}
	var vanished time.Time
	for vanished.IsZero() {
		select {
		case wr := <-wch:
			if err := wr.Err(); err != nil {
				t.Fatal(err)
			}
			if deleted(wr) {
				vanished = time.Now()
			}
		case <-time.After(3 * testTTL):
			t.Fatal("the cluster did not expire the cut-off session's lease")
		}
	}
	t.Logf("after the cut: Done %v, Lost %v, the key vanished on the cluster %v",
		done.Sub(cut).Round(time.Millisecond), lost.Sub(cut).Round(time.Millisecond), vanished.Sub(cut).Round(time.Millisecond))
	if !lost.Before(vanished) || !done.Before(vanished) {
		t.Fatalf("the session ended after the cluster expired its lease: Done %v, Lost %v, key gone %v after the cut",
			done.Sub(cut), lost.Sub(cut), vanished.Sub(cut))
	}
	if !errors.Is(context.Cause(c.ctx), errRenewalOverdue) {
		t.Fatalf("the session ended because of %v, want errRenewalOverdue", context.Cause(c.ctx))
	}
	if _, err := c.Get(ctx, "/x"); !errors.Is(err, coord.ErrSessionLost) {
		t.Fatalf("Get after the session ended: %v", err)
	}
	if err := l.Writer().DeleteTree(ctx, "/x"); !errors.Is(err, coord.ErrNotLeader) && !errors.Is(err, coord.ErrSessionLost) {
		t.Fatalf("a fenced write after the session ended: %v", err)
	}
	// Close neither hangs on the blackholed connection nor leaks.
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	if d := time.Since(start); d > 2*testTTL+time.Second {
		t.Fatalf("Close took %v", d)
	}
}

// A waiting candidate cut off until its lease expires gets ErrSessionLost
// from Campaign once its session ends, without waiting for the connection
// to come back.
func TestCutOffWaitingCandidateGetsSessionLost(t *testing.T) {
	ns := namespace(t)
	ctx := testContext(t)
	proxy := proxyToServer(t)
	a := open(t, ns)
	la, err := a.Campaign(ctx, "/e", []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer la.Resign(ctx)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := New(cctx, Config{Endpoints: []string{proxy.Addr()}, TLS: clientTLS(t), Namespace: ns, SessionTTL: testTTL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	result := campaignOnce(ctx, b, "/e", []byte("b"))
	// Wait until b is a candidate, then cut it off, for good.
	wait.Poll{Timeout: 5 * time.Second, Interval: 20 * time.Millisecond}.NoError(t, "b becomes a candidate", func() error {
		names, err := a.Children(ctx, "/e")
		if err != nil {
			return wait.Stop(err)
		}
		if len(names) != 2 {
			return fmt.Errorf("candidates %q", names)
		}
		return nil
	})
	proxy.Blackhole()
	select {
	case <-b.Done():
	case <-time.After(3 * testTTL):
		t.Fatal("the cut-off candidate's session did not end")
	}
	select {
	case err := <-result:
		if !errors.Is(err, coord.ErrSessionLost) {
			t.Fatalf("Campaign of a cut-off candidate: %v, want ErrSessionLost", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Campaign did not return after the session ended")
	}
	start := time.Now()
	_ = b.Close()
	if d := time.Since(start); d > 2*testTTL+time.Second {
		t.Fatalf("Close took %v", d)
	}
}
