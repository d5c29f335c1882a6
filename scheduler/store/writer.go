package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/model"
)

// Writer is one term's access to the store: reads through the term's
// session, writes fenced by its leadership. Task records and configurations
// have one writer, the term's loop, and every cross-term write is fenced,
// so they are written without version checks; the ready queue is the one
// node written with its version, because the producer's progress is in it.
type Writer struct {
	Reader
	w       coord.Writer
	timeout time.Duration
	// born and proof make LastProof: proof is when the last write was
	// acknowledged, as nanoseconds after born (monotonic), 0 if none was.
	born  time.Time
	proof atomic.Int64
	// runningParents are the jobs whose running parent exists, as the
	// term's load told them (KnowRunningParents) or WriteFires learnt them
	// with one read of the running root (nil before), kept up since: so
	// that a new job's first fire makes its parent in its batch instead of
	// failing it. It may be stale where another term wrote: a batch that
	// fails on it is mended as before. Only the term's loop uses it
	// (WriteFires, DeleteJobState).
	runningParents map[string]bool
}

// NewWriter writes through w (a leadership's fenced Writer) and reads
// through c (its session). Each call is bounded by timeout.
func NewWriter(c coord.Coordinator, w coord.Writer, timeout time.Duration) *Writer {
	s := &Writer{Reader: Reader{c: c}, timeout: timeout, born: time.Now()}
	s.w = provenWriter{Writer: w, s: s}
	return s
}

// KnowRunningParents tells the Writer which jobs have a running parent:
// running's keys, as a term's load read them (Running lists the empty
// parents too). WriteFires then makes the parents of the others in their
// first fire's batch, instead of failing a batch to learn that they are
// missing.
func (s *Writer) KnowRunningParents(running map[string][]model.TaskRecord) {
	s.runningParents = make(map[string]bool, len(running))
	for job := range running {
		s.runningParents[job] = true
	}
}

// LastProof is when the store last acknowledged a write made through this
// Writer (time.Now at the answer, with its monotonic reading), or zero if
// none was. Through a leadership's fenced Writer every write that succeeds
// passed the fence, so the term led then, whichever write it was.
func (s *Writer) LastProof() time.Time {
	d := s.proof.Load()
	if d == 0 {
		return time.Time{}
	}
	return s.born.Add(time.Duration(d))
}

// proved records that a write was acknowledged now.
func (s *Writer) proved() {
	d := max(int64(time.Since(s.born)), 1)
	for {
		cur := s.proof.Load()
		if d <= cur || s.proof.CompareAndSwap(cur, d) {
			return
		}
	}
}

// provenWriter is the Writer's coord.Writer: each write that succeeds
// moves LastProof.
type provenWriter struct {
	coord.Writer
	s *Writer
}

func (p provenWriter) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (coord.Node, error) {
	n, err := p.Writer.Create(ctx, path, value, opts...)
	p.done(err)
	return n, err
}

func (p provenWriter) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	v, err := p.Writer.Set(ctx, path, value, expected)
	p.done(err)
	return v, err
}

func (p provenWriter) Delete(ctx context.Context, path string, expected coord.Version) error {
	err := p.Writer.Delete(ctx, path, expected)
	p.done(err)
	return err
}

func (p provenWriter) DeleteTree(ctx context.Context, path string) error {
	err := p.Writer.DeleteTree(ctx, path)
	p.done(err)
	return err
}

func (p provenWriter) Apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	res, err := p.Writer.Apply(ctx, ops...)
	p.done(err)
	return res, err
}

func (p provenWriter) done(err error) {
	if err == nil {
		p.s.proved()
	}
}

func (s *Writer) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// apply writes ops as one atomic batch. A create whose parent is missing
// makes the parents and tries once more: a batch makes no parents, and a
// job's running and failover parents come and go with its tasks.
func (s *Writer) apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	res, err := s.w.Apply(ctx, ops...)
	var oe *coord.OpError
	if errors.As(err, &oe) && errors.Is(err, coord.ErrNotFound) && oe.Op.Kind() == coord.OpCreate {
		parent := parentOf(oe.Op.Path)
		if _, perr := s.w.Create(ctx, parent, nil); perr != nil && !errors.Is(perr, coord.ErrExists) {
			return nil, fmt.Errorf("create %s: %w", parent, perr)
		}
		res, err = s.w.Apply(ctx, ops...)
	}
	return res, err
}

func parentOf(path string) string {
	for i := len(path) - 1; i > 0; i-- {
		if path[i] == '/' {
			return path[:i]
		}
	}
	return "/"
}

// CreateApp registers an app; model.ErrExists if it is there.
func (s *Writer) CreateApp(ctx context.Context, app model.App) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.w.Create(ctx, AppPath(app.AppName), encode(app)); err != nil {
		if errors.Is(err, coord.ErrExists) {
			return fmt.Errorf("%w: app %q", model.ErrExists, app.AppName)
		}
		return fmt.Errorf("register app %s: %w", app.AppName, err)
	}
	return nil
}

// SetApp replaces an app's configuration.
func (s *Writer) SetApp(ctx context.Context, app model.App) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.w.Set(ctx, AppPath(app.AppName), encode(app), coord.AnyVersion); err != nil {
		return fmt.Errorf("update app %s: %w", app.AppName, err)
	}
	return nil
}

// DeleteApp removes an app and its disable flag (its jobs must be gone).
func (s *Writer) DeleteApp(ctx context.Context, name string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	for _, p := range []string{DisabledAppPath(name), AppPath(name)} {
		if err := ignore(s.w.Delete(ctx, p, coord.AnyVersion), coord.ErrNotFound); err != nil {
			return fmt.Errorf("deregister app %s: delete %s: %w", name, p, err)
		}
	}
	return nil
}

// SetAppDisabled sets or clears an app's disable flag.
func (s *Writer) SetAppDisabled(ctx context.Context, name string, disabled bool, now time.Time) error {
	return s.setFlag(ctx, DisabledAppPath(name), disabled, now)
}

// SetJobDisabled sets or clears a job's disable flag.
func (s *Writer) SetJobDisabled(ctx context.Context, name string, disabled bool, now time.Time) error {
	return s.setFlag(ctx, DisabledJobPath(name), disabled, now)
}

func (s *Writer) setFlag(ctx context.Context, path string, on bool, now time.Time) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var err error
	if on {
		_, err = s.w.Create(ctx, path, encode(disabledNode{DisabledAt: now}))
		err = ignore(err, coord.ErrExists)
	} else {
		err = ignore(s.w.Delete(ctx, path, coord.AnyVersion), coord.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// CreateJob registers a job: its configuration, then its ready node
// (registered now; one left over from an earlier job of the same name is
// replaced), then a disable flag left by an interrupted deregistration of
// an earlier job of this name is cleared. model.ErrExists if the job is
// there.
func (s *Writer) CreateJob(ctx context.Context, job model.Job, now time.Time) (Ready, error) {
	cctx, cancel := s.bound(ctx)
	_, err := s.w.Create(cctx, JobPath(job.JobName), encode(job))
	cancel()
	if err != nil {
		if errors.Is(err, coord.ErrExists) {
			return Ready{}, fmt.Errorf("%w: job %q", model.ErrExists, job.JobName)
		}
		return Ready{}, fmt.Errorf("register job %s: %w", job.JobName, err)
	}
	rn, err := s.CreateReady(ctx, job.JobName, now)
	if err != nil {
		return Ready{}, err
	}
	return rn, s.SetJobDisabled(ctx, job.JobName, false, now)
}

// SetJob replaces a job's configuration.
func (s *Writer) SetJob(ctx context.Context, job model.Job) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.w.Set(ctx, JobPath(job.JobName), encode(job), coord.AnyVersion); err != nil {
		return fmt.Errorf("update job %s: %w", job.JobName, err)
	}
	return nil
}

// DeleteJob removes all of a job, its configuration last: a deregistration
// interrupted by a crash leaves a job that can be deregistered again.
func (s *Writer) DeleteJob(ctx context.Context, name string) error {
	if err := s.DeleteJobState(ctx, name); err != nil {
		return err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := ignore(s.w.Delete(ctx, JobPath(name), coord.AnyVersion), coord.ErrNotFound); err != nil {
		return fmt.Errorf("deregister job %s: %w", name, err)
	}
	return nil
}

// DeleteJobState removes a job's running and failover tasks, its ready
// node and its disable flag: the state of a job that is gone.
func (s *Writer) DeleteJobState(ctx context.Context, name string) error {
	delete(s.runningParents, name)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	for _, step := range []struct {
		path string
		tree bool
	}{
		{RunningJobPath(name), true},
		{FailoverJobPath(name), true},
		{ReadyPath(name), false},
		{DisabledJobPath(name), false},
	} {
		var err error
		if step.tree {
			err = s.w.DeleteTree(ctx, step.path)
		} else {
			err = s.w.Delete(ctx, step.path, coord.AnyVersion)
		}
		if err := ignore(err, coord.ErrNotFound); err != nil {
			return fmt.Errorf("remove the state of job %s: delete %s: %w", name, step.path, err)
		}
	}
	return nil
}

// CreateReady makes a job's ready node, registered now, replacing one left
// over from an earlier job of the same name.
func (s *Writer) CreateReady(ctx context.Context, job string, now time.Time) (Ready, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rn := Ready{RegisteredAt: now}
	path := ReadyPath(job)
	n, err := s.w.Create(ctx, path, encode(rn))
	switch {
	case err == nil:
		rn.Version = n.Version
	case errors.Is(err, coord.ErrExists):
		v, err := s.w.Set(ctx, path, encode(rn), coord.AnyVersion)
		if err != nil {
			return Ready{}, fmt.Errorf("reset %s: %w", path, err)
		}
		rn.Version = v
	default:
		return Ready{}, fmt.Errorf("create %s: %w", path, err)
	}
	return rn, nil
}

// SetReady writes a job's ready node if it is still at rn.Version, and
// returns it at its new version.
func (s *Writer) SetReady(ctx context.Context, job string, rn Ready) (Ready, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	v, err := s.w.Set(ctx, ReadyPath(job), encode(rn), rn.Version)
	if err != nil {
		return Ready{}, fmt.Errorf("write the ready queue of %s: %w", job, err)
	}
	rn.Version = v
	return rn, nil
}

// LaunchFire moves a fire from the ready queue to running, atomically:
// every record's running node is created and the queue is written as rn,
// in one batch. Where that cannot be one batch (more shards than a batch
// holds, or a long queue whose value with the records passes the batch's
// size limit) the running nodes go first, in batches, and the queue last:
// a crash in between leaves running nodes whose fire is still ready, which
// the next term completes. Records whose running node exists already are
// not written; they are returned as stored.
func (s *Writer) LaunchFire(ctx context.Context, job string, recs []*model.TaskRecord, rn Ready) ([]*model.TaskRecord, Ready, error) {
	if len(recs) > 0 && len(recs) < coord.MaxBatchOps {
		made, v, err := s.createRunning(ctx, job, recs, func() []coord.Op {
			return []coord.Op{coord.SetOp(ReadyPath(job), encode(rn), rn.Version)}
		})
		if err == nil {
			rn.Version = v
			return made, rn, nil
		}
		if !errors.Is(err, coord.ErrBatchTooLarge) {
			return nil, Ready{}, err
		}
	}
	made, err := s.CreateRunning(ctx, job, recs...)
	if err != nil {
		return nil, Ready{}, err
	}
	if rn, err = s.SetReady(ctx, job, rn); err != nil {
		return nil, Ready{}, err
	}
	return made, rn, nil
}

// CreateRunning creates running nodes; those that exist already are kept
// and returned as stored.
func (s *Writer) CreateRunning(ctx context.Context, job string, recs ...*model.TaskRecord) ([]*model.TaskRecord, error) {
	var out []*model.TaskRecord
	for len(recs) > 0 {
		n := min(len(recs), coord.MaxBatchOps)
		made, _, err := s.createRunning(ctx, job, recs[:n], func() []coord.Op { return nil })
		if err != nil {
			return nil, err
		}
		out = append(out, made...)
		recs = recs[n:]
	}
	return out, nil
}

// createRunning creates the running nodes of recs with the extra ops in
// one batch. A node that exists already is read back and its op dropped,
// and the batch is tried again without it. It returns the version of the
// extra ops' last result.
func (s *Writer) createRunning(ctx context.Context, job string, recs []*model.TaskRecord, extra func() []coord.Op) ([]*model.TaskRecord, coord.Version, error) {
	out := make([]*model.TaskRecord, len(recs))
	todo := make([]int, 0, len(recs))
	for i := range recs {
		todo = append(todo, i)
	}
	for {
		ops := make([]coord.Op, 0, len(todo)+1)
		for _, i := range todo {
			ops = append(ops, coord.CreateOp(RunningPath(job, recs[i].ID), encode(recs[i])))
		}
		ops = append(ops, extra()...)
		if len(ops) == 0 {
			return out, 0, nil
		}
		res, err := s.apply(ctx, ops...)
		var oe *coord.OpError
		if errors.As(err, &oe) && errors.Is(err, coord.ErrExists) && oe.Index < len(todo) {
			// An earlier term got this far: keep its record.
			i := todo[oe.Index]
			var stored model.TaskRecord
			_, ok, rerr := s.get(ctx, RunningPath(job, recs[i].ID), &stored)
			if rerr != nil {
				return nil, 0, rerr
			}
			if ok {
				out[i] = &stored
			} else {
				out[i] = recs[i] // deleted meanwhile: cannot happen with one writer
			}
			todo = append(todo[:oe.Index], todo[oe.Index+1:]...)
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("create the running tasks of %s: %w", job, err)
		}
		for _, i := range todo {
			out[i] = recs[i]
		}
		var v coord.Version
		if len(res) > len(todo) {
			v = res[len(res)-1].Version
		}
		return out, v, nil
	}
}

// SetRunning replaces a running task's record.
func (s *Writer) SetRunning(ctx context.Context, rec *model.TaskRecord) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	path := RunningPath(rec.Job, rec.ID)
	if _, err := s.w.Set(ctx, path, encode(rec), coord.AnyVersion); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// DeleteRunning removes a running task's record; a missing one is gone
// already.
func (s *Writer) DeleteRunning(ctx context.Context, rec *model.TaskRecord) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	path := RunningPath(rec.Job, rec.ID)
	if err := ignore(s.w.Delete(ctx, path, coord.AnyVersion), coord.ErrNotFound); err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	return nil
}

// DeleteFailover removes a failover task's record; a missing one is gone
// already.
func (s *Writer) DeleteFailover(ctx context.Context, rec *model.TaskRecord) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	path := FailoverPath(rec.Job, rec.ID)
	if err := ignore(s.w.Delete(ctx, path, coord.AnyVersion), coord.ErrNotFound); err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	return nil
}

// MoveToFailover replaces a running task's record with its failover
// record, atomically.
func (s *Writer) MoveToFailover(ctx context.Context, running, failover *model.TaskRecord) error {
	err := s.replace(ctx, RunningPath(running.Job, running.ID), FailoverPath(failover.Job, failover.ID), failover)
	if err != nil {
		return fmt.Errorf("move %s to the failover queue: %w", running.ID, err)
	}
	return nil
}

// Relaunch replaces a failover task's record with the running record of
// its next attempt, atomically. A running node of that attempt that exists
// already (an earlier term got this far) is kept and returned as stored.
func (s *Writer) Relaunch(ctx context.Context, failover, next *model.TaskRecord) (*model.TaskRecord, error) {
	return s.replaceRunning(ctx, FailoverPath(failover.Job, failover.ID), next)
}

func (s *Writer) replaceRunning(ctx context.Context, old string, next *model.TaskRecord) (*model.TaskRecord, error) {
	path := RunningPath(next.Job, next.ID)
	err := s.replace(ctx, old, path, next)
	if !errors.Is(err, coord.ErrExists) {
		if err != nil {
			return nil, fmt.Errorf("relaunch %s: %w", next.ID, err)
		}
		return next, nil
	}
	var stored model.TaskRecord
	if _, ok, err := s.get(ctx, path, &stored); err != nil {
		return nil, err
	} else if ok {
		next = &stored
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := ignore(s.w.Delete(ctx, old, coord.AnyVersion), coord.ErrNotFound); err != nil {
		return nil, fmt.Errorf("delete %s: %w", old, err)
	}
	return next, nil
}

// replace creates path with rec and deletes old in one batch; an old that
// is gone already is not deleted.
func (s *Writer) replace(ctx context.Context, old, path string, rec *model.TaskRecord) error {
	_, err := s.apply(ctx, coord.CreateOp(path, encode(rec)), coord.DeleteOp(old, coord.AnyVersion))
	var oe *coord.OpError
	if errors.As(err, &oe) && oe.Index == 1 && errors.Is(err, coord.ErrNotFound) {
		_, err = s.apply(ctx, coord.CreateOp(path, encode(rec)))
	}
	return err
}

// Fence proves that the term still leads, with a fenced write: it fails
// with coord.ErrNotLeader once a successor may have acted. The launcher
// calls it right before a Launch unless a write of the term was
// acknowledged just before (LastProof), so a leader that was paused or cut
// off after it decided to launch never starts a task its successor has
// since removed or started itself.
func (s *Writer) Fence(ctx context.Context, token int64) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	v := []byte(fmt.Sprint(token))
	_, err := s.w.Set(ctx, termPath, v, coord.AnyVersion)
	if errors.Is(err, coord.ErrNotFound) {
		_, err = s.w.Create(ctx, termPath, v)
		err = ignore(err, coord.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("check the term before launching: %w", err)
	}
	return nil
}

// StoreExecutorState writes an executor's state under key.
func (s *Writer) StoreExecutorState(ctx context.Context, key string, value []byte) error {
	p, err := executorStatePath(key)
	if err != nil {
		return err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	_, err = s.w.Set(ctx, p, value, coord.AnyVersion)
	if errors.Is(err, coord.ErrNotFound) {
		_, err = s.w.Create(ctx, p, value)
	}
	return err
}
