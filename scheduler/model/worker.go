package model

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// Bounds of a worker's registration and of a job's constraints.
const (
	// MaxLabels bounds a worker's labels and a job's constraints.
	MaxLabels = 16
	// MaxWorkerCPUs and MaxWorkerMemoryMB bound a worker's capacity.
	MaxWorkerCPUs     = 16384.0
	MaxWorkerMemoryMB = 64 << 20
	// maxLabelPart bounds a label's key and value, as Kubernetes does.
	maxLabelPart = 63
)

var (
	// workerNameRE: a worker's name is one node name, readable in logs.
	workerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	// incarnationRE: 16 lower-case hex digits, random per process start.
	incarnationRE = regexp.MustCompile(`^[0-9a-f]{16}$`)
	labelRE       = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)
)

// Worker is one `hasched serve` process that runs tasks, as it registers
// itself in the coordinator (an ephemeral node of its own session: the node
// is there exactly as long as the session lives on the server).
type Worker struct {
	// Name identifies the worker across restarts (default: the host name);
	// a restarted process with the same Name and work directory adopts the
	// tasks its predecessor left running.
	Name string `json:"name"`
	// Incarnation is random per process start; placements name it, so
	// that the leader tells a worker's restart from its continued life.
	Incarnation string            `json:"incarnation"`
	Host        string            `json:"host"`
	CPUs        float64           `json:"cpus"`
	MemoryMB    float64           `json:"memoryMB"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Draining: the process is shutting down; nothing new is placed on it.
	Draining bool      `json:"draining,omitempty"`
	Started  time.Time `json:"started"`
	// API is the process's advertised REST address (for task logs).
	API string `json:"api,omitempty"`
}

// ID is the worker's node name: Name~Incarnation.
func (w Worker) ID() string { return w.Name + WorkerIDSeparator + w.Incarnation }

// WorkerIDSeparator joins a worker's name and incarnation in its node name.
const WorkerIDSeparator = "~"

// ParseWorkerID splits a worker node name into name and incarnation.
func ParseWorkerID(id string) (name, incarnation string, err error) {
	name, inc, ok := strings.Cut(id, WorkerIDSeparator)
	if !ok || !workerNameRE.MatchString(name) || !incarnationRE.MatchString(inc) {
		return "", "", fmt.Errorf("%w: worker id %q: want name~incarnation", ErrInvalid, id)
	}
	return name, inc, nil
}

// Check validates a registration.
func (w Worker) Check() error {
	switch {
	case !workerNameRE.MatchString(w.Name):
		return &ValidationError{Field: "worker name", Reason: fmt.Sprintf("%q: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", w.Name)}
	case !incarnationRE.MatchString(w.Incarnation):
		return &ValidationError{Field: "worker incarnation", Reason: fmt.Sprintf("%q: want 16 lower-case hex digits", w.Incarnation)}
	case !(w.CPUs > 0) || w.CPUs > MaxWorkerCPUs:
		return &ValidationError{Field: "worker cpus", Reason: fmt.Sprintf("%v: want more than 0, at most %v", w.CPUs, MaxWorkerCPUs), Err: ErrOutOfBounds}
	case !(w.MemoryMB > 0) || w.MemoryMB > MaxWorkerMemoryMB:
		return &ValidationError{Field: "worker memoryMB", Reason: fmt.Sprintf("%v: want more than 0, at most %d", w.MemoryMB, MaxWorkerMemoryMB), Err: ErrOutOfBounds}
	}
	return CheckLabels("worker labels", w.Labels)
}

// CheckLabels validates a label set (a worker's labels, a job's
// constraints): at most MaxLabels, keys and values of 1 to 63 letters,
// digits, '.', '_' or '-', starting and ending with a letter or digit.
func CheckLabels(field string, labels map[string]string) error {
	if len(labels) > MaxLabels {
		return &ValidationError{Field: field, Reason: fmt.Sprintf("%d labels: at most %d", len(labels), MaxLabels), Err: ErrOutOfBounds}
	}
	for k, v := range labels {
		for _, s := range []string{k, v} {
			if len(s) > maxLabelPart || !labelRE.MatchString(s) {
				return &ValidationError{Field: field, Reason: fmt.Sprintf("%q=%q: keys and values are 1 to %d letters, digits, '.', '_' or '-', starting and ending with a letter or digit", k, v, maxLabelPart)}
			}
		}
	}
	return nil
}

// ParseLabels reads "k=v,k2=v2" (the CLI's and the flags' form).
func ParseLabels(field, s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, &ValidationError{Field: field, Reason: fmt.Sprintf("%q: want key=value", kv)}
		}
		if _, dup := out[k]; dup {
			return nil, &ValidationError{Field: field, Reason: fmt.Sprintf("%q given twice", k)}
		}
		out[k] = v
	}
	return out, CheckLabels(field, out)
}

// FormatLabels is ParseLabels' inverse, sorted by key.
func FormatLabels(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + labels[k]
	}
	return strings.Join(keys, ",")
}

// Matches says whether labels satisfy every constraint.
func Matches(labels, constraints map[string]string) bool {
	for k, v := range constraints {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Placement is the leader's decision that one worker incarnation runs one
// task. The leader creates it (fenced by its term); the worker that restarts
// re-binds it to its new incarnation (fenced by its registration); the
// leader folds the worker's reports into it and marks it LOST once its
// incarnation's session is gone on the server.
type Placement struct {
	Task executor.Task `json:"task"`
	// Worker and Incarnation: who runs it.
	Worker      string    `json:"worker"`
	Incarnation string    `json:"incarnation"`
	Token       int64     `json:"token"` // the placing leader's term
	PlacedAt    time.Time `json:"placedAt"`
	// The last state the leader took from the worker's reports (STAGING
	// until the first).
	State    executor.State `json:"state"`
	Message  string         `json:"message,omitempty"`
	ExitCode int            `json:"exitCode,omitempty"`
	Host     string         `json:"host,omitempty"`
	// UpdatedAt: when State last changed; a terminal placement is removed
	// a retention after it.
	UpdatedAt time.Time `json:"updatedAt"`
}

// Report is one status a worker reports about a task placed on it: one
// sequential node in its incarnation's outbox, in order.
type Report struct {
	Incarnation string `json:"incarnation"`
	executor.Status
}

// WorkerView is a worker as GET /api/workers and `hasched workers` show it:
// its registration, what is placed on it and how much of it that takes.
type WorkerView struct {
	Worker
	UsedCPUs     float64      `json:"usedCpus"`
	UsedMemoryMB float64      `json:"usedMemoryMB"`
	Tasks        []PlacedTask `json:"tasks"`
}

// PlacedTask is one task placed on a worker and not yet ended.
type PlacedTask struct {
	TaskID   string         `json:"taskId"`
	Job      string         `json:"jobName"`
	Shard    int            `json:"shardingItem"`
	State    executor.State `json:"state"`
	PlacedAt time.Time      `json:"placedAt"`
}
