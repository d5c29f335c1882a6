// Package worker runs the tasks the leader places on this process: the
// worker side of the cluster executor (package scheduler/executor/cluster),
// through the layout of scheduler/store/cluster.go.
//
// The one invariant it exists for: a task runs here only while this
// process can be sure the coordinator keeps its registration, so that the
// leader, which runs a worker's tasks elsewhere only once that
// registration is gone on the server, never finds one of them still
// running. Hence:
//
//   - Every write is fenced by the incarnation's registration (see fence):
//     an incarnation whose session expired writes nothing more.
//   - The safety clock: at the session's SafeUntil (or when it is Done)
//     every task is SIGKILLed at once, before the server can expire the
//     session; the worker then starts a new incarnation on a new session
//     and claims nothing of the old one (the leader marks those LOST).
//   - The orphan watchdog (package watchdog), a process of its own, kills
//     the tasks at the last stamped SafeUntil if this process dies; a
//     restart within that grace claims them for its new incarnation.
//   - Only placements bound to the current incarnation are launched or
//     reported; the work directory is flock'ed, and after its claims a
//     new incarnation kills every task of the directory it does not own.
package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/executor/local"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/worker/watchdog"
)

// Files of the work directory besides the local executor's and the
// watchdog's.
const (
	// LockFile is flock'ed by the running worker.
	LockFile = "worker.lock"
	// IncarnationFile names the incarnation that last registered, so that
	// a restart claims its placements.
	IncarnationFile = "incarnation.json"
)

// Worker registers this process in the coordinator and runs the tasks the
// leader places on it. Run it once at a time; Drain ends it.
type Worker struct {
	cfg Config
	log hclog.Logger

	mu     sync.Mutex
	info   model.Worker // the current registration (Incarnation "" when none)
	active *run         // the Run in progress
}

// New validates cfg and fills in its defaults.
func New(cfg Config) (*Worker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, log: cfg.Logger.Named("worker").With("worker", cfg.Name)}
	w.info = w.registration("", false)
	return w, nil
}

func (w *Worker) registration(inc string, draining bool) model.Worker {
	labels := make(map[string]string, len(w.cfg.Labels))
	for k, v := range w.cfg.Labels {
		labels[k] = v
	}
	return model.Worker{
		Name: w.cfg.Name, Incarnation: inc, Host: w.cfg.Host, CPUs: w.cfg.CPUs, MemoryMB: w.cfg.MemoryMB,
		Labels: labels, Draining: draining, Started: time.Now().UTC(), API: w.cfg.API,
	}
}

// Info is the worker as it is registered now (Incarnation empty while it
// is not), for the status page.
func (w *Worker) Info() model.Worker {
	w.mu.Lock()
	defer w.mu.Unlock()
	info := w.info
	info.Labels = make(map[string]string, len(w.info.Labels))
	for k, v := range w.info.Labels {
		info.Labels[k] = v
	}
	return info
}

func (w *Worker) setInfo(info model.Worker) {
	w.mu.Lock()
	w.info = info
	w.mu.Unlock()
}

// Drain ends the worker's Run gently: it registers as draining (the leader
// places nothing more here), waits for TRANSIENT tasks to end, at most
// DrainTimeout, then kills what still runs, DAEMON tasks at once, reports
// it all and closes the session. Run then returns nil. ErrNotRunning if
// no Run is in progress; ctx bounds only the wait of this call.
func (w *Worker) Drain(ctx context.Context) error {
	w.mu.Lock()
	r := w.active
	w.mu.Unlock()
	if r == nil {
		return ErrNotRunning
	}
	req := drainReq{done: make(chan error, 1)}
	select {
	case r.drainCh <- req:
	case <-r.done:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

type drainReq struct{ done chan error }

// run is one Run: the work-dir lock, the local executor and the
// incarnations that follow one another.
type run struct {
	w   *Worker
	cfg Config
	log hclog.Logger
	ex  *local.Executor

	drainCh chan drainReq
	done    chan struct{}

	// mu guards cur and the owned tasks of every life.
	mu  sync.Mutex
	cur *life

	// drains are the Drain calls waiting; draining says one was asked.
	drains   []drainReq
	draining bool
}

// owned is a task placed on the current incarnation.
type owned struct {
	task executor.Task
	// terminal: its final status was reported (or it was given up).
	terminal bool
	// launched: Launch returned; killAsked: a kill came first and is
	// carried out once it does.
	launched, killAsked, killSent bool
}

// Run takes the work directory, starts the watchdog and serves one
// incarnation after another until ctx ends (it then returns nil, leaving
// the tasks running for a restart to adopt; the watchdog bounds them) or
// Drain is done. It returns ErrWorkDirBusy if another process holds the
// work directory.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.active != nil {
		w.mu.Unlock()
		return ErrRunning
	}
	r := &run{w: w, cfg: w.cfg, log: w.log, drainCh: make(chan drainReq), done: make(chan struct{})}
	w.active = r
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.active = nil
		w.info = w.registration("", false)
		w.mu.Unlock()
		close(r.done)
	}()

	if err := os.MkdirAll(w.cfg.WorkDir, 0o750); err != nil {
		return fmt.Errorf("worker: create work dir: %w", err)
	}
	lock, err := lockWorkDir(w.cfg.WorkDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	r.ensureWatchdog(ctx)
	ex, err := local.New(w.cfg.Local)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	r.ex = ex
	var fwd sync.WaitGroup
	fwd.Add(1)
	go func() {
		defer fwd.Done()
		for s := range ex.Statuses() {
			r.onStatus(s)
		}
	}()
	// Closing the executor ends the forwarder (deferred calls run last
	// first); the tasks run on.
	defer fwd.Wait()
	defer ex.Close()

	prev := r.readIncarnation()
	for {
		err := r.life(ctx, prev)
		prev = ""
		switch {
		case errors.Is(err, errDrained):
			r.answerDrains(nil)
			return nil
		case ctx.Err() != nil:
			r.answerDrains(ErrNotRunning)
			return nil
		case r.draining:
			// The safety clock killed everything while draining: done.
			r.answerDrains(nil)
			return nil
		}
		w.log.Warn("incarnation over; registering anew", "reason", err)
	}
}

func (r *run) answerDrains(err error) {
	for _, d := range r.drains {
		d.done <- err
	}
	r.drains = nil
}

// lockWorkDir flocks the work directory's lock file.
func lockWorkDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrWorkDirBusy, dir)
		}
		return nil, fmt.Errorf("worker: lock %s: %w", path, err)
	}
	return f, nil
}

// ensureWatchdog starts the work directory's watchdog if none runs.
func (r *run) ensureWatchdog(ctx context.Context) {
	running, err := watchdog.Running(r.cfg.WorkDir)
	if err != nil {
		r.log.Error("cannot tell whether the watchdog runs", "error", err)
		return
	}
	if running {
		return
	}
	if err := watchdog.Start(ctx, r.cfg.WatchdogCommand, watchdogStartTimeout); err != nil {
		if ctx.Err() != nil {
			return
		}
		r.log.Error("cannot start the orphan watchdog: tasks of a dead worker would outlive it", "error", err)
		return
	}
	r.log.Debug("started the orphan watchdog")
}

// incarnationRecord is the incarnation file.
type incarnationRecord struct {
	Name        string `json:"name"`
	Incarnation string `json:"incarnation"`
}

// readIncarnation returns the incarnation that last registered from this
// work directory under this name ("" if none).
func (r *run) readIncarnation() string {
	b, err := os.ReadFile(filepath.Join(r.cfg.WorkDir, IncarnationFile))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("cannot read the previous incarnation", "error", err)
		}
		return ""
	}
	var rec incarnationRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.Name != r.cfg.Name {
		return ""
	}
	if _, _, err := model.ParseWorkerID(rec.Name + model.WorkerIDSeparator + rec.Incarnation); err != nil {
		return ""
	}
	return rec.Incarnation
}

func (r *run) writeIncarnation(inc string) error {
	b, err := json.Marshal(incarnationRecord{Name: r.cfg.Name, Incarnation: inc})
	if err != nil {
		return err
	}
	path := filepath.Join(r.cfg.WorkDir, IncarnationFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func newIncarnation() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// onStatus forwards a local status as a report of the current incarnation,
// if the task is one of its own and not over.
func (r *run) onStatus(s executor.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.cur
	if l == nil || l.dead {
		return
	}
	o := l.owned[s.TaskID]
	if o == nil || o.terminal {
		return
	}
	if s.State.Terminal() {
		o.terminal = true
	}
	s.Reconcile = false
	l.outbox.push(model.Report{Incarnation: l.inc, Status: s})
}

// sortedIDs returns the keys of a set, sorted.
func sortedIDs[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
