package wait

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that records a Fatalf instead of ending the test.
// Fatalf ends the goroutine that calls it, as testing's does, so each poll
// runs in a goroutine of its own.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(r)
}

func run(poll func(t testing.TB)) (failed string) {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if v := recover(); v != nil && v != r {
				panic(v)
			}
		}()
		poll(r)
	}()
	<-done
	return r.failed
}

var fast = Poll{Timeout: 50 * time.Millisecond, Interval: time.Millisecond}

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	if f := run(func(t testing.TB) { fast.Until(t, "three looks", func() bool { n++; return n == 3 }) }); f != "" {
		t.Fatalf("failed: %s", f)
	}
	if n != 3 {
		t.Fatalf("looked %d times, want 3", n)
	}
}

func TestUntilFailsAtTheTimeout(t *testing.T) {
	start := time.Now()
	f := run(func(t testing.TB) { fast.Until(t, "never", func() bool { return false }) })
	if f != "never: not within 50ms" {
		t.Fatalf("failed with %q", f)
	}
	if d := time.Since(start); d < fast.Timeout {
		t.Fatalf("gave up after %v, before the timeout", d)
	}
}

func TestNoErrorReturnsOnNilAndFailsWithTheLastError(t *testing.T) {
	n := 0
	if f := run(func(t testing.TB) {
		fast.NoError(t, "nil at last", func() error {
			if n++; n < 3 {
				return errors.New("not yet")
			}
			return nil
		})
	}); f != "" {
		t.Fatalf("failed: %s", f)
	}
	n = 0
	f := run(func(t testing.TB) {
		fast.NoError(t, "never", func() error { n++; return fmt.Errorf("look %d", n) })
	})
	if want := fmt.Sprintf("never: not within 50ms: look %d", n); f != want {
		t.Fatalf("failed with %q, want %q", f, want)
	}
}

func TestNoErrorGivesUpAtOnceOnStop(t *testing.T) {
	n := 0
	f := run(func(t testing.TB) {
		Poll{Timeout: time.Hour}.NoError(t, "stopped", func() error {
			n++
			return fmt.Errorf("wrapped: %w", Stop(errors.New("gone")))
		})
	})
	if f != "stopped: gone" || n != 1 {
		t.Fatalf("failed with %q after %d looks, want %q after 1", f, n, "stopped: gone")
	}
	if !strings.Contains(Stop(errors.New("x")).Error(), "x") {
		t.Fatal("Stop hides its error")
	}
}

func TestRecv(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	var got int
	if f := run(func(t testing.TB) { got = Recv(t, "seven", ch, time.Second) }); f != "" || got != 7 {
		t.Fatalf("got %d, failed %q", got, f)
	}
	if f := run(func(t testing.TB) { Recv(t, "none", ch, 10*time.Millisecond) }); f != "none: nothing within 10ms" {
		t.Fatalf("failed with %q", f)
	}
	close(ch)
	if f := run(func(t testing.TB) { Recv(t, "closed", ch, time.Second) }); f != "closed: the channel was closed" {
		t.Fatalf("failed with %q", f)
	}
}

func TestRecvUntilAndCloses(t *testing.T) {
	ch := make(chan int, 4)
	ch <- 1
	ch <- 2
	ch <- 3
	var got []int
	if f := run(func(t testing.TB) { got = RecvUntil(t, "two", ch, time.Second, func(v int) bool { return v == 2 }) }); f != "" || !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("got %v, failed %q", got, f)
	}
	if f := run(func(t testing.TB) { RecvUntil(t, "nine", ch, 10*time.Millisecond, func(v int) bool { return v == 9 }) }); f != "nine: not within 10ms; got [3]" {
		t.Fatalf("failed with %q", f)
	}
	if f := run(func(t testing.TB) { Closes(t, "open", ch, 10*time.Millisecond) }); f != "open: the channel not closed within 10ms; got []" {
		t.Fatalf("failed with %q", f)
	}
	ch <- 4
	close(ch)
	if f := run(func(t testing.TB) { got = Closes(t, "closed", ch, time.Second) }); f != "" || !slices.Equal(got, []int{4}) {
		t.Fatalf("got %v, failed %q", got, f)
	}
	if f := run(func(t testing.TB) { RecvUntil(t, "after close", ch, time.Second, func(int) bool { return true }) }); f != "after close: the channel was closed after []" {
		t.Fatalf("failed with %q", f)
	}
}
