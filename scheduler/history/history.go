// Package history keeps run history: the record of every run of every task
// (model.Execution), written to the coordination store with a bounded
// retention (store.HistoryRoot) and, optionally, to more sinks (PostgreSQL,
// package history/pg, for long retention).
//
// History is an observer of the scheduler's events, and observers must
// never slow or fail scheduling: the Recorder takes events through a
// never-blocking Emit onto a bounded queue (what finds it full is dropped
// and counted), and one goroutine of its own writes them. A write that
// fails is logged, rate-limited, and forgotten; history writes are
// idempotent, never fenced.
//
// Only the leader's term emits events, so the Recorder of every process
// can be wired as the scheduler's sink: the standbys' just see none.
package history

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/defaults"
	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// Defaults and bounds of Config.
const (
	DefaultKeep = 100
	MaxKeep     = 10_000

	DefaultMaxJobs = 10_000
	MaxMaxJobs     = 1_000_000

	DefaultQueueSize = 1024
	MaxQueueSize     = 65_536

	DefaultWriteTimeout = 5 * time.Second
	DefaultFlushTimeout = 5 * time.Second
	// DefaultJobsPruneInterval is how often, at most, the Recorder bounds
	// the number of jobs with history (store.HistoryWriter.PruneJobs): it
	// lists every job, so not on every write.
	DefaultJobsPruneInterval = 10 * time.Minute
	// DefaultOpenTimeout bounds the opening of a session (Config.Open).
	DefaultOpenTimeout = 10 * time.Second
)

// Errors; match with errors.Is.
var (
	ErrInvalidConfig = errors.New("history: invalid config")
	ErrClosed        = errors.New("history: closed")
)

// Config configures a Recorder or a Reader.
type Config struct {
	// Coordinator is a session to read and write through; the Recorder
	// does not close it. Or Open: a session is opened when first needed,
	// and again after one ends; the Recorder closes the one it holds.
	// Exactly one of the two is required.
	Coordinator coord.Coordinator
	Open        func(context.Context) (coord.Coordinator, error)
	// Keep is how many runs are kept per job (DefaultKeep if zero, at
	// most MaxKeep).
	Keep int
	// MaxJobs bounds the jobs with history: beyond it, the histories of
	// jobs no longer registered are removed, the stalest first
	// (DefaultMaxJobs if zero, at most MaxMaxJobs).
	MaxJobs int
	// QueueSize is how many events wait to be written before more are
	// dropped (DefaultQueueSize if zero, at most MaxQueueSize).
	QueueSize int
	// WriteTimeout bounds one execution's write and its pruning
	// (DefaultWriteTimeout if zero, at most a minute).
	WriteTimeout time.Duration
	// FlushTimeout is how long Close lets the queued events be written
	// before it gives them up (DefaultFlushTimeout if zero, at most a
	// minute).
	FlushTimeout time.Duration
	// JobsPruneInterval: see DefaultJobsPruneInterval.
	JobsPruneInterval time.Duration
	// OpenTimeout bounds opening a session (DefaultOpenTimeout if zero).
	OpenTimeout time.Duration
	// Logger receives write failures (null if nil).
	Logger hclog.Logger
	// Sinks are handed every event the Recorder is (a PostgreSQL sink,
	// say). Each must not block. The Recorder owns them: Close closes
	// those that are io.Closers, after its own queue.
	Sinks []events.Sink
}

func (cfg Config) withDefaults() (Config, error) {
	if (cfg.Coordinator == nil) == (cfg.Open == nil) {
		return cfg, fmt.Errorf("%w: exactly one of Coordinator and Open is required", ErrInvalidConfig)
	}
	var err error
	if cfg.Keep, err = bounded("Keep", cfg.Keep, DefaultKeep, MaxKeep); err != nil {
		return cfg, err
	}
	if cfg.MaxJobs, err = bounded("MaxJobs", cfg.MaxJobs, DefaultMaxJobs, MaxMaxJobs); err != nil {
		return cfg, err
	}
	if cfg.QueueSize, err = bounded("QueueSize", cfg.QueueSize, DefaultQueueSize, MaxQueueSize); err != nil {
		return cfg, err
	}
	if err := defaults.Durations(ErrInvalidConfig,
		defaults.Duration{Name: "WriteTimeout", V: &cfg.WriteTimeout, Default: DefaultWriteTimeout, Max: time.Minute},
		defaults.Duration{Name: "FlushTimeout", V: &cfg.FlushTimeout, Default: DefaultFlushTimeout, Max: time.Minute},
		defaults.Duration{Name: "JobsPruneInterval", V: &cfg.JobsPruneInterval, Default: DefaultJobsPruneInterval, Max: 24 * time.Hour},
		defaults.Duration{Name: "OpenTimeout", V: &cfg.OpenTimeout, Default: DefaultOpenTimeout, Max: time.Minute},
	); err != nil {
		return cfg, err
	}
	for i, s := range cfg.Sinks {
		if s == nil {
			return cfg, fmt.Errorf("%w: Sinks[%d] is nil", ErrInvalidConfig, i)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return cfg, nil
}

func bounded(name string, v, def, max int) (int, error) {
	switch {
	case v == 0:
		return def, nil
	case v < 0 || v > max:
		return 0, fmt.Errorf("%w: %s is %d, not in [1, %d]", ErrInvalidConfig, name, v, max)
	}
	return v, nil
}

// FromEvent is the execution an Ended event reports; ok is false for any
// other event, or one without a job or task id.
func FromEvent(ev events.Event) (model.Execution, bool) {
	if ev.Kind != events.Ended || ev.Job == "" || ev.TaskID == "" {
		return model.Execution{}, false
	}
	end := ev.EndedAt
	if end.IsZero() {
		end = ev.Time
	}
	return model.Execution{
		TaskID:       ev.TaskID,
		Job:          ev.Job,
		Shard:        ev.Shard,
		FireTime:     ev.FireTime.UTC(),
		Attempt:      ev.Attempt,
		Host:         ev.Host,
		State:        ev.State,
		ExitCode:     ev.ExitCode,
		Message:      ev.Message,
		StartTime:    utcOrZero(ev.StartedAt),
		CompleteTime: utcOrZero(end),
		Success:      ev.State == executor.StateFinished,
		Outcome:      string(ev.Outcome),
	}.Trimmed(), true
}

func utcOrZero(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// Reader reads run history for the API.
type Reader struct {
	s *session
}

// NewReader reads through cfg's Coordinator or Open (only those fields and
// OpenTimeout are used). Close it if it was given Open.
func NewReader(cfg Config) (*Reader, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Reader{s: newSession(cfg)}, nil
}

// Executions is a job's last limit runs, the latest first (limit in [1,
// model.MaxExecutionsLimit]; a *model.ValidationError otherwise). A job
// without history has none, registered or not.
func (r *Reader) Executions(ctx context.Context, job string, limit int) ([]model.Execution, error) {
	if err := model.ValidateName("job", job, true); err != nil {
		return nil, err
	}
	if err := model.CheckExecutionsLimit(limit); err != nil {
		return nil, err
	}
	c, err := r.s.get(ctx)
	if err != nil {
		return nil, err
	}
	return store.NewReader(c).Executions(ctx, job, limit)
}

// Close closes the session the Reader opened, if any.
func (r *Reader) Close() error { return r.s.close() }

// session is the one the Reader or Recorder reads and writes through:
// given, or opened on demand and again after it ended.
type session struct {
	fixed   coord.Coordinator
	open    func(context.Context) (coord.Coordinator, error)
	timeout time.Duration

	mu     sync.Mutex
	cur    coord.Coordinator
	closed bool
}

func newSession(cfg Config) *session {
	return &session{fixed: cfg.Coordinator, open: cfg.Open, timeout: cfg.OpenTimeout}
}

func (s *session) get(ctx context.Context) (coord.Coordinator, error) {
	if s.fixed != nil {
		return s.fixed, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		// The process is stopping: a read is worth retrying elsewhere.
		return nil, fmt.Errorf("%w: %w", ErrClosed, model.ErrUnavailable)
	}
	if s.cur != nil {
		select {
		case <-s.cur.Done():
			_ = s.cur.Close()
			s.cur = nil
		default:
			return s.cur, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	c, err := s.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("history: open a session: %w: %w", model.ErrUnavailable, err)
	}
	s.cur = c
	return c, nil
}

func (s *session) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.cur == nil {
		return nil
	}
	err := s.cur.Close()
	s.cur = nil
	return err
}

// Recorder writes the executions of Ended events to the store, behind a
// queue, and hands every event to its Sinks. It is an events.Sink.
type Recorder struct {
	Reader
	cfg    Config
	queue  *events.Queue
	ctx    context.Context
	cancel context.CancelFunc
	log    *Throttle

	failed    atomic.Uint64
	written   atomic.Uint64
	lastJobs  time.Time // the queue's goroutine's only
	closeOnce sync.Once
	closeErr  error
}

// NewRecorder starts a Recorder; Close stops it.
func NewRecorder(cfg Config) (*Recorder, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{
		Reader: Reader{s: newSession(cfg)},
		cfg:    cfg,
		ctx:    ctx,
		cancel: cancel,
		log:    NewThrottle(cfg.Logger, time.Minute),
	}
	r.queue = events.NewQueue(cfg.QueueSize, r.handle)
	return r, nil
}

// Emit implements events.Sink: it never blocks.
func (r *Recorder) Emit(ev events.Event) {
	// Only ends are recorded; the queue's goroutine makes the record.
	if ev.Kind == events.Ended && ev.Job != "" && ev.TaskID != "" {
		r.queue.Emit(ev)
	}
	for _, s := range r.cfg.Sinks {
		s.Emit(ev)
	}
}

// Dropped is how many executions found the queue full (or the Recorder
// closed) and were not written.
func (r *Recorder) Dropped() uint64 { return r.queue.Dropped() }

// Failed is how many executions were not written for an error.
func (r *Recorder) Failed() uint64 { return r.failed.Load() }

// Written is how many executions were written.
func (r *Recorder) Written() uint64 { return r.written.Load() }

func (r *Recorder) handle(ev events.Event) {
	ex, ok := FromEvent(ev)
	if !ok {
		return
	}
	if err := r.write(ex); err != nil {
		r.failed.Add(1)
		r.log.Warn("run history: an execution was not recorded", "job", ex.Job, "task_id", ex.TaskID, "error", err)
		return
	}
	r.written.Add(1)
	if now := time.Now(); now.Sub(r.lastJobs) >= r.cfg.JobsPruneInterval {
		r.lastJobs = now
		if err := r.pruneJobs(); err != nil {
			r.log.Warn("run history: the histories of deregistered jobs were not pruned", "error", err)
		}
	}
}

func (r *Recorder) write(ex model.Execution) error {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.WriteTimeout)
	defer cancel()
	c, err := r.s.get(ctx)
	if err != nil {
		return err
	}
	w := store.NewHistoryWriter(c)
	if err := w.Record(ctx, ex); err != nil {
		return err
	}
	_, err = w.Prune(ctx, ex.Job, r.cfg.Keep)
	return err
}

func (r *Recorder) pruneJobs() error {
	// Listing every job's history: a longer bound than one write's.
	ctx, cancel := context.WithTimeout(r.ctx, 6*r.cfg.WriteTimeout)
	defer cancel()
	c, err := r.s.get(ctx)
	if err != nil {
		return err
	}
	removed, err := store.NewHistoryWriter(c).PruneJobs(ctx, r.cfg.MaxJobs)
	if len(removed) > 0 {
		r.cfg.Logger.Info("run history: removed the histories of deregistered jobs", "jobs", len(removed), "max_jobs", r.cfg.MaxJobs)
	}
	return err
}

// Close stops taking events, lets the queued ones be written for up to
// FlushTimeout, then stops the writer, closes the Sinks that are
// io.Closers and the session it opened. It is idempotent.
func (r *Recorder) Close() error {
	r.closeOnce.Do(func() {
		t := time.AfterFunc(r.cfg.FlushTimeout, r.cancel)
		r.queue.Close()
		t.Stop()
		r.cancel()
		var errs []error
		for _, s := range r.cfg.Sinks {
			if c, ok := s.(io.Closer); ok {
				errs = append(errs, c.Close())
			}
		}
		errs = append(errs, r.s.close())
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}
