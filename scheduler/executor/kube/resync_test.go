package kube

import (
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"

	"github.com/hasched/hasched/scheduler/executor"
)

// A watch that breaks (the API server restarts, a connection drops) is
// watched again from where it was: a task that ran and ended while the
// executor saw nothing is reported ended, in order, and once.
func TestBrokenWatchIsResumed(t *testing.T) {
	w := newWorld(t)
	var mu sync.Mutex
	dead := watch.NewFake() // the first watch: delivers nothing, then breaks
	first := true
	w.client.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		mu.Lock()
		defer mu.Unlock()
		if first {
			first = false
			return true, dead, nil
		}
		return false, nil, nil
	})
	ex := openExec(t, w.config(t), &memState{}, 1)
	sts := collect(t, ex)
	tk := testTask("job@-@1@-@0@-@0", "exit 3")
	if err := ex.Launch(t.Context(), []executor.Task{tk}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the task ends unseen", func() bool {
		p, ok := getPod(t, w, tk.ID)
		return ok && p.Status.Phase == "Failed"
	})
	if ss := sts.of(tk.ID); len(ss) != 0 {
		t.Fatalf("statuses through a watch that delivers nothing: %+v", ss)
	}
	dead.Stop()
	st := sts.waitState(t, tk.ID, executor.StateFailed)
	if st.ExitCode != 3 {
		t.Errorf("FAILED %+v, want exit code 3", st)
	}
	ends := 0
	for _, s := range sts.of(tk.ID) {
		if s.State.Terminal() {
			ends++
		}
	}
	if ends != 1 {
		t.Errorf("%d ends, want 1: %+v", ends, sts.of(tk.ID))
	}
}
