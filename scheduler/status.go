package scheduler

import (
	"context"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// handleStatus applies one status update to the task's running record:
//
//   - STAGING, RUNNING: the record is updated.
//   - FINISHED: the record goes; a DAEMON task goes to the failover queue
//     to be relaunched (after RetryBackoff).
//   - FAILED, TIMED_OUT: relaunched as the next attempt while attempts < retries;
//     then relaunched if the job fails over or is a DAEMON; else the
//     record goes. Either relaunch waits on the failover queue for
//     retryDelay: RetryBackoff doubled per attempt, up to MaxRetryBackoff.
//   - LOST, UNKNOWN, KILLED not asked for: to the failover queue if the job
//     fails over or is a DAEMON; else the record goes.
//   - KILLED (or any end) of a task the scheduler killed: the record goes.
//
// A status of a task the store does not know as running is ignored if it
// is an end, and the task killed otherwise.
func (t *term) handleStatus(ctx context.Context, st executor.Status) error {
	ref, err := model.ParseTaskID(st.TaskID)
	if err != nil {
		t.log.Warn("status of a task that is not ours", "task", st.TaskID, "state", st.State)
		return nil
	}
	js := t.jobs[ref.Job]
	if _, bad := t.badJobs[ref.Job]; bad && js == nil {
		// A quarantined job's tasks are left alone: the configuration
		// they were started with may be fixed and adopted.
		t.log.Debug("status of a quarantined job's task", "task", st.TaskID, "state", st.State)
		return nil
	}
	var rec *model.TaskRecord
	if js != nil {
		rec = js.running[st.TaskID]
	}
	if rec == nil {
		if !st.State.Terminal() {
			t.log.Warn("killing a task the store does not know as running", "task", st.TaskID, "state", st.State)
			t.kill(ctx, st.TaskID)
		}
		return nil
	}
	log := t.log.With("job", ref.Job, "task", st.TaskID, "state", st.State)
	daemon := js.job.JobExecutionType == model.Daemon
	failover := js.job.Failover || daemon
	now := t.now()

	if !st.State.Terminal() {
		if rec.State == st.State && rec.Host == st.Host && rec.Message == st.Message {
			return nil
		}
		u := *rec
		u.State, u.Host, u.Message, u.UpdatedAt = st.State, st.Host, st.Message, now
		if u.LaunchedAt.IsZero() {
			u.LaunchedAt = now // the executor knows it: it was launched
		}
		if st.State == executor.StateRunning && rec.State != executor.StateRunning {
			t.emitRun(events.Running, &u, st, now, "")
		}
		t.stageSetRunning(js, &u)
		return nil
	}
	t.launchJobs[js.job.JobName] = true
	ended := *rec
	ended.State, ended.Message, ended.UpdatedAt = st.State, st.Message, now
	if st.Host != "" {
		ended.Host = st.Host
	}

	failed := st.State == executor.StateFailed || st.State == executor.StateTimedOut
	outcome := events.Done
	switch {
	case rec.KillRequested:
		log.Debug("task killed as asked")
		t.stageDeleteRunning(js, rec)
	case st.State == executor.StateFinished && daemon && t.active(js):
		log.Info("daemon task ended; relaunching it")
		outcome = t.toFailover(js, rec, ended, now.Add(t.cfg.RetryBackoff))
	case st.State == executor.StateFinished:
		t.stageDeleteRunning(js, rec)
	case st.State == executor.StateKilled && !t.active(js):
		// Killed by an earlier term's disable, before it could record so.
		t.stageDeleteRunning(js, rec)
	case failed && rec.Attempt < js.job.Retries && t.active(js):
		// Through the failover queue, whose NotBefore is stored: the
		// back-off holds across a leader failover, and a task that fails at
		// once cannot start processes as fast as the executor reports. A
		// task stopped at its timeout is retried as a failure is.
		delay := retryDelay(t.cfg.RetryBackoff, rec.Attempt)
		log.Info("task failed; retrying after a back-off", "attempt", rec.Attempt+1, "retries", js.job.Retries, "backoff", delay, "message", st.Message)
		if outcome = t.toFailover(js, rec, ended, now.Add(delay)); outcome == events.Failover {
			outcome = events.Retry
		}
	case failover:
		var notBefore = now
		if failed {
			notBefore = now.Add(retryDelay(t.cfg.RetryBackoff, rec.Attempt))
		}
		log.Warn("task ended; to the failover queue", "message", st.Message)
		outcome = t.toFailover(js, rec, ended, notBefore)
	default:
		log.Warn("task ended and is given up", "message", st.Message)
		t.stageDeleteRunning(js, rec)
		outcome = events.GivenUp
	}
	t.emitRun(events.Ended, &ended, st, now, outcome)
	return nil
}

// emitRun tells the observers of a task run's start or end.
func (t *term) emitRun(kind events.Kind, rec *model.TaskRecord, st executor.Status, now time.Time, outcome events.Outcome) {
	ev := events.Event{
		Kind: kind, Time: now, Term: t.l.Token(),
		Job: rec.Job, TaskID: rec.ID, Shard: rec.Shard, Attempt: rec.Attempt, FireTime: rec.FireTime,
		Host: rec.Host, State: st.State, ExitCode: st.ExitCode, Message: st.Message,
		StartedAt: rec.LaunchedAt, Outcome: outcome,
	}
	if kind == events.Running {
		ev.Lag = now.Sub(rec.FireTime)
	} else {
		ev.EndedAt = now
	}
	t.cfg.Events.Emit(ev)
}

// retryDelay is how long the relaunch of a task that failed in attempt
// (0-based) waits: base doubled per attempt, at most MaxRetryBackoff. One
// fire of a job whose task fails at once so starts a handful of processes
// a minute at most, not one per status (331 in 3 s, once).
func retryDelay(base time.Duration, attempt int) time.Duration {
	d := base
	for range max(0, attempt) {
		if d >= MaxRetryBackoff/2 {
			return MaxRetryBackoff
		}
		d *= 2
	}
	return min(d, MaxRetryBackoff)
}

// toFailover moves a task from running to the failover queue, in one
// batch, and says so (events.Failover). A full failover queue drops the
// task (events.GivenUp).
func (t *term) toFailover(js *jobState, rec *model.TaskRecord, ended model.TaskRecord, notBefore time.Time) events.Outcome {
	if len(js.failover) >= t.cfg.QueueLimit {
		t.log.Error("failover queue full; task dropped", "job", js.job.JobName, "task", rec.ID, "queue_limit", t.cfg.QueueLimit)
		t.stageDeleteRunning(js, rec)
		return events.GivenUp
	}
	ended.NotBefore = notBefore
	ended.LaunchedAt = rec.LaunchedAt
	t.stage(store.MoveToFailoverWrite(rec, &ended))
	delete(js.running, rec.ID)
	js.addFailover(&ended)
	return events.Failover
}

// Batched task records. The statuses the executor has queued are handled
// together, with the launches the workers have confirmed meanwhile
// (handleExecutor): each updates the term's memory at once and
// stages its write of the task records, and flushTasks writes them all, in
// their order, in as few fenced batches as fit (store.Writer.WriteTasks),
// instead of a round trip each. Nothing outside the loop acts on the
// staged memory before the write: the loop flushes before it does
// anything else, and a failed write ends the term, whose memory is
// dropped. What a crash leaves of each task's record is what a crash
// between its writes made one at a time could leave (a set a later write
// replaces is left out: nobody reads it in between): the next term
// reconciles the rest, as it always did.

// maxStatuses bounds the statuses handled in one turn of the loop, so that
// fires and requests are not held up behind a flood of statuses: their
// writes are about two batches, a few milliseconds.
const maxStatuses = 2 * coord.MaxBatchOps

// handleExecutor handles what the executor has queued for the loop: the
// statuses (first, if not nil, read already by the loop, and those queued
// behind it) and the launch workers' results, then writes what they
// changed together. A task's launch confirmation and its statuses may be
// handled in either order: a confirmation of a task a status has marked
// launched, or ended, writes nothing, and one followed by the task's end
// is left out of the writes (WriteTasks).
func (t *term) handleExecutor(ctx context.Context, first *executor.Status, statuses <-chan executor.Status) error {
	n := 0
	if first != nil {
		if err := t.handleStatus(ctx, *first); err != nil {
			return err
		}
		n++
	}
drain:
	for ; n < maxStatuses; n++ {
		select {
		case st, ok := <-statuses:
			if !ok {
				break drain // the loop's next turn sees the stream closed
			}
			if err := t.handleStatus(ctx, st); err != nil {
				return err
			}
		default:
			break drain
		}
	}
	if err := t.handleLaunched(); err != nil {
		return err
	}
	return t.flushTasks(ctx)
}

// stage queues a task record write for flushTasks.
func (t *term) stage(w store.TaskWrite) { t.taskWrites = append(t.taskWrites, w) }

func (t *term) stageSetRunning(js *jobState, rec *model.TaskRecord) {
	t.stage(store.SetRunningWrite(rec))
	js.addRunning(rec)
}

func (t *term) stageDeleteRunning(js *jobState, rec *model.TaskRecord) {
	t.stage(store.DeleteRunningWrite(rec))
	delete(js.running, rec.ID)
}

// flushTasks writes the staged task record writes.
func (t *term) flushTasks(ctx context.Context) error {
	if len(t.taskWrites) == 0 {
		return nil
	}
	writes := t.taskWrites
	t.taskWrites = nil
	return t.st.WriteTasks(ctx, writes)
}
