// Package metrics is hasched's Prometheus metrics: what the scheduler's
// term reports as events (fires, misfires, lags, task ends, leadership),
// how long coordinator operations take, and figures read at scrape time
// (queue depths, workers and placements).
//
// Every metric lives in the Metrics' own registry, never in the process-wide
// default one, so that two schedulers in one process (tests, `hasched
// bench`) keep apart and nothing is package-level mutable state.
//
// Series are bounded: no task id, host or message is a label, and the one
// label that grows with the user's data, job_name, is capped (see
// Config.MaxJobLabels). The label is job_name, not job, because Prometheus
// attaches a target label called job to every series it scrapes; a second
// one would be renamed exported_job.
package metrics

import (
	"fmt"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
)

// Defaults for the zero values of Config, and the bounds of its numbers.
const (
	DefaultMaxJobLabels = 1000
	maxMaxJobLabels     = 100000
	// DefaultScrapeTimeout bounds one scrape; DefaultMaxScrapes how many
	// are served at once (more get 503), so scrapers cannot pile up work.
	DefaultScrapeTimeout = 10 * time.Second
	DefaultMaxScrapes    = 4
	maxMaxScrapes        = 100
)

// OtherJobs is the job_name of the jobs beyond Config.MaxJobLabels. No job
// can have it: a job's name never contains "/".
const OtherJobs = "/other"

// CatchUpLag is how late a fire must be queued to count as a catch-up: a
// leader queues a fire within milliseconds of its time; one queued a
// second or more late was due while no process led (or the leader stalled).
const CatchUpLag = time.Second

// Depths are the sizes of the scheduler's queues.
type Depths struct {
	// Ready is the number of fires waiting to launch, Running of tasks
	// launched and not ended, Failover of tasks waiting to run again.
	Ready, Running, Failover int
}

// Config configures New.
type Config struct {
	// MaxJobLabels is how many distinct job_name values the job metrics
	// keep (DefaultMaxJobLabels if zero). A job seen once the cap is
	// reached is counted under job_name=OtherJobs, so a scheduler with
	// many jobs keeps a bounded number of series (each job costs a few
	// series per metric); Forget frees a deleted job's place. A job
	// counted under OtherJobs gets series of its own once a place is
	// free; what it counted before stays with OtherJobs.
	MaxJobLabels int
	// Depths, if set, is read at every scrape for hasched_queue_tasks. It
	// must answer from memory, without blocking; ok false (a standby,
	// which holds no queues) exports nothing.
	Depths func() (d Depths, ok bool)
	// Workers, if set, is read at every scrape for hasched_workers and
	// hasched_placed_tasks, with Depths' rules.
	Workers func() (workers, placed int, ok bool)
	// ScrapeTimeout bounds one scrape (DefaultScrapeTimeout if zero);
	// MaxScrapes is how many scrapes are served at once
	// (DefaultMaxScrapes if zero).
	ScrapeTimeout time.Duration
	MaxScrapes    int
}

func (cfg Config) withDefaults() (Config, error) {
	switch {
	case cfg.MaxJobLabels == 0:
		cfg.MaxJobLabels = DefaultMaxJobLabels
	case cfg.MaxJobLabels < 0 || cfg.MaxJobLabels > maxMaxJobLabels:
		return cfg, fmt.Errorf("metrics: Config.MaxJobLabels %d is not within 1..%d", cfg.MaxJobLabels, maxMaxJobLabels)
	}
	switch {
	case cfg.ScrapeTimeout == 0:
		cfg.ScrapeTimeout = DefaultScrapeTimeout
	case cfg.ScrapeTimeout < 0 || cfg.ScrapeTimeout > time.Minute:
		return cfg, fmt.Errorf("metrics: Config.ScrapeTimeout %v is not within 0..1m", cfg.ScrapeTimeout)
	}
	switch {
	case cfg.MaxScrapes == 0:
		cfg.MaxScrapes = DefaultMaxScrapes
	case cfg.MaxScrapes < 0 || cfg.MaxScrapes > maxMaxScrapes:
		return cfg, fmt.Errorf("metrics: Config.MaxScrapes %d is not within 1..%d", cfg.MaxScrapes, maxMaxScrapes)
	}
	return cfg, nil
}

// Buckets of the histograms, in seconds. Schedule lags run from the
// milliseconds of an idle scheduler to the minutes of a backlog or a slow
// executor; coordinator operations from a local etcd's half millisecond
// to the seconds of a failing ensemble.
var (
	lagBuckets   = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
	coordBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

// Metrics holds hasched's metrics and their registry. It is an
// events.Sink: Emit only updates counters, gauges and histograms in
// memory, so the term loop that calls it is never kept waiting.
type Metrics struct {
	cfg     Config
	reg     *prometheus.Registry
	handler http.Handler

	fires, misfires, launches *prometheus.CounterVec
	catchUps, ended           *prometheus.CounterVec
	fireLag, scheduleLag      prometheus.Histogram
	fireToRunning             prometheus.Histogram
	isLeader, leaderTerm      prometheus.Gauge
	leaderChanges             prometheus.Counter
	coordOps                  *prometheus.HistogramVec

	// mu guards jobs, the job_name values in use, and makes a label's
	// choice and its series' update one step, so that Forget cannot run
	// between them and leave a forgotten job's series behind.
	mu   sync.Mutex
	jobs map[string]struct{}
	// leading and term are the last leadership reported, to count changes.
	leading bool
	term    int64
}

// New makes the metrics and their registry, with the Go runtime's and the
// process's collectors in it.
func New(cfg Config) (*Metrics, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m := &Metrics{cfg: cfg, reg: prometheus.NewRegistry(), jobs: map[string]struct{}{}}
	job := []string{"job_name"}
	m.fires = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hasched_fires_total",
		Help: "Fires of a job that entered the ready queue: its cron's, and triggers.",
	}, job)
	m.catchUps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hasched_catchup_fires_total",
		Help: "Fires queued at least CatchUpLag after their time: caught up after a time without a leader (a subset of hasched_fires_total).",
	}, job)
	m.misfires = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hasched_misfires_total",
		Help: "Times fires of a job were not queued (collapsed into a later fire with misfire off, or dropped from a full ready queue).",
	}, job)
	m.launches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hasched_task_launches_total",
		Help: "Tasks handed to the executor, retries included.",
	}, job)
	m.ended = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hasched_task_runs_ended_total",
		Help: "Task runs that ended, by the executor's final state and what the scheduler does about it.",
	}, []string{"job_name", "state", "outcome"})
	m.fireLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "hasched_fire_lag_seconds",
		Help:    "Time from a fire's scheduled time to its entering the ready queue.",
		Buckets: lagBuckets,
	})
	m.scheduleLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "hasched_schedule_lag_seconds",
		Help:    "Time from a task's fire time to its launch (handed to the executor); first attempts only, a retry waits its back-off.",
		Buckets: lagBuckets,
	})
	m.fireToRunning = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "hasched_fire_to_running_seconds",
		Help:    "Time from a task's fire time to the executor's first report of it running; first attempts only.",
		Buckets: lagBuckets,
	})
	m.isLeader = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hasched_is_leader",
		Help: "1 while this process leads the scheduler, 0 otherwise.",
	})
	m.leaderTerm = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hasched_leader_term",
		Help: "The fencing token of the term this process leads or last led; 0 if it never led.",
	})
	m.leaderChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hasched_leadership_changes_total",
		Help: "Times this process became leader or stopped leading.",
	})
	m.coordOps = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "hasched_coordinator_operation_duration_seconds",
		Help:    "Time of one coordinator operation, by backend, operation and result.",
		Buckets: coordBuckets,
	}, []string{"backend", "operation", "result"})

	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.fires, m.catchUps, m.misfires, m.launches, m.ended,
		m.fireLag, m.scheduleLag, m.fireToRunning,
		m.isLeader, m.leaderTerm, m.leaderChanges,
		m.coordOps,
	}
	if cfg.Depths != nil {
		cs = append(cs, depthCollector{f: cfg.Depths, desc: prometheus.NewDesc(
			"hasched_queue_tasks", "Tasks in the scheduler's queues, by queue (ready counts fires).",
			[]string{"queue"}, nil)})
	}
	if cfg.Workers != nil {
		cs = append(cs, workerCollector{f: cfg.Workers,
			workers: prometheus.NewDesc("hasched_workers", "Workers the leader's executor can place tasks on.", nil, nil),
			placed:  prometheus.NewDesc("hasched_placed_tasks", "Tasks placed on workers and not ended.", nil, nil),
		})
	}
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	m.handler = promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A collector that fails loses its own series, not the scrape.
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            m.reg,
		MaxRequestsInFlight: cfg.MaxScrapes,
		Timeout:             cfg.ScrapeTimeout,
	}))
	return m, nil
}

// Registry is the registry the metrics are in, for a caller that adds its
// own collectors or gathers them itself.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus' exposition formats, at most
// Config.MaxScrapes at once (503 beyond), each within Config.ScrapeTimeout.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Emit implements events.Sink.
func (m *Metrics) Emit(ev events.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch ev.Kind {
	case events.Fired:
		job := m.jobLabelLocked(ev.Job)
		m.fires.WithLabelValues(job).Inc()
		if ev.Lag >= CatchUpLag {
			m.catchUps.WithLabelValues(job).Inc()
		}
		m.fireLag.Observe(seconds(ev.Lag))
	case events.Misfired:
		if ev.Count > 0 {
			m.misfires.WithLabelValues(m.jobLabelLocked(ev.Job)).Add(float64(ev.Count))
		}
	case events.Launched:
		m.launches.WithLabelValues(m.jobLabelLocked(ev.Job)).Inc()
		if ev.Attempt == 0 {
			m.scheduleLag.Observe(seconds(ev.Lag))
		}
	case events.Running:
		if ev.Attempt == 0 {
			m.fireToRunning.Observe(seconds(ev.Lag))
		}
	case events.JobRemoved:
		m.forgetLocked(ev.Job)
	case events.Ended:
		m.ended.WithLabelValues(m.jobLabelLocked(ev.Job), stateLabel(ev.State), outcomeLabel(ev.Outcome)).Inc()
	case events.Leadership:
		if ev.Leader != m.leading || ev.Leader && ev.Term != m.term {
			m.leaderChanges.Inc()
		}
		m.leading = ev.Leader
		if ev.Leader {
			m.term = ev.Term
			m.isLeader.Set(1)
			m.leaderTerm.Set(float64(ev.Term))
		} else {
			m.isLeader.Set(0)
		}
	}
}

// Leading says whether the last leadership event said this process leads.
func (m *Metrics) Leading() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leading
}

// Forget drops every series of a job and frees its place under
// Config.MaxJobLabels. Call it when a job is deregistered, or its series
// would stay, counted against the cap, until the process ends. A job
// counted under OtherJobs has no series of its own to drop.
func (m *Metrics) Forget(job string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgetLocked(job)
}

// forgetLocked is Forget; m.mu is held. Emit calls it on JobRemoved.
func (m *Metrics) forgetLocked(job string) {
	if _, ok := m.jobs[job]; !ok {
		return
	}
	delete(m.jobs, job)
	l := prometheus.Labels{"job_name": job}
	for _, v := range []*prometheus.CounterVec{m.fires, m.catchUps, m.misfires, m.launches, m.ended} {
		v.DeletePartialMatch(l)
	}
}

// jobLabelLocked is job's job_name: the job itself while fewer than
// MaxJobLabels jobs have one, OtherJobs once the cap is reached. A name
// Prometheus cannot carry (not UTF-8; empty, which would read as no label)
// is OtherJobs too; the model allows neither.
func (m *Metrics) jobLabelLocked(job string) string {
	if _, ok := m.jobs[job]; ok {
		return job
	}
	if job == "" || !utf8.ValidString(job) || len(m.jobs) >= m.cfg.MaxJobLabels {
		return OtherJobs
	}
	m.jobs[job] = struct{}{}
	return job
}

func seconds(d time.Duration) float64 {
	if d < 0 {
		// Clocks of different hosts; a negative lag is no lag.
		return 0
	}
	return d.Seconds()
}

// stateLabel keeps the state label to the executor contract's states.
func stateLabel(s executor.State) string {
	switch s {
	case executor.StateStaging, executor.StateRunning, executor.StateFinished, executor.StateFailed,
		executor.StateKilled, executor.StateTimedOut, executor.StateLost, executor.StateUnknown:
		return string(s)
	}
	return "OTHER"
}

// outcomeLabel keeps the outcome label to events' outcomes.
func outcomeLabel(o events.Outcome) string {
	switch o {
	case events.Done, events.Retry, events.Failover, events.GivenUp:
		return string(o)
	}
	return "other"
}

// depthCollector reads the queue depths at scrape time.
type depthCollector struct {
	f    func() (Depths, bool)
	desc *prometheus.Desc
}

func (c depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c depthCollector) Collect(ch chan<- prometheus.Metric) {
	d, ok := c.f()
	if !ok {
		return
	}
	for _, q := range []struct {
		name string
		n    int
	}{{"ready", d.Ready}, {"running", d.Running}, {"failover", d.Failover}} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(q.n), q.name)
	}
}

// workerCollector reads the executor's worker figures at scrape time.
type workerCollector struct {
	f               func() (int, int, bool)
	workers, placed *prometheus.Desc
}

func (c workerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.workers
	ch <- c.placed
}

func (c workerCollector) Collect(ch chan<- prometheus.Metric) {
	workers, placed, ok := c.f()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(workers))
	ch <- prometheus.MustNewConstMetric(c.placed, prometheus.GaugeValue, float64(placed))
}
