package kube

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/hasched/hasched/scheduler/executor"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testNS      = "jobs"
	testCluster = "test"
	testNode    = "node-1"
	testImage   = "busybox:1.37"
	// waitLimit bounds every wait of these tests.
	waitLimit = 10 * time.Second
)

// memState is a term's executor.StateStore; deposed makes its writes fail
// as a fenced write of a term that no longer leads does.
type memState struct {
	mu      sync.Mutex
	values  map[string][]byte
	deposed bool
	stores  int
}

var errNotLeader = errors.New("fenced write refused: not the leader")

func (s *memState) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[key]
	if !ok {
		return nil, executor.ErrNoState
	}
	return v, nil
}

func (s *memState) Store(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deposed {
		return errNotLeader
	}
	if s.values == nil {
		s.values = map[string][]byte{}
	}
	s.values[key] = value
	s.stores++
	return nil
}

func (s *memState) depose() {
	s.mu.Lock()
	s.deposed = true
	s.mu.Unlock()
}

// world is one namespace of a fake API server and its kubelet.
type world struct {
	client  *fake.Clientset
	kubelet *kubelet

	mu      sync.Mutex
	creates int // Pod creates that reached the API server
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{client: fake.NewClientset()}
	w.client.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		w.mu.Lock()
		w.creates++
		w.mu.Unlock()
		return false, nil, nil
	})
	w.kubelet = startKubelet(t, w.client)
	return w
}

func (w *world) createCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.creates
}

func (w *world) config(t *testing.T) Config {
	return Config{
		Client: w.client, Namespace: testNS, Cluster: testCluster, Image: testImage,
		KillGrace: time.Second, CallTimeout: 5 * time.Second, SyncTimeout: 5 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Warn, Output: testWriter{t}}),
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// open opens an executor of a term over cfg; it is closed with the test.
func openExec(t *testing.T, cfg Config, st executor.StateStore, token int64) *Executor {
	t.Helper()
	f, err := NewFactory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := f(context.Background(), executor.Term{Token: token, State: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ex.Close() })
	return ex.(*Executor)
}

// testTask is a task the kubelet runs as its command says: "exit N" ends
// with N at once, anything else blocks until released or killed.
func testTask(id, command string) executor.Task {
	return executor.Task{
		ID: id, Job: strings.SplitN(id, "@-@", 2)[0], App: "app", FireTime: time.Unix(1700000000, 0),
		Shard: 1, Attempt: 0, ShardingTotalCount: 2, ShardParameter: "b", JobParameter: "p",
		Command: command, CPUs: 0.5, MemoryMB: 64,
	}
}

// kubelet plays the kubelet and the scheduler for the fake API server:
// it binds every new Pod to testNode and runs it at once, then ends it as
// its command says (exit N), or when it is released, or past its
// activeDeadlineSeconds (DeadlineExceeded).
type kubelet struct {
	client *fake.Clientset

	mu       sync.Mutex
	starts   map[string]int  // by task id
	released map[string]bool // by task id
	paused   bool
	stop     chan struct{}
	done     chan struct{}
}

func startKubelet(t *testing.T, c *fake.Clientset) *kubelet {
	k := &kubelet{client: c, starts: map[string]int{}, released: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go k.run()
	t.Cleanup(func() {
		close(k.stop)
		<-k.done
	})
	return k
}

func (k *kubelet) run() {
	defer close(k.done)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-tick.C:
			k.step()
		}
	}
}

// pause stops the kubelet's work (a node that does not answer).
func (k *kubelet) pause(p bool) {
	k.mu.Lock()
	k.paused = p
	k.mu.Unlock()
}

func (k *kubelet) step() {
	ctx := context.Background()
	list, err := k.client.CoreV1().Pods(testNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.paused {
		return
	}
	for i := range list.Items {
		p := list.Items[i].DeepCopy()
		id := p.Annotations[annotationTaskID]
		if p.DeletionTimestamp != nil || len(p.Spec.Containers) == 0 {
			continue
		}
		now := metav1.Now()
		switch p.Status.Phase {
		case "", corev1.PodPending:
			if p.Spec.NodeName != "" {
				continue // bound by a test: it stays pending
			}
			p.Spec.NodeName = testNode
			p.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &now, ContainerStatuses: []corev1.ContainerStatus{{
				Name: containerName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			}}}
			k.starts[id]++
		case corev1.PodRunning:
			cmd := ""
			if args := p.Spec.Containers[0].Args; len(args) > 0 {
				cmd = args[0]
			}
			if code, ok := strings.CutPrefix(cmd, "exit "); ok {
				n, _ := strconv.Atoi(code)
				end(p, int32(n), "", now)
			} else if k.released[id] {
				end(p, 0, "", now)
			} else if d := p.Spec.ActiveDeadlineSeconds; d != nil && p.Status.StartTime != nil &&
				now.Sub(p.Status.StartTime.Time) >= time.Duration(*d)*time.Second {
				end(p, 137, "DeadlineExceeded", now)
			} else {
				continue
			}
		default:
			continue
		}
		_, _ = k.client.CoreV1().Pods(testNS).Update(ctx, p, metav1.UpdateOptions{})
	}
}

// end ends a running Pod with its container's exit code.
func end(p *corev1.Pod, code int32, reason string, now metav1.Time) {
	p.Status.Phase = corev1.PodSucceeded
	if code != 0 {
		p.Status.Phase = corev1.PodFailed
	}
	p.Status.Reason = reason
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: containerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Completed", FinishedAt: now}},
	}}
	if code != 0 {
		p.Status.ContainerStatuses[0].State.Terminated.Reason = "Error"
	}
}

func (k *kubelet) release(id string) error {
	p, err := k.client.CoreV1().Pods(testNS).Get(context.Background(), podName(testCluster, id), metav1.GetOptions{})
	if err != nil {
		return err
	}
	if p.Status.Phase != corev1.PodRunning {
		return fmt.Errorf("task %s is %s, not running", id, p.Status.Phase)
	}
	k.mu.Lock()
	k.released[id] = true
	k.mu.Unlock()
	return nil
}

func (k *kubelet) startCount(id string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.starts[id]
}

func (k *kubelet) running(id string) (bool, error) {
	p, err := k.client.CoreV1().Pods(testNS).Get(context.Background(), podName(testCluster, id), metav1.GetOptions{})
	if err != nil {
		if strings.Contains(err.Error(), "not found") {
			return false, nil
		}
		return false, err
	}
	return p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil, nil
}

// statuses collects an executor's statuses.
type statuses struct {
	mu   sync.Mutex
	all  []executor.Status
	done chan struct{}
}

func collect(t *testing.T, ex executor.Executor) *statuses {
	s := &statuses{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for st := range ex.Statuses() {
			s.mu.Lock()
			s.all = append(s.all, st)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ex.Close()
		<-s.done
	})
	return s
}

func (s *statuses) snapshot() []executor.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]executor.Status(nil), s.all...)
}

// wait waits for a status of id matching pred.
func (s *statuses) wait(t *testing.T, id string, what string, pred func(executor.Status) bool) executor.Status {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		for _, st := range s.snapshot() {
			if st.TaskID == id && pred(st) {
				return st
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no status %s of %s in %v; got %+v", what, id, waitLimit, s.snapshot())
	return executor.Status{}
}

func (s *statuses) waitState(t *testing.T, id string, state executor.State) executor.Status {
	t.Helper()
	return s.wait(t, id, string(state), func(st executor.Status) bool { return st.State == state && !st.Reconcile })
}

func (s *statuses) of(id string) []executor.Status {
	var out []executor.Status
	for _, st := range s.snapshot() {
		if st.TaskID == id {
			out = append(out, st)
		}
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", waitLimit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
