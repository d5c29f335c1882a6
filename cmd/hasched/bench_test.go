package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hasched/hasched/internal/bench"
	"github.com/hasched/hasched/internal/etcdtest"
)

// etcdServer serves the bench's tests.
var etcdServer etcdtest.Shared

// benchTarget is an etcd:// URL of the shared server in a fresh
// namespace, the namespace, and a raw client of the server.
func benchTarget(t *testing.T) (string, string, *clientv3.Client) {
	t.Helper()
	cfg := etcdServer.Config(t, "cmdbench", 2*time.Second)
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	host := strings.TrimPrefix(cfg.Endpoints[0], "http://")
	return "etcd://" + host + "/" + cfg.Namespace + "?ttl=2s", cfg.Namespace, cli
}

func keysWithPrefix(t *testing.T, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// `hasched bench --json` on an embedded etcd: every figure is there and
// positive, and the bench's namespace is gone afterwards.
func TestBenchPrintsEveryFigureAndRemovesItsNamespace(t *testing.T) {
	u, ns, etcdCli := benchTarget(t)
	r := cli(t, nil, "", "bench", "--coord", u, "--jobs", "30", "--concurrency", "4",
		"--fire-jobs", "3", "--duration", "2s", "--json").ok(t)
	var rep bench.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("--json output does not decode: %v\n%s", err, r.stdout)
	}
	for _, key := range []string{bench.RowRegister, bench.RowListLeader, bench.RowListStandby, bench.RowTakeover, bench.RowLagP50, bench.RowLagP99, bench.RowLaunchRate} {
		row, ok := rep.Row(key)
		if !ok || !(row.Hasched > 0) {
			t.Errorf("row %s: %+v (present %v), want a positive figure", key, row, ok)
		}
	}
	if !rep.NamespaceRemoved || !strings.HasPrefix(rep.Namespace, ns+"-bench-") {
		t.Errorf("namespace %q removed %v: want %s-bench-<suffix>, removed", rep.Namespace, rep.NamespaceRemoved, ns)
	}
	if n := keysWithPrefix(t, etcdCli, "/"+ns); n != 0 {
		t.Errorf("%d keys left under /%s", n, ns)
	}
	if strings.Contains(r.stderr, "[INFO]") {
		t.Errorf("logs below warn by default:\n%s", r.stderr)
	}
}

// Bad flags are refused at once, naming the flag and its bounds, and
// nothing is written to the coordinator.
func TestBenchRefusesBadFlagsAndWritesNothing(t *testing.T) {
	u, ns, etcdCli := benchTarget(t)
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"no coord", nil, nil, []string{"--coord is required"}},
		{"embedded", []string{"--coord", "embedded"}, nil, []string{"--coord embedded"}},
		{"unknown scheme", []string{"--coord", "consul://h:8500/x"}, nil, []string{"--coord", `unsupported scheme "consul"`}},
		{"no servers", []string{"--coord", "etcd:///ns"}, nil, []string{"--coord", "no servers"}},
		{"bad namespace", []string{"--coord", strings.Replace(u, ns, "a+b", 1)}, nil, []string{"--coord", "namespace"}},
		{"zero jobs", []string{"--coord", u, "--jobs", "0"}, nil, []string{"--jobs 0", "1 to 1000000"}},
		{"too many jobs", []string{"--coord", u, "--jobs", "1000001"}, nil, []string{"--jobs 1000001"}},
		{"jobs from env", []string{"--coord", u}, map[string]string{"HASCHED_JOBS": "-5"}, []string{"--jobs -5"}},
		{"too much concurrency", []string{"--coord", u, "--concurrency", "257"}, nil, []string{"--concurrency 257", "1 to 256"}},
		{"zero fire jobs", []string{"--coord", u, "--fire-jobs", "0"}, nil, []string{"--fire-jobs 0"}},
		{"too many fire jobs", []string{"--coord", u, "--fire-jobs", "5001"}, nil, []string{"--fire-jobs 5001", "1 to 5000"}},
		{"too short", []string{"--coord", u, "--duration", "500ms"}, nil, []string{"--duration 500ms", "1s to 10m0s"}},
		{"too long", []string{"--coord", u, "--duration", "11m"}, nil, []string{"--duration 11m0s"}},
		{"not a duration", []string{"--coord", u, "--duration", "ten"}, nil, []string{"--duration"}},
		{"bad log level", []string{"--coord", u, "--log-level", "loud"}, nil, []string{"--log-level", "loud"}},
		{"stray argument", []string{"--coord", u, "now"}, nil, []string{"takes no arguments"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			cli(t, c.env, "", append([]string{"bench"}, c.args...)...).fails(t, append(c.want, "--help")...)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("refusing took %v", took)
			}
		})
	}
	if n := keysWithPrefix(t, etcdCli, "/"+ns); n != 0 {
		t.Errorf("refused command lines wrote %d keys under /%s", n, ns)
	}
}
