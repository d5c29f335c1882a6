// Package apitest has an in-memory api.Service for testing the REST
// API and its clients without a coordinator.
package apitest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/hasched/hasched/scheduler/model"
)

// Service is an in-memory api.Service. Its zero value is not usable;
// call NewService. It is safe for concurrent use.
type Service struct {
	mu            sync.Mutex
	apps          map[string]model.App
	jobs          map[string]model.Job
	appDisabled   map[string]bool
	jobDisabled   map[string]bool
	running       []model.TaskRecord
	ready         []model.ReadyEntry
	failover      []model.TaskRecord
	quarantined   []model.QuarantinedConfig
	workers       []model.WorkerView
	status        model.Status
	failures      map[string]error
	calls         []string
	reconciles    []bool
	triggered     []model.Trigger
	panicOnMethod string
}

// NewService returns an empty service that leads, with status st (Leader is
// set to true unless SetLeader says otherwise).
func NewService(st model.Status) *Service {
	st.Leader = true
	return &Service{
		apps:        map[string]model.App{},
		jobs:        map[string]model.Job{},
		appDisabled: map[string]bool{},
		jobDisabled: map[string]bool{},
		failures:    map[string]error{},
		status:      st,
	}
}

// SetLeader makes the service the leader, or a standby following leaderAddr
// ("" for none). A standby refuses every write with ErrNotLeader, or with
// ErrNoLeader when nobody leads.
func (s *Service) SetLeader(leader bool, leaderAddr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Leader = leader
	s.status.LeaderAddress = leaderAddr
	if leader {
		s.status.LeaderAddress = s.status.Self
	}
}

// Fail makes every later call of method (e.g. "JobsJSON") fail with err; a nil
// err clears it.
func (s *Service) Fail(method string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.failures, method)
		return
	}
	s.failures[method] = err
}

// PanicOn makes method panic when called.
func (s *Service) PanicOn(method string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.panicOnMethod = method
}

// SetTasks replaces the task queues the reads return.
func (s *Service) SetTasks(running []model.TaskRecord, ready []model.ReadyEntry, failover []model.TaskRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running, s.ready, s.failover = running, ready, failover
}

// Calls returns the methods called so far, in order.
func (s *Service) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Reconciles returns the explicit flag of every accepted Reconcile.
func (s *Service) Reconciles() []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reconciles)
}

// Triggered returns the jobs triggered so far.
func (s *Service) Triggered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for _, tr := range s.triggered {
		names = append(names, tr.JobName)
	}
	return names
}

// Triggers returns the triggers so far, with their parameters.
func (s *Service) Triggers() []model.Trigger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.triggered)
}

// begin records a call and returns its injected failure; s.mu must be held.
func (s *Service) begin(method string) error {
	s.calls = append(s.calls, method)
	if s.panicOnMethod == method {
		panic("apitest: injected panic in " + method)
	}
	return s.failures[method]
}

// write is begin for writes: a standby refuses them.
func (s *Service) write(method string) error {
	if err := s.begin(method); err != nil {
		return err
	}
	switch {
	case s.status.Leader:
		return nil
	case s.status.LeaderAddress == "":
		return model.ErrNoLeader
	default:
		return fmt.Errorf("%s: %w (leader: %s)", method, model.ErrNotLeader, s.status.LeaderAddress)
	}
}

func notFound(kind, name string) error {
	return fmt.Errorf("%s %q: %w", kind, name, model.ErrNotFound)
}

// App implements api.Service.
func (s *Service) App(_ context.Context, name string) (model.App, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin("App"); err != nil {
		return model.App{}, err
	}
	app, ok := s.apps[name]
	if !ok {
		return model.App{}, notFound("app", name)
	}
	return app, nil
}

// Apps implements api.Service.
func (s *Service) Apps(context.Context) ([]model.App, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin("Apps"); err != nil {
		return nil, err
	}
	var out []model.App
	for _, name := range sortedKeys(s.apps) {
		out = append(out, s.apps[name])
	}
	return out, nil
}

// AppDisabled implements api.Service.
func (s *Service) AppDisabled(_ context.Context, name string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin("AppDisabled"); err != nil {
		return false, err
	}
	if _, ok := s.apps[name]; !ok {
		return false, notFound("app", name)
	}
	return s.appDisabled[name], nil
}

// Job implements api.Service.
func (s *Service) Job(_ context.Context, name string) (model.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin("Job"); err != nil {
		return model.Job{}, err
	}
	job, ok := s.jobs[name]
	if !ok {
		return model.Job{}, notFound("job", name)
	}
	return job, nil
}

// JobsJSON implements api.Service.
func (s *Service) JobsJSON(context.Context) ([]json.RawMessage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin("JobsJSON"); err != nil {
		return nil, err
	}
	var out []json.RawMessage
	for _, name := range sortedKeys(s.jobs) {
		b, err := json.Marshal(s.jobs[name])
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// JobDisabled implements api.Service.
func (s *Service) JobDisabled(_ context.Context, name string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin("JobDisabled"); err != nil {
		return false, err
	}
	if _, ok := s.jobs[name]; !ok {
		return false, notFound("job", name)
	}
	return s.jobDisabled[name], nil
}

// RunningTasks implements api.Service.
func (s *Service) RunningTasks(context.Context) ([]model.TaskRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin("RunningTasks"); err != nil {
		return nil, err
	}
	return slices.Clone(s.running), nil
}

// ReadyTasks implements api.Service.
func (s *Service) ReadyTasks(context.Context) ([]model.ReadyEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin("ReadyTasks"); err != nil {
		return nil, err
	}
	return slices.Clone(s.ready), nil
}

// FailoverTasks implements api.Service.
func (s *Service) FailoverTasks(context.Context) ([]model.TaskRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin("FailoverTasks"); err != nil {
		return nil, err
	}
	return slices.Clone(s.failover), nil
}

// Status implements api.Service.
func (s *Service) Status(context.Context) (model.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin("Status"); err != nil {
		return model.Status{}, err
	}
	return s.status, nil
}

// RegisterApp implements api.Service.
func (s *Service) RegisterApp(_ context.Context, app model.App) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write("RegisterApp"); err != nil {
		return err
	}
	app, err := app.Check()
	if err != nil {
		return err
	}
	if _, ok := s.apps[app.AppName]; ok {
		return fmt.Errorf("app %q: %w", app.AppName, model.ErrExists)
	}
	s.apps[app.AppName] = app
	return nil
}

// UpdateApp implements api.Service.
func (s *Service) UpdateApp(_ context.Context, u model.AppUpdate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write("UpdateApp"); err != nil {
		return err
	}
	stored, ok := s.apps[u.AppName]
	if !ok {
		return notFound("app", u.AppName)
	}
	app, err := u.Apply(stored)
	if err != nil {
		return err
	}
	s.apps[app.AppName] = app
	return nil
}

// DeregisterApp implements api.Service.
func (s *Service) DeregisterApp(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write("DeregisterApp"); err != nil {
		return err
	}
	if _, ok := s.apps[name]; !ok {
		return notFound("app", name)
	}
	for jn, j := range s.jobs {
		if j.AppName == name {
			delete(s.jobs, jn)
			delete(s.jobDisabled, jn)
		}
	}
	delete(s.apps, name)
	delete(s.appDisabled, name)
	return nil
}

// DisableApp implements api.Service.
func (s *Service) DisableApp(_ context.Context, name string) error {
	return s.setAppDisabled("DisableApp", name, true)
}

// EnableApp implements api.Service.
func (s *Service) EnableApp(_ context.Context, name string) error {
	return s.setAppDisabled("EnableApp", name, false)
}

func (s *Service) setAppDisabled(method, name string, disabled bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write(method); err != nil {
		return err
	}
	if _, ok := s.apps[name]; !ok {
		return notFound("app", name)
	}
	s.appDisabled[name] = disabled
	return nil
}

// RegisterJob implements api.Service.
func (s *Service) RegisterJob(_ context.Context, job model.Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write("RegisterJob"); err != nil {
		return err
	}
	if err := s.validJob(job); err != nil {
		return err
	}
	if _, ok := s.jobs[job.JobName]; ok {
		return fmt.Errorf("job %q: %w", job.JobName, model.ErrExists)
	}
	s.jobs[job.JobName] = job
	return nil
}

// UpdateJob implements api.Service.
func (s *Service) UpdateJob(_ context.Context, u model.JobUpdate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write("UpdateJob"); err != nil {
		return err
	}
	stored, ok := s.jobs[u.JobName]
	if !ok {
		return notFound("job", u.JobName)
	}
	job, err := u.Apply(stored)
	if err != nil {
		return err
	}
	if err := s.validJob(job); err != nil {
		return err
	}
	s.jobs[job.JobName] = job
	return nil
}

// validJob checks a job as the scheduler does: model's Check, and its app.
func (s *Service) validJob(job model.Job) error {
	if _, err := job.Check(); err != nil {
		return err
	}
	if _, ok := s.apps[job.AppName]; !ok {
		return &model.ValidationError{Field: "appName", Reason: fmt.Sprintf("app %q is not registered", job.AppName)}
	}
	return nil
}

// DeregisterJob implements api.Service.
func (s *Service) DeregisterJob(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write("DeregisterJob"); err != nil {
		return err
	}
	if _, ok := s.jobs[name]; !ok {
		return notFound("job", name)
	}
	delete(s.jobs, name)
	delete(s.jobDisabled, name)
	return nil
}

// TriggerJob implements api.Service.
func (s *Service) TriggerJob(_ context.Context, tr model.Trigger) error {
	name := tr.JobName
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write("TriggerJob"); err != nil {
		return err
	}
	job, ok := s.jobs[name]
	if !ok {
		return notFound("job", name)
	}
	if job.JobExecutionType == model.Daemon {
		return fmt.Errorf("job %q is a DAEMON job and cannot be triggered: %w", name, model.ErrConflict)
	}
	s.triggered = append(s.triggered, tr)
	return nil
}

// DisableJob implements api.Service.
func (s *Service) DisableJob(_ context.Context, name string) error {
	return s.setJobDisabled("DisableJob", name, true)
}

// EnableJob implements api.Service.
func (s *Service) EnableJob(_ context.Context, name string) error {
	return s.setJobDisabled("EnableJob", name, false)
}

func (s *Service) setJobDisabled(method, name string, disabled bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write(method); err != nil {
		return err
	}
	if _, ok := s.jobs[name]; !ok {
		return notFound("job", name)
	}
	s.jobDisabled[name] = disabled
	return nil
}

// Reconcile implements api.Service.
func (s *Service) Reconcile(_ context.Context, explicit bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write("Reconcile"); err != nil {
		return err
	}
	s.reconciles = append(s.reconciles, explicit)
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ErrInjected is a handy error for Fail.
var ErrInjected = errors.New("apitest: injected failure")

// SetQuarantined sets what Quarantined reports.
func (s *Service) SetQuarantined(q []model.QuarantinedConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quarantined = slices.Clone(q)
}

// Quarantined implements api.Service.
func (s *Service) Quarantined(context.Context) ([]model.QuarantinedConfig, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin("Quarantined"); err != nil {
		return nil, err
	}
	return slices.Clone(s.quarantined), nil
}

// SetWorkers sets what Workers reports.
func (s *Service) SetWorkers(w []model.WorkerView) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workers = slices.Clone(w)
}

// Workers implements api.Service.
func (s *Service) Workers(context.Context) ([]model.WorkerView, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin("Workers"); err != nil {
		return nil, err
	}
	return slices.Clone(s.workers), nil
}
