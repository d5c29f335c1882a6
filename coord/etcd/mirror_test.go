package etcd

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/coordtest"
)

func TestMirrorConformance(t *testing.T) {
	coordtest.RunMirror(t, &harness{endpoints: endpoints(t), tls: clientTLS(t), raw: rawClient(t)})
}

// brokenMirror opens a Mirror of /t through c, syncs it, then breaks its
// watch and holds it before it watches again, until release is closed. The
// Mirror is closed when the test ends.
func brokenMirror(t *testing.T, ctx context.Context, c *Coordinator) (m *mirror, release chan struct{}) {
	t.Helper()
	held, release := make(chan struct{}), make(chan struct{})
	m, err := c.mirror(ctx, "/t", mirrorHooks{beforeResume: func() {
		select {
		case held <- struct{}{}:
			<-release
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	stop := m.stop
	m.mu.Unlock()
	go stop()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the mirror did not notice its watch broke")
	}
	return m, release
}

// TestMirrorReadsAgainAfterCompaction breaks the mirror's watch, changes the
// subtree and compacts the store's history past the mirror's revision
// before the mirror watches again: it cannot resume, so it must read the
// subtree again, and then answer as the Coordinator does.
func TestMirrorReadsAgainAfterCompaction(t *testing.T) {
	ns := namespace(t)
	c, w, raw, ctx := open(t, ns), open(t, ns), rawClient(t), testContext(t)
	for i := range 5 {
		if _, err := w.Create(ctx, fmt.Sprintf("/t/keep/%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Create(ctx, fmt.Sprintf("/t/gone/%d/deep", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	m, release := brokenMirror(t, ctx, c)
	if _, err := w.Set(ctx, "/t/keep/0", []byte("changed"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if err := w.DeleteTree(ctx, "/t/gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Create(ctx, "/t/new/x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	now, err := raw.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Compact(ctx, now.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	close(release)

	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	m.mu.RLock()
	loads := m.loads
	m.mu.RUnlock()
	if loads != 2 {
		t.Fatalf("the mirror read the subtree %d times, want 2 (the first read and one after the compaction)", loads)
	}
	for _, p := range []string{"/t", "/t/keep", "/t/keep/0", "/t/gone", "/t/gone/0", "/t/new", "/t/new/x"} {
		want, werr := c.Get(ctx, p)
		got, gerr := m.Get(ctx, p)
		if (werr == nil) != (gerr == nil) || werr == nil && (string(got.Value) != string(want.Value) || got.Version != want.Version) {
			t.Fatalf("Get(%s): mirror (%+v, %v), Coordinator (%+v, %v)", p, got, gerr, want, werr)
		}
		wantKids, werr := c.Children(ctx, p)
		gotKids, gerr := m.Children(ctx, p)
		if (werr == nil) != (gerr == nil) || fmt.Sprint(wantKids) != fmt.Sprint(gotKids) {
			t.Fatalf("Children(%s): mirror (%v, %v), Coordinator (%v, %v)", p, gotKids, gerr, wantKids, werr)
		}
	}
	// It follows the store again.
	if _, err := w.Set(ctx, "/t/keep/1", []byte("later"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := m.Get(ctx, "/t/keep/1"); err != nil || string(n.Value) != "later" {
		t.Fatalf("after the re-read the mirror reads (%+v, %v), want later", n, err)
	}
}

// TestMirrorResumesWithoutReadingAgain breaks the watch while the store
// changes, without compaction: the mirror resumes at its revision and
// misses nothing, without a second full read.
func TestMirrorResumesWithoutReadingAgain(t *testing.T) {
	ns := namespace(t)
	c, w, ctx := open(t, ns), open(t, ns), testContext(t)
	if _, err := w.Create(ctx, "/t/a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	m, release := brokenMirror(t, ctx, c)
	var err error
	var last coord.Version
	for i := range 10 {
		if last, err = w.Set(ctx, "/t/a", []byte(fmt.Sprint(i)), coord.AnyVersion); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := m.Get(ctx, "/t/a"); err != nil || string(n.Value) != "9" || n.Version != last {
		t.Fatalf("after the resume the mirror reads (%+v, %v), want 9 at %d", n, err, last)
	}
	m.mu.RLock()
	loads := m.loads
	m.mu.RUnlock()
	if loads != 1 {
		t.Fatalf("the mirror read the subtree %d times, want once", loads)
	}
}

// BenchmarkMirrorSyncList times what a new term does to read 100,000
// children: Sync then List from a mirror, beside List from the servers.
func BenchmarkMirrorSyncList(b *testing.B) {
	const n, batch = 100_000, 100
	ns := namespace(b)
	c, ctx := open(b, ns), context.Background()
	value := make([]byte, 600)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	if _, err := c.Create(ctx, "/jobs", nil); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += batch {
		ops := make([]coord.Op, 0, batch)
		for j := i; j < i+batch; j++ {
			ops = append(ops, coord.CreateOp(fmt.Sprintf("/jobs/job-%06d", j), value))
		}
		if _, err := c.Apply(ctx, ops...); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	m, err := c.Mirror(ctx, "/")
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	if err := m.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	firstSync := time.Since(start)
	b.Run("mirror", func(b *testing.B) {
		var syncTime, listTime time.Duration
		for range b.N {
			start := time.Now()
			if err := m.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			mid := time.Now()
			nodes, err := m.List(ctx, "/jobs")
			if err != nil || len(nodes) != n {
				b.Fatalf("List: %d nodes, %v", len(nodes), err)
			}
			syncTime += mid.Sub(start)
			listTime += time.Since(mid)
		}
		b.ReportMetric(float64(firstSync.Milliseconds()), "first-sync-ms")
		b.ReportMetric(float64(syncTime.Microseconds())/float64(b.N), "sync-µs/op")
		b.ReportMetric(float64(listTime.Microseconds())/float64(b.N), "list-µs/op")
	})
	b.Run("raw", func(b *testing.B) {
		for range b.N {
			nodes, err := c.List(ctx, "/jobs")
			if err != nil || len(nodes) != n {
				b.Fatalf("List: %d nodes, %v", len(nodes), err)
			}
		}
	})
}
