// Package bench measures hasched on a user's own etcd or ZooKeeper, beside
// what the backend's raw client does on the same servers: job registrations
// through the REST API, the job list on a leader and on a standby, a
// graceful takeover, and the lag of cron fires to their launch.
//
// It runs two in-process schedulers, each with its REST API on a loopback
// port, as two `hasched serve` processes would run, but with a no-op
// executor of its own, so that the figures are the scheduler's and its
// coordinator's, not those of task processes. Everything it writes goes in a
// namespace of its own (the URL's, with a random suffix), which it removes
// at the end, also when it fails or is interrupted.
package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/client"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// Bounds of the bench's waits.
const (
	// openTimeout bounds opening a session with the coordinator.
	openTimeout = 30 * time.Second
	// opTimeout bounds one REST request or one raw client call.
	opTimeout = 30 * time.Second
	// leaderTimeout bounds the wait for the first leader, and for the
	// standby's takeover (which loads every job first).
	leaderTimeout = 5 * time.Minute
	// listTimeout, plus listTimeoutPerNode for each node, bounds one read
	// of every job (or raw node): a plain ZooKeeper client reads a node per
	// round trip.
	listTimeout        = 5 * time.Minute
	listTimeoutPerNode = time.Millisecond
	// cleanupTimeout bounds stopping the schedulers and removing the
	// namespace, which runs after ctx may have ended.
	cleanupTimeout = 5 * time.Minute
	// fireGrace is how long after the fire window the bench waits for the
	// window's last fires to be launched.
	fireGrace = 5 * time.Second
	// fireWarmup is how long the firing jobs fire before the lag is
	// measured: the figure is of sustained fires. A new job's first fire
	// also makes its running parent, twice the writes of the fires after
	// it, and the first seconds of 1,000 new jobs firing took 2 to 4 times
	// the lag of the seconds after them on etcd (the note gives theirs).
	fireWarmup = 3 * time.Second
)

// listRounds: each list figure is the median of this many reads.
const listRounds = 3

// benchApp is the app every job of the bench belongs to.
const benchApp = "bench"

// Errors of a run, for errors.Is.
var (
	// ErrListMismatch is a job list (or a raw read) that did not return
	// every node written.
	ErrListMismatch = errors.New("bench: a list did not return every node")
	// ErrNoFires is a fire window in which no fire was launched.
	ErrNoFires = errors.New("bench: no fire was launched in the window")
	// ErrNamespaceLeft is a namespace that was not empty after cleanup.
	ErrNamespaceLeft = errors.New("bench: the namespace was not removed")
)

// Run measures; see the package comment. It returns the report even with
// an error, with the rows measured so far. cfg is validated first, and
// nothing is written if it is invalid (ErrInvalidConfig).
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg, err := cfg.Validate()
	if err != nil {
		return Report{}, err
	}
	suffix, err := randomSuffix()
	if err != nil {
		return Report{}, err
	}
	u, ns, err := benchURL(cfg.URL, suffix)
	if err != nil {
		return Report{}, err
	}
	r := &run{
		cfg:   cfg,
		url:   u,
		ns:    ns,
		log:   cfg.Logger.Named("bench"),
		lags:  &lagRecorder{},
		httpc: newHTTPClient(cfg.Concurrency, listTimeoutFor(cfg.Jobs)),
		report: Report{
			Coordinator: cfg.Display,
			Jobs:        cfg.Jobs,
			Concurrency: cfg.Concurrency,
			FireJobs:    cfg.FireJobs,
			DurationSec: cfg.Duration.Seconds(),
		},
	}
	r.world = newNoopWorld(r.lags.observe)
	defer r.httpc.CloseIdleConnections()
	err = r.run(ctx)
	return r.report, err
}

// run is one bench run's state; its steps run one after the other.
type run struct {
	cfg   Config
	url   string // the bench namespace's URL, credentials and all
	ns    string // the bench's namespace
	log   hclog.Logger
	lags  *lagRecorder
	world *noopWorld
	httpc *http.Client

	admin   coord.Coordinator // the bench's own session: sizes, cleanup
	raw     rawClient
	leader  *proc
	standby *proc
	procs   []*proc // every process started, stopped at the end

	report Report
}

func (r *run) open(ctx context.Context) (coord.Coordinator, error) {
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	return coord.Open(ctx, r.url)
}

func (r *run) run(ctx context.Context) (err error) {
	admin, err := r.open(ctx)
	if err != nil {
		return fmt.Errorf("open the coordinator %s: %w", r.cfg.Display, err)
	}
	// From here the namespace may hold something: the report names it,
	// and teardown removes it.
	r.admin, r.report.Namespace = admin, r.ns
	defer func() { err = errors.Join(err, r.teardown()) }()
	if r.raw, err = newRawClient(admin, r.ns); err != nil {
		return err
	}
	r.report.Backend = backendName(r.url)
	steps := []struct {
		name string
		do   func(context.Context) error
	}{
		{"start the leader and the standby", r.startProcs},
		{"register jobs through the REST API", r.registerJobs},
		{"create nodes with the raw client", r.rawCreates},
		{"list the jobs", r.listJobs},
		{"take over", r.takeover},
		{"fire jobs every second", r.fires},
	}
	for _, s := range steps {
		r.log.Info("step", "name", s.name)
		if err := s.do(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

func backendName(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Scheme)
}

// startProcs starts the leader, waits until it leads, then the standby,
// and waits until the standby reads the store (it names the leader).
func (r *run) startProcs(ctx context.Context) error {
	leader, err := r.startProc("leader")
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, leaderTimeout)
	defer cancel()
	if err := leader.waitLeader(wctx); err != nil {
		return err
	}
	r.leader = leader
	standby, err := r.startProc("standby")
	if err != nil {
		return err
	}
	r.standby = standby
	return waitFollows(wctx, standby, leader)
}

func (r *run) startProc(name string) (*proc, error) {
	p, err := startProc(procConfig{
		name:     name,
		open:     r.open,
		executor: r.world.factory(),
		display:  r.cfg.Display,
		log:      r.cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	r.procs = append(r.procs, p)
	return p, nil
}

// waitFollows waits until p's Status names leader as the leader: its read
// session is open and it answers reads from the store.
func waitFollows(ctx context.Context, p, leader *proc) error {
	want := strings.TrimPrefix(leader.base, "http://")
	tick := time.NewTicker(statusPoll)
	defer tick.Stop()
	for {
		st, err := p.sched.Status(ctx)
		if err == nil && st.LeaderAddress == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not see %s lead: %w", p.name, leader.name, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// teardown stops every process, removes the namespace and closes the
// bench's session, on a context of its own: it runs after ctx may have
// ended (Ctrl-C).
func (r *run) teardown() error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	for i := len(r.procs) - 1; i >= 0; i-- {
		errs = append(errs, r.procs[i].stop())
	}
	errs = append(errs, r.removeNamespace(ctx))
	errs = append(errs, r.admin.Close())
	return errors.Join(errs...)
}

// removeNamespace deletes every top-level node with DeleteTree, then what
// the Coordinator cannot see (raw keys, the namespace's own node), and
// checks that nothing is left.
func (r *run) removeNamespace(ctx context.Context) error {
	if r.raw == nil {
		return nil
	}
	names, err := r.admin.Children(ctx, "/")
	if err != nil && !errors.Is(err, coord.ErrNotFound) {
		return fmt.Errorf("list the namespace %s: %w", r.report.Namespace, err)
	}
	for _, name := range names {
		if err := r.admin.DeleteTree(ctx, "/"+name); err != nil && !errors.Is(err, coord.ErrNotFound) {
			return fmt.Errorf("delete /%s of the namespace %s: %w", name, r.report.Namespace, err)
		}
	}
	if err := r.raw.purge(ctx); err != nil {
		return fmt.Errorf("purge the namespace %s: %w", r.report.Namespace, err)
	}
	left, err := r.raw.remaining(ctx)
	if err != nil {
		return fmt.Errorf("check the namespace %s: %w", r.report.Namespace, err)
	}
	if left != 0 {
		return fmt.Errorf("%w: %s holds %d keys or nodes", ErrNamespaceLeft, r.report.Namespace, left)
	}
	r.report.NamespaceRemoved = true
	r.log.Info("namespace removed", "namespace", r.report.Namespace)
	return nil
}

// listTimeoutFor bounds one read of n nodes.
func listTimeoutFor(n int) time.Duration { return listTimeout + time.Duration(n)*listTimeoutPerNode }

// newHTTPClient keeps one connection per concurrent client, so that the
// registrations measure requests, not connection set-ups; timeout bounds
// every request (each also has a context of its own).
func newHTTPClient(concurrency int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost:   concurrency,
			ResponseHeaderTimeout: timeout,
			IdleConnTimeout:       time.Minute,
		},
	}
}

func (r *run) apiClient(p *proc) (*client.Client, error) {
	return client.New(client.Config{BaseURL: p.base, HTTPClient: r.httpc, UserAgent: "hasched-bench"})
}

// parallel calls f for 0 ≤ i < n on `workers` goroutines, each call with
// its own timeout; the first error stops the others and is returned. It
// returns once every goroutine has.
func parallel(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range next {
				cctx, done := context.WithTimeout(ctx, opTimeout)
				err := f(cctx, i)
				done()
				if err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

func jobName(i int) string { return fmt.Sprintf("bench-%07d", i) }

// idleJob never fires during a bench: once a year, on 1 January.
func idleJob(name string) model.Job {
	return model.Job{
		JobName: name, AppName: benchApp, Cron: "0 0 0 1 1 ?", ShardingTotalCount: 1,
		CPUCount: 0.1, MemoryMB: 16, JobExecutionType: model.Transient,
		ConcurrencyPolicy: model.ConcurrencyAllow, TimeZone: "UTC", ScriptCommandLine: "true",
		Description: "hasched bench",
	}
}

// registerJobs registers the app, then the jobs through the leader's REST
// API on Concurrency clients.
func (r *run) registerJobs(ctx context.Context) error {
	c, err := r.apiClient(r.leader)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, opTimeout)
	_, err = c.RegisterApp(actx, model.App{AppName: benchApp, BootstrapScript: "true", CPUCount: 0.1, MemoryMB: 16})
	cancel()
	if err != nil {
		return fmt.Errorf("register the app: %w", err)
	}
	start := time.Now()
	err = parallel(ctx, r.cfg.Jobs, r.cfg.Concurrency, func(ctx context.Context, i int) error {
		_, err := c.RegisterJob(ctx, idleJob(jobName(i)))
		if err != nil {
			return fmt.Errorf("job %s: %w", jobName(i), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	took := time.Since(start)
	r.report.Rows = append(r.report.Rows, Row{
		Key:     RowRegister,
		Figure:  fmt.Sprintf("job registrations (REST API, %d clients)", r.cfg.Concurrency),
		Unit:    UnitPerSecond,
		Hasched: float64(r.cfg.Jobs) / took.Seconds(),
	})
	return nil
}

// rawCreates creates as many nodes as jobs, each of a stored job's size,
// with the raw client on as many goroutines.
func (r *run) rawCreates(ctx context.Context) error {
	gctx, cancel := context.WithTimeout(ctx, opTimeout)
	n, err := r.admin.Get(gctx, store.JobPath(jobName(0)))
	cancel()
	if err != nil {
		return fmt.Errorf("read a stored job: %w", err)
	}
	value := n.Value
	r.report.NodeBytes = len(value)
	pctx, cancel := context.WithTimeout(ctx, opTimeout)
	err = r.raw.prepare(pctx, r.admin)
	cancel()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := parallel(ctx, r.cfg.Jobs, r.cfg.Concurrency, func(ctx context.Context, i int) error {
		return r.raw.create(ctx, i, value)
	}); err != nil {
		return err
	}
	rate := float64(r.cfg.Jobs) / time.Since(start).Seconds()
	r.report.Rows[len(r.report.Rows)-1].Raw = &rate
	r.report.Rows[len(r.report.Rows)-1].RawMethod = r.raw.createMethod()
	return nil
}

// listJobs times GET /api/job/jobs on the leader and on the standby, and
// the raw client's read of as many nodes, each the median of listRounds.
func (r *run) listJobs(ctx context.Context) error {
	timeout := listTimeoutFor(r.cfg.Jobs)
	rawMs, err := median(ctx, timeout, func(ctx context.Context) error {
		n, err := r.raw.readAll(ctx)
		if err == nil && n != r.cfg.Jobs {
			err = fmt.Errorf("%w: the raw client read %d nodes, want %d", ErrListMismatch, n, r.cfg.Jobs)
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, side := range []struct {
		key, name string
		p         *proc
	}{{RowListLeader, "leader", r.leader}, {RowListStandby, "standby", r.standby}} {
		ms, err := median(ctx, timeout, func(ctx context.Context) error { return r.getJobs(ctx, side.p, r.cfg.Jobs) })
		if err != nil {
			return fmt.Errorf("on the %s: %w", side.name, err)
		}
		raw := rawMs
		r.report.Rows = append(r.report.Rows, Row{
			Key:       side.key,
			Figure:    "GET /api/job/jobs on the " + side.name,
			Unit:      UnitMillis,
			Hasched:   ms,
			Raw:       &raw,
			RawMethod: r.raw.readMethod(),
		})
	}
	return nil
}

// median runs f listRounds times, each within timeout, and returns the
// median time in milliseconds.
func median(ctx context.Context, timeout time.Duration, f func(context.Context) error) (float64, error) {
	var took [listRounds]time.Duration
	for i := range took {
		lctx, cancel := context.WithTimeout(ctx, timeout)
		start := time.Now()
		err := f(lctx)
		took[i] = time.Since(start)
		cancel()
		if err != nil {
			return 0, err
		}
	}
	sortDurations(took[:])
	return millis(took[listRounds/2]), nil
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// takeover cancels the leader's scheduler, which ends its term and resigns,
// and times until the standby's Status says it leads: its term has loaded
// every job and serves writes.
func (r *run) takeover(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, leaderTimeout)
	defer cancel()
	start := time.Now()
	r.leader.resign()
	if err := r.standby.waitLeader(wctx); err != nil {
		return err
	}
	took := time.Since(start)
	if err := r.leader.stopScheduler(); err != nil {
		return err
	}
	r.report.Rows = append(r.report.Rows, Row{
		Key:     RowTakeover,
		Figure:  "graceful takeover (leader resigns → standby serves)",
		Unit:    UnitMillis,
		Hasched: millis(took),
	})
	r.leader, r.standby = r.standby, nil
	return nil
}
