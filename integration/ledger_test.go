package integration

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The ledger: what the several-hosts tests' tasks say they did, and the
// checks of the scheduler's promise against it. It is the one thing the
// host containers share: a directory of the test machine, bind-mounted into
// every host at /ledger, where each task appends one line when it starts,
// one every ledgerBeat while it runs, and one when it ends:
//
//	start|beat|end <task id> <job> <fire unix ms> <shard> <attempt> <host> <pid> <unix ns>
//
// Each host writes a file of its own (<host>.log) with O_APPEND writes of one
// short line each (the shell's printf >> file), so lines never interleave.
// All containers read the one kernel clock of the test machine: times from
// different hosts compare.
//
// A task killed by SIGKILL writes no end line: its life, as far as anyone
// can tell, ends at its last line. The checks (analyzeLedger):
//
//	(a) no two runs of one (job, fire, shard) — one (job, shard) for a
//	    DAEMON job — overlap: each later run starts after the last line of
//	    every earlier one. The smallest such gap is the measured slack.
//	(b) no fire is dropped: every fire of the window has a started run on
//	    every shard (any attempt), but for fires due while the test had the
//	    job disabled.
//	(c) one task id starts once.
//
// A frozen host (docker pause) is the one exception to (a) the rig cannot
// avoid: its tasks are frozen with the worker that would kill them, and a
// task whose sleep ran out while frozen writes a line the moment it thaws,
// before any process can kill it. Lines a run writes after its host thawed
// are held apart: they are the thaw window, reported and bounded by the
// scenarios, not counted as the run's life.

// ledgerBeat is how often a running task writes a beat line.
const ledgerBeat = 200 * time.Millisecond

// Ledger line kinds.
const (
	ledgerStart = "start"
	ledgerBeatK = "beat"
	ledgerEnd   = "end"
)

// ledgerMaxLineLen bounds a ledger line: a task id and a few numbers.
const ledgerMaxLineLen = 1024

// ledgerLine is one line of the ledger.
type ledgerLine struct {
	Kind    string
	TaskID  string
	Job     string
	FireMs  int64
	Shard   int
	Attempt int
	Host    string
	Pid     int
	AtNs    int64
	// Created is when the task's wrapper process (the local executor's,
	// the script's parent) was created, in unix ns, to about 20 ms: a run
	// frozen before its start line was launched before the freeze.
	Created int64
}

func (l ledgerLine) String() string {
	return fmt.Sprintf("%s %s %s %d %d %d %s %d %d %d", l.Kind, l.TaskID, l.Job, l.FireMs, l.Shard, l.Attempt, l.Host, l.Pid, l.AtNs, l.Created)
}

// parseLedgerLine reads one line.
func parseLedgerLine(s string) (ledgerLine, error) {
	f := strings.Fields(s)
	if len(f) != 10 {
		return ledgerLine{}, fmt.Errorf("ledger line %q: %d fields, want 10", s, len(f))
	}
	l := ledgerLine{Kind: f[0], TaskID: f[1], Job: f[2], Host: f[6]}
	switch l.Kind {
	case ledgerStart, ledgerBeatK, ledgerEnd:
	default:
		return ledgerLine{}, fmt.Errorf("ledger line %q: kind %q, want start, beat or end", s, l.Kind)
	}
	var errs [6]error
	l.FireMs, errs[0] = strconv.ParseInt(f[3], 10, 64)
	l.Shard, errs[1] = strconv.Atoi(f[4])
	l.Attempt, errs[2] = strconv.Atoi(f[5])
	l.Pid, errs[3] = strconv.Atoi(f[7])
	l.AtNs, errs[4] = strconv.ParseInt(f[8], 10, 64)
	l.Created, errs[5] = strconv.ParseInt(f[9], 10, 64)
	if err := errors.Join(errs[:]...); err != nil {
		return ledgerLine{}, fmt.Errorf("ledger line %q: %v", s, err)
	}
	return l, nil
}

// readLedger reads every host's file in dir. A last line without its line
// end is being written and is left out.
func readLedger(dir string) ([]ledgerLine, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	var out []ledgerLine
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			b = b[:i+1]
		} else {
			b = nil
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 0, 4096), ledgerMaxLineLen)
		for sc.Scan() {
			l, err := parseLedgerLine(sc.Text())
			if err != nil {
				return nil, fmt.Errorf("%s: %w", filepath.Base(f), err)
			}
			out = append(out, l)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
	}
	return out, nil
}

// ledgerRun is one process's run of one task: its start line and its
// last one (before its host froze, if it did; see ledgerFreeze).
type ledgerRun struct {
	TaskID  string
	Job     string
	FireMs  int64
	Shard   int
	Attempt int
	Host    string
	Pid     int
	Start   int64 // ns
	Last    int64 // ns: its last line before any thaw of its host
	Ended   bool  // it wrote its end line
	Lines   int
	// Thawed is the last line it wrote after its host thawed (0: none):
	// the run outlived the freeze by Thawed - thaw time.
	Thawed int64
	// ThawedAt is the thaw that Thawed follows.
	ThawedAt int64
}

func (r ledgerRun) String() string {
	s := fmt.Sprintf("%s on %s (pid %d) %s..%s", r.TaskID, r.Host, r.Pid, ledgerNsTime(r.Start), ledgerNsTime(r.Last))
	if r.Ended {
		s += " ended"
	}
	return s
}

// fireNs is the run's fire time in unix nanoseconds.
func (r ledgerRun) fireNs() int64 { return r.FireMs * int64(time.Millisecond) }

// ledgerFreeze is a time a host was frozen (docker pause), in unix ns.
type ledgerFreeze struct {
	Host           string
	Paused, Thawed int64
}

// ledgerRuns puts the lines together into runs: one per start line, and
// the beat and end lines of the same task id, host and pid that follow it.
// Lines that belong to no run are problems.
func ledgerRuns(lines []ledgerLine, freezes []ledgerFreeze) (runs []ledgerRun, problems []string) {
	type key struct {
		id, host string
		pid      int
	}
	open := map[key]int{} // the latest run of each key, as an index into runs
	for _, l := range lines {
		k := key{l.TaskID, l.Host, l.Pid}
		if l.Kind == ledgerStart {
			open[k] = len(runs)
			r := ledgerRun{
				TaskID: l.TaskID, Job: l.Job, FireMs: l.FireMs, Shard: l.Shard, Attempt: l.Attempt,
				Host: l.Host, Pid: l.Pid, Start: l.AtNs, Last: l.AtNs, Lines: 1,
			}
			if l.Created > 0 {
				if thaw, frozen := thawBefore(freezes, l.Host, l.Created, l.AtNs); frozen {
					// Launched before a freeze and frozen before its first
					// line: its life ended as the freeze began, and all it
					// wrote is the thaw window.
					r.Start, r.Last = l.Created, l.Created
					r.Thawed, r.ThawedAt = l.AtNs, thaw
				}
			}
			runs = append(runs, r)
			continue
		}
		i, ok := open[k]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s line without a start: %s", l.Kind, l))
			continue
		}
		r := &runs[i]
		if r.Ended {
			problems = append(problems, fmt.Sprintf("%s line after the end of %s: %s", l.Kind, r, l))
			continue
		}
		r.Lines++
		r.Ended = l.Kind == ledgerEnd
		if thaw, frozen := thawBefore(freezes, r.Host, r.Start, l.AtNs); frozen {
			// Written after a freeze the run lived through: the thaw
			// window, not its life (see the file comment).
			r.Thawed, r.ThawedAt = max(r.Thawed, l.AtNs), thaw
			continue
		}
		r.Last = max(r.Last, l.AtNs)
	}
	return runs, problems
}

// thawBefore finds a freeze of host that began after start and ended at or
// before at: a line at at of a run that started at start came after it.
func thawBefore(freezes []ledgerFreeze, host string, start, at int64) (int64, bool) {
	for _, f := range freezes {
		if f.Host == host && start < f.Paused && f.Thawed <= at {
			return f.Thawed, true
		}
	}
	return 0, false
}

// ledgerJob is what the analysis knows of one job.
type ledgerJob struct {
	Name   string
	Shards int
	// Daemon: runs of one shard must not overlap whatever their fire (a
	// DAEMON shard is one long run, relaunched with new ids).
	Daemon bool
	// From and To (unix ms, inclusive) bound the fires of an every-second
	// cron that must each have run on every shard; From = 0: no check.
	From, To int64
	// Off are the times (unix ms) the test had the job disabled: fires due
	// in them may be missing.
	Off [][2]int64
}

// ledgerReport is the analysis of a ledger.
type ledgerReport struct {
	Runs int
	// Problems: lines that make no run (a beat without a start).
	Problems []string
	// Duplicates: task ids started more than once (c).
	Duplicates []string
	// Overlaps: runs that started before an earlier run of the same key
	// had written its last line (a).
	Overlaps []string
	// Dropped: fires of the window with no run of some shard (b).
	Dropped []string
	// Unknown: runs of jobs the analysis was not told about.
	Unknown []string
	// Relaunches counts runs that followed an earlier run of the same
	// key; Slack is the smallest gap between such a run's start and the
	// last line of the runs before it (only if Relaunches > 0).
	Relaunches int
	Slack      time.Duration
	SlackRun   string
	// Multi: (job, fire, shard)s of TRANSIENT jobs with more than one run.
	Multi []string
	// ThawWindow is the longest a run wrote lines after its host thawed.
	ThawWindow time.Duration
	ThawRuns   int
}

// Err is every violation of (a), (b) and (c), and problems, or nil.
func (rep ledgerReport) Err() error {
	var parts []string
	add := func(what string, items []string) {
		if len(items) == 0 {
			return
		}
		shown := items
		if len(shown) > 12 {
			shown = append(slices.Clone(shown[:12]), fmt.Sprintf("... (%d more)", len(items)-12))
		}
		parts = append(parts, fmt.Sprintf("%s (%d): %s", what, len(items), strings.Join(shown, "; ")))
	}
	add("malformed", rep.Problems)
	add("task ids started twice", rep.Duplicates)
	add("overlapping runs", rep.Overlaps)
	add("dropped fires", rep.Dropped)
	add("runs of unknown jobs", rep.Unknown)
	if len(parts) == 0 {
		return nil
	}
	return errors.New(strings.Join(parts, "\n"))
}

// Summary is one line for the test log.
func (rep ledgerReport) Summary() string {
	s := fmt.Sprintf("%d runs, %d relaunches", rep.Runs, rep.Relaunches)
	if rep.Relaunches > 0 {
		s += fmt.Sprintf(", smallest slack %v (%s)", rep.Slack.Round(time.Millisecond), rep.SlackRun)
	}
	if rep.ThawRuns > 0 {
		s += fmt.Sprintf(", %d runs wrote after a thaw, for up to %v", rep.ThawRuns, rep.ThawWindow.Round(time.Millisecond))
	}
	return s
}

// analyzeLedger checks runs against (a), (b) and (c).
func analyzeLedger(runs []ledgerRun, jobs []ledgerJob) ledgerReport {
	rep := ledgerReport{Runs: len(runs)}
	byName := map[string]ledgerJob{}
	for _, j := range jobs {
		byName[j.Name] = j
	}

	// (c) one start per task id.
	starts := map[string][]ledgerRun{}
	for _, r := range runs {
		starts[r.TaskID] = append(starts[r.TaskID], r)
		if r.Thawed > 0 {
			rep.ThawRuns++
			rep.ThawWindow = max(rep.ThawWindow, time.Duration(r.Thawed-r.ThawedAt))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(starts)) {
		if rs := starts[id]; len(rs) > 1 {
			rep.Duplicates = append(rep.Duplicates, fmt.Sprintf("%s started %d times: %s", id, len(rs), joinRuns(rs)))
		}
	}

	// (a) no overlap within a key.
	groups := map[string][]ledgerRun{}
	for _, r := range runs {
		j, ok := byName[r.Job]
		if !ok {
			rep.Unknown = append(rep.Unknown, r.String())
			continue
		}
		k := fmt.Sprintf("%s/%d/%d", r.Job, r.FireMs, r.Shard)
		if j.Daemon {
			k = fmt.Sprintf("%s/*/%d", r.Job, r.Shard)
		}
		groups[k] = append(groups[k], r)
	}
	first := true
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		g := groups[k]
		slices.SortFunc(g, func(a, b ledgerRun) int { return cmp.Compare(a.Start, b.Start) })
		if len(g) > 1 && !byName[g[0].Job].Daemon {
			rep.Multi = append(rep.Multi, fmt.Sprintf("%s: %s", k, joinRuns(g)))
		}
		latest := g[0] // the earlier run whose last line is latest
		for _, r := range g[1:] {
			rep.Relaunches++
			gap := time.Duration(r.Start - latest.Last)
			if r.Start <= latest.Last {
				rep.Overlaps = append(rep.Overlaps, fmt.Sprintf("%s started %v before the last line of %s", r, time.Duration(latest.Last-r.Start), latest))
			}
			if first || gap < rep.Slack {
				rep.Slack, rep.SlackRun, first = gap, fmt.Sprintf("%s after %s", r.TaskID, latest.TaskID), false
			}
			if r.Last > latest.Last {
				latest = r
			}
		}
	}

	// (b) every fire of the window ran on every shard.
	ran := map[string]map[int64][]bool{}
	for _, r := range runs {
		if ran[r.Job] == nil {
			ran[r.Job] = map[int64][]bool{}
		}
		j := byName[r.Job]
		if r.Shard < 0 || r.Shard >= j.Shards {
			continue
		}
		if ran[r.Job][r.FireMs] == nil {
			ran[r.Job][r.FireMs] = make([]bool, j.Shards)
		}
		ran[r.Job][r.FireMs][r.Shard] = true
	}
	for _, j := range jobs {
		if j.From == 0 || j.Daemon {
			continue
		}
		from := (j.From + 999) / 1000 * 1000
		for ms := from; ms <= j.To; ms += 1000 {
			if disabledAt(j.Off, ms) {
				continue
			}
			for s := range j.Shards {
				if sh := ran[j.Name][ms]; sh == nil || !sh[s] {
					rep.Dropped = append(rep.Dropped, fmt.Sprintf("%s fire %s shard %d", j.Name, ledgerMsTime(ms), s))
				}
			}
		}
	}
	return rep
}

// disabledAt says whether a fire at ms may be missing: it fell in a window
// the job was disabled, or within a second of one (a disable or enable
// call takes effect around its reply, not at it).
func disabledAt(off [][2]int64, ms int64) bool {
	for _, w := range off {
		if ms >= w[0]-1000 && ms <= w[1]+1000 {
			return true
		}
	}
	return false
}

// ledgerRelaunchDelays measures, for each run on host alive at the moment
// at (unix ns: started before it, no end line, a line within aliveWithin
// before it), how long after at the next run of its key started. Runs
// with no later run are returned as missing.
func ledgerRelaunchDelays(runs []ledgerRun, jobs []ledgerJob, host string, at int64, aliveWithin time.Duration) (delays []time.Duration, missing []string) {
	daemon := map[string]bool{}
	for _, j := range jobs {
		daemon[j.Name] = j.Daemon
	}
	key := func(r ledgerRun) string {
		if daemon[r.Job] {
			return fmt.Sprintf("%s/*/%d", r.Job, r.Shard)
		}
		return fmt.Sprintf("%s/%d/%d", r.Job, r.FireMs, r.Shard)
	}
	for _, r := range runs {
		if r.Host != host || r.Start > at || r.Ended || r.Last < at-int64(aliveWithin) {
			continue
		}
		var next *ledgerRun
		for i := range runs {
			o := &runs[i]
			if o.Start > r.Start && key(*o) == key(r) && (next == nil || o.Start < next.Start) {
				next = o
			}
		}
		if next == nil {
			missing = append(missing, r.String())
			continue
		}
		delays = append(delays, time.Duration(next.Start-at))
	}
	slices.Sort(delays)
	return delays, missing
}

// quantile is the q-quantile of sorted ds (nearest rank), 0 if empty.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(q*float64(len(ds)) + 0.5)
	return ds[min(len(ds)-1, max(0, i-1))]
}

func joinRuns(rs []ledgerRun) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.String())
	}
	return strings.Join(s, ", ")
}

func ledgerNsTime(ns int64) string {
	return time.Unix(0, ns).UTC().Format("15:04:05.000")
}

func ledgerMsTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("15:04:05.000")
}

// ledgerScript is a job's command: it appends its start line, a beat every
// ledgerBeat for beats beats (forever if beats < 0), then its end line, to
// <dir>/<host>.log (dir is /ledger in the hosts). Everything it runs is in
// the host image: sh, cat, date and sleep.
//
// Each line also says when the script's parent, the local executor's
// wrapper, was created (ledgerCreated).
func ledgerScript(dir string, beats int) string {
	rec := `r() { printf '%s %s %s %s %s %s %s %s %s %s\n' "$1" "$HASCHED_TASK_ID" "$HASCHED_JOB_NAME" "$HASCHED_FIRE_TIME_UNIX_MS" ` +
		`"$HASCHED_SHARDING_ITEM" "$HASCHED_ATTEMPT" "$h" "$$" "$(date +%s%N)" "$c" >>"` + dir + `/$h.log"; }`
	loop := fmt.Sprintf(`n=0; while [ $n -lt %d ]; do sleep %s; r beat; n=$((n+1)); done; r end`, beats, ledgerBeatArg())
	if beats < 0 {
		loop = fmt.Sprintf(`while :; do sleep %s; r beat; done`, ledgerBeatArg())
	}
	return `h=$(cat /etc/hostname); ` + ledgerCreated + `; ` + rec + `; r start; ` + loop
}

// ledgerCreated sets $c to when the script's parent process was created,
// in unix ns: its start time in clock ticks since boot (field 22 of
// /proc/PID/stat; 100 a second), set against the time since boot
// (/proc/uptime, in hundredths) and the clock read just after. A process
// is frozen with its host at any point, even before its first line: this
// is what tells a run launched before a freeze from one launched after.
const ledgerCreated = `set -- $(cat /proc/$PPID/stat); read -r up _ </proc/uptime; c=$(date +%s%N); ` +
	`up=${up%.*}${up#*.}; c=$((c - (up - ${22}) * 10000000))`

func ledgerBeatArg() string {
	return strconv.FormatFloat(ledgerBeat.Seconds(), 'f', -1, 64)
}
