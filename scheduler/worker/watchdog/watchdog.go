// Package watchdog bounds the life of a dead worker's tasks.
//
// A worker's tasks are process groups that outlive the worker's process, so
// that a restarted worker adopts them. But if the worker dies (kill -9, a
// crash) and nothing restarts it, its coordinator session expires and the
// leader runs the tasks elsewhere: the orphans must be dead by then. The
// worker stamps a file in its work directory every few hundred
// milliseconds with the tasks it owns and a deadline, its session's
// SafeUntil: the moment up to which the coordinator certainly keeps the
// session. The watchdog, one process per work directory (a flock says which
// one), outside the worker's process, SIGKILLs every stamped task's group
// once now passes the deadline. A worker that lives keeps moving the
// deadline on; a restarted one stamps its own, and so adopts the tasks, if
// it claims them before the old deadline.
//
// Deadlines are wall-clock times, compared across two processes of one
// host.
package watchdog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/hasched/hasched/scheduler/executor/local"
)

// Files of the work directory the watchdog uses.
const (
	// StampFile is the worker's stamp (see Stamp), replaced atomically.
	StampFile = "watchdog.json"
	// LockFile is flock'ed by the running watchdog.
	LockFile = "watchdog.lock"
	// LogFile is where a detached watchdog logs.
	LogFile = "watchdog.log"
)

// Defaults of Config's zero values.
const (
	DefaultInterval = 100 * time.Millisecond
	DefaultLinger   = 30 * time.Second
	// maxStampTasks bounds what the watchdog reads of a stamp.
	maxStampTasks = 100_000
	maxStampBytes = 16 << 20
)

// Errors, for errors.Is.
var (
	// ErrRunning: another watchdog holds the work directory's lock.
	ErrRunning = errors.New("watchdog: another watchdog runs for this work directory")
	// ErrInvalidConfig wraps Config validation failures.
	ErrInvalidConfig = errors.New("watchdog: invalid config")
)

// Stamp is what the worker last promised: the tasks it owns run no longer
// than Deadline unless a later stamp says otherwise.
type Stamp struct {
	Deadline time.Time `json:"deadline"`
	// Tasks are task IDs of the work directory's local executor; their
	// groups are read from the task directories' pid files, so a task
	// stamped before its process started is covered too.
	Tasks       []string  `json:"tasks"`
	Incarnation string    `json:"incarnation,omitempty"`
	Pid         int       `json:"pid"`
	Written     time.Time `json:"written"`
}

// WriteStamp replaces dir's stamp atomically.
func WriteStamp(dir string, s Stamp) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, StampFile)
	tmp := fmt.Sprintf("%s.tmp.%d", path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return fmt.Errorf("write stamp: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write stamp: %w", err)
	}
	return nil
}

// ReadStamp reads dir's stamp; an error wrapping fs.ErrNotExist if there is
// none.
func ReadStamp(dir string) (Stamp, error) {
	var s Stamp
	f, err := os.Open(filepath.Join(dir, StampFile))
	if err != nil {
		return s, err
	}
	defer f.Close()
	if err := json.NewDecoder(&limitedReader{f: f, n: maxStampBytes}).Decode(&s); err != nil {
		return s, fmt.Errorf("read stamp: %w", err)
	}
	if len(s.Tasks) > maxStampTasks {
		return s, fmt.Errorf("read stamp: %d tasks, at most %d", len(s.Tasks), maxStampTasks)
	}
	return s, nil
}

type limitedReader struct {
	f *os.File
	n int64
}

func (r *limitedReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("stamp too large")
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	n, err := r.f.Read(p)
	r.n -= int64(n)
	return n, err
}

// Running tells whether a watchdog holds dir's lock. It only tests the
// lock: taking it, even for an instant, would make a watchdog starting at
// that moment find it held and exit.
func Running(dir string) (bool, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return false, err
	}
	defer f.Close()
	lk := wholeFile(unix.F_WRLCK)
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false, fmt.Errorf("test lock %s: %w", path, err)
	}
	return lk.Type != unix.F_UNLCK, nil
}

// lockFile opens path and takes its exclusive open-file-description lock
// without waiting: held while the file stays open, in this process or in
// one it was passed to, and testable without taking it (Running).
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	lk := wholeFile(unix.F_WRLCK)
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, ErrRunning
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

func wholeFile(typ int16) unix.Flock_t {
	return unix.Flock_t{Type: typ, Whence: io.SeekStart}
}

// Config configures Run.
type Config struct {
	// Dir is the worker's work directory; required.
	Dir string
	// Interval is how often the stamp is read.
	Interval time.Duration
	// Linger is how long the watchdog waits, with no deadline ahead and
	// nothing left to kill, for a worker to stamp again before it exits. A
	// worker starts a new watchdog whenever it finds none.
	Linger time.Duration
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger hclog.Logger
}

// Run is the watchdog: it takes dir's lock (ErrRunning if another holds
// it), then reads the stamp every Interval and SIGKILLs the stamped tasks'
// groups once now is at or past the deadline. It returns nil once no
// deadline has been ahead for Linger (the worker is gone and its tasks are
// dead), or ctx's error.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Dir == "" {
		return fmt.Errorf("%w: Dir is required", ErrInvalidConfig)
	}
	if cfg.Interval < 0 || cfg.Linger < 0 {
		return fmt.Errorf("%w: negative Interval or Linger", ErrInvalidConfig)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	log := cfg.Logger.Named("watchdog").With("dir", cfg.Dir)
	lock, err := lockFile(filepath.Join(cfg.Dir, LockFile))
	if err != nil {
		return err
	}
	defer lock.Close()
	log.Debug("watching")

	ticker := time.NewTicker(cfg.Interval)
	defer ticker.Stop()
	// killed: the tasks killed under the current stamp's deadline, so
	// that each is killed (and logged) once per deadline.
	var killedFor time.Time
	killed := map[string]bool{}
	idleSince := cfg.Now()
	for {
		now := cfg.Now()
		s, err := ReadStamp(cfg.Dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			// A stamp being replaced is renamed into place whole; an
			// unreadable one is a broken disk or a foreign writer. Keep
			// the last verdicts and look again.
			log.Warn("cannot read the stamp", "error", err)
		default:
			if !s.Deadline.Equal(killedFor) {
				killedFor, killed = s.Deadline, map[string]bool{}
			}
			if !now.Before(s.Deadline) {
				for _, id := range s.Tasks {
					if killed[id] {
						continue
					}
					ok, err := local.KillGroup(cfg.Dir, id)
					if err != nil {
						log.Error("cannot kill an orphaned task", "task_id", id, "error", err)
						continue
					}
					killed[id] = true
					if ok {
						log.Warn("killed an orphaned task: its worker's deadline passed", "task_id", id,
							"deadline", s.Deadline, "incarnation", s.Incarnation)
					}
				}
			}
		}
		if err == nil && now.Before(s.Deadline) {
			idleSince = now
		} else if now.Sub(idleSince) >= cfg.Linger {
			log.Debug("no worker deadline ahead: exiting")
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// Start runs argv, a command that starts a watchdog in the background and
// exits (`hasched watchdog --dir D`: see Detach), and waits for it, at most
// timeout.
func Start(ctx context.Context, argv []string, timeout time.Duration) error {
	if len(argv) == 0 {
		return fmt.Errorf("%w: empty watchdog command", ErrInvalidConfig)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("start watchdog %q: %w: %s", argv, err, out)
	}
	return nil
}

// Detach starts argv (which runs the watchdog in the foreground) in a
// session of its own, its output appended to dir's log file, and does not
// wait for it: the caller exits, so the watchdog is nobody's child but
// init's, and no process holds a zombie of it or a goroutine waiting for
// it.
func Detach(dir string, argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("%w: empty watchdog command", ErrInvalidConfig)
	}
	logf, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open watchdog log: %w", err)
	}
	defer logf.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer null.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = null
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = "/"
	// Its own session: no terminal's signals, no process group of ours.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start watchdog: %w", err)
	}
	return cmd.Process.Release()
}

// Main is `hasched watchdog --dir D [--foreground]`: without foreground it
// detaches self (this program's argv) with --foreground appended and
// returns; with it, it runs the watchdog until it is no longer needed,
// logging to stderr. Another watchdog of dir running is not an error.
// linger is Config.Linger (0: the default).
func Main(ctx context.Context, dir string, foreground bool, linger time.Duration, self []string) error {
	if dir == "" {
		return fmt.Errorf("%w: --dir is required", ErrInvalidConfig)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if !foreground {
		argv := append(append([]string(nil), self...), "--foreground")
		// The detached process runs in "/": argv[0] must not be relative.
		if exe, err := os.Executable(); err == nil {
			argv[0] = exe
		}
		return Detach(abs, argv)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "hasched", Output: os.Stderr, Level: hclog.Info})
	err = Run(ctx, Config{Dir: abs, Logger: log, Linger: linger})
	if errors.Is(err, ErrRunning) {
		return nil
	}
	return err
}
