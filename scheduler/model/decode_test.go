package model

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTaskIDRoundTrips(t *testing.T) {
	fire := time.Date(2024, 5, 1, 10, 0, 0, 123_000_000, time.UTC)
	for _, job := range []string{"job", "a@-", "@x", "-@y", "日本"} {
		id := TaskID(job, fire, 3, 2)
		ref, err := ParseTaskID(id)
		if err != nil {
			t.Fatalf("ParseTaskID(%q): %v", id, err)
		}
		want := TaskRef{Job: job, FireTime: fire, Shard: 3, Attempt: 2}
		if ref != want {
			t.Errorf("ParseTaskID(%q) = %+v, want %+v", id, ref, want)
		}
		if ref.ID() != id {
			t.Errorf("TaskRef.ID() = %q, want %q", ref.ID(), id)
		}
	}
	if got := TaskID("j", fire, 0, 0); got != "j@-@1714557600123@-@0@-@0" {
		t.Errorf("TaskID = %q, want j@-@1714557600123@-@0@-@0", got)
	}
}

func TestParseTaskIDRefusesMalformedIDs(t *testing.T) {
	for _, id := range []string{"", "job", "job@-@1@-@0", "@-@1@-@0@-@0", "j@-@x@-@0@-@0", "j@-@1@-@-1@-@0", "j@-@1@-@0@-@a", "a@-@b@-@1@-@0@-@0"} {
		if ref, err := ParseTaskID(id); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseTaskID(%q) = %+v, %v; want an ErrInvalid", id, ref, err)
		}
	}
}

func decodeJobString(s string) (Job, error) { return DecodeJob(strings.NewReader(s)) }

func wantField(t *testing.T, err error, field string) {
	t.Helper()
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("error %v (%T), want a *ValidationError naming %q", err, err, field)
	}
	if verr.Field != field {
		t.Fatalf("error names field %q (%v), want %q", verr.Field, verr, field)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("errors.Is(%v, ErrInvalid) = false", err)
	}
}

func TestDecodeAppAppliesElasticJobCloudDefaults(t *testing.T) {
	app, err := DecodeApp(strings.NewReader(`{"appName":"a","appURL":"http://x/a.tgz","bootstrapScript":"bin/start.sh"}`))
	if err != nil {
		t.Fatal(err)
	}
	if app.CPUCount != 1 || app.MemoryMB != 128 || !app.AppCacheEnable {
		t.Fatalf("defaults: got cpu %v mem %v cache %v, want 1, 128, true", app.CPUCount, app.MemoryMB, app.AppCacheEnable)
	}
	app, err = DecodeApp(strings.NewReader(`{"appName":"a","appCacheEnable":false,"cpuCount":0.5,"memoryMB":64}`))
	if err != nil {
		t.Fatal(err)
	}
	if app.AppCacheEnable || app.CPUCount != 0.5 || app.MemoryMB != 64 {
		t.Fatalf("explicit values: got %+v", app)
	}
}

func TestDecodeAppRefusesNamingTheField(t *testing.T) {
	for _, tc := range []struct{ body, field string }{
		{`{"appName":""}`, "appName"},
		{`{"appName":"a/b"}`, "appName"},
		{`{"appName":"a","cpuCount":0}`, "cpuCount"},
		{`{"appName":"a","memoryMB":0.5}`, "memoryMB"},
		{`{"appName":"a","bogus":1}`, "bogus"},
		{`{"appName":"a","cpuCount":"x"}`, "cpuCount"},
		{`{"appName":5}`, "appName"},
		{`{"appName":"a"} {}`, "body"},
		{`{"appName":`, "body"},
		{``, "body"},
		{`{"appName":"a","bootstrapScript":"` + strings.Repeat("x", MaxConfigBytes) + `"}`, "bootstrapScript"},
	} {
		_, err := DecodeApp(strings.NewReader(tc.body))
		t.Run(tc.field, func(t *testing.T) { wantField(t, err, tc.field) })
	}
}

func TestDecodeJobAppliesDefaults(t *testing.T) {
	job, err := decodeJobString(`{"jobName":"j","appName":"a","cron":"0/5 * * * * ?"}`)
	if err != nil {
		t.Fatal(err)
	}
	want := Job{JobName: "j", AppName: "a", Cron: "0/5 * * * * ?", ShardingTotalCount: 1, CPUCount: 1, MemoryMB: 128,
		JobExecutionType: Transient, Misfire: true, ConcurrencyPolicy: ConcurrencyForbid, TimeZone: "UTC"}
	if job.JobName != want.JobName || job.ShardingTotalCount != 1 || job.CPUCount != 1 || job.MemoryMB != 128 ||
		job.JobExecutionType != Transient || !job.Misfire || job.Failover || job.ConcurrencyPolicy != ConcurrencyForbid ||
		job.TimeZone != "UTC" || job.Retries != 0 {
		t.Fatalf("got %+v, want %+v", job, want)
	}
	job, err = decodeJobString(`{"jobName":"j","appName":"a","cron":"0 0 0 * * ?","misfire":false,"failover":true,
		"shardingTotalCount":3,"shardingItemParameters":"0=a,2=c","jobExecutionType":"DAEMON","concurrencyPolicy":"ALLOW",
		"retries":2,"timeZone":"Europe/Berlin","jobType":"SCRIPT","jobProperties":{"k":"v"},"beanName":"b"}`)
	if err != nil {
		t.Fatal(err)
	}
	if job.Misfire || !job.Failover || job.ShardingTotalCount != 3 || job.JobExecutionType != Daemon || job.Retries != 2 ||
		job.TimeZone != "Europe/Berlin" || job.JobType != "SCRIPT" || string(job.JobProperties) != `{"k":"v"}` {
		t.Fatalf("explicit values not kept: %+v", job)
	}
}

func TestDecodeJobRefusesNamingTheField(t *testing.T) {
	base := `"appName":"a","cron":"0 0 0 * * ?"`
	for _, tc := range []struct{ name, body, field string }{
		{"no name", `{` + base + `}`, "jobName"},
		{"slash", `{"jobName":"a/b",` + base + `}`, "jobName"},
		{"separator", `{"jobName":"a@-@b",` + base + `}`, "jobName"},
		{"control", `{"jobName":"a\u0007b",` + base + `}`, "jobName"},
		{"dot", `{"jobName":"..",` + base + `}`, "jobName"},
		{"too long", `{"jobName":"` + strings.Repeat("j", MaxNameLength+1) + `",` + base + `}`, "jobName"},
		{"bad cron", `{"jobName":"j","appName":"a","cron":"0 0 0 * *"}`, "cron"},
		{"quartz L", `{"jobName":"j","appName":"a","cron":"0 0 0 L * ?"}`, "cron"},
		{"no cron", `{"jobName":"j","appName":"a"}`, "cron"},
		{"zero shards", `{"jobName":"j",` + base + `,"shardingTotalCount":0}`, "shardingTotalCount"},
		{"param out of range", `{"jobName":"j",` + base + `,"shardingTotalCount":2,"shardingItemParameters":"0=a,2=b"}`, "shardingItemParameters"},
		{"param duplicate", `{"jobName":"j",` + base + `,"shardingTotalCount":2,"shardingItemParameters":"0=a,0=b"}`, "shardingItemParameters"},
		{"param not int", `{"jobName":"j",` + base + `,"shardingItemParameters":"x=a"}`, "shardingItemParameters"},
		{"param no =", `{"jobName":"j",` + base + `,"shardingItemParameters":"0"}`, "shardingItemParameters"},
		{"cpu", `{"jobName":"j",` + base + `,"cpuCount":0.0001}`, "cpuCount"},
		{"memory", `{"jobName":"j",` + base + `,"memoryMB":0}`, "memoryMB"},
		{"type", `{"jobName":"j",` + base + `,"jobExecutionType":"SOMETIMES"}`, "jobExecutionType"},
		{"policy", `{"jobName":"j",` + base + `,"concurrencyPolicy":"MAYBE"}`, "concurrencyPolicy"},
		{"retries", `{"jobName":"j",` + base + `,"retries":-1}`, "retries"},
		{"zone", `{"jobName":"j",` + base + `,"timeZone":"Mars/Olympus"}`, "timeZone"},
		{"unknown field", `{"jobName":"j",` + base + `,"shardingCount":3}`, "shardingCount"},
		{"wrong type", `{"jobName":"j",` + base + `,"shardingTotalCount":"2"}`, "shardingTotalCount"},
		{"wrong type of an embedded field", `{"jobName":7,` + base + `}`, "jobName"},
		{"wrong type of a bool", `{"jobName":"j",` + base + `,"failover":"yes"}`, "failover"},
		{"oversized", `{"jobName":"j",` + base + `,"scriptCommandLine":"` + strings.Repeat("x", MaxConfigBytes) + `"}`, "scriptCommandLine"},
	} {
		_, err := decodeJobString(tc.body)
		t.Run(tc.name, func(t *testing.T) { wantField(t, err, tc.field) })
	}
}

func TestDecodeJobAcceptsADaemonWithoutCron(t *testing.T) {
	job, err := decodeJobString(`{"jobName":"d","appName":"a","jobExecutionType":"DAEMON"}`)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := job.Schedule(); err != nil || s != nil {
		t.Fatalf("Schedule() = %v, %v; want nil, nil", s, err)
	}
}

func TestShardingItemParameters(t *testing.T) {
	got, err := ParseShardingItemParameters(" 0 = Beijing , 2=Shanghai=East,1=", 3)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != "Beijing" || got[1] != "" || got[2] != "Shanghai=East" || len(got) != 3 {
		t.Fatalf("got %v", got)
	}
}

func TestDecodeJobAcceptsElasticJob3FieldsAndRefusesOthers(t *testing.T) {
	body := `{"jobName":"j","appName":"a","cron":"0/5 * * * * ?","monitorExecution":true,
		"maxTimeDiffSeconds":-1,"reconcileIntervalMinutes":10,"jobShardingStrategyType":"AVG",
		"jobErrorHandlerType":"LOG","props":{"k":"v"},"disabled":false,"overwrite":true}`
	job, err := DecodeJob(strings.NewReader(body))
	if err != nil {
		t.Fatalf("an Elastic-Job 3.x job file was refused: %v", err)
	}
	if job.JobName != "j" || job.Cron != "0/5 * * * * ?" {
		t.Fatalf("decoded %+v", job)
	}
	_, err = DecodeJob(strings.NewReader(`{"jobName":"j","appName":"a","cron":"* * * * * ?","sharding":3}`))
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(ve.Error(), "sharding") {
		t.Fatalf("an unknown field: got %v, want a ValidationError naming it", err)
	}
}
