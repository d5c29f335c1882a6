package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/hasched/hasched/scheduler/executor"
)

// Labels and annotations of a task's Pod.
const (
	labelCluster = "hasched.io/cluster"
	labelJob     = "hasched.io/job"
	labelShard   = "hasched.io/shard"
	labelAttempt = "hasched.io/attempt"

	annotationTaskID   = "hasched.io/task-id"
	annotationFireTime = "hasched.io/fire-time"
	annotationTerm     = "hasched.io/term"
	// killedAnnotation is set by Kill before it deletes the Pod, so that
	// the Pod's end reads KILLED to whichever term sees it.
	killedAnnotation = "hasched.io/killed"
	// failedAnnotation is set, with the reason, on a Pod the executor gave
	// up on (its image could not be pulled) before it deletes it, so that
	// its end reads FAILED to whichever term sees it.
	failedAnnotation = "hasched.io/failed"

	// containerName is the task's container.
	containerName = "task"
	// fetchContainerName is the init container of a task with an app
	// package: it fetches the package before the task's container starts.
	fetchContainerName = "fetch-app"
	// taskDir is the task's directory, an emptyDir (HASCHED_TASK_DIR), and
	// its working directory if it has no app package.
	taskDir = "/hasched/task"
	// appDir is where the app package is unpacked, and the working
	// directory of a task that has one: as on the local executor, whose
	// task runs in <task dir>/app.
	appDir = taskDir + "/app"
	// FetchURLEnv carries the app URL to the init container's `hasched
	// fetch-app`: its --url flag, read from the environment as every flag
	// of hasched's can be (HASCHED_<FLAG>).
	FetchURLEnv = "HASCHED_URL"
	// maxNameLen keeps a Pod's name a DNS-1123 label (its hostname).
	maxNameLen = validation.DNS1123LabelMaxLength
	// hashLen hex digits of SHA-256 end every name: 64 bits, so that two
	// task ids of one cluster never share a name in practice.
	hashLen = 16
)

// podName is the Pod of a task in a cluster: a readable prefix (the task
// id's job name, made a DNS-1123 label) and a hash of the cluster and the
// whole task id, so that the same task always has the same name (the API
// server's AlreadyExists is the exactly-once) and two tasks, or two hasched
// clusters' same task, never do. It needs the id only: Kill and Reconcile
// get nothing else.
func podName(cluster, taskID string) string {
	sum := sha256.Sum256([]byte(cluster + "\x00" + taskID))
	suffix := "-" + hex.EncodeToString(sum[:])[:hashLen]
	job, _, _ := strings.Cut(taskID, "@-@")
	prefix := dnsLabel(job, maxNameLen-len(suffix))
	if prefix == "" {
		prefix = "task"
	}
	return prefix + suffix
}

// dnsLabel maps s to lower-case letters, digits and single dashes, starting
// with a letter or digit, at most n characters, no dash at the end.
func dnsLabel(s string, n int) string {
	var b strings.Builder
	dash := true // no dash at the start
	for _, r := range strings.ToLower(s) {
		switch {
		case r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= n {
			break
		}
	}
	out := b.String()
	if len(out) > n {
		out = out[:n]
	}
	return strings.TrimRight(out, "-")
}

// jobLabel is the job's name as a label value: itself if it is one, else
// a readable part and a hash of it.
func jobLabel(job string) string {
	if len(validation.IsValidLabelValue(job)) == 0 {
		return job
	}
	sum := sha256.Sum256([]byte(job))
	suffix := "-" + hex.EncodeToString(sum[:])[:hashLen]
	prefix := dnsLabel(job, validation.LabelValueMaxLength-len(suffix))
	if prefix == "" {
		return suffix[1:]
	}
	return prefix + suffix
}

// checkImage refuses what cannot be an image reference (the app's image is
// validated by the model; this is the default's check).
func checkImage(image string) error {
	if len(image) > 512 {
		return fmt.Errorf("%d characters, at most 512", len(image))
	}
	for _, r := range image {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r > unicode.MaxASCII {
			return fmt.Errorf("%q holds %q", image, r)
		}
	}
	return nil
}

// checkTask says why a task cannot run here; nil if it can.
func (e *Executor) checkTask(t executor.Task) error {
	switch {
	case t.ID == "":
		return fmt.Errorf("%w: a task has no id", ErrInvalidTask)
	case strings.TrimSpace(t.Command) == "":
		return fmt.Errorf("%w: task %s has no command", ErrInvalidTask, t.ID)
	case t.CPUs < 0 || t.MemoryMB < 0 || math.IsNaN(t.CPUs) || math.IsNaN(t.MemoryMB) || math.IsInf(t.CPUs, 0) || math.IsInf(t.MemoryMB, 0):
		return fmt.Errorf("%w: task %s asks for %v CPUs and %v MB", ErrInvalidTask, t.ID, t.CPUs, t.MemoryMB)
	case t.Image == "" && e.cfg.Image == "":
		return fmt.Errorf("%w: task %s: its app has no image and the executor no default image", ErrInvalidTask, t.ID)
	case t.AppURL != "" && e.cfg.FetchImage == "":
		// The command expects the package unpacked in its directory: run
		// without it, it would fail in a way that says nothing of why.
		return fmt.Errorf("%w: task %s: its app has a package (appURL) and no fetch image is configured to fetch it (Config.FetchImage, serve's --kube-fetch-image)", ErrInvalidTask, t.ID)
	}
	if err := checkImage(t.Image); err != nil {
		return fmt.Errorf("%w: task %s: image %v", ErrInvalidTask, t.ID, err)
	}
	return nil
}

// podFor builds the Pod of a task.
func (e *Executor) podFor(t executor.Task) *corev1.Pod {
	image := t.Image
	if image == "" {
		image = e.cfg.Image
	}
	vars := executor.TaskVariables(t)
	env := make([]corev1.EnvVar, 0, len(vars)+1)
	var sc string
	for _, v := range vars {
		env = append(env, corev1.EnvVar{Name: v.Name, Value: v.Value})
		if v.Name == "HASCHED_SHARDING_CONTEXT" {
			sc = v.Value
		}
	}
	env = append(env, corev1.EnvVar{Name: "HASCHED_TASK_DIR", Value: taskDir})

	res := corev1.ResourceList{}
	if t.CPUs > 0 {
		res[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(math.Ceil(t.CPUs*1000)), resource.DecimalSI)
	}
	if t.MemoryMB > 0 {
		res[corev1.ResourceMemory] = *resource.NewQuantity(int64(math.Ceil(t.MemoryMB*(1<<20))), resource.BinarySI)
	}
	workDir := taskDir
	if t.AppURL != "" {
		workDir = appDir
	}
	mounts := []corev1.VolumeMount{{Name: "task", MountPath: taskDir}}
	grace := e.grace()
	no := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      podName(e.cfg.Cluster, t.ID),
			Namespace: e.cfg.Namespace,
			Labels: map[string]string{
				labelCluster: e.cfg.Cluster,
				labelJob:     jobLabel(t.Job),
				labelShard:   strconv.Itoa(t.Shard),
				labelAttempt: strconv.Itoa(t.Attempt),
			},
			Annotations: map[string]string{
				annotationTaskID:   t.ID,
				annotationFireTime: t.FireTime.UTC().Format(time.RFC3339Nano),
				annotationTerm:     itoa(e.term.Token),
			},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			// Tasks get no credentials of the cluster's, nor the
			// namespace's services as variables beside theirs.
			AutomountServiceAccountToken: &no,
			EnableServiceLinks:           &no,
			Containers: []corev1.Container{{
				Name:  containerName,
				Image: image,
				// As the local executor runs it: the command by a POSIX
				// shell, the sharding context as $1.
				Command:      []string{"/bin/sh", "-c"},
				Args:         []string{t.Command, "hasched", sc},
				Env:          env,
				WorkingDir:   workDir,
				Resources:    corev1.ResourceRequirements{Requests: res, Limits: res.DeepCopy()},
				VolumeMounts: mounts,
			}},
			Volumes: []corev1.Volume{{
				Name:         "task",
				VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
			}},
		},
	}
	if t.Timeout > 0 {
		// The kubelet stops the Pod past it (reason DeadlineExceeded):
		// counted from the Pod's start, so across terms too.
		secs := int64(math.Ceil(t.Timeout.Seconds()))
		pod.Spec.ActiveDeadlineSeconds = &secs
	}
	if t.AppURL != "" {
		pod.Spec.InitContainers = []corev1.Container{e.fetchContainer(t, res, mounts)}
	}
	return pod
}

// fetchContainer is the init container that fetches a task's app package
// into appDir with `hasched fetch-app`, in FetchImage: on the task's
// emptyDir, with the task's resources (so that the Pod asks for no more
// than the task does), without the service account's token (the Pod
// mounts none). Its log's tail is its termination message, so that a
// failed fetch's reason reaches the task's status.
//
// The URL may hold a credential (a token as userinfo, a presigned query):
// it goes in an environment variable, not on the command line, so that it
// is not in the node's process list nor in anything that logs a
// container's command. It is in the Pod's spec all the same: whoever may
// read the namespace's Pods may read it. fetch-app prints it redacted only.
func (e *Executor) fetchContainer(t executor.Task, res corev1.ResourceList, mounts []corev1.VolumeMount) corev1.Container {
	args := []string{"fetch-app", "--dest", appDir}
	if t.AppChecksum != "" {
		args = append(args, "--checksum", t.AppChecksum)
	}
	return corev1.Container{
		Name:                     fetchContainerName,
		Image:                    e.cfg.FetchImage,
		Command:                  []string{"hasched"},
		Args:                     args,
		Env:                      []corev1.EnvVar{{Name: FetchURLEnv, Value: t.AppURL}},
		Resources:                corev1.ResourceRequirements{Requests: res.DeepCopy(), Limits: fetchLimits(res)},
		VolumeMounts:             mounts,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// minFetchMemory is the least memory limit of the fetch container: a task
// may ask for less than hasched itself needs to run (a Go binary unpacking
// an archive), and the Pod's request is the larger of its init and its
// task containers' anyway, so a higher limit on the init step costs the
// node nothing while the task runs.
const minFetchMemory = 128 << 20

// fetchLimits are the task's limits with memory at least minFetchMemory.
func fetchLimits(res corev1.ResourceList) corev1.ResourceList {
	out := res.DeepCopy()
	if m, ok := out[corev1.ResourceMemory]; ok && m.Value() < minFetchMemory {
		out[corev1.ResourceMemory] = *resource.NewQuantity(minFetchMemory, resource.BinarySI)
	}
	return out
}
