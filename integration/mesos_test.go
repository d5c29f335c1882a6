package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/integration/mesosfake"
)

// End-to-end scheduler failover on Mesos: two `hasched serve --executor
// mesos` processes on one coordination container, a fake Mesos master
// (integration/mesosfake) in the test process whose tasks run until the
// test finishes them. The leader registers the framework and launches a
// DAEMON task and a long TRANSIENT task; it is killed -9; the standby must
// lead, subscribe with the stored framework id, reconcile before it
// launches anything, and adopt both tasks instead of launching them again.

const (
	mesosApp       = "mesosapp"
	mesosDaemonJob = "daemon"
	mesosLongJob   = "long"
	// mesosWait bounds every wait on the fake master or the API after
	// the takeover.
	mesosWait = 30 * time.Second
)

func TestMesosFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs hasched processes against containers (make test runs it)")
	}
	for _, b := range haBackends {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			mesosFailover(t, b, addr)
		})
	}
}

func mesosFailover(t *testing.T, b haBackend, addr string) {
	began := time.Now()
	// The master first, so that its cleanup runs after the processes are
	// killed.
	m, err := mesosfake.New(mesosfake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	for i := range 2 {
		if _, err := m.AddAgent(mesosfake.AgentSpec{Hostname: fmt.Sprintf("agent%d", i+1), CPUs: 4, MemMB: 4096}); err != nil {
			t.Fatal(err)
		}
	}

	url := b.url(addr, haNamespace("mesos"))
	c := haPrepareCluster(t, url, 2)
	c.executorArgs = []string{"--executor", "mesos", "--mesos-master", m.URL()}
	c.startAll()
	leader := c.waitLeader(time.Minute)

	// The first leader registers a new framework.
	fakeWait(t, m, "the leader registers a framework", time.Minute, func() error {
		fws := m.Frameworks()
		if len(fws) != 1 || !fws[0].Connected {
			return fmt.Errorf("frameworks %+v: want one, connected", fwSummary(fws))
		}
		return nil
	})
	fid := m.Frameworks()[0].ID

	// An app, a DAEMON job and a TRANSIENT job whose cron fires twelve
	// hours from now (so never during the test), triggered once.
	c.write("/api/app", map[string]any{
		"appName": mesosApp, "bootstrapScript": "true", "cpuCount": 0.1, "memoryMB": 32,
	})
	c.write("/api/job/register", map[string]any{
		"jobName":            mesosDaemonJob,
		"appName":            mesosApp,
		"shardingTotalCount": 1,
		"jobExecutionType":   "DAEMON",
		"failover":           true,
		"cpuCount":           0.5,
		"memoryMB":           64,
		"scriptCommandLine":  "sleep 3600",
	})
	c.write("/api/job/register", map[string]any{
		"jobName":            mesosLongJob,
		"appName":            mesosApp,
		"cron":               fmt.Sprintf("0 0 %d * * ?", (time.Now().UTC().Hour()+12)%24),
		"timeZone":           "UTC",
		"shardingTotalCount": 1,
		"jobExecutionType":   "TRANSIENT",
		"misfire":            false,
		"failover":           true,
		"concurrencyPolicy":  "FORBID",
		"cpuCount":           0.5,
		"memoryMB":           64,
		"scriptCommandLine":  "sleep 3600",
	})
	c.write("/api/job/trigger", mesosLongJob) // the body is the name

	// Both tasks RUNNING on the fake, every update acknowledged, and
	// RUNNING in the store.
	var daemonID, longID string
	fakeWait(t, m, "both tasks run on the fake, updates acknowledged", time.Minute, func() error {
		d, l := jobTasks(m, mesosDaemonJob), jobTasks(m, mesosLongJob)
		if len(d) != 1 || len(l) != 1 {
			return fmt.Errorf("%d %s and %d %s tasks, want 1 each", len(d), mesosDaemonJob, len(l), mesosLongJob)
		}
		for _, tr := range []mesosfake.TaskRecord{d[0], l[0]} {
			if tr.State != mesos.TASK_RUNNING || tr.PendingUpdates != 0 {
				return fmt.Errorf("task %s: %v, %d updates unacknowledged", tr.ID, tr.State, tr.PendingUpdates)
			}
		}
		daemonID, longID = d[0].ID, l[0].ID
		return nil
	})
	waitRunningList(t, c, leader, []string{daemonID, longID}, nil)

	// The framework id: one framework on the fake, the same in the store.
	if fws := m.Frameworks(); len(fws) != 1 || fws[0].ID != fid {
		t.Fatalf("frameworks %v, want only %s", fwSummary(fws), fid)
	}
	if stored := storedFrameworkID(t, url); stored != fid {
		t.Fatalf("/ha/framework_id holds %q; the fake registered %q", stored, fid)
	}
	t.Logf("%s: framework %s; tasks %s and %s run (setup took %v)", b.name, fid, daemonID, longID,
		time.Since(began).Round(time.Millisecond))

	// kill -9 the leader.
	mark := len(m.Calls())
	standby := c.others(leader)
	killed := time.Now()
	leader.kill9()
	next, took := c.firstLeader(standby, killed, b.sessionTimeout+time.Minute)
	t.Logf("%s: %s killed; %s leads %v later", b.name, leader.name, next.name, took.Round(time.Millisecond))

	// It subscribes with the same framework id; no new framework.
	var stream string
	fakeWait(t, m, next.name+" subscribes with framework "+fid, mesosWait, func() error {
		fr, ok := m.Framework(fid)
		if !ok || fr.Subscriptions < 2 || !fr.Connected {
			return fmt.Errorf("framework %s: found %v, %d subscriptions, connected %v", fid, ok, fr.Subscriptions, fr.Connected)
		}
		stream = fr.StreamID
		return nil
	})
	subscribed := time.Since(killed)
	if fws := m.Frameworks(); len(fws) != 1 {
		t.Errorf("after the failover the fake knows frameworks %v; want only %s", fwSummary(fws), fid)
	}
	var subs int
	for _, cr := range m.Calls()[mark:] {
		if cr.Type != scheduler.Call_SUBSCRIBE {
			continue
		}
		subs++
		if id := cr.Call.GetSubscribe().GetFrameworkInfo().GetID().GetValue(); id != fid || cr.FrameworkID != fid {
			t.Errorf("SUBSCRIBE after the failover with framework id %q (call: %q), want %q", id, cr.FrameworkID, fid)
		}
	}
	if subs == 0 {
		t.Errorf("the fake recorded no SUBSCRIBE after the failover")
	}

	// It reconciles, explicitly for both tasks, before any launch.
	fakeWait(t, m, next.name+" reconciles both tasks", mesosWait, func() error {
		got := reconciled(m.Calls()[mark:], stream)
		for _, id := range []string{daemonID, longID} {
			if !got[id] {
				return fmt.Errorf("reconciled %v, want %s among them", keys(got), id)
			}
		}
		return nil
	})
	reconciledAt := time.Since(killed)
	firstReconcile, firstLaunch := -1, -1
	for i, cr := range m.Calls()[mark:] {
		if cr.Type == scheduler.Call_RECONCILE && cr.StreamID == stream && firstReconcile < 0 {
			firstReconcile = i
		}
		if launches(cr) > 0 && firstLaunch < 0 {
			firstLaunch = i
		}
	}
	if firstLaunch >= 0 && (firstReconcile < 0 || firstLaunch < firstReconcile) {
		t.Errorf("after the failover a launch (call %d) came before the first RECONCILE (call %d)", firstLaunch, firstReconcile)
	}

	// Both tasks adopted: listed as running by the new leader, which
	// reports itself connected under the same id, and never launched again.
	waitRunningList(t, c, next, []string{daemonID, longID}, nil)
	haEventually(t, next.name+" reports the framework connected", mesosWait, func() error {
		var st struct {
			Leader       bool              `json:"leader"`
			ExecutorInfo map[string]string `json:"executorInfo"`
		}
		if err := c.get(next, "/api/leader", 2*time.Second, &st); err != nil {
			return err
		}
		if !st.Leader || st.ExecutorInfo["framework_id"] != fid || st.ExecutorInfo["connected"] != "yes" {
			return fmt.Errorf("leader %v, executor %v", st.Leader, st.ExecutorInfo)
		}
		return nil
	})
	// Give a relaunch, if there were to be one, the time to happen.
	time.Sleep(3 * time.Second)
	checkAdopted(t, m, daemonID, longID)
	if firstLaunch >= 0 {
		t.Errorf("after the failover the fake was sent a launch (call %d after the kill)", firstLaunch)
	}
	t.Logf("%s: after the kill: subscribed %v, reconciled %v", b.name, subscribed.Round(time.Millisecond), reconciledAt.Round(time.Millisecond))

	// The TRANSIENT task ends; the new leader removes it from running and
	// launches nothing.
	finished := time.Now()
	if err := m.FinishTask(longID); err != nil {
		t.Fatalf("FinishTask %s: %v", longID, err)
	}
	waitRunningList(t, c, next, []string{daemonID}, []string{longID})
	fakeWait(t, m, "the finish of "+longID+" is acknowledged", mesosWait, func() error {
		tr, _ := m.Task(longID)
		if tr.State != mesos.TASK_FINISHED || tr.Known {
			return fmt.Errorf("task %s: %v, known %v", longID, tr.State, tr.Known)
		}
		return nil
	})
	t.Logf("%s: %s finished; gone from running %v later", b.name, longID, time.Since(finished).Round(time.Millisecond))
	var failover []struct {
		ID string `json:"taskId"`
	}
	if err := c.get(next, "/api/job/tasks/failover", 10*time.Second, &failover); err != nil {
		t.Error(err)
	} else if len(failover) != 0 {
		t.Errorf("failover queue %v, want empty", failover)
	}
	checkAdopted(t, m, daemonID, longID)
	for _, cr := range m.Calls()[mark:] {
		if n := launches(cr); n > 0 {
			t.Errorf("after the failover the fake was sent a launch of %d tasks", n)
		}
	}
	c.expectAlive(next)
	t.Logf("%s: done in %v", b.name, time.Since(began).Round(time.Millisecond))
}

// fakeWait waits until f returns nil, re-checking on every change of the
// fake master's state (and every second, for the state of the processes).
func fakeWait(t *testing.T, m *mesosfake.Master, what string, timeout time.Duration, f func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		if last = f(); last == nil {
			return
		}
		step, stop := context.WithTimeout(ctx, time.Second)
		_ = m.WaitUntil(step, func() bool { return f() == nil })
		stop()
		if ctx.Err() != nil {
			if last = f(); last == nil {
				return
			}
			t.Fatalf("%s: not within %v: %v", what, timeout, last)
		}
	}
}

// jobTasks are the fake's tasks of a job (every launch).
func jobTasks(m *mesosfake.Master, job string) []mesosfake.TaskRecord {
	var out []mesosfake.TaskRecord
	for _, tr := range m.Tasks() {
		if strings.HasPrefix(tr.ID, job+"@-@") {
			out = append(out, tr)
		}
	}
	return out
}

// checkAdopted: each task was launched once, and its job has no other task.
func checkAdopted(t *testing.T, m *mesosfake.Master, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if n := m.Launches(id); n != 1 {
			t.Errorf("task %s launched %d times, want 1", id, n)
		}
	}
	for _, job := range []string{mesosDaemonJob, mesosLongJob} {
		if trs := jobTasks(m, job); len(trs) != 1 {
			var got []string
			for _, tr := range trs {
				got = append(got, fmt.Sprintf("%s (%v)", tr.ID, tr.State))
			}
			t.Errorf("the fake has %d tasks of %s, want 1: %v", len(trs), job, got)
		}
	}
}

// waitRunningList waits until p's /api/job/tasks/running lists every one of
// want as RUNNING and none of gone.
func waitRunningList(t *testing.T, c *haCluster, p *haProc, want, gone []string) {
	t.Helper()
	haEventually(t, p.name+" lists the running tasks", mesosWait, func() error {
		var running []struct {
			ID    string `json:"taskId"`
			State string `json:"state"`
		}
		if err := c.get(p, "/api/job/tasks/running", 5*time.Second, &running); err != nil {
			return err
		}
		states := map[string]string{}
		for _, r := range running {
			states[r.ID] = r.State
		}
		for _, id := range want {
			if states[id] != "RUNNING" {
				return fmt.Errorf("running tasks %v: want %s RUNNING", states, id)
			}
		}
		for _, id := range gone {
			if _, ok := states[id]; ok {
				return fmt.Errorf("running tasks %v: want no %s", states, id)
			}
		}
		return nil
	})
}

// storedFrameworkID reads /ha/framework_id through a session of its own.
func storedFrameworkID(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	co, err := coord.Open(ctx, url)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	defer co.Close()
	n, err := co.Get(ctx, "/ha/framework_id")
	if err != nil {
		t.Fatalf("read /ha/framework_id: %v", err)
	}
	return strings.TrimSpace(string(n.Value))
}

// reconciled is the set of task ids named by explicit RECONCILE calls on
// stream.
func reconciled(calls []mesosfake.CallRecord, stream string) map[string]bool {
	out := map[string]bool{}
	for _, cr := range calls {
		if cr.Type != scheduler.Call_RECONCILE || cr.StreamID != stream {
			continue
		}
		for _, rt := range cr.Call.GetReconcile().GetTasks() {
			out[rt.TaskID.Value] = true
		}
	}
	return out
}

// launches counts the tasks an ACCEPT call launches.
func launches(cr mesosfake.CallRecord) int {
	if cr.Type != scheduler.Call_ACCEPT {
		return 0
	}
	n := 0
	for _, op := range cr.Call.GetAccept().GetOperations() {
		if op.GetType() == mesos.Offer_Operation_LAUNCH {
			n += len(op.GetLaunch().GetTaskInfos())
		}
	}
	return n
}

func fwSummary(fws []mesosfake.FrameworkRecord) []string {
	var out []string
	for _, fw := range fws {
		out = append(out, fmt.Sprintf("%s(connected=%v removed=%v subs=%d)", fw.ID, fw.Connected, fw.Removed, fw.Subscriptions))
	}
	return out
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
