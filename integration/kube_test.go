package integration

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hasched/hasched/internal/wait"
)

// `--executor kubernetes` against a real API server (kuberig_test.go): on
// each coordination backend, hasched processes on this machine run their
// tasks as Pods of a control plane in containers, with the rights
// deploy/kubernetes/rbac.yaml gives them and nothing more. The scenarios
// are the seed's failover guarantee (kill -9 the leader while its Pods
// run: the next leader adopts them and creates none twice), a deposed
// leader that wakes up, the API server restarting, a node lost, a Pod
// evicted, and an image that cannot be pulled. The tests see every Pod
// created (a watch of their own, as cluster-admin), not what hasched says
// of them.

// kubeKillGrace is the tasks' grace on delete in these tests.
const kubeKillGrace = "1s"

// kubeFetchImage is the image of app packages' init containers (kwok
// runs none: the name is enough).
const kubeFetchImage = "hasched.test/hasched:1"

// kubePackageSecret is in an app package's URL: it must reach the Pod's
// init container and no log of hasched's.
const kubePackageSecret = "pkg-t0ken-1a2b3c"

func TestKubernetes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs a Kubernetes control plane and hasched processes in containers (make test runs it)")
	}
	for _, b := range haBackends {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			rig := newKubeRig(t, "kwok-a", "kwok-b")
			t.Run("ManifestsAreValid", func(t *testing.T) { kubeManifestsValid(t, rig) })
			t.Run("LeaderKilledWhilePodsRun", func(t *testing.T) { kubeLeaderKilled(t, b, addr, rig) })
			t.Run("DeposedLeaderWakes", func(t *testing.T) { kubeDeposedLeaderWakes(t, b, addr, rig) })
			t.Run("APIServerRestarted", func(t *testing.T) { kubeAPIServerRestarted(t, b, addr, rig) })
			t.Run("NodeEvictionPull", func(t *testing.T) { kubeNodeEvictionPull(t, b, addr, rig) })
		})
	}
}

// kubeCluster starts n hasched processes on backend b whose tasks run in
// namespace ns of rig, with hasched's service account there.
func kubeCluster(t *testing.T, b haBackend, addr string, rig *kubeRig, ns string, n int) *haCluster {
	t.Helper()
	kubeconfig := rig.namespace(ns)
	c := haPrepareCluster(t, b.url(addr, haNamespace("kube-"+ns)), n)
	c.executorArgs = []string{"--executor", "kubernetes",
		"--kube-config", kubeconfig,
		"--kube-namespace", ns,
		"--kube-image", kubeTaskImage,
		"--kube-fetch-image", kubeFetchImage,
		"--kube-kill-grace", kubeKillGrace,
		"--kube-pull-timeout", "3s",
		// Long enough that a new leader finds every end its predecessor
		// had not recorded; short enough that the garbage collection of
		// ended Pods runs during the tests.
		"--kube-retention", "20s",
	}
	c.startAll()
	return c
}

// registerKubeTick registers a TRANSIENT job firing every second with
// haShards shards, whose Pods run for three seconds.
func (c *haCluster) registerKubeTick(name string) {
	c.t.Helper()
	c.write("/api/app", map[string]any{"appName": "kube-" + name, "bootstrapScript": "true", "image": kubeTaskImage})
	c.write("/api/job/register", map[string]any{
		"jobName":            name,
		"appName":            "kube-" + name,
		"cron":               "* * * * * ?",
		"shardingTotalCount": haShards,
		"jobExecutionType":   "TRANSIENT",
		"misfire":            true,
		"failover":           true,
		"concurrencyPolicy":  "ALLOW",
		"cpuCount":           0.1,
		"memoryMB":           16,
		"scriptCommandLine":  "sleep 3",
	})
}

// kubeWaitPods waits until every shard of job has at least n Pods of fires at
// or after fromMs.
func kubeWaitPods(t testing.TB, rec *kubeRecorder, job string, fromMs int64, n int, timeout time.Duration) {
	t.Helper()
	haWaitRuns(t, "Pods of "+job, func() ([]haFire, error) { return rec.fires(job), nil }, fromMs, n, timeout)
}

// kubeCheckExactlyOnce waits until every fire of job from its first up to
// cutoffMs has a Pod on every shard, and fails the test if one has two (a
// second Pod of a fire and shard is a second run), or if a Pod name was
// ever created twice.
func kubeCheckExactlyOnce(t testing.TB, rec *kubeRecorder, job string, cutoffMs int64, timeout time.Duration) {
	t.Helper()
	haCheckExactlyOnce(t, func() ([]haFire, error) { return rec.fires(job), nil }, cutoffMs, timeout)
	if r := rec.reused(); len(r) > 0 {
		t.Errorf("Pod names created more than once: %s", strings.Join(r, ", "))
	}
}

// kubeExecution is a run as GET /api/job/{job}/executions gives it.
type kubeExecution struct {
	TaskID   string `json:"taskId"`
	Shard    int    `json:"shardingItem"`
	Attempt  int    `json:"attempt"`
	Host     string `json:"hostname"`
	State    string `json:"state"`
	ExitCode int    `json:"exitCode"`
	Message  string `json:"message"`
	Outcome  string `json:"outcome"`
}

// executions is job's run history, read from p.
func (c *haCluster) executions(p *haProc, job string) ([]kubeExecution, error) {
	var out []kubeExecution
	err := c.get(p, "/api/job/"+url.PathEscape(job)+"/executions?limit=1000", 10*time.Second, &out)
	return out, err
}

// kubeManifestsValid: the README's manifests are what the API server
// accepts, field for field (strict validation, server-side dry run), and
// the Role is namespaced with no more than Pods.
func kubeManifestsValid(t *testing.T, rig *kubeRig) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := "manifests"
	if _, err := rig.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}
	var kinds []string
	for _, file := range []string{"rbac.yaml", "deployment.yaml"} {
		for _, obj := range kubeManifest(t, file) {
			var err error
			switch o := obj.(type) {
			case *corev1.ServiceAccount:
				_, err = rig.admin.CoreV1().ServiceAccounts(ns).Create(ctx, o, dry)
			case *rbacv1.Role:
				for _, rule := range o.Rules {
					if strings.Join(rule.Resources, ",") != "pods" {
						t.Errorf("the Role grants %v: hasched needs Pods only", rule.Resources)
					}
				}
				_, err = rig.admin.RbacV1().Roles(ns).Create(ctx, o, dry)
			case *rbacv1.RoleBinding:
				_, err = rig.admin.RbacV1().RoleBindings(ns).Create(ctx, o, dry)
			case *appsv1.Deployment:
				if o.Spec.Replicas == nil || *o.Spec.Replicas != 3 {
					t.Errorf("the Deployment has %v replicas, want 3", o.Spec.Replicas)
				}
				_, err = rig.admin.AppsV1().Deployments(ns).Create(ctx, o, dry)
			case *corev1.Service:
				_, err = rig.admin.CoreV1().Services(ns).Create(ctx, o, dry)
			case *policyv1.PodDisruptionBudget:
				_, err = rig.admin.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, o, dry)
			default:
				err = fmt.Errorf("a %T the test does not know", obj)
			}
			if err != nil {
				t.Errorf("%s: %T: %v", file, obj, err)
			}
			kinds = append(kinds, fmt.Sprintf("%T", obj))
		}
	}
	t.Logf("the API server accepts %s", strings.Join(kinds, ", "))
}

// kubeLeaderKilled is the seed's scenario: kill -9 the leader while its
// Pods run. A standby leads, lists the Pods, adopts the running ones
// (never creates a second), and records their ends; every fire has exactly
// one Pod per shard.
func kubeLeaderKilled(t *testing.T, b haBackend, addr string, rig *kubeRig) {
	ns := "adopt-" + b.name
	rec := rig.record(ns)
	c := kubeCluster(t, b, addr, rig, ns, 3)
	leader := c.waitLeader(time.Minute)
	c.registerKubeTick("tick")
	kubeWaitPods(t, rec, "tick", 0, 3, 2*time.Minute)

	// The Pods running when the leader dies: the next leader must adopt
	// them, and record how they ended.
	var running []kubePod
	haEventually(t, "Pods running", 30*time.Second, func() error {
		running = running[:0]
		for _, p := range rec.of("tick") {
			if p.Phase == corev1.PodRunning && !p.Deleted {
				running = append(running, p)
			}
		}
		if len(running) < haShards {
			return fmt.Errorf("%d Pods running", len(running))
		}
		return nil
	})
	survivors := c.others(leader)
	killed := time.Now()
	leader.kill9()
	next, took := c.firstLeader(survivors, killed, b.sessionTimeout+time.Minute)
	t.Logf("%s: kill -9 of the leader %s with %d Pods running: %s leads %v later",
		b.name, leader.name, len(running), next.name, took.Round(time.Millisecond))
	c.waitAgreed(next, survivors, 30*time.Second)

	cutoff := haFloorSecond(time.Now().Add(3 * time.Second))
	kubeCheckExactlyOnce(t, rec, "tick", cutoff, 2*time.Minute)

	// Each Pod running at the kill ended FINISHED in the run history
	// (the ends the new leader saw on Pods it adopted), as one run.
	haEventually(t, "the adopted Pods' runs recorded", time.Minute, func() error {
		exs, err := c.executions(next, "tick")
		if err != nil {
			return err
		}
		byTask := map[string][]kubeExecution{}
		for _, e := range exs {
			byTask[e.TaskID] = append(byTask[e.TaskID], e)
		}
		for _, p := range running {
			rs := byTask[p.TaskID]
			if len(rs) != 1 {
				return fmt.Errorf("task %s (Pod %s) has %d runs in the history", p.TaskID, p.Name, len(rs))
			}
			if rs[0].State != "FINISHED" || rs[0].Host != p.Node {
				return wait.Stop(fmt.Errorf("task %s (Pod %s on %s) was recorded %+v", p.TaskID, p.Name, p.Node, rs[0]))
			}
		}
		return nil
	})
	c.expectAlive(survivors...)
}

// kubeDeposedLeaderWakes: SIGSTOP the leader past its session; a standby
// leads. When the old one wakes up, it creates no Pod (its term's
// creates are fenced) and every fire still has exactly one Pod per shard.
func kubeDeposedLeaderWakes(t *testing.T, b haBackend, addr string, rig *kubeRig) {
	ns := "deposed-" + b.name
	rec := rig.record(ns)
	c := kubeCluster(t, b, addr, rig, ns, 3)
	leader := c.waitLeader(time.Minute)
	st, err := c.status(leader, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	oldTerm := fmt.Sprint(st.Term)
	c.registerKubeTick("tick")
	kubeWaitPods(t, rec, "tick", 0, 2, 2*time.Minute)

	survivors := c.others(leader)
	paused := time.Now()
	leader.pause(true)
	next, took := c.firstLeader(survivors, paused, b.sessionTimeout+time.Minute)
	t.Logf("%s: the leader %s (term %s) paused: %s leads %v later", b.name, leader.name, oldTerm, next.name, took.Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	resumed := time.Now()
	leader.pause(false)
	haEventually(t, leader.name+" follows "+next.name, time.Minute, func() error {
		st, err := c.status(leader, 2*time.Second)
		if err != nil {
			return err
		}
		if st.Leader || st.LeaderAddress != next.addr {
			return fmt.Errorf("it says leader=%v, following %q", st.Leader, st.LeaderAddress)
		}
		return nil
	})
	c.waitAgreed(next, c.procs, 30*time.Second)
	cutoff := haFloorSecond(time.Now().Add(3 * time.Second))
	kubeCheckExactlyOnce(t, rec, "tick", cutoff, 2*time.Minute)
	// A create already on the wire when the process stopped may land
	// when it resumes (the next leader adopts such a Pod by its name);
	// none may be sent after it woke up.
	var ofOldTerm int
	for _, p := range rec.of("tick") {
		if p.Term != oldTerm {
			continue
		}
		ofOldTerm++
		if p.Created.After(resumed.Add(time.Second)) {
			t.Errorf("Pod %s of the deposed term %s was created %v after it resumed",
				p.Name, oldTerm, p.Created.Sub(resumed).Round(time.Millisecond))
		}
	}
	if ofOldTerm == 0 {
		t.Errorf("no Pod carries the deposed term %s: its Pods' term annotation is not the term's token", oldTerm)
	}
	c.expectAlive(c.procs...)
}

// kubeAPIServerRestarted: the API server stops for a few seconds while the
// job fires, and starts again. hasched keeps leading, its watch resumes,
// the fires due meanwhile run late, and each has exactly one Pod per shard.
func kubeAPIServerRestarted(t *testing.T, b haBackend, addr string, rig *kubeRig) {
	ns := "restart-" + b.name
	rec := rig.record(ns)
	c := kubeCluster(t, b, addr, rig, ns, 3)
	c.waitLeader(time.Minute)
	c.registerKubeTick("tick")
	kubeWaitPods(t, rec, "tick", 0, 2, 2*time.Minute)

	stopped := time.Now()
	rig.restartAPIServer(5 * time.Second)
	t.Logf("%s: the API server was down for %v", b.name, time.Since(stopped).Round(time.Millisecond))
	c.waitLeader(time.Minute)
	back := haFloorSecond(time.Now())
	kubeWaitPods(t, rec, "tick", back, 2, 2*time.Minute)
	cutoff := haFloorSecond(time.Now().Add(3 * time.Second))
	kubeCheckExactlyOnce(t, rec, "tick", cutoff, 2*time.Minute)
	c.expectAlive(c.procs...)
}

// kubeNodeEvictionPull: what nodes do to Pods, and app packages, on one
// hasched process.
//   - A node is lost (its Node removed, its Pods deleted as the pod
//     garbage collector would): the DAEMON shards that ran there run again elsewhere, the
//     others keep their Pods.
//   - A Pod is evicted (the Eviction API): its task is LOST and fails over
//     as a new attempt of the same fire.
//   - An image cannot be pulled: the task ends FAILED after the pull
//     timeout and its Pod is removed.
//   - An app package (appURL): the Pod has its fetch step, the URL's token
//     in the step's environment only, and runs; no log holds the token.
func kubeNodeEvictionPull(t *testing.T, b haBackend, addr string, rig *kubeRig) {
	ns := "nodes-" + b.name
	rec := rig.record(ns)
	c := kubeCluster(t, b, addr, rig, ns, 1)
	p := c.waitLeader(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	c.write("/api/app", map[string]any{"appName": "kube", "bootstrapScript": "true", "image": kubeTaskImage})
	c.write("/api/app", map[string]any{"appName": "kube-unpullable", "bootstrapScript": "true", "image": kubeUnpullableImage})
	never := "0 0 0 1 1 ? 2099"
	c.write("/api/job/register", map[string]any{
		"jobName": "daemon", "appName": "kube", "cron": never, "shardingTotalCount": 4,
		"jobExecutionType": "DAEMON", "failover": true, "cpuCount": 0.1, "memoryMB": 16,
		"scriptCommandLine": "serve-forever",
	})
	c.write("/api/job/register", map[string]any{
		"jobName": "evicted", "appName": "kube", "cron": never, "shardingTotalCount": 1,
		"jobExecutionType": "TRANSIENT", "failover": true, "cpuCount": 0.1, "memoryMB": 16,
		"scriptCommandLine": "sleep 600",
	})
	c.write("/api/job/register", map[string]any{
		"jobName": "unpullable", "appName": "kube-unpullable", "cron": never, "shardingTotalCount": 1,
		"jobExecutionType": "TRANSIENT", "failover": true, "cpuCount": 0.1, "memoryMB": 16,
		"scriptCommandLine": "sleep 1",
	})
	c.write("/api/app", map[string]any{"appName": "kube-package", "bootstrapScript": "bin/start.sh",
		"appURL": "https://packages.example/app.tar.gz?token=" + kubePackageSecret})
	c.write("/api/job/register", map[string]any{
		"jobName": "package", "appName": "kube-package", "cron": never, "shardingTotalCount": 1,
		"jobExecutionType": "TRANSIENT", "cpuCount": 0.1, "memoryMB": 16,
		"scriptCommandLine": "sleep 1",
	})
	c.write("/api/job/trigger", "evicted")
	c.write("/api/job/trigger", "unpullable")
	c.write("/api/job/trigger", "package")

	// Every DAEMON shard runs, on one node or the other.
	running := func(job string) map[int]kubePod {
		out := map[int]kubePod{}
		for _, q := range rec.of(job) {
			if q.Phase == corev1.PodRunning && !q.Deleted {
				out[q.Shard] = q
			}
		}
		return out
	}
	var before map[int]kubePod
	haEventually(t, "the daemon's 4 shards run", 2*time.Minute, func() error {
		before = running("daemon")
		if len(before) < 4 {
			return fmt.Errorf("%d shards run", len(before))
		}
		return nil
	})

	// Evicted: the task fails over as a new attempt of its fire.
	var evicted kubePod
	haEventually(t, "the evicted job's Pod runs", time.Minute, func() error {
		r := running("evicted")
		if len(r) == 0 {
			return errors.New("not running yet")
		}
		evicted = r[0]
		return nil
	})
	if err := rig.admin.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{
		ObjectMeta: metav1.ObjectMeta{Name: evicted.Name, Namespace: ns}}); err != nil {
		t.Fatalf("evict %s: %v", evicted.Name, err)
	}
	haEventually(t, "the evicted task runs again as its next attempt", time.Minute, func() error {
		r, ok := running("evicted")[0]
		if !ok || r.UID == evicted.UID {
			return errors.New("no new Pod runs")
		}
		if r.FireMs != evicted.FireMs || r.Attempt <= evicted.Attempt || r.TaskID == evicted.TaskID {
			return wait.Stop(fmt.Errorf("the new Pod %+v is not the next attempt of %+v", r, evicted))
		}
		return nil
	})
	haEventually(t, "the eviction recorded as LOST, failed over", time.Minute, func() error {
		return kubeHasRun(c, p, "evicted", evicted.TaskID, "LOST", "failover")
	})

	// The image that cannot be pulled: FAILED after the pull timeout, its
	// Pod removed, no retry (the job asks for none).
	haEventually(t, "the unpullable task FAILED", time.Minute, func() error {
		return kubeHasRun(c, p, "unpullable", "", "FAILED", "")
	})
	haEventually(t, "the unpullable task's Pod removed", time.Minute, func() error {
		for _, q := range rec.of("unpullable") {
			if !q.Deleted {
				return fmt.Errorf("Pod %s is still there (%s)", q.Name, q.Phase)
			}
		}
		return nil
	})
	if n := len(rec.of("unpullable")); n != 1 {
		t.Errorf("the unpullable task had %d Pods, want 1", n)
	}

	// An app package: the API server takes the Pod with its fetch step
	// (the URL in its environment, not on its command line), and the task
	// runs after it in the default image, in the package's directory.
	haEventually(t, "the app package's task FINISHED", time.Minute, func() error {
		return kubeHasRun(c, p, "package", "", "FINISHED", "")
	})
	pkgPods := rec.of("package")
	if len(pkgPods) != 1 {
		t.Fatalf("the package's task had %d Pods, want 1", len(pkgPods))
	}
	if pod, err := rig.admin.CoreV1().Pods(ns).Get(ctx, pkgPods[0].Name, metav1.GetOptions{}); err != nil {
		t.Errorf("the package task's Pod: %v", err)
	} else if ics := pod.Spec.InitContainers; len(ics) != 1 || ics[0].Image != kubeFetchImage ||
		len(ics[0].Env) != 1 || !strings.Contains(ics[0].Env[0].Value, kubePackageSecret) ||
		strings.Contains(strings.Join(append(ics[0].Command, ics[0].Args...), " "), kubePackageSecret) ||
		pod.Spec.Containers[0].Image != kubeTaskImage || pod.Spec.Containers[0].WorkingDir != "/hasched/task/app" {
		t.Errorf("the package task's Pod: init containers %+v, container %s in %s", ics, pod.Spec.Containers[0].Image, pod.Spec.Containers[0].WorkingDir)
	}
	if b, err := os.ReadFile(p.logPath); err != nil || strings.Contains(string(b), kubePackageSecret) {
		t.Errorf("hasched's log holds the package URL's token (read: %v)", err)
	}

	// The node lost: the shards that ran there run on the other node; the
	// others keep their Pods.
	lost := before[0].Node
	var moved, kept []int
	for s, q := range before {
		if q.Node == lost {
			moved = append(moved, s)
		} else {
			kept = append(kept, s)
		}
	}
	removed := time.Now()
	rig.removeNode(ctx, lost)
	haEventually(t, "the lost node's shards run elsewhere", 3*time.Minute, func() error {
		now := running("daemon")
		for _, s := range moved {
			q, ok := now[s]
			if !ok || q.UID == before[s].UID {
				return fmt.Errorf("shard %d does not run again yet", s)
			}
			if q.Node == lost {
				return wait.Stop(fmt.Errorf("shard %d runs again on the lost node %s", s, lost))
			}
		}
		for _, s := range kept {
			if q, ok := now[s]; !ok || q.UID != before[s].UID {
				return wait.Stop(fmt.Errorf("shard %d on the other node was moved: %+v, before %+v", s, q, before[s]))
			}
		}
		return nil
	})
	t.Logf("%s: node %s removed and its Pods deleted: shards %v ran again on the other node %v later; shards %v kept their Pods",
		b.name, lost, moved, time.Since(removed).Round(time.Second), kept)
	for _, s := range moved {
		if err := kubeHasRun(c, p, "daemon", before[s].TaskID, "LOST", "failover"); err != nil {
			t.Error(err)
		}
	}
	if r := rec.reused(); len(r) > 0 {
		t.Errorf("Pod names created more than once: %s", strings.Join(r, ", "))
	}
	c.expectAlive(c.procs...)
}

// kubeHasRun checks that job's history holds a run (of taskID, if given)
// that ended in state with outcome (if given).
func kubeHasRun(c *haCluster, p *haProc, job, taskID, state, outcome string) error {
	exs, err := c.executions(p, job)
	if err != nil {
		return err
	}
	for _, e := range exs {
		if (taskID == "" || e.TaskID == taskID) && e.State == state && (outcome == "" || e.Outcome == outcome) {
			return nil
		}
	}
	return fmt.Errorf("no run of %s %s ended %s/%s in %+v", job, taskID, state, outcome, exs)
}
