package scheduler

import (
	"github.com/hasched/hasched/scheduler/model"

	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
)

// launch runs the launcher once: first the running tasks whose launch was
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
func (t *term) launch(ctx context.Context) error {
	now := t.now()
	names := sortedKeys(t.jobs)
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
	var recs []*model.TaskRecord
	for _, id := range sortedKeys(js.running) {
		r := js.running[id]
		if r.LaunchedAt.IsZero() && !r.KillRequested && !js.ready.pending(r.FireTime) {
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
// next attempt: (a) its running node, (b) its failover node removed, (c)
// Launch.
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
		if old.Shard >= js.job.ShardingTotalCount {
			// The job has fewer shards since.
			if err := t.deleteFailover(ctx, js, old); err != nil {
				return err
			}
			continue
		}
		rec := t.newRecord(js.job.JobName, old.FireTime, old.Shard, old.Attempt+1)
		rec, err := t.createRunning(ctx, js, rec)
		if err != nil {
			return err
		}
		if err := t.deleteFailover(ctx, js, old); err != nil {
			return err
		}
		recs = append(recs, rec)
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
			if err := t.launchFire(ctx, js, f, nil); err != nil {
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
			if err := t.launchFire(ctx, js, f, nil); err != nil {
				return err
			}
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
		return t.launchFire(ctx, js, newest, pending[:len(pending)-1])
	default: // FORBID
		if len(js.running) > 0 {
			return nil
		}
		return t.launchFire(ctx, js, pending[0], nil)
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

// launchFire moves fire f of js from ready to running: (a) every shard's
// running node, (b) f (and drop) off the ready node, (c) Launch.
func (t *term) launchFire(ctx context.Context, js *jobState, f time.Time, drop []time.Time) error {
	recs := make([]*model.TaskRecord, 0, js.job.ShardingTotalCount)
	for shard := range js.job.ShardingTotalCount {
		rec, err := t.createRunning(ctx, js, t.newRecord(js.job.JobName, f, shard, 0))
		if err != nil {
			return err
		}
		if rec.LaunchedAt.IsZero() && !rec.KillRequested {
			recs = append(recs, rec)
		}
	}
	rn := js.ready
	rn.FireTimes = slices.DeleteFunc(slices.Clone(rn.FireTimes), func(x time.Time) bool {
		return x.Equal(f) || slices.ContainsFunc(drop, x.Equal)
	})
	if err := t.setReady(ctx, js, rn); err != nil {
		return err
	}
	return t.start(ctx, js, recs)
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
		if r.Shard >= js.job.ShardingTotalCount {
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
	if len(covered) == js.job.ShardingTotalCount {
		return nil
	}
	f := uniqueFire(js, now)
	var recs []*model.TaskRecord
	for shard := range js.job.ShardingTotalCount {
		if covered[shard] {
			continue
		}
		rec, err := t.createRunning(ctx, js, t.newRecord(js.job.JobName, f, shard, 0))
		if err != nil {
			return err
		}
		recs = append(recs, rec)
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

// start is step (c): hand tasks whose running nodes exist to the executor
// in one Launch, made by the launch worker; handleLaunched records that the
// executor accepted them. Tasks already with the worker are skipped.
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
	}
	if len(b.tasks) > 0 {
		t.launches.push(b)
	}
	return nil
}

// launchBatch is one Launch call; launchResult its outcome.
type launchBatch struct {
	job   string
	tasks []executor.Task
}

type launchResult struct {
	launchBatch
	err error
}

func (t *term) startLaunchWorker() {
	t.launches = newQueue[launchBatch]()
	t.launched = newQueue[launchResult]()
	ctx, cancel := context.WithCancel(context.Background())
	t.workerCancel = cancel
	t.workerDone = make(chan struct{})
	go func() {
		defer close(t.workerDone)
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.launches.notify:
			}
			for _, b := range t.launches.drain() {
				lctx, lcancel := context.WithTimeout(ctx, opTimeout)
				err := t.ex.Launch(lctx, b.tasks)
				lcancel()
				t.launched.push(launchResult{b, err})
				if ctx.Err() != nil {
					return
				}
			}
		}
	}()
}

func (t *term) stopLaunchWorker() {
	if t.workerCancel == nil {
		return
	}
	t.workerCancel()
	<-t.workerDone
}

// handleLaunched records the tasks the executor accepted as launched. A
// failed Launch is logged; its tasks stay unconfirmed and are launched again
// on the next tick (Launch is idempotent per task ID).
func (t *term) handleLaunched(ctx context.Context) error {
	for _, res := range t.launched.drain() {
		for _, task := range res.tasks {
			delete(t.inflight, task.ID)
		}
		if res.err != nil {
			t.log.Warn("launch failed; retrying on the next tick", "job", res.job, "tasks", len(res.tasks), "error", res.err)
			continue
		}
		js := t.jobs[res.job]
		if js == nil {
			continue
		}
		now := t.now()
		for _, task := range res.tasks {
			r := js.running[task.ID]
			if r == nil || !r.LaunchedAt.IsZero() {
				continue // ended, or its status said it runs, meanwhile
			}
			u := *r
			u.LaunchedAt = now
			u.UpdatedAt = now
			if err := t.setRunning(ctx, js, &u); err != nil {
				return err
			}
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
		JobParameter:       job.JobParameter,
		Command:            model.Command(job, app),
		AppURL:             app.AppURL,
		AppCacheEnable:     app.AppCacheEnable,
		CPUs:               job.CPUCount,
		MemoryMB:           job.MemoryMB,
		AppCPUs:            app.CPUCount,
		AppMemoryMB:        app.MemoryMB,
		Daemon:             job.JobExecutionType == model.Daemon,
	}
}

// Task record writes. Records have one writer, the term's loop, and every
// cross-term write is fenced, so they are written without version checks;
// the ready node is the one written with its version.

// createRunning is step (a) for one task: its running node. If it exists
// already (an earlier term got this far), that record is kept.
func (t *term) createRunning(ctx context.Context, js *jobState, rec *model.TaskRecord) (*model.TaskRecord, error) {
	if r, ok := js.running[rec.ID]; ok {
		return r, nil
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	path := runningPath(js.job.JobName, rec.ID)
	if _, err := t.w.Create(ctx, path, encode(rec)); err != nil {
		if !errors.Is(err, coord.ErrExists) {
			return nil, fmt.Errorf("create %s: %w", path, err)
		}
		var stored model.TaskRecord
		if _, ok, err := t.r.get(ctx, path, &stored); err != nil {
			return nil, err
		} else if ok {
			rec = &stored
		}
	}
	js.running[rec.ID] = rec
	return rec, nil
}

func (t *term) setRunning(ctx context.Context, js *jobState, rec *model.TaskRecord) error {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	path := runningPath(js.job.JobName, rec.ID)
	if _, err := t.w.Set(ctx, path, encode(rec), coord.AnyVersion); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	js.running[rec.ID] = rec
	return nil
}

func (t *term) deleteRunning(ctx context.Context, js *jobState, rec *model.TaskRecord) error {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	path := runningPath(js.job.JobName, rec.ID)
	if err := ignore(t.w.Delete(ctx, path, coord.AnyVersion), coord.ErrNotFound); err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	delete(js.running, rec.ID)
	return nil
}

func (t *term) createFailover(ctx context.Context, js *jobState, rec *model.TaskRecord) error {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	path := failoverPath(js.job.JobName, rec.ID)
	if err := ignore(func() error { _, err := t.w.Create(ctx, path, encode(rec)); return err }(), coord.ErrExists); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	js.failover[rec.ID] = rec
	return nil
}

func (t *term) deleteFailover(ctx context.Context, js *jobState, rec *model.TaskRecord) error {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	path := failoverPath(js.job.JobName, rec.ID)
	if err := ignore(t.w.Delete(ctx, path, coord.AnyVersion), coord.ErrNotFound); err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
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
