package mesos

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	"github.com/hasched/hasched/integration/mesosfake"
	"github.com/hasched/hasched/scheduler/executor"
)

var fire = time.Date(2024, 5, 1, 3, 0, 0, 0, time.UTC)

// The first term registers the framework and stores its id; the next term
// subscribes with the same id; closing a term never tears the framework
// down.
func TestFrameworkIDStoredAndReusedByTheNextTerm(t *testing.T) {
	m := newMaster(t, mesosfake.Config{})
	state := newMemState()
	h1 := openExecutor(t, testConfig(m.URL()), state, 1)
	id := h1.waitConnected()
	eventually(t, "the framework id is stored", func() bool { v, _ := state.get(FrameworkIDKey); return v == id })

	fw, ok := m.Framework(id)
	if !ok {
		t.Fatalf("no framework %s at the master", id)
	}
	if fw.FailoverTimeout != DefaultFailoverTimeout || !fw.Checkpoint || fw.Name != "hasched-test" || fw.User != "tester" ||
		!slices.Equal(fw.Roles, []string{"*"}) ||
		!slices.Contains(fw.Capabilities, mesos.FrameworkInfo_Capability_PARTITION_AWARE) ||
		!slices.Contains(fw.Capabilities, mesos.FrameworkInfo_Capability_MULTI_ROLE) {
		t.Errorf("framework as registered: %+v", fw)
	}
	d := h1.ex.Describe()
	if d["master"] != m.URL() || d["connected"] != "yes" || d["framework_id"] != id || d["last_heartbeat"] == "never" {
		t.Errorf("Describe = %v", d)
	}

	h1.close()
	waitFor(t, m, "the master sees the scheduler go", func() bool { fw, _ := m.Framework(id); return !fw.Connected })
	if n := countCalls(m, scheduler.Call_TEARDOWN); n != 0 {
		t.Fatalf("Close sent %d TEARDOWN calls", n)
	}
	if fw, _ := m.Framework(id); fw.Removed {
		t.Fatal("the framework was removed when the term ended")
	}
	if d := h1.ex.Describe(); d["connected"] != "no" {
		t.Errorf("Describe after Close = %v", d)
	}

	h2 := openExecutor(t, testConfig(m.URL()), state, 2)
	if got := h2.waitConnected(); got != id {
		t.Fatalf("the next term subscribed as %s, want %s", got, id)
	}
	if fws := m.Frameworks(); len(fws) != 1 || fws[0].Subscriptions != 2 {
		t.Fatalf("frameworks at the master: %+v", fws)
	}
	subs, _ := m.WaitCalls(context.Background(), scheduler.Call_SUBSCRIBE, 2)
	last := subs[len(subs)-1].Call
	if last.GetFrameworkID().GetValue() != id || last.Subscribe.FrameworkInfo.GetID().GetValue() != id {
		t.Errorf("second SUBSCRIBE: %v", last)
	}
	if _, stores := state.get(FrameworkIDKey); stores != 1 {
		t.Errorf("the id was stored %d times, want once", stores)
	}
}

// A term whose store write fails still runs; the id is stored by a later
// subscription.
func TestFrameworkIDStoreFailureIsRetried(t *testing.T) {
	m := newMaster(t, mesosfake.Config{})
	state := newMemState()
	state.fail = errStoreFenced
	h := openExecutor(t, testConfig(m.URL()), state, 1)
	id := h.waitConnected()
	state.mu.Lock()
	state.fail = nil
	state.mu.Unlock()
	m.DropStreams()
	eventually(t, "the id is stored after the next subscription", func() bool { v, _ := state.get(FrameworkIDKey); return v == id })
}

// A task is launched as a command task with the app's resources and URIs
// and the local executor's variables, and every reliable update is
// acknowledged. (Its states are the contract suite's.)
func TestLaunchSendsACommandTaskAndAcknowledgesItsUpdates(t *testing.T) {
	m := newMaster(t, mesosfake.Config{})
	agent := addAgent(t, m, 4, 4096)
	h := openExecutor(t, testConfig(m.URL()), newMemState(), 1)
	id := h.waitConnected()

	tk := task("job", fire, 1, 2, 0, 0.5, 64)
	tk.AppURL, tk.AppCacheEnable = "http://repo.example/app.tar.gz", true
	tk.ShardParameter, tk.JobParameter = "beijing", "p=1"
	tk.AppCPUs, tk.AppMemoryMB = 0.25, 32
	launch(t, h, tk)
	h.waitState(tk.ID, executor.StateRunning)

	rec, ok := m.Task(tk.ID)
	if !ok {
		t.Fatal("the master knows no such task")
	}
	host := rec.Hostname
	if rec.AgentID != agent || rec.FrameworkID != id || !rec.Shell || rec.Command != commandWrapper || rec.Info.Executor != nil {
		t.Errorf("task at the master: %+v", rec)
	}
	if rec.CPUs != 0.75 || rec.MemMB != 96 {
		t.Errorf("resources %v cpus, %v mem; want the task's plus the app's", rec.CPUs, rec.MemMB)
	}
	if len(rec.URIs) != 1 || rec.URIs[0].Value != tk.AppURL || !rec.URIs[0].GetExtract() || !rec.URIs[0].GetCache() {
		t.Errorf("URIs %v", rec.URIs)
	}
	for k, want := range map[string]string{
		"HASCHED_TASK_ID": tk.ID, "HASCHED_JOB_NAME": "job", "HASCHED_SHARDING_ITEM": "1", "HASCHED_SHARDING_TOTAL_COUNT": "2",
		"HASCHED_SHARDING_PARAMETER": "beijing", "HASCHED_JOB_PARAMETER": "p=1", "HASCHED_COMMAND": "echo hello",
		"HASCHED_FIRE_TIME_UNIX_MS": "1714532400000", "HASCHED_ATTEMPT": "0",
	} {
		if rec.Env[k] != want {
			t.Errorf("%s = %q, want %q", k, rec.Env[k], want)
		}
	}
	if !strings.Contains(rec.Env["HASCHED_SHARDING_CONTEXT"], `"shardingItem":1`) {
		t.Errorf("sharding context %q", rec.Env["HASCHED_SHARDING_CONTEXT"])
	}

	if err := m.FinishTask(tk.ID); err != nil {
		t.Fatal(err)
	}
	h.waitState(tk.ID, executor.StateFinished)
	waitFor(t, m, "every update is acknowledged", func() bool {
		r, _ := m.Task(tk.ID)
		return r.PendingUpdates == 0 && r.AckedUpdates == r.DeliveredUpdates && r.AckedUpdates >= 3
	})

	if all := h.all(); all[0].Message != msgWaiting || all[1].Host != host {
		t.Errorf("first statuses:\n%s", h.dump())
	}
	if fw, _ := m.Framework(id); fw.InvalidAcks != 0 {
		t.Errorf("%d invalid acknowledgements", fw.InvalidAcks)
	}
}

// An agent's loss makes its tasks Lost (FAILURE, and the master's
// UNREACHABLE updates), with the agent's host.
func TestAgentLossLosesItsTasks(t *testing.T) {
	m := newMaster(t, mesosfake.Config{})
	a1 := addAgent(t, m, 1, 1024)
	h := openExecutor(t, testConfig(m.URL()), newMemState(), 1)
	h.waitConnected()
	t1, t2 := task("job", fire, 0, 2, 0, 1, 128), task("job", fire, 1, 2, 0, 1, 128)
	launch(t, h, t1, t2) // one per agent: the first fills a1
	addAgent(t, m, 1, 1024)
	h.waitState(t1.ID, executor.StateRunning)
	h.waitState(t2.ID, executor.StateRunning)
	onA1 := t1
	if r, _ := m.Task(t2.ID); r.AgentID == a1 {
		onA1 = t2
	}
	host := m.Agents()[0].Hostname
	if err := m.LoseAgent(a1); err != nil {
		t.Fatal(err)
	}
	st := h.waitState(onA1.ID, executor.StateLost)
	if st.Host != host {
		t.Errorf("lost status %+v, want host %s", st, host)
	}
	for _, s := range h.all() {
		if s.State == executor.StateLost && s.TaskID != onA1.ID {
			t.Errorf("a task on another agent was lost: %+v", s)
		}
	}
}

// Idle: SUPPRESS; offers that come anyway are declined with the refuse
// filter; work: REVIVE; idle again: SUPPRESS.
func TestOffersSuppressedWhenIdleAndRevivedForWork(t *testing.T) {
	m := newMaster(t, mesosfake.Config{})
	addAgent(t, m, 2, 1024)
	h := openExecutor(t, testConfig(m.URL()), newMemState(), 1)
	id := h.waitConnected()
	waitFor(t, m, "the idle framework suppresses offers", func() bool { return m.Suppressed(id) })
	waitFor(t, m, "no offer is left outstanding", func() bool { return len(m.OutstandingOffers()) == 0 })

	// A task too big for the agent: offers are declined, with the filter.
	big := task("big", fire, 0, 1, 0, 8, 128)
	launch(t, h, big)
	waitFor(t, m, "offers are revived", func() bool { return !m.Suppressed(id) })
	dec := waitCall(t, m, scheduler.Call_DECLINE)
	if got := dec.Call.Decline.GetFilters().GetRefuseSeconds(); got != 1 {
		t.Errorf("decline refuse_seconds = %v, want 1", got)
	}
	if n := countCalls(m, scheduler.Call_ACCEPT); n != 0 {
		t.Errorf("%d ACCEPTs for a task that fits nowhere", n)
	}
	if fw, _ := m.Framework(id); fw.Suppressed {
		t.Error("suppressed while a task waits")
	}

	// Killing the waiting task empties the queue: suppressed again.
	if err := h.ex.Kill(context.Background(), big.ID); err != nil {
		t.Fatal(err)
	}
	h.waitState(big.ID, executor.StateKilled)
	waitFor(t, m, "suppressed again", func() bool { return m.Suppressed(id) })

	// New work that fits: revived, launched, suppressed.
	small := task("small", fire, 0, 1, 0, 1, 128)
	revives := countCalls(m, scheduler.Call_REVIVE)
	launch(t, h, small)
	h.waitState(small.ID, executor.StateRunning)
	if countCalls(m, scheduler.Call_REVIVE) <= revives {
		t.Error("no REVIVE for new work")
	}
	waitFor(t, m, "suppressed after the launch", func() bool { return m.Suppressed(id) })
	waitFor(t, m, "no offer is held", func() bool { return len(m.OutstandingOffers()) == 0 })
}

// The shards of one run are launched together or not at all.
func TestShardsOfARunArePlacedAllOrNothing(t *testing.T) {
	m := newMaster(t, mesosfake.Config{})
	addAgent(t, m, 1.5, 1024)
	h := openExecutor(t, testConfig(m.URL()), newMemState(), 1)
	h.waitConnected()
	s0, s1 := task("job", fire, 0, 2, 0, 1, 128), task("job", fire, 1, 2, 0, 1, 128)
	launch(t, h, s0, s1)
	waitCall(t, m, scheduler.Call_DECLINE)
	if n := countCalls(m, scheduler.Call_ACCEPT); n != 0 {
		t.Fatalf("%d ACCEPTs: a run was launched in part", n)
	}
	addAgent(t, m, 1, 1024)
	h.waitState(s0.ID, executor.StateRunning)
	h.waitState(s1.ID, executor.StateRunning)
	r0, _ := m.Task(s0.ID)
	r1, _ := m.Task(s1.ID)
	if r0.AgentID == r1.AgentID {
		t.Errorf("both shards on %s", r0.AgentID)
	}
}

// A standby master's 307 is followed, for SUBSCRIBE and every later call;
// an unreachable master of the list is skipped.
func TestRedirectToTheLeaderIsFollowed(t *testing.T) {
	leader := newMaster(t, mesosfake.Config{})
	addAgent(t, leader, 2, 1024)
	standby := newMaster(t, mesosfake.Config{Standby: true, LeaderURL: leader.URL()})
	h := openExecutor(t, testConfig("http://127.0.0.1:1", standby.URL()), newMemState(), 1)
	id := h.waitConnected()
	if fw, ok := leader.Framework(id); !ok || !fw.Connected {
		t.Fatalf("not subscribed at the leader")
	}
	if d := h.ex.Describe(); d["master"] != leader.URL() {
		t.Errorf("Describe master = %q, want the leader %s", d["master"], leader.URL())
	}
	tk := task("job", fire, 0, 1, 0, 1, 128)
	launch(t, h, tk)
	h.waitState(tk.ID, executor.StateRunning)
	for _, c := range standby.Calls() {
		if c.Type != scheduler.Call_SUBSCRIBE {
			t.Errorf("a %s went to the standby", c.Type)
		}
	}
	if len(standby.Calls()) == 0 {
		t.Error("the standby saw nothing: the test did not test redirects")
	}

	// Leadership moves to the other master: the executor follows.
	if err := standby.SetLeader(standby.URL()); err != nil {
		t.Fatal(err)
	}
	if err := leader.SetLeader(standby.URL()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, standby, "subscribed at the new leader", func() bool { fw, ok := standby.Framework(id); return ok && fw.Connected })
	eventually(t, "subscribed to the new leader", func() bool {
		d := h.ex.Describe()
		return d["connected"] == "yes" && d["master"] == standby.URL()
	})
	tk2 := task("job", fire, 0, 1, 1, 1, 128)
	launch(t, h, tk2)
	if _, err := standby.AddAgent(mesosfake.AgentSpec{CPUs: 2, MemMB: 1024}); err != nil {
		t.Fatal(err)
	}
	h.waitState(tk2.ID, executor.StateRunning)
}

// A subscription without heartbeats for HeartbeatTimeoutFactor intervals is
// dropped and made anew, with the same framework id.
func TestHeartbeatLossResubscribes(t *testing.T) {
	m := newMaster(t, mesosfake.Config{HeartbeatInterval: 100 * time.Millisecond})
	cfg := testConfig(m.URL())
	cfg.HeartbeatTimeoutFactor = 3
	h := openExecutor(t, cfg, newMemState(), 1)
	id := h.waitConnected()
	time.Sleep(500 * time.Millisecond)
	if fw, _ := m.Framework(id); fw.Subscriptions != 1 {
		t.Fatalf("re-subscribed %d times while heartbeats came", fw.Subscriptions-1)
	}
	m.StopHeartbeats()
	waitFor(t, m, "a new subscription", func() bool { fw, _ := m.Framework(id); return fw.Subscriptions >= 2 && fw.Connected })
	m.ResumeHeartbeats()
	if len(m.Frameworks()) != 1 {
		t.Errorf("frameworks: %+v", m.Frameworks())
	}
}

// A dropped stream is subscribed again; tasks believed live are reconciled.
func TestReconnectReconcilesLiveTasks(t *testing.T) {
	m := newMaster(t, mesosfake.Config{})
	addAgent(t, m, 2, 1024)
	h := openExecutor(t, testConfig(m.URL()), newMemState(), 1)
	id := h.waitConnected()
	tk := task("job", fire, 0, 1, 0, 1, 128)
	launch(t, h, tk)
	h.waitState(tk.ID, executor.StateRunning)
	n := h.count()
	m.DropStreams()
	waitFor(t, m, "subscribed again", func() bool { fw, _ := m.Framework(id); return fw.Subscriptions == 2 && fw.Connected })
	st, _ := h.waitStatus(n, "a reconciliation answer", func(s executor.Status) bool { return s.TaskID == tk.ID && s.Reconcile })
	if st.State != executor.StateRunning {
		t.Errorf("reconciled %+v", st)
	}
}

// Reconciliation goes to Mesos as RECONCILE calls (explicit ones made
// before the subscription are sent on it); the answers are never
// acknowledged; tasks still waiting for an offer are answered by the
// executor, not asked about. (The answers' states are the contract
// suite's.)
func TestReconcile(t *testing.T) {
	m := newMaster(t, mesosfake.Config{})
	addAgent(t, m, 1, 1024)
	state := newMemState()
	h := openExecutor(t, testConfig(m.URL()), state, 1)
	id := h.waitConnected()
	tk := task("job", fire, 0, 1, 0, 1, 128)
	launch(t, h, tk)
	h.waitState(tk.ID, executor.StateRunning)
	waiting := task("wait", fire, 0, 1, 0, 1, 128) // no room left
	launch(t, h, waiting)
	waitFor(t, m, "the updates are acknowledged", func() bool { r, _ := m.Task(tk.ID); return r.PendingUpdates == 0 })
	acks := countCalls(m, scheduler.Call_ACKNOWLEDGE)

	// A new term knows nothing: it asks explicitly, then implicitly.
	h.close()
	h2 := openExecutor(t, testConfig(m.URL()), state, 2)
	ctx := context.Background()
	if err := h2.ex.Reconcile(ctx, []string{tk.ID}); err != nil { // queued until subscribed
		t.Fatal(err)
	}
	h2.waitConnected()
	h2.waitStatus(0, "the running task's answer", func(s executor.Status) bool { return s.TaskID == tk.ID && s.Reconcile })
	n := h2.count()
	if err := h2.ex.Reconcile(ctx, nil); err != nil {
		t.Fatal(err)
	}
	h2.waitStatus(n, "the implicit answer", func(s executor.Status) bool { return s.TaskID == tk.ID && s.Reconcile })
	// Ask about a task queued in this term.
	launch(t, h2, waiting)
	n = h2.count()
	if err := h2.ex.Reconcile(ctx, []string{waiting.ID}); err != nil {
		t.Fatal(err)
	}
	// The launch's own STAGING status may arrive after n was counted:
	// wait for the answer, which is marked Reconcile.
	st, _ := h2.waitStatus(n, "the waiting task's answer", func(s executor.Status) bool { return s.TaskID == waiting.ID && s.Reconcile })
	if st.State != executor.StateStaging || !st.Reconcile {
		t.Errorf("waiting task's answer %+v", st)
	}

	time.Sleep(100 * time.Millisecond)
	if got := countCalls(m, scheduler.Call_ACKNOWLEDGE); got != acks {
		t.Errorf("%d ACKNOWLEDGEs for reconciliation answers", got-acks)
	}
	if fw, _ := m.Framework(id); fw.InvalidAcks != 0 {
		t.Errorf("%d invalid acknowledgements", fw.InvalidAcks)
	}
	var explicit, implicit bool
	for _, c := range m.Calls() {
		if c.Type == scheduler.Call_RECONCILE {
			if len(c.Call.Reconcile.Tasks) == 0 {
				implicit = true
			}
			for _, rt := range c.Call.Reconcile.Tasks {
				if rt.TaskID.Value == waiting.ID {
					t.Errorf("asked Mesos about a task still queued here")
				}
				explicit = explicit || rt.TaskID.Value == tk.ID
			}
		}
	}
	if !explicit || !implicit {
		t.Errorf("RECONCILE calls: explicit %v, implicit %v", explicit, implicit)
	}
}

// Kill sends KILL (with the agent); the task ends Killed. A kill of an
// unknown task is answered Unknown.
func TestKill(t *testing.T) {
	m := newMaster(t, mesosfake.Config{})
	agent := addAgent(t, m, 2, 1024)
	h := openExecutor(t, testConfig(m.URL()), newMemState(), 1)
	h.waitConnected()
	tk := task("job", fire, 0, 1, 0, 1, 128)
	launch(t, h, tk)
	h.waitState(tk.ID, executor.StateRunning)
	if err := h.ex.Kill(context.Background(), tk.ID); err != nil {
		t.Fatal(err)
	}
	h.waitState(tk.ID, executor.StateKilled)
	kill := waitCall(t, m, scheduler.Call_KILL)
	if kill.Call.Kill.TaskID.Value != tk.ID || kill.Call.Kill.GetAgentID().GetValue() != agent {
		t.Errorf("KILL %v", kill.Call.Kill)
	}
	if err := h.ex.Kill(context.Background(), "nobody@-@1@-@0@-@0"); err != nil {
		t.Fatal(err)
	}
	st := h.waitState("nobody@-@1@-@0@-@0", executor.StateUnknown)
	if !st.Reconcile {
		t.Errorf("%+v", st)
	}
}

// A newer scheduler subscribing with the framework id takes it over; the
// old term does not take it back at once.
func TestFailedOverTermDoesNotStealBack(t *testing.T) {
	m := newMaster(t, mesosfake.Config{})
	state := newMemState()
	cfg := testConfig(m.URL())
	cfg.FailedOverWait = time.Hour
	h1 := openExecutor(t, cfg, state, 1)
	id := h1.waitConnected()
	eventually(t, "stored", func() bool { v, _ := state.get(FrameworkIDKey); return v == id })
	h2 := openExecutor(t, testConfig(m.URL()), state, 2)
	if got := h2.waitConnected(); got != id {
		t.Fatalf("second term subscribed as %s", got)
	}
	eventually(t, "the old term sees it lost the framework", func() bool { return h1.ex.Describe()["connected"] == "no" })
	time.Sleep(300 * time.Millisecond)
	fw, _ := m.Framework(id)
	if fw.Subscriptions != 2 || !fw.Connected {
		t.Errorf("framework %+v: the old term subscribed again", fw)
	}
	if d := h1.ex.Describe(); d["failed_over_at"] == "" {
		t.Errorf("Describe = %v", d)
	}
}

// After Mesos removed the framework (its failover timeout passed), the
// next term registers a new one and stores its id.
func TestRemovedFrameworkIsRegisteredAnew(t *testing.T) {
	m := newMaster(t, mesosfake.Config{FailoverTimeout: 50 * time.Millisecond})
	state := newMemState()
	h1 := openExecutor(t, testConfig(m.URL()), state, 1)
	old := h1.waitConnected()
	eventually(t, "stored", func() bool { v, _ := state.get(FrameworkIDKey); return v == old })
	h1.close()
	waitFor(t, m, "the framework is removed", func() bool { fw, _ := m.Framework(old); return fw.Removed })

	h2 := openExecutor(t, testConfig(m.URL()), state, 2)
	var id string
	eventually(t, "a new framework", func() bool {
		id = h2.ex.Describe()["framework_id"]
		return h2.ex.Describe()["connected"] == "yes" && id != old && id != ""
	})
	eventually(t, "its id stored", func() bool { v, _ := state.get(FrameworkIDKey); return v == id })
}

// Launch, Kill and Reconcile made before the first subscription wait for
// it.
func TestCallsBeforeSubscriptionWait(t *testing.T) {
	m := newMaster(t, mesosfake.Config{Standby: true}) // no leader yet: 503
	addAgent(t, m, 2, 1024)
	h := openExecutor(t, testConfig(m.URL()), newMemState(), 1)
	tk := task("job", fire, 0, 1, 0, 1, 128)
	launch(t, h, tk)
	if err := h.ex.Kill(context.Background(), "other@-@1@-@0@-@0"); err != nil {
		t.Fatal(err)
	}
	if err := h.ex.Reconcile(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if d := h.ex.Describe(); d["connected"] != "no" || d["queued_tasks"] != "1" {
		t.Errorf("Describe = %v", d)
	}
	if err := m.SetLeader(m.URL()); err != nil {
		t.Fatal(err)
	}
	h.waitState(tk.ID, executor.StateRunning)
	waitCall(t, m, scheduler.Call_KILL)
	waitCall(t, m, scheduler.Call_RECONCILE)
}

// After a redirect led to a leader that then goes, the executor goes back
// to the configured master, which may lead by now.
func TestRedirectedLeaderGoneFallsBackToTheConfiguredMaster(t *testing.T) {
	leader, err := mesosfake.New(mesosfake.Config{Logger: testLogger("leader")})
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close()
	standby := newMaster(t, mesosfake.Config{Standby: true, LeaderURL: leader.URL()})
	h := openExecutor(t, testConfig(standby.URL()), newMemState(), 1)
	id := h.waitConnected()
	if d := h.ex.Describe(); d["master"] != leader.URL() {
		t.Fatalf("Describe = %v", d)
	}
	if err := leader.Close(); err != nil {
		t.Fatal(err)
	}
	if err := standby.SetLeader(standby.URL()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, standby, "subscribed at the configured master", func() bool { fw, ok := standby.Framework(id); return ok && fw.Connected })
	eventually(t, "Describe names it", func() bool {
		d := h.ex.Describe()
		return d["connected"] == "yes" && d["master"] == standby.URL()
	})
}

// A task's Timeout is its TaskInfo's max_completion_time; the agent's end of
// it there (TASK_FAILED, REASON_MAX_COMPLETION_TIME_REACHED) is TIMED_OUT,
// saying after how long, and is acknowledged like any update.
func TestTimeoutIsTheAgentsMaxCompletionTime(t *testing.T) {
	m := newMaster(t, mesosfake.Config{})
	addAgent(t, m, 4, 4096)
	h := openExecutor(t, testConfig(m.URL()), newMemState(), 1)
	h.waitConnected()
	tk := task("job", fire, 0, 2, 0, 0.5, 64)
	tk.Timeout = 300 * time.Millisecond
	plain := task("job", fire, 1, 2, 0, 0.5, 64)
	launch(t, h, tk, plain)
	h.waitState(tk.ID, executor.StateRunning)
	h.waitState(plain.ID, executor.StateRunning)
	if rec, _ := m.Task(tk.ID); rec.Info.GetMaxCompletionTime().GetNanoseconds() != int64(tk.Timeout) {
		t.Errorf("max_completion_time %v, want %v", rec.Info.GetMaxCompletionTime(), tk.Timeout)
	}
	if rec, _ := m.Task(plain.ID); rec.Info.GetMaxCompletionTime() != nil {
		t.Errorf("a task without a Timeout has max_completion_time %v", rec.Info.GetMaxCompletionTime())
	}
	st := h.waitState(tk.ID, executor.StateTimedOut)
	if st.Reconcile || !strings.HasPrefix(st.Message, "timed out after 300ms") || !strings.Contains(st.Message, "REASON_MAX_COMPLETION_TIME_REACHED") {
		t.Errorf("TIMED_OUT status %+v: want an update saying it timed out after 300ms, and why", st)
	}
	waitFor(t, m, "the TIMED_OUT update is acknowledged", func() bool { r, _ := m.Task(tk.ID); return r.PendingUpdates == 0 })
	if err := m.FailTask(plain.ID, "Command exited with status 3"); err != nil {
		t.Fatal(err)
	}
	if st := h.waitState(plain.ID, executor.StateFailed); st.ExitCode != 3 {
		t.Errorf("a plain failure: %+v, want FAILED with exit code 3", st)
	}
}
