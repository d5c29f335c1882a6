package defaults

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDurations(t *testing.T) {
	errInvalid := errors.New("invalid config")
	var a, b, c time.Duration = 0, 3 * time.Second, 0
	if err := Durations(errInvalid,
		Duration{"A", &a, time.Second, 0},
		Duration{"B", &b, time.Second, time.Minute},
		Duration{"C", &c, 2 * time.Second, time.Minute},
	); err != nil || a != time.Second || b != 3*time.Second || c != 2*time.Second {
		t.Fatalf("Durations = %v; a %v b %v c %v, want 1s 3s 2s", err, a, b, c)
	}
	neg, big := -time.Second, time.Hour
	for _, tc := range []struct {
		d    Duration
		want string
	}{
		{Duration{"Neg", &neg, time.Second, 0}, "Neg is negative"},
		{Duration{"Big", &big, time.Second, time.Minute}, "Big is 1h0m0s, at most 1m0s"},
	} {
		err := Durations(errInvalid, tc.d)
		if !errors.Is(err, errInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Durations(%s) = %v, want %q wrapping the caller's error", tc.d.Name, err, tc.want)
		}
	}
}
