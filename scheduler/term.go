package scheduler

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/cron"
	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// A term is one leadership: it owns the executor it opened and every piece
// of scheduling state in memory, and all of it is gone when the term ends.
//
// One goroutine, the term's loop, runs the producer (cron timers), the
// launcher, status handling and the API's writes, one event at a time (the
// writes queued together are one event: group.go; so are the fires of one
// pass of the producer and the launcher, fires.go, and the statuses read
// together, status.go, whose store writes are batched). So there is a single
// writer to the store per term, and the order that makes a
// crash anywhere recoverable — running nodes created, then the fire taken
// off the ready queue, then the executor told — is never interleaved with
// status handling. The loop reads the executor's statuses itself (the
// executor's own queue never blocks it on the loop); the launch workers,
// one per app with work, make the executor's Launch calls (which may fetch
// an app) and queue their results, so the loop never blocks on a Launch.
type term struct {
	s     *Scheduler
	cfg   Config
	log   hclog.Logger
	c     coord.Coordinator // the election session that won the term
	l     coord.Leadership
	st    *store.Writer // reads on the election session, writes fenced by l
	since time.Time

	// serving is true while the loop runs.
	serving atomic.Bool
	reqs    chan request
	done    chan struct{} // closed when the loop has returned

	ex        executor.Executor
	launchers *launchers
	// warm is the standby's state the term loads from, closed once
	// loaded; loadedFrom says whether the load read its mirrors
	// ("mirror") or the servers.
	warm        *warmState
	loadedFrom  string
	jobsDecoded int // by the load: the rest came from the standby's memo

	// Owned by the loop.
	apps         map[string]model.App
	disabledApps map[string]bool
	jobs         map[string]*jobState
	timers       fireHeap
	// preparedThrough: the fires due by then were handed to the
	// executor's Prepare ahead (prepareAhead), or did not need to be.
	preparedThrough time.Time
	// What the loop looks at for launches before it waits again: every
	// job (the first pass, the safety tick, a write that may touch any
	// job) or the jobs an event concerned (a fire produced, a task ended),
	// so that an event's launch does not cost a pass over every idle job.
	launchAll  bool
	launchJobs map[string]bool
	inflight   map[string]bool // task IDs handed to the launch worker
	// pass is what the producer and the launcher staged in this turn of
	// the loop, written by flushFires before the loop waits (fires.go).
	pass firePass
	// taskWrites are the task record writes of the statuses or launches
	// the loop handles together, written by flushTasks (status.go).
	taskWrites []store.TaskWrite

	// Quarantined configurations, by name: stored, but failing validation.
	// The value is the stored configuration if it decoded (an update is
	// applied to it), nil if not. They are not scheduled and their state
	// is left alone until the API replaces or deregisters them.
	badApps map[string]*model.App
	badJobs map[string]*model.Job

	// index is what the API's reads of configurations see while the
	// term serves; the loop updates it (index.go).
	index configIndex
}

// jobState is what a term knows of one job.
type jobState struct {
	job      model.Job
	sched    *cron.Schedule // nil for a DAEMON job without cron, or a broken config
	params   map[int]string // shard parameters
	disabled bool

	ready store.Ready

	running  map[string]*model.TaskRecord // by task ID
	failover map[string]*model.TaskRecord

	gen int // timer entries of an older generation are stale
}

func newJobState(spec model.JobSpec) *jobState {
	js := &jobState{}
	js.setSpec(spec)
	return js
}

// addRunning and addFailover record a task of the job. The maps are made
// on a job's first task: most of 100,000 jobs have none, and two empty
// maps each were a sixth of a term's memory. (Reading, ranging over and
// deleting from a nil map are fine; only writes need these.)
func (js *jobState) addRunning(rec *model.TaskRecord) {
	if js.running == nil {
		js.running = map[string]*model.TaskRecord{}
	}
	js.running[rec.ID] = rec
}

func (js *jobState) addFailover(rec *model.TaskRecord) {
	if js.failover == nil {
		js.failover = map[string]*model.TaskRecord{}
	}
	js.failover[rec.ID] = rec
}

func (js *jobState) setSpec(spec model.JobSpec) {
	js.job, js.sched, js.params = spec.Job, spec.Schedule, spec.ShardParams
}

// request is one of the Service's writes to the loop: op, or, if register
// is set, the registration of that job, which the loop serves together with
// the registrations queued with it (see serveGroup).
type request struct {
	op       func(ctx context.Context, t *term) error
	register *model.JobSpec
	reply    chan error
}

func newTerm(s *Scheduler, c coord.Coordinator, l coord.Leadership) *term {
	return &term{
		s:            s,
		cfg:          s.cfg,
		log:          s.log.With("term", l.Token()),
		c:            c,
		l:            l,
		st:           store.NewWriter(c, l.Writer(), opTimeout),
		since:        s.now(),
		reqs:         make(chan request),
		done:         make(chan struct{}),
		apps:         map[string]model.App{},
		disabledApps: map[string]bool{},
		jobs:         map[string]*jobState{},
		inflight:     map[string]bool{},
		launchJobs:   map[string]bool{},
		badApps:      map[string]*model.App{},
		badJobs:      map[string]*model.Job{},
	}
}

func (t *term) now() time.Time { return t.s.now() }

// run establishes the term, runs its loop until ctx ends or a store write
// fails, and revokes it.
func (t *term) run(ctx context.Context) error {
	defer close(t.done)
	err := t.establish(ctx)
	if err == nil {
		t.serving.Store(true)
		// The load leaves hundreds of MB of garbage with 100,000 jobs (the
		// standby's mirrors and memo, the nodes read and decoded), which
		// Go would hand back to the system over minutes: the leader's
		// resident memory is what an operator sizes its host by. Returned
		// now, off the loop, which serves meanwhile.
		released := make(chan struct{})
		go func() {
			defer close(released)
			debug.FreeOSMemory()
		}()
		defer func() { <-released }()
		t.cfg.Events.Emit(events.Event{Kind: events.Leadership, Time: t.now(), Term: t.l.Token(), Leader: true})
		err = t.loop(ctx)
		t.serving.Store(false)
		t.cfg.Events.Emit(events.Event{Kind: events.Leadership, Time: t.now(), Term: t.l.Token()})
	}
	t.revoke()
	if err != nil && ctx.Err() == nil {
		t.log.Error("term failed; giving up leadership", "error", err)
	}
	return err
}

// establish turns the leader's services on, in order: the executor and its
// status pump, the state loaded from the store, a reconciliation of what the
// store says runs, and every job's schedule. Nothing is launched before the
// loop starts. Whatever it started, revoke stops.
func (t *term) establish(ctx context.Context) error {
	t.log.Info("establishing leadership")
	// Each phase's time goes into the log line that ends establish: a
	// takeover waits for all of them, and with many jobs or tasks an
	// operator wants to know which one it waited for.
	began := time.Now()
	ex, err := t.cfg.Executor(ctx, executor.Term{Token: t.l.Token(), State: executorState{st: t.st}, Coord: t.c, Writer: t.l.Writer()})
	if err != nil {
		return fmt.Errorf("open the executor: %w", err)
	}
	t.ex = ex
	t.launchers = newLaunchers(fencedLaunches(t.st, t.l, ex), t.now)
	opened := time.Now()
	if err := t.load(ctx); err != nil {
		return err
	}
	loaded := time.Now()
	if t.warm != nil {
		t.warm.close()
		t.warm = nil
	}
	if err := t.reconcile(ctx, true); err != nil {
		return err
	}
	if err := t.reconcile(ctx, false); err != nil {
		return err
	}
	reconciled := time.Now()
	now := t.now()
	for _, name := range sortedKeys(t.jobs) {
		t.schedule(t.jobs[name], now)
	}
	t.log.Info("leadership established", "apps", len(t.apps), "jobs", len(t.jobs),
		"executor_opened_in", opened.Sub(began), "state_loaded_in", loaded.Sub(opened), "state_from", t.loadedFrom, "jobs_decoded", t.jobsDecoded,
		"reconciled_in", reconciled.Sub(loaded), "scheduled_in", time.Since(reconciled))
	return nil
}

// revoke turns off what establish turned on, in reverse: the launch
// workers stop (cancelling a Launch in progress) and the executor is closed
// (its tasks keep running for the next leader to adopt).
func (t *term) revoke() {
	if t.warm != nil { // the load failed
		t.warm.close()
		t.warm = nil
	}
	if t.launchers != nil {
		t.launchers.stop()
	}
	if t.ex != nil {
		if err := t.ex.Close(); err != nil {
			t.log.Warn("close the executor", "error", err)
		}
	}
	t.log.Info("leadership revoked")
}

// errTermEnded says a term ended before its loop took a request: nothing
// of the request was done, so the next term may serve it.
var errTermEnded = errors.New("scheduler: the term ended before it took the request")

// do serves req on the loop and returns its error; errTermEnded if the
// term ends before the loop takes it, ErrNotLeader if it ends during it.
func (t *term) do(ctx context.Context, req request) error {
	req.reply = make(chan error, 1)
	select {
	case t.reqs <- req:
	case <-t.done:
		return errTermEnded
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.reply:
		return err
	case <-t.done:
		// The loop took the request and ended; it has answered if it
		// finished it.
		select {
		case err := <-req.reply:
			return err
		default:
			return fmt.Errorf("%w: leadership ended during the request", model.ErrNotLeader)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop is the term's one goroutine of scheduling; it returns when ctx ends
// or when the store fails (the next term starts from the store again).
func (t *term) loop(ctx context.Context) error {
	launchTick := time.NewTicker(t.cfg.LaunchInterval)
	defer launchTick.Stop()
	var reconcileC <-chan time.Time
	if t.cfg.ReconcileInterval > 0 {
		tk := time.NewTicker(t.cfg.ReconcileInterval)
		defer tk.Stop()
		reconcileC = tk.C
	}
	fireTimer := time.NewTimer(time.Hour)
	defer fireTimer.Stop()
	statuses := t.ex.Statuses()
	wait := newStatusWait()
	defer wait.stop()
	t.launchAll = true
	for {
		t.produceDue()
		if names := t.dueForLaunch(); len(names) > 0 {
			if err := t.launch(ctx, names); err != nil {
				return err
			}
		}
		if err := t.flushFires(ctx); err != nil {
			return err
		}
		t.prepareAhead()
		fireTimer.Reset(t.untilNextFire())
		statusC, resultsC := statuses, t.launchers.results.notify
		if wait.waiting() {
			statusC, resultsC = nil, nil // they wait for wait.c
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case req := <-t.reqs:
			if err := t.serveGroup(ctx, req); err != nil {
				return err
			}
		case st, ok := <-statusC:
			if !ok {
				return errors.New("the executor closed its status stream")
			}
			if wait.begin(&st) {
				if err := t.handleExecutor(ctx, &st, statuses); err != nil {
					return err
				}
				wait.handled(len(statuses))
			}
		case <-resultsC:
			if wait.begin(nil) {
				if err := t.handleExecutor(ctx, nil, statuses); err != nil {
					return err
				}
				wait.handled(len(statuses))
			}
		case <-wait.c:
			if err := t.handleExecutor(ctx, wait.end(), statuses); err != nil {
				return err
			}
			wait.handled(len(statuses))
		case <-fireTimer.C:
		case <-launchTick.C:
			t.launchAll = true
		case <-reconcileC:
			if err := t.reconcile(ctx, true); err != nil {
				return err
			}
			if err := t.reconcile(ctx, false); err != nil {
				return err
			}
		}
	}
}

// statusLinger is how long the statuses and launch results the executor
// hands the loop wait before they are handled, all that came meanwhile
// together. A fire's tasks report RUNNING as they start, and their writes,
// made at once, and the watches they fire on the standbys, took the two
// cores while the tasks' own processes started: with the writes 15 ms
// later, fire → process p99 went from 26 to 15–16 ms on ZooKeeper and
// from 18–19 to 13 ms on etcd (the machine's floor: 10 ms). A task that
// ends within it has its RUNNING and its end written as one delete. The
// loop serves requests and fires meanwhile. A backlog (more statuses than
// one turn handles: after a takeover, say) is handled without waits.
const statusLinger = 15 * time.Millisecond

// statusWait decides when the loop handles what the executor hands it:
// statusLinger after it comes, or at once while a backlog lasts.
type statusWait struct {
	timer *time.Timer
	// c ends the wait; nil while none runs, when the loop listens to
	// the executor again.
	c <-chan time.Time
	// held is the status that began the wait, read from the stream.
	held *executor.Status
	// backlog: statuses were still queued after the last turn.
	backlog bool
}

func newStatusWait() *statusWait {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &statusWait{timer: t}
}

func (w *statusWait) waiting() bool { return w.c != nil }

// begin starts a wait for st (nil: a launch result), unless what came is
// to be handled at once: then it says so, and st is the caller's. Behind
// a backlog a launch result does not wait either: its waits would hold up
// the stream's reading, turn after turn, while launches keep ending.
func (w *statusWait) begin(st *executor.Status) (now bool) {
	if w.backlog {
		return true
	}
	w.held = st
	w.timer.Reset(statusLinger)
	w.c = w.timer.C
	return false
}

// end ends the wait and returns the status that began it, or nil.
func (w *statusWait) end() *executor.Status {
	st := w.held
	w.held, w.c = nil, nil
	return st
}

// handled says how many statuses are queued after a turn: any, and the
// next is handled at once.
func (w *statusWait) handled(queued int) { w.backlog = queued > 0 }

func (w *statusWait) stop() { w.timer.Stop() }

// fatal says whether err leaves the term's memory out of step with the
// store: every error except the refusals of the Service.
func fatal(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range []error{model.ErrInvalid, model.ErrNotFound, model.ErrExists, model.ErrConflict} {
		if errors.Is(err, e) {
			return false
		}
	}
	return !errors.Is(err, context.Canceled)
}

// userError is what the API sees of an error: a fenced-off write means this
// process no longer leads.
func userError(err error) error {
	if err != nil && errors.Is(err, coord.ErrNotLeader) {
		return fmt.Errorf("%w: %v", model.ErrNotLeader, err)
	}
	return err
}

func (t *term) executorInfo() map[string]string {
	if d, ok := t.ex.(executor.Describer); ok {
		return d.Describe()
	}
	return nil
}

// opCtx bounds one request of the loop's own.
func opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, opTimeout)
}

// load reads the whole state from the store. Jobs without a ready node get
// one (registered now: they do not back-fill); state of jobs without a
// configuration is removed, their tasks killed. Configurations that do not
// decode or fail validation are quarantined: a stored configuration must
// never fail a term (every process would fail on it in turn) nor reach the
// launcher unchecked.
func (t *term) load(ctx context.Context) error {
	r, memo, from := t.stateSource(ctx)
	st, err := t.readState(ctx, r, memo)
	if err != nil {
		return err
	}
	t.loadedFrom = from
	t.jobsDecoded = memo.Decoded()
	t.st.KnowRunningParents(st.running)
	for _, b := range st.badApps {
		t.log.Error("app configuration quarantined: it is not used until it is registered or updated again", "app", b.Name, "error", b.Error)
		t.badApps[b.Name] = nil
	}
	for _, a := range st.apps {
		checked, err := a.Check()
		if err != nil {
			t.log.Error("app configuration quarantined: it is not used until it is registered or updated again", "app", a.AppName, "error", err)
			t.badApps[a.AppName] = &a
			continue
		}
		t.apps[a.AppName] = checked
	}
	t.disabledApps = st.disabledApps
	for _, b := range st.badJobs {
		t.log.Error("job configuration quarantined: it is not scheduled until it is registered or updated again", "job", b.Name, "error", b.Error)
		t.badJobs[b.Name] = nil
	}
	// Validation parsed every cron and shard parameter (the store's
	// CheckedJobs, spread over the cores, and only for the jobs the
	// standby's memo did not hold).
	specs := make([]model.JobSpec, len(st.jobs))
	for i, c := range st.checked {
		specs[i] = c.Spec
	}
	shareSchedules(specs)
	for i, c := range st.checked {
		j := c.Job
		if err := c.Err; err != nil {
			t.log.Error("job configuration quarantined: it is not scheduled until it is registered or updated again", "job", j.JobName, "error", err)
			t.badJobs[j.JobName] = &j
			continue
		}
		rn, ok := st.ready[j.JobName]
		if !ok {
			if rn, err = t.st.CreateReady(ctx, j.JobName, t.now()); err != nil {
				return err
			}
		}
		t.jobs[j.JobName] = t.newLoadedJob(specs[i], rn, st.disabledJobs[j.JobName], st.running[j.JobName], st.failover[j.JobName])
	}
	t.index.load(st.apps, st.badApps, t.disabledApps, st.jobs, st.badJobs, st.disabledJobs)
	return t.removeOrphans(ctx, st.ready, st.running, st.failover, st.disabledJobs)
}

// shareSchedules makes the specs whose cron and time zone are the same
// share one parsed schedule (a cron.Schedule is immutable): a parsed
// schedule is some 300 bytes, and many of 100,000 jobs share their cron.
// Only a term's load does this, with a map it then drops, so nothing grows
// with the registrations of a long term.
func shareSchedules(specs []model.JobSpec) {
	shared := map[string]*cron.Schedule{}
	for i := range specs {
		s := specs[i].Schedule
		if s == nil {
			continue
		}
		key := s.String() + "\x00" + s.Location().String()
		if first, ok := shared[key]; ok {
			specs[i].Schedule = first
		} else {
			shared[key] = s
		}
	}
}

// mirrorSyncTimeout bounds a new term's wait for the standby's Mirrors.
// Loaded, they sync in a round trip or two (milliseconds; 0.2 s for
// 100,000 nodes on ZooKeeper). Mirrors still on their first full read are
// not handed over (standby.take); one reloading after a ZooKeeper
// reconnection may take longer than the term's own read, which the term
// then makes.
const mirrorSyncTimeout = 5 * time.Second

// stateSource is what the term loads from: the Mirrors this process kept
// as a standby, once synced (see standby.go), else the servers. The
// Mirrors are the term's from here on; it closes them when its load is
// done.
func (t *term) stateSource(ctx context.Context) (store.Reader, *store.JobMemo, string) {
	w := t.s.standby.take()
	if w == nil {
		return t.st.Reader, store.NewJobMemo(), "servers"
	}
	t.warm = w
	m, memo := w.mirrors, w.memo
	sctx, cancel := context.WithTimeout(ctx, mirrorSyncTimeout)
	defer cancel()
	began := time.Now()
	if err := m.Sync(sctx); err != nil {
		t.log.Warn("the state's mirror did not sync; reading the servers", "error", err, "waited", time.Since(began))
		// Its first read would go on competing with the term's own.
		w.close()
		t.warm = nil
		return t.st.Reader, memo, "servers"
	}
	return m.Reader(), memo, "mirror"
}

// storedState is everything a term reads when it starts.
type storedState struct {
	apps                       []model.App
	badApps, badJobs           []model.QuarantinedConfig
	jobs                       []model.Job
	checked                    []store.CheckedJob // jobs[i] is checked[i].Job
	disabledApps, disabledJobs map[string]bool
	ready                      map[string]store.Ready
	running, failover          map[string][]model.TaskRecord
}

// readState makes the term's reads of the store at once rather than one
// after another: with 100,000 jobs each takes a few hundred milliseconds,
// mostly waiting for the servers. Nothing is written meanwhile (the term's
// loop has not started, and the previous term's writes are fenced off), so
// reading the parts concurrently sees what reading them in turn would.
func (t *term) readState(ctx context.Context, r store.Reader, memo *store.JobMemo) (storedState, error) {
	var st storedState
	reads := []func() error{
		func() (err error) { st.apps, st.badApps, err = r.AppConfigs(ctx); return err },
		func() (err error) { st.disabledApps, err = r.DisabledApps(ctx); return err },
		func() (err error) { st.checked, st.badJobs, err = r.CheckedJobs(ctx, memo); return err },
		func() (err error) { st.disabledJobs, err = r.DisabledJobs(ctx); return err },
		func() (err error) { st.ready, err = r.Ready(ctx); return err },
		func() (err error) { st.running, err = r.Running(ctx); return err },
		func() (err error) { st.failover, err = r.Failover(ctx); return err },
	}
	errs := make([]error, len(reads))
	var wg sync.WaitGroup
	for i, read := range reads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = read()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return storedState{}, err
		}
	}
	st.jobs = make([]model.Job, len(st.checked))
	for i, c := range st.checked {
		st.jobs[i] = c.Job
	}
	return st, nil
}

// newLoadedJob is a job's state as the store has it.
func (t *term) newLoadedJob(spec model.JobSpec, rn store.Ready, disabled bool, running, failover []model.TaskRecord) *jobState {
	js := newJobState(spec)
	js.disabled = disabled
	js.ready = rn
	for _, rec := range running {
		js.addRunning(&rec)
	}
	for _, rec := range failover {
		js.addFailover(&rec)
	}
	return js
}

// errQuarantined refuses an operation on a quarantined configuration other
// than the ones that replace or remove it.
func errQuarantined(kind model.ConfigKind, name string) error {
	return fmt.Errorf("%w: %s %q is quarantined (its stored configuration is invalid); register or update it to replace it, or deregister it", model.ErrConflict, kind, name)
}

// removeOrphans removes the state of jobs that have no configuration,
// killing their tasks.
func (t *term) removeOrphans(ctx context.Context, ready map[string]store.Ready, running, failover map[string][]model.TaskRecord, disabled map[string]bool) error {
	orphans := map[string]bool{}
	for _, m := range []map[string]bool{keys(ready), keys(running), keys(failover), disabled} {
		for job := range m {
			if _, bad := t.badJobs[job]; bad {
				continue // a quarantined job's state is left alone
			}
			if t.jobs[job] == nil {
				orphans[job] = true
			}
		}
	}
	for _, job := range sortedKeys(orphans) {
		for _, rec := range running[job] {
			t.kill(ctx, rec.ID)
		}
		t.log.Warn("removing the state of an unknown job", "job", job, "running_tasks", len(running[job]))
		if err := t.st.DeleteJobState(ctx, job); err != nil {
			return err
		}
	}
	return nil
}

func keys[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ignore drops an error that is one of the expected ones.
func ignore(err error, expected ...error) error {
	for _, e := range expected {
		if errors.Is(err, e) {
			return nil
		}
	}
	return err
}

// reconcile asks the executor about the tasks the store says run
// (explicit), or about every task it knows (implicit). Tasks whose launch
// was never confirmed are not named: they are launched (again) instead.
func (t *term) reconcile(ctx context.Context, explicit bool) error {
	var ids []string
	if explicit {
		for _, name := range sortedKeys(t.jobs) {
			for _, id := range sortedKeys(t.jobs[name].running) {
				if !t.jobs[name].running[id].LaunchedAt.IsZero() {
					ids = append(ids, id)
				}
			}
		}
		if len(ids) == 0 {
			return nil
		}
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	if err := t.ex.Reconcile(ctx, ids); err != nil {
		// The executor's trouble is not the store's: the next reconcile
		// asks again.
		t.log.Warn("reconcile failed", "explicit", explicit, "error", err)
	}
	return nil
}

// kill asks the executor to kill a task; a failure is logged, as the next
// reconcile reports the task again.
func (t *term) kill(ctx context.Context, id string) {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	if err := t.ex.Kill(ctx, id); err != nil {
		t.log.Warn("kill failed", "task", id, "error", err)
	}
}

// active says whether a job may produce and launch: it and its app are
// enabled and its app exists.
func (t *term) active(js *jobState) bool {
	_, appOK := t.apps[js.job.AppName]
	return appOK && !js.disabled && !t.disabledApps[js.job.AppName]
}

// queue is an unbounded hand-over between a goroutine and the loop.
type queue[T any] struct {
	mu     sync.Mutex
	items  []T
	notify chan struct{}
}

func newQueue[T any]() *queue[T] { return &queue[T]{notify: make(chan struct{}, 1)} }

func (q *queue[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *queue[T]) drain() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}

// Timers: one heap of every job's next fire, served by the loop.

type fireEntry struct {
	at  time.Time
	job string
	gen int
}

type fireHeap []fireEntry

func (h fireHeap) Len() int           { return len(h) }
func (h fireHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h fireHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *fireHeap) Push(x any)        { *h = append(*h, x.(fireEntry)) }
func (h *fireHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// maxTimerWait makes the loop look at the clock at least this often, so a
// wall-clock jump delays a fire by at most this much.
const maxTimerWait = time.Minute

func (t *term) untilNextFire() time.Duration {
	if len(t.timers) == 0 {
		return maxTimerWait
	}
	now := t.now()
	d := t.timers[0].at.Sub(now) - fireLead
	if _, ok := t.ex.(executor.Preparer); ok && t.timers[0].at.After(t.preparedFrom(now)) {
		// Woken this early, the loop hands the next fires' tasks to
		// Prepare (prepareAhead) and waits again for their pass.
		d = min(d, t.timers[0].at.Sub(now)-prepareLead)
	}
	return max(0, min(d, maxTimerWait))
}

// schedule (re)arms a job's timer: its next fire after what it has
// produced, which is due at once if fires were missed. Inactive and DAEMON
// jobs have none.
func (t *term) schedule(js *jobState, now time.Time) {
	js.gen++
	t.compactTimers()
	if js.sched == nil || js.job.JobExecutionType != model.Transient || !t.active(js) {
		return
	}
	next := js.sched.Next(js.ready.ProducedThrough())
	if next.IsZero() {
		return
	}
	heap.Push(&t.timers, fireEntry{at: next, job: js.job.JobName, gen: js.gen})
}

func (t *term) unschedule(js *jobState) {
	js.gen++
	t.compactTimers()
}

// compactTimers drops stale entries once they outnumber the live ones, so
// that rescheduling jobs whose next fire is far off does not grow the heap.
func (t *term) compactTimers() {
	if len(t.timers) <= 2*len(t.jobs)+64 {
		return
	}
	live := t.timers[:0]
	for _, e := range t.timers {
		if js := t.jobs[e.job]; js != nil && js.gen == e.gen {
			live = append(live, e)
		}
	}
	clear(t.timers[len(live):])
	t.timers = live
	heap.Init(&t.timers)
}
