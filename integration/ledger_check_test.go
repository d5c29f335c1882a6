package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Unit tests of the ledger and its analysis, on synthetic ledgers and on
// the real task script run on this machine. They need no container and run
// under -short.

const (
	lgSec = int64(time.Second)
	lgMs  = int64(time.Millisecond)
)

// lgBase is a fire time on the second, in unix ms.
const lgBase = int64(1_700_000_000_000)

// lgRun is a synthetic run of job/fire/shard/attempt on host, alive from
// start to last (ns after the fire), ended or not.
func lgRun(job string, fireMs int64, shard, attempt int, host string, start, last time.Duration, ended bool) ledgerRun {
	f := fireMs * lgMs
	return ledgerRun{
		TaskID: fmt.Sprintf("%s@-@%d@-@%d@-@%d", job, fireMs, shard, attempt),
		Job:    job, FireMs: fireMs, Shard: shard, Attempt: attempt, Host: host, Pid: 100 + attempt,
		Start: f + int64(start), Last: f + int64(last), Ended: ended, Lines: 2,
	}
}

// lgEverySecond is one run per shard of every fire in [from, to], each
// 500 ms long and ended.
func lgEverySecond(job string, shards int, from, to int64) []ledgerRun {
	var rs []ledgerRun
	for ms := from; ms <= to; ms += 1000 {
		for s := range shards {
			rs = append(rs, lgRun(job, ms, s, 0, "host1", 20*time.Millisecond, 520*time.Millisecond, true))
		}
	}
	return rs
}

func TestLedgerAnalysisCleanWithRelaunch(t *testing.T) {
	runs := lgEverySecond("tick", 2, lgBase, lgBase+9000)
	// Fire 3 shard 1 was lost on host1 (no end line) and ran again on
	// host2 300 ms after its last beat.
	for i, r := range runs {
		if r.FireMs == lgBase+3000 && r.Shard == 1 {
			runs[i].Ended = false
			runs[i].Last = r.Start + int64(200*time.Millisecond)
		}
	}
	runs = append(runs, lgRun("tick", lgBase+3000, 1, 1, "host2", 520*time.Millisecond, 1020*time.Millisecond, true))
	rep := analyzeLedger(runs, []ledgerJob{{Name: "tick", Shards: 2, From: lgBase, To: lgBase + 9000}})
	if err := rep.Err(); err != nil {
		t.Fatalf("a clean ledger: %v", err)
	}
	if rep.Relaunches != 1 || rep.Slack != 300*time.Millisecond {
		t.Errorf("relaunches %d, slack %v; want 1 and 300ms", rep.Relaunches, rep.Slack)
	}
	if len(rep.Multi) != 1 {
		t.Errorf("multi %q: want the one relaunched fire", rep.Multi)
	}
	if rep.Runs != 21 {
		t.Errorf("runs %d, want 21", rep.Runs)
	}
}

func TestLedgerAnalysisFindsOverlap(t *testing.T) {
	runs := []ledgerRun{
		lgRun("tick", lgBase, 0, 0, "host1", 10*time.Millisecond, 2*time.Second, false),
		// Attempt 1 starts while attempt 0 still beats.
		lgRun("tick", lgBase, 0, 1, "host2", 1500*time.Millisecond, 3*time.Second, true),
	}
	rep := analyzeLedger(runs, []ledgerJob{{Name: "tick", Shards: 1}})
	if len(rep.Overlaps) != 1 {
		t.Fatalf("overlaps %q, want one", rep.Overlaps)
	}
	if rep.Slack != -500*time.Millisecond {
		t.Errorf("slack %v, want -500ms", rep.Slack)
	}
	if rep.Err() == nil {
		t.Error("Err() is nil for an overlap")
	}
	// A third run after both: it is checked against the latest last line
	// of all earlier runs, not only the one before it.
	runs = append(runs, lgRun("tick", lgBase, 0, 2, "host3", 1800*time.Millisecond, 4*time.Second, true))
	runs[1].Last = lgBase*lgMs + int64(1600*time.Millisecond)
	rep = analyzeLedger(runs, []ledgerJob{{Name: "tick", Shards: 1}})
	if len(rep.Overlaps) != 2 {
		t.Errorf("overlaps %q, want two (attempt 1 and attempt 2 both start before attempt 0's last line)", rep.Overlaps)
	}
}

func TestLedgerAnalysisDaemonShardsAcrossFires(t *testing.T) {
	// A DAEMON shard relaunched as a new fire must still not overlap the
	// old run; TRANSIENT runs of different fires may.
	runs := []ledgerRun{
		lgRun("d", lgBase, 0, 0, "host1", 0, 10*time.Second, false),
		lgRun("d", lgBase+5000, 0, 0, "host2", 0, 3*time.Second, false),
		lgRun("t", lgBase, 0, 0, "host1", 0, 3*time.Second, true),
		lgRun("t", lgBase+1000, 0, 0, "host2", 0, 3*time.Second, true),
	}
	rep := analyzeLedger(runs, []ledgerJob{{Name: "d", Shards: 1, Daemon: true}, {Name: "t", Shards: 1}})
	if len(rep.Overlaps) != 1 || !strings.Contains(rep.Overlaps[0], "d@-@") {
		t.Fatalf("overlaps %q, want the daemon's only", rep.Overlaps)
	}
}

func TestLedgerAnalysisFindsDroppedFires(t *testing.T) {
	runs := lgEverySecond("tick", 3, lgBase, lgBase+9000)
	var kept []ledgerRun
	for _, r := range runs {
		switch {
		case r.FireMs == lgBase+2000 && r.Shard == 2: // dropped
		case r.FireMs >= lgBase+5000 && r.FireMs <= lgBase+6000: // disabled
		default:
			kept = append(kept, r)
		}
	}
	job := ledgerJob{Name: "tick", Shards: 3, From: lgBase, To: lgBase + 9000, Off: [][2]int64{{lgBase + 5200, lgBase + 5800}}}
	rep := analyzeLedger(kept, []ledgerJob{job})
	if len(rep.Dropped) != 1 || !strings.Contains(rep.Dropped[0], "shard 2") {
		t.Fatalf("dropped %q, want fire +2s shard 2 only", rep.Dropped)
	}
	job.Off = nil
	if rep := analyzeLedger(kept, []ledgerJob{job}); len(rep.Dropped) != 1+2*3 {
		t.Errorf("dropped %d without the disabled window, want 7: %q", len(rep.Dropped), rep.Dropped)
	}
	// A window that starts between seconds begins at the next fire.
	job = ledgerJob{Name: "tick", Shards: 3, From: lgBase + 2500, To: lgBase + 4000}
	if rep := analyzeLedger(kept, []ledgerJob{job}); len(rep.Dropped) != 0 {
		t.Errorf("dropped %q in a window after the dropped fire", rep.Dropped)
	}
	// Runs of a job nobody told the analysis about are reported.
	if rep := analyzeLedger(kept, nil); len(rep.Unknown) == 0 || rep.Err() == nil {
		t.Error("runs of an unknown job are not reported")
	}
}

func TestLedgerAnalysisFindsTaskIDStartedTwice(t *testing.T) {
	a := lgRun("tick", lgBase, 0, 0, "host1", 0, time.Second, true)
	b := a
	b.Host, b.Start, b.Last = "host2", a.Last+lgSec, a.Last+2*lgSec
	rep := analyzeLedger([]ledgerRun{a, b}, []ledgerJob{{Name: "tick", Shards: 1}})
	if len(rep.Duplicates) != 1 {
		t.Fatalf("duplicates %q, want one", rep.Duplicates)
	}
	if len(rep.Overlaps) != 0 {
		t.Errorf("overlaps %q: the two runs are apart", rep.Overlaps)
	}
}

func TestLedgerRunsFromLines(t *testing.T) {
	f := lgBase * lgMs
	l := func(kind, id string, attempt int, host string, pid int, at time.Duration) ledgerLine {
		return ledgerLine{Kind: kind, TaskID: id, Job: "tick", FireMs: lgBase, Shard: 0, Attempt: attempt, Host: host, Pid: pid, AtNs: f + int64(at)}
	}
	id0, id1 := "tick@-@1700000000000@-@0@-@0", "tick@-@1700000000000@-@0@-@1"
	ms := time.Millisecond
	lines := []ledgerLine{
		l(ledgerStart, id0, 0, "host1", 7, 10*ms),
		l(ledgerBeatK, id0, 0, "host1", 7, 210*ms),
		// host1 frozen from 300 ms to 5 s; the run writes at 5.001 s.
		l(ledgerStart, id1, 1, "host2", 9, 4500*ms),
		l(ledgerBeatK, id0, 0, "host1", 7, 5001*ms),
		l(ledgerBeatK, id1, 1, "host2", 9, 4700*ms),
		l(ledgerEnd, id1, 1, "host2", 9, 4900*ms),
		l(ledgerBeatK, "other", 0, "host3", 1, 0),   // no start
		l(ledgerBeatK, id1, 1, "host2", 9, 5000*ms), // after its end
	}
	freezes := []ledgerFreeze{{Host: "host1", Paused: f + int64(300*ms), Thawed: f + int64(5*time.Second)}}
	runs, problems := ledgerRuns(lines, freezes)
	if len(runs) != 2 || len(problems) != 2 {
		t.Fatalf("runs %v, problems %q: want 2 runs and 2 problems", runs, problems)
	}
	r0, r1 := runs[0], runs[1]
	if r0.Last != f+int64(210*ms) || r0.Thawed != f+int64(5001*ms) || r0.Ended {
		t.Errorf("run 0: %+v; want its life to end at 210ms and a thaw line at 5.001s", r0)
	}
	if !r1.Ended || r1.Lines != 3 || r1.Last != f+int64(4900*ms) {
		t.Errorf("run 1: %+v; want an ended run of 3 lines", r1)
	}
	rep := analyzeLedger(runs, []ledgerJob{{Name: "tick", Shards: 1}})
	if len(rep.Overlaps) != 0 {
		t.Errorf("overlaps %q: the frozen run's thaw line is not its life", rep.Overlaps)
	}
	if rep.ThawRuns != 1 || rep.ThawWindow != time.Millisecond {
		t.Errorf("thaw: %d runs, window %v; want 1 run, 1ms", rep.ThawRuns, rep.ThawWindow)
	}
	// Without the freeze the same lines are an overlap.
	runs, _ = ledgerRuns(lines, nil)
	if rep := analyzeLedger(runs, []ledgerJob{{Name: "tick", Shards: 1}}); len(rep.Overlaps) != 1 {
		t.Errorf("overlaps %q without the freeze, want one", rep.Overlaps)
	}
}

func TestLedgerRelaunchDelays(t *testing.T) {
	kill := lgBase*lgMs + int64(2*time.Second)
	runs := []ledgerRun{
		// On host1 when it died: relaunched 4 s and 5 s later.
		lgRun("t", lgBase, 0, 0, "host1", 0, 1900*time.Millisecond, false),
		lgRun("t", lgBase, 0, 1, "host2", 6*time.Second, 8*time.Second, true),
		lgRun("d", lgBase, 1, 0, "host1", 0, 1950*time.Millisecond, false),
		lgRun("d", lgBase+7000, 1, 0, "host3", 0, time.Second, false),
		// Ended before the kill, and on another host: not counted.
		lgRun("t", lgBase-1000, 0, 0, "host1", 0, 1500*time.Millisecond, true),
		lgRun("t", lgBase, 1, 0, "host2", 0, 3*time.Second, false),
		// Alive on host1 and never relaunched.
		lgRun("t", lgBase+1000, 0, 0, "host1", 0, 900*time.Millisecond, false),
	}
	jobs := []ledgerJob{{Name: "t", Shards: 2}, {Name: "d", Shards: 2, Daemon: true}}
	delays, missing := ledgerRelaunchDelays(runs, jobs, "host1", kill, 500*time.Millisecond)
	if fmt.Sprint(delays) != "[4s 5s]" {
		t.Errorf("delays %v, want [4s 5s]", delays)
	}
	if len(missing) != 1 || !strings.Contains(missing[0], "t@-@1700000001000") {
		t.Errorf("missing %q, want the fire +1s", missing)
	}
	if q := quantile(delays, 0.5); q != 4*time.Second {
		t.Errorf("p50 %v, want 4s", q)
	}
	if q := quantile(delays, 1); q != 5*time.Second {
		t.Errorf("max %v, want 5s", q)
	}
}

func TestReadLedgerSkipsALineBeingWritten(t *testing.T) {
	dir := t.TempDir()
	good := "start tick@-@1@-@0@-@0 tick 1 0 0 host1 5 1000 900\nbeat tick@-@1@-@0@-@0 tick 1 0 0 host1 5 2000 900\n"
	if err := os.WriteFile(filepath.Join(dir, "host1.log"), []byte(good+"beat tick@-@1@-@0"), 0o600); err != nil {
		t.Fatal(err)
	}
	lines, err := readLedger(dir)
	if err != nil || len(lines) != 2 {
		t.Fatalf("readLedger: %d lines, %v; want 2 and no error", len(lines), err)
	}
	if err := os.WriteFile(filepath.Join(dir, "host2.log"), []byte("stop x tick 1 0 0 host2 5 1000 900\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readLedger(dir); err == nil {
		t.Error("a line of an unknown kind is read without an error")
	}
}

// TestLedgerScript runs the task script with sh on this machine, as the
// hosts' local executor would (the HASCHED_* variables set), and reads
// what it wrote.
func TestLedgerScript(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Its parent a shell of its own, as the wrapper is on the hosts.
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `/bin/sh -c "$LEDGER_SCRIPT"; :`)
	cmd.Env = append(os.Environ(), "LEDGER_SCRIPT="+ledgerScript(dir, 2),
		"HASCHED_TASK_ID=tick@-@1700000000000@-@1@-@0", "HASCHED_JOB_NAME=tick",
		"HASCHED_FIRE_TIME_UNIX_MS=1700000000000", "HASCHED_SHARDING_ITEM=1", "HASCHED_ATTEMPT=0")
	before := time.Now().UnixNano()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the script failed: %v\n%s", err, out)
	}
	lines, err := readLedger(dir)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, l := range lines {
		kinds = append(kinds, l.Kind)
		if l.TaskID != "tick@-@1700000000000@-@1@-@0" || l.Job != "tick" || l.FireMs != 1700000000000 || l.Shard != 1 || l.Attempt != 0 || l.Pid <= 0 || l.Host == "" {
			t.Errorf("line %s does not say what the environment did", l)
		}
		if l.AtNs < before || l.AtNs > time.Now().UnixNano() {
			t.Errorf("line %s: time %d is not now", l, l.AtNs)
		}
		// Tick and hundredth resolution: 20 ms either way.
		if slop := int64(20 * time.Millisecond); l.Created < before-slop || l.Created > lines[0].AtNs+slop {
			t.Errorf("line %s: its wrapper created at %s, want between %s and its first line", l, ledgerNsTime(l.Created), ledgerNsTime(before))
		}
	}
	if got := strings.Join(kinds, " "); got != "start beat beat end" {
		t.Fatalf("lines %q, want start beat beat end", got)
	}
	runs, problems := ledgerRuns(lines, nil)
	if len(runs) != 1 || len(problems) != 0 || !runs[0].Ended {
		t.Fatalf("runs %v, problems %q: want one ended run", runs, problems)
	}
	if d := time.Duration(runs[0].Last - runs[0].Start); d < 2*ledgerBeat {
		t.Errorf("the run lasted %v, want at least two beats (%v)", d, 2*ledgerBeat)
	}
}

// A run launched before its host froze and frozen before its first line
// writes every line after the thaw: its life ends as the freeze began, and
// its lines are the thaw window, not a run that overlaps the relaunch made
// meanwhile. One launched after the thaw is an overlap.
func TestLedgerRunFrozenBeforeItsFirstLine(t *testing.T) {
	f := lgBase * lgMs
	ms := int64(time.Millisecond)
	l := func(kind, id string, attempt int, host string, at, created int64) ledgerLine {
		return ledgerLine{Kind: kind, TaskID: id, Job: "tick", FireMs: lgBase, Shard: 0, Attempt: attempt, Host: host, Pid: 7 + attempt, AtNs: f + at*ms, Created: f + created*ms}
	}
	id0, id1 := "tick@-@1700000000000@-@0@-@0", "tick@-@1700000000000@-@0@-@1"
	// host1 frozen from 300 ms to 6 s; the run relaunched on host2 at 5 s.
	freezes := []ledgerFreeze{{Host: "host1", Paused: f + 300*ms, Thawed: f + 6000*ms}}
	relaunch := []ledgerLine{
		l(ledgerStart, id1, 1, "host2", 5000, 4990),
		l(ledgerEnd, id1, 1, "host2", 7000, 4990),
	}
	for _, tc := range []struct {
		created int64 // ms: the frozen run's wrapper
		overlap bool
	}{
		{created: 250},                 // launched before the freeze
		{created: 6005, overlap: true}, // launched after the thaw
	} {
		lines := append([]ledgerLine{
			l(ledgerStart, id0, 0, "host1", 6010, tc.created),
			l(ledgerBeatK, id0, 0, "host1", 6030, tc.created),
		}, relaunch...)
		runs, problems := ledgerRuns(lines, freezes)
		if len(runs) != 2 || len(problems) != 0 {
			t.Fatalf("created %dms: runs %v, problems %q; want 2 runs", tc.created, runs, problems)
		}
		rep := analyzeLedger(runs, []ledgerJob{{Name: "tick", Shards: 1}})
		if got := len(rep.Overlaps) > 0; got != tc.overlap {
			t.Fatalf("created %dms: overlaps %q, want an overlap: %v", tc.created, rep.Overlaps, tc.overlap)
		}
		if !tc.overlap && (rep.ThawRuns != 1 || rep.ThawWindow != 30*time.Millisecond) {
			t.Fatalf("created %dms: thaw window %v over %d runs, want 30ms over 1", tc.created, rep.ThawWindow, rep.ThawRuns)
		}
	}
}
