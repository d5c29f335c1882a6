package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
)

// maxJobBytes bounds what one job takes in GET /api/job/jobs, so that the
// read of the list is bounded by the jobs the bench wrote.
const maxJobBytes = 64 << 10

// getJobs reads GET /api/job/jobs from p to the end, streaming, and checks
// it holds want jobs. The typed client caps a response below what a large
// --jobs lists, hence a request of its own.
func (r *run) getJobs(ctx context.Context, p *proc, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/api/job/jobs", nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "hasched-bench")
	resp, err := r.httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("GET /api/job/jobs on the %s: %s: %s", p.name, resp.Status, b)
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, int64(want+1)*maxJobBytes))
	if _, err := dec.Token(); err != nil { // [
		return fmt.Errorf("GET /api/job/jobs on the %s: %w", p.name, err)
	}
	n := 0
	for dec.More() {
		var j struct {
			JobName string `json:"jobName"`
		}
		if err := dec.Decode(&j); err != nil {
			return fmt.Errorf("GET /api/job/jobs on the %s: job %d: %w", p.name, n, err)
		}
		n++
	}
	if _, err := dec.Token(); err != nil { // ]
		return fmt.Errorf("GET /api/job/jobs on the %s: %w", p.name, err)
	}
	if n != want {
		return fmt.Errorf("%w: the %s listed %d jobs, want %d", ErrListMismatch, p.name, n, want)
	}
	return nil
}

// lagRecorder keeps the schedule lag of the launches whose fire time is in
// its window, [from, to), and apart from them those of its warm-up,
// [warm, from); launches outside both (before it is armed, after it ends)
// are not counted.
type lagRecorder struct {
	mu             sync.Mutex
	warm, from, to time.Time
	max, warmMax   int
	lags, warmLags []time.Duration
}

// arm starts the warm-up [warm, from) and the window [from, to), keeping
// at most warmMax lags of the one and max of the other.
func (l *lagRecorder) arm(warm, from, to time.Time, warmMax, max int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.warm, l.from, l.to, l.warmMax, l.max = warm, from, to, warmMax, max
	l.lags, l.warmLags = make([]time.Duration, 0, max), make([]time.Duration, 0, warmMax)
}

// observe is the no-op executor's hook: a task's first Launch call.
func (l *lagRecorder) observe(t executor.Task, calledAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lags, limit := &l.lags, l.max
	if t.FireTime.Before(l.from) {
		lags, limit = &l.warmLags, l.warmMax
	}
	if t.FireTime.Before(l.warm) || !t.FireTime.Before(l.to) || len(*lags) >= limit {
		return
	}
	*lags = append(*lags, calledAt.Sub(t.FireTime))
}

func (l *lagRecorder) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lags)
}

// take returns the window's lags and the warm-up's, each sorted.
func (l *lagRecorder) take() (window, warmUp []time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	window, warmUp = slices.Clone(l.lags), slices.Clone(l.warmLags)
	sortDurations(window)
	sortDurations(warmUp)
	return window, warmUp
}

func fireJobName(i int) string { return fmt.Sprintf("bench-fire-%04d", i) }

// firingJob fires every second.
func firingJob(name string) model.Job {
	j := idleJob(name)
	j.Cron = "* * * * * ?"
	return j
}

// fires registers FireJobs jobs firing every second on the leader (the
// former standby), lets them fire for fireWarmup from the first second at
// which all of them fire, measures the fires of the Duration window after
// that, and waits up to fireGrace for the window's last fires to be
// launched. The warm-up's lags are reported in a note, apart from the
// window's.
func (r *run) fires(ctx context.Context) error {
	c, err := r.apiClient(r.leader)
	if err != nil {
		return err
	}
	if err := parallel(ctx, r.cfg.FireJobs, r.cfg.Concurrency, func(ctx context.Context, i int) error {
		if _, err := c.RegisterJob(ctx, firingJob(fireJobName(i))); err != nil {
			return fmt.Errorf("job %s: %w", fireJobName(i), err)
		}
		return nil
	}); err != nil {
		return err
	}
	seconds := int(math.Ceil(r.cfg.Duration.Seconds()))
	want := r.cfg.FireJobs * seconds
	warm := time.Now().Truncate(time.Second).Add(time.Second)
	from := warm.Add(fireWarmup)
	to := from.Add(r.cfg.Duration)
	r.lags.arm(warm, from, to, r.cfg.FireJobs*int(fireWarmup/time.Second), want)
	if err := sleepUntil(ctx, to); err != nil {
		return err
	}
	deadline := to.Add(fireGrace)
	for r.lags.count() < want && time.Now().Before(deadline) {
		if err := sleepUntil(ctx, time.Now().Add(50*time.Millisecond)); err != nil {
			return err
		}
	}
	lags, warmLags := r.lags.take()
	if len(lags) == 0 {
		return ErrNoFires
	}
	if len(lags) < want {
		r.report.Notes = append(r.report.Notes, fmt.Sprintf(
			"%d of the window's %d fires were launched within %v of its end; the lag figures are of those",
			len(lags), want, fireGrace))
	}
	if len(warmLags) > 0 {
		r.report.Notes = append(r.report.Notes, fmt.Sprintf(
			"the lag figures are of the fires after a warm-up of %v from the first second at which every job fired (new jobs' first fires also make their running parents); the warm-up's lag: p50 %.1f ms, p99 %.1f ms, of %d launches",
			fireWarmup, millis(quantile(warmLags, 0.50)), millis(quantile(warmLags, 0.99)), len(warmLags)))
	}
	r.report.Rows = append(r.report.Rows,
		Row{Key: RowLagP50, Figure: "schedule lag p50 (fire time → Launch)", Unit: UnitMillis, Hasched: millis(quantile(lags, 0.50))},
		Row{Key: RowLagP99, Figure: "schedule lag p99 (fire time → Launch)", Unit: UnitMillis, Hasched: millis(quantile(lags, 0.99))},
		Row{Key: RowLaunchRate, Figure: "launches of every-second fires", Unit: UnitPerSecond, Hasched: float64(len(lags)) / r.cfg.Duration.Seconds()},
	)
	return nil
}

// quantile of sorted lags, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func sortDurations(d []time.Duration) { slices.Sort(d) }

func sleepUntil(ctx context.Context, t time.Time) error {
	tm := time.NewTimer(time.Until(t))
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}
