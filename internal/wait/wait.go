// Package wait is for tests: it polls a condition until it holds, or takes
// values from a channel, and fails the test if that does not happen in time.
package wait

import (
	"errors"
	"testing"
	"time"
)

// Poll says how long to wait for a condition and how often to look at it.
// The zero Interval looks again at once.
type Poll struct {
	Timeout  time.Duration // how long the condition has to hold
	Interval time.Duration // the pause between two looks
}

// Until calls cond until it returns true; if it has not by p.Timeout, it
// fails t with what.
func (p Poll) Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(p.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, p.Timeout)
		}
		time.Sleep(p.Interval)
	}
}

// NoError calls f until it returns nil; if it has not by p.Timeout, it fails
// t with what and f's last error. An error made by Stop fails t at once.
func (p Poll) NoError(t testing.TB, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(p.Timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		var stop stopError
		if errors.As(err, &stop) {
			t.Fatalf("%s: %v", what, stop.err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, p.Timeout, err)
		}
		time.Sleep(p.Interval)
	}
}

// Stop wraps err so that NoError gives up at once: f returns it when what it
// waits for can no longer come.
func Stop(err error) error { return stopError{err} }

type stopError struct{ err error }

func (s stopError) Error() string { return s.err.Error() }
func (s stopError) Unwrap() error { return s.err }
