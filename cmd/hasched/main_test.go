package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/api/apitest"
	"github.com/hasched/hasched/scheduler/model"
)

const (
	appJSON = `{"appName":"foo_app","appURL":"http://repo/foo.tar.gz","bootstrapScript":"bin/start.sh","cpuCount":1,"memoryMB":128}`
	jobJSON = `{"jobName":"foo_job","appName":"foo_app","cron":"0/5 * * * * ?","shardingTotalCount":2,"scriptCommandLine":"echo hi","failover":true}`
)

// TestMain also plays the hasched binary's watchdog: a worker started by a
// test runs os.Executable() (this test binary) with "watchdog".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "watchdog" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv))
	}
	os.Exit(etcdServer.Main(m))
}

type result struct {
	stdout, stderr string
	code           int
}

// cli runs one command line in-process with the given environment and
// standard input.
func cli(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := run(ctx, args, strings.NewReader(stdin), &out, &errOut, lookup)
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, want 0; stderr: %s", r.code, r.stderr)
	}
	return r
}

func (r result) fails(t *testing.T, wantInStderr ...string) result {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("exit 0, want an error; stdout: %s", r.stdout)
	}
	for _, w := range wantInStderr {
		if !strings.Contains(r.stderr, w) {
			t.Fatalf("stderr %q does not contain %q", r.stderr, w)
		}
	}
	return r
}

func (r result) has(t *testing.T, want ...string) result {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(r.stdout, w) {
			t.Fatalf("stdout does not contain %q:\n%s", w, r.stdout)
		}
	}
	return r
}

// server is an API on a fake scheduler.
func server(t *testing.T, mod func(*api.Config)) (*apitest.Service, map[string]string) {
	t.Helper()
	svc := apitest.NewService(model.Status{Self: "127.0.0.1:8899", Coordinator: "embedded etcd", Executor: "local"})
	cfg := api.Config{Service: svc}
	if mod != nil {
		mod(&cfg)
	}
	h, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return svc, map[string]string{"HASCHED_SERVER": srv.URL}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAppCommands(t *testing.T) {
	svc, env := server(t, nil)
	appFile := writeFile(t, "app.json", appJSON)

	cli(t, env, "", "app", "register", "-f", appFile).ok(t).has(t, `app "foo_app" registered`)
	cli(t, env, "", "app", "register", "-f", appFile).fails(t, "409", "already exists")
	cli(t, env, strings.Replace(appJSON, "128", "256", 1), "app", "update", "-f", "-").ok(t).has(t, "updated")

	r := cli(t, env, "", "app", "list").ok(t)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "foo_app") || !strings.Contains(lines[1], "256") {
		t.Fatalf("app list table:\n%s", r.stdout)
	}
	var apps []model.App
	decodeOut(t, cli(t, env, "", "app", "list", "-o", "json").ok(t), &apps)
	if len(apps) != 1 || apps[0].MemoryMB != 256 {
		t.Fatalf("app list -o json = %+v", apps)
	}

	cli(t, env, "", "app", "get", "foo_app").ok(t).has(t, "Name:", "foo_app", "Bootstrap script:", "bin/start.sh", "Disabled:", "no")
	var app model.App
	decodeOut(t, cli(t, env, "", "app", "get", "foo_app", "-o", "json").ok(t), &app)
	if app.AppURL != "http://repo/foo.tar.gz" {
		t.Fatalf("app get -o json = %+v", app)
	}

	cli(t, env, "", "app", "disable", "foo_app").ok(t).has(t, "disabled")
	cli(t, env, "", "app", "get", "foo_app").ok(t).has(t, "Disabled:", "yes")
	var res api.Result
	decodeOut(t, cli(t, env, "", "app", "enable", "foo_app", "-o", "json").ok(t), &res)
	if !res.OK {
		t.Fatalf("app enable -o json = %+v", res)
	}
	cli(t, env, "", "app", "deregister", "foo_app").ok(t).has(t, "deregistered")
	cli(t, env, "", "app", "get", "foo_app").fails(t, "404", "foo_app")
	if r := cli(t, env, "", "app", "list").ok(t); strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("empty app list should be the header alone:\n%s", r.stdout)
	}
	_ = svc
}

func TestJobCommands(t *testing.T) {
	svc, env := server(t, nil)
	cli(t, env, appJSON, "app", "register", "-f", "-").ok(t)
	jobFile := writeFile(t, "job.json", jobJSON)

	cli(t, env, "", "job", "register", "-f", jobFile).ok(t).has(t, `job "foo_job" registered`)
	if r := cli(t, env, "", "job", "get", "foo_job").ok(t); !regexp.MustCompile(`(?m)^Timeout:\s+-$`).MatchString(r.stdout) {
		t.Fatalf("a job without a timeout should show Timeout: -\n%s", r.stdout)
	}
	cli(t, env, strings.Replace(jobJSON, `"shardingTotalCount":2`, `"shardingTotalCount":4,"timeoutSeconds":90`, 1), "job", "update", "-f", "-").ok(t)
	cli(t, env, strings.Replace(jobJSON, `"shardingTotalCount":2`, `"timeoutSeconds":-1`, 1), "job", "update", "-f", "-").fails(t, "timeoutSeconds")

	r := cli(t, env, "", "job", "list").ok(t)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "CRON") || !strings.Contains(lines[1], "0/5 * * * * ?") || !strings.Contains(lines[1], "TRANSIENT") {
		t.Fatalf("job list table:\n%s", r.stdout)
	}
	var jobs []model.Job
	decodeOut(t, cli(t, env, "", "job", "list", "-o", "json").ok(t), &jobs)
	if len(jobs) != 1 || jobs[0].ShardingTotalCount != 4 || !jobs[0].Misfire || jobs[0].TimeoutSeconds != 90 {
		t.Fatalf("job list -o json = %+v (misfire should default to true; timeoutSeconds 90)", jobs)
	}

	cli(t, env, "", "job", "get", "foo_job").ok(t).has(t, "Sharding total count:", "4", "Failover:", "yes", "Script command line:", "echo hi", "Timeout:", "1m30s")
	cli(t, env, "", "job", "trigger", "foo_job").ok(t).has(t, "triggered")
	cli(t, env, "", "job", "trigger", "foo_job", "--param", "").ok(t).has(t, "own job parameter")
	cli(t, env, "", "job", "trigger", "foo_job", "--param", "day=2026-12-01").ok(t).has(t, "own job parameter")
	if got := svc.Triggers(); len(got) != 3 || got[0].JobName != "foo_job" || got[0].JobParameter != nil ||
		got[1].JobParameter == nil || *got[1].JobParameter != "" || got[2].JobParameter == nil || *got[2].JobParameter != "day=2026-12-01" {
		t.Fatalf("triggered = %+v", got)
	}
	cli(t, env, "", "job", "disable", "foo_job").ok(t)
	cli(t, env, "", "job", "get", "foo_job").ok(t).has(t, "Disabled:", "yes")
	cli(t, env, "", "job", "enable", "foo_job").ok(t)
	cli(t, env, "", "job", "deregister", "foo_job").ok(t).has(t, "deregistered")
	cli(t, env, "", "job", "get", "foo_job").fails(t, "404")
}

func TestBadDefinitionsFailBeforeSending(t *testing.T) {
	svc, env := server(t, nil)
	cli(t, env, "", "job", "register").fails(t, "-f FILE")
	cli(t, env, "{", "job", "register", "-f", "-").fails(t, "standard input is not valid JSON")
	cli(t, env, "[]", "app", "register", "-f", "-").fails(t, "not a JSON object")
	cli(t, env, "", "app", "register", "-f", filepath.Join(t.TempDir(), "missing.json")).fails(t, "missing.json")
	if calls := svc.Calls(); len(calls) != 0 {
		t.Fatalf("the server was called: %v", calls)
	}
	// The server's refusal names the field.
	cli(t, env, `{"appName":"a","cpuCount":-1}`, "app", "register", "-f", "-").fails(t, "400", "cpuCount")
}

func TestTasksCommand(t *testing.T) {
	svc, env := server(t, nil)
	fire := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	svc.SetTasks(
		[]model.TaskRecord{{ID: "foo_job@-@1@-@x", Job: "foo_job", Shard: 1, State: "RUNNING", Host: "h1", FireTime: fire}},
		[]model.ReadyEntry{{Job: "foo_job", Times: 5, FireTimes: []time.Time{fire, fire, fire, fire, fire}}},
		nil,
	)
	r := cli(t, env, "", "tasks").ok(t).has(t, "RUNNING", "READY", "FAILOVER", "foo_job@-@1@-@x", "2025-03-04T05:06:07Z", "(2 more)", "(none)")
	if i, j := strings.Index(r.stdout, "RUNNING"), strings.Index(r.stdout, "FAILOVER"); i > j {
		t.Fatalf("sections out of order:\n%s", r.stdout)
	}
	if r := cli(t, env, "", "tasks", "running").ok(t); strings.Contains(r.stdout, "READY") || !strings.Contains(r.stdout, "h1") {
		t.Fatalf("tasks running:\n%s", r.stdout)
	}
	var ready []model.ReadyEntry
	decodeOut(t, cli(t, env, "", "tasks", "ready", "-o", "json").ok(t), &ready)
	if len(ready) != 1 || ready[0].Times != 5 {
		t.Fatalf("tasks ready -o json = %+v", ready)
	}
	var all map[string]json.RawMessage
	decodeOut(t, cli(t, env, "", "tasks", "-o", "json").ok(t), &all)
	if len(all) != 3 || string(all["failover"]) != "[]" {
		t.Fatalf("tasks -o json = %v", all)
	}
	cli(t, env, "", "tasks", "sideways").fails(t, "unknown kind", "--help")
}

func TestStatusCommand(t *testing.T) {
	_, env := server(t, nil)
	cli(t, env, "", "status").ok(t).has(t, "Self:", "127.0.0.1:8899", "Leader:", "yes", "Executor:", "local", "Coordinator:", "embedded etcd")
	var st model.Status
	decodeOut(t, cli(t, env, "", "status", "-o", "json").ok(t), &st)
	if !st.Leader || st.Self != "127.0.0.1:8899" {
		t.Fatalf("status -o json = %+v", st)
	}
}

func TestCredentialsFromFlagsAndEnvironment(t *testing.T) {
	_, env := server(t, func(c *api.Config) { c.AuthUser, c.AuthPassword = "root", "pw" })
	cli(t, env, appJSON, "app", "register", "-f", "-").fails(t, "401")
	cli(t, env, appJSON, "app", "register", "-f", "-", "--user", "root", "--password", "nope").fails(t, "401")
	cli(t, env, appJSON, "app", "register", "-f", "-", "--user", "root", "--password", "pw").ok(t)
	cli(t, env, "", "app", "list").ok(t) // reads need none

	env["HASCHED_USER"], env["HASCHED_PASSWORD"] = "root", "pw"
	cli(t, env, "", "app", "disable", "foo_app").ok(t)
	// The flag wins over the environment.
	cli(t, env, "", "app", "enable", "foo_app", "--password", "nope").fails(t, "401")
}

func TestFlagWinsOverEnvironment(t *testing.T) {
	_, env := server(t, nil)
	good := env["HASCHED_SERVER"]
	env["HASCHED_SERVER"] = "http://127.0.0.1:1"
	cli(t, env, "", "status").fails(t, "127.0.0.1:1")
	cli(t, env, "", "status", "--server", good).ok(t)

	env["HASCHED_SERVER"] = good
	env["HASCHED_OUTPUT"] = "json"
	var st model.Status
	decodeOut(t, cli(t, env, "", "status").ok(t), &st)
	cli(t, env, "", "status", "-o", "table").ok(t).has(t, "Self:")
}

func TestUsageErrors(t *testing.T) {
	_, env := server(t, nil)
	cli(t, env, "", "status", "-o", "yaml").fails(t, `--output "yaml"`)
	cli(t, env, "", "job", "get").fails(t, "NAME", "Run 'hasched job get --help' for usage.")
	cli(t, env, "", "job", "get", "a", "b").fails(t, "NAME")
	cli(t, env, "", "app", "list", "--bogus").fails(t, "bogus", "--help")
	cli(t, map[string]string{"HASCHED_TIMEOUT": "soon"}, "", "status").fails(t, "HASCHED_TIMEOUT")
	cli(t, map[string]string{"HASCHED_SERVER": "ftp://x"}, "", "status").fails(t, "http or https")
}

func TestServerUnreachableIsAClearError(t *testing.T) {
	srv := httptest.NewServer(nil)
	url := srv.URL
	srv.Close()
	cli(t, map[string]string{"HASCHED_SERVER": url}, "", "job", "list").fails(t, url, "refused")
}

func TestVersion(t *testing.T) {
	cli(t, nil, "", "version").ok(t).has(t, "hasched ", "go1.")
}

// Every command documents itself with an example.
func TestEveryCommandHasHelpWithAnExample(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() == "help" || c.Name() == "completion" { // cobra's own
			return
		}
		{
			if c.Example == "" {
				t.Errorf("%s has no example", c.CommandPath())
			}
			args := append(strings.Fields(c.CommandPath())[1:], "--help")
			r := cli(t, nil, "", args...).ok(t)
			if !strings.Contains(r.stdout, "Examples:") {
				t.Errorf("%s --help shows no example:\n%s", c.CommandPath(), r.stdout)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(func(string) (string, bool) { return "", false }))

	r := cli(t, nil, "", "serve", "--help").ok(t)
	for _, f := range []string{"--coord", "$HASCHED_COORD", "--data-dir", "--listen", "--advertise", "--executor", "--work-dir", "--log-level", "--log-json", "--auth-user", "--auth-password", "--embedded-client-url", "--embedded-peer-url"} {
		if !strings.Contains(r.stdout, f) {
			t.Errorf("serve --help does not mention %s", f)
		}
	}
}

func decodeOut(t *testing.T, r result, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("output is not the JSON of %T: %v\n%s", v, err, r.stdout)
	}
}
