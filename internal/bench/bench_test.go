package bench

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hasched/hasched/internal/etcdtest"
)

var etcdServer etcdtest.Shared

func TestMain(m *testing.M) {
	os.Exit(etcdServer.Main(m))
}

// etcdURL is an etcd:// URL of the shared server in a fresh namespace,
// and a raw client of the server (closed with the test).
func etcdURL(t *testing.T) (string, string, *clientv3.Client) {
	t.Helper()
	cfg := etcdServer.Config(t, "bench", 2*time.Second)
	host := strings.TrimPrefix(cfg.Endpoints[0], "http://")
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return "etcd://" + host + "/" + cfg.Namespace + "?ttl=2s", cfg.Namespace, cli
}

// keysUnder counts the keys whose name starts with prefix.
func keysUnder(t *testing.T, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("count keys under %s: %v", prefix, err)
	}
	return resp.Count
}

// The whole bench on an embedded etcd, with small numbers: every figure is
// reported and positive, raw figures beside the ones that have them, and the
// bench's namespace is gone afterwards. No timing is asserted.
func TestRunReportsEveryFigureAndRemovesItsNamespace(t *testing.T) {
	u, base, cli := etcdURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{URL: u, Jobs: 50, Concurrency: 4, FireJobs: 5, Duration: 3 * time.Second})
	if err != nil {
		t.Fatalf("Run: %v\nreport: %+v", err, rep)
	}
	if !strings.HasPrefix(rep.Namespace, base+"-bench-") {
		t.Errorf("namespace %q, want %s-bench-<suffix>", rep.Namespace, base)
	}
	if rep.Backend != "etcd" || rep.NodeBytes <= 0 {
		t.Errorf("backend %q, node bytes %d: want etcd and a positive size", rep.Backend, rep.NodeBytes)
	}
	withRaw := map[string]bool{RowRegister: true, RowListLeader: true, RowListStandby: true}
	for _, key := range []string{RowRegister, RowListLeader, RowListStandby, RowTakeover, RowLagP50, RowLagP99, RowLaunchRate} {
		row, ok := rep.Row(key)
		if !ok {
			t.Errorf("no %s row in %+v", key, rep.Rows)
			continue
		}
		if !(row.Hasched > 0) {
			t.Errorf("%s: hasched figure %v, want > 0", key, row.Hasched)
		}
		switch {
		case withRaw[key] && (row.Raw == nil || !(*row.Raw > 0) || row.RawMethod == ""):
			t.Errorf("%s: raw figure %v (%q), want a positive one and its method", key, row.Raw, row.RawMethod)
		case !withRaw[key] && row.Raw != nil:
			t.Errorf("%s: raw figure %v, want none", key, *row.Raw)
		}
	}
	if !rep.NamespaceRemoved {
		t.Error("report says the namespace was not removed")
	}
	if !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, "the warm-up's lag") }) {
		t.Errorf("no note of the warm-up's lag in %q", rep.Notes)
	}
	if n := keysUnder(t, cli, "/"+rep.Namespace+"/"); n != 0 {
		t.Errorf("%d keys left under /%s/", n, rep.Namespace)
	}
	var table, js strings.Builder
	defer func() { t.Logf("report:\n%s", table.String()) }()
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, row := range rep.Rows {
		if !strings.Contains(table.String(), row.Figure) || !strings.Contains(js.String(), `"`+row.Key+`"`) {
			t.Errorf("row %s missing from the table or the JSON:\n%s\n%s", row.Key, table.String(), js.String())
		}
	}
}

// Interrupted at once (Ctrl-C), the bench still removes its namespace.
func TestRunRemovesItsNamespaceWhenInterrupted(t *testing.T) {
	u, base, cli := etcdURL(t)
	ctx, cancel := context.WithCancel(context.Background())
	// Cancelled during the registrations: the leader leads within a
	// second or two on a fresh namespace.
	time.AfterFunc(1500*time.Millisecond, cancel)
	defer cancel()
	cfg := Defaults(u)
	cfg.Jobs = 200000
	rep, err := Run(ctx, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if !rep.NamespaceRemoved {
		t.Error("report says the namespace was not removed")
	}
	if n := keysUnder(t, cli, "/"+base+"-bench-"); n != 0 {
		t.Errorf("%d keys left under /%s-bench-", n, base)
	}
}

// Every number is bounded; a refused configuration writes nothing.
func TestRunRefusesOutOfBoundsConfigsAndWritesNothing(t *testing.T) {
	u, base, cli := etcdURL(t)
	good := Config{URL: u, Jobs: 10, Concurrency: 2, FireJobs: 1, Duration: time.Second}
	cases := map[string]func(*Config){
		"zero jobs":            func(c *Config) { c.Jobs = 0 },
		"negative jobs":        func(c *Config) { c.Jobs = -1 },
		"zero concurrency":     func(c *Config) { c.Concurrency = 0 },
		"zero fire jobs":       func(c *Config) { c.FireJobs = 0 },
		"zero duration":        func(c *Config) { c.Duration = 0 },
		"too many jobs":        func(c *Config) { c.Jobs = MaxJobs + 1 },
		"negative concurrency": func(c *Config) { c.Concurrency = -3 },
		"too much concurrency": func(c *Config) { c.Concurrency = MaxConcurrency + 1 },
		"too many fire jobs":   func(c *Config) { c.FireJobs = MaxFireJobs + 1 },
		"negative fire jobs":   func(c *Config) { c.FireJobs = -1 },
		"too short":            func(c *Config) { c.Duration = time.Millisecond },
		"too long":             func(c *Config) { c.Duration = MaxDuration + time.Second },
		"negative duration":    func(c *Config) { c.Duration = -time.Second },
		"no URL":               func(c *Config) { c.URL = "" },
		"http URL":             func(c *Config) { c.URL = strings.Replace(u, "etcd://", "http://", 1) },
		"no servers":           func(c *Config) { c.URL = "etcd:///ns" },
		"bad namespace":        func(c *Config) { c.URL = strings.Replace(u, base, "a b", 1) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := good
			mutate(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := Run(ctx, cfg)
			var ce *ConfigError
			if !errors.Is(err, ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field == "" {
				t.Fatalf("Run(%+v): %v, want a ConfigError (ErrInvalidConfig) naming the field", cfg, err)
			}
		})
	}
	if n := keysUnder(t, cli, "/"+base); n != 0 {
		t.Errorf("refused configurations wrote %d keys under /%s", n, base)
	}
}
