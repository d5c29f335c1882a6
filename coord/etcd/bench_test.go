package etcd

import (
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
)

// BenchmarkCreateVersusRaw times Create against the least a create can cost
// on etcd, one create-if-absent transaction, on the embedded server. Each
// iteration makes one node each way, alternating, so both see the same
// server and the same moment; the ratio is the figure issue 11 asks to keep
// at or below 1.10.
func BenchmarkCreateVersusRaw(b *testing.B) {
	for _, bc := range []struct {
		name   string
		parent string
		opts   []coord.CreateOption
	}{
		{name: "Child", parent: "/create"},
		// A task's node under /state/running/{job}: three ancestors.
		{name: "Task", parent: "/state/running/job"},
		{name: "Deep", parent: "/a/b/c/d/e/f/g/h"},
		{name: "Ephemeral", parent: "/create", opts: []coord.CreateOption{coord.Ephemeral()}},
		{name: "Sequential", parent: "/create", opts: []coord.CreateOption{coord.Sequential()}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ns := namespace(b)
			c, raw, ctx := open(b, ns), rawClient(b), testContext(b)
			if _, err := c.Create(ctx, bc.parent, nil); err != nil {
				b.Fatal(err)
			}
			var coordTime, rawTime time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := c.Create(ctx, fmt.Sprintf("%s/n-%d", bc.parent, i), nil, bc.opts...); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				key := fmt.Sprintf("/%s/raw/n-%d", ns, i)
				if _, err := raw.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, "")).Commit(); err != nil {
					b.Fatal(err)
				}
				coordTime += mid.Sub(start)
				rawTime += time.Since(mid)
			}
			b.ReportMetric(float64(coordTime.Nanoseconds())/float64(b.N), "coord-ns/op")
			b.ReportMetric(float64(rawTime.Nanoseconds())/float64(b.N), "raw-ns/op")
			b.ReportMetric(float64(coordTime)/float64(rawTime), "coord/raw")
		})
	}
}
