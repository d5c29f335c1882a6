package kube

import (
	"context"
	"errors"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hasched/hasched/scheduler/executor"
)

// Launch creates the Pods of the tasks that have none; a task whose Pod
// exists (this term's, or an earlier one's) is reported as its Pod is.
// Before it creates anything it proves that the term still leads.
func (e *Executor) Launch(ctx context.Context, tasks []executor.Task) error {
	leave, err := e.enter()
	if err != nil {
		return err
	}
	defer leave()
	for _, t := range tasks {
		if err := e.checkTask(t); err != nil {
			return err
		}
	}
	seen := make(map[string]bool, len(tasks))
	var create []executor.Task
	for _, t := range tasks {
		if seen[t.ID] {
			continue
		}
		seen[t.ID] = true
		p, err := e.cached(t.ID)
		if err != nil {
			return err
		}
		if p != nil {
			e.report(statusOf(p), string(p.UID), true)
			continue
		}
		create = append(create, t)
	}
	if len(create) == 0 {
		return nil
	}
	if err := e.fence(ctx); err != nil {
		return err
	}
	errs := make([]error, len(create))
	e.each(len(create), func(i int) { errs[i] = e.create(ctx, create[i]) })
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// fence proves the term leads: a write fenced by its token.
func (e *Executor) fence(ctx context.Context) error {
	cctx, cancel := e.call(ctx)
	defer cancel()
	if err := e.term.State.Store(cctx, stateKey, []byte(itoa(e.term.Token))); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if e.ctx.Err() != nil {
			return ErrClosed
		}
		return fmt.Errorf("%w (a fenced write failed: %w); no Pod created", ErrDeposed, err)
	}
	return nil
}

// create creates a task's Pod; if it exists, the task is reported as its
// Pod is.
func (e *Executor) create(ctx context.Context, t executor.Task) error {
	pod := e.podFor(t)
	cctx, cancel := e.call(ctx)
	created, err := e.pods().Create(cctx, pod, metav1.CreateOptions{})
	cancel()
	switch {
	case err == nil:
		e.log.Debug("created the task's Pod", "task", t.ID, "pod", created.Name)
		return nil
	case !apierrors.IsAlreadyExists(err):
		return fmt.Errorf("create the Pod of task %s: %w", t.ID, err)
	}
	p, err := e.get(ctx, t.ID)
	if err != nil {
		return err
	}
	if p == nil {
		return fmt.Errorf("the Pod of task %s was deleted as it was created; launch it again", t.ID)
	}
	e.report(statusOf(p), string(p.UID), true)
	return nil
}

// Kill marks the task's Pod killed and deletes it with the grace period;
// its end follows from the watch. A Pod that has ended is reported as it
// ended.
func (e *Executor) Kill(ctx context.Context, taskID string) error {
	leave, err := e.enter()
	if err != nil {
		return err
	}
	defer leave()
	p, err := e.get(ctx, taskID)
	if err != nil || p == nil {
		return err
	}
	if st := statusOf(p); st.State.Terminal() {
		e.report(st, string(p.UID), true)
		return nil
	}
	if p.Annotations[killedAnnotation] == "" {
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, killedAnnotation, itoa(e.term.Token))
		cctx, cancel := e.call(ctx)
		_, err = e.pods().Patch(cctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		cancel()
		if apierrors.IsNotFound(err) {
			return nil // gone meanwhile: the watch reports how it ended
		}
		if err != nil {
			return fmt.Errorf("mark the Pod of task %s killed: %w", taskID, err)
		}
	}
	if err := e.deletePod(ctx, p.Name, p.UID, e.grace()); err != nil {
		return fmt.Errorf("delete the Pod of task %s: %w", taskID, err)
	}
	e.log.Info("killed the task's Pod", "task", taskID, "pod", p.Name)
	return nil
}

// Reconcile answers for the named tasks from their Pods (UNKNOWN if there
// is none), or for every Pod of the cluster.
func (e *Executor) Reconcile(ctx context.Context, taskIDs []string) error {
	leave, err := e.enter()
	if err != nil {
		return err
	}
	defer leave()
	if len(taskIDs) == 0 {
		return e.reconcileAll(ctx)
	}
	errs := make([]error, len(taskIDs))
	e.each(len(taskIDs), func(i int) {
		id := taskIDs[i]
		p, err := e.get(ctx, id)
		switch {
		case err != nil:
			errs[i] = err
		case p == nil:
			e.answer(executor.Status{TaskID: id, State: executor.StateUnknown, Message: "no Pod", Time: now()})
		default:
			e.answer(statusOf(p))
		}
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// reconcileAll lists the cluster's Pods from the API server, page by page.
func (e *Executor) reconcileAll(ctx context.Context) error {
	opts := metav1.ListOptions{LabelSelector: e.sel.String(), Limit: listPage}
	for {
		cctx, cancel := e.call(ctx)
		list, err := e.pods().List(cctx, opts)
		cancel()
		if err != nil {
			return fmt.Errorf("list the Pods: %w", err)
		}
		for i := range list.Items {
			if p := e.podOf(&list.Items[i]); p != nil {
				e.answer(statusOf(p))
			}
		}
		if list.Continue == "" {
			return nil
		}
		opts.Continue = list.Continue
	}
}

// get reads a task's Pod from the API server: nil if there is none.
func (e *Executor) get(ctx context.Context, taskID string) (*corev1.Pod, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	p, err := e.pods().Get(cctx, podName(e.cfg.Cluster, taskID), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get the Pod of task %s: %w", taskID, err)
	}
	return e.mine(p, taskID)
}

// cached is the task's Pod as the informer has it: nil if it has none.
func (e *Executor) cached(taskID string) (*corev1.Pod, error) {
	obj, ok, err := e.informer.GetStore().GetByKey(e.cfg.Namespace + "/" + podName(e.cfg.Cluster, taskID))
	if err != nil || !ok {
		return nil, nil
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	return e.mine(p, taskID)
}

// mine checks that a Pod of the task's name is the task's.
func (e *Executor) mine(p *corev1.Pod, taskID string) (*corev1.Pod, error) {
	if p.Labels[labelCluster] != e.cfg.Cluster || p.Annotations[annotationTaskID] != taskID {
		return nil, fmt.Errorf("%w: %s holds task %q of cluster %q, not task %q", ErrNameTaken, p.Name,
			p.Annotations[annotationTaskID], p.Labels[labelCluster], taskID)
	}
	return p, nil
}

func (e *Executor) pods() podClient { return e.cfg.Client.CoreV1().Pods(e.cfg.Namespace) }

// each runs f(0..n-1), createsAtOnce at a time.
func (e *Executor) each(n int, f func(int)) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, createsAtOnce)
	for i := range n {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}
