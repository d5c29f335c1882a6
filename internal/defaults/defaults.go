// Package defaults fills the zero durations of a config struct with their
// defaults and bounds them: what every constructor that validates a config
// does for its timeouts and intervals.
package defaults

import (
	"fmt"
	"time"
)

// Duration is one duration field of a config.
type Duration struct {
	Name string
	V    *time.Duration
	// Default replaces a zero value.
	Default time.Duration
	// Max, if positive, is the largest value accepted.
	Max time.Duration
}

// Durations sets every zero field to its default and refuses a negative
// one or one above its Max, with an error wrapping invalid (the caller's
// ErrInvalidConfig) that names the field.
func Durations(invalid error, fields ...Duration) error {
	for _, d := range fields {
		if *d.V < 0 {
			return fmt.Errorf("%w: %s is negative (%v)", invalid, d.Name, *d.V)
		}
		if *d.V == 0 {
			*d.V = d.Default
		}
		if d.Max > 0 && *d.V > d.Max {
			return fmt.Errorf("%w: %s is %v, at most %v", invalid, d.Name, *d.V, d.Max)
		}
	}
	return nil
}
