package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// Defaults for the zero values of Config.
const (
	DefaultLaunchInterval = time.Second
	// DefaultReconcileInterval is the interval a command line should
	// default to; in Config, zero turns the periodic reconcile off.
	DefaultReconcileInterval = 10 * time.Minute
	DefaultQueueLimit        = 10000
	// MaxQueueLimit keeps a full ready node (one JSON time per fire) well
	// inside coord.MaxValueSize.
	MaxQueueLimit       = 25000
	DefaultRetryBackoff = time.Second
	// MaxRetryBackoff caps the back-off of a failed task's relaunch, which
	// doubles per attempt (and Config.RetryBackoff itself).
	MaxRetryBackoff = 5 * time.Minute
	// DefaultLeaderWait is how long a write waits for an election in
	// progress: about one session TTL, the longest a healthy cluster is
	// without a leader after one dies.
	DefaultLeaderWait = 10 * time.Second
)

// opTimeout bounds each store request and executor call a term makes on
// its own behalf.
const opTimeout = 30 * time.Second

// Config configures New.
type Config struct {
	// Open opens a session with the coordinator; it is called for the read
	// session and for every election session. Required.
	Open func(context.Context) (coord.Coordinator, error)
	// Executor opens the executor of each term. Required.
	Executor executor.Factory
	// ExecutorName is what Status reports as the executor ("local",
	// "mesos").
	ExecutorName string
	// Advertise is this process's API address, "host:port"; it is the
	// election value, so standbys forward writes to it. Required.
	Advertise string
	// CoordinatorURL is what Status reports as the coordinator (display
	// only; strip credentials before setting it).
	CoordinatorURL string
	// Logger receives the scheduler's events (null if nil).
	Logger hclog.Logger
	// Clock tells the time (time.Now if nil); tests set it.
	Clock func() time.Time
	// LaunchInterval is the launcher's safety tick (DefaultLaunchInterval
	// if zero); fires and status changes launch at once anyway.
	LaunchInterval time.Duration
	// ReconcileInterval is how often the leader reconciles the running
	// tasks with the executor; zero turns it off (a term always reconciles
	// when it starts). See DefaultReconcileInterval.
	ReconcileInterval time.Duration
	// QueueLimit caps each job's ready queue and its failover queue
	// (DefaultQueueLimit if zero; at most MaxQueueLimit).
	QueueLimit int
	// RetryBackoff is how long a DAEMON task that ended waits on the
	// failover queue before it is relaunched, and how long a task that
	// failed does, doubled per attempt up to MaxRetryBackoff
	// (DefaultRetryBackoff if zero; at most MaxRetryBackoff). Lost tasks
	// are relaunched at once.
	RetryBackoff time.Duration
	// LeaderWait is how long a write that arrives while no process leads
	// waits for one before it fails with model.ErrNoLeader
	// (DefaultLeaderWait if zero; negative: not at all). The request's own
	// context bounds it too.
	LeaderWait time.Duration
	// Events receives what the scheduler does, from the term loop: it
	// must not block (events.Queue for observers that do I/O). Discarded
	// if nil.
	Events events.Sink
}

// Scheduler is one `hasched serve` process's scheduler: it takes part in the
// election and, while it leads, runs the scheduling services. It implements
// Service: reads are served by every process, from the store or, for the
// configurations, from the leader's memory (see leaderIndex); writes only
// by the leader.
type Scheduler struct {
	cfg Config
	log hclog.Logger

	mu        sync.Mutex
	started   bool
	reads     coord.Coordinator // the read session; nil while there is none
	standby   *standby          // the warm state while not leading
	term      *term             // the current term; nil unless leading
	lastError time.Time         // when the last term failed
	// quarantineSeen is when this process first found each quarantined
	// configuration (by quarantineKey); it holds only those found by the
	// latest Quarantined read, so it is bounded by the stored
	// configurations.
	quarantineSeen map[string]time.Time
}

// New checks cfg, fills in its defaults and returns a Scheduler that does
// nothing until Run.
func New(cfg Config) (*Scheduler, error) {
	switch {
	case cfg.Open == nil:
		return nil, errors.New("scheduler: Config.Open is nil")
	case cfg.Executor == nil:
		return nil, errors.New("scheduler: Config.Executor is nil")
	case cfg.Advertise == "":
		return nil, errors.New("scheduler: Config.Advertise is empty")
	case cfg.LaunchInterval < 0:
		return nil, fmt.Errorf("scheduler: Config.LaunchInterval %v is negative", cfg.LaunchInterval)
	case cfg.ReconcileInterval < 0:
		return nil, fmt.Errorf("scheduler: Config.ReconcileInterval %v is negative", cfg.ReconcileInterval)
	case cfg.QueueLimit < 0 || cfg.QueueLimit > MaxQueueLimit:
		return nil, fmt.Errorf("scheduler: Config.QueueLimit %d is outside [0, %d]", cfg.QueueLimit, MaxQueueLimit)
	case cfg.RetryBackoff < 0 || cfg.RetryBackoff > MaxRetryBackoff:
		return nil, fmt.Errorf("scheduler: Config.RetryBackoff %v is outside [0, %v]", cfg.RetryBackoff, MaxRetryBackoff)
	}
	if host, port, err := net.SplitHostPort(cfg.Advertise); err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("scheduler: Config.Advertise %q is not host:port", cfg.Advertise)
	}
	if err := coord.CheckValue([]byte(cfg.Advertise)); err != nil {
		return nil, fmt.Errorf("scheduler: Config.Advertise: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Events == nil {
		cfg.Events = events.Discard
	}
	if cfg.LaunchInterval == 0 {
		cfg.LaunchInterval = DefaultLaunchInterval
	}
	if cfg.QueueLimit == 0 {
		cfg.QueueLimit = DefaultQueueLimit
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	if cfg.LeaderWait == 0 {
		cfg.LeaderWait = DefaultLeaderWait
	}
	log := cfg.Logger.Named("scheduler")
	return &Scheduler{cfg: cfg, log: log, standby: newStandby(log, cfg.Open)}, nil
}

func (s *Scheduler) now() time.Time { return s.cfg.Clock().UTC() }

// Run keeps a read session open and takes part in the election until ctx
// ends, running the scheduling services during every term it wins. When ctx
// ends a leader stops its services and resigns, so that a standby takes over
// at once; Run returns once everything it started has stopped. It can be
// called once.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("scheduler: Run called twice")
	}
	s.started = true
	s.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.keepReadSession(ctx)
	}()
	go func() {
		defer wg.Done()
		s.standby.run(ctx)
	}()
	err := coord.RunElection(ctx, s.cfg.Open, store.ElectionPath, []byte(s.cfg.Advertise), s.lead,
		coord.WithElectionLogger(s.cfg.Logger.Named("election")))
	wg.Wait()
	return err
}

// keepReadSession holds the read session open until ctx ends, opening a new
// one whenever it ends.
func (s *Scheduler) keepReadSession(ctx context.Context) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		c, err := s.cfg.Open(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("cannot open the read session; retrying", "error", err, "retry_in", delay)
			if !sleep(ctx, delay) {
				return
			}
			delay = min(delay*2, 5*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		s.mu.Lock()
		s.reads = c
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-c.Done():
			s.log.Warn("read session ended; opening a new one")
		}
		s.mu.Lock()
		s.reads = nil
		s.mu.Unlock()
		_ = c.Close()
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// lead runs one term; RunElection calls it with a context cancelled when
// the leadership is lost.
func (s *Scheduler) lead(ctx context.Context, c coord.Coordinator, l coord.Leadership) error {
	s.mu.Lock()
	pause := time.Until(s.lastError.Add(time.Second))
	s.mu.Unlock()
	// A term that failed at once would otherwise be retried in a hot loop.
	if pause > 0 && !sleep(ctx, pause) {
		return ctx.Err()
	}
	t := newTerm(s, c, l)
	s.mu.Lock()
	s.term = t
	s.mu.Unlock()
	err := t.run(ctx)
	s.standby.release()
	s.mu.Lock()
	s.term = nil
	if err != nil && ctx.Err() == nil {
		s.lastError = time.Now()
	}
	s.mu.Unlock()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (s *Scheduler) currentTerm() *term {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.term
}

func (s *Scheduler) reader() (store.Reader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reads == nil {
		return store.Reader{}, model.ErrUnavailable
	}
	return store.NewReader(s.reads), nil
}

// notLeader is the error for a write this process cannot serve.
func (s *Scheduler) notLeader(ctx context.Context) error {
	r, err := s.reader()
	if err != nil {
		return fmt.Errorf("%w: %v", model.ErrNoLeader, err)
	}
	v, err := r.Leader(ctx)
	switch {
	case errors.Is(err, coord.ErrNoLeader):
		return model.ErrNoLeader
	case err != nil:
		return fmt.Errorf("%w: %v", model.ErrNoLeader, err)
	case v == s.cfg.Advertise:
		// This process won but its term has not started, or has just
		// ended: nobody serves writes for a moment.
		return model.ErrNoLeader
	}
	return fmt.Errorf("%w: the leader is %s", model.ErrNotLeader, v)
}

// write runs op in the current term's loop, or refuses it (see submit).
func (s *Scheduler) write(ctx context.Context, op func(ctx context.Context, t *term) error) error {
	return s.submit(ctx, request{op: op})
}

// submit has req served by the current term's loop, or refuses it: with
// model.ErrNotLeader if another process leads (the API forwards it there),
// with model.ErrNoLeader if none does within LeaderWait. A write that
// arrives during an election so waits for it rather than failing.
func (s *Scheduler) submit(ctx context.Context, req request) error {
	var deadline <-chan time.Time
	if s.cfg.LeaderWait > 0 {
		tm := time.NewTimer(s.cfg.LeaderWait)
		defer tm.Stop()
		deadline = tm.C
	}
	poll := time.NewTicker(leaderPoll)
	defer poll.Stop()
	var ended *term
	for {
		if t := s.currentTerm(); t != nil && t != ended {
			err := t.do(ctx, req)
			if !errors.Is(err, errTermEnded) {
				return err
			}
			// The term ended before it took the request, but lead has
			// not yet cleared it: wait for the next one as for an
			// election.
			ended = t
		}
		err := s.notLeader(ctx)
		if !errors.Is(err, model.ErrNoLeader) || deadline == nil {
			return err
		}
		select {
		case <-poll.C:
		case <-deadline:
			return err
		case <-ctx.Done():
			return err
		}
	}
}

// leaderPoll is how often a waiting write looks for a leader.
const leaderPoll = 50 * time.Millisecond

// QueueDepths are the sizes of the leader's queues.
type QueueDepths struct {
	// ReadyFires are the fires waiting on the ready queues.
	ReadyFires int
	// Running and Failover count tasks.
	Running, Failover int
}

// QueueDepths counts what the term this process leads holds in its queues,
// from its memory, in its loop; ok is false when this process does not
// lead (a standby's figures would be the store's, read per scrape).
func (s *Scheduler) QueueDepths(ctx context.Context) (d QueueDepths, ok bool) {
	t := s.currentTerm()
	if t == nil {
		return d, false
	}
	// Handed over by channel: the caller may give up (ctx) while the loop
	// still counts.
	out := make(chan QueueDepths, 1)
	err := t.do(ctx, request{op: func(_ context.Context, t *term) error {
		var c QueueDepths
		for _, js := range t.jobs {
			c.ReadyFires += len(js.ready.FireTimes)
			c.Running += len(js.running)
			c.Failover += len(js.failover)
		}
		out <- c
		return nil
	}})
	if err != nil {
		return d, false
	}
	return <-out, true
}

// Status says whether this process leads and who does.
func (s *Scheduler) Status(ctx context.Context) (model.Status, error) {
	st := model.Status{Self: s.cfg.Advertise, Coordinator: s.cfg.CoordinatorURL, Executor: s.cfg.ExecutorName}
	if t := s.currentTerm(); t != nil && t.serving.Load() {
		st.Leader = true
		st.LeaderAddress = s.cfg.Advertise
		st.Term = t.l.Token()
		st.LeaderSince = t.since
		st.ExecutorInfo = t.executorInfo()
		return st, nil
	}
	r, err := s.reader()
	if err != nil {
		return st, nil
	}
	v, err := r.Leader(ctx)
	switch {
	case err == nil:
		st.LeaderAddress = v
	case !errors.Is(err, coord.ErrNoLeader):
		s.log.Debug("cannot read the leader", "error", err)
	}
	return st, nil
}

// Reads of the configurations: the leader serves them from its term's
// read index (index.go), without a store request, and sees every write it
// has acknowledged; every other process, and the leader before its term
// serves, reads the store, which has every acknowledged write too (the
// leader writes the store before it acknowledges). A leader deposed
// without knowing it yet may answer from its index what its successor has
// since changed, for as long as it takes it to notice (the session's TTL
// at worst), as it would answer a store read it made just before.
// The API forwards a standby's reads to the leader (api/forward.go).

// leaderIndex is the read index of the term this process leads, or nil.
func (s *Scheduler) leaderIndex() *configIndex {
	if t := s.currentTerm(); t != nil && t.serving.Load() {
		return &t.index
	}
	return nil
}

func (s *Scheduler) App(ctx context.Context, name string) (model.App, error) {
	if err := model.ValidateName("appName", name, false); err != nil {
		return model.App{}, err
	}
	if ix := s.leaderIndex(); ix != nil {
		return ix.app(name)
	}
	r, err := s.reader()
	if err != nil {
		return model.App{}, err
	}
	a, ok, err := r.App(ctx, name)
	if err != nil {
		return model.App{}, quarantinedRead(err, model.KindApp, name)
	}
	if !ok {
		return model.App{}, fmt.Errorf("%w: app %q", model.ErrNotFound, name)
	}
	return a, nil
}

func (s *Scheduler) Apps(ctx context.Context) ([]model.App, error) {
	if ix := s.leaderIndex(); ix != nil {
		return decodeAll[model.App](ix.appsJSON())
	}
	r, err := s.reader()
	if err != nil {
		return nil, err
	}
	return r.Apps(ctx)
}

func (s *Scheduler) AppDisabled(ctx context.Context, name string) (bool, error) {
	if err := model.ValidateName("appName", name, false); err != nil {
		return false, err
	}
	if ix := s.leaderIndex(); ix != nil {
		return ix.appDisabled(name)
	}
	if _, err := s.App(ctx, name); err != nil {
		return false, err
	}
	r, err := s.reader()
	if err != nil {
		return false, err
	}
	return r.AppDisabled(ctx, name)
}

func (s *Scheduler) Job(ctx context.Context, name string) (model.Job, error) {
	if err := model.ValidateName("jobName", name, true); err != nil {
		return model.Job{}, err
	}
	if ix := s.leaderIndex(); ix != nil {
		return ix.job(name)
	}
	r, err := s.reader()
	if err != nil {
		return model.Job{}, err
	}
	j, ok, err := r.Job(ctx, name)
	if err != nil {
		return model.Job{}, quarantinedRead(err, model.KindJob, name)
	}
	if !ok {
		return model.Job{}, fmt.Errorf("%w: job %q", model.ErrNotFound, name)
	}
	return j, nil
}

func (s *Scheduler) Jobs(ctx context.Context) ([]model.Job, error) {
	if ix := s.leaderIndex(); ix != nil {
		return decodeAll[model.Job](ix.jobsJSON())
	}
	r, err := s.reader()
	if err != nil {
		return nil, err
	}
	return r.Jobs(ctx)
}

// JobsJSON is Jobs with each job encoded: on the leader the encodings its
// index keeps, so a list of 100,000 jobs costs no store request and no
// encoding (issue 11); elsewhere the store's jobs, encoded.
func (s *Scheduler) JobsJSON(ctx context.Context) ([]json.RawMessage, error) {
	if ix := s.leaderIndex(); ix != nil {
		return ix.jobsJSON(), nil
	}
	jobs, err := s.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(jobs))
	for i, j := range jobs {
		if out[i], err = json.Marshal(j); err != nil {
			return nil, fmt.Errorf("encode job %q: %w", j.JobName, err)
		}
	}
	return out, nil
}

// decodeAll decodes the encodings of an index's list.
func decodeAll[T any](items []json.RawMessage) ([]T, error) {
	out := make([]T, len(items))
	for i, b := range items {
		if err := json.Unmarshal(b, &out[i]); err != nil {
			return nil, fmt.Errorf("decode the read index: %w", err)
		}
	}
	return out, nil
}

func (s *Scheduler) JobDisabled(ctx context.Context, name string) (bool, error) {
	if err := model.ValidateName("jobName", name, true); err != nil {
		return false, err
	}
	if ix := s.leaderIndex(); ix != nil {
		return ix.jobDisabled(name)
	}
	if _, err := s.Job(ctx, name); err != nil {
		return false, err
	}
	r, err := s.reader()
	if err != nil {
		return false, err
	}
	return r.JobDisabled(ctx, name)
}

func (s *Scheduler) RunningTasks(ctx context.Context) ([]model.TaskRecord, error) {
	r, err := s.reader()
	if err != nil {
		return nil, err
	}
	m, err := r.Running(ctx)
	if err != nil {
		return nil, err
	}
	return store.Flatten(m), nil
}

func (s *Scheduler) FailoverTasks(ctx context.Context) ([]model.TaskRecord, error) {
	r, err := s.reader()
	if err != nil {
		return nil, err
	}
	m, err := r.Failover(ctx)
	if err != nil {
		return nil, err
	}
	return store.Flatten(m), nil
}

// ReadyTasks lists the jobs with pending fires.
func (s *Scheduler) ReadyTasks(ctx context.Context) ([]model.ReadyEntry, error) {
	r, err := s.reader()
	if err != nil {
		return nil, err
	}
	m, err := r.Ready(ctx)
	if err != nil {
		return nil, err
	}
	out := []model.ReadyEntry{}
	for _, job := range sortedKeys(m) {
		rn := m[job]
		if len(rn.FireTimes) == 0 {
			continue
		}
		out = append(out, model.ReadyEntry{Job: job, Times: len(rn.FireTimes), FireTimes: rn.FireTimes})
	}
	return out, nil
}

// Quarantined lists the stored configurations that fail validation (or do
// not decode), apps first, each by name. It reads the store, so every
// process answers, and a configuration written behind the API's back is
// reported without a new term. SeenAt is when this process first found it
// so.
func (s *Scheduler) Quarantined(ctx context.Context) ([]model.QuarantinedConfig, error) {
	r, err := s.reader()
	if err != nil {
		return nil, err
	}
	apps, out, err := r.AppConfigs(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range apps {
		if _, err := a.Check(); err != nil {
			out = append(out, model.QuarantinedConfig{Kind: model.KindApp, Name: a.AppName, Error: err.Error()})
		}
	}
	jobs, badJobs, err := r.JobConfigs(ctx)
	if err != nil {
		return nil, err
	}
	out = append(out, badJobs...)
	for _, j := range jobs {
		if _, err := j.Check(); err != nil {
			out = append(out, model.QuarantinedConfig{Kind: model.KindJob, Name: j.JobName, Error: err.Error()})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind == model.KindApp
		}
		return out[i].Name < out[j].Name
	})
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]time.Time, len(out))
	for i := range out {
		k := quarantineKey(out[i])
		at, ok := s.quarantineSeen[k]
		if !ok {
			at = now
		}
		seen[k], out[i].SeenAt = at, at
	}
	s.quarantineSeen = seen
	return out, nil
}

func quarantineKey(q model.QuarantinedConfig) string {
	return string(q.Kind) + "/" + q.Name + "\x00" + q.Error
}

// quarantinedRead makes the read of a stored configuration that does not
// decode a refusal that says so (rather than a server error): Quarantined
// lists it, and registering or updating it replaces it.
func quarantinedRead(err error, kind model.ConfigKind, name string) error {
	if errors.Is(err, store.ErrUndecodable) {
		return fmt.Errorf("%w: %s %q is quarantined: %v", model.ErrConflict, kind, name, err)
	}
	return err
}

// Workers lists the processes that run tasks with what is placed on them,
// from the store, on whichever process answers.
func (s *Scheduler) Workers(ctx context.Context) ([]model.WorkerView, error) {
	r, err := s.reader()
	if err != nil {
		return nil, err
	}
	return r.Workers(ctx)
}
