package mesosfake

import (
	"bytes"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// TestHeartbeats checks the HEARTBEAT period and StopHeartbeats /
// ResumeHeartbeats, on a manual clock.
func TestHeartbeats(t *testing.T) {
	checkLeaks(t)
	clock := NewManualClock(epoch)
	m := newMaster(t, Config{Clock: clock, HeartbeatInterval: 5 * time.Second})
	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(frameworkInfo("heartbeats"))
	if got := c.subscribed().GetHeartbeatIntervalSeconds(); got != 5 {
		t.Fatalf("heartbeat_interval_seconds = %v, want 5", got)
	}
	heartbeat := func() {
		t.Helper()
		if e := c.nextAny(); e.Type != scheduler.Event_HEARTBEAT {
			t.Fatalf("got %s, want HEARTBEAT", e.Type)
		}
	}
	silence := func() {
		t.Helper()
		select {
		case e := <-c.events:
			t.Fatalf("got %s, want silence", e.Type)
		case <-time.After(50 * time.Millisecond):
		}
	}
	heartbeat() // at once
	clock.Advance(4 * time.Second)
	silence()
	clock.Advance(time.Second)
	heartbeat()
	clock.Advance(10 * time.Second)
	heartbeat()
	heartbeat()

	m.StopHeartbeats()
	clock.Advance(time.Minute)
	silence()
	m.ResumeHeartbeats()
	heartbeat() // at once
	clock.Advance(5 * time.Second)
	heartbeat()
}

// TestUnacknowledgedUpdatesAreRetried checks the agent's retries of an
// update nobody acknowledges: same uuid, after 10s, then 20s.
func TestUnacknowledgedUpdatesAreRetried(t *testing.T) {
	checkLeaks(t)
	clock := NewManualClock(epoch)
	m := newMaster(t, Config{Clock: clock, HeartbeatInterval: time.Hour})
	addAgent(t, m, AgentSpec{CPUs: 1, MemMB: 512})
	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(frameworkInfo("retries"))
	c.subscribed()
	o := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]
	c.call(launch(o, commandTask("t1", o, 1, 128)).With(calls.RefuseSeconds(time.Hour)))
	first := c.update("t1", mesos.TASK_STARTING)

	clock.Advance(9 * time.Second)
	c.noEvent(50 * time.Millisecond)
	clock.Advance(time.Second)
	if st := c.update("t1", mesos.TASK_STARTING); !bytes.Equal(st.UUID, first.UUID) {
		t.Fatalf("retry uuid %x, want %x", st.UUID, first.UUID)
	}
	clock.Advance(19 * time.Second)
	c.noEvent(50 * time.Millisecond)
	clock.Advance(time.Second)
	c.update("t1", mesos.TASK_STARTING)

	// A stale or foreign uuid changes nothing.
	c.call(calls.Acknowledge(o.AgentID.Value, "t1", newUUID()))
	if r, _ := m.Task("t1"); r.PendingUpdates != 2 || r.DeliveredUpdates != 3 {
		t.Fatalf("after a wrong ACK: %+v, want 2 pending, 3 delivered", r)
	}
	if fw, _ := m.Framework(c.frameworkID()); fw.InvalidAcks != 1 {
		t.Errorf("InvalidAcks = %d, want 1", fw.InvalidAcks)
	}
	c.ack(first)
	c.ack(c.update("t1", mesos.TASK_RUNNING))
}

// TestHoldStagingAndFinishAfter checks the configurable task lifecycle.
func TestHoldStagingAndFinishAfter(t *testing.T) {
	checkLeaks(t)
	clock := NewManualClock(epoch)
	m := newMaster(t, Config{Clock: clock, HoldStaging: true, FinishAfter: time.Minute, HeartbeatInterval: time.Hour})
	addAgent(t, m, AgentSpec{CPUs: 1, MemMB: 512})
	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(frameworkInfo("lifecycle"))
	c.subscribed()
	o := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]
	c.call(launch(o, commandTask("t1", o, 1, 128)))
	if r, _ := m.Task("t1"); r.State != mesos.TASK_STAGING {
		t.Fatalf("held task is %s, want TASK_STAGING", r.State)
	}
	c.noEvent(50 * time.Millisecond)
	c.call(calls.Reconcile())
	if st := c.update("t1", mesos.TASK_STAGING); st.GetReason() != mesos.REASON_RECONCILIATION {
		t.Errorf("reconcile of a staging task: %v", st)
	}
	if err := m.StartTask("t1"); err != nil {
		t.Fatal(err)
	}
	if err := m.StartTask("t1"); err == nil {
		t.Error("StartTask twice succeeded")
	}
	c.ack(c.update("t1", mesos.TASK_STARTING))
	c.ack(c.update("t1", mesos.TASK_RUNNING))
	clock.Advance(time.Minute)
	st := c.update("t1", mesos.TASK_FINISHED)
	c.ack(st)
	waitUntil(t, m, "t1 is forgotten", func() bool {
		r, _ := m.Task("t1")
		return !r.Known
	})
	if err := m.FinishTask("t1"); err == nil {
		t.Error("FinishTask of a finished task succeeded")
	}
}

// TestFailTaskAndRescindOffers checks FailTask's update and RescindOffers.
func TestFailTaskAndRescindOffers(t *testing.T) {
	checkLeaks(t)
	m := newMaster(t, Config{})
	addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 512})
	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(frameworkInfo("fail"))
	c.subscribed()
	o := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]
	runningTask(t, c, o, "t1")
	if err := m.FailTask("t1", "Command exited with status 3"); err != nil {
		t.Fatal(err)
	}
	st := c.update("t1", mesos.TASK_FAILED)
	if st.GetMessage() != "Command exited with status 3" || len(st.UUID) != 16 {
		t.Errorf("failed update %v", st)
	}
	c.ack(st)

	// The leftovers of the launch and the failed task's resources.
	before := m.OutstandingOffers()
	if len(before) != 2 {
		t.Fatalf("outstanding offers %v, want 2", before)
	}
	m.RescindOffers()
	for _, o := range before {
		if e := c.until(scheduler.Event_RESCIND); e.Rescind.OfferID != o.ID {
			t.Errorf("RESCIND %v, want %v", e.Rescind.OfferID, o.ID)
		}
	}
	after := c.expect(scheduler.Event_OFFERS).Offers.Offers
	if len(after) != 1 || scalarOf(after[0].Resources, "cpus") != 2 || scalarOf(after[0].Resources, "mem") != 512 {
		t.Errorf("offers after RescindOffers %v, want one offer of the whole agent", after)
	}
}

// TestManualClock checks the clock the deterministic tests rely on.
func TestManualClock(t *testing.T) {
	c := NewManualClock(epoch)
	var fired []string
	c.AfterFunc(2*time.Second, func() { fired = append(fired, "2s") })
	stopped := c.AfterFunc(time.Second, func() { fired = append(fired, "stopped") })
	c.AfterFunc(time.Second, func() {
		fired = append(fired, "1s")
		c.AfterFunc(0, func() { fired = append(fired, "1s+0") })
	})
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop did not report the first stop only")
	}
	c.Advance(1500 * time.Millisecond)
	if got := c.Now(); !got.Equal(epoch.Add(1500 * time.Millisecond)) {
		t.Errorf("Now = %v", got)
	}
	c.Advance(time.Second)
	if want := []string{"1s", "1s+0", "2s"}; len(fired) != 3 || fired[0] != want[0] || fired[1] != want[1] || fired[2] != want[2] {
		t.Errorf("fired %v, want %v", fired, want)
	}
	if c.Pending() != 0 {
		t.Errorf("Pending = %d", c.Pending())
	}
}

// TestMaxCompletionTime: a task whose TaskInfo has max_completion_time fails
// that long after TASK_RUNNING with REASON_MAX_COMPLETION_TIME_REACHED, as
// the agent's executor makes it.
func TestMaxCompletionTime(t *testing.T) {
	checkLeaks(t)
	clock := NewManualClock(epoch)
	m := newMaster(t, Config{Clock: clock, HeartbeatInterval: time.Hour})
	addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 512})
	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(frameworkInfo("max-completion"))
	c.subscribed()
	o := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]
	slow := commandTask("slow", o, 2, 512) // all of it: no new offer
	slow.MaxCompletionTime = &mesos.DurationInfo{Nanoseconds: int64(time.Minute)}
	c.call(launch(o, slow))
	c.ack(c.update("slow", mesos.TASK_STARTING))
	c.ack(c.update("slow", mesos.TASK_RUNNING))
	clock.Advance(time.Minute - time.Nanosecond)
	c.noEvent(50 * time.Millisecond)
	if r, _ := m.Task("slow"); r.State != mesos.TASK_RUNNING {
		t.Fatalf("before its max completion time the task is %s", r.State)
	}
	clock.Advance(time.Nanosecond)
	st := c.update("slow", mesos.TASK_FAILED)
	if st.GetReason() != mesos.REASON_MAX_COMPLETION_TIME_REACHED || st.GetSource() != mesos.SOURCE_EXECUTOR || len(st.UUID) != 16 {
		t.Errorf("update at the max completion time: %v", st)
	}
	c.ack(st)
}
