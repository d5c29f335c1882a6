package scheduler

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor/local"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
)

// TestRunsJobsOnTheLocalExecutor is an end-to-end check of the scheduler on
// the real local executor: a triggered two-shard job runs its command once
// per shard with its sharding parameter, and its records go when it ends.
func TestRunsJobsOnTheLocalExecutor(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs processes (make test runs it)")
	}
	work := t.TempDir()
	out := t.TempDir()
	factory, err := local.NewFactory(local.Config{WorkDir: work, PollInterval: 20 * time.Millisecond, KillGrace: time.Second})
	mustDo(t, err)
	store := schedtest.NewStore()
	n := startNode(t, Config{Open: store.Open, Executor: factory, LaunchInterval: 20 * time.Millisecond})
	eventually(t, "it leads", n.leading)
	ctx := ctxT(t)
	mustDo(t, n.s.RegisterApp(ctx, model.App{AppName: "app", CPUCount: 1, MemoryMB: 128}))
	job := testJob("echo", "0 0 0 * * ?")
	job.ShardingTotalCount = 2
	job.ShardingItemParameters = "0=zero,1=one"
	job.ScriptCommandLine = `printf '%s' "$1" > "$(mktemp -p ` + out + `)"`
	mustDo(t, n.s.RegisterJob(ctx, job))
	mustDo(t, n.s.TriggerJob(ctx, model.Trigger{JobName: "echo"}))
	eventually(t, "both shards ran and their records went", func() bool {
		entries, _ := os.ReadDir(out)
		recs, err := n.s.RunningTasks(ctx)
		return err == nil && len(entries) == 2 && len(recs) == 0
	})
	entries, _ := os.ReadDir(out)
	var got []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(out, e.Name()))
		mustDo(t, err)
		got = append(got, strings.TrimSpace(string(b)))
	}
	joined := strings.Join(got, "\n")
	for _, want := range []string{`"shardingItem":0`, `"shardingParameter":"zero"`, `"shardingItem":1`, `"shardingParameter":"one"`} {
		if !strings.Contains(joined, want) {
			t.Fatalf("sharding contexts %q lack %s", got, want)
		}
	}
}
