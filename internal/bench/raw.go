package bench

import (
	"context"
	"errors"
	"fmt"

	gozk "github.com/go-zookeeper/zk"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/etcd"
	"github.com/hasched/hasched/coord/zk"
)

// ErrUnsupportedBackend is a coordinator the bench has no raw client for.
var ErrUnsupportedBackend = errors.New("bench: no raw client for this coordinator")

// rawNode is the coordinator path the raw client's nodes go under on
// ZooKeeper, where they are plain nodes of the namespace, so that the
// bench's DeleteTree of every top-level node removes them too.
const rawNode = "/bench-raw"

// rawPageSize bounds one etcd range response: one read up to this many
// nodes (the figure is "one range read" for every --jobs up to it), pages of
// it at one revision beyond.
const rawPageSize = 10000

// rawClient is the backend's own client, in the bench's namespace: what the
// figures are set beside, and what removes the part of the namespace the
// Coordinator's DeleteTree cannot reach.
type rawClient interface {
	// method names what the raw figures measure.
	createMethod() string
	readMethod() string
	// prepare makes what create needs (ZooKeeper: the parent node).
	prepare(ctx context.Context, c coord.Coordinator) error
	// create makes raw node i with value, failing if it exists.
	create(ctx context.Context, i int, value []byte) error
	// readAll reads every raw node with its value; it returns their count.
	readAll(ctx context.Context) (int, error)
	// purge removes whatever of the namespace is left once every
	// top-level node is deleted: etcd's raw keys and counters, ZooKeeper's
	// namespace node.
	purge(ctx context.Context) error
	// remaining counts what is left of the namespace (0: it is gone).
	remaining(ctx context.Context) (int64, error)
}

// newRawClient picks the raw client of c's backend, in namespace ns.
func newRawClient(c coord.Coordinator, ns string) (rawClient, error) {
	switch b := c.(type) {
	case *etcd.Coordinator:
		return &etcdRaw{cli: b.Client(), root: "/" + ns + "/"}, nil
	case *zk.Coordinator:
		return &zkRaw{conn: b.Conn(), root: "/" + ns}, nil
	}
	return nil, fmt.Errorf("%w: %T", ErrUnsupportedBackend, c)
}

// etcdRaw works on keys under the namespace's prefix, beside the
// Coordinator's own ("/<ns>/n/…", "/<ns>/s/…").
type etcdRaw struct {
	cli  *clientv3.Client
	root string // "/<ns>/"
}

func (r *etcdRaw) createMethod() string {
	return "etcd clientv3: txn create-if-absent (CreateRevision = 0 → Put)"
}

func (r *etcdRaw) readMethod() string {
	return fmt.Sprintf("etcd clientv3: one range read (pages of %d beyond)", rawPageSize)
}

func (r *etcdRaw) prepare(context.Context, coord.Coordinator) error { return nil }

func (r *etcdRaw) key(i int) string { return fmt.Sprintf("%sraw/%09d", r.root, i) }

func (r *etcdRaw) create(ctx context.Context, i int, value []byte) error {
	k := r.key(i)
	resp, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(value))).
		Commit()
	if err != nil {
		return fmt.Errorf("etcd create %s: %w", k, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcd create %s: %w", k, coord.ErrExists)
	}
	return nil
}

func (r *etcdRaw) readAll(ctx context.Context) (int, error) {
	prefix := r.root + "raw/"
	end := clientv3.GetPrefixRangeEnd(prefix)
	from, rev, n := prefix, int64(0), 0
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(rawPageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := r.cli.Get(ctx, from, opts...)
		if err != nil {
			return n, fmt.Errorf("etcd range %s: %w", prefix, err)
		}
		n += len(resp.Kvs)
		if !resp.More || len(resp.Kvs) == 0 {
			return n, nil
		}
		rev = resp.Header.Revision
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

func (r *etcdRaw) purge(ctx context.Context) error {
	if _, err := r.cli.Delete(ctx, r.root, clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("etcd delete prefix %s: %w", r.root, err)
	}
	return nil
}

func (r *etcdRaw) remaining(ctx context.Context) (int64, error) {
	resp, err := r.cli.Get(ctx, r.root, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("etcd count prefix %s: %w", r.root, err)
	}
	return resp.Count, nil
}

// zkRaw works on plain nodes under rawNode. go-zookeeper's calls take no
// context: each is bounded by the connection instead, which fails every
// request in flight once the server is silent for the session's read
// timeout.
type zkRaw struct {
	conn *gozk.Conn
	root string // "/<ns>"
	acl  []gozk.ACL
}

func (r *zkRaw) createMethod() string { return "go-zookeeper: Create" }

func (r *zkRaw) readMethod() string { return "go-zookeeper: Children, then one Get after another" }

// prepare makes the parent through the Coordinator and reads its ACL back,
// so that the raw nodes are as closed as the Coordinator's own (a digest
// namespace stays closed to other clients).
func (r *zkRaw) prepare(ctx context.Context, c coord.Coordinator) error {
	if _, err := c.Create(ctx, rawNode, nil); err != nil {
		return fmt.Errorf("create %s: %w", rawNode, err)
	}
	acl, _, err := r.conn.GetACL(r.root + rawNode)
	if err != nil {
		return fmt.Errorf("zk get ACL of %s: %w", r.root+rawNode, err)
	}
	r.acl = acl
	return nil
}

func (r *zkRaw) create(ctx context.Context, i int, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := fmt.Sprintf("%s%s/%09d", r.root, rawNode, i)
	if _, err := r.conn.Create(p, value, 0, r.acl); err != nil {
		return fmt.Errorf("zk create %s: %w", p, err)
	}
	return nil
}

func (r *zkRaw) readAll(ctx context.Context) (int, error) {
	parent := r.root + rawNode
	names, _, err := r.conn.Children(parent)
	if err != nil {
		return 0, fmt.Errorf("zk children %s: %w", parent, err)
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if _, _, err := r.conn.Get(parent + "/" + name); err != nil {
			return 0, fmt.Errorf("zk get %s/%s: %w", parent, name, err)
		}
	}
	return len(names), nil
}

func (r *zkRaw) purge(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := r.conn.Delete(r.root, -1)
	if err != nil && !errors.Is(err, gozk.ErrNoNode) {
		return fmt.Errorf("zk delete %s: %w", r.root, err)
	}
	return nil
}

func (r *zkRaw) remaining(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	ok, _, err := r.conn.Exists(r.root)
	if err != nil {
		return 0, fmt.Errorf("zk exists %s: %w", r.root, err)
	}
	if ok {
		return 1, nil
	}
	return 0, nil
}
