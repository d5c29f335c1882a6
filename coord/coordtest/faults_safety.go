package coordtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hasched/hasched/coord"
)

// Five candidates under RunElection, each of whose terms increments one
// counter node with fenced, versioned writes (read, then Set with the
// version read, through the term's Writer), while members are killed,
// stopped or paused (the cluster's leader often; now and then two members
// at once, losing the quorum, or all of them) and candidates' clients are
// cut off or have their connections reset: one fault at a time, each
// healed after 1–8 s. Afterwards the history must show: the writes that took effect form one
// chain, each read of the one before it, with as many links as the counter
// says (no lost update); every write reported successful is in it; fencing
// tokens along it never decrease; and no write was issued after its term's
// Lost had fired. Something must have been written.
func testRandomizedSafety(e *faultEnv) {
	t := e.t
	if e.cfg.safetyDuration <= 0 {
		t.Skip("the safety run is switched off (duration 0)")
	}
	seed := e.cfg.safetySeed
	if seed == 0 {
		seed = rand.Int64N(1<<53) + 1
	}
	t.Logf("seed %d (HASCHED_SAFETY_SEED=%d replays the fault sequence), faults for %v", seed, seed, e.cfg.safetyDuration)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5afe7))

	admin := e.open()
	if err := e.call(func(ctx context.Context) error {
		_, err := admin.Create(ctx, safetyCounter, []byte(formatCount(0, safetyInit, 0)))
		return err
	}); err != nil {
		t.Fatalf("Create(%s): %v", safetyCounter, err)
	}

	hist := &safetyHistory{byID: map[string]*safetyWrite{}, sessions: make([]coord.Coordinator, safetyCandidates)}
	runCtx, stop := context.WithCancel(e.ctx)
	var candidates sync.WaitGroup
	stopped := false
	stopCandidates := func() {
		if stopped {
			return
		}
		stopped = true
		stop()
		finished := make(chan struct{})
		go func() {
			candidates.Wait()
			hist.recorders.Wait()
			close(finished)
		}()
		select {
		case <-finished:
		case <-time.After(2 * e.within()):
			t.Errorf("the candidates did not stop within %v of cancel", 2*e.within())
		}
	}
	defer stopCandidates()
	for i := range safetyCandidates {
		candidates.Go(func() {
			open := func(ctx context.Context) (coord.Coordinator, error) {
				c, err := e.h.Open(ctx, e.ns)
				if err != nil {
					return nil, err
				}
				hist.setSession(i, c)
				return c, nil
			}
			_ = coord.RunElection(runCtx, open, faultElection, []byte("candidate-"+strconv.Itoa(i)),
				func(lctx context.Context, c coord.Coordinator, l coord.Leadership) error {
					hist.won(i, c, l)
					return hist.lead(lctx, i)
				},
				coord.WithElectionRetry(100*time.Millisecond, 2*time.Second))
		})
	}

	e.until(e.within(), "a first fenced write", func() bool {
		if err := hist.setupError(); err != nil {
			t.Fatal(err)
		}
		return hist.succeeded() > 0
	})

	start := time.Now()
	faults := 0
	for time.Since(start) < e.cfg.safetyDuration && e.ctx.Err() == nil {
		e.sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
		if err := hist.setupError(); err != nil {
			t.Fatal(err)
		}
		hold := time.Duration(1000+rng.IntN(7000)) * time.Millisecond
		what, heal := e.injectFault(rng, hist)
		faults++
		t.Logf("t+%v: %s for %v (%d writes so far)", time.Since(start).Round(100*time.Millisecond), what, hold, hist.succeeded())
		e.sleep(hold)
		healing := time.Now()
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
		err := heal(ctx)
		if err == nil {
			err = e.h.Recover(ctx)
		}
		cancel()
		if err != nil {
			t.Fatalf("heal %s: %v", what, err)
		}
		if took := time.Since(healing); took > 5*time.Second {
			t.Logf("healing took %v", took.Round(100*time.Millisecond))
		}
	}

	// Once every fault is healed the candidates make progress again.
	before := hist.succeeded()
	e.until(2*e.within(), "a fenced write after the last fault was healed", func() bool { return hist.succeeded() > before })
	stopCandidates()

	reader := e.open()
	var final coord.Node
	if err := e.call(func(ctx context.Context) error {
		var err error
		final, err = reader.Get(ctx, safetyCounter)
		return err
	}); err != nil {
		t.Fatalf("read the counter at the end: %v", err)
	}
	hist.check(t, string(final.Value), faults)
}

const (
	safetyCandidates = 5
	safetyCounter    = "/counter"
	safetyInit       = "init"
)

// formatCount is the counter's value: the count, the ID of the write that
// made it, and that write's fencing token.
func formatCount(n int64, id string, token int64) string {
	return fmt.Sprintf("%d %s %d", n, id, token)
}

func parseCount(v string) (n int64, id string, err error) {
	f := strings.Fields(v)
	if len(f) != 3 {
		return 0, "", fmt.Errorf("counter value %q is not \"count id token\"", v)
	}
	n, err = strconv.ParseInt(f[0], 10, 64)
	return n, f[1], err
}

// injectFault hurts the cluster or a candidate's client at random and
// returns what it did and how to undo it.
func (e *faultEnv) injectFault(rng *rand.Rand, hist *safetyHistory) (string, func(context.Context) error) {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
	defer cancel()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	members := e.h.Members()
	m := rng.IntN(members)
	none := func(context.Context) error { return nil }
	start := func(ms ...int) func(context.Context) error {
		return func(ctx context.Context) error {
			for _, m := range ms {
				if err := e.h.Start(ctx, m); err != nil {
					return err
				}
			}
			return nil
		}
	}
	cutOff := func(i int, c coord.Coordinator, whose string) (string, func(context.Context) error) {
		if c == nil {
			return "nothing (no candidate to cut off)", none
		}
		what := fmt.Sprintf("cut off %s client (candidate %d)", whose, i)
		must(what, e.h.Partition(c))
		return what, func(context.Context) error { return e.h.Heal(c) }
	}
	switch k := rng.IntN(14); {
	case k < 2:
		what := fmt.Sprintf("kill member %d", m)
		must(what, e.h.Kill(ctx, m))
		return what, start(m)
	case k < 3:
		leader, err := e.h.Leader(ctx)
		must("find the cluster's leader", err)
		what := fmt.Sprintf("kill member %d, the cluster's leader", leader)
		must(what, e.h.Kill(ctx, leader))
		return what, start(leader)
	case k < 4:
		what := fmt.Sprintf("stop member %d", m)
		must(what, e.h.Stop(ctx, m))
		return what, start(m)
	case k < 5:
		what := fmt.Sprintf("pause member %d", m)
		must(what, e.h.Pause(ctx, m))
		return what, func(ctx context.Context) error { return e.h.Unpause(ctx, m) }
	case k < 6:
		leader, err := e.h.Leader(ctx)
		must("find the cluster's leader", err)
		what := fmt.Sprintf("pause member %d, the cluster's leader", leader)
		must(what, e.h.Pause(ctx, leader))
		return what, func(ctx context.Context) error { return e.h.Unpause(ctx, leader) }
	case k < 9:
		i, c := hist.leading()
		return cutOff(i, c, "the leading candidate's")
	case k < 10:
		i := rng.IntN(safetyCandidates)
		return cutOff(i, hist.session(i), "a")
	case k < 11:
		i, c := hist.leading()
		if c == nil {
			return "nothing (no leading candidate)", none
		}
		what := fmt.Sprintf("reset the leading candidate's connections (candidate %d)", i)
		must(what, e.h.DropConnections(c))
		return what, none
	case k < 12:
		i := rng.IntN(safetyCandidates)
		c := hist.session(i)
		if c == nil {
			return "nothing (candidate has no session yet)", none
		}
		what := fmt.Sprintf("reset candidate %d's connections", i)
		must(what, e.h.DropConnections(c))
		return what, none
	case k < 13:
		// Recover, after the hold, starts them all again: a restart of
		// the whole cluster.
		what := "stop every member (the whole cluster down)"
		errs := make([]error, members)
		var wg sync.WaitGroup
		for m := range members {
			wg.Go(func() { errs[m] = e.h.Stop(ctx, m) })
		}
		wg.Wait()
		must(what, errors.Join(errs...))
		return what, none
	default:
		other := (m + 1 + rng.IntN(members-1)) % members
		what := fmt.Sprintf("kill members %d and %d (quorum lost)", m, other)
		must(what, e.h.Kill(ctx, m))
		must(what, e.h.Kill(ctx, other))
		return what, start(m, other)
	}
}

// safetyTerm is one term of one candidate.
type safetyTerm struct {
	cand  int
	c     coord.Coordinator
	l     coord.Leadership
	token int64
	lost  time.Time // when Lost was seen closed; zero while open
}

// safetyWrite is one fenced write: the count it wrote, and the ID of the
// write whose value it read (and so replaced, its version being expected).
type safetyWrite struct {
	id       string
	base     string
	n        int64
	term     *safetyTerm
	issued   time.Time
	returned time.Time
	err      error
	finished bool
}

// safetyHistory records every term and every write.
type safetyHistory struct {
	recorders sync.WaitGroup // goroutines waiting for Lost

	mu       sync.Mutex
	sessions []coord.Coordinator
	current  map[int]*safetyTerm
	terms    []*safetyTerm
	writes   []*safetyWrite
	byID     map[string]*safetyWrite
	ok       int
	setupErr error
}

func (h *safetyHistory) setSession(i int, c coord.Coordinator) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sessions[i] = c
}

func (h *safetyHistory) session(i int) coord.Coordinator {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions[i]
}

// leading is the candidate whose term began last and has not seen Lost,
// and its session; nil if none.
func (h *safetyHistory) leading() (int, coord.Coordinator) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := len(h.terms) - 1; k >= 0; k-- {
		if term := h.terms[k]; term.lost.IsZero() {
			return term.cand, term.c
		}
	}
	return -1, nil
}

func (h *safetyHistory) won(i int, c coord.Coordinator, l coord.Leadership) {
	term := &safetyTerm{cand: i, c: c, l: l, token: l.Token()}
	h.mu.Lock()
	if h.current == nil {
		h.current = map[int]*safetyTerm{}
	}
	h.current[i] = term
	h.terms = append(h.terms, term)
	h.mu.Unlock()
	h.recorders.Go(func() {
		<-l.Lost()
		at := time.Now()
		h.mu.Lock()
		term.lost = at
		h.mu.Unlock()
	})
}

func (h *safetyHistory) succeeded() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ok
}

func (h *safetyHistory) setupError() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.setupErr
}

// lead is candidate i's lead function: fenced increments of the counter
// until the term ends.
func (h *safetyHistory) lead(ctx context.Context, i int) error {
	h.mu.Lock()
	term := h.current[i]
	h.mu.Unlock()
	if term == nil {
		return errors.New("a term started without a won campaign")
	}
	w := term.l.Writer()
	for seq := 1; ctx.Err() == nil; seq++ {
		cctx, cancel := context.WithTimeout(ctx, faultCallTimeout)
		node, err := term.c.Get(cctx, safetyCounter)
		cancel()
		if err != nil {
			if isEnded(err) {
				return nil
			}
			pause(ctx, 100*time.Millisecond)
			continue
		}
		n, base, err := parseCount(string(node.Value))
		if err != nil {
			h.mu.Lock()
			h.setupErr = err
			h.mu.Unlock()
			return err
		}
		wr := &safetyWrite{id: fmt.Sprintf("c%d-t%d-%d", i, term.token, seq), base: base, n: n + 1, term: term}
		value := []byte(formatCount(wr.n, wr.id, term.token))
		h.mu.Lock()
		wr.issued = time.Now()
		h.writes = append(h.writes, wr)
		h.byID[wr.id] = wr
		h.mu.Unlock()
		cctx, cancel = context.WithTimeout(ctx, faultCallTimeout)
		_, err = w.Set(cctx, safetyCounter, value, node.Version)
		cancel()
		h.mu.Lock()
		wr.returned, wr.err, wr.finished = time.Now(), err, true
		if err == nil {
			h.ok++
		}
		h.mu.Unlock()
		if isEnded(err) {
			return nil
		}
		pause(ctx, 10*time.Millisecond)
	}
	return nil
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// check walks the chain of writes back from the counter's final value and
// checks the history against it.
func (h *safetyHistory) check(t interface {
	Helper()
	Logf(string, ...any)
	Errorf(string, ...any)
	Fatalf(string, ...any)
}, final string, faults int) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	count, id, err := parseCount(final)
	if err != nil {
		t.Fatalf("the counter at the end: %v", err)
	}
	var chain []*safetyWrite
	for id != safetyInit {
		w := h.byID[id]
		if w == nil {
			t.Fatalf("the counter holds a write %q no candidate issued (after %d links back from the end)", id, len(chain))
		}
		if len(chain) > len(h.writes) {
			t.Fatalf("the writes' bases form a cycle")
		}
		chain = append(chain, w)
		id = w.base
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	if int64(len(chain)) != count {
		t.Errorf("lost update: the counter is %d but %d writes took effect one after the other", count, len(chain))
	}
	inChain := map[*safetyWrite]bool{}
	var ambiguous, conflicts, ended, otherFailed int
	for k, w := range chain {
		inChain[w] = true
		if w.n != int64(k+1) {
			t.Errorf("write %s wrote count %d as the %d-th link of the chain", w.id, w.n, k+1)
		}
		if k > 0 && w.term.token < chain[k-1].term.token {
			t.Errorf("token went down: write %s (count %d) with token %d after write %s with token %d",
				w.id, w.n, w.term.token, chain[k-1].id, chain[k-1].term.token)
		}
		if !w.term.lost.IsZero() && w.issued.After(w.term.lost) {
			t.Errorf("write %s (count %d, token %d) was issued %v after its term's Lost had fired, and took effect",
				w.id, w.n, w.term.token, w.issued.Sub(w.term.lost))
		}
		if w.err != nil || !w.finished {
			ambiguous++
		}
	}
	late := 0
	for _, w := range h.writes {
		if !w.term.lost.IsZero() && w.issued.After(w.term.lost) {
			late++ // refused, or it would be in the chain and reported above
		}
		switch {
		case w.err == nil && w.finished && !inChain[w]:
			t.Errorf("lost update: write %s (count %d, token %d) succeeded but was overwritten", w.id, w.n, w.term.token)
		case w.err == nil || inChain[w]:
		case errors.Is(w.err, coord.ErrVersionConflict):
			conflicts++
		case isEnded(w.err):
			ended++
		default:
			otherFailed++
		}
	}
	lost := 0
	for _, term := range h.terms {
		if !term.lost.IsZero() {
			lost++
		}
	}
	t.Logf("%d faults; %d terms (%d Lost seen); %d fenced writes issued: %d succeeded, %d more took effect though their call failed; "+
		"failed without effect: %d version conflicts, %d term or session over, %d others (timeouts, connection errors); "+
		"%d issued after their term's Lost (the lead context ends a moment later), all without effect; counter %d",
		faults, len(h.terms), lost, len(h.writes), h.ok, ambiguous, conflicts, ended, otherFailed, late, count)
	if h.ok == 0 {
		t.Errorf("no fenced write succeeded")
	}
	if int64(h.ok+ambiguous) != count {
		t.Errorf("the counter is %d, but %d writes succeeded and %d more took effect", count, h.ok, ambiguous)
	}
}
