package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// records counts the task records the executor keeps in memory.
func (e *Executor) records() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.tasks)
}

// The janitor forgets the tasks whose directories it removes: a long term
// must not keep a record of every task it ever saw.
func TestJanitorForgetsRemovedTasks(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	const n = 5
	var ids []string
	for i := range n {
		tk := task(fmt.Sprintf("t-janitor-%d", i), "true")
		e.launch(tk)
		ids = append(ids, tk.ID)
	}
	for _, id := range ids {
		e.waitState(id, executor.StateFinished, false)
	}
	if got := e.records(); got != n {
		t.Fatalf("%d records before retention, want %d", got, n)
	}
	// Age every task beyond Retention (1h in testConfig).
	past := time.Now().Add(-2 * time.Hour)
	for _, id := range ids {
		dir := e.taskDir(id)
		entries, _ := os.ReadDir(dir)
		for _, de := range entries {
			_ = os.Chtimes(filepath.Join(dir, de.Name()), past, past)
		}
		_ = os.Chtimes(dir, past, past)
	}
	e.cleanup(context.Background())
	for _, id := range ids {
		if _, err := os.Stat(e.taskDir(id)); !os.IsNotExist(err) {
			t.Errorf("%s: dir still there: %v", id, err)
		}
	}
	if got := e.records(); got != 0 {
		t.Errorf("%d records after retention removed every task dir, want 0", got)
	}
}
