package scheduler

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/store"
)

// A warm standby. A new term used to read the whole state from the
// servers, then decode and check every job, before it could schedule: with
// 100,000 jobs that was seconds on etcd and tens of seconds on ZooKeeper,
// all of it in the takeover. So while this process does not lead it keeps
// Mirrors of the state, fed by the watches of a session of their own, and
// a JobMemo of the job configurations decoded and checked, refreshed from
// the Mirrors every prewarmInterval. A new term syncs the Mirrors (one
// round trip, and the changes still in flight), loads from memory, and
// decodes only the jobs that changed since the last refresh.
//
// A term takes the warm state for its load and closes it, session and
// all, once its own state is built: while it leads, the term's state is
// the copy, and keeping a second one would double the memory the leader
// needs. The session goes too because a ZooKeeper client keeps every
// watch it set until it fires, two a node, whatever a closed Mirror does.
// When the term ends the process is a standby again and mirrors anew.

// prewarmInterval is how often a standby refreshes its JobMemo: a job
// registered or updated since the last refresh is decoded by the term
// that takes over, which costs microseconds a job.
const prewarmInterval = 2 * time.Second

// warmState is a standby's session, its Mirrors of the state and its
// JobMemo.
type warmState struct {
	session coord.Coordinator
	mirrors *store.Mirrors
	memo    *store.JobMemo
	stop    context.CancelFunc // stops prewarm
	done    chan struct{}      // closed when prewarm has returned
	// loaded is set once the Mirrors hold the whole state: a term takes
	// only loaded Mirrors. One still on its first full read would keep
	// reading beside the term's own read of the servers, and finish
	// later than it (minutes for 100,000 jobs on ZooKeeper).
	loaded atomic.Bool
}

// close stops the Mirrors and ends their session.
func (w *warmState) close() {
	w.mirrors.Close()
	_ = w.session.Close()
}

// standby keeps the warm state while this process does not lead. run
// owns the sessions it opens; take and release are called by lead.
type standby struct {
	log  hclog.Logger
	open func(context.Context) (coord.Coordinator, error)
	wake chan struct{} // a term has ended: mirror again

	mu      sync.Mutex
	cur     *warmState // nil while leading, or while none is open
	leading bool
}

func newStandby(log hclog.Logger, open func(context.Context) (coord.Coordinator, error)) *standby {
	return &standby{log: log, open: open, wake: make(chan struct{}, 1)}
}

// run keeps a warm state while this process does not lead, until ctx
// ends: it opens a session, mirrors the state and refreshes the memo
// until a term takes them or the session ends, then does it again once
// no term leads. A backend that cannot mirror ends it at once.
func (s *standby) run(ctx context.Context) {
	delay := 100 * time.Millisecond
	backoff := func() bool {
		ok := sleep(ctx, delay)
		delay = min(delay*2, 5*time.Second)
		return ok
	}
	for ctx.Err() == nil {
		s.mu.Lock()
		leading := s.leading
		s.mu.Unlock()
		if leading {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
			continue
		}
		c, err := s.open(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("cannot open the standby's session; retrying", "error", err, "retry_in", delay)
			}
			if !backoff() {
				return
			}
			continue
		}
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		m, err := store.OpenMirrors(octx, c)
		cancel()
		if errors.Is(err, store.ErrNoMirror) {
			_ = c.Close()
			return // a new term reads the servers
		}
		if err != nil {
			_ = c.Close()
			s.log.Warn("cannot mirror the state; retrying", "error", err, "retry_in", delay)
			if !backoff() {
				return
			}
			continue
		}
		delay = 100 * time.Millisecond
		pctx, stop := context.WithCancel(ctx)
		w := &warmState{session: c, mirrors: m, memo: store.NewJobMemo(), stop: stop, done: make(chan struct{})}
		s.mu.Lock()
		if s.leading { // a term started meanwhile: it reads the servers
			s.mu.Unlock()
			stop()
			w.close()
			continue
		}
		s.cur = w
		s.mu.Unlock()
		prewarm(pctx, w, s.log)
		close(w.done)
		s.mu.Lock()
		mine := s.cur == w
		if mine {
			s.cur = nil
		}
		s.mu.Unlock()
		stop()
		if mine { // not taken: the session ended, or ctx
			w.close()
		}
	}
}

// take hands the warm state to a starting term, which closes it; nil if
// there is none, or if its Mirrors have not loaded yet (then take closes
// them). Until release run opens nothing.
func (s *standby) take() *warmState {
	s.mu.Lock()
	s.leading = true
	w := s.cur
	s.cur = nil
	s.mu.Unlock()
	if w == nil {
		return nil
	}
	w.stop()
	<-w.done // a refresh in progress finishes: the memo is the term's now
	if !w.loaded.Load() {
		s.log.Info("the standby's mirror of the state is still loading; the term reads the servers")
		w.close()
		return nil
	}
	if w.mirrors.Broken() {
		w.close()
		return nil
	}
	return w
}

// release is called when a term has ended: the process mirrors again.
func (s *standby) release() {
	s.mu.Lock()
	s.leading = false
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// prewarm refreshes w's memo from its Mirrors until ctx ends or w's
// session does. It first waits for the Mirrors' first full read and marks
// w loaded, and says in the log when the standby is warm; the later
// refreshes read the Mirrors without syncing them: what they decode is
// keyed by version, so a refresh that is behind only leaves more for the
// term to decode.
func prewarm(ctx context.Context, w *warmState, log hclog.Logger) {
	c, m, memo := w.session, w.mirrors, w.memo
	began := time.Now()
	if err := m.Sync(ctx); err != nil {
		if ctx.Err() == nil {
			log.Warn("the standby's mirror of the state did not load", "error", err)
		}
		return
	}
	w.loaded.Store(true)
	mirrored := time.Since(began)
	t := time.NewTimer(0)
	defer t.Stop()
	for warm := false; ; {
		select {
		case <-ctx.Done():
			return
		case <-c.Done():
			log.Warn("the standby's session ended; mirroring again")
			return
		case <-t.C:
		}
		_, _, err := m.Reader().CheckedJobs(ctx, memo)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Debug("cannot refresh the standby's job memo", "error", err)
		case err == nil && !warm:
			warm = true
			log.Info("standby is warm: the state is mirrored and the jobs decoded", "jobs", memo.Len(),
				"mirrored_in", mirrored, "warm_in", time.Since(began))
		}
		t.Reset(prewarmInterval)
	}
}
