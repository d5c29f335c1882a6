package mesosfake

import (
	"context"
	"fmt"
	"sort"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// AgentSpec describes a simulated agent.
type AgentSpec struct {
	ID       string // default "<master id>-S<n>"
	Hostname string // default "agent<n>.mesosfake"
	CPUs     float64
	MemMB    float64
	DiskMB   float64 // optional; offered as "disk" when > 0
}

// AgentRecord is an agent as Agents reports it.
type AgentRecord struct {
	ID, Hostname string
	State        string // "active", "unreachable", "gone" (MarkAgentGone) or "removed"
	CPUs, MemMB  float64
	DiskMB       float64
}

// CallRecord is one scheduler call the master received and decoded.
type CallRecord struct {
	Type        scheduler.Call_Type
	FrameworkID string
	StreamID    string          // the request's Mesos-Stream-Id header
	Status      int             // the HTTP status answered (200 for a SUBSCRIBE stream, 307 while standby)
	Call        *scheduler.Call // as decoded; nil if the body could not be; do not modify
}

// FrameworkRecord is a framework as Frameworks reports it.
type FrameworkRecord struct {
	ID, Name, User  string
	Connected       bool          // has an open SUBSCRIBE stream
	Removed         bool          // torn down, or its failover timeout expired
	FailoverTimeout time.Duration // as asked in FrameworkInfo.failover_timeout
	Checkpoint      bool
	Capabilities    []mesos.FrameworkInfo_Capability_Type
	Roles           []string
	Suppressed      bool // every role suppressed: no offers until REVIVE
	SuppressedRoles []string
	Subscriptions   int    // successful SUBSCRIBEs, failovers included
	StreamID        string // current Mesos-Stream-Id, "" while disconnected
	InvalidAcks     int    // ACKNOWLEDGEs that matched no in-flight update
	Info            *mesos.FrameworkInfo
}

// TaskRecord is a launched task as Tasks reports it.
type TaskRecord struct {
	ID, FrameworkID, AgentID, Hostname string
	// State is the latest state the master knows (the agent's latest, or
	// what the master decided: UNREACHABLE, GONE_BY_OPERATOR, KILLED on
	// framework removal). Not downgraded for frameworks without
	// PARTITION_AWARE.
	State   mesos.TaskState
	Message string // of the latest status
	// Known: the master still tracks the task (until its terminal update is
	// acknowledged, its agent is gone, or its framework is removed).
	Known bool
	// Launches counts every launch of a task with this ID so far, over all
	// frameworks (a re-launch after the first ended included); Launch is
	// which of them this record is (1 for the first).
	Launches, Launch int
	Info             *mesos.TaskInfo // as the scheduler sent it; do not modify
	// Convenience views of Info.
	Command   string // Info.Command.Value; "" for executor tasks
	Shell     bool   // Info.Command.Shell (default true)
	Arguments []string
	URIs      []mesos.CommandInfo_URI
	Env       map[string]string // Info.Command.Environment, plain values only
	Resources map[string]float64
	CPUs      float64
	MemMB     float64
	// Reliable status updates: written to a stream (retries included),
	// acknowledged, and generated but not yet acknowledged.
	DeliveredUpdates, AckedUpdates, PendingUpdates int
}

// AddAgent registers an agent; its resources are offered at once. It
// returns the agent's id.
func (m *Master) AddAgent(spec AgentSpec) (string, error) {
	if spec.CPUs < 0 || spec.MemMB < 0 || spec.DiskMB < 0 {
		return "", fmt.Errorf("mesosfake: agent resources must not be negative: %+v", spec)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return "", ErrClosed
	}
	n := m.nextAgent
	m.nextAgent++
	if spec.ID == "" {
		spec.ID = fmt.Sprintf("%s-S%d", m.cfg.ID, n)
	}
	if spec.Hostname == "" {
		spec.Hostname = fmt.Sprintf("agent%d.mesosfake", n)
	}
	if _, ok := m.agents[spec.ID]; ok {
		return "", fmt.Errorf("%w: %s", ErrAgentExists, spec.ID)
	}
	a := &agent{id: spec.ID, hostname: spec.Hostname, total: scalars{"cpus": round3(spec.CPUs), "mem": round3(spec.MemMB)}}
	if spec.DiskMB > 0 {
		a.total["disk"] = round3(spec.DiskMB)
	}
	m.agents[a.id] = a
	m.agentOrder = append(m.agentOrder, a)
	m.log.Debug("agent added", "agent", a.id, "hostname", a.hostname, "resources", a.total)
	m.allocateLocked()
	m.notifyLocked()
	return a.id, nil
}

// LoseAgent marks an active agent unreachable (health checks failed): its
// offers are rescinded, its non-terminal tasks become TASK_UNREACHABLE
// (TASK_LOST for frameworks without PARTITION_AWARE; master updates, no
// uuid) and stay known to reconciliation, and every framework gets
// FAILURE{agent_id}.
func (m *Master) LoseAgent(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, err := m.agentLocked(id)
	if err != nil {
		return err
	}
	if a.state != agentActive {
		return fmt.Errorf("%w: %s is %s", ErrAgentInactive, id, a.state)
	}
	m.loseAgentLocked(a)
	m.notifyLocked()
	return nil
}

// RemoveAgent removes an active agent as when it shuts down or
// unregisters: its offers are rescinded, its tasks become TASK_GONE
// (TASK_LOST without PARTITION_AWARE; REASON_AGENT_REMOVED; master updates)
// and are forgotten, frameworks get FAILURE{agent_id}, and the master
// forgets the agent (explicit reconciliation naming it answers TASK_UNKNOWN).
func (m *Master) RemoveAgent(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, err := m.agentLocked(id)
	if err != nil {
		return err
	}
	if a.state != agentActive {
		return fmt.Errorf("%w: %s is %s", ErrAgentInactive, id, a.state)
	}
	m.removeAgentLocked(a, false)
	m.notifyLocked()
	return nil
}

// MarkAgentGone is the operator's MARK_AGENT_GONE for an active or
// unreachable agent: offers rescinded, tasks TASK_GONE_BY_OPERATOR
// (TASK_LOST without PARTITION_AWARE; REASON_AGENT_REMOVED_BY_OPERATOR) and
// forgotten, FAILURE{agent_id} unless the agent was already unreachable.
// Explicit reconciliation naming the agent answers TASK_GONE_BY_OPERATOR.
func (m *Master) MarkAgentGone(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, err := m.agentLocked(id)
	if err != nil {
		return err
	}
	if a.state != agentActive && a.state != agentUnreachable {
		return fmt.Errorf("%w: %s is %s", ErrAgentInactive, id, a.state)
	}
	m.removeAgentLocked(a, true)
	m.notifyLocked()
	return nil
}

func (m *Master) agentLocked(id string) (*agent, error) {
	if m.closed {
		return nil, ErrClosed
	}
	a := m.agents[id]
	if a == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownAgent, id)
	}
	return a, nil
}

// Agents lists every agent ever added, in order of addition.
func (m *Master) Agents() []AgentRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]AgentRecord, 0, len(m.agentOrder))
	for _, a := range m.agentOrder {
		out = append(out, AgentRecord{ID: a.id, Hostname: a.hostname, State: a.state.String(),
			CPUs: a.total["cpus"], MemMB: a.total["mem"], DiskMB: a.total["disk"]})
	}
	return out
}

// StartTask moves a task held in TASK_STAGING (Config.HoldStaging) through
// TASK_STARTING to TASK_RUNNING.
func (m *Master) StartTask(id string) error {
	return m.withLiveTask(id, func(t *task) error {
		if t.state != mesos.TASK_STAGING {
			return fmt.Errorf("%w: %s is %s", ErrTaskNotStaging, id, t.state)
		}
		m.startLocked(t)
		return nil
	})
}

// FinishTask makes the task's command exit 0: TASK_FINISHED.
func (m *Master) FinishTask(id string) error {
	return m.UpdateTask(id, mesos.TASK_FINISHED, "Command exited with status 0")
}

// FailTask makes the task's command fail: TASK_FAILED with msg.
func (m *Master) FailTask(id, msg string) error {
	return m.UpdateTask(id, mesos.TASK_FAILED, msg)
}

// KillTask kills the task as a KILL call from its framework would.
func (m *Master) KillTask(id string) error {
	return m.withLiveTask(id, func(t *task) error {
		m.killTaskLocked(t)
		return nil
	})
}

// UpdateTask makes the task's executor report state (with message msg) as a
// reliable, acknowledgement-gated status update.
func (m *Master) UpdateTask(id string, state mesos.TaskState, msg string) error {
	if state == mesos.TASK_STAGING {
		return fmt.Errorf("mesosfake: executors do not send TASK_STAGING")
	}
	return m.withLiveTask(id, func(t *task) error {
		m.agentUpdateLocked(t, state, mesos.SOURCE_EXECUTOR, nil, msg)
		return nil
	})
}

// withLiveTask runs f on the most recently launched known task with this
// id, if it is not terminal and its agent is active.
func (m *Master) withLiveTask(id string, f func(*task) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	var t *task
	for i := len(m.tasks) - 1; i >= 0; i-- {
		if x := m.tasks[i]; x.key.task == id && !x.completed {
			t = x
			break
		}
	}
	switch {
	case t == nil:
		return fmt.Errorf("%w: %s", ErrUnknownTask, id)
	case isTerminal(t.state):
		return fmt.Errorf("%w: %s is %s", ErrTaskTerminal, id, t.state)
	case t.agent.state != agentActive:
		return fmt.Errorf("%w: task %s is on %s", ErrAgentInactive, id, t.agent.id)
	}
	err := f(t)
	m.notifyLocked()
	return err
}

// DropStreams cuts every subscription stream's connection, as a network
// failure would (events not yet written are lost; the client reads an
// unexpected EOF). The frameworks are disconnected when it returns and their
// failover timeouts have started.
func (m *Master) DropStreams() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, fw := range m.sortedFrameworksLocked() {
		if fw.stream != nil {
			fw.stream.abort()
			m.disconnectLocked(fw)
		}
	}
	m.notifyLocked()
}

// StopHeartbeats stops HEARTBEAT events on every stream (streams stay open)
// until ResumeHeartbeats, so that a scheduler's heartbeat watchdog can be
// tested.
func (m *Master) StopHeartbeats() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.heartbeatsStopped = true
}

// ResumeHeartbeats sends a HEARTBEAT at once on every stream and resumes
// the period.
func (m *Master) ResumeHeartbeats() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.heartbeatsStopped {
		return
	}
	m.heartbeatsStopped = false
	for _, fw := range m.sortedFrameworksLocked() {
		if s := fw.stream; s != nil {
			m.stopTimerLocked(s.hb)
			m.heartbeatLocked(s)
		}
	}
	m.notifyLocked()
}

// InjectError sends ERROR{msg} on every open stream. The stream stays open;
// mesos-go's client drops it and re-subscribes.
func (m *Master) InjectError(msg string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, fw := range m.sortedFrameworksLocked() {
		if fw.stream != nil {
			fw.stream.send(errorEvent(msg))
		}
	}
	m.notifyLocked()
}

// RescindOffers rescinds every outstanding offer (as the master's
// --offer_timeout would). The resources are offered again at once, under new
// offer ids.
func (m *Master) RescindOffers() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.sortedOffersLocked() {
		m.removeOfferLocked(o, true)
	}
	m.allocateLocked()
	m.notifyLocked()
}

// SetLeader changes who leads. leaderURL equal to URL() makes this master
// lead; another URL makes it a standby that answers 307 towards it; ""
// makes it a standby that knows no leader (503). A master that stops
// leading ends every stream (frameworks get no event; the failover timers do
// not run while it is standby); one that starts leading again keeps its
// frameworks, agents and tasks, and starts the failover timers of the
// frameworks that are not connected.
func (m *Master) SetLeader(leaderURL string) error {
	leader := ""
	if leaderURL != "" {
		hp, err := leaderHostPort(leaderURL)
		if err != nil {
			return err
		}
		leader = hp
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if leader == m.hostPort {
		if m.standby {
			m.standby, m.leader = false, ""
			for _, fw := range m.sortedFrameworksLocked() {
				if fw.stream == nil && fw.failoverTimer == nil {
					m.disconnectLocked(fw)
				}
			}
			m.allocateLocked()
		}
		m.notifyLocked()
		return nil
	}
	m.standby, m.leader = true, leader
	for _, fw := range m.sortedFrameworksLocked() {
		if fw.stream != nil {
			m.endStreamLocked(fw.stream)
			fw.stream = nil
		}
		m.stopTimerLocked(fw.failoverTimer)
		fw.failoverTimer = nil
		m.removeOffersLocked(fw, false)
	}
	m.notifyLocked()
	return nil
}

// Calls returns every scheduler call received so far, in order.
func (m *Master) Calls() []CallRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]CallRecord(nil), m.calls...)
}

// WaitCall returns the next call of type typ not yet returned by an earlier
// WaitCall for typ (calls received before the first WaitCall count), waiting
// for it if needed. The call's effects are applied when it returns.
func (m *Master) WaitCall(ctx context.Context, typ scheduler.Call_Type) (CallRecord, error) {
	for {
		m.mu.Lock()
		for i := m.cursors[typ]; i < len(m.calls); i++ {
			if m.calls[i].Type == typ {
				m.cursors[typ] = i + 1
				rec := m.calls[i]
				m.mu.Unlock()
				return rec, nil
			}
		}
		m.cursors[typ] = len(m.calls)
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return CallRecord{}, fmt.Errorf("waiting for a %s call: %w", typ, ctx.Err())
		}
	}
}

// WaitCalls waits until at least n calls of type typ have been received and
// returns all of them.
func (m *Master) WaitCalls(ctx context.Context, typ scheduler.Call_Type, n int) ([]CallRecord, error) {
	var out []CallRecord
	err := m.WaitUntil(ctx, func() bool {
		out = out[:0]
		for _, c := range m.Calls() {
			if c.Type == typ {
				out = append(out, c)
			}
		}
		return len(out) >= n
	})
	if err != nil {
		return out, fmt.Errorf("waiting for %d %s calls (have %d): %w", n, typ, len(out), err)
	}
	return out, nil
}

// Frameworks lists every framework, removed ones included, by id.
func (m *Master) Frameworks() []FrameworkRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []FrameworkRecord
	for _, fw := range m.frameworks {
		out = append(out, fw.record())
	}
	for _, fw := range m.removed {
		out = append(out, fw.record())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Framework returns one framework's record.
func (m *Master) Framework(id string) (FrameworkRecord, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fw := m.frameworks[id]
	if fw == nil {
		fw = m.removed[id]
	}
	if fw == nil {
		return FrameworkRecord{}, false
	}
	return fw.record(), true
}

func (fw *framework) record() FrameworkRecord {
	r := FrameworkRecord{
		ID:              fw.id,
		Name:            fw.info.GetName(),
		User:            fw.info.GetUser(),
		Connected:       fw.stream != nil,
		Removed:         fw.removed,
		FailoverTimeout: time.Duration(fw.info.GetFailoverTimeout() * float64(time.Second)),
		Checkpoint:      fw.info.GetCheckpoint(),
		Roles:           fw.roles(),
		Suppressed:      fw.suppressedAll(),
		Subscriptions:   fw.subscriptions,
		InvalidAcks:     fw.invalidAcks,
		Info:            cloneMsg(fw.info),
	}
	for _, c := range fw.info.GetCapabilities() {
		r.Capabilities = append(r.Capabilities, c.Type)
	}
	for _, role := range r.Roles {
		if fw.suppressed[role] {
			r.SuppressedRoles = append(r.SuppressedRoles, role)
		}
	}
	if fw.stream != nil {
		r.StreamID = fw.stream.id
	}
	return r
}

// Suppressed reports whether the framework has suppressed offers for all of
// its roles.
func (m *Master) Suppressed(frameworkID string) bool {
	r, ok := m.Framework(frameworkID)
	return ok && r.Suppressed
}

// OutstandingOffers are the offers sent and not yet accepted, declined or
// rescinded, oldest first.
func (m *Master) OutstandingOffers() []mesos.Offer {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []mesos.Offer
	for _, o := range m.sortedOffersLocked() {
		out = append(out, o.proto())
	}
	return out
}

// Tasks lists every task ever launched, in launch order.
func (m *Master) Tasks() []TaskRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]TaskRecord, 0, len(m.tasks))
	for _, t := range m.tasks {
		out = append(out, m.taskRecord(t))
	}
	return out
}

// Task returns the most recently launched task with this id.
func (m *Master) Task(id string) (TaskRecord, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.tasks) - 1; i >= 0; i-- {
		if m.tasks[i].key.task == id {
			return m.taskRecord(m.tasks[i]), true
		}
	}
	return TaskRecord{}, false
}

// Launches returns how many times a task with this id was launched.
func (m *Master) Launches(id string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.launches[id]
}

func (m *Master) taskRecord(t *task) TaskRecord {
	r := TaskRecord{
		ID:               t.key.task,
		FrameworkID:      t.key.framework,
		AgentID:          t.agent.id,
		Hostname:         t.agent.hostname,
		State:            t.state,
		Message:          t.latest.GetMessage(),
		Known:            !t.completed,
		Launches:         m.launches[t.key.task],
		Launch:           t.launchNo,
		Info:             t.info,
		Resources:        map[string]float64{},
		DeliveredUpdates: t.delivered,
		AckedUpdates:     t.acked,
		PendingUpdates:   len(t.pending),
	}
	if c := t.info.GetCommand(); c != nil {
		r.Command = c.GetValue()
		r.Shell = c.GetShell()
		r.Arguments = c.Arguments
		r.URIs = c.URIs
		r.Env = map[string]string{}
		for _, v := range c.GetEnvironment().GetVariables() {
			r.Env[v.Name] = v.GetValue()
		}
	}
	for k, v := range t.res {
		r.Resources[k] = v
	}
	r.CPUs, r.MemMB = t.res["cpus"], t.res["mem"]
	return r
}
