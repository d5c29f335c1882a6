package model

import (
	"errors"
	"math"
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

// decodeJobString decodes and checks a job, as the API and the scheduler
// do between them.
func decodeJobString(s string) (Job, error) {
	job, err := DecodeJob(strings.NewReader(s))
	if err != nil {
		return Job{}, err
	}
	spec, err := job.Check()
	return spec.Job, err
}

// decodeAppString decodes and checks an app.
func decodeAppString(s string) (App, error) {
	app, err := DecodeApp(strings.NewReader(s))
	if err != nil {
		return App{}, err
	}
	return app.Check()
}

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
		{`{"appName":"a","cpuCount":-1}`, "cpuCount"},
		{`{"appName":"a","memoryMB":0.5}`, "memoryMB"},
		{`{"appName":"a","bogus":1}`, "bogus"},
		{`{"appName":"a","cpuCount":"x"}`, "cpuCount"},
		{`{"appName":5}`, "appName"},
		{`{"appName":"a"} {}`, "body"},
		{`{"appName":`, "body"},
		{``, "body"},
		{`{"appName":"a","bootstrapScript":"` + strings.Repeat("x", MaxConfigBytes) + `"}`, "bootstrapScript"},
	} {
		_, err := decodeAppString(tc.body)
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
		{"sixth friday", `{"jobName":"j","appName":"a","cron":"0 0 0 ? * 6#6"}`, "cron"},
		{"no cron", `{"jobName":"j","appName":"a"}`, "cron"},
		{"negative shards", `{"jobName":"j",` + base + `,"shardingTotalCount":-1}`, "shardingTotalCount"},
		{"param out of range", `{"jobName":"j",` + base + `,"shardingTotalCount":2,"shardingItemParameters":"0=a,2=b"}`, "shardingItemParameters"},
		{"param duplicate", `{"jobName":"j",` + base + `,"shardingTotalCount":2,"shardingItemParameters":"0=a,0=b"}`, "shardingItemParameters"},
		{"param not int", `{"jobName":"j",` + base + `,"shardingItemParameters":"x=a"}`, "shardingItemParameters"},
		{"param no =", `{"jobName":"j",` + base + `,"shardingItemParameters":"0"}`, "shardingItemParameters"},
		{"cpu", `{"jobName":"j",` + base + `,"cpuCount":0.0001}`, "cpuCount"},
		{"memory", `{"jobName":"j",` + base + `,"memoryMB":0.5}`, "memoryMB"},
		{"type", `{"jobName":"j",` + base + `,"jobExecutionType":"SOMETIMES"}`, "jobExecutionType"},
		{"policy", `{"jobName":"j",` + base + `,"concurrencyPolicy":"MAYBE"}`, "concurrencyPolicy"},
		{"retries", `{"jobName":"j",` + base + `,"retries":-1}`, "retries"},
		{"negative timeout", `{"jobName":"j",` + base + `,"timeoutSeconds":-1}`, "timeoutSeconds"},
		{"fractional timeout", `{"jobName":"j",` + base + `,"timeoutSeconds":1.5}`, "timeoutSeconds"},
		{"timeout as a string", `{"jobName":"j",` + base + `,"timeoutSeconds":"30s"}`, "timeoutSeconds"},
		{"zone", `{"jobName":"j",` + base + `,"timeZone":"Mars/Olympus"}`, "timeZone"},
		{"constraint value", `{"jobName":"j",` + base + `,"constraints":{"zone":"a b"}}`, "constraints"},
		{"constraint key", `{"jobName":"j",` + base + `,"constraints":{"-zone":"a"}}`, "constraints"},
		{"constraints not an object", `{"jobName":"j",` + base + `,"constraints":"zone=a"}`, "constraints"},
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
	if spec, err := job.Check(); err != nil || spec.Schedule != nil {
		t.Fatalf("Check() = %v, %v; want no schedule", spec.Schedule, err)
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

func TestZeroMeansTheDefaultForGoAndJSONCallers(t *testing.T) {
	fromGo, err := Job{JobName: "j", AppName: "a", Cron: "0 0 0 * * ?"}.Check()
	if err != nil {
		t.Fatalf("a Go caller's job without cpuCount, memoryMB, shardingTotalCount: %v", err)
	}
	fromJSON, err := decodeJobString(`{"jobName":"j","appName":"a","cron":"0 0 0 * * ?","misfire":false}`)
	if err != nil {
		t.Fatal(err)
	}
	if fromGo.Job.CPUCount != fromJSON.CPUCount || fromGo.Job.MemoryMB != fromJSON.MemoryMB ||
		fromGo.Job.ShardingTotalCount != fromJSON.ShardingTotalCount || fromGo.Job.TimeZone != fromJSON.TimeZone {
		t.Fatalf("Go caller got %+v, JSON caller %+v", fromGo.Job, fromJSON)
	}
	app, err := App{AppName: "a"}.Check()
	if err != nil || app.CPUCount != DefaultAppCPUCount || app.MemoryMB != DefaultAppMemoryMB {
		t.Fatalf("App{}.Check() = %+v, %v", app, err)
	}
}

func TestCheckParsesTheCronAndShardParametersOnce(t *testing.T) {
	spec, err := Job{JobName: "j", AppName: "a", Cron: "0 0 12 ? * 6#3", ShardingTotalCount: 2,
		ShardingItemParameters: "1=b"}.Check()
	if err != nil {
		t.Fatal(err)
	}
	if spec.Schedule == nil || spec.ShardParams[1] != "b" {
		t.Fatalf("spec = %+v", spec)
	}
}

func TestUpdateKeepsTheFieldsItLeavesOut(t *testing.T) {
	stored, err := decodeAppString(`{"appName":"foo_app","appURL":"http://x/foo.tgz","bootstrapScript":"bin/start.sh","cpuCount":0.5}`)
	if err != nil {
		t.Fatal(err)
	}
	u, err := DecodeAppUpdate(strings.NewReader(`{"appName":"foo_app","appCacheEnable":false}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := u.Apply(stored)
	if err != nil {
		t.Fatal(err)
	}
	if got.BootstrapScript != "bin/start.sh" || got.AppURL != "http://x/foo.tgz" || got.CPUCount != 0.5 || got.AppCacheEnable {
		t.Fatalf("updated app = %+v", got)
	}
	job, err := decodeJobString(`{"jobName":"j","appName":"a","cron":"0 0 0 * * ?","shardingTotalCount":3,"retries":2}`)
	if err != nil {
		t.Fatal(err)
	}
	ju, err := DecodeJobUpdate(strings.NewReader(`{"jobName":"j","cron":"0 0 1 * * ?"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ju.Apply(job); err != nil || got.Cron != "0 0 1 * * ?" || got.ShardingTotalCount != 3 || got.Retries != 2 {
		t.Fatalf("updated job = %+v, %v", got, err)
	}
	for _, body := range []string{`{"cron":"0 0 1 * * ?"}`, `{"jobName":"j","bogus":1}`, `{"jobName":"j","retries":"x"}`, ``} {
		if _, err := DecodeJobUpdate(strings.NewReader(body)); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeJobUpdate(%q) = %v, want ErrInvalid", body, err)
		}
	}
	if _, err := DecodeAppUpdate(strings.NewReader(`{"appCacheEnable":true}`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("an app update without appName: %v, want ErrInvalid", err)
	}
}

// Constraints given in an update replace the stored ones (JSON decoding into
// a map would add to them); left out, they stay.
func TestJobUpdateReplacesConstraints(t *testing.T) {
	job, err := decodeJobString(`{"jobName":"j","appName":"a","cron":"0 0 0 * * ?","constraints":{"zone":"a","rack":"r1"}}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		body string
		want string
	}{
		{`{"jobName":"j","constraints":{"zone":"b"}}`, "zone=b"},
		{`{"jobName":"j","constraints":{}}`, ""},
		{`{"jobName":"j","cron":"0 0 1 * * ?"}`, "rack=r1,zone=a"},
	} {
		u, err := DecodeJobUpdate(strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := u.Apply(job)
		if err != nil || FormatLabels(got.Constraints) != tc.want {
			t.Errorf("%s: constraints %v, %v; want %q", tc.body, got.Constraints, err, tc.want)
		}
		if FormatLabels(job.Constraints) != "rack=r1,zone=a" {
			t.Fatalf("%s changed the stored job's constraints to %v", tc.body, job.Constraints)
		}
	}
}

// timeoutSeconds is a job field like the others: left out it is no timeout
// (and not encoded, so jobs without one store as before), set it is kept,
// an update sets or clears it, and one that leaves it out keeps it.
func TestTimeoutSecondsDecodesUpdatesAndConverts(t *testing.T) {
	const base = `"appName":"a","cron":"0 0 0 * * ?"`
	job, err := decodeJobString(`{"jobName":"j",` + base + `}`)
	if err != nil {
		t.Fatal(err)
	}
	if job.TimeoutSeconds != 0 || job.Timeout() != 0 {
		t.Fatalf("no timeoutSeconds: got %d (%v), want 0", job.TimeoutSeconds, job.Timeout())
	}
	if enc := string(encodeJSON(job)); strings.Contains(enc, "timeoutSeconds") {
		t.Errorf("a job without a timeout encodes it: %s", enc)
	}
	job, err = decodeJobString(`{"jobName":"j",` + base + `,"timeoutSeconds":30}`)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := job.Check()
	if err != nil {
		t.Fatal(err)
	}
	if spec.Job.TimeoutSeconds != 30 || spec.Job.Timeout() != 30*time.Second {
		t.Fatalf("timeoutSeconds 30: got %d (%v)", spec.Job.TimeoutSeconds, spec.Job.Timeout())
	}
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{"jobName":"j","cron":"0 0 1 * * ?"}`, 30},
		{`{"jobName":"j","timeoutSeconds":90}`, 90},
		{`{"jobName":"j","timeoutSeconds":0}`, 0},
	} {
		u, err := DecodeJobUpdate(strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := u.Apply(spec.Job)
		if err != nil || got.TimeoutSeconds != tc.want {
			t.Errorf("%s: timeoutSeconds %d, %v; want %d", tc.body, got.TimeoutSeconds, err, tc.want)
		}
	}
	u, err := DecodeJobUpdate(strings.NewReader(`{"jobName":"j","timeoutSeconds":-5}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := u.Apply(spec.Job)
	if err == nil {
		_, err = got.Check()
	}
	wantField(t, err, "timeoutSeconds")
	// A Go caller's unchecked job never yields a duration out of bounds.
	if d := (Job{TimeoutSeconds: -1}).Timeout(); d != 0 {
		t.Errorf("Timeout of -1s = %v, want 0", d)
	}
	if d := (Job{TimeoutSeconds: math.MaxInt}).Timeout(); d != MaxTimeoutSeconds*time.Second {
		t.Errorf("Timeout of MaxInt s = %v, want %v", d, MaxTimeoutSeconds*time.Second)
	}
}
