package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/etcd"
	"github.com/hasched/hasched/coord/zk"
	"github.com/hasched/hasched/internal/etcdtest"
	"github.com/hasched/hasched/internal/zktest"
	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
)

// benchClients is the number of concurrent clients of issue 11's goal:
// job registrations through the REST API, 8 concurrent clients.
const benchClients = 8

// BenchmarkRegisterJobs registers b.N jobs with benchClients concurrent
// clients and reports registrations per second (regs/s) and the leader's
// fenced store writes per registration (writes/reg: calls of the term's
// coord.Writer, each one or two round trips). "rest" goes through the REST
// API over HTTP, the figure that counts; "service" calls the Service
// directly, which shows what the HTTP layer costs. "etcd" runs on an
// embedded etcd server of its own; "zookeeper" on the server
// HASCHED_ZK_TEST_SERVERS names (skipped without it; see
// integration/with-zookeeper.sh).
//
//	go test ./scheduler -run '^$' -bench RegisterJobs -benchtime 2000x
func BenchmarkRegisterJobs(b *testing.B) {
	b.Run("etcd", func(b *testing.B) {
		server := startBenchEtcd(b)
		open := func() func(context.Context) (coord.Coordinator, error) {
			ns := fmt.Sprintf("bench-%d", time.Now().UnixNano())
			return etcdtest.Opener(etcd.Config{Endpoints: server.Endpoints(), Namespace: ns, SessionTTL: 5 * time.Second})
		}
		b.Run("rest", func(b *testing.B) { benchRegistrations(b, open(), restRegistrar) })
		b.Run("service", func(b *testing.B) { benchRegistrations(b, open(), serviceRegistrar) })
	})
	b.Run("zookeeper", func(b *testing.B) {
		servers := zktest.Servers(b)
		open := func() func(context.Context) (coord.Coordinator, error) {
			cfg := zk.Config{Servers: servers, Namespace: fmt.Sprintf("bench-%d", time.Now().UnixNano()), SessionTimeout: 6 * time.Second}
			return func(ctx context.Context) (coord.Coordinator, error) { return zk.New(ctx, cfg) }
		}
		b.Run("rest", func(b *testing.B) { benchRegistrations(b, open(), restRegistrar) })
		b.Run("service", func(b *testing.B) { benchRegistrations(b, open(), serviceRegistrar) })
	})
}

func serviceRegistrar(_ *testing.B, s *Scheduler) func(context.Context, model.Job) error {
	return s.RegisterJob
}

// benchRegistrations runs one scheduler on sessions open opens and times
// b.N registrations made through the registrar client gives.
func benchRegistrations(b *testing.B, open func(context.Context) (coord.Coordinator, error), client func(*testing.B, *Scheduler) func(context.Context, model.Job) error) {
	b.Helper()
	writes := &countingOpen{open: open}
	s, stop := runBenchScheduler(b, writes.Open)
	defer stop()
	register := client(b, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := s.RegisterApp(ctx, testApp("app")); err != nil {
		b.Fatalf("RegisterApp: %v", err)
	}

	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	before := writes.n.Load()
	b.ResetTimer()
	start := time.Now()
	for range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				// A cron that fires once a year: the loop does nothing but
				// the registrations while they are timed.
				if err := register(ctx, testJob(fmt.Sprintf("job-%d", i), "0 0 0 1 1 ?")); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("a registration failed: %v", err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "regs/s")
	b.ReportMetric(float64(writes.n.Load()-before)/float64(b.N), "writes/reg")
}

// startBenchEtcd starts an embedded etcd server of the benchmark's own: the
// package's shared one (etcdtest) is for tests.
func startBenchEtcd(b *testing.B) *etcd.Embedded {
	b.Helper()
	dir, err := os.MkdirTemp("", "hasched-bench-etcd-")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	server, err := etcd.StartEmbedded(ctx, etcd.EmbeddedConfig{Dir: dir, ClientURL: "http://127.0.0.1:0", PeerURL: "http://127.0.0.1:0"})
	if err != nil {
		_ = os.RemoveAll(dir)
		b.Fatalf("start the embedded etcd server: %v", err)
	}
	b.Cleanup(func() {
		_ = server.Close()
		_ = os.RemoveAll(dir)
	})
	return server
}

// runBenchScheduler runs a scheduler with a fake executor until stop, and
// returns once it leads.
func runBenchScheduler(b *testing.B, open func(context.Context) (coord.Coordinator, error)) (*Scheduler, func()) {
	b.Helper()
	s, err := New(Config{Open: open, Executor: schedtest.NewCluster().Factory("a"), ExecutorName: "fake", Advertise: "127.0.0.1:8899"})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Run returned %v", err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, _ := s.Status(ctx); st.Leader {
			return s, stop
		}
		if time.Now().After(deadline) {
			stop()
			b.Fatal("the scheduler did not lead within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// restRegistrar serves the REST API of s on a loopback listener and
// returns a client that registers a job with POST /api/job/register.
func restRegistrar(b *testing.B, s *Scheduler) func(context.Context, model.Job) error {
	b.Helper()
	handler, err := api.New(api.Config{Service: s})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	transport := &http.Transport{MaxIdleConnsPerHost: benchClients}
	b.Cleanup(func() {
		transport.CloseIdleConnections()
		srv.Close()
	})
	client := &http.Client{Transport: transport}
	return func(ctx context.Context, job model.Job) error {
		body, err := json.Marshal(job)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/api/job/register", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST /api/job/register %s: %d %s", job.JobName, resp.StatusCode, answer)
		}
		return nil
	}
}

// countingOpen opens sessions whose leaderships count the fenced writes
// made through them: the leader's store writes.
type countingOpen struct {
	open func(context.Context) (coord.Coordinator, error)
	n    atomic.Int64
}

func (o *countingOpen) Open(ctx context.Context) (coord.Coordinator, error) {
	c, err := o.open(ctx)
	if err != nil {
		return nil, err
	}
	return countingCoordinator{Coordinator: c, n: &o.n}, nil
}

type countingCoordinator struct {
	coord.Coordinator
	n *atomic.Int64
}

func (c countingCoordinator) Campaign(ctx context.Context, election string, value []byte) (coord.Leadership, error) {
	l, err := c.Coordinator.Campaign(ctx, election, value)
	if err != nil {
		return nil, err
	}
	return countingLeadership{Leadership: l, n: c.n}, nil
}

type countingLeadership struct {
	coord.Leadership
	n *atomic.Int64
}

func (l countingLeadership) Writer() coord.Writer {
	return countingWriter{w: l.Leadership.Writer(), n: l.n}
}

type countingWriter struct {
	w coord.Writer
	n *atomic.Int64
}

func (w countingWriter) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (coord.Node, error) {
	w.n.Add(1)
	return w.w.Create(ctx, path, value, opts...)
}

func (w countingWriter) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	w.n.Add(1)
	return w.w.Set(ctx, path, value, expected)
}

func (w countingWriter) Delete(ctx context.Context, path string, expected coord.Version) error {
	w.n.Add(1)
	return w.w.Delete(ctx, path, expected)
}

func (w countingWriter) DeleteTree(ctx context.Context, path string) error {
	w.n.Add(1)
	return w.w.DeleteTree(ctx, path)
}

func (w countingWriter) Apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	w.n.Add(1)
	return w.w.Apply(ctx, ops...)
}
