package mesos

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/hasched/hasched/scheduler/executor"
)

func TestConfigDefaultsAndValidation(t *testing.T) {
	cfg, src, err := Config{Masters: []string{"http://m1:5050", "https://m2:5050/", "http://m3:5050/api/v1/scheduler"}, User: "u"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.FailoverTimeout != 7*24*time.Hour || cfg.Role != "*" || cfg.Name != "hasched" || cfg.RefuseSeconds != 5*time.Second ||
		cfg.HeartbeatTimeoutFactor != 5 || cfg.CallTimeout != DefaultCallTimeout || cfg.Logger == nil {
		t.Errorf("defaults: %+v", cfg)
	}
	want := []string{"http://m1:5050/api/v1/scheduler", "https://m2:5050/api/v1/scheduler", "http://m3:5050/api/v1/scheduler"}
	if !reflect.DeepEqual(src.urls, want) || src.zk != nil {
		t.Errorf("urls = %q", src.urls)
	}
	if cfg, _, err := (Config{Masters: []string{"http://m:5050"}}).withDefaults(); err != nil || cfg.User == "" {
		t.Errorf("default user: %q, %v", cfg.User, err)
	}

	_, src, err = Config{Masters: []string{"zk://alice:secret@z1:2181,z2/mesos/"}, User: "u"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if src.zk == nil || !reflect.DeepEqual(src.zk.servers, []string{"z1:2181", "z2:2181"}) || src.zk.path != "/mesos" ||
		src.zk.auth != "alice:secret" || strings.Contains(src.display, "secret") {
		t.Errorf("zk source = %+v, display %q", src.zk, src.display)
	}

	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no masters", Config{}, "no Mesos master"},
		{"not a URL", Config{Masters: []string{"m:5050"}}, "unsupported scheme"},
		{"bare host", Config{Masters: []string{"master"}}, "not a URL"},
		{"no host", Config{Masters: []string{"http:///x"}}, "names no host"},
		{"path", Config{Masters: []string{"http://m:5050/master"}}, "host:port only"},
		{"query", Config{Masters: []string{"http://m:5050?x=1"}}, "host:port only"},
		{"bad port", Config{Masters: []string{"http://m:99999"}}, "port"},
		{"credentials", Config{Masters: []string{"http://a:b@m:5050"}}, "credentials"},
		{"two zk", Config{Masters: []string{"zk://a/mesos", "zk://b/mesos"}}, "only one"},
		{"zk and http", Config{Masters: []string{"http://m:5050", "zk://b/mesos"}}, "only one"},
		{"zk no path", Config{Masters: []string{"zk://a:2181"}}, "no path"},
		{"zk empty server", Config{Masters: []string{"zk://a:2181,,b/mesos"}}, "empty server"},
		{"negative failover", Config{Masters: []string{"http://m"}, FailoverTimeout: -time.Second}, "FailoverTimeout"},
		{"tiny failover", Config{Masters: []string{"http://m"}, FailoverTimeout: time.Millisecond}, "FailoverTimeout"},
		{"bad role", Config{Masters: []string{"http://m"}, Role: "a b"}, "role"},
		{"dot role", Config{Masters: []string{"http://m"}, Role: ".."}, "role"},
		{"small factor", Config{Masters: []string{"http://m"}, HeartbeatTimeoutFactor: 1}, "HeartbeatTimeoutFactor"},
		{"negative refuse", Config{Masters: []string{"http://m"}, RefuseSeconds: -1}, "RefuseSeconds"},
		{"backoff order", Config{Masters: []string{"http://m"}, MinResubscribeWait: time.Minute, MaxResubscribeWait: time.Second}, "MaxResubscribeWait"},
	} {
		err := c.cfg.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalidConfig with %q", c.name, err, c.want)
		}
		if _, err := NewFactory(c.cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: NewFactory: %v", c.name, err)
		}
	}
}

func TestParseMasters(t *testing.T) {
	for in, want := range map[string][]string{
		"":                                 nil,
		"http://a:5050":                    {"http://a:5050"},
		" http://a:5050 , http://b:5050 ,": {"http://a:5050", "http://b:5050"},
		"zk://z1:2181,z2:2181/mesos":       {"zk://z1:2181,z2:2181/mesos"},
		"ZK://u:p@z1:2181,z2:2181/mesos  ": {"ZK://u:p@z1:2181,z2:2181/mesos"},
	} {
		if got := ParseMasters(in); !reflect.DeepEqual(got, want) {
			t.Errorf("ParseMasters(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMasterEndpointFromZooKeeper(t *testing.T) {
	for _, c := range []struct{ json, want string }{
		// What Mesos 1.x writes.
		{`{"address":{"hostname":"m1.example","ip":"10.0.0.1","port":5050},"hostname":"m1.example","id":"x","ip":16777226,"pid":"master@10.0.0.1:5050","port":5050,"version":"1.11.0"}`, "http://10.0.0.1:5050/api/v1/scheduler"},
		{`{"address":{"hostname":"m1.example","port":5051},"port":5050}`, "http://m1.example:5051/api/v1/scheduler"},
		{`{"hostname":"m2.example","port":5052}`, "http://m2.example:5052/api/v1/scheduler"},
		{`{"ip":16777226,"port":5050}`, "http://10.0.0.1:5050/api/v1/scheduler"},
		{`{"address":{"ip":"fd00::1","port":5050}}`, "http://[fd00::1]:5050/api/v1/scheduler"},
	} {
		got, err := masterEndpoint([]byte(c.json))
		if err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.json, got, err, c.want)
		}
	}
	if _, err := masterEndpoint([]byte(`{"port":5050}`)); err == nil {
		t.Error("no address: no error")
	}
	if _, err := masterEndpoint([]byte(`not json`)); err == nil {
		t.Error("bad JSON: no error")
	}
	got := leaderOrder([]string{"json.info_0000000012", "info_0000000001", "json.info_0000000003", "log_replicas", "json.info_x"})
	if !reflect.DeepEqual(got, []string{"json.info_0000000003", "json.info_0000000012"}) {
		t.Errorf("leaderOrder = %q", got)
	}
}

func TestRedirectTarget(t *testing.T) {
	for _, c := range []struct{ from, loc, want string }{
		{"http://a:5050/api/v1/scheduler", "//b:5050/api/v1/scheduler", "http://b:5050/api/v1/scheduler"},
		{"https://a:5050/api/v1/scheduler", "//b:5051/api/v1/scheduler", "https://b:5051/api/v1/scheduler"},
		{"http://a:5050/api/v1/scheduler", "http://c:5050/api/v1/scheduler", "http://c:5050/api/v1/scheduler"},
		{"http://a:5050/api/v1/scheduler", "//b:5050", "http://b:5050/api/v1/scheduler"},
	} {
		got, ok := redirectTarget(c.from, c.loc)
		if !ok || got != c.want {
			t.Errorf("redirectTarget(%q, %q) = %q, %v; want %q", c.from, c.loc, got, ok, c.want)
		}
	}
	for _, loc := range []string{"", "b:5050", "/api/v1/scheduler"} {
		if got, ok := redirectTarget("http://a:5050/api/v1/scheduler", loc); ok {
			t.Errorf("redirectTarget(%q) = %q, want refusal", loc, got)
		}
	}
}

func TestMapState(t *testing.T) {
	for _, c := range []struct {
		in        mesos.TaskState
		reconcile bool
		want      executor.State
	}{
		{mesos.TASK_STAGING, false, executor.StateStaging},
		{mesos.TASK_STARTING, false, executor.StateStaging},
		{mesos.TASK_RUNNING, false, executor.StateRunning},
		{mesos.TASK_KILLING, false, executor.StateRunning},
		{mesos.TASK_FINISHED, false, executor.StateFinished},
		{mesos.TASK_FAILED, false, executor.StateFailed},
		{mesos.TASK_ERROR, false, executor.StateFailed},
		{mesos.TASK_KILLED, false, executor.StateKilled},
		{mesos.TASK_LOST, false, executor.StateLost},
		{mesos.TASK_DROPPED, false, executor.StateLost},
		{mesos.TASK_GONE, true, executor.StateLost},
		{mesos.TASK_GONE_BY_OPERATOR, false, executor.StateLost},
		{mesos.TASK_UNREACHABLE, false, executor.StateLost},
		{mesos.TASK_UNKNOWN, false, executor.StateLost},
		{mesos.TASK_UNKNOWN, true, executor.StateUnknown},
	} {
		if got := mapState(c.in, mesos.REASON_COMMAND_EXECUTOR_FAILED, c.reconcile); got != c.want {
			t.Errorf("%v (reconcile %v) → %v, want %v", c.in, c.reconcile, got, c.want)
		}
	}
	// The agent's end of a task at its max_completion_time is a timeout;
	// the reason counts for TASK_FAILED only.
	timeout := mesos.REASON_MAX_COMPLETION_TIME_REACHED
	for _, c := range []struct {
		in   mesos.TaskState
		want executor.State
	}{
		{mesos.TASK_FAILED, executor.StateTimedOut},
		{mesos.TASK_ERROR, executor.StateFailed},
		{mesos.TASK_KILLED, executor.StateKilled},
		{mesos.TASK_FINISHED, executor.StateFinished},
		{mesos.TASK_RUNNING, executor.StateRunning},
	} {
		if got := mapState(c.in, timeout, false); got != c.want {
			t.Errorf("%v with %v → %v, want %v", c.in, timeout, got, c.want)
		}
	}
	if exitCode("Command exited with status 3") != 3 || exitCode("Command terminated with signal Killed") != 0 {
		t.Error("exitCode")
	}
	reason := mesos.REASON_COMMAND_EXECUTOR_FAILED
	if got := statusMessage(mesos.TaskStatus{Message: ptr("Command exited with status 3"), Reason: &reason}); got != "REASON_COMMAND_EXECUTOR_FAILED: Command exited with status 3" {
		t.Errorf("statusMessage = %q", got)
	}
}

// scalar is an offer resource as a MULTI_ROLE framework gets it.
func scalar(name string, v float64, role string) mesos.Resource {
	return mesos.Resource{Name: name, Type: mesos.SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: v},
		AllocationInfo: &mesos.Resource_AllocationInfo{Role: ptr(role)}}
}

func offer(id, agent string, cpus, mem float64) mesos.Offer {
	return mesos.Offer{ID: mesos.OfferID{Value: id}, AgentID: mesos.AgentID{Value: agent}, Hostname: agent + ".example",
		Resources: []mesos.Resource{scalar("cpus", cpus, "*"), scalar("mem", mem, "*"), {Name: "ports", Type: mesos.RANGES.Enum()}}}
}

func testTask(job string, shard, attempt int, cpus, mem float64) executor.Task {
	return executor.Task{
		ID: job + "@-@1000@-@" + string(rune('0'+shard)) + "@-@" + string(rune('0'+attempt)), Job: job, App: "app",
		FireTime: time.UnixMilli(1000), Shard: shard, Attempt: attempt, ShardingTotalCount: 2,
		Command: "echo", CPUs: cpus, MemoryMB: mem, AppCPUs: 0.5, AppMemoryMB: 64,
	}
}

func newTestExecutor() *Executor {
	return &Executor{log: hclog.NewNullLogger(), tasks: map[string]*taskState{}, agents: map[string]string{}}
}

func placedIDs(pools []*pool) map[string][]string {
	out := map[string][]string{}
	for _, p := range pools {
		for _, pt := range p.tasks {
			out[p.agentID] = append(out[p.agentID], pt.task.ID)
		}
	}
	return out
}

func TestPlacementAllOrNothingPerRun(t *testing.T) {
	e := newTestExecutor()
	a0, a1 := testTask("a", 0, 0, 1, 100), testTask("a", 1, 0, 1, 100)
	b0 := testTask("b", 0, 0, 0.5, 50)
	e.pending = []executor.Task{a0, a1, b0}
	// One agent with room for one shard of a (plus the app's overhead),
	// not two.
	pools := e.place([]mesos.Offer{offer("o1", "s1", 2, 300)})
	got := placedIDs(pools)
	if !reflect.DeepEqual(got, map[string][]string{"s1": {b0.ID}}) {
		t.Fatalf("placed %v, want only b's shard", got)
	}
	if len(e.pending) != 2 || e.pending[0].ID != a0.ID || e.pending[1].ID != a1.ID {
		t.Fatalf("pending = %v", e.pending)
	}
	if ts := e.tasks[b0.ID]; ts == nil || ts.agentID != "s1" || ts.last.State != executor.StateStaging || ts.last.Host != "s1.example" {
		t.Fatalf("b0 state = %+v", ts)
	}
	// Two agents, each with room for one shard and the app's overhead:
	// the run is placed across both.
	pools = e.place([]mesos.Offer{offer("o2", "s2", 1.5, 200), offer("o3", "s3", 1.5, 200)})
	got = placedIDs(pools)
	if !reflect.DeepEqual(got, map[string][]string{"s2": {a0.ID}, "s3": {a1.ID}}) {
		t.Fatalf("placed %v", got)
	}
	if len(e.pending) != 0 {
		t.Fatalf("pending = %v", e.pending)
	}
}

func TestPlacementAppOverheadOncePerAgent(t *testing.T) {
	e := newTestExecutor()
	t0, t1 := testTask("a", 0, 0, 1, 100), testTask("a", 1, 0, 1, 100)
	e.pending = []executor.Task{t0, t1}
	// 2.5 cpus and 264 MB = two tasks and one overhead.
	pools := e.place([]mesos.Offer{offer("o1", "s1", 1.5, 100), offer("o2", "s1", 1, 164)})
	if len(pools) != 1 || len(pools[0].tasks) != 2 {
		t.Fatalf("pools = %+v", pools)
	}
	p := pools[0]
	if !reflect.DeepEqual(p.offerIDs, []mesos.OfferID{{Value: "o1"}, {Value: "o2"}}) {
		t.Errorf("offers = %v", p.offerIDs)
	}
	first, second := p.tasks[0], p.tasks[1]
	if first.cpus != 1.5 || first.mem != 164 || second.cpus != 1 || second.mem != 100 {
		t.Errorf("resources: first %v/%v, second %v/%v", first.cpus, first.mem, second.cpus, second.mem)
	}
	// Taken from the offers' own resources, allocation info and all.
	for _, r := range append(first.res, second.res...) {
		if r.GetAllocationInfo().GetRole() != "*" || (r.Name != "cpus" && r.Name != "mem") {
			t.Errorf("resource %v", r)
		}
	}
	var cpus float64
	for _, r := range first.res {
		if r.Name == "cpus" {
			cpus += r.GetScalar().GetValue()
		}
	}
	if cpus != 1.5 {
		t.Errorf("first task's cpus = %v", cpus)
	}

	// An app with a live task on the agent pays no overhead there.
	e = newTestExecutor()
	e.tasks["old"] = &taskState{task: executor.Task{ID: "old", App: "app"}, agentID: "s1"}
	t2 := testTask("c", 0, 0, 1, 100)
	e.pending = []executor.Task{t2}
	pools = e.place([]mesos.Offer{offer("o1", "s1", 1, 100)})
	if got := placedIDs(pools); len(got["s1"]) != 1 {
		t.Errorf("placed %v: an app already on the agent pays its overhead again", got)
	}
}

func TestPlacementAttemptsAreSeparateRuns(t *testing.T) {
	e := newTestExecutor()
	// A failover relaunch (attempt 1 of shard 1) is a run of its own.
	retry := testTask("a", 1, 1, 1, 100)
	e.pending = []executor.Task{testTask("a", 0, 0, 1, 100), testTask("a", 1, 0, 1, 100), retry}
	pools := e.place([]mesos.Offer{offer("o1", "s1", 1.5, 200)})
	if got := placedIDs(pools); !reflect.DeepEqual(got, map[string][]string{"s1": {retry.ID}}) {
		t.Errorf("placed %v", got)
	}
}

func TestTaskInfo(t *testing.T) {
	task := testTask("job", 1, 2, 1, 100)
	task.AppURL, task.AppCacheEnable = "http://repo/app.tar.gz", true
	task.ShardParameter, task.JobParameter = "b", "p"
	ti := taskInfo(task, "s1", []mesos.Resource{scalar("cpus", 1, "*")})
	if ti.TaskID.Value != task.ID || ti.AgentID.Value != "s1" || ti.Executor != nil || ti.Command == nil {
		t.Fatalf("task info %+v", ti)
	}
	c := ti.Command
	if !c.GetShell() || c.GetValue() != commandWrapper || len(c.URIs) != 1 || c.URIs[0].Value != task.AppURL ||
		!c.URIs[0].GetExtract() || !c.URIs[0].GetCache() {
		t.Errorf("command %+v", c)
	}
	env := map[string]string{}
	for _, v := range c.GetEnvironment().GetVariables() {
		env[v.Name] = v.GetValue()
	}
	for k, want := range map[string]string{
		"HASCHED_TASK_ID": task.ID, "HASCHED_JOB_NAME": "job", "HASCHED_APP_NAME": "app", "HASCHED_SHARDING_ITEM": "1",
		"HASCHED_SHARDING_TOTAL_COUNT": "2", "HASCHED_SHARDING_PARAMETER": "b", "HASCHED_JOB_PARAMETER": "p",
		"HASCHED_FIRE_TIME": "1970-01-01T00:00:01Z", "HASCHED_FIRE_TIME_UNIX_MS": "1000", "HASCHED_ATTEMPT": "2",
		"HASCHED_COMMAND": "echo",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
	var sc struct {
		ShardingItem int    `json:"shardingItem"`
		TaskID       string `json:"taskId"`
	}
	if err := json.Unmarshal([]byte(env["HASCHED_SHARDING_CONTEXT"]), &sc); err != nil || sc.ShardingItem != 1 || sc.TaskID != task.ID {
		t.Errorf("sharding context %q: %v", env["HASCHED_SHARDING_CONTEXT"], err)
	}
	if ti.MaxCompletionTime != nil {
		t.Errorf("a task without a Timeout has max_completion_time %v", ti.MaxCompletionTime)
	}
	timed := task
	timed.Timeout = 90 * time.Second
	if tti := taskInfo(timed, "s1", nil); tti.GetMaxCompletionTime() == nil || tti.GetMaxCompletionTime().Nanoseconds != int64(90*time.Second) {
		t.Errorf("max_completion_time %v, want 90s from the task's Timeout", tti.GetMaxCompletionTime())
	}
	// gogo enforces the required fields on both ends.
	b, err := ti.Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var back mesos.TaskInfo
	if err := back.Unmarshal(b); err != nil || back.Command.GetValue() != commandWrapper {
		t.Errorf("unmarshal: %v", err)
	}
}

func TestValidTask(t *testing.T) {
	good := testTask("a", 0, 0, 1, 0)
	if err := validTask(good); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*executor.Task){
		"no id":        func(t *executor.Task) { t.ID = "" },
		"no command":   func(t *executor.Task) { t.Command = " " },
		"no resources": func(t *executor.Task) { t.CPUs, t.MemoryMB = 0, 0.0001 },
		"negative":     func(t *executor.Task) { t.AppCPUs = -1 },
		"nul":          func(t *executor.Task) { t.JobParameter = "a\x00b" },
	} {
		bad := good
		mod(&bad)
		if err := validTask(bad); !errors.Is(err, ErrInvalidTask) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
