package etcd

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
)

// lead campaigns in /e and returns the term.
func lead(t *testing.T, c *Coordinator, value string) *Leadership {
	t.Helper()
	l, err := c.Campaign(testContext(t), "/e", []byte(value))
	if err != nil {
		t.Fatalf("Campaign: %v", err)
	}
	return l.(*Leadership)
}

func TestFencedWritesSucceedWhileLeading(t *testing.T) {
	ns := namespace(t)
	c, ctx := open(t, ns), testContext(t)
	w := lead(t, c, "me").Writer()

	if p, err := w.Create(ctx, "/a/b", []byte("1")); err != nil || p.Path != "/a/b" {
		t.Fatalf("fenced Create: %q, %v", p.Path, err)
	}
	made, err := w.Create(ctx, "/q/job-", nil, coord.Sequential(), coord.Ephemeral())
	seq := made.Path
	if err != nil || seq != "/q/job-"+coord.FormatSequence(0) {
		t.Fatalf("fenced sequential ephemeral Create: %q, %v", seq, err)
	}
	n, err := c.Get(ctx, "/a/b")
	if err != nil {
		t.Fatal(err)
	}
	v, err := w.Set(ctx, "/a/b", []byte("2"), n.Version)
	if err != nil {
		t.Fatalf("fenced Set: %v", err)
	}
	if n, err := c.Get(ctx, "/a/b"); err != nil || string(n.Value) != "2" || n.Version != v {
		t.Fatalf("after fenced Set: %+v, %v; want value 2, version %d", n, err, v)
	}
	if err := w.Delete(ctx, "/a/b", v); err != nil {
		t.Fatalf("fenced Delete: %v", err)
	}
	if err := w.DeleteTree(ctx, "/q"); err != nil {
		t.Fatalf("fenced DeleteTree: %v", err)
	}
	for _, p := range []string{"/a/b", "/q", seq} {
		if _, err := c.Get(ctx, p); !errors.Is(err, coord.ErrNotFound) {
			t.Fatalf("Get(%s) after the fenced deletes: %v, want ErrNotFound", p, err)
		}
	}
}

// A fenced write keeps every error of the unfenced one while the term holds.
func TestFencedWritesKeepTheirErrors(t *testing.T) {
	ns := namespace(t)
	c, ctx := open(t, ns), testContext(t)
	w := lead(t, c, "me").Writer()
	if _, err := c.Create(ctx, "/p/kid", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, "/eph", nil, coord.Ephemeral()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		err   error
		want  error
		wantE string
	}{
		{name: "Create existing", err: second(w.Create(ctx, "/p", nil)), want: coord.ErrExists},
		{name: "Create under an ephemeral", err: second(w.Create(ctx, "/eph/x", nil)), want: coord.ErrEphemeralParent},
		{name: "Create invalid path", err: second(w.Create(ctx, "/p/", nil)), want: coord.ErrInvalidPath},
		{name: "Create large value", err: second(w.Create(ctx, "/big", make([]byte, coord.MaxValueSize+1))), want: coord.ErrValueTooLarge},
		{name: "Set stale version", err: second(w.Set(ctx, "/p/kid", nil, 1)), want: coord.ErrVersionConflict},
		{name: "Set missing", err: second(w.Set(ctx, "/missing", nil, coord.AnyVersion)), want: coord.ErrNotFound},
		{name: "Delete with children", err: w.Delete(ctx, "/p", coord.AnyVersion), want: coord.ErrNotEmpty},
		{name: "Delete stale version", err: w.Delete(ctx, "/p/kid", 1), want: coord.ErrVersionConflict},
		{name: "Delete missing", err: w.Delete(ctx, "/missing", coord.AnyVersion), want: coord.ErrNotFound},
		{name: "DeleteTree missing", err: w.DeleteTree(ctx, "/missing"), want: coord.ErrNotFound},
		{name: "DeleteTree of the root", err: w.DeleteTree(ctx, "/"), want: coord.ErrInvalidPath},
	} {
		if !errors.Is(tc.err, tc.want) || errors.Is(tc.err, coord.ErrNotLeader) {
			t.Errorf("fenced %s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// storeOf reads every key and value of namespace ns, to show that nothing
// was written.
func storeOf(t *testing.T, raw *clientv3.Client, ns string) []string {
	t.Helper()
	resp, err := raw.Get(testContext(t), "/"+ns+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key)+"="+string(kv.Value))
	}
	return out
}

// fencedWritesFail tries every kind of write through w and checks that each
// fails with one of want and that the store is unchanged.
func fencedWritesFail(t *testing.T, who string, w coord.Writer, raw *clientv3.Client, ns string, want ...error) {
	t.Helper()
	ctx := testContext(t)
	before := storeOf(t, raw, ns)
	is := func(err error) bool {
		return slices.ContainsFunc(want, func(w error) bool { return errors.Is(err, w) })
	}
	for _, tc := range []struct {
		op  string
		err error
	}{
		{"Create", second(w.Create(ctx, "/new/node", []byte("x")))},
		{"Create of an existing node", second(w.Create(ctx, "/x", []byte("x")))},
		{"sequential Create", second(w.Create(ctx, "/t/job-", nil, coord.Sequential()))},
		{"Set", second(w.Set(ctx, "/x", []byte("2"), coord.AnyVersion))},
		{"Set with a stale version", second(w.Set(ctx, "/x", []byte("2"), 1))},
		{"Delete", w.Delete(ctx, "/x", coord.AnyVersion)},
		{"Delete of a node with children", w.Delete(ctx, "/t", coord.AnyVersion)},
		{"DeleteTree", w.DeleteTree(ctx, "/t")},
		{"DeleteTree of a missing node", w.DeleteTree(ctx, "/missing")},
	} {
		if !is(tc.err) {
			t.Errorf("%s: %s: %v, want one of %v", who, tc.op, tc.err, want)
		}
	}
	if after := storeOf(t, raw, ns); !slices.Equal(before, after) {
		t.Errorf("%s: refused writes changed the store:\nbefore %q\nafter  %q", who, before, after)
	}
}

// serverFence is a Writer with l's fence whose term the client never sees
// end, so only etcd's compare can refuse its writes.
func serverFence(c *Coordinator, l *Leadership) coord.Writer {
	return writer{c: c, f: &fence{election: l.election, key: l.key, rev: l.rev, lost: make(chan struct{})}}
}

func TestFencedWritesFailOnceTheTermEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, c *Coordinator, l *Leadership, raw *clientv3.Client)
		// what the ended session's own writes may fail with
		own []error
	}{
		{
			name: "Resign",
			end: func(t *testing.T, c *Coordinator, l *Leadership, raw *clientv3.Client) {
				if err := l.Resign(testContext(t)); err != nil {
					t.Fatal(err)
				}
			},
			own: []error{coord.ErrNotLeader},
		},
		{
			name: "CandidateDeletedFromOutside",
			end: func(t *testing.T, c *Coordinator, l *Leadership, raw *clientv3.Client) {
				if _, err := raw.Delete(testContext(t), l.Key()); err != nil {
					t.Fatal(err)
				}
			},
			own: []error{coord.ErrNotLeader},
		},
		{
			name: "SessionRevoked",
			end: func(t *testing.T, c *Coordinator, l *Leadership, raw *clientv3.Client) {
				if _, err := raw.Revoke(testContext(t), c.Lease()); err != nil {
					t.Fatal(err)
				}
			},
			own: []error{coord.ErrSessionLost, coord.ErrNotLeader},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t)
			old, next, raw, ctx := open(t, ns), open(t, ns), rawClient(t), testContext(t)
			for _, p := range []string{"/x", "/t/kid"} {
				if _, err := old.Create(ctx, p, []byte("1")); err != nil {
					t.Fatal(err)
				}
			}
			l := lead(t, old, "old")
			w := l.Writer()
			if _, err := w.Set(ctx, "/x", []byte("1"), coord.AnyVersion); err != nil {
				t.Fatalf("fenced Set while leading: %v", err)
			}

			tc.end(t, old, l, raw)
			select {
			case <-l.Lost():
			case <-time.After(3 * testTTL):
				t.Fatal("Lost not closed after the term ended")
			}
			fencedWritesFail(t, "the old term's writer", w, raw, ns, tc.own...)
			if tc.name != "SessionRevoked" {
				// Only etcd's compare stands between this fence and the store.
				fencedWritesFail(t, "the old term's fence checked by etcd", serverFence(old, l), raw, ns, coord.ErrNotLeader)
			}
			// The old token is refused on a live session too.
			fencedWritesFail(t, "the old term's fence on another session", serverFence(next, l), raw, ns, coord.ErrNotLeader)

			// The next leader's writes go through while the old ones fail.
			nl := lead(t, next, "next")
			if nl.Token() <= l.Token() {
				t.Fatalf("the next term's token %d is not above the old %d", nl.Token(), l.Token())
			}
			nw := nl.Writer()
			if _, err := nw.Set(ctx, "/x", []byte("next"), coord.AnyVersion); err != nil {
				t.Fatalf("the next leader's fenced Set: %v", err)
			}
			if _, err := nw.Create(ctx, "/t/next", nil); err != nil {
				t.Fatalf("the next leader's fenced Create: %v", err)
			}
			fencedWritesFail(t, "the old term's writer after a new term began", w, raw, ns, tc.own...)
			fencedWritesFail(t, "the old term's fence after a new term began", serverFence(next, l), raw, ns, coord.ErrNotLeader)
			if n, err := next.Get(ctx, "/x"); err != nil || string(n.Value) != "next" {
				t.Fatalf("/x after both writers: %+v, %v; want the next leader's value", n, err)
			}
			if err := nw.DeleteTree(ctx, "/t"); err != nil {
				t.Fatalf("the next leader's fenced DeleteTree: %v", err)
			}
		})
	}
}

// The fence is one more compare, and refused writes say ErrNotLeader even
// where another compare fails with it.
func TestFencedDeepCreateFitsAndFenceWinsOverOtherFailures(t *testing.T) {
	ns := namespace(t)
	c, ctx := open(t, ns), testContext(t)
	l := lead(t, c, "me")
	w := l.Writer()
	deepest := strings.Repeat("/x", coord.MaxPathDepth)
	if _, err := w.Create(ctx, deepest, nil, coord.Sequential()); err != nil {
		t.Fatalf("fenced create %d deep with every ancestor missing: %v", coord.MaxPathDepth, err)
	}
	sibling := coord.Parent(deepest) + "/y"
	if _, err := w.Create(ctx, sibling, nil, coord.Sequential(), coord.Ephemeral()); err != nil {
		t.Fatalf("fenced create %d deep with every ancestor there: %v", coord.MaxPathDepth, err)
	}
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	sw := serverFence(c, l)
	if _, err := sw.Create(ctx, "/x", nil); !errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("deposed Create of an existing node: %v, want ErrNotLeader", err)
	}
	if _, err := sw.Create(ctx, coord.Parent(deepest)+"/z", nil); !errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("deposed deepest Create: %v, want ErrNotLeader", err)
	}
	if err := sw.Delete(ctx, "/x", coord.AnyVersion); !errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("deposed Delete of a node with children: %v, want ErrNotLeader", err)
	}
	if err := sw.DeleteTree(ctx, "/x"); !errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("deposed DeleteTree: %v, want ErrNotLeader", err)
	}
	if err := c.DeleteTree(ctx, "/x"); err != nil {
		t.Fatal(err)
	}
}

// After Close a fenced write says ErrClosed, like every other call.
func TestFencedWritesAfterClose(t *testing.T) {
	c := open(t, namespace(t))
	w := lead(t, c, "me").Writer()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := w.Set(ctx, "/x", nil, coord.AnyVersion); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("fenced Set after Close: %v, want ErrClosed", err)
	}
	if err := w.DeleteTree(ctx, "/x"); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("fenced DeleteTree after Close: %v, want ErrClosed", err)
	}
}
