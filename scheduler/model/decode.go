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

// maxReadBytes bounds what the decoders read at all; past MaxConfigBytes a
// configuration is refused anyway, naming its largest field.
const maxReadBytes = 1 << 20

// DecodeApp reads an app as Elastic-Job-Cloud's JSON, applies the defaults
// (cpuCount 1, memoryMB 128, appCacheEnable true) and checks what needs no
// store. Every refusal is a *ValidationError naming the field.
func DecodeApp(r io.Reader) (App, error) {
	type appAlias App
	var in struct {
		appAlias
		CPUCount       *float64 `json:"cpuCount"`
		MemoryMB       *float64 `json:"memoryMB"`
		AppCacheEnable *bool    `json:"appCacheEnable"`
	}
	if err := decodeStrict(r, &in); err != nil {
		return App{}, err
	}
	app := App(in.appAlias)
	app.CPUCount = orDefault(in.CPUCount, DefaultAppCPUCount)
	app.MemoryMB = orDefault(in.MemoryMB, DefaultAppMemoryMB)
	app.AppCacheEnable = orDefault(in.AppCacheEnable, true)
	if err := app.Validate(); err != nil {
		return App{}, err
	}
	return app, nil
}

// DecodeJob reads a job as Elastic-Job-Cloud's JSON, applies the defaults
// (shardingTotalCount 1, cpuCount 1, memoryMB 128, jobExecutionType
// TRANSIENT, misfire true, failover false, concurrencyPolicy FORBID, retries
// 0, timeZone UTC) and checks what needs no store: that its app exists and
// that it has a command are checked when it is registered. Every refusal is
// a *ValidationError naming the field.
func DecodeJob(r io.Reader) (Job, error) {
	type jobAlias Job
	var in struct {
		jobAlias
		ShardingTotalCount *int     `json:"shardingTotalCount"`
		CPUCount           *float64 `json:"cpuCount"`
		MemoryMB           *float64 `json:"memoryMB"`
		Misfire            *bool    `json:"misfire"`
		// Elastic-Job 3.x fields with no meaning here: accepted so that
		// its users' job files load, and dropped.
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
	if err := decodeStrict(r, &in); err != nil {
		return Job{}, err
	}
	job := Job(in.jobAlias)
	job.ShardingTotalCount = orDefault(in.ShardingTotalCount, DefaultShardingItem)
	job.CPUCount = orDefault(in.CPUCount, DefaultJobCPUCount)
	job.MemoryMB = orDefault(in.MemoryMB, DefaultJobMemoryMB)
	job.Misfire = orDefault(in.Misfire, true)
	job.ApplyDefaults()
	if err := job.Validate(); err != nil {
		return Job{}, err
	}
	return job, nil
}

func orDefault[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// decodeStrict decodes exactly one JSON object into v, refusing unknown
// fields and trailing data; errors are *ValidationError.
func decodeStrict(r io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, maxReadBytes+1))
	if err != nil {
		return &ValidationError{Field: "body", Reason: fmt.Sprintf("read: %v", err)}
	}
	if len(data) > maxReadBytes {
		return &ValidationError{Field: "body", Reason: fmt.Sprintf("larger than %d bytes", maxReadBytes)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &ValidationError{Field: "body", Reason: "empty; expected a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
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
		field := strings.TrimPrefix(strings.TrimPrefix(typErr.Field, "appAlias."), "jobAlias.")
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

// Validate checks an app without the store.
func (a App) Validate() error {
	if err := ValidateName("appName", a.AppName, false); err != nil {
		return err
	}
	if err := checkResources(a.CPUCount, a.MemoryMB); err != nil {
		return err
	}
	if a.EventTraceSamplingCount < 0 {
		return &ValidationError{Field: "eventTraceSamplingCount", Reason: "is negative"}
	}
	return checkSize(a, map[string]int{
		"appURL":          len(a.AppURL),
		"bootstrapScript": len(a.BootstrapScript),
	})
}

// ApplyDefaults fills in the defaults of fields whose zero value is not
// meaningful: jobExecutionType, concurrencyPolicy, timeZone.
func (j *Job) ApplyDefaults() {
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

// Validate checks a job without the store (so not whether its app exists or
// whether it has a command: see Service.RegisterJob).
func (j Job) Validate() error {
	if err := ValidateName("jobName", j.JobName, true); err != nil {
		return err
	}
	if err := ValidateName("appName", j.AppName, false); err != nil {
		return err
	}
	switch j.JobExecutionType {
	case Transient, Daemon:
	default:
		return &ValidationError{Field: "jobExecutionType", Reason: fmt.Sprintf("%q is neither TRANSIENT nor DAEMON", j.JobExecutionType)}
	}
	switch j.ConcurrencyPolicy {
	case ConcurrencyAllow, ConcurrencyForbid, ConcurrencyReplace:
	default:
		return &ValidationError{Field: "concurrencyPolicy", Reason: fmt.Sprintf("%q is none of ALLOW, FORBID, REPLACE", j.ConcurrencyPolicy)}
	}
	if _, err := j.Schedule(); err != nil {
		return err
	}
	if j.ShardingTotalCount < 1 {
		return &ValidationError{Field: "shardingTotalCount", Reason: fmt.Sprintf("%d is below 1", j.ShardingTotalCount)}
	}
	if _, err := ParseShardingItemParameters(j.ShardingItemParameters, j.ShardingTotalCount); err != nil {
		return err
	}
	if err := checkResources(j.CPUCount, j.MemoryMB); err != nil {
		return err
	}
	if j.Retries < 0 {
		return &ValidationError{Field: "retries", Reason: fmt.Sprintf("%d is negative", j.Retries)}
	}
	if len(j.JobProperties) > 0 && !json.Valid(j.JobProperties) {
		return &ValidationError{Field: "jobProperties", Reason: "is not valid JSON"}
	}
	return checkSize(j, map[string]int{
		"cron":                   len(j.Cron),
		"shardingItemParameters": len(j.ShardingItemParameters),
		"jobParameter":           len(j.JobParameter),
		"scriptCommandLine":      len(j.ScriptCommandLine),
		"description":            len(j.Description),
		"jobProperties":          len(j.JobProperties),
		"jobClass":               len(j.JobClass),
		"jobType":                len(j.JobType),
		"beanName":               len(j.BeanName),
		"applicationContext":     len(j.AppContext),
	})
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

// Schedule parses the job's cron in its time zone. A DAEMON job needs no
// cron (it is kept running); its schedule is nil then.
func (j Job) Schedule() (*cron.Schedule, error) {
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
	if math.IsNaN(mem) || mem < MinMemoryMB {
		return &ValidationError{Field: "memoryMB", Reason: fmt.Sprintf("%v is below %v", mem, MinMemoryMB)}
	}
	return nil
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
