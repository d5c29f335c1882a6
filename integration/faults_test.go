package integration

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/coordtest"
)

// The fault scenarios, once per backend, each on a 3-member cluster of
// containers; then the failover figures. Scenario names are the same under
// both tests.
//
// RandomizedSafety injects faults for -hasched.safety (or
// HASCHED_SAFETY_DURATION; 2m by default, 0 skips it) and logs its seed;
// HASCHED_SAFETY_SEED replays a seed's fault sequence.

var safetyDuration = flag.Duration("hasched.safety", coordtest.DefaultSafetyDuration,
	"how long RandomizedSafety injects faults (overrides HASCHED_SAFETY_DURATION; 0 skips it)")

func TestFaultsEtcd(t *testing.T) {
	cl := newEtcdCluster(t)
	coordtest.RunFaults(t, cl, faultOptions(t)...)
	t.Run("FailoverTimes", func(t *testing.T) { measureFailover(t, "etcd", cl) })
}

func TestFaultsZooKeeper(t *testing.T) {
	cl := newZKCluster(t)
	coordtest.RunFaults(t, cl, faultOptions(t)...)
	t.Run("FailoverTimes", func(t *testing.T) { measureFailover(t, "ZooKeeper", cl) })
}

// faultOptions reads the safety run's duration (the flag if given, else the
// environment, else the default) and seed.
func faultOptions(t *testing.T) []coordtest.FaultOption {
	t.Helper()
	d := coordtest.DefaultSafetyDuration
	if v := os.Getenv("HASCHED_SAFETY_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("HASCHED_SAFETY_DURATION=%q: %v", v, err)
		}
	}
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "hasched.safety" {
			d = *safetyDuration
		}
	})
	opts := []coordtest.FaultOption{coordtest.WithSafetyDuration(d)}
	if v := os.Getenv("HASCHED_SAFETY_SEED"); v != "" {
		seed, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("HASCHED_SAFETY_SEED=%q: %v", v, err)
		}
		opts = append(opts, coordtest.WithSafetySeed(seed))
	}
	return opts
}

const failoverRounds = 3

// measureFailover logs how long leadership takes to move on backend h, next
// to its session timeout: from the leader's crash, which is its client cut
// off from every member (a crashed process or a partitioned host, to the
// cluster alike), to the next leader's first successful fenced write; and
// the same from a graceful Resign.
func measureFailover(t *testing.T, backend string, h coordtest.FaultHarness) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := h.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	ns := "failover-" + randomToken()
	var crash, lost, graceful []time.Duration
	for range failoverRounds {
		w, l, err := handOver(ctx, h, ns, true)
		if err != nil {
			t.Fatalf("crash hand-over: %v", err)
		}
		crash, lost = append(crash, w), append(lost, l)
		w, _, err = handOver(ctx, h, ns, false)
		if err != nil {
			t.Fatalf("graceful hand-over: %v", err)
		}
		graceful = append(graceful, w)
	}
	t.Logf("%s, session timeout %v: leader's client cut off → next leader's first fenced write: %s (old leader's Lost fired after %s); "+
		"graceful Resign → next leader's first fenced write: %s",
		backend, h.SessionTimeout(), figures(crash), figures(lost), figures(graceful))
	early := 0
	for i := range crash {
		if crash[i] < lost[i] {
			early++
		}
	}
	if early > 0 {
		t.Logf("%s: in %d of %d rounds the new leader's fenced write succeeded before the cut-off leader's Lost fired: "+
			"only fencing keeps the old leader's writes out in that window", backend, early, len(crash))
	}
}

// handOver makes a leader and a waiting candidate, ends the leader's term
// (crash: cuts its client off; otherwise: Resign) and returns how long
// until the candidate's first fenced write succeeded, and until the old
// leader's Lost fired.
func handOver(ctx context.Context, h coordtest.FaultHarness, ns string, crash bool) (write, lost time.Duration, err error) {
	const election = "/ha/election"
	a, err := h.Open(ctx, ns)
	if err != nil {
		return 0, 0, err
	}
	defer a.Close()
	b, err := h.Open(ctx, ns)
	if err != nil {
		return 0, 0, err
	}
	defer b.Close()
	if _, err := a.Create(ctx, "/failover", nil); err != nil && !errors.Is(err, coord.ErrExists) {
		return 0, 0, err
	}
	la, err := a.Campaign(ctx, election, []byte("a"))
	if err != nil {
		return 0, 0, fmt.Errorf("a's campaign: %w", err)
	}
	type won struct {
		l   coord.Leadership
		err error
	}
	wins := make(chan won, 1)
	go func() {
		l, err := b.Campaign(ctx, election, []byte("b"))
		wins <- won{l, err}
	}()
	for {
		names, err := a.Children(ctx, election)
		if err != nil {
			return 0, 0, err
		}
		if len(names) == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	start := time.Now()
	lostAt := make(chan time.Duration, 1)
	go func() {
		select {
		case <-la.Lost():
			lostAt <- time.Since(start)
		case <-ctx.Done():
		}
	}()
	if crash {
		if err := h.Partition(a); err != nil {
			return 0, 0, err
		}
		defer func() { _ = h.Heal(a) }()
	} else if err := la.Resign(ctx); err != nil {
		return 0, 0, fmt.Errorf("Resign: %w", err)
	}
	var r won
	select {
	case r = <-wins:
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	if r.err != nil {
		return 0, 0, fmt.Errorf("b's campaign: %w", r.err)
	}
	defer func() { _ = r.l.Resign(ctx) }()
	if _, err := r.l.Writer().Set(ctx, "/failover", []byte("b"), coord.AnyVersion); err != nil {
		return 0, 0, fmt.Errorf("the new leader's first fenced write: %w", err)
	}
	write = time.Since(start)
	select {
	case lost = <-lostAt:
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	return write, lost, nil
}

// figures lists durations with their median.
func figures(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.Round(time.Millisecond).String()
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	return fmt.Sprintf("%s (median %v)", strings.Join(s, ", "), sorted[len(sorted)/2].Round(time.Millisecond))
}
