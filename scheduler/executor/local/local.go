// Package local is hasched's zero-setup executor: it runs each task as a
// process group on this host.
//
// Several `hasched serve` processes on one host share one work directory,
// and the leader of a new term (often a different OS process) must adopt
// what its predecessor launched without ever launching a task twice. So no
// task state lives in memory: everything an executor knows about a task it
// reads from the task's directory, WorkDir/tasks/<escaped task id>:
//
//	task.json  the task as launched (written after the claim)
//	stdout     the task's standard output (stdout.1: the generation
//	           before, see output.go)
//	stderr     the task's standard error (and stderr.1)
//	stdout.1.at, stderr.1.at
//	           where the last rotation's generation ended in the
//	           stream, for readers that follow it (logs.go)
//	alive      locked by the task's wrapper while it lives
//	app/       the task's own copy of its app package, its working
//	           directory (see fetchOrCache)
//	pid        {"pid", "startTime", "bootId", "pidNs", "deadline", ...}:
//	           who runs it, and until when it may (Task.Timeout after it
//	           started);
//	           or {"neverStarted": true}, written by whoever gave up on a
//	           launcher that died between claim and start
//	exit       the command's exit code, written by the wrapper shell
//	killed     Kill's marker, written before any signal
//	timedout   the timeout's marker: written, before any signal, by the
//	           executor that found the task running past the deadline its
//	           pid file records
//	failed     why the task could not be started (app fetch, fork)
//
// Creating the directory (os.Mkdir) is the claim: only the process whose
// Mkdir succeeded starts the task. The pid file is created exclusively
// (link(2) of a complete temporary file), so a slow launcher and an
// executor that declares the task "never started" cannot both win. A task
// prepared ahead (prepare.go) is claimed instead by renaming its complete
// directory, pid file and waiting wrapper included, into tasks/ without
// replacing anything: of that rename and any Mkdir, one wins.
package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/internal/defaults"
	"github.com/hasched/hasched/scheduler/apppkg"
	"github.com/hasched/hasched/scheduler/executor"
)

// Errors, for errors.Is.
var (
	// ErrClosed is returned by every call made after Close.
	ErrClosed = fmt.Errorf("local executor: %w", executor.ErrClosed)
	// ErrInvalidConfig wraps every Config validation failure.
	ErrInvalidConfig = errors.New("local executor: invalid config")
	// ErrInvalidTask is returned by Launch, which then launches nothing,
	// when a task of the batch cannot be run at all (no ID, no command).
	ErrInvalidTask = fmt.Errorf("local executor: %w", executor.ErrInvalidTask)
	// ErrFetch wraps app package download failures; such a task ends
	// FAILED with the error as its message.
	ErrFetch = apppkg.ErrFetch
	// ErrFetchTimeout wraps ErrFetch for a fetch that FetchTimeout cut off.
	ErrFetchTimeout = fmt.Errorf("%w: timed out", ErrFetch)
	// ErrChecksum is an ErrFetch: a package whose SHA-256 is not the
	// task's AppChecksum; nothing of it is cached or run.
	ErrChecksum = apppkg.ErrChecksum
	// ErrNotRegularFile is an ErrFetch: a file:// package that is not a
	// regular file (a FIFO would block the fetch, /dev/zero never ends).
	ErrNotRegularFile = apppkg.ErrNotRegularFile
	// ErrPackageTooLarge is an ErrFetch: a package larger than MaxAppBytes,
	// or unpacking to more than apppkg.UnpackFactor times that.
	ErrPackageTooLarge = apppkg.ErrPackageTooLarge
	// ErrUnsafeArchive is part of the message of a task whose app package
	// holds an entry that would land outside its directory.
	ErrUnsafeArchive = apppkg.ErrUnsafeArchive
)

// Defaults of Config's zero values.
const (
	DefaultPollInterval = 200 * time.Millisecond
	DefaultKillGrace    = 5 * time.Second
	DefaultStartGrace   = 5 * time.Second
	DefaultRetention    = 24 * time.Hour
	DefaultFetchTimeout = 60 * time.Second

	// DefaultMaxAppBytes bounds one app package (MaxAppBytes).
	DefaultMaxAppBytes = apppkg.DefaultMaxBytes
	// DefaultAppCacheMaxBytes bounds the app cache (AppCacheMaxBytes).
	DefaultAppCacheMaxBytes int64 = 10 << 30
	// DefaultAppCacheMaxAge is how long a cached app is used before it is
	// fetched again (AppCacheMaxAge).
	DefaultAppCacheMaxAge = 24 * time.Hour
	// DefaultMaxOutputBytes bounds each of a task's stdout and stderr
	// (MaxOutputBytes).
	DefaultMaxOutputBytes int64 = 64 << 20

	// Upper bounds of the size and age settings: beyond them a value is a
	// mistake (a unit slip), refused at start-up.
	maxMaxAppBytes            = apppkg.MaxMaxBytes
	maxAppCacheMaxBytes int64 = 1 << 40
	maxAppCacheMaxAge         = 365 * 24 * time.Hour
	maxMaxOutputBytes   int64 = 64 << 30
	// minMaxOutputBytes keeps a useful tail of output (and the stderr
	// excerpt of a FAILED status).
	minMaxOutputBytes int64 = 64 << 10
	// maxCacheEntries bounds the cache entries evictCache looks at in one
	// round.
	maxCacheEntries = 10_000

	// statusBuffer is the capacity of the Statuses channel; the queue
	// behind it is unbounded.
	statusBuffer = 1024
	// janitorInterval is how often terminal task directories older than
	// Retention are removed (an implicit Reconcile removes them too).
	janitorInterval = time.Minute
	// tmpRetention: leftovers in WorkDir/tmp older than this (and than
	// twice FetchTimeout, which bounds a fetch) belong to no running fetch
	// or removal.
	tmpRetention = time.Hour
)

// Config configures an Executor. Zero durations take the defaults above.
type Config struct {
	// WorkDir holds every task's and app's files; required. Every
	// scheduler process of this host should use the same one.
	WorkDir string
	// Host is reported in Status.Host; default os.Hostname().
	Host string
	// Logger default: a null logger.
	Logger hclog.Logger
	// PollInterval is how often running tasks are checked.
	PollInterval time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL.
	KillGrace time.Duration
	// StartGrace is how long a claimed task directory may stay without a
	// pid file before the task counts as never started.
	StartGrace time.Duration
	// Retention is how long a terminal task's directory is kept.
	Retention time.Duration
	// FetchTimeout bounds the download and unpacking of one app package,
	// also when the Launch call's context has no deadline (callers set
	// none: see executor.Executor.Launch).
	FetchTimeout time.Duration
	// MaxAppBytes bounds an app package (and its unpacked tree, to
	// apppkg.UnpackFactor times that); at most 64 GiB, default 1 GiB.
	MaxAppBytes int64
	// AppCacheMaxBytes bounds the app cache's total size: the janitor
	// evicts the least recently used entries beyond it. At most 1 TiB,
	// default 10 GiB.
	AppCacheMaxBytes int64
	// AppCacheMaxAge is how long a cached app is used before it is fetched
	// again. At most a year, default 24h.
	AppCacheMaxAge time.Duration
	// MaxOutputBytes bounds each of a task's stdout and stderr files; past
	// it the file is rotated to stdout.1 (stderr.1), one generation. From
	// 64 KiB to 64 GiB, default 64 MiB.
	MaxOutputBytes int64
}

// withDefaults validates cfg and fills in the defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.WorkDir == "" {
		return cfg, fmt.Errorf("%w: WorkDir is required", ErrInvalidConfig)
	}
	abs, err := filepath.Abs(cfg.WorkDir)
	if err != nil {
		return cfg, fmt.Errorf("%w: WorkDir %q: %v", ErrInvalidConfig, cfg.WorkDir, err)
	}
	// Absolute, because the task's working directory is not WorkDir and
	// the wrapper shell finds its task dir through an environment variable.
	cfg.WorkDir = abs
	if cfg.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return cfg, fmt.Errorf("%w: no Host and os.Hostname failed: %v", ErrInvalidConfig, err)
		}
		cfg.Host = h
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if err := defaults.Durations(ErrInvalidConfig, []defaults.Duration{
		{Name: "PollInterval", V: &cfg.PollInterval, Default: DefaultPollInterval},
		{Name: "KillGrace", V: &cfg.KillGrace, Default: DefaultKillGrace},
		{Name: "StartGrace", V: &cfg.StartGrace, Default: DefaultStartGrace},
		{Name: "Retention", V: &cfg.Retention, Default: DefaultRetention},
		{Name: "FetchTimeout", V: &cfg.FetchTimeout, Default: DefaultFetchTimeout},
		{Name: "AppCacheMaxAge", V: &cfg.AppCacheMaxAge, Default: DefaultAppCacheMaxAge},
	}...); err != nil {
		return cfg, err
	}
	if cfg.AppCacheMaxAge > maxAppCacheMaxAge {
		return cfg, fmt.Errorf("%w: AppCacheMaxAge %v is more than %v", ErrInvalidConfig, cfg.AppCacheMaxAge, maxAppCacheMaxAge)
	}
	for _, b := range []struct {
		name          string
		v             *int64
		def, min, max int64
	}{
		{"MaxAppBytes", &cfg.MaxAppBytes, DefaultMaxAppBytes, 1, maxMaxAppBytes},
		{"AppCacheMaxBytes", &cfg.AppCacheMaxBytes, DefaultAppCacheMaxBytes, 1, maxAppCacheMaxBytes},
		{"MaxOutputBytes", &cfg.MaxOutputBytes, DefaultMaxOutputBytes, minMaxOutputBytes, maxMaxOutputBytes},
	} {
		if *b.v == 0 {
			*b.v = b.def
		}
		if *b.v < b.min || *b.v > b.max {
			return cfg, fmt.Errorf("%w: %s is %d, want %d to %d", ErrInvalidConfig, b.name, *b.v, b.min, b.max)
		}
	}
	return cfg, nil
}

// prepare creates WorkDir's layout.
func (cfg Config) prepare() error {
	for _, d := range []string{cfg.WorkDir, cfg.tasksDir(), cfg.appsDir(), cfg.tmpDir()} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("local executor: create %s: %w", d, err)
		}
	}
	return nil
}

func (cfg Config) tasksDir() string { return filepath.Join(cfg.WorkDir, "tasks") }
func (cfg Config) appsDir() string  { return filepath.Join(cfg.WorkDir, "apps") }

// tmpDir holds downloads, unpacking and directories being removed: on the
// same file system as tasks/ and apps/, so that renames out of it are atomic.
func (cfg Config) tmpDir() string { return filepath.Join(cfg.WorkDir, "tmp") }

// Executor runs tasks as local processes; it implements executor.Executor.
// One Executor serves one leadership term.
type Executor struct {
	cfg  Config
	log  hclog.Logger
	host hostIdentity

	out   chan executor.Status
	queue *executor.StatusQueue

	// ctx is cancelled by Close, so that in-flight fetches end at once.
	ctx    context.Context
	cancel context.CancelFunc

	// fetcher fetches app packages into tmp/ (the cache is this
	// package's: see fetchOrCache).
	fetcher *apppkg.Fetcher

	// mu guards the fields below. Lock order: a taskRecord's mu, then
	// this one, never the other way round.
	mu sync.Mutex
	// tasks are the tasks this executor reported on.
	tasks map[string]*taskRecord
	// watched are the tasks the monitor judges: reported, not terminal.
	watched map[string]*taskRecord
	// kills are the SIGKILLs due KillGrace after a SIGTERM.
	kills map[string]pendingKill
	calls executor.Gate // Launch, Kill and Reconcile calls in flight
	// lastReconcile is the last Reconcile call that completed.
	lastReconcile reconcileSpan
	// reconciling counts the Reconcile calls in flight; the monitor does
	// not poll meanwhile.
	reconciling atomic.Int32
	// prepared are the tasks prepared ahead of their Launch, by ID
	// (prepare.go); prepSlots bounds the preparations under way, and
	// noPrepare is set once the file system has shown it cannot claim
	// a prepared task safely.
	prepared  map[string]*prepared
	prepSlots chan struct{}
	noPrepare atomic.Bool
	// prepTTL is preparedTTL (tests shorten it); guarded by mu.
	prepTTL time.Duration

	// wake nudges the monitor (a child exited, a kill was requested); it is
	// never closed, so late senders (reapers) are safe after Close.
	wake chan struct{}
	done chan struct{}
	wg   sync.WaitGroup // monitor and status drainer

	// reapers counts the goroutines waiting for this executor's children.
	// They are the one thing Close does not stop: a child can only be
	// reaped once it exits, and the tasks outlive the term by design. They
	// touch nothing but the wake channel.
	reapers sync.WaitGroup

	closeOnce sync.Once
}

var (
	_ executor.Executor = (*Executor)(nil)
	_ executor.Preparer = (*Executor)(nil)
)

// New validates cfg, creates the work directory's layout and starts the
// executor's monitor. It adopts nothing by itself: the scheduler reconciles
// at the start of its term, and that is what makes earlier tasks known.
func New(cfg Config) (*Executor, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.prepare(); err != nil {
		return nil, err
	}
	fetcher, err := apppkg.New(apppkg.Config{TempDir: cfg.tmpDir(), MaxBytes: cfg.MaxAppBytes})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Executor{
		cfg:     cfg,
		log:     cfg.Logger.Named("local-executor"),
		host:    currentHost(),
		out:     make(chan executor.Status, statusBuffer),
		queue:   executor.NewStatusQueue(),
		ctx:     ctx,
		cancel:  cancel,
		tasks:   make(map[string]*taskRecord),
		watched: make(map[string]*taskRecord),
		kills:   make(map[string]pendingKill),
		fetcher: fetcher,

		prepared:  make(map[string]*prepared),
		prepSlots: make(chan struct{}, launchParallel),
		prepTTL:   preparedTTL,
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		e.queue.Drain(e.out, e.done)
	}()
	go func() {
		defer e.wg.Done()
		e.monitor()
	}()
	e.log.Debug("started", "work_dir", cfg.WorkDir, "host", cfg.Host)
	return e, nil
}

// NewFactory checks cfg once (so that a bad configuration fails at start-up,
// not at the first term) and returns a Factory opening one Executor per term.
func NewFactory(cfg Config) (executor.Factory, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.prepare(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, _ executor.Term) (executor.Executor, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return New(cfg)
	}, nil
}

// Statuses delivers every status update; it is closed by Close.
func (e *Executor) Statuses() <-chan executor.Status { return e.out }

// Close stops the monitor and the status stream and closes Statuses. The
// tasks keep running: the next term's executor adopts them. In-flight
// Launch, Kill and Reconcile calls are cancelled and waited for, and the
// tasks prepared and not launched are discarded.
func (e *Executor) Close() error {
	e.closeOnce.Do(func() {
		e.calls.Shut()
		e.cancel()
		e.calls.Wait()
		e.discardPrepared()
		close(e.done)
		e.wg.Wait()
		e.log.Debug("closed")
	})
	return nil
}

// begin registers a call; the returned func ends it.
func (e *Executor) begin() (func(), error) { return e.calls.Enter(ErrClosed) }

// poke wakes the monitor without blocking.
func (e *Executor) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// emit queues a status; it never blocks.
func (e *Executor) emit(taskID string, j judgement, reconcile bool) {
	e.queue.Push(executor.Status{
		TaskID:    taskID,
		State:     j.state,
		Message:   j.message,
		ExitCode:  j.exitCode,
		Time:      time.Now(),
		Host:      e.cfg.Host,
		Reconcile: reconcile,
	})
}
