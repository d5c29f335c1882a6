package api

import (
	"context"
	"encoding/json"

	"github.com/hasched/hasched/scheduler/model"
)

// Service is what the REST API sees of a scheduler process. Reads are served
// by every process: the leader's from its memory where it keeps what they
// read, the others' from the store (the API forwards a standby's reads of
// configurations to the leader, falling back to them). Writes are served
// by the leader only; elsewhere they fail with model.ErrNotLeader (or
// model.ErrNoLeader).
type Service interface {
	App(ctx context.Context, name string) (model.App, error)
	Apps(ctx context.Context) ([]model.App, error)
	AppDisabled(ctx context.Context, name string) (bool, error)
	Job(ctx context.Context, name string) (model.Job, error)
	// JobsJSON lists every job, by name, each as encoding/json encodes
	// its model.Job: the API writes them out as they are, so a list of
	// 100,000 jobs is no 100,000 encodings.
	JobsJSON(ctx context.Context) ([]json.RawMessage, error)
	JobDisabled(ctx context.Context, name string) (bool, error)
	RunningTasks(ctx context.Context) ([]model.TaskRecord, error)
	ReadyTasks(ctx context.Context) ([]model.ReadyEntry, error)
	FailoverTasks(ctx context.Context) ([]model.TaskRecord, error)
	Status(ctx context.Context) (model.Status, error)
	// Quarantined lists the stored configurations that fail validation:
	// not scheduled until they are registered or updated again.
	Quarantined(ctx context.Context) ([]model.QuarantinedConfig, error)
	// Workers lists the processes that run tasks (the cluster executor's
	// workers), with what is placed on them.
	Workers(ctx context.Context) ([]model.WorkerView, error)

	RegisterApp(ctx context.Context, app model.App) error
	// UpdateApp changes the fields the update names and keeps the others.
	UpdateApp(ctx context.Context, u model.AppUpdate) error
	// DeregisterApp removes the app and every job of it, killing their
	// tasks.
	DeregisterApp(ctx context.Context, name string) error
	DisableApp(ctx context.Context, name string) error
	EnableApp(ctx context.Context, name string) error

	RegisterJob(ctx context.Context, job model.Job) error
	// UpdateJob changes the fields the update names and keeps the others.
	UpdateJob(ctx context.Context, u model.JobUpdate) error
	DeregisterJob(ctx context.Context, name string) error
	// TriggerJob puts one run of a TRANSIENT job on the ready queue now.
	// A trigger with a JobParameter runs with it in place of the job's.
	TriggerJob(ctx context.Context, tr model.Trigger) error
	DisableJob(ctx context.Context, name string) error
	EnableJob(ctx context.Context, name string) error

	// Reconcile asks the executor for the state of the running tasks:
	// explicit names every task the store says runs, implicit asks for
	// all.
	Reconcile(ctx context.Context, explicit bool) error
}
