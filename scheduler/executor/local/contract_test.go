package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/executor/executortest"
)

// TestContract runs the executor contract suite on executors sharing one
// work directory, as the scheduler processes of one host do.
func TestContract(t *testing.T) {
	executortest.Run(t, newContractHarness(t))
}

// contractHarness: tasks are shell commands that record each start in
// marks/<id>.starts and, if they block, wait for marks/<id>.release.
type contractHarness struct {
	cfg   Config
	marks string

	mu     sync.Mutex
	opened []*Executor
}

func newContractHarness(t *testing.T) *contractHarness {
	h := &contractHarness{cfg: testConfig(t, t.TempDir()), marks: t.TempDir()}
	// Tasks outlive their executors by design: end whatever is left, and
	// wait for the reapers, so that goleak sees nothing of the suite.
	t.Cleanup(func() {
		killAll(t, h.cfg.WorkDir)
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, e := range h.opened {
			_ = e.Close()
			waitGroupWithin(t, &e.reapers, waitLimit)
		}
	})
	return h
}

func (h *contractHarness) Open(ctx context.Context) (executor.Executor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e, err := New(h.cfg)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.opened = append(h.opened, e)
	h.mu.Unlock()
	return e, nil
}

func (h *contractHarness) mark(id, kind string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(h.marks, hex.EncodeToString(sum[:12])+"."+kind)
}

func (h *contractHarness) Task(id string, b executortest.Behaviour) executor.Task {
	cmd := "echo start >>" + shellQuote(h.mark(id, "starts")) + "\n"
	switch b {
	case executortest.Succeeds:
		cmd += "exit 0"
	case executortest.Fails:
		cmd += fmt.Sprintf("exit %d", executortest.FailExitCode)
	case executortest.Blocks:
		cmd += waitForFile(h.mark(id, "release"))
	case executortest.BlocksIgnoringTerm:
		// Ignored here, it is ignored by the sleeps too.
		cmd = "trap '' TERM\n" + cmd + waitForFile(h.mark(id, "release"))
	}
	return task(id, cmd)
}

func (h *contractHarness) Release(_ context.Context, id string) error {
	return os.WriteFile(h.mark(id, "release"), nil, 0o644)
}

// Running: the task's process group has live members.
func (h *contractHarness) Running(id string) (bool, error) {
	p, err := readPidFile(filepath.Join(h.cfg.tasksDir(), taskDirName(id)))
	if notExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return p.Pgid > 0 && len(groupMembers(p.Pgid)) > 0, nil
}

func (h *contractHarness) Starts(id string) (int, error) {
	b, err := os.ReadFile(h.mark(id, "starts"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	return strings.Count(string(b), "start\n"), err
}

func (h *contractHarness) Host() string { return h.cfg.Host }

func (h *contractHarness) Timeout() time.Duration { return waitLimit }
