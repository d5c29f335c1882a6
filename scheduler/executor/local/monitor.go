package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// taskRecord is what one executor remembers of one task: only what it has
// reported, never the task's state (that is in the task directory). Its
// mutex serialises the judgements and reports about the task, which keeps
// the statuses of one task in order.
type taskRecord struct {
	id string
	mu sync.Mutex
	// The fields below are guarded by mu.
	dropped      bool           // removed from Executor.tasks; lock anew
	sentAny      bool           // a status was reported
	sent         executor.State // the last state reported
	terminalSent bool           // the final state was reported; never again
	termSignaled bool           // this executor sent SIGTERM for a kill or a timeout
	lastErr      string         // last judge error logged, to log each once
	// running is the last judgement of the task, made at runningAt, while
	// it was RUNNING and RUNNING was the last thing reported: a Reconcile
	// right after another answers from it (see Reconcile). Zero once
	// anything else was judged or reported. reconciledAt is when a
	// Reconcile last judged the task: the monitor leaves it alone for a
	// poll interval after that.
	running      judgement
	runningAt    time.Time
	reconciledAt time.Time
}

// keepRunning remembers j, made at `at`, if it is a RUNNING judgement and
// RUNNING the last state reported; rec.mu is held, after report.
func (rec *taskRecord) keepRunning(j judgement, at time.Time) {
	if j.state == executor.StateRunning && !rec.dropped && rec.sentAny && rec.sent == executor.StateRunning {
		rec.running, rec.runningAt = j, at
	}
}

// pendingKill is a SIGKILL due at a time (KillGrace after the SIGTERM).
type pendingKill struct {
	pid pidFile
	at  time.Time
}

// lockRecord returns the task's record, locked, creating it if need be.
func (e *Executor) lockRecord(id string) *taskRecord {
	for {
		e.mu.Lock()
		rec := e.tasks[id]
		if rec == nil {
			rec = &taskRecord{id: id}
			e.tasks[id] = rec
		}
		e.mu.Unlock()
		// Never wait for a record's lock while holding e.mu: holders of a
		// record's lock take e.mu (dropRecord, setWatching, terminate).
		rec.mu.Lock()
		if !rec.dropped {
			return rec
		}
		rec.mu.Unlock()
	}
}

// dropRecord forgets a task that has no directory; rec.mu is held.
func (e *Executor) dropRecord(rec *taskRecord) {
	rec.dropped = true
	e.mu.Lock()
	if e.tasks[rec.id] == rec {
		delete(e.tasks, rec.id)
	}
	delete(e.watched, rec.id)
	e.mu.Unlock()
}

// setWatching adds or removes a task from the monitor's set; rec.mu is held.
func (e *Executor) setWatching(rec *taskRecord, on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if on {
		e.watched[rec.id] = rec
	} else {
		delete(e.watched, rec.id)
	}
}

// report sends what a judgement says, if it is news, and watches the task
// while it is not terminal; rec.mu is held. always reports even an
// unchanged state (an idempotent Launch); reconcile marks the answer to a
// Reconcile, which is always given. A terminal state is reported on its own
// once per executor, so a status nobody asked for is never repeated.
func (e *Executor) report(rec *taskRecord, j judgement, always, reconcile bool) {
	rec.running, rec.runningAt = judgement{}, time.Time{}
	if !reconcile {
		rec.reconciledAt = time.Time{}
	}
	if j.state == executor.StateUnknown {
		if reconcile {
			e.emit(rec.id, j, true)
		}
		e.dropRecord(rec)
		return
	}
	switch {
	case reconcile:
	case rec.terminalSent:
		return
	case always:
	case rec.sentAny && stateRank(j.state) <= stateRank(rec.sent):
		return
	}
	e.emit(rec.id, j, reconcile)
	rec.sentAny, rec.sent = true, j.state
	if !j.terminal() {
		e.setWatching(rec, true)
		return
	}
	e.setWatching(rec, false)
	if !rec.terminalSent {
		rec.terminalSent = true
		e.onTerminal(rec, j)
	}
}

// onTerminal cleans up after a task that ended; rec.mu is held.
func (e *Executor) onTerminal(rec *taskRecord, j judgement) {
	log := e.log.With("task_id", rec.id, "state", j.state)
	if j.message != "" {
		log = log.With("message", j.message)
	}
	log.Info("task ended")
	// The last output since the last poll is capped too.
	if err := e.rotateOutput(e.taskDir(rec.id)); err != nil {
		log.Warn("cannot cap task output", "error", err)
	}
	// A lost task's wrapper is gone, but what it started may run on. The
	// scheduler will run a new attempt; the remains of this one must not
	// run beside it.
	if j.pid == nil || j.pid.NeverStarted {
		return
	}
	switch j.state {
	case executor.StateLost:
		if err := e.host.signalGroup(*j.pid, syscall.SIGKILL); err != nil {
			log.Warn("cannot kill the remains of a lost task", "error", err)
		}
	case executor.StateKilled, executor.StateTimedOut:
		// The wrapper died of the SIGTERM, but what ignores SIGTERM in its
		// group still runs. The executor that sent it has the SIGKILL
		// scheduled; one that adopts the task (its predecessor closed
		// within KillGrace) schedules it from the marker's time.
		if rec.termSignaled {
			return
		}
		if at, ok := stopAsked(e.taskDir(rec.id)); ok {
			e.scheduleKill(rec.id, *j.pid, at.Add(e.cfg.KillGrace))
			e.poke()
		}
	}
}

// scheduleKill makes a SIGKILL of the task's group due at `at`, unless one
// is due earlier already: a kill asked for while the task is being stopped
// for its timeout (or the other way round) never puts the SIGKILL off.
func (e *Executor) scheduleKill(id string, p pidFile, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if k, ok := e.kills[id]; ok && k.at.Before(at) {
		return
	}
	e.kills[id] = pendingKill{pid: p, at: at}
}

// Kill stops a task: it writes the killed marker (so that every executor
// reports the task KILLED, and a launcher still starting it gives up), sends
// SIGTERM to its process group and, KillGrace later, SIGKILL. A task without
// a directory is unknown: nothing to do.
func (e *Executor) Kill(ctx context.Context, taskID string) error {
	end, err := e.begin()
	if err != nil {
		return err
	}
	defer end()
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := e.taskDir(taskID)
	if _, err := os.Stat(dir); notExist(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("kill %s: %w", taskID, err)
	}
	rec := e.lockRecord(taskID)
	defer rec.mu.Unlock()
	log := e.log.With("task_id", taskID)
	if rec.terminalSent {
		return nil // its final status is out already
	}
	// A task that has ended keeps its verdict (a marker now would turn a
	// finished or lost task into a killed one); its final status follows.
	if j, err := e.judge(dir); err != nil {
		return fmt.Errorf("kill %s: %w", taskID, err)
	} else if j.terminal() {
		e.report(rec, j, false, false)
		return nil
	}

	now := time.Now().UTC()
	if gone, err := e.markKilled(dir, now); gone || err != nil {
		if err != nil {
			err = fmt.Errorf("kill %s: %w", taskID, err)
		}
		return err
	}
	j, err := e.judge(dir)
	if err != nil {
		return fmt.Errorf("kill %s: %w", taskID, err)
	}
	if j.state == executor.StateRunning && j.pid != nil {
		e.terminate(rec, *j.pid, now)
		log.Info("task killed", "pid", j.pid.Pid)
	}
	e.report(rec, j, false, false)
	e.poke()
	return nil
}

// markKilled writes the killed marker of the task in dir (its first write
// is the kill's time; a later kill keeps it) and forbids the start of a task
// not started yet: if the launcher was first, the pid file is there and the
// caller's signal reaches it. gone: the directory was removed meanwhile
// (retention), nothing to kill.
func (e *Executor) markKilled(dir string, now time.Time) (gone bool, err error) {
	if _, err := writeExclusive(filepath.Join(dir, fileKilled), []byte(now.Format(time.RFC3339Nano)+"\n")); err != nil {
		if notExist(err) {
			return true, nil
		}
		return false, err
	}
	if _, err := readPidFile(dir); notExist(err) {
		if _, err := e.markNeverStarted(dir, "killed before start"); err != nil {
			return false, err
		}
	}
	return false, nil
}

// terminate sends SIGTERM to the task's group and schedules SIGKILL at
// KillGrace after the kill was asked for; rec.mu is held.
func (e *Executor) terminate(rec *taskRecord, p pidFile, killedAt time.Time) {
	if err := e.host.signalGroup(p, syscall.SIGTERM); err != nil {
		e.log.Warn("cannot terminate task", "task_id", rec.id, "error", err)
	}
	rec.termSignaled = true
	e.scheduleKill(rec.id, p, killedAt.Add(e.cfg.KillGrace))
}

// stopIfDue carries out a stop of a running task that nobody carries out
// yet in this executor: a kill or a timeout an earlier executor (or one in
// another PID namespace) decided, or the task's own deadline, which it
// decides now. It is called wherever a running task is judged: the
// monitor's polls, and the adoptions (Reconcile, a repeated Launch), so
// that a task found past its deadline when a new term adopts it is stopped
// at once. rec.mu is held.
func (e *Executor) stopIfDue(rec *taskRecord, dir string, j judgement) {
	if j.state != executor.StateRunning || j.pid == nil || rec.termSignaled {
		return
	}
	log := e.log.With("task_id", rec.id)
	if j.stop != nil {
		log.Info("carrying out an earlier stop", "state", j.stop.state)
		e.terminate(rec, *j.pid, j.stop.at)
		return
	}
	p := *j.pid
	if p.Deadline.IsZero() || time.Now().Before(p.Deadline) {
		return
	}
	now := time.Now().UTC()
	// The marker first, as Kill's: every executor judges the task
	// TIMED_OUT from now on, whoever signals it. Exclusive, so that of two
	// executors that find the deadline passed, the first one's time
	// counts; a kill that came first meanwhile wins (stopOf).
	if _, err := writeExclusive(filepath.Join(dir, fileTimedOut), []byte(now.Format(time.RFC3339Nano)+"\n")); err != nil {
		if !notExist(err) {
			log.Warn("cannot mark the task timed out", "error", err)
		}
		return
	}
	at, ok := stopAsked(dir)
	if !ok {
		return // the directory went meanwhile (retention)
	}
	log.Info("task timed out; stopping it", "timeout", p.timeout(), "deadline", p.Deadline, "pid", p.Pid)
	e.terminate(rec, p, at)
	e.poke()
}

// Reconcile answers for the named tasks, or, with no names, for every task
// directory except those terminal for longer than Retention (which it
// removes). Running tasks are watched from then on.
//
// A task this executor found RUNNING in a Reconcile that ended less than a
// PollInterval before this one began (a term's explicit reconciliation,
// followed by its implicit one) is answered RUNNING from that judgement
// instead of its directory being read again, as long as nothing reported
// the task since: the answer is no staler than the monitor's view, and an
// end that came meanwhile is reported by the monitor's next poll, after
// the answer. Expired directories that no Reconcile can name (see
// reconcileAll) and tmp/ are left to the janitor.
func (e *Executor) Reconcile(ctx context.Context, taskIDs []string) error {
	end, err := e.begin()
	if err != nil {
		return err
	}
	defer end()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.ctx, cancel)
	defer stop()

	// The monitor rests meanwhile: this call judges the tasks it would.
	e.reconciling.Add(1)
	defer e.reconciling.Add(-1)
	began := time.Now()
	reuse := e.reconcileReuse(began)
	procs := newProcCache()
	var errs []error
	if len(taskIDs) == 0 {
		errs = e.reconcileAll(ctx, reuse, procs)
	} else {
		errs = reconcileEach(ctx, len(taskIDs), func(i int) error {
			return e.reconcileOne(taskIDs[i], e.taskDir(taskIDs[i]), false, reuse, procs)
		})
	}
	if err := ctx.Err(); err != nil {
		return e.closedOr(err)
	}
	e.mu.Lock()
	e.lastReconcile = reconcileSpan{began: began, ended: time.Now()}
	e.mu.Unlock()
	return errors.Join(errs...)
}

// reconcileSpan is when a Reconcile call ran.
type reconcileSpan struct{ began, ended time.Time }

// reconcileReuse returns since when a RUNNING judgement made by a
// Reconcile may answer a Reconcile beginning at now: the start of the
// last one, if it ended less than a PollInterval before now; zero (judge
// every task) otherwise.
func (e *Executor) reconcileReuse(now time.Time) time.Time {
	e.mu.Lock()
	last := e.lastReconcile
	e.mu.Unlock()
	if last.ended.IsZero() || now.Sub(last.ended) >= e.cfg.PollInterval {
		return time.Time{}
	}
	return last.began
}

// reconcileOne answers for one task. implicit skips (and removes) a task
// terminal for longer than Retention. A RUNNING judgement of a Reconcile
// made at or after reuse, and the last thing reported about the task,
// answers again without a read of the directory (see Reconcile).
func (e *Executor) reconcileOne(id, dir string, implicit bool, reuse time.Time, procs *procCache) error {
	rec := e.lockRecord(id)
	defer rec.mu.Unlock()
	judged := procs.at
	var j judgement
	if !reuse.IsZero() && !rec.runningAt.Before(reuse) && rec.running.state == executor.StateRunning &&
		rec.sentAny && !rec.terminalSent && rec.sent == executor.StateRunning {
		j, judged = rec.running, rec.runningAt
	} else {
		var err error
		if j, err = e.judgeIn(dir, procs); err != nil {
			return fmt.Errorf("reconcile %s: %w", id, err)
		}
	}
	if implicit && j.terminal() && time.Since(terminalTime(dir)) > e.cfg.Retention {
		e.removeTaskDir(dir)
		e.dropRecord(rec)
		return nil
	}
	e.stopIfDue(rec, dir, j)
	e.report(rec, j, true, true)
	rec.keepRunning(j, judged)
	rec.reconciledAt = time.Now()
	return nil
}

func (e *Executor) reconcileAll(ctx context.Context, reuse time.Time, procs *procCache) []error {
	entries, err := os.ReadDir(e.cfg.tasksDir())
	if err != nil {
		return []error{fmt.Errorf("reconcile: %w", err)}
	}
	return reconcileEach(ctx, len(entries), func(i int) error {
		de := entries[i]
		if !de.IsDir() {
			return nil
		}
		dir := filepath.Join(e.cfg.tasksDir(), de.Name())
		id, ok := taskIDOf(dir)
		if !ok {
			// A hashed name whose task.json was never written (its
			// launcher died right after the claim): nobody can ask for it
			// by ID; the janitor removes it in time.
			e.log.Debug("task dir without a readable ID", "task_dir", dir)
			return nil
		}
		return e.reconcileOne(id, dir, true, reuse, procs)
	})
}

// reconcileInFlight is how many tasks a reconciliation judges at once.
// Judging a task is a dozen small reads of its directory and of /proc; a
// new leader reconciles every running task before it serves, so with
// 10,000 tasks one after another it waited seconds for the file system.
const reconcileInFlight = 16

// reconcileEach calls f(i) for each i in [0, n), reconcileInFlight at a
// time, until ctx ends, and returns the errors. Each task's statuses stay
// in order: its record's lock is held while it is judged and reported.
func reconcileEach(ctx context.Context, n int, f func(i int) error) []error {
	var (
		mu    sync.Mutex
		errs  []error
		wg    sync.WaitGroup
		slots = make(chan struct{}, reconcileInFlight)
	)
	for i := range n {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			if err := f(i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

// monitor is the executor's one watching goroutine: it judges every watched
// task each PollInterval (or when woken), sends the SIGKILLs that fall due,
// discards the preparations whose Launch did not come and removes expired
// task directories.
func (e *Executor) monitor() {
	ticker := time.NewTicker(e.cfg.PollInterval)
	defer ticker.Stop()
	janitor := time.NewTicker(min(janitorInterval, max(e.cfg.Retention/2, e.cfg.PollInterval)))
	defer janitor.Stop()
	// killTimer fires at the earliest pending SIGKILL.
	killTimer := time.NewTimer(time.Hour)
	killTimer.Stop()
	defer killTimer.Stop()
	for {
		select {
		case <-e.done:
			return
		case <-ticker.C:
		case <-e.wake:
		case <-killTimer.C:
		case <-janitor.C:
			e.cleanup(e.ctx)
		}
		e.poll()
		e.expirePrepared()
		if next := e.sendDueKills(); !next.IsZero() {
			killTimer.Reset(time.Until(next))
		}
	}
}

// poll judges every watched task once, unless a Reconcile is judging them
// right now: with thousands of tasks, a poll beside a new term's
// reconciliation took half of its CPU to read the same directories again.
// After it, each task the Reconcile judged waits a PollInterval.
func (e *Executor) poll() {
	if e.reconciling.Load() > 0 {
		return
	}
	e.mu.Lock()
	recs := make([]*taskRecord, 0, len(e.watched))
	for _, rec := range e.watched {
		recs = append(recs, rec)
	}
	e.mu.Unlock()
	procs := newProcCache()
	for _, rec := range recs {
		if e.ctx.Err() != nil {
			return
		}
		// A held lock means a Launch, Kill or Reconcile is at this task
		// right now, and reports for it; the next round will look again.
		if !rec.mu.TryLock() {
			continue
		}
		// A task a Reconcile has just judged waits a poll interval, as if
		// the monitor had judged it: a new term's reconciliation of
		// thousands of tasks does not read each one a second time.
		if !rec.dropped && !rec.terminalSent && time.Since(rec.reconciledAt) >= e.cfg.PollInterval {
			e.pollOne(rec, procs)
		}
		rec.mu.Unlock()
	}
}

// pollOne judges one watched task, reading /proc through procs; rec.mu is
// held.
func (e *Executor) pollOne(rec *taskRecord, procs *procCache) {
	dir := e.taskDir(rec.id)
	if err := e.rotateOutput(dir); err != nil {
		if msg := err.Error(); msg != rec.lastErr {
			rec.lastErr = msg
			e.log.Warn("cannot cap task output", "task_id", rec.id, "error", err)
		}
	}
	judged := procs.at
	j, err := e.judgeIn(dir, procs)
	if err != nil {
		if msg := err.Error(); msg != rec.lastErr {
			rec.lastErr = msg
			e.log.Warn("cannot judge task", "task_id", rec.id, "error", err)
		}
		return
	}
	rec.lastErr = ""
	if j.state == executor.StateUnknown {
		// Removed from outside while we watched it.
		e.log.Warn("task dir vanished", "task_id", rec.id, "task_dir", dir)
		e.dropRecord(rec)
		return
	}
	// A kill asked for by an earlier executor (or in another PID namespace)
	// is carried out by whoever watches the task now; so is a timeout.
	e.stopIfDue(rec, dir, j)
	e.report(rec, j, false, false)
	rec.keepRunning(j, judged)
}

// sendDueKills sends the SIGKILLs that are due and returns when the next
// one is (zero: none pending). The group is killed even if the wrapper has
// gone: what ignored SIGTERM may still run in it.
func (e *Executor) sendDueKills() time.Time {
	now := time.Now()
	var due []pendingKill
	var next time.Time
	e.mu.Lock()
	for id, k := range e.kills {
		if !k.at.After(now) {
			due = append(due, k)
			delete(e.kills, id)
		} else if next.IsZero() || k.at.Before(next) {
			next = k.at
		}
	}
	e.mu.Unlock()
	for _, k := range due {
		if err := e.host.signalGroup(k.pid, syscall.SIGKILL); err != nil {
			e.log.Warn("cannot kill task", "pgid", k.pid.Pgid, "error", err)
		}
	}
	return next
}

// cleanup removes task directories terminal for longer than Retention, and
// leftovers in tmp/. Several processes may do this at once: a directory is
// first renamed into tmp/, so it disappears whole, once.
func (e *Executor) cleanup(ctx context.Context) {
	entries, err := os.ReadDir(e.cfg.tasksDir())
	if err != nil {
		e.log.Warn("cleanup: cannot list tasks", "error", err)
		return
	}
	for _, de := range entries {
		if ctx.Err() != nil {
			return
		}
		if !de.IsDir() {
			continue
		}
		dir := filepath.Join(e.cfg.tasksDir(), de.Name())
		if time.Since(terminalTime(dir)) <= e.cfg.Retention {
			continue // cheap test first: recent activity
		}
		j, err := e.judge(dir)
		if err != nil || !j.terminal() {
			continue
		}
		// judge may just have written a "never started" pid file; that
		// task counts as ended now, and waits its Retention too.
		if time.Since(terminalTime(dir)) > e.cfg.Retention {
			e.removeTaskDir(dir)
		}
	}
	e.forgetRemoved()
	e.evictCache()
	tmp, err := os.ReadDir(e.cfg.tmpDir())
	if err != nil {
		return
	}
	for _, de := range tmp {
		if fi, err := de.Info(); err == nil && time.Since(fi.ModTime()) > max(tmpRetention, 2*e.cfg.FetchTimeout) {
			_ = os.RemoveAll(filepath.Join(e.cfg.tmpDir(), de.Name()))
		}
	}
}

// forgetRemoved drops the records of ended tasks whose directories are gone
// (removed above, or by another process's janitor): a record is only what
// this executor reported, and once the directory is gone it answers nothing
// a judge of the directory would not (UNKNOWN). Without this, every task a
// long term ever saw stayed in memory. A record whose lock is held is at
// work (a Launch of a new incarnation, a Kill): the next round looks again.
func (e *Executor) forgetRemoved() {
	e.mu.Lock()
	recs := make([]*taskRecord, 0, len(e.tasks))
	for _, rec := range e.tasks {
		if _, watched := e.watched[rec.id]; !watched {
			recs = append(recs, rec)
		}
	}
	e.mu.Unlock()
	for _, rec := range recs {
		if !rec.mu.TryLock() {
			continue
		}
		if !rec.dropped && rec.terminalSent {
			if _, err := os.Stat(e.taskDir(rec.id)); notExist(err) {
				e.dropRecord(rec)
			}
		}
		rec.mu.Unlock()
	}
}

// removeTaskDir removes a task directory: renamed into tmp/ first, so that
// no executor ever sees half of it.
func (e *Executor) removeTaskDir(dir string) {
	trash := filepath.Join(e.cfg.tmpDir(), tempName("removed-"+filepath.Base(dir)))
	if err := os.Rename(dir, trash); err != nil {
		if !notExist(err) {
			e.log.Warn("cannot remove expired task dir", "task_dir", dir, "error", err)
		}
		return
	}
	if err := os.RemoveAll(trash); err != nil {
		e.log.Warn("cannot remove expired task dir", "task_dir", trash, "error", err)
	}
	e.log.Debug("removed expired task dir", "task_dir", dir)
}
