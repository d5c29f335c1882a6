package zk

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/go-zookeeper/zk"

	"github.com/hasched/hasched/coord"
)

// acl is every node's ACL: the namespace, not ZooKeeper's ACLs, separates
// users.
var acl = zk.WorldACL(zk.PermAll)

const (
	// parentRounds bounds how often Create makes missing parents and tries
	// again, should a concurrent DeleteTree keep removing them.
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

// Create makes a node, and its missing parents as persistent empty nodes.
// With Sequential, ZooKeeper appends a 10-digit counter to the name.
func (c *Coordinator) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (string, error) {
	if err := coord.ValidateNodePath(path); err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	if err := coord.CheckValue(value); err != nil {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	o := coord.ApplyCreateOptions(opts)
	var flags int32
	if o.Ephemeral {
		flags |= zk.FlagEphemeral
	}
	if o.Sequential {
		flags |= zk.FlagSequence
	}
	made, err := c.create(ctx, c.full(path), value, flags)
	if err != nil {
		return "", c.fail("create", path, err)
	}
	return strings.TrimPrefix(made, c.root), nil
}

// create makes the node full, making missing parents first when ZooKeeper
// reports them missing, and returns the path ZooKeeper made.
func (c *Coordinator) create(ctx context.Context, full string, value []byte, flags int32) (string, error) {
	for round := 0; ; round++ {
		made, err := call(ctx, c, false, func(conn *zk.Conn) (string, error) {
			return conn.Create(full, value, flags, acl)
		})
		if !errors.Is(err, zk.ErrNoNode) || round == parentRounds {
			return made, err
		}
		if err := c.makeParents(ctx, full); err != nil {
			return "", err
		}
	}
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
		return conn.Create(full, nil, 0, acl)
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
	return coord.Node{Path: path, Value: n.data, Version: coord.Version(n.stat.Mzxid)}, nil
}

// Set replaces a node's value. A version check reads the node's mzxid and
// then writes conditionally on ZooKeeper's per-node version it read with it:
// ZooKeeper cannot compare the mzxid itself, so this is not atomic. The window
// left is one round trip: a delete and re-create of the node between the read
// and the write, bringing the per-node version back to the value read, lets
// the write through.
func (c *Coordinator) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	if err := coord.ValidateNodePath(path); err != nil {
		return 0, fmt.Errorf("set: %w", err)
	}
	if err := coord.CheckValue(value); err != nil {
		return 0, fmt.Errorf("set %s: %w", path, err)
	}
	full := c.full(path)
	version := int32(-1)
	if expected != coord.AnyVersion {
		stat, err := c.stat(ctx, full)
		if err != nil {
			return 0, c.fail("set", path, err)
		}
		if coord.Version(stat.Mzxid) != expected {
			return 0, fmt.Errorf("set %s: %w", path, coord.ErrVersionConflict)
		}
		version = stat.Version
	}
	// An unconditional write may be repeated: the outcome is the same.
	stat, err := call(ctx, c, version == -1, func(conn *zk.Conn) (*zk.Stat, error) {
		return conn.Set(full, value, version)
	})
	if err != nil {
		return 0, c.fail("set", path, err)
	}
	return coord.Version(stat.Mzxid), nil
}

// Delete removes a node without children. A version check has the window Set
// describes.
func (c *Coordinator) Delete(ctx context.Context, path string, expected coord.Version) error {
	if err := coord.ValidateNodePath(path); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	full := c.full(path)
	if expected == coord.AnyVersion {
		if err := c.deleteAny(ctx, full); err != nil {
			return c.fail("delete", path, err)
		}
		return nil
	}
	stat, err := c.stat(ctx, full)
	if err != nil {
		return c.fail("delete", path, err)
	}
	if coord.Version(stat.Mzxid) != expected {
		return fmt.Errorf("delete %s: %w", path, coord.ErrVersionConflict)
	}
	_, err = call(ctx, c, false, func(conn *zk.Conn) (struct{}, error) {
		return struct{}{}, conn.Delete(full, stat.Version)
	})
	if err != nil {
		return c.fail("delete", path, err)
	}
	return nil
}

// deleteAny deletes full whatever its version. A delete repeated after its
// first attempt may have been applied counts a missing node as deleted.
func (c *Coordinator) deleteAny(ctx context.Context, full string) error {
	repeated := false
	_, err := call(ctx, c, true, func(conn *zk.Conn) (struct{}, error) {
		err := conn.Delete(full, -1)
		if errors.Is(err, zk.ErrNoNode) && repeated {
			err = nil
		}
		if isConnErr(err) && !errors.Is(err, zk.ErrNoServer) {
			repeated = true
		}
		return struct{}{}, err
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
	if err := coord.ValidateNodePath(path); err != nil {
		return fmt.Errorf("delete tree: %w", err)
	}
	full := c.full(path)
	names, err := c.children(ctx, full)
	if err == nil {
		err = c.deleteTree(ctx, full, names)
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
func (c *Coordinator) deleteTree(ctx context.Context, full string, names []string) error {
	for round := 1; ; round++ {
		if err := c.deleteChildren(ctx, full, names); err != nil {
			return err
		}
		err := c.deleteAny(ctx, full)
		if !errors.Is(err, zk.ErrNotEmpty) || round == treeRounds {
			return err
		}
		// Children were added meanwhile.
		if names, err = c.children(ctx, full); err != nil {
			return err
		}
	}
}

// deleteChildren deletes the subtrees of parent's children names. Leaves,
// most of a large tree, go in batches of one multi each; the children of a
// batch that fails (one has children of its own, or is gone already) are
// done one by one.
func (c *Coordinator) deleteChildren(ctx context.Context, parent string, names []string) error {
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
		_, err := call(ctx, c, true, func(conn *zk.Conn) ([]zk.MultiResponse, error) {
			return conn.Multi(ops...)
		})
		if err == nil {
			continue
		}
		if !errors.Is(err, zk.ErrNotEmpty) && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		for _, name := range batch {
			child := parent + "/" + name
			grandchildren, err := c.children(ctx, child)
			if err == nil {
				err = c.deleteTree(ctx, child, grandchildren)
			}
			if err != nil && !errors.Is(err, zk.ErrNoNode) {
				return err
			}
		}
	}
	return nil
}
