package integration

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/hasched/hasched/coord/coordtest"
	"github.com/hasched/hasched/coord/zk"
)

// BenchmarkHandoverZooKeeper measures a graceful Resign until the next
// leader's first fenced write on the ZooKeeper container, beside ZooKeeper's
// own election recipe done with the raw client on the same server: each
// candidate an ephemeral sequential node, the next one watching the one
// before it, its first write a multi checking that its node still exists.
// coord/etcd's BenchmarkHandover is the etcd side (issue 11: ≤ 5 ms p50).
func BenchmarkHandoverZooKeeper(b *testing.B) {
	server := startZooKeeper(b)
	ctx := context.Background()
	open := func(ns string) *zk.Coordinator {
		c, err := zk.New(ctx, zk.Config{Servers: []string{server}, Namespace: ns})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	b.Run("coord", func(b *testing.B) {
		var took []time.Duration
		for i := range b.N {
			ns := fmt.Sprintf("handover-%d-%d", time.Now().UnixNano(), i)
			a, f := open(ns), open(ns)
			d, err := coordtest.Handover(ctx, a, f)
			if err != nil {
				b.Fatal(err)
			}
			took = append(took, d)
			_ = a.Close()
			_ = f.Close()
		}
		coordtest.ReportMedian(b, took)
	})
	b.Run("raw", func(b *testing.B) {
		c := open("raw-handover")
		defer c.Close()
		conn := c.Conn()
		acl := gozk.WorldACL(gozk.PermAll)
		var took []time.Duration
		for i := range b.N {
			root := fmt.Sprintf("/raw-handover-%d-%d", time.Now().UnixNano(), i)
			if _, err := conn.Create(root, nil, 0, acl); err != nil {
				b.Fatal(err)
			}
			a, err := conn.Create(root+"/n-", []byte("a"), gozk.FlagEphemeral|gozk.FlagSequence, acl)
			if err != nil {
				b.Fatal(err)
			}
			won := make(chan error, 1)
			var mine string
			go func() {
				var err error
				mine, err = rawZKCampaign(conn, root, acl)
				won <- err
			}()
			time.Sleep(coordtest.HandoverSettle)
			start := time.Now()
			if err := conn.Delete(a, -1); err != nil {
				b.Fatal(err)
			}
			if err := <-won; err != nil {
				b.Fatal(err)
			}
			if _, err := conn.Multi(&gozk.CheckVersionRequest{Path: mine, Version: 0}, &gozk.CreateRequest{Path: root + "-written", Acl: acl}); err != nil {
				b.Fatal(err)
			}
			took = append(took, time.Since(start))
			_ = conn.Delete(mine, -1)
		}
		coordtest.ReportMedian(b, took)
	})
}

// rawZKCampaign is ZooKeeper's leader election recipe: make an ephemeral
// sequential node, and until it is the lowest, wait for the next lower one
// to go.
func rawZKCampaign(conn *gozk.Conn, root string, acl []gozk.ACL) (string, error) {
	mine, err := conn.Create(root+"/n-", []byte("f"), gozk.FlagEphemeral|gozk.FlagSequence, acl)
	if err != nil {
		return "", err
	}
	name := mine[strings.LastIndex(mine, "/")+1:]
	for {
		kids, _, err := conn.Children(root)
		if err != nil {
			return "", err
		}
		sort.Strings(kids)
		i := slices.Index(kids, name)
		if i == 0 {
			return mine, nil
		}
		if i < 0 {
			return "", fmt.Errorf("own node %s is gone", mine)
		}
		ok, _, ch, err := conn.ExistsW(root + "/" + kids[i-1])
		if err != nil {
			return "", err
		}
		if ok {
			<-ch
		}
	}
}
