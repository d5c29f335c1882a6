package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// countingTerm is term with the writes of the term counted: one per call
// of its coord.Writer, a batch counting once.
func countingTerm(t *testing.T, st *schedtest.Store) (*store.Writer, coord.Leadership, *atomic.Int64) {
	t.Helper()
	c, err := st.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	l, err := c.Campaign(context.Background(), store.ElectionPath, []byte("me"))
	if err != nil {
		t.Fatal(err)
	}
	n := &atomic.Int64{}
	return store.NewWriter(c, countingWriter{Writer: l.Writer(), n: n}, 5*time.Second), l, n
}

type countingWriter struct {
	coord.Writer
	n *atomic.Int64
}

func (w countingWriter) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (coord.Node, error) {
	w.n.Add(1)
	return w.Writer.Create(ctx, path, value, opts...)
}

func (w countingWriter) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	w.n.Add(1)
	return w.Writer.Set(ctx, path, value, expected)
}

func (w countingWriter) Delete(ctx context.Context, path string, expected coord.Version) error {
	w.n.Add(1)
	return w.Writer.Delete(ctx, path, expected)
}

func (w countingWriter) Apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	w.n.Add(1)
	return w.Writer.Apply(ctx, ops...)
}

func newJobs(names ...string) []model.Job {
	out := make([]model.Job, len(names))
	for i, n := range names {
		out[i] = model.Job{JobName: n, AppName: "a", Cron: "0 0 0 * * ?"}
	}
	return out
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return out
}

// storedJobs lists the names of the stored job configurations.
func storedJobs(st *schedtest.Store) []string {
	var out []string
	for _, p := range st.Paths(store.JobConfigRoot) {
		if name, ok := strings.CutPrefix(p, store.JobConfigRoot+"/"); ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// wantRegistered checks that every job of names has its configuration and
// a fresh ready node, at the version CreateJobs returned, and no disable
// flag.
func wantRegistered(t *testing.T, st *schedtest.Store, w *store.Writer, names []string, res []store.Registered) {
	t.Helper()
	ready, err := w.Ready(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range names {
		if res[i].Err != nil {
			t.Fatalf("job %s: %v, want registered", name, res[i].Err)
		}
		if _, ok := st.Value(store.JobPath(name)); !ok {
			t.Fatalf("job %s registered without its configuration", name)
		}
		rn, ok := ready[name]
		switch {
		case !ok:
			t.Fatalf("job %s registered without a ready node", name)
		case len(rn.FireTimes) != 0 || !rn.LastFire.IsZero() || !rn.RegisteredAt.Equal(t0):
			t.Fatalf("job %s's ready node is %+v, want a fresh one registered at %v", name, rn, t0)
		case rn.Version != res[i].Ready.Version || !res[i].Ready.RegisteredAt.Equal(t0):
			t.Fatalf("job %s: CreateJobs returned ready node %+v, the store has version %d", name, res[i].Ready, rn.Version)
		}
		if _, ok := st.Value(store.DisabledJobPath(name)); ok {
			t.Fatalf("job %s registered with a disable flag", name)
		}
	}
}

func TestCreateJobsWritesManyJobsInOneBatch(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _, writes := countingTerm(t, st)
	// On an empty store the batches find the parents missing and make them.
	first := numbered("first", 3)
	res, err := w.CreateJobs(ctx, newJobs(first...), t0)
	if err != nil {
		t.Fatal(err)
	}
	wantRegistered(t, st, w, first, res)

	writes.Store(0)
	names := numbered("j", 20)
	res, err = w.CreateJobs(ctx, newJobs(names...), t0)
	if err != nil {
		t.Fatal(err)
	}
	wantRegistered(t, st, w, names, res)
	if n := writes.Load(); n != 1 {
		t.Fatalf("20 registrations took %d writes, want 1 batch", n)
	}
}

func TestCreateJobsSplitsBatchesAtTheLimits(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _, writes := countingTerm(t, st)
	registerJob(t, w, "warm-up") // the parents
	mustNot(t, w.SetJobDisabled(ctx, "warm-up", true, t0))

	writes.Store(0)
	names := numbered("j", 60) // 4 ops each: 25 to a batch
	res, err := w.CreateJobs(ctx, newJobs(names...), t0)
	if err != nil {
		t.Fatal(err)
	}
	wantRegistered(t, st, w, names, res)
	if n := writes.Load(); n != 3 {
		t.Fatalf("60 registrations took %d writes, want 3 batches", n)
	}

	writes.Store(0)
	big := newJobs("big1", "big2", "big3")
	for i := range big {
		big[i].Description = strings.Repeat("x", coord.MaxValueSize*2/5)
	}
	res, err = w.CreateJobs(ctx, big, t0)
	if err != nil {
		t.Fatal(err)
	}
	wantRegistered(t, st, w, []string{"big1", "big2", "big3"}, res)
	if n := writes.Load(); n != 2 {
		t.Fatalf("3 registrations of 2/5 of a batch's bytes took %d writes, want 2 batches", n)
	}
}

func TestCreateJobsRefusesOnlyTheJobsThatExist(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _ := term(t, st)
	registerJob(t, w, "b")
	before, _ := st.Value(store.JobPath("b"))

	res, err := w.CreateJobs(ctx, newJobs("a", "b", "c"), t0)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[1].Err, model.ErrExists) {
		t.Fatalf("registering the stored job b: %v, want model.ErrExists", res[1].Err)
	}
	wantRegistered(t, st, w, []string{"a", "c"}, []store.Registered{res[0], res[2]})
	if after, _ := st.Value(store.JobPath("b")); string(after) != string(before) {
		t.Fatalf("b's configuration changed by a refused registration:\n before %s\n after  %s", before, after)
	}
}

func TestCreateJobsReplacesWhatAnEarlierJobOfTheNameLeft(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _ := term(t, st)
	// Interrupted deregistrations left x's ready node, with a fire, and
	// y's disable flag: their configurations are gone.
	rn := registerJob(t, w, "x")
	rn.FireTimes = []time.Time{t0}
	if _, err := w.SetReady(ctx, "x", rn); err != nil {
		t.Fatal(err)
	}
	registerJob(t, w, "y")
	mustNot(t, w.SetJobDisabled(ctx, "y", true, t0))
	plain, err := st.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	for _, name := range []string{"x", "y"} {
		mustNot(t, plain.Delete(ctx, store.JobPath(name), coord.AnyVersion))
	}

	later := t0.Add(time.Hour)
	res, err := w.CreateJobs(ctx, newJobs("x", "y", "z"), later)
	if err != nil {
		t.Fatal(err)
	}
	if got := storedJobs(st); !slices.Equal(got, []string{"x", "y", "z"}) {
		t.Fatalf("stored jobs %v, want x, y, z", got)
	}
	ready, err := w.Ready(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"x", "y", "z"} {
		got := ready[name]
		if res[i].Err != nil || len(got.FireTimes) != 0 || !got.RegisteredAt.Equal(later) || got.Version != res[i].Ready.Version {
			t.Fatalf("job %s: %v, ready node %+v (returned %+v), want a fresh one registered at %v", name, res[i].Err, got, res[i].Ready, later)
		}
	}
	if _, ok := st.Value(store.DisabledJobPath("y")); ok {
		t.Fatal("y registered anew with the disable flag of its predecessor")
	}
}

func TestCreateJobsOfALostTermWritesNothing(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, l := term(t, st)
	registerJob(t, w, "warm-up")
	mustNot(t, l.Resign(ctx))

	res, err := w.CreateJobs(ctx, newJobs("a", "b", "c"), t0)
	if !errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("CreateJobs after the term ended: %v, want coord.ErrNotLeader", err)
	}
	for i, r := range res {
		if !errors.Is(r.Err, coord.ErrNotLeader) {
			t.Fatalf("job %d: %v, want coord.ErrNotLeader", i, r.Err)
		}
	}
	if got := storedJobs(st); !slices.Equal(got, []string{"warm-up"}) {
		t.Fatalf("stored jobs %v after a lost term's registrations, want only warm-up", got)
	}
}

func TestCreateJobsFailedBatchWritesNothingOfIt(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _ := term(t, st)
	registerJob(t, w, "warm-up")
	mustNot(t, w.SetJobDisabled(ctx, "warm-up", true, t0))

	injected := errors.New("injected")
	st.SetWriteHook(func(op, path string) error {
		if op == "create" && path == store.ReadyPath("c") {
			return injected
		}
		return nil
	})
	res, err := w.CreateJobs(ctx, newJobs("a", "b", "c", "d"), t0)
	st.SetWriteHook(nil)
	if !errors.Is(err, injected) {
		t.Fatalf("CreateJobs through a failing write: %v, want the failure", err)
	}
	for i, r := range res {
		if !errors.Is(r.Err, injected) {
			t.Fatalf("job %d: %v, want the failure", i, r.Err)
		}
	}
	if got := storedJobs(st); !slices.Equal(got, []string{"warm-up"}) {
		t.Fatalf("stored jobs %v after a failed batch, want only warm-up", got)
	}
	if got := st.Paths(store.ReadyPath("a")); len(got) != 0 {
		t.Fatalf("a failed batch left a ready node: %v", got)
	}
}

func mustNot(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
