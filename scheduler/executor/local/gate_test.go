package local

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hasched/hasched/scheduler/executor"
)

// runWrapper runs the wrapper as start does, gives or withholds the
// go-ahead, and returns its exit code and whether the task's command ran.
func runWrapper(t *testing.T, goAhead bool) (int, bool) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("/bin/sh", "-c", wrapperScript)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HASCHED_TASK_DIR=" + dir,
		`HASCHED_COMMAND=touch "$HASCHED_TASK_DIR/ran"`,
		"HASCHED_SHARDING_CONTEXT={}",
	}
	gate, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{gate}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	gate.Close()
	if goAhead {
		if _, err := w.Write([]byte(goAheadMessage)); err != nil {
			t.Fatal(err)
		}
	}
	// Without the go-ahead this is what a launcher's death does.
	w.Close()
	err = cmd.Wait()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	_, statErr := os.Stat(filepath.Join(dir, "ran"))
	return code, statErr == nil
}

func TestWrapperRunsTheTaskOnlyAfterTheGoAhead(t *testing.T) {
	if code, ran := runWrapper(t, true); code != 0 || !ran {
		t.Fatalf("with the go-ahead: exit %d, ran %v; want 0 and the command run", code, ran)
	}
}

// A launcher killed between starting the process and recording its pid
// must leave a process that runs nothing: the next leader will judge the
// task never started and launch it again.
func TestWrapperRunsNothingWhenTheLauncherDiesBeforeRecordingIt(t *testing.T) {
	if code, ran := runWrapper(t, false); code != 125 || ran {
		t.Fatalf("without the go-ahead: exit %d, ran %v; want 125 and nothing run", code, ran)
	}
}

// A Launch whose start check refuses when the go-ahead is due starts
// nothing: the command never runs and the task ends LOST, never FINISHED.
// One whose check passes runs as any.
func TestTheStartCheckWithholdsTheGoAhead(t *testing.T) {
	te := newTestExec(t, testConfig(t, t.TempDir()))
	out := t.TempDir()
	for _, tc := range []struct {
		id    string
		check error
		want  executor.State
	}{
		{"refused", errors.New("the session may be lost"), executor.StateLost},
		{"allowed", nil, executor.StateFinished},
	} {
		ran := filepath.Join(out, tc.id)
		ctx := executor.WithStartCheck(context.Background(), func() error { return tc.check })
		if err := te.Launch(ctx, []executor.Task{task(tc.id, "touch "+shellQuote(ran))}); err != nil {
			t.Fatalf("%s: Launch: %v", tc.id, err)
		}
		end := te.waitState(tc.id, tc.want, false)
		if tc.check != nil && !strings.Contains(end.Message, tc.check.Error()) {
			t.Fatalf("%s: LOST with %q, want the check's reason", tc.id, end.Message)
		}
		_, err := os.Stat(ran)
		if ranIt := err == nil; ranIt != (tc.check == nil) {
			t.Fatalf("%s: the command ran: %v; want it to run only if the check passes", tc.id, ranIt)
		}
		for _, s := range te.forTask(tc.id) {
			if s.State.Terminal() && s.State != tc.want {
				t.Fatalf("%s: status %s, want only %s as the end", tc.id, s.State, tc.want)
			}
		}
	}
}
