package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// dueForLaunch names the jobs the launcher looks at now, sorted, and
// clears the requests: every job after launchAll, else those asked for
// that are still there.
func (t *term) dueForLaunch() []string {
	defer func() {
		t.launchAll = false
		clear(t.launchJobs)
	}()
	if t.launchAll {
		return sortedKeys(t.jobs)
	}
	names := make([]string, 0, len(t.launchJobs))
	for name := range t.launchJobs {
		if t.jobs[name] != nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// launch runs the launcher once over the named jobs: first the running tasks whose launch was
// never confirmed (a crash, or an executor error, between creating their
// running node and the executor accepting them), then the failover queue,
// then the ready fires of active TRANSIENT jobs under their concurrency
// policy, then every missing shard of active DAEMON jobs.
//
// Moving a fire from ready to running is (a) create every shard's running
// node, (b) take the fire off the ready node, (c) Launch. A crash between
// any two steps leaves a state the next term completes: after (a) the fire
// is still ready and its running nodes exist (created again: ErrExists);
// after (b) the running nodes are unconfirmed and are launched again, which
// the executor treats as a no-op if (c) had happened.
//
// The ready fires' moves are staged and written by the loop's flushFires
// after the pass, many jobs to a batch (fires.go): every job's (a), then
// every job's (b), and (c) once the job's (a) is written, so (c) may come
// before (b). After (a), with or without (c), the fire is still ready and
// its running nodes exist: the next term's first pass completes it, before
// it handles any status, and launches its unconfirmed tasks again. A fire
// produced in the same pass is never written as ready: its (b) is the
// write of its LastFire, and until then the next term produces it again
// and completes it the same way.
func (t *term) launch(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	now := t.now()
	for _, name := range names {
		js := t.jobs[name]
		if err := t.launchUnconfirmed(ctx, js); err != nil {
			return err
		}
	}
	for _, name := range names {
		if err := t.launchFailover(ctx, t.jobs[name], now); err != nil {
			return err
		}
	}
	for _, name := range names {
		if err := t.launchReady(ctx, t.jobs[name]); err != nil {
			return err
		}
	}
	for _, name := range names {
		if err := t.keepDaemon(ctx, t.jobs[name], now); err != nil {
			return err
		}
	}
	return nil
}

// launchUnconfirmed launches again the running tasks of js the executor has
// not confirmed, unless their fire is still ready (launchReady completes
// those). Launch is idempotent per task ID.
func (t *term) launchUnconfirmed(ctx context.Context, js *jobState) error {
	if len(js.running) == 0 {
		return nil
	}
	var recs []*model.TaskRecord
	for _, id := range sortedKeys(js.running) {
		r := js.running[id]
		if r.LaunchedAt.IsZero() && !r.KillRequested && !js.ready.Pending(r.FireTime) {
			recs = append(recs, r)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	if !t.active(js) {
		// Disabled since: they never ran, or their end is reported.
		for _, r := range recs {
			t.kill(ctx, r.ID)
			if err := t.deleteRunning(ctx, js, r); err != nil {
				return err
			}
		}
		return nil
	}
	return t.start(ctx, js, recs)
}

// launchFailover relaunches the failover tasks of an active job, each as its
// next attempt: (a) its running node made and its failover node removed, in
// one batch, (b) Launch.
func (t *term) launchFailover(ctx context.Context, js *jobState, now time.Time) error {
	if len(js.failover) == 0 || !t.active(js) {
		return nil
	}
	var recs []*model.TaskRecord
	for _, id := range sortedKeys(js.failover) {
		old := js.failover[id]
		if old.NotBefore.After(now) {
			continue
		}
		if old.Shard >= shards(js) {
			// The job has fewer shards since.
			if err := t.deleteFailover(ctx, js, old); err != nil {
				return err
			}
			continue
		}
		next := t.newRecord(js.job.JobName, old.FireTime, old.Shard, old.Attempt+1)
		next.JobParameter = old.JobParameter // a trigger's own, for every attempt
		rec, err := t.st.Relaunch(ctx, old, next)
		if err != nil {
			return err
		}
		delete(js.failover, old.ID)
		js.addRunning(rec)
		if rec.LaunchedAt.IsZero() && !rec.KillRequested {
			recs = append(recs, rec)
		}
	}
	return t.start(ctx, js, recs)
}

// launchReady launches pending fires of an active TRANSIENT job. ALLOW
// launches every pending fire; FORBID the oldest, and only while no task of
// the job runs; REPLACE kills the running tasks and launches the newest,
// dropping older pending fires (they would be killed at once). A fire some
// of whose running nodes exist already is completed whatever the policy.
func (t *term) launchReady(ctx context.Context, js *jobState) error {
	if js.job.JobExecutionType != model.Transient || len(js.ready.FireTimes) == 0 || !t.active(js) {
		return nil
	}
	for _, f := range slices.Clone(js.ready.FireTimes) {
		if hasFire(js, f) {
			if err := t.completeFire(ctx, js, f); err != nil {
				return err
			}
		}
	}
	pending := slices.Clone(js.ready.FireTimes)
	if len(pending) == 0 {
		return nil
	}
	switch js.job.ConcurrencyPolicy {
	case model.ConcurrencyAllow:
		for _, f := range pending {
			t.launchFire(js, f, nil)
		}
	case model.ConcurrencyReplace:
		for _, id := range sortedKeys(js.running) {
			if r := js.running[id]; !r.KillRequested {
				t.log.Info("replacing a running task", "job", js.job.JobName, "task", id)
				if err := t.killRunning(ctx, js, r); err != nil {
					return err
				}
			}
		}
		newest := pending[len(pending)-1]
		if len(pending) > 1 {
			t.log.Info("older pending fires dropped (REPLACE)", "job", js.job.JobName, "dropped", len(pending)-1)
		}
		t.launchFire(js, newest, pending[:len(pending)-1])
		return nil
	default: // FORBID
		if len(js.running) > 0 {
			return nil
		}
		t.launchFire(js, pending[0], nil)
		return nil
	}
	return nil
}

// hasFire says whether any running task of js belongs to fire f.
func hasFire(js *jobState, f time.Time) bool {
	for _, r := range js.running {
		if r.FireTime.Equal(f) {
			return true
		}
	}
	return false
}

// completeFire moves fire f of js, some of whose running nodes exist (a
// term ended between its batches), from ready to running at once, as
// launchFire does but without staging it: its tasks are then running
// tasks of js, which the policy below sees (REPLACE kills them). It is
// rare, and keeps js.ready's version the stored one, which is all a staged
// ready node needs.
func (t *term) completeFire(ctx context.Context, js *jobState, f time.Time) error {
	want := t.missingShards(js, f)
	rn := js.ready
	rn.FireTimes = slices.DeleteFunc(slices.Clone(rn.FireTimes), func(x time.Time) bool { return x.Equal(f) })
	made, rn, err := t.st.LaunchFire(ctx, js.job.JobName, want, rn)
	if err != nil {
		return err
	}
	js.ready = rn
	for _, rec := range made {
		js.addRunning(rec)
	}
	return t.start(ctx, js, t.unlaunched(js, f))
}

// missingShards are the running records fire f of js lacks, each with the
// parameter f was triggered with (f is still on the ready queue).
func (t *term) missingShards(js *jobState, f time.Time) []*model.TaskRecord {
	var want []*model.TaskRecord
	param := js.ready.Parameter(f)
	for shard := range shards(js) {
		id := model.TaskID(js.job.JobName, f, shard, 0)
		if js.running[id] == nil {
			rec := t.newRecord(js.job.JobName, f, shard, 0)
			rec.JobParameter = param
			want = append(want, rec)
		}
	}
	return want
}

// unlaunched are the running tasks of fire f of js to hand to the
// executor: not confirmed launched, not killed.
func (t *term) unlaunched(js *jobState, f time.Time) []*model.TaskRecord {
	var recs []*model.TaskRecord
	for shard := range shards(js) {
		rec := js.running[model.TaskID(js.job.JobName, f, shard, 0)]
		if rec != nil && rec.LaunchedAt.IsZero() && !rec.KillRequested {
			recs = append(recs, rec)
		}
	}
	return recs
}

// launchFire moves fire f of js from ready to running: (a) every shard's
// running node made and f (and drop) taken off the ready node, in one batch
// where the fire's shards fit into one, (b) Launch. Both are the pass's
// flushFires': launchFire stages them.
func (t *term) launchFire(js *jobState, f time.Time, drop []time.Time) {
	want := t.missingShards(js, f)
	rn := js.ready
	rn.FireTimes = slices.DeleteFunc(slices.Clone(rn.FireTimes), func(x time.Time) bool {
		return x.Equal(f) || slices.ContainsFunc(drop, x.Equal)
	})
	// Staged: flushFires writes the running nodes and the ready node of
	// the job in one batch at the end of the pass, and starts the fire's
	// tasks once that batch is written (fires.go).
	t.stageReady(js, rn)
	sf := t.staged(js.job.JobName)
	sf.running = append(sf.running, want...)
	sf.fires = append(sf.fires, f)
}

// keepDaemon starts every shard of an active DAEMON job that has neither a
// running nor a failover task, as a new run (fire time now, attempt 0), and
// kills running shards beyond the job's shard count.
func (t *term) keepDaemon(ctx context.Context, js *jobState, now time.Time) error {
	if js.job.JobExecutionType != model.Daemon || !t.active(js) {
		return nil
	}
	covered := map[int]bool{}
	for _, id := range sortedKeys(js.running) {
		r := js.running[id]
		if r.Shard >= shards(js) {
			if !r.KillRequested {
				if err := t.killRunning(ctx, js, r); err != nil {
					return err
				}
			}
			continue
		}
		covered[r.Shard] = true
	}
	for _, r := range js.failover {
		covered[r.Shard] = true
	}
	if len(covered) == shards(js) {
		return nil
	}
	f := uniqueFire(js, now)
	var want []*model.TaskRecord
	for shard := range shards(js) {
		if !covered[shard] {
			want = append(want, t.newRecord(js.job.JobName, f, shard, 0))
		}
	}
	recs, err := t.st.CreateRunning(ctx, js.job.JobName, want...)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		js.addRunning(rec)
	}
	return t.start(ctx, js, recs)
}

func (t *term) newRecord(job string, fire time.Time, shard, attempt int) *model.TaskRecord {
	return &model.TaskRecord{
		ID:        model.TaskID(job, fire, shard, attempt),
		Job:       job,
		Shard:     shard,
		FireTime:  fire.UTC(),
		Attempt:   attempt,
		State:     executor.StateStaging,
		UpdatedAt: t.now(),
	}
}

// start is the last step: hand tasks whose running nodes exist to the
// executor in one Launch, made by the app's launch worker; handleLaunched
// records that the executor accepted them. Tasks already with a worker are
// skipped. The worker launches without a fence of its own while a write
// of the term was acknowledged within freshFence (fencedLaunches): for
// fires launched as they are written, their own.
func (t *term) start(ctx context.Context, js *jobState, recs []*model.TaskRecord) error {
	app, ok := t.apps[js.job.AppName]
	if !ok {
		return nil
	}
	b := launchBatch{job: js.job.JobName}
	for _, r := range recs {
		if t.inflight[r.ID] {
			continue
		}
		t.inflight[r.ID] = true
		b.tasks = append(b.tasks, buildTask(js, app, r))
		if r.FireTime.After(b.notBefore) {
			b.notBefore = r.FireTime
		}
	}
	if len(b.tasks) > 0 {
		t.launchers.push(app.AppName, b)
	}
	return nil
}

// launchBatch is one Launch call; launchResult its outcome.
type launchBatch struct {
	job   string
	tasks []executor.Task
	// notBefore is the latest fire time of the tasks: a pass is written
	// up to fireLead ahead of its fires, and its tasks wait for them.
	notBefore time.Time
}

type launchResult struct {
	launchBatch
	err error
}

// fencedLaunch launches through ex after a fenced write has shown that the
// term still leads: a leader deposed since it decided (paused, cut off)
// launches nothing, and its tasks stay unconfirmed for the loop to retry,
// which it never will, as the term is over.
func fencedLaunch(st *store.Writer, l coord.Leadership, ex executor.Executor) func(context.Context, []executor.Task) error {
	launch := fencedLaunches(st, l, ex)
	return func(ctx context.Context, tasks []executor.Task) error {
		return launch(ctx, [][]executor.Task{tasks})[0]
	}
}

// fencedLaunches launches several batches, one Launch each, up to
// launchesAtOnce at a time, after one fenced write: what fencedLaunch does
// for one. The fence proves that the term led after the loop handed over
// every one of them, which is all a fence right before each Launch proved:
// between the fence and a Launch the loop changes nothing these tasks
// depend on, whether one batch or several follow. Each batch keeps its own
// Launch, so a batch the executor refuses (ErrInvalidTask) fails alone.
// The errors are per batch; a failed fence is every batch's.
//
// st.LastProof is when the store last acknowledged a fenced write of the
// term: for fires launched as they are written, their own, or any write
// after it (while a pass's ready nodes are written, their answers keep the
// proof fresh for the tasks queued before them). Within freshFence of it
// that write is the proof, and no fence is made: a fence costs a write the
// server syncs to disk, milliseconds of every fire's way to its process. A
// worker that takes the batches later, with no write of the term since (it
// was busy, or the process was paused), fences as before.
func fencedLaunches(st *store.Writer, l coord.Leadership, ex executor.Executor) func(context.Context, [][]executor.Task) []error {
	return func(ctx context.Context, batches [][]executor.Task) []error {
		errs := make([]error, len(batches))
		select {
		case <-l.Lost():
			// Known over: no write of the term proves anything now.
			for i := range errs {
				errs[i] = fmt.Errorf("check the term before launching: %w: its leadership is lost", coord.ErrNotLeader)
			}
			return errs
		default:
		}
		if last := st.LastProof(); last.IsZero() || time.Since(last) > freshFence {
			if err := st.Fence(ctx, l.Token()); err != nil {
				for i := range errs {
					errs[i] = err
				}
				return errs
			}
		}
		// The batches are of different jobs: launched at once, the last
		// job of a pass does not wait for every Launch before its own
		// (four jobs of two shards, one after another, started their
		// last task some 80 ms after the fire on the 2-core machine).
		var wg sync.WaitGroup
		slots := make(chan struct{}, launchesAtOnce)
		for i, tasks := range batches {
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-slots; wg.Done() }()
				errs[i] = ex.Launch(ctx, tasks)
			}()
		}
		wg.Wait()
		return errs
	}
}

// freshFence is how long after a fenced write the term launches on its
// proof alone. A fence's own proof is as old as its answer's way back when
// the Launch starts, well under a millisecond on a healthy network; this
// lets the term's latest write (LastProof), if just acknowledged, stand in
// for it. A successor leads only once this term's session has ended (a
// lease unrenewed for its whole TTL; a ZooKeeper session unheard of for
// its timeout, which the write itself renews), and then loads the state
// and reconciles before it launches anything: the 10 ms this adds to the
// proof's age is small beside that.
//
// The proof is older by up to fireLead for the tasks of a pass, which
// wait for their fire time after their running nodes are written (the
// ready nodes written after them keep it fresher): 30 ms is as small
// beside a takeover.
const freshFence = fireLead + 10*time.Millisecond

// launchesAtOnce bounds the Launch calls one app's worker has in flight.
// Executors take concurrent Launch calls (executor.Executor); the bound
// keeps a pass of 1,000 jobs from forking 1,000 goroutines at once.
const launchesAtOnce = 8

// launchers make the executor's Launch calls off the loop, one worker per
// app with work, so that an app whose package is slow to fetch holds up only
// its own launches. A worker takes every batch queued for its app at once
// and makes one fence for them (fencedLaunches), so a pass that starts
// 1,000 jobs' fires costs the app's worker a fence or two, not 1,000. A
// Launch's context ends with the term, not sooner: the executor bounds its
// own work (the local executor's FetchTimeout), and a shorter deadline here
// would cancel a slow fetch as "nothing launched" and retry it forever.
type launchers struct {
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	launch  func(context.Context, [][]executor.Task) []error
	now     func() time.Time // the scheduler's clock
	results *queue[launchResult]

	mu      sync.Mutex
	pending map[string][]launchBatch // by app; present while its worker runs
}

func newLaunchers(launch func(context.Context, [][]executor.Task) []error, now func() time.Time) *launchers {
	ctx, cancel := context.WithCancel(context.Background())
	return &launchers{ctx: ctx, cancel: cancel, launch: launch, now: now, results: newQueue[launchResult](), pending: map[string][]launchBatch{}}
}

// push queues a batch for app's worker, starting it if it is not running.
func (l *launchers) push(app string, b launchBatch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	q, running := l.pending[app]
	l.pending[app] = append(q, b)
	if !running && l.ctx.Err() == nil {
		l.wg.Add(1)
		go l.work(app)
	}
}

// work launches app's batches in order, all that are queued at a time,
// until none is left. Batches queued ahead of their fire time (a pass's)
// are launched once the latest of them is due, and the others taken with
// them wait as long: at most fireLead, which also bounds the wait when
// the clock was set back after the pass.
func (l *launchers) work(app string) {
	defer l.wg.Done()
	for {
		l.mu.Lock()
		q := l.pending[app]
		if len(q) == 0 || l.ctx.Err() != nil {
			delete(l.pending, app)
			l.mu.Unlock()
			return
		}
		l.pending[app] = nil // present: the worker runs
		l.mu.Unlock()
		tasks := make([][]executor.Task, len(q))
		var due time.Time
		for i, b := range q {
			tasks[i] = b.tasks
			if b.notBefore.After(due) {
				due = b.notBefore
			}
		}
		if wait := min(due.Sub(l.now()), fireLead); wait > 0 && !sleep(l.ctx, wait) {
			for _, b := range q {
				l.results.push(launchResult{b, fmt.Errorf("launch: %w", l.ctx.Err())})
			}
			continue // and end: the term is over
		}
		errs := l.launch(l.ctx, tasks)
		for i, b := range q {
			l.results.push(launchResult{b, errs[i]})
		}
	}
}

// stop cancels the Launch calls in progress and waits for every worker.
func (l *launchers) stop() {
	l.cancel()
	l.wg.Wait()
}

// handleLaunched records the tasks the executor accepted as launched, in
// the writes the loop stages (handleExecutor writes them). A failed Launch
// is logged; its tasks stay unconfirmed and are launched again on the next
// tick (Launch is idempotent per task ID).
func (t *term) handleLaunched() error {
	for _, res := range t.launchers.results.drain() {
		for _, task := range res.tasks {
			delete(t.inflight, task.ID)
		}
		if errors.Is(res.err, coord.ErrNotLeader) {
			return fmt.Errorf("launch %s: %w", res.job, res.err)
		}
		if res.err != nil {
			t.log.Warn("launch failed; retrying on the next tick", "job", res.job, "tasks", len(res.tasks), "error", res.err)
			continue
		}
		now := t.now()
		for _, task := range res.tasks {
			// Told even if the task has ended since (a quick one's end
			// may be handled before its Launch returns).
			t.cfg.Events.Emit(events.Event{Kind: events.Launched, Time: now, Term: t.l.Token(),
				Job: task.Job, TaskID: task.ID, Shard: task.Shard, Attempt: task.Attempt, FireTime: task.FireTime,
				Lag: now.Sub(task.FireTime)})
		}
		js := t.jobs[res.job]
		if js == nil {
			continue
		}
		for _, task := range res.tasks {
			r := js.running[task.ID]
			if r == nil || !r.LaunchedAt.IsZero() {
				continue // ended, or its status said it runs, meanwhile
			}
			u := *r
			u.LaunchedAt = now
			u.UpdatedAt = now
			t.stageSetRunning(js, &u)
		}
		t.log.Debug("launched", "job", res.job, "tasks", len(res.tasks))
	}
	return nil
}

// buildTask makes the executor's task of one running record.
func buildTask(js *jobState, app model.App, r *model.TaskRecord) executor.Task {
	job := js.job
	return executor.Task{
		ID:                 r.ID,
		Job:                job.JobName,
		App:                app.AppName,
		FireTime:           r.FireTime,
		Shard:              r.Shard,
		Attempt:            r.Attempt,
		ShardingTotalCount: job.ShardingTotalCount,
		ShardParameter:     js.params[r.Shard],
		JobParameter:       jobParameter(job, r),
		Command:            model.Command(job, app),
		Image:              app.Image,
		AppURL:             app.AppURL,
		AppChecksum:        app.AppChecksum,
		AppCacheEnable:     app.AppCacheEnable,
		CPUs:               job.CPUCount,
		MemoryMB:           job.MemoryMB,
		AppCPUs:            app.CPUCount,
		AppMemoryMB:        app.MemoryMB,
		Daemon:             job.JobExecutionType == model.Daemon,
		Constraints:        job.Constraints,
		Timeout:            job.Timeout(),
	}
}

// jobParameter is what a task gets as its job parameter: its run's own,
// if it was triggered with one.
func jobParameter(job model.Job, r *model.TaskRecord) string {
	if r.JobParameter != nil {
		return *r.JobParameter
	}
	return job.JobParameter
}

// Task record writes: the store writes, the term keeps its memory in step.

func (t *term) setRunning(ctx context.Context, js *jobState, rec *model.TaskRecord) error {
	if err := t.st.SetRunning(ctx, rec); err != nil {
		return err
	}
	js.addRunning(rec)
	return nil
}

func (t *term) deleteRunning(ctx context.Context, js *jobState, rec *model.TaskRecord) error {
	if err := t.st.DeleteRunning(ctx, rec); err != nil {
		return err
	}
	delete(js.running, rec.ID)
	return nil
}

func (t *term) deleteFailover(ctx context.Context, js *jobState, rec *model.TaskRecord) error {
	if err := t.st.DeleteFailover(ctx, rec); err != nil {
		return err
	}
	delete(js.failover, rec.ID)
	return nil
}

// killRunning marks a running task as killed by the scheduler, so its end
// is not taken for a failure, and kills it.
func (t *term) killRunning(ctx context.Context, js *jobState, rec *model.TaskRecord) error {
	if !rec.KillRequested {
		u := *rec
		u.KillRequested = true
		u.UpdatedAt = t.now()
		if err := t.setRunning(ctx, js, &u); err != nil {
			return err
		}
		rec = &u
	}
	if rec.LaunchedAt.IsZero() {
		// Never confirmed: no status may follow, so it goes now; if it did
		// run, its status finds no record and it is killed again.
		t.kill(ctx, rec.ID)
		return t.deleteRunning(ctx, js, rec)
	}
	t.kill(ctx, rec.ID)
	return nil
}

// shards is how many shards the launcher makes of js per fire: the job's
// count, never more than model.MaxShardingTotalCount. Every job the term
// holds passed Check, which refuses more; the bound is repeated where the
// allocation is, so that no path around Check can make a leader allocate
// until it dies (shardingTotalCount 2^40 once did, on every leader in turn).
func shards(js *jobState) int {
	return max(0, min(js.job.ShardingTotalCount, model.MaxShardingTotalCount))
}
