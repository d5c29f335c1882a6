package scheduler

import (
	"context"
	"time"

	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// Group commit. The loop serves the Service's writes one at a time, and
// each waits on its store round trips, so under concurrent clients the
// others queue meanwhile. When the loop takes a request it takes those
// queued behind it too and serves them in the order they came; the job
// registrations that come one after another among them are served
// together: each is checked on its own against the term's state and the
// registrations before it, and those that pass are written in one fenced
// batch (store.Writer.CreateJobs; more than 25 take several), and enter the
// term's state only once written. A refusal is its own request's answer.
// Only a failure of the store, which ends the term, fails the requests of
// a batch together; a batch is atomic, so it is then written whole (the
// next term loads it) or not at all (a lost term's fence refuses it). The
// launcher runs once for the group, not once per request.

// maxGroup bounds the requests served in one turn of the loop, so that
// statuses and fires are not held up behind a flood of writes.
const maxGroup = 64

// serveGroup serves first and the requests queued behind it.
func (t *term) serveGroup(ctx context.Context, first request) error {
	return t.serveRequests(ctx, t.gather(first))
}

// serveRequests serves a group in order, each run of registrations in it
// together. An error ends the term; the requests it did not answer are
// answered by do, with model.ErrNotLeader, once the loop is gone: nothing
// of them was written.
func (t *term) serveRequests(ctx context.Context, group []request) error {
	for len(group) > 0 {
		n := 1
		var err error
		if group[0].register != nil {
			for n < len(group) && group[n].register != nil {
				n++
			}
			err = t.registerJobs(ctx, group[:n])
		} else {
			err = t.serveOne(ctx, group[0])
		}
		if err != nil {
			return err
		}
		group = group[n:]
	}
	return nil
}

// gather returns first and the requests queued behind it, up to maxGroup.
func (t *term) gather(first request) []request {
	group := []request{first}
	for len(group) < maxGroup {
		select {
		case req := <-t.reqs:
			group = append(group, req)
		default:
			return group
		}
	}
	return group
}

// serveOne runs one request's op and answers it; an error that leaves the
// term's memory out of step with the store is returned.
func (t *term) serveOne(ctx context.Context, req request) error {
	opCtx, cancel := opCtx(ctx)
	err := req.op(opCtx, t)
	cancel()
	req.reply <- userError(err)
	if fatal(err) {
		return err
	}
	t.launchAll = true
	return nil
}

// registerJobs serves a run of registrations: the refused ones are
// answered at once, the others are written in one batch, except a
// quarantined job's, whose stored state replaceQuarantinedJob adopts one
// job at a time.
func (t *term) registerJobs(ctx context.Context, reqs []request) error {
	taken := map[string]bool{}
	var batch, quarantined []request
	for _, req := range reqs {
		job := req.register.Job
		if err := t.checkNewJob(job, taken); err != nil {
			req.reply <- err
			continue
		}
		taken[job.JobName] = true
		if _, bad := t.badJobs[job.JobName]; bad {
			quarantined = append(quarantined, req)
		} else {
			batch = append(batch, req)
		}
	}
	if err := t.createJobs(ctx, batch); err != nil {
		return err
	}
	for _, req := range quarantined {
		spec := *req.register
		replace := request{reply: req.reply, op: func(ctx context.Context, t *term) error {
			return t.replaceQuarantinedJob(ctx, spec, true)
		}}
		if err := t.serveOne(ctx, replace); err != nil {
			return err
		}
	}
	return nil
}

// createJobs writes checked registrations in one batch and answers each
// with its own outcome; the jobs written join the term's state.
func (t *term) createJobs(ctx context.Context, reqs []request) error {
	if len(reqs) == 0 {
		return nil
	}
	jobs := make([]model.Job, len(reqs))
	for i, req := range reqs {
		jobs[i] = req.register.Job
	}
	now := t.now()
	opCtx, cancel := opCtx(ctx)
	res, err := t.st.CreateJobs(opCtx, jobs, now)
	cancel()
	for i, req := range reqs {
		if res[i].Err != nil {
			req.reply <- userError(res[i].Err)
			continue
		}
		t.addJob(*req.register, res[i].Ready, now)
		req.reply <- nil
	}
	if fatal(err) {
		return err
	}
	return nil
}

// addJob makes a registered job part of the term's state and schedules it.
// Only a DAEMON job has something to launch at once: a TRANSIENT one has
// nothing ready until its first fire, which the producer hands to the
// launcher itself.
func (t *term) addJob(spec model.JobSpec, rn store.Ready, now time.Time) {
	js := newJobState(spec)
	js.ready = rn
	t.jobs[spec.Job.JobName] = js
	t.index.setJob(spec.Job, false)
	t.schedule(js, now)
	if spec.Job.JobExecutionType == model.Daemon {
		t.launchJobs[spec.Job.JobName] = true
	}
}
