package main

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler"
	"github.com/hasched/hasched/scheduler/metrics"
)

// serveMetrics is a serve process's Prometheus metrics (GET /metrics): the
// events of the terms it leads, the times of its coordinator sessions'
// operations (the scheduler's, the worker's), and the cluster executor's
// figures, read at scrape time from the term it leads.
type serveMetrics struct {
	*metrics.Metrics
	// sched is the scheduler, once made: it needs the metrics first, as
	// its event sink.
	sched atomic.Pointer[scheduler.Scheduler]
}

// statusTimeout bounds the scheduler's Status read at a scrape; the
// leader answers it from memory.
const statusTimeout = time.Second

func newServeMetrics() (*serveMetrics, error) {
	sm := &serveMetrics{}
	m, err := metrics.New(metrics.Config{
		Depths:  sm.depths,
		Workers: sm.workers,
	})
	if err != nil {
		return nil, err
	}
	sm.Metrics = m
	return sm, nil
}

// backendName is the backend label of cfg's coordinator: a URL scheme,
// never the URL (it may hold credentials, and is not a bounded value).
func backendName(cfg serveConfig) string {
	if cfg.embedded {
		return "etcd"
	}
	if u, err := url.Parse(cfg.coordURL); err == nil && u.Scheme != "" {
		return strings.ToLower(u.Scheme)
	}
	return "unknown"
}

// instrument returns open with the operations of every session it opens
// timed under backend.
func (sm *serveMetrics) instrument(open func(context.Context) (coord.Coordinator, error), backend string) func(context.Context) (coord.Coordinator, error) {
	return func(ctx context.Context) (coord.Coordinator, error) {
		c, err := open(ctx)
		if err != nil {
			return nil, err
		}
		return sm.Coordinator(c, backend), nil
	}
}

// serving gives the scrapes the scheduler to read.
func (sm *serveMetrics) serving(s *scheduler.Scheduler) { sm.sched.Store(s) }

// depths counts the queues of the term this process leads, from its
// memory (a standby exports nothing: its figures would be store reads at
// every scrape).
func (sm *serveMetrics) depths() (metrics.Depths, bool) {
	s := sm.sched.Load()
	if s == nil {
		return metrics.Depths{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	d, ok := s.QueueDepths(ctx)
	return metrics.Depths{Ready: d.ReadyFires, Running: d.Running, Failover: d.Failover}, ok
}

// workers reads the workers and placements of the cluster executor of the
// term this process leads. A standby, or another executor, exports
// nothing; a standby is not asked at all, as its Status reads the store.
func (sm *serveMetrics) workers() (workers, placed int, ok bool) {
	s := sm.sched.Load()
	if s == nil || !sm.Leading() {
		return 0, 0, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	st, err := s.Status(ctx)
	if err != nil || !st.Leader {
		return 0, 0, false
	}
	w, errW := strconv.Atoi(st.ExecutorInfo["workers"])
	p, errP := strconv.Atoi(st.ExecutorInfo["placed"])
	if errW != nil || errP != nil {
		return 0, 0, false
	}
	return w, p, true
}
