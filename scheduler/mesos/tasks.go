package mesos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"

	"github.com/hasched/hasched/scheduler/executor"
)

// msgWaiting is the message of a task waiting for an offer.
const msgWaiting = "waiting for a Mesos offer"

// agentLookupInterval is the least time between two look-ups of the
// agents' host names on the master.
const agentLookupInterval = 10 * time.Second

// Launch queues tasks for the next offers that fit them and revives offers
// if need be. It is idempotent per task ID: a task this executor queued,
// placed or heard of is not queued again; its last status is reported
// instead. A task Mesos knows from an earlier term is adopted through the
// term's reconciliation (and a second launch of it is refused by Mesos as a
// duplicate, which is not taken for a failure).
//
// Launch waits for no task to start: its only wait is the REVIVE, bounded
// by CallTimeout. Once queued, the tasks are the executor's: the REVIVE is
// made on the executor's context, not the caller's, so a caller giving up
// meanwhile cannot leave them queued behind suppressed offers (and a
// failed REVIVE is retried by the reviver).
func (e *Executor) Launch(ctx context.Context, tasks []executor.Task) error {
	end, err := e.begin()
	if err != nil {
		return err
	}
	defer end()
	for _, t := range tasks {
		if err := validTask(t); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err // given up before anything was queued
	}

	e.offerMu.Lock()
	defer e.offerMu.Unlock()
	e.mu.Lock()
	queued := 0
	for _, t := range tasks {
		if ts := e.tasks[t.ID]; ts != nil {
			st := ts.last
			st.Reconcile, st.Time = false, time.Now()
			e.emit(st)
			continue
		}
		if e.queued(t.ID) {
			continue
		}
		e.pending = append(e.pending, t)
		queued++
		e.emit(executor.Status{TaskID: t.ID, State: executor.StateStaging, Message: msgWaiting})
	}
	if queued > 0 && time.Since(e.lastDecline) < e.cfg.RefuseSeconds {
		// Offers were refused lately: revive clears the filters.
		e.reviveWanted = true
	}
	e.mu.Unlock()
	if queued > 0 {
		e.log.Debug("tasks queued for offers", "tasks", queued, "job", tasks[0].Job)
		e.syncOffers(e.ctx)
	}
	return nil
}

func validTask(t executor.Task) error {
	switch {
	case t.ID == "":
		return fmt.Errorf("%w: empty task ID (job %q)", ErrInvalidTask, t.Job)
	case strings.TrimSpace(t.Command) == "":
		return fmt.Errorf("%w: task %s has no command", ErrInvalidTask, t.ID)
	case t.CPUs < 0 || t.MemoryMB < 0 || t.AppCPUs < 0 || t.AppMemoryMB < 0:
		return fmt.Errorf("%w: task %s asks for negative resources", ErrInvalidTask, t.ID)
	case milli(t.CPUs) == 0 && milli(t.MemoryMB) == 0:
		return fmt.Errorf("%w: task %s asks for no cpus and no memory", ErrInvalidTask, t.ID)
	}
	for _, s := range []string{t.ID, t.Job, t.App, t.Command, t.ShardParameter, t.JobParameter} {
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("%w: task %s contains a NUL byte", ErrInvalidTask, t.ID)
		}
	}
	return nil
}

// queued says whether a task waits for an offer; e.mu is held.
func (e *Executor) queued(id string) bool {
	for _, t := range e.pending {
		if t.ID == id {
			return true
		}
	}
	return false
}

// unqueue takes a task off the queue; e.mu is held.
func (e *Executor) unqueue(id string) bool {
	for i, t := range e.pending {
		if t.ID == id {
			e.pending = append(e.pending[:i:i], e.pending[i+1:]...)
			return true
		}
	}
	return false
}

// Kill kills a task: one still queued is dropped (Killed at once), one that
// ended has its end reported again, any other is killed through Mesos
// (an unknown one is answered by Mesos, through reconciliation). A kill
// made while not subscribed is sent on the next subscription.
func (e *Executor) Kill(ctx context.Context, taskID string) error {
	end, err := e.begin()
	if err != nil {
		return err
	}
	defer end()
	ctx, cancel := e.opContext(ctx)
	defer cancel()

	e.offerMu.Lock()
	defer e.offerMu.Unlock()
	e.mu.Lock()
	if e.unqueue(taskID) {
		st := executor.Status{TaskID: taskID, State: executor.StateKilled, Message: "killed before it was launched", Time: time.Now()}
		e.remember(st, "")
		e.emit(st)
		e.mu.Unlock()
		e.log.Info("queued task dropped", "task_id", taskID)
		e.syncOffers(ctx)
		return nil
	}
	ts := e.tasks[taskID]
	if ts != nil && ts.ended {
		st := ts.last
		st.Reconcile, st.Time = false, time.Now()
		e.emit(st)
		e.mu.Unlock()
		return nil
	}
	agent := e.agentOf(taskID)
	if !e.connected {
		e.wantKill[taskID] = true
		e.mu.Unlock()
		e.log.Info("not subscribed; the kill is sent on subscription", "task_id", taskID)
		return nil
	}
	e.mu.Unlock()
	if err := e.call(ctx, calls.Kill(taskID, agent)); err != nil {
		e.mu.Lock()
		e.wantKill[taskID] = true
		e.mu.Unlock()
		return fmt.Errorf("mesos: kill %s: %w", taskID, err)
	}
	e.log.Info("kill sent", "task_id", taskID, "agent_id", agent)
	return nil
}

// syncOffersLocked is syncOffers for callers not holding offerMu.
func (e *Executor) syncOffersLocked(ctx context.Context) {
	e.offerMu.Lock()
	defer e.offerMu.Unlock()
	e.syncOffers(ctx)
}

// Reconcile asks Mesos for the state of the named tasks (with the agent
// where known), or of all the framework's tasks when taskIDs is empty.
// Tasks still waiting for an offer are answered here (STAGING). The answers
// have Reconcile set; they are never acknowledged. A request made while not
// subscribed is sent on the next subscription.
func (e *Executor) Reconcile(ctx context.Context, taskIDs []string) error {
	end, err := e.begin()
	if err != nil {
		return err
	}
	defer end()
	ctx, cancel := e.opContext(ctx)
	defer cancel()

	// Under offerMu: a task being placed is asked about only once its
	// ACCEPT is with the master (which answers STAGING for it, not GONE).
	e.offerMu.Lock()
	defer e.offerMu.Unlock()
	implicit := len(taskIDs) == 0
	ask := map[string]string{}
	e.mu.Lock()
	now := time.Now()
	if implicit {
		for _, t := range e.pending {
			e.emit(executor.Status{TaskID: t.ID, State: executor.StateStaging, Message: msgWaiting, Time: now, Reconcile: true})
		}
	}
	for _, id := range taskIDs {
		if e.queued(id) {
			e.emit(executor.Status{TaskID: id, State: executor.StateStaging, Message: msgWaiting, Time: now, Reconcile: true})
			continue
		}
		ask[id] = e.agentOf(id)
	}
	if !e.connected {
		e.wantImplicit = e.wantImplicit || implicit
		for id := range ask {
			e.wantReconcile[id] = true
		}
		e.mu.Unlock()
		e.log.Debug("not subscribed; reconciliation is sent on subscription", "tasks", len(ask), "implicit", implicit)
		return nil
	}
	e.mu.Unlock()
	if implicit {
		return e.reconcile(ctx, nil, true)
	}
	if len(ask) == 0 {
		return nil
	}
	return e.reconcile(ctx, ask, false)
}

// agentOf is a task's agent if known; e.mu is held.
func (e *Executor) agentOf(id string) string {
	if ts := e.tasks[id]; ts != nil {
		return ts.agentID
	}
	return ""
}

// reconcile sends one RECONCILE; on failure the request is kept for the
// next subscription.
func (e *Executor) reconcile(ctx context.Context, tasks map[string]string, implicit bool) error {
	var call = calls.Reconcile()
	if !implicit {
		call = calls.Reconcile(calls.ReconcileTasks(tasks))
	}
	if err := e.call(ctx, call); err != nil {
		e.mu.Lock()
		e.wantImplicit = e.wantImplicit || implicit
		for id := range tasks {
			e.wantReconcile[id] = true
		}
		e.mu.Unlock()
		return fmt.Errorf("mesos: reconcile: %w", err)
	}
	e.log.Debug("reconciliation asked", "implicit", implicit, "tasks", len(tasks))
	return nil
}

// afterSubscribe sends what waited for a subscription: kills,
// reconciliations, and after a re-subscription an explicit reconciliation
// of every task believed live (updates the master generated meanwhile
// were lost); then it suppresses offers if nothing waits.
func (e *Executor) afterSubscribe(ctx context.Context, again bool) {
	e.mu.Lock()
	kills := map[string]string{}
	for id := range e.wantKill {
		kills[id] = e.agentOf(id)
	}
	clear(e.wantKill)
	explicit := map[string]string{}
	for id := range e.wantReconcile {
		explicit[id] = e.agentOf(id)
	}
	clear(e.wantReconcile)
	if again {
		for id, ts := range e.tasks {
			if !ts.ended {
				explicit[id] = ts.agentID
			}
		}
	}
	implicit := e.wantImplicit
	e.wantImplicit = false
	e.mu.Unlock()

	for _, id := range sortedKeys(kills) {
		if err := e.call(ctx, calls.Kill(id, kills[id])); err != nil {
			e.callFailed("kill failed; retrying on the next subscription", err, "task_id", id)
			e.mu.Lock()
			e.wantKill[id] = true
			e.mu.Unlock()
		}
	}
	if len(explicit) > 0 {
		if err := e.reconcile(ctx, explicit, false); err != nil {
			e.callFailed("reconcile failed", err)
		}
	}
	if implicit {
		if err := e.reconcile(ctx, nil, true); err != nil {
			e.callFailed("reconcile failed", err)
		}
	}
	e.syncOffersLocked(ctx)
}

// handleUpdate turns a task status into an executor.Status and
// acknowledges it if Mesos wants that (it has a uuid; answers to
// reconciliation never have one).
func (e *Executor) handleUpdate(ctx context.Context, ms mesos.TaskStatus) {
	id := ms.TaskID.Value
	agentID := ms.GetAgentID().GetValue()
	reason := ms.GetReason()
	reconcile := reason == mesos.REASON_RECONCILIATION
	defer func() {
		if len(ms.GetUUID()) > 0 && agentID != "" && !reconcile {
			e.ack(ctx, agentID, id, ms.GetUUID())
		}
	}()
	if ms.GetState() == mesos.TASK_ERROR && reason == mesos.REASON_TASK_INVALID && strings.Contains(ms.GetMessage(), "duplicate ID") {
		// A second launch of a task Mesos runs already (an earlier term
		// launched it, unconfirmed): that task is fine. Ask for its state.
		e.log.Warn("Mesos runs this task already; adopting it", "task_id", id, "message", ms.GetMessage())
		e.mu.Lock()
		if ts := e.tasks[id]; ts != nil {
			// Our placement failed, not the task, which may run on
			// another agent: the answer tells where.
			ts.agentID = ""
		}
		e.mu.Unlock()
		if err := e.reconcile(ctx, map[string]string{id: ""}, false); err != nil {
			e.callFailed("reconcile failed", err, "task_id", id)
		}
		return
	}
	state := mapState(ms.GetState(), reason, reconcile)
	st := executor.Status{
		TaskID:    id,
		State:     state,
		Message:   statusMessage(ms),
		ExitCode:  exitCode(ms.GetMessage()),
		Time:      statusTime(ms),
		Host:      e.hostFor(ctx, agentID),
		Reconcile: reconcile,
	}
	e.mu.Lock()
	if ts := e.tasks[id]; ts != nil && state == executor.StateTimedOut && ts.task.Timeout > 0 {
		st.Message = fmt.Sprintf("timed out after %v (%s)", ts.task.Timeout, st.Message)
	}
	if e.unqueue(id) {
		// Mesos knows it (an earlier term launched it): no second launch.
		e.log.Info("a queued task is known to Mesos already; not launching it again", "task_id", id, "state", state)
	}
	e.remember(st, agentID)
	e.emit(st)
	e.mu.Unlock()
	lvl := e.log.Debug
	if state.Terminal() && !reconcile {
		lvl = e.log.Info
	}
	args := []any{"task_id", id, "state", state, "mesos_state", ms.GetState().String(), "host", st.Host, "reconcile", reconcile}
	if ms.Reason != nil {
		args = append(args, "reason", reason.String())
	}
	if msg := ms.GetMessage(); msg != "" {
		args = append(args, "message", msg)
	}
	lvl("task status", args...)
}

func (e *Executor) ack(ctx context.Context, agentID, taskID string, uuid []byte) {
	if err := e.call(ctx, calls.Acknowledge(agentID, taskID, uuid)); err != nil {
		// The agent sends the update again until it is acknowledged.
		e.log.Debug("cannot acknowledge a status update", "task_id", taskID, "error", err)
	}
}

// handleFailure: an agent is gone, and with it its tasks (Mesos also sends
// their updates; a repeated end is ignored by the scheduler).
func (e *Executor) handleFailure(f *scheduler.Event_Failure) {
	agentID := f.GetAgentID().GetValue()
	if f.GetExecutorID() != nil {
		e.log.Debug("an executor exited", "agent_id", agentID, "executor_id", f.GetExecutorID().GetValue(), "status", f.GetStatus())
		return
	}
	if agentID == "" {
		return
	}
	e.mu.Lock()
	host := e.agents[agentID]
	var lost []string
	for id, ts := range e.tasks {
		if ts.agentID == agentID && !ts.ended {
			lost = append(lost, id)
		}
	}
	sort.Strings(lost)
	now := time.Now()
	for _, id := range lost {
		st := executor.Status{TaskID: id, State: executor.StateLost, Message: "Mesos agent " + agentLabel(agentID, host) + " lost", Time: now, Host: host}
		e.remember(st, agentID)
		e.emit(st)
	}
	e.mu.Unlock()
	e.log.Warn("Mesos agent lost", "agent_id", agentID, "host", host, "tasks_lost", len(lost))
}

func agentLabel(id, host string) string {
	if host == "" {
		return id
	}
	return host + " (" + id + ")"
}

// mapState maps a Mesos task state, and its reason, to the scheduler's.
func mapState(s mesos.TaskState, reason mesos.TaskStatus_Reason, reconcile bool) executor.State {
	switch s {
	case mesos.TASK_FAILED:
		// The agent stopped the task at its TaskInfo's max_completion_time
		// (taskInfo sets it from the task's Timeout).
		if reason == mesos.REASON_MAX_COMPLETION_TIME_REACHED {
			return executor.StateTimedOut
		}
		return executor.StateFailed
	case mesos.TASK_STAGING, mesos.TASK_STARTING:
		return executor.StateStaging
	case mesos.TASK_RUNNING, mesos.TASK_KILLING:
		return executor.StateRunning
	case mesos.TASK_FINISHED:
		return executor.StateFinished
	case mesos.TASK_ERROR:
		return executor.StateFailed
	case mesos.TASK_KILLED:
		return executor.StateKilled
	case mesos.TASK_UNKNOWN:
		if reconcile {
			return executor.StateUnknown
		}
		return executor.StateLost
	default: // LOST, DROPPED, GONE, GONE_BY_OPERATOR, UNREACHABLE
		return executor.StateLost
	}
}

// statusMessage is the status's message, with its reason when there is one
// worth showing.
func statusMessage(ms mesos.TaskStatus) string {
	msg := ms.GetMessage()
	if ms.Reason == nil || ms.GetReason() == mesos.REASON_RECONCILIATION {
		return msg
	}
	r := ms.GetReason().String()
	if msg == "" {
		return r
	}
	return r + ": " + msg
}

var exitRE = regexp.MustCompile(`exited with status (\d+)`)

// exitCode reads the command executor's "Command exited with status N".
func exitCode(msg string) int {
	if m := exitRE.FindStringSubmatch(msg); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			return n
		}
	}
	return 0
}

func statusTime(ms mesos.TaskStatus) time.Time {
	if ts := ms.GetTimestamp(); ts > 0 {
		sec := int64(ts)
		return time.Unix(sec, int64((ts-float64(sec))*1e9))
	}
	return time.Now()
}

// hostFor is an agent's host name: from offers, else from the master's
// /state (looked up at most every agentLookupInterval), else "".
func (e *Executor) hostFor(ctx context.Context, agentID string) string {
	if agentID == "" {
		return ""
	}
	e.mu.Lock()
	h, ok := e.agents[agentID]
	if ok || time.Since(e.agentLookup) < agentLookupInterval {
		e.mu.Unlock()
		return h
	}
	e.agentLookup = time.Now()
	master := e.master
	e.mu.Unlock()
	if master == "" {
		return ""
	}
	agents, err := e.fetchAgents(ctx, master)
	if err != nil {
		e.log.Debug("cannot look up the agents' host names", "master", master, "error", err)
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, host := range agents {
		e.agents[id] = host
	}
	return e.agents[agentID]
}

// fetchAgents reads the agents' host names from the master's state.
func (e *Executor) fetchAgents(ctx context.Context, master string) (map[string]string, error) {
	var last error
	for _, path := range []string{"/state", "/master/state"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, master+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := e.http.Do(req)
		if err != nil {
			return nil, err
		}
		var state struct {
			Slaves []struct {
				ID       string `json:"id"`
				Hostname string `json:"hostname"`
			} `json:"slaves"`
		}
		if resp.StatusCode == http.StatusOK {
			err = json.NewDecoder(resp.Body).Decode(&state)
		} else {
			err = fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		resp.Body.Close()
		if err != nil {
			last = err
			continue
		}
		out := make(map[string]string, len(state.Slaves))
		for _, s := range state.Slaves {
			if s.ID != "" && s.Hostname != "" {
				out[s.ID] = s.Hostname
			}
		}
		return out, nil
	}
	return nil, last
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
