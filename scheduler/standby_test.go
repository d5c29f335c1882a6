package scheduler

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
)

// loadedForTest reports whether the standby holds Mirrors that have
// loaded.
func (s *standby) loadedForTest() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil && s.cur.loaded.Load()
}

// loadedFrom says where n's current term loaded its state from.
func loadedFrom(t *testing.T, n *node) string {
	t.Helper()
	var from string
	mustDo(t, n.s.write(ctxT(t), func(_ context.Context, tm *term) error {
		from = tm.loadedFrom
		return nil
	}))
	return from
}

// A standby that takes over loads from its Mirrors, and they hold every
// write its predecessor made, up to the last one before it resigned: each
// round registers jobs and triggers one of them on the leader, stops the
// leader at once, and checks that the next leader loaded from its mirror
// and has every job, and the triggered job's ready node as the store has
// it (a stale one would fail the term's next write of it, which expects
// its version). Five hand-overs, each to a process that was a standby for
// the whole round.
func TestStandbyTakesOverFromItsMirror(t *testing.T) {
	open := etcdOpen(t)
	cluster := schedtest.NewCluster()
	cluster.FinishOnLaunch = true
	start := func(name string) *node {
		return startNode(t, Config{Open: open, Executor: cluster.Factory(name), ExecutorName: "fake",
			Advertise: name + ":8899", LaunchInterval: 20 * time.Millisecond})
	}
	ctx := ctxT(t)
	leader := start("n0")
	eventually(t, "n0 leads", leader.leading)
	var registered []string
	for round := 1; round <= 5; round++ {
		next := start(fmt.Sprintf("n%d", round))
		// Let the standby's first full read finish: a term takes only
		// loaded Mirrors, and this round tests one catching up.
		eventually(t, fmt.Sprintf("n%d's mirror loads", round), func() bool { return next.s.standby.loadedForTest() })
		var jobs []model.Job
		for i := range 20 {
			j := testJob(fmt.Sprintf("r%d-job%02d", round, i), "0 0 0 1 1 ? 2099")
			jobs = append(jobs, j)
			registered = append(registered, j.JobName)
		}
		register(t, leader.s, jobs...)
		mustDo(t, leader.s.TriggerJob(ctx, model.Trigger{JobName: jobs[0].JobName}))
		leader.stop() // resigns: next takes over at once
		eventually(t, fmt.Sprintf("n%d leads", round), next.leading)
		if from := loadedFrom(t, next); from != "mirror" {
			t.Fatalf("round %d: the new term loaded from %q, want the mirror", round, from)
		}
		got, err := next.s.Jobs(ctx)
		mustDo(t, err)
		have := map[string]bool{}
		for _, j := range got {
			have[j.JobName] = true
		}
		for _, name := range registered {
			if !have[name] {
				t.Fatalf("round %d: the new leader lacks job %s", round, name)
			}
		}
		// Every job's ready node in the term's memory is the store's (read
		// on the loop, so that no write of the term comes in between): a
		// version loaded stale would fail the term's next write of it.
		mustDo(t, next.s.write(ctx, func(ctx context.Context, tm *term) error {
			stored, err := tm.st.Ready(ctx)
			if err != nil {
				return err
			}
			for name, js := range tm.jobs {
				if rn, ok := stored[name]; !ok || rn.Version != js.ready.Version {
					return fmt.Errorf("round %d: ready node of %s at version %v in the term, %v in the store", round, name, js.ready.Version, rn.Version)
				}
			}
			return nil
		}))
		leader = next
	}
}

// gatedMirrorer's Mirrors do not finish their first full read until gate
// is closed: a standby's Mirrors still loading.
type gatedMirrorer struct {
	coord.Coordinator
	gate   chan struct{}
	closed chan struct{} // one value a Mirror closed
}

func (g *gatedMirrorer) Mirror(ctx context.Context, path string) (coord.Mirror, error) {
	m, err := g.Coordinator.(coord.Mirrorer).Mirror(ctx, path)
	if err != nil {
		return nil, err
	}
	return &gatedMirror{Mirror: m, g: g}, nil
}

type gatedMirror struct {
	coord.Mirror
	g *gatedMirrorer
}

func (m *gatedMirror) Sync(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-m.g.gate:
	}
	return m.Mirror.Sync(ctx)
}

func (m *gatedMirror) Close() error {
	err := m.Mirror.Close()
	select {
	case m.g.closed <- struct{}{}:
	default:
	}
	return err
}

// A standby hands a starting term only Mirrors that have loaded: one still
// on its first full read is closed at once (it would otherwise go on
// reading beside the term's own read of the servers), and the term reads
// the servers. Once the term ends the standby mirrors again, and hands
// over what has loaded.
func TestStandbyHandsOverOnlyLoadedMirrors(t *testing.T) {
	open := etcdOpen(t)
	g := &gatedMirrorer{gate: make(chan struct{}), closed: make(chan struct{}, 4)}
	s := newStandby(hclog.NewNullLogger(), func(ctx context.Context) (coord.Coordinator, error) {
		c, err := open(ctx)
		if err != nil {
			return nil, err
		}
		g.Coordinator = c
		return g, nil
	})
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	opened := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.cur != nil
	}
	eventually(t, "the standby mirrors", opened)
	if w := s.take(); w != nil {
		w.close()
		t.Fatal("take handed over Mirrors still on their first read")
	}
	select {
	case <-g.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("take did not close the Mirrors still loading")
	}
	if opened() {
		t.Fatal("the standby mirrors while a term leads")
	}
	close(g.gate)
	s.release()
	eventually(t, "the standby's Mirrors load after the term", s.loadedForTest)
	w := s.take()
	if w == nil {
		t.Fatal("take handed over nothing though the Mirrors had loaded")
	}
	defer w.close()
	if err := w.mirrors.Sync(ctx); err != nil {
		t.Fatalf("sync the handed-over Mirrors: %v", err)
	}
}
