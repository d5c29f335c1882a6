package wait

import (
	"errors"
	"fmt"
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
