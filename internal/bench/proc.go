package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler"
	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/executor"
)

// Bounds of a process's life.
const (
	// schedulerStopTimeout bounds a scheduler's end of term and resignation.
	schedulerStopTimeout = 30 * time.Second
	// apiDrainTimeout bounds the requests in flight when the API stops.
	apiDrainTimeout = 10 * time.Second
	// statusPoll is how often a wait for leadership asks the scheduler.
	statusPoll = 2 * time.Millisecond
)

// ErrStopTimeout is a scheduler that did not stop in time.
var ErrStopTimeout = errors.New("bench: the scheduler did not stop in time")

// proc is one in-process hasched process, wired as `hasched serve` wires
// one: a scheduler in the election on its own sessions, and the REST API on
// a loopback port bound for the process's life. Both goroutines are owned:
// stop waits for them.
type proc struct {
	name  string
	sched *scheduler.Scheduler
	srv   *http.Server
	base  string // http://127.0.0.1:port

	cancel  context.CancelFunc
	ran     chan error // the scheduler's Run, once
	served  chan error // the API's Serve, once
	stopped bool       // the scheduler's Run has returned
}

// procConfig is what startProc needs.
type procConfig struct {
	name     string
	open     func(context.Context) (coord.Coordinator, error)
	executor executor.Factory
	display  string // the coordinator URL without credentials
	log      hclog.Logger
}

// startProc binds the API's port, then starts the scheduler and the API.
func startProc(cfg procConfig) (*proc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%s: listen on loopback: %w", cfg.name, err)
	}
	addr := ln.Addr().String()
	log := cfg.log.Named(cfg.name)
	sched, err := scheduler.New(scheduler.Config{
		Open:           cfg.open,
		Executor:       cfg.executor,
		ExecutorName:   "bench-noop",
		Advertise:      addr,
		CoordinatorURL: cfg.display,
		Logger:         log,
	})
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("%s: %w", cfg.name, err)
	}
	handler, err := api.New(api.Config{Service: sched, Logger: log.Named("api")})
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("%s: %w", cfg.name, err)
	}
	p := &proc{
		name:  cfg.name,
		sched: sched,
		srv: &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       time.Minute,
			ErrorLog:          log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
		},
		base:   "http://" + addr,
		ran:    make(chan error, 1),
		served: make(chan error, 1),
	}
	var ctx context.Context
	ctx, p.cancel = context.WithCancel(context.Background())
	go func() { p.served <- p.srv.Serve(ln) }()
	go func() { p.ran <- sched.Run(ctx) }()
	return p, nil
}

// waitLeader waits until the scheduler serves as leader (its term has
// loaded the state and serves writes), or ctx ends, or its Run ends.
func (p *proc) waitLeader(ctx context.Context) error {
	tick := time.NewTicker(statusPoll)
	defer tick.Stop()
	for {
		st, err := p.sched.Status(ctx)
		if err == nil && st.Leader {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not lead: %w", p.name, context.Cause(ctx))
		case err := <-p.ran:
			p.stopped = true
			return fmt.Errorf("%s: the scheduler stopped: %v", p.name, err)
		case <-tick.C:
		}
	}
}

// resign cancels the scheduler's Run (a leader ends its term and resigns)
// without waiting for it.
func (p *proc) resign() { p.cancel() }

// stopScheduler cancels the scheduler and waits for its Run.
func (p *proc) stopScheduler() error {
	p.cancel()
	if p.stopped {
		return nil
	}
	select {
	case err := <-p.ran:
		p.stopped = true
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("%s: the scheduler stopped with: %w", p.name, err)
		}
		return nil
	case <-time.After(schedulerStopTimeout):
		return fmt.Errorf("%s: %w (waited %v)", p.name, ErrStopTimeout, schedulerStopTimeout)
	}
}

// stop stops the scheduler, then the API.
func (p *proc) stop() error {
	errSched := p.stopScheduler()
	ctx, cancel := context.WithTimeout(context.Background(), apiDrainTimeout)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		_ = p.srv.Close()
	}
	errAPI := <-p.served
	if errors.Is(errAPI, http.ErrServerClosed) {
		errAPI = nil
	}
	if errAPI != nil {
		errAPI = fmt.Errorf("%s: the API: %w", p.name, errAPI)
	}
	return errors.Join(errSched, errAPI)
}
