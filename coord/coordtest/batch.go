package coordtest

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
)

// Scenarios of Create's returned node and of Apply's batches, part of Run.
func batchScenarios() []scenario {
	return []scenario{
		{"CreateReturnsTheNodeWithTheVersionGetReads", testCreateReturnsTheNodeWithTheVersionGetReads},
		{"ApplyOfNoOpsIsANoOp", testApplyOfNoOpsIsANoOp},
		{"ApplyMakesEveryOpInOrderWithGetsVersions", testApplyMakesEveryOpInOrderWithGetsVersions},
		{"ApplyWithOneFailingOpWritesNothing", testApplyWithOneFailingOpWritesNothing},
		{"ApplyReportsEachRefusalByOp", testApplyReportsEachRefusalByOp},
		{"ApplyRefusesInvalidPathsBeforeSending", testApplyRefusesInvalidPathsBeforeSending},
		{"ApplyRefusesBatchesTooLarge", testApplyRefusesBatchesTooLarge},
		{"ConcurrentBatchedCASLosesNoUpdate", testConcurrentBatchedCASLosesNoUpdate},
		{"FencedFullBatchesSucceed", testFencedFullBatchesSucceed},
		{"FencedApplyOfDeposedLeaderWritesNothing", testFencedApplyOfDeposedLeaderWritesNothing},
	}
}

func testCreateReturnsTheNodeWithTheVersionGetReads(t *testing.T, e *env) {
	c := e.open(t)
	check := func(what string, made coord.Node, value string) {
		t.Helper()
		got := mustGet(t, e.ctx, c, made.Path)
		if made.Version != got.Version || string(made.Value) != value || string(got.Value) != value {
			t.Fatalf("%s: Create returned {%q %q %d}, Get reads {%q %d}", what, made.Path, made.Value, made.Version, got.Value, got.Version)
		}
		v, err := c.Set(e.ctx, made.Path, []byte(value+"'"), made.Version)
		if err != nil {
			t.Fatalf("%s: Set with the version Create returned: %v", what, err)
		}
		if v == made.Version {
			t.Fatalf("%s: Set returned the version Create did, %d", what, v)
		}
	}
	check("plain", mustCreate(t, e.ctx, c, "/a", []byte("a")), "a")
	check("with parents made", mustCreate(t, e.ctx, c, "/p/q/r", []byte("r")), "r")
	check("ephemeral", mustCreate(t, e.ctx, c, "/eph", []byte("e"), coord.Ephemeral()), "e")
	seq := mustCreate(t, e.ctx, c, "/s/job-", []byte("s"), coord.Sequential())
	if !strings.HasPrefix(seq.Path, "/s/job-") || len(seq.Path) != len("/s/job-")+coord.SequenceWidth {
		t.Fatalf("sequential Create returned the path %q, not the one it made", seq.Path)
	}
	wantNames(t, "Children(/s)", mustChildren(t, e.ctx, c, "/s"), []string{coord.Base(seq.Path)})
	check("sequential", seq, "s")
	check("ephemeral sequential", mustCreate(t, e.ctx, c, "/s/job-", nil, coord.Sequential(), coord.Ephemeral()), "")
	l := mustLead(t, campaign(e.ctx, c, "me"), e.within(), "the only candidate")
	fenced, err := l.Writer().Create(e.ctx, "/fenced/x", []byte("f"))
	if err != nil {
		t.Fatalf("fenced Create: %v", err)
	}
	if fenced.Path != "/fenced/x" {
		t.Fatalf("fenced Create returned the path %q", fenced.Path)
	}
	check("fenced", fenced, "f")
}

func testApplyOfNoOpsIsANoOp(t *testing.T, e *env) {
	c := e.open(t)
	res, err := c.Apply(e.ctx)
	if res != nil || err != nil {
		t.Fatalf("Apply() = %v, %v; want nil, nil", res, err)
	}
	wantNames(t, "Children(/) after an empty batch", mustChildren(t, e.ctx, c, "/"), nil)
}

func testApplyMakesEveryOpInOrderWithGetsVersions(t *testing.T, e *env) {
	c := e.open(t)
	old := mustCreate(t, e.ctx, c, "/old", []byte("old"))
	gone := mustCreate(t, e.ctx, c, "/gone", nil)
	mustCreate(t, e.ctx, c, "/tree/leaf", nil)
	ops := []coord.Op{
		coord.CreateOp("/new", []byte("n")),
		coord.CreateOp("/new/child", []byte("c")), // its parent is made by the op before
		coord.SetOp("/old", []byte("old2"), old.Version),
		coord.DeleteOp("/gone", gone.Version),
		coord.SetOp("/new", []byte("n2"), coord.AnyVersion), // sees the create before it
		coord.DeleteOp("/tree/leaf", coord.AnyVersion),
		coord.DeleteOp("/tree", coord.AnyVersion), // its child went with the op before
		coord.CreateOp("/gone", []byte("again")),  // re-made after its delete
	}
	res, err := c.Apply(e.ctx, ops...)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(res) != len(ops) {
		t.Fatalf("Apply returned %d results for %d ops", len(res), len(ops))
	}
	for i, r := range res {
		if r.Path != ops[i].Path {
			t.Fatalf("result %d is for %q, want %q", i, r.Path, ops[i].Path)
		}
	}
	for _, i := range []int{3, 5, 6} {
		if res[i].Version != 0 {
			t.Fatalf("delete %d returned version %d, want 0", i, res[i].Version)
		}
	}
	want := map[string]struct {
		value string
		res   int // the last op that wrote the node
	}{"/new": {"n2", 4}, "/new/child": {"c", 1}, "/old": {"old2", 2}, "/gone": {"again", 7}}
	for p, w := range want {
		n := mustGet(t, e.ctx, c, p)
		if string(n.Value) != w.value || n.Version != res[w.res].Version {
			t.Fatalf("Get(%s) = {%q %d}, want {%q %d} as op %d returned", p, n.Value, n.Version, w.value, res[w.res].Version, w.res)
		}
	}
	if res[2].Version == old.Version {
		t.Fatal("the set returned the node's old version")
	}
	_, err = c.Get(e.ctx, "/tree")
	wantErr(t, "Get(/tree) after its batch delete", err, coord.ErrNotFound)
	// The versions returned are usable in the next batch.
	res2, err := c.Apply(e.ctx, coord.SetOp("/new/child", []byte("c2"), res[1].Version), coord.DeleteOp("/old", res[2].Version))
	if err != nil {
		t.Fatalf("Apply with the versions the last batch returned: %v", err)
	}
	if n := mustGet(t, e.ctx, c, "/new/child"); n.Version != res2[0].Version || string(n.Value) != "c2" {
		t.Fatalf("Get(/new/child) = {%q %d}, want {c2 %d}", n.Value, n.Version, res2[0].Version)
	}
}

// snapshot reads every node below the namespace's root, to prove a refused
// batch wrote nothing.
func snapshot(t *testing.T, e *env, c coord.Coordinator) string {
	t.Helper()
	var b strings.Builder
	var walk func(p string)
	walk = func(p string) {
		for _, name := range mustChildren(t, e.ctx, c, p) {
			child := coord.Join(p, name)
			n := mustGet(t, e.ctx, c, child)
			fmt.Fprintf(&b, "%s=%q@%d\n", child, n.Value, n.Version)
			walk(child)
		}
	}
	walk("/")
	return b.String()
}

// wantOpError checks that err is an *OpError for op index, wrapping want.
func wantOpError(t *testing.T, what string, err error, index int, want error) {
	t.Helper()
	wantErr(t, what, err, want)
	var oe *coord.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("%s: %v is not an *OpError", what, err)
	}
	if oe.Index != index {
		t.Fatalf("%s: OpError.Index %d, want %d (%v)", what, oe.Index, index, err)
	}
}

func testApplyWithOneFailingOpWritesNothing(t *testing.T, e *env) {
	c := e.open(t)
	x := mustCreate(t, e.ctx, c, "/x", []byte("x"))
	mustCreate(t, e.ctx, c, "/y", []byte("y"))
	before := snapshot(t, e, c)
	ops := []coord.Op{
		coord.CreateOp("/a", []byte("a")),
		coord.SetOp("/x", []byte("x2"), x.Version),
		coord.DeleteOp("/y", coord.AnyVersion),
		coord.CreateOp("/a/b", nil),
		coord.CreateOp("/x", nil), // exists
		coord.CreateOp("/c", nil),
	}
	res, err := c.Apply(e.ctx, ops...)
	if res != nil {
		t.Fatalf("a refused batch returned results %v", res)
	}
	wantOpError(t, "batch whose fifth op creates an existing node", err, 4, coord.ErrExists)
	if after := snapshot(t, e, c); after != before {
		t.Fatalf("a refused batch changed the store:\nbefore:\n%safter:\n%s", before, after)
	}
	// The same batch without the failing op goes through.
	if _, err := c.Apply(e.ctx, append(ops[:4:4], ops[5])...); err != nil {
		t.Fatalf("the batch without its failing op: %v", err)
	}
	mustGet(t, e.ctx, c, "/a/b")
}

func testApplyReportsEachRefusalByOp(t *testing.T, e *env) {
	c := e.open(t)
	v1 := mustCreate(t, e.ctx, c, "/v", []byte("1"))
	if _, err := c.Set(e.ctx, "/v", []byte("2"), v1.Version); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, e.ctx, c, "/p/child", nil)
	mustCreate(t, e.ctx, c, "/eph", nil, coord.Ephemeral())
	cases := []struct {
		name string
		op   coord.Op
		want error
	}{
		{"create of an existing node", coord.CreateOp("/v", nil), coord.ErrExists},
		{"create whose parent is missing", coord.CreateOp("/missing/x", nil), coord.ErrNotFound},
		{"create under an ephemeral node", coord.CreateOp("/eph/x", nil), coord.ErrEphemeralParent},
		{"set of a missing node", coord.SetOp("/missing", nil, coord.AnyVersion), coord.ErrNotFound},
		{"set with a stale version", coord.SetOp("/v", nil, v1.Version), coord.ErrVersionConflict},
		{"delete of a missing node", coord.DeleteOp("/missing", coord.AnyVersion), coord.ErrNotFound},
		{"delete with a stale version", coord.DeleteOp("/v", v1.Version), coord.ErrVersionConflict},
		{"delete of a node with children", coord.DeleteOp("/p", coord.AnyVersion), coord.ErrNotEmpty},
		{"versioned set of a node the batch wrote", coord.SetOp("/first", nil, v1.Version), coord.ErrVersionConflict},
		{"set of a node the batch deleted", coord.SetOp("/doomed", nil, coord.AnyVersion), coord.ErrNotFound},
	}
	mustCreate(t, e.ctx, c, "/doomed", nil)
	before := snapshot(t, e, c)
	for _, tc := range cases {
		ops := []coord.Op{coord.CreateOp("/first", []byte("f")), coord.DeleteOp("/doomed", coord.AnyVersion), tc.op}
		_, err := c.Apply(e.ctx, ops...)
		wantOpError(t, tc.name, err, 2, tc.want)
		if after := snapshot(t, e, c); after != before {
			t.Fatalf("%s: the refused batch changed the store:\nbefore:\n%safter:\n%s", tc.name, before, after)
		}
	}
	// A version of the node's current state passes where a stale one failed.
	cur := mustGet(t, e.ctx, c, "/v")
	if _, err := c.Apply(e.ctx, coord.SetOp("/v", []byte("3"), cur.Version)); err != nil {
		t.Fatalf("set with the current version: %v", err)
	}
}

func testApplyRefusesInvalidPathsBeforeSending(t *testing.T, e *env) {
	c := e.open(t)
	for name, p := range invalidPaths() {
		for _, op := range []coord.Op{coord.CreateOp(p, nil), coord.SetOp(p, nil, coord.AnyVersion), coord.DeleteOp(p, coord.AnyVersion)} {
			_, err := c.Apply(e.ctx, coord.CreateOp("/ok", nil), op)
			wantOpError(t, name+": "+op.Kind().String(), err, 1, coord.ErrInvalidPath)
		}
	}
	_, err := c.Apply(e.ctx, coord.CreateOp("/", nil))
	wantOpError(t, "create of the root", err, 0, coord.ErrInvalidPath)
	_, err = c.Apply(e.ctx, coord.CreateOp("/ok", nil), coord.Op{Path: "/no-kind"})
	var oe *coord.OpError
	if !errors.As(err, &oe) || oe.Index != 1 {
		t.Fatalf("an Op not made by a constructor: %v, want an *OpError for op 1", err)
	}
	wantNames(t, "Children(/) after refused batches", mustChildren(t, e.ctx, c, "/"), nil)
}

func testApplyRefusesBatchesTooLarge(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/p", nil)
	ops := make([]coord.Op, coord.MaxBatchOps+1)
	for i := range ops {
		ops[i] = coord.CreateOp(fmt.Sprintf("/p/n%03d", i), nil)
	}
	_, err := c.Apply(e.ctx, ops...)
	wantErr(t, "a batch of MaxBatchOps+1 ops", err, coord.ErrBatchTooLarge)
	half := bytes.Repeat([]byte("v"), coord.MaxValueSize/2+1)
	_, err = c.Apply(e.ctx, coord.CreateOp("/p/a", half), coord.CreateOp("/p/b", half))
	wantErr(t, "a batch whose values exceed MaxValueSize", err, coord.ErrBatchTooLarge)
	_, err = c.Apply(e.ctx, coord.CreateOp("/p/a", append(half, half...)))
	wantErr(t, "a batch of one value larger than MaxValueSize", err, coord.ErrBatchTooLarge)
	wantNames(t, "Children(/p) after refused batches", mustChildren(t, e.ctx, c, "/p"), nil)
	// Values adding up to exactly MaxValueSize fit.
	quarter := bytes.Repeat([]byte("q"), coord.MaxValueSize/4)
	if _, err := c.Apply(e.ctx, coord.CreateOp("/p/a", quarter), coord.CreateOp("/p/b", quarter), coord.CreateOp("/p/c", quarter), coord.CreateOp("/p/d", quarter)); err != nil {
		t.Fatalf("a batch of MaxValueSize bytes of values: %v", err)
	}
	if n := mustGet(t, e.ctx, c, "/p/d"); !bytes.Equal(n.Value, quarter) {
		t.Fatalf("/p/d holds %d bytes, want %d", len(n.Value), len(quarter))
	}
}

// Each batch creates a child of the counter, which relies on the counter
// existing, and then sets the counter with the version read: the version
// check must hold at the commit, not only when the batch was prepared.
func testConcurrentBatchedCASLosesNoUpdate(t *testing.T, e *env) {
	sessions := []coord.Coordinator{e.open(t), e.open(t), e.open(t)}
	mustCreate(t, e.ctx, sessions[0], "/counter", []byte("0"))
	const workers, each = 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := sessions[w%len(sessions)]
			for done := 0; done < each; {
				n, err := c.Get(e.ctx, "/counter")
				if err != nil {
					errs <- err
					return
				}
				v, err := strconv.Atoi(string(n.Value))
				if err != nil {
					errs <- err
					return
				}
				_, err = c.Apply(e.ctx,
					coord.CreateOp(fmt.Sprintf("/counter/w%d-%d", w, done), nil),
					coord.SetOp("/counter", []byte(strconv.Itoa(v+1)), n.Version))
				switch {
				case err == nil:
					done++
				case errors.Is(err, coord.ErrVersionConflict):
				default:
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("batched increment: %v", err)
	}
	if n := mustGet(t, e.ctx, sessions[0], "/counter"); string(n.Value) != strconv.Itoa(workers*each) {
		t.Fatalf("counter is %s after %d batched increments: updates were lost", n.Value, workers*each)
	}
	if names := mustChildren(t, e.ctx, sessions[0], "/counter"); len(names) != workers*each {
		t.Fatalf("%d children after %d batches", len(names), workers*each)
	}
}

// testFencedFullBatchesSucceed runs batches of MaxBatchOps ops of each kind
// through a leader's fenced writer, the costliest form: every op needs its
// own checks besides the fence's.
func testFencedFullBatchesSucceed(t *testing.T, e *env) {
	c := e.open(t)
	l := mustLead(t, campaign(e.ctx, c, "me"), e.within(), "the only candidate")
	w := l.Writer()
	const n = coord.MaxBatchOps
	mustCreate(t, e.ctx, c, "/full", nil)
	apply := func(what string, ops []coord.Op) []coord.OpResult {
		t.Helper()
		res, err := w.Apply(e.ctx, ops...)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(res) != len(ops) {
			t.Fatalf("%s: %d results for %d ops", what, len(res), len(ops))
		}
		return res
	}
	ops := make([]coord.Op, n)
	for i := range ops {
		ops[i] = coord.CreateOp(fmt.Sprintf("/full/n%03d", i), []byte{byte(i)})
	}
	made := apply("creates of siblings", ops)
	// Creates under as many different parents.
	for i := range ops {
		ops[i] = coord.CreateOp(fmt.Sprintf("/full/n%03d/leaf", i), []byte("leaf"))
	}
	leaves := apply("creates under as many parents", ops)
	for i := range ops {
		ops[i] = coord.SetOp(fmt.Sprintf("/full/n%03d", i), []byte("set"), made[i].Version)
	}
	set := apply("versioned sets", ops)
	for i := range ops {
		ops[i] = coord.DeleteOp(fmt.Sprintf("/full/n%03d/leaf", i), leaves[i].Version)
	}
	apply("versioned deletes of leaves", ops)
	for i := range ops {
		ops[i] = coord.DeleteOp(fmt.Sprintf("/full/n%03d", i), set[i].Version)
	}
	apply("versioned deletes of their parents", ops)
	wantNames(t, "Children(/full) after the deletes", mustChildren(t, e.ctx, c, "/full"), nil)
}

func testFencedApplyOfDeposedLeaderWritesNothing(t *testing.T, e *env) {
	a, b := e.open(t), e.open(t)
	x := mustCreate(t, e.ctx, a, "/data/x", []byte("v"))
	la := mustLead(t, campaign(e.ctx, a, "a"), e.within(), "a")
	waiting := campaign(e.ctx, b, "b")
	mustWait(t, waiting, 300*time.Millisecond, "b")
	old := la.Writer()
	res, err := old.Apply(e.ctx, coord.SetOp("/data/x", []byte("from a"), x.Version), coord.CreateOp("/data/by-a", nil))
	if err != nil {
		t.Fatalf("the leader's fenced Apply: %v", err)
	}
	if err := la.Resign(e.ctx); err != nil {
		t.Fatal(err)
	}
	mustLead(t, waiting, e.within(), "b")
	before := snapshot(t, e, b)
	_, err = old.Apply(e.ctx, coord.SetOp("/data/x", []byte("deposed"), res[0].Version), coord.CreateOp("/data/new", nil), coord.DeleteOp("/data/by-a", coord.AnyVersion))
	wantErr(t, "fenced Apply of a deposed leader", err, coord.ErrNotLeader)
	if after := snapshot(t, e, b); after != before {
		t.Fatalf("a deposed leader's batch changed the store:\nbefore:\n%safter:\n%s", before, after)
	}
}
