package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// A file:// app URL naming a FIFO fails its task at once: the open does not
// block, the launch returns, and the other tasks of the batch start.
func TestFIFOAppURLFailsPromptly(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "app.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	e := newTestExec(t, testConfig(t, t.TempDir()))
	bad := task("t-fifo", "true")
	bad.AppURL = "file://" + fifo
	zero := task("t-dev-zero", "true")
	zero.AppURL = "file:///dev/zero"
	ok := task("t-after-fifo", "true")

	done := make(chan error, 1)
	go func() { done <- e.Launch(context.Background(), []executor.Task{bad, zero, ok}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Launch: %v", err)
		}
	case <-time.After(5 * time.Second):
		// Unblock the old code's open, so that the test ends.
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		<-done
		t.Fatal("Launch blocked on a FIFO app URL")
	}
	if s := e.waitState(bad.ID, executor.StateFailed, false); !strings.Contains(s.Message, "not a regular file") || !strings.Contains(s.Message, "named pipe") {
		t.Errorf("fifo: message %q", s.Message)
	}
	if s := e.waitState(zero.ID, executor.StateFailed, false); !strings.Contains(s.Message, "character device") {
		t.Errorf("/dev/zero: message %q", s.Message)
	}
	e.waitState(ok.ID, executor.StateFinished, false)
}

// A package larger than MaxAppBytes fails its task.
func TestAppPackageSizeCap(t *testing.T) {
	pkg := writeFile(t, filepath.Join(t.TempDir(), "app.tar.gz"), appTarball(t))
	cfg := testConfig(t, t.TempDir())
	cfg.MaxAppBytes = 64
	e := newTestExec(t, cfg)
	big := task("t-big-app", "./bin/start.sh")
	big.AppURL = "file://" + pkg
	e.launch(big)
	if s := e.waitState(big.ID, executor.StateFailed, false); !strings.Contains(s.Message, "package too large") {
		t.Errorf("message %q", s.Message)
	}
	if _, err := e.fetchApp(context.Background(), big); !errors.Is(err, ErrPackageTooLarge) {
		t.Errorf("fetchApp: %v, want ErrPackageTooLarge", err)
	}
}
