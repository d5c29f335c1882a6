package coord

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
)

// ElectionOption tunes RunElection.
type ElectionOption func(*electionConfig)

type electionConfig struct {
	logger   hclog.Logger
	retryMin time.Duration
	retryMax time.Duration
}

// WithElectionLogger sets the logger RunElection reports terms and retries to.
func WithElectionLogger(l hclog.Logger) ElectionOption {
	return func(c *electionConfig) { c.logger = l }
}

// WithElectionRetry sets the back-off between failed attempts to open a
// session or campaign: it starts at min and doubles up to max.
func WithElectionRetry(min, max time.Duration) ElectionOption {
	return func(c *electionConfig) { c.retryMin, c.retryMax = min, max }
}

// RunElection takes part in election until ctx is cancelled, and runs lead
// during every term this process wins (Curator's LeaderSelector with
// autoRequeue). Each round it campaigns, then calls lead with a context that
// is cancelled the moment leadership is lost or ctx ends, the session that
// won and the term's Leadership (for its token and fenced Writer), waits for
// lead to return, resigns, and campaigns again. When the session has ended it closes
// it and opens a new one with open, retrying with back-off while that fails.
//
// lead must stop everything it started before it returns: the next term
// starts from nothing. An error from lead is logged and the process requeues.
//
// RunElection returns nil once ctx is cancelled and every term has ended and
// the session it opened is closed, or an error at once if its arguments are
// invalid.
func RunElection(ctx context.Context, open func(context.Context) (Coordinator, error), election string, value []byte, lead func(ctx context.Context, c Coordinator, l Leadership) error, opts ...ElectionOption) error {
	cfg := electionConfig{logger: hclog.NewNullLogger(), retryMin: 100 * time.Millisecond, retryMax: 5 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case open == nil:
		return errors.New("coord: RunElection needs an open function")
	case lead == nil:
		return errors.New("coord: RunElection needs a lead function")
	case cfg.retryMin <= 0 || cfg.retryMax < cfg.retryMin:
		return fmt.Errorf("coord: RunElection retry back-off %v..%v is invalid", cfg.retryMin, cfg.retryMax)
	}
	if err := ValidateNodePath(election); err != nil {
		return fmt.Errorf("election %q: %w", election, err)
	}
	if err := CheckValue(value); err != nil {
		return err
	}
	log := cfg.logger.With("election", election)

	var c Coordinator
	defer func() {
		if c != nil {
			_ = c.Close()
		}
	}()
	delay := cfg.retryMin
	backoff := func() bool {
		t := time.NewTimer(delay)
		defer t.Stop()
		delay = min(delay*2, cfg.retryMax)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		if c != nil && isDone(c) {
			log.Warn("session ended; opening a new one")
			_ = c.Close()
			c = nil
		}
		if c == nil {
			nc, err := open(ctx)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				log.Warn("cannot open a session; retrying", "error", err, "retry_in", delay)
				if !backoff() {
					break
				}
				continue
			}
			c = nc
		}
		l, err := c.Campaign(ctx, election, value)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Warn("campaign failed; retrying", "error", err, "retry_in", delay)
			if errors.Is(err, ErrSessionLost) || errors.Is(err, ErrClosed) {
				_ = c.Close()
				c = nil
			}
			if !backoff() {
				break
			}
			continue
		}
		delay = cfg.retryMin
		if err := runTerm(ctx, log, c, l, lead); err != nil {
			// A candidacy that could not be withdrawn would win the next
			// campaign of this session again without a contest: end the
			// session instead, which withdraws it on the server.
			log.Warn("resign failed; closing the session", "error", err)
			_ = c.Close()
			c = nil
		}
	}
	return nil
}

// runTerm runs lead for one term and resigns when it is over. It returns the
// error of Resign.
func runTerm(ctx context.Context, log hclog.Logger, c Coordinator, l Leadership, lead func(context.Context, Coordinator, Leadership) error) error {
	log = log.With("token", l.Token())
	log.Info("leadership acquired")
	termCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-l.Lost():
			log.Warn("leadership lost; stopping the term")
		case <-termCtx.Done():
		}
		cancel()
	}()
	err := lead(termCtx, c, l)
	cancel()
	<-stopped
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("leader function failed", "error", err)
	}
	// Resign with a context of its own: ctx may be cancelled already, and a
	// clean resign lets a standby take over at once instead of after the
	// session times out.
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	err = l.Resign(rctx)
	log.Info("term ended")
	return err
}

func isDone(c Coordinator) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}
