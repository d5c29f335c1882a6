package mesosfake

import (
	"bytes"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

type taskKey struct{ framework, task string }

// task is a launched task as the master and its simulated agent see it.
type task struct {
	key      taskKey
	fw       *framework
	agent    *agent
	info     *mesos.TaskInfo
	res      scalars
	launchNo int // Launches of this task id when it was launched

	state  mesos.TaskState   // latest state (what reconciliation reports)
	latest *mesos.TaskStatus // latest status, nil while STAGING

	// The agent's status update stream: pending[0] is in flight (sent to
	// the framework, not yet acknowledged); the next goes out only after
	// its ACK, as the agent's status update manager does.
	pending    []*mesos.TaskStatus
	retry      *timer
	retryDelay time.Duration
	acked      int
	delivered  int // reliable updates written to a stream, retries included

	finish *timer // FinishAfter
	// maxCompletion fails the task at its TaskInfo's max_completion_time,
	// counted from TASK_RUNNING, as the agent's executor does.
	maxCompletion *timer
	completed     bool // no longer known to the master (terminal update acked, agent gone, framework removed)
}

func isTerminal(s mesos.TaskState) bool {
	switch s {
	case mesos.TASK_FINISHED, mesos.TASK_FAILED, mesos.TASK_KILLED, mesos.TASK_ERROR,
		mesos.TASK_DROPPED, mesos.TASK_GONE, mesos.TASK_GONE_BY_OPERATOR:
		return true
	}
	return false
}

// downgrade is what a framework without PARTITION_AWARE is sent instead of
// the partition-aware states.
func downgrade(fw *framework, st *mesos.TaskStatus) *mesos.TaskStatus {
	if fw.partitionAware() {
		return st
	}
	switch st.GetState() {
	case mesos.TASK_DROPPED, mesos.TASK_UNREACHABLE, mesos.TASK_GONE, mesos.TASK_GONE_BY_OPERATOR, mesos.TASK_UNKNOWN:
		cp := *st
		cp.State = mesos.TASK_LOST.Enum()
		return &cp
	}
	return st
}

func (t *task) setLatest(st *mesos.TaskStatus) {
	t.state = st.GetState()
	t.latest = st
}

func (m *Master) timestamp() *float64 {
	ts := float64(m.clock.Now().UnixNano()) / 1e9
	return &ts
}

// newStatus is a status of t; reliable ones (from the agent) get a uuid.
func (m *Master) newStatus(t *task, state mesos.TaskState, source mesos.TaskStatus_Source, reason *mesos.TaskStatus_Reason, msg string) *mesos.TaskStatus {
	st := &mesos.TaskStatus{
		TaskID:    t.info.TaskID,
		State:     state.Enum(),
		Source:    source.Enum(),
		Reason:    reason,
		AgentID:   &mesos.AgentID{Value: t.agent.id},
		Timestamp: m.timestamp(),
	}
	if msg != "" {
		st.Message = strPtr(msg)
	}
	st.ExecutorID = t.executorID()
	return st
}

func (t *task) executorID() *mesos.ExecutorID {
	if ex := t.info.GetExecutor(); ex != nil {
		return &mesos.ExecutorID{Value: ex.ExecutorID.Value}
	}
	// The agent names a command task's executor after the task.
	return &mesos.ExecutorID{Value: t.info.TaskID.Value}
}

// masterStatus is a status the master makes up itself: no uuid, never
// acknowledged.
func (m *Master) masterStatus(taskID, agentID string, state mesos.TaskState, reason mesos.TaskStatus_Reason, msg string) *mesos.TaskStatus {
	st := &mesos.TaskStatus{
		TaskID:    mesos.TaskID{Value: taskID},
		State:     state.Enum(),
		Source:    mesos.SOURCE_MASTER.Enum(),
		Reason:    reason.Enum(),
		Message:   strPtr(msg),
		Timestamp: m.timestamp(),
	}
	if agentID != "" {
		st.AgentID = &mesos.AgentID{Value: agentID}
	}
	return st
}

// sendUpdateLocked sends an UPDATE to the framework if it is connected.
func (m *Master) sendUpdateLocked(fw *framework, st *mesos.TaskStatus) {
	if fw.stream == nil {
		return
	}
	fw.stream.send(&scheduler.Event{Type: scheduler.Event_UPDATE, Update: &scheduler.Event_Update{Status: *downgrade(fw, st)}})
}

// launchLocked adds a task that passed validation, in TASK_STAGING.
func (m *Master) launchLocked(fw *framework, a *agent, ti *mesos.TaskInfo, need scalars) {
	id := ti.TaskID.Value
	m.launches[id]++
	t := &task{
		key:      taskKey{fw.id, id},
		fw:       fw,
		agent:    a,
		info:     cloneMsg(ti),
		res:      need,
		launchNo: m.launches[id],
		state:    mesos.TASK_STAGING,
	}
	m.tasks = append(m.tasks, t)
	m.live[t.key] = t
	m.log.Debug("task launched", "framework", fw.id, "task", id, "agent", a.id)
	if !m.cfg.HoldStaging {
		m.startLocked(t)
	}
}

// startLocked is the command executor starting: TASK_STARTING, TASK_RUNNING.
func (m *Master) startLocked(t *task) {
	m.agentUpdateLocked(t, mesos.TASK_STARTING, mesos.SOURCE_EXECUTOR, nil, "")
	m.agentUpdateLocked(t, mesos.TASK_RUNNING, mesos.SOURCE_EXECUTOR, nil, "")
}

// agentUpdateLocked is a reliable status update generated on the agent: it
// becomes the task's latest state at once and joins the task's
// acknowledgement-gated stream.
func (m *Master) agentUpdateLocked(t *task, state mesos.TaskState, source mesos.TaskStatus_Source, reason *mesos.TaskStatus_Reason, msg string) {
	st := m.newStatus(t, state, source, reason, msg)
	st.UUID = newUUID()
	t.setLatest(st)
	t.pending = append(t.pending, st)
	if len(t.pending) == 1 {
		t.retryDelay = m.cfg.StatusUpdateRetry
		m.deliverHeadLocked(t)
	}
	if d := t.info.GetMaxCompletionTime(); state == mesos.TASK_RUNNING && d != nil && d.Nanoseconds > 0 && t.maxCompletion == nil {
		t.maxCompletion = m.afterLocked(time.Duration(d.Nanoseconds), func() {
			if !t.completed && !isTerminal(t.state) && t.agent.state == agentActive {
				reason := mesos.REASON_MAX_COMPLETION_TIME_REACHED
				m.agentUpdateLocked(t, mesos.TASK_FAILED, mesos.SOURCE_EXECUTOR, &reason, "Task reached its maximum completion time")
			}
		})
	}
	switch {
	case state == mesos.TASK_RUNNING && m.cfg.FinishAfter > 0 && t.finish == nil:
		t.finish = m.afterLocked(m.cfg.FinishAfter, func() {
			t.finish = nil
			if !t.completed && !isTerminal(t.state) && t.agent.state == agentActive {
				m.agentUpdateLocked(t, mesos.TASK_FINISHED, mesos.SOURCE_EXECUTOR, nil, "Command exited with status 0")
			}
		})
	case isTerminal(state):
		m.stopTimerLocked(t.finish)
		m.stopTimerLocked(t.maxCompletion)
		t.finish = nil
		m.allocateLocked() // the master recovers a task's resources on its terminal update
	}
}

// deliverHeadLocked sends the in-flight update (if the framework is
// connected) and arms the agent's retry.
func (m *Master) deliverHeadLocked(t *task) {
	m.stopTimerLocked(t.retry)
	t.retry = nil
	if len(t.pending) == 0 {
		return
	}
	if t.fw.stream != nil {
		t.delivered++
		m.sendUpdateLocked(t.fw, t.pending[0])
	}
	if m.cfg.StatusUpdateRetry > 0 {
		head := t.pending[0]
		t.retry = m.afterLocked(t.retryDelay, func() {
			t.retry = nil
			if len(t.pending) > 0 && t.pending[0] == head {
				t.retryDelay = min(2*t.retryDelay, MaxStatusUpdateRetry)
				m.deliverHeadLocked(t)
			}
		})
	}
}

// resendPendingLocked re-sends every in-flight update of a framework that
// (re-)subscribed, as agents do when the master tells them of the failover.
func (m *Master) resendPendingLocked(fw *framework) {
	for _, t := range m.liveTasksLocked(fw) {
		if len(t.pending) > 0 {
			t.retryDelay = m.cfg.StatusUpdateRetry
			m.deliverHeadLocked(t)
		}
	}
}

// acknowledgeLocked is Master::acknowledge plus the agent's status update
// manager: an ACK of the in-flight update releases the next; the ACK of a
// terminal update makes the master forget the task. Other ACKs are ignored
// (the call is still answered 202).
func (m *Master) acknowledgeLocked(fw *framework, ack *scheduler.Call_Acknowledge) {
	t := m.live[taskKey{fw.id, ack.TaskID.Value}]
	if t == nil || t.agent.id != ack.AgentID.Value || t.agent.state != agentActive ||
		len(t.pending) == 0 || !bytes.Equal(t.pending[0].UUID, ack.UUID) {
		fw.invalidAcks++
		m.log.Debug("status update acknowledgement ignored", "framework", fw.id, "task", ack.TaskID.Value)
		return
	}
	head := t.pending[0]
	t.pending = t.pending[1:]
	t.acked++
	m.stopTimerLocked(t.retry)
	t.retry = nil
	if len(t.pending) > 0 {
		t.retryDelay = m.cfg.StatusUpdateRetry
		m.deliverHeadLocked(t)
		return
	}
	if isTerminal(head.GetState()) {
		m.completeTaskLocked(t)
	}
}

// completeTaskLocked makes the master forget a task; Tasks() still lists it.
func (m *Master) completeTaskLocked(t *task) {
	m.stopTimerLocked(t.retry)
	m.stopTimerLocked(t.finish)
	t.retry, t.finish = nil, nil
	t.pending = nil
	t.completed = true
	delete(m.live, t.key)
}

// liveTasksLocked are the framework's known tasks in launch order.
func (m *Master) liveTasksLocked(fw *framework) []*task {
	var out []*task
	for _, t := range m.tasks {
		if t.fw == fw && !t.completed {
			out = append(out, t)
		}
	}
	return out
}

// killLocked is Master::kill. A task the master does not know is answered
// like an explicit reconciliation of it.
func (m *Master) killLocked(fw *framework, kill *scheduler.Call_Kill) {
	t := m.live[taskKey{fw.id, kill.TaskID.Value}]
	if t == nil || t.agent.state != agentActive {
		m.reconcileLocked(fw, []scheduler.Call_Reconcile_Task{{TaskID: kill.TaskID, AgentID: kill.AgentID}})
		return
	}
	m.killTaskLocked(t)
}

func (m *Master) killTaskLocked(t *task) {
	switch {
	case isTerminal(t.state):
		// Already over: the agent has nothing to kill.
	case t.state == mesos.TASK_STAGING:
		m.agentUpdateLocked(t, mesos.TASK_KILLED, mesos.SOURCE_AGENT,
			mesos.REASON_TASK_KILLED_DURING_LAUNCH.Enum(), "Killed before delivery to the executor")
	default:
		if t.fw.hasCapability(mesos.FrameworkInfo_Capability_TASK_KILLING_STATE) && t.state != mesos.TASK_KILLING {
			m.agentUpdateLocked(t, mesos.TASK_KILLING, mesos.SOURCE_EXECUTOR, nil, "Command is being killed")
		}
		m.agentUpdateLocked(t, mesos.TASK_KILLED, mesos.SOURCE_EXECUTOR, nil, "Command terminated with signal Terminated")
	}
}

// reconcileLocked is Master::reconcile (src/master/master.cpp). Replies come
// from the master: REASON_RECONCILIATION, no uuid.
//
//	implicit (no tasks): the latest state of every task the master knows
//	explicit, per task:
//	  known                              -> its latest state
//	  unknown, agent_id names an agent:
//	    registered                       -> TASK_GONE
//	    unreachable                      -> TASK_UNREACHABLE
//	    gone                             -> TASK_GONE_BY_OPERATOR
//	  unknown otherwise                  -> TASK_UNKNOWN
//
// Frameworks without PARTITION_AWARE get TASK_LOST for the last four. (The
// real master's "agent has not re-registered after a master failover: no
// reply" case cannot happen here: agents never need to re-register.)
func (m *Master) reconcileLocked(fw *framework, tasks []scheduler.Call_Reconcile_Task) {
	if len(tasks) == 0 {
		for _, t := range m.liveTasksLocked(fw) {
			m.sendUpdateLocked(fw, m.reconciliationStatus(t))
		}
		return
	}
	for _, rt := range tasks {
		if t := m.live[taskKey{fw.id, rt.TaskID.Value}]; t != nil {
			m.sendUpdateLocked(fw, m.reconciliationStatus(t))
			continue
		}
		agentID := rt.GetAgentID().GetValue()
		a := m.agents[agentID]
		var st *mesos.TaskStatus
		switch {
		case a != nil && a.state == agentActive:
			st = m.masterStatus(rt.TaskID.Value, agentID, mesos.TASK_GONE, mesos.REASON_RECONCILIATION,
				"Reconciliation: Task is unknown to the agent")
		case a != nil && a.state == agentUnreachable:
			st = m.masterStatus(rt.TaskID.Value, agentID, mesos.TASK_UNREACHABLE, mesos.REASON_RECONCILIATION,
				"Reconciliation: Task is unreachable")
			st.UnreachableTime = &mesos.TimeInfo{Nanoseconds: a.unreachableAt.UnixNano()}
		case a != nil && a.state == agentGone:
			st = m.masterStatus(rt.TaskID.Value, agentID, mesos.TASK_GONE_BY_OPERATOR, mesos.REASON_RECONCILIATION,
				"Reconciliation: Task is gone")
		default:
			st = m.masterStatus(rt.TaskID.Value, agentID, mesos.TASK_UNKNOWN, mesos.REASON_RECONCILIATION,
				"Reconciliation: Task is unknown")
		}
		m.sendUpdateLocked(fw, st)
	}
}

// reconciliationStatus reports a known task's latest state.
func (m *Master) reconciliationStatus(t *task) *mesos.TaskStatus {
	st := m.masterStatus(t.key.task, t.agent.id, t.state, mesos.REASON_RECONCILIATION, "Reconciliation: Latest task state")
	if t.latest != nil {
		st.ExecutorID = t.latest.ExecutorID
		st.Healthy = t.latest.Healthy
		st.UnreachableTime = t.latest.UnreachableTime
	}
	return st
}

// loseAgentLocked is Master::markUnreachable: offers rescinded, every
// non-terminal task TASK_UNREACHABLE (kept for reconciliation), tasks
// already terminal forgotten, and FAILURE{agent_id} to every framework.
func (m *Master) loseAgentLocked(a *agent) {
	now := m.clock.Now()
	a.state = agentUnreachable
	a.unreachableAt = now
	for _, o := range m.sortedOffersLocked() {
		if o.agent == a {
			m.removeOfferLocked(o, true)
		}
	}
	for _, t := range m.tasks {
		if t.agent != a || t.completed {
			continue
		}
		if isTerminal(t.state) {
			m.completeTaskLocked(t)
			continue
		}
		m.stopTimerLocked(t.retry)
		m.stopTimerLocked(t.finish)
		t.retry, t.finish, t.pending = nil, nil, nil
		st := m.masterStatus(t.key.task, a.id, mesos.TASK_UNREACHABLE, mesos.REASON_AGENT_REMOVED,
			"Agent "+a.hostname+" is unreachable")
		st.ExecutorID = t.executorID()
		st.UnreachableTime = &mesos.TimeInfo{Nanoseconds: now.UnixNano()}
		t.setLatest(st)
		m.sendUpdateLocked(t.fw, st)
	}
	m.sendFailureLocked(a)
	m.allocateLocked()
}

// removeAgentLocked is Master::removeSlave (byOperator false: the agent
// shut down or unregistered; its tasks become TASK_GONE and the master
// forgets the agent) or Master::markGone (byOperator: TASK_GONE_BY_OPERATOR,
// and reconciliation remembers the agent as gone). Offers are rescinded,
// tasks forgotten, and frameworks get FAILURE{agent_id} unless the agent was
// already unreachable (they had it then).
func (m *Master) removeAgentLocked(a *agent, byOperator bool) {
	wasActive := a.state == agentActive
	state, reason, msg := mesos.TASK_GONE, mesos.REASON_AGENT_REMOVED, "Agent "+a.hostname+" removed"
	a.state = agentRemoved
	if byOperator {
		state, reason, msg = mesos.TASK_GONE_BY_OPERATOR, mesos.REASON_AGENT_REMOVED_BY_OPERATOR, "Agent "+a.hostname+" has been marked gone"
		a.state = agentGone
	}
	for _, o := range m.sortedOffersLocked() {
		if o.agent == a {
			m.removeOfferLocked(o, true)
		}
	}
	for _, t := range m.tasks {
		if t.agent != a || t.completed {
			continue
		}
		if !isTerminal(t.state) {
			st := m.masterStatus(t.key.task, a.id, state, reason, msg)
			st.ExecutorID = t.executorID()
			t.setLatest(st)
			m.sendUpdateLocked(t.fw, st)
		}
		m.completeTaskLocked(t)
	}
	if wasActive {
		m.sendFailureLocked(a)
	}
	m.allocateLocked()
}

func (m *Master) sendFailureLocked(a *agent) {
	for _, fw := range m.sortedFrameworksLocked() {
		if fw.stream != nil {
			fw.stream.send(&scheduler.Event{
				Type:    scheduler.Event_FAILURE,
				Failure: &scheduler.Event_Failure{AgentID: &mesos.AgentID{Value: a.id}},
			})
		}
	}
}
