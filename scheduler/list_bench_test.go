package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/zk"
	"github.com/hasched/hasched/internal/etcdtest"
	"github.com/hasched/hasched/internal/zktest"
	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// listJobs is the number of jobs of issue 11's read goal: GET
// /api/job/jobs with 100,000 jobs in at most 500 ms, on the leader and on
// a standby.
const listJobs = 100_000

// BenchmarkListJobs times GET /api/job/jobs with listJobs jobs stored, on
// a leader and a standby that serve the REST API on loopback: "leader" is
// answered from the leader's read index, "standby" is forwarded to the
// leader, "standby-store" is the standby's own answer from the store (the
// request marked as forwarded already, so it is not forwarded again: what
// every process did before the read index, and what a standby does when
// the leader does not answer), and "range" is the raw coordinator's read of
// the jobs' configuration nodes, the floor of any read from the store.
// "etcd" runs on the package's embedded etcd server; "zookeeper" on the
// server HASCHED_ZK_TEST_SERVERS names (skipped without it).
//
//	go test ./scheduler -run '^$' -bench ListJobs -benchtime 5x
func BenchmarkListJobs(b *testing.B) {
	b.Run("etcd", func(b *testing.B) {
		benchListJobs(b, etcdtest.Opener(etcdServer.Config(b, "list", 10*time.Second)))
	})
	b.Run("zookeeper", func(b *testing.B) {
		cfg := zk.Config{Servers: zktest.Servers(b), Namespace: fmt.Sprintf("bench-list-%d", time.Now().UnixNano()), SessionTimeout: 10 * time.Second}
		benchListJobs(b, func(ctx context.Context) (coord.Coordinator, error) { return zk.New(ctx, cfg) })
	})
}

func benchListJobs(b *testing.B, open func(context.Context) (coord.Coordinator, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	c, err := open(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	seedJobs(ctx, b, c, listJobs)

	leader := startBenchAPINode(ctx, b, open, "a")
	waitBench(b, "the leader to load the jobs", 5*time.Minute, func() bool {
		st, _ := leader.s.Status(ctx)
		return st.Leader
	})
	standby := startBenchAPINode(ctx, b, open, "b")
	waitBench(b, "the standby to read", time.Minute, func() bool {
		_, err := standby.s.Apps(ctx)
		return err == nil
	})
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	get := func(url string, hdr ...string) (int, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %d, %v", url, resp.StatusCode, err)
		}
		return int(n), resp.Header.Get(api.HeaderLeader)
	}
	// Each way answers the whole list, and the standby's is the leader's.
	var jobs []json.RawMessage
	if err := getJSON(ctx, client, leader.url+"/api/job/jobs", &jobs); err != nil || len(jobs) != listJobs {
		b.Fatalf("the leader listed %d jobs (%v), want %d", len(jobs), err, listJobs)
	}
	size, _ := get(leader.url + "/api/job/jobs")
	if n, by := get(standby.url + "/api/job/jobs"); n != size || by == "" {
		b.Fatalf("the standby's list: %d bytes answered by %q, want the leader's %d", n, by, size)
	}
	if n, by := get(standby.url+"/api/job/jobs", api.HeaderForwarded, "1"); n != size || by != "" {
		b.Fatalf("the standby's store list: %d bytes answered by %q, want %d by itself", n, by, size)
	}

	for _, way := range []struct {
		name string
		do   func()
	}{
		{"range", func() {
			nodes, err := c.List(ctx, store.JobConfigRoot)
			if err != nil || len(nodes) != listJobs {
				b.Fatalf("List: %d nodes, %v", len(nodes), err)
			}
		}},
		{"standby-store", func() { get(standby.url+"/api/job/jobs", api.HeaderForwarded, "1") }},
		{"leader", func() { get(leader.url + "/api/job/jobs") }},
		{"standby", func() { get(standby.url + "/api/job/jobs") }},
	} {
		b.Run(way.name, func(b *testing.B) {
			start := time.Now()
			for range b.N {
				way.do()
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/list")
			b.ReportMetric(float64(size)/1e6, "MB/list")
		})
	}
}

func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// seedJobs stores the app "app" and n jobs of it, each with its ready
// node, straight into the store, in batches.
func seedJobs(ctx context.Context, b *testing.B, c coord.Coordinator, n int) {
	b.Helper()
	mustJSON := func(v any) []byte {
		out, err := json.Marshal(v)
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	for _, p := range []string{store.JobConfigRoot, store.ReadyRoot} {
		if _, err := c.Create(ctx, p, nil); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := c.Create(ctx, store.AppPath("app"), mustJSON(testApp("app"))); err != nil {
		b.Fatal(err)
	}
	ready := mustJSON(store.Ready{FireTimes: []time.Time{}, RegisteredAt: t0})
	var ops []coord.Op
	size := 0
	flush := func() {
		if _, err := c.Apply(ctx, ops...); err != nil {
			b.Fatal(err)
		}
		ops, size = ops[:0], 0
	}
	for i := range n {
		name := fmt.Sprintf("job-%06d", i)
		job := testJob(name, "0 0 0 1 1 ?")
		job.Description = "a job of issue 11's read benchmark"
		value := mustJSON(job)
		if len(ops)+2 > coord.MaxBatchOps || size+len(value)+len(ready) > coord.MaxValueSize/2 {
			flush()
		}
		ops = append(ops, coord.CreateOp(store.JobPath(name), value), coord.CreateOp(store.ReadyPath(name), ready))
		size += len(value) + len(ready)
	}
	flush()
}

// benchAPINode is a scheduler with a fake executor and its REST API on a
// loopback listener, its advertised address.
type benchAPINode struct {
	s   *Scheduler
	url string
}

func startBenchAPINode(ctx context.Context, b *testing.B, open func(context.Context) (coord.Coordinator, error), name string) *benchAPINode {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{Open: open, Executor: schedtest.NewCluster().Factory(name), ExecutorName: "fake", Advertise: l.Addr().String()})
	if err != nil {
		b.Fatal(err)
	}
	h, err := api.New(api.Config{Service: s, RequestTimeout: 5 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	_ = srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	b.Cleanup(func() {
		srv.Close()
		stop()
		if err := <-done; err != nil {
			b.Errorf("Run of %s returned %v", name, err)
		}
	})
	return &benchAPINode{s: s, url: srv.URL}
}

func waitBench(b *testing.B, what string, timeout time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
