package scheduler

import (
	"context"
	"slices"
	"time"

	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// Batched fires. One pass of the loop's producer (produceDue) and launcher
// (launch) may touch many jobs at once: with 1,000 jobs firing every
// second, every pass produces and launches 1,000 fires. Written one job at
// a time, each fire cost two store round trips on the loop before the next
// job's turn. Instead the pass stages its ready-queue writes and its moves
// of fires from ready to running, in memory, and flushFires writes them
// all at the end of the pass with store.Writer.WriteFires: first every
// job's running nodes (one job's in one atomic batch, unless they are too
// many for one), then every job's ready node, the shares of many jobs
// sharing a batch, up to coord.QuickBatchOps ops. The ready nodes are half
// of the writes; the tasks start without waiting for them.
//
// A staged ready node is the job's js.ready, ahead of the store in its
// content but never in its Version, which stays the stored node's: the
// staged write expects it, and a write of the ready node made at once
// during the pass (completeFire's) writes the staged content too and moves
// the Version on, which the staged write then expects instead.
//
// What the pass stages is only in the term's memory until flushFires has
// written it, and nothing outside the loop sees it before: the pass runs
// without serving a request or a status in between, and the tasks of a
// job's fires are handed to the launch workers only after the job's
// running nodes are written (start, called by flushFires as each batch is
// written, while the next ones are). If a write fails, the term ends and
// its memory is dropped; the next term loads the store, where each job's
// running nodes are written or not, and its ready node only if they are.
//
// The order that makes a crash recoverable (launch's comment) holds per
// job: (a) the running nodes, (b) the ready node. A fire that was ready
// and is left with running nodes is still ready: the next term's first
// pass completes it (launchReady, whatever the policy). A fire produced
// in the same pass and left with running nodes has a LastFire before it:
// the next term's first pass produces it again and, as it has running
// nodes, completes it the same way (its missing shards made, its ready
// node written). Either way its tasks are unconfirmed running tasks,
// launched again (a no-op for a task this term's worker launched), and
// the first pass runs before the loop handles any status, so the nodes of
// tasks that have ended meanwhile are still there to tell it the fire ran.
// A fire produced and not left with running nodes is produced again.
//
// A pass is written as soon as it is made, up to fireLead before its
// fires: their running nodes and LastFire may be in the store that long
// before the fire time, their tasks never start before it. The launch
// workers hold a batch until its fire time, whichever term's it is: a
// successor that leads within the lead (a graceful hand-over takes
// milliseconds) launches the unconfirmed tasks it loaded through the same
// workers, and its first pass, made after the write, reaches beyond the
// fire and produces it again as above.

// firePass is what the current pass staged, by job, in staging order.
type firePass struct {
	jobs  map[string]*stagedFires
	order []string
}

// stagedFires is one job's staged share: its ready node is the job's
// js.ready (whose Version is still the stored node's), plus the running
// nodes to create and the fires they belong to, whose tasks are started
// once written.
type stagedFires struct {
	running []*model.TaskRecord
	fires   []time.Time
	// produced are the fires the producer queued, misfired how many times
	// it skipped some (up to lastMissed): told to the observers once
	// written.
	produced   []time.Time
	misfired   int
	lastMissed time.Time
}

// staged returns job's share of the pass, adding it if it has none.
func (t *term) staged(job string) *stagedFires {
	if t.pass.jobs == nil {
		t.pass.jobs = map[string]*stagedFires{}
	}
	sf := t.pass.jobs[job]
	if sf == nil {
		sf = &stagedFires{}
		t.pass.jobs[job] = sf
		t.pass.order = append(t.pass.order, job)
	}
	return sf
}

// stageReady makes rn the ready node of js, to be written by flushFires
// at the version js.ready has in the store.
func (t *term) stageReady(js *jobState, rn store.Ready) {
	rn.Version = js.ready.Version
	js.ready = rn
	t.staged(js.job.JobName)
}

// flushFires writes what the pass staged and then starts the tasks of the
// fires it moved to running.
func (t *term) flushFires(ctx context.Context) error {
	if len(t.pass.order) == 0 {
		return nil
	}
	pass := t.pass
	t.pass = firePass{}
	t.prepare(pass)
	// Written at once, up to fireLead ahead of the fires: their tasks
	// wait in the launch workers for their fire time (launchers.work).
	// Nothing removes a job during a pass; the check only keeps a slip
	// from writing the state of a job that is gone.
	names := slices.DeleteFunc(pass.order, func(name string) bool { return t.jobs[name] == nil })
	writes := make([]store.FireWrite, len(names))
	for i, name := range names {
		writes[i] = store.FireWrite{Job: name, Running: pass.jobs[name].running, Ready: t.jobs[name].ready}
	}
	// Each job's tasks are handed to its launch worker as soon as its
	// running nodes are written, while the batches after them are written.
	var startErr error
	outs, err := t.st.WriteFires(ctx, writes, func(i int, out store.FireWritten) {
		name := names[i]
		js := t.jobs[name]
		for _, rec := range out.Running {
			js.addRunning(rec)
		}
		var recs []*model.TaskRecord
		for _, f := range pass.jobs[name].fires {
			recs = append(recs, t.unlaunched(js, f)...)
		}
		if err := t.start(ctx, js, recs); err != nil && startErr == nil {
			startErr = err
		}
	})
	if err != nil {
		return err
	}
	for i, name := range names {
		t.jobs[name].ready = outs[i].Ready
		t.emitFires(name, pass.jobs[name])
	}
	return startErr
}

// prepare hands the tasks of the fires the pass is about to write, up to
// prepareAtMost, to an executor that can prepare them (executor.Preparer):
// it does so while the pass waits for its fires and writes their running
// nodes, and their Launch, once the nodes are written, finds them ready.
func (t *term) prepare(pass firePass) {
	p, ok := t.ex.(executor.Preparer)
	if !ok {
		return
	}
	var tasks []executor.Task
	for _, name := range pass.order {
		js := t.jobs[name]
		if js == nil {
			continue
		}
		app, ok := t.apps[js.job.AppName]
		if !ok {
			continue
		}
		for _, r := range pass.jobs[name].running {
			if len(tasks) == prepareAtMost {
				break
			}
			tasks = append(tasks, buildTask(js, app, r))
		}
		if len(tasks) == prepareAtMost {
			break
		}
	}
	if len(tasks) > 0 {
		p.Prepare(tasks)
	}
}

// prepareLead is how long before a fire its tasks are handed to Prepare,
// as the loop expects them (prepareAhead). Preparing a task forks its
// wrapper and its shell, which on a 2-core machine with slow process
// starts took longer than fireLead: the Launch waited for its preparation
// (a 100 ms fireLead brought fire → process p50 down to the machine's
// floor, but the loop serves nothing during a pass's lead). A preparation
// that is not launched is discarded by the executor a few seconds later.
const prepareLead = 200 * time.Millisecond

// prepareAhead hands the tasks of the fires due within prepareLead, and not
// handed before, to an executor that can prepare them: each due job's
// next fire, every shard, as its pass will make them (the pass hands them
// again, and an executor prepares a task once). Only jobs whose next fire
// launchReady will launch as soon as it is written are prepared ahead: no
// fire pending, and under FORBID no task running. A preparation that waits
// is a process and a slot held in vain. It walks the timer heap
// only down to the entries due within the lead.
func (t *term) prepareAhead() {
	p, ok := t.ex.(executor.Preparer)
	if !ok || len(t.timers) == 0 {
		return
	}
	now := t.now()
	from := t.preparedFrom(now)
	if !t.timers[0].at.After(from) {
		return
	}
	horizon := now.Add(prepareLead)
	t.preparedThrough = horizon
	var tasks []executor.Task
	var walk func(i int)
	walk = func(i int) {
		if i >= len(t.timers) || len(tasks) >= prepareAtMost || t.timers[i].at.After(horizon) {
			return // nor are its children due
		}
		if e := t.timers[i]; e.at.After(from) {
			tasks = t.appendAhead(tasks, e)
		}
		walk(2*i + 1)
		walk(2*i + 2)
	}
	walk(0)
	if len(tasks) > 0 {
		p.Prepare(tasks)
	}
}

// preparedFrom is the time after which the fires due have not been handed
// to Prepare yet: preparedThrough, unless the wall clock was set back
// since, and it lies beyond the lead. The fires then due (a job registered
// after the jump, say) would otherwise not be prepared ahead until the
// clock caught up with it; handing a fire's tasks twice costs nothing (an
// executor prepares a task once).
func (t *term) preparedFrom(now time.Time) time.Time {
	if t.preparedThrough.After(now.Add(prepareLead)) {
		return time.Time{}
	}
	return t.preparedThrough
}

// appendAhead appends the tasks timer entry e will launch, as they will be
// built, if its job is one prepareAhead prepares; up to prepareAtMost.
func (t *term) appendAhead(tasks []executor.Task, e fireEntry) []executor.Task {
	js := t.jobs[e.job]
	if js == nil || js.gen != e.gen || js.sched == nil || js.job.JobExecutionType != model.Transient ||
		!t.active(js) || len(js.ready.FireTimes) > 0 {
		return tasks
	}
	if len(js.running) > 0 && js.job.ConcurrencyPolicy != model.ConcurrencyAllow && js.job.ConcurrencyPolicy != model.ConcurrencyReplace {
		return tasks // FORBID waits for them (launchReady)
	}
	app, ok := t.apps[js.job.AppName]
	if !ok {
		return tasks
	}
	for shard := range shards(js) {
		if len(tasks) == prepareAtMost {
			break
		}
		tasks = append(tasks, buildTask(js, app, t.newRecord(js.job.JobName, e.at, shard, 0)))
	}
	return tasks
}

// prepareAtMost bounds the tasks one pass hands to Prepare: the loop
// builds them, and an executor prepares a few dozen at most (a pass of
// 1,000 fires launches the rest as before).
const prepareAtMost = 64

// emitFires tells the observers of the fires a written share produced and
// of the fires it skipped. Misfired's Count is how many times the producer
// skipped fires, not how many: after an outage with misfire off, the fires
// collapsed into the latest are not counted (that could take long).
func (t *term) emitFires(job string, sf *stagedFires) {
	if len(sf.produced) == 0 && sf.misfired == 0 {
		return
	}
	now := t.now()
	for _, f := range sf.produced {
		t.cfg.Events.Emit(events.Event{Kind: events.Fired, Time: now, Term: t.l.Token(), Job: job, FireTime: f, Lag: max(0, now.Sub(f))})
	}
	if sf.misfired > 0 {
		t.cfg.Events.Emit(events.Event{Kind: events.Misfired, Time: now, Term: t.l.Token(), Job: job, FireTime: sf.lastMissed, Count: sf.misfired})
	}
}
