package mesosfake

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/backoff"
	"github.com/mesos/mesos-go/api/v1/lib/extras/scheduler/callrules"
	"github.com/mesos/mesos-go/api/v1/lib/extras/scheduler/controller"
	"github.com/mesos/mesos-go/api/v1/lib/extras/scheduler/eventrules"
	"github.com/mesos/mesos-go/api/v1/lib/extras/store"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpsched"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/events"
)

func resubscribeAs(info *mesos.FrameworkInfo, id string) *mesos.FrameworkInfo {
	cp := *info
	cp.ID = &mesos.FrameworkID{Value: id}
	return &cp
}

// TestFailoverWithinTimeoutKeepsTasks checks a second scheduler subscribing
// with the framework's id: the first stream gets ERROR "Framework failed
// over" and ends, the in-flight update is sent again, offers are re-issued,
// and the tasks are still there for reconciliation.
func TestFailoverWithinTimeoutKeepsTasks(t *testing.T) {
	checkLeaks(t)
	m := newMaster(t, Config{})
	addAgent(t, m, AgentSpec{CPUs: 4, MemMB: 4096})
	info := withFailover(frameworkInfo("failover", mesos.FrameworkInfo_Capability_PARTITION_AWARE), time.Minute)

	old := newClient(t, m.SchedulerURL(), protobuf)
	old.subscribe(info)
	fwID := old.subscribed().FrameworkID.Value
	o := old.expect(scheduler.Event_OFFERS).Offers.Offers[0]
	runningTask(t, old, o, "t1")
	o = m.OutstandingOffers()[0] // runningTask dropped the OFFERS event of the leftovers
	old.call(launch(o, commandTask("t2", o, 1, 128)).With(calls.RefuseSeconds(0)))
	inFlight := old.update("t2", mesos.TASK_STARTING) // not acknowledged

	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(resubscribeAs(info, fwID))
	if got := c.subscribed().FrameworkID.Value; got != fwID {
		t.Fatalf("re-subscribed as %s, want %s", got, fwID)
	}
	if e := old.until(scheduler.Event_ERROR); e.Error.Message != "Framework failed over" {
		t.Errorf("old stream: ERROR %q, want \"Framework failed over\"", e.Error.Message)
	}
	old.streamEnds()

	st := c.update("t2", mesos.TASK_STARTING)
	if !bytes.Equal(st.UUID, inFlight.UUID) {
		t.Errorf("resent update has uuid %x, want the in-flight %x", st.UUID, inFlight.UUID)
	}
	if offers := c.expect(scheduler.Event_OFFERS).Offers.Offers; len(offers) != 1 || scalarOf(offers[0].Resources, "cpus") != 2 {
		t.Errorf("offers after failover %v, want the 2 free cpus", offers)
	}
	c.ack(st)
	c.ack(c.update("t2", mesos.TASK_RUNNING))

	c.call(calls.Reconcile())
	got := updatesByTask(t, c, 2)
	for _, id := range []string{"t1", "t2"} {
		if st := got[id]; st.GetState() != mesos.TASK_RUNNING {
			t.Errorf("reconcile after failover: %s is %s, want TASK_RUNNING", id, st.GetState())
		}
	}
	fw, _ := m.Framework(fwID)
	if !fw.Connected || fw.Subscriptions != 2 || fw.FailoverTimeout != time.Minute || len(m.Frameworks()) != 1 {
		t.Errorf("framework record %+v, want connected, 2 subscriptions, 1m failover timeout, alone", fw)
	}
}

// TestDroppedStreamKeepsTasksWithinTimeout checks DropStreams: the framework
// is disconnected (403 for its calls), and re-subscribing within the
// timeout finds its tasks.
func TestDroppedStreamKeepsTasksWithinTimeout(t *testing.T) {
	checkLeaks(t)
	clock := NewManualClock(epoch)
	m := newMaster(t, Config{Clock: clock})
	addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
	info := withFailover(frameworkInfo("drop"), time.Minute)
	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(info)
	fwID := c.subscribed().FrameworkID.Value
	o := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]
	runningTask(t, c, o, "t1")

	m.DropStreams()
	if err := c.streamEnds(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("stream ended with %v, want the decoder to see the connection cut (unexpected EOF)", err)
	}
	if fw, _ := m.Framework(fwID); fw.Connected || fw.Removed {
		t.Fatalf("after DropStreams: %+v, want disconnected, not removed", fw)
	}
	clock.Advance(59 * time.Second)
	c.subscribe(resubscribeAs(info, fwID))
	c.subscribed()
	c.call(calls.Reconcile(calls.ReconcileTasks(map[string]string{"t1": o.AgentID.Value})))
	if st := c.update("t1", mesos.TASK_RUNNING); st.GetReason() != mesos.REASON_RECONCILIATION {
		t.Errorf("reconcile: %v", st)
	}
	clock.Advance(time.Hour) // the failover timer was cancelled
	if fw, _ := m.Framework(fwID); !fw.Connected || fw.Removed {
		t.Errorf("an hour after re-subscribing: %+v, want connected", fw)
	}
}

// TestFailoverTimeoutExpiry checks that a framework that stays away longer
// than its failover timeout is removed, its tasks killed, and a later
// SUBSCRIBE with its id refused with ERROR "Framework has been removed"; and
// that Config.FailoverTimeout shortens a framework's week-long timeout.
func TestFailoverTimeoutExpiry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    time.Duration // Config.FailoverTimeout
		asked  time.Duration // FrameworkInfo.failover_timeout
		expiry time.Duration
	}{
		{"framework's timeout", 0, 10 * time.Second, 10 * time.Second},
		{"Config.FailoverTimeout", 3 * time.Second, 7 * 24 * time.Hour, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			clock := NewManualClock(epoch)
			m := newMaster(t, Config{Clock: clock, FailoverTimeout: tc.cfg})
			addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
			info := withFailover(frameworkInfo("expiry"), tc.asked)
			c := newClient(t, m.SchedulerURL(), protobuf)
			c.subscribe(info)
			fwID := c.subscribed().FrameworkID.Value
			o := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]
			runningTask(t, c, o, "t1")

			// The scheduler goes away: the master notices the connection close.
			c.close()
			waitUntil(t, m, "the framework is disconnected", func() bool {
				fw, _ := m.Framework(fwID)
				return !fw.Connected
			})
			clock.Advance(tc.expiry - time.Millisecond)
			if fw, _ := m.Framework(fwID); fw.Removed {
				t.Fatalf("removed before its failover timeout: %+v", fw)
			}
			clock.Advance(time.Millisecond)
			fw, _ := m.Framework(fwID)
			if !fw.Removed || fw.FailoverTimeout != tc.asked {
				t.Fatalf("after the failover timeout: %+v, want removed, reporting the asked %v", fw, tc.asked)
			}
			if r, _ := m.Task("t1"); r.Known || r.State != mesos.TASK_KILLED {
				t.Errorf("task after framework removal: %+v, want forgotten and TASK_KILLED", r)
			}
			if got := len(m.OutstandingOffers()); got != 0 {
				t.Errorf("%d offers outstanding for no framework", got)
			}

			c2 := newClient(t, m.SchedulerURL(), protobuf)
			c2.subscribe(resubscribeAs(info, fwID))
			if e := c2.next(); e.Type != scheduler.Event_ERROR || e.Error.Message != "Framework has been removed" {
				t.Fatalf("re-subscribe after removal: %v, want ERROR \"Framework has been removed\"", e)
			}
			c2.streamEnds()
		})
	}
}

// TestTeardown checks TEARDOWN: the stream ends, the tasks are killed.
func TestTeardown(t *testing.T) {
	checkLeaks(t)
	m := newMaster(t, Config{})
	addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})
	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(withFailover(frameworkInfo("teardown"), time.Hour))
	fwID := c.subscribed().FrameworkID.Value
	o := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]
	runningTask(t, c, o, "t1")
	c.call(&scheduler.Call{Type: scheduler.Call_TEARDOWN}) // mesos-go has no helper
	c.streamEnds()
	if fw, _ := m.Framework(fwID); !fw.Removed {
		t.Errorf("after TEARDOWN: %+v, want removed", fw)
	}
	if r, _ := m.Task("t1"); r.State != mesos.TASK_KILLED {
		t.Errorf("task after TEARDOWN: %s, want TASK_KILLED", r.State)
	}
}

// TestControllerResubscribes runs mesos-go's controller as
// cmd/example-scheduler does, and checks that it comes back under the same
// framework id after a dropped stream and after an ERROR event, acking
// every update on the way.
func TestControllerResubscribes(t *testing.T) {
	checkLeaks(t)
	m := newMaster(t, Config{})
	addAgent(t, m, AgentSpec{CPUs: 2, MemMB: 1024})

	var tr *http.Transport
	cli := httpcli.New(
		httpcli.Endpoint(m.SchedulerURL()),
		httpcli.Codec(protobuf),
		httpcli.Do(httpcli.With(httpcli.Timeout(5*time.Second), httpcli.Transport(func(t *http.Transport) { tr = t }))),
	)
	defer func() { tr.CloseIdleConnections() }()
	fidStore := store.NewInMemorySingleton()
	caller := callrules.New(callrules.WithFrameworkID(store.GetIgnoreErrors(fidStore))).Caller(httpsched.NewCaller(cli))
	info := withFailover(frameworkInfo("controller"), time.Hour)

	launched := false
	handler := eventrules.New(
		controller.LiftErrors().DropOnError(),
	).Handle(events.Handlers{
		scheduler.Event_SUBSCRIBED: eventrules.New(controller.TrackSubscription(fidStore, time.Hour)),
		scheduler.Event_UPDATE:     controller.AckStatusUpdates(caller).AndThen().HandleF(func(context.Context, *scheduler.Event) error { return nil }),
		scheduler.Event_OFFERS: events.HandlerFunc(func(ctx context.Context, e *scheduler.Event) error {
			for _, o := range e.GetOffers().GetOffers() {
				var call *scheduler.Call
				if !launched {
					launched = true
					call = launch(o, commandTask("ctl", o, 1, 128))
				} else {
					call = calls.Decline(o.ID).With(calls.RefuseSeconds(time.Hour))
				}
				if err := calls.CallNoData(ctx, caller, call); err != nil {
					return err
				}
			}
			return nil
		}),
	})

	ctx, cancel := context.WithCancel(context.Background())
	tokens := make(chan struct{})
	runErr := make(chan error, 1)
	go func() {
		runErr <- controller.Run(ctx, info, caller,
			controller.WithEventHandler(handler),
			controller.WithFrameworkID(store.GetIgnoreErrors(fidStore)),
			controller.WithRegistrationTokens(backoff.Notifier(10*time.Millisecond, 50*time.Millisecond, tokens)),
		)
	}()
	defer func() {
		cancel()
		close(tokens)
		// Run returns the error that ended its last subscription: the
		// cancellation, possibly wrapped by mesos-go as text.
		if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), context.Canceled.Error()) {
			t.Errorf("controller.Run: %v", err)
		}
	}()

	subscriptions := func(n int) func() bool {
		return func() bool {
			fws := m.Frameworks()
			return len(fws) == 1 && fws[0].Connected && fws[0].Subscriptions == n
		}
	}
	waitUntil(t, m, "the task runs and is acknowledged", func() bool {
		r, ok := m.Task("ctl")
		return ok && r.State == mesos.TASK_RUNNING && r.PendingUpdates == 0
	})
	m.DropStreams()
	waitUntil(t, m, "the controller re-subscribes after DropStreams", subscriptions(2))
	m.InjectError("injected")
	waitUntil(t, m, "the controller re-subscribes after an ERROR", subscriptions(3))
	for _, c := range m.Calls() {
		if c.Type == scheduler.Call_SUBSCRIBE && c.Status != http.StatusOK {
			t.Errorf("SUBSCRIBE answered %d", c.Status)
		}
	}
	if err := m.FinishTask("ctl"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, m, "the controller acknowledges TASK_FINISHED", func() bool {
		r, _ := m.Task("ctl")
		return !r.Known && r.State == mesos.TASK_FINISHED
	})
}

// TestRedirectIsFollowedForSubscribeOnly pins down how mesos-go v0.0.11
// follows a standby master's 307: httpsched re-sends SUBSCRIBE to the
// leader, but later calls still go to the endpoint the client was built
// with; the standby's 307 to them makes httpsched drop the subscription.
// A scheduler must therefore build its client on the leader's URL (from
// /redirect or ZooKeeper), as the last part shows.
func TestRedirectIsFollowedForSubscribeOnly(t *testing.T) {
	checkLeaks(t)
	leader := newMaster(t, Config{})
	standby := newMaster(t, Config{Standby: true, LeaderURL: leader.URL()})
	addAgent(t, leader, AgentSpec{CPUs: 1, MemMB: 128})

	c := newClient(t, standby.SchedulerURL(), protobuf)
	c.subscribe(frameworkInfo("redirected"))
	c.subscribed()
	c.expect(scheduler.Event_OFFERS)
	if calls := standby.Calls(); len(calls) != 1 || calls[0].Type != scheduler.Call_SUBSCRIBE || calls[0].Status != http.StatusTemporaryRedirect {
		t.Errorf("standby saw %+v, want one SUBSCRIBE answered 307", calls)
	}
	if calls := leader.Calls(); len(calls) != 1 || calls[0].Type != scheduler.Call_SUBSCRIBE || calls[0].Status != http.StatusOK {
		t.Errorf("leader saw %+v, want one SUBSCRIBE answered 200", calls)
	}

	err := c.tryCall(calls.Reconcile())
	if err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("RECONCILE after a redirected SUBSCRIBE: %v, want mesos-go's redirect error", err)
	}
	if err := c.tryCall(calls.Reconcile()); err == nil {
		t.Fatal("httpsched stayed subscribed after the standby's 307")
	}

	// The way that works: find the leader first.
	rc := newRawClient(t)
	resp, err := rc.hc.Get(standby.URL() + "/redirect")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	leaderURL := "http:" + resp.Header.Get("Location")
	if leaderURL != leader.URL() {
		t.Fatalf("/redirect points at %s, want %s", leaderURL, leader.URL())
	}
	c2 := newClient(t, leaderURL+"/api/v1/scheduler", protobuf)
	c2.subscribe(frameworkInfo("direct"))
	c2.subscribed()
	c2.call(calls.Reconcile())
}
