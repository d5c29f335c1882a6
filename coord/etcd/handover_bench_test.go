package etcd

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/hasched/hasched/coord/coordtest"
)

// BenchmarkHandover measures a graceful Resign until the next leader's
// first fenced write, beside a raw concurrency.Election's resign until the
// next campaign returns and its first guarded put, on the embedded server.
func BenchmarkHandover(b *testing.B) {
	ctx := context.Background()
	b.Run("coord", func(b *testing.B) {
		ns := namespace(b)
		var took []time.Duration
		for range b.N {
			a, f := open(b, ns), open(b, ns)
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
		cli := rawClient(b)
		prefix := "/raw-handover/" + namespace(b)
		var took []time.Duration
		for range b.N {
			sa, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
			if err != nil {
				b.Fatal(err)
			}
			sf, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
			if err != nil {
				b.Fatal(err)
			}
			ea, ef := concurrency.NewElection(sa, prefix), concurrency.NewElection(sf, prefix)
			if err := ea.Campaign(ctx, "a"); err != nil {
				b.Fatal(err)
			}
			won := make(chan error, 1)
			go func() { won <- ef.Campaign(ctx, "f") }()
			time.Sleep(coordtest.HandoverSettle)
			start := time.Now()
			if err := ea.Resign(ctx); err != nil {
				b.Fatal(err)
			}
			if err := <-won; err != nil {
				b.Fatal(err)
			}
			owner := clientv3.Compare(clientv3.CreateRevision(ef.Key()), "=", ef.Rev())
			if _, err := cli.Txn(ctx).If(owner).Then(clientv3.OpPut(prefix+"-written", "f")).Commit(); err != nil {
				b.Fatal(err)
			}
			took = append(took, time.Since(start))
			_ = ef.Resign(ctx)
			_ = sa.Close()
			_ = sf.Close()
		}
		coordtest.ReportMedian(b, took)
	})
}
