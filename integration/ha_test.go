package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	tcwait "github.com/testcontainers/testcontainers-go/wait"

	"github.com/hasched/hasched/coord"
	_ "github.com/hasched/hasched/coord/etcd" // etcd:// for coord.Open
	_ "github.com/hasched/hasched/coord/zk"   // zk:// for coord.Open
	"github.com/hasched/hasched/internal/wait"
)

// End-to-end HA runs: three `hasched serve` processes (the real binary,
// built once per test binary) on a coordination container, with the local
// executor and one shared --work-dir, driven through the REST API. The
// scenarios kill -9, SIGTERM, pause and restart the leader, and restart the
// coordination service under it (on a container of its own, whose host
// port is pinned); every one of them checks the scheduler's promise on a
// job that fires every second: each fire of each shard runs exactly once.
//
// The processes' logs are printed when a test fails (HASCHED_HA_LOGS=1:
// always). Processes, and the process groups of the tasks they launched,
// are killed when each test ends. The figures (takeover times, how late
// tasks start) are logged; the only timing assertions are the takeover
// bounds below. ha_bench_test.go has the benchmarks.

// haBackend is one coordination backend of the HA runs.
type haBackend struct {
	name string
	// sessionTimeout is the session TTL / timeout the processes use.
	sessionTimeout time.Duration
	// start runs a coordination container for the run and returns its
	// client address.
	start func(t testing.TB) string
	// startPinned runs one whose client port is bound to a fixed host port,
	// so that it keeps its address across a stop and start.
	startPinned func(t testing.TB) *haContainer
	// url is the --coord URL of namespace ns on the server at addr.
	url func(addr, ns string) string
	// loadPer10k is what the takeover bounds allow a new term for reading
	// every 10,000 jobs of HASCHED_HA_JOBS (a SIGTERM takeover with
	// 10,000 jobs: etcd 0.42 s, ZooKeeper 2.0 s on the 2-core machine, more
	// when it is busy), so that a run at scale
	// checks the same promise with a bound that knows the store's size.
	loadPer10k time.Duration
}

// loadAllowance is the time the takeover bounds add for the seeded jobs.
func (b haBackend) loadAllowance(t testing.TB) time.Duration {
	jobs := haExtraJobs(t)
	return time.Duration((jobs+9_999)/10_000) * b.loadPer10k
}

var haBackends = []haBackend{
	{
		name:           "etcd",
		sessionTimeout: 3 * time.Second,
		start:          startEtcd,
		startPinned:    haStartPinnedEtcd,
		url:            func(addr, ns string) string { return "etcd://" + addr + "/" + ns + "?ttl=3s" },
		loadPer10k:     time.Second,
	},
	{
		name:           "zk",
		sessionTimeout: 4 * time.Second,
		start:          startZooKeeper,
		startPinned:    haStartPinnedZooKeeper,
		url:            func(addr, ns string) string { return "zk://" + addr + "/" + ns + "?session-timeout=4s" },
		loadPer10k:     3 * time.Second,
	},
}

// Bounds the scenarios assert (the only timing assertions here).
const (
	// haKillSlack: after a kill -9, a standby leads within the session
	// timeout plus this.
	haKillSlack = 2 * time.Second
	// haSigtermBound: after a SIGTERM the leader resigns, and a standby
	// leads within this.
	haSigtermBound = time.Second
)

// haShards is the tick job's shard count.
const haShards = 2

func TestHA(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs hasched processes against containers (make test runs it)")
	}
	for _, b := range haBackends {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			t.Run("LeaderKilled", func(t *testing.T) { haLeaderKilled(t, b, addr) })
			t.Run("SigtermHandsOver", func(t *testing.T) { haSigtermHandsOver(t, b, addr) })
			t.Run("ExactlyOnceAcrossFailovers", func(t *testing.T) { haExactlyOnceAcrossFailovers(t, b, addr) })
			t.Run("LeaderPaused", func(t *testing.T) { haLeaderPaused(t, b, addr) })
			t.Run("KilledWhileLaunching", func(t *testing.T) { haKilledWhileLaunching(t, b, addr) })
			t.Run("CoordinationRestarted", func(t *testing.T) { haCoordinationRestarted(t, b) })
		})
	}
}

// haLeaderKilled: kill -9 the leader; a standby leads within the session
// timeout plus haKillSlack, and the fires go on, each exactly once.
func haLeaderKilled(t *testing.T, b haBackend, addr string) {
	c := newHACluster(t, b.url(addr, haNamespace("killed")), 3)
	leader := c.waitLeader(time.Minute)
	out := c.registerTickJob("tick")
	c.waitFires(out, 0, 2, time.Minute)

	survivors := c.others(leader)
	killed := time.Now()
	leader.kill9()
	next, took := c.firstLeader(survivors, killed, b.sessionTimeout+time.Minute)
	bound := b.sessionTimeout + haKillSlack + b.loadAllowance(t)
	t.Logf("%s: kill -9 of the leader %s: %s leads %v later (bound %v)",
		b.name, leader.name, next.name, took.Round(time.Millisecond), bound)
	if took > bound {
		t.Errorf("a standby led %v after the leader was killed; want at most the session timeout + %v (+ the seeded jobs' load) = %v", took, haKillSlack, bound)
	}
	c.waitAgreed(next, survivors, 30*time.Second)

	cutoff := haFloorSecond(time.Now().Add(3 * time.Second))
	c.checkExactlyOnce(out, cutoff, time.Minute)
	c.expectAlive(survivors...)
}

// haSigtermHandsOver: SIGTERM the leader; it resigns, a standby leads
// within haSigtermBound, and the terminated process exits 0.
func haSigtermHandsOver(t *testing.T, b haBackend, addr string) {
	c := newHACluster(t, b.url(addr, haNamespace("sigterm")), 3)
	leader := c.waitLeader(time.Minute)
	out := c.registerTickJob("tick")
	c.waitFires(out, 0, 2, time.Minute)

	survivors := c.others(leader)
	for _, p := range survivors {
		haWaitWarm(t, p, 0)
	}
	termed := time.Now()
	leader.signal(syscall.SIGTERM)
	next, took := c.firstLeader(survivors, termed, time.Minute)
	bound := haSigtermBound + b.loadAllowance(t)
	t.Logf("%s: SIGTERM of the leader %s: %s leads %v later (bound %v)",
		b.name, leader.name, next.name, took.Round(time.Millisecond), bound)
	if took > bound {
		t.Errorf("a standby led %v after the leader was terminated; want at most %v (+ the seeded jobs' load)", took, bound)
	}
	// A warm standby loads the new term from its mirror of the state,
	// not from the servers (scheduler/standby.go).
	if phases := haEstablishPhases(next.logPath); !strings.Contains(phases, "state_from=mirror") {
		t.Errorf("%s established its term from elsewhere than its mirror: %s", next.name, phases)
	}
	if code := leader.waitExit(time.Minute); code != 0 {
		t.Errorf("%s exited with code %d after SIGTERM, want 0", leader.name, code)
	}
	c.waitAgreed(next, survivors, 30*time.Second)

	cutoff := haFloorSecond(time.Now().Add(3 * time.Second))
	c.checkExactlyOnce(out, cutoff, time.Minute)
	c.expectAlive(survivors...)
}

// haCoordinationRestarted: the coordination service stops for longer than
// the session timeout and starts again with its data, on the same address.
// No process exits; some process leads again; every process answers job
// lists; the fires resume, and each still runs exactly once (the ones due
// while the service was down run late).
func haCoordinationRestarted(t *testing.T, b haBackend) {
	ctr := b.startPinned(t)
	url := b.url(ctr.addr, haNamespace("restart"))
	c := newHACluster(t, url, 3)
	c.waitLeader(time.Minute)
	out := c.registerTickJob("tick")
	c.waitFires(out, 0, 2, time.Minute)

	down := b.sessionTimeout + 2*time.Second
	stopped := time.Now()
	ctr.stop(t)
	t.Logf("%s: coordination service stopped (took %v); keeping it down for %v",
		b.name, time.Since(stopped).Round(time.Millisecond), down)
	time.Sleep(down)
	c.expectAlive(c.procs...)
	restarted := time.Now()
	ctr.start(t)
	haWaitCoord(t, url, 2*time.Minute)
	t.Logf("%s: coordination service back %v after it was stopped (start took %v)",
		b.name, time.Since(stopped).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))

	leader := c.waitLeader(2 * time.Minute)
	t.Logf("%s: %s leads %v after the service came back", b.name, leader.name, time.Since(restarted).Round(time.Millisecond))
	for _, p := range c.procs {
		haEventually(t, p.name+" lists the jobs", time.Minute, func() error {
			jobs, err := c.jobNames(p)
			if err == nil && !slices.Contains(jobs, "tick") {
				err = fmt.Errorf("jobs %q lack tick", jobs)
			}
			return err
		})
	}
	cutoff := haFloorSecond(time.Now().Add(3 * time.Second))
	c.checkExactlyOnce(out, cutoff, 2*time.Minute)
	c.expectAlive(c.procs...)
}

// haExactlyOnceAcrossFailovers: about 30 s with two kill -9 of the leader
// and one SIGTERM, each victim restarted; every fire of every shard from
// the first to a cut-off shortly before the end runs exactly once.
func haExactlyOnceAcrossFailovers(t *testing.T, b haBackend, addr string) {
	c := newHACluster(t, b.url(addr, haNamespace("exactly")), 3)
	c.waitLeader(time.Minute)
	out := c.registerTickJob("tick")
	c.waitFires(out, 0, 1, time.Minute)
	began := time.Now()

	// Each signal comes a few milliseconds after a fire time, while the
	// leader is most likely moving that fire from ready to running and
	// launching it.
	offsets := []time.Duration{5 * time.Millisecond, 12 * time.Millisecond, 3 * time.Millisecond}
	for i, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGKILL, syscall.SIGTERM} {
		time.Sleep(5 * time.Second)
		leader := c.waitLeader(time.Minute)
		survivors := c.others(leader)
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + offsets[i])))
		at := time.Now()
		leader.signal(sig)
		next, took := c.firstLeader(survivors, at, b.sessionTimeout+time.Minute)
		t.Logf("%s: failover %d (%s of the leader %s): %s leads %v later", b.name, i+1, haSignalName(sig), leader.name, next.name, took.Round(time.Millisecond))
		code := leader.waitExit(time.Minute)
		if sig == syscall.SIGTERM && code != 0 {
			t.Errorf("%s exited with code %d after SIGTERM, want 0", leader.name, code)
		}
		leader.start()
		c.waitAnswers(leader, time.Minute)
	}
	time.Sleep(6 * time.Second)
	cutoff := haFloorSecond(time.Now().Add(-2 * time.Second))
	t.Logf("%s: failovers done %v after the first fire; checking fires up to %s",
		b.name, time.Since(began).Round(time.Millisecond), time.UnixMilli(cutoff).UTC().Format(time.TimeOnly))
	c.checkExactlyOnce(out, cutoff, time.Minute)
	c.expectAlive(c.procs...)
}

func haSignalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "kill -9"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return sig.String()
}

// haLeaderPaused: SIGSTOP the leader for longer than its session timeout;
// a standby leads meanwhile. On SIGCONT the old leader finds its leadership
// gone and follows the new one, and whatever it did before it noticed
// (its writes are meant to be fenced) leaves every fire run exactly once.
func haLeaderPaused(t *testing.T, b haBackend, addr string) {
	c := newHACluster(t, b.url(addr, haNamespace("paused")), 3)
	leader := c.waitLeader(time.Minute)
	out := c.registerTickJob("tick")
	c.waitFires(out, 0, 2, time.Minute)

	survivors := c.others(leader)
	paused := time.Now()
	leader.pause(true)
	next, took := c.firstLeader(survivors, paused, b.sessionTimeout+time.Minute)
	t.Logf("%s: the leader %s paused: %s leads %v later", b.name, leader.name, next.name, took.Round(time.Millisecond))
	// Let the new leader run a few fires (and the paused one's timers fall
	// due) before the old leader wakes up.
	time.Sleep(3 * time.Second)
	resumed := time.Now()
	leader.pause(false)
	var claimed bool
	haEventually(t, leader.name+" follows "+next.name+" after it resumed", time.Minute, func() error {
		st, err := c.status(leader, 2*time.Second)
		if err != nil {
			return err
		}
		if st.Leader {
			claimed = true
			return errors.New("it still says it leads")
		}
		if st.LeaderAddress != next.addr {
			return fmt.Errorf("it follows %q", st.LeaderAddress)
		}
		return nil
	})
	t.Logf("%s: %s follows %s %v after it resumed (said it led after resuming: %v)",
		b.name, leader.name, next.name, time.Since(resumed).Round(time.Millisecond), claimed)
	c.waitAgreed(next, c.procs, 30*time.Second)

	cutoff := haFloorSecond(time.Now().Add(3 * time.Second))
	c.checkExactlyOnce(out, cutoff, time.Minute)
	c.expectAlive(c.procs...)
}

// haLaunchKills is how often KilledWhileLaunching kills the leader.
const haLaunchKills = 15

// haKilledWhileLaunching: kill -9 the leader again and again just as it
// launches a fire's tasks (aimed from how long after their fire time the
// last runs started, sweeping a few milliseconds around the moment the
// launcher forks the task and records its pid), restarting it each time;
// every fire still runs exactly once per shard. A task claimed but never
// started by a killed launcher is relaunched as its next attempt; one that
// was started must not be.
func haKilledWhileLaunching(t *testing.T, b haBackend, addr string) {
	c := newHACluster(t, b.url(addr, haNamespace("launching")), 3)
	c.waitLeader(time.Minute)
	out := c.registerTickJob("tick")
	c.waitFires(out, 0, 3, time.Minute)

	for i := range haLaunchKills {
		leader := c.waitLeader(time.Minute)
		fires, err := haReadFires(out)
		if err != nil {
			t.Fatal(err)
		}
		if _, wrong := haExactlyOnce(fires, haShards, 0); wrong != nil {
			t.Fatalf("after %d kills: %v", i, wrong)
		}
		delay := haTypicalLaunchDelay(leader.logPath, fires)
		offset := max(0, delay-6*time.Millisecond+time.Duration(i%13)*500*time.Microsecond)
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + offset)))
		leader.kill9()
		leader.start()
		c.waitAnswers(leader, time.Minute)
		t.Logf("%s: kill %d of %s at fire time + %v (its launcher recorded tasks as started %v after their fire time)",
			b.name, i+1, leader.name, offset.Round(100*time.Microsecond), delay.Round(100*time.Microsecond))
	}
	c.waitLeader(time.Minute)
	cutoff := haFloorSecond(time.Now().Add(3 * time.Second))
	// A task that was claimed but never started counts as such only after
	// the executor's start grace (5 s): its relaunch comes that late.
	c.checkExactlyOnce(out, cutoff, time.Minute)
	c.expectAlive(c.procs...)
}

// haTypicalLaunchDelay is the median delay from fire time to the moment
// the launcher recorded a task as started (its "task started" log line,
// written right after the pid file) over the last runs in a process's log
// that were not caught up after a failover; failing that, the median delay
// to the runs' own start, less the few milliseconds two shells take.
func haTypicalLaunchDelay(logPath string, fires []haFire) time.Duration {
	var d []time.Duration
	if b, err := os.ReadFile(logPath); err == nil {
		lines := strings.Split(string(b), "\n")
		for i := len(lines) - 1; i >= 0 && len(d) < 10; i-- {
			line := lines[i]
			if !strings.Contains(line, "task started:") {
				continue
			}
			ts, _, _ := strings.Cut(line, " ")
			at, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil {
				continue
			}
			_, id, ok := strings.Cut(line, "task_id=")
			if !ok {
				continue
			}
			id, _, _ = strings.Cut(id, " ")
			parts := strings.Split(id, "@-@")
			if len(parts) != 4 || parts[3] != "0" {
				continue
			}
			ms, err := strconv.ParseInt(parts[1], 10, 64)
			if err != nil {
				continue
			}
			if dd := at.Sub(time.UnixMilli(ms)); dd >= 0 && dd < 200*time.Millisecond {
				d = append(d, dd)
			}
		}
	}
	if len(d) == 0 {
		for i := len(fires) - 1; i >= 0 && len(d) < 20; i-- {
			f := fires[i]
			if dd := time.Duration(f.startNs-f.fireMs*int64(time.Millisecond)) - 5*time.Millisecond; f.attempt == 0 && dd >= 0 && dd < 200*time.Millisecond {
				d = append(d, dd)
			}
		}
	}
	if len(d) == 0 {
		return 15 * time.Millisecond
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// haNamespace is a fresh coordinator namespace for one run.
func haNamespace(prefix string) string {
	return fmt.Sprintf("ha-%s-%d", prefix, time.Now().UnixNano())
}

// haFloorSecond is t as unix milliseconds, rounded down to the second: a
// fire time of an every-second cron.
func haFloorSecond(t time.Time) int64 {
	return t.Truncate(time.Second).UnixMilli()
}

// The hasched binary, built once per test binary.

var haBin struct {
	once sync.Once
	path string
	err  error
}

// haBinDirPrefix names the binary's directory; the test binary's pid
// follows it, so that a later run can remove the directories of runs that
// are gone (nothing runs when a test binary exits).
const haBinDirPrefix = "hasched-ha-bin-"

func haBinary(t testing.TB) string {
	t.Helper()
	haBin.once.Do(func() {
		haBin.path, haBin.err = haBuild()
	})
	if haBin.err != nil {
		t.Fatalf("build hasched: %v", haBin.err)
	}
	return haBin.path
}

func haBuild() (string, error) {
	root, err := haModuleRoot()
	if err != nil {
		return "", err
	}
	haRemoveStaleBinDirs()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", haBinDirPrefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "hasched")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/hasched")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("go build ./cmd/hasched in %s: %v\n%s", root, err, out)
	}
	return bin, nil
}

// haRemoveStaleBinDirs removes binaries built by test binaries that no
// longer run.
func haRemoveStaleBinDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), haBinDirPrefix+"*"))
	for _, d := range dirs {
		rest := strings.TrimPrefix(filepath.Base(d), haBinDirPrefix)
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

// haModuleRoot walks up from the working directory to go.mod.
func haModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// haLogsEnv, if set, makes passing tests print the processes' logs too.
const haLogsEnv = "HASCHED_HA_LOGS"

// haCluster is n `hasched serve` processes on one coordinator namespace,
// sharing one work directory. Everything it starts is stopped when the test
// ends, pass or fail; a failing test prints the processes' logs.
type haCluster struct {
	t        testing.TB
	bin      string
	coordURL string
	root     string
	workDir  string // the local executor's, shared
	outDir   string // where the jobs' scripts write
	http     *http.Client
	procs    []*haProc
	// logLevel is the processes' --log-level (debug unless set before
	// they start).
	logLevel string
	// executorArgs choose the executor (the shared local one unless set
	// before the processes start).
	executorArgs []string
}

// haProc is one `hasched serve` process, restartable with the same flags.
type haProc struct {
	c       *haCluster
	name    string
	addr    string // --listen and --advertise
	dataDir string
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current incarnation has exited
	state   *os.ProcessState
	starts  int
	stopped bool // the test signalled the current incarnation
}

// newHACluster starts n processes on coordURL and waits until each answers.
func newHACluster(t testing.TB, coordURL string, n int) *haCluster {
	t.Helper()
	c := haPrepareCluster(t, coordURL, n)
	if jobs := haExtraJobs(t); jobs > 0 {
		seeded := time.Now()
		haSeedStore(t, coordURL, c.workDir, 0, jobs, 0)
		t.Logf("%d idle jobs seeded in %v (HASCHED_HA_JOBS)", jobs, time.Since(seeded).Round(time.Millisecond))
	}
	c.startAll()
	return c
}

// haExtraJobs is HASCHED_HA_JOBS: idle jobs (firing once a year) seeded
// into the store before an HA cluster starts, so that the HA tests run
// with a leader that loads, schedules and lists that many besides their
// own (issue 11 asks for a run at 10,000). None by default.
func haExtraJobs(t testing.TB) int {
	if os.Getenv("HASCHED_HA_JOBS") == "" {
		return 0
	}
	return haBenchCount(t, "HASCHED_HA_JOBS", 0)
}

// haPrepareCluster sets up n processes on coordURL without starting them.
func haPrepareCluster(t testing.TB, coordURL string, n int) *haCluster {
	t.Helper()
	root := t.TempDir()
	c := &haCluster{
		t:        t,
		bin:      haBinary(t),
		coordURL: coordURL,
		root:     root,
		workDir:  filepath.Join(root, "work"),
		outDir:   filepath.Join(root, "out"),
		// No keep-alive: processes die under the tests, and every
		// request should see the process as it is now.
		http:     &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		logLevel: "debug",
	}
	c.executorArgs = []string{"--executor", "local", "--work-dir", c.workDir}
	for _, d := range []string{c.workDir, c.outDir, filepath.Join(root, "logs")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.close)
	for i := range n {
		name := fmt.Sprintf("s%d", i+1)
		c.procs = append(c.procs, &haProc{
			c:       c,
			name:    name,
			addr:    fmt.Sprintf("127.0.0.1:%d", haFreePort(t)),
			dataDir: filepath.Join(root, "data-"+name),
			logPath: filepath.Join(root, "logs", name+".log"),
		})
	}
	return c
}

// startAll starts every process and waits until each answers.
func (c *haCluster) startAll() {
	c.t.Helper()
	for _, p := range c.procs {
		p.start()
	}
	for _, p := range c.procs {
		c.waitAnswers(p, time.Minute)
	}
}

// haFreePort is a TCP port free on the loopback interface right now.
func haFreePort(t testing.TB) int {
	t.Helper()
	// Below the kernel's ephemeral range: a port from it (what listening
	// on port 0 gives) may be taken before the process binds it, by an
	// outgoing connection or a container's published port, which draw
	// from the same range (a ZooKeeper HA test's process once found its
	// port so taken).
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > haPortFloor+1000 {
				lo = n
			}
		}
	}
	for range 100 {
		port := haPortFloor + rand.IntN(lo-haPortFloor)
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			_ = ln.Close()
			return port
		}
	}
	t.Fatalf("no free port between %d and %d", haPortFloor, lo)
	return 0
}

// haPortFloor is the lowest port haFreePort hands out.
const haPortFloor = 20000

// start starts a new incarnation of p.
func (p *haProc) start() {
	t := p.c.t
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			t.Fatalf("%s: started while it runs", p.name)
		}
	}
	p.starts++
	logf, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== %s: start %d at %s ===\n", p.name, p.starts, time.Now().UTC().Format(time.RFC3339Nano))
	args := append([]string{"serve",
		"--coord", p.c.coordURL,
		"--data-dir", p.dataDir,
		"--listen", p.addr,
		"--advertise", p.addr,
		"--log-level", p.c.logLevel}, p.c.executorArgs...)
	cmd := exec.Command(p.c.bin, args...)
	cmd.Env = haChildEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	// A group of its own (the tests' signals are for the test binary
	// only), killed with the test binary if that dies (Pdeathsig; see
	// haStartLocked).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	done := make(chan struct{})
	if err := haStartLocked(cmd, func(st *os.ProcessState) {
		p.mu.Lock()
		p.state = st
		p.mu.Unlock()
		_ = logf.Close()
		close(done)
	}); err != nil {
		_ = logf.Close()
		t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd, p.done, p.state, p.stopped = cmd, done, nil, false
}

// haStartLocked starts cmd from an OS thread that lives until cmd exits,
// then calls exited. Pdeathsig fires when the thread that forked the child
// ends, not the process: a locked thread ends only with the test binary.
func haStartLocked(cmd *exec.Cmd, exited func(*os.ProcessState)) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		exited(cmd.ProcessState)
	}()
	return <-started
}

// haChildEnv is this process's environment without HASCHED_* variables,
// which would set the serve flags (and the tests' own settings would leak
// into the tasks).
func haChildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HASCHED_") {
			env = append(env, kv)
		}
	}
	return env
}

// signal sends sig to the process, and marks its exit as expected.
func (p *haProc) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.c.t.Errorf("signal %v to %s: %v", sig, p.name, err)
	}
}

// pause stops (SIGSTOP) or continues (SIGCONT) the process.
func (p *haProc) pause(stop bool) {
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.c.t.Errorf("signal %v to %s: %v", sig, p.name, err)
	}
}

// kill9 kills the process and waits until it is gone.
func (p *haProc) kill9() {
	p.signal(syscall.SIGKILL)
	p.waitExit(30 * time.Second)
}

// exited says whether the current incarnation has exited.
func (p *haProc) exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// waitExit waits for the current incarnation to exit and returns its exit
// code (-1 if a signal ended it).
func (p *haProc) waitExit(timeout time.Duration) int {
	t := p.c.t
	t.Helper()
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v", p.name, timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.ExitCode()
}

// close kills what is left of the cluster: its processes, then the process
// groups of the tasks they launched (which outlive them by design); then,
// if the test failed, prints the processes' logs.
func (c *haCluster) close() {
	for _, p := range c.procs {
		p.mu.Lock()
		cmd, done := p.cmd, p.done
		p.mu.Unlock()
		if cmd == nil || p.exited() {
			continue
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			c.t.Errorf("%s did not die", p.name)
		}
	}
	haKillTaskGroups(c.t, c.workDir)
	c.http.CloseIdleConnections()
	for _, p := range c.procs {
		if b, err := os.ReadFile(p.logPath); err == nil {
			for _, bad := range []string{"panic:", "fatal error:", "WARNING: DATA RACE"} {
				if bytes.Contains(b, []byte(bad)) {
					c.t.Errorf("the log of %s holds %q", p.name, bad)
				}
			}
		}
	}
	if c.t.Failed() || os.Getenv(haLogsEnv) != "" {
		for _, p := range c.procs {
			c.t.Logf("--- log of %s (%s, listening on %s) ---\n%s", p.name, p.logPath, p.addr, haTail(p.logPath, 256<<10))
		}
	}
}

// haKillTaskGroups kills the process group of every task under workDir
// whose leader still runs (the executor's pid files name the group and its
// leader's start time, so a pid reused since is left alone).
func haKillTaskGroups(t testing.TB, workDir string) {
	pidFiles, _ := filepath.Glob(filepath.Join(workDir, "tasks", "*", "pid"))
	for _, f := range pidFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var pf struct {
			Pgid      int    `json:"pgid"`
			StartTime uint64 `json:"startTime"`
		}
		if json.Unmarshal(b, &pf) != nil || pf.Pgid <= 0 {
			continue
		}
		if st, ok := haProcStartTime(pf.Pgid); ok && st == pf.StartTime {
			if err := syscall.Kill(-pf.Pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				t.Logf("kill task group %d: %v", pf.Pgid, err)
			}
		}
	}
}

// haProcStartTime reads field 22 of /proc/<pid>/stat (fields counted after
// the command name, which may hold spaces).
func haProcStartTime(pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	st, err := strconv.ParseUint(f[22-3], 10, 64)
	return st, err == nil
}

// haTail is the end of a file, at most max bytes.
func haTail(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	prefix := ""
	if fi.Size() > max {
		if _, err := f.Seek(-max, io.SeekEnd); err != nil {
			return err.Error()
		}
		prefix = fmt.Sprintf("[... %d bytes before ...]\n", fi.Size()-max)
	}
	b, _ := io.ReadAll(f)
	return prefix + string(b)
}

// others is every process but p.
func (c *haCluster) others(p *haProc) []*haProc {
	var out []*haProc
	for _, q := range c.procs {
		if q != p {
			out = append(out, q)
		}
	}
	return out
}

// expectAlive fails the test for every one of ps that exited without being
// told to.
func (c *haCluster) expectAlive(ps ...*haProc) {
	c.t.Helper()
	for _, p := range ps {
		if p.exited() {
			p.mu.Lock()
			st, stopped := p.state, p.stopped
			p.mu.Unlock()
			if !stopped {
				c.t.Errorf("%s exited on its own: %v", p.name, st)
			}
		}
	}
}

// REST API.

// haStatus is GET /api/leader.
type haStatus struct {
	Self          string `json:"self"`
	Leader        bool   `json:"leader"`
	LeaderAddress string `json:"leaderAddress"`
	Term          int64  `json:"term"`
}

// get GETs path from p into v (nil: discard), within timeout.
func (c *haCluster) get(p *haProc, path string, timeout time.Duration, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s on %s: %s: %s", path, p.name, resp.Status, bytes.TrimSpace(body))
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(body, v)
}

func (c *haCluster) status(p *haProc, timeout time.Duration) (haStatus, error) {
	var st haStatus
	err := c.get(p, "/api/leader", timeout, &st)
	return st, err
}

func (c *haCluster) jobNames(p *haProc) ([]string, error) {
	var jobs []struct {
		JobName string `json:"jobName"`
	}
	if err := c.get(p, "/api/job/jobs", time.Minute, &jobs); err != nil {
		return nil, err
	}
	names := make([]string, len(jobs))
	for i, j := range jobs {
		names[i] = j.JobName
	}
	return names, nil
}

// write POSTs a JSON body to path on the leader, retrying while there is
// none (503) or it cannot be reached; a 409 after a retry means an earlier
// attempt went through.
func (c *haCluster) write(path string, body any) {
	t := c.t
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for attempt := 0; ; attempt++ {
		err := c.writeOnce(path, data)
		var se *haStatusError
		switch {
		case err == nil:
			return
		case errors.As(err, &se) && se.code == http.StatusConflict && attempt > 0:
			return
		case errors.As(err, &se) && se.code != http.StatusServiceUnavailable:
			t.Fatalf("POST %s: %v", path, err)
		case time.Now().After(deadline):
			t.Fatalf("POST %s: no success within 2m: %v", path, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type haStatusError struct {
	code int
	msg  string
}

func (e *haStatusError) Error() string { return fmt.Sprintf("%d: %s", e.code, e.msg) }

func (c *haCluster) writeOnce(path string, data []byte) error {
	leader := c.currentLeader()
	if leader == nil {
		return &haStatusError{code: http.StatusServiceUnavailable, msg: "no process says it leads"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+leader.addr+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return &haStatusError{code: resp.StatusCode, msg: string(bytes.TrimSpace(body))}
	}
	return nil
}

// currentLeader is a running process that says it leads, or nil.
func (c *haCluster) currentLeader() *haProc {
	for _, p := range c.procs {
		if p.exited() {
			continue
		}
		if st, err := c.status(p, 2*time.Second); err == nil && st.Leader {
			return p
		}
	}
	return nil
}

// waitAnswers waits until p's API answers.
func (c *haCluster) waitAnswers(p *haProc, timeout time.Duration) {
	c.t.Helper()
	haEventually(c.t, p.name+" answers", timeout, func() error {
		if p.exited() {
			p.mu.Lock()
			st := p.state
			p.mu.Unlock()
			return wait.Stop(fmt.Errorf("%s exited: %v", p.name, st))
		}
		return c.get(p, "/healthz", 2*time.Second, nil)
	})
}

// waitLeader waits until exactly one running process leads and every
// running process names it as the leader.
func (c *haCluster) waitLeader(timeout time.Duration) *haProc {
	c.t.Helper()
	var leader *haProc
	haEventually(c.t, "one leader that all follow", timeout, func() error {
		var running []*haProc
		for _, p := range c.procs {
			if !p.exited() {
				running = append(running, p)
			}
		}
		var err error
		leader, err = agreedLeader(running, func(p *haProc) string { return p.name },
			func(p *haProc) (haStatus, error) { return c.status(p, 2*time.Second) },
			func(st haStatus) *haProc {
				for _, p := range c.procs {
					if p.addr == st.LeaderAddress {
						return p
					}
				}
				return nil
			})
		return err
	})
	return leader
}

// agreedLeader asks every process of procs for its status and returns the
// one that leads, if exactly one does and every other names it (leaderOf
// maps a status's leader address to its process).
func agreedLeader[P comparable](procs []P, name func(P) string, status func(P) (haStatus, error), leaderOf func(haStatus) P) (P, error) {
	var none, leader P
	sts := map[P]haStatus{}
	for _, p := range procs {
		st, err := status(p)
		if err != nil {
			return none, err
		}
		sts[p] = st
		if st.Leader {
			if leader != none {
				return none, fmt.Errorf("both %s and %s lead", name(leader), name(p))
			}
			leader = p
		}
	}
	if leader == none {
		return none, errors.New("nobody leads")
	}
	for p, st := range sts {
		if leaderOf(st) != leader {
			return none, fmt.Errorf("%s follows %q, not %s", name(p), st.LeaderAddress, name(leader))
		}
	}
	return leader, nil
}

// waitAgreed waits until every one of ps names leader as the leader, and
// checks that leader still leads.
func (c *haCluster) waitAgreed(leader *haProc, ps []*haProc, timeout time.Duration) {
	c.t.Helper()
	haEventually(c.t, "the processes follow "+leader.name, timeout, func() error {
		for _, p := range ps {
			st, err := c.status(p, 2*time.Second)
			if err != nil {
				return err
			}
			if p == leader && !st.Leader {
				return fmt.Errorf("%s no longer leads", p.name)
			}
			if st.LeaderAddress != leader.addr {
				return fmt.Errorf("%s follows %q", p.name, st.LeaderAddress)
			}
		}
		return nil
	})
}

// firstLeader polls cands until one says it leads, and returns it and the
// time since since at which it first said so.
func (c *haCluster) firstLeader(cands []*haProc, since time.Time, timeout time.Duration) (*haProc, time.Duration) {
	c.t.Helper()
	deadline := since.Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		for _, p := range cands {
			st, err := c.status(p, time.Second)
			if err != nil {
				last = err
				continue
			}
			if st.Leader {
				return p, time.Since(since)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("none of the standbys led within %v (last error: %v)", timeout, last)
	return nil, 0
}

// The tick job and its output.

// registerTickJob registers app "ha" (once) and a TRANSIENT job firing
// every second with haShards shards, whose script appends one line per run
// to a file of its own; it returns the file's path. Each line is
// "fireUnixMs shard startUnixNs attempt taskID".
func (c *haCluster) registerTickJob(name string) string {
	c.t.Helper()
	out := filepath.Join(c.outDir, name+".fires")
	if _, err := os.Stat(filepath.Join(c.outDir, ".app")); err != nil {
		c.write("/api/app", map[string]any{"appName": "ha", "bootstrapScript": "true"})
		_ = os.WriteFile(filepath.Join(c.outDir, ".app"), nil, 0o640)
	}
	c.write("/api/job/register", map[string]any{
		"jobName":            name,
		"appName":            "ha",
		"cron":               "* * * * * ?",
		"shardingTotalCount": haShards,
		"jobExecutionType":   "TRANSIENT",
		"misfire":            true,
		"failover":           true,
		"concurrencyPolicy":  "ALLOW",
		"cpuCount":           0.1,
		"memoryMB":           16,
		"scriptCommandLine":  haTickScript(out),
	})
	return out
}

// haTickScript is the tick job's command: one line per run appended to out.
func haTickScript(out string) string {
	return `echo "$HASCHED_FIRE_TIME_UNIX_MS $HASCHED_SHARDING_ITEM $(date +%s%N) $HASCHED_ATTEMPT $HASCHED_TASK_ID" >> '` + out + `'`
}

// haFire is one line of a tick job's output: one run of one shard.
type haFire struct {
	fireMs  int64
	shard   int
	startNs int64
	attempt int
	taskID  string
}

// haReadFires reads a tick job's output; a last line still being written
// is left out.
func haReadFires(path string) ([]haFire, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		b = nil
	}
	var out []haFire
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 5 {
			return nil, fmt.Errorf("%s: malformed line %q", path, sc.Text())
		}
		var r haFire
		var errs [4]error
		r.fireMs, errs[0] = strconv.ParseInt(f[0], 10, 64)
		r.shard, errs[1] = strconv.Atoi(f[1])
		r.startNs, errs[2] = strconv.ParseInt(f[2], 10, 64)
		r.attempt, errs[3] = strconv.Atoi(f[3])
		if err := errors.Join(errs[:]...); err != nil {
			return nil, fmt.Errorf("%s: malformed line %q: %v", path, sc.Text(), err)
		}
		r.taskID = f[4]
		out = append(out, r)
	}
	return out, sc.Err()
}

// waitFires waits until every shard has run at least n fires at or after
// fromMs.
func (c *haCluster) waitFires(path string, fromMs int64, n int, timeout time.Duration) {
	c.t.Helper()
	haWaitRuns(c.t, "fires run", func() ([]haFire, error) { return haReadFires(path) }, fromMs, n, timeout)
}

// haWaitRuns is waitFires on the runs read returns.
func haWaitRuns(t testing.TB, what string, read func() ([]haFire, error), fromMs int64, n int, timeout time.Duration) {
	t.Helper()
	haEventually(t, what, timeout, func() error {
		fires, err := read()
		if err != nil {
			return err
		}
		count := make([]int, haShards)
		for _, f := range fires {
			if f.fireMs >= fromMs && f.shard >= 0 && f.shard < haShards {
				count[f.shard]++
			}
		}
		for s, k := range count {
			if k < n {
				return fmt.Errorf("shard %d has run %d fires, want %d", s, k, n)
			}
		}
		return nil
	})
}

// checkExactlyOnce waits until every fire of the every-second cron from the
// first one run up to cutoffMs has run on every shard, and fails the test
// if any ran twice (before or after the cut-off), if a run has a fire time
// off the cron, or if fires are still missing at the timeout.
func (c *haCluster) checkExactlyOnce(path string, cutoffMs int64, timeout time.Duration) {
	c.t.Helper()
	haCheckExactlyOnce(c.t, func() ([]haFire, error) { return haReadFires(path) }, cutoffMs, timeout)
}

// haCheckExactlyOnce is checkExactlyOnce on the runs read returns.
func haCheckExactlyOnce(t testing.TB, read func() ([]haFire, error), cutoffMs int64, timeout time.Duration) {
	t.Helper()
	var fires []haFire
	haEventually(t, "every fire up to the cut-off ran exactly once", timeout, func() error {
		var err error
		if fires, err = read(); err != nil {
			return err
		}
		missing, wrong := haExactlyOnce(fires, haShards, cutoffMs)
		if wrong != nil {
			return wait.Stop(wrong)
		}
		return missing
	})
	// Runs of fires due after the cut-off still run: look again for late
	// duplicates once more have.
	time.Sleep(2 * time.Second)
	fires, err := read()
	if err != nil {
		t.Fatal(err)
	}
	if _, wrong := haExactlyOnce(fires, haShards, cutoffMs); wrong != nil {
		t.Error(wrong)
	}
	t.Logf("%s", haFireSummary(fires, cutoffMs))
}

// haExactlyOnce compares the runs with the every-second cron's fire times
// from the first run's up to cutoffMs, per shard. missing lists the fires
// not run (yet); wrong reports what can never become right: duplicates,
// fire times off the cron or before the first, unknown shards.
func haExactlyOnce(fires []haFire, shards int, cutoffMs int64) (missing, wrong error) {
	if len(fires) == 0 {
		return errors.New("no fire has run"), nil
	}
	first := fires[0].fireMs
	for _, f := range fires {
		first = min(first, f.fireMs)
	}
	var wrongs []string
	runs := make([]map[int64][]haFire, shards)
	for s := range runs {
		runs[s] = map[int64][]haFire{}
	}
	for _, f := range fires {
		if f.shard < 0 || f.shard >= shards {
			wrongs = append(wrongs, fmt.Sprintf("run of unknown shard %d (task %s)", f.shard, f.taskID))
			continue
		}
		if f.fireMs%1000 != 0 {
			wrongs = append(wrongs, fmt.Sprintf("fire time %d is not on the cron (task %s)", f.fireMs, f.taskID))
		}
		runs[f.shard][f.fireMs] = append(runs[f.shard][f.fireMs], f)
	}
	var missed []string
	for s := range shards {
		var gaps []int64
		for ms := first; ms <= cutoffMs; ms += 1000 {
			if len(runs[s][ms]) == 0 {
				gaps = append(gaps, ms)
			}
		}
		if len(gaps) > 0 {
			missed = append(missed, fmt.Sprintf("shard %d misses %d fire(s): %s", s, len(gaps), haMsList(gaps)))
		}
		for _, ms := range slices.Sorted(maps.Keys(runs[s])) {
			if rs := runs[s][ms]; len(rs) > 1 {
				var ids []string
				for _, r := range rs {
					ids = append(ids, r.taskID)
				}
				wrongs = append(wrongs, fmt.Sprintf("shard %d ran fire %s %d times: %s", s, haMsTime(ms), len(rs), strings.Join(ids, ", ")))
			}
		}
	}
	if len(missed) > 0 {
		missing = fmt.Errorf("fires from %s to %s: %s", haMsTime(first), haMsTime(cutoffMs), strings.Join(missed, "; "))
	}
	if len(wrongs) > 0 {
		wrong = fmt.Errorf("fires from %s: %s", haMsTime(first), strings.Join(wrongs, "; "))
	}
	return missing, wrong
}

func haMsTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("15:04:05.000")
}

func haMsList(ms []int64) string {
	var parts []string
	for i, m := range ms {
		if i == 20 {
			parts = append(parts, fmt.Sprintf("... (%d more)", len(ms)-i))
			break
		}
		parts = append(parts, haMsTime(m))
	}
	return strings.Join(parts, " ")
}

// haFireSummary describes the runs: how many, how many were relaunches,
// and how late they started after their fire time.
func haFireSummary(fires []haFire, cutoffMs int64) string {
	var relaunched, upTo int
	var lat []time.Duration
	for _, f := range fires {
		if f.attempt > 0 {
			relaunched++
		}
		if f.fireMs <= cutoffMs {
			upTo++
		}
		lat = append(lat, time.Duration(f.startNs-f.fireMs*int64(time.Millisecond)))
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(time.Millisecond)
	}
	return fmt.Sprintf("%d runs (%d up to the cut-off), %d relaunches; start after fire: p50 %v, p99 %v, max %v",
		len(fires), upTo, relaunched, q(0.50), q(0.99), q(1))
}

// Polling.

// haEventually polls f until it returns nil; it fails the test at the
// timeout, or at once if f returns an error made by wait.Stop.
func haEventually(t testing.TB, what string, timeout time.Duration, f func() error) {
	t.Helper()
	wait.Poll{Timeout: timeout, Interval: 100 * time.Millisecond}.NoError(t, what, f)
}

// A coordination container on a fixed host port.

// haContainer is a coordination container whose client port is bound to a
// host port chosen in advance, so that its address (and the processes'
// --coord URL) survives a stop and start: Docker would otherwise map a new
// port on start.
type haContainer struct {
	ctr  testcontainers.Container
	port string // the client port in the container, "2379/tcp"
	addr string // its host address, 127.0.0.1:<pinned port>
}

func haStartPinned(t testing.TB, image, port string, opts ...testcontainers.ContainerCustomizer) *haContainer {
	t.Helper()
	pinned := strconv.Itoa(haFreePort(t))
	opts = append(opts,
		testcontainers.WithExposedPorts(port),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = network.PortMap{
				network.MustParsePort(port): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: pinned}},
			}
		}))
	ctr := startContainer(t, image, opts...)
	hc := &haContainer{ctr: ctr, port: port, addr: hostPort(t, ctr, port)}
	if want := "127.0.0.1:" + pinned; hc.addr != want {
		t.Fatalf("container %s is at %s, not at the pinned %s", image, hc.addr, want)
	}
	return hc
}

func haStartPinnedEtcd(t testing.TB) *haContainer {
	return haStartPinned(t, imageFromEnv(etcdImageEnv, defaultEtcdImage), "2379/tcp",
		testcontainers.WithCmd("etcd",
			"--name", "etcd0",
			"--data-dir", "/var/lib/etcd/data",
			"--listen-client-urls", "http://0.0.0.0:2379",
			"--advertise-client-urls", "http://127.0.0.1:2379"),
		testcontainers.WithWaitStrategyAndDeadline(time.Minute, tcwait.ForLog("ready to serve client requests")),
	)
}

func haStartPinnedZooKeeper(t testing.TB) *haContainer {
	return haStartPinned(t, imageFromEnv(zkImageEnv, defaultZKImage), "2181/tcp",
		testcontainers.WithEnv(map[string]string{
			"ZOO_TICK_TIME":              fmt.Sprint(zkTickTime.Milliseconds()),
			"ZOO_4LW_COMMANDS_WHITELIST": "srvr,ruok,mntr,stat",
			"ZOO_ADMINSERVER_ENABLED":    "false",
		}),
		testcontainers.WithWaitStrategyAndDeadline(2*time.Minute, tcwait.ForLog("ZooKeeper audit is disabled.")),
	)
}

// stop stops the container, keeping its file system (its data).
func (hc *haContainer) stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	timeout := 10 * time.Second
	if err := hc.ctr.Stop(ctx, &timeout); err != nil {
		t.Fatalf("stop the coordination container: %v", err)
	}
}

// start starts the stopped container again; it keeps its host port. (The
// wait strategy finds the log line of the first start at once: callers
// wait for the service themselves.)
func (hc *haContainer) start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := hc.ctr.Start(ctx); err != nil {
		t.Fatalf("start the coordination container again: %v", err)
	}
	if addr := hostPort(t, hc.ctr, hc.port); addr != hc.addr {
		t.Fatalf("the coordination container came back at %s, not at %s", addr, hc.addr)
	}
}

// haWaitCoord waits until a session on url can read.
func haWaitCoord(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	haEventually(t, "the coordination service serves", timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := coord.Open(ctx, url)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Children(ctx, "/config"); err != nil && !errors.Is(err, coord.ErrNotFound) {
			return err
		}
		return nil
	})
}
