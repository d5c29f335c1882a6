// Package model is what hasched's scheduler, its REST API and its client
// agree on: Elastic-Job-Cloud's apps and jobs with their JSON, defaults and
// validation, task ids and records, and the errors of the service. It owns
// validation: a job is checked once, by Job.Check, which also parses its cron.
package model

import (
	"encoding/json"
)

// ExecutionType says how a job runs: TRANSIENT jobs run once per cron fire,
// DAEMON jobs are kept running.
type ExecutionType string

// Execution types, as Elastic-Job-Cloud spells them.
const (
	Transient ExecutionType = "TRANSIENT"
	Daemon    ExecutionType = "DAEMON"
)

// ConcurrencyPolicy says what a fire does while an earlier run of the same
// job still runs.
type ConcurrencyPolicy string

// Concurrency policies (Kubernetes CronJob's): ALLOW runs both, FORBID keeps
// the new fire queued until the running one ends, REPLACE kills the running
// one and starts the new one.
const (
	ConcurrencyAllow   ConcurrencyPolicy = "ALLOW"
	ConcurrencyForbid  ConcurrencyPolicy = "FORBID"
	ConcurrencyReplace ConcurrencyPolicy = "REPLACE"
)

// App is Elastic-Job-Cloud's cloud app: where a job's code comes from and
// what its executor costs.
type App struct {
	AppName string `json:"appName"`
	AppURL  string `json:"appURL"`
	// Image is the container image the app's tasks run in on Kubernetes
	// (--executor kubernetes; empty: the executor's default image). The
	// other executors ignore it.
	Image           string  `json:"image,omitempty"`
	BootstrapScript string  `json:"bootstrapScript"`
	CPUCount        float64 `json:"cpuCount"`
	MemoryMB        float64 `json:"memoryMB"`
	AppCacheEnable  bool    `json:"appCacheEnable"`
	// AppChecksum, if set, is "sha256:<64 hex digits>" of the package at
	// AppURL; the executor refuses a package that does not match.
	AppChecksum string `json:"appChecksum,omitempty"`
	// EventTraceSamplingCount is kept for Elastic-Job-Cloud compatibility.
	EventTraceSamplingCount int `json:"eventTraceSamplingCount"`
}

// Job is Elastic-Job-Cloud's cloud job configuration plus a time zone, a
// concurrency policy and a retry count.
type Job struct {
	JobName                string        `json:"jobName"`
	AppName                string        `json:"appName"`
	Cron                   string        `json:"cron"`
	ShardingTotalCount     int           `json:"shardingTotalCount"`
	ShardingItemParameters string        `json:"shardingItemParameters"`
	JobParameter           string        `json:"jobParameter"`
	CPUCount               float64       `json:"cpuCount"`
	MemoryMB               float64       `json:"memoryMB"`
	JobExecutionType       ExecutionType `json:"jobExecutionType"`
	Failover               bool          `json:"failover"`
	Misfire                bool          `json:"misfire"`
	ScriptCommandLine      string        `json:"scriptCommandLine"`
	Description            string        `json:"description"`

	// TimeZone is an IANA zone name the cron is read in ("" = UTC).
	TimeZone          string            `json:"timeZone"`
	ConcurrencyPolicy ConcurrencyPolicy `json:"concurrencyPolicy"`
	// Retries is how often a failed shard is relaunched before it is given
	// up (it then goes to the failover queue if failover is on).
	Retries int `json:"retries"`
	// Constraints are labels a worker must have to run the job's tasks
	// (for example {"zone": "a"}); the cluster executor places them only
	// there. At most MaxLabels.
	Constraints map[string]string `json:"constraints,omitempty"`
	// AlertReceivers names the alert receivers (beyond the global ones)
	// that hear of this job's failures, as the operator's alerts file
	// defines them. Only names: the URLs and secrets stay in the operator's
	// file, so a job's author can neither aim the scheduler at an address
	// of their choosing nor read a receiver's key. A name the running
	// process does not know is accepted here (each process has its own
	// alerts file) and logged when an alert would have gone to it. At most
	// MaxAlertReceivers names of the form CheckAlertReceivers accepts.
	AlertReceivers []string `json:"alertReceivers,omitempty"`
	// TimeoutSeconds, if positive, is how long one task of the job may run
	// from its start: then its executor stops it (local: SIGTERM to its
	// process group, SIGKILL after the kill grace) and it ends TIMED_OUT,
	// which retries and failover treat as a failure. 0 is no timeout; at
	// most MaxTimeoutSeconds. Left out of the JSON when 0, so that jobs
	// without one encode as before.
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`

	// Elastic-Job-Cloud fields hasched does not interpret but keeps, so
	// that its users' job definitions round-trip unchanged.
	JobType          string          `json:"jobType,omitempty"`
	JobClass         string          `json:"jobClass,omitempty"`
	StreamingProcess bool            `json:"streamingProcess,omitempty"`
	JobProperties    json.RawMessage `json:"jobProperties,omitempty"`
	BeanName         string          `json:"beanName,omitempty"`
	AppContext       string          `json:"applicationContext,omitempty"`
}
