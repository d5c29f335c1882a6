package mesosfake

import (
	"errors"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// runningTask launches id on offer o and acknowledges it up to RUNNING.
func runningTask(t *testing.T, c *client, o mesos.Offer, id string) {
	t.Helper()
	c.call(launch(o, commandTask(id, o, 1, 128)).With(calls.RefuseSeconds(0)))
	c.ack(c.update(id, mesos.TASK_STARTING))
	c.ack(c.update(id, mesos.TASK_RUNNING))
}

// firstOfferOn waits for an offer of agentID, declining none.
func firstOfferOn(t *testing.T, c *client, agentID string) mesos.Offer {
	t.Helper()
	for {
		for _, o := range c.until(scheduler.Event_OFFERS).Offers.Offers {
			if o.AgentID.Value == agentID {
				return o
			}
		}
	}
}

// updatesByTask collects n UPDATE events, dropping others.
func updatesByTask(t *testing.T, c *client, n int) map[string]mesos.TaskStatus {
	t.Helper()
	out := map[string]mesos.TaskStatus{}
	for len(out) < n {
		st := c.until(scheduler.Event_UPDATE).Update.Status
		if _, dup := out[st.TaskID.Value]; dup {
			t.Fatalf("two updates for %s", st.TaskID.Value)
		}
		out[st.TaskID.Value] = st
	}
	return out
}

// TestReconcileAnswersAsTheRealMaster checks explicit reconciliation case by
// case (known, unknown on a registered, unreachable, gone, removed or unknown
// agent)
// and implicit reconciliation, with and without PARTITION_AWARE.
func TestReconcileAnswersAsTheRealMaster(t *testing.T) {
	for _, partitionAware := range []bool{true, false} {
		name := map[bool]string{true: "partition-aware", false: "not partition-aware"}[partitionAware]
		t.Run(name, func(t *testing.T) {
			checkLeaks(t)
			m := newMaster(t, Config{})
			live := addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
			lost := addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
			gone := addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
			removed := addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
			var caps []mesos.FrameworkInfo_Capability_Type
			if partitionAware {
				caps = append(caps, mesos.FrameworkInfo_Capability_PARTITION_AWARE)
			}
			c := newClient(t, m.SchedulerURL(), protobuf)
			c.subscribe(frameworkInfo("reconcile", caps...))
			c.subscribed()
			offers := c.expect(scheduler.Event_OFFERS).Offers.Offers
			runningTask(t, c, offers[0], "running")
			runningTask(t, c, offers[1], "on-lost")
			if err := m.LoseAgent(lost); err != nil {
				t.Fatal(err)
			}
			c.until(scheduler.Event_FAILURE)
			if err := m.MarkAgentGone(gone); err != nil {
				t.Fatal(err)
			}
			c.until(scheduler.Event_FAILURE)
			if err := m.RemoveAgent(removed); err != nil {
				t.Fatal(err)
			}
			c.until(scheduler.Event_FAILURE)

			pa := func(state mesos.TaskState) mesos.TaskState {
				if partitionAware {
					return state
				}
				return mesos.TASK_LOST
			}
			c.call(calls.Reconcile(calls.ReconcileTasks(map[string]string{
				"running":          live,
				"on-lost":          lost,
				"unknown-on-live":  live,
				"unknown-on-lost":  lost,
				"unknown-on-gone":  gone,
				"unknown-removed":  removed,
				"unknown-on-other": "no-such-agent",
				"unknown-anywhere": "",
			})))
			want := map[string]mesos.TaskState{
				"running":          mesos.TASK_RUNNING,
				"on-lost":          pa(mesos.TASK_UNREACHABLE),
				"unknown-on-live":  pa(mesos.TASK_GONE),
				"unknown-on-lost":  pa(mesos.TASK_UNREACHABLE),
				"unknown-on-gone":  pa(mesos.TASK_GONE_BY_OPERATOR),
				"unknown-removed":  pa(mesos.TASK_UNKNOWN),
				"unknown-on-other": pa(mesos.TASK_UNKNOWN),
				"unknown-anywhere": pa(mesos.TASK_UNKNOWN),
			}
			got := updatesByTask(t, c, len(want))
			for id, state := range want {
				st := got[id]
				if st.GetState() != state || st.GetReason() != mesos.REASON_RECONCILIATION ||
					st.GetSource() != mesos.SOURCE_MASTER || st.UUID != nil {
					t.Errorf("reconcile %s: got %s %s %s uuid %x, want %s REASON_RECONCILIATION from the master without uuid",
						id, st.GetState(), st.GetReason(), st.GetSource(), st.UUID, state)
				}
			}
			if partitionAware && got["unknown-on-lost"].UnreachableTime == nil {
				t.Error("TASK_UNREACHABLE without unreachable_time")
			}

			// Implicit: every task the master knows, nothing else.
			c.call(calls.Reconcile())
			implicit := updatesByTask(t, c, 2)
			running, onLost := implicit["running"], implicit["on-lost"]
			if running.GetState() != mesos.TASK_RUNNING || onLost.GetState() != pa(mesos.TASK_UNREACHABLE) {
				t.Errorf("implicit reconciliation: %v", implicit)
			}
			c.noEvent(50 * time.Millisecond)
		})
	}
}

// TestKill checks KILL of a running task (TASK_KILLING first with the
// TASK_KILLING_STATE capability) and of an unknown task (answered like a
// reconciliation).
func TestKill(t *testing.T) {
	checkLeaks(t)
	m := newMaster(t, Config{})
	agentID := addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(frameworkInfo("kill", mesos.FrameworkInfo_Capability_TASK_KILLING_STATE, mesos.FrameworkInfo_Capability_PARTITION_AWARE))
	c.subscribed()
	o := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]
	runningTask(t, c, o, "victim")

	c.call(calls.Kill("victim", agentID))
	c.ack(c.update("victim", mesos.TASK_KILLING))
	st := c.update("victim", mesos.TASK_KILLED)
	if len(st.UUID) != 16 {
		t.Errorf("TASK_KILLED without uuid: %v", st)
	}
	c.ack(st)

	c.call(calls.Kill("ghost", ""))
	st = c.update("ghost", mesos.TASK_UNKNOWN)
	if st.GetReason() != mesos.REASON_RECONCILIATION || st.UUID != nil {
		t.Errorf("KILL of an unknown task: %v, want a reconciliation answer", st)
	}
	waitUntil(t, m, "victim is forgotten", func() bool {
		r, _ := m.Task("victim")
		return !r.Known && r.State == mesos.TASK_KILLED
	})
}

// TestLosingAnAgent checks LoseAgent, RemoveAgent and MarkAgentGone: RESCIND
// of the agent's offers, a master update per task (UNREACHABLE, GONE or
// GONE_BY_OPERATOR; LOST without PARTITION_AWARE) and FAILURE{agent_id}.
func TestLosingAnAgent(t *testing.T) {
	checkLeaks(t)
	m := newMaster(t, Config{})
	a1 := addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
	a2 := addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
	aware := newClient(t, m.SchedulerURL(), protobuf)
	aware.subscribe(frameworkInfo("aware", mesos.FrameworkInfo_Capability_PARTITION_AWARE))
	aware.subscribed()
	offers := aware.expect(scheduler.Event_OFFERS).Offers.Offers
	runningTask(t, aware, offers[0], "t1")
	runningTask(t, aware, offers[1], "t2")
	// Leave the rest of the cluster to plain.
	aware.call(calls.Suppress())
	for _, o := range m.OutstandingOffers() {
		aware.call(calls.Decline(o.ID).With(calls.RefuseSeconds(0)))
	}

	plain := newClient(t, m.SchedulerURL(), protobuf)
	plain.subscribe(frameworkInfo("plain"))
	plain.subscribed()
	o := firstOfferOn(t, plain, a1)
	runningTask(t, plain, o, "p1")
	waitUntil(t, m, "a1 is offered to plain again", func() bool {
		for _, o := range m.OutstandingOffers() {
			if o.AgentID.Value == a1 && o.FrameworkID.Value == plain.frameworkID() {
				return true
			}
		}
		return false
	})
	offered := offersOn(m, a1)[0].ID

	if err := m.LoseAgent(a1); err != nil {
		t.Fatal(err)
	}
	if e := plain.until(scheduler.Event_RESCIND); e.Rescind.OfferID != offered {
		t.Errorf("RESCIND %v, want %v", e.Rescind.OfferID, offered)
	}
	st := plain.update("p1", mesos.TASK_LOST)
	if st.GetReason() != mesos.REASON_AGENT_REMOVED || st.UUID != nil {
		t.Errorf("p1 update %v, want REASON_AGENT_REMOVED without uuid", st)
	}
	if e := plain.expect(scheduler.Event_FAILURE); e.Failure.GetAgentID().GetValue() != a1 {
		t.Errorf("FAILURE %v, want agent %s", e.Failure, a1)
	}
	st = aware.update("t1", mesos.TASK_UNREACHABLE)
	if st.UnreachableTime == nil {
		t.Errorf("t1 update %v without unreachable_time", st)
	}
	if e := aware.until(scheduler.Event_FAILURE); e.Failure.GetAgentID().GetValue() != a1 {
		t.Errorf("FAILURE %v, want agent %s", e.Failure, a1)
	}
	if r, _ := m.Task("t1"); !r.Known || r.State != mesos.TASK_UNREACHABLE {
		t.Errorf("t1 after LoseAgent: %+v, want known and TASK_UNREACHABLE", r)
	}

	if err := m.RemoveAgent(a2); err != nil {
		t.Fatal(err)
	}
	if st := aware.update("t2", mesos.TASK_GONE); st.GetReason() != mesos.REASON_AGENT_REMOVED {
		t.Errorf("t2 update %v, want REASON_AGENT_REMOVED", st)
	}
	if e := aware.until(scheduler.Event_FAILURE); e.Failure.GetAgentID().GetValue() != a2 {
		t.Errorf("FAILURE %v, want agent %s", e.Failure, a2)
	}
	if r, _ := m.Task("t2"); r.Known {
		t.Errorf("t2 still known after RemoveAgent: %+v", r)
	}
	if err := m.RemoveAgent(a1); !errors.Is(err, ErrAgentInactive) {
		t.Errorf("RemoveAgent of an unreachable agent: %v, want ErrAgentInactive", err)
	}
	if err := m.FinishTask("t1"); err == nil {
		t.Error("FinishTask on an unreachable agent succeeded")
	}
	// The operator marks the unreachable agent gone: no second FAILURE.
	if err := m.MarkAgentGone(a1); err != nil {
		t.Fatal(err)
	}
	aware.update("t1", mesos.TASK_GONE_BY_OPERATOR)
	plain.update("p1", mesos.TASK_LOST)
	aware.noEvent(50 * time.Millisecond)
	if r, _ := m.Task("t1"); r.Known {
		t.Errorf("t1 still known after MarkAgentGone: %+v", r)
	}
	var states []string
	for _, a := range m.Agents() {
		states = append(states, a.State)
	}
	if want := []string{"gone", "removed"}; len(states) != 2 || states[0] != want[0] || states[1] != want[1] {
		t.Errorf("agent states %v, want %v", states, want)
	}
}
