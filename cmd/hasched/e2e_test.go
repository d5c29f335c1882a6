package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hasched/hasched/coord/etcd"
	"github.com/hasched/hasched/internal/client"
	"github.com/hasched/hasched/internal/wait"
	"github.com/hasched/hasched/scheduler/model"
)

// These tests run whole `hasched serve` processes in this test process, on
// an embedded etcd, with the real scheduler and the local executor.

// logBuffer collects a process's log for a failing test to show.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is one runServe.
type process struct {
	name   string
	addr   string
	cancel context.CancelFunc
	exited chan struct{} // closed when runServe has returned err
	err    error
	log    *logBuffer
	client *client.Client
}

func startProcess(t *testing.T, name string, f serveFlags) *process {
	t.Helper()
	if f.dataDir == "" {
		f.dataDir = filepath.Join(t.TempDir(), "data")
	}
	f.listen = "127.0.0.1:0"
	if f.executor == "" {
		f.executor = "local"
	}
	if f.logLevel == "" {
		f.logLevel = "debug"
	}
	return runProcess(t, name, f)
}

// runProcess runs runServe with f in this process until the test ends, and
// returns once it has bound its listener.
func runProcess(t *testing.T, name string, f serveFlags) *process {
	t.Helper()
	cfg, err := f.validate()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{name: name, cancel: cancel, exited: make(chan struct{}), log: &logBuffer{}}
	bound := make(chan net.Addr, 1)
	go func() {
		defer close(p.exited)
		p.err = runServe(ctx, cfg, p.log, func(a net.Addr) { bound <- a })
	}()
	select {
	case a := <-bound:
		p.addr = a.String()
	case <-p.exited:
		t.Fatalf("%s did not start: %v\n%s", name, p.err, p.log)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("%s did not start in 30s\n%s", name, p.log)
	}
	if p.client, err = client.New(client.Config{BaseURL: p.addr}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, p.log)
		}
	})
	return p
}

// stop cancels the process and waits for it to exit cleanly.
func (p *process) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	p.wait(t)
}

func (p *process) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("%s exited with %v", p.name, p.err)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("%s did not stop within 60s", p.name)
	}
}

// startEtcd starts an embedded etcd for the test and returns a --coord URL
// for namespace ns on it.
func startEtcd(t *testing.T, ns string) string {
	t.Helper()
	e, err := etcd.StartEmbedded(ctxT(t), etcd.EmbeddedConfig{
		Dir: filepath.Join(t.TempDir(), "etcd"), ClientURL: "http://127.0.0.1:0", PeerURL: "http://127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return "etcd://" + strings.TrimPrefix(e.Endpoints()[0], "http://") + "/" + ns + "?ttl=5s"
}

// eventually polls f until it returns nil.
func eventually(t *testing.T, what string, timeout time.Duration, f func() error) {
	t.Helper()
	wait.Poll{Timeout: timeout, Interval: 100 * time.Millisecond}.NoError(t, what, f)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func leaderOf(t *testing.T, procs ...*process) (leader *process, standbys []*process, err error) {
	for _, p := range procs {
		st, err := p.client.Status(ctxT(t))
		if err != nil {
			return nil, nil, err
		}
		if st.Leader {
			if leader != nil {
				return nil, nil, fmt.Errorf("both %s and %s lead", leader.name, p.name)
			}
			leader = p
			continue
		}
		standbys = append(standbys, p)
	}
	if leader == nil {
		return nil, nil, errors.New("nobody leads yet")
	}
	return leader, standbys, nil
}

// The quick start's process: on the cluster executor (the default: the
// process's own worker runs the tasks) and on the local executor.
func TestServeRunsJobsAndStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an embedded etcd (make test runs it)")
	}
	for _, executor := range []string{"cluster", "local"} {
		t.Run(executor, func(t *testing.T) { testServeRunsJobsAndStopsOnSIGTERM(t, executor) })
	}
}

func testServeRunsJobsAndStopsOnSIGTERM(t *testing.T, executor string) {
	p := startProcess(t, "solo", serveFlags{
		coord: coordEmbedded, embeddedClientURL: "http://127.0.0.1:0", embeddedPeerURL: "http://127.0.0.1:0",
		executor: executor, worker: true, drainTimeout: 10 * time.Second,
	})
	eventually(t, "the process leads", 30*time.Second, func() error {
		_, _, err := leaderOf(t, p)
		return err
	})
	if h, err := p.client.Health(ctxT(t)); err != nil || !h.Leader {
		t.Fatalf("healthz = %+v, %v", h, err)
	}

	runTwoShards(t, p)
	if executor == "cluster" {
		ws, err := p.client.Workers(ctxT(t))
		if err != nil || len(ws) != 1 || ws[0].CPUs <= 0 || ws[0].API != p.addr {
			t.Fatalf("workers = %+v, %v; want this process, with its capacity and API address", ws, err)
		}
	}

	// SIGTERM goes to this test process; runServe has the signal, so it
	// shuts down and returns nil.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.wait(t)
	if _, err := p.client.Status(ctxT(t)); err == nil {
		t.Fatal("the API still answers after shutdown")
	}
}

// Two processes on one etcd: writes sent to the standby reach the leader,
// and when the leader stops, the standby takes over at once (the leader
// resigns) and finds the state where the old leader left it.
func TestStandbyForwardsAndTakesOverWhenTheLeaderStops(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an embedded etcd (make test runs it)")
	}
	url := startEtcd(t, "e2e")
	a := startProcess(t, "a", serveFlags{coord: url, authUser: "root", authPassword: "pw"})
	b := startProcess(t, "b", serveFlags{coord: url, authUser: "root", authPassword: "pw"})

	var leader, standby *process
	eventually(t, "one process leads", 30*time.Second, func() error {
		l, s, err := leaderOf(t, a, b)
		if err != nil {
			return err
		}
		leader, standby = l, s[0]
		return nil
	})
	eventually(t, "the standby knows the leader", 10*time.Second, func() error {
		st, err := standby.client.Status(ctxT(t))
		if err == nil && st.LeaderAddress != leader.addr {
			err = fmt.Errorf("standby follows %q, want %q", st.LeaderAddress, leader.addr)
		}
		return err
	})

	authed, err := client.New(client.Config{BaseURL: standby.addr, User: "root", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := standby.client.RegisterAppJSON(ctxT(t), []byte(`{"appName":"app","bootstrapScript":"true"}`)); err == nil {
		t.Fatal("the standby accepted a write without credentials")
	}
	if _, err := authed.RegisterAppJSON(ctxT(t), []byte(`{"appName":"app","bootstrapScript":"true"}`)); err != nil {
		t.Fatalf("register through the standby: %v", err)
	}
	if _, err := leader.client.App(ctxT(t), "app"); err != nil {
		t.Fatalf("the leader does not know the app registered through the standby: %v", err)
	}
	if _, err := authed.RegisterAppJSON(ctxT(t), []byte(`{"appName":"app","bootstrapScript":"true"}`)); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("second register through the standby = %v, want the leader's 409", err)
	}

	stopped := time.Now()
	leader.stop(t)
	eventually(t, "the standby takes over", 5*time.Second, func() error {
		_, _, err := leaderOf(t, standby)
		return err
	})
	t.Logf("takeover %v after the leader was told to stop", time.Since(stopped).Round(time.Millisecond))
	if _, err := standby.client.App(ctxT(t), "app"); err != nil {
		t.Fatalf("the new leader lost the app: %v", err)
	}
	if _, err := authed.DisableApp(ctxT(t), "app"); err != nil {
		t.Fatalf("write on the new leader: %v", err)
	}
}

// runTwoShards registers the app "app" and the job "job" on p, a job of
// two shards that each append their shard number to a file, triggers it
// and waits until both shards have run.
func runTwoShards(t *testing.T, p *process) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	x := ctxT(t)
	if _, err := p.client.RegisterAppJSON(x, []byte(`{"appName":"app","bootstrapScript":"true"}`)); err != nil {
		t.Fatal(err)
	}
	job := fmt.Sprintf(`{"jobName":"job","appName":"app","cron":"0 0 3 * * ?","shardingTotalCount":2,"scriptCommandLine":"echo $HASCHED_SHARDING_ITEM >> %s"}`, out)
	if _, err := p.client.RegisterJobJSON(x, []byte(job)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.TriggerJob(x, "job"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both shards ran", 30*time.Second, func() error {
		b, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		if got := strings.Fields(string(b)); len(got) != 2 {
			return fmt.Errorf("shards that ran: %q", got)
		}
		return nil
	})
}
