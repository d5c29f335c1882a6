package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// What a worker (package scheduler/worker) and its orphan watchdog need
// beyond the executor contract: the process group behind a task, a kill
// that does not wait for KillGrace, and the tasks a work directory still
// runs. A worker's safety clock cannot wait KillGrace: by then the
// coordinator may have expired its session and the task may be running
// elsewhere.

// Group returns the process group of a started task as its pid file
// records it: the group id and its leader's start time (clock ticks after
// boot, /proc/<pid>/stat field 22). ok is false while the task has not
// started, and for a task that never will.
func (e *Executor) Group(taskID string) (pgid int, startTime uint64, ok bool) {
	p, err := readPidFile(e.taskDir(taskID))
	if err != nil || p.NeverStarted || p.Pgid <= 0 {
		return 0, 0, false
	}
	return p.Pgid, p.StartTime, true
}

// KillNow is Kill without the grace: it writes the killed marker (so that
// every executor judges the task KILLED and a launcher still starting it
// gives up) and SIGKILLs the task's process group at once. A task that has
// ended keeps its verdict, but its group is SIGKILLed all the same: what it
// left running must not outlive the caller's promise. Unknown tasks are not
// an error.
func (e *Executor) KillNow(ctx context.Context, taskID string) error {
	end, err := e.begin()
	if err != nil {
		return err
	}
	defer end()
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := e.taskDir(taskID)
	if _, err := os.Stat(dir); notExist(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("kill %s: %w", taskID, err)
	}
	rec := e.lockRecord(taskID)
	defer rec.mu.Unlock()
	j, err := e.judge(dir)
	if err != nil {
		return fmt.Errorf("kill %s: %w", taskID, err)
	}
	if !j.terminal() {
		if gone, err := e.markKilled(dir, time.Now().UTC()); gone || err != nil {
			if err != nil {
				err = fmt.Errorf("kill %s: %w", taskID, err)
			}
			return err
		}
	}
	if p, err := readPidFile(dir); err == nil && !p.NeverStarted {
		if err := e.host.signalGroup(p, syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill %s: %w", taskID, err)
		}
		// Nothing is left for a graceful kill to do.
		rec.termSignaled = true
		e.mu.Lock()
		delete(e.kills, taskID)
		e.mu.Unlock()
		e.log.Info("task killed at once", "task_id", taskID, "pgid", p.Pgid)
	}
	// The group is gone only once the kernel has delivered the signal; the
	// next poll reports the verdict if this judgement still sees it alive.
	if j, err = e.judge(dir); err != nil {
		return fmt.Errorf("kill %s: %w", taskID, err)
	}
	e.report(rec, j, false, false)
	e.poke()
	return nil
}

// Live returns the IDs of the tasks of the work directory that have not
// ended (staging or running), whoever launched them. A worker that owns its
// work directory kills those it does not own.
func (e *Executor) Live(ctx context.Context) ([]string, error) {
	end, err := e.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	entries, err := os.ReadDir(e.cfg.tasksDir())
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	var ids []string
	for _, de := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !de.IsDir() {
			continue
		}
		dir := filepath.Join(e.cfg.tasksDir(), de.Name())
		id, ok := taskIDOf(dir)
		if !ok {
			continue
		}
		j, err := e.judge(dir)
		if err != nil {
			return nil, fmt.Errorf("judge %s: %w", id, err)
		}
		if !j.terminal() {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// KillGroup SIGKILLs the process group of task taskID of the work directory
// workDir (the Config.WorkDir of the executors that ran it), if it was
// started and its group is still the task's. It is for a process that runs
// no executor: the orphan watchdog. It writes nothing: the executor that
// next judges the task finds it LOST (or KILLED, if a kill was asked for).
func KillGroup(workDir, taskID string) (killed bool, err error) {
	dir := filepath.Join(workDir, "tasks", taskDirName(taskID))
	p, err := readPidFile(dir)
	if notExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if p.NeverStarted || p.Pgid <= 0 {
		return false, nil
	}
	h := currentHost()
	if !h.groupIsOurs(p) {
		return false, nil
	}
	if err := h.signalGroup(p, syscall.SIGKILL); err != nil {
		return false, err
	}
	return true, nil
}
