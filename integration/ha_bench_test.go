package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
)

// HA figures, on each backend, with three `hasched serve` processes as in
// TestHA (`make bench` runs them; each measures once, whatever b.N):
//
//   - BenchmarkHAFireToLaunch: how late a task starts after its cron fire
//     time (the fire time from the task's environment against `date +%s%N`
//     in its script), over haLatencyJobs every-second jobs of haShards shards;
//     its raw side starts the same shells at the same instants from a plain
//     Go loop, the machine's floor.
//   - BenchmarkHATakeover: with haTakeoverJobs jobs and haTakeoverRunning
//     running tasks in the store, the time from a kill -9 (twice) or a
//     SIGTERM of the leader until a standby says it leads, and until then
//     its job list answers with every job.

const (
	haLatencyJobs   = 4
	haLatencyWarmup = 3 * time.Second
	haLatencySpan   = 30 * time.Second

	// The takeover's store; HASCHED_BENCH_TAKEOVER_JOBS and
	// HASCHED_BENCH_TAKEOVER_RUNNING override them (issue 11 measures
	// 100,000 and 10,000).
	haTakeoverJobs    = 10000
	haTakeoverRunning = 1000
	haTakeoverMax     = 1_000_000
	// haSeedWorkers write the store in parallel.
	haSeedWorkers = 16
)

func BenchmarkHAFireToLaunch(b *testing.B) {
	for _, be := range haBackends {
		b.Run(be.name, func(b *testing.B) {
			addr := be.start(b)
			c := newHACluster(b, be.url(addr, haNamespace("latency")), 3)
			c.waitLeader(time.Minute)
			var outs []string
			for i := range haLatencyJobs {
				outs = append(outs, c.registerTickJob(fmt.Sprintf("lat%d", i)))
			}
			from := time.Now().Add(haLatencyWarmup)
			to := from.Add(haLatencySpan)
			time.Sleep(time.Until(to) + 2*time.Second)
			haReportFireLatency(b, be.name, outs, from, to)
		})
	}
	// The floor of this machine: the same tasks started at the same
	// instants by a plain program, with no scheduler and no store.
	b.Run("raw", func(b *testing.B) {
		dir := b.TempDir()
		var outs []string
		for i := range haLatencyJobs {
			outs = append(outs, filepath.Join(dir, fmt.Sprintf("lat%d.fires", i)))
		}
		from := time.Now().Add(haLatencyWarmup)
		to := from.Add(haLatencySpan)
		haRawTicks(b, outs, from, to)
		haReportFireLatency(b, "raw", outs, from, to)
	})
}

// haRawTicks does what the tick jobs' fires do between from and to without
// a scheduler: at every whole second it starts a shell of the tick script
// for each of haShards shards of each out, all at once, as a plain Go
// program starts processes, and waits for them.
func haRawTicks(b *testing.B, outs []string, from, to time.Time) {
	b.Helper()
	for fire := from.Truncate(time.Second); !fire.After(to.Add(time.Second)); fire = fire.Add(time.Second) {
		time.Sleep(time.Until(fire))
		var wg sync.WaitGroup
		errs := make(chan error, len(outs)*haShards)
		for _, out := range outs {
			for shard := range haShards {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cmd := exec.Command("/bin/sh", "-c", haTickScript(out))
					cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")},
						fmt.Sprintf("HASCHED_FIRE_TIME_UNIX_MS=%d", fire.UnixMilli()),
						fmt.Sprintf("HASCHED_SHARDING_ITEM=%d", shard),
						"HASCHED_ATTEMPT=0",
						fmt.Sprintf("HASCHED_TASK_ID=raw-%d-%d", fire.Unix(), shard))
					if out, err := cmd.CombinedOutput(); err != nil {
						errs <- fmt.Errorf("%v: %s", err, out)
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
}

// haReportFireLatency reports how late the tick jobs' runs between from and
// to, read from outs, started after their fire times.
func haReportFireLatency(b *testing.B, name string, outs []string, from, to time.Time) {
	b.Helper()
	var lat []time.Duration
	for _, out := range outs {
		fires, err := haReadFires(out)
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range fires {
			if f.fireMs >= from.UnixMilli() && f.fireMs <= to.UnixMilli() {
				lat = append(lat, time.Duration(f.startNs-f.fireMs*int64(time.Millisecond)))
			}
		}
	}
	if len(lat) == 0 {
		b.Fatal("no fire ran")
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(haMs(q(0.50)), "p50-ms")
	b.ReportMetric(haMs(q(0.99)), "p99-ms")
	b.ReportMetric(haMs(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(float64(len(lat)), "runs")
	b.Logf("%s: fire to task start over %d runs (%d jobs x %d shards, every second, %v): p50 %v, p90 %v, p99 %v, max %v",
		name, len(lat), haLatencyJobs, haShards, haLatencySpan,
		q(0.50).Round(100*time.Microsecond), q(0.90).Round(100*time.Microsecond),
		q(0.99).Round(100*time.Microsecond), lat[len(lat)-1].Round(100*time.Microsecond))
}

func BenchmarkHATakeover(b *testing.B) {
	for _, be := range haBackends {
		b.Run(be.name, func(b *testing.B) {
			addr := be.start(b)
			url := be.url(addr, haNamespace("takeover"))
			// The sleeper first, so that it outlives the processes (cleanups
			// run last-registered first).
			sleeper := haStartSleeper(b)
			c := haPrepareCluster(b, url, 3)
			c.logLevel = "info"
			jobs := haBenchCount(b, "HASCHED_BENCH_TAKEOVER_JOBS", haTakeoverJobs)
			running := min(jobs, haBenchCount(b, "HASCHED_BENCH_TAKEOVER_RUNNING", haTakeoverRunning))
			seeded := time.Now()
			haSeedStore(b, url, c.workDir, sleeper, jobs, running)
			b.Logf("%s: store seeded with %d jobs (their ready nodes) and %d running tasks in %v",
				be.name, jobs, running, time.Since(seeded).Round(time.Millisecond))

			started := time.Now()
			c.startAll()
			leader := c.waitLeader(10 * time.Minute)
			b.Logf("%s: first leader %s established %v after the processes started", be.name, leader.name, time.Since(started).Round(time.Millisecond))
			list := haWaitJobList(b, c, leader, jobs)
			b.Logf("%s: the job list (%d jobs) takes %v", be.name, jobs, list.Round(time.Millisecond))
			haCheckRunning(b, c, leader, running)
			if rss, err := leader.rss(); err == nil {
				b.Logf("%s: the leader's resident memory with %d jobs: %d MiB", be.name, jobs, rss>>20)
				b.ReportMetric(float64(rss>>20), "leader-rss-MiB")
			} else {
				b.Logf("%s: the leader's resident memory: %v", be.name, err)
			}

			metrics := map[string][]time.Duration{}
			// warmLines is how many "standby is warm" lines each process
			// had logged when it last started: a takeover is measured only
			// once every standby is warm again (its mirror of the state
			// loaded, its jobs decoded), as it would be in service.
			warmLines := map[*haProc]int{}
			for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGKILL, syscall.SIGTERM} {
				leader := c.waitLeader(10 * time.Minute)
				for _, p := range c.others(leader) {
					haWaitWarm(b, p, warmLines[p])
				}
				at := time.Now()
				leader.signal(sig)
				next, leads := c.firstLeader(c.others(leader), at, 10*time.Minute)
				haWaitJobList(b, c, next, jobs)
				answers := time.Since(at)
				b.Logf("%s: %s of the leader %s: %s leads after %v (of which establishing the term: %v; %s), its job list answers after %v",
					be.name, haSignalName(sig), leader.name, next.name, leads.Round(time.Millisecond),
					haEstablishTime(next.logPath), haEstablishPhases(next.logPath), answers.Round(time.Millisecond))
				name := "kill9"
				if sig == syscall.SIGTERM {
					name = "sigterm"
				}
				metrics[name+"-leads-ms"] = append(metrics[name+"-leads-ms"], leads)
				metrics[name+"-lists-ms"] = append(metrics[name+"-lists-ms"], answers)
				leader.waitExit(time.Minute)
				warmLines[leader] = haCountLines(leader.logPath, haWarmLine)
				leader.start()
				c.waitAnswers(leader, time.Minute)
			}
			haCheckRunning(b, c, c.waitLeader(10*time.Minute), running)
			for _, name := range slices.Sorted(maps.Keys(metrics)) {
				var sum time.Duration
				for _, d := range metrics[name] {
					sum += d
				}
				b.ReportMetric(haMs(sum/time.Duration(len(metrics[name]))), name)
			}
		})
	}
}

// haWarmLine is what a standby logs once its mirror of the state is loaded
// and its jobs decoded (scheduler/standby.go).
const haWarmLine = "standby is warm"

// haCountLines counts the lines of the log at logPath that hold s.
func haCountLines(logPath, s string) int {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

// haWaitWarm waits until p has logged more "standby is warm" lines than
// the before it had when it last started.
func haWaitWarm(t testing.TB, p *haProc, before int) {
	t.Helper()
	began := time.Now()
	haEventually(t, p.name+" is a warm standby", 10*time.Minute, func() error {
		if n := haCountLines(p.logPath, haWarmLine); n <= before {
			return fmt.Errorf("%s has not logged %q since it started", p.name, haWarmLine)
		}
		return nil
	})
	t.Logf("%s: a warm standby (waited %v)", p.name, time.Since(began).Round(time.Millisecond))
}

// haBenchCount reads a count from the environment, def if unset.
func haBenchCount(t testing.TB, env string, def int) int {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > haTakeoverMax {
		t.Fatalf("%s=%q: want a count from 1 to %d", env, v, haTakeoverMax)
	}
	return n
}

// rss is the process's resident memory in bytes, from /proc.
func (p *haProc) rss() (int64, error) {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0, errors.New("not running")
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

func haMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// haWaitJobList waits until p lists want jobs and returns how long that
// successful request took.
func haWaitJobList(t testing.TB, c *haCluster, p *haProc, want int) time.Duration {
	t.Helper()
	var took time.Duration
	haEventually(t, p.name+" lists every job", 10*time.Minute, func() error {
		start := time.Now()
		jobs, err := c.jobNames(p)
		took = time.Since(start)
		if err == nil && len(jobs) != want {
			err = fmt.Errorf("%d jobs, want %d", len(jobs), want)
		}
		return err
	})
	return took
}

// haCheckRunning checks that the store still holds want running tasks, all
// RUNNING: the leader's reconciliation found every fake task alive.
func haCheckRunning(t testing.TB, c *haCluster, p *haProc, want int) {
	t.Helper()
	haEventually(t, "every seeded task is running", time.Minute, func() error {
		var recs []model.TaskRecord
		if err := c.get(p, "/api/job/tasks/running", time.Minute, &recs); err != nil {
			return err
		}
		running := 0
		for _, r := range recs {
			if r.State == executor.StateRunning {
				running++
			}
		}
		if len(recs) != want || running != want {
			return fmt.Errorf("%d running task records, %d of them RUNNING; want %d", len(recs), running, want)
		}
		return nil
	})
}

// haSeedStore writes, in the scheduler's store layout (scheduler/store.go),
// app "bench" and `jobs` one-shard TRANSIENT jobs with their ready nodes,
// firing once a year (1 January, 00:00 UTC); the first `running` of them
// have one running task each, launched half an hour ago.
//
// The running tasks are not real processes: their task directories in
// workDir carry pid files (the local executor's format) naming one sleeping
// process of this test, sleeper (see haStartSleeper), so that every
// reconciliation finds each of them alive and does the work it does for a
// real task, without a thousand processes on a small shared machine.
func haSeedStore(t testing.TB, url, workDir string, sleeper, jobs, running int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	co, err := coord.Open(ctx, url)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	defer co.Close()

	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	var pidJSON []byte
	if running > 0 {
		pidJSON = haFakePidFile(t, sleeper, host)
	}

	app := model.App{AppName: "bench", BootstrapScript: "true", CPUCount: 1, MemoryMB: 128, AppCacheEnable: true}
	if _, err := co.Create(ctx, "/config/app/bench", haJSON(t, app)); err != nil {
		t.Fatal(err)
	}
	registered := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	fire := registered.Add(30 * time.Minute)
	ready := haJSON(t, map[string]any{"fireTimes": []time.Time{}, "lastFireTime": time.Time{}, "registeredAt": registered})
	if err := os.MkdirAll(filepath.Join(workDir, "tasks"), 0o750); err != nil {
		t.Fatal(err)
	}

	seed := func(i int) error {
		name := fmt.Sprintf("bench-%07d", i)
		job := model.Job{
			JobName: name, AppName: "bench", Cron: "0 0 0 1 1 ?", ShardingTotalCount: 1,
			CPUCount: 0.1, MemoryMB: 16, JobExecutionType: model.Transient, Misfire: true,
			ConcurrencyPolicy: model.ConcurrencyForbid, TimeZone: "UTC", ScriptCommandLine: "true",
		}
		jobJSON, err := json.Marshal(job)
		if err != nil {
			return err
		}
		if _, err := co.Create(ctx, "/config/job/"+name, jobJSON); err != nil {
			return err
		}
		if _, err := co.Create(ctx, "/state/ready/"+name, ready); err != nil {
			return err
		}
		if i >= running {
			return nil
		}
		id := model.TaskID(name, fire, 0, 0)
		dir := filepath.Join(workDir, "tasks", haEscapeName(id))
		if err := os.Mkdir(dir, 0o750); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "pid"), pidJSON, 0o640); err != nil {
			return err
		}
		rec := model.TaskRecord{
			ID: id, Job: name, Shard: 0, FireTime: fire, State: executor.StateRunning,
			Host: host, LaunchedAt: fire, UpdatedAt: fire,
		}
		recJSON, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		_, err = co.Create(ctx, "/state/running/"+name+"/"+id, recJSON)
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, haSeedWorkers)
	for w := range haSeedWorkers {
		wg.Go(func() {
			for i := w; i < jobs; i += haSeedWorkers {
				if err := seed(i); err != nil {
					errs[w] = fmt.Errorf("job %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("seed the store: %v", err)
	}
}

func haJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// haStartSleeper starts a long sleep in a process group of its own, killed
// when the test ends (or with the test binary), and returns its pid.
func haStartSleeper(t testing.TB) int {
	t.Helper()
	cmd := exec.Command("sleep", "86400")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	done := make(chan struct{})
	if err := haStartLocked(cmd, func(*os.ProcessState) { close(done) }); err != nil {
		t.Fatalf("start the sleeper: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	return cmd.Process.Pid
}

// haFakePidFile is a local executor pid file naming process pid as a task
// of this host.
func haFakePidFile(t testing.TB, pid int, host string) []byte {
	t.Helper()
	start, ok := haProcStartTime(pid)
	if !ok {
		t.Fatalf("no start time for pid %d", pid)
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	return haJSON(t, map[string]any{
		"pid": pid, "pgid": pid, "startTime": start,
		"bootId": strings.TrimSpace(string(boot)), "pidNs": ns, "host": host,
		"launcher": os.Getpid(), "time": time.Now().UTC(),
	})
}

// haEscapeName is the local executor's task directory name of a task ID
// (short IDs only): [A-Za-z0-9_-] and a non-leading '.' stay, every other
// byte becomes %XX.
func haEscapeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-', c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// haEstablishTime reads from a process's log how long its last term took
// to establish (from "establishing leadership" to "leadership
// established"), or 0 if it cannot tell.
// haEstablishPhases is what the last "leadership established" line of the
// log at logPath says after its message: the time of each phase.
func haEstablishPhases(logPath string) string {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	var phases string
	for _, line := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(line, "leadership established"); ok {
			phases = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
		}
	}
	return phases
}

func haEstablishTime(logPath string) time.Duration {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return 0
	}
	var begun, done time.Time
	for _, line := range strings.Split(string(b), "\n") {
		ts, _, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(line, "establishing leadership"):
			begun, done = at, time.Time{}
		case strings.Contains(line, "leadership established"):
			done = at
		}
	}
	if begun.IsZero() || done.IsZero() {
		return 0
	}
	return done.Sub(begun)
}
