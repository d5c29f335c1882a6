package zk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/zktest"
)

// mirrorOf opens a Mirror of path on c, closed when the test ends.
func mirrorOf(t testing.TB, ctx context.Context, c *Coordinator, path string) coord.Mirror {
	t.Helper()
	m, err := c.Mirror(ctx, path)
	if err != nil {
		t.Fatalf("Mirror(%s): %v", path, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func mirrorSync(t *testing.T, ctx context.Context, m coord.Mirror) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := m.Sync(sctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// sameErr tells whether two errors are the same coord sentinel (or both
// nil).
func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	for _, s := range []error{coord.ErrNotFound, coord.ErrInvalidPath, coord.ErrSessionLost, coord.ErrClosed} {
		if errors.Is(a, s) {
			return errors.Is(b, s)
		}
	}
	return false
}

// sameAsCoordinator walks the subtree at root through the Coordinator and
// checks that the Mirror answers every Get, Children and List alike, and
// returns how many nodes it compared.
func sameAsCoordinator(t *testing.T, ctx context.Context, c *Coordinator, m coord.Mirror, root string) int {
	t.Helper()
	count := 0
	var walk func(p string)
	walk = func(p string) {
		if p != "/" {
			want, werr := c.Get(ctx, p)
			got, gerr := m.Get(ctx, p)
			if !sameErr(werr, gerr) || !reflect.DeepEqual(want, got) {
				t.Fatalf("Get(%s): mirror %+v, %v; coordinator %+v, %v", p, got, gerr, want, werr)
			}
			if werr != nil {
				return
			}
			count++
		}
		wantC, werr := c.Children(ctx, p)
		gotC, gerr := m.Children(ctx, p)
		if !sameErr(werr, gerr) || !reflect.DeepEqual(wantC, gotC) {
			t.Fatalf("Children(%s): mirror %q, %v; coordinator %q, %v", p, gotC, gerr, wantC, werr)
		}
		wantL, werr := c.List(ctx, p)
		gotL, gerr := m.List(ctx, p)
		if !sameErr(werr, gerr) || !reflect.DeepEqual(wantL, gotL) {
			for i := range min(len(gotL), len(wantL)) {
				if !reflect.DeepEqual(gotL[i], wantL[i]) {
					t.Errorf("List(%s)[%d]: mirror %s %q v%d, coordinator %s %q v%d", p, i, gotL[i].Path, gotL[i].Value, gotL[i].Version, wantL[i].Path, wantL[i].Value, wantL[i].Version)
				}
			}
			t.Fatalf("List(%s): mirror %d nodes, %v; coordinator %d nodes, %v", p, len(gotL), gerr, len(wantL), werr)
		}
		for _, n := range wantL {
			walk(n.Path)
		}
	}
	walk(root)
	return count
}

func mustCreate(t *testing.T, ctx context.Context, c coord.Coordinator, path string, value []byte, opts ...coord.CreateOption) coord.Node {
	t.Helper()
	n, err := c.Create(ctx, path, value, opts...)
	if err != nil {
		t.Fatalf("Create(%s): %v", path, err)
	}
	return n
}

// binary is a value with every byte value in it.
func binary(seed int) []byte {
	b := make([]byte, 300)
	for i := range b {
		b[i] = byte(i + seed)
	}
	return b
}

func TestMirrorAnswersAsTheCoordinator(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, _ := h.openTest(t, ctx, ns)
	other, _ := h.openTest(t, ctx, ns)

	// Made before the Mirror opens.
	mustCreate(t, ctx, c, "/m/a", []byte("a"))
	mustCreate(t, ctx, c, "/m/a/b/c", binary(1))
	mustCreate(t, ctx, c, "/m/empty", nil)
	mustCreate(t, ctx, c, "/outside", []byte("x"))
	m := mirrorOf(t, ctx, c, "/m")
	mirrorSync(t, ctx, m)
	if n := sameAsCoordinator(t, ctx, c, m, "/m"); n != 5 {
		t.Fatalf("compared %d nodes, want 5", n)
	}

	// Made after, by this session and another.
	mustCreate(t, ctx, other, "/m/a/b/d", binary(2))
	mustCreate(t, ctx, c, "/m/eph", []byte("e"), coord.Ephemeral())
	mustCreate(t, ctx, other, "/m/eph-other", []byte("e2"), coord.Ephemeral())
	seq := mustCreate(t, ctx, other, "/m/seq/job-", []byte("s"), coord.Sequential())
	mustCreate(t, ctx, c, "/m/seq/job-", nil, coord.Sequential())
	if _, err := other.Set(ctx, "/m/a", binary(3), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if err := other.Delete(ctx, "/m/empty", coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	mirrorSync(t, ctx, m)
	sameAsCoordinator(t, ctx, c, m, "/m")
	if got, err := m.Get(ctx, seq.Path); err != nil || got.Version != seq.Version {
		t.Fatalf("Get(%s) = %+v, %v; Create said version %d", seq.Path, got, err, seq.Version)
	}

	// A subtree deleted and made again, with other values.
	if err := other.DeleteTree(ctx, "/m/a"); err != nil {
		t.Fatal(err)
	}
	mirrorSync(t, ctx, m)
	if _, err := m.Get(ctx, "/m/a/b/c"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("Get of a deleted node: %v", err)
	}
	sameAsCoordinator(t, ctx, c, m, "/m")
	mustCreate(t, ctx, other, "/m/a/b/c", []byte("again"))
	mirrorSync(t, ctx, m)
	sameAsCoordinator(t, ctx, c, m, "/m")

	// The other session's ephemeral nodes go with it.
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	mirrorSync(t, ctx, m)
	if _, err := m.Get(ctx, "/m/eph-other"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("Get of a closed session's ephemeral node: %v", err)
	}
	sameAsCoordinator(t, ctx, c, m, "/m")

	for _, tc := range []struct {
		path string
		want error
	}{
		{"/outside", coord.ErrNotMirrored},
		{"/", coord.ErrInvalidPath}, // Get of the root
		{"/mm", coord.ErrNotMirrored},
		{"m", coord.ErrInvalidPath},
		{"/m/", coord.ErrInvalidPath},
		{"/m/missing", coord.ErrNotFound},
	} {
		if _, err := m.Get(ctx, tc.path); !errors.Is(err, tc.want) {
			t.Errorf("Get(%q): %v, want %v", tc.path, err, tc.want)
		}
	}
	if _, err := m.Children(ctx, "/"); !errors.Is(err, coord.ErrNotMirrored) {
		t.Errorf("Children(/): %v, want ErrNotMirrored", err)
	}
	if _, err := m.List(ctx, "/m/missing"); !errors.Is(err, coord.ErrNotFound) {
		t.Errorf("List of a missing node: %v", err)
	}
	// Values are shared with the mirror (coord.Mirror): an update replaces
	// the node's value, it never writes into the one handed out.
	got, _ := m.Get(ctx, "/m/a/b/c")
	if _, err := c.Set(ctx, "/m/a/b/c", []byte("later"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	mirrorSync(t, ctx, m)
	if again, _ := m.Get(ctx, "/m/a/b/c"); !bytes.Equal(got.Value, []byte("again")) || !bytes.Equal(again.Value, []byte("later")) {
		t.Fatalf("a value handed out became %q after an update to %q", got.Value, again.Value)
	}
}

func TestMirrorOfTheNamespaceRoot(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, _ := h.openTest(t, ctx, ns)
	mustCreate(t, ctx, c, "/a/b", []byte("b"))
	m := mirrorOf(t, ctx, c, "/")
	mustCreate(t, ctx, c, "/c", []byte("c"))
	mirrorSync(t, ctx, m)
	if n := sameAsCoordinator(t, ctx, c, m, "/"); n != 3 {
		t.Fatalf("compared %d nodes, want 3", n)
	}
}

// Each write by another session, acknowledged before Sync is called, is
// seen after Sync: without the barrier the watch event or the read it
// prompts would often still be on its way.
func TestMirrorSyncSeesAnotherSessionsLatestWrite(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, _ := h.openTest(t, ctx, ns)
	other, _ := h.openTest(t, ctx, ns)
	mustCreate(t, ctx, other, "/m/k", []byte("0"))
	m := mirrorOf(t, ctx, c, "/m")
	mirrorSync(t, ctx, m)
	for i := 1; i <= 50; i++ {
		v := []byte(fmt.Sprint(i))
		ver, err := other.Set(ctx, "/m/k", v, coord.AnyVersion)
		if err != nil {
			t.Fatal(err)
		}
		child := mustCreate(t, ctx, other, fmt.Sprintf("/m/dir/c%03d/leaf", i), v)
		mirrorSync(t, ctx, m)
		got, err := m.Get(ctx, "/m/k")
		if err != nil || !bytes.Equal(got.Value, v) || got.Version != coord.Version(ver) {
			t.Fatalf("round %d: Get after Sync = %q v%d, %v; want %q v%d", i, got.Value, got.Version, err, v, ver)
		}
		got, err = m.Get(ctx, child.Path)
		if err != nil || got.Version != child.Version {
			t.Fatalf("round %d: Get(%s) after Sync = %+v, %v; want version %d", i, child.Path, got, err, child.Version)
		}
		names, err := m.Children(ctx, "/m/dir")
		if err != nil || len(names) != i {
			t.Fatalf("round %d: Children(/m/dir) = %d names, %v", i, len(names), err)
		}
		if i%10 == 0 {
			if err := other.DeleteTree(ctx, fmt.Sprintf("/m/dir/c%03d", i-5)); err != nil {
				t.Fatal(err)
			}
			mirrorSync(t, ctx, m)
			if _, err := m.Get(ctx, fmt.Sprintf("/m/dir/c%03d/leaf", i-5)); !errors.Is(err, coord.ErrNotFound) {
				t.Fatalf("round %d: a deleted node after Sync: %v", i, err)
			}
			mustCreate(t, ctx, other, fmt.Sprintf("/m/dir/c%03d/leaf", i-5), []byte("back"))
		}
	}
	mirrorSync(t, ctx, m)
	sameAsCoordinator(t, ctx, c, m, "/m")
}

func TestMirrorOfARootMadeLater(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, _ := h.openTest(t, ctx, ns)
	other, _ := h.openTest(t, ctx, ns)
	m := mirrorOf(t, ctx, c, "/later")
	mirrorSync(t, ctx, m)
	if _, err := m.Get(ctx, "/later"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("Get of a missing root: %v", err)
	}
	if _, err := m.List(ctx, "/later"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("List of a missing root: %v", err)
	}
	for round := range 3 {
		mustCreate(t, ctx, other, "/later/a/b", []byte(fmt.Sprint(round)))
		mustCreate(t, ctx, other, "/later/c", binary(round))
		mirrorSync(t, ctx, m)
		if n := sameAsCoordinator(t, ctx, c, m, "/later"); n != 4 {
			t.Fatalf("round %d: compared %d nodes, want 4", round, n)
		}
		if err := other.DeleteTree(ctx, "/later"); err != nil {
			t.Fatal(err)
		}
		mirrorSync(t, ctx, m)
		if _, err := m.Get(ctx, "/later/a"); !errors.Is(err, coord.ErrNotFound) {
			t.Fatalf("round %d: Get under a deleted root: %v", round, err)
		}
		sameAsCoordinator(t, ctx, c, m, "/later")
	}
}

// Changes made while the Mirror's connection is down (cut, or partitioned
// and then cut, within the session timeout) are all there after Sync.
func TestMirrorLosesNothingAcrossDroppedConnections(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, ps := h.openTest(t, ctx, ns)
	other, _ := h.openTest(t, ctx, ns)
	for i := range 20 {
		mustCreate(t, ctx, other, fmt.Sprintf("/m/n%02d/x", i), []byte("0"))
	}
	m := mirrorOf(t, ctx, c, "/m")
	mirrorSync(t, ctx, m)
	for round := 1; round <= 4; round++ {
		if round%2 == 0 {
			for _, p := range ps {
				p.Blackhole()
			}
		} else {
			for _, p := range ps {
				p.DropConnections()
			}
		}
		v := []byte(fmt.Sprint(round))
		for i := range 20 {
			switch i % 4 {
			case 0:
				if _, err := other.Set(ctx, fmt.Sprintf("/m/n%02d/x", i), v, coord.AnyVersion); err != nil {
					t.Fatal(err)
				}
			case 1:
				mustCreate(t, ctx, other, fmt.Sprintf("/m/n%02d/r%d", i, round), v)
			case 2:
				if err := other.DeleteTree(ctx, fmt.Sprintf("/m/n%02d", i)); err != nil {
					t.Fatal(err)
				}
				mustCreate(t, ctx, other, fmt.Sprintf("/m/n%02d/x", i), v)
			}
		}
		if round%2 == 0 {
			// The proxy dropped bytes mid-stream, which TCP never does:
			// the connection is cut as the client's receive timeout would,
			// or the stream would go on without the events dropped.
			time.Sleep(testSessionTimeout / 4)
			for _, p := range ps {
				p.DropConnections()
				p.Heal()
			}
		}
		mirrorSync(t, ctx, m)
		sameAsCoordinator(t, ctx, c, m, "/m")
		// And the watches set again still report changes.
		if _, err := other.Set(ctx, "/m/n03/x", v, coord.AnyVersion); err != nil {
			t.Fatal(err)
		}
		mirrorSync(t, ctx, m)
		sameAsCoordinator(t, ctx, c, m, "/m")
	}
	select {
	case <-m.Done():
		t.Fatal("the Mirror ended across dropped connections")
	default:
	}
}

func TestMirrorEndsWithTheSession(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, _ := h.openTest(t, ctx, ns)
	mustCreate(t, ctx, c, "/m/a", []byte("a"))
	m := mirrorOf(t, ctx, c, "/m")
	mirrorSync(t, ctx, m)
	if err := h.ExpireSession(ctx, c); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after the session ended")
	}
	if _, err := m.Get(ctx, "/m/a"); !errors.Is(err, coord.ErrSessionLost) {
		t.Fatalf("Get: %v, want ErrSessionLost", err)
	}
	if _, err := m.List(ctx, "/m"); !errors.Is(err, coord.ErrSessionLost) {
		t.Fatalf("List: %v, want ErrSessionLost", err)
	}
	if err := m.Sync(ctx); !errors.Is(err, coord.ErrSessionLost) {
		t.Fatalf("Sync: %v, want ErrSessionLost", err)
	}
	if _, err := c.Mirror(ctx, "/m"); !errors.Is(err, coord.ErrSessionLost) {
		t.Fatalf("Mirror on an ended session: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(ctx, "/m/a"); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
}

func TestMirrorClose(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, _ := h.openTest(t, ctx, ns)
	mustCreate(t, ctx, c, "/m/a", []byte("a"))
	m := mirrorOf(t, ctx, c, "/m")
	mirrorSync(t, ctx, m)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case <-m.Done():
	default:
		t.Fatal("Done not closed by Close")
	}
	if _, err := m.Get(ctx, "/m/a"); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("Get: %v, want ErrClosed", err)
	}
	if _, err := m.Children(ctx, "/m"); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("Children: %v, want ErrClosed", err)
	}
	if err := m.Sync(ctx); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("Sync: %v, want ErrClosed", err)
	}
	// The watches it left fire once more; the session goes on.
	if _, err := c.Set(ctx, "/m/a", []byte("b"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if got := c.mirrors.Load(); got != nil && len(*got) != 0 {
		t.Fatalf("%d mirrors still registered", len(*got))
	}
	// A second Mirror of the same subtree works beside the first's leftovers.
	m2 := mirrorOf(t, ctx, c, "/m")
	mirrorSync(t, ctx, m2)
	sameAsCoordinator(t, ctx, c, m2, "/m")
}

// bulkCreate makes n children of the existing node parent (a path of the
// Coordinator) with values of size bytes, in multis of 1,000 sent by a few
// goroutines at once.
func bulkCreate(tb testing.TB, c *Coordinator, parent string, n, size int) {
	tb.Helper()
	const per = 1000
	full := c.full(parent)
	value := bytes.Repeat([]byte("v"), size)
	var wg sync.WaitGroup
	errs := make(chan error, n/per+1)
	sem := make(chan struct{}, 8)
	for start := 0; start < n; start += per {
		ops := make([]any, 0, per)
		for i := start; i < min(n, start+per); i++ {
			ops = append(ops, &zk.CreateRequest{Path: fmt.Sprintf("%s/c%06d", full, i), Data: value, Acl: c.acl})
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := c.Conn().Multi(ops...); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatalf("bulk create under %s: %v", parent, err)
	}
}

// BenchmarkMirrorZooKeeper compares reading 100,000 children of 100 bytes
// through a Mirror with the Coordinator's List: open (the first full read)
// then Sync and List; Sync and List of a Mirror already loaded (a standby's
// takeover); and the Coordinator's List.
func BenchmarkMirrorZooKeeper(b *testing.B) {
	const children = 100_000
	ctx := context.Background()
	c, err := New(ctx, Config{Servers: zktest.Servers(b), Namespace: fmt.Sprintf("bench-%d", time.Now().UnixNano()), SessionTimeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Create(ctx, "/m/big", nil); err != nil {
		b.Fatal(err)
	}
	bulkCreate(b, c, "/m/big", children, 100)
	list := func(b *testing.B, r coord.Reads) {
		nodes, err := r.List(ctx, "/m/big")
		if err != nil || len(nodes) != children {
			b.Fatalf("List: %d nodes, %v", len(nodes), err)
		}
	}
	b.Run("open+sync+list", func(b *testing.B) {
		for range b.N {
			m, err := c.Mirror(ctx, "/m")
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			list(b, m)
			b.StopTimer()
			m.Close()
			b.StartTimer()
		}
	})
	b.Run("sync+list", func(b *testing.B) {
		heap := func() float64 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return float64(ms.HeapAlloc)
		}
		before := heap()
		m, err := c.Mirror(ctx, "/m")
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		if err := m.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		// What the Mirror and go-zookeeper's watches of it hold.
		held := (heap() - before) / children
		b.ResetTimer()
		for range b.N {
			if err := m.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			list(b, m)
		}
		b.ReportMetric(held, "heap-B/node")
	})
	b.Run("coordinator-list", func(b *testing.B) {
		for range b.N {
			list(b, c)
		}
	})
}

// Under a steady stream of writes by another session, every Sync returns
// promptly and shows at least the last write acknowledged before it.
func TestMirrorSyncUnderConstantWrites(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, _ := h.openTest(t, ctx, ns)
	other, _ := h.openTest(t, ctx, ns)
	mustCreate(t, ctx, other, "/m/hot", []byte("0"))
	m := mirrorOf(t, ctx, c, "/m")
	mirrorSync(t, ctx, m)

	var mu sync.Mutex
	var acked coord.Version // the hot node's version last acknowledged
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; wctx.Err() == nil; i++ {
			v, err := other.Set(wctx, "/m/hot", []byte(fmt.Sprint(i)), coord.AnyVersion)
			if err != nil {
				return
			}
			mu.Lock()
			acked = coord.Version(v)
			mu.Unlock()
			name := fmt.Sprintf("/m/churn/c%d", i%7)
			if _, err := other.Create(wctx, name, nil); errors.Is(err, coord.ErrExists) {
				_ = other.Delete(wctx, name, coord.AnyVersion)
			}
		}
	}()
	for range 30 {
		mu.Lock()
		before := acked
		mu.Unlock()
		start := time.Now()
		mirrorSync(t, ctx, m)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Sync under writes took %v", d)
		}
		got, err := m.Get(ctx, "/m/hot")
		if err != nil || got.Version < before {
			t.Fatalf("after Sync: %+v, %v; a write of version %d was acknowledged before it", got, err, before)
		}
	}
	stop()
	wg.Wait()
	mirrorSync(t, ctx, m)
	sameAsCoordinator(t, ctx, c, m, "/m")
}
