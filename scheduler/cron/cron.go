// Package cron reads Quartz cron expressions (with seconds, as
// Elastic-Job-Cloud's jobs are written) and computes their fire times in a
// time zone, correctly over daylight-saving changes.
//
// Syntax: 6 fields "sec min hour day-of-month month day-of-week", or 7 with a
// trailing year that must be "*" or "?". Each field takes "*", numbers,
// ranges "a-b", lists "a,b" and steps "a/n" or "a-b/n" or "*/n". "?" is
// allowed in day-of-month and day-of-week only, and means "no restriction".
// Months take JAN-DEC, days of the week SUN-SAT; numeric days of the week
// are Quartz's: 1-7 = SUN-SAT. Quartz's L, W, LW and # are refused
// (ErrNotSupported), and so is restricting both day-of-month and day-of-week:
// one of them must be "*" or "?".
//
// Daylight saving: fire times are wall-clock times in the schedule's zone.
//   - A wall-clock time that a spring-forward change skips fires once, at the
//     instant the change happens (02:30 in America/New_York on the day clocks
//     jump from 02:00 to 03:00 fires at 03:00 EDT), as Vixie cron does. All
//     skipped times of one change collapse into that one fire, so no fire is
//     invented twice.
//   - A wall-clock time that a fall-back change repeats fires once, at its
//     first occurrence (01:30 EDT, not again at 01:30 EST). A schedule that
//     fires every minute therefore pauses for the repeated hour.
package cron

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	robfig "github.com/robfig/cron/v3"
)

// ErrNotSupported is wrapped by the error for Quartz features this package
// does not implement (L, W, LW, #).
var ErrNotSupported = errors.New("cron: not supported")

// ErrNeverFires is wrapped by the error for an expression that matches no
// time at all (such as 30 February).
var ErrNeverFires = errors.New("cron: never fires")

// maxSearch bounds how many candidate wall-clock times Next tries before it
// gives up; only a repeated hour makes it try more than one.
const maxSearch = 10000

var parser = robfig.NewParser(robfig.Second | robfig.Minute | robfig.Hour | robfig.Dom | robfig.Month | robfig.Dow)

// Schedule is a parsed expression bound to a time zone.
type Schedule struct {
	expr string
	loc  *time.Location
	// spec matches wall-clock times; it is only ever evaluated in UTC,
	// where it cannot meet a daylight-saving change.
	spec *robfig.SpecSchedule
}

var fieldNames = [...]string{"second", "minute", "hour", "day-of-month", "month", "day-of-week", "year"}

// Parse reads a Quartz expression whose times are wall-clock times in loc
// (UTC if nil). The error says which field is wrong and why.
func Parse(expr string, loc *time.Location) (*Schedule, error) {
	if loc == nil {
		loc = time.UTC
	}
	fields := strings.Fields(expr)
	switch len(fields) {
	case 6:
	case 7:
		if y := fields[6]; y != "*" && y != "?" {
			return nil, fmt.Errorf("cron %q: year field %q: %w: only * or ? is accepted", expr, y, ErrNotSupported)
		}
		fields = fields[:6]
	default:
		return nil, fmt.Errorf("cron %q: expected 6 fields (sec min hour day-of-month month day-of-week) or 7 (plus year), found %d", expr, len(fields))
	}
	for i, f := range fields {
		if err := checkField(i, f); err != nil {
			return nil, fmt.Errorf("cron %q: %s field %q: %w", expr, fieldNames[i], f, err)
		}
	}
	dow, err := quartzDow(fields[5])
	if err != nil {
		return nil, fmt.Errorf("cron %q: day-of-week field %q: %w", expr, fields[5], err)
	}
	fields[5] = dow
	if restricted(fields[3]) && restricted(fields[5]) {
		return nil, fmt.Errorf("cron %q: %w: restricting both day-of-month and day-of-week; use ? in one of them", expr, ErrNotSupported)
	}
	s, err := parser.Parse(strings.Join(fields, " "))
	if err != nil {
		return nil, fmt.Errorf("cron %q: %w", expr, err)
	}
	spec, ok := s.(*robfig.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("cron %q: unexpected schedule type %T", expr, s)
	}
	spec.Location = time.UTC
	sched := &Schedule{expr: expr, loc: loc, spec: spec}
	// robfig searches five years ahead: a schedule that finds nothing from
	// a leap year's start matches no date (30 February).
	if sched.spec.Next(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Second)).IsZero() {
		return nil, fmt.Errorf("cron %q: %w", expr, ErrNeverFires)
	}
	return sched, nil
}

// checkField refuses what robfig would accept but Quartz does not mean the
// same way, or what this package does not implement.
func checkField(i int, f string) error {
	if strings.ContainsAny(f, "=@") {
		return errors.New("unexpected character")
	}
	if strings.Contains(f, "?") && f != "?" {
		return errors.New("? must stand alone")
	}
	switch i {
	case 3: // day-of-month: no names, so any letter is L, W or LW.
		if f == "?" {
			return nil
		}
		if strings.ContainsAny(strings.ToUpper(f), "LW") {
			return fmt.Errorf("%w: L, W and LW", ErrNotSupported)
		}
	case 5:
		if f == "?" {
			return nil
		}
		if strings.Contains(f, "#") {
			return fmt.Errorf("%w: # (nth day of the month)", ErrNotSupported)
		}
	default:
		if f == "?" {
			return errors.New("? is allowed only in day-of-month and day-of-week")
		}
	}
	return nil
}

func restricted(f string) bool { return f != "*" && f != "?" }

var dayNames = map[string]bool{"SUN": true, "MON": true, "TUE": true, "WED": true, "THU": true, "FRI": true, "SAT": true}

// quartzDow rewrites a day-of-week field from Quartz numbering (1-7 =
// SUN-SAT) to robfig's (0-6); names are kept. Step sizes are not day
// numbers and stay as they are.
func quartzDow(f string) (string, error) {
	if f == "?" || f == "*" {
		return f, nil
	}
	parts := strings.Split(f, ",")
	for i, part := range parts {
		rangePart, step, hasStep := strings.Cut(part, "/")
		ends := strings.Split(rangePart, "-")
		for j, e := range ends {
			if e == "*" {
				continue
			}
			if dayNames[strings.ToUpper(e)] {
				continue
			}
			if strings.HasSuffix(strings.ToUpper(e), "L") {
				return "", fmt.Errorf("%w: L (last day of the week in the month)", ErrNotSupported)
			}
			n, err := strconv.Atoi(e)
			if err != nil {
				return "", fmt.Errorf("%q is neither a day number (1-7) nor a name (SUN-SAT)", e)
			}
			if n < 1 || n > 7 {
				return "", fmt.Errorf("day %d is outside Quartz's 1-7 (SUN-SAT)", n)
			}
			ends[j] = strconv.Itoa(n - 1)
		}
		parts[i] = strings.Join(ends, "-")
		if hasStep {
			parts[i] += "/" + step
		}
	}
	return strings.Join(parts, ","), nil
}

// String returns the expression as given.
func (s *Schedule) String() string { return s.expr }

// Location is the zone the expression's times are read in.
func (s *Schedule) Location() *time.Location { return s.loc }

// Next returns the first fire time strictly after after, or the zero time
// if there is none within five years. See the package comment for how
// daylight-saving changes are treated.
func (s *Schedule) Next(after time.Time) time.Time {
	a := after.In(s.loc)
	cur := wall(a) // candidates are searched as wall-clock times, encoded in UTC
	if end, ok := repeatedEnd(a); ok {
		// after lies in the second pass through a repeated hour: every
		// wall-clock time up to the hour's end has fired in the first pass.
		cur = end.Add(-time.Second)
	}
	for range maxSearch {
		c := s.spec.Next(cur) // first matching wall-clock time > cur
		if c.IsZero() {
			return time.Time{}
		}
		if t := resolve(c, s.loc); t.After(after) {
			return t
		}
		cur = c
	}
	return time.Time{}
}

// wall encodes t's wall-clock reading (truncated to the second) as a UTC
// time.
func wall(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

// resolve maps a wall-clock time (encoded in UTC) to the instant it fires in
// loc: its first occurrence if it repeats, the end of the gap if it is
// skipped.
func resolve(c time.Time, loc *time.Location) time.Time {
	t := time.Date(c.Year(), c.Month(), c.Day(), c.Hour(), c.Minute(), c.Second(), 0, loc)
	w := wall(t)
	switch {
	case w.Equal(c):
		// It exists; if it exists twice, take the earlier.
		start, _ := t.ZoneBounds()
		if start.IsZero() {
			return t
		}
		_, prevOff := start.Add(-time.Nanosecond).Zone()
		_, curOff := t.Zone()
		if prevOff > curOff {
			alt := t.Add(-time.Duration(prevOff-curOff) * time.Second)
			if alt.Before(start) && wall(alt).Equal(c) {
				return alt
			}
		}
		return t
	case w.After(c):
		// Skipped, read with the offset before the change: t is past it.
		start, _ := t.ZoneBounds()
		return start
	default:
		// Skipped, read with the offset after the change: t is before it.
		_, end := t.ZoneBounds()
		return end
	}
}

// repeatedEnd reports whether t is in the second pass through a repeated
// wall-clock hour and, if so, the wall-clock time (UTC-encoded) at which the
// repetition ends.
func repeatedEnd(t time.Time) (time.Time, bool) {
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return time.Time{}, false
	}
	_, prevOff := start.Add(-time.Nanosecond).Zone()
	_, curOff := t.Zone()
	if prevOff <= curOff {
		return time.Time{}, false
	}
	overlap := time.Duration(prevOff-curOff) * time.Second
	if t.Sub(start) >= overlap {
		return time.Time{}, false
	}
	return wall(start.In(t.Location())).Add(overlap), true
}
