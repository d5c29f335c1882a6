package kube

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/hasched/hasched/scheduler"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
)

// The scheduler on this executor, end to end on the fake API server: a
// triggered two-shard job of an app with an image runs one Pod per shard
// in that image (the term's fenced write before the creates passes through
// the scheduler's real executor state store), and the shards' records go
// when their Pods succeed.
func TestSchedulerRunsJobsAsPods(t *testing.T) {
	w := newWorld(t)
	var mu sync.Mutex
	var created []*corev1.Pod
	w.client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		created = append(created, a.(k8stesting.CreateAction).GetObject().(*corev1.Pod).DeepCopy())
		mu.Unlock()
		return false, nil, nil
	})
	factory, err := NewFactory(w.config(t))
	if err != nil {
		t.Fatal(err)
	}
	store := schedtest.NewStore()
	s, err := scheduler.New(scheduler.Config{
		Open: store.Open, Executor: factory, ExecutorName: "kubernetes",
		Advertise: "127.0.0.1:8899", LaunchInterval: 20 * time.Millisecond, Logger: w.config(t).Logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	eventually(t, "it leads", func() bool { st, _ := s.Status(ctx); return st.Leader })

	if err := s.RegisterApp(ctx, model.App{AppName: "app", Image: "registry.local/app:1", CPUCount: 1, MemoryMB: 128}); err != nil {
		t.Fatal(err)
	}
	job := model.Job{JobName: "echo", AppName: "app", Cron: "0 0 0 * * ?", ShardingTotalCount: 2, ShardingItemParameters: "0=zero,1=one",
		CPUCount: 0.5, MemoryMB: 64, ScriptCommandLine: "exit 0", ConcurrencyPolicy: model.ConcurrencyAllow}
	if err := s.RegisterJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	if err := s.TriggerJob(ctx, model.Trigger{JobName: "echo"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both shards ran and their records went", func() bool {
		recs, err := s.RunningTasks(ctx)
		mu.Lock()
		defer mu.Unlock()
		return err == nil && len(recs) == 0 && len(created) >= 2
	})
	mu.Lock()
	defer mu.Unlock()
	if len(created) != 2 {
		t.Fatalf("%d Pods created, want 2", len(created))
	}
	shards := map[string]string{}
	for _, p := range created {
		c := p.Spec.Containers[0]
		if c.Image != "registry.local/app:1" {
			t.Errorf("Pod %s in image %q, want the app's", p.Name, c.Image)
		}
		for _, e := range c.Env {
			if e.Name == "HASCHED_SHARDING_PARAMETER" {
				shards[p.Labels[labelShard]] = e.Value
			}
		}
		if p.Labels[labelJob] != "echo" {
			t.Errorf("Pod %s labels %v", p.Name, p.Labels)
		}
	}
	if shards["0"] != "zero" || shards["1"] != "one" {
		t.Errorf("shard parameters by shard label: %v", shards)
	}
	// The fence before the creates: the term's write of the executor's
	// state (the store's layout: /ha/<key>).
	if v, ok := store.Value("/ha/" + stateKey); !ok || string(v) == "" {
		t.Errorf("no fenced write of the executor's state: %q %v (paths %v)", v, ok, store.Paths("/ha"))
	}
}
