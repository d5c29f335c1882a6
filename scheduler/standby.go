package scheduler

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/store"
)

// A warm standby. A new term used to read the whole state from the
// servers, then decode and check every job, before it could schedule: with
// 100,000 jobs that was seconds on etcd and tens of seconds on ZooKeeper,
// all of it in the takeover. So while this process does not lead, its
// read session keeps Mirrors of the state, fed by watches, and a JobMemo
// of the job configurations decoded and checked, refreshed from the
// Mirrors every prewarmInterval. A new term syncs the Mirrors (one round
// trip, and the changes still in flight), loads from memory, and decodes
// only the jobs that changed since the last refresh.
//
// A term takes both for its load and closes the Mirrors once its state is
// built: while it leads, the term's own state is the copy, and keeping a
// second one would double the memory the leader needs. When the term ends
// the process is a standby again and mirrors anew.

// prewarmInterval is how often a standby refreshes its JobMemo: a job
// registered or updated since the last refresh is decoded by the term
// that takes over, which costs microseconds a job.
const prewarmInterval = 2 * time.Second

// standby holds the read session's Mirrors and JobMemo while this process
// does not lead. Its methods are safe for concurrent use; keepReadSession
// and lead call them.
type standby struct {
	log hclog.Logger

	mu      sync.Mutex
	session coord.Coordinator // the read session; nil while there is none
	mirrors *store.Mirrors    // nil while leading, or when the session cannot mirror
	memo    *store.JobMemo    // filled by prewarm; nil with mirrors
	stopPre func()            // stops prewarm and waits for it
	leading bool
}

// setSession is called with each new read session and with nil when it
// ends: the old session's Mirrors stop, and a new session mirrors at once
// unless a term leads.
func (s *standby) setSession(c coord.Coordinator) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
	s.session = c
	if !s.leading {
		s.openLocked()
	}
}

// take hands the Mirrors and the JobMemo to a starting term, which closes
// the Mirrors; either may be nil. Until release nothing new is opened.
func (s *standby) take() (*store.Mirrors, *store.JobMemo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leading = true
	s.stopPrewarmLocked()
	m, memo := s.mirrors, s.memo
	s.mirrors, s.memo = nil, nil
	if m != nil && m.Broken() {
		m.Close()
		return nil, memo
	}
	return m, memo
}

// release is called when a term has ended: the process mirrors again.
func (s *standby) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leading = false
	s.closeLocked()
	s.openLocked()
}

func (s *standby) openLocked() {
	if s.session == nil {
		return
	}
	// OpenMirrors returns at once (the first read is the Mirrors' own
	// work), so it does not hold the lock for long.
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	m, err := store.OpenMirrors(ctx, s.session)
	switch {
	case errors.Is(err, store.ErrNoMirror):
		return // a new term reads the servers
	case err != nil:
		s.log.Warn("cannot mirror the state; a new term will read it from the servers", "error", err)
		return
	}
	s.mirrors = m
	s.memo = store.NewJobMemo()
	pctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		prewarm(pctx, m, s.memo, s.log)
	}()
	s.stopPre = func() { stop(); <-done }
}

// prewarm refreshes memo from m until ctx ends. Its first refresh waits
// for the Mirrors' first full read, and says in the log when the standby
// is warm; the later ones read m without syncing it: what they decode is
// keyed by version, so a refresh that is behind only leaves more for the
// term to decode.
func prewarm(ctx context.Context, m *store.Mirrors, memo *store.JobMemo, log hclog.Logger) {
	began := time.Now()
	if err := m.Sync(ctx); err != nil {
		if ctx.Err() == nil {
			log.Warn("the standby's mirror of the state did not load", "error", err)
		}
		return
	}
	mirrored := time.Since(began)
	t := time.NewTimer(0)
	defer t.Stop()
	for warm := false; ; {
		select {
		case <-ctx.Done():
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

func (s *standby) stopPrewarmLocked() {
	if s.stopPre != nil {
		s.stopPre()
		s.stopPre = nil
	}
}

func (s *standby) closeLocked() {
	s.stopPrewarmLocked()
	if s.mirrors != nil {
		s.mirrors.Close()
		s.mirrors = nil
	}
	s.memo = nil
}
