package mesosfake

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpsched"
	"github.com/mesos/mesos-go/api/v1/lib/resources"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
	"go.uber.org/goleak"
)

// waitTimeout bounds every wait of these tests; nothing they wait for takes
// more than milliseconds unless something is broken.
const waitTimeout = 10 * time.Second

var (
	protobuf = codecs.ByMediaType[codecs.MediaTypeProtobuf]
	jsonC    = codecs.ByMediaType[codecs.MediaTypeJSON]
)

// checkLeaks fails the test if it leaves goroutines behind. Call it first, so
// that its cleanup runs after every other.
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

// newMaster starts a master that the test closes.
func newMaster(t *testing.T, cfg Config) *Master {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

func addAgent(t *testing.T, m *Master, spec AgentSpec) string {
	t.Helper()
	id, err := m.AddAgent(spec)
	if err != nil {
		t.Fatalf("AddAgent(%+v): %v", spec, err)
	}
	return id
}

// client is a scheduler made of mesos-go's real client: httpcli with the
// chosen codec under httpsched's connection state machine.
type client struct {
	t      *testing.T
	caller calls.Caller
	tr     *http.Transport

	mu      sync.Mutex
	fwID    string
	resp    mesos.Response
	events  chan *scheduler.Event
	readErr chan error
	done    chan struct{}
	wg      sync.WaitGroup
}

func newClient(t *testing.T, url string, codec encoding.Codec, opts ...httpsched.Option) *client {
	t.Helper()
	c := &client{t: t}
	cli := httpcli.New(
		httpcli.Endpoint(url),
		httpcli.Codec(codec),
		httpcli.Do(httpcli.With(
			httpcli.Timeout(5*time.Second),
			httpcli.Transport(func(tr *http.Transport) { c.tr = tr }),
		)),
	)
	c.caller = httpsched.NewCaller(cli, opts...)
	t.Cleanup(c.close)
	return c
}

// subscribe sends SUBSCRIBE and starts decoding the stream into c.events.
func (c *client) subscribe(info *mesos.FrameworkInfo) {
	c.t.Helper()
	if err := c.trySubscribe(info); err != nil {
		c.t.Fatalf("SUBSCRIBE: %v", err)
	}
}

func (c *client) trySubscribe(info *mesos.FrameworkInfo) error {
	c.stopReading()
	resp, err := c.caller.Call(context.Background(), calls.Subscribe(info))
	if err != nil {
		if resp != nil {
			resp.Close()
		}
		return err
	}
	c.mu.Lock()
	c.resp = resp
	c.events = make(chan *scheduler.Event, 1024)
	c.readErr = make(chan error, 1)
	c.done = make(chan struct{})
	events, readErr, done := c.events, c.readErr, c.done
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			var e scheduler.Event
			if err := resp.Decode(&e); err != nil {
				readErr <- err
				close(events)
				return
			}
			select {
			case events <- &e:
			case <-done:
				return
			}
		}
	}()
	return nil
}

func (c *client) stopReading() {
	c.mu.Lock()
	resp, done := c.resp, c.done
	c.resp, c.done = nil, nil
	c.mu.Unlock()
	if resp != nil {
		close(done)
		resp.Close()
	}
	c.wg.Wait()
}

func (c *client) close() {
	c.stopReading()
	if c.tr != nil {
		c.tr.CloseIdleConnections()
	}
}

// next returns the next event that is not a HEARTBEAT.
func (c *client) next() *scheduler.Event {
	c.t.Helper()
	for {
		e := c.nextAny()
		if e.Type != scheduler.Event_HEARTBEAT {
			return e
		}
	}
}

// nextAny returns the next event, heartbeats included.
func (c *client) nextAny() *scheduler.Event {
	c.t.Helper()
	c.mu.Lock()
	events := c.events
	c.mu.Unlock()
	select {
	case e, ok := <-events:
		if !ok {
			c.t.Fatalf("stream ended while waiting for an event: %v", <-c.readErr)
		}
		return e
	case <-time.After(waitTimeout):
		c.t.Fatalf("no event within %v", waitTimeout)
	}
	return nil
}

// expect returns the next non-heartbeat event and fails unless it has type typ.
func (c *client) expect(typ scheduler.Event_Type) *scheduler.Event {
	c.t.Helper()
	e := c.next()
	if e.Type != typ {
		c.t.Fatalf("got event %s, want %s: %v", e.Type, typ, e)
	}
	return e
}

// until returns the first non-heartbeat event of type typ, dropping others.
func (c *client) until(typ scheduler.Event_Type) *scheduler.Event {
	c.t.Helper()
	for {
		if e := c.next(); e.Type == typ {
			return e
		}
	}
}

// streamEnds waits for the end of the stream, dropping events until then,
// and returns the decoder's error.
func (c *client) streamEnds() error {
	c.t.Helper()
	c.mu.Lock()
	events, readErr := c.events, c.readErr
	c.mu.Unlock()
	deadline := time.After(waitTimeout)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return <-readErr
			}
		case <-deadline:
			c.t.Fatalf("stream still open after %v", waitTimeout)
		}
	}
}

// noEvent fails if a non-heartbeat event is queued right now. Events are
// queued synchronously with the call or control method that causes them,
// but travel over TCP: d bounds that trip.
func (c *client) noEvent(d time.Duration) {
	c.t.Helper()
	c.mu.Lock()
	events := c.events
	c.mu.Unlock()
	deadline := time.After(d)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				return
			}
			if e.Type != scheduler.Event_HEARTBEAT {
				c.t.Fatalf("unexpected event %s: %v", e.Type, e)
			}
		case <-deadline:
			return
		}
	}
}

// subscribed waits for SUBSCRIBED and remembers the framework id.
func (c *client) subscribed() *scheduler.Event_Subscribed {
	c.t.Helper()
	e := c.expect(scheduler.Event_SUBSCRIBED)
	c.mu.Lock()
	c.fwID = e.Subscribed.FrameworkID.Value
	c.mu.Unlock()
	return e.Subscribed
}

func (c *client) frameworkID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fwID
}

// call sends a non-SUBSCRIBE call for the subscribed framework.
func (c *client) call(call *scheduler.Call) {
	c.t.Helper()
	if err := c.tryCall(call); err != nil {
		c.t.Fatalf("%s: %v", call.Type, err)
	}
}

func (c *client) tryCall(call *scheduler.Call) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return calls.CallNoData(ctx, c.caller, call.With(calls.Framework(c.frameworkID())))
}

func (c *client) ack(st mesos.TaskStatus) {
	c.t.Helper()
	c.call(calls.Acknowledge(st.GetAgentID().GetValue(), st.TaskID.Value, st.UUID))
}

// update waits for the next UPDATE (dropping other events) and checks its
// task and state.
func (c *client) update(taskID string, state mesos.TaskState) mesos.TaskStatus {
	c.t.Helper()
	st := c.until(scheduler.Event_UPDATE).Update.Status
	if st.TaskID.Value != taskID || st.GetState() != state {
		c.t.Fatalf("got update %s %s (%s), want %s %s", st.TaskID.Value, st.GetState(), st.GetMessage(), taskID, state)
	}
	return st
}

func frameworkInfo(name string, caps ...mesos.FrameworkInfo_Capability_Type) *mesos.FrameworkInfo {
	info := &mesos.FrameworkInfo{User: "nobody", Name: name}
	for _, c := range caps {
		info.Capabilities = append(info.Capabilities, mesos.FrameworkInfo_Capability{Type: c})
	}
	return info
}

func withFailover(info *mesos.FrameworkInfo, d time.Duration) *mesos.FrameworkInfo {
	s := d.Seconds()
	info.FailoverTimeout = &s
	return info
}

// commandTask is a command task using cpus and mem of the offer.
func commandTask(id string, o mesos.Offer, cpus, mem float64) mesos.TaskInfo {
	shell := true
	return mesos.TaskInfo{
		Name:    "task " + id,
		TaskID:  mesos.TaskID{Value: id},
		AgentID: o.AgentID,
		Command: &mesos.CommandInfo{
			Shell: &shell,
			Value: strPtr("echo hello && sleep 1"),
			URIs: []mesos.CommandInfo_URI{
				{Value: "http://example.invalid/app.tar.gz", Extract: boolPtr(true), Cache: boolPtr(false)},
				{Value: "http://example.invalid/run.sh", Executable: boolPtr(true), Extract: boolPtr(false)},
			},
			Environment: &mesos.Environment{Variables: []mesos.Environment_Variable{
				{Name: "JOB", Value: strPtr("demo")},
				{Name: "SHARD", Value: strPtr("0")},
			}},
		},
		Resources: []mesos.Resource{
			resources.NewCPUs(cpus).Resource,
			resources.NewMemory(mem).Resource,
		},
	}
}

func boolPtr(b bool) *bool { return &b }

func launch(o mesos.Offer, tasks ...mesos.TaskInfo) *scheduler.Call {
	return calls.Accept(calls.OfferOperations{calls.OpLaunch(tasks...)}.WithOffers(o.ID))
}

func scalarOf(rs []mesos.Resource, name string) float64 {
	var sum float64
	for _, r := range rs {
		if r.Name == name {
			sum += r.GetScalar().GetValue()
		}
	}
	return sum
}

func waitUntil(t *testing.T, m *Master, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := m.WaitUntil(ctx, cond); err != nil {
		t.Fatalf("waiting until %s: %v", what, err)
	}
}
