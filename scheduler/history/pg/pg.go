// Package pg keeps run history in PostgreSQL, for long retention, in
// Elastic-Job-Cloud's event-trace tables, so that its users' reports and
// queries keep working:
//
//   - JOB_EXECUTION_LOG: one row per ended run (its host, sharding item,
//     execution source, start and complete times, success, failure cause);
//   - JOB_STATUS_TRACE_LOG: one row per state a task reached (staging when
//     launched, running, and the state it ended in).
//
// The tables are created, if missing, on the first write. The names are
// unquoted, as Elastic-Job writes them, so PostgreSQL folds them to lower
// case. Column widths are Elastic-Job's or wider where hasched's bounds need
// it (job names up to model.MaxNameLength bytes), and values longer than a
// column are cut.
//
// A Sink is an events.Sink: Emit never blocks, the writes happen behind a
// bounded queue of its own, each with a timeout, so a database that is
// slow, down or unreachable costs scheduling nothing (events that find the
// queue full are dropped and counted). Failures are logged, rate-limited.
// The database URL holds a password: it is never logged, and errors are
// stripped of it.
package pg

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hasched/hasched/internal/defaults"
	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/history"
	"github.com/hasched/hasched/scheduler/model"
)

// Defaults and bounds of Config.
const (
	DefaultQueueSize      = 4096
	MaxQueueSize          = 65_536
	DefaultWriteTimeout   = 5 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultFlushTimeout   = 5 * time.Second
	DefaultMaxConns       = 2
	MaxMaxConns           = 32
)

// ErrInvalidConfig is wrapped by every Config error.
var ErrInvalidConfig = errors.New("history/pg: invalid config")

// Config configures New.
type Config struct {
	// URL is the database's connection string (postgres://user:password@
	// host:5432/db?sslmode=…, or pgx's key=value form); required. It is a
	// secret.
	URL string
	// Logger receives failures, rate-limited (null if nil).
	Logger hclog.Logger
	// QueueSize is how many events wait before more are dropped
	// (DefaultQueueSize if zero, at most MaxQueueSize).
	QueueSize int
	// WriteTimeout bounds one event's writes, a connection included
	// (DefaultWriteTimeout if zero, at most a minute).
	WriteTimeout time.Duration
	// ConnectTimeout bounds one connection attempt (DefaultConnectTimeout
	// if zero, at most a minute).
	ConnectTimeout time.Duration
	// FlushTimeout is how long Close lets queued events be written
	// (DefaultFlushTimeout if zero, at most a minute).
	FlushTimeout time.Duration
	// MaxConns bounds the pool (DefaultMaxConns if zero, at most
	// MaxMaxConns); one writer uses one at a time.
	MaxConns int
}

// Sink writes events to PostgreSQL. It is an events.Sink.
type Sink struct {
	cfg    Config
	pool   *pgxpool.Pool
	secret []string // what redact strips from errors
	queue  *events.Queue
	ctx    context.Context
	cancel context.CancelFunc
	log    *history.Throttle

	tablesMade bool // the queue goroutine's only
	written    atomic.Uint64
	failed     atomic.Uint64
	closeOnce  sync.Once
}

// New parses cfg.URL and starts the Sink's writer. It does not connect:
// the first write does, and a database that is down makes no difference
// to New. Close stops it.
func New(cfg Config) (*Sink, error) {
	if cfg.URL == "" {
		return nil, fmt.Errorf("%w: URL is empty", ErrInvalidConfig)
	}
	if err := bounded("QueueSize", &cfg.QueueSize, DefaultQueueSize, MaxQueueSize); err != nil {
		return nil, err
	}
	if err := bounded("MaxConns", &cfg.MaxConns, DefaultMaxConns, MaxMaxConns); err != nil {
		return nil, err
	}
	if err := defaults.Durations(ErrInvalidConfig,
		defaults.Duration{Name: "WriteTimeout", V: &cfg.WriteTimeout, Default: DefaultWriteTimeout, Max: time.Minute},
		defaults.Duration{Name: "ConnectTimeout", V: &cfg.ConnectTimeout, Default: DefaultConnectTimeout, Max: time.Minute},
		defaults.Duration{Name: "FlushTimeout", V: &cfg.FlushTimeout, Default: DefaultFlushTimeout, Max: time.Minute},
	); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	secret := secrets(cfg.URL)
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// pgx's parse errors can quote the string they could not parse.
		return nil, fmt.Errorf("%w: URL does not parse: %s", ErrInvalidConfig, redactText(err.Error(), secret))
	}
	if pcfg.ConnConfig.Password != "" {
		secret = append(secret, pcfg.ConnConfig.Password)
	}
	pcfg.MaxConns = int32(cfg.MaxConns)
	pcfg.MinConns = 0
	pcfg.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidConfig, redactText(err.Error(), secret))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sink{
		cfg:    cfg,
		pool:   pool,
		secret: secret,
		ctx:    ctx,
		cancel: cancel,
		log:    history.NewThrottle(cfg.Logger, time.Minute),
	}
	s.queue = events.NewQueue(cfg.QueueSize, s.handle)
	return s, nil
}

func bounded(name string, v *int, def, max int) error {
	switch {
	case *v == 0:
		*v = def
	case *v < 0 || *v > max:
		return fmt.Errorf("%w: %s is %d, not in [1, %d]", ErrInvalidConfig, name, *v, max)
	}
	return nil
}

// Emit implements events.Sink: it never blocks. Only the events of a task's
// life (Launched, Running, Ended) are kept.
func (s *Sink) Emit(ev events.Event) {
	switch ev.Kind {
	case events.Launched, events.Running, events.Ended:
		if ev.Job != "" && ev.TaskID != "" {
			s.queue.Emit(ev)
		}
	}
}

// Dropped is how many events found the queue full or the Sink closed.
func (s *Sink) Dropped() uint64 { return s.queue.Dropped() }

// Written is how many events were written; Failed how many were not, for
// an error.
func (s *Sink) Written() uint64 { return s.written.Load() }
func (s *Sink) Failed() uint64  { return s.failed.Load() }

// Close stops taking events, lets the queued ones be written for up to
// FlushTimeout, then gives the rest up and closes the pool. Idempotent.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		t := time.AfterFunc(s.cfg.FlushTimeout, s.cancel)
		s.queue.Close()
		t.Stop()
		s.cancel()
		s.pool.Close()
	})
	return nil
}

func (s *Sink) handle(ev events.Event) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.WriteTimeout)
	defer cancel()
	if err := s.write(ctx, ev); err != nil {
		s.failed.Add(1)
		s.log.Warn("run history: an event was not written to PostgreSQL", "job", ev.Job, "task_id", ev.TaskID,
			"kind", string(ev.Kind), "error", redactText(err.Error(), s.secret))
		return
	}
	s.written.Add(1)
}

func (s *Sink) write(ctx context.Context, ev events.Event) error {
	if !s.tablesMade {
		if err := CreateTables(ctx, s.pool); err != nil {
			return err
		}
		s.tablesMade = true
	}
	trace := StatusTraceOf(ev)
	if ex, ok := history.FromEvent(ev); ok {
		// Both rows of an end, or neither: a report that joins them sees
		// the run whole.
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer func() {
			// After a commit this does nothing; after a failure it may
			// meet the same hung database: bounded too.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.WriteTimeout)
			defer cancel()
			_ = tx.Rollback(ctx)
		}()
		if err := insertExecution(ctx, tx, ExecutionLogOf(ex)); err != nil {
			return err
		}
		if err := insertTrace(ctx, tx, trace); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	return insertTrace(ctx, s.pool, trace)
}

// The tables, as Elastic-Job creates them (columns, meaning, the index on
// the trace log), in PostgreSQL's types.
const (
	createExecutionLog = `CREATE TABLE IF NOT EXISTS JOB_EXECUTION_LOG (
	id VARCHAR(40) NOT NULL,
	job_name VARCHAR(255) NOT NULL,
	task_id VARCHAR(1000) NOT NULL,
	hostname VARCHAR(255) NOT NULL,
	ip VARCHAR(50) NOT NULL,
	sharding_item INT NOT NULL,
	execution_source VARCHAR(20) NOT NULL,
	failure_cause VARCHAR(4000) NULL,
	is_success BOOLEAN NOT NULL,
	start_time TIMESTAMP NULL,
	complete_time TIMESTAMP NULL,
	PRIMARY KEY (id))`
	createStatusTraceLog = `CREATE TABLE IF NOT EXISTS JOB_STATUS_TRACE_LOG (
	id VARCHAR(40) NOT NULL,
	job_name VARCHAR(255) NOT NULL,
	original_task_id VARCHAR(1000) NOT NULL,
	task_id VARCHAR(1000) NOT NULL,
	slave_id VARCHAR(1000) NOT NULL,
	source VARCHAR(50) NOT NULL,
	execution_type VARCHAR(20) NOT NULL,
	sharding_item VARCHAR(100) NOT NULL,
	state VARCHAR(20) NOT NULL,
	message VARCHAR(4000) NULL,
	creation_time TIMESTAMP NULL,
	PRIMARY KEY (id))`
	createTraceIndex = `CREATE INDEX IF NOT EXISTS TASK_ID_STATE_INDEX ON JOB_STATUS_TRACE_LOG (task_id, state)`
)

// execQ is what a pool and a transaction both do.
type execQ interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// CreateTables makes the two tables and the trace log's index if they are
// missing. Concurrent callers (two processes) may race on PostgreSQL's
// catalog; the loser's error is a unique violation that the next call no
// longer meets.
func CreateTables(ctx context.Context, pool *pgxpool.Pool) error {
	for _, q := range []string{createExecutionLog, createStatusTraceLog, createTraceIndex} {
		if _, err := pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("create the event-trace tables: %w", err)
		}
	}
	return nil
}

// ExecutionLog is one JOB_EXECUTION_LOG row.
type ExecutionLog struct {
	ID              string
	JobName         string
	TaskID          string
	Hostname        string
	IP              string
	ShardingItem    int
	ExecutionSource string
	FailureCause    string
	IsSuccess       bool
	StartTime       time.Time // zero: NULL
	CompleteTime    time.Time
}

// StatusTrace is one JOB_STATUS_TRACE_LOG row.
type StatusTrace struct {
	ID             string
	JobName        string
	OriginalTaskID string
	TaskID         string
	SlaveID        string
	Source         string
	ExecutionType  string
	ShardingItem   string
	State          string
	Message        string
	CreationTime   time.Time
}

// Elastic-Job's execution sources and execution types. hasched runs a task
// again as a new attempt (a retry, or a failover's run); Elastic-Job knows
// only failover for a run that is not the fire's first.
const (
	SourceNormalTrigger = "NORMAL_TRIGGER"
	SourceFailover      = "FAILOVER"
	TypeReady           = "READY"
	TypeFailover        = "FAILOVER"
	// TraceSource is who reports a state: hasched's scheduler, as
	// Elastic-Job-Cloud's does for the states it hears from Mesos.
	TraceSource = "CLOUD_SCHEDULER"
)

// State is Elastic-Job's (Mesos's) name of an executor state. A timeout is
// a failure there: TIMED_OUT is TASK_FAILED (its message says timed out).
func State(s executor.State) string {
	switch s {
	case executor.StateStaging:
		return "TASK_STAGING"
	case executor.StateRunning:
		return "TASK_RUNNING"
	case executor.StateFinished:
		return "TASK_FINISHED"
	case executor.StateFailed, executor.StateTimedOut:
		return "TASK_FAILED"
	case executor.StateKilled:
		return "TASK_KILLED"
	case executor.StateLost:
		return "TASK_LOST"
	default:
		return "TASK_UNKNOWN"
	}
}

// ExecutionLogOf is an ended run's row. Its id is derived from the run
// (task id and end), so a second write of it is the same row.
func ExecutionLogOf(ex model.Execution) ExecutionLog {
	row := ExecutionLog{
		ID:              rowID("execution", ex.TaskID, strconv.FormatInt(ex.CompleteTime.UnixNano(), 10)),
		JobName:         ex.Job,
		TaskID:          ex.TaskID,
		Hostname:        ex.Host,
		ShardingItem:    ex.Shard,
		ExecutionSource: SourceNormalTrigger,
		IsSuccess:       ex.Success,
		StartTime:       ex.StartTime,
		CompleteTime:    ex.CompleteTime,
	}
	if ip := net.ParseIP(ex.Host); ip != nil {
		row.IP = ip.String()
	}
	if ex.Attempt > 0 {
		row.ExecutionSource = SourceFailover
	}
	if !ex.Success {
		row.FailureCause = failureCause(ex.State, ex.ExitCode, ex.Message)
	}
	return row
}

func failureCause(state executor.State, exit int, msg string) string {
	cause := fmt.Sprintf("%s, exit code %d", state, exit)
	if msg != "" {
		cause += ": " + msg
	}
	return cause
}

// StatusTraceOf is the trace row of a Launched (TASK_STAGING), Running or
// Ended event. Its id is derived from the task, the state and the event's
// time, so a second write of the same event is the same row.
func StatusTraceOf(ev events.Event) StatusTrace {
	state := ev.State
	switch ev.Kind {
	case events.Launched:
		state = executor.StateStaging
	case events.Running:
		state = executor.StateRunning
	}
	at := ev.Time
	if ev.Kind == events.Ended && !ev.EndedAt.IsZero() {
		at = ev.EndedAt
	}
	row := StatusTrace{
		ID:            rowID("trace", ev.TaskID, string(state), strconv.FormatInt(at.UnixNano(), 10)),
		JobName:       ev.Job,
		TaskID:        ev.TaskID,
		SlaveID:       ev.Host,
		Source:        TraceSource,
		ExecutionType: TypeReady,
		ShardingItem:  strconv.Itoa(ev.Shard),
		State:         State(state),
		Message:       ev.Message,
		CreationTime:  at,
	}
	if state == executor.StateTimedOut {
		row.Message = strings.TrimSuffix("timed out: "+ev.Message, ": ")
	}
	if ev.Attempt > 0 {
		row.ExecutionType = TypeFailover
		row.OriginalTaskID = model.TaskID(ev.Job, ev.FireTime, ev.Shard, 0)
	}
	return row
}

// rowID is a 40-character id (Elastic-Job's VARCHAR(40)) that one row's
// parts always give.
func rowID(parts ...string) string {
	h := sha1.Sum([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])
}

func insertExecution(ctx context.Context, q execQ, r ExecutionLog) error {
	_, err := q.Exec(ctx, `INSERT INTO JOB_EXECUTION_LOG (id, job_name, task_id, hostname, ip, sharding_item,
	execution_source, failure_cause, is_success, start_time, complete_time)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
	ON CONFLICT (id) DO UPDATE SET hostname = EXCLUDED.hostname, ip = EXCLUDED.ip,
	failure_cause = EXCLUDED.failure_cause, is_success = EXCLUDED.is_success,
	start_time = EXCLUDED.start_time, complete_time = EXCLUDED.complete_time`,
		r.ID, cut(r.JobName, 255), cut(r.TaskID, 1000), cut(r.Hostname, 255), cut(r.IP, 50), r.ShardingItem,
		r.ExecutionSource, nullString(cut(r.FailureCause, 4000)), r.IsSuccess, nullTime(r.StartTime), nullTime(r.CompleteTime))
	if err != nil {
		return fmt.Errorf("insert into JOB_EXECUTION_LOG: %w", err)
	}
	return nil
}

func insertTrace(ctx context.Context, q execQ, r StatusTrace) error {
	_, err := q.Exec(ctx, `INSERT INTO JOB_STATUS_TRACE_LOG (id, job_name, original_task_id, task_id, slave_id,
	source, execution_type, sharding_item, state, message, creation_time)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
	ON CONFLICT (id) DO NOTHING`,
		r.ID, cut(r.JobName, 255), cut(r.OriginalTaskID, 1000), cut(r.TaskID, 1000), cut(r.SlaveID, 1000),
		r.Source, r.ExecutionType, cut(r.ShardingItem, 100), r.State, nullString(cut(r.Message, 4000)), nullTime(r.CreationTime))
	if err != nil {
		return fmt.Errorf("insert into JOB_STATUS_TRACE_LOG: %w", err)
	}
	return nil
}

// cut shortens s to at most n characters (VARCHAR(n) counts characters).
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n])
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// nullTime is a TIMESTAMP (without time zone) value: UTC's wall clock, or
// NULL for the zero time.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// secrets are what a URL holds that must not be shown: its password, in
// clear and as escaped in the URL.
func secrets(raw string) []string {
	var out []string
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		}
	}
	// key=value form: password=... up to a space.
	for _, f := range strings.Fields(raw) {
		if v, ok := strings.CutPrefix(f, "password="); ok && v != "" {
			out = append(out, strings.Trim(v, "'"))
		}
	}
	return out
}

// redactText replaces every secret in s.
func redactText(s string, secret []string) string {
	for _, p := range secret {
		if p != "" {
			s = strings.ReplaceAll(s, p, "xxxxx")
		}
	}
	return s
}
