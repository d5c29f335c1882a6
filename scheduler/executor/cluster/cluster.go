// Package cluster is the leader's side of hasched's own cluster: an
// executor.Executor that places each task on a live worker (a `hasched
// serve` process that registered in the coordinator, package
// scheduler/worker) and learns what became of it from the worker's outbox.
// The layout and the protocol are in scheduler/store/cluster.go.
//
// The one invariant this package exists for: a placement is marked LOST
// only once the registration of the incarnation it is bound to is gone on
// the server, and only if it is still bound to that incarnation at the
// moment of the write (version-checked, fenced by the term). A worker whose
// session is gone has killed its tasks before the server could expire it
// (its safety clock), so a LOST task is dead and its relaunch elsewhere
// cannot run beside it; a placement a restarted worker re-bound in the
// meantime fails the version check and is not marked.
//
// Every write goes through the term's fenced writer, so a deposed leader
// places, folds and marks nothing. All state is in the coordinator; the
// executor's index (task id → placement) is a cache of it, loaded when the
// term opens and kept up to date by this term's own writes, which are the
// only leader writes there are while it leads.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/defaults"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// Errors, for errors.Is.
var (
	// ErrClosed is returned by every call made after Close.
	ErrClosed = fmt.Errorf("cluster executor: %w", executor.ErrClosed)
	// ErrInvalidTask refuses a Launch batch, whole, holding a task that
	// cannot be placed at all.
	ErrInvalidTask = fmt.Errorf("cluster executor: %w", executor.ErrInvalidTask)
	// ErrNoCapacity: some tasks of a Launch fit on no live worker; they
	// were left unplaced (the rest were placed), and the scheduler tries
	// them again.
	ErrNoCapacity = errors.New("cluster executor: no worker has room for the task")
	// ErrInvalidConfig wraps every Config validation failure.
	ErrInvalidConfig = errors.New("cluster executor: invalid config")
	// ErrNoCoordinator: the term handed over no session or fenced writer.
	ErrNoCoordinator = errors.New("cluster executor: the term has no coordinator session or fenced writer")
)

// Defaults of Config's zero values, and bounds.
const (
	DefaultRetention     = 10 * time.Minute
	DefaultOpTimeout     = 10 * time.Second
	DefaultRetryInterval = time.Second
	maxRetention         = 30 * 24 * time.Hour
	maxOpTimeout         = 5 * time.Minute
	maxRetryInterval     = time.Minute
	// maxSweepInterval: terminal placements are looked at at least this
	// often.
	maxSweepInterval = time.Minute
	// statusBuffer is the capacity of the Statuses channel; the queue
	// behind it is unbounded.
	statusBuffer = 1024
	// maxConflicts bounds the re-reads of one placement whose versioned
	// write keeps conflicting (a worker re-binding it, another fold): past
	// it the write is tried again after RetryInterval.
	maxConflicts = 8
	// epsilon absorbs float rounding in capacity sums.
	epsilon = 1e-9
)

// Config configures the executors a Factory opens.
type Config struct {
	// Logger default: a null logger.
	Logger hclog.Logger
	// Retention is how long a placement is kept after its task ended
	// (default 10m, at most 30 days); the kill request goes with it.
	Retention time.Duration
	// OpTimeout bounds each coordinator call (default 10s, at most 5m).
	OpTimeout time.Duration
	// RetryInterval is the pause before a failed fold, LOST marking or
	// sweep is tried again (default 1s, at most 1m).
	RetryInterval time.Duration
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if err := defaults.Durations(ErrInvalidConfig, []defaults.Duration{
		{Name: "Retention", V: &cfg.Retention, Default: DefaultRetention, Max: maxRetention},
		{Name: "OpTimeout", V: &cfg.OpTimeout, Default: DefaultOpTimeout, Max: maxOpTimeout},
		{Name: "RetryInterval", V: &cfg.RetryInterval, Default: DefaultRetryInterval, Max: maxRetryInterval},
	}...); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// sweepInterval is how often terminal placements past Retention are
// removed.
func (cfg Config) sweepInterval() time.Duration {
	return min(max(cfg.Retention/4, 10*time.Millisecond), maxSweepInterval)
}

// NewFactory checks cfg once (so that a bad configuration fails at
// start-up, not at the first term) and returns a Factory opening one
// Executor per term, on the term's session and fenced writer.
func NewFactory(cfg Config) (executor.Factory, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, term executor.Term) (executor.Executor, error) {
		return Open(ctx, cfg, term)
	}, nil
}

// Executor is the cluster executor of one term; it implements
// executor.Executor and executor.Describer.
type Executor struct {
	cfg   Config
	log   hclog.Logger
	token int64
	c     coord.Coordinator
	w     coord.Writer
	r     store.Reader

	out   chan executor.Status
	queue *executor.StatusQueue

	// ctx is cancelled by Close: it ends every watch and every call in
	// flight.
	ctx    context.Context
	cancel context.CancelFunc

	// launchSem serialises Launch calls: a placement decision reads the
	// capacity the previous one used up, so decisions and their writes
	// are taken one batch at a time. It is a channel so that waiting for
	// it honours the caller's ctx.
	launchSem chan struct{}
	// parents are the worker names whose /placements/{name} is known to
	// exist; used under launchSem only.
	parents map[string]bool

	// mu guards the fields below. Statuses are pushed under mu, together
	// with the index change they report, so that the order of a task's
	// statuses is the order of its writes.
	mu      sync.Mutex
	index   map[string]store.StoredPlacement // by task id
	workers map[string]*workerState          // by worker id (name~inc)

	calls executor.Gate  // Launch, Kill and Reconcile calls in flight
	wg    sync.WaitGroup // watchers and the sweeper
	done  chan struct{}  // closed by Close, after wg: ends the drainer
	drWG  sync.WaitGroup // the status drainer

	closeOnce sync.Once
}

var (
	_ executor.Executor  = (*Executor)(nil)
	_ executor.Describer = (*Executor)(nil)
)

// workerState is what the executor knows of one worker incarnation. Its
// goroutine (watchWorker) owns it; fields are guarded by Executor.mu.
type workerState struct {
	id, name, inc string
	// reg is the registration, valid if live.
	reg model.Worker
	// live: the registration is there and valid; a candidate for
	// placements unless draining.
	live bool
	// gone: the registration is gone; its placements are being (or have
	// been) marked LOST.
	gone bool
	// again asks the gone handling to run once more: a placement was made
	// on the incarnation while its end was being handled.
	again bool
}

// Open opens the executor of one term: it loads every placement and
// registration, and starts watching the workers and their outboxes.
// Placements bound to incarnations that are no longer registered are
// folded (their outbox's leftovers) and marked LOST in the background;
// their LOST statuses follow on Statuses.
func Open(ctx context.Context, cfg Config, term executor.Term) (*Executor, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if term.Coord == nil || term.Writer == nil {
		return nil, ErrNoCoordinator
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ectx, cancel := context.WithCancel(context.Background())
	e := &Executor{
		cfg:       cfg,
		log:       cfg.Logger.Named("cluster-executor").With("term", term.Token),
		token:     term.Token,
		c:         term.Coord,
		w:         term.Writer,
		r:         store.NewReader(term.Coord),
		out:       make(chan executor.Status, statusBuffer),
		queue:     executor.NewStatusQueue(),
		ctx:       ectx,
		cancel:    cancel,
		launchSem: make(chan struct{}, 1),
		parents:   map[string]bool{},
		index:     map[string]store.StoredPlacement{},
		workers:   map[string]*workerState{},
		done:      make(chan struct{}),
	}
	ids, err := e.load(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	e.drWG.Add(1)
	go func() {
		defer e.drWG.Done()
		e.queue.Drain(e.out, e.done)
	}()
	e.log.Debug("opening", "placements", len(e.index), "incarnations", len(ids))
	e.mu.Lock()
	for _, id := range ids {
		e.startWorkerLocked(id)
	}
	e.mu.Unlock()
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		e.watchWorkers()
	}()
	go func() {
		defer e.wg.Done()
		e.sweep()
	}()
	return e, nil
}

// load reads the placements, then the registrations, then the outboxes,
// and returns every incarnation to watch: the registered ones, those that
// non-terminal placements are bound to and those with an outbox. The
// registrations are read after the placements, so that an incarnation
// that claimed a placement meanwhile is found registered.
func (e *Executor) load(ctx context.Context) ([]string, error) {
	var names []string
	if err := e.bounded(ctx, func(ctx context.Context) (err error) {
		names, err = e.r.PlacementWorkers(ctx)
		return err
	}); err != nil {
		return nil, fmt.Errorf("cluster executor: list placements: %w", err)
	}
	want := map[string]bool{}
	for _, name := range names {
		var ps []store.StoredPlacement
		var bad []string
		if err := e.bounded(ctx, func(ctx context.Context) (err error) {
			ps, bad, err = e.r.PlacementsOf(ctx, name)
			return err
		}); err != nil {
			return nil, fmt.Errorf("cluster executor: read the placements on %s: %w", name, err)
		}
		for _, b := range bad {
			e.log.Error("a placement does not decode; left alone", "error", b)
		}
		for _, p := range ps {
			e.index[p.Task.ID] = p
			if !p.State.Terminal() {
				want[workerID(p.Worker, p.Incarnation)] = true
			}
		}
	}
	var regs []string
	if err := e.bounded(ctx, func(ctx context.Context) (err error) {
		regs, err = e.r.WorkerIDs(ctx)
		return err
	}); err != nil {
		return nil, fmt.Errorf("cluster executor: list workers: %w", err)
	}
	for _, id := range regs {
		var w model.Worker
		var ok bool
		err := e.bounded(ctx, func(ctx context.Context) (err error) {
			w, _, ok, err = e.r.Registration(ctx, id)
			return err
		})
		if errors.Is(err, store.ErrUndecodable) {
			e.log.Error("a worker registration does not decode; nothing is placed on it", "worker", id, "error", err)
		} else if err != nil {
			return nil, fmt.Errorf("cluster executor: read worker %s: %w", id, err)
		}
		want[id] = true
		name, inc, _ := model.ParseWorkerID(id)
		ws := &workerState{id: id, name: name, inc: inc}
		if ok {
			ws.reg, ws.live = w, true
		}
		e.workers[id] = ws
	}
	var outboxes []string
	if err := e.bounded(ctx, func(ctx context.Context) (err error) {
		outboxes, err = e.r.OutboxIDs(ctx)
		return err
	}); err != nil {
		return nil, fmt.Errorf("cluster executor: list outboxes: %w", err)
	}
	for _, id := range outboxes {
		if _, _, err := model.ParseWorkerID(id); err == nil {
			want[id] = true
		}
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

func workerID(name, inc string) string { return name + model.WorkerIDSeparator + inc }

// bounded runs f with ctx bounded by OpTimeout and cancelled by Close.
func (e *Executor) bounded(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.OpTimeout)
	defer cancel()
	stop := context.AfterFunc(e.ctx, cancel)
	defer stop()
	return f(ctx)
}

// apply writes ops as one fenced batch through the term's Writer, bounded
// as every call (bounded).
func (e *Executor) apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	var res []coord.OpResult
	err := e.bounded(ctx, func(ctx context.Context) (err error) {
		res, err = e.w.Apply(ctx, ops...)
		return err
	})
	return res, err
}

// Statuses delivers every status update; it is closed by Close.
func (e *Executor) Statuses() <-chan executor.Status { return e.out }

// Close stops every watch and the sweeper, waits for the calls in flight
// and closes Statuses. The tasks keep running on their workers: the next
// term's executor finds their placements.
func (e *Executor) Close() error {
	e.closeOnce.Do(func() {
		// Under mu: startWorkerLocked checks it there before it adds
		// to wg, which Close waits for below.
		e.mu.Lock()
		e.calls.Shut()
		e.mu.Unlock()
		e.cancel()
		e.calls.Wait()
		e.wg.Wait()
		close(e.done)
		e.drWG.Wait()
		e.log.Debug("closed")
	})
	return nil
}

// begin registers a call; the returned func ends it.
func (e *Executor) begin() (func(), error) { return e.calls.Enter(ErrClosed) }

// Describe says how many worker incarnations are registered (workers),
// how many of them take placements (live) or are draining, and how many
// placed tasks have not ended (placed).
func (e *Executor) Describe() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var live, draining, placed int
	for _, ws := range e.workers {
		if ws.live && !ws.gone {
			live++
			if ws.reg.Draining {
				draining++
			}
		}
	}
	for _, p := range e.index {
		if !p.State.Terminal() {
			placed++
		}
	}
	return map[string]string{
		"workers":  strconv.Itoa(live),
		"live":     strconv.Itoa(live - draining),
		"draining": strconv.Itoa(draining),
		"placed":   strconv.Itoa(placed),
	}
}

// statusOf is what the index says of a placement.
func statusOf(p store.StoredPlacement, reconcile bool) executor.Status {
	return executor.Status{
		TaskID:    p.Task.ID,
		State:     p.State,
		Message:   p.Message,
		ExitCode:  p.ExitCode,
		Time:      p.UpdatedAt,
		Host:      p.Host,
		Reconcile: reconcile,
	}
}

// commitLocked records p in the index if the index still holds the version
// base the change was made from (0: only if the task is not there), so that
// a stale read never overwrites a newer write; it says whether it did.
func (e *Executor) commitLocked(base coord.Version, p store.StoredPlacement) bool {
	cur, ok := e.index[p.Task.ID]
	if ok && cur.Version != base {
		return false
	}
	e.index[p.Task.ID] = p
	return true
}

// forgetLocked removes a task from the index if it is still at version
// base.
func (e *Executor) forgetLocked(task string, base coord.Version) {
	if cur, ok := e.index[task]; ok && cur.Version == base {
		delete(e.index, task)
	}
}

// lookup returns the index's placement of a task.
func (e *Executor) lookup(task string) (store.StoredPlacement, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.index[task]
	return p, ok
}

// sweep removes, every sweepInterval, the placements whose task ended more
// than Retention ago, with their kill requests.
func (e *Executor) sweep() {
	t := time.NewTicker(e.cfg.sweepInterval())
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var due []store.StoredPlacement
		e.mu.Lock()
		for _, p := range e.index {
			if p.State.Terminal() && now.Sub(p.UpdatedAt) > e.cfg.Retention {
				due = append(due, p)
			}
		}
		e.mu.Unlock()
		for _, p := range due {
			if err := e.remove(p); err != nil {
				if e.ctx.Err() != nil {
					return
				}
				e.log.Warn("remove an ended placement; trying again later", "task", p.Task.ID, "worker", p.Worker, "error", err)
			}
		}
	}
}

// remove deletes one ended placement and its kill request, in one fenced
// batch, the placement at the version the index has.
func (e *Executor) remove(p store.StoredPlacement) error {
	var kill bool
	if err := e.bounded(e.ctx, func(ctx context.Context) (err error) {
		kill, err = e.r.KillRequested(ctx, p.Worker, p.Task.ID)
		return err
	}); err != nil {
		return err
	}
	ops := []coord.Op{store.DeletePlacementOp(p.Worker, p.Task.ID, p.Version)}
	if kill {
		ops = append(ops, coord.DeleteOp(store.KillPath(p.Worker, p.Task.ID), coord.AnyVersion))
	}
	_, err := e.apply(e.ctx, ops...)
	var oe *coord.OpError
	switch {
	case err == nil, errors.As(err, &oe) && oe.Index == 0 && errors.Is(err, coord.ErrNotFound):
		e.mu.Lock()
		e.forgetLocked(p.Task.ID, p.Version)
		e.mu.Unlock()
		return nil
	case errors.As(err, &oe) && oe.Index == 0 && errors.Is(err, coord.ErrVersionConflict):
		// Changed since the index read it: take the store's word, and
		// judge it again at the next sweep.
		return e.refresh(e.ctx, p.Worker, p.Task.ID, p.Version)
	}
	return err
}

// refresh re-reads a placement the index holds at version base.
func (e *Executor) refresh(ctx context.Context, worker, task string, base coord.Version) error {
	var p store.StoredPlacement
	var ok bool
	if err := e.bounded(ctx, func(ctx context.Context) (err error) {
		p, ok, err = e.r.Placement(ctx, worker, task)
		return err
	}); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !ok {
		e.forgetLocked(task, base)
		return nil
	}
	e.commitLocked(base, p)
	return nil
}
