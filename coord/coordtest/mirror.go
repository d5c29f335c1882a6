package coordtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
)

// RunMirror runs the Mirror scenarios against h, each in a namespace of its
// own. Every backend must pass them: a backend whose Coordinator is not a
// coord.Mirrorer fails every one. They are apart from Run because Run also
// holds the in-memory and wrapping Coordinators to the contract, which
// mirror nothing yet.
func RunMirror(t *testing.T, h Harness) {
	for _, s := range mirrorScenarios() {
		t.Run(s.name, func(t *testing.T) {
			e := newEnv(t, h)
			s.run(t, e)
		})
	}
}

func mirrorScenarios() []scenario {
	return []scenario{
		{"MirrorAnswersAsTheCoordinatorBeforeAndAfterChanges", testMirrorAnswersAsTheCoordinator},
		{"MirrorOfTheRootAnswersAsTheCoordinator", testMirrorOfTheRoot},
		{"MirrorSyncSeesAnotherSessionsLastWrite", testMirrorSyncSeesAnotherSessionsLastWrite},
		{"MirrorSyncReturnsWhenNothingInTheSubtreeChanged", testMirrorSyncWhenNothingChanged},
		{"MirrorReflectsDeletesAndDeleteTree", testMirrorReflectsDeletes},
		{"MirrorSeesSequentialAndEphemeralNodes", testMirrorSequentialAndEphemeral},
		{"MirrorRefusesPathsOutsideItsSubtreeAndInvalidPaths", testMirrorRefusesPaths},
		{"MirrorCloseEndsIt", testMirrorCloseEndsIt},
		{"MirrorEndsWithTheCoordinatorsClose", testMirrorEndsWithCoordinatorClose},
		{"MirrorSessionExpiryEndsIt", testMirrorSessionExpiryEndsIt},
		{"MirrorListsTenThousandChildren", testMirrorListsTenThousandChildren},
		{"MirrorSyncHonoursItsContext", testMirrorSyncHonoursContext},
		{"MirrorReadsWhileChangesApply", testMirrorReadsWhileChangesApply},
	}
}

// openMirror mirrors path on c, closed when the scenario ends; a backend
// that cannot mirror fails here.
func openMirror(t *testing.T, e *env, c coord.Coordinator, path string) coord.Mirror {
	t.Helper()
	mc, ok := c.(coord.Mirrorer)
	if !ok {
		t.Fatalf("%T does not implement coord.Mirrorer: every backend must mirror", c)
	}
	m, err := mc.Mirror(e.ctx, path)
	if err != nil {
		t.Fatalf("Mirror(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func mustSync(t *testing.T, e *env, m coord.Mirror) {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, e.within())
	defer cancel()
	if err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// errClass names the sentinel an answer's error matches, so two answers
// compare by meaning, not by wording.
func errClass(err error) string {
	for _, s := range []error{coord.ErrNotFound, coord.ErrInvalidPath, coord.ErrNotMirrored, coord.ErrSessionLost, coord.ErrClosed} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return "ok"
}

func sameNode(a, b coord.Node) bool {
	return a.Path == b.Path && bytes.Equal(a.Value, b.Value) && a.Version == b.Version && (a.Value == nil) == (b.Value == nil)
}

// sameAnswers checks that the mirror answers Get, Children and List of each
// path as the Coordinator does, errors included.
func sameAnswers(t *testing.T, e *env, c coord.Coordinator, m coord.Mirror, paths ...string) {
	t.Helper()
	for _, p := range paths {
		cn, cerr := c.Get(e.ctx, p)
		mn, merr := m.Get(e.ctx, p)
		if errClass(cerr) != errClass(merr) || cerr == nil && !sameNode(cn, mn) {
			t.Fatalf("Get(%s): the mirror answers (%+v, %v), the Coordinator (%+v, %v)", p, mn, merr, cn, cerr)
		}
		cc, cerr := c.Children(e.ctx, p)
		mc, merr := m.Children(e.ctx, p)
		if errClass(cerr) != errClass(merr) {
			t.Fatalf("Children(%s): the mirror fails with %v, the Coordinator with %v", p, merr, cerr)
		}
		if cerr == nil {
			wantNames(t, "Children("+p+") from the mirror", mc, cc)
			if mc == nil {
				t.Fatalf("Children(%s) from the mirror is nil, want an empty list", p)
			}
		}
		cl, cerr := c.List(e.ctx, p)
		ml, merr := m.List(e.ctx, p)
		if errClass(cerr) != errClass(merr) {
			t.Fatalf("List(%s): the mirror fails with %v, the Coordinator with %v", p, merr, cerr)
		}
		if cerr != nil {
			continue
		}
		if len(cl) != len(ml) || ml == nil {
			t.Fatalf("List(%s): the mirror lists %d nodes (nil: %v), the Coordinator %d", p, len(ml), ml == nil, len(cl))
		}
		for i := range cl {
			if !sameNode(cl[i], ml[i]) {
				t.Fatalf("List(%s)[%d]: the mirror has %+v, the Coordinator %+v", p, i, ml[i], cl[i])
			}
		}
	}
}

// binary is a value with every byte value in it.
func binary() []byte {
	b := make([]byte, 512)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// mirrorPaths are the paths the comparison scenarios ask about: nodes,
// implicit parents, missing nodes and nodes below missing ones.
var mirrorPaths = []string{
	"/t", "/t/a", "/t/a/b", "/t/a/b/c", "/t/a/b/c/d", "/t/bin", "/t/empty", "/t/new",
	"/t/new/x", "/t/missing", "/t/missing/below", "/t/a/missing",
}

func testMirrorAnswersAsTheCoordinator(t *testing.T, e *env) {
	c, w := e.open(t), e.open(t)
	mustCreate(t, e.ctx, w, "/t/a/b/c/d", []byte("deep"))
	mustCreate(t, e.ctx, w, "/t/bin", binary())
	mustCreate(t, e.ctx, w, "/t/empty", nil)
	mustCreate(t, e.ctx, w, "/other/x", []byte("outside"))
	m := openMirror(t, e, c, "/t")
	mustSync(t, e, m)
	sameAnswers(t, e, c, m, mirrorPaths...)

	// Changes after the Mirror opened, by another session.
	mustCreate(t, e.ctx, w, "/t/new/x", []byte("x"))
	if _, err := w.Set(e.ctx, "/t/a/b", []byte("set"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Set(e.ctx, "/t/bin", append(binary(), 0, 0xff), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	mustSync(t, e, m)
	sameAnswers(t, e, c, m, mirrorPaths...)

	// A version read from the mirror is good for Set, and the mirror then
	// has the version Set returned.
	n, err := m.Get(e.ctx, "/t/a/b")
	if err != nil {
		t.Fatal(err)
	}
	v, err := w.Set(e.ctx, "/t/a/b", []byte("again"), n.Version)
	if err != nil {
		t.Fatalf("Set with the version the mirror read: %v", err)
	}
	mustSync(t, e, m)
	if n, err = m.Get(e.ctx, "/t/a/b"); err != nil || n.Version != v || string(n.Value) != "again" {
		t.Fatalf("after Set the mirror reads (%+v, %v), want value again, version %d", n, err, v)
	}
	sameAnswers(t, e, c, m, mirrorPaths...)
}

func testMirrorOfTheRoot(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/a/b", []byte("b"))
	m := openMirror(t, e, c, "/")
	mustCreate(t, e.ctx, c, "/c", binary())
	mustCreate(t, e.ctx, c, "/a/d/e", nil)
	mustSync(t, e, m)
	sameAnswers(t, e, c, m, "/", "/a", "/a/b", "/a/d", "/a/d/e", "/c", "/missing")
}

func testMirrorSyncSeesAnotherSessionsLastWrite(t *testing.T, e *env) {
	c, w := e.open(t), e.open(t)
	m := openMirror(t, e, c, "/t")
	mustCreate(t, e.ctx, w, "/t/k", []byte("start"))
	// Before each write the test waits for, a batch of large values
	// changes: their events, ahead of the write's in the watch, keep a
	// mirror that did not wait for the write behind it when Sync returns.
	const noise = 9
	for j := range noise {
		mustCreate(t, e.ctx, w, fmt.Sprintf("/t/noise/%d", j), nil)
	}
	big := bytes.Repeat([]byte("n"), 20_000)
	for i := range 50 {
		want := strconv.Itoa(i)
		ops := make([]coord.Op, 0, noise)
		for j := range noise {
			big[0] = byte(i)
			ops = append(ops, coord.SetOp(fmt.Sprintf("/t/noise/%d", j), bytes.Clone(big), coord.AnyVersion))
		}
		if _, err := w.Apply(e.ctx, ops...); err != nil {
			t.Fatal(err)
		}
		v, err := w.Set(e.ctx, "/t/k", []byte(want), coord.AnyVersion)
		if err != nil {
			t.Fatal(err)
		}
		child := fmt.Sprintf("/t/kids/c-%03d", i)
		made := mustCreate(t, e.ctx, w, child, []byte(want))
		mustSync(t, e, m)
		n, err := m.Get(e.ctx, "/t/k")
		if err != nil || string(n.Value) != want || n.Version != v {
			t.Fatalf("round %d: after Sync the mirror reads (%q, %d, %v), want (%q, %d): Sync returned before the write", i, n.Value, n.Version, err, want, v)
		}
		if n, err := m.Get(e.ctx, child); err != nil || n.Version != made.Version {
			t.Fatalf("round %d: after Sync the mirror reads %s as (%+v, %v), want version %d", i, child, n, err, made.Version)
		}
	}
	sameAnswers(t, e, c, m, "/t", "/t/k", "/t/kids")
}

func testMirrorSyncWhenNothingChanged(t *testing.T, e *env) {
	c, w := e.open(t), e.open(t)
	mustCreate(t, e.ctx, c, "/t/a", []byte("a"))
	m := openMirror(t, e, c, "/t")
	mustSync(t, e, m)
	// The store changes only outside the subtree, and in another namespace:
	// no event reaches the mirror, yet Sync must return.
	other := e.openNS(t, e.ns+"-other")
	for i := range 5 {
		mustCreate(t, e.ctx, w, fmt.Sprintf("/u/%d", i), nil)
		mustCreate(t, e.ctx, other, fmt.Sprintf("/t/%d", i), nil)
		start := time.Now()
		mustSync(t, e, m)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Sync with nothing to wait for took %v", d)
		}
	}
	// An idle store.
	mustSync(t, e, m)
	mustSync(t, e, m)
	sameAnswers(t, e, c, m, "/t", "/t/a", "/t/0")
}

func testMirrorReflectsDeletes(t *testing.T, e *env) {
	c, w := e.open(t), e.open(t)
	m := openMirror(t, e, c, "/t") // before /t exists
	mustSync(t, e, m)
	sameAnswers(t, e, c, m, "/t", "/t/a")
	mustCreate(t, e.ctx, w, "/t/a/b/c", []byte("c"))
	mustCreate(t, e.ctx, w, "/t/a/b/d", []byte("d"))
	mustCreate(t, e.ctx, w, "/t/a/e", []byte("e"))
	mustCreate(t, e.ctx, w, "/t/f", []byte("f"))
	mustSync(t, e, m)
	paths := []string{"/t", "/t/a", "/t/a/b", "/t/a/b/c", "/t/a/b/d", "/t/a/e", "/t/f"}
	sameAnswers(t, e, c, m, paths...)

	if err := w.Delete(e.ctx, "/t/a/b/c", coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	mustSync(t, e, m)
	sameAnswers(t, e, c, m, paths...)
	if _, err := m.Get(e.ctx, "/t/a/b/c"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("the mirror still reads a deleted node: %v", err)
	}

	if err := w.DeleteTree(e.ctx, "/t/a"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, e, m)
	sameAnswers(t, e, c, m, paths...)
	wantNames(t, "Children(/t) after DeleteTree(/t/a)", mustMirrorChildren(t, e, m, "/t"), []string{"f"})

	// The mirrored node itself goes, and comes back.
	if err := w.DeleteTree(e.ctx, "/t"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, e, m)
	sameAnswers(t, e, c, m, paths...)
	_, err := m.Children(e.ctx, "/t")
	wantErr(t, "Children(/t) from the mirror after DeleteTree(/t)", err, coord.ErrNotFound)
	mustCreate(t, e.ctx, w, "/t/a/b/c", []byte("again"))
	mustSync(t, e, m)
	sameAnswers(t, e, c, m, paths...)
}

func mustMirrorChildren(t *testing.T, e *env, m coord.Mirror, path string) []string {
	t.Helper()
	names, err := m.Children(e.ctx, path)
	if err != nil {
		t.Fatalf("Children(%s) from the mirror: %v", path, err)
	}
	return names
}

func testMirrorSequentialAndEphemeral(t *testing.T, e *env) {
	c, w := e.open(t), e.open(t)
	m := openMirror(t, e, c, "/t")
	mustCreate(t, e.ctx, w, "/t/q", nil)
	var seqs []string
	for range 3 {
		n := mustCreate(t, e.ctx, w, "/t/q/item-", []byte("s"), coord.Sequential())
		seqs = append(seqs, coord.Base(n.Path))
	}
	mustCreate(t, e.ctx, w, "/t/live/w", []byte("alive"), coord.Ephemeral())
	mustSync(t, e, m)
	wantNames(t, "sequential children in the mirror", mustMirrorChildren(t, e, m, "/t/q"), seqs)
	if n, err := m.Get(e.ctx, "/t/live/w"); err != nil || string(n.Value) != "alive" {
		t.Fatalf("the ephemeral node in the mirror: (%+v, %v)", n, err)
	}
	sameAnswers(t, e, c, m, "/t/q", "/t/live", "/t/live/w")
	// Closing its session removes the ephemeral node; the mirror follows.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, e.within(), "the ephemeral node gone from the mirror", func() bool {
		if err := m.Sync(e.ctx); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		_, err := m.Get(e.ctx, "/t/live/w")
		return errors.Is(err, coord.ErrNotFound)
	})
	sameAnswers(t, e, c, m, "/t/q", "/t/live", "/t/live/w")
}

func testMirrorRefusesPaths(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/t/a", []byte("a"))
	mustCreate(t, e.ctx, c, "/tx/a", []byte("a"))
	mc, ok := c.(coord.Mirrorer)
	if !ok {
		t.Fatalf("%T does not implement coord.Mirrorer: every backend must mirror", c)
	}
	for _, p := range []string{"", "t", "/t/", "/t//a", "/t/../u", "/t/\x00"} {
		if m, err := mc.Mirror(e.ctx, p); !errors.Is(err, coord.ErrInvalidPath) {
			if m != nil {
				_ = m.Close()
			}
			t.Fatalf("Mirror(%q): got %v, want ErrInvalidPath", p, err)
		}
	}
	m := openMirror(t, e, c, "/t")
	mustSync(t, e, m)
	for _, p := range []string{"/tx", "/tx/a", "/u", "/", "/t2/a"} {
		if p != "/" {
			_, err := m.Get(e.ctx, p)
			wantErr(t, "Get("+p+") outside the mirror", err, coord.ErrNotMirrored)
		}
		_, err := m.Children(e.ctx, p)
		wantErr(t, "Children("+p+") outside the mirror", err, coord.ErrNotMirrored)
		_, err = m.List(e.ctx, p)
		wantErr(t, "List("+p+") outside the mirror", err, coord.ErrNotMirrored)
	}
	_, err := m.Get(e.ctx, "/")
	wantErr(t, "Get(/) from the mirror", err, coord.ErrInvalidPath)
	for _, p := range []string{"", "t", "/t/", "/t//a", "/t/./a", "/t/\x01"} {
		_, err := m.Get(e.ctx, p)
		wantErr(t, fmt.Sprintf("Get(%q) from the mirror", p), err, coord.ErrInvalidPath)
		_, err = m.Children(e.ctx, p)
		wantErr(t, fmt.Sprintf("Children(%q) from the mirror", p), err, coord.ErrInvalidPath)
		_, err = m.List(e.ctx, p)
		wantErr(t, fmt.Sprintf("List(%q) from the mirror", p), err, coord.ErrInvalidPath)
	}
	// The mirror still answers inside.
	sameAnswers(t, e, c, m, "/t", "/t/a")
}

// wantEnded checks that every call of an ended mirror fails with want.
func wantEnded(t *testing.T, e *env, m coord.Mirror, want error) {
	t.Helper()
	_, err := m.Get(e.ctx, "/t/a")
	wantErr(t, "Get", err, want)
	_, err = m.Children(e.ctx, "/t")
	wantErr(t, "Children", err, want)
	_, err = m.List(e.ctx, "/t")
	wantErr(t, "List", err, want)
	wantErr(t, "Sync", m.Sync(e.ctx), want)
}

func testMirrorCloseEndsIt(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/t/a", []byte("a"))
	m := openMirror(t, e, c, "/t")
	mustSync(t, e, m)
	if closed(m.Done()) {
		t.Fatal("Done is closed on a live mirror")
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitClosed(t, m.Done(), e.within(), "Done after Close")
	wantEnded(t, e, m, coord.ErrClosed)
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// The session is untouched, and mirrors again.
	mustGet(t, e.ctx, c, "/t/a")
	m2 := openMirror(t, e, c, "/t")
	mustSync(t, e, m2)
	sameAnswers(t, e, c, m2, "/t", "/t/a")
}

func testMirrorEndsWithCoordinatorClose(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/t/a", []byte("a"))
	m := openMirror(t, e, c, "/t")
	mustSync(t, e, m)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, m.Done(), e.within(), "the mirror's Done after the Coordinator's Close")
	wantEnded(t, e, m, coord.ErrClosed)
}

func testMirrorSessionExpiryEndsIt(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/t/a", []byte("a"))
	m := openMirror(t, e, c, "/t")
	mustSync(t, e, m)
	if err := e.h.ExpireSession(e.ctx, c); err != nil {
		t.Fatalf("ExpireSession: %v", err)
	}
	waitClosed(t, m.Done(), e.within(), "the mirror's Done after the session expired")
	wantEnded(t, e, m, coord.ErrSessionLost)
	if err := m.Close(); err != nil {
		t.Fatalf("Close after the session ended: %v", err)
	}
}

func testMirrorListsTenThousandChildren(t *testing.T, e *env) {
	const n, workers = 10_000, 32
	sessions := []coord.Coordinator{e.open(t), e.open(t)}
	c := sessions[1]
	mustCreate(t, e.ctx, sessions[0], "/t/many", nil)
	var m coord.Mirror
	var wg sync.WaitGroup
	next := 0
	var mu sync.Mutex
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				if _, err := sessions[w%len(sessions)].Create(e.ctx, fmt.Sprintf("/t/many/child-%05d", i), []byte(strconv.Itoa(i))); err != nil {
					errs <- fmt.Errorf("child %d: %w", i, err)
					return
				}
			}
		}()
	}
	// Half the children are there when the mirror opens, half come after.
	eventually(t, e.within()+time.Minute, "half the children made", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return next >= n/2
	})
	m = openMirror(t, e, c, "/t")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	mustSync(t, e, m)
	names := mustMirrorChildren(t, e, m, "/t/many")
	if len(names) != n {
		t.Fatalf("Children from the mirror: %d names, want %d", len(names), n)
	}
	for i, name := range names {
		if want := fmt.Sprintf("child-%05d", i); name != want {
			t.Fatalf("name %d is %q, want %q (sorted)", i, name, want)
		}
	}
	nodes, err := m.List(e.ctx, "/t/many")
	if err != nil {
		t.Fatalf("List from the mirror: %v", err)
	}
	for i, nd := range nodes {
		if nd.Path != fmt.Sprintf("/t/many/child-%05d", i) || string(nd.Value) != strconv.Itoa(i) {
			t.Fatalf("node %d from the mirror is {%s %q}", i, nd.Path, nd.Value)
		}
	}
	sameAnswers(t, e, c, m, "/t/many", "/t/many/child-00000", "/t/many/child-09999")
}

func testMirrorSyncHonoursContext(t *testing.T, e *env) {
	c := e.open(t)
	m := openMirror(t, e, c, "/t")
	mustSync(t, e, m)
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if err := m.Sync(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sync with a cancelled context: got %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithDeadline(e.ctx, time.Now().Add(-time.Second))
	defer cancel()
	if err := m.Sync(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync past its deadline: got %v, want context.DeadlineExceeded", err)
	}
	mustCreate(t, e.ctx, c, "/t/a", nil)
	// The mirror still works after the calls that gave up.
	mustSync(t, e, m)
	sameAnswers(t, e, c, m, "/t", "/t/a")
}

func testMirrorReadsWhileChangesApply(t *testing.T, e *env) {
	c, w := e.open(t), e.open(t)
	mustCreate(t, e.ctx, w, "/t/hot", nil)
	m := openMirror(t, e, c, "/t")
	const writes = 200
	done := make(chan error, 1)
	go func() {
		for i := range writes {
			p := fmt.Sprintf("/t/hot/n-%03d", i%20)
			if _, err := w.Create(e.ctx, p, []byte(strconv.Itoa(i))); errors.Is(err, coord.ErrExists) {
				_, err = w.Set(e.ctx, p, []byte(strconv.Itoa(i)), coord.AnyVersion)
				if err != nil {
					done <- err
					return
				}
			} else if err != nil {
				done <- err
				return
			}
			if i%7 == 0 {
				if err := w.Delete(e.ctx, p, coord.AnyVersion); err != nil {
					done <- err
					return
				}
			}
		}
		done <- nil
	}()
	for reading := true; reading; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("writer: %v", err)
			}
			reading = false
		default:
		}
		nodes, err := m.List(e.ctx, "/t/hot")
		if err != nil {
			t.Fatalf("List from the mirror while it changes: %v", err)
		}
		for _, nd := range nodes {
			if nd.Version == 0 {
				t.Fatalf("the mirror lists %s without a version", nd.Path)
			}
		}
		if _, err := m.Get(e.ctx, "/t/hot/n-000"); err != nil && !errors.Is(err, coord.ErrNotFound) {
			t.Fatalf("Get from the mirror while it changes: %v", err)
		}
	}
	mustSync(t, e, m)
	paths := []string{"/t", "/t/hot"}
	for i := range 20 {
		paths = append(paths, fmt.Sprintf("/t/hot/n-%03d", i))
	}
	sameAnswers(t, e, c, m, paths...)
}
