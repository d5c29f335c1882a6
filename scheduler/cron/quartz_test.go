package cron

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// at is a UTC instant, for tables.
func at(y int, m time.Month, d, h, mi int) time.Time {
	return time.Date(y, m, d, h, mi, 0, 0, time.UTC)
}

// The expected dates below were read off a calendar (Python's calendar
// module), not computed by this package.
func TestQuartzFireTimes(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
		from       time.Time
		want       []time.Time
		thenNone   bool // Next after the last wanted fire is zero
	}{
		// L, last day of the month; 2028 is a leap year, 2027 is not.
		{"L leap February", "0 0 12 L * ?", at(2028, 1, 31, 12, 0),
			[]time.Time{at(2028, 2, 29, 12, 0), at(2028, 3, 31, 12, 0), at(2028, 4, 30, 12, 0)}, false},
		{"L common February", "0 0 12 L * ?", at(2027, 2, 1, 0, 0),
			[]time.Time{at(2027, 2, 28, 12, 0), at(2027, 3, 31, 12, 0)}, false},
		{"L lower case", "0 0 12 l * ?", at(2028, 2, 1, 0, 0),
			[]time.Time{at(2028, 2, 29, 12, 0)}, false},
		{"L-3", "0 0 0 L-3 * ?", at(2028, 1, 1, 0, 0),
			[]time.Time{at(2028, 1, 28, 0, 0), at(2028, 2, 26, 0, 0), at(2028, 3, 28, 0, 0), at(2028, 4, 27, 0, 0)}, false},
		{"L-30 only in 31-day months", "0 0 0 L-30 * ?", at(2027, 1, 2, 0, 0),
			[]time.Time{at(2027, 3, 1, 0, 0), at(2027, 5, 1, 0, 0), at(2027, 7, 1, 0, 0)}, false},
		{"L-0 is L", "0 0 0 L-0 2 ?", at(2028, 1, 1, 0, 0),
			[]time.Time{at(2028, 2, 29, 0, 0)}, false},

		// W, nearest weekday, never leaving the month.
		{"1W Saturday 1st is Monday 3rd", "0 0 9 1W * ?", at(2027, 4, 30, 0, 0),
			[]time.Time{at(2027, 5, 3, 9, 0), at(2027, 6, 1, 9, 0), at(2027, 7, 1, 9, 0)}, false},
		{"31W Sunday 31st is Friday 29th, skips 30-day months", "0 0 9 31W * ?", at(2027, 10, 1, 0, 0),
			[]time.Time{at(2027, 10, 29, 9, 0), at(2027, 12, 31, 9, 0), at(2028, 1, 31, 9, 0)}, false},
		{"15W Saturday to Friday, Sunday to Monday", "0 0 9 15W * ?", at(2027, 5, 1, 0, 0),
			[]time.Time{at(2027, 5, 14, 9, 0), at(2027, 6, 15, 9, 0), at(2027, 7, 15, 9, 0), at(2027, 8, 16, 9, 0)}, false},
		{"LW Sunday last day is Friday", "0 0 9 LW * ?", at(2027, 1, 1, 0, 0),
			[]time.Time{at(2027, 1, 29, 9, 0), at(2027, 2, 26, 9, 0), at(2027, 3, 31, 9, 0)}, false},
		{"LW Saturday last day is Friday", "0 0 9 LW 7 ?", at(2027, 1, 1, 0, 0),
			[]time.Time{at(2027, 7, 30, 9, 0)}, false},
		{"L-1W: 30 Oct 2027 is a Saturday", "0 0 9 L-1W 10 ? 2027", at(2027, 1, 1, 0, 0),
			[]time.Time{at(2027, 10, 29, 9, 0)}, true},

		// Day-of-week L and #.
		{"5L last Thursday", "0 0 10 ? * 5L", at(2027, 1, 1, 0, 0),
			[]time.Time{at(2027, 1, 28, 10, 0), at(2027, 2, 25, 10, 0), at(2027, 3, 25, 10, 0), at(2027, 4, 29, 10, 0)}, false},
		{"6L last Friday", "0 0 10 ? * 6L", at(2027, 1, 1, 0, 0),
			[]time.Time{at(2027, 1, 29, 10, 0), at(2027, 2, 26, 10, 0), at(2027, 3, 26, 10, 0), at(2027, 4, 30, 10, 0)}, false},
		{"FRIL is 6L", "0 0 10 ? * FRIL", at(2027, 1, 1, 0, 0),
			[]time.Time{at(2027, 1, 29, 10, 0), at(2027, 2, 26, 10, 0)}, false},
		{"L alone is Saturday", "0 0 10 ? * L", at(2027, 1, 1, 0, 0),
			[]time.Time{at(2027, 1, 2, 10, 0), at(2027, 1, 9, 10, 0)}, false},
		{"6#3 third Friday", "0 15 10 ? * 6#3", at(2027, 1, 1, 0, 0),
			[]time.Time{at(2027, 1, 15, 10, 15), at(2027, 2, 19, 10, 15), at(2027, 3, 19, 10, 15), at(2027, 4, 16, 10, 15)}, false},
		{"FRI#3 is 6#3", "0 15 10 ? * fri#3", at(2027, 1, 1, 0, 0),
			[]time.Time{at(2027, 1, 15, 10, 15), at(2027, 2, 19, 10, 15)}, false},
		{"2#1 first Monday", "0 0 8 ? * 2#1", at(2027, 1, 1, 0, 0),
			[]time.Time{at(2027, 1, 4, 8, 0), at(2027, 2, 1, 8, 0), at(2027, 3, 1, 8, 0), at(2027, 4, 5, 8, 0)}, false},
		{"6#5 skips months without a fifth Friday", "0 0 0 ? * 6#5 2027", at(2027, 1, 1, 0, 0),
			[]time.Time{at(2027, 1, 29, 0, 0), at(2027, 4, 30, 0, 0), at(2027, 7, 30, 0, 0), at(2027, 10, 29, 0, 0), at(2027, 12, 31, 0, 0)}, true},
		{"6#5 in 2099, then never", "0 0 0 ? * 6#5 2099", at(2099, 6, 1, 0, 0),
			[]time.Time{at(2099, 7, 31, 0, 0), at(2099, 10, 30, 0, 0)}, true},

		// The year field.
		{"one year", "0 0 12 1 1,7 ? 2027", at(2026, 12, 31, 0, 0),
			[]time.Time{at(2027, 1, 1, 12, 0), at(2027, 7, 1, 12, 0)}, true},
		{"year range", "0 0 0 1 1 ? 2027-2030", at(2020, 1, 1, 0, 0),
			[]time.Time{at(2027, 1, 1, 0, 0), at(2028, 1, 1, 0, 0), at(2029, 1, 1, 0, 0), at(2030, 1, 1, 0, 0)}, true},
		{"year step", "0 0 0 1 1 ? 2027/2", at(2027, 1, 1, 0, 0),
			[]time.Time{at(2029, 1, 1, 0, 0), at(2031, 1, 1, 0, 0)}, false},
		{"year step ends in 2099", "0 0 0 1 1 ? 2027/2", at(2096, 1, 1, 0, 0),
			[]time.Time{at(2097, 1, 1, 0, 0), at(2099, 1, 1, 0, 0)}, true},
		{"year list", "0 0 0 1 1 ? 2030,2028", at(2027, 1, 1, 0, 0),
			[]time.Time{at(2028, 1, 1, 0, 0), at(2030, 1, 1, 0, 0)}, true},
		{"every year stops after 2099", "0 0 0 L 12 ?", at(2098, 1, 1, 0, 0),
			[]time.Time{at(2098, 12, 31, 0, 0), at(2099, 12, 31, 0, 0)}, true},
		{"29 February only in leap years", "0 0 0 29 2 ? 2027-2032", at(2027, 1, 1, 0, 0),
			[]time.Time{at(2028, 2, 29, 0, 0), at(2032, 2, 29, 0, 0)}, true},

		// Ranges that wrap round, as Quartz reads them.
		{"hours 22-1", "0 0 22-1 * * ?", at(2027, 1, 1, 12, 0),
			[]time.Time{at(2027, 1, 1, 22, 0), at(2027, 1, 1, 23, 0), at(2027, 1, 2, 0, 0), at(2027, 1, 2, 1, 0), at(2027, 1, 2, 22, 0)}, false},
		{"FRI-MON from a Wednesday", "0 0 0 ? * FRI-MON", at(2027, 1, 6, 0, 0),
			[]time.Time{at(2027, 1, 8, 0, 0), at(2027, 1, 9, 0, 0), at(2027, 1, 10, 0, 0), at(2027, 1, 11, 0, 0), at(2027, 1, 15, 0, 0)}, false},
		{"/n is */n", "/20 0 0 1 1 ? 2027", at(2026, 1, 1, 0, 0),
			[]time.Time{at(2027, 1, 1, 0, 0), at(2027, 1, 1, 0, 0).Add(20 * time.Second), at(2027, 1, 1, 0, 0).Add(40 * time.Second)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustParse(t, tc.expr, time.UTC)
			got := fires(s, tc.from, len(tc.want))
			if !equalTimes(got, tc.want) {
				t.Fatalf("%q from %v: got %v, want %v", tc.expr, tc.from, got, tc.want)
			}
			if next := s.Next(got[len(got)-1]); tc.thenNone && !next.IsZero() {
				t.Fatalf("%q: Next after the last fire = %v, want none", tc.expr, next)
			}
		})
	}
}

func TestQuartzInTimeZones(t *testing.T) {
	shanghai := mustLoad(t, "Asia/Shanghai") // UTC+8, no DST
	ny := mustLoad(t, "America/New_York")
	for _, tc := range []struct {
		name, expr string
		loc        *time.Location
		from       time.Time
		want       []time.Time
	}{
		{"last day 10:00 in Shanghai", "0 0 10 L * ?", shanghai, at(2028, 1, 31, 2, 0),
			[]time.Time{at(2028, 2, 29, 2, 0), at(2028, 3, 31, 2, 0)}},
		// 00:30 on the 1st in Shanghai is 16:30 UTC the day before: 1W
		// must be read on Shanghai's calendar (1 May 2027 a Saturday).
		{"1W 00:30 in Shanghai", "0 30 0 1W * ?", shanghai, at(2027, 4, 1, 0, 0),
			[]time.Time{at(2027, 5, 2, 16, 30), at(2027, 5, 31, 16, 30)}},
		// 2027-03-14, the second Sunday of March, clocks jump 02:00 EST →
		// 03:00 EDT (07:00 UTC): 02:30 is skipped and fires at the change.
		{"1#2 02:30 over spring forward", "0 30 2 ? * 1#2", ny, at(2027, 2, 1, 0, 0),
			[]time.Time{at(2027, 2, 14, 7, 30), at(2027, 3, 14, 7, 0), at(2027, 4, 11, 6, 30)}},
		// 2027-11-07, the first Sunday of November, 02:00 EDT → 01:00 EST
		// (06:00 UTC): 01:30 fires once, at 01:30 EDT (05:30 UTC).
		{"SUN#1 01:30 over fall back", "0 30 1 ? * SUN#1", ny, at(2027, 10, 1, 0, 0),
			[]time.Time{at(2027, 10, 3, 5, 30), at(2027, 11, 7, 5, 30), at(2027, 12, 5, 6, 30)}},
		// 2027-03-31 falls in EDT (UTC-4), 2027-02-28 in EST (UTC-5).
		{"L 23:00 across the change", "0 0 23 L 2-3 ?", ny, at(2027, 2, 1, 0, 0),
			[]time.Time{at(2027, 3, 1, 4, 0), at(2027, 4, 1, 3, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustParse(t, tc.expr, tc.loc)
			got := fires(s, tc.from, len(tc.want))
			if !equalTimes(got, tc.want) {
				t.Fatalf("%q in %v from %v: got %v, want %v", tc.expr, tc.loc, tc.from, got, tc.want)
			}
		})
	}
	// A fire in the repeated hour is not repeated: Next from just after
	// the first 01:30 goes to December.
	s := mustParse(t, "0 30 1 ? * SUN#1", ny)
	if got, want := s.Next(at(2027, 11, 7, 5, 31)), at(2027, 12, 5, 6, 30); !got.Equal(want) {
		t.Fatalf("Next after the first 01:30 = %v, want %v", got, want)
	}
}

func TestQuartzRefusals(t *testing.T) {
	long := "0 0 0 ? * " + strings.Repeat("1,", 200) + "1"
	for _, tc := range []struct {
		expr, want string
		sentinel   error
	}{
		{"0 L 0 * * ?", "L is allowed only", ErrSyntax},
		{"L 0 0 * * ?", "L is allowed only", ErrSyntax},
		{"0 0 0 * L ?", "L is allowed only", ErrSyntax},
		{"0 0 0 * * ? L", "L is allowed only", ErrSyntax},
		{"0 0 0 ? * 8#1", "outside Quartz's 1-7", ErrSyntax},
		{"0 0 0 ? * #6", "# needs a day of the week", ErrSyntax},
		{"0 0 0 ? * 6#6", "must be 1-5", ErrSyntax},
		{"0 0 0 ? * 6#0", "must be 1-5", ErrSyntax},
		{"0 0 0 ? * 6#", "must be 1-5", ErrSyntax},
		{"0 0 0 ? * 6#3#2", "must be 1-5", ErrSyntax},
		{"0 0 0 # * ?", "# is allowed only in day-of-week", ErrSyntax},
		{"0 0 0 1-15W * ?", "W takes a single day", ErrSyntax},
		{"0 0 0 */5W * ?", "W takes a single day", ErrSyntax},
		{"0 0 0 32W * ?", "above maximum 31", ErrSyntax},
		{"0 0 0 0W * ?", "below minimum 1", ErrSyntax},
		{"0 15W 0 * * ?", "W is allowed only", ErrSyntax},
		{"0 0 0 ? * 2W", "W is allowed only", ErrSyntax},
		{"0 0 0 WL * ?", "is allowed only", ErrSyntax},
		{"0 0 0 L-31 * ?", "offset must be 0-30", ErrSyntax},
		{"0 0 0 L3 * ?", "L takes only -n", ErrSyntax},
		{"0 0 0 L- * ?", "L takes only -n", ErrSyntax},
		{"0 0 0 ? * L5", "L in day-of-week goes alone", ErrSyntax},
		{"0 0 0 ? * 8L", "outside Quartz's 1-7", ErrSyntax},
		{"0 0 0 * * ? 1969", "below minimum 1970", ErrSyntax},
		{"0 0 0 * * ? 2100", "above maximum 2099", ErrSyntax},
		{"0 0 0 * * ? 2030-2027", "ends before it starts", ErrSyntax},
		{"0 0 0 * * ? 99999999999999999999", "above maximum 2099", ErrSyntax},
		{"0/0 0 0 * * ?", "step 0 is outside 1-59", ErrSyntax},
		{"0/60 0 0 * * ?", "step 60 is outside 1-59", ErrSyntax},
		{"0 0 0 ? * 1/8", "step 8 is outside 1-7", ErrSyntax},
		{"0 0 0 * * ? 2027/130", "step 130 is outside 1-129", ErrSyntax},
		{"0 0 0 ? * 1-", "a number is missing", ErrSyntax},
		{"0 0 0 1,,2 * ?", "a number is missing", ErrSyntax},
		{"0 0 0 ?5 * ?", "? must stand alone", ErrSyntax},
		{"0 0 0 * * ? ? ?", "found 8", ErrSyntax},
		{"0 0 0 * FOO ?", "neither a month number", ErrSyntax},
		{"0 0 0 +1 * ?", "unexpected character", ErrSyntax},
		{long, "longer than 256 bytes", ErrSyntax},
		{"0 0 0 L,15 * ?", "whole field", ErrNotSupported},
		{"0 0 0 15W,20 * ?", "whole field", ErrNotSupported},
		{"0 0 0 ? * 6L,2", "whole field", ErrNotSupported},
		{"0 0 0 ? * 6#3,2#1", "whole field", ErrNotSupported},
		{"0 0 0 L * 6#3", "both day-of-month and day-of-week", ErrNotSupported},
		{"0 0 0 30 2 ?", "never fires", ErrNeverFires},
		{"0 0 0 31 4,6,9,11 ?", "never fires", ErrNeverFires},
		{"0 0 0 29 2 ? 2027", "never fires", ErrNeverFires},
		{"0 0 0 31W 2 ?", "never fires", ErrNeverFires},
		{"0 0 0 L-29 2 ?", "never fires", ErrNeverFires},
		{"0 0 0 ? 2 2#5 2027", "never fires", ErrNeverFires},
	} {
		_, err := Parse(tc.expr, nil)
		if err == nil {
			t.Errorf("Parse(%q) accepted, want an error containing %q", tc.expr, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.sentinel) {
			t.Errorf("Parse(%q) = %q, want it to contain %q and wrap %v", tc.expr, err, tc.want, tc.sentinel)
		}
	}
}

func TestQuartzAcceptsWhatTheOldParserDid(t *testing.T) {
	// "*" has always stood for "?" in one or both day fields, and "?" for
	// "*" in the year.
	for _, expr := range []string{
		"0 0 0 * * *",
		"0 0 0 ? * ?",
		"0 0 0 L * *",
		"0 0 0 * * 6#3",
		"0 0 0 1 * ? ?",
		"0 0 0 ? * MON-5",
	} {
		if _, err := Parse(expr, nil); err != nil {
			t.Errorf("Parse(%q) = %v, want it accepted", expr, err)
		}
	}
}

func TestNextIsBoundedOutsideQuartzYears(t *testing.T) {
	s := mustParse(t, "0 0 0 ? * 6#5 2099", time.UTC)
	for _, from := range []time.Time{
		at(2100, 1, 1, 0, 0),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		at(2099, 12, 31, 0, 0),
	} {
		if got := s.Next(from); !got.IsZero() {
			t.Errorf("Next(%v) = %v, want zero", from, got)
		}
	}
	// From before 1970, the first fire is Quartz's first year's.
	if got, want := mustParse(t, "0 0 0 1 1 ?", time.UTC).Next(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)), at(1970, 1, 1, 0, 0); !got.Equal(want) {
		t.Errorf("Next(year 1) = %v, want %v", got, want)
	}
	if got := mustParse(t, "0 0 0 1 1 ? 2027", time.UTC).Next(time.Time{}); !got.Equal(at(2027, 1, 1, 0, 0)) {
		t.Errorf("Next(zero time) = %v, want 2027-01-01", got)
	}
}

// FuzzParse checks that Parse never panics on any input and that Next of
// anything it accepts terminates with a time after its argument, or zero.
// Plain go test runs only the seeds.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"0 0 12 L * ?", "0 0 0 L-3 * ?", "0 0 9 15W * ?", "0 0 9 LW * ?", "0 0 0 L-2W * ?",
		"0 0 10 ? * 6L", "0 15 10 ? * FRI#3", "0 0 0 ? * 6#5 2099", "0 0 0 30 2 ?",
		"0 0 12 * * ? 2027", "0 0 0 1 1 ? 2027/2", "0 0 0 1 1 ? 2027-2030", "*/7 */13 22-3 * * ?",
		"/5 * * ? JAN-MAR,NOV/2 *", "0 0 0 ? * L", "* * * * * ?", "1-59/59 0 0 31 12 ? 2099",
	} {
		f.Add(seed, int64(1798761600)) // 2027-01-01 UTC
	}
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, expr string, unix int64) {
		s, err := Parse(expr, ny)
		if err != nil {
			return
		}
		// Keep the instant within the years time.Time handles without
		// overflow: ±30000 years.
		from := time.Unix(unix%(30000*366*86400), 0)
		for range 3 {
			next := s.Next(from)
			if next.IsZero() {
				return
			}
			if !next.After(from) {
				t.Fatalf("%q: Next(%v) = %v, not after it", expr, from, next)
			}
			from = next
		}
	})
}
