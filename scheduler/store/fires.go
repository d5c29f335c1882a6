package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/model"
)

// FireWrite is one job's share of WriteFires: the running nodes of the
// fires it moves to running, and its ready node as it is to be written (the
// fires produced added, those moved taken off), expected at Ready.Version.
type FireWrite struct {
	Job     string
	Running []*model.TaskRecord
	Ready   Ready
}

// FireWritten is what WriteFires wrote of one FireWrite.
type FireWritten struct {
	// Running are the records of the running nodes, as stored: one that
	// existed already (an earlier term got this far) is kept as it was.
	Running []*model.TaskRecord
	// Ready is the ready node at its new version (in WriteFires' answer;
	// not yet when written is called).
	Ready Ready
}

// WriteFires writes what one pass of the producer and the launcher did to
// many jobs, in as few fenced batches as coord.QuickBatchOps and
// coord.MaxValueSize allow, instead of a round trip per job. It writes in
// two rounds: first every job's running nodes, then every job's ready
// node. A job's running nodes never straddle two batches, so they are
// written atomically together; a share of more running nodes than a batch
// holds is written by CreateRunning, in several. Batches hold different
// jobs and are independent, so each round's are first sent up to
// writesInFlight at a time (tryAtOnce).
//
// Running nodes first is the order LaunchFire keeps within a job (step (a)
// of the launcher's move, then (b)); across jobs it lets the tasks start
// once their running nodes are written, without waiting for the ready
// nodes, which are half of the writes. A failure leaves any job's running
// nodes written or not, and its ready node written only if all its running
// nodes are: a fire that was ready is then still ready with its running
// nodes there, and a fire produced in the same pass has running nodes
// beyond the ready node's LastFire; the next term completes both (the
// scheduler's fires.go).
//
// A batch that fails on one job's op (a running node that exists, a ready
// node at another version) is written again without it, and that job is
// written alone by CreateRunning, which keeps existing running nodes, or
// SetReady, which fails on a version conflict. The running parents that
// are missing are made in the batches of the running nodes under them:
// the Writer knows which exist from the term's load (KnowRunningParents),
// or else learns it with one read of the running root once a batch misses
// one. Job names must be distinct; the error is the store's failure (a
// lost term among them).
//
// written, if not nil, is called with each share as soon as its running
// nodes are written (a share without any: once its ready node is), on the
// caller's goroutine, so that the caller can act on the first batch's
// shares (launch their tasks) while the next are written.
func (s *Writer) WriteFires(ctx context.Context, writes []FireWrite, written func(int, FireWritten)) ([]FireWritten, error) {
	b := &fireBatch{
		s:      s,
		notify: written,
		writes: writes,
		out:    make([]FireWritten, len(writes)),
		done:   make([]bool, len(writes)),
		recs:   make([][][]byte, len(writes)),
		ready:  make([][]byte, len(writes)),
		made:   map[string]bool{},
		// What an earlier call learnt, and made since, holds: only the
		// term writes running parents, through this Writer.
		parents: s.runningParents,
	}
	// The values are encoded as their batches are cut (encoded), not all
	// here: the first batch goes out once its own are.
	var launched []int
	for i, w := range writes {
		if len(w.Running) > 0 {
			launched = append(launched, i)
		}
	}
	if err := b.round(ctx, launched); err != nil {
		return nil, err
	}
	b.readyRound = true
	clear(b.done)
	all := make([]int, len(writes))
	for i := range all {
		all[i] = i
	}
	if err := b.round(ctx, all); err != nil {
		return nil, err
	}
	return b.out, nil
}

// round writes the shares of todo of the current round.
func (b *fireBatch) round(ctx context.Context, todo []int) error {
	if err := b.tryAtOnce(ctx, todo); err != nil {
		return err
	}
	for {
		todo = slices.DeleteFunc(todo, func(i int) bool { return b.done[i] })
		if len(todo) == 0 {
			return nil
		}
		n := b.fits(todo)
		if n == 0 {
			if err := b.alone(ctx, todo[0]); err != nil {
				return err
			}
			continue
		}
		if err := b.commit(ctx, todo[:n]); err != nil {
			return err
		}
	}
}

// writesInFlight bounds the batches tryAtOnce keeps outstanding.
const writesInFlight = 8

// tryAtOnce is WriteFires' fast path: the shares cut into batches, sorted
// by their running nodes' keys, and the batches sent up to writesInFlight
// at a time rather than one after another, which took most of the lag of
// 1,000 fires a second. Batches of different jobs are independent, so any
// of them may be written and not another; sorted, the batches of one call
// touch disjoint ranges of nodes, so that a backend that guards a batch by
// a range of keys (etcd's compares over the nodes a batch creates) does
// not see them conflict. The batches that succeed are taken in, in their
// order, each as soon as it and those before it are done; those that fail
// on an op are left to the one-batch-at-a-time path, which deals with
// every such case. Only the store's failure is returned.
func (b *fireBatch) tryAtOnce(ctx context.Context, todo []int) error {
	keys := make([]string, len(b.writes))
	for _, i := range todo {
		keys[i] = RunningJobPath(b.writes[i].Job) + "/"
	}
	sorted := slices.Clone(todo)
	slices.SortStableFunc(sorted, func(i, j int) int { return strings.Compare(keys[i], keys[j]) })
	// Which shares make their running parent is fixed for the attempts
	// here: the batches are cut and their ops made, by the goroutine that
	// sends them, while this one takes in those answered (which adds to
	// the parents known), so they must not read what that changes.
	parent := make([]bool, len(b.writes))
	for _, i := range todo {
		parent[i] = b.needsParent(i)
	}
	needs := func(i int) bool { return parent[i] }
	// A batch's values are encoded when it is cut, so the first batch
	// goes out as soon as its own are, while the rest are encoded.
	chunks := 0
	for rest := sorted; len(rest) > 0 && chunks < 2; {
		n := b.fitsWith(rest, needs)
		if n == 0 {
			rest = rest[1:] // too large for a batch: written alone
			continue
		}
		chunks, rest = chunks+1, rest[n:]
	}
	if chunks < 2 {
		return nil // the one-batch-at-a-time path costs no more
	}
	type try struct {
		chunk []int
		ends  []int // each share's last op's index + 1
		res   []coord.OpResult
		err   error
		done  chan struct{}
	}
	// Every attempt is made, then waited for, whatever the others'
	// outcome: none may outlive the call. The sender hands each attempt
	// over in order, then closes tries.
	tries := make(chan *try, len(sorted))
	go func() {
		defer close(tries)
		sem := make(chan struct{}, writesInFlight)
		for rest := sorted; len(rest) > 0; {
			n := b.fitsWith(rest, needs)
			if n == 0 {
				rest = rest[1:] // too large for a batch: written alone
				continue
			}
			t := &try{chunk: rest[:n], done: make(chan struct{})}
			rest = rest[n:]
			var ops []coord.Op
			for _, i := range t.chunk {
				ops = append(ops, b.shareOps(i, parent[i])...)
				t.ends = append(t.ends, len(ops))
			}
			sem <- struct{}{}
			tries <- t
			go func() {
				defer func() { <-sem; close(t.done) }()
				actx, cancel := b.s.bound(ctx)
				defer cancel()
				t.res, t.err = b.s.w.Apply(actx, ops...)
			}()
		}
	}()
	var failed error
	for t := range tries {
		<-t.done
		var oe *coord.OpError
		switch {
		case t.err == nil:
			for j, i := range t.chunk {
				b.record(i, t.res[t.ends[j]-1])
			}
		case !errors.As(t.err, &oe) && failed == nil:
			failed = fmt.Errorf("write the fires of %d jobs: %w", len(t.chunk), t.err)
		}
	}
	return failed
}

// record takes in share i as written by a batch whose result for the
// share's last op is last.
func (b *fireBatch) record(i int, last coord.OpResult) {
	w := b.writes[i]
	if b.readyRound {
		b.out[i].Ready = w.Ready
		b.out[i].Ready.Version = last.Version
	} else {
		b.out[i].Running = w.Running
	}
	b.written(i)
}

// fireBatch is one call of WriteFires.
type fireBatch struct {
	s      *Writer
	notify func(int, FireWritten)
	writes []FireWrite
	out    []FireWritten
	done   []bool // the share is written and its outcome in out
	recs   [][][]byte
	ready  [][]byte
	// readyRound: the running nodes are written, the ready nodes are
	// being written.
	readyRound bool
	// parents are the jobs whose running parent exists; nil until a batch
	// missed one, when one read of the running root fills it, for this
	// call and the Writer's later ones (runningParents).
	parents map[string]bool
	made    map[string]bool // parents made one at a time after a batch missed them
}

// needsParent says whether share i's batch makes its running parent.
func (b *fireBatch) needsParent(i int) bool {
	return !b.readyRound && len(b.writes[i].Running) > 0 && b.parents != nil && !b.parents[b.writes[i].Job]
}

// ops are share i's writes in this round: its running parent if it is
// known to be missing and its running nodes; or its ready node.
func (b *fireBatch) ops(i int) []coord.Op { return b.shareOps(i, b.needsParent(i)) }

// shareOps are share i's writes in this round, its running parent made
// if parent.
func (b *fireBatch) shareOps(i int, parent bool) []coord.Op {
	w := b.writes[i]
	b.encode(i)
	if b.readyRound {
		return []coord.Op{coord.SetOp(ReadyPath(w.Job), b.ready[i], w.Ready.Version)}
	}
	ops := make([]coord.Op, 0, len(w.Running)+1)
	if parent {
		ops = append(ops, coord.CreateOp(RunningJobPath(w.Job), nil))
	}
	for k, r := range w.Running {
		ops = append(ops, coord.CreateOp(RunningPath(w.Job, r.ID), b.recs[i][k]))
	}
	return ops
}

// encode encodes share i's values of this round, once.
func (b *fireBatch) encode(i int) {
	w := b.writes[i]
	switch {
	case b.readyRound && b.ready[i] == nil:
		b.ready[i] = encode(w.Ready)
	case !b.readyRound && b.recs[i] == nil && len(w.Running) > 0:
		b.recs[i] = make([][]byte, len(w.Running))
		for k, r := range w.Running {
			b.recs[i][k] = encode(r)
		}
	}
}

func (b *fireBatch) size(i int) int {
	b.encode(i)
	if b.readyRound {
		return len(b.ready[i])
	}
	n := 0
	for _, v := range b.recs[i] {
		n += len(v)
	}
	return n
}

// fits is how many shares of todo, from the first, one batch holds; 0 if
// the first is too large for a batch of its own. Shares are put together
// up to coord.QuickBatchOps ops, so that the batch is one round trip; a
// share larger than that is a batch of its own, up to coord.MaxBatchOps.
func (b *fireBatch) fits(todo []int) int { return b.fitsWith(todo, b.needsParent) }

// fitsWith is fits, with parent saying which shares make their running
// parent.
func (b *fireBatch) fitsWith(todo []int, parent func(int) bool) int {
	ops, size := 0, 0
	for k, i := range todo {
		n := 1
		if !b.readyRound {
			n = len(b.writes[i].Running)
			if parent(i) {
				n++
			}
		}
		limit := coord.QuickBatchOps
		if k == 0 {
			limit = coord.MaxBatchOps
		}
		if ops+n > limit || size+b.size(i) > coord.MaxValueSize {
			return k
		}
		ops, size = ops+n, size+b.size(i)
	}
	return len(todo)
}

// commit makes one attempt at writing the shares of chunk in one batch.
// When it fails on an op, nothing was written: a missing parent is learnt
// or made, or the share the op belongs to is written alone; the rest are
// left for the next attempt. Every attempt so writes a share, learns the
// parents (once) or makes a parent (once each), so WriteFires ends.
func (b *fireBatch) commit(ctx context.Context, chunk []int) error {
	var ops []coord.Op
	owner := make([]int, 0, coord.MaxBatchOps) // op index → share
	for _, i := range chunk {
		for _, op := range b.ops(i) {
			ops = append(ops, op)
			owner = append(owner, i)
		}
	}
	actx, cancel := b.s.bound(ctx)
	res, err := b.s.w.Apply(actx, ops...)
	cancel()
	var oe *coord.OpError
	switch {
	case err == nil:
		for k, i := range owner {
			if k+1 < len(owner) && owner[k+1] == i {
				continue
			}
			b.record(i, res[k]) // k is share i's last op
		}
		return nil
	case !errors.As(err, &oe) || oe.Index >= len(owner):
		return fmt.Errorf("write the fires of %d jobs: %w", len(chunk), err)
	}
	if oe.Op.Kind() == coord.OpCreate && errors.Is(oe, coord.ErrNotFound) {
		if b.parents == nil {
			return b.learnParents(ctx)
		}
		if parent := parentOf(oe.Op.Path); !b.made[parent] {
			b.made[parent] = true
			cctx, cancel := b.s.bound(ctx)
			defer cancel()
			if _, err := b.s.w.Create(cctx, parent, nil); err != nil && !errors.Is(err, coord.ErrExists) {
				return fmt.Errorf("create %s: %w", parent, err)
			}
			return nil
		}
	}
	return b.alone(ctx, owner[oe.Index])
}

// learnParents reads which jobs have a running parent, in one request.
func (b *fireBatch) learnParents(ctx context.Context) error {
	names, err := b.s.children(ctx, RunningRoot)
	if err != nil {
		return err
	}
	b.parents = make(map[string]bool, len(names))
	for _, n := range names {
		b.parents[n] = true
	}
	b.s.runningParents = b.parents
	return nil
}

// alone writes share i's round by itself: its running nodes by
// CreateRunning, which keeps those that exist and splits a share too large
// for one batch; its ready node by SetReady.
func (b *fireBatch) alone(ctx context.Context, i int) error {
	w := b.writes[i]
	if b.readyRound {
		rn, err := b.s.SetReady(ctx, w.Job, w.Ready)
		if err != nil {
			return err
		}
		b.out[i].Ready = rn
	} else {
		made, err := b.s.CreateRunning(ctx, w.Job, w.Running...)
		if err != nil {
			return err
		}
		b.out[i].Running = made
	}
	b.written(i)
	return nil
}

// written marks share i's round done; the caller hears of a share once,
// when its tasks may start: after its running nodes, or its ready node if
// it has none.
func (b *fireBatch) written(i int) {
	b.done[i] = true
	launches := len(b.writes[i].Running) > 0
	if b.notify != nil && launches != b.readyRound {
		b.notify(i, b.out[i])
	}
	if !b.readyRound && b.parents != nil && launches {
		b.parents[b.writes[i].Job] = true
	}
}
