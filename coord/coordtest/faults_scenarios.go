package coordtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hasched/hasched/coord"
)

// A follower member killed, then another paused (one at a time, so the
// cluster keeps its quorum), must not touch a leadership whose client talks
// to the cluster's leader: Lost stays open, Leader does not change, and
// calls keep succeeding. A candidate whose member is killed may see its
// campaign fail, but never leads.
func testFollowerKilledOrPausedChangesNothing(e *faultEnv) {
	t := e.t
	lm := e.clusterLeader()
	followers := e.others(lm)
	a := e.openOn(lm)
	la := e.lead(e.campaign(a, "a"), e.within(), "a")
	b := e.openOn(followers[0])
	waiting := e.campaign(b, "b")
	e.waits(waiting, 300*time.Millisecond, "b")
	if err := e.call(func(ctx context.Context) error {
		_, err := a.Create(ctx, "/data", []byte("0"))
		return err
	}); err != nil {
		t.Fatalf("Create(/data): %v", err)
	}

	// Long enough for a session that is going to be lost to be lost.
	hold := e.h.SessionTimeout() + time.Second
	calls := 0
	steady := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(hold); time.Now().Before(deadline); {
			if isClosed(la.Lost()) {
				t.Fatalf("%s: the leader's Lost closed", what)
			}
			select {
			case r := <-waiting:
				if r.err == nil {
					t.Fatalf("%s: the waiting candidate b became leader while a leads", what)
				}
				t.Logf("%s: b's campaign ended without leading: %v", what, r.err)
				waiting = nil
			default:
			}
			if v, err := e.leader(a); err != nil || v != "a" {
				t.Fatalf("%s: Leader = %q, %v; want a", what, v, err)
			}
			calls++
			value := []byte(strconv.Itoa(calls))
			if err := e.call(func(ctx context.Context) error {
				_, err := a.Set(ctx, "/data", value, coord.AnyVersion)
				return err
			}); err != nil {
				t.Fatalf("%s: Set within %v: %v", what, faultCallTimeout, err)
			}
			var n coord.Node
			if err := e.call(func(ctx context.Context) error {
				var err error
				n, err = a.Get(ctx, "/data")
				return err
			}); err != nil || string(n.Value) != string(value) {
				t.Fatalf("%s: Get within %v = %q, %v; want %q", what, faultCallTimeout, n.Value, err, value)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	steady("before any fault")
	e.do(fmt.Sprintf("kill follower %d", followers[0]), func(ctx context.Context) error { return e.h.Kill(ctx, followers[0]) })
	steady("one follower killed")
	e.do(fmt.Sprintf("start follower %d", followers[0]), func(ctx context.Context) error { return e.h.Start(ctx, followers[0]) })
	e.do(fmt.Sprintf("pause follower %d", followers[1]), func(ctx context.Context) error { return e.h.Pause(ctx, followers[1]) })
	steady("another follower paused")
	e.do(fmt.Sprintf("unpause follower %d", followers[1]), func(ctx context.Context) error { return e.h.Unpause(ctx, followers[1]) })
	steady("after the faults")
	t.Logf("%d rounds of Leader, Set and Get succeeded; the leadership (token %d) held throughout", calls, la.Token())
}

// Killing the member the leader's client talks to (the cluster's own
// leader, so the cluster elects anew too) leaves, within the session
// timeout and 2 s after the cluster has a leader again, exactly one
// leader: Leader names it from another client, and never are two
// leaderships open at once. Calls work again.
func testLeadersMemberKilled(e *faultEnv) {
	t := e.t
	x := e.clusterLeader()
	rest := e.others(x)
	sessions := map[string]coord.Coordinator{"a": e.openOn(x), "b": e.openOn(rest[0]), "c": e.openOn(rest[1])}
	terms := map[string]coord.Leadership{"a": e.lead(e.campaign(sessions["a"], "a"), e.within(), "a")}
	pending := map[string]<-chan faultCampaign{}
	for _, name := range []string{"b", "c"} {
		pending[name] = e.campaign(sessions[name], name)
	}
	for name, ch := range pending {
		e.waits(ch, 300*time.Millisecond, name)
	}
	witness := e.openOn(rest[1])

	start := time.Now()
	e.do(fmt.Sprintf("kill member %d, the cluster's leader, which a talks to", x), func(ctx context.Context) error { return e.h.Kill(ctx, x) })
	clusterBack := make(chan time.Duration, 1)
	go func() {
		ctx, cancel := context.WithTimeout(e.ctx, e.within())
		defer cancel()
		if _, err := e.h.Leader(ctx); err == nil {
			clusterBack <- time.Since(start)
		}
	}()

	bound := time.Duration(-1)
	open := func() []string {
		var names []string
		for name, l := range terms {
			if !isClosed(l.Lost()) {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		return names
	}
	var leader string
settle:
	for {
		for name, ch := range pending {
			select {
			case r := <-ch:
				switch {
				case r.err == nil:
					terms[name] = r.l
					delete(pending, name)
				case isClosed(sessions[name].Done()):
					t.Logf("%s's session ended while it waited: %v", name, r.err)
					delete(pending, name)
				default:
					// The campaign broke with its connection; a candidate
					// campaigns again, as RunElection does.
					t.Logf("%s's campaign failed; campaigning again: %v", name, r.err)
					pending[name] = e.campaign(sessions[name], name)
				}
			default:
			}
		}
		names := open()
		if len(names) > 1 {
			t.Fatalf("%v after the kill: leaderships %v are open at once", time.Since(start), names)
		}
		if len(names) == 1 {
			if v, err := e.leader(witness); err == nil && v == names[0] {
				leader = v
				break settle
			}
		}
		select {
		case d := <-clusterBack:
			bound = d + e.h.SessionTimeout() + 2*time.Second
			t.Logf("the cluster had a leader again %v after the kill", d.Round(time.Millisecond))
		default:
		}
		if elapsed := time.Since(start); (bound >= 0 && elapsed > bound) || elapsed > e.within() {
			t.Fatalf("no single leader %v after the kill (open leaderships %v; bound %v)", elapsed, names, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
	settled := time.Since(start)
	t.Logf("one leader, %s, %v after the kill (a's leadership %s)", leader, settled.Round(time.Millisecond),
		map[bool]string{true: "lost", false: "held"}[isClosed(terms["a"].Lost())])

	// Calls work again, for the leader and for others, and no second
	// leadership opens meanwhile.
	lc := sessions[leader]
	for i := range 5 {
		if err := e.call(func(ctx context.Context) error {
			_, err := lc.Set(ctx, "/ha/state", []byte(strconv.Itoa(i)), coord.AnyVersion)
			if errors.Is(err, coord.ErrNotFound) {
				_, err = lc.Create(ctx, "/ha/state", []byte(strconv.Itoa(i)))
			}
			return err
		}); err != nil {
			if errors.Is(err, coord.ErrSessionLost) && isClosed(terms[leader].Lost()) {
				// The leader's client could not renew its session while
				// the cluster elected a new leader of its own and gave it
				// up, as it must when it cannot tell whether the server
				// still keeps it: another candidate takes over, within
				// the same bound.
				t.Logf("%s gave its session up %v after the kill; settling again", leader, time.Since(start).Round(time.Millisecond))
				delete(terms, leader)
				goto settle
			}
			t.Fatalf("the leader's Set after the kill: %v", err)
		}
		if err := e.call(func(ctx context.Context) error {
			_, err := witness.Get(ctx, "/ha/state")
			return err
		}); err != nil {
			t.Fatalf("the witness's Get after the kill: %v", err)
		}
		if names := open(); len(names) != 1 || names[0] != leader {
			t.Fatalf("open leaderships %v after %s settled as leader", names, leader)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// All members stopped, then started again with their data, after longer
// than the session timeout: every session of before reports Done (its
// waiting campaign ErrSessionLost), and RunElection, in the same process,
// opens a new session and leads again once the cluster is back.
func testWholeClusterRestarted(e *faultEnv) {
	t := e.t
	runCtx, stopRunner := context.WithCancel(e.ctx)
	terms := make(chan int, 16)
	ended := make(chan struct{}, 16)
	done := make(chan error, 1)
	var term atomic.Int32
	go func() {
		open := func(ctx context.Context) (coord.Coordinator, error) { return e.h.Open(ctx, e.ns) }
		done <- coord.RunElection(runCtx, open, faultElection, []byte("runner"), func(lctx context.Context, _ coord.Coordinator, _ coord.Leadership) error {
			terms <- int(term.Add(1))
			<-lctx.Done()
			ended <- struct{}{}
			return nil
		}, coord.WithElectionRetry(100*time.Millisecond, time.Second))
	}()
	defer func() {
		stopRunner()
		select {
		case <-done:
		case <-time.After(e.within()):
			t.Errorf("RunElection did not return after cancel")
		}
	}()
	select {
	case <-terms:
	case <-time.After(e.within()):
		t.Fatal("RunElection did not lead before the restart")
	}
	a := e.open()
	waiting := e.campaign(a, "a")
	e.waits(waiting, 300*time.Millisecond, "a")
	if err := e.call(func(ctx context.Context) error {
		_, err := a.Create(ctx, "/eph", nil, coord.Ephemeral())
		return err
	}); err != nil {
		t.Fatalf("Create(/eph): %v", err)
	}

	down := e.h.SessionTimeout() + time.Second
	e.do(fmt.Sprintf("restart the whole cluster, down for %v", down), func(ctx context.Context) error { return e.h.RestartCluster(ctx, down) })
	back := time.Now()

	e.waitFor(a.Done(), e.within(), "Done of a session that did not survive the restart")
	select {
	case r := <-waiting:
		if r.err == nil {
			t.Fatal("a candidate whose session did not survive the restart was made leader")
		}
		if !errors.Is(r.err, coord.ErrSessionLost) {
			t.Fatalf("the campaign of a session that did not survive the restart: got %v, want ErrSessionLost", r.err)
		}
	case <-time.After(e.within()):
		t.Fatal("the campaign of a session that did not survive the restart did not return")
	}
	select {
	case <-ended:
	case <-time.After(e.within()):
		t.Fatal("the runner's term before the restart did not end")
	}
	select {
	case n := <-terms:
		t.Logf("RunElection led again (term %d) %v after the cluster was back", n, time.Since(back).Round(time.Millisecond))
	case <-time.After(2 * e.within()):
		t.Fatal("RunElection did not lead again after the cluster restarted")
	}
	w := e.open()
	if v, err := e.leader(w); err != nil || v != "runner" {
		t.Fatalf("Leader after the restart = %q, %v; want runner", v, err)
	}
	var names []string
	e.until(e.within(), "the election holds only the runner's candidacy", func() bool {
		var err error
		err = e.call(func(ctx context.Context) error {
			names, err = w.Children(ctx, faultElection)
			return err
		})
		return err == nil && len(names) == 1
	})
	e.until(e.within(), "the ephemeral node of a lost session removed", func() bool {
		err := e.call(func(ctx context.Context) error {
			_, err := w.Get(ctx, "/eph")
			return err
		})
		return errors.Is(err, coord.ErrNotFound)
	})
}

// A leader whose client is cut off loses its leadership (Lost) within
// about the session timeout; another candidate leads; and after the
// partition heals, the old leader's fenced writes fail and write nothing.
func testLeaderPartitioned(e *faultEnv) {
	t := e.t
	a, b, admin := e.open(), e.open(), e.open()
	la := e.lead(e.campaign(a, "a"), e.within(), "a")
	wa := e.writer(la)
	waiting := e.campaign(b, "b")
	e.waits(waiting, 300*time.Millisecond, "b")
	if err := e.call(func(ctx context.Context) error {
		_, err := admin.Create(ctx, "/fenced", []byte("initial"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.call(func(ctx context.Context) error {
		_, err := wa.Set(ctx, "/fenced", []byte("a"), coord.AnyVersion)
		return err
	}); err != nil {
		t.Fatalf("the leader's fenced Set before the partition: %v", err)
	}

	lostAt := make(chan time.Time, 1)
	go func() {
		<-la.Lost()
		lostAt <- time.Now()
	}()
	if err := e.h.Partition(a); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	healed := false
	defer func() {
		if !healed {
			_ = e.h.Heal(a)
		}
	}()
	st := e.h.SessionTimeout()
	lb := e.lead(waiting, e.within(), "b after the leader was cut off")
	elected := time.Since(cut)
	var lost time.Duration
	select {
	case at := <-lostAt:
		lost = at.Sub(cut)
	case <-time.After(e.within()):
		t.Fatalf("the cut-off leader's Lost did not fire within %v of the partition", e.within())
	}
	t.Logf("session timeout %v; after the cut: old leader's Lost at %v, new leader at %v", st,
		lost.Round(time.Millisecond), elected.Round(time.Millisecond))
	if limit := st + st/2 + 2*time.Second; lost > limit {
		t.Errorf("the cut-off leader's Lost fired %v after the cut, later than %v", lost, limit)
	}
	if lost > elected {
		t.Logf("the new leader was elected %v before the old one noticed: only fencing protects that window", (lost - elected).Round(time.Millisecond))
	}
	if lb.Token() <= la.Token() {
		t.Fatalf("token %d of the new term is not greater than %d", lb.Token(), la.Token())
	}

	if err := e.h.Heal(a); err != nil {
		t.Fatal(err)
	}
	healed = true
	err := e.call(func(ctx context.Context) error {
		_, err := wa.Set(ctx, "/fenced", []byte("stale"), coord.AnyVersion)
		return err
	})
	if !errors.Is(err, coord.ErrNotLeader) && !errors.Is(err, coord.ErrSessionLost) {
		t.Fatalf("the old leader's fenced Set after the heal: got %v, want ErrNotLeader or ErrSessionLost", err)
	}
	err = e.call(func(ctx context.Context) error {
		_, err := wa.Create(ctx, "/fenced-new", []byte("stale"))
		return err
	})
	if !errors.Is(err, coord.ErrNotLeader) && !errors.Is(err, coord.ErrSessionLost) {
		t.Fatalf("the old leader's fenced Create after the heal: got %v, want ErrNotLeader or ErrSessionLost", err)
	}
	var n coord.Node
	if err := e.call(func(ctx context.Context) error {
		var err error
		n, err = admin.Get(ctx, "/fenced")
		return err
	}); err != nil || string(n.Value) != "a" {
		t.Fatalf("/fenced after the old leader's fenced writes = %q, %v; want a", n.Value, err)
	}
	if err := e.call(func(ctx context.Context) error {
		_, err := admin.Get(ctx, "/fenced-new")
		return err
	}); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("/fenced-new after the old leader's fenced Create: %v, want ErrNotFound", err)
	}
	if err := e.call(func(ctx context.Context) error {
		_, err := e.writer(lb).Set(ctx, "/fenced", []byte("b"), coord.AnyVersion)
		return err
	}); err != nil {
		t.Fatalf("the new leader's fenced Set: %v", err)
	}
}

// A candidate waiting behind a leader, whose session expires while the
// leader resigns, must never be told it leads (etcd #19597): its Campaign
// ends with ErrSessionLost. Twice: cut off while the leader resigns (the
// server's candidacy leads for a moment, unknown to its client), and
// expired on the server just before the leader resigns (the client may hear
// of the resignation before it hears of the expiry).
func testCampaignWhileSessionExpires(e *faultEnv) {
	t := e.t
	st := e.h.SessionTimeout()
	wantSessionLost := func(what string, ch <-chan faultCampaign) {
		t.Helper()
		select {
		case r := <-ch:
			if r.err == nil {
				t.Fatalf("%s: a candidate whose session expired was made leader (token %d)", what, r.l.Token())
			}
			if !errors.Is(r.err, coord.ErrSessionLost) {
				t.Fatalf("%s: Campaign returned %v, want ErrSessionLost", what, r.err)
			}
		case <-time.After(e.within()):
			t.Fatalf("%s: Campaign did not return within %v after the session ended", what, e.within())
		}
	}
	noLeader := func(what string, c coord.Coordinator) {
		t.Helper()
		e.until(e.within(), what, func() bool {
			_, err := e.leader(c)
			return errors.Is(err, coord.ErrNoLeader)
		})
	}

	// Cut off while the leader resigns.
	a, b := e.open(), e.open()
	la := e.lead(e.campaign(a, "a"), e.within(), "a")
	waiting := e.campaign(b, "b")
	e.waits(waiting, 300*time.Millisecond, "b")
	if err := e.h.Partition(b); err != nil {
		t.Fatal(err)
	}
	e.sleep(st / 2)
	if err := e.call(la.Resign); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	e.waitFor(b.Done(), e.within(), "Done of the cut-off candidate")
	noLeader("the cut-off candidate's candidacy removed by the server", a)
	if err := e.h.Heal(b); err != nil {
		t.Fatal(err)
	}
	wantSessionLost("cut off while the leader resigned", waiting)

	// Expired on the server, then the leader resigns at once.
	a2, b2 := e.open(), e.open()
	la2 := e.lead(e.campaign(a2, "a2"), e.within(), "a2")
	waiting2 := e.campaign(b2, "b2")
	e.waits(waiting2, 300*time.Millisecond, "b2")
	ctx, cancel := context.WithTimeout(e.ctx, e.within())
	err := e.h.ExpireSession(ctx, b2)
	cancel()
	if err != nil {
		t.Fatalf("ExpireSession: %v", err)
	}
	if err := e.call(la2.Resign); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	wantSessionLost("expired just before the leader resigned", waiting2)
	e.waitFor(b2.Done(), e.within(), "Done of the expired candidate")
	noLeader("no leader after the leader resigned and the other candidate expired", a2)
}

// Connections dropped again and again while candidates campaign (and give
// up, and win and resign) and ephemeral sequential nodes are made leave no
// ghost candidate behind: afterwards the election holds only the live
// candidates, and every one of them leads in turn as the others resign.
func testConnectionLossDuringSequentialCreate(e *faultEnv) {
	t := e.t
	const n = 3
	var (
		mu       sync.Mutex
		cands    = make([]coord.Coordinator, n)
		made     []madeNode
		counts   = map[string]int{}
		replaced int
	)
	for i := range cands {
		cands[i] = e.open()
	}
	count := func(what string) {
		mu.Lock()
		counts[what]++
		mu.Unlock()
	}
	session := func(i int) coord.Coordinator {
		mu.Lock()
		defer mu.Unlock()
		return cands[i]
	}

	chaos, stopChaos := context.WithTimeout(e.ctx, 4*time.Second)
	defer stopChaos()
	var wg sync.WaitGroup
	wg.Go(func() {
		for chaos.Err() == nil {
			time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
			if err := e.h.DropConnections(session(rand.IntN(n))); err != nil {
				t.Errorf("DropConnections: %v", err)
				return
			}
			count("drops")
		}
	})
	for i := range n {
		value := []byte("c" + strconv.Itoa(i))
		wg.Go(func() {
			for chaos.Err() == nil {
				c := session(i)
				ctx, cancel := context.WithTimeout(chaos, time.Duration(50+rand.IntN(450))*time.Millisecond)
				l, err := c.Campaign(ctx, faultElection, value)
				cancel()
				switch {
				case err == nil:
					count("wins")
					// A leadership that is not given up keeps this
					// session from campaigning again: retry until it is.
					for e.ctx.Err() == nil {
						ctx, cancel := context.WithTimeout(e.ctx, faultCallTimeout)
						err := l.Resign(ctx)
						cancel()
						if err == nil {
							break
						}
						count("failed resigns")
					}
				case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
					count("cancelled campaigns")
				default:
					count("failed campaigns")
				}
				if isClosed(c.Done()) {
					// Not what this scenario is about, but go on with a
					// live candidate.
					nc, err := e.h.Open(e.ctx, e.ns)
					if err != nil {
						t.Errorf("replace a lost session: %v", err)
						return
					}
					mu.Lock()
					cands[i] = nc
					replaced++
					mu.Unlock()
					t.Cleanup(func() { _ = nc.Close() })
				}
			}
		})
		wg.Go(func() {
			for chaos.Err() == nil {
				c := session(i)
				ctx, cancel := context.WithTimeout(chaos, 2*time.Second)
				p, err := c.Create(ctx, "/eph/n-", []byte(strconv.Itoa(i)), coord.Ephemeral(), coord.Sequential())
				cancel()
				if err != nil {
					count("failed creates")
					continue
				}
				mu.Lock()
				made = append(made, madeNode{c, p.Path})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("under %d connection drops: %v; %d ephemeral sequential nodes made; %d sessions replaced", counts["drops"], counts, len(made), replaced)
	if replaced > 0 {
		t.Logf("note: %d sessions ended under connection drops alone", replaced)
	}

	// Every candidate campaigns; the election must hold exactly them.
	pending := map[int]<-chan faultCampaign{}
	for i := range n {
		pending[i] = e.campaignUntilDecided(cands[i], "c"+strconv.Itoa(i))
	}
	admin := e.open()
	var names []string
	deadline := time.Now().Add(e.within())
	for {
		err := e.call(func(ctx context.Context) error {
			var err error
			names, err = admin.Children(ctx, faultElection)
			return err
		})
		if err == nil && len(names) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the election holds %q (%v), want the %d live candidates only", names, err, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Each leads in turn: a ghost would lead once its turn came and keep
	// the rest waiting for ever.
	var last int64
	for round := range n {
		who := -1
		var l coord.Leadership
		deadline := time.Now().Add(e.within())
		for who < 0 {
			for i, ch := range pending {
				select {
				case r := <-ch:
					if r.err != nil {
						t.Fatalf("round %d: candidate %d: Campaign: %v", round, i, r.err)
					}
					who, l = i, r.l
				default:
				}
				if who >= 0 {
					break
				}
			}
			if who < 0 {
				if time.Now().After(deadline) {
					err := e.call(func(ctx context.Context) error {
						var err error
						names, err = admin.Children(ctx, faultElection)
						return err
					})
					t.Fatalf("round %d: nobody leads within %v; the election holds %q (%v)", round, e.within(), names, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		delete(pending, who)
		if l.Token() <= last {
			t.Fatalf("round %d: token %d not greater than %d", round, l.Token(), last)
		}
		last = l.Token()
		if err := e.call(l.Resign); err != nil {
			t.Fatalf("round %d: Resign: %v", round, err)
		}
	}
	e.until(e.within(), "the election empty after everyone resigned", func() bool {
		err := e.call(func(ctx context.Context) error {
			var err error
			names, err = admin.Children(ctx, faultElection)
			return err
		})
		return err == nil && len(names) == 0
	})

	// No ephemeral sequential node whose create succeeded was lost. Nodes
	// whose create failed with the connection may be there (the contract
	// promises no more for plain creates).
	var eph []string
	if err := e.call(func(ctx context.Context) error {
		var err error
		eph, err = admin.Children(ctx, "/eph")
		return err
	}); err != nil && !errors.Is(err, coord.ErrNotFound) {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, name := range eph {
		have[name] = true
	}
	mu.Lock()
	defer mu.Unlock()
	var missing []string
	live := 0
	for _, m := range made {
		if isClosed(m.c.Done()) {
			continue // its session ended, and its nodes with it
		}
		live++
		if !have[coord.Base(m.path)] {
			missing = append(missing, m.path)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("ephemeral sequential nodes whose create succeeded are gone: %s", strings.Join(missing, ", "))
	}
	t.Logf("ephemeral sequential nodes: %d made by live sessions, %d present: %d from creates that reported failure",
		live, len(eph), len(eph)-live)
}

type madeNode struct {
	c    coord.Coordinator
	path string
}

// The leader's candidate node deleted from outside, through another member
// than the one the leader's client talks to, ends its leadership; the
// waiting candidate, on a third member, leads.
func testLeaderNodeDeletedFromOutside(e *faultEnv) {
	t := e.t
	a, b, admin := e.openOn(0), e.openOn(1), e.openOn(2)
	la := e.lead(e.campaign(a, "a"), e.within(), "a")
	waiting := e.campaign(b, "b")
	e.waits(waiting, 300*time.Millisecond, "b")
	var names []string
	if err := e.call(func(ctx context.Context) error {
		var err error
		names, err = admin.Children(ctx, faultElection)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var node string
	for _, name := range names {
		p := coord.Join(faultElection, name)
		var n coord.Node
		if err := e.call(func(ctx context.Context) error {
			var err error
			n, err = admin.Get(ctx, p)
			return err
		}); err == nil && string(n.Value) == "a" {
			node = p
		}
	}
	if node == "" {
		t.Fatalf("no candidate node holds the leader's value among %q", names)
	}
	if err := e.call(func(ctx context.Context) error { return admin.Delete(ctx, node, coord.AnyVersion) }); err != nil {
		t.Fatalf("delete the leader's candidate node from outside: %v", err)
	}
	took := e.waitFor(la.Lost(), e.within(), "Lost after the leader's node was deleted")
	lb := e.lead(waiting, e.within(), "b after the leader's node was deleted")
	if lb.Token() <= la.Token() {
		t.Fatalf("token %d not greater than %d", lb.Token(), la.Token())
	}
	if isClosed(a.Done()) {
		t.Fatal("losing leadership ended the session")
	}
	t.Logf("Lost fired %v after the delete returned", took.Round(time.Millisecond))
}
