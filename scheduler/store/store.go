// Package store owns the layout of hasched's state in the coordination
// service: the paths (Elastic-Job-Cloud's), the JSON encoding of each node,
// the versions that guard the ready queues and every write a leader makes.
// The scheduler's term decides; the store reads and writes.
//
// A Reader serves every process's reads. A Writer is one term's: its writes
// go through the term's fenced coord.Writer, so a deposed leader's late write
// fails with coord.ErrNotLeader and changes nothing. Writes that must happen
// together (a fire's running nodes and its removal from the ready queue; a
// task's move to the failover queue) are one atomic batch.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/parallel"
	"github.com/hasched/hasched/scheduler/model"
)

// The layout, under the coordinator's namespace. Values are JSON.
const (
	// ElectionPath is the scheduler's election.
	ElectionPath = "/ha/election"
	// termPath is written, fenced, before every launch: a leader that was
	// deposed since it decided to launch fails the write and launches
	// nothing.
	termPath         = "/ha/term"
	AppConfigRoot    = "/config/app"    // /{app}: model.App
	JobConfigRoot    = "/config/job"    // /{job}: model.Job
	ReadyRoot        = "/state/ready"   // /{job}: Ready
	RunningRoot      = "/state/running" // /{job}/{task}: model.TaskRecord
	FailoverRoot     = "/state/failover"
	DisabledAppsRoot = "/state/disable/app" // /{app}: disabledNode
	DisabledJobsRoot = "/state/disable/job" // /{job}: disabledNode
	// executorStateRoot holds the executors' own state: /ha/{key}, so the
	// Mesos framework id lives at /ha/framework_id as Elastic-Job-Cloud
	// keeps it.
	executorStateRoot = "/ha"
)

func AppPath(app string) string           { return AppConfigRoot + "/" + app }
func JobPath(job string) string           { return JobConfigRoot + "/" + job }
func ReadyPath(job string) string         { return ReadyRoot + "/" + job }
func RunningJobPath(job string) string    { return RunningRoot + "/" + job }
func RunningPath(job, task string) string { return RunningRoot + "/" + job + "/" + task }
func FailoverJobPath(job string) string   { return FailoverRoot + "/" + job }
func FailoverPath(job, task string) string {
	return FailoverRoot + "/" + job + "/" + task
}
func DisabledAppPath(app string) string { return DisabledAppsRoot + "/" + app }
func DisabledJobPath(job string) string { return DisabledJobsRoot + "/" + job }

// Ready is a job's ready queue and the producer's progress, in one node so
// that appending a fire and advancing LastFire is one versioned write.
type Ready struct {
	// FireTimes are the pending fires, oldest first, unique.
	FireTimes []time.Time `json:"fireTimes"`
	// LastFire is the latest cron fire time handed to the queue (or
	// skipped by the misfire policy): the producer never produces a fire at
	// or before it again.
	LastFire time.Time `json:"lastFireTime"`
	// RegisteredAt is when the job was registered; a job whose LastFire is
	// zero produces fires after it only, so it never back-fills.
	RegisteredAt time.Time `json:"registeredAt"`
	// Parameters are the job parameters of pending fires triggered with
	// one, by ParameterKey. Only pending fires' are written (MarshalJSON):
	// a fire that leaves the queue takes its parameter into its task
	// records.
	Parameters map[string]string `json:"parameters,omitempty"`
	// Version is the node's version the Ready was read or written at; the
	// next write of the queue must name it.
	Version coord.Version `json:"-"`
}

// ParameterKey is the key of a fire's parameter: its Unix milliseconds
// (fires of one job are unique to the millisecond).
func ParameterKey(fire time.Time) string { return strconv.FormatInt(fire.UnixMilli(), 10) }

// Parameter is the job parameter fire was triggered with, if any.
func (r Ready) Parameter(fire time.Time) *string {
	p, ok := r.Parameters[ParameterKey(fire)]
	if !ok {
		return nil
	}
	return &p
}

// WithParameter returns r with fire's parameter set, in a map of its own
// (a Ready is copied by value, its map is not).
func (r Ready) WithParameter(fire time.Time, p string) Ready {
	m := make(map[string]string, len(r.Parameters)+1)
	maps.Copy(m, r.Parameters)
	m[ParameterKey(fire)] = p
	r.Parameters = m
	return r
}

// MarshalJSON writes the parameters of pending fires only.
func (r Ready) MarshalJSON() ([]byte, error) {
	type plain Ready
	out := plain(r)
	if len(r.Parameters) > 0 {
		out.Parameters = map[string]string{}
		for _, f := range r.FireTimes {
			if p, ok := r.Parameters[ParameterKey(f)]; ok {
				out.Parameters[ParameterKey(f)] = p
			}
		}
	}
	return json.Marshal(out)
}

// ProducedThrough is the time up to which fires have been produced.
func (r Ready) ProducedThrough() time.Time {
	if r.LastFire.After(r.RegisteredAt) {
		return r.LastFire
	}
	return r.RegisteredAt
}

// Pending says whether fire is on the queue.
func (r Ready) Pending(fire time.Time) bool {
	for _, f := range r.FireTimes {
		if f.Equal(fire) {
			return true
		}
	}
	return false
}

// disabledNode is the value of a disable flag.
type disabledNode struct {
	DisabledAt time.Time `json:"disabledAt"`
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the model's and the store's own types are encoded; they
		// always marshal.
		panic(fmt.Sprintf("store: encode %T: %v", v, err))
	}
	return b
}

// ErrUndecodable says a node's value is not its type's JSON: written by
// something other than hasched, or damaged.
var ErrUndecodable = errors.New("store: undecodable node")

func decodeNode(n coord.Node, v any) error {
	if err := json.Unmarshal(n.Value, v); err != nil {
		return fmt.Errorf("decode %s: %w: %w", n.Path, ErrUndecodable, err)
	}
	return nil
}

// unavailable marks the errors of a session that has just ended as
// model.ErrUnavailable: the caller retries on a new session.
func unavailable(err error) error {
	if err != nil && (errors.Is(err, coord.ErrSessionLost) || errors.Is(err, coord.ErrClosed)) && !errors.Is(err, model.ErrUnavailable) {
		return fmt.Errorf("%w: %w", model.ErrUnavailable, err)
	}
	return err
}

// ignore drops an error that is one of the expected ones.
func ignore(err error, expected ...error) error {
	for _, e := range expected {
		if errors.Is(err, e) {
			return nil
		}
	}
	return err
}

// Reader reads the state through one session, or from a standby's
// Mirrors.
type Reader struct{ c source }

// source is what a Reader reads through: a session, or Mirrors.
type source interface {
	coord.Reads
	Leader(ctx context.Context, election string) ([]byte, error)
}

// NewReader reads through c.
func NewReader(c coord.Coordinator) Reader { return Reader{c: c} }

// children lists a node's children; a missing node has none.
func (r Reader) children(ctx context.Context, path string) ([]string, error) {
	names, err := r.c.Children(ctx, path)
	if errors.Is(err, coord.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable(fmt.Errorf("list %s: %w", path, err))
	}
	return names, nil
}

// nodes reads a node's children with their values in one List; a missing
// node has none.
func (r Reader) nodes(ctx context.Context, path string) ([]coord.Node, error) {
	nodes, err := r.c.List(ctx, path)
	if errors.Is(err, coord.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable(fmt.Errorf("list %s: %w", path, err))
	}
	return nodes, nil
}

// listInFlight bounds the Lists a Reader keeps outstanding when it reads
// the children of many parents (the running tasks of every job): 10,000
// jobs' running tasks on the embedded etcd took 1.3 s with 16 and 0.6 s
// with 64.
const listInFlight = 64

// nodesOf lists the children of each parent, listInFlight at a time; out[i]
// holds parents[i]'s.
func (r Reader) nodesOf(ctx context.Context, parents []string) ([][]coord.Node, error) {
	out := make([][]coord.Node, len(parents))
	errs := make([]error, len(parents))
	sem := make(chan struct{}, listInFlight)
	var wg sync.WaitGroup
	for i, p := range parents {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i], errs[i] = r.nodes(ctx, p)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// get reads and decodes one node; found is false if it is missing.
func (r Reader) get(ctx context.Context, path string, v any) (coord.Version, bool, error) {
	n, err := r.c.Get(ctx, path)
	if errors.Is(err, coord.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, unavailable(fmt.Errorf("read %s: %w", path, err))
	}
	if err := decodeNode(n, v); err != nil {
		return 0, false, err
	}
	return n.Version, true, nil
}

func (r Reader) exists(ctx context.Context, path string) (bool, error) {
	_, err := r.c.Get(ctx, path)
	if errors.Is(err, coord.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, unavailable(fmt.Errorf("read %s: %w", path, err))
	}
	return true, nil
}

// Leader is the election's leader's value (its API address), or
// coord.ErrNoLeader.
func (r Reader) Leader(ctx context.Context) (string, error) {
	v, err := r.c.Leader(ctx, ElectionPath)
	return string(v), unavailable(err)
}

// App reads one app; found is false if it is not registered.
func (r Reader) App(ctx context.Context, name string) (model.App, bool, error) {
	var a model.App
	_, ok, err := r.get(ctx, AppPath(name), &a)
	return a, ok, err
}

// Job reads one job; found is false if it is not registered.
func (r Reader) Job(ctx context.Context, name string) (model.Job, bool, error) {
	var j model.Job
	_, ok, err := r.get(ctx, JobPath(name), &j)
	return j, ok, err
}

// Apps reads every app, by name, skipping the undecodable ones (AppConfigs
// reports them).
func (r Reader) Apps(ctx context.Context) ([]model.App, error) {
	apps, _, err := r.AppConfigs(ctx)
	return apps, err
}

// Jobs reads every job, by name, skipping the undecodable ones (JobConfigs
// reports them).
func (r Reader) Jobs(ctx context.Context) ([]model.Job, error) {
	jobs, _, err := r.JobConfigs(ctx)
	return jobs, err
}

// AppConfigs reads every app, by name, and reports the nodes that do not
// decode as an app instead of failing the list: one damaged node must not
// hide the others, nor stop a leader from loading them. The reports have
// no SeenAt; the caller knows the time.
func (r Reader) AppConfigs(ctx context.Context) ([]model.App, []model.QuarantinedConfig, error) {
	return list(ctx, r, model.KindApp, AppConfigRoot, func(a model.App) string { return a.AppName })
}

// JobConfigs reads every job, like AppConfigs.
func (r Reader) JobConfigs(ctx context.Context) ([]model.Job, []model.QuarantinedConfig, error) {
	return list(ctx, r, model.KindJob, JobConfigRoot, func(j model.Job) string { return j.JobName })
}

// list reads every configuration under root. One that names another app or
// job than the node it is stored under is reported too: the scheduler keys
// its state by the name inside.
func list[T any](ctx context.Context, r Reader, kind model.ConfigKind, root string, name func(T) string) ([]T, []model.QuarantinedConfig, error) {
	nodes, err := r.nodes(ctx, root)
	if err != nil {
		return nil, nil, err
	}
	vals := make([]T, len(nodes))
	errs := make([]error, len(nodes))
	parallel.Each(len(nodes), func(i int) { errs[i] = decodeNode(nodes[i], &vals[i]) })
	out := vals[:0]
	var bad []model.QuarantinedConfig
	for i, n := range nodes {
		base := coord.Base(n.Path)
		if errs[i] != nil {
			bad = append(bad, model.QuarantinedConfig{Kind: kind, Name: base, Error: errs[i].Error()})
			continue
		}
		if v := vals[i]; name(v) != base {
			bad = append(bad, model.QuarantinedConfig{Kind: kind, Name: base, Error: fmt.Sprintf("%s/%s names %s %q", root, base, kind, name(v))})
			continue
		}
		out = append(out, vals[i]) // in place: out never passes i
	}
	return out, bad, nil
}

// AppDisabled says whether an app's disable flag is set.
func (r Reader) AppDisabled(ctx context.Context, name string) (bool, error) {
	return r.exists(ctx, DisabledAppPath(name))
}

// JobDisabled says whether a job's disable flag is set.
func (r Reader) JobDisabled(ctx context.Context, name string) (bool, error) {
	return r.exists(ctx, DisabledJobPath(name))
}

// DisabledApps names the apps whose disable flag is set.
func (r Reader) DisabledApps(ctx context.Context) (map[string]bool, error) {
	return r.flags(ctx, DisabledAppsRoot)
}

// DisabledJobs names the jobs whose disable flag is set (including flags of
// jobs that are gone).
func (r Reader) DisabledJobs(ctx context.Context) (map[string]bool, error) {
	return r.flags(ctx, DisabledJobsRoot)
}

func (r Reader) flags(ctx context.Context, root string) (map[string]bool, error) {
	names, err := r.children(ctx, root)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}

// Running reads every running task record, by job. A job whose parent
// node exists without records is there with none.
func (r Reader) Running(ctx context.Context) (map[string][]model.TaskRecord, error) {
	return r.tasks(ctx, RunningRoot)
}

// Failover reads every failover task record, by job, like Running.
func (r Reader) Failover(ctx context.Context) (map[string][]model.TaskRecord, error) {
	return r.tasks(ctx, FailoverRoot)
}

func (r Reader) tasks(ctx context.Context, root string) (map[string][]model.TaskRecord, error) {
	jobs, err := r.children(ctx, root)
	if err != nil {
		return nil, err
	}
	parents := make([]string, len(jobs))
	for i, job := range jobs {
		parents[i] = root + "/" + job
	}
	lists, err := r.nodesOf(ctx, parents)
	if err != nil {
		return nil, err
	}
	recs := make([][]model.TaskRecord, len(jobs))
	errs := make([]error, len(jobs))
	parallel.Each(len(jobs), func(i int) {
		for _, n := range lists[i] {
			var rec model.TaskRecord
			if err := decodeNode(n, &rec); err != nil {
				errs[i] = err
				return
			}
			recs[i] = append(recs[i], rec)
		}
	})
	if err := firstError(errs); err != nil {
		return nil, err
	}
	out := make(map[string][]model.TaskRecord, len(jobs))
	for i, job := range jobs {
		out[job] = recs[i] // an empty parent is still worth knowing of
	}
	return out, nil
}

// Flatten lists the records of a by-job map, by task id.
func Flatten(m map[string][]model.TaskRecord) []model.TaskRecord {
	out := []model.TaskRecord{}
	for _, recs := range m {
		out = append(out, recs...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Ready reads every job's ready node, by job.
func (r Reader) Ready(ctx context.Context) (map[string]Ready, error) {
	nodes, err := r.nodes(ctx, ReadyRoot)
	if err != nil {
		return nil, err
	}
	vals := make([]Ready, len(nodes))
	errs := make([]error, len(nodes))
	parallel.Each(len(nodes), func(i int) { errs[i] = decodeNode(nodes[i], &vals[i]) })
	if err := firstError(errs); err != nil {
		return nil, err
	}
	out := make(map[string]Ready, len(nodes))
	for i, n := range nodes {
		vals[i].Version = n.Version
		out[coord.Base(n.Path)] = vals[i]
	}
	return out, nil
}

// ErrNoState says nothing is stored under an executor state key.
var ErrNoState = errors.New("store: no executor state")

func executorStatePath(key string) (string, error) {
	if err := coord.ValidateName(key); err != nil {
		return "", fmt.Errorf("executor state key %q: %w", key, err)
	}
	if key == "election" || key == "term" {
		return "", fmt.Errorf("executor state key %q is the scheduler's", key)
	}
	return executorStateRoot + "/" + key, nil
}

// ExecutorState reads an executor's state; ErrNoState if there is none.
func (r Reader) ExecutorState(ctx context.Context, key string) ([]byte, error) {
	p, err := executorStatePath(key)
	if err != nil {
		return nil, err
	}
	n, err := r.c.Get(ctx, p)
	if errors.Is(err, coord.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", p, ErrNoState)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return n.Value, nil
}
