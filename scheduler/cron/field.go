package cron

import (
	"fmt"
	"strings"
	"time"
)

// valueSet holds a field's allowed values as bits, offset by the field's
// minimum; 192 bits cover the widest field, the 130 years.
type valueSet struct {
	min  int
	bits [3]uint64
}

func (s *valueSet) add(v int) {
	o := v - s.min
	s.bits[o/64] |= 1 << (o % 64)
}

func (s *valueSet) has(v int) bool {
	o := v - s.min
	if o < 0 || o >= 64*len(s.bits) {
		return false
	}
	return s.bits[o/64]&(1<<(o%64)) != 0
}

// field describes one field's values: Quartz's ranges, its limits on steps
// and the names it accepts for its numbers.
type field struct {
	name              string
	min, max, maxStep int
	names             []string // names[i] stands for min+i
}

var (
	secondField = field{name: "second", min: 0, max: 59, maxStep: 59}
	minuteField = field{name: "minute", min: 0, max: 59, maxStep: 59}
	hourField   = field{name: "hour", min: 0, max: 23, maxStep: 23}
	domField    = field{name: "day-of-month", min: 1, max: 31, maxStep: 31}
	monthField  = field{name: "month", min: 1, max: 12, maxStep: 12, names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}}
	dowField    = field{name: "day-of-week", min: 1, max: 7, maxStep: 7, names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}}
	yearField   = field{name: "year", min: minYear, max: maxYear, maxStep: maxYear - minYear}
)

// is tells fields apart by name: field holds a slice, so == cannot.
func (fd field) is(o field) bool { return fd.name == o.name }

// syntax makes an ErrSyntax error with a reason.
func syntax(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSyntax, fmt.Sprintf(format, args...))
}

// parseList reads a list of values, ranges and steps; f is upper case.
func parseList(fd field, f string) (valueSet, error) {
	set := valueSet{min: fd.min}
	if f == "*" || (f == "?" && fd.is(yearField)) {
		// "?" in the year has always been accepted here as "every year".
		for v := fd.min; v <= fd.max; v++ {
			set.add(v)
		}
		return set, nil
	}
	if strings.Contains(f, "?") {
		if fd.is(domField) || fd.is(dowField) {
			return set, syntax("? must stand alone")
		}
		return set, syntax("? is allowed only in day-of-month and day-of-week")
	}
	for item := range strings.SplitSeq(f, ",") {
		if err := fd.addItem(&set, item); err != nil {
			return set, err
		}
	}
	return set, nil
}

// addItem adds one list item: "*", "a", "a-b", each optionally with "/n",
// or "/n" alone (Quartz reads it as "*/n").
func (fd field) addItem(set *valueSet, item string) error {
	rng, stepText, hasStep := strings.Cut(item, "/")
	step := 1
	if hasStep {
		n, ok := number(stepText)
		if !ok {
			return syntax("step %q is not a number", stepText)
		}
		if n < 1 || n > fd.maxStep {
			return syntax("step %d is outside 1-%d", n, fd.maxStep)
		}
		step = n
	}
	lo, hi := fd.min, fd.max
	if rng != "*" && !(rng == "" && hasStep) {
		a, b, isRange := strings.Cut(rng, "-")
		var err error
		if lo, err = fd.value(a); err != nil {
			return err
		}
		switch {
		case isRange:
			if hi, err = fd.value(b); err != nil {
				return err
			}
		case !hasStep:
			hi = lo // a single value; "a/n" runs to the field's end
		}
	}
	span := fd.max - fd.min + 1
	if hi < lo {
		// Quartz wraps a range round the field's end ("22-2" hours), but
		// not in the year, which has no end to wrap round.
		if fd.is(yearField) {
			return syntax("year range %d-%d ends before it starts", lo, hi)
		}
		hi += span
	}
	for v := lo; v <= hi; v += step {
		set.add(fd.min + (v-fd.min)%span)
	}
	return nil
}

// value reads a number or name and checks it is in the field's range. Its
// errors name the special character that has strayed into the wrong field,
// since that is the likeliest mistake.
func (fd field) value(s string) (int, error) {
	n, ok := number(s)
	if !ok {
		for i, name := range fd.names {
			if s == name {
				return fd.min + i, nil
			}
		}
		switch {
		case s == "":
			return 0, syntax("a number is missing")
		case strings.Contains(s, "L"):
			return 0, syntax("L is allowed only alone, as L-n or LW in day-of-month, and as L or dL in day-of-week")
		case strings.Contains(s, "W"):
			return 0, syntax("W is allowed only after a single day in day-of-month (15W, LW)")
		case strings.Contains(s, "#"):
			return 0, syntax("# is allowed only in day-of-week, alone (6#3)")
		case fd.is(dowField):
			return 0, syntax("%q is neither a day number (1-7) nor a name (SUN-SAT)", s)
		case fd.is(monthField):
			return 0, syntax("%q is neither a month number (1-12) nor a name (JAN-DEC)", s)
		}
		return 0, syntax("%q is not a number", s)
	}
	switch {
	case fd.is(dowField) && (n < fd.min || n > fd.max):
		return 0, syntax("day %d is outside Quartz's 1-7 (SUN-SAT)", n)
	case n < fd.min:
		return 0, syntax("%d is below minimum %d", n, fd.min)
	case n > fd.max:
		return 0, syntax("%d is above maximum %d", n, fd.max)
	}
	return n, nil
}

// number reads decimal digits only (no sign), saturating so that a long
// string of digits cannot overflow: it is out of every field's range anyway.
func number(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = min(n*10+int(c-'0'), 1<<20)
	}
	return n, true
}

var errSpecialInList = fmt.Errorf("%w: L, W and # must be the whole field (Quartz does not implement them inside a list either)", ErrNotSupported)

// domKind says how a day-of-month field picks its days.
type domKind int

const (
	domList    domKind = iota // days in set
	domLast                   // L-offset, the nearest weekday to it if weekday
	domNearest                // the weekday nearest day (nW)
)

type domSpec struct {
	kind    domKind
	set     valueSet
	offset  int  // domLast: days before the last
	weekday bool // domLast: LW, L-nW
	day     int  // domNearest
}

func parseDom(f string) (domSpec, error) {
	if f == "?" {
		f = "*"
	}
	if !strings.ContainsAny(f, "LW") {
		set, err := parseList(domField, f)
		return domSpec{kind: domList, set: set}, err
	}
	if strings.Contains(f, ",") {
		return domSpec{}, errSpecialInList
	}
	if rest, ok := strings.CutPrefix(f, "L"); ok {
		d := domSpec{kind: domLast}
		rest, d.weekday = strings.CutSuffix(rest, "W")
		if rest == "" {
			return d, nil
		}
		n, ok := number(strings.TrimPrefix(rest, "-"))
		if !ok || rest[0] != '-' {
			return d, syntax("L takes only -n (L-3) or W (LW, L-3W) after it")
		}
		if n > 30 {
			return d, syntax("L-%d: the offset must be 0-30", n)
		}
		d.offset = n
		return d, nil
	}
	if dayText, ok := strings.CutSuffix(f, "W"); ok {
		if strings.ContainsAny(dayText, "-/*") {
			return domSpec{}, syntax("W takes a single day (15W), not a range or step")
		}
		n, err := domField.value(dayText)
		return domSpec{kind: domNearest, day: n}, err
	}
	_, err := domField.value(f)
	return domSpec{}, err
}

// days returns the matching days of a month of n days whose 1st falls on
// first, as a mask with bit d for day d.
func (d *domSpec) days(n int, first time.Weekday) uint32 {
	switch d.kind {
	case domLast:
		day := n - d.offset
		if day < 1 {
			return 0
		}
		if d.weekday {
			day = nearestWeekday(day, n, first)
		}
		return 1 << day
	case domNearest:
		if d.day > n {
			return 0 // as "31" alone, no fire in a month without the day
		}
		return 1 << nearestWeekday(d.day, n, first)
	}
	var mask uint32
	for day := 1; day <= n; day++ {
		if d.set.has(day) {
			mask |= 1 << day
		}
	}
	return mask
}

// nearestWeekday is Quartz's W: the Monday-to-Friday day nearest day, in a
// month of n days whose 1st is first, without leaving the month.
func nearestWeekday(day, n int, first time.Weekday) int {
	switch weekdayOf(day, first) {
	case time.Saturday:
		if day == 1 {
			return 3 // not Friday in the month before
		}
		return day - 1
	case time.Sunday:
		if day == n {
			return day - 2 // not Monday in the month after
		}
		return day + 1
	}
	return day
}

func weekdayOf(day int, first time.Weekday) time.Weekday {
	return (first + time.Weekday(day-1)) % 7
}

// dowKind says how a day-of-week field picks its days.
type dowKind int

const (
	dowList dowKind = iota // weekdays in set (Quartz numbers)
	dowLast                // the month's last weekday
	dowNth                 // the month's nth weekday
)

type dowSpec struct {
	kind    dowKind
	set     valueSet
	weekday time.Weekday // dowLast, dowNth
	nth     int          // dowNth
}

func parseDow(f string) (dowSpec, error) {
	switch {
	case f == "?":
		f = "*"
	case f == "L":
		f = "7" // Quartz: L alone in day-of-week is Saturday
	}
	if !strings.ContainsAny(f, "L#") {
		set, err := parseList(dowField, f)
		return dowSpec{kind: dowList, set: set}, err
	}
	if strings.Contains(f, ",") {
		return dowSpec{}, errSpecialInList
	}
	if dayText, nthText, ok := strings.Cut(f, "#"); ok {
		if dayText == "" {
			return dowSpec{}, syntax("# needs a day of the week before it (6#3 = third Friday)")
		}
		day, err := dowField.value(dayText)
		if err != nil {
			return dowSpec{}, err
		}
		n, ok := number(nthText)
		if !ok || n < 1 || n > 5 {
			return dowSpec{}, syntax("the n in %s#n must be 1-5", dayText)
		}
		return dowSpec{kind: dowNth, weekday: time.Weekday(day - 1), nth: n}, nil
	}
	dayText, ok := strings.CutSuffix(f, "L")
	if !ok || dayText == "" {
		return dowSpec{}, syntax("L in day-of-week goes alone or after one day (6L = last Friday)")
	}
	day, err := dowField.value(dayText)
	if err != nil {
		return dowSpec{}, err
	}
	return dowSpec{kind: dowLast, weekday: time.Weekday(day - 1)}, nil
}

// days returns the matching days of a month of n days whose 1st falls on
// first, as a mask with bit d for day d.
func (d *dowSpec) days(n int, first time.Weekday) uint32 {
	switch d.kind {
	case dowLast:
		last := weekdayOf(n, first)
		return 1 << (n - int((last-d.weekday+7)%7))
	case dowNth:
		day := 1 + int((d.weekday-first+7)%7) + 7*(d.nth-1)
		if day > n {
			return 0
		}
		return 1 << day
	}
	var mask uint32
	for day := 1; day <= n; day++ {
		if d.set.has(int(weekdayOf(day, first)) + 1) {
			mask |= 1 << day
		}
	}
	return mask
}
