package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// onAdd: a Pod of the first list is the previous term's, its state a
// baseline (the scheduler asks for it by Reconcile); one added later is
// reported.
func (e *Executor) onAdd(obj any, initial bool) {
	p := e.podOf(obj)
	if p == nil {
		return
	}
	st := statusOf(p)
	if initial {
		e.baseline(st.TaskID, string(p.UID), st.State)
		return
	}
	e.report(st, string(p.UID), false)
}

func (e *Executor) onChange(obj any) {
	if p := e.podOf(obj); p != nil {
		e.report(statusOf(p), string(p.UID), false)
	}
}

// onDelete reports the end of a task whose Pod went before it ended, and
// forgets the task.
func (e *Executor) onDelete(obj any) {
	p := e.podOf(obj)
	if p == nil {
		return
	}
	id := p.Annotations[annotationTaskID]
	e.mu.Lock()
	k := e.tasks[id]
	stale := k != nil && k.uid != "" && k.uid != string(p.UID)
	e.mu.Unlock()
	if stale {
		return // an older Pod of the task's name: not the one we know
	}
	e.report(goneStatus(p), string(p.UID), false)
	e.mu.Lock()
	delete(e.tasks, id)
	e.mu.Unlock()
}

// collect deletes, every GCInterval, the Pods whose end was reported
// Retention ago or more (record, then delete: see DefaultRetention).
func (e *Executor) collect() {
	t := time.NewTicker(e.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.gc()
		}
	}
}

func (e *Executor) gc() {
	cutoff := time.Now().Add(-e.cfg.Retention)
	var old, unpulled []*corev1.Pod
	for _, obj := range e.informer.GetStore().List() {
		p := e.podOf(obj)
		if p == nil || p.DeletionTimestamp != nil {
			continue
		}
		if e.cannotPull(p) {
			unpulled = append(unpulled, p)
			continue
		}
		e.mu.Lock()
		k := e.tasks[p.Annotations[annotationTaskID]]
		due := k != nil && k.last.Terminal() && k.uid == string(p.UID) && !k.ended.After(cutoff)
		e.mu.Unlock()
		if due {
			old = append(old, p)
		}
	}
	for _, p := range old {
		if err := e.deletePod(e.ctx, p.Name, p.UID, 0); err != nil {
			e.log.Warn("cannot delete an ended Pod; trying again later", "pod", p.Name, "error", err)
		}
	}
	for _, p := range unpulled {
		e.giveUp(p)
	}
}

// cannotPull says whether a Pod has waited for an image (the task's, or
// the fetch container's) for PullTimeout and is still failing to pull it.
func (e *Executor) cannotPull(p *corev1.Pod) bool {
	if c, _ := notPulling(p); c == nil || p.Status.StartTime == nil || p.Annotations[failedAnnotation] != "" {
		return false
	}
	return time.Since(p.Status.StartTime.Time) >= e.cfg.PullTimeout
}

// giveUp ends a Pod that cannot pull its image: marked failed (the watch
// reports FAILED), then deleted, so that the kubelet stops trying.
func (e *Executor) giveUp(p *corev1.Pod) {
	c, image := notPulling(p)
	if c == nil {
		return
	}
	w := c.State.Waiting
	what := ""
	if c.Name == fetchContainerName {
		what = " (to fetch the app package)"
	}
	why := fmt.Sprintf("image %s%s not pulled in %v: %s", image, what, e.cfg.PullTimeout, strings.TrimSpace(w.Reason+": "+w.Message))
	body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{failedAnnotation: why}}})
	ctx, cancel := e.call(e.ctx)
	_, err := e.pods().Patch(ctx, p.Name, types.MergePatchType, body, metav1.PatchOptions{})
	cancel()
	if err == nil {
		err = e.deletePod(e.ctx, p.Name, p.UID, 0)
	}
	if err != nil && !apierrors.IsNotFound(err) {
		e.log.Warn("cannot end a Pod that cannot pull its image; trying again later", "pod", p.Name, "error", err)
		return
	}
	e.log.Warn("gave up on a task whose image cannot be pulled", "task", p.Annotations[annotationTaskID], "reason", why)
}

// deletePod deletes the Pod of this uid (a precondition: never a newer Pod
// of the same name) with the grace period; a Pod already gone is no
// error.
func (e *Executor) deletePod(ctx context.Context, name string, uid types.UID, grace int64) error {
	ctx, cancel := e.call(ctx)
	defer cancel()
	err := e.cfg.Client.CoreV1().Pods(e.cfg.Namespace).Delete(ctx, name, metav1.DeleteOptions{
		GracePeriodSeconds: &grace,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}
