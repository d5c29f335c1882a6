package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// wrapperScript is what the task's process group leader runs. It starts
// the task's shell at once, and that shell waits for the launcher's
// go-ahead on fd 3, which comes only once the pid file is recorded: a
// launcher killed between fork and record closes the pipe unwritten by
// dying, the task's shell exits without running anything, and so does the
// wrapper, leaving no exit file, so the next leader's "never started"
// verdict is true and its relaunch is not a second run. The go-ahead is
// two lines, one for each: the task's shell reads the first and runs the
// task's command (eval, in that shell: $$, $0 and $1, the sharding
// context, are what /bin/sh -c gives; its $PWD is made right if a rename
// has moved it since, see prepare.go), and the wrapper reads the second
// once the shell has ended (a shell's read takes a pipe byte by byte, so
// the first read leaves the second line). Only then does it record the
// exit code, atomically (exit.tmp, then mv), so that nobody ever reads half
// a code. Forked before the go-ahead, the task's shell costs no process
// start after it: the go-ahead is the last thing between the launch and
// the command. The wrapper exits after the exit file exists, which is what
// lets judge test liveness before reading the exit file. Its fd 4 holds
// the task's alive lock (fileAlive) until it exits; the command does not
// get it, so the lock says whether the wrapper lives, whatever the command
// leaves running. It sets no traps: a wrapper killed by a signal leaves no
// exit file, and the task counts as killed (marker) or lost.
const wrapperScript = `/bin/sh -c 'IFS= read -r hasched_go <&3 && [ "$hasched_go" = go ] || exit 125
exec 3<&-
unset hasched_go
[ "$PWD" -ef . ] || cd -P . || exit 125
eval "$HASCHED_COMMAND"' hasched "$HASCHED_SHARDING_CONTEXT" 4<&-
hasched_code=$?
IFS= read -r hasched_go <&3 || exit 125
exec 3<&-
[ "$hasched_go" = go ] || exit 125
printf '%s\n' "$hasched_code" >"$HASCHED_TASK_DIR/exit.tmp" &&
	mv -f "$HASCHED_TASK_DIR/exit.tmp" "$HASCHED_TASK_DIR/exit"
exit "$hasched_code"
`

// goAheadMessage lets a waiting wrapper run its task: a line for the
// task's shell and one for the wrapper (wrapperScript).
const goAheadMessage = "go\ngo\n"

// Launch starts tasks, up to launchParallel at once. A task whose
// directory exists was launched before, by this or another executor: it is
// not started again but adopted, and its current state is reported. A task whose app cannot be
// fetched, or whose process cannot be forked, ends FAILED; Launch itself
// fails only for invalid input, a cancelled context (the tasks not yet
// claimed were not launched) or a work directory it cannot write.
//
// Its one slow step, an app package's fetch, is bounded by FetchTimeout
// whether or not ctx has a deadline; a fetch cut off by it fails the task
// (claimed, so it is not fetched again and again). Concurrent Launch calls
// share no lock, so one waiting for a slow package holds up no other.
func (e *Executor) Launch(ctx context.Context, tasks []executor.Task) error {
	end, err := e.begin()
	if err != nil {
		return err
	}
	defer end()
	for _, t := range tasks {
		if t.ID == "" {
			return fmt.Errorf("%w: empty task ID (job %q)", ErrInvalidTask, t.Job)
		}
		if strings.TrimSpace(t.Command) == "" {
			return fmt.Errorf("%w: task %s has no command", ErrInvalidTask, t.ID)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.ctx, cancel) // Close cancels in-flight launches
	defer stop()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		slots = make(chan struct{}, launchParallel)
		seen  = make(map[string]bool, len(tasks))
	)
	fail := func(err error) {
		once.Do(func() { first = err; cancel() })
	}
	for _, t := range tasks {
		if seen[t.ID] {
			continue // one launch per ID: its statuses stay in order
		}
		seen[t.ID] = true
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if err := ctx.Err(); err != nil {
			fail(fmt.Errorf("launch %s: %w", t.ID, e.closedOr(err)))
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			if err := e.launchOne(ctx, t); err != nil {
				fail(err)
			}
		}()
	}
	wg.Wait()
	return first
}

// launchParallel is how many tasks of one Launch start at once. A start is
// a few milliseconds of files and a fork, and a fire's shards come in one
// Launch: one after another, the eighth shard of a fire started some 40 ms
// after the first on the 2-core machine. A package that downloads slowly
// holds up only its own task. Claims stay exact at any concurrency (one
// Mkdir wins), as between processes.
const launchParallel = 8

// closedOr reports ErrClosed for a context cancelled by Close.
func (e *Executor) closedOr(err error) error {
	if e.ctx.Err() != nil {
		return ErrClosed
	}
	return err
}

func (e *Executor) launchOne(ctx context.Context, t executor.Task) error {
	log := e.log.With("task_id", t.ID, "job", t.Job)
	if p := e.takePrepared(t.ID); p != nil {
		if handled, err := e.launchPrepared(ctx, log, p, t); handled {
			return err
		}
	}
	dir := e.taskDir(t.ID)
	if _, err := os.Stat(dir); err == nil {
		return e.adopt(t.ID, dir)
	} else if !notExist(err) {
		return fmt.Errorf("launch %s: %w", t.ID, err)
	}

	// The app is fetched before the claim: the time between claim and pid
	// file must stay well below StartGrace, or other executors would give
	// the task up as never started while it downloads.
	var app preparedApp
	var fetchErr error
	if t.AppURL != "" {
		app, fetchErr = e.fetchApp(ctx, t)
		if fetchErr != nil && ctx.Err() != nil {
			// Cancelled, not broken: nothing is claimed, the task can be
			// launched again.
			return fmt.Errorf("launch %s: %w", t.ID, e.closedOr(ctx.Err()))
		}
		defer app.discard()
	}

	// The claim: exactly one Mkdir succeeds, whatever the number of
	// executors and processes.
	if err := os.Mkdir(dir, 0o750); errors.Is(err, fs.ErrExist) {
		return e.adopt(t.ID, dir)
	} else if err != nil {
		return fmt.Errorf("claim %s: %w", t.ID, err)
	}
	rec := e.claimed(t.ID)
	defer rec.mu.Unlock()

	j, err := e.start(ctx, dir, t, app, fetchErr)
	if err != nil {
		// The task directory itself cannot be written: nothing sensible
		// can be recorded. Other executors will judge it never started.
		log.Error("cannot start task", "error", err)
		return fmt.Errorf("start %s: %w", t.ID, err)
	}
	if j.state == executor.StateRunning {
		log.Info("task started", "pid", j.pid.Pid, "task_dir", dir)
	}
	e.report(rec, j, true, false)
	return nil
}

// claimed starts the record of a task this executor has just claimed, and
// reports it STAGING; the record is returned locked. It is a new
// incarnation: an earlier one of this ID (whose directory Retention
// removed) must not mute this one's statuses.
func (e *Executor) claimed(id string) *taskRecord {
	rec := e.lockRecord(id)
	rec.sentAny, rec.terminalSent, rec.termSignaled = false, false, false
	e.report(rec, judgement{state: executor.StateStaging}, true, false)
	return rec
}

// adopt takes over a task launched earlier (by this executor or another):
// it reports its state and watches it if it runs.
func (e *Executor) adopt(id, dir string) error {
	rec := e.lockRecord(id)
	defer rec.mu.Unlock()
	j, err := e.judge(dir)
	if err != nil {
		return fmt.Errorf("adopt %s: %w", id, err)
	}
	e.log.Debug("task launched before; adopted", "task_id", id, "state", j.state)
	e.stopIfDue(rec, dir, j)
	e.report(rec, j, true, false)
	return nil
}

// start runs a claimed task and records its process. An error means the
// task directory cannot be written; anything wrong with the task itself is
// a FAILED judgement recorded in its failed file. ctx's start check
// (executor.CheckStart) is asked right before the go-ahead.
func (e *Executor) start(ctx context.Context, dir string, t executor.Task, app preparedApp, fetchErr error) (judgement, error) {
	tj, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return judgement{}, err
	}
	if err := writeAtomic(filepath.Join(dir, fileTask), tj); err != nil {
		return judgement{}, err
	}
	if fetchErr != nil {
		return e.fail(dir, fetchErr.Error())
	}

	workDir := dir
	if app.dir != "" {
		// The task's own copy of its app (see fetchOrCache) moves into
		// the task dir, and is removed with it.
		workDir = filepath.Join(dir, dirApp)
		if err := os.Rename(app.dir, workDir); err != nil {
			return e.fail(dir, fmt.Sprintf("move app into task dir: %v", err))
		}
		app.dir = ""
	}

	s, failure, err := e.spawn(dir, workDir, dir, t)
	if err != nil {
		return judgement{}, err
	}
	if failure != "" {
		return e.fail(dir, failure)
	}
	b, err := json.Marshal(s.pid)
	var created bool
	if err == nil {
		created, err = writeExclusive(filepath.Join(dir, filePid), b)
	}
	if err != nil || !created {
		// Either the process cannot be recorded (no later executor could
		// tell it from a stranger), or another executor gave up on this
		// launch (too slow, or killed before start) and told everyone:
		// the process must not run.
		s.goAhead.Close()
		_ = syscall.Kill(-s.pid.Pid, syscall.SIGKILL)
		e.reap(s.cmd)
		if err != nil {
			return e.fail(dir, fmt.Sprintf("record process: %v", err))
		}
		e.log.Warn("launch overtaken: task was given up before it started", "task_id", t.ID)
		return e.judge(dir)
	}
	return e.release(ctx, dir, t.ID, s), nil
}

// spawned is a task's wrapper, forked and waiting for its go-ahead.
type spawned struct {
	cmd *exec.Cmd
	// goAhead is the write end of the wrapper's go-ahead pipe: closed
	// unwritten, the wrapper exits without running anything.
	goAhead *os.File
	// pid is what the pid file is to say; spawn does not write it.
	pid pidFile
}

// spawn forks t's wrapper with its output files and alive lock in dir and
// its working directory workDir, and reads who it is; the wrapper waits for
// its go-ahead. taskDir is the directory the task is told it has
// (HASCHED_TASK_DIR): dir itself, or, for a task prepared ahead, the task
// directory its staged dir becomes. A failure is this task's and is to be
// recorded (FAILED); an error says that dir cannot be written.
func (e *Executor) spawn(dir, workDir, taskDir string, t executor.Task) (s spawned, failure string, err error) {
	stdout, err := os.OpenFile(filepath.Join(dir, fileStdout), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return s, "", err
	}
	defer stdout.Close()
	stderr, err := os.OpenFile(filepath.Join(dir, fileStderr), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return s, "", err
	}
	defer stderr.Close()

	env, err := taskEnv(os.Environ(), t, taskDir)
	if err != nil {
		return s, fmt.Sprintf("task environment: %v", err), nil
	}
	cmd := exec.Command("/bin/sh", "-c", wrapperScript)
	cmd.Dir = workDir
	cmd.Env = env
	// Files, not pipes: the task writes straight into them, so it needs
	// nothing from this process and outlives it.
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	// Its own process group, so that Kill reaches the whole tree; no
	// Pdeathsig, so that it survives the scheduler.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The go-ahead pipe: the child reads fd 3, only this process holds the
	// write end (os.Pipe sets close-on-exec), so it closes when we die.
	gate, goAhead, err := os.Pipe()
	if err != nil {
		return s, fmt.Sprintf("go-ahead pipe: %v", err), nil
	}
	// The alive lock: taken here, before the child exists, so that there
	// is no moment when the task runs unlocked; the child's fd 4 shares the
	// open file description, so the lock stays when ours is closed below
	// and goes when the wrapper exits or dies, in any PID namespace.
	alive, err := lockAlive(dir)
	if err != nil {
		gate.Close()
		goAhead.Close()
		return s, fmt.Sprintf("alive lock: %v", err), nil
	}
	cmd.ExtraFiles = []*os.File{gate, alive}
	err = cmd.Start()
	gate.Close()
	alive.Close()
	if err != nil {
		goAhead.Close()
		return s, fmt.Sprintf("start process: %v", err), nil
	}
	pid := cmd.Process.Pid

	// Until the child is reaped its pid cannot be reused, so
	// /proc/<pid>/stat and the signals here are about our child for sure.
	// Its start is now, or its fire time if that is later (a task
	// prepared ahead runs at its fire): its Timeout counts from then.
	// A fire time further ahead than a preparation can wait is not
	// believed: the task's timeout would start counting only then.
	started := time.Now().UTC()
	if f := t.FireTime.UTC(); f.After(started) && f.Sub(started) <= preparedTTL {
		started = f
	}
	p := pidFile{
		Pid: pid, Pgid: pid,
		BootID: e.host.bootID, PidNS: e.host.pidNS, Host: e.cfg.Host,
		Launcher: os.Getpid(), Time: started, AliveLock: true,
	}
	if t.Timeout > 0 {
		p.Deadline = p.Time.Add(t.Timeout)
	}
	st, err := readProcStat(pid)
	if err != nil {
		// No later executor could tell the process from a stranger: it
		// must not run.
		goAhead.Close()
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		e.reap(cmd)
		return s, fmt.Sprintf("record process: %v", err), nil
	}
	p.StartTime = st.startTime
	return spawned{cmd: cmd, goAhead: goAhead, pid: p}, "", nil
}

// release lets a recorded wrapper run its task, if the caller still may
// start it (a worker frozen since its Launch began may have lost its
// session), and then leaves it to the reaper. Withheld, or were the write
// to fail, the wrapper exits at once; the task then ends with no exit file
// and is judged lost, not run twice.
func (e *Executor) release(ctx context.Context, dir, id string, s spawned) judgement {
	defer e.reap(s.cmd)
	if err := executor.CheckStart(ctx); err != nil {
		s.goAhead.Close()
		e.log.Warn("task not started: its go-ahead was withheld", "task_id", id, "reason", err)
		return judgement{state: executor.StateLost, message: "not started: " + err.Error(), pid: &s.pid}
	}
	if _, err := s.goAhead.Write([]byte(goAheadMessage)); err != nil {
		e.log.Warn("cannot give the task its go-ahead", "task_id", id, "error", err)
	}
	s.goAhead.Close()
	// Kill may have come from another process while we started.
	if _, err := os.Stat(filepath.Join(dir, fileKilled)); err == nil {
		_ = syscall.Kill(-s.pid.Pid, syscall.SIGTERM)
	}
	return judgement{state: executor.StateRunning, pid: &s.pid}
}

// lockAlive creates the task's alive file and locks it exclusively.
func lockAlive(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, fileAlive), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// reap waits for a child in the background: see Executor.reapers.
func (e *Executor) reap(cmd *exec.Cmd) {
	e.reapers.Add(1)
	go func() {
		defer e.reapers.Done()
		_ = cmd.Wait() // the exit code comes from the exit file
		e.poke()
	}()
}

// fail records why a claimed task cannot run, so that every executor
// judges it FAILED with that message.
func (e *Executor) fail(dir, msg string) (judgement, error) {
	if err := writeAtomic(filepath.Join(dir, fileFailed), []byte(msg)); err != nil {
		return judgement{}, err
	}
	e.log.Warn("task failed to start", "task_dir", dir, "reason", msg)
	return judgement{state: executor.StateFailed, message: msg}, nil
}

// defaultPath is a task's PATH when the scheduler has none.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// inheritedEnv says which of the scheduler's variables a task gets: those
// that describe the host's locale, time zone and the user's home and search
// path. Everything else stays with the scheduler, because the scheduler's
// environment holds its secrets (HASCHED_AUTH_PASSWORD, a HASCHED_COORD
// with credentials, cloud keys) and a task is code the scheduler's users
// supply, not the scheduler's operator. An allow list, not a deny list: a
// secret added tomorrow must not leak by default.
func inheritedEnv(name string) bool {
	switch name {
	case "PATH", "HOME", "LANG", "TZ":
		return true
	}
	return strings.HasPrefix(name, "LC_")
}

// taskEnv is the task's whole environment: the allowed variables of base
// (the scheduler's), PATH defaulted if base has none, then the task's own
// HASCHED_* variables. Nothing else of base reaches the task.
func taskEnv(base []string, t executor.Task, dir string) ([]string, error) {
	vars := append(executor.TaskVariables(t), executor.EnvVar{Name: "HASCHED_TASK_DIR", Value: dir})
	for _, v := range vars {
		if strings.IndexByte(v.Value, 0) >= 0 {
			return nil, fmt.Errorf("%s contains a NUL byte", v.Name)
		}
	}
	env := make([]string, 0, len(vars)+8)
	hasPath := false
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		if !inheritedEnv(k) {
			continue
		}
		if k == "PATH" {
			if v == "" {
				continue
			}
			hasPath = true
		}
		env = append(env, kv)
	}
	if !hasPath {
		env = append(env, "PATH="+defaultPath)
	}
	for _, v := range vars {
		env = append(env, v.Name+"="+v.Value)
	}
	return env, nil
}
