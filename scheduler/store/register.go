package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/model"
)

// Registered is what CreateJobs did with one job.
type Registered struct {
	// Ready is the job's new ready node, when Err is nil.
	Ready Ready
	// Err is why the job is not registered: model.ErrExists, or the
	// store's failure that CreateJobs returns too (the job may then be
	// written or not, as after a failed CreateJob).
	Err error
}

// jobOps is the number of ops one job takes in a batch of CreateJobs.
const jobOps = 4

// CreateJobs registers jobs as CreateJob registers one, in as few fenced
// batches as they fit in: a registration's writes are then one atomic
// write, and concurrent registrations share its round trips. Each job's
// outcome is its own: one that is stored already is refused with
// model.ErrExists and the others are written without it. A job that finds
// something of an earlier job of its name in the way (a ready node or a
// disable flag that an interrupted deregistration left) is registered
// alone, by CreateJob, which replaces it. The error is the store's failure
// (a lost term among them): the jobs not known to be written have it as
// their Err. Names must be distinct.
func (s *Writer) CreateJobs(ctx context.Context, jobs []model.Job, now time.Time) ([]Registered, error) {
	b := newJobBatch(s, jobs, now)
	alone := b.oversized()
	for _, chunk := range b.chunks() {
		left, err := b.commit(ctx, chunk)
		if err != nil {
			return b.fail(err), err
		}
		alone = append(alone, left...)
	}
	for _, i := range alone {
		rn, err := s.CreateJob(ctx, jobs[i], now)
		switch {
		case errors.Is(err, model.ErrExists):
			b.out[i].Err = err
		case err != nil:
			return b.fail(err), err
		default:
			b.out[i].Ready = rn
		}
		b.settled[i] = true
	}
	return b.out, nil
}

// jobBatch is one call of CreateJobs.
type jobBatch struct {
	s      *Writer
	jobs   []model.Job
	now    time.Time
	values [][]byte // each job's configuration, encoded
	// ready is every job's first ready node; flag is the value of the
	// disable flag whose absence a batch asserts.
	ready, flag []byte
	out         []Registered
	settled     []bool          // the job's outcome is in out
	made        map[string]bool // parents made after a batch missed them
}

func newJobBatch(s *Writer, jobs []model.Job, now time.Time) *jobBatch {
	b := &jobBatch{
		s: s, jobs: jobs, now: now,
		values:  make([][]byte, len(jobs)),
		ready:   encode(Ready{RegisteredAt: now}),
		flag:    encode(disabledNode{DisabledAt: now}),
		out:     make([]Registered, len(jobs)),
		settled: make([]bool, len(jobs)),
		made:    map[string]bool{},
	}
	for i, job := range jobs {
		b.values[i] = encode(job)
	}
	return b
}

// size is what job i's ops add to a batch's values.
func (b *jobBatch) size(i int) int { return len(b.values[i]) + len(b.ready) + len(b.flag) }

// oversized lists the jobs whose ops alone exceed a batch's values: they
// are registered alone, with CreateJob's own answer to their size.
func (b *jobBatch) oversized() []int {
	var out []int
	for i := range b.jobs {
		if b.size(i) > coord.MaxValueSize {
			out = append(out, i)
		}
	}
	return out
}

// chunks cuts the other jobs into batches within coord.MaxBatchOps ops and
// coord.MaxValueSize bytes of values.
func (b *jobBatch) chunks() [][]int {
	var out [][]int
	var cur []int
	size := 0
	for i := range b.jobs {
		n := b.size(i)
		if n > coord.MaxValueSize {
			continue
		}
		if len(cur) > 0 && ((len(cur)+1)*jobOps > coord.MaxBatchOps || size+n > coord.MaxValueSize) {
			out, cur, size = append(out, cur), nil, 0
		}
		cur, size = append(cur, i), size+n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// ops are job i's writes, valid while nothing of a job of its name is
// stored: its configuration and its ready node made, and no disable flag
// there. A batch has no "check absent" op, so the flag is made and deleted
// again: that writes nothing, and fails the batch, atomically with the
// rest, if a flag is there.
func (b *jobBatch) ops(i int) []coord.Op {
	name := b.jobs[i].JobName
	return []coord.Op{
		coord.CreateOp(JobPath(name), b.values[i]),
		coord.CreateOp(ReadyPath(name), b.ready),
		coord.CreateOp(DisabledJobPath(name), b.flag),
		coord.DeleteOp(DisabledJobPath(name), coord.AnyVersion),
	}
}

// commit writes the jobs of live in one batch. When an op fails, nothing
// was written: a missing parent is made, a job that exists is refused, a
// job something else is in the way of is handed back to be registered
// alone, and the batch is tried again without it. Each try makes a parent
// or takes a job out, so it ends.
func (b *jobBatch) commit(ctx context.Context, live []int) ([]int, error) {
	var alone []int
	live = append([]int(nil), live...)
	for len(live) > 0 {
		ops := make([]coord.Op, 0, len(live)*jobOps)
		for _, i := range live {
			ops = append(ops, b.ops(i)...)
		}
		res, err := b.apply(ctx, ops)
		var oe *coord.OpError
		switch {
		case err == nil:
			for k, i := range live {
				b.out[i].Ready = Ready{RegisteredAt: b.now, Version: res[k*jobOps+1].Version}
				b.settled[i] = true
			}
			return alone, nil
		case !errors.As(err, &oe):
			return nil, fmt.Errorf("register %d jobs: %w", len(live), err)
		}
		if made, err := b.makeParent(ctx, oe); err != nil {
			return nil, err
		} else if made {
			continue
		}
		k := oe.Index / jobOps
		i := live[k]
		if oe.Index%jobOps == 0 && errors.Is(oe, coord.ErrExists) {
			b.out[i].Err = fmt.Errorf("%w: job %q", model.ErrExists, b.jobs[i].JobName)
			b.settled[i] = true
		} else {
			alone = append(alone, i)
		}
		live = append(live[:k], live[k+1:]...)
	}
	return alone, nil
}

func (b *jobBatch) apply(ctx context.Context, ops []coord.Op) ([]coord.OpResult, error) {
	ctx, cancel := b.s.bound(ctx)
	defer cancel()
	return b.s.w.Apply(ctx, ops...)
}

// makeParent makes the parent a create of a batch missed (a batch makes no
// parents), once per parent: missed again, it was deleted meanwhile, and
// the job goes alone.
func (b *jobBatch) makeParent(ctx context.Context, oe *coord.OpError) (bool, error) {
	if oe.Op.Kind() != coord.OpCreate || !errors.Is(oe, coord.ErrNotFound) {
		return false, nil
	}
	parent := parentOf(oe.Op.Path)
	if b.made[parent] {
		return false, nil
	}
	b.made[parent] = true
	ctx, cancel := b.s.bound(ctx)
	defer cancel()
	if _, err := b.s.w.Create(ctx, parent, nil); err != nil && !errors.Is(err, coord.ErrExists) {
		return false, fmt.Errorf("create %s: %w", parent, err)
	}
	return true, nil
}

// fail gives err to every job whose outcome is not known yet.
func (b *jobBatch) fail(err error) []Registered {
	for i := range b.out {
		if !b.settled[i] {
			b.out[i].Err = err
		}
	}
	return b.out
}
