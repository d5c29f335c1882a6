package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hasched/hasched/scheduler/executor"
)

// A task sees the HASCHED_* variables, PATH, HOME, the locale and TZ, and
// nothing else of the scheduler's environment: not its secrets.
func TestTaskDoesNotInheritTheSchedulersSecrets(t *testing.T) {
	t.Setenv("HASCHED_AUTH_PASSWORD", "s3cret-password")
	t.Setenv("HASCHED_COORD", "etcd://user:s3cret@127.0.0.1:2379/x")
	t.Setenv("SOME_CLOUD_TOKEN", "s3cret-token")
	t.Setenv("LC_TIME", "C")
	t.Setenv("TZ", "Europe/Paris")
	e := newTestExec(t, testConfig(t, t.TempDir()))
	tk := task("t-env", `env >"$HASCHED_TASK_DIR/env.txt"`)
	e.launch(tk)
	e.waitState(tk.ID, executor.StateFinished, false)

	raw, err := os.ReadFile(filepath.Join(e.taskDir(tk.ID), "env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "s3cret") {
		t.Errorf("task sees a secret of the scheduler:\n%s", raw)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	for _, k := range []string{"HASCHED_AUTH_PASSWORD", "HASCHED_COORD", "SOME_CLOUD_TOKEN"} {
		if _, ok := env[k]; ok {
			t.Errorf("task sees %s", k)
		}
	}
	if env["TZ"] != "Europe/Paris" || env["LC_TIME"] != "C" || env["PATH"] == "" || env["HASCHED_TASK_ID"] != tk.ID {
		t.Errorf("task misses an allowed variable: %v", env)
	}
}

func TestTaskEnvDefaultsPath(t *testing.T) {
	env, err := taskEnv([]string{"HOME=/home/x", "SECRET=1"}, task("t", "true"), "/d")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(env, "\n")
	if !strings.Contains(joined, "PATH="+defaultPath) || !strings.Contains(joined, "HOME=/home/x") || strings.Contains(joined, "SECRET") {
		t.Errorf("env %v", env)
	}
}
