package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// scrape GETs the process's /metrics.
func scrape(t *testing.T, p *process) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), "GET", "http://"+p.addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %q: %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	return string(b)
}

// A serve process answers GET /metrics with its own metrics: after a job
// ran, the leader's fenced writes and the term's reads are timed on the embedded
// etcd, the Go runtime's figures are there, and the whole scrape passes
// promtool's lint.
//
// The term's events reach the metrics: the process leads, the job's two
// shards ended FINISHED, and the leader's queues are counted.
func TestServeExportsMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an embedded etcd (make test runs it)")
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not on PATH (%v): install Debian's prometheus package (apt-get install prometheus), as .ci/run does", err)
	}
	p := startProcess(t, "solo", serveFlags{
		coord: coordEmbedded, embeddedClientURL: "http://127.0.0.1:0", embeddedPeerURL: "http://127.0.0.1:0",
		executor: "local",
	})
	eventually(t, "the process leads", 30*time.Second, func() error {
		_, _, err := leaderOf(t, p)
		return err
	})
	runTwoShards(t, p)

	// The shards' ends reach the leader a moment after their output.
	var text string
	ended := regexp.MustCompile(`\nhasched_task_runs_ended_total\{job_name="job",outcome="done",state="FINISHED"\} 2\n`)
	eventually(t, "both ends are counted", 30*time.Second, func() error {
		if text = scrape(t, p); !ended.MatchString(text) {
			return errors.New("not yet")
		}
		return nil
	})
	for _, re := range []string{
		// The leader's fenced writes and the reads of its sessions.
		`\nhasched_coordinator_operation_duration_seconds_count\{backend="etcd",operation="fenced_[a-z_]+",result="ok"\} [1-9]`,
		`\nhasched_coordinator_operation_duration_seconds_count\{backend="etcd",operation="(get|list|children)",result="[a-z_]+"\} [1-9]`,
		`\nhasched_is_leader 1\n`,
		`\nhasched_fires_total\{job_name="job"\} 1\n`,
		`\nhasched_task_launches_total\{job_name="job"\} 2\n`,
		`\nhasched_queue_tasks\{queue="running"\} 0\n`,
		`\nhasched_leader_term [0-9e.+]+\n`,
		`\n# TYPE hasched_schedule_lag_seconds histogram\n`,
		`\ngo_goroutines [1-9]`,
		`\nprocess_resident_memory_bytes [1-9]`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("the scrape has no match for %s", re)
		}
	}
	if strings.Contains(text, "127.0.0.1") || strings.Contains(text, "@-@") {
		t.Errorf("the scrape carries an address or a task id in a label:\n%s", text)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if lint, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(lint))) != 0 {
		t.Errorf("promtool check metrics of the live scrape: %v\n%s", err, lint)
	}
	if t.Failed() {
		t.Logf("the scrape:\n%s", text)
	}
}

// The backend label is the coordinator's scheme: bounded, and free of the
// URL's servers and credentials.
func TestBackendNameIsTheSchemeNeverTheURL(t *testing.T) {
	for _, c := range []struct {
		cfg  serveConfig
		want string
	}{
		{serveConfig{embedded: true}, "etcd"},
		{serveConfig{coordURL: "etcd://user:pw@10.0.0.1:2379/ns?password-file=/x"}, "etcd"},
		{serveConfig{coordURL: "ZK://h1:2181,h2:2181/ns"}, "zk"},
		{serveConfig{coordURL: "::not a url"}, "unknown"},
	} {
		if got := backendName(c.cfg); got != c.want {
			t.Errorf("backendName(%+v) = %q, want %q", c.cfg, got, c.want)
		}
	}
}
