package kube

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/hasched/hasched/scheduler/executor"
)

func getPod(t *testing.T, w *world, id string) (*corev1.Pod, bool) {
	t.Helper()
	p, err := w.client.CoreV1().Pods(testNS).Get(t.Context(), podName(testCluster, id), metav1.GetOptions{})
	if err != nil {
		return nil, false
	}
	return p, true
}

// A create that finds the task's Pod there (AlreadyExists: another term
// created it, the informer had not seen it yet) makes no second Pod and
// reports the task as its Pod is; a Pod of the name that is not the
// task's is never taken for it.
func TestAlreadyExistsCreatesNoSecondPod(t *testing.T) {
	w := newWorld(t)
	a := openExec(t, w.config(t), &memState{}, 1)
	sa := collect(t, a)
	tk := testTask("job@-@1@-@0@-@0", "block")
	if err := a.Launch(t.Context(), []executor.Task{tk}); err != nil {
		t.Fatal(err)
	}
	sa.waitState(t, tk.ID, executor.StateRunning)

	b := openExec(t, w.config(t), &memState{}, 2)
	sb := collect(t, b)
	if err := b.create(t.Context(), tk); err != nil { // past the informer's cache
		t.Fatalf("create of an existing Pod: %v", err)
	}
	sb.waitState(t, tk.ID, executor.StateRunning)
	if n := w.createCount(); n != 2 {
		t.Errorf("%d creates reached the API server, want 2", n)
	}
	list, err := w.client.CoreV1().Pods(testNS).List(t.Context(), metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("%d Pods (%v), want 1", len(list.Items), err)
	}
	if n := w.kubelet.startCount(tk.ID); n != 1 {
		t.Errorf("started %d times, want once", n)
	}

	// Another task whose name is taken (another cluster's Pod, by hand).
	other := testTask("other@-@1@-@0@-@0", "block")
	squatter := b.podFor(other)
	squatter.Annotations[annotationTaskID] = "someone else"
	if _, err := w.client.CoreV1().Pods(testNS).Create(t.Context(), squatter, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := b.create(t.Context(), other); !errors.Is(err, ErrNameTaken) {
		t.Errorf("create over another's Pod: %v, want ErrNameTaken", err)
	}
	if err := b.Reconcile(t.Context(), []string{other.ID}); !errors.Is(err, ErrNameTaken) {
		t.Errorf("reconcile of a task whose name another's Pod has: %v, want ErrNameTaken", err)
	}
}

// A deposed term's Launch creates nothing: the fenced write before the
// creates fails. Each Launch that creates fences once; one that has
// nothing to create does not.
func TestDeposedTermCreatesNothing(t *testing.T) {
	w := newWorld(t)
	st := &memState{}
	ex := openExec(t, w.config(t), st, 1)
	sts := collect(t, ex)
	first := testTask("job@-@1@-@0@-@0", "block")
	if err := ex.Launch(t.Context(), []executor.Task{first, testTask("job@-@1@-@1@-@0", "block")}); err != nil {
		t.Fatal(err)
	}
	sts.waitState(t, first.ID, executor.StateRunning)
	if st.stores != 1 {
		t.Errorf("%d fenced writes for one Launch, want 1", st.stores)
	}
	if err := ex.Launch(t.Context(), []executor.Task{first}); err != nil {
		t.Fatal(err)
	}
	if st.stores != 1 {
		t.Errorf("%d fenced writes, want still 1: the relaunch created nothing", st.stores)
	}

	st.depose()
	creates := w.createCount()
	late := testTask("job@-@2@-@0@-@0", "exit 0")
	err := ex.Launch(t.Context(), []executor.Task{late, first})
	if !errors.Is(err, ErrDeposed) || !errors.Is(err, errNotLeader) {
		t.Fatalf("Launch of a deposed term: %v, want ErrDeposed", err)
	}
	if n := w.createCount(); n != creates {
		t.Errorf("a deposed term sent %d creates", n-creates)
	}
	if _, ok := getPod(t, w, late.ID); ok {
		t.Error("a deposed term created a Pod")
	}
}

// Kill marks the Pod killed and deletes it with the kill grace; the task
// ends KILLED, also for a term that did not kill it; a second Kill is no
// error.
func TestKillDeletesThePodWithItsGrace(t *testing.T) {
	w := newWorld(t)
	var mu sync.Mutex
	var graces []int64
	w.client.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if g := a.(k8stesting.DeleteAction).GetDeleteOptions().GracePeriodSeconds; g != nil {
			mu.Lock()
			graces = append(graces, *g)
			mu.Unlock()
		}
		return false, nil, nil
	})
	cfg := w.config(t)
	cfg.KillGrace = 7 * time.Second
	ex := openExec(t, cfg, &memState{}, 1)
	sts := collect(t, ex)
	// Another term watches the same Pod.
	watcher := openExec(t, cfg, &memState{}, 2)
	sw := collect(t, watcher)
	tk := testTask("job@-@1@-@0@-@0", "block")
	if err := ex.Launch(t.Context(), []executor.Task{tk}); err != nil {
		t.Fatal(err)
	}
	sts.waitState(t, tk.ID, executor.StateRunning)
	if err := ex.Kill(t.Context(), tk.ID); err != nil {
		t.Fatal(err)
	}
	sts.waitState(t, tk.ID, executor.StateKilled)
	sw.waitState(t, tk.ID, executor.StateKilled)
	if _, ok := getPod(t, w, tk.ID); ok {
		t.Error("the killed task's Pod is still there")
	}
	mu.Lock()
	if len(graces) != 1 || graces[0] != 7 {
		t.Errorf("delete grace periods %v, want [7]", graces)
	}
	mu.Unlock()
	if err := ex.Kill(t.Context(), tk.ID); err != nil {
		t.Errorf("second Kill: %v", err)
	}
	for _, s := range sts.of(tk.ID) {
		if s.State.Terminal() && s.State != executor.StateKilled {
			t.Errorf("a killed task reported %+v", s)
		}
	}
}

// A Pod that ended is deleted once its end was reported and Retention
// has passed since, never before; the deletion reports nothing more.
func TestEndedPodsAreDeletedAfterTheirEndWasReported(t *testing.T) {
	w := newWorld(t)
	var mu sync.Mutex
	var deleted time.Time
	w.client.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		deleted = time.Now()
		mu.Unlock()
		return false, nil, nil
	})
	cfg := w.config(t)
	cfg.Retention, cfg.GCInterval = 300*time.Millisecond, 10*time.Millisecond
	ex := openExec(t, cfg, &memState{}, 1)
	sts := collect(t, ex)
	tk := testTask("job@-@1@-@0@-@0", "exit 0")
	if err := ex.Launch(t.Context(), []executor.Task{tk}); err != nil {
		t.Fatal(err)
	}
	fin := sts.waitState(t, tk.ID, executor.StateFinished)
	eventually(t, "the ended Pod is deleted", func() bool { _, ok := getPod(t, w, tk.ID); return !ok })
	mu.Lock()
	if d := deleted.Sub(fin.Time); d < cfg.Retention {
		t.Errorf("the Pod was deleted %v after its end was reported, before the retention of %v", d, cfg.Retention)
	}
	mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	ends := 0
	for _, s := range sts.of(tk.ID) {
		if s.State.Terminal() {
			ends++
		}
	}
	if ends != 1 {
		t.Errorf("%d ends reported, want 1 (the deletion reports nothing): %+v", ends, sts.of(tk.ID))
	}

	// With the default retention the ended Pod stays.
	keep := openExec(t, w.config(t), &memState{}, 2)
	sk := collect(t, keep)
	tk2 := testTask("job@-@2@-@0@-@0", "exit 3")
	if err := keep.Launch(t.Context(), []executor.Task{tk2}); err != nil {
		t.Fatal(err)
	}
	sk.waitState(t, tk2.ID, executor.StateFailed)
	keep.gc()
	if _, ok := getPod(t, w, tk2.ID); !ok {
		t.Error("an ended Pod was deleted before its retention")
	}
}

// A Pod whose node lets it down ends LOST: deleted by someone else (the
// node controller, by hand), evicted, OOM-killed.
func TestPodsLostToTheirNodeEndLost(t *testing.T) {
	w := newWorld(t)
	ex := openExec(t, w.config(t), &memState{}, 1)
	sts := collect(t, ex)
	gone, evicted, oom := testTask("a@-@1@-@0@-@0", "block"), testTask("b@-@1@-@0@-@0", "block"), testTask("c@-@1@-@0@-@0", "block")
	if err := ex.Launch(t.Context(), []executor.Task{gone, evicted, oom}); err != nil {
		t.Fatal(err)
	}
	for _, tk := range []executor.Task{gone, evicted, oom} {
		sts.waitState(t, tk.ID, executor.StateRunning)
	}
	w.kubelet.pause(true)
	defer w.kubelet.pause(false)
	if err := w.client.CoreV1().Pods(testNS).Delete(t.Context(), podName(testCluster, gone.ID), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for id, status := range map[string]corev1.PodStatus{
		evicted.ID: {Phase: corev1.PodFailed, Reason: "Evicted", Message: "low on memory"},
		oom.ID: {Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}}}},
	} {
		p, _ := getPod(t, w, id)
		p.Status = status
		if _, err := w.client.CoreV1().Pods(testNS).UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tk := range []executor.Task{gone, evicted, oom} {
		st := sts.waitState(t, tk.ID, executor.StateLost)
		if st.Message == "" {
			t.Errorf("LOST without a reason: %+v", st)
		}
	}
}

// The next term adopts the Pods of the one before: a relaunch creates
// nothing, reconciliation reports them (an end that came while no term
// watched included), and Pods of another hasched cluster in the namespace
// are none of its business.
func TestNextTermAdoptsThePodsOfThePreviousOne(t *testing.T) {
	w := newWorld(t)
	a := openExec(t, w.config(t), &memState{}, 1)
	sa := collect(t, a)
	runs, ends := testTask("job@-@1@-@0@-@0", "block"), testTask("job@-@1@-@1@-@0", "block")
	if err := a.Launch(t.Context(), []executor.Task{runs, ends}); err != nil {
		t.Fatal(err)
	}
	sa.waitState(t, runs.ID, executor.StateRunning)
	sa.waitState(t, ends.ID, executor.StateRunning)
	_ = a.Close()
	// Another hasched cluster's Pod in the namespace.
	otherCfg := w.config(t)
	otherCfg.Cluster = "other"
	other := openExec(t, otherCfg, &memState{}, 1)
	so := collect(t, other)
	foreign := testTask("job@-@9@-@0@-@0", "block")
	if err := other.Launch(t.Context(), []executor.Task{foreign}); err != nil {
		t.Fatal(err)
	}
	so.waitState(t, foreign.ID, executor.StateRunning)
	// An end while no term of the cluster watches.
	if err := w.kubelet.release(ends.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the task ends", func() bool { p, _ := getPod(t, w, ends.ID); return p.Status.Phase == corev1.PodSucceeded })

	creates := w.createCount()
	b := openExec(t, w.config(t), &memState{}, 2)
	sb := collect(t, b)
	if err := b.Launch(t.Context(), []executor.Task{runs}); err != nil {
		t.Fatal(err)
	}
	if n := w.createCount(); n != creates {
		t.Errorf("the next term's relaunch sent %d creates", n-creates)
	}
	sb.waitState(t, runs.ID, executor.StateRunning)
	if err := b.Reconcile(t.Context(), []string{runs.ID, ends.ID, "job@-@0@-@0@-@0"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]executor.State{runs.ID: executor.StateRunning, ends.ID: executor.StateFinished, "job@-@0@-@0@-@0": executor.StateUnknown}
	for id, state := range want {
		if st := sb.wait(t, id, "answer", func(s executor.Status) bool { return s.Reconcile }); st.State != state {
			t.Errorf("explicit answer %+v, want %s", st, state)
		}
	}
	from := len(sb.snapshot())
	if err := b.Reconcile(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "answers to the implicit reconciliation", func() bool { return len(sb.snapshot()) >= from+2 })
	time.Sleep(50 * time.Millisecond)
	got := map[string]executor.State{}
	for _, s := range sb.snapshot()[from:] {
		if s.Reconcile {
			got[s.TaskID] = s.State
		}
	}
	if len(got) != 2 || got[runs.ID] != executor.StateRunning || got[ends.ID] != executor.StateFinished {
		t.Errorf("implicit answers %v, want %s RUNNING and %s FINISHED only", got, runs.ID, ends.ID)
	}
	if d := b.Describe(); d["namespace"] != testNS || d["cluster_label"] != testCluster || d["pods"] != "2" {
		t.Errorf("Describe = %v: want the 2 Pods of cluster %s, not the other cluster's", d, testCluster)
	}
	if err := w.kubelet.release(runs.ID); err != nil {
		t.Fatal(err)
	}
	sb.waitState(t, runs.ID, executor.StateFinished)
	if n := w.kubelet.startCount(runs.ID); n != 1 {
		t.Errorf("started %d times, want once", n)
	}
}

// A Pod that cannot pull its image for PullTimeout ends its task FAILED,
// saying why, and is deleted (the kubelet would try for ever); one still
// within the timeout stays STAGING.
func TestImageThatCannotBePulledFailsTheTask(t *testing.T) {
	w := newWorld(t)
	cfg := w.config(t)
	cfg.PullTimeout, cfg.GCInterval = 200*time.Millisecond, 10*time.Millisecond
	ex := openExec(t, cfg, &memState{}, 1)
	sts := collect(t, ex)
	// Another term watches: the end reads FAILED to it too.
	sw := collect(t, openExec(t, w.config(t), &memState{}, 2))
	w.kubelet.pause(true)
	defer w.kubelet.pause(false)
	tk := testTask("job@-@1@-@0@-@0", "block")
	if err := ex.Launch(t.Context(), []executor.Task{tk}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Pod is created", func() bool { _, ok := getPod(t, w, tk.ID); return ok })
	p, _ := getPod(t, w, tk.ID)
	started := metav1.Now()
	p.Spec.NodeName = testNode
	p.Status = corev1.PodStatus{Phase: corev1.PodPending, StartTime: &started, ContainerStatuses: []corev1.ContainerStatus{{
		Name: containerName, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}},
	}}}
	if _, err := w.client.CoreV1().Pods(testNS).Update(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st := sts.waitState(t, tk.ID, executor.StateFailed)
	if since := time.Since(started.Time); since < cfg.PullTimeout {
		t.Errorf("FAILED %v after the Pod started, before the pull timeout of %v", since, cfg.PullTimeout)
	}
	if !strings.Contains(st.Message, "ImagePullBackOff") || !strings.Contains(st.Message, testImage) {
		t.Errorf("FAILED status %+v: want the image and the reason", st)
	}
	sw.waitState(t, tk.ID, executor.StateFailed)
	eventually(t, "the Pod is deleted", func() bool { _, ok := getPod(t, w, tk.ID); return !ok })
	for _, s := range append(sts.of(tk.ID), sw.of(tk.ID)...) {
		if s.State.Terminal() && s.State != executor.StateFailed {
			t.Errorf("the task also ended %+v", s)
		}
	}
}

// launchPending launches a task with an app package on a paused kubelet
// and gives its Pod the status a real kubelet would, on testNode.
func launchPending(t *testing.T, w *world, ex *Executor, tk executor.Task, status corev1.PodStatus) {
	t.Helper()
	if err := ex.Launch(t.Context(), []executor.Task{tk}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Pod is created", func() bool { _, ok := getPod(t, w, tk.ID); return ok })
	p, _ := getPod(t, w, tk.ID)
	p.Spec.NodeName = testNode
	p.Status = status
	if _, err := w.client.CoreV1().Pods(testNS).Update(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A Pod whose fetch container cannot pull the fetch image is given up on
// after PullTimeout, as one whose task image cannot be pulled: FAILED,
// naming the fetch image, and deleted.
func TestFetchImageThatCannotBePulledFailsTheTask(t *testing.T) {
	w := newWorld(t)
	cfg := w.config(t)
	cfg.FetchImage, cfg.PullTimeout, cfg.GCInterval = testFetchImage, 200*time.Millisecond, 10*time.Millisecond
	ex := openExec(t, cfg, &memState{}, 1)
	sts := collect(t, ex)
	w.kubelet.pause(true)
	defer w.kubelet.pause(false)
	tk := testTask("pkg@-@1@-@0@-@0", "block")
	tk.AppURL = "https://repo.example/app.tar.gz"
	started := metav1.Now()
	launchPending(t, w, ex, tk, corev1.PodStatus{Phase: corev1.PodPending, StartTime: &started,
		InitContainerStatuses: []corev1.ContainerStatus{{Name: fetchContainerName, Image: testFetchImage, State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "manifest unknown"}}}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}},
	})
	st := sts.waitState(t, tk.ID, executor.StateFailed)
	if since := time.Since(started.Time); since < cfg.PullTimeout {
		t.Errorf("FAILED %v after the Pod started, before the pull timeout of %v", since, cfg.PullTimeout)
	}
	if !strings.Contains(st.Message, testFetchImage) || !strings.Contains(st.Message, "ErrImagePull") || !strings.Contains(st.Message, "app package") {
		t.Errorf("FAILED status %+v: want the fetch image, the reason, and that it fetches the app package", st)
	}
	eventually(t, "the Pod is deleted", func() bool { _, ok := getPod(t, w, tk.ID); return !ok })
	for _, s := range sts.of(tk.ID) {
		if s.State.Terminal() && s.State != executor.StateFailed {
			t.Errorf("the task also ended %+v", s)
		}
	}
}

// A fetch that fails fails the Pod (restartPolicy Never) and the task:
// FAILED, saying the app package could not be fetched and why; another
// term reading the Pod says the same.
func TestFailedFetchFailsTheTask(t *testing.T) {
	w := newWorld(t)
	cfg := w.config(t)
	cfg.FetchImage = testFetchImage
	ex := openExec(t, cfg, &memState{}, 1)
	sts := collect(t, ex)
	w.kubelet.pause(true)
	defer w.kubelet.pause(false)
	tk := testTask("pkg@-@1@-@0@-@0", "block")
	tk.AppURL = "https://repo.example/app.tar.gz"
	started := metav1.Now()
	launchPending(t, w, ex, tk, corev1.PodStatus{Phase: corev1.PodFailed, StartTime: &started,
		InitContainerStatuses: []corev1.ContainerStatus{{Name: fetchContainerName, State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: "Error: fetch app package https://repo.example/app.tar.gz: HTTP 404 Not Found\n"}}}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}},
	})
	st := sts.waitState(t, tk.ID, executor.StateFailed)
	if !strings.HasPrefix(st.Message, "the app package could not be fetched") || !strings.Contains(st.Message, "HTTP 404") {
		t.Errorf("FAILED status %+v: want why the app package could not be fetched", st)
	}
	nextEx := openExec(t, cfg, &memState{}, 2)
	next := collect(t, nextEx)
	if err := nextEx.Reconcile(t.Context(), []string{tk.ID}); err != nil {
		t.Fatal(err)
	}
	next.wait(t, tk.ID, "FAILED on reconciliation", func(s executor.Status) bool {
		return s.Reconcile && s.State == executor.StateFailed && strings.Contains(s.Message, "could not be fetched")
	})
}
