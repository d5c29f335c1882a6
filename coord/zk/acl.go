package zk

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/go-zookeeper/zk"
)

// secureNamespace checks that the session may use the namespace, and with a
// digest makes sure the namespace is closed to everyone else.
//
// A namespace made before hasched had a digest (or by another tool) has
// world:anyone:cdrwa on its nodes: ZooKeeper's ACLs are per node, not
// inherited, so closing the root alone would leave every job config open to
// anyone who knows its path. So when the root's ACL is not the
// Coordinator's, every node below it gets the Coordinator's ACL, the root
// last: a conversion cut short is done again at the next start.
func (c *Coordinator) secureNamespace(ctx context.Context) error {
	acls, err := call(ctx, c, true, func(conn *zk.Conn) ([]zk.ACL, error) {
		acl, _, err := conn.GetACL(c.root)
		return acl, err
	})
	if errors.Is(err, zk.ErrNoAuth) {
		return fmt.Errorf("%w: %s: %w (give the digest the namespace was made with: digest-file or digest-env)", ErrNotAuthorized, c.root, err)
	}
	if err != nil {
		return fmt.Errorf("zk: read the ACL of %s: %w", c.root, c.mapErr(err))
	}
	// Reading the ACL needs no permission on some servers: list the
	// children, which needs READ, to learn whether the session may work here.
	if _, err := call(ctx, c, true, func(conn *zk.Conn) ([]string, error) {
		names, _, err := conn.Children(c.root)
		return names, err
	}); errors.Is(err, zk.ErrNoAuth) {
		return fmt.Errorf("%w: %s: %w (give the digest the namespace was made with: digest-file or digest-env)", ErrNotAuthorized, c.root, err)
	} else if err != nil {
		return fmt.Errorf("zk: list %s: %w", c.root, c.mapErr(err))
	}
	if c.cfg.Digest == "" || slices.Equal(acls, c.acl) {
		return nil
	}
	c.log.Warn("the namespace is open to other ZooKeeper clients; giving every node in it this session's digest ACL", "namespace", c.root, "acl", fmt.Sprint(acls))
	n, err := c.setACLTree(ctx, c.root)
	if err != nil {
		return fmt.Errorf("zk: close the namespace %s to other clients (%d nodes done): %w", c.root, n, c.mapErr(err))
	}
	c.log.Info("the namespace is closed to other ZooKeeper clients", "namespace", c.root, "nodes", n)
	return nil
}

// setACLTree gives full and every node below it the Coordinator's ACL,
// children before their parent, and returns how many nodes it set.
func (c *Coordinator) setACLTree(ctx context.Context, full string) (int, error) {
	names, err := call(ctx, c, true, func(conn *zk.Conn) ([]string, error) {
		names, _, err := conn.Children(full)
		return names, err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return 0, nil // deleted meanwhile
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range names {
		m, err := c.setACLTree(ctx, full+"/"+name)
		n += m
		if err != nil {
			return n, err
		}
	}
	_, err = call(ctx, c, true, func(conn *zk.Conn) (*zk.Stat, error) {
		return conn.SetACL(full, c.acl, -1)
	})
	if errors.Is(err, zk.ErrNoNode) {
		return n, nil
	}
	if err != nil {
		return n, fmt.Errorf("set the ACL of %s: %w", full, err)
	}
	return n + 1, nil
}
