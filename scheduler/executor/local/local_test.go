package local

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hasched/hasched/scheduler/executor"
)

// The task's command gets its sharding context as $1 and in its
// environment, runs in its task dir, and writes stdout there; task.json
// records it. (Its states are the contract suite's.)
func TestTaskGetsItsContextEnvironmentAndFiles(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	tk := task("t-finish/1", `echo "hello from $HASCHED_JOB_NAME"
printf '%s' "$1" >ctx.json
env | grep '^HASCHED_' >env.txt
pwd >pwd.txt`)
	e.launch(tk)
	e.waitState(tk.ID, executor.StateFinished, false)

	dir := e.taskDir(tk.ID)
	if out, _ := os.ReadFile(filepath.Join(dir, "stdout")); string(out) != "hello from job-t-finish/1\n" {
		t.Errorf("stdout %q", out)
	}
	if pwd, _ := os.ReadFile(filepath.Join(dir, "pwd.txt")); strings.TrimSpace(string(pwd)) != dir {
		t.Errorf("working dir %q, want the task dir %q", pwd, dir)
	}

	raw, err := os.ReadFile(filepath.Join(dir, "ctx.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sc map[string]any
	if err := json.Unmarshal(raw, &sc); err != nil {
		t.Fatalf("$1 is not JSON: %q: %v", raw, err)
	}
	wantCtx := map[string]any{
		"jobName": "job-t-finish/1", "taskId": "t-finish/1", "shardingItem": 1.0,
		"shardingTotalCount": 3.0, "shardingParameter": `b "quoted" param`,
		"jobParameter": "p1 p2", "fireTime": "2025-03-04T04:06:07.89Z", "attempt": 2.0,
	}
	for k, v := range wantCtx {
		if sc[k] != v {
			t.Errorf("$1[%s] = %v, want %v", k, sc[k], v)
		}
	}

	envRaw, _ := os.ReadFile(filepath.Join(dir, "env.txt"))
	env := map[string]string{}
	for _, line := range strings.Split(string(envRaw), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	wantEnv := map[string]string{
		"HASCHED_TASK_ID":              "t-finish/1",
		"HASCHED_JOB_NAME":             "job-t-finish/1",
		"HASCHED_APP_NAME":             "app1",
		"HASCHED_SHARDING_ITEM":        "1",
		"HASCHED_SHARDING_TOTAL_COUNT": "3",
		"HASCHED_SHARDING_PARAMETER":   `b "quoted" param`,
		"HASCHED_JOB_PARAMETER":        "p1 p2",
		"HASCHED_FIRE_TIME":            "2025-03-04T04:06:07.89Z",
		"HASCHED_FIRE_TIME_UNIX_MS":    strconv.FormatInt(tk.FireTime.UnixMilli(), 10),
		"HASCHED_ATTEMPT":              "2",
		"HASCHED_TASK_DIR":             dir,
		"HASCHED_SHARDING_CONTEXT":     string(raw),
	}
	for k, v := range wantEnv {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}

	// task.json records the task for later executors.
	var got executor.Task
	if b, err := os.ReadFile(filepath.Join(dir, "task.json")); err != nil || json.Unmarshal(b, &got) != nil || got.ID != tk.ID {
		t.Errorf("task.json: %v, %+v", err, got)
	}
}

// A failed task's message is its exit code and the tail of its stderr,
// from a line boundary.
func TestFailureMessageIsTheTailOfStderr(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	tk := task("t-fail", `i=0
while [ $i -lt 200 ]; do echo "noise line $i" >&2; i=$((i+1)); done
echo "the real reason" >&2
exit 3`)
	e.launch(tk)
	s := e.waitState(tk.ID, executor.StateFailed, false)
	if !strings.HasPrefix(s.Message, "exit code 3: ") || !strings.HasSuffix(s.Message, "the real reason") {
		t.Errorf("message %q", s.Message)
	}
	if strings.Contains(s.Message, "noise line 0\n") || len(s.Message) > stderrExcerpt+64 {
		t.Errorf("message holds more than the tail of stderr (%d bytes)", len(s.Message))
	}
	// The excerpt starts at a line boundary.
	if excerpt := strings.TrimPrefix(s.Message, "exit code 3: "); !strings.HasPrefix(excerpt, "noise line ") {
		t.Errorf("excerpt starts mid-line: %q", excerpt[:20])
	}
}

func TestKillWholeProcessGroup(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	tk := task("t-kill", `sleep 300 &
echo $! >"$HASCHED_TASK_DIR/child.pid"
wait`)
	e.launch(tk)
	e.waitState(tk.ID, executor.StateRunning, false)
	childFile := filepath.Join(e.taskDir(tk.ID), "child.pid")
	eventually(t, "grandchild pid", func() bool { b, _ := os.ReadFile(childFile); return len(b) > 0 })
	b, _ := os.ReadFile(childFile)
	child := mustAtoi(t, strings.TrimSpace(string(b)))
	p := readPid(t, e.Executor, tk.ID)
	if !processAlive(child) {
		t.Fatalf("grandchild %d not running before the kill", child)
	}

	if err := e.Kill(context.Background(), tk.ID); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	s := e.waitState(tk.ID, executor.StateKilled, false)
	if s.Message == "" {
		t.Errorf("KILLED without a message")
	}
	eventually(t, "process group gone", func() bool { return len(groupMembers(p.Pgid)) == 0 })
	if processAlive(child) {
		t.Errorf("grandchild sleep %d survived the kill", child)
	}
	if _, err := os.Stat(filepath.Join(e.taskDir(tk.ID), "killed")); err != nil {
		t.Errorf("no killed marker: %v", err)
	}
}

func countState(ss []executor.Status, state executor.State) int {
	n := 0
	for _, s := range ss {
		if s.State == state {
			n++
		}
	}
	return n
}

func TestKillEscalatesToSIGKILL(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.KillGrace = 300 * time.Millisecond
	e := newTestExec(t, cfg)
	// The command and its children ignore SIGTERM; only the wrapper dies
	// of it. SIGKILL must follow for the rest of the group.
	tk := task("t-stubborn", `trap '' TERM
sleep 300`)
	e.launch(tk)
	e.waitState(tk.ID, executor.StateRunning, false)
	p := readPid(t, e.Executor, tk.ID)
	eventually(t, "sleep started", func() bool { return len(groupMembers(p.Pgid)) >= 3 })
	if err := e.Kill(context.Background(), tk.ID); err != nil {
		t.Fatal(err)
	}
	e.waitState(tk.ID, executor.StateKilled, false)
	eventually(t, "process group gone after SIGKILL", func() bool { return len(groupMembers(p.Pgid)) == 0 })
}

// Two executors open on one work dir at once (two scheduler processes of a
// host, one of them a deposed leader) start a task once, and a finished
// task is not run again. (One executor, and successive terms, are the
// contract suite's.)
func TestExecutorsSharingAWorkDirStartATaskOnce(t *testing.T) {
	work := t.TempDir()
	runs := filepath.Join(t.TempDir(), "runs")
	release := filepath.Join(t.TempDir(), "release")
	a := newTestExec(t, testConfig(t, work))
	b := newTestExec(t, testConfig(t, work))
	tk := task("t-once", "echo run >>"+shellQuote(runs)+"\n"+waitForFile(release))

	a.launch(tk)
	a.waitState(tk.ID, executor.StateRunning, false)
	b.launch(tk)
	if s := b.waitState(tk.ID, executor.StateRunning, false); s.Reconcile {
		t.Errorf("Launch's report marked as a reconcile answer")
	}
	if n := countState(b.forTask(tk.ID), executor.StateStaging); n != 0 {
		t.Errorf("the second launcher reported STAGING %d times: it started the task again", n)
	}

	touch(t, release)
	a.waitState(tk.ID, executor.StateFinished, false)
	b.waitState(tk.ID, executor.StateFinished, false)
	// A finished task is not run again either.
	b.launch(tk)
	if got, _ := os.ReadFile(runs); string(got) != "run\n" {
		t.Errorf("task ran %d times: %q", strings.Count(string(got), "run"), got)
	}
	if n := countState(a.forTask(tk.ID), executor.StateFinished); n != 1 {
		t.Errorf("executor A reported FINISHED %d times, want once", n)
	}
}

// An explicit reconciliation of a task that ended answers its end, read
// from its task dir. (Adoption of running tasks is the contract suite's.)
func TestReconcileOfAnEndedTaskAnswersItsEnd(t *testing.T) {
	work := t.TempDir()
	a := newTestExec(t, testConfig(t, work))
	tk := task("t-ended", "echo adopted-output")
	a.launch(tk)
	a.waitState(tk.ID, executor.StateFinished, false)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := newTestExec(t, testConfig(t, work))
	if err := b.Reconcile(context.Background(), []string{tk.ID}); err != nil {
		t.Fatal(err)
	}
	if s := b.waitState(tk.ID, executor.StateFinished, true); s.Host != "test-host" {
		t.Errorf("answer %+v", s)
	}
}

func TestLostWhenProcessKilledFromOutside(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	tk := task("t-lost", "sleep 300")
	e.launch(tk)
	e.waitState(tk.ID, executor.StateRunning, false)
	p := readPid(t, e.Executor, tk.ID)
	eventually(t, "sleep started", func() bool { return len(groupMembers(p.Pgid)) >= 3 })
	if err := syscall.Kill(p.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s := e.waitState(tk.ID, executor.StateLost, false)
	if s.Message != "process vanished" {
		t.Errorf("message %q", s.Message)
	}
	// What the wrapper left behind is killed too: a new attempt must not
	// run beside it.
	eventually(t, "remains of the lost task gone", func() bool { return len(groupMembers(p.Pgid)) == 0 })
}

func TestNeverStarted(t *testing.T) {
	work := t.TempDir()
	e := newTestExec(t, testConfig(t, work))
	old, young := "t-claimed-long-ago", "t-claimed-just-now"
	for _, id := range []string{old, young} {
		if err := os.Mkdir(e.taskDir(id), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-time.Minute)
	if err := os.Chtimes(e.taskDir(old), past, past); err != nil {
		t.Fatal(err)
	}
	if err := e.Reconcile(context.Background(), []string{old, young}); err != nil {
		t.Fatal(err)
	}
	s := e.waitState(old, executor.StateLost, true)
	if !strings.HasPrefix(s.Message, "never started") {
		t.Errorf("message %q", s.Message)
	}
	e.waitState(young, executor.StateStaging, true)
	// The verdict is on disk: a launcher that was only slow cannot record
	// its process any more.
	if p := readPid(t, e.Executor, old); !p.NeverStarted {
		t.Errorf("pid file %+v, want neverStarted", p)
	}

	// Killing a task before it started forbids the start: KILLED.
	if err := e.Kill(context.Background(), young); err != nil {
		t.Fatal(err)
	}
	s = e.waitState(young, executor.StateKilled, false)
	if s.Message != "killed before it started" {
		t.Errorf("message %q", s.Message)
	}
}

func TestImplicitReconcileAndRetention(t *testing.T) {
	work := t.TempDir()
	a := newTestExec(t, testConfig(t, work))
	done, expired := task("t-done", "true"), task("t-expired", "true")
	a.launch(done, expired)
	a.waitState(done.ID, executor.StateFinished, false)
	a.waitState(expired.ID, executor.StateFinished, false)

	// Age one task beyond Retention (1h in testConfig).
	dir := a.taskDir(expired.ID)
	past := time.Now().Add(-2 * time.Hour)
	entries, _ := os.ReadDir(dir)
	for _, de := range entries {
		_ = os.Chtimes(filepath.Join(dir, de.Name()), past, past)
	}
	_ = os.Chtimes(dir, past, past)

	b := newTestExec(t, testConfig(t, work))
	if err := b.Reconcile(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	b.waitState(done.ID, executor.StateFinished, true)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("expired task dir still there: %v", err)
	}
	if ss := b.forTask(expired.ID); len(ss) != 0 {
		t.Errorf("expired task reported: %+v", ss)
	}
}

// Close leaves nothing running of the executor but the reapers of its
// still running children, which end with them. (Statuses, the tasks and
// calls after Close are the contract suite's.)
func TestCloseLeavesOnlyReapersBehind(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // in case of an early failure
		_ = e.Close()
		killAll(t, cfg.WorkDir)
		waitGroupWithin(t, &e.reapers, waitLimit)
	})
	release := filepath.Join(t.TempDir(), "release")
	tk := task("t-survivor", waitForFile(release))
	if err := e.Launch(context.Background(), []executor.Task{tk}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(waitLimit)
	for running := false; !running; {
		select {
		case s := <-e.Statuses():
			running = s.State == executor.StateRunning
		case <-timeout:
			t.Fatal("no RUNNING status")
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for range e.Statuses() { // closed: ends
	}
	touch(t, release)
	waitGroupWithin(t, &e.reapers, waitLimit)
	if _, err := os.Stat(filepath.Join(e.taskDir(tk.ID), "exit")); err != nil {
		t.Errorf("task did not finish after Close: %v", err)
	}
	goleak.VerifyNone(t)
}

func TestConfig(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New without WorkDir: %v", err)
	}
	if _, err := New(Config{WorkDir: t.TempDir(), KillGrace: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with negative KillGrace: %v", err)
	}
	f, err := NewFactory(Config{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ex, err := f(context.Background(), executor.Term{})
	if err != nil {
		t.Fatal(err)
	}
	le := ex.(*Executor)
	if le.cfg.PollInterval != DefaultPollInterval || le.cfg.Host == "" || le.cfg.Retention != DefaultRetention {
		t.Errorf("defaults not applied: %+v", le.cfg)
	}
	if err := ex.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTaskDirNames(t *testing.T) {
	long := strings.Repeat("ß/", 200)
	for _, id := range []string{"", ".", "..", "a/b", "job@2025-01-01T00:00:00Z#3", "%41", "ünï cödé", "~x", ".hidden", long} {
		name := taskDirName(id)
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 255 {
			t.Errorf("taskDirName(%q) = %q: not a safe file name", id, name)
		}
		if id == long {
			if !strings.HasPrefix(name, hashedPrefix) {
				t.Errorf("long id not hashed: %q", name)
			}
			continue
		}
		if back, ok := unescapeName(name); !ok || back != id {
			t.Errorf("unescapeName(%q) = %q, %v; want %q", name, back, ok, id)
		}
	}
	for _, foreign := range []string{"%4", "%zz", "%61", "a%2"} {
		if _, ok := unescapeName(foreign); ok {
			t.Errorf("unescapeName accepted %q", foreign)
		}
	}
}

func TestLongTaskIDRoundTrips(t *testing.T) {
	work := t.TempDir()
	a := newTestExec(t, testConfig(t, work))
	tk := task(strings.Repeat("long-id/", 40), "true")
	a.launch(tk)
	a.waitState(tk.ID, executor.StateFinished, false)
	b := newTestExec(t, testConfig(t, work))
	if err := b.Reconcile(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	b.waitState(tk.ID, executor.StateFinished, true)
}

func TestKillCarriedOutByNextExecutor(t *testing.T) {
	work := t.TempDir()
	cfg := testConfig(t, work)
	cfg.KillGrace = 300 * time.Millisecond
	a := newTestExec(t, cfg)
	stubborn := task("t-stubborn-adopted", "trap '' TERM\nsleep 300")
	marked := task("t-marked", "sleep 300")
	a.launch(stubborn, marked)
	a.waitState(stubborn.ID, executor.StateRunning, false)
	a.waitState(marked.ID, executor.StateRunning, false)
	ps, pm := readPid(t, a.Executor, stubborn.ID), readPid(t, a.Executor, marked.ID)
	eventually(t, "tasks' sleeps started", func() bool {
		return len(groupMembers(ps.Pgid)) >= 3 && len(groupMembers(pm.Pgid)) >= 3
	})
	// A sends SIGTERM and closes before its SIGKILL is due.
	if err := a.Kill(context.Background(), stubborn.ID); err != nil {
		t.Fatal(err)
	}
	// A scheduler that died between writing the marker and signalling.
	touch(t, filepath.Join(a.taskDir(marked.ID), "killed"))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	b := newTestExec(t, cfg)
	if err := b.Reconcile(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	b.waitState(stubborn.ID, executor.StateKilled, false)
	b.waitState(marked.ID, executor.StateKilled, false)
	eventually(t, "both process groups gone", func() bool {
		return len(groupMembers(ps.Pgid)) == 0 && len(groupMembers(pm.Pgid)) == 0
	})
}

func TestSlowLauncherIsOvertaken(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	tk := task("t-slow", "sleep 300")
	dir := e.taskDir(tk.ID)
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	// Another executor gave up on this launch before the launcher got to
	// record its process.
	if created, err := e.markNeverStarted(dir, "test"); err != nil || !created {
		t.Fatalf("markNeverStarted: %v %v", created, err)
	}
	j, err := e.start(context.Background(), dir, tk, preparedApp{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if j.state != executor.StateLost {
		t.Errorf("state %s, want LOST", j.state)
	}
	waitGroupWithin(t, &e.reapers, waitLimit) // the process was killed and reaped
}
