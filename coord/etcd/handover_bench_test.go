package etcd

import (
	"context"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/hasched/hasched/coord"
)

// handoverSettle is how long the follower waits in the election before the
// leader resigns: long enough for its watch to be in place, as a standby's
// is in practice.
const handoverSettle = 200 * time.Millisecond

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
			la, err := a.Campaign(ctx, "/ha/election", []byte("a"))
			if err != nil {
				b.Fatal(err)
			}
			won := make(chan coord.Leadership, 1)
			go func() {
				l, err := f.Campaign(ctx, "/ha/election", []byte("f"))
				if err != nil {
					b.Error(err)
				}
				won <- l
			}()
			time.Sleep(handoverSettle)
			start := time.Now()
			if err := la.Resign(ctx); err != nil {
				b.Fatal(err)
			}
			lf := <-won
			if _, err := lf.Writer().Create(ctx, "/written-"+time.Now().Format("150405.000000000"), nil); err != nil {
				b.Fatal(err)
			}
			took = append(took, time.Since(start))
			_ = lf.Resign(ctx)
			_ = a.Close()
			_ = f.Close()
		}
		reportMedian(b, took)
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
			time.Sleep(handoverSettle)
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
		reportMedian(b, took)
	})
}

// reportMedian reports the median hand-over in ms: a hand-over now and then
// waits for a disk sync of the embedded server, which the mean would carry.
func reportMedian(b *testing.B, took []time.Duration) {
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
}
