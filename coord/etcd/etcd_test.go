package etcd

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/wait"
)

func TestKeyLayoutEncodesDepth(t *testing.T) {
	k := keyspace{root: "/ns"}
	for _, tc := range []struct{ got, want string }{
		{k.node("/a"), "/ns/n/001/a"},
		{k.node("/a/b"), "/ns/n/002/a/b"},
		{k.children("/"), "/ns/n/001/"},
		{k.children("/a"), "/ns/n/002/a/"},
		{k.children("/a/b"), "/ns/n/003/a/b/"},
		{k.electionPrefix("/ha/election"), "/ns/n/003/ha/election"},
		{k.seq("/"), "/ns/s/"},
		{k.seq("/q"), "/ns/s/q"},
		{k.seqBelow("/q"), "/ns/s/q/"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if got := strings.Join(ancestors("/a/b/c"), " "); got != "/a /a/b" {
		t.Errorf("ancestors(/a/b/c) = %q", got)
	}
	if got := ancestors("/a"); len(got) != 0 {
		t.Errorf("ancestors(/a) = %q", got)
	}
}

// etcd refuses transactions of more than 128 operations (its default
// --max-txn-ops); the widest ones are at the extremes of depth.
func TestTransactionsFitEtcdsOperationLimit(t *testing.T) {
	c := &Coordinator{keys: keyspace{root: "/ns"}}
	if n := len(c.deleteTreeOps("/a")); n > 128 {
		t.Fatalf("DeleteTree of a top-level node takes %d operations", n)
	}
	ctx := testContext(t)
	c = open(t, namespace(t))
	deepest := strings.Repeat("/x", coord.MaxPathDepth)
	if _, err := c.Create(ctx, deepest, nil, coord.Sequential()); err != nil {
		t.Fatalf("create %d deep with every ancestor missing: %v", coord.MaxPathDepth, err)
	}
	sibling := coord.Parent(deepest) + "/y"
	if _, err := c.Create(ctx, sibling, nil, coord.Sequential(), coord.Ephemeral()); err != nil {
		t.Fatalf("create %d deep with every ancestor there: %v", coord.MaxPathDepth, err)
	}
	if err := c.DeleteTree(ctx, "/x"); err != nil {
		t.Fatal(err)
	}
}

// keysUnder lists every key of namespace ns, for looking behind the API.
func keysUnder(t *testing.T, raw *clientv3.Client, ns string) []string {
	t.Helper()
	resp, err := raw.Get(testContext(t), "/"+ns+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

func TestRefusedCallsWriteNothing(t *testing.T) {
	ns := namespace(t)
	c, raw, ctx := open(t, ns), rawClient(t), testContext(t)
	big := make([]byte, coord.MaxValueSize+1)
	if _, err := c.Create(ctx, "/a/", nil); !errors.Is(err, coord.ErrInvalidPath) {
		t.Fatalf("Create(/a/): %v", err)
	}
	if _, err := c.Create(ctx, "/a/b", big); !errors.Is(err, coord.ErrValueTooLarge) {
		t.Fatalf("Create with a large value: %v", err)
	}
	if _, err := c.Campaign(ctx, "/e/", nil); !errors.Is(err, coord.ErrInvalidPath) {
		t.Fatalf("Campaign(/e/): %v", err)
	}
	if _, err := c.Campaign(ctx, "/e", big); !errors.Is(err, coord.ErrValueTooLarge) {
		t.Fatalf("Campaign with a large value: %v", err)
	}
	if keys := keysUnder(t, raw, ns); len(keys) != 0 {
		t.Fatalf("refused calls wrote %q", keys)
	}
}

func TestSetKeepsAnEphemeralNodeOnItsLease(t *testing.T) {
	ns := namespace(t)
	c, raw, ctx := open(t, ns), rawClient(t), testContext(t)
	if _, err := c.Create(ctx, "/e", []byte("1"), coord.Ephemeral()); err != nil {
		t.Fatal(err)
	}
	v, err := c.Set(ctx, "/e", []byte("2"), coord.AnyVersion)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := raw.Get(ctx, c.keys.node("/e"))
	if err != nil {
		t.Fatal(err)
	}
	kv := resp.Kvs[0]
	if clientv3.LeaseID(kv.Lease) != c.Lease() || string(kv.Value) != "2" || kv.ModRevision != int64(v) {
		t.Fatalf("after Set: lease %x value %q mod revision %d; want lease %x value 2 revision %d", kv.Lease, kv.Value, kv.ModRevision, c.Lease(), v)
	}
}

func TestConcurrentSequentialCreatesGetDistinctNumbers(t *testing.T) {
	ns := namespace(t)
	ctx := testContext(t)
	sessions := []*Coordinator{open(t, ns), open(t, ns), open(t, ns)}
	const n = 30
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		made []string
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := sessions[i%len(sessions)].Create(ctx, "/q/task-", nil, coord.Sequential())
			if err != nil {
				t.Errorf("create %d: %v", i, err)
				return
			}
			mu.Lock()
			made = append(made, p.Path)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Strings(made)
	for i, p := range made {
		if want := "/q/task-" + coord.FormatSequence(int64(i)); p != want {
			t.Fatalf("sequential names %q: #%d is %q, want %q", made, i, p, want)
		}
	}
}

func TestDeleteAndDeleteTreeRemoveSequenceCounters(t *testing.T) {
	ns := namespace(t)
	c, raw, ctx := open(t, ns), rawClient(t), testContext(t)
	for _, p := range []string{"/t/job-", "/t/a/job-", "/u/job-"} {
		if _, err := c.Create(ctx, p, nil, coord.Sequential()); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteTree(ctx, "/t"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTree(ctx, "/u/job-0000000000"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "/u", coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if keys := keysUnder(t, raw, ns); len(keys) != 0 {
		t.Fatalf("left behind: %q", keys)
	}
	// A re-created parent counts afresh, as on ZooKeeper.
	p, err := c.Create(ctx, "/t/job-", nil, coord.Sequential())
	if err != nil || p.Path != "/t/job-0000000000" {
		t.Fatalf("sequential create under a re-created parent: %q, %v", p.Path, err)
	}
}

func TestContextErrorsAreWrapped(t *testing.T) {
	c := open(t, namespace(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Get(ctx, "/a"); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "get /a") {
		t.Fatalf("Get with a cancelled context: %v", err)
	}
	if _, err := c.Create(ctx, "/a/b", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Create with a cancelled context: %v", err)
	}
	if _, err := c.Campaign(ctx, "/e", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Campaign with a cancelled context: %v", err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), -time.Second)
	defer dcancel()
	if err := c.Delete(dctx, "/a", coord.AnyVersion); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Delete past its deadline: %v", err)
	}
	// A failed campaign releases the election.
	l, err := c.Campaign(testContext(t), "/e", nil)
	if err != nil {
		t.Fatalf("Campaign after a cancelled one: %v", err)
	}
	_ = l.Resign(testContext(t))
}

func TestCandidatesAreChildrenOfTheElectionNode(t *testing.T) {
	ns := namespace(t)
	c, ctx := open(t, ns), testContext(t)
	l, err := c.Campaign(ctx, "/ha/election", []byte("me"))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%x", c.Lease())
	names, err := c.Children(ctx, "/ha/election")
	if err != nil || len(names) != 1 || names[0] != want {
		t.Fatalf("Children(/ha/election) = %q, %v; want [%s]", names, err, want)
	}
	n, err := c.Get(ctx, "/ha/election/"+want)
	if err != nil || string(n.Value) != "me" || int64(n.Version) != l.Token() {
		t.Fatalf("the candidate node: %+v, %v; want value me, version %d", n, err, l.Token())
	}
	// A candidate is ephemeral: nothing can be made below it.
	if _, err := c.Create(ctx, "/ha/election/"+want+"/x", nil); !errors.Is(err, coord.ErrEphemeralParent) {
		t.Fatalf("Create under a candidate: %v", err)
	}
	// The leadership's fence holds while it leads and fails once it is over.
	fenced := func() bool {
		resp, err := c.Client().Txn(ctx).If(l.(*Leadership).IsOwner()).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Succeeded
	}
	if !fenced() {
		t.Fatal("IsOwner fails while leading")
	}
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if fenced() {
		t.Fatal("IsOwner holds after Resign")
	}
	if err := c.Delete(ctx, "/ha/election", coord.AnyVersion); err != nil {
		t.Fatalf("Delete of the election node after the last candidate left: %v", err)
	}
}

// A waiting candidate deleted from outside stops campaigning;
// concurrency.Election alone would wait on and then report a win.
func TestDeletedWaitingCandidateEndsItsCampaign(t *testing.T) {
	ns := namespace(t)
	a, b, ctx := open(t, ns), open(t, ns), testContext(t)
	la, err := a.Campaign(ctx, "/e", []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer la.Resign(ctx)
	result := campaignOnce(ctx, b, "/e", []byte("b"))
	name := fmt.Sprintf("%x", b.Lease())
	wait.Poll{Timeout: 5 * time.Second, Interval: 20 * time.Millisecond}.NoError(t, "delete b's candidate", func() error {
		err := a.Delete(ctx, "/e/"+name, coord.AnyVersion)
		if err != nil && !errors.Is(err, coord.ErrNotFound) {
			return wait.Stop(err)
		}
		return err
	})
	select {
	case err := <-result:
		if !errors.Is(err, coord.ErrNotLeader) {
			t.Fatalf("Campaign of a deleted candidate: %v, want ErrNotLeader", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the deleted candidate's campaign went on")
	}
	if closed(b.Done()) {
		t.Fatal("a deleted candidacy ended the session")
	}
}

// The check behind etcd #19597: a win reported by concurrency.Election is
// confirmed only if the candidate key is there, is the same incarnation and
// is on this session's lease.
func TestWinWithoutLiveKeyIsNotConfirmed(t *testing.T) {
	ns := namespace(t)
	c, raw, ctx := open(t, ns), rawClient(t), testContext(t)
	prefix := c.keys.electionPrefix("/e")
	key := fmt.Sprintf("%s/%x", prefix, c.Lease())
	candidacyOn := func(rev int64) *candidacy {
		return &candidacy{c: c, key: key, campCtx: ctx, el: concurrency.ResumeElection(c.session, prefix, key, rev)}
	}

	if _, err := candidacyOn(1).confirm(); !errors.Is(err, errCandidateDeleted) {
		t.Fatalf("confirm with no key: %v", err)
	}
	// A key of the right name on another lease is not ours.
	other, err := raw.Grant(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	put, err := raw.Put(ctx, key, "x", clientv3.WithLease(other.ID))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := candidacyOn(put.Header.Revision).confirm(); err == nil || errors.Is(err, errCandidateDeleted) {
		t.Fatalf("confirm of a key on another lease: %v", err)
	}
	// A re-created key is another incarnation.
	if _, err := candidacyOn(put.Header.Revision - 1).confirm(); !errors.Is(err, errCandidateDeleted) {
		t.Fatalf("confirm of another incarnation: %v", err)
	}
	if _, err := raw.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	put, err = raw.Put(ctx, key, "x", clientv3.WithLease(c.Lease()))
	if err != nil {
		t.Fatal(err)
	}
	l, err := candidacyOn(put.Header.Revision).confirm()
	if err != nil || l.Token() != put.Header.Revision {
		t.Fatalf("confirm of a live key: %v, %v", l, err)
	}
	// Once the session has ended nothing is confirmed.
	if _, err := raw.Revoke(ctx, c.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(3 * testTTL):
		t.Fatal("Done not closed after the lease was revoked")
	}
	if _, err := candidacyOn(put.Header.Revision).confirm(); err == nil {
		t.Fatal("confirmed a win after the session ended")
	}
}

func TestSessionLossEndsEverything(t *testing.T) {
	ns := namespace(t)
	c, raw, ctx := open(t, ns), rawClient(t), testContext(t)
	l, err := c.Campaign(ctx, "/e", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Revoke(ctx, c.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-time.After(3 * testTTL):
		t.Fatal("Lost not closed after the lease was revoked")
	}
	select {
	case <-c.Done():
	case <-time.After(3 * testTTL):
		t.Fatal("Done not closed after the lease was revoked")
	}
	if _, err := c.Get(ctx, "/x"); !errors.Is(err, coord.ErrSessionLost) {
		t.Fatalf("Get after the session ended: %v", err)
	}
	if err := l.Resign(ctx); err != nil {
		t.Fatalf("Resign after loss: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close after loss: %v", err)
	}
	if _, err := c.Get(ctx, "/x"); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
}

// campaignOnce runs c's Campaign in the background and hands over its
// error; a leadership it wins is resigned at once.
func campaignOnce(ctx context.Context, c *Coordinator, path string, value []byte) <-chan error {
	result := make(chan error, 1)
	go func() {
		l, err := c.Campaign(ctx, path, value)
		if err == nil {
			_ = l.Resign(ctx)
		}
		result <- err
	}()
	return result
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
