package zk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/hasched/hasched/coord"
)

// Elections are Curator's LeaderLatch: every candidate is an ephemeral
// sequential child of the election node, the lowest sequence number leads,
// and each other candidate watches only the candidate just before it (no
// herd). Candidates are protected nodes, named "_c_<GUID>-n_<sequence>" as
// Curator names them, so that a create whose answer was lost with the
// connection is found again rather than left behind as a ghost candidate.
const (
	protectedPrefix = "_c_"
	candidateName   = "n_"
)

// withdrawTimeout bounds how long a failed or cancelled Campaign waits for
// its candidate node to be deleted before it returns; the deletion goes on
// in the background until the session ends.
const withdrawTimeout = 5 * time.Second

// errCandidateGone reports that a candidate node vanished while its session
// lived: it was deleted from outside, which ends the campaign.
var errCandidateGone = errors.New("the candidate node was deleted")

// candidate is one child of an election node.
type candidate struct {
	name string
	seq  int64
}

// sequence returns the counter ZooKeeper appended to a sequential node's
// name.
func sequence(name string) (int64, bool) {
	if len(name) < coord.SequenceWidth {
		return 0, false
	}
	digits := name[len(name)-coord.SequenceWidth:]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil
}

// sortCandidates orders an election node's children by sequence number,
// which is the order they were created in; names would not do, their GUID
// prefixes differ. Children without a sequence number are not candidates.
func sortCandidates(names []string) []candidate {
	cands := make([]candidate, 0, len(names))
	for _, name := range names {
		if seq, ok := sequence(name); ok {
			cands = append(cands, candidate{name, seq})
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].seq != cands[j].seq {
			return cands[i].seq < cands[j].seq
		}
		return cands[i].name < cands[j].name
	})
	return cands
}

// Campaign blocks until this session leads the election, ctx ends or the
// session does. It never reports leadership on a wake-up: every change
// re-reads the candidates, and the lowest one is checked to be this
// session's own before Campaign returns.
func (c *Coordinator) Campaign(ctx context.Context, election string, value []byte) (coord.Leadership, error) {
	if err := coord.ValidateNodePath(election); err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	if err := coord.CheckValue(value); err != nil {
		return nil, fmt.Errorf("campaign %s: %w", election, err)
	}
	if err := c.endErr(); err != nil {
		return nil, fmt.Errorf("campaign %s: %w", election, err)
	}
	if !c.reserve(election) {
		return nil, fmt.Errorf("campaign %s: %w", election, coord.ErrAlreadyCampaigning)
	}
	l, err := c.campaign(ctx, election, value)
	if err != nil {
		c.release(election)
		return nil, c.fail("campaign", election, err)
	}
	return l, nil
}

// reserve claims the election for one campaign of this Coordinator, held
// until the campaign fails or its leadership is lost.
func (c *Coordinator) reserve(election string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.campaigns[election] {
		return false
	}
	c.campaigns[election] = true
	return true
}

func (c *Coordinator) release(election string) {
	c.mu.Lock()
	delete(c.campaigns, election)
	c.mu.Unlock()
}

func (c *Coordinator) campaign(ctx context.Context, election string, value []byte) (*Leadership, error) {
	dir := c.full(election)
	if err := c.ensureNode(ctx, dir); err != nil {
		return nil, err
	}
	var guid [16]byte
	if _, err := rand.Read(guid[:]); err != nil {
		return nil, err
	}
	prefix := protectedPrefix + hex.EncodeToString(guid[:]) + "-" + candidateName

	made := make(chan result[string], 1)
	if !c.spawn(func() {
		name, err := c.createCandidate(dir, prefix, value)
		made <- result[string]{name, err}
	}) {
		return nil, c.endErr()
	}
	var name string
	select {
	case r := <-made:
		if r.err != nil {
			return nil, r.err
		}
		name = r.v
	case <-ctx.Done():
		// The create may still succeed: withdraw the candidate once it has.
		c.spawn(func() {
			if r := <-made; r.err == nil {
				c.withdraw(dir + "/" + r.v)
			}
		})
		return nil, ctx.Err()
	case <-c.done:
		return nil, c.endErr()
	}
	c.log.Debug("candidate created", "election", election, "candidate", name)

	node := dir + "/" + name
	l, err := c.await(ctx, election, dir, name)
	if err != nil {
		// A candidate left behind would lead later with nobody acting on it.
		c.withdrawWait(node)
		if errors.Is(err, errCandidateGone) {
			if e := c.endErr(); e != nil {
				return nil, e
			}
			return nil, fmt.Errorf("%w: %s", errCandidateGone, name)
		}
		return nil, err
	}
	return l, nil
}

// createCandidate makes a protected ephemeral sequential node prefix<seq>
// under dir and returns its name. It runs in a goroutine of the Coordinator
// and ends when the session does. After a connection broke before the answer
// came, it looks for the node by its prefix before it creates another.
// (go-zookeeper's CreateProtectedEphemeralSequential does this too, but gives
// up, forgetting the GUID, when the look-up fails.)
func (c *Coordinator) createCandidate(dir, prefix string, value []byte) (string, error) {
	ctx := context.Background()
	mayExist := false
	for wait := retryMin; ; wait = min(2*wait, retryMax) {
		if mayExist {
			names, _, err := c.conn.Children(dir)
			switch {
			case err == nil:
				for _, name := range names {
					if strings.HasPrefix(name, prefix) {
						return name, nil
					}
				}
				mayExist = false
			case !isConnErr(err):
				return "", err
			}
		}
		if !mayExist {
			made, err := c.conn.Create(dir+"/"+prefix, value, zk.FlagEphemeral|zk.FlagSequence, c.acl)
			switch {
			case err == nil:
				return coord.Base(made), nil
			case errors.Is(err, zk.ErrNoServer): // never sent
			case isConnErr(err):
				mayExist = true
			default:
				return "", err
			}
		}
		if err := c.sleep(ctx, wait); err != nil {
			return "", err
		}
	}
}

// await waits until the candidate name leads, re-reading the candidates on
// every change of its predecessor or of itself.
func (c *Coordinator) await(ctx context.Context, election, dir, name string) (*Leadership, error) {
	node := dir + "/" + name
	var own <-chan zk.Event // a watch on the candidate itself
	var ownStat *zk.Stat    // its stat when own was set
	for {
		reconnect := c.nextReconnect()
		if own == nil {
			w, stat, err := c.watch(ctx, node)
			if err != nil {
				return nil, err
			}
			own, ownStat = w, stat
		}
		names, err := c.children(ctx, dir)
		if errors.Is(err, zk.ErrNoNode) {
			return nil, errCandidateGone // with the election node
		}
		if err != nil {
			return nil, err
		}
		cands := sortCandidates(names)
		i := slices.IndexFunc(cands, func(cd candidate) bool { return cd.name == name })
		if i < 0 {
			return nil, errCandidateGone
		}
		if i == 0 {
			// The stat read with own is still the candidate's unless own
			// has fired: ZooKeeper sends a watch's event before its
			// answers to later requests, and go-zookeeper hands the event
			// to its channel before it hands those answers over, so a
			// change made before the children were read is in own by now.
			// Not read again, the hand-over costs a round trip less.
			select {
			case <-own:
				own = nil
				continue
			default:
			}
			stat := ownStat
			// CURATOR-696: the lowest candidate leads only if it is this
			// session's own.
			if stat.EphemeralOwner != c.session.Load() {
				c.lose(fmt.Sprintf("candidate %s belongs to session %s", name, hexID(stat.EphemeralOwner)))
				return nil, coord.ErrSessionLost
			}
			return c.lead(election, node, stat, own)
		}
		pred := dir + "/" + cands[i-1].name
		type watched struct {
			exists bool
			ch     <-chan zk.Event
		}
		w, err := call(ctx, c, true, func(conn *zk.Conn) (watched, error) {
			ok, _, ch, err := conn.ExistsW(pred)
			return watched{ok, ch}, err
		})
		if err != nil {
			return nil, err
		}
		if !w.exists {
			// The watch is one on the predecessor's creation, which will
			// not come: go on at once.
			continue
		}
		c.log.Trace("waiting for the candidate before", "election", election, "candidate", name, "predecessor", cands[i-1].name)
		select {
		case <-w.ch:
		case <-own:
			own = nil
		case <-reconnect:
			own = nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, c.endErr()
		}
	}
}

// watch sets a watch on the existing node full and returns it with the
// node's stat; errCandidateGone if it is missing.
func (c *Coordinator) watch(ctx context.Context, full string) (<-chan zk.Event, *zk.Stat, error) {
	type watched struct {
		exists bool
		stat   *zk.Stat
		ch     <-chan zk.Event
	}
	w, err := call(ctx, c, true, func(conn *zk.Conn) (watched, error) {
		ok, stat, ch, err := conn.ExistsW(full)
		return watched{ok, stat, ch}, err
	})
	if err != nil {
		return nil, nil, err
	}
	if !w.exists {
		return nil, nil, errCandidateGone
	}
	return w.ch, w.stat, nil
}

// withdraw deletes the candidate node full, trying until it is gone or the
// session is over (which removes it anyway). It runs in a goroutine of the
// Coordinator.
func (c *Coordinator) withdraw(full string) {
	err := c.deleteAny(context.Background(), nil, full)
	switch {
	case err == nil, errors.Is(err, zk.ErrNoNode):
		c.log.Debug("candidate withdrawn", "candidate", full)
	case c.endErr() != nil:
	default:
		c.log.Error("cannot withdraw a candidate; it stays until the session ends", "candidate", full, "error", err)
	}
}

// withdrawWait withdraws the candidate node full and waits for it a while.
func (c *Coordinator) withdrawWait(full string) {
	done := make(chan struct{})
	if !c.spawn(func() {
		defer close(done)
		c.withdraw(full)
	}) {
		return
	}
	t := time.NewTimer(withdrawTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		c.log.Warn("withdrawing a candidate takes long; going on in the background", "candidate", full)
	}
}

// lead makes the leadership of the candidate node full, whose stat is stat,
// and starts watching it.
func (c *Coordinator) lead(election, full string, stat *zk.Stat, own <-chan zk.Event) (*Leadership, error) {
	lost := make(chan struct{})
	l := &Leadership{
		c:        c,
		election: election,
		node:     full,
		token:    stat.Czxid,
		lost:     lost,
		// Nobody sets a candidate's value, so its version is 0 as created;
		// the check is on the version read here all the same.
		guard: &guard{node: full, version: stat.Version, lost: lost},
	}
	c.mu.Lock()
	if c.over {
		c.mu.Unlock()
		return nil, c.endErr()
	}
	c.leaderships[l] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		l.watch(own)
	}()
	c.log.Info("leadership acquired", "election", election, "token", l.token, "session", hexID(c.session.Load()))
	return l, nil
}

// Leadership is one term, held while its candidate node exists, unchanged,
// on the Coordinator's live session.
type Leadership struct {
	c        *Coordinator
	election string
	node     string // full path of the candidate node
	token    int64  // the candidate node's czxid
	guard    *guard // the check of the term's fenced writes
	lost     chan struct{}
	loseOnce sync.Once
}

var _ coord.Leadership = (*Leadership)(nil)

// Token is the candidate node's czxid: later terms of the election belong to
// candidates created later, whose czxid is higher.
func (l *Leadership) Token() int64 { return l.token }

// Lost is closed when the candidate node is deleted, by Resign or from
// outside, or changed from outside, and when the session ends.
func (l *Leadership) Lost() <-chan struct{} { return l.lost }

// Writer makes the Coordinator's writes fenced by this term: each is one
// ZooKeeper multi that also checks the candidate node is there at the
// version it had when the term began, so a write made after the term ended
// (Resign, the node deleted or changed from outside, the session expired)
// fails with ErrNotLeader and writes nothing. Otherwise each operation
// behaves as the Coordinator's own; once the session has ended they fail
// with ErrSessionLost or ErrClosed.
//
// The fence holds on the server, whatever this process believes: a write
// racing the end of the term either lands before it or not at all. Set and
// Delete with a version read the node first, unfenced, so a deposed leader
// can still be told ErrNotFound or ErrVersionConflict by that read; it never
// writes. DeleteTree's batches are each fenced: a leader deposed half-way
// leaves the rest of the tree standing.
func (l *Leadership) Writer() coord.Writer { return writer{c: l.c, g: l.guard} }

// Resign deletes the candidate node. It is nil once the leadership is lost.
func (l *Leadership) Resign(ctx context.Context) error {
	select {
	case <-l.lost:
		return nil
	default:
	}
	err := l.c.deleteAny(ctx, nil, l.node)
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		if l.c.endErr() != nil {
			return nil // the session ended, and the leadership with it
		}
		return l.c.fail("resign", l.election, err)
	}
	l.lose("resigned")
	return nil
}

// lose ends the leadership, once.
func (l *Leadership) lose(reason string) {
	l.loseOnce.Do(func() {
		close(l.lost)
		l.c.mu.Lock()
		delete(l.c.leaderships, l)
		delete(l.c.campaigns, l.election)
		l.c.mu.Unlock()
		l.c.log.Info("leadership lost", "election", l.election, "token", l.token, "reason", reason)
	})
}

// watch closes Lost when the candidate node is deleted, changed or stops
// being this session's. own is a watch already set on it, or nil.
func (l *Leadership) watch(own <-chan zk.Event) {
	c := l.c
	wait := retryMin
	for {
		reconnect := c.nextReconnect()
		if own == nil {
			exists, stat, ch, err := c.conn.ExistsW(l.node)
			switch {
			case err != nil:
				if !isConnErr(err) {
					c.log.Warn("cannot watch the leader's candidate node; retrying", "election", l.election, "error", err)
				}
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-l.lost:
					t.Stop()
					return
				case <-c.done:
					t.Stop()
					return // end() loses every leadership
				}
				wait = min(2*wait, retryMax)
				continue
			case !exists:
				l.lose("the candidate node was deleted")
				return
			case stat.EphemeralOwner != c.session.Load():
				l.lose("the candidate node belongs to another session")
				return
			case stat.Version != l.guard.version:
				// Every fenced write would fail its check from now on.
				l.lose("the candidate node was changed from outside")
				return
			}
			own, wait = ch, retryMin
		}
		select {
		case ev := <-own:
			if ev.Type == zk.EventNodeDeleted {
				l.lose("the candidate node was deleted")
				return
			}
			own = nil // changed, or the watch was dropped: look again
		case <-reconnect:
			own = nil
		case <-l.lost:
			return
		case <-c.done:
			return // end() loses every leadership
		}
	}
}

// Leader returns the value of the lowest candidate, or ErrNoLeader.
func (c *Coordinator) Leader(ctx context.Context, election string) ([]byte, error) {
	if err := coord.ValidateNodePath(election); err != nil {
		return nil, fmt.Errorf("leader: %w", err)
	}
	dir := c.full(election)
	for {
		names, err := c.children(ctx, dir)
		if errors.Is(err, zk.ErrNoNode) {
			return nil, fmt.Errorf("leader %s: %w", election, coord.ErrNoLeader)
		}
		if err != nil {
			return nil, c.fail("leader", election, err)
		}
		cands := sortCandidates(names)
		if len(cands) == 0 {
			return nil, fmt.Errorf("leader %s: %w", election, coord.ErrNoLeader)
		}
		data, err := call(ctx, c, true, func(conn *zk.Conn) ([]byte, error) {
			data, _, err := conn.Get(dir + "/" + cands[0].name)
			return data, err
		})
		if errors.Is(err, zk.ErrNoNode) {
			continue // it went between the listing and the read
		}
		if err != nil {
			return nil, c.fail("leader", election, err)
		}
		return data, nil
	}
}
