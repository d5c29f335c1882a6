package scheduler

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
)

// A write that reaches a term as it ends — its loop has returned, but lead
// has not yet cleared it — waits for the next term within LeaderWait, as a
// write during an election does, rather than failing at once with
// ErrNoLeader.
func TestAWriteReachingAnEndedTermWaitsForTheNext(t *testing.T) {
	st := schedtest.NewStore()
	s, err := New(Config{
		Open: st.Open, Executor: schedtest.NewCluster().Factory("a"), ExecutorName: "fake",
		Advertise: "127.0.0.1:8899", Logger: hclog.NewNullLogger(), LeaderWait: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ended := &term{s: s, reqs: make(chan request), done: make(chan struct{})}
	close(ended.done)
	next := &term{s: s, reqs: make(chan request), done: make(chan struct{})}
	s.mu.Lock()
	s.term = ended
	s.mu.Unlock()

	served := make(chan struct{})
	go func() {
		time.Sleep(200 * time.Millisecond)
		s.mu.Lock()
		s.term = next
		s.mu.Unlock()
		req := <-next.reqs
		req.reply <- nil
		close(served)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.write(ctx, func(context.Context, *term) error { return nil }); err != nil {
		t.Fatalf("write = %v, want it served by the next term", err)
	}
	<-served

	// Without LeaderWait it is refused at once, as during an election.
	s.cfg.LeaderWait = 0
	s.mu.Lock()
	s.term = ended
	s.mu.Unlock()
	if err := s.write(ctx, func(context.Context, *term) error { return nil }); !errors.Is(err, model.ErrNoLeader) {
		t.Fatalf("write without LeaderWait = %v, want ErrNoLeader", err)
	}
}
