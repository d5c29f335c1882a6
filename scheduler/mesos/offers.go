package mesos

import (
	"context"
	"math"
	"strconv"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"

	"github.com/hasched/hasched/scheduler/executor"
)

// commandWrapper is every task's command line. Like the local executor's
// wrapper it runs the task's command ($HASCHED_COMMAND) with the sharding
// context as $1, and HASCHED_TASK_DIR names the task's directory (the Mesos
// sandbox).
const commandWrapper = `HASCHED_TASK_DIR="${MESOS_SANDBOX:-$PWD}"; export HASCHED_TASK_DIR; exec /bin/sh -c "$HASCHED_COMMAND" hasched "$HASCHED_SHARDING_CONTEXT"`

// Resource names placement uses.
const (
	resCPUs = "cpus"
	resMem  = "mem"
)

// handleOffers places queued tasks on the offers and declines whatever is
// left, at once: offers are never held.
func (e *Executor) handleOffers(ctx context.Context, offers []mesos.Offer) {
	e.offerMu.Lock()
	defer e.offerMu.Unlock()
	e.mu.Lock()
	for _, o := range offers {
		e.agents[o.AgentID.Value] = o.Hostname
	}
	pools := e.place(offers)
	e.mu.Unlock()

	var decline []mesos.OfferID
	for _, p := range pools {
		if len(p.tasks) == 0 {
			decline = append(decline, p.offerIDs...)
			continue
		}
		infos := make([]mesos.TaskInfo, len(p.tasks))
		for i, pt := range p.tasks {
			infos[i] = taskInfo(pt.task, p.agentID, pt.res)
		}
		call := calls.Accept(calls.OfferOperations{calls.OpLaunch(infos...)}.WithOffers(p.offerIDs...)).
			With(calls.RefuseSeconds(e.cfg.RefuseSeconds))
		err := e.call(ctx, call)
		e.mu.Lock()
		if err != nil {
			// Back to the front of the queue. Should the master have
			// taken the call after all, the second launch is refused as
			// a duplicate, which handleUpdate recognises.
			back := make([]executor.Task, 0, len(p.tasks))
			for _, pt := range p.tasks {
				delete(e.tasks, pt.task.ID)
				back = append(back, pt.task)
			}
			e.pending = append(back, e.pending...)
			e.mu.Unlock()
			decline = append(decline, p.offerIDs...)
			e.callFailed("cannot launch tasks; they wait for the next offers", err, "agent", p.host, "tasks", len(p.tasks))
			continue
		}
		now := time.Now()
		for _, pt := range p.tasks {
			st := executor.Status{TaskID: pt.task.ID, State: executor.StateStaging, Time: now, Host: p.host}
			e.remember(st, p.agentID)
			e.emit(st)
		}
		e.mu.Unlock()
		for _, pt := range p.tasks {
			e.log.Info("task launched", "task_id", pt.task.ID, "agent", p.host, "agent_id", p.agentID, "cpus", pt.cpus, "mem", pt.mem)
		}
	}
	if len(decline) > 0 {
		call := calls.Decline(decline...).With(calls.RefuseSeconds(e.cfg.RefuseSeconds))
		if err := e.call(ctx, call); err != nil {
			e.callFailed("cannot decline offers", err, "offers", len(decline))
		} else {
			e.mu.Lock()
			e.lastDecline = time.Now()
			e.mu.Unlock()
			e.log.Trace("offers declined", "offers", len(decline), "refuse", e.cfg.RefuseSeconds)
		}
	}
	e.syncOffers(ctx)
}

// syncOffers makes Mesos' view follow the queue: REVIVE when tasks wait
// and offers are suppressed (or were refused lately), SUPPRESS when
// nothing waits. offerMu is held.
func (e *Executor) syncOffers(ctx context.Context) {
	e.mu.Lock()
	want := len(e.pending) > 0
	connected, suppressed, revive := e.connected, e.suppressed, e.reviveWanted
	e.mu.Unlock()
	if !connected {
		return
	}
	switch {
	case want && (suppressed || revive):
		if err := e.call(ctx, calls.ReviveWith([]string{e.cfg.Role})); err != nil {
			e.callFailed("cannot revive offers", err)
			// A suppressed framework gets no offers, so nothing else
			// would ever revive them: the reviver tries again.
			e.mu.Lock()
			e.reviveWanted = true
			e.mu.Unlock()
			return
		}
		e.mu.Lock()
		e.suppressed, e.reviveWanted = false, false
		e.lastRevive = time.Now()
		e.mu.Unlock()
		e.log.Debug("offers revived")
	case !want && !suppressed:
		if err := e.call(ctx, calls.SuppressWith([]string{e.cfg.Role})); err != nil {
			e.callFailed("cannot suppress offers", err)
			return
		}
		e.mu.Lock()
		e.suppressed = true
		e.mu.Unlock()
		e.log.Debug("offers suppressed: nothing waits")
	}
}

// reviver revives offers every RefuseSeconds while tasks wait that the
// last offers could not take. Declines refuse each agent for RefuseSeconds
// from the moment its offer came, so agents drift apart, and a run that
// needs several of them at once would never see them together: a REVIVE
// clears every filter and the next offers hold every agent.
func (e *Executor) reviver() {
	t := time.NewTicker(max(e.cfg.RefuseSeconds/2, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-e.ctx.Done():
			return
		}
		e.offerMu.Lock()
		e.mu.Lock()
		// reviveWanted is still set here only if a REVIVE failed.
		due := e.connected && len(e.pending) > 0 && (e.reviveWanted ||
			e.lastDecline.After(e.lastRevive) && time.Since(e.lastRevive) >= e.cfg.RefuseSeconds)
		if due {
			e.reviveWanted = true
		}
		e.mu.Unlock()
		if due {
			e.syncOffers(e.ctx)
		}
		e.offerMu.Unlock()
	}
}

// pool is what the offers of one agent hold.
type pool struct {
	agentID  string
	host     string
	offerIDs []mesos.OfferID
	res      []avail
	apps     map[string]bool // apps that have a task on the agent
	tasks    []placedTask
}

// avail is one resource of an offer and how much of it is left, in
// thousandths (Mesos' fixed point).
type avail struct {
	r    mesos.Resource
	left int64
}

type placedTask struct {
	task executor.Task
	res  []mesos.Resource
	cpus float64
	mem  float64
}

// place puts queued tasks on the offers' agents, first fit in queue order,
// a run (the shards of one job's fire and attempt) wholly or not at all.
// The app's overhead (AppCPUs, AppMemoryMB) is added once per app and
// agent, to the first of its tasks there (none if a task of the app runs
// there already), as Elastic-Job-Cloud counts its executor. Placed tasks
// leave the queue and are recorded as staging on their agent. e.mu is held.
func (e *Executor) place(offers []mesos.Offer) []*pool {
	var pools []*pool
	byAgent := map[string]*pool{}
	for _, o := range offers {
		p := byAgent[o.AgentID.Value]
		if p == nil {
			p = &pool{agentID: o.AgentID.Value, host: o.Hostname, apps: map[string]bool{}}
			byAgent[p.agentID] = p
			pools = append(pools, p)
		}
		p.offerIDs = append(p.offerIDs, o.ID)
		for _, r := range o.Resources {
			if (r.Name == resCPUs || r.Name == resMem) && r.GetType() == mesos.SCALAR && r.Scalar != nil &&
				r.Revocable == nil && r.Disk == nil && r.Shared == nil && r.ProviderID == nil {
				p.res = append(p.res, avail{r: r, left: milli(r.GetScalar().GetValue())})
			}
		}
	}
	if len(e.pending) == 0 {
		return pools
	}
	for _, ts := range e.tasks {
		if p := byAgent[ts.agentID]; p != nil && !ts.ended && ts.task.App != "" {
			p.apps[ts.task.App] = true
		}
	}

	type runKey struct {
		job     string
		fire    int64
		attempt int
	}
	var order []runKey
	runs := map[runKey][]executor.Task{}
	for _, t := range e.pending {
		k := runKey{t.Job, t.FireTime.UnixNano(), t.Attempt}
		if _, ok := runs[k]; !ok {
			order = append(order, k)
		}
		runs[k] = append(runs[k], t)
	}
	placed := map[string]bool{}
	for _, k := range order {
		snap := snapshot(pools)
		ok := true
		for _, t := range runs[k] {
			if !placeOne(pools, t) {
				ok = false
				break
			}
		}
		if !ok {
			restore(pools, snap)
			e.log.Trace("no room for a run in these offers", "job", k.job, "tasks", len(runs[k]))
			continue
		}
		for _, t := range runs[k] {
			placed[t.ID] = true
		}
	}
	if len(placed) == 0 {
		return pools
	}
	rest := e.pending[:0:0]
	for _, t := range e.pending {
		if !placed[t.ID] {
			rest = append(rest, t)
		}
	}
	e.pending = rest
	for _, p := range pools {
		for _, pt := range p.tasks {
			e.tasks[pt.task.ID] = &taskState{
				task:    pt.task,
				agentID: p.agentID,
				last:    executor.Status{TaskID: pt.task.ID, State: executor.StateStaging, Host: p.host, Time: time.Now()},
			}
		}
	}
	return pools
}

// placeOne puts t on the first pool it fits.
func placeOne(pools []*pool, t executor.Task) bool {
	for _, p := range pools {
		cpus, mem := milli(t.CPUs), milli(t.MemoryMB)
		if !p.apps[t.App] {
			cpus += milli(t.AppCPUs)
			mem += milli(t.AppMemoryMB)
		}
		if p.left(resCPUs) < cpus || p.left(resMem) < mem {
			continue
		}
		res := append(p.take(resCPUs, cpus), p.take(resMem, mem)...)
		p.apps[t.App] = true
		p.tasks = append(p.tasks, placedTask{task: t, res: res, cpus: float64(cpus) / 1000, mem: float64(mem) / 1000})
		return true
	}
	return false
}

func (p *pool) left(name string) int64 {
	var n int64
	for _, a := range p.res {
		if a.r.Name == name {
			n += a.left
		}
	}
	return n
}

// take takes amount of a resource, as copies of the offer's resources (so
// role, reservation and allocation info are the offer's).
func (p *pool) take(name string, amount int64) []mesos.Resource {
	var out []mesos.Resource
	for i := range p.res {
		a := &p.res[i]
		if amount == 0 {
			break
		}
		if a.r.Name != name || a.left == 0 {
			continue
		}
		n := min(a.left, amount)
		a.left -= n
		amount -= n
		r := a.r
		r.Scalar = &mesos.Value_Scalar{Value: float64(n) / 1000}
		out = append(out, r)
	}
	return out
}

type poolSnap struct {
	left  []int64
	apps  map[string]bool
	tasks int
}

func snapshot(pools []*pool) []poolSnap {
	out := make([]poolSnap, len(pools))
	for i, p := range pools {
		s := poolSnap{apps: make(map[string]bool, len(p.apps)), tasks: len(p.tasks)}
		for _, a := range p.res {
			s.left = append(s.left, a.left)
		}
		for k, v := range p.apps {
			s.apps[k] = v
		}
		out[i] = s
	}
	return out
}

func restore(pools []*pool, snap []poolSnap) {
	for i, p := range pools {
		for j := range p.res {
			p.res[j].left = snap[i].left[j]
		}
		p.apps = snap[i].apps
		p.tasks = p.tasks[:snap[i].tasks]
	}
}

// milli is x in Mesos' fixed point (thousandths).
func milli(x float64) int64 { return int64(math.Round(x * 1000)) }

// taskInfo is the Mesos command task of t.
func taskInfo(t executor.Task, agentID string, res []mesos.Resource) mesos.TaskInfo {
	cmd := &mesos.CommandInfo{
		Shell:       ptr(true),
		Value:       ptr(commandWrapper),
		Environment: &mesos.Environment{Variables: taskEnv(t)},
	}
	if t.AppURL != "" {
		cmd.URIs = []mesos.CommandInfo_URI{{
			Value:   t.AppURL,
			Extract: ptr(true),
			Cache:   ptr(t.AppCacheEnable),
		}}
	}
	var maxCompletion *mesos.DurationInfo
	if t.Timeout > 0 {
		// The agent's executor enforces it (the command executor kills the
		// task, with its kill policy's grace), and reports TASK_FAILED with
		// REASON_MAX_COMPLETION_TIME_REACHED: mapState makes that TIMED_OUT.
		maxCompletion = &mesos.DurationInfo{Nanoseconds: int64(t.Timeout)}
	}
	return mesos.TaskInfo{
		Name:      t.Job + "/" + strconv.Itoa(t.Shard),
		TaskID:    mesos.TaskID{Value: t.ID},
		AgentID:   mesos.AgentID{Value: agentID},
		Resources: res,
		Command:   cmd,
		Labels: &mesos.Labels{Labels: []mesos.Label{
			{Key: "hasched.job", Value: ptr(t.Job)},
			{Key: "hasched.app", Value: ptr(t.App)},
			{Key: "hasched.shard", Value: ptr(strconv.Itoa(t.Shard))},
		}},
		MaxCompletionTime: maxCompletion,
	}
}

// taskEnv is the task's HASCHED_* variables, those of the local executor
// (HASCHED_TASK_DIR is set by the command wrapper: the sandbox).
func taskEnv(t executor.Task) []mesos.Environment_Variable {
	vars := executor.TaskVariables(t)
	out := make([]mesos.Environment_Variable, len(vars))
	for i, v := range vars {
		out[i] = mesos.Environment_Variable{Name: v.Name, Value: ptr(v.Value)}
	}
	return out
}
