package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/hasched/hasched/coord"
)

// withdrawTimeout bounds each request that withdraws or re-checks a
// candidacy outside a caller's context, and how long Campaign waits for the
// withdrawal once its ctx has ended. Past it the lease's expiry withdraws
// the candidacy anyway.
const withdrawTimeout = 3 * time.Second

var (
	errCandidateDeleted = errors.New("the candidate key was deleted")
	errWatchBroken      = errors.New("the watch on the candidate key broke")
)

// Leadership is one term won by Campaign. Besides coord.Leadership it
// offers IsOwner, to fence etcd writes made on the term's behalf.
type Leadership struct {
	c        *Coordinator
	election string
	key      string
	rev      int64
	lost     chan struct{}
	// resigning tells the term's goroutine that the key's deletion it is
	// about to see is Resign's.
	resigning atomic.Bool
	stop      context.CancelFunc // ends the term's goroutine
	finished  chan struct{}      // closed once that goroutine has ended
}

var _ coord.Leadership = (*Leadership)(nil)

// Token is the candidate key's create revision: etcd's revisions grow
// cluster-wide, so every later term of any election has a greater one.
func (l *Leadership) Token() int64 { return l.rev }

// Lost is closed when the term ends: Resign, the candidate key deleted, or
// the session ended.
func (l *Leadership) Lost() <-chan struct{} { return l.lost }

// Key is the candidate key in etcd.
func (l *Leadership) Key() string { return l.key }

// IsOwner compares true while this term's candidate key is in place; put it
// in the If of a transaction to make a write conditional on the term.
func (l *Leadership) IsOwner() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)
}

// Resign deletes the candidate key, if it is still this term's, and waits
// until Lost is closed. It is a no-op once the term has ended. If the delete
// fails, the term goes on and Resign may be called again.
func (l *Leadership) Resign(ctx context.Context) error {
	select {
	case <-l.lost:
		return nil
	default:
	}
	l.resigning.Store(true)
	// The same guarded delete as concurrency.Election.Resign, which cannot
	// be retried after a failure and is not safe for concurrent use.
	if _, err := l.c.cli.Txn(ctx).If(l.IsOwner()).Then(clientv3.OpDelete(l.key)).Commit(); err != nil {
		l.resigning.Store(false)
		select {
		case <-l.lost:
			return nil
		default:
			return l.c.fail("resign", l.election, err)
		}
	}
	l.stop()
	<-l.finished
	return nil
}

// Campaign runs concurrency.Election on the children of the election node,
// so candidates are its children and deleting one ends its campaign. Each
// candidacy is owned by a goroutine of the Coordinator that also watches the
// candidate's own key from before it is made: concurrency.Election does not,
// and may report a win after the key is gone (etcd #19597). A win is
// reported only after the key is read back with the session's lease.
func (c *Coordinator) Campaign(ctx context.Context, election string, value []byte) (coord.Leadership, error) {
	if err := coord.ValidateNodePath(election); err != nil {
		return nil, fmt.Errorf("campaign %s: %w", election, err)
	}
	if err := coord.CheckValue(value); err != nil {
		return nil, fmt.Errorf("campaign %s: %w", election, err)
	}
	if err := c.state(); err != nil {
		return nil, fmt.Errorf("campaign %s: %w", election, err)
	}
	if !c.reserve(election) {
		return nil, fmt.Errorf("campaign %s: %w", election, coord.ErrAlreadyCampaigning)
	}
	cd, err := c.nominate(ctx, election, value)
	if err != nil {
		c.release(election)
		return nil, err
	}

	select {
	case <-cd.decided:
	case <-ctx.Done():
		// The campaign's context derives from ctx, so the candidacy is
		// being withdrawn; wait for that, but not for long.
		t := time.NewTimer(withdrawTimeout)
		select {
		case <-cd.decided:
		case <-t.C:
		}
		t.Stop()
	}
	cd.mu.Lock()
	select {
	case <-cd.decided:
	default:
		// The goroutine withdraws the candidacy when it can, or the
		// session's end does.
		cd.abandoned = true
		cd.mu.Unlock()
		return nil, fmt.Errorf("campaign %s: %w", election, ctx.Err())
	}
	l, err := cd.l, cd.err
	cd.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("campaign %s: %w", election, err)
	}
	if ctx.Err() != nil {
		// Won just as the caller gave up: nobody would lead this term.
		rctx, cancel := context.WithTimeout(context.Background(), withdrawTimeout)
		_ = l.Resign(rctx)
		cancel()
		return nil, fmt.Errorf("campaign %s: %w", election, ctx.Err())
	}
	c.log.Info("leadership acquired", "election", election, "token", l.rev)
	return l, nil
}

// reserve marks election as campaigned in by this session; false if it is
// already.
func (c *Coordinator) reserve(election string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, busy := c.campaigns[election]; busy {
		return false
	}
	c.campaigns[election] = struct{}{}
	return true
}

func (c *Coordinator) release(election string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.campaigns, election)
}

// candidacy is one Campaign call's candidate, from before its key is made
// until its campaign fails or its term ends.
type candidacy struct {
	c        *Coordinator
	election string
	key      string
	value    string
	el       *concurrency.Election
	caller   context.Context

	campCtx    context.Context // ends with the caller's ctx or the session
	cancelCamp context.CancelCauseFunc
	stopAfter  func() bool
	watchCtx   context.Context // ends with the session or the term
	stopWatch  context.CancelFunc

	// Handing the outcome to Campaign: once abandoned, Campaign has
	// returned and the goroutine withdraws whatever it won.
	mu        sync.Mutex
	decided   chan struct{}
	l         *Leadership
	err       error
	abandoned bool
}

// nominate makes sure the election node exists, starts watching the
// candidate key and starts the goroutine that campaigns.
func (c *Coordinator) nominate(ctx context.Context, election string, value []byte) (*candidacy, error) {
	prefix := c.keys.electionPrefix(election)
	key := fmt.Sprintf("%s/%x", prefix, c.session.Lease())
	// The revision this read is made at is where the watch on the candidate
	// key starts, so the watch sees the key made and every change after.
	// The election node is made only if missing: a requeueing candidate
	// should take its place in the queue with as few round trips as it can.
	var resp *clientv3.GetResponse
	for made := false; ; made = true {
		var err error
		resp, err = c.cli.Get(ctx, c.keys.node(election), clientv3.WithKeysOnly())
		if err != nil {
			return nil, c.fail("campaign", election, err)
		}
		if len(resp.Kvs) > 0 {
			break
		}
		if made {
			return nil, fmt.Errorf("campaign %s: the election node was deleted meanwhile: %w", election, coord.ErrNotFound)
		}
		// Candidates are children of the election node, so it must exist.
		if _, err := c.Create(ctx, election, nil); err != nil && !errors.Is(err, coord.ErrExists) {
			return nil, fmt.Errorf("campaign %s: %w", election, err)
		}
	}
	if resp.Kvs[0].Lease != 0 {
		return nil, fmt.Errorf("campaign %s: the election node is ephemeral: %w", election, coord.ErrEphemeralParent)
	}

	session := c.ctx
	campCtx, cancelCamp := context.WithCancelCause(ctx)
	watchCtx, stopWatch := context.WithCancel(session)
	cd := &candidacy{
		c:          c,
		election:   election,
		key:        key,
		value:      string(value),
		el:         concurrency.NewElection(c.session, prefix),
		caller:     ctx,
		campCtx:    campCtx,
		cancelCamp: cancelCamp,
		stopAfter:  context.AfterFunc(session, func() { cancelCamp(coord.ErrSessionLost) }),
		watchCtx:   watchCtx,
		stopWatch:  stopWatch,
		decided:    make(chan struct{}),
	}
	// WithRequireLeader ends the watch if its member loses the cluster's
	// leader, rather than leave it silent on the wrong side of a partition.
	wch := c.cli.Watch(clientv3.WithRequireLeader(watchCtx), key, clientv3.WithRev(resp.Header.Revision+1))
	if !c.spawn(func() { cd.run(wch) }) {
		stopWatch()
		cd.stopAfter()
		cancelCamp(nil)
		return nil, fmt.Errorf("campaign %s: %w", election, coord.ErrClosed)
	}
	return cd, nil
}

// run campaigns, hands the outcome to Campaign and, after a win, keeps the
// term until it ends.
func (cd *candidacy) run(wch clientv3.WatchChan) {
	c := cd.c
	defer cd.stopAfter()
	defer cd.cancelCamp(nil)

	// Election.Campaign runs apart because, when its context ends, it
	// withdraws with the client's context, which can block until Close: on
	// a connection that died silently, until gRPC's keep-alive drops it.
	// Once the session has ended that withdrawal is moot (the lease and the
	// key go with it) and nobody waits for it: run answers at once and
	// leaves it to end in the background; it is counted in wg, and Close
	// closes the client before waiting, which ends it.
	campDone := make(chan error, 1)
	c.wg.Add(1) // safe against Close's Wait: run itself is counted
	go func() {
		defer c.wg.Done()
		campDone <- cd.el.Campaign(cd.campCtx, cd.value)
	}()
	var err error
	sessionEnded := c.ctx.Done()
	for waiting := true; waiting; {
		select {
		case err = <-campDone:
			waiting = false
		case <-sessionEnded:
			// From here on cd.el belongs to the goroutine above:
			// withdraw, which would read it, does nothing once the
			// session has ended.
			err = errors.New("the session ended during the campaign")
			waiting = false
		case wr, ok := <-wch:
			switch {
			case !ok || wr.Err() != nil:
				cd.cancelCamp(errWatchBroken)
				wch = nil
			case deleted(wr):
				cd.cancelCamp(errCandidateDeleted)
				wch = nil
			}
		}
	}
	var l *Leadership
	if err == nil {
		l, err = cd.confirm()
	}
	if err != nil {
		err = cd.explain(err)
		cd.withdraw()
		cd.stopWatch()
		c.release(cd.election)
		cd.deliver(nil, err)
		return
	}
	if !cd.deliver(l, nil) {
		cd.withdraw()
		cd.stopWatch()
		c.release(cd.election)
		return
	}
	reason := cd.keep(l, wch)
	cd.stopWatch()
	c.release(cd.election)
	close(l.lost)
	if reason == "resigned" {
		c.log.Info("leadership ended", "election", cd.election, "token", l.rev, "reason", reason)
	} else {
		c.log.Warn("leadership lost", "election", cd.election, "token", l.rev, "reason", reason)
	}
	close(l.finished)
}

// confirm checks a win reported by Election.Campaign: the candidate key must
// still be there, made at the revision the election went by, bound to this
// session's lease, and the session must still be alive.
func (cd *candidacy) confirm() (*Leadership, error) {
	rev := cd.el.Rev()
	resp, err := cd.c.cli.Get(cd.campCtx, cd.key)
	if err != nil {
		return nil, err
	}
	switch {
	case len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != rev:
		return nil, errCandidateDeleted
	case clientv3.LeaseID(resp.Kvs[0].Lease) != cd.c.session.Lease():
		return nil, fmt.Errorf("the candidate key is bound to lease %x, not the session's", resp.Kvs[0].Lease)
	}
	select {
	case <-cd.c.ctx.Done():
		return nil, coord.ErrSessionLost
	default:
	}
	return &Leadership{
		c:        cd.c,
		election: cd.election,
		key:      cd.key,
		rev:      rev,
		lost:     make(chan struct{}),
		stop:     cd.stopWatch,
		finished: make(chan struct{}),
	}, nil
}

// explain turns why a campaign failed into the error Campaign returns.
func (cd *candidacy) explain(err error) error {
	if st := cd.c.state(); st != nil {
		return fmt.Errorf("%w (%v)", st, err)
	}
	cause := context.Cause(cd.campCtx)
	switch {
	case errors.Is(cause, errCandidateDeleted) || errors.Is(err, errCandidateDeleted):
		// The lease's expiry deletes the key before the client notices
		// that the session has ended.
		if cd.c.leaseExpired() {
			return fmt.Errorf("%w: %v", coord.ErrSessionLost, errCandidateDeleted)
		}
		// The session may have ended while its lease was asked about:
		// the question is then cancelled with it, and the answer is the
		// session's end, not a deposition.
		if st := cd.c.state(); st != nil {
			return fmt.Errorf("%w (%v)", st, errCandidateDeleted)
		}
		return fmt.Errorf("%w: %v", coord.ErrNotLeader, errCandidateDeleted)
	case cd.caller.Err() != nil:
		return cd.caller.Err()
	case errors.Is(cause, errWatchBroken):
		return fmt.Errorf("%w: %w", errWatchBroken, err)
	}
	return err
}

// leaseExpired asks the cluster whether the session's lease is gone.
func (c *Coordinator) leaseExpired() bool {
	ctx, cancel := context.WithTimeout(c.ctx, withdrawTimeout)
	defer cancel()
	resp, err := c.cli.TimeToLive(ctx, c.session.Lease())
	return err == nil && resp.TTL <= 0
}

// withdraw deletes the candidate key if it is still this candidacy's.
// Election.Campaign withdraws only when its context ends, and leaves the key
// behind after other errors (etcd #21128).
func (cd *candidacy) withdraw() {
	session := cd.c.ctx
	if session.Err() != nil {
		return // the lease, and the key with it, is gone or being revoked
	}
	ctx, cancel := context.WithTimeout(session, withdrawTimeout)
	defer cancel()
	guard := clientv3.Compare(clientv3.LeaseValue(cd.key), "=", cd.c.session.Lease())
	if rev := cd.el.Rev(); rev != 0 {
		guard = clientv3.Compare(clientv3.CreateRevision(cd.key), "=", rev)
	}
	if _, err := cd.c.cli.Txn(ctx).If(guard).Then(clientv3.OpDelete(cd.key)).Commit(); err != nil {
		cd.c.log.Warn("could not withdraw a candidacy; it goes when the session ends", "election", cd.election, "error", err)
	}
}

// deliver hands the outcome to Campaign; false if Campaign has returned.
func (cd *candidacy) deliver(l *Leadership, err error) bool {
	cd.mu.Lock()
	defer cd.mu.Unlock()
	if cd.abandoned {
		return false
	}
	cd.l, cd.err = l, err
	close(cd.decided)
	return true
}

// keep holds a term until it ends and says why it ended.
func (cd *candidacy) keep(l *Leadership, wch clientv3.WatchChan) string {
	for {
		select {
		case <-cd.watchCtx.Done():
			if cd.c.ctx.Err() != nil {
				if cd.c.isClosed() {
					return "closed"
				}
				return "session ended"
			}
			return "resigned"
		case wr, ok := <-wch:
			if ok && wr.Err() == nil {
				if deleted(wr) {
					if l.resigning.Load() {
						return "resigned"
					}
					return "candidate key deleted"
				}
				continue
			}
			if cd.watchCtx.Err() != nil {
				wch = nil // the Done case says why
				continue
			}
			var err error
			if ok {
				err = wr.Err()
			}
			cd.c.log.Debug("the watch on the leader key broke; re-checking the key", "election", cd.election, "error", err)
			var gone bool
			wch, gone = cd.rewatch(l)
			if gone {
				return "candidate key deleted"
			}
		}
	}
}

// rewatch re-reads the candidate key after its watch broke (compaction, a
// member without leader) and watches it again from the revision read; gone
// if the key is no longer this term's. It retries reads until the key is
// read or the term's context ends; a cluster that stays out of reach ends
// the session, and so the term.
func (cd *candidacy) rewatch(l *Leadership) (wch clientv3.WatchChan, gone bool) {
	delay := 100 * time.Millisecond
	for cd.watchCtx.Err() == nil {
		ctx, cancel := context.WithTimeout(cd.watchCtx, withdrawTimeout)
		resp, err := cd.c.cli.Get(ctx, cd.key)
		cancel()
		if err == nil {
			if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != l.rev {
				return nil, true
			}
			return cd.c.cli.Watch(clientv3.WithRequireLeader(cd.watchCtx), cd.key, clientv3.WithRev(resp.Header.Revision+1)), false
		}
		t := time.NewTimer(delay)
		select {
		case <-cd.watchCtx.Done():
		case <-t.C:
		}
		t.Stop()
		delay = min(2*delay, time.Second)
	}
	return nil, false
}

func deleted(wr clientv3.WatchResponse) bool {
	for _, ev := range wr.Events {
		if ev.Type == mvccpb.DELETE {
			return true
		}
	}
	return false
}

// Leader reads the value of the candidate with the oldest key, which is the
// leader once its campaign has confirmed the win.
func (c *Coordinator) Leader(ctx context.Context, election string) ([]byte, error) {
	if err := coord.ValidateNodePath(election); err != nil {
		return nil, fmt.Errorf("leader %s: %w", election, err)
	}
	if err := c.state(); err != nil {
		return nil, fmt.Errorf("leader %s: %w", election, err)
	}
	resp, err := concurrency.NewElection(c.session, c.keys.electionPrefix(election)).Leader(ctx)
	if errors.Is(err, concurrency.ErrElectionNoLeader) {
		return nil, fmt.Errorf("leader %s: %w", election, coord.ErrNoLeader)
	}
	if err != nil {
		return nil, c.fail("leader", election, err)
	}
	value := resp.Kvs[0].Value
	if value == nil {
		value = []byte{}
	}
	return value, nil
}
