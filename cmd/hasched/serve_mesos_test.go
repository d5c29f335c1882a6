package main

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	mesosproto "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/hasched/hasched/integration/mesosfake"
	"github.com/hasched/hasched/scheduler/mesos"
)

// --executor mesos is refused without a usable master, before anything is
// bound or created; its flags come from the environment too.
func TestServeMesosRefusesBadConfiguration(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"no master", []string{"--executor", "mesos"}, nil, []string{"--executor mesos needs --mesos-master"}},
		{"master not a URL", []string{"--executor", "mesos", "--mesos-master", "master1:5050"}, nil, []string{"--executor mesos", "master1:5050"}},
		{"master bad scheme", []string{"--executor", "mesos", "--mesos-master", "ftp://m:5050"}, nil, []string{"--executor mesos", `unsupported scheme "ftp"`}},
		{"master with a path", []string{"--executor", "mesos", "--mesos-master", "http://m:5050/master"}, nil, []string{"--executor mesos", "scheme://host:port only"}},
		{"zk among http", []string{"--executor", "mesos", "--mesos-master", "http://m:5050,zk://z:2181/mesos"}, nil, []string{"--executor mesos"}},
		{"zk without path", []string{"--executor", "mesos", "--mesos-master", "zk://z1:2181,z2:2181"}, nil, []string{"--executor mesos", "names no path"}},
		{"zero failover timeout", []string{"--executor", "mesos", "--mesos-master", "http://m:5050", "--mesos-failover-timeout", "0s"}, nil, []string{"--mesos-failover-timeout"}},
		{"bad failover timeout", []string{"--executor", "mesos", "--mesos-master", "http://m:5050", "--mesos-failover-timeout", "a week"}, nil, []string{"--mesos-failover-timeout"}},
		{"bad role", []string{"--executor", "mesos", "--mesos-master", "http://m:5050", "--mesos-role", "-ops"}, nil, []string{"--executor mesos", "role"}},
		{"executor and master from env", nil, map[string]string{"HASCHED_EXECUTOR": "mesos", "HASCHED_MESOS_MASTER": "gopher://m"}, []string{"gopher"}},
		{"master from env missing", nil, map[string]string{"HASCHED_EXECUTOR": "mesos"}, []string{"--mesos-master"}},
		{"failover timeout from env", []string{"--executor", "mesos", "--mesos-master", "http://m:5050"}, map[string]string{"HASCHED_MESOS_FAILOVER_TIMEOUT": "soon"}, []string{"HASCHED_MESOS_FAILOVER_TIMEOUT", "--mesos-failover-timeout"}},
		{"role from env", []string{"--executor", "mesos", "--mesos-master", "http://m:5050"}, map[string]string{"HASCHED_MESOS_ROLE": ".."}, []string{"role"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			serveRefuses(t, c.env, c.args, c.want...)
		})
	}
}

func TestServeMesosConfig(t *testing.T) {
	base := serveFlags{coord: "zk://h:2181/ns", dataDir: "d", listen: "127.0.0.1:1", executor: "Mesos", logLevel: "info",
		mesosFailoverTimeout: mesos.DefaultFailoverTimeout, mesosRole: mesos.DefaultRole, mesosFrameworkName: mesos.DefaultName}

	f := base
	f.mesosMaster = "http://m1:5050, http://m2:5050"
	cfg, err := f.validate()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.executor != "mesos" {
		t.Errorf("executor = %q", cfg.executor)
	}
	m := cfg.mesos
	if !reflect.DeepEqual(m.Masters, []string{"http://m1:5050", "http://m2:5050"}) || m.FailoverTimeout != 168*time.Hour ||
		m.Role != "*" || m.Name != "hasched" || m.User != "" {
		t.Errorf("mesos config = %+v", m)
	}

	f = base
	f.mesosMaster = "zk://z1:2181,z2:2181/mesos"
	f.mesosFailoverTimeout, f.mesosRole, f.mesosUser, f.mesosFrameworkName = time.Hour, "jobs", "batch", "hasched-prod"
	cfg, err = f.validate()
	if err != nil {
		t.Fatal(err)
	}
	m = cfg.mesos
	if !reflect.DeepEqual(m.Masters, []string{"zk://z1:2181,z2:2181/mesos"}) || m.FailoverTimeout != time.Hour ||
		m.Role != "jobs" || m.User != "batch" || m.Name != "hasched-prod" {
		t.Errorf("mesos config = %+v", m)
	}

	// The local executor ignores the Mesos flags.
	f = base
	f.executor, f.mesosMaster = "local", "not even a URL"
	if _, err := f.validate(); err != nil {
		t.Errorf("local executor with a stray --mesos-master: %v", err)
	}
}

func TestServeMesosFlagDefaultsAndEnvironment(t *testing.T) {
	r := cli(t, nil, "", "serve", "--help").ok(t)
	for _, want := range []string{
		"--mesos-master", "$HASCHED_MESOS_MASTER",
		"--mesos-failover-timeout", "168h", "$HASCHED_MESOS_FAILOVER_TIMEOUT",
		"--mesos-role", `"*"`, "$HASCHED_MESOS_ROLE",
		"--mesos-user", "$HASCHED_MESOS_USER",
		"--mesos-framework-name", `"hasched"`, "$HASCHED_MESOS_FRAMEWORK_NAME",
		", mesos (an Apache Mesos framework",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("serve --help does not mention %s", want)
		}
	}
	if strings.Contains(r.stdout, "mesos-reconcile") {
		t.Errorf("serve --help has a Mesos reconcile flag; the scheduler reconciles on its own timer")
	}
}

// startMesosProcess runs `hasched serve --executor mesos` in this process.
func startMesosProcess(t *testing.T, name, coordURL, master string) *process {
	t.Helper()
	f := serveFlags{
		coord: coordURL, dataDir: filepath.Join(t.TempDir(), "data"), listen: "127.0.0.1:0", logLevel: "debug",
		executor: "mesos", mesosMaster: master, mesosFailoverTimeout: mesos.DefaultFailoverTimeout,
		mesosRole: mesos.DefaultRole, mesosFrameworkName: mesos.DefaultName,
	}
	return runProcess(t, name, f)
}

// hasched serve on Mesos: a job's shards run as Mesos tasks, the status
// shows the framework, and the next leader subscribes with the same
// framework id.
func TestServeOnMesos(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an embedded etcd (make test runs it)")
	}
	m, err := mesosfake.New(mesosfake.Config{FinishAfter: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if _, err := m.AddAgent(mesosfake.AgentSpec{CPUs: 4, MemMB: 4096}); err != nil {
		t.Fatal(err)
	}
	coordURL := startEtcd(t, "mesos-e2e")

	p := startMesosProcess(t, "first", coordURL, m.URL())
	var frameworkID string
	eventually(t, "the leader subscribes to Mesos", 30*time.Second, func() error {
		st, err := p.client.Status(ctxT(t))
		if err != nil {
			return err
		}
		if st.Executor != "mesos" || st.ExecutorInfo["connected"] != "yes" || st.ExecutorInfo["framework_id"] == "" ||
			st.ExecutorInfo["master"] != m.URL() {
			return fmt.Errorf("status %+v", st)
		}
		frameworkID = st.ExecutorInfo["framework_id"]
		return nil
	})
	r := cli(t, map[string]string{"HASCHED_SERVER": p.addr}, "", "status").ok(t)
	if !strings.Contains(r.stdout, frameworkID) {
		t.Errorf("hasched status does not show the framework id:\n%s", r.stdout)
	}

	x := ctxT(t)
	if _, err := p.client.RegisterAppJSON(x, []byte(`{"appName":"app","bootstrapScript":"true","cpuCount":0.5,"memoryMB":64}`)); err != nil {
		t.Fatal(err)
	}
	job := `{"jobName":"job","appName":"app","cron":"0 0 3 * * ?","shardingTotalCount":2,"cpuCount":1,"memoryMB":128,"scriptCommandLine":"echo $HASCHED_SHARDING_ITEM"}`
	if _, err := p.client.RegisterJobJSON(x, []byte(job)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.TriggerJob(x, "job"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both shards ran on Mesos and are done", 30*time.Second, func() error {
		finished := 0
		for _, tk := range m.Tasks() {
			if tk.State == mesosproto.TASK_FINISHED && tk.PendingUpdates == 0 {
				finished++
			}
		}
		running, err := p.client.RunningTasks(ctxT(t))
		if err != nil {
			return err
		}
		if finished != 2 || len(running) != 0 {
			return fmt.Errorf("%d tasks finished at the master, %d running in hasched", finished, len(running))
		}
		return nil
	})
	for _, tk := range m.Tasks() {
		if tk.Env["HASCHED_JOB_NAME"] != "job" || tk.Env["HASCHED_COMMAND"] != "echo $HASCHED_SHARDING_ITEM" {
			t.Errorf("task %s env %v", tk.ID, tk.Env)
		}
	}

	p.stop(t)
	if fws := m.Frameworks(); len(fws) != 1 || fws[0].Removed {
		t.Fatalf("frameworks after the leader stopped: %+v", fws)
	}
	q := startMesosProcess(t, "second", coordURL, m.URL())
	eventually(t, "the next leader subscribes with the same framework id", 30*time.Second, func() error {
		st, err := q.client.Status(ctxT(t))
		if err != nil {
			return err
		}
		if st.ExecutorInfo["connected"] != "yes" || st.ExecutorInfo["framework_id"] != frameworkID {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if fws := m.Frameworks(); len(fws) != 1 || fws[0].Subscriptions != 2 {
		t.Errorf("frameworks: %+v", fws)
	}
}
