package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
)

// listPageSize is how many children one range request returns. etcd
// counts the whole rest of the range for every page (a range reports its
// total), so each page costs what is left of the range, not what it
// returns: on the embedded server, 100,000 children of about 600 bytes
// took 2.9 s in pages of 1,000, 0.86 s in pages of 10,000 and 0.65 s in
// one. A page still bounds what one response holds: 100,000 of the
// scheduler's values, about 60 MB.
const listPageSize = 100000

// listAttempts bounds the restarts of a list whose revision was compacted
// between two of its pages.
const listAttempts = 3

// List reads the direct children of path with their values: the first page
// with the node's existence in one transaction, then further pages at that
// transaction's revision, so the list is one consistent state even while
// the children change.
func (c *Coordinator) List(ctx context.Context, path string) ([]coord.Node, error) {
	if err := coord.ValidatePath(path); err != nil {
		return nil, fmt.Errorf("list %s: %w", path, err)
	}
	if err := c.state(); err != nil {
		return nil, fmt.Errorf("list %s: %w", path, err)
	}
	for attempt := 1; ; attempt++ {
		nodes, err := c.list(ctx, path, listPageSize, nil)
		if errors.Is(err, rpctypes.ErrCompacted) && attempt < listAttempts {
			c.log.Debug("list outlived its revision's compaction; reading again", "path", path, "attempt", attempt)
			continue
		}
		if err != nil && !errors.Is(err, coord.ErrNotFound) {
			return nil, c.fail("list", path, err)
		}
		return nodes, err
	}
}

// list reads pages of pageSize; betweenPages, if set, runs before each
// page after the first (tests change the children there).
func (c *Coordinator) list(ctx context.Context, path string, pageSize int64, betweenPages func()) ([]coord.Node, error) {
	prefix := c.keys.children(path)
	end := clientv3.GetPrefixRangeEnd(prefix)
	page := func(from string, opts ...clientv3.OpOption) clientv3.Op { return pageOp(from, end, pageSize, opts...) }
	var (
		rng *clientv3.GetResponse
		rev int64
	)
	if path == "/" {
		// The root always exists.
		resp, err := c.cli.Get(ctx, prefix, clientv3.WithRange(end), clientv3.WithLimit(pageSize),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return nil, err
		}
		rng, rev = resp, resp.Header.Revision
	} else {
		resp, err := c.cli.Txn(ctx).
			Then(clientv3.OpGet(c.keys.node(path), clientv3.WithCountOnly()), page(prefix)).
			Commit()
		if err != nil {
			return nil, err
		}
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return nil, fmt.Errorf("list %s: %w", path, coord.ErrNotFound)
		}
		rng = (*clientv3.GetResponse)(resp.Responses[1].GetResponseRange())
		rev = resp.Header.Revision
	}
	nodes := make([]coord.Node, 0, rng.Count)
	for {
		nodes = appendChildren(nodes, path, prefix, rng.Kvs)
		if !rng.More || len(rng.Kvs) == 0 {
			return nodes, nil
		}
		if betweenPages != nil {
			betweenPages()
		}
		var err error
		if rng, err = c.nextPage(ctx, rng, end, rev, pageSize); err != nil {
			return nil, err
		}
	}
}

// pageOp reads one page of [from, end), in key order.
func pageOp(from, end string, pageSize int64, opts ...clientv3.OpOption) clientv3.Op {
	return clientv3.OpGet(from, append(opts, clientv3.WithRange(end), clientv3.WithLimit(pageSize),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))...)
}

// nextPage reads the page of [after the last key of prev, end) at rev.
func (c *Coordinator) nextPage(ctx context.Context, prev *clientv3.GetResponse, end string, rev, pageSize int64) (*clientv3.GetResponse, error) {
	next, err := c.cli.Do(ctx, pageOp(string(prev.Kvs[len(prev.Kvs)-1].Key)+"\x00", end, pageSize, clientv3.WithRev(rev)))
	if err != nil {
		return nil, err
	}
	return next.Get(), nil
}

// pages hands each page of [from, end) at revision rev to f, in key order:
// a Mirror's read of one depth of its subtree.
func (c *Coordinator) pages(ctx context.Context, from, end string, rev, pageSize int64, f func([]*mvccpb.KeyValue)) error {
	resp, err := c.cli.Do(ctx, pageOp(from, end, pageSize, clientv3.WithRev(rev)))
	if err != nil {
		return err
	}
	for rng := resp.Get(); ; {
		f(rng.Kvs)
		if !rng.More || len(rng.Kvs) == 0 {
			return nil
		}
		if rng, err = c.nextPage(ctx, rng, end, rev, pageSize); err != nil {
			return err
		}
	}
}

func appendChildren(nodes []coord.Node, path, prefix string, kvs []*mvccpb.KeyValue) []coord.Node {
	base := path
	if base == "/" {
		base = ""
	}
	for _, kv := range kvs {
		value := kv.Value
		if value == nil {
			value = []byte{}
		}
		name := strings.TrimPrefix(string(kv.Key), prefix)
		nodes = append(nodes, coord.Node{Path: base + "/" + name, Value: value, Version: coord.Version(kv.ModRevision)})
	}
	return nodes
}
