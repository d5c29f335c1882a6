package mesos

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/extras/scheduler/controller"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpsched"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/events"
)

// Messages of the master's ERROR events that need more than a new
// subscription (src/master/master.cpp).
const (
	errFrameworkRemoved    = "Framework has been removed"
	errFrameworkFailedOver = "Framework failed over"
)

// newCaller builds the call chain: httpcli (our transport, following
// redirects, protobuf) → httpsched (stream ids, subscription state) → the
// watchdog and framework-id wrapper.
func (e *Executor) newCaller() calls.Caller {
	cli := httpcli.New(
		httpcli.Endpoint(e.ep.initial()),
		httpcli.Codec(codecs.ByMediaType[codecs.MediaTypeProtobuf]),
		httpcli.Do(e.ep.do),
	)
	// MaxRedirects(0): do follows the leader's redirects and moves on
	// from unreachable masters itself; a failed SUBSCRIBE goes back to the
	// controller at once, whose registration tokens pace the next one.
	inner := httpsched.NewCaller(cli, httpsched.AllowReconnection(true), httpsched.MaxRedirects(0))
	return calls.CallerFunc(func(ctx context.Context, call *scheduler.Call) (mesos.Response, error) {
		if call.GetType() != scheduler.Call_SUBSCRIBE {
			return inner.Call(ctx, call)
		}
		if err := e.failedOverWait(ctx); err != nil {
			return nil, err
		}
		call = e.subscribeCall(call)
		resp, err := inner.Call(ctx, call)
		if err != nil || resp == nil {
			return resp, err
		}
		return e.watch(resp), nil
	})
}

// subscribeCall is the controller's SUBSCRIBE with the framework id of the
// moment (the controller only ever adds one; after "Framework has been
// removed" it must go).
func (e *Executor) subscribeCall(call *scheduler.Call) *scheduler.Call {
	e.mu.Lock()
	id := e.frameworkID
	e.mu.Unlock()
	c := *call
	sub := *call.Subscribe
	info := *sub.FrameworkInfo
	sub.FrameworkInfo = &info
	c.Subscribe = &sub
	if id == "" {
		info.ID, c.FrameworkID = nil, nil
	} else {
		info.ID, c.FrameworkID = &mesos.FrameworkID{Value: id}, &mesos.FrameworkID{Value: id}
	}
	return &c
}

// frameworkInfo is what every SUBSCRIBE carries.
func (e *Executor) frameworkInfo() *mesos.FrameworkInfo {
	fi := &mesos.FrameworkInfo{
		User:            e.cfg.User,
		Name:            e.cfg.Name,
		FailoverTimeout: ptr(e.cfg.FailoverTimeout.Seconds()),
		Checkpoint:      ptr(true),
		Roles:           []string{e.cfg.Role},
		Capabilities: []mesos.FrameworkInfo_Capability{
			{Type: mesos.FrameworkInfo_Capability_PARTITION_AWARE},
			{Type: mesos.FrameworkInfo_Capability_MULTI_ROLE},
		},
	}
	if e.cfg.Hostname != "" {
		fi.Hostname = ptr(e.cfg.Hostname)
	}
	if e.cfg.WebUIURL != "" {
		fi.WebUiURL = ptr(e.cfg.WebUIURL)
	}
	return fi
}

// run is the controller loop: subscribe, handle events, subscribe again
// after a disconnection, until Close.
func (e *Executor) run() {
	tokens := e.registrationTokens()
	err := controller.Run(e.ctx, e.frameworkInfo(), e.caller,
		controller.WithEventHandler(events.HandlerFunc(e.handle)),
		controller.WithFrameworkID(func() string {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.frameworkID
		}),
		controller.WithRegistrationTokens(tokens),
		controller.WithSubscriptionTerminated(e.subscriptionEnded),
	)
	if err != nil && !errors.Is(err, context.Canceled) {
		e.log.Error("the Mesos controller loop stopped", "error", err)
	}
}

// failedOverWait holds a SUBSCRIBE for FailedOverWait after another
// scheduler took the framework over.
func (e *Executor) failedOverWait(ctx context.Context) error {
	e.mu.Lock()
	wait := time.Until(e.failedOverAt.Add(e.cfg.FailedOverWait))
	e.mu.Unlock()
	if wait > 0 && !sleep(ctx, wait) {
		return ctx.Err()
	}
	return nil
}

// registrationTokens paces subscription attempts: the first at once, then
// MinResubscribeWait doubling up to MaxResubscribeWait, back to the minimum
// after each successful subscription.
func (e *Executor) registrationTokens() <-chan struct{} {
	tokens := make(chan struct{})
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		var wait time.Duration
		for {
			e.mu.Lock()
			if e.resetBackoff {
				e.resetBackoff = false
				wait = e.cfg.MinResubscribeWait
			}
			e.mu.Unlock()
			if wait > 0 && !sleep(e.ctx, wait) {
				return
			}
			select {
			case tokens <- struct{}{}:
			case <-e.ctx.Done():
				return
			}
			wait = min(max(2*wait, e.cfg.MinResubscribeWait), e.cfg.MaxResubscribeWait)
		}
	}()
	return tokens
}

// subscriptionEnded is called by the controller after each subscription.
func (e *Executor) subscriptionEnded(err error) {
	e.mu.Lock()
	was := e.connected
	e.connected = false
	e.master = ""
	e.sub = nil
	e.mu.Unlock()
	if e.ctx.Err() != nil {
		return
	}
	switch {
	case was:
		e.log.Warn("disconnected from the Mesos master; subscribing again", "error", err)
	case err != nil:
		e.log.Warn("cannot subscribe to a Mesos master; retrying", "master", e.ep.current(), "error", err)
	}
}

// leaderChanged drops the subscription when detection names another
// leader, so that the controller subscribes to it.
func (e *Executor) leaderChanged(endpoint string) {
	e.mu.Lock()
	master, connected := e.master, e.connected
	e.mu.Unlock()
	if connected && baseURL(endpoint) != master {
		e.log.Info("the leading Mesos master changed; subscribing to the new one", "old", master, "new", baseURL(endpoint))
		e.dropSubscription()
	}
}

// The current subscription's response, so that the watchdog and leader
// detection can end it.
type subscription struct {
	mesos.Response
	e      *Executor
	once   sync.Once
	closed chan struct{}
	wake   chan struct{} // the heartbeat interval changed
}

func (s *subscription) Decode(u encoding.Unmarshaler) error {
	err := s.Response.Decode(u)
	if err == nil {
		s.e.sawEvent()
	}
	return err
}

func (s *subscription) Close() error {
	s.once.Do(func() { close(s.closed) })
	return s.Response.Close()
}

// watch wraps a new subscription's response and starts its watchdog, which
// ends the subscription after HeartbeatTimeoutFactor heartbeat intervals
// of silence. Closing the response makes httpsched disconnect and the
// controller subscribe again.
func (e *Executor) watch(resp mesos.Response) mesos.Response {
	s := &subscription{Response: resp, e: e, closed: make(chan struct{}), wake: make(chan struct{}, 1)}
	e.mu.Lock()
	e.lastEvent = time.Now()
	e.sub = s
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.watchdog(s)
	}()
	return s
}

func (e *Executor) watchdog(s *subscription) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		e.mu.Lock()
		limit := time.Duration(float64(e.heartbeat) * e.cfg.HeartbeatTimeoutFactor)
		silent := time.Since(e.lastEvent)
		e.mu.Unlock()
		if silent >= limit {
			e.log.Warn("no heartbeat from the Mesos master; subscribing again", "silent_for", silent.Round(time.Millisecond), "limit", limit)
			_ = s.Close()
			return
		}
		t.Reset(limit - silent)
		select {
		case <-t.C:
		case <-s.wake:
		case <-s.closed:
			return
		case <-e.ctx.Done():
			return
		}
	}
}

// dropSubscription ends the current subscription, if any.
func (e *Executor) dropSubscription() {
	e.mu.Lock()
	s := e.sub
	e.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

func (e *Executor) sawEvent() {
	e.mu.Lock()
	e.lastEvent = time.Now()
	e.mu.Unlock()
}

// handle is the controller's event handler. It never fails: a failed call
// is logged, and the next event, reconcile or launch tick tries again.
func (e *Executor) handle(ctx context.Context, ev *scheduler.Event) error {
	switch ev.GetType() {
	case scheduler.Event_SUBSCRIBED:
		e.subscribed(ctx, ev.GetSubscribed())
	case scheduler.Event_HEARTBEAT:
		e.mu.Lock()
		e.lastHeartbeat = time.Now()
		e.mu.Unlock()
	case scheduler.Event_OFFERS:
		e.handleOffers(ctx, ev.GetOffers().GetOffers())
	case scheduler.Event_RESCIND:
		// Offers are never held: nothing to withdraw.
		e.log.Trace("offer rescinded", "offer_id", ev.GetRescind().GetOfferID().Value)
	case scheduler.Event_UPDATE:
		e.handleUpdate(ctx, ev.GetUpdate().GetStatus())
	case scheduler.Event_FAILURE:
		e.handleFailure(ev.GetFailure())
	case scheduler.Event_ERROR:
		e.handleError(ev.GetError().GetMessage())
	case scheduler.Event_MESSAGE:
		e.log.Debug("framework message ignored", "agent_id", ev.GetMessage().GetAgentID().Value)
	default:
		e.log.Trace("event ignored", "type", ev.GetType().String())
	}
	return nil
}

// subscribed records a subscription: the framework id (stored if new),
// the master, the heartbeat interval; it then sends what waited for it.
func (e *Executor) subscribed(ctx context.Context, sub *scheduler.Event_Subscribed) {
	id := sub.GetFrameworkID().GetValue()
	interval := defaultHeartbeatInterval
	if s := sub.GetHeartbeatIntervalSeconds(); s > 0 {
		interval = time.Duration(s * float64(time.Second))
	}
	now := time.Now()
	e.mu.Lock()
	e.frameworkID = id
	e.connected = true
	e.master = e.ep.lastSubscribed()
	e.subscribedAt = now
	e.lastHeartbeat = now
	e.heartbeat = interval
	// A subscription starts unsuppressed; REVIVE also clears the filters
	// of earlier declines, should tasks wait.
	e.suppressed = false
	e.reviveWanted = true
	again := e.everSubscribed
	e.everSubscribed = true
	e.resetBackoff = true
	store := e.storedID != id
	master := e.master
	if e.sub != nil {
		select {
		case e.sub.wake <- struct{}{}:
		default:
		}
	}
	e.mu.Unlock()

	if again {
		e.log.Info("subscribed to Mesos again", "framework_id", id, "master", master)
	} else {
		e.log.Info("subscribed to Mesos", "framework_id", id, "master", master, "heartbeat_interval", interval)
	}
	if store {
		e.storeFrameworkID(ctx, id)
	}
	e.afterSubscribe(ctx, again)
}

// storeFrameworkID keeps the framework id for every later term (fenced:
// it fails if this term is over).
func (e *Executor) storeFrameworkID(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	defer cancel()
	if err := e.term.State.Store(ctx, FrameworkIDKey, []byte(id)); err != nil {
		e.log.Error("cannot store the framework id; the next leader will register a new framework unless a later subscription stores it", "framework_id", id, "error", err)
		return
	}
	e.mu.Lock()
	e.storedID = id
	e.mu.Unlock()
	e.log.Info("framework id stored", "framework_id", id)
}

// handleError handles the master's ERROR event; httpsched ends the
// subscription after it.
func (e *Executor) handleError(msg string) {
	switch {
	case strings.Contains(msg, errFrameworkRemoved):
		e.mu.Lock()
		old := e.frameworkID
		e.frameworkID = ""
		e.mu.Unlock()
		e.log.Error("Mesos removed the framework (its failover timeout passed, or it was torn down); its tasks are gone. Registering a new framework", "framework_id", old, "message", msg)
	case strings.Contains(msg, errFrameworkFailedOver):
		e.mu.Lock()
		e.failedOverAt = time.Now()
		e.mu.Unlock()
		e.log.Warn("another scheduler subscribed with this framework id (a newer leader?); waiting before subscribing again", "wait", e.cfg.FailedOverWait)
	default:
		e.log.Error("the Mesos master reported an error", "message", msg)
	}
}

// callFailed logs a failed call, quietly if the executor is closing.
func (e *Executor) callFailed(msg string, err error, args ...any) {
	args = append(args, "error", err)
	if e.ctx.Err() != nil {
		e.log.Debug(msg, args...)
		return
	}
	e.log.Warn(msg, args...)
}

// call sends a call other than SUBSCRIBE on the current subscription.
func (e *Executor) call(ctx context.Context, call *scheduler.Call) error {
	e.mu.Lock()
	id, connected := e.frameworkID, e.connected
	e.mu.Unlock()
	if !connected || id == "" {
		return ErrNotSubscribed
	}
	call.FrameworkID = &mesos.FrameworkID{Value: id}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	defer cancel()
	resp, err := e.caller.Call(ctx, call)
	if resp != nil {
		resp.Close()
	}
	return err
}
