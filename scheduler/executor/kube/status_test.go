package kube

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hasched/hasched/scheduler/executor"
)

// How a Pod's phase, reason and container state read as a task's status.
func TestStatusOfAPod(t *testing.T) {
	terminated := func(code int32, reason string) []corev1.ContainerStatus {
		return []corev1.ContainerStatus{{Name: containerName, State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason}}}}
	}
	waiting := func(reason string) []corev1.ContainerStatus {
		return []corev1.ContainerStatus{{Name: containerName, State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}}
	}
	deadline := int64(30)
	for _, c := range []struct {
		name    string
		status  corev1.PodStatus
		killed  bool
		want    executor.State
		code    int
		message string
	}{
		{"created", corev1.PodStatus{}, false, executor.StateStaging, 0, ""},
		{"pending", corev1.PodStatus{Phase: corev1.PodPending}, false, executor.StateStaging, 0, ""},
		{"pulling", corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: waiting("ContainerCreating")}, false, executor.StateStaging, 0, "ContainerCreating:"},
		{"image pull backing off", corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: waiting("ImagePullBackOff")}, false, executor.StateStaging, 0, "ImagePullBackOff:"},
		{"invalid image", corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: waiting("InvalidImageName")}, false, executor.StateFailed, 0, "InvalidImageName:"},
		{"running", corev1.PodStatus{Phase: corev1.PodRunning}, false, executor.StateRunning, 0, ""},
		{"node unknown", corev1.PodStatus{Phase: corev1.PodUnknown}, false, executor.StateRunning, 0, "does not answer"},
		{"succeeded", corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: terminated(0, "Completed")}, false, executor.StateFinished, 0, ""},
		{"exit 3", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: terminated(3, "Error")}, false, executor.StateFailed, 3, "Error:"},
		{"exit 255", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: terminated(255, "Error")}, false, executor.StateFailed, 255, "Error:"},
		{"OOMKilled", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: terminated(137, "OOMKilled")}, false, executor.StateLost, 137, "OOMKilled"},
		{"evicted", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: memory."}, false, executor.StateLost, 0, "Evicted: The node was low"},
		{"evicted after its container ran", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", ContainerStatuses: terminated(137, "Error")}, false, executor.StateLost, 0, "Evicted"},
		{"node lost", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "NodeLost"}, false, executor.StateLost, 0, "NodeLost"},
		{"node shut down", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Shutdown"}, false, executor.StateLost, 0, "Shutdown"},
		{"not admitted", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "OutOfcpu"}, false, executor.StateLost, 0, "OutOfcpu"},
		{"an unknown reason of the node's", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "SomethingNew"}, false, executor.StateLost, 0, "SomethingNew"},
		{"deadline exceeded", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "DeadlineExceeded", ContainerStatuses: terminated(137, "Error")}, false, executor.StateTimedOut, 0, "timeout of 30s"},
		{"failed without an exit code", corev1.PodStatus{Phase: corev1.PodFailed}, false, executor.StateFailed, -1, ""},
		{"failed with exit code 0", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: terminated(0, "Error")}, false, executor.StateFailed, -1, ""},
		{"killed: stopped by SIGTERM", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: terminated(143, "Error")}, true, executor.StateKilled, 143, "killed"},
		{"killed while running", corev1.PodStatus{Phase: corev1.PodRunning}, true, executor.StateRunning, 0, ""},
		{"killed after it succeeded", corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: terminated(0, "Completed")}, true, executor.StateFinished, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{annotationTaskID: "t"}},
				Spec:       corev1.PodSpec{NodeName: "n", ActiveDeadlineSeconds: &deadline},
				Status:     c.status,
			}
			if c.killed {
				p.Annotations[killedAnnotation] = "1"
			}
			st := statusOf(p)
			if st.TaskID != "t" || st.Host != "n" || st.State != c.want || st.ExitCode != c.code || !strings.Contains(st.Message, c.message) {
				t.Errorf("status %+v: want %s, exit code %d, message with %q, on n", st, c.want, c.code, c.message)
			}
		})
	}
}

// A Pod that goes before it ended: KILLED if a term killed it, else LOST;
// one that had ended keeps its end.
func TestStatusOfADeletedPod(t *testing.T) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{annotationTaskID: "t"}}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	if st := goneStatus(p); st.State != executor.StateLost {
		t.Errorf("deleted running Pod: %+v, want LOST", st)
	}
	p.Annotations[killedAnnotation] = "3"
	if st := goneStatus(p); st.State != executor.StateKilled {
		t.Errorf("killed running Pod: %+v, want KILLED", st)
	}
	p.Status.Phase = corev1.PodSucceeded
	if st := goneStatus(p); st.State != executor.StateFinished {
		t.Errorf("deleted succeeded Pod: %+v, want FINISHED", st)
	}
}

// A Pod the executor gave up on reads FAILED with the reason it gave,
// pending or gone.
func TestStatusOfAPodGivenUpOn(t *testing.T) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{annotationTaskID: "t", failedAnnotation: "image x not pulled"}},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
	for _, st := range []executor.Status{statusOf(p), goneStatus(p)} {
		if st.State != executor.StateFailed || st.Message != "image x not pulled" {
			t.Errorf("status %+v, want FAILED with the reason", st)
		}
	}
}

// A Pod fetching its task's app package: STAGING while the fetch runs or
// waits for its image, FAILED saying the package could not be fetched
// (with fetch-app's message) once the fetch container failed, whatever the
// task's container shows; the Pod's own reasons (timeout, eviction) still
// win.
func TestStatusOfAPodFetchingItsApp(t *testing.T) {
	fetch := func(s corev1.ContainerState) []corev1.ContainerStatus {
		return []corev1.ContainerStatus{{Name: fetchContainerName, State: s}}
	}
	initializing := []corev1.ContainerStatus{{Name: containerName, State: corev1.ContainerState{
		Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}}
	waiting := func(reason string) corev1.ContainerState {
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "about " + reason}}
	}
	failed := func(code int32, reason, msg string) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: msg}}
	}
	fetchErr := "Error: fetch app package https://xxxxx@repo/app.tar.gz: checksum mismatch: appChecksum is sha256:aa, the package's is sha256:bb\n"
	for _, c := range []struct {
		name    string
		status  corev1.PodStatus
		killed  bool
		want    executor.State
		code    int
		message string
	}{
		{"fetching", corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: fetch(corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}), ContainerStatuses: initializing},
			false, executor.StateStaging, 0, "fetching the app package"},
		{"fetch image backing off", corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: fetch(waiting("ImagePullBackOff")), ContainerStatuses: initializing},
			false, executor.StateStaging, 0, "fetch-app: ImagePullBackOff: about ImagePullBackOff"},
		{"fetch image not pulled", corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: fetch(waiting("ErrImagePull")), ContainerStatuses: initializing},
			false, executor.StateStaging, 0, "fetch-app: ErrImagePull"},
		{"fetch image invalid", corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: fetch(waiting("InvalidImageName")), ContainerStatuses: initializing},
			false, executor.StateFailed, 0, "the app package could not be fetched: fetch-app: InvalidImageName"},
		{"fetch not started yet", corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: fetch(waiting("PodInitializing")), ContainerStatuses: initializing},
			false, executor.StateStaging, 0, "PodInitializing"},
		{"fetched, task pulling", corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: fetch(failed(0, "Completed", "")),
			ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, State: waiting("ImagePullBackOff")}}},
			false, executor.StateStaging, 0, "ImagePullBackOff: about"},
		{"fetch failed", corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: fetch(failed(1, "Error", fetchErr)), ContainerStatuses: initializing},
			false, executor.StateFailed, -1, "the app package could not be fetched (fetch-app exited 1): Error: fetch app package https://xxxxx@repo/app.tar.gz: checksum mismatch"},
		{"fetch failed without a message", corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: fetch(failed(2, "Error", ""))},
			false, executor.StateFailed, -1, "the app package could not be fetched (fetch-app exited 2): Error"},
		{"fetch OOM-killed", corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: fetch(failed(137, "OOMKilled", ""))},
			false, executor.StateLost, -1, "could not be fetched"},
		{"fetch timed out", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "DeadlineExceeded", InitContainerStatuses: fetch(failed(137, "Error", ""))},
			false, executor.StateTimedOut, 0, "DeadlineExceeded"},
		{"evicted while fetching", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", InitContainerStatuses: fetch(failed(137, "Error", ""))},
			false, executor.StateLost, 0, "Evicted"},
		{"killed while fetching", corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: fetch(failed(143, "Error", ""))},
			true, executor.StateKilled, -1, "killed"},
		{"fetched, task failed", corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: fetch(failed(0, "Completed", "")),
			ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, State: failed(3, "Error", "")}}},
			false, executor.StateFailed, 3, "Error"},
		{"fetched, task succeeded", corev1.PodStatus{Phase: corev1.PodSucceeded, InitContainerStatuses: fetch(failed(0, "Completed", "")),
			ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, State: failed(0, "Completed", "")}}},
			false, executor.StateFinished, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{annotationTaskID: "t"}},
				Status:     c.status,
			}
			if c.killed {
				p.Annotations[killedAnnotation] = "1"
			}
			st := statusOf(p)
			if st.State != c.want || st.ExitCode != c.code || !strings.Contains(st.Message, c.message) {
				t.Errorf("status %+v: want %s, exit code %d, message with %q", st, c.want, c.code, c.message)
			}
		})
	}
}
