package model

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"
)

// Seeds shared by the fuzz targets: valid jobs and apps, every bound at and
// past its limit, and JSON that is not quite a job.
var jobSeeds = []string{
	`{"jobName":"j","appName":"a","cron":"0/5 * * * * ?"}`,
	`{"jobName":"j","appName":"a","cron":"0 0 0 * * ?","shardingTotalCount":3,"shardingItemParameters":"0=x,2=y","retries":20,"cpuCount":256,"memoryMB":1048576,"timeZone":"Europe/Berlin","jobProperties":{"k":[1,2]}}`,
	`{"jobName":"d","appName":"a","jobExecutionType":"DAEMON","concurrencyPolicy":"REPLACE","failover":true,"misfire":false}`,
	`{"jobName":"j","appName":"a","cron":"0 0 0 * * ?","shardingTotalCount":1099511627776}`,
	`{"jobName":"j","appName":"a","cron":"0 0 0 * * ?","retries":1000000}`,
	`{"jobName":"j","appName":"a","cron":"0 0 0 * * ?","timeoutSeconds":604800}`,
	`{"jobName":"j","appName":"a","cron":"0 0 0 * * ?","timeoutSeconds":-1}`,
	`{"jobName":"j","timeoutSeconds":0}`,
	`{"jobName":"j","appName":"a","cron":"0 0 0 * * ?","cpuCount":1e308,"memoryMB":-0}`,
	`{"jobName":"j","appName":"a","cron":"0 0 0 * * ?","monitorExecution":true,"props":{}}`,
	`{"jobName":"j","appName":"a","cron":"0 0 0 * * ?","jobProperties":"<&>","description":"\u2028\ud800"}`,
	`{"jobName":"j"`, `[]`, `null`, `{} {}`, `{"unknown":1}`,
}

var appSeeds = []string{
	`{"appName":"a","appURL":"http://x/a.tar.gz","bootstrapScript":"bin/start.sh"}`,
	`{"appName":"a","cpuCount":256,"memoryMB":1048576,"eventTraceSamplingCount":1000000,"appCacheEnable":false}`,
	`{"appName":"a","cpuCount":1e9,"eventTraceSamplingCount":-1}`,
	`{"appName":"../x"}`, `{"appName":"a","extra":1}`, `"a"`,
}

// wantJobBounded fails unless a checked job respects every bound.
func wantJobBounded(t *testing.T, j Job) {
	t.Helper()
	switch {
	case j.ShardingTotalCount < 1 || j.ShardingTotalCount > MaxShardingTotalCount:
		t.Fatalf("checked job has shardingTotalCount %d", j.ShardingTotalCount)
	case j.Retries < 0 || j.Retries > MaxRetries:
		t.Fatalf("checked job has retries %d", j.Retries)
	case j.TimeoutSeconds < 0 || j.TimeoutSeconds > MaxTimeoutSeconds || j.Timeout() != time.Duration(j.TimeoutSeconds)*time.Second:
		t.Fatalf("checked job has timeoutSeconds %d (timeout %v)", j.TimeoutSeconds, j.Timeout())
	case !inRange(j.CPUCount, MinCPUCount, MaxCPUCount) || !inRange(j.MemoryMB, MinMemoryMB, MaxMemoryMB):
		t.Fatalf("checked job asks for cpuCount %v, memoryMB %v", j.CPUCount, j.MemoryMB)
	case len(encodeJSON(j)) > MaxConfigBytes:
		t.Fatalf("checked job is %d bytes of JSON", len(encodeJSON(j)))
	case ValidateName("jobName", j.JobName, true) != nil || ValidateName("appName", j.AppName, false) != nil:
		t.Fatalf("checked job has names %q, %q", j.JobName, j.AppName)
	}
}

func inRange(v, lo, hi float64) bool { return !math.IsNaN(v) && v >= lo && v <= hi }

// wantRefusal fails unless err is a *ValidationError matching ErrInvalid.
func wantRefusal(t *testing.T, err error) {
	t.Helper()
	var verr *ValidationError
	if !errors.As(err, &verr) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("refusal %v (%T) is not a *ValidationError wrapping ErrInvalid", err, err)
	}
}

// FuzzDecodeJob: decoding and checking never panic and refuse only with a
// *ValidationError; a checked job respects every bound, and re-encoded it
// decodes and checks to the same job (what the store keeps is what was
// checked).
func FuzzDecodeJob(f *testing.F) {
	for _, s := range jobSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		job, err := DecodeJob(bytes.NewReader(data))
		if err != nil {
			wantRefusal(t, err)
			return
		}
		spec, err := job.Check()
		if err != nil {
			wantRefusal(t, err)
			return
		}
		wantJobBounded(t, spec.Job)
		enc := encodeJSON(spec.Job)
		again, err := DecodeJob(bytes.NewReader(enc))
		if err != nil {
			t.Fatalf("re-decoding checked job %s: %v", enc, err)
		}
		spec2, err := again.Check()
		if err != nil {
			t.Fatalf("re-checking job %s: %v", enc, err)
		}
		if enc2 := encodeJSON(spec2.Job); !bytes.Equal(enc, enc2) {
			t.Fatalf("job changed in a round trip:\n %s\n %s", enc, enc2)
		}
		if len(spec.ShardParams) > spec.Job.ShardingTotalCount {
			t.Fatalf("%d shard parameters for %d shards", len(spec.ShardParams), spec.Job.ShardingTotalCount)
		}
	})
}

// FuzzDecodeJobUpdate: an update body never panics, names its job, and
// applied to a valid stored job yields a job that either checks within the
// bounds, keeping the name, or is refused.
func FuzzDecodeJobUpdate(f *testing.F) {
	for _, s := range jobSeeds {
		f.Add([]byte(s))
	}
	stored, err := Job{JobName: "j", AppName: "a", Cron: "0 0 0 * * ?", ShardingTotalCount: 4, Retries: 3, TimeoutSeconds: 60}.Check()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := DecodeJobUpdate(bytes.NewReader(data))
		if err != nil {
			wantRefusal(t, err)
			return
		}
		if u.JobName == "" {
			t.Fatalf("update without a job name accepted")
		}
		base := stored.Job
		base.JobName = u.JobName
		job, err := u.Apply(base)
		if err != nil {
			wantRefusal(t, err)
			return
		}
		if job.JobName != u.JobName {
			t.Fatalf("applying an update of %q made job %q", u.JobName, job.JobName)
		}
		spec, err := job.Check()
		if err != nil {
			wantRefusal(t, err)
			return
		}
		wantJobBounded(t, spec.Job)
	})
}

// FuzzDecodeApp: as FuzzDecodeJob, for apps.
func FuzzDecodeApp(f *testing.F) {
	for _, s := range appSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		app, err := DecodeApp(bytes.NewReader(data))
		if err != nil {
			wantRefusal(t, err)
			return
		}
		app, err = app.Check()
		if err != nil {
			wantRefusal(t, err)
			return
		}
		switch {
		case !inRange(app.CPUCount, MinCPUCount, MaxCPUCount) || !inRange(app.MemoryMB, MinMemoryMB, MaxMemoryMB):
			t.Fatalf("checked app asks for cpuCount %v, memoryMB %v", app.CPUCount, app.MemoryMB)
		case app.EventTraceSamplingCount < 0 || app.EventTraceSamplingCount > MaxEventTraceSamplingCount:
			t.Fatalf("checked app has eventTraceSamplingCount %d", app.EventTraceSamplingCount)
		case len(encodeJSON(app)) > MaxConfigBytes:
			t.Fatalf("checked app is %d bytes of JSON", len(encodeJSON(app)))
		}
		enc := encodeJSON(app)
		again, err := DecodeApp(bytes.NewReader(enc))
		if err == nil {
			again, err = again.Check()
		}
		if err != nil {
			t.Fatalf("re-decoding checked app %s: %v", enc, err)
		}
		if again != app {
			t.Fatalf("app changed in a round trip:\n %+v\n %+v", app, again)
		}
	})
}
