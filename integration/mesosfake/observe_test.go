package mesosfake

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// TestWaitCallReturnsEachCallOnce checks WaitCall's cursor, WaitCalls, and
// that a waited-for call's effects are visible when it returns.
func TestWaitCallReturnsEachCallOnce(t *testing.T) {
	checkLeaks(t)
	m := newMaster(t, Config{})
	addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(frameworkInfo("observe"))
	c.subscribed()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	sub, err := m.WaitCall(ctx, scheduler.Call_SUBSCRIBE)
	if err != nil || sub.Status != http.StatusOK || sub.Call.Subscribe.FrameworkInfo.Name != "observe" {
		t.Fatalf("WaitCall(SUBSCRIBE) = %+v, %v", sub, err)
	}
	o := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]
	c.call(launch(o, commandTask("a", o, 0.5, 64), commandTask("b", o, 0.5, 64)))
	acc, err := m.WaitCall(ctx, scheduler.Call_ACCEPT)
	if err != nil || acc.FrameworkID != c.frameworkID() || acc.StreamID == "" {
		t.Fatalf("WaitCall(ACCEPT) = %+v, %v", acc, err)
	}
	if tasks := m.Tasks(); len(tasks) != 2 || tasks[0].ID != "a" || tasks[1].ID != "b" {
		t.Fatalf("Tasks() right after the ACCEPT: %+v, want a and b", tasks)
	}

	go func() {
		for _, id := range []string{"a", "b"} {
			c.ack(c.update(id, mesos.TASK_STARTING))
		}
	}()
	acks, err := m.WaitCalls(ctx, scheduler.Call_ACKNOWLEDGE, 2)
	if err != nil || len(acks) != 2 {
		t.Fatalf("WaitCalls(ACKNOWLEDGE, 2) = %d calls, %v", len(acks), err)
	}
	first, _ := m.WaitCall(ctx, scheduler.Call_ACKNOWLEDGE)
	second, _ := m.WaitCall(ctx, scheduler.Call_ACKNOWLEDGE)
	if first.Call.Acknowledge.TaskID.Value != "a" || second.Call.Acknowledge.TaskID.Value != "b" {
		t.Errorf("WaitCall(ACKNOWLEDGE) twice: %s, %s; want a, b", first.Call.Acknowledge.TaskID.Value, second.Call.Acknowledge.TaskID.Value)
	}
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	if _, err := m.WaitCall(short, scheduler.Call_ACKNOWLEDGE); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("third WaitCall(ACKNOWLEDGE): %v, want the deadline", err)
	}

	if err := m.KillTask("a"); err != nil {
		t.Fatal(err)
	}
	// "a" is still waiting for the ACK of RUNNING: KILLED queues behind it.
	c.ack(c.update("a", mesos.TASK_RUNNING))
	c.ack(c.update("b", mesos.TASK_RUNNING))
	c.ack(c.update("a", mesos.TASK_KILLED))
	if err := m.KillTask("nope"); !errors.Is(err, ErrUnknownTask) {
		t.Errorf("KillTask(nope): %v, want ErrUnknownTask", err)
	}
}

// TestMultiRoleOffersAndExecutorTasks checks a MULTI_ROLE framework's offers
// (allocation_info of an unsuppressed role, per-role SUPPRESS) and a task
// with a custom executor (its executor id in updates and in /state).
func TestMultiRoleOffersAndExecutorTasks(t *testing.T) {
	checkLeaks(t)
	m := newMaster(t, Config{})
	agentID := addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
	info := frameworkInfo("multi", mesos.FrameworkInfo_Capability_MULTI_ROLE)
	info.Roles = []string{"blue", "green"}
	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(info)
	c.subscribed()
	o := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]
	if o.GetAllocationInfo().GetRole() != "blue" || o.Resources[0].GetAllocationInfo().GetRole() != "blue" {
		t.Fatalf("offer allocated to %q, want blue", o.GetAllocationInfo().GetRole())
	}

	wrongRole := commandTask("wrong", o, 0.5, 64)
	wrongRole.Resources[0].AllocationInfo = &mesos.Resource_AllocationInfo{Role: strPtr("green")}
	withExecutor := commandTask("ex", o, 0.5, 64)
	withExecutor.Command = nil
	withExecutor.Executor = &mesos.ExecutorInfo{
		ExecutorID: mesos.ExecutorID{Value: "app-executor"},
		Command:    &mesos.CommandInfo{Value: strPtr("./executor")},
	}
	c.call(launch(o, wrongRole, withExecutor).With(calls.RefuseSeconds(0)))
	if st := c.update("wrong", mesos.TASK_ERROR); st.GetReason() != mesos.REASON_TASK_INVALID {
		t.Errorf("task with another role's resources: %v", st)
	}
	st := c.update("ex", mesos.TASK_STARTING)
	if st.GetExecutorID().GetValue() != "app-executor" {
		t.Errorf("executor id in update %q, want app-executor", st.GetExecutorID().GetValue())
	}
	c.ack(st)

	c.call(calls.SuppressWith([]string{"blue"}))
	for _, o := range m.OutstandingOffers() {
		c.call(calls.Decline(o.ID).With(calls.RefuseSeconds(0)))
	}
	if got := m.OutstandingOffers(); len(got) != 1 || got[0].GetAllocationInfo().GetRole() != "green" {
		t.Errorf("with blue suppressed the offers are %v, want one for green", got)
	}
	if m.Suppressed(c.frameworkID()) {
		t.Error("Suppressed with one of two roles suppressed")
	}
	c.call(calls.SuppressWith([]string{"green"}))
	if fw, _ := m.Framework(c.frameworkID()); !fw.Suppressed || len(fw.SuppressedRoles) != 2 {
		t.Errorf("after suppressing both roles: %+v", fw)
	}

	resp, err := newRawClient(t).hc.Get(m.URL() + "/master/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var state struct {
		Frameworks []struct {
			Roles     []string `json:"roles"`
			Executors []struct {
				ExecutorID string `json:"executor_id"`
				SlaveID    string `json:"slave_id"`
			} `json:"executors"`
		} `json:"frameworks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&state); err != nil {
		t.Fatal(err)
	}
	if len(state.Frameworks) != 1 || len(state.Frameworks[0].Executors) != 1 ||
		state.Frameworks[0].Executors[0].ExecutorID != "app-executor" || state.Frameworks[0].Executors[0].SlaveID != agentID ||
		len(state.Frameworks[0].Roles) != 2 {
		t.Errorf("/state frameworks = %+v", state.Frameworks)
	}
}

// TestNewRejectsBadConfig checks the constructor's validation.
func TestNewRejectsBadConfig(t *testing.T) {
	checkLeaks(t)
	for _, cfg := range []Config{
		{HeartbeatInterval: -time.Second},
		{Standby: true, LeaderURL: "not a url"},
		{Addr: "256.0.0.1:0"},
	} {
		if m, err := New(cfg); err == nil {
			m.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
