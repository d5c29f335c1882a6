package events_test

import (
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/events"
)

func TestQueueNeverBlocksAndCountsWhatItDrops(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string
	q := events.NewQueue(2, func(ev events.Event) {
		<-release
		mu.Lock()
		got = append(got, ev.Job)
		mu.Unlock()
	})
	start := time.Now()
	for _, j := range []string{"a", "b", "c", "d", "e"} {
		q.Emit(events.Event{Kind: events.Fired, Job: j})
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Emit blocked for %v behind a stuck handler", d)
	}
	// One event is in the handler, two wait; the rest were dropped.
	if q.Dropped() < 2 {
		t.Errorf("dropped %d, want at least 2", q.Dropped())
	}
	close(release)
	q.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 || got[0] != "a" || uint64(len(got))+q.Dropped() != 5 {
		t.Errorf("handled %v and dropped %d of 5", got, q.Dropped())
	}
	q.Emit(events.Event{Job: "late"})
	if uint64(len(got))+q.Dropped() != 6 {
		t.Error("an event after Close was neither handled nor counted as dropped")
	}
}

func TestFanoutHandsEveryEventToEverySink(t *testing.T) {
	var a, b []events.Kind
	f := events.Fanout{events.Func(func(ev events.Event) { a = append(a, ev.Kind) }), events.Discard, events.Func(func(ev events.Event) { b = append(b, ev.Kind) })}
	f.Emit(events.Event{Kind: events.Launched})
	f.Emit(events.Event{Kind: events.Ended})
	if len(a) != 2 || len(b) != 2 || a[1] != events.Ended || b[0] != events.Launched {
		t.Errorf("sinks saw %v and %v", a, b)
	}
}
