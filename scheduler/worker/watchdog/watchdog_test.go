package watchdog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hasched/hasched/internal/wait"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/executor/local"
	"github.com/hasched/hasched/scheduler/worker/watchdog"
	"github.com/hasched/hasched/scheduler/worker/watchdog/watchdogtest"
)

// TestMain doubles as the watchdog command (watchdogtest.Command).
func TestMain(m *testing.M) {
	watchdogtest.Main()
	goleak.VerifyTestMain(m)
}

const limit = 15 * time.Second

// startTask launches a task that runs until killed and returns its pgid.
func startTask(t *testing.T, dir, id string) int {
	t.Helper()
	ex, err := local.New(local.Config{WorkDir: dir, Host: "h", PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	go func() {
		for range ex.Statuses() {
		}
	}()
	if err := ex.Launch(context.Background(), []executor.Task{{ID: id, Job: "j", Command: "while :; do sleep 0.05; done"}}); err != nil {
		t.Fatal(err)
	}
	pgid, _, ok := ex.Group(id)
	if !ok {
		t.Fatal("task has no group")
	}
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	return pgid
}

func groupAlive(pgid int) bool {
	entries, _ := os.ReadDir("/proc")
	for _, de := range entries {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 3 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			return true
		}
	}
	return false
}

// A watchdog leaves the stamped tasks alone before the deadline and
// SIGKILLs them once it has passed, then exits when no deadline is ahead.
func testKillsPastDeadline(t *testing.T, start func(dir string) (done func() error)) {
	dir := t.TempDir()
	pgid := startTask(t, dir, "t1")
	deadline := time.Now().Add(1500 * time.Millisecond)
	if err := watchdog.WriteStamp(dir, watchdog.Stamp{Deadline: deadline, Tasks: []string{"t1"}}); err != nil {
		t.Fatal(err)
	}
	done := start(dir)
	time.Sleep(time.Until(deadline) - 500*time.Millisecond)
	if !groupAlive(pgid) {
		t.Fatal("the task was killed before its deadline")
	}
	wait.Poll{Timeout: limit, Interval: 10 * time.Millisecond}.Until(t, "task killed after the deadline", func() bool { return !groupAlive(pgid) })
	if late := time.Since(deadline); late < 0 {
		t.Fatalf("killed %v before the deadline", -late)
	}
	if err := done(); err != nil {
		t.Fatal(err)
	}
}

func TestRunKillsOrphansPastTheDeadlineOnly(t *testing.T) {
	testKillsPastDeadline(t, func(dir string) func() error {
		errc := make(chan error, 1)
		go func() {
			errc <- watchdog.Run(context.Background(), watchdog.Config{Dir: dir, Interval: 20 * time.Millisecond, Linger: 300 * time.Millisecond})
		}()
		wait.Poll{Timeout: limit, Interval: 10 * time.Millisecond}.Until(t, "watchdog holds its lock", func() bool {
			ok, _ := watchdog.Running(dir)
			return ok
		})
		// A second one is refused.
		if err := watchdog.Run(context.Background(), watchdog.Config{Dir: dir}); err != watchdog.ErrRunning {
			t.Errorf("second watchdog: %v, want ErrRunning", err)
		}
		return func() error {
			select {
			case err := <-errc:
				return err
			case <-time.After(limit):
				return fmt.Errorf("watchdog did not exit with no deadline ahead")
			}
		}
	})
}

func TestDetachedWatchdogProcessKillsOrphansPastTheDeadlineOnly(t *testing.T) {
	testKillsPastDeadline(t, func(dir string) func() error {
		if err := watchdog.Start(context.Background(), watchdogtest.CommandLinger(dir, 300*time.Millisecond), limit); err != nil {
			t.Fatal(err)
		}
		wait.Poll{Timeout: limit, Interval: 10 * time.Millisecond}.Until(t, "detached watchdog holds its lock", func() bool {
			ok, _ := watchdog.Running(dir)
			return ok
		})
		return func() error {
			wait.Poll{Timeout: limit, Interval: 20 * time.Millisecond}.Until(t, "detached watchdog exits", func() bool {
				ok, _ := watchdog.Running(dir)
				return !ok
			})
			b, _ := os.ReadFile(filepath.Join(dir, watchdog.LogFile))
			if !strings.Contains(string(b), "killed an orphaned task") {
				t.Errorf("watchdog log does not tell of the kill:\n%s", b)
			}
			return nil
		}
	})
}

// Running only tests the lock: a watchdog starting while a worker looks
// whether one runs must not find the lock held by the look and exit.
func TestRunningNeverMakesAStartingWatchdogExit(t *testing.T) {
	dir := t.TempDir()
	stop := make(chan struct{})
	looked := make(chan struct{})
	go func() {
		defer close(looked)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := watchdog.Running(dir); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(stop); <-looked }()
	for i := 0; i < 200; i++ {
		if err := watchdog.Run(context.Background(), watchdog.Config{Dir: dir, Interval: time.Millisecond, Linger: time.Millisecond}); err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
	}
}
