// Package cron reads Quartz cron expressions (with seconds, as
// Elastic-Job-Cloud's jobs are written) and computes their fire times in a
// time zone, correctly over daylight-saving changes.
//
// Syntax: 6 fields "sec min hour day-of-month month day-of-week", or 7 with a
// trailing year. Each field takes "*", numbers, ranges "a-b", lists "a,b"
// and steps "a/n" (a to the field's end), "a-b/n", "*/n" or "/n". A range
// whose end is below its start wraps round ("22-2" hours, "FRI-MON"), except
// in the year. Steps are at most 59 (seconds, minutes), 23 (hours), 31
// (day-of-month), 12 (months), 7 (day-of-week) or 129 (years). Months take
// JAN-DEC, days of the week SUN-SAT; numeric days of the week are Quartz's:
// 1-7 = SUN-SAT. Names and letters are case-insensitive. Years are
// 1970-2099; after 2099 a schedule never fires ("*" and "?" mean every
// year). Expressions are at most 256 bytes.
//
// "?" is allowed in day-of-month and day-of-week only and means "no
// restriction". One of the two must be "?" or "*": restricting both is
// refused (ErrNotSupported), as Quartz does.
//
// Quartz's day specials, each the whole field (Quartz implements none of
// them inside a list either: ErrNotSupported):
//   - day-of-month "L": the month's last day; "L-n" (n 0-30): n days before
//     it, no fire in a month where that is before the 1st.
//   - day-of-month "nW" (n 1-31): the weekday (Mon-Fri) nearest the nth,
//     never leaving the month: a Saturday 1st fires on Monday the 3rd, a
//     Sunday last day on the Friday before. No fire in a month without an
//     nth day. "LW" is the month's last weekday, "L-nW" the weekday nearest
//     L-n.
//   - day-of-week "dL" (d 1-7 or SUN-SAT): the month's last such day ("6L"
//     = last Friday). "L" alone is 7, Saturday.
//   - day-of-week "d#n" (n 1-5): the nth such day of the month ("6#3",
//     "FRI#3" = third Friday); no fire in a month without one.
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
	"strings"
	"time"
)

// ErrSyntax is wrapped by the error for a malformed expression: a value out
// of its field's range, a special character where it has no meaning, and
// the like.
var ErrSyntax = errors.New("cron: syntax error")

// ErrNotSupported is wrapped by the error for combinations Quartz itself does
// not implement: restricting both day-of-month and day-of-week, and L, W or #
// inside a list.
var ErrNotSupported = errors.New("cron: not supported")

// ErrNeverFires is wrapped by the error for an expression that matches no
// time at all (such as 30 February, or 29 February 2027).
var ErrNeverFires = errors.New("cron: never fires")

const (
	// maxExprLen bounds the work Parse does for hostile input; real
	// expressions are far shorter.
	maxExprLen = 256
	// Quartz's year range. Searches stop at maxYear, so Next is bounded.
	minYear = 1970
	maxYear = 2099
	// maxSearch bounds how many candidate wall-clock times Next tries before
	// it gives up; only a repeated hour makes it try more than one.
	maxSearch = 10000
)

// Schedule is a parsed expression bound to a time zone.
type Schedule struct {
	expr string
	loc  *time.Location
	// The fields match wall-clock times; they are only ever evaluated on
	// times encoded in UTC, where they cannot meet a daylight-saving change.
	sec, min, hour, month, year valueSet
	dom                         domSpec
	dow                         dowSpec
}

// Parse reads a Quartz expression whose times are wall-clock times in loc
// (UTC if nil). The error says which field is wrong and why.
func Parse(expr string, loc *time.Location) (*Schedule, error) {
	if loc == nil {
		loc = time.UTC
	}
	if len(expr) > maxExprLen {
		return nil, fmt.Errorf("cron: expression of %d bytes: %w: longer than %d bytes", len(expr), ErrSyntax, maxExprLen)
	}
	for _, r := range expr {
		// Any ASCII white space separates fields, as strings.Fields always
		// allowed; all else outside the syntax is refused up front.
		if !strings.ContainsRune("0123456789*?,-/# \t\n\v\f\r", r) && !('A' <= r && r <= 'Z') && !('a' <= r && r <= 'z') {
			return nil, fmt.Errorf("cron %q: %w: unexpected character %q", expr, ErrSyntax, r)
		}
	}
	fields := strings.Fields(strings.ToUpper(expr))
	switch len(fields) {
	case 6:
		fields = append(fields, "*")
	case 7:
	default:
		return nil, fmt.Errorf("cron %q: %w: expected 6 fields (sec min hour day-of-month month day-of-week) or 7 (plus year), found %d", expr, ErrSyntax, len(fields))
	}
	s := &Schedule{expr: expr, loc: loc}
	for i, f := range fields {
		var err error
		switch i {
		case 0:
			s.sec, err = parseList(secondField, f)
		case 1:
			s.min, err = parseList(minuteField, f)
		case 2:
			s.hour, err = parseList(hourField, f)
		case 3:
			s.dom, err = parseDom(f)
		case 4:
			s.month, err = parseList(monthField, f)
		case 5:
			s.dow, err = parseDow(f)
		case 6:
			s.year, err = parseList(yearField, f)
		}
		if err != nil {
			return nil, fmt.Errorf("cron %q: %s field %q: %w", expr, fieldNames[i], f, err)
		}
	}
	if restricted(fields[3]) && restricted(fields[5]) {
		return nil, fmt.Errorf("cron %q: %w: restricting both day-of-month and day-of-week; use ? in one of them", expr, ErrNotSupported)
	}
	// Every field matches something, so only the days and years can fail
	// to meet; a search over all of Quartz's years settles it.
	if s.nextWall(time.Date(minYear, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fmt.Errorf("cron %q: %w", expr, ErrNeverFires)
	}
	return s, nil
}

var fieldNames = [...]string{"second", "minute", "hour", "day-of-month", "month", "day-of-week", "year"}

// restricted reports whether a day field limits the days; the current
// package has always let "*" stand for "?" here, so both are unrestricted.
func restricted(f string) bool { return f != "*" && f != "?" }

// String returns the expression as given.
func (s *Schedule) String() string { return s.expr }

// Location is the zone the expression's times are read in.
func (s *Schedule) Location() *time.Location { return s.loc }

// Next returns the first fire time strictly after after, or the zero time
// if there is none (the schedule's years are over, or 2099 is past). See
// the package comment for how daylight-saving changes are treated.
func (s *Schedule) Next(after time.Time) time.Time {
	a := after.In(s.loc)
	cur := wall(a) // candidates are searched as wall-clock times, encoded in UTC
	if end, ok := repeatedEnd(a); ok {
		// after lies in the second pass through a repeated hour: every
		// wall-clock time up to the hour's end has fired in the first pass.
		cur = end.Add(-time.Second)
	}
	for range maxSearch {
		c := s.nextWall(cur.Add(time.Second)) // first matching wall-clock time > cur
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

// nextWall returns the first wall-clock time (encoded in UTC) at or after t
// that the expression matches, or zero if there is none up to maxYear. It
// walks years, months and matching days, never single seconds of a day that
// does not match, so it takes at most some 1,600 months' work.
func (s *Schedule) nextWall(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, se := t.Clock()
	if y < minYear {
		y, mo, d, h, mi, se = minYear, 1, 1, 0, 0, 0
	}
	for ; y <= maxYear; y, mo, d, h, mi, se = y+1, 1, 1, 0, 0, 0 {
		if !s.year.has(y) {
			continue
		}
		for ; mo <= 12; mo, d, h, mi, se = mo+1, 1, 0, 0, 0 {
			if !s.month.has(int(mo)) {
				continue
			}
			days := s.days(y, mo)
			for ; d <= 31; d, h, mi, se = d+1, 0, 0, 0 {
				if days&(1<<d) == 0 {
					continue
				}
				for ; h < 24; h, mi, se = h+1, 0, 0 {
					if !s.hour.has(h) {
						continue
					}
					for ; mi < 60; mi, se = mi+1, 0 {
						if !s.min.has(mi) {
							continue
						}
						for ; se < 60; se++ {
							if s.sec.has(se) {
								return time.Date(y, mo, d, h, mi, se, 0, time.UTC)
							}
						}
					}
				}
			}
		}
	}
	return time.Time{}
}

// days returns the days of month m of year y that both day fields allow,
// as a mask with bit d set for day d.
func (s *Schedule) days(y int, m time.Month) uint32 {
	n := daysIn(y, m)
	first := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC).Weekday()
	return s.dom.days(n, first) & s.dow.days(n, first)
}

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
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
