package kube

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/hasched/hasched/scheduler/executor"
)

// Pod names are DNS-1123 labels, the same for the same task and cluster,
// different for different tasks and for the same task of two clusters.
func TestPodNamesAreDeterministicUniqueLabels(t *testing.T) {
	ids := []string{
		"job@-@1700000000000@-@0@-@0",
		"job@-@1700000000000@-@0@-@1",
		"job@-@1700000000000@-@1@-@0",
		"job@-@1700000000001@-@0@-@0",
		"Job@-@1700000000000@-@0@-@0", // differs from the first by case only
		"job.a_b@-@1700000000000@-@0@-@0",
		"job-a-b@-@1700000000000@-@0@-@0",
		strings.Repeat("long-name.", 30) + "@-@1700000000000@-@0@-@0",
		strings.Repeat("long-name.", 30) + "x@-@1700000000000@-@0@-@0",
		"--__..@-@1@-@0@-@0",
		"ジョブ@-@1@-@0@-@0",
		"a@-@@-@1@-@0@-@0",
	}
	seen := map[string]string{}
	for _, id := range ids {
		n := podName("c", id)
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			t.Errorf("podName(%q) = %q: %v", id, n, errs)
		}
		if len(n) > 63 {
			t.Errorf("podName(%q) = %q: %d characters", id, n, len(n))
		}
		if n != podName("c", id) {
			t.Errorf("podName(%q) is not deterministic", id)
		}
		if other, ok := seen[n]; ok {
			t.Errorf("tasks %q and %q share the name %q", id, other, n)
		}
		seen[n] = id
		if podName("c2", id) == n {
			t.Errorf("clusters c and c2 share the name %q of task %q", n, id)
		}
	}
	if n := podName("c", "daily-report@-@1@-@0@-@0"); !strings.HasPrefix(n, "daily-report-") {
		t.Errorf("podName = %q: want the job's name readable in front", n)
	}
}

func TestJobLabelIsALabelValue(t *testing.T) {
	for _, job := range []string{"daily", "a.b_c-d", strings.Repeat("x", 100), "-x-", "ジョブ", "a b", ""} {
		l := jobLabel(job)
		if errs := validation.IsValidLabelValue(l); len(errs) > 0 || (job != "" && l == "") {
			t.Errorf("jobLabel(%q) = %q: %v", job, l, errs)
		}
	}
	if jobLabel("daily") != "daily" {
		t.Errorf("a valid label value is kept: %q", jobLabel("daily"))
	}
	if jobLabel(strings.Repeat("x", 100)) == jobLabel(strings.Repeat("x", 101)) {
		t.Error("two long job names share a label")
	}
}

// A task's Pod: its name and labels from the task, the command by sh -c
// with the sharding context as $1, the HASCHED_* variables, requests and
// limits, the timeout as activeDeadlineSeconds, no restarts, no
// credentials.
func TestPodFromTask(t *testing.T) {
	w := newWorld(t)
	ex := openExec(t, w.config(t), &memState{}, 7)
	tk := testTask("report@-@1700000000000@-@1@-@2", "echo hi")
	tk.Attempt = 2
	tk.Timeout = 1500 * time.Millisecond
	p := ex.podFor(tk)

	if p.Name != podName(testCluster, tk.ID) || p.Namespace != testNS {
		t.Errorf("name %s/%s", p.Namespace, p.Name)
	}
	wantLabels := map[string]string{labelCluster: testCluster, labelJob: "report", labelShard: "1", labelAttempt: "2"}
	for k, v := range wantLabels {
		if p.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, p.Labels[k], v)
		}
	}
	if p.Annotations[annotationTaskID] != tk.ID || p.Annotations[annotationTerm] != "7" ||
		p.Annotations[annotationFireTime] != "2023-11-14T22:13:20Z" {
		t.Errorf("annotations %v", p.Annotations)
	}
	s := p.Spec
	if s.RestartPolicy != corev1.RestartPolicyNever || *s.TerminationGracePeriodSeconds != 1 ||
		*s.AutomountServiceAccountToken || *s.EnableServiceLinks {
		t.Errorf("spec %+v", s)
	}
	if s.ActiveDeadlineSeconds == nil || *s.ActiveDeadlineSeconds != 2 {
		t.Errorf("activeDeadlineSeconds %v, want 2 (1.5s rounded up)", s.ActiveDeadlineSeconds)
	}
	if len(s.Containers) != 1 {
		t.Fatalf("%d containers", len(s.Containers))
	}
	c := s.Containers[0]
	if c.Image != testImage {
		t.Errorf("image %q, want the default %q", c.Image, testImage)
	}
	env := map[string]string{}
	for _, v := range c.Env {
		env[v.Name] = v.Value
	}
	for _, v := range executor.TaskVariables(tk) {
		if env[v.Name] != v.Value {
			t.Errorf("env %s = %q, want %q", v.Name, env[v.Name], v.Value)
		}
	}
	if env["HASCHED_TASK_DIR"] != taskDir || c.WorkingDir != taskDir {
		t.Errorf("task dir: env %q, working dir %q", env["HASCHED_TASK_DIR"], c.WorkingDir)
	}
	if fmt.Sprint(c.Command) != "[/bin/sh -c]" || len(c.Args) != 3 || c.Args[0] != "echo hi" || c.Args[1] != "hasched" ||
		c.Args[2] != env["HASCHED_SHARDING_CONTEXT"] || !strings.Contains(c.Args[2], `"shardingItem":1`) {
		t.Errorf("command %q args %q", c.Command, c.Args)
	}
	for name, rl := range map[string]corev1.ResourceList{"requests": c.Resources.Requests, "limits": c.Resources.Limits} {
		if cpu := rl[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse("500m")) != 0 {
			t.Errorf("%s cpu %v", name, cpu.String())
		}
		if mem := rl[corev1.ResourceMemory]; mem.Cmp(resource.MustParse("64Mi")) != 0 {
			t.Errorf("%s memory %v", name, mem.String())
		}
	}

	tk.Image, tk.Timeout = "registry.local/team/report:3", 0
	p = ex.podFor(tk)
	if p.Spec.Containers[0].Image != tk.Image || p.Spec.ActiveDeadlineSeconds != nil {
		t.Errorf("image %q deadline %v: want the app's image, no deadline", p.Spec.Containers[0].Image, p.Spec.ActiveDeadlineSeconds)
	}
}

// A task that cannot run here refuses its whole batch: no Pod is created.
// A task with an app package (appURL) needs a FetchImage to fetch it:
// refused without one (saying which flag sets it), image or not.
func TestTasksThatCannotRunAreRefused(t *testing.T) {
	w := newWorld(t)
	cfg := w.config(t)
	ex := openExec(t, cfg, &memState{}, 1)
	ok := testTask("ok@-@1", "exit 0")
	pkg := testTask("pkg@-@1", "exit 0")
	pkg.AppURL = "http://repo/app.tar.gz"
	pkgImage := pkg
	pkgImage.ID, pkgImage.Image = "pkg-img@-@1", "registry.local/app:1"
	badImage := testTask("img@-@1", "exit 0")
	badImage.Image = "bad image"
	negative := testTask("neg@-@1", "exit 0")
	negative.CPUs = -1
	for _, bad := range []executor.Task{pkg, pkgImage, badImage, negative} {
		err := ex.Launch(t.Context(), []executor.Task{ok, bad})
		if !errors.Is(err, ErrInvalidTask) || !errors.Is(err, executor.ErrInvalidTask) {
			t.Errorf("Launch with %s: %v, want ErrInvalidTask", bad.ID, err)
		}
		if bad.AppURL != "" && (err == nil || !strings.Contains(err.Error(), "--kube-fetch-image")) {
			t.Errorf("Launch with %s: %v, want a message naming --kube-fetch-image", bad.ID, err)
		}
	}
	if n := w.createCount(); n != 0 {
		t.Errorf("%d Pods created for refused batches", n)
	}

	cfg.Image = ""
	noDefault := openExec(t, cfg, &memState{}, 2)
	if err := noDefault.Launch(t.Context(), []executor.Task{ok}); !errors.Is(err, ErrInvalidTask) {
		t.Errorf("no image and no default: %v, want ErrInvalidTask", err)
	}
	// With a fetch image but no image at all: refused as before.
	cfg.FetchImage = testFetchImage
	noImage := openExec(t, cfg, &memState{}, 3)
	if err := noImage.Launch(t.Context(), []executor.Task{pkg}); !errors.Is(err, ErrInvalidTask) || !strings.Contains(err.Error(), "no image") {
		t.Errorf("an app package, no image and no default: %v, want ErrInvalidTask for the image", err)
	}
	if n := w.createCount(); n != 0 {
		t.Errorf("%d Pods created for refused batches", n)
	}
}

const testFetchImage = "hasched/hasched:test"

// A task with an app package: an init container in FetchImage runs
// `hasched fetch-app` into <task dir>/app with the URL in its environment
// (not its arguments), the checksum, the task's emptyDir and resources, no
// token; the task's container runs in its own image, in <task dir>/app.
func TestPodOfATaskWithAnAppPackage(t *testing.T) {
	w := newWorld(t)
	cfg := w.config(t)
	cfg.FetchImage = testFetchImage
	ex := openExec(t, cfg, &memState{}, 1)
	sts := collect(t, ex)
	tk := testTask("pkg@-@1@-@0@-@0", "exit 0")
	tk.AppURL = "https://user:s3cret@repo.example/app.tar.gz?token=t0ken"
	tk.AppChecksum = "sha256:" + strings.Repeat("ab", 32)
	p := ex.podFor(tk)

	if *p.Spec.AutomountServiceAccountToken {
		t.Error("the Pod mounts the service account's token")
	}
	if len(p.Spec.InitContainers) != 1 || len(p.Spec.Containers) != 1 {
		t.Fatalf("%d init containers, %d containers; want 1 and 1", len(p.Spec.InitContainers), len(p.Spec.Containers))
	}
	ic, c := p.Spec.InitContainers[0], p.Spec.Containers[0]
	if ic.Name != fetchContainerName || ic.Image != testFetchImage {
		t.Errorf("init container %s in %s, want %s in %s", ic.Name, ic.Image, fetchContainerName, testFetchImage)
	}
	if got := strings.Join(append(ic.Command, ic.Args...), " "); got != "hasched fetch-app --dest /hasched/task/app --checksum "+tk.AppChecksum {
		t.Errorf("init container runs %q", got)
	}
	if len(ic.Env) != 1 || ic.Env[0].Name != FetchURLEnv || ic.Env[0].Value != tk.AppURL || FetchURLEnv != "HASCHED_URL" {
		t.Errorf("init container env %+v, want only %s=<the app URL>", ic.Env, FetchURLEnv)
	}
	for _, a := range append(ic.Command, ic.Args...) {
		if strings.Contains(a, "s3cret") || strings.Contains(a, "t0ken") {
			t.Errorf("the URL's credentials are on the init container's command line: %q", a)
		}
	}
	if len(ic.VolumeMounts) != 1 || ic.VolumeMounts[0].Name != "task" || ic.VolumeMounts[0].MountPath != taskDir ||
		fmt.Sprint(ic.VolumeMounts) != fmt.Sprint(c.VolumeMounts) {
		t.Errorf("init container mounts %+v, want the task's emptyDir at %s as the task's container %+v", ic.VolumeMounts, taskDir, c.VolumeMounts)
	}
	for _, m := range ic.VolumeMounts {
		if strings.Contains(m.MountPath, "serviceaccount") {
			t.Errorf("init container mounts %s", m.MountPath)
		}
	}
	// Requests are the task's; the memory limit is at least what hasched
	// itself needs (the task asks for 64 MB), never below the task's.
	if r := ic.Resources.Requests; len(r) != 2 || !r.Cpu().Equal(*c.Resources.Requests.Cpu()) || !r.Memory().Equal(*c.Resources.Requests.Memory()) {
		t.Errorf("init container requests %v, want the task's %v", r, c.Resources.Requests)
	}
	if l := ic.Resources.Limits; len(l) != 2 || !l.Cpu().Equal(*c.Resources.Limits.Cpu()) || l.Memory().Value() != minFetchMemory {
		t.Errorf("init container limits %v, want the task's CPU and %d bytes", l, minFetchMemory)
	}
	big := tk
	big.ID, big.MemoryMB = "pkg@-@1@-@1@-@0", 512
	if m := ex.podFor(big).Spec.InitContainers[0].Resources.Limits.Memory().Value(); m != 512<<20 {
		t.Errorf("a 512 MB task's fetch container is limited to %d bytes, want the task's", m)
	}
	if ic.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
		t.Errorf("termination message policy %q: a failed fetch's reason would not reach the status", ic.TerminationMessagePolicy)
	}
	if c.Image != testImage || c.WorkingDir != appDir || appDir != "/hasched/task/app" {
		t.Errorf("task container in %s, working dir %s; want %s, %s", c.Image, c.WorkingDir, testImage, appDir)
	}
	for _, v := range c.Env {
		if v.Name == "HASCHED_TASK_DIR" && v.Value != taskDir {
			t.Errorf("HASCHED_TASK_DIR %q, want %q", v.Value, taskDir)
		}
		if strings.Contains(v.Value, "s3cret") {
			t.Errorf("the task's container gets the app URL in %s", v.Name)
		}
	}

	tk.AppChecksum = ""
	if args := ex.podFor(tk).Spec.InitContainers[0].Args; slices.Contains(args, "--checksum") {
		t.Errorf("no checksum, yet args %q", args)
	}
	plain := testTask("plain@-@1@-@0@-@0", "exit 0")
	if p := ex.podFor(plain); len(p.Spec.InitContainers) != 0 || p.Spec.Containers[0].WorkingDir != taskDir {
		t.Errorf("a task without a package: %d init containers, working dir %s", len(p.Spec.InitContainers), p.Spec.Containers[0].WorkingDir)
	}

	// Launched, it runs (the fake kubelet skips the fetch).
	if err := ex.Launch(t.Context(), []executor.Task{tk}); err != nil {
		t.Fatal(err)
	}
	sts.waitState(t, tk.ID, executor.StateFinished)
	if got, ok := getPod(t, w, tk.ID); !ok || len(got.Spec.InitContainers) != 1 {
		t.Errorf("the created Pod has no fetch container")
	}
}

func TestConfigIsValidated(t *testing.T) {
	w := newWorld(t)
	good := w.config(t)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"no client":          func(c *Config) { c.Client = nil },
		"no namespace":       func(c *Config) { c.Namespace = "" },
		"bad namespace":      func(c *Config) { c.Namespace = "Jobs_1" },
		"bad cluster label":  func(c *Config) { c.Cluster = "a b" },
		"bad image":          func(c *Config) { c.Image = "a\nb" },
		"bad fetch image":    func(c *Config) { c.FetchImage = "a b" },
		"negative grace":     func(c *Config) { c.KillGrace = -time.Second },
		"grace not seconds":  func(c *Config) { c.KillGrace = 1500 * time.Millisecond },
		"grace too long":     func(c *Config) { c.KillGrace = 2 * time.Hour },
		"retention too long": func(c *Config) { c.Retention = 365 * 24 * time.Hour },
	} {
		c := good
		mod(&c)
		if _, err := NewFactory(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
	c := good
	c.Cluster, c.KillGrace, c.Retention = "", 0, 0
	c, err := c.withDefaults()
	if err != nil || c.Cluster != DefaultLabelValue || c.KillGrace != DefaultKillGrace || c.Retention != DefaultRetention || c.GCInterval != time.Minute || c.PullTimeout != DefaultPullTimeout {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	f, _ := NewFactory(good)
	if _, err := f(t.Context(), executor.Term{Token: 1}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("a term without a state store: %v, want ErrInvalidConfig", err)
	}
}
