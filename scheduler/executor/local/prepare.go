package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/hasched/hasched/scheduler/executor"
)

// Tasks prepared ahead (executor.Preparer). A start is a task directory of
// nine metadata operations and a fork, 10–30 ms on the 2-core machine
// whose disk also syncs the store's writes, and all of it used to come
// after the fire's running nodes were written. The scheduler knows its
// fires fireLead ahead, so Prepare does that work then, where no one can
// see it: in a staged directory under tmp/ it writes task.json, opens the
// output files, takes the alive lock, forks the wrapper, which waits for
// its go-ahead, and writes the pid file. Launch then claims the task by
// renaming the staged directory to the task's (renameat2 with
// RENAME_NOREPLACE: of it and any other claim, a Mkdir or a rename, exactly
// one wins, as of two Mkdirs) and gives the go-ahead. The claimed
// directory appears whole, its pid file in it, so no executor ever sees
// it without one. The working directory of the wrapper and of the task's
// shell, both forked ahead, moves with it; the task's shell finds that its
// $PWD names it no more and takes the task directory's path.
//
// Nothing under tmp/ is a task: a prepared task that is never launched was
// never claimed. Its wrapper exits when its go-ahead pipe closes unwritten,
// whoever closes it: Launch (another claim won, or the task changed), the
// monitor (not launched within preparedTTL), Close, or this process's
// death; its directory is removed then, or with tmp/'s leftovers.

const (
	// maxPrepared bounds the tasks prepared and not yet launched: each is
	// a process waiting. A pass of more fires launches the rest afresh.
	maxPrepared = 64
	// preparedTTL is how long a prepared task waits for its Launch: far
	// beyond the lead and a pass's writes, well below StartGrace.
	preparedTTL = 5 * time.Second
	// stagedPrefix names staged directories in tmp/.
	stagedPrefix = "staged-"
)

// errClaimed says that a task's directory existed when it was to be
// prepared: its Launch adopts it.
var errClaimed = errors.New("task launched before")

// prepared is one task prepared ahead of its Launch.
type prepared struct {
	// task is the task.json written: the Launch must be of the same task.
	task []byte
	made time.Time
	// done is closed once the fields below are set.
	done chan struct{}
	// dir is the staged directory ("" if none was made).
	dir string
	// s is the waiting wrapper (cmd nil if none was forked).
	s   spawned
	err error
}

// Prepare prepares, in the background, the tasks that a Launch can claim
// by a rename: those with a command and no app package (a fetch is
// Launch's). It never blocks; see executor.Preparer.
func (e *Executor) Prepare(tasks []executor.Task) {
	if e.noPrepare.Load() {
		return
	}
	for _, t := range tasks {
		if t.ID == "" || strings.TrimSpace(t.Command) == "" || t.AppURL != "" || e.isPrepared(t.ID) {
			continue // the scheduler hands a task ahead and again at its pass
		}
		tj, err := json.MarshalIndent(t, "", "  ")
		if err != nil {
			continue
		}
		end, err := e.begin()
		if err != nil {
			return
		}
		p := &prepared{task: tj, made: time.Now(), done: make(chan struct{})}
		e.mu.Lock()
		if len(e.prepared) >= maxPrepared || e.prepared[t.ID] != nil {
			e.mu.Unlock()
			end()
			continue
		}
		e.prepared[t.ID] = p
		e.mu.Unlock()
		go func() {
			defer end()
			defer close(p.done)
			select {
			case e.prepSlots <- struct{}{}:
			case <-e.ctx.Done():
				p.err = ErrClosed
				return
			}
			defer func() { <-e.prepSlots }()
			p.err = e.stage(p, t)
		}()
	}
}

func (e *Executor) isPrepared(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.prepared[id] != nil
}

// stage makes p: the staged directory of t, complete, with its wrapper
// waiting.
func (e *Executor) stage(p *prepared, t executor.Task) error {
	final := e.taskDir(t.ID)
	if _, err := os.Stat(final); err == nil {
		return errClaimed
	} else if !notExist(err) {
		return err
	}
	dir, err := os.MkdirTemp(e.cfg.tmpDir(), stagedPrefix+"*")
	if err != nil {
		return err
	}
	p.dir = dir
	if err := os.Chmod(dir, 0o750); err != nil {
		return err
	}
	// No one reads a staged directory: its files need no atomic writes.
	if err := os.WriteFile(filepath.Join(dir, fileTask), p.task, 0o640); err != nil {
		return err
	}
	s, failure, err := e.spawn(dir, dir, final, t)
	if err != nil {
		return err
	}
	if failure != "" {
		// Launch starts it afresh, and records the failure if it recurs.
		return errors.New(failure)
	}
	p.s = s
	b, err := json.Marshal(s.pid)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, filePid), b, 0o640)
}

// takePrepared removes id's preparation from the executor and returns it,
// or nil: whoever takes one launches or discards it.
func (e *Executor) takePrepared(id string) *prepared {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.prepared[id]
	delete(e.prepared, id)
	return p
}

// discard undoes a preparation that will not be launched: its wrapper,
// told nothing, exits, and its staged directory goes.
func (e *Executor) discard(p *prepared) {
	<-p.done
	if p.s.cmd != nil {
		p.s.goAhead.Close()
		e.reap(p.s.cmd)
	}
	if p.dir != "" {
		if err := os.RemoveAll(p.dir); err != nil {
			e.log.Warn("cannot remove a staged task dir", "dir", p.dir, "error", err)
		}
	}
}

// launchPrepared launches t from its preparation p. handled is false when p
// cannot be used (it failed, or was of another task): p is discarded, and
// the caller launches t afresh.
func (e *Executor) launchPrepared(ctx context.Context, log hclog.Logger, p *prepared, t executor.Task) (handled bool, err error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		e.discard(p)
		return true, fmt.Errorf("launch %s: %w", t.ID, e.closedOr(ctx.Err()))
	}
	if p.err != nil {
		if !errors.Is(p.err, errClaimed) {
			log.Debug("task prepared in vain; launching it afresh", "error", p.err)
		}
		e.discard(p)
		return false, nil
	}
	if tj, err := json.MarshalIndent(t, "", "  "); err != nil || !bytes.Equal(tj, p.task) {
		e.discard(p)
		return false, nil
	}
	dir := e.taskDir(t.ID)
	// The claim.
	switch err := unix.Renameat2(unix.AT_FDCWD, p.dir, unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE); {
	case err == nil:
	case errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOTEMPTY):
		e.discard(p)
		return true, e.adopt(t.ID, dir)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EXDEV):
		// The work directory's file system cannot rename without
		// replacing (NFS; a plain rename could replace a claim made a
		// moment before), or tmp/ and tasks/ are on different file
		// systems: nothing is prepared from now on.
		if !e.noPrepare.Swap(true) {
			log.Info("tasks are not prepared ahead: the work directory cannot claim a staged task dir", "error", err)
		}
		e.discard(p)
		return false, nil
	default:
		// The staged directory is unusable (removed, unreadable): the
		// task is launched afresh, whose claim reports its own error.
		log.Warn("cannot claim a prepared task; launching it afresh", "error", err)
		e.discard(p)
		return false, nil
	}
	rec := e.claimed(t.ID)
	defer rec.mu.Unlock()
	j := e.release(ctx, dir, t.ID, p.s)
	if j.state == executor.StateRunning {
		log.Info("task started", "pid", j.pid.Pid, "task_dir", dir, "prepared", true)
	}
	e.report(rec, j, true, false)
	return true, nil
}

// expirePrepared discards the preparations older than preparedTTL: their
// Launch did not come (the term's write failed, or it ended).
func (e *Executor) expirePrepared() {
	e.mu.Lock()
	var old []*prepared
	for id, p := range e.prepared {
		if time.Since(p.made) > e.prepTTL {
			old = append(old, p)
			delete(e.prepared, id)
		}
	}
	e.mu.Unlock()
	for _, p := range old {
		e.discard(p)
	}
}

// discardPrepared discards every preparation (Close).
func (e *Executor) discardPrepared() {
	e.mu.Lock()
	all := e.prepared
	e.prepared = map[string]*prepared{}
	e.mu.Unlock()
	for _, p := range all {
		e.discard(p)
	}
}
