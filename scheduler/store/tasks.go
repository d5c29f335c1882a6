package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/model"
)

// TaskWrite is one write of WriteTasks: what SetRunning, DeleteRunning or
// MoveToFailover writes. Make one with SetRunningWrite, DeleteRunningWrite
// or MoveToFailoverWrite.
type TaskWrite struct {
	kind              taskWriteKind
	running, failover *model.TaskRecord
}

type taskWriteKind int

const (
	setRunning taskWriteKind = iota + 1
	deleteRunning
	moveToFailover
)

// SetRunningWrite is SetRunning(rec) as a write of WriteTasks.
func SetRunningWrite(rec *model.TaskRecord) TaskWrite {
	return TaskWrite{kind: setRunning, running: rec}
}

// DeleteRunningWrite is DeleteRunning(rec) as a write of WriteTasks.
func DeleteRunningWrite(rec *model.TaskRecord) TaskWrite {
	return TaskWrite{kind: deleteRunning, running: rec}
}

// MoveToFailoverWrite is MoveToFailover(running, failover) as a write of
// WriteTasks.
func MoveToFailoverWrite(running, failover *model.TaskRecord) TaskWrite {
	return TaskWrite{kind: moveToFailover, running: running, failover: failover}
}

// ops are the write's ops; a move's two stay in one batch, as
// MoveToFailover writes them.
func (w TaskWrite) ops() []coord.Op {
	if w.running == nil || (w.kind == moveToFailover && w.failover == nil) {
		return nil
	}
	run := RunningPath(w.running.Job, w.running.ID)
	switch w.kind {
	case setRunning:
		return []coord.Op{coord.SetOp(run, encode(w.running), coord.AnyVersion)}
	case deleteRunning:
		return []coord.Op{coord.DeleteOp(run, coord.AnyVersion)}
	case moveToFailover:
		return []coord.Op{
			coord.CreateOp(FailoverPath(w.failover.Job, w.failover.ID), encode(w.failover)),
			coord.DeleteOp(run, coord.AnyVersion),
		}
	}
	return nil
}

// writeTask makes the write by the method it stands for, which deals with a
// node that is missing (a running node gone already, a failover parent
// that a batch cannot make).
func (s *Writer) writeTask(ctx context.Context, w TaskWrite) error {
	switch w.kind {
	case setRunning:
		return s.SetRunning(ctx, w.running)
	case deleteRunning:
		return s.DeleteRunning(ctx, w.running)
	case moveToFailover:
		return s.MoveToFailover(ctx, w.running, w.failover)
	}
	return fmt.Errorf("%w: a task write not made by its constructors", errBadTaskWrite)
}

// errBadTaskWrite is the error of a zero TaskWrite.
var errBadTaskWrite = errors.New("store: invalid task write")

// WriteTasks makes writes, in their order, in as few fenced batches as
// coord.QuickBatchOps and coord.MaxValueSize allow, instead of a round trip
// each: the task records' writes of the statuses or launches the loop
// handles together. A set of a running node that a later write of the
// list replaces or removes is left out: nobody reads the node in between.
// Each write is within one batch and batches go one after another, so a
// failure leaves each task's record as it was or as a prefix of its writes
// leaves it (without the sets left out), each task on its own: what a
// crash between the same writes made one at a time may leave, so every
// recovery that holds for those holds here. The batches are not sent at
// once: on etcd, batches that create or delete nodes under the same parent
// conflict with each other and are retried.
//
// A batch that fails on an op (a running node gone already, a failover
// parent a batch cannot make) wrote nothing; its writes are then made one
// at a time, in order, by the methods they stand for, which deal with
// those cases. The error is the store's failure (a lost term among them).
func (s *Writer) WriteTasks(ctx context.Context, writes []TaskWrite) error {
	writes = coalesce(writes)
	var chunks [][]TaskWrite
	var chunkOps [][]coord.Op
	for len(writes) > 0 {
		var ops []coord.Op
		n, size := 0, 0
		for _, w := range writes {
			wops := w.ops()
			if wops == nil {
				return fmt.Errorf("%w: a task write not made by its constructors", errBadTaskWrite)
			}
			wsize := 0
			for _, op := range wops {
				wsize += len(op.Value)
			}
			if n > 0 && (len(ops)+len(wops) > coord.QuickBatchOps || size+wsize > coord.MaxValueSize) {
				break
			}
			ops, size, n = append(ops, wops...), size+wsize, n+1
		}
		chunks, chunkOps = append(chunks, writes[:n]), append(chunkOps, ops)
		writes = writes[n:]
	}
	for k := range chunks {
		if err := s.writeTaskBatch(ctx, chunks[k], chunkOps[k]); err != nil {
			return err
		}
	}
	return nil
}

// coalesce leaves out the sets of running nodes that a later write of the
// list replaces or removes.
func coalesce(writes []TaskWrite) []TaskWrite {
	later := make(map[string]bool, len(writes))
	keep := make([]bool, len(writes))
	n := 0
	for i := len(writes) - 1; i >= 0; i-- {
		w := writes[i]
		if w.running == nil {
			keep[i] = true // refused by WriteTasks
			n++
			continue
		}
		path := RunningPath(w.running.Job, w.running.ID)
		if w.kind != setRunning || !later[path] {
			keep[i] = true
			n++
		}
		later[path] = true
	}
	out := make([]TaskWrite, 0, n)
	for i, w := range writes {
		if keep[i] {
			out = append(out, w)
		}
	}
	return out
}

// writeTaskBatch writes ops, the ops of writes, in one batch, or writes
// one at a time when the batch fails on an op or is too large (a lone
// write whose record passes the size limit gets its method's own answer).
func (s *Writer) writeTaskBatch(ctx context.Context, writes []TaskWrite, ops []coord.Op) error {
	actx, cancel := s.bound(ctx)
	_, err := s.w.Apply(actx, ops...)
	cancel()
	var oe *coord.OpError
	if err == nil {
		return nil
	}
	if !errors.As(err, &oe) && !errors.Is(err, coord.ErrBatchTooLarge) {
		return fmt.Errorf("write %d task records: %w", len(writes), err)
	}
	for _, w := range writes {
		if err := s.writeTask(ctx, w); err != nil {
			return err
		}
	}
	return nil
}
