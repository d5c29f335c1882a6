package cron

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return loc
}

func mustParse(t *testing.T, expr string, loc *time.Location) *Schedule {
	t.Helper()
	s, err := Parse(expr, loc)
	if err != nil {
		t.Fatalf("Parse(%q): %v", expr, err)
	}
	return s
}

// fires lists the first n fire times after from.
func fires(s *Schedule, from time.Time, n int) []time.Time {
	var out []time.Time
	t := from
	for range n {
		t = s.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

func TestParseAcceptsQuartzSyntax(t *testing.T) {
	for _, expr := range []string{
		"0 0/5 * * * ?",
		"*/10 * * ? * *",
		"0 0 12 ? * MON-FRI",
		"0 15 10 ? * 2-6",
		"0 0 0 1 JAN,jul ?",
		"0 0 0 ? * SUN,7",
		"0 0 0 * * ? *",
		"0 0 0 * * ? ?",
		"0 0 8-18/2 * * ?",
		"  0   0 0 * * ?  ",
		"0\t0 0 * * ?\n",
	} {
		if _, err := Parse(expr, nil); err != nil {
			t.Errorf("Parse(%q) = %v, want it accepted", expr, err)
		}
	}
}

func TestParseRefusesWithAClearError(t *testing.T) {
	for _, tc := range []struct {
		expr, want string
		sentinel   error
	}{
		{"0 0 * * *", "expected 6 fields", ErrSyntax},
		{"0 0 0 * * ? * *", "found 8", ErrSyntax},
		{"0 0 0 1 * MON", "both day-of-month and day-of-week", ErrNotSupported},
		{"0 ? 0 * * *", "only in day-of-month and day-of-week", ErrSyntax},
		{"0 0 0 ? * 0", "outside Quartz's 1-7", ErrSyntax},
		{"0 0 0 ? * 8", "outside Quartz's 1-7", ErrSyntax},
		{"60 0 0 * * ?", "above maximum", ErrSyntax},
		{"0 0 0 30 2 ?", "never fires", ErrNeverFires},
		{"@every 1s", "unexpected character", ErrSyntax},
		{"TZ=UTC 0 0 0 * * ?", "unexpected character", ErrSyntax},
		{"0 0 0 ? * FOO", "neither a day number", ErrSyntax},
	} {
		_, err := Parse(tc.expr, nil)
		if err == nil {
			t.Errorf("Parse(%q) accepted, want an error containing %q", tc.expr, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %q, want it to contain %q", tc.expr, err, tc.want)
		}
		for _, sentinel := range []error{ErrSyntax, ErrNotSupported, ErrNeverFires} {
			if got, want := errors.Is(err, sentinel), sentinel == tc.sentinel; got != want {
				t.Errorf("Parse(%q) = %q: errors.Is(%v) = %v, want %v", tc.expr, err, sentinel, got, want)
			}
		}
	}
}

func TestNumericDayOfWeekIsQuartzNumbering(t *testing.T) {
	// 2024-01-01 is a Monday.
	from := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		expr string
		want []time.Weekday
	}{
		{"0 0 0 ? * 1", []time.Weekday{time.Sunday, time.Sunday}},
		{"0 0 0 ? * 7", []time.Weekday{time.Saturday, time.Saturday}},
		{"0 0 0 ? * 2-3", []time.Weekday{time.Tuesday, time.Monday, time.Tuesday}},
		{"0 0 0 ? * MON-TUE", []time.Weekday{time.Tuesday, time.Monday, time.Tuesday}},
		{"0 0 0 ? * 1/3", []time.Weekday{time.Wednesday, time.Saturday, time.Sunday}},
	} {
		got := fires(mustParse(t, tc.expr, time.UTC), from, len(tc.want))
		for i, w := range tc.want {
			if i >= len(got) || got[i].Weekday() != w {
				t.Errorf("%q from Mon 2024-01-01: fire %d = %v, want a %v (all: %v)", tc.expr, i, got, w, got)
				break
			}
		}
	}
}

func TestNextIsStrictlyAfterAndInTheJobsZone(t *testing.T) {
	tokyo := mustLoad(t, "Asia/Tokyo")
	s := mustParse(t, "0 30 9 * * ?", tokyo)
	from := time.Date(2024, 5, 1, 0, 30, 0, 0, time.UTC) // 09:30 in Tokyo
	got := s.Next(from)
	want := time.Date(2024, 5, 2, 9, 30, 0, 0, tokyo)
	if !got.Equal(want) {
		t.Fatalf("Next(%v) = %v, want %v", from, got, want)
	}
	if got := s.Next(from.Add(-time.Nanosecond)); !got.Equal(from) {
		t.Fatalf("Next(just before a fire) = %v, want the fire %v", got, from)
	}
	if got := mustParse(t, "* * * * * ?", nil).Next(from.Add(500 * time.Millisecond)); !got.Equal(from.Add(time.Second)) {
		t.Fatalf("every second, Next(x.5s) = %v, want %v", got, from.Add(time.Second))
	}
}

func TestDSTSpringForwardFiresSkippedTimeOnceAtTheChange(t *testing.T) {
	for _, tc := range []struct {
		zone   string
		day    time.Time // a local midnight before the change
		change time.Time // the instant of the change, UTC
	}{
		// 2024-03-10 02:00 EST → 03:00 EDT (07:00 UTC).
		{"America/New_York", time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC), time.Date(2024, 3, 10, 7, 0, 0, 0, time.UTC)},
		// 2024-03-31 02:00 CET → 03:00 CEST (01:00 UTC).
		{"Europe/Berlin", time.Date(2024, 3, 31, 0, 0, 0, 0, time.UTC), time.Date(2024, 3, 31, 1, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.zone, func(t *testing.T) {
			loc := mustLoad(t, tc.zone)
			from := time.Date(tc.day.Year(), tc.day.Month(), tc.day.Day(), 0, 0, 0, 0, loc)

			// A daily 02:30 fires at the change, 03:00 local.
			daily := mustParse(t, "0 30 2 * * ?", loc)
			got := fires(daily, from, 2)
			if !got[0].Equal(tc.change) {
				t.Errorf("daily 02:30 on the change day fired at %v, want the change %v", got[0], tc.change)
			}
			if want := time.Date(tc.day.Year(), tc.day.Month(), tc.day.Day()+1, 2, 30, 0, 0, loc); !got[1].Equal(want) {
				t.Errorf("daily 02:30 the day after fired at %v, want %v", got[1], want)
			}

			// Every 15 minutes: 01:45, then the skipped 02:00-02:45 collapse
			// into one fire at 03:00, then 03:15.
			q := mustParse(t, "0 */15 * * * ?", loc)
			got = fires(q, time.Date(tc.day.Year(), tc.day.Month(), tc.day.Day(), 1, 40, 0, 0, loc), 3)
			want := []time.Time{tc.change.Add(-15 * time.Minute), tc.change, tc.change.Add(15 * time.Minute)}
			if !equalTimes(got, want) {
				t.Errorf("every 15 min over the gap: got %v, want %v", got, want)
			}

			// Every second: no instant twice, none skipped outside the gap.
			sec := mustParse(t, "* * * * * ?", loc)
			got = fires(sec, tc.change.Add(-3*time.Second), 6)
			for i := range got {
				if want := tc.change.Add(time.Duration(i-2) * time.Second); !got[i].Equal(want) {
					t.Fatalf("every second over the gap: fire %d = %v, want %v (all %v)", i, got[i], want, got)
				}
			}
		})
	}
}

func TestDSTFallBackFiresRepeatedTimeOnceAtItsFirstOccurrence(t *testing.T) {
	for _, tc := range []struct {
		zone   string
		change time.Time // the instant clocks go back, UTC
		hour   int       // the repeated wall-clock hour
	}{
		// 2024-11-03 02:00 EDT → 01:00 EST (06:00 UTC); 01:xx repeats.
		{"America/New_York", time.Date(2024, 11, 3, 6, 0, 0, 0, time.UTC), 1},
		// 2024-10-27 03:00 CEST → 02:00 CET (01:00 UTC); 02:xx repeats.
		{"Europe/Berlin", time.Date(2024, 10, 27, 1, 0, 0, 0, time.UTC), 2},
	} {
		t.Run(tc.zone, func(t *testing.T) {
			loc := mustLoad(t, tc.zone)
			y, m, d := tc.change.In(loc).Date()
			midnight := time.Date(y, m, d, 0, 0, 0, 0, loc)

			// A daily job in the repeated hour fires once, at its first
			// occurrence (before the change).
			daily := mustParse(t, "0 30 "+strconv.Itoa(tc.hour)+" * * ?", loc)
			got := fires(daily, midnight, 2)
			if want := tc.change.Add(-30 * time.Minute); !got[0].Equal(want) {
				t.Errorf("daily %d:30 fired at %v, want the first occurrence %v", tc.hour, got[0], want)
			}
			if got[1].Sub(got[0]) < 24*time.Hour {
				t.Errorf("daily %d:30 fired twice within a day: %v", tc.hour, got)
			}

			// Every 30 minutes: hh:00 and hh:30 of the repeated hour fire
			// once, then the next hour.
			half := mustParse(t, "0 0/30 * * * ?", loc)
			got = fires(half, tc.change.Add(-61*time.Minute), 3)
			want := []time.Time{tc.change.Add(-time.Hour), tc.change.Add(-30 * time.Minute), tc.change.Add(time.Hour)}
			if !equalTimes(got, want) {
				t.Errorf("every 30 min over the repeated hour: got %v, want %v", got, want)
			}

			// Asking from inside the second pass does not go back.
			if got := half.Next(tc.change.Add(10 * time.Minute)); !got.Equal(tc.change.Add(time.Hour)) {
				t.Errorf("Next from the second pass = %v, want %v", got, tc.change.Add(time.Hour))
			}
			sec := mustParse(t, "* * * * * ?", loc)
			if got := sec.Next(tc.change.Add(-time.Second)); !got.Equal(tc.change.Add(time.Hour)) {
				t.Errorf("every second: Next(last second before the change) = %v, want the end of the repeat %v", got, tc.change.Add(time.Hour))
			}
		})
	}
}

func TestFireTimesIncreaseStrictlyOverAYearOfDST(t *testing.T) {
	for _, zone := range []string{"America/New_York", "Europe/Berlin", "Australia/Lord_Howe"} {
		loc := mustLoad(t, zone)
		s := mustParse(t, "0 0/10 * * * ?", loc)
		prev := time.Date(2024, 1, 1, 0, 0, 0, 0, loc)
		for range 6 * 24 * 366 {
			next := s.Next(prev)
			if !next.After(prev) {
				t.Fatalf("%s: Next(%v) = %v, not after", zone, prev, next)
			}
			if next.Sub(prev) > 2*time.Hour {
				t.Fatalf("%s: gap %v between %v and %v", zone, next.Sub(prev), prev, next)
			}
			prev = next
		}
	}
}

func equalTimes(a, b []time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}
