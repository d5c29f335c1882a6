package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/model"
)

// appPackage is a tar.gz with bin/start.sh, which appends its sharding item
// to out: an Elastic-Job-Cloud app as its doc ships one.
func appPackage(t *testing.T, out string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	script := fmt.Sprintf("#!/bin/sh\necho \"$HASCHED_SHARDING_ITEM\" >> %s\n", out)
	for _, f := range []struct {
		name string
		mode int64
		body string
	}{{"bin/", 0o755, ""}, {"bin/start.sh", 0o755, script}} {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), Typeflag: tar.TypeReg}
		if strings.HasSuffix(f.name, "/") {
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Elastic-Job-Cloud's RESTful API doc, its calls in the doc's order, sent as
// its curl examples send them (Content-type: application/json, bare job
// names as the bodies of trigger and deregister), against a real hasched
// serve that fetches the app's package and runs its bootstrapScript.
func TestElasticJobCloudDocumentedCallsInTheDocsOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an embedded etcd (make test runs it)")
	}
	out := filepath.Join(t.TempDir(), "out")
	pkg := appPackage(t, out)
	repo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/my-job.tar.gz" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(pkg)
	}))
	defer repo.Close()

	p := startProcess(t, "ejc", serveFlags{
		coord: coordEmbedded, embeddedClientURL: "http://127.0.0.1:0", embeddedPeerURL: "http://127.0.0.1:0",
	})
	base := "http://" + p.addr
	// As a script would: wait until writes are served.
	eventually(t, "/readyz", 30*time.Second, func() error {
		r, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		r.Body.Close()
		if r.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", r.Status)
		}
		return nil
	})
	curl := func(method, path, body string) []byte {
		t.Helper()
		req, err := http.NewRequestWithContext(ctxT(t), method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s %s: %s: %s", method, path, body, resp.Status, b)
		}
		return b
	}

	// App API: publish, then change appCacheEnable only.
	curl("POST", "/api/app", fmt.Sprintf(`{"appName":"my_app","appURL":"%s/my-job.tar.gz","cpuCount":0.1,"memoryMB":64.0,"bootstrapScript":"bin/start.sh","appCacheEnable":true,"eventTraceSamplingCount":0}`, repo.URL))
	curl("PUT", "/api/app", `{"appName":"my_app","appCacheEnable":true}`)
	var app model.App
	mustJSON(t, curl("GET", "/api/app/my_app", ""), &app)
	if app.BootstrapScript != "bin/start.sh" || app.CPUCount != 0.1 {
		t.Fatalf("the app after PUT /api/app: %+v; the fields the update left out must keep their values", app)
	}

	// Job API: register a job without scriptCommandLine (it runs the
	// app's bootstrapScript), update it, trigger it.
	curl("POST", "/api/job/register", `{"jobName":"foo_job","appName":"my_app","cron":"0/5 * * * * ?","shardingTotalCount":3,"shardingItemParameters":"0=Beijing,1=Shanghai,2=Guangzhou","jobParameter":"","failover":true,"misfire":true,"cpuCount":0.1,"memoryMB":64.0,"jobExecutionType":"TRANSIENT","description":""}`)
	curl("PUT", "/api/job/update", `{"jobName":"foo_job","appName":"my_app","cron":"0 0 3 * * ?","shardingTotalCount":3,"cpuCount":0.1,"memoryMB":64.0,"jobExecutionType":"TRANSIENT"}`)
	var job model.Job
	mustJSON(t, curl("GET", "/api/job/jobs/foo_job", ""), &job)
	if job.Cron != "0 0 3 * * ?" || job.ShardingItemParameters != "0=Beijing,1=Shanghai,2=Guangzhou" || !job.Failover {
		t.Fatalf("the job after PUT /api/job/update: %+v", job)
	}
	curl("POST", "/api/job/trigger", `foo_job`)
	eventually(t, "every shard of the triggered run ran the app's bootstrapScript", 60*time.Second, func() error {
		b, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		if got := strings.Fields(string(b)); len(got) != 3 {
			return fmt.Errorf("shards that ran: %q", got)
		}
		return nil
	})
	var jobs []model.Job
	mustJSON(t, curl("GET", "/api/job/jobs", ""), &jobs)
	if len(jobs) != 1 {
		t.Fatalf("GET /api/job/jobs = %+v", jobs)
	}
	curl("GET", "/api/job/tasks/running", "")
	curl("GET", "/api/job/tasks/ready", "")
	curl("GET", "/api/job/tasks/failover", "")
	curl("POST", "/api/job/foo_job/disable", "")
	curl("POST", "/api/job/foo_job/enable", "")
	curl("DELETE", "/api/job/deregister", `foo_job`)

	// The app's lifecycle last, as the doc lists it.
	curl("POST", "/api/app/my_app/disable", "")
	curl("POST", "/api/app/my_app/enable", "")
	curl("DELETE", "/api/app/my_app", "")
	mustJSON(t, curl("GET", "/api/job/jobs", ""), &jobs)
	if len(jobs) != 0 {
		t.Fatalf("jobs after deregistering them: %+v", jobs)
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}
