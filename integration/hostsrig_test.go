package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	mobynet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	tclog "github.com/testcontainers/testcontainers-go/log"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	tcwait "github.com/testcontainers/testcontainers-go/wait"

	"github.com/hasched/hasched/internal/wait"
)

// The several-hosts rig: `hasched serve` processes that are hosts of their
// own — each a container of the hasched/hasched-test image (images/
// build-hasched.sh: this checkout's hasched on a Debian root fs), with its
// own file system, on a private Docker network with the coordination
// container (etcd, or ZooKeeper). The test drives them through the REST
// API, published on 127.0.0.1, and hurts them as hosts get hurt: the
// hasched process killed while the host lives (a shell loop in the
// container starts it again half a second later, as a service manager would),
// the whole container killed, cut off the network, frozen (docker pause),
// SIGTERMed (drained). The one thing the hosts share is the ledger
// directory (ledger_test.go), where their tasks say what they did.
//
// Each host is on two networks: the private one, where the coordination
// service is, and Docker's default bridge, which only carries the
// published API port. Cutting a host off the private network so cuts it
// off the coordination service and the other hosts, and the test can
// still ask it what it thinks.

const (
	hostsImageEnv     = "HASCHED_TEST_IMAGE"
	defaultHostsImage = "hasched/hasched-test"
	// hostsLogsEnv, if set, makes passing tests print the hosts' logs.
	hostsLogsEnv = "HASCHED_HOSTS_LOGS"
	// hostsAPIPort is the port every host's API listens on.
	hostsAPIPort = "8899/tcp"
	// hostsAdmin is the API account (a network listener needs one).
	hostsAdmin = "admin"
	// hostsDrainTimeout is the hosts' --drain-timeout.
	hostsDrainTimeout = 20 * time.Second
)

// hostsBackend is one coordination backend of the rig.
type hostsBackend struct {
	name           string
	sessionTimeout time.Duration
	// start runs the coordination container on nw, named by its alias.
	start func(t testing.TB, nw *testcontainers.DockerNetwork) testcontainers.Container
	// url is the hosts' --coord for namespace ns.
	url func(ns string) string
}

var hostsBackends = []hostsBackend{
	{
		name:           "etcd",
		sessionTimeout: 3 * time.Second,
		start:          hostsStartEtcd,
		url:            func(ns string) string { return "etcd://etcd:2379/" + ns + "?ttl=3s" },
	},
	{
		name:           "zk",
		sessionTimeout: 4 * time.Second,
		start:          hostsStartZooKeeper,
		url:            func(ns string) string { return "zk://zk:2181/" + ns + "?session-timeout=4s" },
	},
}

func hostsStartEtcd(t testing.TB, nw *testcontainers.DockerNetwork) testcontainers.Container {
	return startContainer(t, imageFromEnv(etcdImageEnv, defaultEtcdImage),
		testcontainers.WithCmd("etcd",
			"--name", "etcd0",
			"--data-dir", "/var/lib/etcd/data",
			"--listen-client-urls", "http://0.0.0.0:2379",
			"--advertise-client-urls", "http://etcd:2379"),
		tcnetwork.WithNetwork([]string{"etcd"}, nw),
		testcontainers.WithWaitStrategyAndDeadline(time.Minute, tcwait.ForLog("ready to serve client requests")),
	)
}

func hostsStartZooKeeper(t testing.TB, nw *testcontainers.DockerNetwork) testcontainers.Container {
	return startContainer(t, imageFromEnv(zkImageEnv, defaultZKImage),
		testcontainers.WithEnv(map[string]string{
			"ZOO_TICK_TIME":              fmt.Sprint(zkTickTime.Milliseconds()),
			"ZOO_4LW_COMMANDS_WHITELIST": "srvr,ruok,mntr,stat",
			"ZOO_ADMINSERVER_ENABLED":    "false",
		}),
		tcnetwork.WithNetwork([]string{"zk"}, nw),
		testcontainers.WithWaitStrategyAndDeadline(2*time.Minute, tcwait.ForLog("ZooKeeper audit is disabled.")),
	)
}

// hostsEnv is one backend's network and coordination container, shared by
// the scenarios (each runs in a namespace of its own).
type hostsEnv struct {
	b      hostsBackend
	nw     *testcontainers.DockerNetwork
	coord  testcontainers.Container
	docker *testcontainers.DockerClient
	image  string
}

func newHostsEnv(t testing.TB, b hostsBackend) *hostsEnv {
	t.Helper()
	image := imageFromEnv(hostsImageEnv, defaultHostsImage)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	docker, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		t.Fatalf("connect to Docker: %v", err)
	}
	t.Cleanup(func() { _ = docker.Close() })
	img, err := docker.ImageInspect(ctx, image)
	if err != nil {
		t.Fatalf("image %s (build it with `make hasched-image`, or set %s): %v", image, hostsImageEnv, err)
	}
	if img.Config != nil {
		t.Logf("hosts run %s, built from commit %s", image, img.Config.Labels["dev.hasched.commit"])
	}
	nw := newNetwork(t)
	return &hostsEnv{b: b, nw: nw, coord: b.start(t, nw), docker: docker, image: image}
}

// hostState is what the rig last did to a host.
type hostState int

const (
	hostUp hostState = iota
	hostPaused
	hostCut
	hostDown // container killed
)

func (s hostState) String() string {
	return [...]string{"up", "paused", "cut off", "down"}[s]
}

// hostsRig is one scenario's hosts, on one namespace, with one ledger.
type hostsRig struct {
	t        testing.TB
	env      *hostsEnv
	ns       string
	ledger   string
	password string
	http     *http.Client
	hosts    []*rigHost
	// serveArgs are the flags a host's serve gets beyond the rig's own.
	serveArgs func(name string) []string
	began     time.Time

	mu       sync.Mutex
	freezes  []ledgerFreeze
	timeline []string
}

// rigHost is one host container.
type rigHost struct {
	r    *hostsRig
	name string
	ctr  testcontainers.Container

	mu    sync.Mutex
	api   string // 127.0.0.1:<port>; changes when the container restarts
	state hostState
}

// hostLoop is a host's command: hasched serve with the arguments given,
// started again half a second after it exits (a service manager's restart),
// unless /run/hasched.hold exists. It leaves the serve process's pid in
// /run/hasched.pid and, once it exits, its status in /run/hasched.exit.
const hostLoop = `rm -f /run/hasched.hold
while :; do
  while [ -e /run/hasched.hold ]; do sleep 0.1; done
  rm -f /run/hasched.exit
  echo "=== hasched serve starts at $(date -u +%H:%M:%S.%N)"
  hasched serve "$@" &
  echo $! >/run/hasched.pid
  wait $!
  rc=$?
  echo $rc >/run/hasched.exit
  echo "=== hasched serve exited ($rc) at $(date -u +%H:%M:%S.%N)"
  sleep 0.5
done`

// newHostsRig starts n hosts on a fresh namespace of env and waits until
// every one answers and one leads.
func newHostsRig(t testing.TB, env *hostsEnv, n int, serveArgs func(name string) []string) *hostsRig {
	t.Helper()
	pw := make([]byte, 12)
	_, _ = rand.Read(pw)
	r := &hostsRig{
		t:        t,
		env:      env,
		ns:       fmt.Sprintf("hosts-%d", time.Now().UnixNano()),
		ledger:   t.TempDir(),
		password: hex.EncodeToString(pw),
		// No keep-alive: hosts die under the tests.
		http:      &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		serveArgs: serveArgs,
		began:     time.Now(),
	}
	// The hosts write as root into the ledger; the directory must be
	// theirs to write whatever user runs the test.
	if err := os.Chmod(r.ledger, 0o777); err != nil {
		t.Fatal(err)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("host%d", i+1)
	}
	r.hosts = make([]*rigHost, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { r.hosts[i], errs[i] = r.runHost(name) })
	}
	wg.Wait()
	for _, h := range r.hosts {
		if h != nil {
			t.Cleanup(func() { h.remove() })
		}
	}
	// Registered after the removals: runs before them, while the logs
	// are still there.
	t.Cleanup(r.dumpLogs)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start %s from %s (build it with `make hasched-image`, or set %s): %v", names[i], env.image, hostsImageEnv, err)
		}
	}
	for _, h := range r.hosts {
		r.waitAnswers(h, time.Minute)
	}
	r.waitLeader(time.Minute)
	// Every host's worker registers before a scenario registers its jobs:
	// a DAEMON job launched while one was still starting would put no
	// shard on it, and a fault scenario choosing that host as its victim
	// would find only tasks that end on their own there, nothing for the
	// leader to relaunch.
	r.waitWorkers(n, time.Minute)
	r.logf("%d hosts up, one leads, every worker registered, %v after the rig began", n, time.Since(r.began).Round(time.Millisecond))
	return r
}

// waitWorkers waits until the workers of n hosts are listed, not draining.
func (r *hostsRig) waitWorkers(n int, timeout time.Duration) {
	r.t.Helper()
	haEventually(r.t, fmt.Sprintf("%d workers registered", n), timeout, func() error {
		ws, err := r.workers()
		if err != nil {
			return err
		}
		up := map[string]bool{}
		for _, w := range ws {
			if !w.Draining {
				up[w.Name] = true
			}
		}
		if len(up) < n {
			return fmt.Errorf("%d of %d workers registered", len(up), n)
		}
		return nil
	})
}

// serveCmd is the host's command line.
func (r *hostsRig) serveCmd(name string) []string {
	args := []string{"sh", "-c", hostLoop, "hasched-host",
		"--coord", r.env.b.url(r.ns),
		"--listen", "0.0.0.0:8899",
		"--advertise", name + ":8899",
		"--data-dir", "/var/lib/hasched",
		"--work-dir", "/var/lib/hasched/work",
		"--auth-user", hostsAdmin,
		// The hosts' network is the test's alone; standbys forward
		// writes to the leader over it.
		"--" + flagInsecureForwardingName,
		"--log-level", "debug",
	}
	return append(args, r.serveArgs(name)...)
}

// flagInsecureForwardingName is serve's --insecure-plain-http-forwarding.
const flagInsecureForwardingName = "insecure-plain-http-forwarding"

// hostsClusterArgs are the serve flags of a host that runs tasks of the
// cluster executor (the default of issue 10's serve).
func hostsClusterArgs(name string) []string {
	return []string{
		"--executor", "cluster",
		"--worker-name", name,
		"--worker-cpus", "4",
		"--worker-memory-mb", "4096",
		"--drain-timeout", hostsDrainTimeout.String(),
	}
}

func (r *hostsRig) runHost(name string) (*rigHost, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := r.serveCmd(name)
	// A fixed host port: Docker maps a new one when the container starts
	// again or leaves a network, and the test must keep reaching it.
	pinned := strconv.Itoa(haFreePort(r.t))
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithLogger(tclog.TestLogger(r.t)),
		testcontainers.WithLabels(testLabel),
		testcontainers.WithCmd(cmd...),
		testcontainers.WithEnv(map[string]string{"HASCHED_AUTH_PASSWORD": r.password}),
		tcnetwork.WithNetwork([]string{name}, r.env.nw),
		tcnetwork.WithBridgeNetwork(),
		testcontainers.WithExposedPorts(hostsAPIPort),
		testcontainers.WithConfigModifier(func(c *container.Config) { c.Hostname = name }),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.Binds = append(hc.Binds, r.ledger+":/ledger")
			hc.PortBindings = mobynet.PortMap{
				mobynet.MustParsePort(hostsAPIPort): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: pinned}},
			}
		}),
		testcontainers.WithWaitStrategyAndDeadline(time.Minute, tcwait.ForLog("=== hasched serve starts")),
	}
	c, err := testcontainers.Run(ctx, r.env.image, opts...)
	if c == nil {
		return nil, err
	}
	h := &rigHost{r: r, name: name, ctr: c, api: "127.0.0.1:" + pinned}
	if err != nil {
		return h, err
	}
	return h, h.checkAPIPort(ctx)
}

// checkAPIPort checks that the API is still published on its pinned port.
func (h *rigHost) checkAPIPort(ctx context.Context) error {
	addr, err := mappedAddr(ctx, h.ctr, hostsAPIPort)
	if err != nil {
		return fmt.Errorf("%s: the API port: %w", h.name, err)
	}
	if want := h.addr(); addr != want {
		return fmt.Errorf("%s: the API is published at %s, not at the pinned %s", h.name, addr, want)
	}
	return nil
}

func (h *rigHost) addr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.api
}

func (h *rigHost) getState() hostState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state
}

func (h *rigHost) setState(s hostState) {
	h.mu.Lock()
	h.state = s
	h.mu.Unlock()
}

// remove removes the container (thawing it first: a frozen container
// does not stop).
func (h *rigHost) remove() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = h.r.env.docker.ContainerUnpause(ctx, h.ctr.GetContainerID(), client.ContainerUnpauseOptions{})
	if err := h.ctr.Terminate(ctx, testcontainers.StopTimeout(0)); err != nil {
		h.r.t.Errorf("remove %s: %v", h.name, err)
	}
}

// logf logs with the time since the rig began, and keeps the line for the
// timeline a failing test prints.
func (r *hostsRig) logf(format string, args ...any) {
	r.t.Helper()
	line := fmt.Sprintf("[%s +%6.2fs] ", time.Now().UTC().Format("15:04:05.000"), time.Since(r.began).Seconds()) + fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.timeline = append(r.timeline, line)
	r.mu.Unlock()
	r.t.Log(line)
}

// dumpLogs prints every host's log if the test failed (or hostsLogsEnv
// is set).
func (r *hostsRig) dumpLogs() {
	if !r.t.Failed() && os.Getenv(hostsLogsEnv) == "" {
		return
	}
	for _, h := range r.hosts {
		if h == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		rc, err := h.ctr.Logs(ctx)
		if err != nil {
			r.t.Logf("--- log of %s: %v", h.name, err)
			cancel()
			continue
		}
		b, _ := io.ReadAll(rc)
		_ = rc.Close()
		cancel()
		const max = 192 << 10
		if len(b) > max {
			b = append([]byte(fmt.Sprintf("[... %d bytes before ...]\n", len(b)-max)), b[len(b)-max:]...)
		}
		r.t.Logf("--- log of %s ---\n%s", h.name, b)
	}
}

// exec runs a shell command in the host; it fails the test if the command
// cannot run (the container is paused or down), and returns its exit code
// and output.
func (h *rigHost) exec(script string) (int, string) {
	h.r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, out, err := h.ctr.Exec(ctx, []string{"sh", "-c", script}, tcexec.Multiplexed())
	if err != nil {
		h.r.t.Fatalf("exec in %s: %v", h.name, err)
	}
	b, _ := io.ReadAll(out)
	return code, string(b)
}

// Host operations.

// killProcess kills the host's hasched process with SIGKILL; the host
// lives, and its shell loop starts hasched again half a second later.
func (h *rigHost) killProcess() {
	h.r.t.Helper()
	if code, out := h.exec(`kill -9 "$(cat /run/hasched.pid)"`); code != 0 {
		h.r.t.Fatalf("kill -9 hasched in %s: exit %d: %s", h.name, code, out)
	}
	h.r.logf("%s: hasched process killed (kill -9); the host lives", h.name)
}

// terminate sends SIGTERM to the host's hasched process and keeps the
// loop from starting it again until release.
func (h *rigHost) terminate() {
	h.r.t.Helper()
	if code, out := h.exec(`touch /run/hasched.hold && kill -TERM "$(cat /run/hasched.pid)"`); code != 0 {
		h.r.t.Fatalf("SIGTERM hasched in %s: exit %d: %s", h.name, code, out)
	}
	h.r.logf("%s: SIGTERM to hasched (it stays down until released)", h.name)
}

// waitServeExit waits until the terminated hasched process exits and
// returns its exit status.
func (h *rigHost) waitServeExit(timeout time.Duration) int {
	h.r.t.Helper()
	var code int
	haEventually(h.r.t, h.name+"'s hasched exits", timeout, func() error {
		rc, out := h.exec(`cat /run/hasched.exit 2>/dev/null`)
		if rc != 0 {
			return errors.New("still running")
		}
		var err error
		code, err = strconv.Atoi(strings.TrimSpace(out))
		return err
	})
	return code
}

// release lets the loop start hasched again after terminate.
func (h *rigHost) release() {
	h.r.t.Helper()
	h.exec(`rm -f /run/hasched.hold`)
	h.r.logf("%s: released; hasched starts again", h.name)
}

// killHost kills the whole container (every process in it, tasks too).
func (h *rigHost) killHost() {
	r := h.r
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := r.env.docker.ContainerKill(ctx, h.ctr.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		r.t.Fatalf("kill %s: %v", h.name, err)
	}
	h.setState(hostDown)
	r.logf("%s: container killed", h.name)
	wait.Poll{Timeout: time.Minute, Interval: 50 * time.Millisecond}.NoError(r.t, h.name+" stops", func() error {
		st, err := h.ctr.State(ctx)
		if err != nil {
			return err
		}
		if st.Running {
			return errors.New("still running")
		}
		return nil
	})
}

// startHost starts a killed container again (same file system, same
// name) and waits until its API answers.
func (h *rigHost) startHost() {
	r := h.r
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := h.ctr.Start(ctx); err != nil {
		r.t.Fatalf("start %s again: %v", h.name, err)
	}
	if err := h.checkAPIPort(ctx); err != nil {
		r.t.Fatal(err)
	}
	h.setState(hostUp)
	r.logf("%s: container started again", h.name)
	r.waitAnswers(h, time.Minute)
}

// cut disconnects the host from the private network: it reaches neither
// the coordination service nor the other hosts (its API stays reachable
// from the test over the default bridge).
func (h *rigHost) cut() {
	r := h.r
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := r.env.docker.NetworkDisconnect(ctx, r.env.nw.ID, client.NetworkDisconnectOptions{Container: h.ctr.GetContainerID(), Force: true}); err != nil {
		r.t.Fatalf("cut %s off: %v", h.name, err)
	}
	h.setState(hostCut)
	r.logf("%s: cut off the network", h.name)
}

// heal connects a cut host again, under its name.
func (h *rigHost) heal() {
	r := h.r
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := r.env.docker.NetworkConnect(ctx, r.env.nw.ID, client.NetworkConnectOptions{
		Container:      h.ctr.GetContainerID(),
		EndpointConfig: &mobynet.EndpointSettings{Aliases: []string{h.name}},
	}); err != nil {
		r.t.Fatalf("connect %s again: %v", h.name, err)
	}
	h.setState(hostUp)
	r.logf("%s: back on the network", h.name)
}

// hostsPauseTries bounds pause's attempts at freezing a host.
const hostsPauseTries = 10

// pause freezes every process of the host (docker pause).
func (h *rigHost) pause() {
	r := h.r
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The runtime's freeze fails now and then on a loaded machine while
	// the host forks (runc gives up with "unable to freeze" and thaws
	// what it froze): a failure of the fault, not of hasched, so it is
	// tried again.
	for try := 1; ; try++ {
		_, err := r.env.docker.ContainerPause(ctx, h.ctr.GetContainerID(), client.ContainerPauseOptions{})
		if err == nil {
			break
		}
		if try == hostsPauseTries || !strings.Contains(err.Error(), "unable to freeze") {
			r.t.Fatalf("pause %s (try %d): %v", h.name, try, err)
		}
		r.logf("%s: the runtime could not freeze it (%v); pausing again", h.name, err)
		time.Sleep(200 * time.Millisecond)
	}
	// Taken once frozen: runs started before it lived through the freeze.
	at := time.Now().UnixNano()
	r.mu.Lock()
	r.freezes = append(r.freezes, ledgerFreeze{Host: h.name, Paused: at})
	r.mu.Unlock()
	h.setState(hostPaused)
	r.logf("%s: paused", h.name)
}

// unpause thaws the host; it returns the moment the thaw began.
func (h *rigHost) unpause() time.Time {
	r := h.r
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Taken before the thaw: every line written after it is after the
	// thaw.
	at := time.Now()
	if _, err := r.env.docker.ContainerUnpause(ctx, h.ctr.GetContainerID(), client.ContainerUnpauseOptions{}); err != nil {
		r.t.Fatalf("unpause %s: %v", h.name, err)
	}
	r.mu.Lock()
	for i := len(r.freezes) - 1; i >= 0; i-- {
		if f := &r.freezes[i]; f.Host == h.name && f.Thawed == 0 {
			f.Thawed = at.UnixNano()
			break
		}
	}
	r.mu.Unlock()
	h.setState(hostUp)
	r.logf("%s: unpaused", h.name)
	return at
}

// frozen is the freezes so far; one still on ends now.
func (r *hostsRig) frozen() []ledgerFreeze {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.freezes)
	for i := range out {
		if out[i].Thawed == 0 {
			out[i].Thawed = time.Now().UnixNano()
		}
	}
	return out
}

// restartCoord stops the coordination container for down, then starts it
// again with its data, on the same name.
func (r *hostsRig) restartCoord(down time.Duration) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	timeout := 5 * time.Second
	if err := r.env.coord.Stop(ctx, &timeout); err != nil {
		r.t.Fatalf("stop the coordination container: %v", err)
	}
	r.logf("coordination service stopped; down for %v", down)
	time.Sleep(down)
	if err := r.env.coord.Start(ctx); err != nil {
		r.t.Fatalf("start the coordination container again: %v", err)
	}
	r.logf("coordination service started again")
}

// REST API.

// apiWorker is one entry of GET /api/workers.
type apiWorker struct {
	Name        string `json:"name"`
	Incarnation string `json:"incarnation"`
	Draining    bool   `json:"draining"`
	Tasks       []struct {
		TaskID string `json:"taskId"`
		Job    string `json:"jobName"`
		Shard  int    `json:"shardingItem"`
		State  string `json:"state"`
	} `json:"tasks"`
}

// apiTask is one entry of GET /api/job/tasks/running.
type apiTask struct {
	TaskID string `json:"taskId"`
	Job    string `json:"jobName"`
	State  string `json:"state"`
	Host   string `json:"host"`
}

// get GETs path from h into v (nil: discard), within timeout.
func (r *hostsRig) get(h *rigHost, path string, timeout time.Duration, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.addr()+path, nil)
	if err != nil {
		return err
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s on %s: %s: %s", path, h.name, resp.Status, bytes.TrimSpace(body))
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(body, v)
}

// reachable are the hosts the test can ask: not down, not paused.
func (r *hostsRig) reachable() []*rigHost {
	var out []*rigHost
	for _, h := range r.hosts {
		if s := h.getState(); s == hostUp || s == hostCut {
			out = append(out, h)
		}
	}
	return out
}

// byAddress is the host advertised at addr ("hostN:8899"), or nil.
func (r *hostsRig) byAddress(addr string) *rigHost {
	name, _, _ := strings.Cut(addr, ":")
	for _, h := range r.hosts {
		if h.name == name {
			return h
		}
	}
	return nil
}

// currentLeader is a host on the network that says it leads, or nil.
func (r *hostsRig) currentLeader() *rigHost {
	for _, h := range r.reachable() {
		if h.getState() != hostUp {
			continue
		}
		var st haStatus
		if err := r.get(h, "/api/leader", 2*time.Second, &st); err == nil && st.Leader {
			return h
		}
	}
	return nil
}

// waitAnswers waits until h's API answers.
func (r *hostsRig) waitAnswers(h *rigHost, timeout time.Duration) {
	r.t.Helper()
	haEventually(r.t, h.name+" answers", timeout, func() error {
		return r.get(h, "/healthz", 2*time.Second, nil)
	})
}

// waitLeader waits until exactly one host on the network leads and every
// host on the network names it.
func (r *hostsRig) waitLeader(timeout time.Duration) *rigHost {
	r.t.Helper()
	var leader *rigHost
	haEventually(r.t, "one leader that all hosts follow", timeout, func() error {
		var up []*rigHost
		for _, h := range r.reachable() {
			if h.getState() == hostUp {
				up = append(up, h)
			}
		}
		var err error
		leader, err = agreedLeader(up, func(h *rigHost) string { return h.name },
			func(h *rigHost) (st haStatus, err error) {
				err = r.get(h, "/api/leader", 2*time.Second, &st)
				return st, err
			},
			func(st haStatus) *rigHost { return r.byAddress(st.LeaderAddress) })
		return err
	})
	return leader
}

// workers is GET /api/workers from any host on the network.
func (r *hostsRig) workers() ([]apiWorker, error) {
	var last error
	for _, h := range r.reachable() {
		if h.getState() != hostUp {
			continue
		}
		var ws []apiWorker
		if last = r.get(h, "/api/workers", 5*time.Second, &ws); last == nil {
			return ws, nil
		}
	}
	return nil, fmt.Errorf("no host lists the workers: %v", last)
}

// running is GET /api/job/tasks/running from the leader.
func (r *hostsRig) running() ([]apiTask, error) {
	h := r.currentLeader()
	if h == nil {
		return nil, errors.New("no leader")
	}
	var ts []apiTask
	return ts, r.get(h, "/api/job/tasks/running", 5*time.Second, &ts)
}

// write POSTs (or PUTs) a JSON body to path on the leader, as the admin,
// retrying while there is none or it cannot be reached; a 409 after a
// retry means an earlier attempt went through.
func (r *hostsRig) write(method, path string, body any) {
	r.t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for attempt := 0; ; attempt++ {
		err := r.writeOnce(method, path, data)
		var se *haStatusError
		switch {
		case err == nil:
			return
		case errors.As(err, &se) && se.code == http.StatusConflict && attempt > 0:
			return
		case errors.As(err, &se) && se.code != http.StatusServiceUnavailable && se.code != http.StatusBadGateway:
			r.t.Fatalf("%s %s: %v", method, path, err)
		case time.Now().After(deadline):
			r.t.Fatalf("%s %s: no success within 2m: %v", method, path, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (r *hostsRig) writeOnce(method, path string, data []byte) error {
	h := r.currentLeader()
	if h == nil {
		return &haStatusError{code: http.StatusServiceUnavailable, msg: "no host says it leads"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+h.addr()+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(hostsAdmin, r.password)
	resp, err := r.http.Do(req)
	if err != nil {
		return &haStatusError{code: http.StatusServiceUnavailable, msg: err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return &haStatusError{code: resp.StatusCode, msg: string(bytes.TrimSpace(body))}
	}
	return nil
}

// Jobs.

// rigJob is a job the rig registers, and what the ledger analysis needs
// to know of it.
type rigJob struct {
	name   string
	shards int
	daemon bool
	// beats: a TRANSIENT task's length in ledger beats.
	beats int
	// registered: when the registration returned (its first fire follows).
	registered time.Time
	off        [][2]int64
}

// registerApp registers the app every job of the rig runs in.
func (r *hostsRig) registerApp() {
	r.t.Helper()
	r.write(http.MethodPost, "/api/app", map[string]any{"appName": "rig", "bootstrapScript": "true", "cpuCount": 0.1, "memoryMB": 16})
}

// registerEverySecond registers a TRANSIENT job firing every second with
// misfire (every missed fire runs late) and failover (a lost task runs
// again as its next attempt), each task writing the ledger for beats
// beats.
func (r *hostsRig) registerEverySecond(name string, shards, beats int) *rigJob {
	r.t.Helper()
	r.write(http.MethodPost, "/api/job/register", map[string]any{
		"jobName":            name,
		"appName":            "rig",
		"cron":               "* * * * * ?",
		"shardingTotalCount": shards,
		"jobExecutionType":   "TRANSIENT",
		"misfire":            true,
		"failover":           true,
		"concurrencyPolicy":  "ALLOW",
		"cpuCount":           0.1,
		"memoryMB":           16,
		"scriptCommandLine":  ledgerScript("/ledger", beats),
	})
	j := &rigJob{name: name, shards: shards, beats: beats, registered: time.Now()}
	r.logf("job %s registered: every second, %d shards, tasks of %d beats", name, shards, beats)
	return j
}

// registerDaemon registers a DAEMON job whose shards write the ledger
// until killed.
func (r *hostsRig) registerDaemon(name string, shards int) *rigJob {
	r.t.Helper()
	r.write(http.MethodPost, "/api/job/register", map[string]any{
		"jobName":            name,
		"appName":            "rig",
		"shardingTotalCount": shards,
		"jobExecutionType":   "DAEMON",
		"failover":           true,
		"cpuCount":           0.1,
		"memoryMB":           16,
		"scriptCommandLine":  ledgerScript("/ledger", -1),
	})
	j := &rigJob{name: name, shards: shards, daemon: true, registered: time.Now()}
	r.logf("job %s registered: DAEMON, %d shards", name, shards)
	return j
}

// ledgerJobs are jobs as the analysis knows them, with fires checked from
// the first after registration to toMs.
func ledgerJobs(jobs []*rigJob, toMs int64) []ledgerJob {
	var out []ledgerJob
	for _, j := range jobs {
		lj := ledgerJob{Name: j.name, Shards: j.shards, Daemon: j.daemon, Off: j.off}
		if !j.daemon {
			// The first fire due after the registration was stored.
			lj.From, lj.To = j.registered.Add(time.Second).Truncate(time.Second).UnixMilli(), toMs
		}
		out = append(out, lj)
	}
	return out
}

// runs reads the ledger.
func (r *hostsRig) runs() []ledgerRun {
	r.t.Helper()
	lines, err := readLedger(r.ledger)
	if err != nil {
		r.t.Fatalf("read the ledger: %v", err)
	}
	runs, problems := ledgerRuns(lines, r.frozen())
	if len(problems) > 0 {
		r.t.Errorf("the ledger has lines of no run: %s", strings.Join(problems, "; "))
	}
	return runs
}

// waitRuns waits until every shard of job has started at least n runs.
func (r *hostsRig) waitRuns(j *rigJob, n int, timeout time.Duration) {
	r.t.Helper()
	haEventually(r.t, fmt.Sprintf("%s runs %d times on each shard", j.name, n), timeout, func() error {
		count := make([]int, j.shards)
		for _, run := range r.runs() {
			if run.Job == j.name && run.Shard < j.shards {
				count[run.Shard]++
			}
		}
		for s, c := range count {
			if c < n {
				return fmt.Errorf("shard %d ran %d times", s, c)
			}
		}
		return nil
	})
}

// check analyses the ledger: it fails the test at once on an overlap, a
// task id started twice or a line of no run, and waits up to timeout for
// every fire up to toMs to have run. It returns the last analysis.
func (r *hostsRig) check(jobs []*rigJob, toMs int64, timeout time.Duration) ledgerReport {
	r.t.Helper()
	var rep ledgerReport
	began := time.Now()
	lastLog := began
	haEventually(r.t, "every fire up to "+ledgerMsTime(toMs)+" ran, none twice at once", timeout, func() error {
		rep = analyzeLedger(r.runs(), ledgerJobs(jobs, toMs))
		if len(rep.Problems)+len(rep.Duplicates)+len(rep.Overlaps)+len(rep.Unknown) > 0 {
			return wait.Stop(rep.Err())
		}
		if err := rep.Err(); err != nil {
			// Fires still missing: say which now and then, so a slow
			// catch-up shows in the log.
			if time.Since(lastLog) > 10*time.Second {
				lastLog = time.Now()
				r.logf("still waiting for fires: %v", err)
			}
			return err
		}
		return nil
	})
	if took := time.Since(began); took > 5*time.Second {
		r.logf("the missing fires ran within %v", took.Round(time.Millisecond))
	}
	r.logf("ledger: %s", rep.Summary())
	return rep
}

// figure logs one measured figure in the fixed format the README's tables
// are made from.
func figure(t testing.TB, name string, value any) {
	t.Helper()
	if d, ok := value.(time.Duration); ok {
		value = d.Round(time.Millisecond)
	}
	t.Logf("FIGURE %s %v", name, value)
}

// hostOf is the host named name.
func (r *hostsRig) hostOf(name string) *rigHost {
	for _, h := range r.hosts {
		if h.name == name {
			return h
		}
	}
	return nil
}

// busiest is the host among cands running the most tasks now (from the
// ledger: runs without an end line that wrote within two beats).
func (r *hostsRig) busiest(cands []*rigHost) *rigHost {
	r.t.Helper()
	now := time.Now().UnixNano()
	count := map[string]int{}
	for _, run := range r.runs() {
		if !run.Ended && run.Last > now-int64(2*ledgerBeat) {
			count[run.Host]++
		}
	}
	best := cands[0]
	for _, h := range cands[1:] {
		if count[h.name] > count[best.name] {
			best = h
		}
	}
	return best
}

// others is every host but h.
func (r *hostsRig) others(h *rigHost) []*rigHost {
	var out []*rigHost
	for _, o := range r.hosts {
		if o != h {
			out = append(out, o)
		}
	}
	return out
}
