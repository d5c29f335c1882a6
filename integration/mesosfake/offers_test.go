package mesosfake

import (
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func offersOn(m *Master, agentID string) []mesos.Offer {
	var out []mesos.Offer
	for _, o := range m.OutstandingOffers() {
		if o.AgentID.Value == agentID {
			out = append(out, o)
		}
	}
	return out
}

// TestDeclineRefusesTheAgentForRefuseSeconds checks DECLINE's filter: the
// declined agent is not offered to the framework again before
// refuse_seconds, other agents are, and the default is 5s.
func TestDeclineRefusesTheAgentForRefuseSeconds(t *testing.T) {
	checkLeaks(t)
	clock := NewManualClock(epoch)
	m := newMaster(t, Config{Clock: clock})
	a := addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
	b := addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(frameworkInfo("decline"))
	c.subscribed()
	offers := c.expect(scheduler.Event_OFFERS).Offers.Offers
	if len(offers) != 2 || offers[0].AgentID.Value != a || offers[1].AgentID.Value != b {
		t.Fatalf("got offers %v, want one per agent", offers)
	}

	c.call(calls.Decline(offers[0].ID).With(calls.RefuseSeconds(30 * time.Second)))
	if got := offersOn(m, a); len(got) != 0 {
		t.Fatalf("right after DECLINE agent %s is offered again: %v", a, got)
	}
	clock.Advance(29 * time.Second)
	if got := offersOn(m, a); len(got) != 0 {
		t.Fatalf("29s after a 30s DECLINE agent %s is offered again: %v", a, got)
	}
	clock.Advance(time.Second)
	o := c.expect(scheduler.Event_OFFERS).Offers.Offers
	if len(o) != 1 || o[0].AgentID.Value != a {
		t.Fatalf("30s after DECLINE got %v, want agent %s again", o, a)
	}
	if got := offersOn(m, b); len(got) != 1 || got[0].ID != offers[1].ID {
		t.Fatalf("agent %s's offer changed: %v", b, got)
	}

	// Without filters: 5 seconds.
	c.call(calls.Decline(o[0].ID))
	clock.Advance(4999 * time.Millisecond)
	if got := offersOn(m, a); len(got) != 0 {
		t.Fatalf("before the default 5s agent %s is offered again: %v", a, got)
	}
	clock.Advance(time.Millisecond)
	if o := c.expect(scheduler.Event_OFFERS).Offers.Offers; len(o) != 1 || o[0].AgentID.Value != a {
		t.Fatalf("after 5s got %v, want agent %s", o, a)
	}

	// refuse_seconds 0 installs no filter.
	o = offersOn(m, a)
	c.call(calls.Decline(o[0].ID).With(calls.RefuseSeconds(0)))
	if again := c.expect(scheduler.Event_OFFERS).Offers.Offers; len(again) != 1 || again[0].AgentID.Value != a || again[0].ID == o[0].ID {
		t.Fatalf("after DECLINE with refuse 0 got %v, want a new offer of %s at once", again, a)
	}
}

// TestSuppressStopsOffersUntilRevive checks SUPPRESS and REVIVE, and that
// REVIVE clears refuse filters.
func TestSuppressStopsOffersUntilRevive(t *testing.T) {
	checkLeaks(t)
	clock := NewManualClock(epoch)
	m := newMaster(t, Config{Clock: clock})
	a := addAgent(t, m, AgentSpec{CPUs: 1, MemMB: 512})
	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(frameworkInfo("suppress"))
	c.subscribed()
	o := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]

	c.call(calls.Suppress())
	if !m.Suppressed(c.frameworkID()) {
		t.Fatal("Suppressed = false after SUPPRESS")
	}
	if got := m.OutstandingOffers(); len(got) != 1 {
		t.Fatalf("SUPPRESS rescinded offers: outstanding %v", got)
	}
	c.call(calls.Decline(o.ID).With(calls.RefuseSeconds(0)))
	b := addAgent(t, m, AgentSpec{CPUs: 1, MemMB: 512})
	clock.Advance(time.Hour)
	if got := m.OutstandingOffers(); len(got) != 0 {
		t.Fatalf("suppressed framework was offered %v", got)
	}
	c.noEvent(50 * time.Millisecond)

	c.call(calls.Revive())
	if m.Suppressed(c.frameworkID()) {
		t.Fatal("Suppressed = true after REVIVE")
	}
	offers := c.expect(scheduler.Event_OFFERS).Offers.Offers
	if len(offers) != 2 || offers[0].AgentID.Value != a || offers[1].AgentID.Value != b {
		t.Fatalf("after REVIVE got %v, want both agents", offers)
	}

	// REVIVE also lifts a refuse filter.
	c.call(calls.Decline(offers[0].ID).With(calls.RefuseSeconds(time.Hour)))
	c.call(calls.Revive())
	if again := c.expect(scheduler.Event_OFFERS).Offers.Offers; len(again) != 1 || again[0].AgentID.Value != a {
		t.Fatalf("after DECLINE(1h) and REVIVE got %v, want agent %s", again, a)
	}

	// SUBSCRIBE's suppressed_roles start the framework suppressed.
	c2 := newClient(t, m.SchedulerURL(), protobuf)
	call := calls.Subscribe(frameworkInfo("born suppressed"))
	call.Subscribe.SuppressedRoles = []string{"*"}
	resp, err := c2.caller.Call(t.Context(), call)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	var e scheduler.Event
	if err := resp.Decode(&e); err != nil || e.Type != scheduler.Event_SUBSCRIBED {
		t.Fatalf("got %v, %v; want SUBSCRIBED", e.Type, err)
	}
	if !m.Suppressed(e.Subscribed.FrameworkID.Value) {
		t.Error("framework subscribed with suppressed_roles [*] is not suppressed")
	}
}

// TestAcceptLeftoversAndFreedResources checks that the unused part of an
// accepted offer is filtered for refuse_seconds and that a finished task's
// resources come back in a bigger offer at once.
func TestAcceptLeftoversAndFreedResources(t *testing.T) {
	checkLeaks(t)
	clock := NewManualClock(epoch)
	m := newMaster(t, Config{Clock: clock})
	addAgent(t, m, AgentSpec{CPUs: 4, MemMB: 4096, DiskMB: 1000})
	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(frameworkInfo("leftovers"))
	c.subscribed()
	o := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]
	if scalarOf(o.Resources, "disk") != 1000 {
		t.Fatalf("offer %v, want 1000 disk", o)
	}
	c.call(launch(o, commandTask("t1", o, 1, 1024)).With(calls.RefuseSeconds(10 * time.Second)))
	c.ack(c.update("t1", mesos.TASK_STARTING))
	c.ack(c.update("t1", mesos.TASK_RUNNING))
	if got := m.OutstandingOffers(); len(got) != 0 {
		t.Fatalf("leftovers offered before refuse_seconds: %v", got)
	}
	clock.Advance(10 * time.Second)
	left := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]
	if scalarOf(left.Resources, "cpus") != 3 || scalarOf(left.Resources, "mem") != 3072 {
		t.Fatalf("leftover offer %v, want 3 cpus 3072 mem", left)
	}
	if err := m.FinishTask("t1"); err != nil {
		t.Fatal(err)
	}
	c.update("t1", mesos.TASK_FINISHED)
	// The outstanding leftover offer stays; the freed cpu comes in a new one.
	freed := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]
	if scalarOf(freed.Resources, "cpus") != 1 || scalarOf(freed.Resources, "mem") != 1024 {
		t.Fatalf("offer after the task finished %v, want its 1 cpu 1024 mem", freed)
	}
}

// TestInvalidLaunches checks the statuses of launches the master refuses:
// invalid offers (TASK_DROPPED, or TASK_LOST without PARTITION_AWARE,
// REASON_INVALID_OFFERS) and invalid tasks (TASK_ERROR, REASON_TASK_INVALID).
func TestInvalidLaunches(t *testing.T) {
	for _, partitionAware := range []bool{true, false} {
		name := map[bool]string{true: "partition-aware", false: "not partition-aware"}[partitionAware]
		t.Run(name, func(t *testing.T) {
			checkLeaks(t)
			m := newMaster(t, Config{})
			addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
			var caps []mesos.FrameworkInfo_Capability_Type
			dropped := mesos.TASK_LOST
			if partitionAware {
				caps = append(caps, mesos.FrameworkInfo_Capability_PARTITION_AWARE)
				dropped = mesos.TASK_DROPPED
			}
			c := newClient(t, m.SchedulerURL(), protobuf)
			c.subscribe(frameworkInfo("invalid", caps...))
			c.subscribed()
			o := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]

			check := func(st mesos.TaskStatus, id string, state mesos.TaskState, reason mesos.TaskStatus_Reason) {
				t.Helper()
				if st.TaskID.Value != id || st.GetState() != state || st.GetReason() != reason ||
					st.GetSource() != mesos.SOURCE_MASTER || st.UUID != nil {
					t.Errorf("update %v, want %s %s %s from the master without uuid", st, id, state, reason)
				}
			}
			bogus := o
			bogus.ID = mesos.OfferID{Value: "no-such-offer"}
			c.call(launch(bogus, commandTask("stale", o, 1, 128)))
			check(c.expect(scheduler.Event_UPDATE).Update.Status, "stale", dropped, mesos.REASON_INVALID_OFFERS)

			tooBig := commandTask("big", o, 3, 128)
			both := commandTask("both", o, 0.1, 32)
			both.Executor = &mesos.ExecutorInfo{ExecutorID: mesos.ExecutorID{Value: "e"}, Command: &mesos.CommandInfo{Value: strPtr("x")}}
			neither := commandTask("neither", o, 0.1, 32)
			neither.Command = nil
			ok := commandTask("ok", o, 1, 128)
			dup := commandTask("ok", o, 0.1, 32)
			c.call(launch(o, tooBig, both, neither, ok, dup))
			for _, id := range []string{"big", "both", "neither"} {
				check(c.expect(scheduler.Event_UPDATE).Update.Status, id, mesos.TASK_ERROR, mesos.REASON_TASK_INVALID)
			}
			if st := c.expect(scheduler.Event_UPDATE).Update.Status; st.TaskID.Value != "ok" || st.GetState() != mesos.TASK_STARTING {
				t.Errorf("got %v, want ok STARTING", st)
			}
			check(c.expect(scheduler.Event_UPDATE).Update.Status, "ok", mesos.TASK_ERROR, mesos.REASON_TASK_INVALID)
			if n := m.Launches("ok"); n != 1 {
				t.Errorf("Launches(ok) = %d, want 1", n)
			}
			if _, found := m.Task("big"); found {
				t.Error("an invalid task was recorded as launched")
			}
			// The offer was used up by the ACCEPT, valid or not.
			c.call(launch(o, commandTask("again", o, 0.1, 32)))
			check(c.expect(scheduler.Event_UPDATE).Update.Status, "again", dropped, mesos.REASON_INVALID_OFFERS)
		})
	}
}
