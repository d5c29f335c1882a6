package coordtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
)

// FaultHarness is a Harness on a cluster of several members (three in the
// integration tests) that can also hurt it, one member or one client at a
// time. Members are numbered from 0. Every session the harness opens reaches
// the members through proxies of its own, so one client can be cut off
// without the others. Methods that take a Coordinator accept only sessions
// the harness opened.
type FaultHarness interface {
	Harness
	// Members is the number of members.
	Members() int
	// OpenOn opens a session like Open whose client talks to member m: every
	// connection it makes goes to m until the harness takes m down (Kill,
	// Stop, Pause, RestartCluster); from then on it may reach every member,
	// as a client of Open does.
	OpenOn(ctx context.Context, ns string, m int) (coord.Coordinator, error)
	// Leader returns the member the cluster itself is led by (etcd: the raft
	// leader; ZooKeeper: the server in "Mode: leader"), waiting while it has
	// none.
	Leader(ctx context.Context) (int, error)
	// Kill kills member m with SIGKILL; it stays down until Start.
	Kill(ctx context.Context, m int) error
	// Stop stops member m gracefully (SIGTERM); it stays down until Start.
	Stop(ctx context.Context, m int) error
	// Start starts a killed or stopped member with its data and returns once
	// it serves clients. Clients reach it again even if its address changed.
	Start(ctx context.Context, m int) error
	// Pause freezes member m: its connections stay open and go silent.
	Pause(ctx context.Context, m int) error
	// Unpause thaws a paused member.
	Unpause(ctx context.Context, m int) error
	// RestartCluster stops every member, keeps them all down for down, starts
	// them again with their data and returns once the cluster serves
	// clients.
	RestartCluster(ctx context.Context, down time.Duration) error
	// Partition cuts c off from every member, silently, as a network
	// partition does: bytes are dropped both ways and nothing is closed.
	Partition(c coord.Coordinator) error
	// Heal undoes Partition. Connections that were open meanwhile are
	// usually broken; c reconnects.
	Heal(c coord.Coordinator) error
	// DropConnections resets every connection c has; c may reconnect at
	// once.
	DropConnections(c coord.Coordinator) error
	// Recover undoes every fault: it starts members that are down, thaws
	// paused ones and heals every client, then waits until every member
	// serves clients and the cluster has a leader.
	Recover(ctx context.Context) error
}

// FaultOption tunes RunFaults.
type FaultOption func(*faultConfig)

type faultConfig struct {
	safetyDuration time.Duration
	safetySeed     int64
}

// DefaultSafetyDuration is how long RandomizedSafety injects faults unless
// WithSafetyDuration says otherwise.
const DefaultSafetyDuration = 2 * time.Minute

// WithSafetyDuration sets how long RandomizedSafety injects faults; 0 or
// less skips it.
func WithSafetyDuration(d time.Duration) FaultOption {
	return func(c *faultConfig) { c.safetyDuration = d }
}

// WithSafetySeed fixes the seed RandomizedSafety draws its faults from, to
// replay a run (the timing of a cluster under faults is not replayed, so
// the run is similar, not identical). 0 picks a random seed.
func WithSafetySeed(seed int64) FaultOption {
	return func(c *faultConfig) { c.safetySeed = seed }
}

// faultCallTimeout bounds one call that is expected to succeed while the
// cluster keeps its quorum.
const faultCallTimeout = 5 * time.Second

// faultElection is the election the fault scenarios campaign in, the
// scheduler's.
const faultElection = "/ha/election"

type faultScenario struct {
	name string
	run  func(*faultEnv)
}

// faultScenarios lists the scenarios RunFaults runs, named for the
// behaviour they prove, the same on every backend.
func faultScenarios() []faultScenario {
	return []faultScenario{
		{"FollowerKilledOrPausedChangesNothing", testFollowerKilledOrPausedChangesNothing},
		{"LeadersMemberKilled", testLeadersMemberKilled},
		{"WholeClusterRestarted", testWholeClusterRestarted},
		{"LeaderPartitioned", testLeaderPartitioned},
		{"CampaignWhileSessionExpires", testCampaignWhileSessionExpires},
		{"ConnectionLossDuringSequentialCreate", testConnectionLossDuringSequentialCreate},
		{"LeaderNodeDeletedFromOutside", testLeaderNodeDeletedFromOutside},
		{"RandomizedSafety", testRandomizedSafety},
	}
}

// RunFaults runs every fault scenario against h, each in a namespace of its
// own, on a whole cluster: before and after each scenario every fault is
// undone (Recover).
func RunFaults(t *testing.T, h FaultHarness, opts ...FaultOption) {
	cfg := faultConfig{safetyDuration: DefaultSafetyDuration}
	for _, o := range opts {
		o(&cfg)
	}
	if n := h.Members(); n < 3 {
		t.Fatalf("the fault scenarios need a cluster of at least 3 members, the harness has %d", n)
	}
	for _, s := range faultScenarios() {
		t.Run(s.name, func(t *testing.T) {
			e := newFaultEnv(t, h, cfg, s.name)
			recoverCluster := func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				return h.Recover(ctx)
			}
			if err := recoverCluster(); err != nil {
				t.Fatalf("restore the cluster before the scenario: %v", err)
			}
			// Deferred, so it runs before the cleanups that close the
			// scenario's sessions, which may need the whole cluster.
			defer func() {
				if err := recoverCluster(); err != nil {
					t.Errorf("restore the cluster after the scenario: %v", err)
				}
			}()
			s.run(e)
		})
	}
}

// faultEnv is one fault scenario's world: a namespace of its own and the
// sessions opened in it, closed when the scenario ends.
type faultEnv struct {
	t   *testing.T
	h   FaultHarness
	cfg faultConfig
	ns  string
	ctx context.Context
}

func newFaultEnv(t *testing.T, h FaultHarness, cfg faultConfig, name string) *faultEnv {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	timeout := scenarioTimeout
	if name == "RandomizedSafety" {
		timeout = cfg.safetyDuration + 5*time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return &faultEnv{t: t, h: h, cfg: cfg, ns: "ft-" + hex.EncodeToString(b[:]), ctx: ctx}
}

// open opens a session in the scenario's namespace that reaches every
// member.
func (e *faultEnv) open() coord.Coordinator {
	e.t.Helper()
	c, err := e.h.Open(e.ctx, e.ns)
	if err != nil {
		e.t.Fatalf("open a session: %v", err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

// openOn opens a session in the scenario's namespace that talks to member
// m.
func (e *faultEnv) openOn(m int) coord.Coordinator {
	e.t.Helper()
	c, err := e.h.OpenOn(e.ctx, e.ns, m)
	if err != nil {
		e.t.Fatalf("open a session on member %d: %v", m, err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

// within is a deadline generous enough for anything the session timeout
// bounds, with room for the cluster to elect a leader of its own.
func (e *faultEnv) within() time.Duration { return 3*e.h.SessionTimeout() + 10*time.Second }

// clusterLeader is the member that leads the cluster.
func (e *faultEnv) clusterLeader() int {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, e.within())
	defer cancel()
	m, err := e.h.Leader(ctx)
	if err != nil {
		e.t.Fatalf("find the cluster's leader: %v", err)
	}
	return m
}

// others lists the members but the given ones.
func (e *faultEnv) others(but ...int) []int {
	var out []int
	for m := range e.h.Members() {
		skip := false
		for _, b := range but {
			skip = skip || m == b
		}
		if !skip {
			out = append(out, m)
		}
	}
	return out
}

// do runs one fault operation and fails the scenario if it fails.
func (e *faultEnv) do(what string, op func(context.Context) error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := op(ctx); err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
	e.t.Logf("%s (took %v)", what, time.Since(start).Round(time.Millisecond))
}

// writer is l's fenced writer.
func (e *faultEnv) writer(l coord.Leadership) coord.Writer { return l.Writer() }

// sleep waits d, or less if the scenario's context ends.
func (e *faultEnv) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-e.ctx.Done():
	}
}

// until polls cond until it holds or d passes.
func (e *faultEnv) until(d time.Duration, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) || e.ctx.Err() != nil {
			e.t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// call runs f with a per-call timeout.
func (e *faultEnv) call(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(e.ctx, faultCallTimeout)
	defer cancel()
	return f(ctx)
}

// leader is the value of the election's leader as c reads it.
func (e *faultEnv) leader(c coord.Coordinator) (string, error) {
	var v []byte
	err := e.call(func(ctx context.Context) error {
		var err error
		v, err = c.Leader(ctx, faultElection)
		return err
	})
	return string(v), err
}

// faultCampaign is a campaign's outcome.
type faultCampaign struct {
	l   coord.Leadership
	err error
}

// campaign starts a campaign in the background; its outcome arrives on the
// returned channel.
func (e *faultEnv) campaign(c coord.Coordinator, value string) <-chan faultCampaign {
	ch := make(chan faultCampaign, 1)
	go func() {
		l, err := c.Campaign(e.ctx, faultElection, []byte(value))
		ch <- faultCampaign{l, err}
	}()
	return ch
}

// campaignUntilDecided campaigns as RunElection does: again after a
// failure, until it leads or the session ends (ErrSessionLost then).
func (e *faultEnv) campaignUntilDecided(c coord.Coordinator, value string) <-chan faultCampaign {
	ch := make(chan faultCampaign, 1)
	go func() {
		for {
			l, err := c.Campaign(e.ctx, faultElection, []byte(value))
			if err == nil || isClosed(c.Done()) || e.ctx.Err() != nil {
				ch <- faultCampaign{l, err}
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return ch
}

// lead waits for a campaign to win.
func (e *faultEnv) lead(ch <-chan faultCampaign, d time.Duration, who string) coord.Leadership {
	e.t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			e.t.Fatalf("%s: Campaign: %v", who, r.err)
		}
		return r.l
	case <-time.After(d):
		e.t.Fatalf("%s: did not become leader within %v", who, d)
	}
	return nil
}

// waits checks that a campaign is still waiting after d.
func (e *faultEnv) waits(ch <-chan faultCampaign, d time.Duration, who string) {
	e.t.Helper()
	select {
	case r := <-ch:
		e.t.Fatalf("%s: Campaign returned (%v, %v) while another candidate leads; want it to wait", who, r.l, r.err)
	case <-time.After(d):
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitFor waits until ch is closed and says how long that took.
func (e *faultEnv) waitFor(ch <-chan struct{}, d time.Duration, what string) time.Duration {
	e.t.Helper()
	start := time.Now()
	select {
	case <-ch:
		return time.Since(start)
	case <-time.After(d):
		e.t.Fatalf("%s: not within %v", what, d)
	}
	return 0
}

// isEnded reports whether err says the term or the session is over.
func isEnded(err error) bool {
	return errors.Is(err, coord.ErrNotLeader) || errors.Is(err, coord.ErrSessionLost) || errors.Is(err, coord.ErrClosed)
}
