package kube

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/hasched/hasched/scheduler/executor"
)

// Pod failure reasons (the kubelet's and the node controller's) that say
// the task's host let it down, not its work: LOST, so that the scheduler
// fails it over as the job says.
var lostReasons = map[string]bool{
	"Evicted":                  true, // node pressure
	"NodeLost":                 true,
	"Shutdown":                 true, // graceful node shutdown
	"Terminated":               true, // the node's shutdown, older kubelets
	"UnexpectedAdmissionError": true,
	"NodeAffinity":             true, // admission failed: never started
	"OutOfcpu":                 true,
	"OutOfmemory":              true,
	"OutOfpods":                true,
	"Preempting":               true,
}

// Waiting reasons of a container whose image cannot be pulled (yet): the
// kubelet keeps trying, the executor gives up after PullTimeout.
var pullFailing = map[string]bool{
	"ErrImagePull":     true,
	"ImagePullBackOff": true,
}

// Waiting reasons of a container that will never start by itself.
var neverStarts = map[string]bool{
	"InvalidImageName":           true,
	"ErrImageNeverPull":          true,
	"CreateContainerConfigError": true,
}

// statusOf maps a Pod that exists to its task's status. A Pod being
// deleted keeps its state until it is gone (onDelete says how it ended) or
// it reaches a terminal phase.
func statusOf(p *corev1.Pod) executor.Status {
	st := executor.Status{
		TaskID: p.Annotations[annotationTaskID],
		Host:   p.Spec.NodeName,
		Time:   time.Now(),
	}
	killed := p.Annotations[killedAnnotation] != ""
	main := mainContainer(p)
	fetch := fetchContainer(p)
	if why := p.Annotations[failedAnnotation]; why != "" && p.Status.Phase != corev1.PodSucceeded {
		st.State, st.ExitCode, st.Message = executor.StateFailed, -1, why
		return st
	}
	switch p.Status.Phase {
	case corev1.PodPending, "":
		st.State = executor.StateStaging
		switch {
		case fetch != nil && fetch.State.Running != nil:
			st.Message = "fetching the app package"
		case fetch != nil && fetch.State.Waiting != nil && fetch.State.Waiting.Reason != "PodInitializing":
			// The fetch comes first: the task's container waits for it
			// (PodInitializing), which says nothing.
			w := fetch.State.Waiting
			st.Message = strings.TrimSpace(fetchContainerName + ": " + w.Reason + ": " + w.Message)
			if neverStarts[w.Reason] {
				st.State = executor.StateFailed
				st.Message = fetchFailed + ": " + st.Message
			}
		case main != nil && main.State.Waiting != nil:
			w := main.State.Waiting
			if neverStarts[w.Reason] {
				st.State = executor.StateFailed
			}
			st.Message = strings.TrimSpace(w.Reason + ": " + w.Message)
		}
	case corev1.PodRunning:
		st.State = executor.StateRunning
	case corev1.PodSucceeded:
		st.State = executor.StateFinished
	case corev1.PodFailed:
		st.State, st.ExitCode, st.Message = failure(p, main, fetch)
	default: // Unknown: the node does not answer; the node controller
		// evicts the Pod in time, and the task may well run on: not an end.
		st.State = executor.StateRunning
		st.Message = "the Pod's node does not answer"
	}
	if killed && (st.State == executor.StateFailed || st.State == executor.StateLost) {
		// What a stop does to a task (exit code 143, 137) is the kill's.
		st.State, st.Message = executor.StateKilled, "killed"
	}
	return st
}

// fetchFailed starts the message of a task whose app package could not be
// fetched.
const fetchFailed = "the app package could not be fetched"

// failure maps a Failed Pod.
func failure(p *corev1.Pod, main, fetch *corev1.ContainerStatus) (executor.State, int, string) {
	reason, msg := p.Status.Reason, p.Status.Message
	if reason == "DeadlineExceeded" {
		d := "its timeout"
		if s := p.Spec.ActiveDeadlineSeconds; s != nil {
			d = fmt.Sprintf("its timeout of %ds", *s)
		}
		return executor.StateTimedOut, 0, "stopped after " + d + " (DeadlineExceeded)"
	}
	if lostReasons[reason] {
		return executor.StateLost, 0, strings.TrimSpace(reason + ": " + msg)
	}
	if fetch != nil && fetch.State.Terminated != nil && fetch.State.Terminated.ExitCode != 0 {
		// The task's command never ran: no exit code of its.
		// Its message is the tail of fetch-app's output (the container's
		// terminationMessagePolicy), which says why.
		term := fetch.State.Terminated
		detail := strings.TrimSpace(term.Message)
		if detail == "" {
			detail = term.Reason
		}
		m := fmt.Sprintf("%s (%s exited %d): %s", fetchFailed, fetchContainerName, term.ExitCode, detail)
		if term.Reason == "OOMKilled" {
			return executor.StateLost, -1, m
		}
		return executor.StateFailed, -1, m
	}
	if main != nil && main.State.Terminated != nil {
		term := main.State.Terminated
		m := strings.TrimSpace(term.Reason + ": " + term.Message)
		if term.Reason == "OOMKilled" {
			return executor.StateLost, int(term.ExitCode), m
		}
		code := int(term.ExitCode)
		if code == 0 {
			// Failed with exit code 0: a container the kubelet could not
			// run; FAILED, never read as a success.
			code = -1
		}
		return executor.StateFailed, code, m
	}
	if reason != "" {
		// A reason of the node's we do not know, and no exit code: the
		// task did not fail by its own doing.
		return executor.StateLost, 0, strings.TrimSpace(reason + ": " + msg)
	}
	return executor.StateFailed, -1, msg
}

// mainContainer is the status of the task's container, or nil.
func mainContainer(p *corev1.Pod) *corev1.ContainerStatus {
	return containerStatus(p.Status.ContainerStatuses, containerName)
}

// fetchContainer is the status of the init container fetching the app
// package, or nil (none yet, or a task without a package).
func fetchContainer(p *corev1.Pod) *corev1.ContainerStatus {
	return containerStatus(p.Status.InitContainerStatuses, fetchContainerName)
}

func containerStatus(all []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range all {
		if all[i].Name == name {
			return &all[i]
		}
	}
	return nil
}

// notPulling is the container of a pending Pod that is failing to pull its
// image (the fetch container's first: the task's waits for it), what it
// waits with, and the image; nil if none is.
func notPulling(p *corev1.Pod) (c *corev1.ContainerStatus, image string) {
	if p.Status.Phase != corev1.PodPending {
		return nil, ""
	}
	for _, c := range []*corev1.ContainerStatus{fetchContainer(p), mainContainer(p)} {
		if c != nil && c.State.Waiting != nil && pullFailing[c.State.Waiting.Reason] {
			return c, specImage(p, c.Name)
		}
	}
	return nil, ""
}

// specImage is the image of the Pod's container or init container name.
func specImage(p *corev1.Pod, name string) string {
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			if c.Name == name {
				return c.Image
			}
		}
	}
	return ""
}

// goneStatus is the end of a task whose Pod was deleted in state last:
// KILLED if a term killed it, else LOST (its node went, someone deleted
// it).
func goneStatus(p *corev1.Pod) executor.Status {
	st := statusOf(p)
	if st.State.Terminal() {
		return st
	}
	st.Time = time.Now()
	if p.Annotations[killedAnnotation] != "" {
		st.State, st.Message = executor.StateKilled, "killed"
	} else {
		st.State, st.Message = executor.StateLost, "the Pod was deleted before it ended (its node was lost, or it was deleted by hand)"
	}
	return st
}
