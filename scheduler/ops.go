package scheduler

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// The Service's writes: each is a request to the leader's loop (a method
// of Scheduler) and the term's op that serves it, so a new write is one
// pair here. Each op checks what needs the term's state, then writes in an
// order a crash can interrupt anywhere: the next term reads the store and
// completes or repeats the request's effect.

// onApp checks the name of the app a write is about, then runs op on the
// leader's loop; onJob is the same for jobs.
func (s *Scheduler) onApp(ctx context.Context, name string, op func(ctx context.Context, t *term) error) error {
	if err := model.ValidateName("appName", name, false); err != nil {
		return err
	}
	return s.write(ctx, op)
}

func (s *Scheduler) onJob(ctx context.Context, name string, op func(ctx context.Context, t *term) error) error {
	if err := model.ValidateName("jobName", name, true); err != nil {
		return err
	}
	return s.write(ctx, op)
}

func (s *Scheduler) RegisterApp(ctx context.Context, app model.App) error {
	app, err := app.Check()
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context, t *term) error { return t.registerApp(ctx, app) })
}

// UpdateApp applies the update to the stored app in the leader's loop, so
// that no other write comes between reading and writing it.
func (s *Scheduler) UpdateApp(ctx context.Context, u model.AppUpdate) error {
	return s.onApp(ctx, u.AppName, func(ctx context.Context, t *term) error { return t.updateApp(ctx, u) })
}

func (s *Scheduler) DeregisterApp(ctx context.Context, name string) error {
	return s.onApp(ctx, name, func(ctx context.Context, t *term) error { return t.deregisterApp(ctx, name) })
}

func (s *Scheduler) DisableApp(ctx context.Context, name string) error {
	return s.onApp(ctx, name, func(ctx context.Context, t *term) error { return t.setAppDisabled(ctx, name, true) })
}

func (s *Scheduler) EnableApp(ctx context.Context, name string) error {
	return s.onApp(ctx, name, func(ctx context.Context, t *term) error { return t.setAppDisabled(ctx, name, false) })
}

// RegisterJob is served by the loop with the registrations queued with it
// (term.registerJobs), their store writes in one batch.
func (s *Scheduler) RegisterJob(ctx context.Context, job model.Job) error {
	spec, err := job.Check()
	if err != nil {
		return err
	}
	return s.submit(ctx, request{register: &spec})
}

// UpdateJob applies the update to the stored job in the leader's loop, like
// UpdateApp.
func (s *Scheduler) UpdateJob(ctx context.Context, u model.JobUpdate) error {
	return s.onJob(ctx, u.JobName, func(ctx context.Context, t *term) error { return t.updateJob(ctx, u) })
}

func (s *Scheduler) DeregisterJob(ctx context.Context, name string) error {
	return s.onJob(ctx, name, func(ctx context.Context, t *term) error { return t.deregisterJob(ctx, name) })
}

// TriggerJob puts one run of a TRANSIENT job on its ready queue now, with
// the trigger's own job parameter if it has one.
func (s *Scheduler) TriggerJob(ctx context.Context, tr model.Trigger) error {
	if err := tr.Check(); err != nil {
		return err
	}
	return s.onJob(ctx, tr.JobName, func(ctx context.Context, t *term) error { return t.triggerJob(ctx, tr) })
}

func (s *Scheduler) DisableJob(ctx context.Context, name string) error {
	return s.onJob(ctx, name, func(ctx context.Context, t *term) error { return t.setJobDisabled(ctx, name, true) })
}

func (s *Scheduler) EnableJob(ctx context.Context, name string) error {
	return s.onJob(ctx, name, func(ctx context.Context, t *term) error { return t.setJobDisabled(ctx, name, false) })
}

func (s *Scheduler) Reconcile(ctx context.Context, explicit bool) error {
	return s.write(ctx, func(ctx context.Context, t *term) error { return t.reconcile(ctx, explicit) })
}

func (t *term) registerApp(ctx context.Context, app model.App) error {
	if _, ok := t.apps[app.AppName]; ok {
		return fmt.Errorf("%w: app %q", model.ErrExists, app.AppName)
	}
	if _, bad := t.badApps[app.AppName]; bad {
		// Registering replaces a quarantined configuration: the
		// operator's way to fix it.
		if err := t.st.SetApp(ctx, app); err != nil {
			return err
		}
		delete(t.badApps, app.AppName)
	} else if err := t.st.CreateApp(ctx, app); err != nil {
		return err
	}
	t.apps[app.AppName] = app
	t.index.setApp(app)
	now := t.now()
	for _, js := range t.jobs {
		if js.job.AppName == app.AppName {
			t.schedule(js, now)
		}
	}
	return nil
}

func (t *term) updateApp(ctx context.Context, u model.AppUpdate) error {
	stored, ok := t.apps[u.AppName]
	bad, quarantined := t.badApps[u.AppName]
	switch {
	case quarantined && bad != nil:
		stored = *bad // the update fixes the stored configuration
	case quarantined:
		stored = model.NewApp() // undecodable: the update is all there is
	case !ok:
		return fmt.Errorf("%w: app %q", model.ErrNotFound, u.AppName)
	}
	app, err := u.Apply(stored)
	if err == nil {
		app, err = app.Check()
	}
	if err != nil {
		return err
	}
	if app.AppName != u.AppName {
		return &model.ValidationError{Field: "appName", Reason: "cannot be changed"}
	}
	for _, name := range sortedKeys(t.jobs) {
		js := t.jobs[name]
		if js.job.AppName == app.AppName && model.Command(js.job, app) == "" {
			return &model.ValidationError{Field: "bootstrapScript", Reason: fmt.Sprintf("is empty, and job %q has no scriptCommandLine", name)}
		}
	}
	if err := t.st.SetApp(ctx, app); err != nil {
		return err
	}
	t.apps[app.AppName] = app
	t.index.setApp(app)
	if quarantined {
		delete(t.badApps, app.AppName)
		now := t.now()
		for _, name := range sortedKeys(t.jobs) {
			if js := t.jobs[name]; js.job.AppName == app.AppName {
				t.schedule(js, now)
			}
		}
	}
	return nil
}

func (t *term) deregisterApp(ctx context.Context, name string) error {
	_, quarantined := t.badApps[name]
	if _, ok := t.apps[name]; !ok && !quarantined {
		return fmt.Errorf("%w: app %q", model.ErrNotFound, name)
	}
	for _, job := range sortedKeys(t.jobs) {
		if t.jobs[job].job.AppName == name {
			if err := t.deregisterJob(ctx, job); err != nil {
				return err
			}
		}
	}
	if err := t.st.DeleteApp(ctx, name); err != nil {
		return err
	}
	delete(t.apps, name)
	delete(t.badApps, name)
	delete(t.disabledApps, name)
	t.index.removeApp(name)
	return nil
}

func (t *term) setAppDisabled(ctx context.Context, name string, disabled bool) error {
	if _, bad := t.badApps[name]; bad {
		return errQuarantined(model.KindApp, name)
	}
	if _, ok := t.apps[name]; !ok {
		return fmt.Errorf("%w: app %q", model.ErrNotFound, name)
	}
	if t.disabledApps[name] == disabled {
		return nil
	}
	if err := t.st.SetAppDisabled(ctx, name, disabled, t.now()); err != nil {
		return err
	}
	t.disabledApps[name] = disabled
	t.index.setAppDisabled(name, disabled)
	for _, job := range sortedKeys(t.jobs) {
		js := t.jobs[job]
		if js.job.AppName != name {
			continue
		}
		var err error
		if disabled {
			err = t.deactivate(ctx, js)
		} else if t.active(js) {
			err = t.resume(ctx, js)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (t *term) setJobDisabled(ctx context.Context, name string, disabled bool) error {
	if _, bad := t.badJobs[name]; bad {
		return errQuarantined(model.KindJob, name)
	}
	js, ok := t.jobs[name]
	if !ok {
		return fmt.Errorf("%w: job %q", model.ErrNotFound, name)
	}
	if js.disabled == disabled {
		return nil
	}
	if err := t.st.SetJobDisabled(ctx, name, disabled, t.now()); err != nil {
		return err
	}
	js.disabled = disabled
	t.index.setJobDisabled(name, disabled)
	if disabled {
		return t.deactivate(ctx, js)
	}
	if t.active(js) {
		return t.resume(ctx, js)
	}
	return nil
}

// deactivate stops producing a job and kills its running tasks; its pending
// fires stay queued until it is enabled again.
func (t *term) deactivate(ctx context.Context, js *jobState) error {
	t.unschedule(js)
	for _, id := range sortedKeys(js.running) {
		if r := js.running[id]; !r.KillRequested {
			if err := t.killRunning(ctx, js, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// resume starts producing a job again from now: the fires of the time it
// was disabled are not back-filled.
func (t *term) resume(ctx context.Context, js *jobState) error {
	now := t.now()
	if js.job.JobExecutionType == model.Transient && js.sched != nil {
		rn := js.ready
		rn.LastFire = now
		if err := t.setReady(ctx, js, rn); err != nil {
			return err
		}
	}
	t.schedule(js, now)
	return nil
}

// checkNewJob refuses a registration that the term's state rules out: the
// job exists, or is taken by a registration served before it in the same
// group, or its app does not have it.
func (t *term) checkNewJob(job model.Job, taken map[string]bool) error {
	if _, ok := t.jobs[job.JobName]; ok || taken[job.JobName] {
		return fmt.Errorf("%w: job %q", model.ErrExists, job.JobName)
	}
	app, ok := t.apps[job.AppName]
	return model.ValidateAgainstApp(job, app, ok)
}

// updateJob replaces a job's configuration and reschedules it at once. If
// its schedule changed, production restarts from now (fires the old cron
// owed are not back-filled under the new one). A job that becomes DAEMON
// drops its pending fires; running tasks keep running.
func (t *term) updateJob(ctx context.Context, u model.JobUpdate) error {
	if bad, quarantined := t.badJobs[u.JobName]; quarantined {
		return t.updateQuarantinedJob(ctx, u, bad)
	}
	js, ok := t.jobs[u.JobName]
	if !ok {
		return fmt.Errorf("%w: job %q", model.ErrNotFound, u.JobName)
	}
	job, err := u.Apply(js.job)
	if err != nil {
		return err
	}
	if job.JobName != u.JobName {
		return &model.ValidationError{Field: "jobName", Reason: "cannot be changed"}
	}
	spec, err := job.Check()
	if err != nil {
		return err
	}
	job = spec.Job
	app, ok := t.apps[job.AppName]
	if err := model.ValidateAgainstApp(job, app, ok); err != nil {
		return err
	}
	if err := t.st.SetJob(ctx, job); err != nil {
		return err
	}
	old := js.job
	js.setSpec(spec)
	t.index.setJob(job, js.disabled)
	rn := js.ready
	changed := false
	if job.JobExecutionType == model.Daemon && len(rn.FireTimes) > 0 {
		rn.FireTimes, changed = nil, true
	}
	if job.JobExecutionType == model.Transient && (old.Cron != job.Cron || old.TimeZone != job.TimeZone || old.JobExecutionType != job.JobExecutionType) {
		rn.LastFire, changed = t.now(), true
	}
	if changed {
		if err := t.setReady(ctx, js, rn); err != nil {
			return err
		}
	}
	if !t.active(js) {
		return t.deactivate(ctx, js)
	}
	t.schedule(js, t.now())
	return nil
}

// deregisterJob kills a job's tasks and removes all of it, its
// configuration last: a deregistration interrupted by a crash leaves a job
// that can be deregistered again.
func (t *term) deregisterJob(ctx context.Context, name string) error {
	if _, bad := t.badJobs[name]; bad {
		return t.deregisterQuarantinedJob(ctx, name)
	}
	js, ok := t.jobs[name]
	if !ok {
		return fmt.Errorf("%w: job %q", model.ErrNotFound, name)
	}
	t.unschedule(js)
	for _, id := range sortedKeys(js.running) {
		t.kill(ctx, id)
	}
	if err := t.st.DeleteJob(ctx, name); err != nil {
		return err
	}
	delete(t.jobs, name)
	t.index.removeJob(name)
	t.cfg.Events.Emit(events.Event{Kind: events.JobRemoved, Time: t.now(), Term: t.l.Token(), Job: name})
	return nil
}

// triggerJob queues one run of a TRANSIENT job now. Its fire time is the
// current millisecond, moved on by a millisecond while another run of the
// job has it.
func (t *term) triggerJob(ctx context.Context, tr model.Trigger) error {
	name := tr.JobName
	js, ok := t.jobs[name]
	if _, bad := t.badJobs[name]; bad {
		return errQuarantined(model.KindJob, name)
	}
	switch {
	case !ok:
		return fmt.Errorf("%w: job %q", model.ErrNotFound, name)
	case js.job.JobExecutionType != model.Transient:
		return fmt.Errorf("%w: job %q is %s; only TRANSIENT jobs can be triggered", model.ErrConflict, name, js.job.JobExecutionType)
	case !t.active(js):
		return fmt.Errorf("%w: job %q or its app is disabled", model.ErrConflict, name)
	case len(js.ready.FireTimes) >= t.cfg.QueueLimit:
		return fmt.Errorf("%w: the ready queue of job %q is full (%d)", model.ErrConflict, name, t.cfg.QueueLimit)
	case tr.JobParameter != nil && pendingParameters(js.ready) >= model.MaxPendingTriggerParameters:
		return fmt.Errorf("%w: job %q has %d triggered runs with a parameter waiting already", model.ErrConflict, name, model.MaxPendingTriggerParameters)
	}
	rn := js.ready
	f := uniqueFire(js, t.now())
	rn.FireTimes = append(slices.Clone(rn.FireTimes), f)
	slices.SortFunc(rn.FireTimes, time.Time.Compare)
	if tr.JobParameter != nil {
		rn = rn.WithParameter(f, *tr.JobParameter)
	}
	if err := t.setReady(ctx, js, rn); err != nil {
		return err
	}
	t.emitFires(name, &stagedFires{produced: []time.Time{f}})
	return nil
}

// pendingParameters counts the pending fires of rn that have a parameter.
func pendingParameters(rn store.Ready) int {
	n := 0
	for _, f := range rn.FireTimes {
		if rn.Parameter(f) != nil {
			n++
		}
	}
	return n
}

// updateQuarantinedJob applies an update to a quarantined job's stored
// configuration (to the defaults if it did not decode) and, if the result
// is valid, replaces it: updating is how an operator fixes a job without
// losing its state.
func (t *term) updateQuarantinedJob(ctx context.Context, u model.JobUpdate, bad *model.Job) error {
	base := model.NewJob()
	if bad != nil {
		base = *bad
	}
	job, err := u.Apply(base)
	if err != nil {
		return err
	}
	if job.JobName != u.JobName {
		return &model.ValidationError{Field: "jobName", Reason: "cannot be changed"}
	}
	spec, err := job.Check()
	if err != nil {
		return err
	}
	app, ok := t.apps[spec.Job.AppName]
	if err := model.ValidateAgainstApp(spec.Job, app, ok); err != nil {
		return err
	}
	return t.replaceQuarantinedJob(ctx, spec, false)
}

// replaceQuarantinedJob stores a valid configuration over a quarantined
// one and adopts the state the store has of the job: its running and
// failover tasks, and (unless it is registered anew) its disable flag. Its
// ready node is made anew, registered now, so the fix does not back-fill
// the fires of the time it was quarantined.
func (t *term) replaceQuarantinedJob(ctx context.Context, spec model.JobSpec, register bool) error {
	name := spec.Job.JobName
	if err := t.st.SetJob(ctx, spec.Job); err != nil {
		return err
	}
	delete(t.badJobs, name)
	now := t.now()
	rn, err := t.st.CreateReady(ctx, name, now)
	if err != nil {
		return err
	}
	if register {
		if err := t.st.SetJobDisabled(ctx, name, false, now); err != nil {
			return err
		}
	}
	disabled, err := t.st.JobDisabled(ctx, name)
	if err != nil {
		return err
	}
	running, err := t.st.Running(ctx)
	if err != nil {
		return err
	}
	failover, err := t.st.Failover(ctx)
	if err != nil {
		return err
	}
	js := t.newLoadedJob(spec, rn, disabled, running[name], failover[name])
	t.jobs[name] = js
	t.index.setJob(spec.Job, disabled)
	if !t.active(js) {
		return t.deactivate(ctx, js)
	}
	t.schedule(js, now)
	return nil
}

// deregisterQuarantinedJob removes a quarantined job and its state, killing
// the tasks the store says run, as deregisterJob does for a valid one.
func (t *term) deregisterQuarantinedJob(ctx context.Context, name string) error {
	running, err := t.st.Running(ctx)
	if err != nil {
		return err
	}
	for _, rec := range running[name] {
		t.kill(ctx, rec.ID)
	}
	if err := t.st.DeleteJob(ctx, name); err != nil {
		return err
	}
	delete(t.badJobs, name)
	t.index.removeJob(name)
	return nil
}
