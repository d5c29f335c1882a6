package zk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/go-zookeeper/zk"

	"github.com/hasched/hasched/coord"
)

const (
	// parentRounds bounds how often Create looks for missing parents and
	// tries again, should a concurrent DeleteTree keep removing them.
	parentRounds = 5
	// treeRounds bounds how often DeleteTree starts over on a node that
	// gained children while its subtree was being deleted.
	treeRounds = 10
	// deleteBatchBytes bounds the paths in one multi of DeleteTree, well
	// below ZooKeeper's 1 MiB request limit.
	deleteBatchBytes = 256 << 10
	deleteBatchOps   = 1000
)

// full is path inside the namespace.
func (c *Coordinator) full(path string) string {
	if path == "/" {
		return c.root
	}
	return c.root + path
}

// guard is what a fenced write checks in the same multi as its change: the
// term's candidate node is still there, at the version it had when the term
// began. ZooKeeper applies a multi whole or not at all, so a write whose
// check fails writes nothing.
type guard struct {
	node    string // full path of the candidate node
	version int32  // its version when the term began
	lost    <-chan struct{}
}

// admit fails a fenced write before anything is sent when the session has
// ended (ErrSessionLost, ErrClosed) or the term is already known to be over
// (ErrNotLeader). Otherwise the check in the write's multi decides.
func (c *Coordinator) admit(g *guard) error {
	if g == nil {
		return nil
	}
	if err := c.endErr(); err != nil {
		return err
	}
	select {
	case <-g.lost:
		return fmt.Errorf("%w: the leadership is lost", coord.ErrNotLeader)
	default:
		return nil
	}
}

// opError is ZooKeeper's refusal of one operation of a write.
type opError struct {
	index int // of the operation among those given to run, the guard's check not counted
	err   error
}

func (e *opError) Error() string { return e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

// failedOp is the index of the operation a write's error is about, or -1.
func failedOp(err error) int {
	var oe *opError
	if errors.As(err, &oe) {
		return oe.index
	}
	return -1
}

// run sends ops (*zk.CreateRequest, *zk.SetDataRequest, *zk.DeleteRequest)
// as one atomic write and returns a result per op. Guarded by g, the write is
// a multi that checks g's candidate node first, and fails with ErrNotLeader
// when the check does. Unguarded, a single op is sent as the plain request.
// ZooKeeper's refusal of an op comes back as an *opError naming it.
func run(conn *zk.Conn, g *guard, ops ...any) ([]zk.MultiResponse, error) {
	if g == nil && len(ops) == 1 {
		res, err := single(conn, ops[0])
		if err != nil && !isConnErr(err) {
			err = &opError{index: 0, err: err}
		}
		return res, err
	}
	all := ops
	if g != nil {
		all = append([]any{&zk.CheckVersionRequest{Path: g.node, Version: g.version}}, ops...)
	}
	res, err := conn.Multi(all...)
	return multiOutcome(res, err, len(all), g != nil)
}

// multiOutcome reads go-zookeeper's answer to a multi of n ops, the first
// of them the guard's check if guarded, and returns the results of the ops
// after the check. A refused multi answers every op: those before the failed
// one with no error, the failed one with its own, those after it with
// ZooKeeper's "runtime inconsistency". No answers means the request itself
// failed, and err says why.
func multiOutcome(res []zk.MultiResponse, err error, n int, guarded bool) ([]zk.MultiResponse, error) {
	first := 0 // the first result that is not the check's
	if guarded {
		first = 1
	}
	i := slices.IndexFunc(res, func(r zk.MultiResponse) bool { return r.Error != nil })
	switch {
	case i < 0 && err == nil && len(res) == n:
		return res[first:], nil
	case i < 0:
		if err == nil {
			err = fmt.Errorf("zk: a multi of %d operations answered with %d results", n, len(res))
		}
		return nil, err
	case i < first:
		// The candidate node is gone (ErrNoNode) or changed (ErrBadVersion).
		return nil, fmt.Errorf("%w: the term's candidate node is gone or changed (%v)", coord.ErrNotLeader, res[i].Error)
	}
	return nil, &opError{index: i - first, err: res[i].Error}
}

// single sends one op as its plain request.
func single(conn *zk.Conn, op any) ([]zk.MultiResponse, error) {
	switch op := op.(type) {
	case *zk.CreateRequest:
		made, err := conn.Create(op.Path, op.Data, op.Flags, op.Acl)
		return []zk.MultiResponse{{String: made}}, err
	case *zk.SetDataRequest:
		stat, err := conn.Set(op.Path, op.Data, op.Version)
		return []zk.MultiResponse{{Stat: stat}}, err
	case *zk.DeleteRequest:
		return []zk.MultiResponse{{}}, conn.Delete(op.Path, op.Version)
	}
	return nil, fmt.Errorf("zk: unknown operation %T", op)
}

// apply is run through call: repeated while the connection is down, and
// after a broken connection only when idempotent.
func (c *Coordinator) apply(ctx context.Context, g *guard, idempotent bool, ops ...any) ([]zk.MultiResponse, error) {
	return call(ctx, c, idempotent, func(conn *zk.Conn) ([]zk.MultiResponse, error) {
		return run(conn, g, ops...)
	})
}

// writer holds the write operations, once for the Coordinator's plain
// writes (no guard) and for a leadership's fenced ones (guarded).
type writer struct {
	c *Coordinator
	g *guard
}

var _ coord.Writer = writer{}

// Create makes a node, and its missing parents as persistent empty nodes.
// With Sequential, ZooKeeper appends a 10-digit counter to the name.
func (c *Coordinator) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (coord.Node, error) {
	return writer{c: c}.Create(ctx, path, value, opts...)
}

// Create returns the node's version, its mzxid. go-zookeeper's create answers
// with the path only, so a node of a known path is made empty and given its
// value by a set in the same multi, whose answer carries the stat: the
// version is exact, and no one ever sees the node without its value. A
// Sequential node's path is known only once it is made; its version is read
// right after, as its czxid, the mzxid it was made with. That read has the
// window Set describes: should the node be deleted and made again in between
// (its parent deleted, re-made and counted up to the same number), the version
// is the new node's; should it be gone, or the read fail, the version is 0,
// which no node has.
func (w writer) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (coord.Node, error) {
	c := w.c
	if err := coord.ValidateNodePath(path); err != nil {
		return coord.Node{}, fmt.Errorf("create: %w", err)
	}
	if err := coord.CheckValue(value); err != nil {
		return coord.Node{}, fmt.Errorf("create %s: %w", path, err)
	}
	if err := c.admit(w.g); err != nil {
		return coord.Node{}, fmt.Errorf("create %s: %w", path, err)
	}
	o := coord.ApplyCreateOptions(opts)
	var flags int32
	if o.Ephemeral {
		flags |= zk.FlagEphemeral
	}
	if o.Sequential {
		flags |= zk.FlagSequence
	}
	made, version, err := w.create(ctx, c.full(path), value, flags)
	if err != nil {
		return coord.Node{}, c.fail("create", path, err)
	}
	if o.Sequential {
		if stat, err := c.stat(ctx, made); err == nil {
			version = stat.Czxid
		}
	}
	return coord.Node{Path: strings.TrimPrefix(made, c.root), Value: value, Version: coord.Version(version)}, nil
}

// create makes the node full and returns the path ZooKeeper made and, unless
// Sequential, its mzxid. When ZooKeeper reports a parent missing, it reads
// which ancestors are, and makes them and the node in one multi (with the
// guard's check when fenced), so a failed create leaves no parents behind; if
// the ancestors changed meanwhile it reads them again.
func (w writer) create(ctx context.Context, full string, value []byte, flags int32) (string, int64, error) {
	sequential := flags&zk.FlagSequence != 0
	var parents []string // missing ancestors, top-down
	for round := 0; ; round++ {
		ops := make([]any, 0, len(parents)+2)
		for _, p := range parents {
			ops = append(ops, &zk.CreateRequest{Path: p, Acl: w.c.acl})
		}
		if sequential {
			ops = append(ops, &zk.CreateRequest{Path: full, Data: value, Flags: flags, Acl: w.c.acl})
		} else {
			ops = append(ops,
				&zk.CreateRequest{Path: full, Flags: flags, Acl: w.c.acl},
				&zk.SetDataRequest{Path: full, Data: value, Version: 0})
		}
		res, err := w.c.apply(ctx, w.g, false, ops...)
		if err == nil {
			if sequential {
				return res[len(res)-1].String, 0, nil
			}
			return full, res[len(res)-1].Stat.Mzxid, nil
		}
		i := failedOp(err)
		parentGone := i >= 0 && errors.Is(err, zk.ErrNoNode)
		parentMade := i >= 0 && i < len(parents) && errors.Is(err, zk.ErrNodeExists)
		if !parentGone && !parentMade || round == parentRounds {
			return "", 0, err
		}
		if parents, err = w.c.missingAncestors(ctx, full); err != nil {
			return "", 0, err
		}
	}
}

// missingAncestors lists full's ancestors that do not exist, top-down, the
// namespace's node included.
func (c *Coordinator) missingAncestors(ctx context.Context, full string) ([]string, error) {
	var missing []string
	for p := coord.Parent(full); p != "/"; p = coord.Parent(p) {
		_, err := c.stat(ctx, p)
		if err == nil {
			break
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return nil, err
		}
		missing = append(missing, p)
	}
	slices.Reverse(missing)
	return missing, nil
}

// makeParents makes every missing ancestor of full below the ensemble's root,
// the namespace's node included, top-down.
func (c *Coordinator) makeParents(ctx context.Context, full string) error {
	for i := 1; i < len(full); i++ {
		if full[i] != '/' {
			continue
		}
		if err := c.makeNode(ctx, full[:i]); err != nil {
			return err
		}
	}
	return nil
}

// ensureNode makes the persistent empty node full and its parents unless
// they exist.
func (c *Coordinator) ensureNode(ctx context.Context, full string) error {
	err := c.makeNode(ctx, full)
	for round := 0; errors.Is(err, zk.ErrNoNode) && round < parentRounds; round++ {
		if err = c.makeParents(ctx, full); err == nil {
			err = c.makeNode(ctx, full)
		}
	}
	return err
}

// makeNode makes the persistent empty node full unless it exists. Its parent
// must exist.
func (c *Coordinator) makeNode(ctx context.Context, full string) error {
	// Idempotent: a create repeated after its first attempt was applied
	// finds the node there, which is all that is asked.
	_, err := call(ctx, c, true, func(conn *zk.Conn) (string, error) {
		return conn.Create(full, nil, 0, c.acl)
	})
	if errors.Is(err, zk.ErrNodeExists) {
		return nil
	}
	return err
}

// Get reads one node. Its version is its mzxid, the zxid of its last change.
func (c *Coordinator) Get(ctx context.Context, path string) (coord.Node, error) {
	if err := coord.ValidateNodePath(path); err != nil {
		return coord.Node{}, fmt.Errorf("get: %w", err)
	}
	full := c.full(path)
	type node struct {
		data []byte
		stat *zk.Stat
	}
	n, err := call(ctx, c, true, func(conn *zk.Conn) (node, error) {
		data, stat, err := conn.Get(full)
		return node{data, stat}, err
	})
	if err != nil {
		return coord.Node{}, c.fail("get", path, err)
	}
	return coord.Node{Path: path, Value: nonNil(n.data), Version: coord.Version(n.stat.Mzxid)}, nil
}

// Set replaces a node's value. A version check reads the node's mzxid and
// then writes conditionally on ZooKeeper's per-node version it read with it:
// ZooKeeper cannot compare the mzxid itself, so this is not atomic. The window
// left is one round trip: a delete and re-create of the node between the read
// and the write, bringing the per-node version back to the value read, lets
// the write through.
func (c *Coordinator) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	return writer{c: c}.Set(ctx, path, value, expected)
}

func (w writer) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	c := w.c
	if err := coord.ValidateNodePath(path); err != nil {
		return 0, fmt.Errorf("set: %w", err)
	}
	if err := coord.CheckValue(value); err != nil {
		return 0, fmt.Errorf("set %s: %w", path, err)
	}
	if err := c.admit(w.g); err != nil {
		return 0, fmt.Errorf("set %s: %w", path, err)
	}
	full := c.full(path)
	version, err := c.expect(ctx, full, expected)
	if err != nil {
		return 0, c.fail("set", path, err)
	}
	// An unconditional write may be repeated: the outcome is the same.
	res, err := c.apply(ctx, w.g, version == -1, &zk.SetDataRequest{Path: full, Data: value, Version: version})
	if err != nil {
		return 0, c.fail("set", path, err)
	}
	return coord.Version(res[0].Stat.Mzxid), nil
}

// expect turns a coord.Version into the ZooKeeper version a conditional
// write of full checks: -1 for AnyVersion, otherwise the per-node version
// read along with the mzxid that must equal expected.
func (c *Coordinator) expect(ctx context.Context, full string, expected coord.Version) (int32, error) {
	if expected == coord.AnyVersion {
		return -1, nil
	}
	stat, err := c.stat(ctx, full)
	if err != nil {
		return 0, err
	}
	if coord.Version(stat.Mzxid) != expected {
		return 0, coord.ErrVersionConflict
	}
	return stat.Version, nil
}

// Delete removes a node without children. A version check has the window Set
// describes.
func (c *Coordinator) Delete(ctx context.Context, path string, expected coord.Version) error {
	return writer{c: c}.Delete(ctx, path, expected)
}

func (w writer) Delete(ctx context.Context, path string, expected coord.Version) error {
	c := w.c
	if err := coord.ValidateNodePath(path); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := c.admit(w.g); err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	full := c.full(path)
	var err error
	if expected == coord.AnyVersion {
		err = c.deleteAny(ctx, w.g, full)
	} else {
		var version int32
		if version, err = c.expect(ctx, full, expected); err == nil {
			_, err = c.apply(ctx, w.g, false, &zk.DeleteRequest{Path: full, Version: version})
		}
	}
	if err != nil {
		return c.fail("delete", path, err)
	}
	return nil
}

// deleteAny deletes full whatever its version, guarded by g. A delete
// repeated after its first attempt may have been applied counts a missing
// node as deleted.
func (c *Coordinator) deleteAny(ctx context.Context, g *guard, full string) error {
	repeated := false
	_, err := call(ctx, c, true, func(conn *zk.Conn) ([]zk.MultiResponse, error) {
		res, err := run(conn, g, &zk.DeleteRequest{Path: full, Version: -1})
		if errors.Is(err, zk.ErrNoNode) && repeated {
			return res, nil
		}
		if isConnErr(err) && !errors.Is(err, zk.ErrNoServer) {
			repeated = true
		}
		return res, err
	})
	return err
}

// stat reads full's stat; zk.ErrNoNode if it is missing.
func (c *Coordinator) stat(ctx context.Context, full string) (*zk.Stat, error) {
	return call(ctx, c, true, func(conn *zk.Conn) (*zk.Stat, error) {
		ok, stat, err := conn.Exists(full)
		if err == nil && !ok {
			err = zk.ErrNoNode
		}
		return stat, err
	})
}

// children lists full's children, unsorted.
func (c *Coordinator) children(ctx context.Context, full string) ([]string, error) {
	return call(ctx, c, true, func(conn *zk.Conn) ([]string, error) {
		names, _, err := conn.Children(full)
		return names, err
	})
}

// Children returns the names of a node's children, sorted. "/" lists the
// namespace's node.
func (c *Coordinator) Children(ctx context.Context, path string) ([]string, error) {
	if err := coord.ValidatePath(path); err != nil {
		return nil, fmt.Errorf("children: %w", err)
	}
	names, err := c.children(ctx, c.full(path))
	if err != nil {
		return nil, c.fail("children", path, err)
	}
	sort.Strings(names)
	return names, nil
}

// DeleteTree removes a node and everything below it. ZooKeeper has no
// recursive delete and this one is not atomic: a reader can see the tree
// half gone, and it fails with ErrNotEmpty if nodes keep being created in it
// faster than it deletes them.
func (c *Coordinator) DeleteTree(ctx context.Context, path string) error {
	return writer{c: c}.DeleteTree(ctx, path)
}

// DeleteTree, fenced, deletes in batches of one multi each, and every batch
// checks the candidate node itself: a large tree cannot go in one multi
// (ZooKeeper's request limit), so a leader deposed half-way leaves the rest
// of the tree standing, but deletes nothing after it lost.
func (w writer) DeleteTree(ctx context.Context, path string) error {
	c := w.c
	if err := coord.ValidateNodePath(path); err != nil {
		return fmt.Errorf("delete tree: %w", err)
	}
	if err := c.admit(w.g); err != nil {
		return fmt.Errorf("delete tree %s: %w", path, err)
	}
	full := c.full(path)
	names, err := c.children(ctx, full)
	if err == nil {
		err = w.deleteTree(ctx, full, names)
		if errors.Is(err, zk.ErrNoNode) {
			err = nil // deleted by someone else meanwhile
		}
	}
	if err != nil {
		return c.fail("delete tree", path, err)
	}
	return nil
}

// deleteTree deletes full, whose children were names, depth first.
// zk.ErrNoNode if full is gone.
func (w writer) deleteTree(ctx context.Context, full string, names []string) error {
	for round := 1; ; round++ {
		if err := w.deleteChildren(ctx, full, names); err != nil {
			return err
		}
		err := w.c.deleteAny(ctx, w.g, full)
		if !errors.Is(err, zk.ErrNotEmpty) || round == treeRounds {
			return err
		}
		// Children were added meanwhile.
		if names, err = w.c.children(ctx, full); err != nil {
			return err
		}
	}
}

// deleteChildren deletes the subtrees of parent's children names. Leaves,
// most of a large tree, go in batches of one multi each; the children of a
// batch that fails (one has children of its own, or is gone already) are
// done one by one.
func (w writer) deleteChildren(ctx context.Context, parent string, names []string) error {
	for len(names) > 0 {
		n, size := 0, 0
		for n < len(names) && n < deleteBatchOps && size < deleteBatchBytes {
			size += len(parent) + 1 + len(names[n])
			n++
		}
		batch := names[:n]
		names = names[n:]
		ops := make([]any, len(batch))
		for i, name := range batch {
			ops[i] = &zk.DeleteRequest{Path: parent + "/" + name, Version: -1}
		}
		// Repeating an applied multi fails with ErrNoNode, which falls
		// through to the one-by-one deletes below.
		_, err := w.c.apply(ctx, w.g, true, ops...)
		if err == nil {
			continue
		}
		if !errors.Is(err, zk.ErrNotEmpty) && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		for _, name := range batch {
			child := parent + "/" + name
			grandchildren, err := w.c.children(ctx, child)
			if err == nil {
				err = w.deleteTree(ctx, child, grandchildren)
			}
			if err != nil && !errors.Is(err, zk.ErrNoNode) {
				return err
			}
		}
	}
	return nil
}
