package metrics

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newMetrics(t *testing.T, cfg Config) *Metrics {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return m
}

// family gathers m's registry and returns the family called name, or nil.
func family(t *testing.T, m *Metrics, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

// series returns the metric of family name whose labels are exactly want.
func series(t *testing.T, m *Metrics, name string, want map[string]string) *dto.Metric {
	t.Helper()
	mf := family(t, m, name)
	if mf == nil {
		t.Fatalf("no metric %s in the registry", name)
	}
next:
	for _, s := range mf.GetMetric() {
		if len(s.GetLabel()) != len(want) {
			continue
		}
		for _, l := range s.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		return s
	}
	t.Fatalf("no series %s%v; have %v", name, want, mf.GetMetric())
	return nil
}

func wantValue(t *testing.T, what string, got, want float64) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"negative job labels": {MaxJobLabels: -1},
		"too many job labels": {MaxJobLabels: maxMaxJobLabels + 1},
		"negative timeout":    {ScrapeTimeout: -time.Second},
		"timeout above bound": {ScrapeTimeout: time.Hour},
		"negative scrapes":    {MaxScrapes: -1},
		"scrapes above bound": {MaxScrapes: maxMaxScrapes + 1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

// Two Metrics in one process keep apart: neither uses the default
// registry, so the second New does not fail on a duplicate.
func TestTwoMetricsInOneProcess(t *testing.T) {
	a, b := newMetrics(t, Config{}), newMetrics(t, Config{})
	a.Emit(events.Event{Kind: events.Fired, Job: "j"})
	wantValue(t, "a's fires of j", testutil.ToFloat64(a.fires.WithLabelValues("j")), 1)
	wantValue(t, "b's fires of j", testutil.ToFloat64(b.fires.WithLabelValues("j")), 0)
}

func TestEmitCountsFiresMisfiresLaunchesAndEnds(t *testing.T) {
	m := newMetrics(t, Config{})
	for _, ev := range []events.Event{
		{Kind: events.Fired, Job: "a"},
		{Kind: events.Fired, Job: "a", Lag: 90 * time.Second}, // after an outage
		{Kind: events.Fired, Job: "b", Lag: CatchUpLag - time.Millisecond},
		{Kind: events.Misfired, Job: "a", Count: 3},
		{Kind: events.Misfired, Job: "a", Count: 0}, // nothing missed: no change
		{Kind: events.Launched, Job: "a", TaskID: "a@-@0@-@READY@-@x"},
		{Kind: events.Ended, Job: "a", State: executor.StateFinished, Outcome: events.Done},
		{Kind: events.Ended, Job: "a", State: executor.StateFailed, Outcome: events.Retry},
		{Kind: events.Ended, Job: "a", State: executor.StateFailed, Outcome: events.Retry},
		{Kind: events.Ended, Job: "b", State: executor.StateTimedOut, Outcome: events.GivenUp},
		{Kind: events.Ended, Job: "b", State: executor.StateLost, Outcome: events.Failover},
	} {
		m.Emit(ev)
	}
	wantValue(t, "fires of a", testutil.ToFloat64(m.fires.WithLabelValues("a")), 2)
	wantValue(t, "fires of b", testutil.ToFloat64(m.fires.WithLabelValues("b")), 1)
	wantValue(t, "misfires of a", testutil.ToFloat64(m.misfires.WithLabelValues("a")), 3)
	wantValue(t, "catch-ups of a", testutil.ToFloat64(m.catchUps.WithLabelValues("a")), 1)
	wantValue(t, "catch-ups of b", testutil.ToFloat64(m.catchUps.WithLabelValues("b")), 0)
	wantValue(t, "launches of a", testutil.ToFloat64(m.launches.WithLabelValues("a")), 1)
	for _, c := range []struct {
		job, state, outcome string
		want                float64
	}{
		{"a", "FINISHED", "done", 1},
		{"a", "FAILED", "retry", 2},
		{"b", "TIMED_OUT", "given_up", 1},
		{"b", "LOST", "failover", 1},
	} {
		wantValue(t, "ends of "+c.job+" "+c.state+" "+c.outcome,
			testutil.ToFloat64(m.ended.WithLabelValues(c.job, c.state, c.outcome)), c.want)
	}
	if n := testutil.CollectAndCount(m.ended); n != 4 {
		t.Errorf("hasched_task_runs_ended_total has %d series, want 4", n)
	}
	// No series has a task id in it: the only labels are the bounded ones.
	for _, name := range []string{"hasched_fires_total", "hasched_task_launches_total", "hasched_task_runs_ended_total"} {
		for _, s := range family(t, m, name).GetMetric() {
			for _, l := range s.GetLabel() {
				if strings.Contains(l.GetValue(), "@-@") {
					t.Errorf("%s has a task id in label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func TestEmitObservesLagsInSeconds(t *testing.T) {
	m := newMetrics(t, Config{})
	m.Emit(events.Event{Kind: events.Fired, Job: "a", Lag: 20 * time.Millisecond})
	m.Emit(events.Event{Kind: events.Launched, Job: "a", Lag: 1500 * time.Millisecond})
	m.Emit(events.Event{Kind: events.Launched, Job: "a", Lag: 500 * time.Millisecond})
	m.Emit(events.Event{Kind: events.Launched, Job: "a", Lag: -time.Second}) // another host's clock
	m.Emit(events.Event{Kind: events.Running, Job: "a", Lag: 3 * time.Second})
	// A retry's lag holds its back-off: not a schedule lag.
	m.Emit(events.Event{Kind: events.Launched, Job: "a", Attempt: 1, Lag: time.Minute})
	m.Emit(events.Event{Kind: events.Running, Job: "a", Attempt: 1, Lag: time.Minute})
	for _, c := range []struct {
		name  string
		count uint64
		sum   float64
	}{
		{"hasched_fire_lag_seconds", 1, 0.02},
		{"hasched_schedule_lag_seconds", 3, 2},
		{"hasched_fire_to_running_seconds", 1, 3},
	} {
		h := series(t, m, c.name, nil).GetHistogram()
		if h.GetSampleCount() != c.count || h.GetSampleSum() != c.sum {
			t.Errorf("%s: %d samples summing to %v, want %d summing to %v", c.name, h.GetSampleCount(), h.GetSampleSum(), c.count, c.sum)
		}
	}
	// The 1.5s launch lands in the 2.5s bucket and not the 1s one.
	for _, b := range series(t, m, "hasched_schedule_lag_seconds", nil).GetHistogram().GetBucket() {
		switch b.GetUpperBound() {
		case 1:
			if b.GetCumulativeCount() != 2 {
				t.Errorf("schedule lag ≤1s: %d, want 2 (0s and 0.5s)", b.GetCumulativeCount())
			}
		case 2.5:
			if b.GetCumulativeCount() != 3 {
				t.Errorf("schedule lag ≤2.5s: %d, want 3", b.GetCumulativeCount())
			}
		}
	}
}

func TestLeadershipGaugesFollowTerms(t *testing.T) {
	m := newMetrics(t, Config{})
	check := func(step string, leader, term, changes float64) {
		t.Helper()
		wantValue(t, step+": hasched_is_leader", testutil.ToFloat64(m.isLeader), leader)
		wantValue(t, step+": hasched_leader_term", testutil.ToFloat64(m.leaderTerm), term)
		wantValue(t, step+": hasched_leadership_changes_total", testutil.ToFloat64(m.leaderChanges), changes)
	}
	check("at start", 0, 0, 0)
	if m.Leading() {
		t.Error("Leading before any leadership event")
	}
	m.Emit(events.Event{Kind: events.Leadership, Leader: true, Term: 41})
	check("leading term 41", 1, 41, 1)
	if !m.Leading() {
		t.Error("not Leading after the event of term 41")
	}
	m.Emit(events.Event{Kind: events.Leadership, Leader: true, Term: 41}) // said twice
	check("term 41 again", 1, 41, 1)
	m.Emit(events.Event{Kind: events.Leadership, Leader: false, Term: 41})
	check("term 41 over", 0, 41, 2)
	m.Emit(events.Event{Kind: events.Leadership, Leader: false})
	check("still standby", 0, 41, 2)
	m.Emit(events.Event{Kind: events.Leadership, Leader: true, Term: 57})
	// A term that follows one whose end was not reported is a change too.
	m.Emit(events.Event{Kind: events.Leadership, Leader: true, Term: 60})
	check("leading term 60", 1, 60, 4)
}

// The job_name label is capped: past MaxJobLabels jobs, new jobs share
// OtherJobs, so the series stay bounded however many jobs are registered.
func TestJobLabelsAreCappedAtMaxJobLabels(t *testing.T) {
	m := newMetrics(t, Config{MaxJobLabels: 2})
	for _, job := range []string{"a", "b", "c", "d", "a", "c"} {
		m.Emit(events.Event{Kind: events.Fired, Job: job})
		m.Emit(events.Event{Kind: events.Ended, Job: job, State: executor.StateFinished, Outcome: events.Done})
	}
	wantValue(t, "fires of a", testutil.ToFloat64(m.fires.WithLabelValues("a")), 2)
	wantValue(t, "fires of b", testutil.ToFloat64(m.fires.WithLabelValues("b")), 1)
	if n := testutil.CollectAndCount(m.fires, "hasched_fires_total"); n != 3 {
		t.Fatalf("hasched_fires_total has %d series, want 3 (a, b, %s)", n, OtherJobs)
	}
	wantValue(t, "fires of the other jobs", testutil.ToFloat64(m.fires.WithLabelValues(OtherJobs)), 3)
	wantValue(t, "ends of the other jobs", testutil.ToFloat64(m.ended.WithLabelValues(OtherJobs, "FINISHED", "done")), 3)
	for i := 0; i < 1000; i++ {
		m.Emit(events.Event{Kind: events.Misfired, Job: "many-" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Count: 1})
	}
	if n := testutil.CollectAndCount(m.misfires); n != 1 {
		t.Errorf("hasched_misfires_total has %d series after 1000 new jobs at the cap, want 1 (%s)", n, OtherJobs)
	}
}

func TestForgetDropsAJobsSeriesAndFreesItsPlace(t *testing.T) {
	m := newMetrics(t, Config{MaxJobLabels: 2})
	for _, ev := range []events.Event{
		{Kind: events.Fired, Job: "a"},
		{Kind: events.Misfired, Job: "a", Count: 1},
		{Kind: events.Launched, Job: "a"},
		{Kind: events.Ended, Job: "a", State: executor.StateFailed, Outcome: events.GivenUp},
		{Kind: events.Fired, Job: "b"},
		{Kind: events.Fired, Job: "c"}, // at the cap
	} {
		m.Emit(ev)
	}
	m.Emit(events.Event{Kind: events.JobRemoved, Job: "a"}) // as the term tells a deregistration
	for _, v := range []prometheus.Collector{m.fires, m.misfires, m.launches, m.ended} {
		if strings.Contains(scrapeOf(t, v), `job_name="a"`) {
			t.Errorf("a series of the forgotten job a is left:\n%s", scrapeOf(t, v))
		}
	}
	wantValue(t, "fires of b", testutil.ToFloat64(m.fires.WithLabelValues("b")), 1)
	m.Forget("never-seen") // no-op
	m.Forget(OtherJobs)    // not a job: nothing happens to the other jobs' series
	wantValue(t, "fires of the other jobs", testutil.ToFloat64(m.fires.WithLabelValues(OtherJobs)), 1)
	// a's place is free: the next new job gets its own series.
	m.Emit(events.Event{Kind: events.Fired, Job: "d"})
	wantValue(t, "fires of d", testutil.ToFloat64(m.fires.WithLabelValues("d")), 1)
	wantValue(t, "fires of the other jobs", testutil.ToFloat64(m.fires.WithLabelValues(OtherJobs)), 1)
}

// A value the contract does not know never becomes a label of its own.
func TestEmitFoldsUnknownValues(t *testing.T) {
	m := newMetrics(t, Config{})
	m.Emit(events.Event{Kind: events.Ended, Job: "a", State: "SOMETHING_NEW", Outcome: "shrug"})
	m.Emit(events.Event{Kind: events.Fired, Job: "\xff\xfe"}) // would make client_golang panic
	m.Emit(events.Event{Kind: events.Fired, Job: ""})
	m.Emit(events.Event{Kind: "no such kind", Job: "z"})
	wantValue(t, "ends in an unknown state", testutil.ToFloat64(m.ended.WithLabelValues("a", "OTHER", "other")), 1)
	wantValue(t, "fires of unlabelable jobs", testutil.ToFloat64(m.fires.WithLabelValues(OtherJobs)), 2)
	if n := testutil.CollectAndCount(m.fires); n != 1 {
		t.Errorf("hasched_fires_total has %d series, want 1", n)
	}
}

func TestScrapeReadsCallbacks(t *testing.T) {
	var mu sync.Mutex
	depths, ok := Depths{Ready: 3, Running: 2, Failover: 1}, true
	m := newMetrics(t, Config{
		Depths: func() (Depths, bool) { mu.Lock(); defer mu.Unlock(); return depths, ok },
		Workers: func() (int, int, bool) {
			mu.Lock()
			defer mu.Unlock()
			return 4, 7, ok
		},
	})
	for q, want := range map[string]float64{"ready": 3, "running": 2, "failover": 1} {
		wantValue(t, "hasched_queue_tasks "+q, series(t, m, "hasched_queue_tasks", map[string]string{"queue": q}).GetGauge().GetValue(), want)
	}
	wantValue(t, "hasched_workers", series(t, m, "hasched_workers", nil).GetGauge().GetValue(), 4)
	wantValue(t, "hasched_placed_tasks", series(t, m, "hasched_placed_tasks", nil).GetGauge().GetValue(), 7)

	mu.Lock()
	depths.Ready = 9
	mu.Unlock()
	wantValue(t, "hasched_queue_tasks ready at the next scrape", series(t, m, "hasched_queue_tasks", map[string]string{"queue": "ready"}).GetGauge().GetValue(), 9)

	// A standby has no queues: not ok exports nothing, rather than zeros
	// that would read as an empty queue.
	mu.Lock()
	ok = false
	mu.Unlock()
	for _, name := range []string{"hasched_queue_tasks", "hasched_workers", "hasched_placed_tasks"} {
		if family(t, m, name) != nil {
			t.Errorf("%s exported while its callback says not ok", name)
		}
	}
}

func TestNilCallbacksExportNothing(t *testing.T) {
	m := newMetrics(t, Config{})
	for _, name := range []string{"hasched_queue_tasks", "hasched_workers", "hasched_placed_tasks"} {
		if family(t, m, name) != nil {
			t.Errorf("%s exported without a callback", name)
		}
	}
}

// scrapeOf is c's metrics in the text format.
func scrapeOf(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	return httptestScrape(t, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
}

func httptestScrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// populated is a Metrics with every one of hasched's metrics holding a
// series.
func populated(t *testing.T) *Metrics {
	t.Helper()
	m := newMetrics(t, Config{
		Depths:  func() (Depths, bool) { return Depths{Ready: 1, Running: 2, Failover: 3}, true },
		Workers: func() (int, int, bool) { return 2, 5, true },
	})
	for _, ev := range []events.Event{
		{Kind: events.Leadership, Leader: true, Term: 7},
		{Kind: events.Fired, Job: "a", Lag: time.Millisecond},
		{Kind: events.Misfired, Job: "a", Count: 2},
		{Kind: events.Launched, Job: "a", Lag: 30 * time.Millisecond},
		{Kind: events.Running, Job: "a", Lag: 80 * time.Millisecond},
		{Kind: events.Ended, Job: "a", State: executor.StateFinished, Outcome: events.Done},
	} {
		m.Emit(ev)
	}
	m.coordOps.WithLabelValues("etcd", opGet, "ok").Observe(0.001)
	return m
}

// hascheds is every metric the package exports.
var hascheds = []string{
	"hasched_fires_total", "hasched_misfires_total", "hasched_task_launches_total",
	"hasched_task_runs_ended_total", "hasched_fire_lag_seconds", "hasched_schedule_lag_seconds",
	"hasched_fire_to_running_seconds", "hasched_is_leader", "hasched_leader_term",
	"hasched_leadership_changes_total", "hasched_coordinator_operation_duration_seconds",
	"hasched_queue_tasks", "hasched_workers", "hasched_placed_tasks",
}

// The scrape of a registry with every metric populated passes `promtool
// check metrics`: Prometheus' own lint of names, units, suffixes and help.
// promtool is Debian's prometheus package, which .ci/run installs; a
// machine without it fails this test rather than skipping the check.
func TestScrapePassesPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not on PATH (%v): install Debian's prometheus package (apt-get install prometheus), as .ci/run does", err)
	}
	text := httptestScrape(t, populated(t).Handler())
	for _, name := range append(hascheds, "go_goroutines", "process_cpu_seconds_total", "promhttp_metric_handler_requests_total") {
		if !strings.Contains(text, "\n# TYPE "+name+" ") {
			t.Errorf("the scrape has no %s", name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("promtool check metrics: %v\n%s\nof the scrape:\n%s", err, out, text)
	}
}

// More scrapes at once than MaxScrapes get 503 instead of piling up.
func TestHandlerLimitsConcurrentScrapes(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	m := newMetrics(t, Config{MaxScrapes: 1, Depths: func() (Depths, bool) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return Depths{}, true
	}})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	first := make(chan int, 1)
	go func() {
		res, err := http.Get(srv.URL)
		if err != nil {
			first <- 0
			return
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		first <- res.StatusCode
	}()
	<-entered
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("second scrape: %v", err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	close(release)
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a second scrape while one runs with MaxScrapes 1: status %d, want 503", res.StatusCode)
	}
	if code := <-first; code != http.StatusOK {
		t.Errorf("the first scrape: status %d, want 200", code)
	}
	http.DefaultClient.CloseIdleConnections()
}
