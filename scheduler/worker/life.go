package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
	"github.com/hasched/hasched/scheduler/worker/watchdog"
)

var (
	// errTripped: the safety clock or a fenced write found the session
	// lost; every task was killed.
	errTripped = errors.New("worker: session lost; tasks killed")
	// errDrained: Drain is done and the session closed.
	errDrained = errors.New("worker: drained")
)

// life is one incarnation: one session, one registration, one outbox.
type life struct {
	r     *run
	log   hclog.Logger
	sess  coord.Coordinator
	inc   string
	id    string // name~inc
	fence *fence

	ctx    context.Context // cancelled when the life ends
	cancel context.CancelFunc
	wg     sync.WaitGroup // outbox, safety clock, watches
	// launches are the Launch calls in flight.
	launches sync.WaitGroup

	outbox *outbox

	// Guarded by r.mu.
	dead  bool
	owned map[string]*owned

	tripOnce sync.Once
	tripped  chan struct{}

	// Main loop only.
	seen    map[string]bool // placements looked at
	kills   map[string]bool // kill requests listed
	swept   bool            // the claims are made and the strays killed
	pending []*owned        // claimed, launched once swept
	// stampMu serializes stamps (the stamper, launches, the end) and
	// guards deadline.
	stampMu  sync.Mutex
	deadline time.Time // last stamped
}

// life runs one incarnation until ctx ends (ctx's error), it is drained
// (errDrained) or its session is lost (errTripped, or the error that kept
// it from starting).
func (r *run) life(ctx context.Context, prev string) error {
	sess, err := r.open(ctx)
	if err != nil {
		return err
	}
	inc := newIncarnation()
	lctx, cancel := context.WithCancel(ctx)
	l := &life{
		r: r, sess: sess, inc: inc, id: r.cfg.Name + model.WorkerIDSeparator + inc,
		ctx: lctx, cancel: cancel, owned: map[string]*owned{}, tripped: make(chan struct{}),
		seen: map[string]bool{}, kills: map[string]bool{},
	}
	l.log = r.log.With("incarnation", inc)
	err = l.serve(ctx, prev)
	l.end(ctx, err)
	return err
}

// open opens a session, retrying until ctx ends.
func (r *run) open(ctx context.Context) (coord.Coordinator, error) {
	for {
		octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		sess, err := r.cfg.Open(octx)
		cancel()
		if err == nil {
			return sess, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.log.Warn("cannot open a session; retrying", "error", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(r.cfg.RetryInterval):
		}
	}
}

// serve registers the incarnation, claims the previous one's placements
// and runs the main loop.
func (l *life) serve(ctx context.Context, prev string) error {
	r := l.r
	if err := l.register(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	r.cur = l
	r.mu.Unlock()

	// The safety clock first: from now on nothing runs past SafeUntil.
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		l.safetyClock()
	}()
	go func() {
		defer l.wg.Done()
		if err := l.outbox.run(l.ctx); errors.Is(err, errRegistrationGone) {
			l.trip("outbox: " + err.Error())
		}
	}()

	if err := l.claim(prev); err != nil {
		return err
	}
	if err := l.sweep(); err != nil {
		return err
	}
	l.swept = true
	if err := l.stamp(); err != nil {
		l.log.Error("cannot stamp the watchdog file", "error", err)
	}
	// The stamp goes on in a goroutine of its own, only now that the
	// previous incarnation's strays are dead (a stamp lists this one's
	// tasks only), and never waits for the main loop: a loop held up by
	// a slow coordinator must not let the watchdog kill a live worker's
	// tasks.
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.stamper()
	}()
	for _, o := range l.pending {
		l.launch(o)
	}
	l.pending = nil
	return l.loop(ctx)
}

// register makes the registration node and the outbox.
func (l *life) register(ctx context.Context) error {
	r := l.r
	info := r.w.registration(l.inc, r.draining)
	val := store.EncodeRegistration(info)
	var node coord.Node
	var err error
	for {
		cctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		node, err = l.sess.Create(cctx, store.WorkerPath(l.id), val, coord.Ephemeral())
		if err == nil {
			_, err = l.sess.Create(cctx, store.OutboxRoot, nil)
			if errors.Is(err, coord.ErrExists) {
				err = nil
			}
		}
		cancel()
		if err == nil {
			break
		}
		if errors.Is(err, coord.ErrSessionLost) || errors.Is(err, coord.ErrClosed) || ctx.Err() != nil {
			return fmt.Errorf("register: %w", err)
		}
		if errors.Is(err, coord.ErrExists) {
			// Our own create whose answer was lost: read its version.
			cctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
			node, err = l.sess.Get(cctx, store.WorkerPath(l.id))
			cancel()
			if err == nil {
				break
			}
		}
		l.log.Warn("cannot register; retrying", "error", err)
		if err := sleep(ctx, r.cfg.RetryInterval); err != nil {
			return err
		}
	}
	l.fence = &fence{sess: l.sess, path: store.WorkerPath(l.id), timeout: r.cfg.OpTimeout, val: val, ver: node.Version}
	l.outbox = newOutbox(l.id, l.fence, l.log, r.cfg.RetryInterval)
	if err := l.write(ctx, nil, coord.CreateOp(store.OutboxPath(l.id), nil)); err != nil && !errors.Is(err, coord.ErrExists) {
		return fmt.Errorf("create outbox: %w", err)
	}
	// Only now: a restart must claim what this incarnation may run, and
	// nothing runs before this is written.
	if err := r.writeIncarnation(l.inc); err != nil {
		return fmt.Errorf("record incarnation: %w", err)
	}
	r.w.setInfo(info)
	l.log.Info("registered", "id", l.id, "cpus", info.CPUs, "memory_mb", info.MemoryMB)
	return nil
}

// write is a fenced write retried while its outcome is unknown or the
// coordinator unavailable. A lost registration trips the life.
func (l *life) write(ctx context.Context, newVal []byte, ops ...coord.Op) error {
	for {
		err := l.fence.apply(ctx, newVal, ops...)
		var oe *coord.OpError
		switch {
		case err == nil, errors.As(err, &oe):
			return err
		case errors.Is(err, errRegistrationGone):
			l.trip(err.Error())
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		}
		l.log.Warn("write failed; retrying", "error", err)
		if err := sleep(ctx, l.r.cfg.RetryInterval); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// safetyClock trips the life when its session may be lost: when now
// reaches SafeUntil (which renewals keep moving on) or the session ends.
func (l *life) safetyClock() {
	for {
		until := l.sess.SafeUntil()
		left := time.Until(until)
		if left <= 0 {
			l.trip(fmt.Sprintf("safe-until %v passed", until))
			return
		}
		// Looked at again at least every stamp: a clock that moved back
		// (a renewal answered with a shorter lease) is noticed in time.
		t := time.NewTimer(min(left, l.r.cfg.StampInterval))
		select {
		case <-l.sess.Done():
			t.Stop()
			l.trip("session ended")
			return
		case <-l.ctx.Done():
			t.Stop()
			return
		case <-l.tripped:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// trip ends the incarnation at once: no more reports or launches, and
// every task it owns SIGKILLed now, before the server may expire the
// session. The main loop then finishes the job (see end).
func (l *life) trip(why string) {
	l.tripOnce.Do(func() {
		r := l.r
		r.mu.Lock()
		l.dead = true
		var ids []string
		for id, o := range l.owned {
			if !o.terminal {
				ids = append(ids, id)
			}
		}
		r.mu.Unlock()
		l.log.Error("the session may be lost: killing every task", "reason", why, "tasks", len(ids))
		for _, id := range ids {
			if err := r.ex.KillNow(context.Background(), id); err != nil {
				l.log.Error("cannot kill task", "task_id", id, "error", err)
			}
		}
		close(l.tripped)
		l.cancel()
	})
}

// claim re-binds the previous incarnation's live placements to this one
// (fenced by the registration, version-checked against the leader's LOST
// mark). A claim that loses kills its task at once, unreported.
func (l *life) claim(prev string) error {
	if prev == "" {
		return nil
	}
	r := l.r
	names, err := l.children(store.PlacementsPath(r.cfg.Name))
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := l.claimOne(prev, name); err != nil {
			return err
		}
	}
	return nil
}

func (l *life) claimOne(prev, taskID string) error {
	r := l.r
	path := store.PlacementPath(r.cfg.Name, taskID)
	for attempt := 0; ; attempt++ {
		n, p, err := l.placement(path)
		if err != nil {
			return err
		}
		if n.Path == "" {
			if attempt > 0 {
				l.loseClaim(taskID, "placement removed")
			}
			return nil
		}
		if p.Incarnation == l.inc {
			l.log.Info("claimed a task of the previous incarnation", "task_id", taskID)
			l.own(p.Task, false)
			return nil
		}
		if p.Incarnation != prev || p.State.Terminal() || p.Worker != r.cfg.Name {
			if attempt > 0 || p.Incarnation == prev {
				l.loseClaim(taskID, fmt.Sprintf("placement is %s of incarnation %s", p.State, p.Incarnation))
			}
			return nil
		}
		p.Incarnation = l.inc
		err = l.write(l.ctx, nil, coord.SetOp(path, store.EncodePlacement(p), n.Version))
		var oe *coord.OpError
		switch {
		case err == nil:
			l.log.Info("claimed a task of the previous incarnation", "task_id", taskID)
			l.own(p.Task, false)
			return nil
		case errors.As(err, &oe):
			continue // changed meanwhile (a report folded, LOST marked): look again
		default:
			return err
		}
	}
}

// loseClaim kills a task whose placement this incarnation could not claim:
// it may be running elsewhere already.
func (l *life) loseClaim(taskID, why string) {
	l.log.Warn("lost the claim of a task; killing it", "task_id", taskID, "reason", why)
	if err := l.r.ex.KillNow(context.Background(), taskID); err != nil {
		l.log.Error("cannot kill task", "task_id", taskID, "error", err)
	}
}

// placement reads a placement; a zero node if it is missing.
func (l *life) placement(path string) (coord.Node, model.Placement, error) {
	for {
		ctx, cancel := context.WithTimeout(l.ctx, l.r.cfg.OpTimeout)
		n, err := l.sess.Get(ctx, path)
		cancel()
		switch {
		case err == nil:
			p, err := store.DecodePlacement(n)
			if err != nil {
				l.log.Error("ignoring an undecodable placement", "path", path, "error", err)
				return coord.Node{}, p, nil
			}
			return n, p, nil
		case errors.Is(err, coord.ErrNotFound):
			return coord.Node{}, model.Placement{}, nil
		case errors.Is(err, coord.ErrSessionLost), errors.Is(err, coord.ErrClosed):
			l.trip(err.Error())
			return coord.Node{}, model.Placement{}, errTripped
		case l.ctx.Err() != nil:
			return coord.Node{}, model.Placement{}, l.ctx.Err()
		}
		l.log.Warn("cannot read placement; retrying", "path", path, "error", err)
		if err := sleep(l.ctx, l.r.cfg.RetryInterval); err != nil {
			return coord.Node{}, model.Placement{}, err
		}
	}
}

// children lists a node's children (none if it is missing), retrying.
func (l *life) children(path string) ([]string, error) {
	for {
		ctx, cancel := context.WithTimeout(l.ctx, l.r.cfg.OpTimeout)
		names, err := l.sess.Children(ctx, path)
		cancel()
		switch {
		case err == nil:
			return names, nil
		case errors.Is(err, coord.ErrNotFound):
			return nil, nil
		case errors.Is(err, coord.ErrSessionLost), errors.Is(err, coord.ErrClosed):
			l.trip(err.Error())
			return nil, errTripped
		case l.ctx.Err() != nil:
			return nil, l.ctx.Err()
		}
		l.log.Warn("cannot list; retrying", "path", path, "error", err)
		if err := sleep(l.ctx, l.r.cfg.RetryInterval); err != nil {
			return nil, err
		}
	}
}

// sweep kills every task of the work directory this incarnation does not
// own: the work directory is this worker's alone, so such a task is a
// leftover of an incarnation whose placements were not (or could not be)
// claimed, and may be running elsewhere by now.
func (l *life) sweep() error {
	r := l.r
	ids, err := r.ex.Live(l.ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	var strays []string
	for _, id := range ids {
		if l.owned[id] == nil {
			strays = append(strays, id)
		}
	}
	r.mu.Unlock()
	for _, id := range strays {
		l.log.Warn("killing a task this incarnation does not own", "task_id", id)
		if err := r.ex.KillNow(context.Background(), id); err != nil {
			l.log.Error("cannot kill task", "task_id", id, "error", err)
		}
	}
	return nil
}

// stamp renews the watchdog's stamp: the tasks owned, which must be dead
// by the session's SafeUntil unless a later stamp moves it on.
func (l *life) stamp() error {
	r := l.r
	r.mu.Lock()
	var ids []string
	for id, o := range l.owned {
		if !o.terminal || !o.launched {
			ids = append(ids, id)
		}
	}
	dead := l.dead
	r.mu.Unlock()
	if dead {
		return nil
	}
	l.stampMu.Lock()
	defer l.stampMu.Unlock()
	until := l.sess.SafeUntil()
	if err := watchdog.WriteStamp(r.cfg.WorkDir, watchdog.Stamp{
		Deadline: until, Tasks: ids, Incarnation: l.inc, Pid: os.Getpid(), Written: time.Now().UTC(),
	}); err != nil {
		return err
	}
	l.deadline = until
	return nil
}

// stamper renews the stamp every StampInterval until the incarnation ends.
func (l *life) stamper() {
	t := time.NewTicker(l.r.cfg.StampInterval)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-l.tripped:
			return
		case <-t.C:
			if err := l.stamp(); err != nil {
				l.log.Error("cannot stamp the watchdog file", "error", err)
			}
		}
	}
}

// own makes a placed task this incarnation's and launches it (a claimed
// one is adopted: Launch is idempotent). killed: a kill request came
// before it was launched; it is reported KILLED and never started.
func (l *life) own(t executor.Task, killed bool) {
	r := l.r
	r.mu.Lock()
	if l.dead || l.owned[t.ID] != nil {
		r.mu.Unlock()
		return
	}
	o := &owned{task: t}
	l.owned[t.ID] = o
	if killed {
		o.terminal, o.launched = true, true
		l.outbox.push(model.Report{Incarnation: l.inc, Status: executor.Status{
			TaskID: t.ID, State: executor.StateKilled, Message: "killed before it was launched",
			Time: time.Now(), Host: r.cfg.Host,
		}})
	}
	r.mu.Unlock()
	if killed {
		return
	}
	// Stamped before it can start: a task the watchdog does not know of
	// would outlive this process's death unbounded. Claimed tasks wait for
	// the first stamp (the previous incarnation's stamp rules them until
	// then, and it must not be replaced before the claims are done).
	if !l.swept {
		l.pending = append(l.pending, o)
		return
	}
	if err := l.stamp(); err != nil {
		l.log.Error("cannot stamp the watchdog file; not launching", "task_id", t.ID, "error", err)
		l.giveUp(o, fmt.Sprintf("worker cannot stamp its watchdog file: %v", err))
		return
	}
	l.launch(o)
}

// launch runs Launch for an owned task in the background (a slow app
// fetch must not hold up the loop); a kill asked meanwhile follows it.
func (l *life) launch(o *owned) {
	r, t := l.r, o.task
	l.launches.Add(1)
	go func() {
		defer l.launches.Done()
		err := r.ex.Launch(executor.WithStartCheck(l.ctx, l.mayStart), []executor.Task{t})
		if err != nil && l.ctx.Err() == nil {
			l.log.Error("cannot launch task", "task_id", t.ID, "error", err)
			l.giveUp(o, fmt.Sprintf("launch: %v", err))
		}
		r.mu.Lock()
		o.launched = true
		kill := o.killAsked && !o.killSent && !o.terminal
		o.killSent = o.killSent || kill
		r.mu.Unlock()
		if kill {
			l.kill(t.ID)
		}
	}()
}

// mayStart is the start check of this life's Launch calls: a task begins
// to run only while the session surely lives. The safety clock kills what
// runs at SafeUntil, but a process frozen in the middle of a Launch
// resumes past it, and goes on with the Launch before the clock, frozen
// too, has tripped; this withholds the task's start then.
func (l *life) mayStart() error {
	l.r.mu.Lock()
	dead := l.dead
	l.r.mu.Unlock()
	if dead {
		return errTripped
	}
	if until := l.sess.SafeUntil(); !time.Now().Before(until) {
		return fmt.Errorf("worker: the session may be lost: safe-until %v has passed", until)
	}
	return nil
}

// giveUp reports a task FAILED that could not be launched.
func (l *life) giveUp(o *owned, msg string) {
	r := l.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if o.terminal || l.dead {
		return
	}
	o.terminal, o.launched = true, true
	l.outbox.push(model.Report{Incarnation: l.inc, Status: executor.Status{
		TaskID: o.task.ID, State: executor.StateFailed, Message: msg, Time: time.Now(), Host: r.cfg.Host,
	}})
}

// requestKill kills an owned task now, or once its Launch returns.
func (l *life) requestKill(id string) {
	r := l.r
	r.mu.Lock()
	o := l.owned[id]
	if o == nil || o.terminal || o.killAsked {
		r.mu.Unlock()
		return
	}
	o.killAsked = true
	kill := o.launched
	o.killSent = kill
	r.mu.Unlock()
	if kill {
		l.kill(id)
	}
}

func (l *life) kill(id string) {
	l.log.Info("killing task", "task_id", id)
	if err := l.r.ex.Kill(l.ctx, id); err != nil {
		l.log.Error("cannot kill task", "task_id", id, "error", err)
	}
}
