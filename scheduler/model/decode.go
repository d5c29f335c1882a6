package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/hasched/hasched/scheduler/cron"
)

// MaxConfigBytes is the largest app or job configuration, as JSON.
const MaxConfigBytes = 64 << 10

// Defaults applied by DecodeApp and DecodeJob to fields missing from the
// JSON (Elastic-Job-Cloud's where it has one).
const (
	DefaultAppCPUCount  = 1.0
	DefaultAppMemoryMB  = 128.0
	DefaultJobCPUCount  = 1.0
	DefaultJobMemoryMB  = 128.0
	DefaultTimeZone     = "UTC"
	MinCPUCount         = 0.001
	MinMemoryMB         = 1.0
	DefaultConcurrency  = ConcurrencyForbid
	DefaultShardingItem = 1
)

// Upper bounds of the numbers a user sends. Every one is refused past its
// bound by Check, with a *ValidationError that also matches ErrOutOfBounds:
// a number a scheduler acts on (a loop per shard, a relaunch per retry, a
// resource request) must not be able to exhaust the scheduler, and a stored
// configuration past a bound is quarantined rather than loaded.
const (
	// MaxShardingTotalCount bounds shardingTotalCount: the launcher makes
	// one record, one store node and one task per shard per fire.
	MaxShardingTotalCount = 1000
	// MaxRetries bounds retries: each one relaunches a failed shard (after
	// a back-off that doubles per attempt).
	MaxRetries = 20
	// MaxCPUCount and MaxMemoryMB bound what a task or an executor asks
	// for (256 cores, 1 TiB): larger requests are mistakes no machine
	// fits, and floats past them reach Mesos offers and process limits.
	MaxCPUCount = 256.0
	MaxMemoryMB = 1 << 20
	// MaxTimeoutSeconds bounds timeoutSeconds: 7 days, far beyond any
	// batch run; a task meant to run for longer is a DAEMON without one.
	MaxTimeoutSeconds = 7 * 24 * 60 * 60
	// MaxEventTraceSamplingCount bounds an app's eventTraceSamplingCount,
	// kept for Elastic-Job-Cloud compatibility only.
	MaxEventTraceSamplingCount = 1_000_000
)

// maxReadBytes bounds what the decoders read at all; past MaxConfigBytes a
// configuration is refused anyway, naming its largest field.
const maxReadBytes = 1 << 20

// NewApp returns an app with Elastic-Job-Cloud's defaults: cpuCount 1,
// memoryMB 128, appCacheEnable true. JSON is decoded onto it, so a field the
// JSON leaves out keeps its default.
func NewApp() App {
	return App{CPUCount: DefaultAppCPUCount, MemoryMB: DefaultAppMemoryMB, AppCacheEnable: true}
}

// NewJob returns a job with the defaults: shardingTotalCount 1, cpuCount
// 1, memoryMB 128, jobExecutionType TRANSIENT, misfire true, failover false,
// concurrencyPolicy FORBID, retries 0, timeZone UTC.
func NewJob() Job {
	j := Job{Misfire: true}
	j.ApplyDefaults()
	return j
}

// DecodeApp reads an app as Elastic-Job-Cloud's JSON onto NewApp's
// defaults. It checks the JSON only (unknown fields, types); Check
// validates. Every refusal is a *ValidationError naming the field.
func DecodeApp(r io.Reader) (App, error) {
	app := NewApp()
	err := decodeStrict(r, &app)
	return app, err
}

// DecodeJob reads a job as Elastic-Job-Cloud's JSON onto NewJob's
// defaults, like DecodeApp.
func DecodeJob(r io.Reader) (Job, error) {
	job := NewJob()
	err := decodeStrict(r, &job)
	return job, err
}

// AppUpdate is the body of an app update: the fields it has replace the
// stored app's, the others keep their stored values (Elastic-Job-Cloud's
// documented `PUT /api/app {"appName":…,"appCacheEnable":true}` keeps the
// app's bootstrapScript).
type AppUpdate struct {
	AppName string
	body    []byte
}

// JobUpdate is the body of a job update, like AppUpdate.
type JobUpdate struct {
	JobName string
	body    []byte
}

// DecodeAppUpdate reads an update body and checks its JSON; the name must
// be there.
func DecodeAppUpdate(r io.Reader) (AppUpdate, error) {
	body, err := readBody(r)
	if err != nil {
		return AppUpdate{}, err
	}
	var probe App
	if err := decodeStrict(bytes.NewReader(body), &probe); err != nil {
		return AppUpdate{}, err
	}
	if probe.AppName == "" {
		return AppUpdate{}, &ValidationError{Field: "appName", Reason: "is missing; it names the app to update"}
	}
	return AppUpdate{AppName: probe.AppName, body: body}, nil
}

// DecodeJobUpdate reads an update body, like DecodeAppUpdate.
func DecodeJobUpdate(r io.Reader) (JobUpdate, error) {
	body, err := readBody(r)
	if err != nil {
		return JobUpdate{}, err
	}
	var probe Job
	if err := decodeStrict(bytes.NewReader(body), &probe); err != nil {
		return JobUpdate{}, err
	}
	if probe.JobName == "" {
		return JobUpdate{}, &ValidationError{Field: "jobName", Reason: "is missing; it names the job to update"}
	}
	return JobUpdate{JobName: probe.JobName, body: body}, nil
}

// ReplaceApp is the update that replaces every field of a stored app with
// app's (those that encode as JSON: the ones with omitempty keep their
// stored values when empty).
func ReplaceApp(app App) AppUpdate {
	return AppUpdate{AppName: app.AppName, body: encodeJSON(app)}
}

// ReplaceJob is ReplaceApp for jobs.
func ReplaceJob(job Job) JobUpdate {
	return JobUpdate{JobName: job.JobName, body: encodeJSON(job)}
}

// Apply returns stored with the update's fields; the result is not checked.
func (u AppUpdate) Apply(stored App) (App, error) {
	err := decodeStrict(bytes.NewReader(u.body), &stored)
	return stored, err
}

// Apply returns stored with the update's fields; the result is not checked.
func (u JobUpdate) Apply(stored Job) (Job, error) {
	// Decoding into a map adds to it: constraints given replace the stored
	// ones instead. Decoding into a slice writes into its backing array,
	// which the caller's stored job shares: alertReceivers given get a new
	// one.
	var given struct {
		Constraints    json.RawMessage `json:"constraints"`
		AlertReceivers json.RawMessage `json:"alertReceivers"`
	}
	if json.Unmarshal(u.body, &given) == nil {
		if given.Constraints != nil {
			stored.Constraints = nil
		}
		if given.AlertReceivers != nil {
			stored.AlertReceivers = nil
		}
	}
	err := decodeStrict(bytes.NewReader(u.body), &stored)
	return stored, err
}

func encodeJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// App and Job always marshal: json.RawMessage fields are checked
		// on decode and by Check.
		panic(fmt.Sprintf("model: encode %T: %v", v, err))
	}
	return b
}

// elasticJob3Fields are Elastic-Job 3.x fields with no meaning here:
// accepted so that its users' job files load, and dropped.
type elasticJob3Fields struct {
	MonitorExecution              json.RawMessage `json:"monitorExecution"`
	MaxTimeDiffSeconds            json.RawMessage `json:"maxTimeDiffSeconds"`
	ReconcileIntervalMinutes      json.RawMessage `json:"reconcileIntervalMinutes"`
	JobShardingStrategyType       json.RawMessage `json:"jobShardingStrategyType"`
	JobExecutorServiceHandlerType json.RawMessage `json:"jobExecutorServiceHandlerType"`
	JobErrorHandlerType           json.RawMessage `json:"jobErrorHandlerType"`
	Props                         json.RawMessage `json:"props"`
	Disabled                      json.RawMessage `json:"disabled"`
	Overwrite                     json.RawMessage `json:"overwrite"`
}

func readBody(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxReadBytes+1))
	if err != nil {
		return nil, &ValidationError{Field: "body", Reason: fmt.Sprintf("read: %v", err)}
	}
	if len(data) > maxReadBytes {
		return nil, &ValidationError{Field: "body", Reason: fmt.Sprintf("larger than %d bytes", maxReadBytes)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &ValidationError{Field: "body", Reason: "empty; expected a JSON object"}
	}
	return data, nil
}

// decodeStrict decodes exactly one JSON object onto *App or *Job, keeping
// the fields it does not name, refusing unknown fields and trailing data;
// errors are *ValidationError. A job also takes elasticJob3Fields.
func decodeStrict(r io.Reader, v any) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	type appAlias App
	type jobAlias Job
	var target any
	switch x := v.(type) {
	case *App:
		target = (*appAlias)(x)
	case *Job:
		target = &struct {
			*jobAlias
			elasticJob3Fields
		}{jobAlias: (*jobAlias)(x)}
	default:
		panic(fmt.Sprintf("model: decode into %T", v))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(target); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &ValidationError{Field: "body", Reason: "unexpected data after the JSON object"}
	}
	return nil
}

// jsonError names the field a decoding error is about, where it can.
func jsonError(err error) error {
	var (
		typErr *json.UnmarshalTypeError
		synErr *json.SyntaxError
	)
	switch {
	case errors.As(err, &typErr):
		// The decoders embed an alias of App or Job, which encoding/json
		// names in the field's path.
		field := strings.TrimPrefix(typErr.Field, "jobAlias.")
		if field == "" {
			field = "body"
		}
		return &ValidationError{Field: field, Reason: fmt.Sprintf("expected a JSON %s, got %s", typErr.Type, typErr.Value)}
	case errors.As(err, &synErr):
		return &ValidationError{Field: "body", Reason: fmt.Sprintf("malformed JSON at byte %d: %v", synErr.Offset, synErr)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &ValidationError{Field: "body", Reason: "malformed JSON: unexpected end"}
	}
	// encoding/json reports unknown fields only as text.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if f, uerr := strconv.Unquote(name); uerr == nil {
			name = f
		}
		return &ValidationError{Field: name, Reason: "unknown field"}
	}
	return &ValidationError{Field: "body", Reason: err.Error()}
}

// Check fills in the defaults of the app's zero fields where zero is not
// valid (cpuCount, memoryMB: a Go caller's App{} gets what a JSON caller
// who leaves them out gets) and validates it without the store.
func (a App) Check() (App, error) {
	if a.CPUCount == 0 {
		a.CPUCount = DefaultAppCPUCount
	}
	if a.MemoryMB == 0 {
		a.MemoryMB = DefaultAppMemoryMB
	}
	return a, a.validate()
}

func (a App) validate() error {
	if err := ValidateName("appName", a.AppName, false); err != nil {
		return err
	}
	if err := checkResources(a.CPUCount, a.MemoryMB); err != nil {
		return err
	}
	if a.EventTraceSamplingCount < 0 {
		return &ValidationError{Field: "eventTraceSamplingCount", Reason: "is negative"}
	}
	if a.EventTraceSamplingCount > MaxEventTraceSamplingCount {
		return outOfBounds("eventTraceSamplingCount", a.EventTraceSamplingCount, MaxEventTraceSamplingCount)
	}
	if err := checkAppChecksum(a.AppChecksum); err != nil {
		return err
	}
	if err := checkImage(a.Image); err != nil {
		return err
	}
	return checkSize(a, map[string]int{
		"appURL":          len(a.AppURL),
		"bootstrapScript": len(a.BootstrapScript),
	})
}

// ApplyDefaults fills in the defaults of the fields whose zero value is not
// valid, so that a Go caller's Job{} and a JSON caller who leaves the field
// out get the same: shardingTotalCount, cpuCount, memoryMB,
// jobExecutionType, concurrencyPolicy, timeZone. (misfire's default, true,
// only a JSON caller can get: false is meaningful.)
func (j *Job) ApplyDefaults() {
	if j.ShardingTotalCount == 0 {
		j.ShardingTotalCount = DefaultShardingItem
	}
	if j.CPUCount == 0 {
		j.CPUCount = DefaultJobCPUCount
	}
	if j.MemoryMB == 0 {
		j.MemoryMB = DefaultJobMemoryMB
	}
	if j.JobExecutionType == "" {
		j.JobExecutionType = Transient
	}
	if j.ConcurrencyPolicy == "" {
		j.ConcurrencyPolicy = DefaultConcurrency
	}
	if j.TimeZone == "" {
		j.TimeZone = DefaultTimeZone
	}
}

// JobSpec is a job that passed Check: its defaults applied, every field
// valid, its cron parsed and its shard parameters read, once.
type JobSpec struct {
	Job Job
	// Schedule is nil for a DAEMON job without a cron.
	Schedule *cron.Schedule
	// ShardParams are the shardingItemParameters by shard.
	ShardParams map[int]string
}

// Check applies the job's defaults and validates it without the store (so
// not whether its app exists or whether it has a command: see
// ValidateAgainstApp). It is the one validation of a job.
func (j Job) Check() (JobSpec, error) {
	j.ApplyDefaults()
	sched, params, err := j.validate()
	if err != nil {
		return JobSpec{}, err
	}
	return JobSpec{Job: j, Schedule: sched, ShardParams: params}, nil
}

func (j Job) validate() (*cron.Schedule, map[int]string, error) {
	if err := ValidateName("jobName", j.JobName, true); err != nil {
		return nil, nil, err
	}
	if err := ValidateName("appName", j.AppName, false); err != nil {
		return nil, nil, err
	}
	switch j.JobExecutionType {
	case Transient, Daemon:
	default:
		return nil, nil, &ValidationError{Field: "jobExecutionType", Reason: fmt.Sprintf("%q is neither TRANSIENT nor DAEMON", j.JobExecutionType)}
	}
	switch j.ConcurrencyPolicy {
	case ConcurrencyAllow, ConcurrencyForbid, ConcurrencyReplace:
	default:
		return nil, nil, &ValidationError{Field: "concurrencyPolicy", Reason: fmt.Sprintf("%q is none of ALLOW, FORBID, REPLACE", j.ConcurrencyPolicy)}
	}
	if len(j.JobProperties) > 0 && !json.Valid(j.JobProperties) {
		return nil, nil, &ValidationError{Field: "jobProperties", Reason: "is not valid JSON"}
	}
	// The size first: the cron, the time zone and the shard parameters
	// are parsed next, and a Go caller's strings have no reader's bound.
	if err := checkSize(j, map[string]int{
		"cron":                   len(j.Cron),
		"timeZone":               len(j.TimeZone),
		"shardingItemParameters": len(j.ShardingItemParameters),
		"jobParameter":           len(j.JobParameter),
		"scriptCommandLine":      len(j.ScriptCommandLine),
		"description":            len(j.Description),
		"jobProperties":          len(j.JobProperties),
		"jobClass":               len(j.JobClass),
		"jobType":                len(j.JobType),
		"beanName":               len(j.BeanName),
		"applicationContext":     len(j.AppContext),
	}); err != nil {
		return nil, nil, err
	}
	sched, err := j.schedule()
	if err != nil {
		return nil, nil, err
	}
	if j.ShardingTotalCount < 1 {
		return nil, nil, &ValidationError{Field: "shardingTotalCount", Reason: fmt.Sprintf("%d is below 1", j.ShardingTotalCount)}
	}
	if j.ShardingTotalCount > MaxShardingTotalCount {
		return nil, nil, outOfBounds("shardingTotalCount", j.ShardingTotalCount, MaxShardingTotalCount)
	}
	params, err := ParseShardingItemParameters(j.ShardingItemParameters, j.ShardingTotalCount)
	if err != nil {
		return nil, nil, err
	}
	if err := checkResources(j.CPUCount, j.MemoryMB); err != nil {
		return nil, nil, err
	}
	if j.Retries < 0 {
		return nil, nil, &ValidationError{Field: "retries", Reason: fmt.Sprintf("%d is negative", j.Retries)}
	}
	if j.Retries > MaxRetries {
		return nil, nil, outOfBounds("retries", j.Retries, MaxRetries)
	}
	if err := CheckLabels("constraints", j.Constraints); err != nil {
		return nil, nil, err
	}
	if err := CheckAlertReceivers("alertReceivers", j.AlertReceivers); err != nil {
		return nil, nil, err
	}
	if j.TimeoutSeconds < 0 {
		return nil, nil, &ValidationError{Field: "timeoutSeconds", Reason: fmt.Sprintf("%d is negative; 0 is no timeout", j.TimeoutSeconds)}
	}
	if j.TimeoutSeconds > MaxTimeoutSeconds {
		return nil, nil, outOfBounds("timeoutSeconds", j.TimeoutSeconds, MaxTimeoutSeconds)
	}
	return sched, params, nil
}

// Timeout is how long one of the job's tasks may run (executor.Task's
// Timeout); 0 is none. A negative timeoutSeconds, which Check refuses,
// is none too, and one past MaxTimeoutSeconds is capped there, so that
// an unchecked job never hands an executor a duration out of bounds.
func (j Job) Timeout() time.Duration {
	s := min(max(j.TimeoutSeconds, 0), MaxTimeoutSeconds)
	return time.Duration(s) * time.Second
}

// Location is the job's time zone.
func (j Job) Location() (*time.Location, error) {
	name := j.TimeZone
	if name == "" {
		name = DefaultTimeZone
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, &ValidationError{Field: "timeZone", Reason: fmt.Sprintf("%q is not an IANA time zone: %v", j.TimeZone, err)}
	}
	return loc, nil
}

// schedule parses the job's cron in its time zone. A DAEMON job needs no
// cron (it is kept running); its schedule is nil then.
func (j Job) schedule() (*cron.Schedule, error) {
	loc, err := j.Location()
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(j.Cron) == "" {
		if j.JobExecutionType == Daemon {
			return nil, nil
		}
		return nil, &ValidationError{Field: "cron", Reason: "is empty"}
	}
	s, err := cron.Parse(j.Cron, loc)
	if err != nil {
		return nil, &ValidationError{Field: "cron", Reason: err.Error()}
	}
	return s, nil
}

// ParseShardingItemParameters reads "0=a,1=b": items are integers in
// [0, total), each at most once; a value runs to the next comma.
func ParseShardingItemParameters(s string, total int) (map[int]string, error) {
	out := map[int]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, item := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			return nil, &ValidationError{Field: "shardingItemParameters", Reason: fmt.Sprintf("item %q is not item=parameter", strings.TrimSpace(item))}
		}
		n, err := strconv.Atoi(strings.TrimSpace(k))
		if err != nil {
			return nil, &ValidationError{Field: "shardingItemParameters", Reason: fmt.Sprintf("item %q is not an integer", strings.TrimSpace(k))}
		}
		if n < 0 || n >= total {
			return nil, &ValidationError{Field: "shardingItemParameters", Reason: fmt.Sprintf("item %d is outside [0, %d) (shardingTotalCount)", n, total)}
		}
		if _, dup := out[n]; dup {
			return nil, &ValidationError{Field: "shardingItemParameters", Reason: fmt.Sprintf("item %d is given twice", n)}
		}
		out[n] = strings.TrimSpace(v)
	}
	return out, nil
}

func checkResources(cpu, mem float64) error {
	if math.IsNaN(cpu) || cpu < MinCPUCount {
		return &ValidationError{Field: "cpuCount", Reason: fmt.Sprintf("%v is below %v", cpu, MinCPUCount)}
	}
	if cpu > MaxCPUCount { // +Inf included
		return outOfBounds("cpuCount", cpu, MaxCPUCount)
	}
	if math.IsNaN(mem) || mem < MinMemoryMB {
		return &ValidationError{Field: "memoryMB", Reason: fmt.Sprintf("%v is below %v", mem, MinMemoryMB)}
	}
	if mem > MaxMemoryMB {
		return outOfBounds("memoryMB", mem, MaxMemoryMB)
	}
	return nil
}

// outOfBounds refuses a number past its upper bound.
func outOfBounds[N int | float64](field string, got, bound N) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf("%v is above %v", got, bound), Err: ErrOutOfBounds}
}

// checkSize refuses a configuration whose JSON is larger than
// MaxConfigBytes, naming its largest field.
func checkSize(v any, fields map[string]int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return &ValidationError{Field: "body", Reason: err.Error()}
	}
	if len(b) <= MaxConfigBytes {
		return nil
	}
	largest, size := "body", 0
	for f, n := range fields {
		if n > size || n == size && f < largest {
			largest, size = f, n
		}
	}
	return &ValidationError{Field: largest, Reason: fmt.Sprintf("makes the configuration %d bytes of JSON, at most %d", len(b), MaxConfigBytes)}
}

// Command is what a job's tasks run: its scriptCommandLine, or its app's
// bootstrapScript.
func Command(job Job, app App) string {
	if job.ScriptCommandLine != "" {
		return job.ScriptCommandLine
	}
	return app.BootstrapScript
}

// ValidateAgainstApp is the part of a job's validation that needs its app.
func ValidateAgainstApp(job Job, app App, appFound bool) error {
	if !appFound {
		return &ValidationError{Field: "appName", Reason: fmt.Sprintf("app %q is not registered", job.AppName)}
	}
	if strings.TrimSpace(Command(job, app)) == "" {
		return &ValidationError{Field: "scriptCommandLine", Reason: fmt.Sprintf("is empty and app %q has no bootstrapScript", job.AppName)}
	}
	return nil
}
