package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tasks on several hosts (issue 10): three hasched hosts (hostsrig_test.go)
// run the tasks of a job firing every second and of a DAEMON job, with the
// cluster executor; the scenarios hurt one host at a time as hosts get hurt
// and read the ledger (ledger_test.go): no two runs of one task at once on
// any hosts, no fire dropped, no task id started twice — and how fast the
// tasks of a lost host run elsewhere. TestRandomizedSafetyHosts does all of
// it at random, the coordination service's restarts too.
//
// Figures are logged as "FIGURE <backend>.<name> <value>" lines.

// Bounds the scenarios assert.
const (
	// hostsRelaunchSlack: the tasks of a host killed or cut off run
	// elsewhere within the session timeout plus this.
	hostsRelaunchSlack = 5 * time.Second
	// hostsThawBound: a thawed host's tasks whose session expired while
	// it was frozen write nothing after this long (they are killed at
	// once).
	hostsThawBound = time.Second
	// hostsStartGrace: a task placed on a host just before it started
	// draining may still start this long after the SIGTERM (its first
	// ledger line comes from a shell started under load).
	hostsStartGrace = 2 * time.Second
)

// The rig's jobs.
const (
	hostsTickShards   = 3
	hostsTickBeats    = 8 // each tick task runs ~1.8 s: a few at once per shard
	hostsDaemonShards = 3
)

func TestHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs hasched hosts as containers (make test runs it)")
	}
	for _, b := range hostsBackends {
		t.Run(b.name, func(t *testing.T) {
			env := newHostsEnv(t, b)
			t.Run("Steady", func(t *testing.T) { hostsSteady(t, env) })
			t.Run("LeaderProcessKilled", func(t *testing.T) { hostsLeaderProcessKilled(t, env) })
			t.Run("HostKilled", func(t *testing.T) { hostsHostKilled(t, env) })
			t.Run("HostCutOff", func(t *testing.T) { hostsHostCutOff(t, env) })
			t.Run("HostPaused", func(t *testing.T) { hostsHostPaused(t, env) })
			t.Run("HostDrained", func(t *testing.T) { hostsHostDrained(t, env) })
		})
	}
}

// hostsRun is a scenario's rig with the tick and daemon jobs running.
type hostsRun struct {
	*hostsRig
	b            hostsBackend
	tick, daemon *rigJob
}

func (hr *hostsRun) jobs() []*rigJob { return []*rigJob{hr.tick, hr.daemon} }

func (hr *hostsRun) ledgerJobs() []ledgerJob { return ledgerJobs(hr.jobs(), 0) }

// figure logs a figure of this backend.
func (hr *hostsRun) figure(name string, value any) {
	hr.t.Helper()
	figure(hr.t, hr.b.name+"."+name, value)
}

// startHostsRun starts three hosts and the jobs, and waits until both
// run on every shard.
func startHostsRun(t *testing.T, env *hostsEnv) *hostsRun {
	t.Helper()
	r := newHostsRig(t, env, 3, hostsClusterArgs)
	r.registerApp()
	hr := &hostsRun{hostsRig: r, b: env.b}
	hr.tick = r.registerEverySecond("tick", hostsTickShards, hostsTickBeats)
	hr.daemon = r.registerDaemon("daemon", hostsDaemonShards)
	r.waitRuns(hr.tick, 3, time.Minute)
	r.waitRuns(hr.daemon, 1, time.Minute)
	return hr
}

// checkAll waits for the catch-up, then checks the ledger with fires up to
// a little before now.
func (hr *hostsRun) checkAll() ledgerReport {
	hr.t.Helper()
	return hr.checkWithin(time.Minute)
}

// checkWithin is checkAll, waiting up to timeout for the fires still
// owed.
func (hr *hostsRun) checkWithin(timeout time.Duration) ledgerReport {
	hr.t.Helper()
	to := time.Now().Add(-2 * time.Second).UnixMilli()
	return hr.check(hr.jobs(), to, timeout)
}

// victim is a host other than the leader running the most tasks.
func (hr *hostsRun) victim() (victim, leader *rigHost) {
	hr.t.Helper()
	leader = hr.waitLeader(time.Minute)
	victim = hr.busiest(hr.others(leader))
	hr.logf("leader %s; victim %s", leader.name, victim.name)
	return victim, leader
}

// liveAt are the runs on host alive at at (no end line, a line within two
// beats before it).
func liveAt(runs []ledgerRun, host string, at time.Time) []ledgerRun {
	var out []ledgerRun
	ns := at.UnixNano()
	for _, r := range runs {
		if r.Host == host && r.Start <= ns && !r.Ended && r.Last >= ns-int64(2*ledgerBeat) {
			out = append(out, r)
		}
	}
	return out
}

// relaunched measures how long after at the runs alive on host then ran
// elsewhere; every one of them must have, within bound.
func (hr *hostsRun) relaunched(host *rigHost, at time.Time, bound time.Duration, what string) []time.Duration {
	hr.t.Helper()
	runs := hr.runs()
	delays, missing := ledgerRelaunchDelays(runs, hr.ledgerJobs(), host.name, at.UnixNano(), 2*ledgerBeat)
	if len(missing) > 0 {
		hr.t.Errorf("%s: runs alive on %s never ran again: %s", what, host.name, strings.Join(missing, "; "))
	}
	if len(delays) == 0 {
		hr.t.Errorf("%s: no run was alive on %s at %s", what, host.name, at.UTC().Format("15:04:05.000"))
		return nil
	}
	if mx := delays[len(delays)-1]; mx > bound {
		hr.t.Errorf("%s: the tasks of %s ran elsewhere up to %v later; want at most %v", what, host.name, mx.Round(time.Millisecond), bound)
	}
	hr.logf("%s: %d runs of %s ran elsewhere %v..%v later (p50 %v)", what, len(delays), host.name,
		delays[0].Round(time.Millisecond), delays[len(delays)-1].Round(time.Millisecond), quantile(delays, 0.5).Round(time.Millisecond))
	return delays
}

// noStartsAfter fails the test for runs started on host after at.
func (hr *hostsRun) noStartsAfter(host *rigHost, at time.Time, what string) {
	hr.t.Helper()
	var late []string
	for _, r := range hr.runs() {
		if r.Host == host.name && r.Start > at.UnixNano() {
			late = append(late, r.String())
		}
	}
	if len(late) > 0 {
		hr.t.Errorf("%s: runs started on %s after %s: %s", what, host.name, at.UTC().Format("15:04:05.000"), strings.Join(late, "; "))
	}
}

// hostsSteady: no fault; how late tasks start on hosts that do not lead,
// and how a DAEMON job of 30 shards spreads over the three hosts.
func hostsSteady(t *testing.T, env *hostsEnv) {
	r := newHostsRig(t, env, 3, hostsClusterArgs)
	r.registerApp()
	hr := &hostsRun{hostsRig: r, b: env.b}
	hr.tick = r.registerEverySecond("tick", hostsTickShards, 2)
	hr.daemon = &rigJob{name: "spread", shards: 30, daemon: true}
	leader := r.waitLeader(time.Minute)
	time.Sleep(8 * time.Second)

	var lat []time.Duration
	hosts := map[string]int{}
	for _, run := range r.runs() {
		if run.Job == "tick" && run.Attempt == 0 && run.Host != leader.name {
			lat = append(lat, time.Duration(run.Start-run.fireNs()))
		}
		if run.Job == "tick" {
			hosts[run.Host]++
		}
	}
	slices.Sort(lat)
	if len(lat) < 10 {
		t.Fatalf("%d runs of tick on hosts other than the leader %s, want 10 or more (runs per host: %v)", len(lat), leader.name, hosts)
	}
	hr.logf("tick runs per host: %v", hosts)
	hr.figure("fire_to_start_nonleader_p50", quantile(lat, 0.5))
	hr.figure("fire_to_start_nonleader_p99", quantile(lat, 0.99))
	hr.figure("fire_to_start_nonleader_n", len(lat))

	r.registerDaemon("spread", 30)
	var spread map[string]int
	haEventually(t, "the 30 shards of spread are placed", time.Minute, func() error {
		ws, err := r.workers()
		if err != nil {
			return err
		}
		spread = map[string]int{}
		total := 0
		for _, w := range ws {
			for _, task := range w.Tasks {
				if task.Job == "spread" {
					spread[w.Name]++
					total++
				}
			}
		}
		if total != 30 {
			return fmt.Errorf("%d shards placed: %v", total, spread)
		}
		return nil
	})
	var counts []string
	for _, h := range r.hosts {
		counts = append(counts, strconv.Itoa(spread[h.name]))
	}
	hr.figure("spread_30_shards_3_hosts", strings.Join(counts, "/"))
	for _, h := range r.hosts {
		if n := spread[h.name]; n < 8 || n > 12 {
			t.Errorf("%s runs %d of 30 shards, want about 10 (spread %v)", h.name, n, spread)
		}
	}
	hr.checkAll()
}

// hostsLeaderProcessKilled: kill -9 the leader's hasched process; the
// host lives and starts it again half a second later, which adopts the
// tasks it left running. Nothing runs twice, no fire is dropped.
func hostsLeaderProcessKilled(t *testing.T, env *hostsEnv) {
	hr := startHostsRun(t, env)
	leader := hr.waitLeader(time.Minute)
	time.Sleep(2 * time.Second)
	killed := time.Now()
	leader.killProcess()
	var next *rigHost
	haEventually(t, "a host leads again", time.Minute, func() error {
		if next = hr.currentLeader(); next == nil {
			return fmt.Errorf("nobody leads")
		}
		return nil
	})
	hr.figure("leader_process_killed_to_leader", time.Since(killed))
	hr.logf("%s leads %v after the kill", next.name, time.Since(killed).Round(time.Millisecond))
	time.Sleep(hr.b.sessionTimeout + 5*time.Second)
	hr.waitLeader(time.Minute)
	rep := hr.checkAll()
	// The restarted process adopted what its predecessor left running:
	// no fire ran twice, and the daemon's shards kept their first runs.
	if len(rep.Multi) > 0 {
		t.Errorf("fires ran more than once after the leader's process was killed: %s", strings.Join(rep.Multi, "; "))
	}
	n := 0
	for _, run := range hr.runs() {
		if run.Job == hr.daemon.name {
			n++
		}
	}
	if n != hostsDaemonShards {
		t.Errorf("the daemon's shards ran %d times, want %d (one run each, adopted)", n, hostsDaemonShards)
	}
}

// hostsHostKilled: kill a host's container (not the leader's). Its tasks
// run elsewhere only after its runs are dead, within the session timeout
// plus hostsRelaunchSlack.
func hostsHostKilled(t *testing.T, env *hostsEnv) {
	hr := startHostsRun(t, env)
	victim, _ := hr.victim()
	killed := time.Now()
	victim.killHost()
	time.Sleep(hr.b.sessionTimeout + hostsRelaunchSlack + time.Second)
	delays := hr.relaunched(victim, killed, hr.b.sessionTimeout+hostsRelaunchSlack, "host killed")
	hr.figure("host_killed_to_running_elsewhere_p50", quantile(delays, 0.5))
	hr.figure("host_killed_to_running_elsewhere_max", quantile(delays, 1))
	hr.noStartsAfter(victim, killed, "host killed")
	hr.checkAll()
}

// hostsHostCutOff: cut a host off the network while its tasks run. They
// stop (the worker's safety clock runs out) before they run elsewhere
// (after the session expired on the server).
func hostsHostCutOff(t *testing.T, env *hostsEnv) {
	hr := startHostsRun(t, env)
	victim, _ := hr.victim()
	cut := time.Now()
	victim.cut()
	time.Sleep(hr.b.sessionTimeout + hostsRelaunchSlack + time.Second)

	runs := hr.runs()
	live := liveAt(runs, victim.name, cut)
	var stopped time.Duration
	for _, run := range live {
		stopped = max(stopped, time.Duration(run.Last-cut.UnixNano()))
	}
	hr.figure("host_cut_to_tasks_stopped_max", stopped)
	if stopped > hr.b.sessionTimeout {
		t.Errorf("the tasks of the cut-off %s wrote up to %v after the cut; want them killed within the session timeout %v", victim.name, stopped.Round(time.Millisecond), hr.b.sessionTimeout)
	}
	delays := hr.relaunched(victim, cut, hr.b.sessionTimeout+hostsRelaunchSlack, "host cut off")
	hr.figure("host_cut_to_running_elsewhere_p50", quantile(delays, 0.5))
	hr.figure("host_cut_to_running_elsewhere_max", quantile(delays, 1))

	victim.heal()
	healed := time.Now()
	haEventually(t, victim.name+" registers again", time.Minute, func() error {
		ws, err := hr.workers()
		if err != nil {
			return err
		}
		for _, w := range ws {
			if w.Name == victim.name && !w.Draining {
				return nil
			}
		}
		return fmt.Errorf("%s is not among the workers", victim.name)
	})
	hr.logf("%s registered again %v after it was back on the network", victim.name, time.Since(healed).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	hr.checkAll()
}

// hostsHostPaused: freeze a host (docker pause) past its session timeout.
// Its tasks run elsewhere once its session expired; on thaw its old tasks
// are killed at once, and nothing they or it report is recorded.
func hostsHostPaused(t *testing.T, env *hostsEnv) {
	hr := startHostsRun(t, env)
	victim, _ := hr.victim()
	victim.pause()
	paused := time.Now()
	time.Sleep(hr.b.sessionTimeout + hostsRelaunchSlack)

	runs := hr.runs()
	old := liveAt(runs, victim.name, paused)
	// The server expires a session at least a session timeout after it
	// last heard of it; the clients send keep-alives every third of it.
	earliest := hr.b.sessionTimeout * 2 / 3
	delays := hr.relaunched(victim, paused, hr.b.sessionTimeout+hostsRelaunchSlack, "host paused")
	if len(delays) > 0 && delays[0] < earliest {
		t.Errorf("a task of the paused %s ran elsewhere %v after the pause, before its session can have expired (%v)", victim.name, delays[0].Round(time.Millisecond), earliest)
	}
	hr.figure("host_paused_to_running_elsewhere_min", quantile(delays, 0))
	hr.figure("host_paused_to_running_elsewhere_max", quantile(delays, 1))

	thawed := victim.unpause()
	time.Sleep(3 * time.Second)
	runs = hr.runs()
	var window time.Duration
	var wrote int
	for _, run := range runs {
		if run.Host == victim.name && run.Thawed > 0 {
			wrote++
			window = max(window, time.Duration(run.Thawed-thawed.UnixNano()))
		}
	}
	hr.figure("unpause_to_old_tasks_last_line_max", window)
	hr.figure("unpause_old_tasks_that_wrote", fmt.Sprintf("%d/%d", wrote, len(old)))
	if window > hostsThawBound {
		t.Errorf("the old tasks of the thawed %s wrote up to %v after the thaw; want them killed within %v", victim.name, window.Round(time.Millisecond), hostsThawBound)
	}
	// What the thawed worker could report of them is fenced: none of the
	// old task ids is running in the store.
	oldIDs := map[string]bool{}
	for _, run := range old {
		oldIDs[run.TaskID] = true
	}
	haEventually(t, "the store runs none of the thawed host's old tasks", 30*time.Second, func() error {
		ts, err := hr.running()
		if err != nil {
			return err
		}
		for _, task := range ts {
			if oldIDs[task.TaskID] {
				return fmt.Errorf("%s is %s on %q", task.TaskID, task.State, task.Host)
			}
		}
		return nil
	})
	hr.checkAll()
}

// hostsHostDrained: SIGTERM a host's hasched. Its TRANSIENT tasks finish,
// its DAEMON shards run elsewhere after they were killed, nothing new
// starts on it, and it exits 0.
func hostsHostDrained(t *testing.T, env *hostsEnv) {
	hr := startHostsRun(t, env)
	victim, _ := hr.victim()
	termed := time.Now()
	live := liveAt(hr.runs(), victim.name, termed)
	victim.terminate()
	// The signal went through docker exec: it arrived by now, not
	// necessarily by termed.
	signalled := time.Now()
	code := victim.waitServeExit(hostsDrainTimeout + 30*time.Second)
	drained := time.Since(termed)
	hr.figure("drain_took", drained)
	if code != 0 {
		t.Errorf("%s's hasched exited %d after SIGTERM, want 0", victim.name, code)
	}
	time.Sleep(hr.b.sessionTimeout)
	runs := hr.runs()
	byID := map[string]ledgerRun{}
	for _, run := range runs {
		if run.Host == victim.name {
			byID[run.TaskID] = run
		}
	}
	var unfinished []string
	var daemons int
	for _, run := range live {
		now := byID[run.TaskID]
		if run.Job == hr.daemon.name {
			daemons++
			continue
		}
		if !now.Ended {
			unfinished = append(unfinished, now.String())
		}
	}
	if len(unfinished) > 0 {
		t.Errorf("TRANSIENT tasks of the drained %s did not finish: %s", victim.name, strings.Join(unfinished, "; "))
	}
	hr.logf("%d tasks were running on %s at the SIGTERM, %d of them daemon shards", len(live), victim.name, daemons)
	if daemons > 0 {
		moved, missing := ledgerRelaunchDelays(runs, hr.ledgerJobs(), victim.name, termed.UnixNano(), 2*ledgerBeat)
		for _, m := range missing {
			if strings.Contains(m, hr.daemon.name+"@-@") {
				t.Errorf("a daemon shard of the drained %s was not moved: %s", victim.name, m)
			}
		}
		hr.figure("drain_daemon_moved_max", quantile(moved, 1))
	}
	hr.noStartsAfter(victim, signalled.Add(hostsStartGrace), "host drained")
	hr.checkAll()
}

// TestRandomizedSafetyHosts hurts the hosts and the coordination service
// at random while the jobs fire every second — hasched processes killed,
// containers killed and started again, hosts paused, cut off and drained,
// the coordination service restarted — then checks the ledger: no two
// runs of one task at once, no fire dropped, no task id started twice.
// HASCHED_RANDOMIZED_DURATION sets how long it hurts each backend
// (default 90s); HASCHED_RANDOMIZED_SEED replays a run.
func TestRandomizedSafetyHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs hasched hosts as containers (make test runs it)")
	}
	d := 90 * time.Second
	if v := os.Getenv("HASCHED_RANDOMIZED_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d <= 0 {
			t.Fatalf("HASCHED_RANDOMIZED_DURATION %q: want a positive duration", v)
		}
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("HASCHED_RANDOMIZED_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("HASCHED_RANDOMIZED_SEED %q: %v", v, err)
		}
	}
	t.Logf("seed %d (HASCHED_RANDOMIZED_SEED=%d replays it), %v per backend", seed, seed, d)
	for i, b := range hostsBackends {
		t.Run(b.name, func(t *testing.T) {
			env := newHostsEnv(t, b)
			hostsRandomized(t, env, rand.New(rand.NewPCG(seed, uint64(i))), d)
		})
	}
}

func hostsRandomized(t *testing.T, env *hostsEnv, rng *rand.Rand, d time.Duration) {
	hr := startHostsRun(t, env)
	st := hr.b.sessionTimeout
	// between is a random duration in [lo, hi).
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }
	deadline := time.Now().Add(d)
	counts := map[string]int{}
	for time.Now().Before(deadline) {
		h := hr.hosts[rng.IntN(len(hr.hosts))]
		switch op := rng.IntN(6); op {
		case 0:
			counts["kill -9"]++
			h.killProcess()
		case 1:
			counts["host killed"]++
			h.killHost()
			time.Sleep(between(time.Second, st+3*time.Second))
			h.startHost()
		case 2:
			counts["paused"]++
			h.pause()
			time.Sleep(between(500*time.Millisecond, st+3*time.Second))
			h.unpause()
		case 3:
			counts["cut off"]++
			h.cut()
			time.Sleep(between(500*time.Millisecond, st+3*time.Second))
			h.heal()
		case 4:
			counts["drained"]++
			h.terminate()
			h.waitServeExit(hostsDrainTimeout + 30*time.Second)
			h.release()
		case 5:
			counts["coordination restarted"]++
			hr.restartCoord(between(500*time.Millisecond, st+2*time.Second))
		}
		time.Sleep(between(time.Second, 4*time.Second))
	}
	hr.logf("faults: %v", counts)
	for _, h := range hr.hosts {
		hr.waitAnswers(h, time.Minute)
	}
	hr.waitLeader(2 * time.Minute)
	time.Sleep(st + 3*time.Second)
	// After a burst of faults the new leader first marks the lost
	// workers' placements LOST, one fenced write each (about 200 after
	// 90 s of faults), then relaunches: give the catch-up longer.
	rep := hr.checkWithin(90 * time.Second)
	hr.figure("randomized_relaunches", rep.Relaunches)
	hr.figure("randomized_min_slack", rep.Slack)
	hr.figure("randomized_thaw_window_max", rep.ThawWindow)
}
