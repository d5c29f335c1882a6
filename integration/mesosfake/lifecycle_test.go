package mesosfake

import (
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// TestLaunchUpdatesAreAckGated walks one command task through its life with
// mesos-go's client, in both codecs: SUBSCRIBED, HEARTBEAT, OFFERS, ACCEPT,
// STARTING, RUNNING, FINISHED, each update released by the ACK of the one
// before, and the task's resources offered again at its end.
func TestLaunchUpdatesAreAckGated(t *testing.T) {
	for _, codec := range []encoding.Codec{protobuf, jsonC} {
		t.Run(codec.Name, func(t *testing.T) {
			checkLeaks(t)
			m := newMaster(t, Config{})
			agentID := addAgent(t, m, AgentSpec{Hostname: "a1.example", CPUs: 4, MemMB: 4096})

			c := newClient(t, m.SchedulerURL(), codec)
			c.subscribe(frameworkInfo("lifecycle"))
			sub := c.subscribed()
			if got := sub.GetHeartbeatIntervalSeconds(); got != 15 {
				t.Errorf("heartbeat_interval_seconds = %v, want 15", got)
			}
			if mi := sub.GetMasterInfo(); mi.GetID() != m.MasterInfo().ID || mi.GetAddress().GetPort() == 0 {
				t.Errorf("master_info = %v, want the master's", mi)
			}
			if e := c.nextAny(); e.Type != scheduler.Event_HEARTBEAT {
				t.Fatalf("second event %s, want HEARTBEAT", e.Type)
			}
			offers := c.expect(scheduler.Event_OFFERS).Offers.Offers
			if len(offers) != 1 {
				t.Fatalf("got %d offers, want 1", len(offers))
			}
			o := offers[0]
			if o.Hostname != "a1.example" || o.AgentID.Value != agentID || o.FrameworkID.Value != c.frameworkID() ||
				scalarOf(o.Resources, "cpus") != 4 || scalarOf(o.Resources, "mem") != 4096 ||
				o.GetAllocationInfo().GetRole() != "*" {
				t.Fatalf("offer = %v", o)
			}
			for _, r := range o.Resources {
				if r.GetRole() != "*" || r.GetAllocationInfo().GetRole() != "*" {
					t.Errorf("resource %v: want role * and allocation_info.role *", r)
				}
			}

			c.call(launch(o, commandTask("t1", o, 1, 512)))
			st := c.update("t1", mesos.TASK_STARTING)
			if len(st.UUID) != 16 || st.GetSource() != mesos.SOURCE_EXECUTOR || st.GetAgentID().GetValue() != agentID {
				t.Fatalf("STARTING update = %v, want a 16-byte uuid from the executor", st)
			}
			rec, _ := m.Task("t1")
			if rec.State != mesos.TASK_RUNNING || rec.DeliveredUpdates != 1 || rec.PendingUpdates != 2 {
				t.Fatalf("before the first ACK: state %s, delivered %d, pending %d; want RUNNING, 1, 2",
					rec.State, rec.DeliveredUpdates, rec.PendingUpdates)
			}
			c.ack(st)
			st = c.update("t1", mesos.TASK_RUNNING)
			c.ack(st)
			waitUntil(t, m, "RUNNING is acknowledged", func() bool {
				r, _ := m.Task("t1")
				return r.PendingUpdates == 0
			})

			rec, _ = m.Task("t1")
			if rec.Command != "echo hello && sleep 1" || !rec.Shell || len(rec.URIs) != 2 ||
				rec.Env["JOB"] != "demo" || rec.CPUs != 1 || rec.MemMB != 512 || rec.AgentID != agentID ||
				rec.Launches != 1 || !rec.Known {
				t.Fatalf("task record = %+v", rec)
			}

			if err := m.FinishTask("t1"); err != nil {
				t.Fatal(err)
			}
			st = c.update("t1", mesos.TASK_FINISHED)
			again := c.expect(scheduler.Event_OFFERS).Offers.Offers
			if len(again) != 1 || scalarOf(again[0].Resources, "cpus") != 4 {
				t.Fatalf("after the task ended got offers %v, want all 4 cpus again", again)
			}
			c.ack(st)
			waitUntil(t, m, "the master forgets t1", func() bool {
				r, _ := m.Task("t1")
				return !r.Known
			})

			// The id can be used again once the master forgot the task.
			c.call(launch(again[0], commandTask("t1", again[0], 1, 512)))
			c.update("t1", mesos.TASK_STARTING)
			if rec, _ := m.Task("t1"); rec.Launches != 2 || rec.Launch != 2 || len(m.Tasks()) != 2 {
				t.Errorf("relaunched t1: Launches %d, Launch %d, %d records; want 2, 2, 2", rec.Launches, rec.Launch, len(m.Tasks()))
			}
		})
	}
}
