package zk

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-zookeeper/zk"

	"github.com/hasched/hasched/coord"
)

// neverVersion is a ZooKeeper version no node has: a write conditional on
// it fails with BadVersion once the node is found to exist, so a version
// check Apply settles before sending is still reported by ZooKeeper, in the
// order of the ops.
const neverVersion = -2

// Apply makes every op or none, in one multi.
func (c *Coordinator) Apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	return writer{c: c}.Apply(ctx, ops...)
}

// Apply is Coordinator.Apply, guarded by w.g. The batch is one multi, which
// ZooKeeper plays in order, so an op sees what the ops before it did. A
// create is made empty and given its value by a set in the multi, whose
// answer carries its version (see Create). A version check reads the node's
// mzxid first and makes the write conditional on ZooKeeper's per-node version
// read with it, with the window Set describes; a node an earlier op of the
// batch wrote has a version no one can know yet, so only AnyVersion matches
// it.
func (w writer) Apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	c := w.c
	if len(ops) == 0 {
		return nil, nil
	}
	if err := coord.CheckBatch(ops); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	if err := c.admit(w.g); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	var (
		reqs    []any
		owner   []int // the op each request belongs to
		written = map[string]bool{}
	)
	for i, op := range ops {
		full := c.full(op.Path)
		version := int32(-1)
		if op.Kind() != coord.OpCreate && op.Version != coord.AnyVersion {
			version = neverVersion
			if !written[full] {
				stat, err := c.stat(ctx, full)
				switch {
				case err == nil && coord.Version(stat.Mzxid) == op.Version:
					version = stat.Version
				case err != nil && !errors.Is(err, zk.ErrNoNode):
					return nil, c.fail("apply", op.Path, err)
				}
			}
		}
		switch op.Kind() {
		case coord.OpCreate:
			reqs = append(reqs,
				&zk.CreateRequest{Path: full, Acl: c.acl},
				&zk.SetDataRequest{Path: full, Data: op.Value, Version: 0})
			owner = append(owner, i, i)
		case coord.OpSet:
			reqs = append(reqs, &zk.SetDataRequest{Path: full, Data: op.Value, Version: version})
			owner = append(owner, i)
		case coord.OpDelete:
			reqs = append(reqs, &zk.DeleteRequest{Path: full, Version: version})
			owner = append(owner, i)
		}
		written[full] = true
	}
	res, err := c.apply(ctx, w.g, false, reqs...)
	if err != nil {
		if k := failedOp(err); k >= 0 {
			i := owner[k]
			return nil, &coord.OpError{Index: i, Op: ops[i], Err: fmt.Errorf("%w (%v)", c.mapErr(err), err)}
		}
		return nil, c.fail("apply", ops[0].Path, err)
	}
	out := make([]coord.OpResult, len(ops))
	for k, r := range res {
		i := owner[k]
		out[i].Path = ops[i].Path
		if _, ok := reqs[k].(*zk.SetDataRequest); ok && r.Stat != nil {
			out[i].Version = coord.Version(r.Stat.Mzxid)
		}
	}
	return out, nil
}
