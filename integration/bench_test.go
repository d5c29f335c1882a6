package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/etcd"
	"github.com/hasched/hasched/coord/zk"
)

// The benchmarks measure what the Coordinator layer costs over the raw client
// on the same container (same key sizes, one round trip each where the raw
// client needs one), and that Children does not grow with a sibling's
// subtree. `make bench` runs them; the README reports the figures.

// rawOps is the raw client's version of each benchmarked operation.
type rawOps struct {
	get, set, create func(ctx context.Context, i int) error
	children         func(ctx context.Context) (int, error)
	// list reads listChildren children with their values.
	list func(ctx context.Context) (int, error)
}

// listChildren nodes of listValueSize bytes (a job configuration's size)
// are what List reads in the benchmarks.
const (
	listChildren  = 10_000
	listValueSize = 600
)

func BenchmarkEtcd(b *testing.B) {
	endpoint := startEtcd(b)
	ctx := context.Background()
	c, err := etcd.New(ctx, etcd.Config{Endpoints: []string{endpoint}, Namespace: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cli := c.Client()
	const rawPrefix = "/raw-bench/"
	if _, err := cli.Put(ctx, rawPrefix+"node", "v"); err != nil {
		b.Fatal(err)
	}
	for i := range 10 {
		if _, err := cli.Put(ctx, fmt.Sprintf("%sdir/child-%02d", rawPrefix, i), ""); err != nil {
			b.Fatal(err)
		}
	}
	raw := rawOps{
		get: func(ctx context.Context, _ int) error { _, err := cli.Get(ctx, rawPrefix+"node"); return err },
		set: func(ctx context.Context, _ int) error { _, err := cli.Put(ctx, rawPrefix+"node", "value"); return err },
		create: func(ctx context.Context, i int) error {
			k := fmt.Sprintf("%screate/n-%d", rawPrefix, i)
			_, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).Then(clientv3.OpPut(k, "")).Commit()
			return err
		},
		children: func(ctx context.Context) (int, error) {
			r, err := cli.Get(ctx, rawPrefix+"dir/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
			if err != nil {
				return 0, err
			}
			return len(r.Kvs), nil
		},
		list: func(ctx context.Context) (int, error) {
			r, err := cli.Get(ctx, rawPrefix+"list/", clientv3.WithPrefix())
			if err != nil {
				return 0, err
			}
			return len(r.Kvs), nil
		},
	}
	rawValue := string(make([]byte, listValueSize))
	for i := range listChildren {
		if _, err := cli.Put(ctx, fmt.Sprintf("%slist/child-%05d", rawPrefix, i), rawValue); err != nil {
			b.Fatal(err)
		}
	}
	benchCoordinator(b, c, raw)
}

func BenchmarkZooKeeper(b *testing.B) {
	server := startZooKeeper(b)
	ctx := context.Background()
	c, err := zk.New(ctx, zk.Config{Servers: []string{server}, Namespace: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	conn := c.Conn()
	acl := gozk.WorldACL(gozk.PermAll)
	for _, p := range []string{"/raw-bench", "/raw-bench/node", "/raw-bench/dir", "/raw-bench/create", "/raw-bench/list"} {
		if _, err := conn.Create(p, []byte("v"), 0, acl); err != nil && err != gozk.ErrNodeExists {
			b.Fatal(err)
		}
	}
	for i := range 10 {
		if _, err := conn.Create(fmt.Sprintf("/raw-bench/dir/child-%02d", i), nil, 0, acl); err != nil && err != gozk.ErrNodeExists {
			b.Fatal(err)
		}
	}
	raw := rawOps{
		get: func(context.Context, int) error { _, _, err := conn.Get("/raw-bench/node"); return err },
		set: func(context.Context, int) error {
			_, err := conn.Set("/raw-bench/node", []byte("value"), -1)
			return err
		},
		create: func(_ context.Context, i int) error {
			_, err := conn.Create(fmt.Sprintf("/raw-bench/create/n-%d", i), nil, 0, acl)
			return err
		},
		children: func(context.Context) (int, error) {
			names, _, err := conn.Children("/raw-bench/dir")
			return len(names), err
		},
		// The raw client's plain way: the names, then one Get each.
		list: func(context.Context) (int, error) {
			names, _, err := conn.Children("/raw-bench/list")
			for _, n := range names {
				if err != nil {
					break
				}
				_, _, err = conn.Get("/raw-bench/list/" + n)
			}
			return len(names), err
		},
	}
	rawValue := make([]byte, listValueSize)
	for i := range listChildren {
		if _, err := conn.Create(fmt.Sprintf("/raw-bench/list/child-%05d", i), rawValue, 0, acl); err != nil && err != gozk.ErrNodeExists {
			b.Fatal(err)
		}
	}
	benchCoordinator(b, c, raw)
}

// benchCoordinator runs each operation through c and through the raw client,
// then Children of a small node next to a very large subtree.
func benchCoordinator(b *testing.B, c coord.Coordinator, raw rawOps) {
	ctx := context.Background()
	if _, err := c.Create(ctx, "/node", []byte("v")); err != nil {
		b.Fatal(err)
	}
	for i := range 10 {
		if _, err := c.Create(ctx, fmt.Sprintf("/dir/child-%02d", i), nil); err != nil {
			b.Fatal(err)
		}
	}
	run := func(name string, op func(ctx context.Context, i int) error) {
		b.Run(name, func(b *testing.B) {
			// Each sub-benchmark gets fresh names for Create.
			base := time.Now().UnixNano()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := op(ctx, int(base)+i); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	run("Get/coord", func(ctx context.Context, _ int) error { _, err := c.Get(ctx, "/node"); return err })
	run("Get/raw", raw.get)
	run("Set/coord", func(ctx context.Context, _ int) error {
		_, err := c.Set(ctx, "/node", []byte("value"), coord.AnyVersion)
		return err
	})
	run("Set/raw", raw.set)
	run("Create/coord", func(ctx context.Context, i int) error {
		_, err := c.Create(ctx, fmt.Sprintf("/create/n-%d", i), nil)
		return err
	})
	run("Create/raw", raw.create)
	children := func(path string) func(ctx context.Context, _ int) error {
		return func(ctx context.Context, _ int) error {
			names, err := c.Children(ctx, path)
			if err == nil && len(names) != 10 {
				err = fmt.Errorf("Children(%s) = %d names, want 10", path, len(names))
			}
			return err
		}
	}
	run("Children/coord", children("/dir"))
	run("Children/raw", func(ctx context.Context, _ int) error {
		n, err := raw.children(ctx)
		if err == nil && n != 10 {
			err = fmt.Errorf("raw children = %d, want 10", n)
		}
		return err
	})
	value := make([]byte, listValueSize)
	for i := range listChildren {
		if _, err := c.Create(ctx, fmt.Sprintf("/list/child-%05d", i), value); err != nil {
			b.Fatal(err)
		}
	}
	run("List10000/coord", func(ctx context.Context, _ int) error {
		nodes, err := c.List(ctx, "/list")
		if err == nil && len(nodes) != listChildren {
			err = fmt.Errorf("List = %d nodes, want %d", len(nodes), listChildren)
		}
		return err
	})
	run("List10000/raw", func(ctx context.Context, _ int) error {
		n, err := raw.list(ctx)
		if err == nil && n != listChildren {
			err = fmt.Errorf("raw list = %d nodes, want %d", n, listChildren)
		}
		return err
	})
	// /big/a has 10 children; its sibling /big/b holds 100,000 descendants
	// (100 nodes of 1,000 children each).
	for i := range 10 {
		if _, err := c.Create(ctx, fmt.Sprintf("/big/a/child-%02d", i), nil); err != nil {
			b.Fatal(err)
		}
	}
	fill(b, c, 100, 1000)
	run("ChildrenBesideLargeSubtree/coord", children("/big/a"))
}

// fill creates /big/b/p{i}/c{j} for i < parents, j < each, in parallel.
func fill(b *testing.B, c coord.Coordinator, parents, each int) {
	ctx := context.Background()
	var next atomic.Int64
	total := int64(parents * each)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := next.Add(1) - 1
				if k >= total {
					return
				}
				p := fmt.Sprintf("/big/b/p%03d/c%04d", k/int64(each), k%int64(each))
				if _, err := c.Create(ctx, p, nil); err != nil && !isExists(err) {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

func isExists(err error) bool { return errors.Is(err, coord.ErrExists) }
