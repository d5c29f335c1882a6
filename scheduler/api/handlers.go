package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hasched/hasched/scheduler/model"
)

// Result is the answer to a successful write.
type Result struct {
	OK      bool   `json:"ok"`
	Message string `json:"message"`
}

// Health is the answer of GET /healthz.
type Health struct {
	// Status is "ok" whenever the process answers.
	Status        string `json:"status"`
	Leader        bool   `json:"leader"`
	LeaderAddress string `json:"leaderAddress,omitempty"`
	// Error says why the process could not tell who leads, if it could not.
	Error string `json:"error,omitempty"`
}

func done(format string, args ...any) Result {
	return Result{OK: true, Message: fmt.Sprintf(format, args...)}
}

// routeTable lists every endpoint: Elastic-Job-Cloud's (2.x and 3.x) under
// /api, plus /api/leader and /healthz.
func (s *server) routeTable() []route {
	get, post, put, del := http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
	routes := []route{
		// Apps (CloudAppRestfulApi).
		newRoute(post, "/api/app", s.registerApp),
		newRoute(put, "/api/app", s.updateApp),
		newRoute(get, "/api/app/list", s.listApps).readFromLeader(),
		newRoute(get, "/api/app/{app}", s.getApp).readFromLeader(),
		newRoute(del, "/api/app/{app}", s.deregisterApp),
		newRoute(get, "/api/app/{app}/disable", s.appDisabled).readFromLeader(),
		newRoute(post, "/api/app/{app}/disable", s.disableApp),
		newRoute(post, "/api/app/{app}/enable", s.enableApp),

		// Jobs (CloudJobRestfulApi).
		newRoute(post, "/api/job/register", s.registerJob),
		newRoute(put, "/api/job/update", s.updateJob),
		newRoute(del, "/api/job/deregister", s.deregisterJobBody),
		newRoute(del, "/api/job/{job}/deregister", s.deregisterJobPath),
		newRoute(post, "/api/job/trigger", s.triggerJob),
		newRoute(get, "/api/job/jobs", s.listJobs).readFromLeader(),
		newRoute(get, "/api/job/jobs/{job}", s.getJob).readFromLeader(),
		newRoute(get, "/api/job/{job}/disable", s.jobDisabled).readFromLeader(),
		newRoute(get, "/api/job/{job}/schedule", s.jobSchedule).readFromLeader(),
		newRoute(post, "/api/job/{job}/disable", s.disableJob),
		newRoute(post, "/api/job/{job}/enable", s.enableJob),
		newRoute(get, "/api/job/tasks/running", s.runningTasks),
		newRoute(get, "/api/job/tasks/ready", s.readyTasks),
		newRoute(get, "/api/job/tasks/failover", s.failoverTasks),
		newRoute(get, "/api/job/{job}/executions", s.executions),

		// Operations (CloudOperationRestfulApi).
		newRoute(post, "/api/operate/reconcile/explicit", s.reconcile(true)),
		newRoute(post, "/api/operate/reconcile/implicit", s.reconcile(false)),

		newRoute(get, "/api/quarantine", s.quarantined),
		newRoute(get, "/api/workers", s.workers),
		// Task logs (logs.go): from this process's disk, or relayed from
		// the worker's that ran the task; the local route never relays.
		newStreamRoute("/api/tasks/{id}/log", s.taskLog(false)),
		newStreamRoute("/api/local/tasks/{id}/log", s.taskLog(true)),
		newRoute(get, "/api/leader", s.status),
		newRoute(get, "/healthz", s.health).withAccess(accessPublic),
		newRoute(get, "/readyz", s.ready).withAccess(accessPublic),

		// Elastic-Job-Cloud 3.x's login, and hasched's audit log.
		newRoute(post, "/api/login", s.login).withAccess(accessPublic).servedLocally(),
		newRoute(get, "/api/audit", s.auditEntries).withAccess(accessAdmin),
	}
	if s.cfg.Metrics != nil {
		// This process's own metrics: never forwarded, a read like any
		// other (open, or an account with AuthReads).
		routes = append(routes, newRawRoute("/metrics", s.cfg.Metrics))
	}
	return routes
}

func (s *server) registerApp(c *call) (any, error) {
	app, err := decodeApp(c.body)
	if err != nil {
		return nil, err
	}
	c.app = app.AppName
	if err := s.svc.RegisterApp(c.ctx, app); err != nil {
		return nil, err
	}
	return done("app %q registered", app.AppName), nil
}

func (s *server) updateApp(c *call) (any, error) {
	u, err := decodeAppUpdate(c.body)
	if err != nil {
		return nil, err
	}
	c.app = u.AppName
	if err := s.svc.UpdateApp(c.ctx, u); err != nil {
		return nil, err
	}
	return done("app %q updated", u.AppName), nil
}

func (s *server) listApps(c *call) (any, error) {
	apps, err := s.svc.Apps(c.ctx)
	return redactApps(apps), err
}

func (s *server) getApp(c *call) (any, error) {
	app, err := s.svc.App(c.ctx, c.params["app"])
	return redactApp(app), err
}

func (s *server) deregisterApp(c *call) (any, error) {
	name := c.params["app"]
	if err := s.svc.DeregisterApp(c.ctx, name); err != nil {
		return nil, err
	}
	return done("app %q deregistered", name), nil
}

func (s *server) appDisabled(c *call) (any, error) {
	return s.svc.AppDisabled(c.ctx, c.params["app"])
}

func (s *server) disableApp(c *call) (any, error) {
	name := c.params["app"]
	if err := s.svc.DisableApp(c.ctx, name); err != nil {
		return nil, err
	}
	return done("app %q disabled", name), nil
}

func (s *server) enableApp(c *call) (any, error) {
	name := c.params["app"]
	if err := s.svc.EnableApp(c.ctx, name); err != nil {
		return nil, err
	}
	return done("app %q enabled", name), nil
}

func (s *server) registerJob(c *call) (any, error) {
	job, err := decodeJob(c.body)
	if err != nil {
		return nil, err
	}
	c.job, c.app = job.JobName, job.AppName
	if err := s.svc.RegisterJob(c.ctx, job); err != nil {
		return nil, err
	}
	return done("job %q registered", job.JobName), nil
}

func (s *server) updateJob(c *call) (any, error) {
	u, err := decodeJobUpdate(c.body)
	if err != nil {
		return nil, err
	}
	c.job = u.JobName
	if err := s.svc.UpdateJob(c.ctx, u); err != nil {
		return nil, err
	}
	return done("job %q updated", u.JobName), nil
}

// deregisterJobBody is Elastic-Job-Cloud's DELETE /api/job/deregister, whose
// body is the job's name.
func (s *server) deregisterJobBody(c *call) (any, error) {
	name, err := nameFromBody(c.body, "jobName")
	if err != nil {
		return nil, err
	}
	c.job = name
	return s.deregisterJob(c.ctx, name)
}

func (s *server) deregisterJobPath(c *call) (any, error) {
	return s.deregisterJob(c.ctx, c.params["job"])
}

func (s *server) deregisterJob(ctx context.Context, name string) (any, error) {
	if err := s.svc.DeregisterJob(ctx, name); err != nil {
		return nil, err
	}
	return done("job %q deregistered", name), nil
}

// triggerJob takes Elastic-Job-Cloud's body, the bare job name, or
// {"jobName": ..., "jobParameter": ...} for a run with its own parameter.
func (s *server) triggerJob(c *call) (any, error) {
	tr, err := model.DecodeTrigger(c.body)
	if err != nil {
		return nil, err
	}
	c.job = tr.JobName
	if err := s.svc.TriggerJob(c.ctx, tr); err != nil {
		return nil, err
	}
	if tr.JobParameter != nil {
		return done("job %q triggered with its own job parameter", tr.JobName), nil
	}
	return done("job %q triggered", tr.JobName), nil
}

func (s *server) listJobs(c *call) (any, error) {
	jobs, err := s.svc.JobsJSON(c.ctx)
	return jsonList(jobs), err
}

func (s *server) getJob(c *call) (any, error) {
	return s.svc.Job(c.ctx, c.params["job"])
}

func (s *server) jobDisabled(c *call) (any, error) {
	return s.svc.JobDisabled(c.ctx, c.params["job"])
}

func (s *server) disableJob(c *call) (any, error) {
	name := c.params["job"]
	if err := s.svc.DisableJob(c.ctx, name); err != nil {
		return nil, err
	}
	return done("job %q disabled", name), nil
}

func (s *server) enableJob(c *call) (any, error) {
	name := c.params["job"]
	if err := s.svc.EnableJob(c.ctx, name); err != nil {
		return nil, err
	}
	return done("job %q enabled", name), nil
}

func (s *server) runningTasks(c *call) (any, error) {
	tasks, err := s.svc.RunningTasks(c.ctx)
	return nonNil(tasks), err
}

func (s *server) readyTasks(c *call) (any, error) {
	ready, err := s.svc.ReadyTasks(c.ctx)
	return nonNil(ready), err
}

func (s *server) failoverTasks(c *call) (any, error) {
	tasks, err := s.svc.FailoverTasks(c.ctx)
	return nonNil(tasks), err
}

// reconcile serves both reconciliation endpoints. They share one limit, as in
// Elastic-Job-Cloud: one accepted request per ReconcileInterval. A request
// that fails (a standby's ErrNotLeader among them) gives its slot back, so
// only the process that reconciles counts.
func (s *server) reconcile(explicit bool) func(*call) (any, error) {
	kind := "implicit"
	if explicit {
		kind = "explicit"
	}
	return func(c *call) (any, error) {
		prev, wait, ok := s.reserveReconcile()
		if !ok {
			return nil, &rateLimitError{
				msg:        fmt.Sprintf("reconciliation was requested less than %v ago; retry in %v", s.cfg.ReconcileInterval, wait.Round(time.Second)),
				retryAfter: wait,
			}
		}
		if err := s.svc.Reconcile(c.ctx, explicit); err != nil {
			s.releaseReconcile(prev)
			return nil, err
		}
		return done("%s reconciliation started", kind), nil
	}
}

// reserveReconcile takes the reconciliation slot if the last one is at least
// ReconcileInterval old; otherwise it says how long to wait.
func (s *server) reserveReconcile() (prev time.Time, wait time.Duration, ok bool) {
	s.reconcileMu.Lock()
	defer s.reconcileMu.Unlock()
	now := s.now()
	if !s.lastReconcile.IsZero() {
		if since := now.Sub(s.lastReconcile); since < s.cfg.ReconcileInterval {
			return time.Time{}, s.cfg.ReconcileInterval - since, false
		}
	}
	prev, s.lastReconcile = s.lastReconcile, now
	return prev, 0, true
}

func (s *server) releaseReconcile(prev time.Time) {
	s.reconcileMu.Lock()
	defer s.reconcileMu.Unlock()
	s.lastReconcile = prev
}

func (s *server) status(c *call) (any, error) {
	return s.svc.Status(c.ctx)
}

// health answers as long as the process runs; who leads is information, not
// a condition.
func (s *server) health(c *call) (any, error) {
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	defer cancel()
	h := Health{Status: "ok"}
	st, err := s.svc.Status(ctx)
	if err != nil {
		h.Error = err.Error()
	} else {
		h.Leader, h.LeaderAddress = st.Leader, st.LeaderAddress
	}
	return h, nil
}

// ready answers 200 once a leader exists, so writes are served (here or
// by forwarding), and 503 while there is none: what a script that starts
// hasched and then writes waits for.
func (s *server) ready(c *call) (any, error) {
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	defer cancel()
	st, err := s.svc.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", model.ErrUnavailable, err)
	}
	if st.LeaderAddress == "" {
		return nil, fmt.Errorf("%w: not ready: no leader is elected yet", model.ErrNoLeader)
	}
	return Health{Status: "ready", Leader: st.Leader, LeaderAddress: st.LeaderAddress}, nil
}

// nameFromBody reads a name sent as the whole body, as Elastic-Job-Cloud's
// clients do (`-d 'my_job'`); a JSON string ("my_job") is accepted too.
func nameFromBody(body []byte, field string) (string, error) {
	raw := bytes.TrimSpace(body)
	name := string(raw)
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &name); err != nil {
			return "", &model.ValidationError{Field: field, Reason: "the body is neither a bare name nor a JSON string"}
		}
		name = strings.TrimSpace(name)
	}
	if name == "" {
		return "", &model.ValidationError{Field: field, Reason: "the body must be the name; it is empty"}
	}
	return name, nil
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
