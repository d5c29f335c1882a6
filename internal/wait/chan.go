package wait

import (
	"testing"
	"time"
)

// Recv takes the next value from ch; it fails t with what if none comes
// within d or ch is closed.
func Recv[E any](t testing.TB, what string, ch <-chan E, d time.Duration) E {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the channel was closed", what)
		}
		return v
	case <-time.After(d):
		t.Fatalf("%s: nothing within %v", what, d)
	}
	panic("unreachable")
}

// RecvUntil takes values from ch until ok holds for one, and returns every
// value taken; it fails t with what (and the values taken) if ch is closed
// or d passes first.
func RecvUntil[E any](t testing.TB, what string, ch <-chan E, d time.Duration, ok func(E) bool) []E {
	t.Helper()
	var seen []E
	deadline := time.After(d)
	for {
		select {
		case v, open := <-ch:
			if !open {
				t.Fatalf("%s: the channel was closed after %+v", what, seen)
			}
			seen = append(seen, v)
			if ok(v) {
				return seen
			}
		case <-deadline:
			t.Fatalf("%s: not within %v; got %+v", what, d, seen)
		}
	}
}

// Closes takes values from ch until it is closed, and returns them; it fails
// t with what (and the values taken) if ch is not closed within d.
func Closes[E any](t testing.TB, what string, ch <-chan E, d time.Duration) []E {
	t.Helper()
	var seen []E
	deadline := time.After(d)
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				return seen
			}
			seen = append(seen, v)
		case <-deadline:
			t.Fatalf("%s: the channel not closed within %v; got %+v", what, d, seen)
		}
	}
}
