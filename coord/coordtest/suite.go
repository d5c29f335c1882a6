package coordtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
)

// scenarioTimeout bounds each scenario; a hung backend fails instead of
// stalling the whole run.
const scenarioTimeout = 2 * time.Minute

// election is the election name the scenarios campaign in, the scheduler's.
const election = "/ha/election"

// Run runs every scenario against h, each in a namespace of its own.
func Run(t *testing.T, h Harness) {
	for _, s := range scenarios() {
		t.Run(s.name, func(t *testing.T) {
			e := newEnv(t, h)
			s.run(t, e)
		})
	}
}

type scenario struct {
	name string
	run  func(*testing.T, *env)
}

// scenarios lists the suite. Names say the behaviour proved.
func scenarios() []scenario {
	return append([]scenario{
		{"CreateGetRoundTrip", testCreateGetRoundTrip},
		{"CreateExistingFails", testCreateExistingFails},
		{"CreateMakesMissingParents", testCreateMakesMissingParents},
		{"GetMissingIsNotFound", testGetMissingIsNotFound},
		{"SetWithCurrentVersion", testSetWithCurrentVersion},
		{"SetWithStaleVersionConflicts", testSetWithStaleVersionConflicts},
		{"SetWithAnyVersion", testSetWithAnyVersion},
		{"SetMissingIsNotFound", testSetMissingIsNotFound},
		{"VersionOfDeletedNodeNeverMatchesRecreated", testVersionOfDeletedNodeNeverMatchesRecreated},
		{"ConcurrentCreatesHaveOneWinner", testConcurrentCreatesHaveOneWinner},
		{"ConcurrentCASIncrementsLoseNoUpdate", testConcurrentCASIncrementsLoseNoUpdate},
		{"DeleteWithChildrenIsNotEmpty", testDeleteWithChildrenIsNotEmpty},
		{"DeleteChecksVersion", testDeleteChecksVersion},
		{"DeleteTreeRemovesEverythingBelow", testDeleteTreeRemovesEverythingBelow},
		{"SequentialNamesAreTenDigitsAndIncrease", testSequentialNamesAreTenDigitsAndIncrease},
		{"ChildrenAreDirectOnlyAndSorted", testChildrenAreDirectOnlyAndSorted},
		{"ChildrenOfMissingIsNotFound", testChildrenOfMissingIsNotFound},
		{"ListReadsDirectChildrenWithValues", testListReadsDirectChildrenWithValues},
		{"ListOfMissingIsNotFound", testListOfMissingIsNotFound},
		{"DeepPathsWork", testDeepPathsWork},
		{"InvalidPathsAreRefusedAndNothingWritten", testInvalidPathsAreRefusedAndNothingWritten},
		{"BinaryValuesRoundTrip", testBinaryValuesRoundTrip},
		{"LargestValueFitsAndLargerIsRefused", testLargestValueFitsAndLargerIsRefused},
		{"TenThousandChildren", testTenThousandChildren},
		{"NamespacesAreIsolated", testNamespacesAreIsolated},
		{"EphemeralGoneAfterClose", testEphemeralGoneAfterClose},
		{"EphemeralCannotHaveChildren", testEphemeralCannotHaveChildren},
		{"CallsAfterCloseFail", testCallsAfterCloseFail},
		{"SessionExpiryEndsTheSession", testSessionExpiryEndsTheSession},
		{"SafeUntilIsAheadWhileAliveAndZeroAfter", testSafeUntilIsAheadWhileAliveAndZeroAfter},
		{"SingleLeaderAmongFiveCandidates", testSingleLeaderAmongFiveCandidates},
		{"LeaderValueAndNoLeader", testLeaderValueAndNoLeader},
		{"ResignHandsOverAndTokenGrows", testResignHandsOverAndTokenGrows},
		{"ClosingTheLeadersCoordinatorHandsOver", testClosingTheLeadersCoordinatorHandsOver},
		{"CancelledCampaignLeavesNothingBehind", testCancelledCampaignLeavesNothingBehind},
		{"CandidateDeletedFromOutsideLosesLeadership", testCandidateDeletedFromOutsideLosesLeadership},
		{"SecondCampaignInOneElectionIsRefused", testSecondCampaignInOneElectionIsRefused},
		{"WaitingCampaignEndsWithSessionLost", testWaitingCampaignEndsWithSessionLost},
		{"RunElectionRotatesFiveCandidates", testRunElectionRotatesFiveCandidates},
		{"RunElectionCancelsLeadContextOnLoss", testRunElectionCancelsLeadContextOnLoss},
		{"RunElectionOpensNewSessionAfterExpiry", testRunElectionOpensNewSessionAfterExpiry},
	}, append(fenceAndWatchScenarios(), batchScenarios()...)...)
}

// env is one scenario's world: a namespace of its own and the sessions opened
// in it, closed when the scenario ends.
type env struct {
	h   Harness
	ns  string
	ctx context.Context
}

func newEnv(t *testing.T, h Harness) *env {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	t.Cleanup(cancel)
	return &env{h: h, ns: "ct-" + hex.EncodeToString(b[:]), ctx: ctx}
}

// open opens a session in the scenario's namespace.
func (e *env) open(t *testing.T) coord.Coordinator {
	t.Helper()
	return e.openNS(t, e.ns)
}

func (e *env) openNS(t *testing.T, ns string) coord.Coordinator {
	t.Helper()
	c, err := e.h.Open(e.ctx, ns)
	if err != nil {
		t.Fatalf("open a session in namespace %s: %v", ns, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// within is a deadline generous enough for anything the session timeout
// bounds.
func (e *env) within() time.Duration { return 3*e.h.SessionTimeout() + 5*time.Second }

func mustCreate(t *testing.T, ctx context.Context, c coord.Coordinator, path string, value []byte, opts ...coord.CreateOption) coord.Node {
	t.Helper()
	got, err := c.Create(ctx, path, value, opts...)
	if err != nil {
		t.Fatalf("Create(%s): %v", path, err)
	}
	return got
}

func mustGet(t *testing.T, ctx context.Context, c coord.Coordinator, path string) coord.Node {
	t.Helper()
	n, err := c.Get(ctx, path)
	if err != nil {
		t.Fatalf("Get(%s): %v", path, err)
	}
	return n
}

func mustChildren(t *testing.T, ctx context.Context, c coord.Coordinator, path string) []string {
	t.Helper()
	names, err := c.Children(ctx, path)
	if err != nil {
		t.Fatalf("Children(%s): %v", path, err)
	}
	return names
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func wantNames(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s: not within %v", what, d)
	}
}

type campaignResult struct {
	l   coord.Leadership
	err error
}

// campaign starts a campaign in the background; its result arrives on the
// returned channel.
func campaign(ctx context.Context, c coord.Coordinator, value string) <-chan campaignResult {
	ch := make(chan campaignResult, 1)
	go func() {
		l, err := c.Campaign(ctx, election, []byte(value))
		ch <- campaignResult{l, err}
	}()
	return ch
}

func mustLead(t *testing.T, ch <-chan campaignResult, d time.Duration, who string) coord.Leadership {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: Campaign: %v", who, r.err)
		}
		return r.l
	case <-time.After(d):
		t.Fatalf("%s: did not become leader within %v", who, d)
	}
	return nil
}

func mustWait(t *testing.T, ch <-chan campaignResult, d time.Duration, who string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: Campaign returned (%v, %v) while another candidate leads; want it to wait", who, r.l, r.err)
	case <-time.After(d):
	}
}

func testCreateGetRoundTrip(t *testing.T, e *env) {
	c := e.open(t)
	got := mustCreate(t, e.ctx, c, "/a", []byte("hello"))
	if got.Path != "/a" || string(got.Value) != "hello" {
		t.Fatalf("Create returned {%q %q}, want {/a hello}", got.Path, got.Value)
	}
	n := mustGet(t, e.ctx, c, "/a")
	if n.Path != "/a" || string(n.Value) != "hello" {
		t.Fatalf("Get(/a) = {%q %q}, want {/a hello}", n.Path, n.Value)
	}
	if n.Version == coord.AnyVersion || n.Version == 0 {
		t.Fatalf("Get(/a) version %d, want a real version", n.Version)
	}
	other := e.open(t)
	if n2 := mustGet(t, e.ctx, other, "/a"); string(n2.Value) != "hello" || n2.Version != n.Version {
		t.Fatalf("another session reads {%q %d}, want {hello %d}", n2.Value, n2.Version, n.Version)
	}
}

func testCreateExistingFails(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/a", []byte("first"))
	_, err := c.Create(e.ctx, "/a", []byte("second"))
	wantErr(t, "Create of an existing node", err, coord.ErrExists)
	if n := mustGet(t, e.ctx, c, "/a"); string(n.Value) != "first" {
		t.Fatalf("after the failed create the value is %q, want first", n.Value)
	}
}

func testCreateMakesMissingParents(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/a/b/c", []byte("leaf"))
	for _, p := range []string{"/a", "/a/b"} {
		if n := mustGet(t, e.ctx, c, p); len(n.Value) != 0 {
			t.Fatalf("parent %s made with value %q, want empty", p, n.Value)
		}
	}
	wantNames(t, "Children(/a)", mustChildren(t, e.ctx, c, "/a"), []string{"b"})
	wantNames(t, "Children(/a/b)", mustChildren(t, e.ctx, c, "/a/b"), []string{"c"})
	// Parents are persistent: they outlive the session that made them.
	_ = c.Close()
	c2 := e.open(t)
	mustGet(t, e.ctx, c2, "/a/b")
}

func testGetMissingIsNotFound(t *testing.T, e *env) {
	c := e.open(t)
	_, err := c.Get(e.ctx, "/missing")
	wantErr(t, "Get(/missing)", err, coord.ErrNotFound)
	_, err = c.Get(e.ctx, "/missing/deeper")
	wantErr(t, "Get(/missing/deeper)", err, coord.ErrNotFound)
}

func testSetWithCurrentVersion(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/a", []byte("v1"))
	n := mustGet(t, e.ctx, c, "/a")
	v2, err := c.Set(e.ctx, "/a", []byte("v2"), n.Version)
	if err != nil {
		t.Fatalf("Set with the current version: %v", err)
	}
	if v2 == n.Version {
		t.Fatalf("Set returned the old version %d", v2)
	}
	got := mustGet(t, e.ctx, c, "/a")
	if string(got.Value) != "v2" || got.Version != v2 {
		t.Fatalf("after Set: {%q %d}, want {v2 %d}", got.Value, got.Version, v2)
	}
	v3, err := c.Set(e.ctx, "/a", []byte("v3"), v2)
	if err != nil {
		t.Fatalf("Set with the version the last Set returned: %v", err)
	}
	if v3 == v2 {
		t.Fatalf("second Set returned the same version %d", v3)
	}
}

func testSetWithStaleVersionConflicts(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/a", []byte("v1"))
	n := mustGet(t, e.ctx, c, "/a")
	if _, err := c.Set(e.ctx, "/a", []byte("v2"), n.Version); err != nil {
		t.Fatal(err)
	}
	_, err := c.Set(e.ctx, "/a", []byte("stale"), n.Version)
	wantErr(t, "Set with a stale version", err, coord.ErrVersionConflict)
	if got := mustGet(t, e.ctx, c, "/a"); string(got.Value) != "v2" {
		t.Fatalf("a conflicting Set changed the value to %q", got.Value)
	}
}

func testSetWithAnyVersion(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/a", []byte("v1"))
	before := mustGet(t, e.ctx, c, "/a")
	v, err := c.Set(e.ctx, "/a", []byte("any"), coord.AnyVersion)
	if err != nil {
		t.Fatalf("Set with AnyVersion: %v", err)
	}
	got := mustGet(t, e.ctx, c, "/a")
	if string(got.Value) != "any" || got.Version != v || v == before.Version {
		t.Fatalf("after Set(AnyVersion): {%q %d}, returned %d, before %d", got.Value, got.Version, v, before.Version)
	}
}

func testSetMissingIsNotFound(t *testing.T, e *env) {
	c := e.open(t)
	_, err := c.Set(e.ctx, "/missing", []byte("x"), coord.AnyVersion)
	wantErr(t, "Set(AnyVersion) of a missing node", err, coord.ErrNotFound)
	_, err = c.Set(e.ctx, "/missing", []byte("x"), 12345)
	wantErr(t, "Set(version) of a missing node", err, coord.ErrNotFound)
	_, err = c.Get(e.ctx, "/missing")
	wantErr(t, "Get after a failed Set", err, coord.ErrNotFound)
}

// On ZooKeeper the version check is a read followed by a conditional write on
// ZooKeeper's own per-node version: a delete and re-create inside that one
// round trip can still slip through. This scenario proves the rule outside
// that window.
func testVersionOfDeletedNodeNeverMatchesRecreated(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/a", []byte("same"))
	old := mustGet(t, e.ctx, c, "/a")
	if err := c.Delete(e.ctx, "/a", old.Version); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	mustCreate(t, e.ctx, c, "/a", []byte("same"))
	renewed := mustGet(t, e.ctx, c, "/a")
	if renewed.Version == old.Version {
		t.Fatalf("re-created node has the deleted node's version %d", old.Version)
	}
	_, err := c.Set(e.ctx, "/a", []byte("late"), old.Version)
	wantErr(t, "Set with the version of the deleted node", err, coord.ErrVersionConflict)
	err = c.Delete(e.ctx, "/a", old.Version)
	wantErr(t, "Delete with the version of the deleted node", err, coord.ErrVersionConflict)
}

func testConcurrentCreatesHaveOneWinner(t *testing.T, e *env) {
	sessions := []coord.Coordinator{e.open(t), e.open(t), e.open(t)}
	const racers = 12
	errs := make([]error, racers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = sessions[i%len(sessions)].Create(e.ctx, "/race/node", []byte(strconv.Itoa(i)))
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("racers %d and %d both created /race/node", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, coord.ErrExists):
			t.Fatalf("racer %d: got %v, want success or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no racer created /race/node")
	}
	if n := mustGet(t, e.ctx, sessions[0], "/race/node"); string(n.Value) != strconv.Itoa(winner) {
		t.Fatalf("value %q, want the winner's %d", n.Value, winner)
	}
}

func testConcurrentCASIncrementsLoseNoUpdate(t *testing.T, e *env) {
	sessions := []coord.Coordinator{e.open(t), e.open(t), e.open(t), e.open(t)}
	mustCreate(t, e.ctx, sessions[0], "/counter", []byte("0"))
	const workers, each = 20, 5
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
				_, err = c.Set(e.ctx, "/counter", []byte(strconv.Itoa(v+1)), n.Version)
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
		t.Fatalf("increment: %v", err)
	}
	if n := mustGet(t, e.ctx, sessions[0], "/counter"); string(n.Value) != strconv.Itoa(workers*each) {
		t.Fatalf("counter is %s after %d increments: updates were lost", n.Value, workers*each)
	}
}

func testDeleteWithChildrenIsNotEmpty(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/p/child", nil)
	p := mustGet(t, e.ctx, c, "/p")
	wantErr(t, "Delete of a node with a child", c.Delete(e.ctx, "/p", coord.AnyVersion), coord.ErrNotEmpty)
	wantErr(t, "Delete (with version) of a node with a child", c.Delete(e.ctx, "/p", p.Version), coord.ErrNotEmpty)
	mustGet(t, e.ctx, c, "/p/child")
	if err := c.Delete(e.ctx, "/p/child", coord.AnyVersion); err != nil {
		t.Fatalf("Delete of the child: %v", err)
	}
	if err := c.Delete(e.ctx, "/p", p.Version); err != nil {
		t.Fatalf("Delete of the emptied parent: %v", err)
	}
	_, err := c.Get(e.ctx, "/p")
	wantErr(t, "Get after Delete", err, coord.ErrNotFound)
}

func testDeleteChecksVersion(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/a", []byte("v1"))
	old := mustGet(t, e.ctx, c, "/a")
	v2, err := c.Set(e.ctx, "/a", []byte("v2"), old.Version)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Delete with a stale version", c.Delete(e.ctx, "/a", old.Version), coord.ErrVersionConflict)
	mustGet(t, e.ctx, c, "/a")
	if err := c.Delete(e.ctx, "/a", v2); err != nil {
		t.Fatalf("Delete with the current version: %v", err)
	}
	wantErr(t, "Delete of a missing node", c.Delete(e.ctx, "/a", coord.AnyVersion), coord.ErrNotFound)
}

func testDeleteTreeRemovesEverythingBelow(t *testing.T, e *env) {
	c := e.open(t)
	for _, p := range []string{"/t/a/b/c", "/t/a/d", "/t/e", "/tx/keep", "/t-sibling"} {
		mustCreate(t, e.ctx, c, p, []byte(p))
	}
	mustCreate(t, e.ctx, c, "/t/seq-", nil, coord.Sequential())
	if err := c.DeleteTree(e.ctx, "/t"); err != nil {
		t.Fatalf("DeleteTree(/t): %v", err)
	}
	for _, p := range []string{"/t", "/t/a", "/t/a/b/c", "/t/e"} {
		_, err := c.Get(e.ctx, p)
		wantErr(t, "Get("+p+") after DeleteTree", err, coord.ErrNotFound)
	}
	for _, p := range []string{"/tx/keep", "/t-sibling"} {
		mustGet(t, e.ctx, c, p)
	}
	wantNames(t, "Children(/) after DeleteTree", mustChildren(t, e.ctx, c, "/"), []string{"t-sibling", "tx"})
	wantErr(t, "DeleteTree of a missing node", c.DeleteTree(e.ctx, "/t"), coord.ErrNotFound)
	// Nothing of the old tree lingers under a re-created node.
	mustCreate(t, e.ctx, c, "/t/a/x", nil)
	wantNames(t, "Children(/t) after re-create", mustChildren(t, e.ctx, c, "/t"), []string{"a"})
	wantNames(t, "Children(/t/a) after re-create", mustChildren(t, e.ctx, c, "/t/a"), []string{"x"})
	// A single leaf is a tree too.
	if err := c.DeleteTree(e.ctx, "/tx/keep"); err != nil {
		t.Fatalf("DeleteTree of a leaf: %v", err)
	}
	wantNames(t, "Children(/tx)", mustChildren(t, e.ctx, c, "/tx"), nil)
}

func testSequentialNamesAreTenDigitsAndIncrease(t *testing.T, e *env) {
	c := e.open(t)
	var made []string
	for range 5 {
		p := mustCreate(t, e.ctx, c, "/q/job-", []byte("x"), coord.Sequential()).Path
		made = append(made, p)
	}
	other := mustCreate(t, e.ctx, c, "/other/job-", nil, coord.Sequential()).Path
	var prev int64 = -1
	for _, p := range append(made, other) {
		if !strings.HasPrefix(coord.Base(p), "job-") {
			t.Fatalf("sequential name %q lost the given prefix job-", p)
		}
		suffix := strings.TrimPrefix(coord.Base(p), "job-")
		if len(suffix) != coord.SequenceWidth {
			t.Fatalf("sequential name %q: suffix %q is not %d digits", p, suffix, coord.SequenceWidth)
		}
		if _, err := strconv.ParseUint(suffix, 10, 64); err != nil {
			t.Fatalf("sequential name %q: suffix is not decimal", p)
		}
	}
	for _, p := range made {
		n, _ := strconv.ParseInt(strings.TrimPrefix(coord.Base(p), "job-"), 10, 64)
		if n <= prev {
			t.Fatalf("sequence did not increase: %v", made)
		}
		prev = n
		mustGet(t, e.ctx, c, p)
	}
	var names []string
	for _, p := range made {
		names = append(names, coord.Base(p))
	}
	wantNames(t, "Children(/q)", mustChildren(t, e.ctx, c, "/q"), names)
	// Ephemeral and sequential together, as elections use it.
	eph := mustCreate(t, e.ctx, c, "/q/job-", nil, coord.Sequential(), coord.Ephemeral()).Path
	if eph <= made[len(made)-1] {
		t.Fatalf("ephemeral sequential %q does not follow %q", eph, made[len(made)-1])
	}
}

func testChildrenAreDirectOnlyAndSorted(t *testing.T, e *env) {
	c := e.open(t)
	for _, p := range []string{"/a/c", "/a/b", "/a/b/grandchild", "/a/B", "/a/a1", "/ab", "/ab/x", "/a-b"} {
		mustCreate(t, e.ctx, c, p, nil)
	}
	wantNames(t, "Children(/a)", mustChildren(t, e.ctx, c, "/a"), []string{"B", "a1", "b", "c"})
	wantNames(t, "Children(/)", mustChildren(t, e.ctx, c, "/"), []string{"a", "a-b", "ab"})
	wantNames(t, "Children of a leaf", mustChildren(t, e.ctx, c, "/a/c"), nil)
}

func testChildrenOfMissingIsNotFound(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/ab/x", nil)
	_, err := c.Children(e.ctx, "/a")
	wantErr(t, "Children of a missing node whose name prefixes another", err, coord.ErrNotFound)
}

// List is Children with each child's Get: direct children only, sorted,
// each with the value and version a Get returns.
func testListReadsDirectChildrenWithValues(t *testing.T, e *env) {
	c := e.open(t)
	for _, p := range []string{"/a/c", "/a/b", "/a/b/grandchild", "/a/B", "/a/a1", "/ab", "/ab/x", "/a-b"} {
		mustCreate(t, e.ctx, c, p, []byte("value of "+p))
	}
	mustCreate(t, e.ctx, c, "/a/empty", nil)
	if _, err := c.Set(e.ctx, "/a/b", []byte("changed"), coord.AnyVersion); err != nil {
		t.Fatalf("Set: %v", err)
	}
	want := func(what, path string, names ...string) {
		t.Helper()
		nodes, err := c.List(e.ctx, path)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if nodes == nil {
			t.Fatalf("%s: nil, want an empty list", what)
		}
		base := strings.TrimSuffix(path, "/")
		if len(nodes) != len(names) {
			t.Fatalf("%s: %d nodes, want %v", what, len(nodes), names)
		}
		for i, n := range nodes {
			if n.Path != base+"/"+names[i] {
				t.Fatalf("%s: node %d is %s, want %s", what, i, n.Path, base+"/"+names[i])
			}
			g := mustGet(t, e.ctx, c, n.Path)
			if !bytes.Equal(n.Value, g.Value) || n.Version != g.Version || n.Value == nil {
				t.Fatalf("%s: %s listed as %q@%d, Get says %q@%d", what, n.Path, n.Value, n.Version, g.Value, g.Version)
			}
		}
	}
	want("List(/a)", "/a", "B", "a1", "b", "c", "empty")
	want("List(/)", "/", "a", "a-b", "ab")
	want("List of a leaf", "/a/c")
	if n := mustGet(t, e.ctx, c, "/a/b"); string(n.Value) != "changed" {
		t.Fatalf("/a/b is %q", n.Value)
	}
	if err := c.Delete(e.ctx, "/a/c", coord.AnyVersion); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	want("List(/a) after a delete", "/a", "B", "a1", "b", "empty")
}

func testListOfMissingIsNotFound(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/ab/x", nil)
	_, err := c.List(e.ctx, "/a")
	wantErr(t, "List of a missing node whose name prefixes another", err, coord.ErrNotFound)
	_, err = c.List(e.ctx, "no/slash")
	wantErr(t, "List of an invalid path", err, coord.ErrInvalidPath)
}

func testDeepPathsWork(t *testing.T, e *env) {
	c := e.open(t)
	var b strings.Builder
	for i := range 30 {
		fmt.Fprintf(&b, "/d%d", i)
	}
	deep := b.String()
	mustCreate(t, e.ctx, c, deep, []byte("bottom"))
	if n := mustGet(t, e.ctx, c, deep); string(n.Value) != "bottom" {
		t.Fatalf("deep value %q", n.Value)
	}
	wantNames(t, "Children of the 29th level", mustChildren(t, e.ctx, c, coord.Parent(deep)), []string{"d29"})
	if err := c.DeleteTree(e.ctx, "/d0"); err != nil {
		t.Fatalf("DeleteTree of the deep tree: %v", err)
	}
	_, err := c.Get(e.ctx, deep)
	wantErr(t, "Get of the deep node after DeleteTree", err, coord.ErrNotFound)
	deepest := strings.Repeat("/x", coord.MaxPathDepth)
	mustCreate(t, e.ctx, c, deepest, nil)
	mustGet(t, e.ctx, c, deepest)
	if err := c.DeleteTree(e.ctx, "/x"); err != nil {
		t.Fatalf("DeleteTree of a tree %d deep: %v", coord.MaxPathDepth, err)
	}
	wantNames(t, "Children(/) after deleting both trees", mustChildren(t, e.ctx, c, "/"), nil)
}

// invalidPaths lists every form of bad path the contract names.
func invalidPaths() map[string]string {
	return map[string]string{
		"empty":                    "",
		"relative":                 "a/b",
		"trailing slash":           "/a/",
		"double slash":             "/a//b",
		"leading double slash":     "//a",
		"dot segment":              "/a/./b",
		"dot-dot segment":          "/a/../b",
		"final dot":                "/a/.",
		"NUL":                      "/a\x00b",
		"control character":        "/a\x1fb",
		"DEL":                      "/a\x7fb",
		"C1 control":               "/a\u0085b",
		"private use":              "/a\ue000b",
		"specials block":           "/a\ufff0b",
		"non-character FFFF":       "/a\uffffb",
		"beyond the BMP":           "/a\U0001F600b",
		"invalid UTF-8":            "/a\xffb",
		"encoded surrogate":        "/a\xed\xa0\x80b",
		"deeper than MaxPathDepth": strings.Repeat("/x", coord.MaxPathDepth+1),
	}
}

func testInvalidPathsAreRefusedAndNothingWritten(t *testing.T, e *env) {
	c := e.open(t)
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	for name, p := range invalidPaths() {
		_, err := c.Create(ctx, p, []byte("x"))
		wantErr(t, name+": Create", err, coord.ErrInvalidPath)
		_, err = c.Create(ctx, p, nil, coord.Sequential())
		wantErr(t, name+": Create(Sequential)", err, coord.ErrInvalidPath)
		_, err = c.Get(ctx, p)
		wantErr(t, name+": Get", err, coord.ErrInvalidPath)
		_, err = c.Set(ctx, p, []byte("x"), coord.AnyVersion)
		wantErr(t, name+": Set", err, coord.ErrInvalidPath)
		wantErr(t, name+": Delete", c.Delete(ctx, p, coord.AnyVersion), coord.ErrInvalidPath)
		wantErr(t, name+": DeleteTree", c.DeleteTree(ctx, p), coord.ErrInvalidPath)
		_, err = c.Children(ctx, p)
		wantErr(t, name+": Children", err, coord.ErrInvalidPath)
		_, err = c.Campaign(ctx, p, nil)
		wantErr(t, name+": Campaign", err, coord.ErrInvalidPath)
		_, err = c.Leader(ctx, p)
		wantErr(t, name+": Leader", err, coord.ErrInvalidPath)
	}
	// The root is listable but is not a node.
	_, err := c.Create(ctx, "/", nil)
	wantErr(t, "Create(/)", err, coord.ErrInvalidPath)
	_, err = c.Get(ctx, "/")
	wantErr(t, "Get(/)", err, coord.ErrInvalidPath)
	wantErr(t, "Delete(/)", c.Delete(ctx, "/", coord.AnyVersion), coord.ErrInvalidPath)
	wantErr(t, "DeleteTree(/)", c.DeleteTree(ctx, "/"), coord.ErrInvalidPath)
	wantNames(t, "Children(/) after refused writes", mustChildren(t, ctx, c, "/"), nil)
	// Valid but unusual characters are accepted on every backend.
	for _, p := range []string{"/with space", "/ünïcode-名前", "/a:b=c,d", "/..a", "/a.", "/\u00a0"} {
		mustCreate(t, ctx, c, p, []byte(p))
		if n := mustGet(t, ctx, c, p); string(n.Value) != p {
			t.Fatalf("Get(%q) = %q", p, n.Value)
		}
	}
}

func testBinaryValuesRoundTrip(t *testing.T, e *env) {
	c := e.open(t)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	values := map[string][]byte{
		"/all-bytes":   all,
		"/nul-only":    {0, 0, 0},
		"/empty":       {},
		"/nil":         nil,
		"/invalid-utf": []byte("\xff\xfe\xfd"),
	}
	for p, v := range values {
		mustCreate(t, e.ctx, c, p, v)
		if n := mustGet(t, e.ctx, c, p); !bytes.Equal(n.Value, v) {
			t.Fatalf("Get(%s) = %x, want %x", p, n.Value, v)
		}
	}
	if _, err := c.Set(e.ctx, "/empty", all, coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if n := mustGet(t, e.ctx, c, "/empty"); !bytes.Equal(n.Value, all) {
		t.Fatalf("after Set: %x", n.Value)
	}
}

func testLargestValueFitsAndLargerIsRefused(t *testing.T, e *env) {
	c := e.open(t)
	largest := bytes.Repeat([]byte{0xa5}, coord.MaxValueSize)
	largest[0], largest[len(largest)-1] = 1, 2
	mustCreate(t, e.ctx, c, "/big", largest)
	if n := mustGet(t, e.ctx, c, "/big"); !bytes.Equal(n.Value, largest) {
		t.Fatalf("the largest value (%d bytes) came back as %d bytes", len(largest), len(n.Value))
	}
	tooLarge := make([]byte, coord.MaxValueSize+1)
	_, err := c.Create(e.ctx, "/too-big", tooLarge)
	wantErr(t, "Create with a value one byte too large", err, coord.ErrValueTooLarge)
	_, err = c.Get(e.ctx, "/too-big")
	wantErr(t, "Get after the refused Create", err, coord.ErrNotFound)
	_, err = c.Set(e.ctx, "/big", tooLarge, coord.AnyVersion)
	wantErr(t, "Set with a value one byte too large", err, coord.ErrValueTooLarge)
	if n := mustGet(t, e.ctx, c, "/big"); !bytes.Equal(n.Value, largest) {
		t.Fatal("a refused Set changed the value")
	}
	_, err = c.Campaign(e.ctx, election, tooLarge)
	wantErr(t, "Campaign with a value one byte too large", err, coord.ErrValueTooLarge)
}

func testTenThousandChildren(t *testing.T, e *env) {
	const n, workers = 10_000, 32
	sessions := []coord.Coordinator{e.open(t), e.open(t)}
	mustCreate(t, e.ctx, sessions[0], "/many", nil)
	var wg sync.WaitGroup
	next := atomic.Int64{}
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := sessions[w%len(sessions)]
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				if _, err := c.Create(e.ctx, fmt.Sprintf("/many/child-%05d", i), []byte(strconv.FormatInt(i, 10))); err != nil {
					errs <- fmt.Errorf("child %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	names := mustChildren(t, e.ctx, sessions[1], "/many")
	if len(names) != n {
		t.Fatalf("Children returned %d names, want %d", len(names), n)
	}
	for i, name := range names {
		if want := fmt.Sprintf("child-%05d", i); name != want {
			t.Fatalf("name %d is %q, want %q (sorted)", i, name, want)
		}
	}
	// List reads them all, in pages where the backend pages.
	nodes, err := sessions[1].List(e.ctx, "/many")
	if err != nil {
		t.Fatalf("List of 10,000 children: %v", err)
	}
	if len(nodes) != n {
		t.Fatalf("List returned %d nodes, want %d", len(nodes), n)
	}
	for i, node := range nodes {
		if want := fmt.Sprintf("/many/child-%05d", i); node.Path != want || string(node.Value) != strconv.Itoa(i) {
			t.Fatalf("node %d is %s=%q, want %s=%q (sorted)", i, node.Path, node.Value, want, strconv.Itoa(i))
		}
	}
	if err := sessions[0].DeleteTree(e.ctx, "/many"); err != nil {
		t.Fatalf("DeleteTree of 10,000 children: %v", err)
	}
}

func testNamespacesAreIsolated(t *testing.T, e *env) {
	a := e.openNS(t, e.ns+"-a")
	b := e.openNS(t, e.ns+"-b")
	mustCreate(t, e.ctx, a, "/shared", []byte("a"))
	mustCreate(t, e.ctx, b, "/shared", []byte("b"))
	mustCreate(t, e.ctx, a, "/only-a/x", nil)
	if n := mustGet(t, e.ctx, a, "/shared"); string(n.Value) != "a" {
		t.Fatalf("namespace a reads %q", n.Value)
	}
	if n := mustGet(t, e.ctx, b, "/shared"); string(n.Value) != "b" {
		t.Fatalf("namespace b reads %q", n.Value)
	}
	wantNames(t, "Children(/) in b", mustChildren(t, e.ctx, b, "/"), []string{"shared"})
	_, err := b.Get(e.ctx, "/only-a/x")
	wantErr(t, "Get of a's node from b", err, coord.ErrNotFound)
	if err := b.DeleteTree(e.ctx, "/shared"); err != nil {
		t.Fatal(err)
	}
	mustGet(t, e.ctx, a, "/shared")
	// Each namespace has its own election.
	la := mustLead(t, campaign(e.ctx, a, "a"), e.within(), "a")
	lb := mustLead(t, campaign(e.ctx, b, "b"), e.within(), "b (other namespace)")
	if v, err := b.Leader(e.ctx, election); err != nil || string(v) != "b" {
		t.Fatalf("Leader in b = %q, %v", v, err)
	}
	_ = la.Resign(e.ctx)
	_ = lb.Resign(e.ctx)
}

func testEphemeralGoneAfterClose(t *testing.T, e *env) {
	owner, watcher := e.open(t), e.open(t)
	mustCreate(t, e.ctx, owner, "/live/e", []byte("x"), coord.Ephemeral())
	mustGet(t, e.ctx, watcher, "/live/e")
	if err := owner.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	eventually(t, e.within(), "ephemeral node removed after Close", func() bool {
		_, err := watcher.Get(e.ctx, "/live/e")
		return errors.Is(err, coord.ErrNotFound)
	})
	// Its parent was made persistent and stays.
	mustGet(t, e.ctx, watcher, "/live")
}

func testEphemeralCannotHaveChildren(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/e", nil, coord.Ephemeral())
	_, err := c.Create(e.ctx, "/e/child", nil)
	wantErr(t, "Create under an ephemeral node", err, coord.ErrEphemeralParent)
	_, err = c.Create(e.ctx, "/e/x/y", nil)
	wantErr(t, "Create two levels under an ephemeral node", err, coord.ErrEphemeralParent)
	wantNames(t, "Children of the ephemeral", mustChildren(t, e.ctx, c, "/e"), nil)
	// Setting an ephemeral node keeps it ephemeral.
	if _, err := c.Set(e.ctx, "/e", []byte("v"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	other := e.open(t)
	_ = c.Close()
	eventually(t, e.within(), "ephemeral removed after Close even after Set", func() bool {
		_, err := other.Get(e.ctx, "/e")
		return errors.Is(err, coord.ErrNotFound)
	})
}

// allCallsFail checks that every method of c fails with want.
func allCallsFail(t *testing.T, ctx context.Context, c coord.Coordinator, want error) {
	t.Helper()
	_, err := c.Create(ctx, "/after", nil)
	wantErr(t, "Create", err, want)
	_, err = c.Get(ctx, "/a")
	wantErr(t, "Get", err, want)
	_, err = c.Set(ctx, "/a", nil, coord.AnyVersion)
	wantErr(t, "Set", err, want)
	wantErr(t, "Delete", c.Delete(ctx, "/a", coord.AnyVersion), want)
	wantErr(t, "DeleteTree", c.DeleteTree(ctx, "/a"), want)
	_, err = c.Children(ctx, "/")
	wantErr(t, "Children", err, want)
	_, err = c.List(ctx, "/")
	wantErr(t, "List", err, want)
	_, err = c.Campaign(ctx, election, nil)
	wantErr(t, "Campaign", err, want)
	_, err = c.Leader(ctx, election)
	wantErr(t, "Leader", err, want)
	_, err = c.Apply(ctx, coord.CreateOp("/after", nil))
	wantErr(t, "Apply", err, want)
}

func testCallsAfterCloseFail(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/a", nil)
	l := mustLead(t, campaign(e.ctx, c, "me"), e.within(), "the only candidate")
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !closed(c.Done()) {
		t.Fatal("Done not closed after Close")
	}
	waitClosed(t, l.Lost(), 5*time.Second, "Lost after Close")
	allCallsFail(t, e.ctx, c, coord.ErrClosed)
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := l.Resign(e.ctx); err != nil {
		t.Fatalf("Resign after Close: %v, want nil (already lost)", err)
	}
}

// SafeUntil is what a worker's tasks live by: ahead of now while the session
// is renewed, moving on with the renewals, and zero once it is over, after
// Close as after an expiry.
func testSafeUntilIsAheadWhileAliveAndZeroAfter(t *testing.T, e *env) {
	c, victim := e.open(t), e.open(t)
	first := c.SafeUntil()
	if !first.After(time.Now()) {
		t.Fatalf("SafeUntil %v of a live session is not ahead of now", first)
	}
	eventually(t, e.within(), "SafeUntil to move on with renewals", func() bool {
		return c.SafeUntil().After(first)
	})
	if err := e.h.ExpireSession(e.ctx, victim); err != nil {
		t.Fatalf("ExpireSession: %v", err)
	}
	waitClosed(t, victim.Done(), e.within(), "Done after the session expired")
	if got := victim.SafeUntil(); !got.IsZero() {
		t.Fatalf("SafeUntil of an expired session = %v, want zero", got)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := c.SafeUntil(); !got.IsZero() {
		t.Fatalf("SafeUntil after Close = %v, want zero", got)
	}
}

func testSessionExpiryEndsTheSession(t *testing.T, e *env) {
	victim, witness := e.open(t), e.open(t)
	mustCreate(t, e.ctx, victim, "/eph", nil, coord.Ephemeral())
	mustCreate(t, e.ctx, victim, "/persistent", []byte("stays"))
	l := mustLead(t, campaign(e.ctx, victim, "victim"), e.within(), "victim")
	waiting := campaign(e.ctx, witness, "witness")
	mustWait(t, waiting, 300*time.Millisecond, "witness")
	if err := e.h.ExpireSession(e.ctx, victim); err != nil {
		t.Fatalf("ExpireSession: %v", err)
	}
	waitClosed(t, victim.Done(), e.within(), "Done after the session expired")
	waitClosed(t, l.Lost(), time.Second, "Lost after the session expired")
	allCallsFail(t, e.ctx, victim, coord.ErrSessionLost)
	wl := mustLead(t, waiting, e.within(), "witness after the leader's session expired")
	if wl.Token() <= l.Token() {
		t.Fatalf("new token %d not greater than the expired leader's %d", wl.Token(), l.Token())
	}
	eventually(t, e.within(), "ephemeral of the expired session removed", func() bool {
		_, err := witness.Get(e.ctx, "/eph")
		return errors.Is(err, coord.ErrNotFound)
	})
	mustGet(t, e.ctx, witness, "/persistent")
	if err := victim.Close(); err != nil {
		t.Fatalf("Close after expiry: %v", err)
	}
	if err := l.Resign(e.ctx); err != nil {
		t.Fatalf("Resign after loss: %v, want nil", err)
	}
}

func testSingleLeaderAmongFiveCandidates(t *testing.T, e *env) {
	const n = 5
	results := make([]<-chan campaignResult, n)
	for i := range n {
		results[i] = campaign(e.ctx, e.open(t), fmt.Sprint("candidate-", i))
	}
	pending := map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true}
	var lastToken int64
	for round := range n {
		// Exactly one pending candidate becomes leader; the rest keep waiting.
		var leader coord.Leadership
		who := -1
		deadline := time.After(e.within())
		for leader == nil {
			for i := range pending {
				select {
				case r := <-results[i]:
					if r.err != nil {
						t.Fatalf("candidate %d: %v", i, r.err)
					}
					leader, who = r.l, i
				default:
				}
				if leader != nil {
					break
				}
			}
			if leader == nil {
				select {
				case <-deadline:
					t.Fatalf("round %d: no leader within %v", round, e.within())
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
		delete(pending, who)
		time.Sleep(300 * time.Millisecond)
		for i := range pending {
			select {
			case r := <-results[i]:
				t.Fatalf("round %d: candidate %d leads (%v) while candidate %d does", round, i, r.err, who)
			default:
			}
		}
		if leader.Token() <= lastToken {
			t.Fatalf("round %d: token %d not greater than %d", round, leader.Token(), lastToken)
		}
		lastToken = leader.Token()
		if err := leader.Resign(e.ctx); err != nil {
			t.Fatalf("round %d: Resign: %v", round, err)
		}
	}
}

func testLeaderValueAndNoLeader(t *testing.T, e *env) {
	a, b := e.open(t), e.open(t)
	_, err := b.Leader(e.ctx, election)
	wantErr(t, "Leader of an election nobody joined", err, coord.ErrNoLeader)
	la := mustLead(t, campaign(e.ctx, a, "host-a:8899"), e.within(), "a")
	if v, err := b.Leader(e.ctx, election); err != nil || string(v) != "host-a:8899" {
		t.Fatalf("Leader = %q, %v; want host-a:8899", v, err)
	}
	waiting := campaign(e.ctx, b, "host-b:8899")
	mustWait(t, waiting, 300*time.Millisecond, "b")
	if v, err := a.Leader(e.ctx, election); err != nil || string(v) != "host-a:8899" {
		t.Fatalf("Leader with a waiting candidate = %q, %v; want host-a:8899", v, err)
	}
	if err := la.Resign(e.ctx); err != nil {
		t.Fatal(err)
	}
	lb := mustLead(t, waiting, e.within(), "b")
	if v, err := a.Leader(e.ctx, election); err != nil || string(v) != "host-b:8899" {
		t.Fatalf("Leader after hand-over = %q, %v; want host-b:8899", v, err)
	}
	if err := lb.Resign(e.ctx); err != nil {
		t.Fatal(err)
	}
	_, err = a.Leader(e.ctx, election)
	wantErr(t, "Leader after everyone resigned", err, coord.ErrNoLeader)
}

func testResignHandsOverAndTokenGrows(t *testing.T, e *env) {
	a, b := e.open(t), e.open(t)
	la := mustLead(t, campaign(e.ctx, a, "a"), e.within(), "a")
	if closed(la.Lost()) {
		t.Fatal("Lost closed on a fresh leadership")
	}
	waiting := campaign(e.ctx, b, "b")
	mustWait(t, waiting, 300*time.Millisecond, "b")
	if err := la.Resign(e.ctx); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	waitClosed(t, la.Lost(), time.Second, "Lost after Resign")
	lb := mustLead(t, waiting, 5*time.Second, "b after a resigned")
	if lb.Token() <= la.Token() {
		t.Fatalf("token %d after hand-over, not greater than %d", lb.Token(), la.Token())
	}
	if err := la.Resign(e.ctx); err != nil {
		t.Fatalf("second Resign: %v, want nil", err)
	}
	if closed(lb.Lost()) {
		t.Fatal("the new leader's Lost closed when the old leader resigned again")
	}
	// The session that resigned can lead again, with a newer token.
	if err := lb.Resign(e.ctx); err != nil {
		t.Fatal(err)
	}
	la2 := mustLead(t, campaign(e.ctx, a, "a"), e.within(), "a again")
	if la2.Token() <= lb.Token() {
		t.Fatalf("token %d of the third term, not greater than %d", la2.Token(), lb.Token())
	}
}

func testClosingTheLeadersCoordinatorHandsOver(t *testing.T, e *env) {
	a, b := e.open(t), e.open(t)
	la := mustLead(t, campaign(e.ctx, a, "a"), e.within(), "a")
	waiting := campaign(e.ctx, b, "b")
	mustWait(t, waiting, 300*time.Millisecond, "b")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, la.Lost(), time.Second, "Lost after Close")
	lb := mustLead(t, waiting, e.within(), "b after the leader's coordinator closed")
	if lb.Token() <= la.Token() {
		t.Fatalf("token %d not greater than %d", lb.Token(), la.Token())
	}
}

func testCancelledCampaignLeavesNothingBehind(t *testing.T, e *env) {
	a, b := e.open(t), e.open(t)
	la := mustLead(t, campaign(e.ctx, a, "a"), e.within(), "a")
	ctx, cancel := context.WithCancel(e.ctx)
	waiting := campaign(ctx, b, "b")
	mustWait(t, waiting, 300*time.Millisecond, "b")
	if got := mustChildren(t, e.ctx, a, election); len(got) != 2 {
		t.Fatalf("candidates while b waits: %q, want 2", got)
	}
	cancel()
	select {
	case r := <-waiting:
		wantErr(t, "cancelled Campaign", r.err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled Campaign did not return")
	}
	eventually(t, 5*time.Second, "the cancelled candidacy removed", func() bool {
		got, err := a.Children(e.ctx, election)
		return err == nil && len(got) == 1
	})
	if err := la.Resign(e.ctx); err != nil {
		t.Fatal(err)
	}
	_, err := a.Leader(e.ctx, election)
	wantErr(t, "Leader after the only live candidate resigned", err, coord.ErrNoLeader)
	// The session that cancelled can campaign again and win.
	lb := mustLead(t, campaign(e.ctx, b, "b"), e.within(), "b again")
	if lb.Token() <= la.Token() {
		t.Fatalf("token %d not greater than %d", lb.Token(), la.Token())
	}
}

func testCandidateDeletedFromOutsideLosesLeadership(t *testing.T, e *env) {
	a, b, admin := e.open(t), e.open(t), e.open(t)
	la := mustLead(t, campaign(e.ctx, a, "a"), e.within(), "a")
	waiting := campaign(e.ctx, b, "b")
	mustWait(t, waiting, 300*time.Millisecond, "b")
	names := mustChildren(t, e.ctx, admin, election)
	if len(names) != 2 {
		t.Fatalf("candidates: %q, want 2", names)
	}
	var leaderNode string
	for _, name := range names {
		n := mustGet(t, e.ctx, admin, coord.Join(election, name))
		if string(n.Value) == "a" {
			leaderNode = n.Path
		}
	}
	if leaderNode == "" {
		t.Fatalf("no candidate node holds the leader's value among %q", names)
	}
	if err := admin.Delete(e.ctx, leaderNode, coord.AnyVersion); err != nil {
		t.Fatalf("delete the leader's candidate node from outside: %v", err)
	}
	waitClosed(t, la.Lost(), e.within(), "Lost after the leader's node was deleted")
	lb := mustLead(t, waiting, e.within(), "b after the leader's node was deleted")
	if lb.Token() <= la.Token() {
		t.Fatalf("token %d not greater than %d", lb.Token(), la.Token())
	}
	if closed(a.Done()) {
		t.Fatal("losing leadership ended the session")
	}
	if err := la.Resign(e.ctx); err != nil {
		t.Fatalf("Resign after the node was deleted: %v, want nil", err)
	}
}

func testSecondCampaignInOneElectionIsRefused(t *testing.T, e *env) {
	a, b := e.open(t), e.open(t)
	la := mustLead(t, campaign(e.ctx, a, "a"), e.within(), "a")
	_, err := a.Campaign(e.ctx, election, []byte("again"))
	wantErr(t, "second Campaign of a leading session", err, coord.ErrAlreadyCampaigning)
	waiting := campaign(e.ctx, b, "b")
	mustWait(t, waiting, 300*time.Millisecond, "b")
	_, err = b.Campaign(e.ctx, election, []byte("again"))
	wantErr(t, "second Campaign of a waiting session", err, coord.ErrAlreadyCampaigning)
	// Another election is a separate matter.
	lo := mustLead(t, func() <-chan campaignResult {
		ch := make(chan campaignResult, 1)
		go func() {
			l, err := b.Campaign(e.ctx, "/other/election", nil)
			ch <- campaignResult{l, err}
		}()
		return ch
	}(), e.within(), "b in another election")
	_ = lo.Resign(e.ctx)
	if err := la.Resign(e.ctx); err != nil {
		t.Fatal(err)
	}
	lb := mustLead(t, waiting, e.within(), "b")
	// Once a leadership is over, the session may campaign again.
	if err := lb.Resign(e.ctx); err != nil {
		t.Fatal(err)
	}
	mustLead(t, campaign(e.ctx, b, "b"), e.within(), "b after its resign")
}

// A candidate whose session expires while it waits must never be told it
// leads (etcd #19597: Campaign returned success on a dead lease).
func testWaitingCampaignEndsWithSessionLost(t *testing.T, e *env) {
	a, b := e.open(t), e.open(t)
	la := mustLead(t, campaign(e.ctx, a, "a"), e.within(), "a")
	waiting := campaign(e.ctx, b, "b")
	mustWait(t, waiting, 300*time.Millisecond, "b")
	if err := e.h.ExpireSession(e.ctx, b); err != nil {
		t.Fatalf("ExpireSession: %v", err)
	}
	waitClosed(t, b.Done(), e.within(), "waiting candidate's Done")
	if err := la.Resign(e.ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-waiting:
		if r.err == nil {
			t.Fatal("a candidate whose session expired while waiting was made leader")
		}
		wantErr(t, "Campaign of an expired session", r.err, coord.ErrSessionLost)
	case <-time.After(e.within()):
		t.Fatal("Campaign of an expired session did not return")
	}
	_, err := a.Leader(e.ctx, election)
	wantErr(t, "Leader after the leader resigned and the other candidate expired", err, coord.ErrNoLeader)
}

func testRunElectionRotatesFiveCandidates(t *testing.T, e *env) {
	const n, rounds = 5, 3
	admin := e.open(t)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var (
		mu     sync.Mutex
		terms  []int
		active atomic.Int32
	)
	gate := make(chan struct{})
	enough := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			open := func(ctx context.Context) (coord.Coordinator, error) { return e.h.Open(ctx, e.ns) }
			_ = coord.RunElection(ctx, open, election, []byte(strconv.Itoa(i)), func(lctx context.Context, _ coord.Coordinator, _ coord.Leadership) error {
				if active.Add(1) != 1 {
					t.Errorf("candidate %d leads while another term is running", i)
				}
				defer active.Add(-1)
				mu.Lock()
				terms = append(terms, i)
				if len(terms) == n*rounds {
					close(enough)
				}
				mu.Unlock()
				// The first term waits until every candidate is queued, so
				// the rotation starts from a full queue.
				select {
				case <-gate:
				case <-lctx.Done():
				}
				// A short term leaves the candidate that just resigned time
				// to queue again before its turn comes round; without it
				// the rotation would test the network's latency.
				select {
				case <-time.After(100 * time.Millisecond):
				case <-lctx.Done():
				}
				return nil
			}, coord.WithElectionRetry(20*time.Millisecond, 200*time.Millisecond))
		}()
	}
	eventually(t, e.within(), "five candidates queued", func() bool {
		names, err := admin.Children(e.ctx, election)
		return err == nil && len(names) == n
	})
	close(gate)
	select {
	case <-enough:
	case <-time.After(e.within() + 30*time.Second):
		mu.Lock()
		t.Fatalf("only %d terms ran: %v", len(terms), terms)
	}
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for r := range rounds {
		seen := map[int]bool{}
		for _, who := range terms[r*n : (r+1)*n] {
			seen[who] = true
		}
		if len(seen) != n {
			t.Fatalf("round %d led by %v: want each of the %d candidates once (all terms: %v)", r, terms[r*n:(r+1)*n], n, terms)
		}
	}
	eventually(t, e.within(), "all candidacies withdrawn after RunElection returned", func() bool {
		names, err := admin.Children(e.ctx, election)
		return err == nil && len(names) == 0
	})
}

func testRunElectionCancelsLeadContextOnLoss(t *testing.T, e *env) {
	admin := e.open(t)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	terms := make(chan string, 10)
	ended := make(chan error, 10)
	done := make(chan error, 1)
	go func() {
		open := func(ctx context.Context) (coord.Coordinator, error) { return e.h.Open(ctx, e.ns) }
		done <- coord.RunElection(ctx, open, election, []byte("runner"), func(lctx context.Context, c coord.Coordinator, l coord.Leadership) error {
			if c == nil || l == nil || closed(l.Lost()) {
				terms <- "error: lead was not handed its session and live leadership"
				<-lctx.Done()
				ended <- lctx.Err()
				return lctx.Err()
			}
			v, err := admin.Leader(lctx, election)
			if err != nil {
				terms <- "error: " + err.Error()
			} else {
				terms <- string(v)
			}
			<-lctx.Done()
			ended <- lctx.Err()
			return lctx.Err()
		}, coord.WithElectionRetry(20*time.Millisecond, 200*time.Millisecond))
	}()
	wantTerm := func(what string) {
		t.Helper()
		select {
		case v := <-terms:
			if v != "runner" {
				t.Fatalf("%s: the leader seen from inside the term is %q", what, v)
			}
		case <-time.After(e.within()):
			t.Fatalf("%s: no term started", what)
		}
	}
	wantTerm("first term")
	names := mustChildren(t, e.ctx, admin, election)
	if len(names) != 1 {
		t.Fatalf("candidates %q, want one", names)
	}
	if err := admin.Delete(e.ctx, coord.Join(election, names[0]), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		wantErr(t, "lead context after the candidate node was deleted", err, context.Canceled)
	case <-time.After(e.within()):
		t.Fatal("the lead context was not cancelled when leadership was lost")
	}
	wantTerm("term after requeue")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunElection returned %v after cancel, want nil", err)
		}
	case <-time.After(e.within()):
		t.Fatal("RunElection did not return after cancel")
	}
	select {
	case err := <-ended:
		wantErr(t, "lead context after RunElection's context was cancelled", err, context.Canceled)
	default:
		t.Fatal("RunElection returned before its lead function did")
	}
}

func testRunElectionOpensNewSessionAfterExpiry(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		sessions []coord.Coordinator
	)
	open := func(ctx context.Context) (coord.Coordinator, error) {
		c, err := e.h.Open(ctx, e.ns)
		if err == nil {
			mu.Lock()
			sessions = append(sessions, c)
			mu.Unlock()
		}
		return c, err
	}
	started := make(chan coord.Coordinator, 10)
	done := make(chan error, 1)
	go func() {
		done <- coord.RunElection(ctx, open, election, []byte("runner"), func(lctx context.Context, c coord.Coordinator, _ coord.Leadership) error {
			mu.Lock()
			if c != sessions[len(sessions)-1] {
				t.Errorf("lead was handed %v, not the session RunElection opened last", c)
			}
			mu.Unlock()
			started <- c
			<-lctx.Done()
			return nil
		}, coord.WithElectionRetry(20*time.Millisecond, 200*time.Millisecond))
	}()
	var first coord.Coordinator
	select {
	case first = <-started:
	case <-time.After(e.within()):
		t.Fatal("no first term")
	}
	if err := e.h.ExpireSession(e.ctx, first); err != nil {
		t.Fatalf("ExpireSession: %v", err)
	}
	select {
	case second := <-started:
		if second == first {
			t.Fatal("the second term runs on the expired session")
		}
	case <-time.After(2 * e.within()):
		t.Fatal("RunElection did not lead again on a new session after the old one expired")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(e.within()):
		t.Fatal("RunElection did not return after cancel")
	}
	mu.Lock()
	defer mu.Unlock()
	for i, c := range sessions {
		if !closed(c.Done()) {
			t.Fatalf("session %d of %d is still open after RunElection returned", i+1, len(sessions))
		}
	}
}
