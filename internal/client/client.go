// Package client is a typed client of hasched's REST API (package
// scheduler/api), for the command line and for tests.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/model"
)

// Defaults for the zero values of Config.
const (
	DefaultBaseURL = "http://127.0.0.1:8899"
	DefaultTimeout = 30 * time.Second
)

// maxResponse caps what is read of one response.
const maxResponse = 32 << 20

// Config configures New.
type Config struct {
	// BaseURL is the server's URL (DefaultBaseURL if empty); "host:port"
	// means http://host:port.
	BaseURL string
	// User and Password, if set, are sent as HTTP Basic credentials.
	User, Password string
	// HTTPClient sends the requests. If nil, a client with connect,
	// handshake, header and overall timeouts of at most DefaultTimeout is
	// used.
	HTTPClient *http.Client
	// UserAgent is sent with every request ("hasched-client" if empty).
	UserAgent string
	// TLS configures https:// for the default client (the CA to verify the
	// server with, a client certificate); nil uses the system's roots.
	// Ignored when HTTPClient is set.
	TLS *tls.Config
}

// Client talks to one hasched server. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	user      string
	password  string
	http      *http.Client
	userAgent string
}

// New validates cfg and returns a client; it makes no request.
func New(cfg Config) (*Client, error) {
	raw := cfg.BaseURL
	if raw == "" {
		raw = DefaultBaseURL
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("client: server URL %q: %w", cfg.BaseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("client: server URL %q: scheme must be http or https", cfg.BaseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("client: server URL %q has no host", cfg.BaseURL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("client: server URL %q: pass credentials as User and Password, not in the URL", u.Redacted())
	}
	if cfg.Password != "" && cfg.User == "" {
		return nil, errors.New("client: a password without a user")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	c := &Client{base: u, user: cfg.User, password: cfg.Password, http: cfg.HTTPClient, userAgent: cfg.UserAgent}
	if c.http == nil {
		c.http = defaultHTTPClient(cfg.TLS)
	}
	if c.userAgent == "" {
		c.userAgent = "hasched-client"
	}
	return c, nil
}

func defaultHTTPClient(tlsConfig *tls.Config) *http.Client {
	if tlsConfig != nil {
		tlsConfig = tlsConfig.Clone()
	}
	return &http.Client{
		Timeout: DefaultTimeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: DefaultTimeout,
			IdleConnTimeout:       30 * time.Second,
			TLSClientConfig:       tlsConfig,
		},
	}
}

// BaseURL is the server's URL as the client uses it.
func (c *Client) BaseURL() string { return c.base.String() }

// Error is a response other than 2xx.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the server's message (or the start of a body that was not
	// the API's JSON).
	Message string
	// Field names the request field the server refused, if any.
	Field string
	// RetryAfter is the server's Retry-After, if it sent one.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if e.Field != "" && !strings.Contains(msg, e.Field) {
		msg = fmt.Sprintf("%s (field %s)", msg, e.Field)
	}
	return fmt.Sprintf("server answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), msg)
}

// Unwrap maps the status to the scheduler's error it stands for, so that
// errors.Is(err, model.ErrNotFound) and the like hold.
func (e *Error) Unwrap() error {
	switch e.StatusCode {
	case http.StatusNotFound:
		return model.ErrNotFound
	case http.StatusConflict:
		return model.ErrConflict
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return model.ErrInvalid
	case http.StatusServiceUnavailable:
		return model.ErrNoLeader
	}
	return nil
}

// do sends one request and decodes a 2xx JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, body []byte, contentType string, out any) error {
	// path is escaped already: names go through seg.
	target := c.base.String() + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// *url.Error repeats the method and URL; say them once.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s %s: %w", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return responseError(resp, b)
	}
	if out == nil || len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

func responseError(resp *http.Response, body []byte) *Error {
	e := &Error{StatusCode: resp.StatusCode}
	var eb api.ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		e.Message, e.Field = eb.Error, eb.Field
	} else {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		e.Message = msg
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if secs, err := strconv.Atoi(s); err == nil && secs >= 0 {
			e.RetryAfter = time.Duration(secs) * time.Second
		}
	}
	return e
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, "", out)
}

func (c *Client) write(ctx context.Context, method, path string, body []byte, contentType string) (api.Result, error) {
	var res api.Result
	err := c.do(ctx, method, path, body, contentType, &res)
	return res, err
}

func (c *Client) writeJSON(ctx context.Context, method, path string, v any) (api.Result, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return api.Result{}, fmt.Errorf("%s %s: encode request: %w", method, path, err)
	}
	return c.write(ctx, method, path, b, "application/json")
}

func seg(name string) string { return url.PathEscape(name) }

// checkRaw refuses a body that is not JSON before it is sent, with an error
// that says so rather than the server's.
func checkRaw(raw []byte) error {
	if !json.Valid(raw) {
		return errors.New("the definition is not valid JSON")
	}
	return nil
}

// RegisterApp registers an app (POST /api/app). Every field is sent, so a
// zero value is taken as given, not replaced by the server's default; use
// RegisterAppJSON to leave fields out.
func (c *Client) RegisterApp(ctx context.Context, app model.App) (api.Result, error) {
	return c.writeJSON(ctx, http.MethodPost, "/api/app", app)
}

// RegisterAppJSON registers an app given as JSON, sent as it is, so that
// fields it leaves out get the server's defaults.
func (c *Client) RegisterAppJSON(ctx context.Context, raw []byte) (api.Result, error) {
	if err := checkRaw(raw); err != nil {
		return api.Result{}, err
	}
	return c.write(ctx, http.MethodPost, "/api/app", raw, "application/json")
}

// UpdateApp replaces an app's configuration (PUT /api/app).
func (c *Client) UpdateApp(ctx context.Context, app model.App) (api.Result, error) {
	return c.writeJSON(ctx, http.MethodPut, "/api/app", app)
}

// UpdateAppJSON is UpdateApp with the app given as JSON.
func (c *Client) UpdateAppJSON(ctx context.Context, raw []byte) (api.Result, error) {
	if err := checkRaw(raw); err != nil {
		return api.Result{}, err
	}
	return c.write(ctx, http.MethodPut, "/api/app", raw, "application/json")
}

// App reads one app.
func (c *Client) App(ctx context.Context, name string) (model.App, error) {
	var app model.App
	err := c.get(ctx, "/api/app/"+seg(name), &app)
	return app, err
}

// Apps lists every app.
func (c *Client) Apps(ctx context.Context) ([]model.App, error) {
	var apps []model.App
	err := c.get(ctx, "/api/app/list", &apps)
	return apps, err
}

// DeregisterApp removes an app and every job of it.
func (c *Client) DeregisterApp(ctx context.Context, name string) (api.Result, error) {
	return c.write(ctx, http.MethodDelete, "/api/app/"+seg(name), nil, "")
}

// AppDisabled says whether an app is disabled.
func (c *Client) AppDisabled(ctx context.Context, name string) (bool, error) {
	var d bool
	err := c.get(ctx, "/api/app/"+seg(name)+"/disable", &d)
	return d, err
}

// DisableApp disables an app: none of its jobs is launched.
func (c *Client) DisableApp(ctx context.Context, name string) (api.Result, error) {
	return c.write(ctx, http.MethodPost, "/api/app/"+seg(name)+"/disable", nil, "")
}

// EnableApp enables an app again.
func (c *Client) EnableApp(ctx context.Context, name string) (api.Result, error) {
	return c.write(ctx, http.MethodPost, "/api/app/"+seg(name)+"/enable", nil, "")
}

// RegisterJob registers a job (POST /api/job/register). Every field is sent,
// so a zero value (misfire false, cpuCount 0) is taken as given, not
// replaced by the server's default; use RegisterJobJSON to leave fields out.
func (c *Client) RegisterJob(ctx context.Context, job model.Job) (api.Result, error) {
	return c.writeJSON(ctx, http.MethodPost, "/api/job/register", job)
}

// RegisterJobJSON registers a job given as JSON, sent as it is, so that
// fields it leaves out get the server's defaults.
func (c *Client) RegisterJobJSON(ctx context.Context, raw []byte) (api.Result, error) {
	if err := checkRaw(raw); err != nil {
		return api.Result{}, err
	}
	return c.write(ctx, http.MethodPost, "/api/job/register", raw, "application/json")
}

// UpdateJob replaces a job's configuration (PUT /api/job/update).
func (c *Client) UpdateJob(ctx context.Context, job model.Job) (api.Result, error) {
	return c.writeJSON(ctx, http.MethodPut, "/api/job/update", job)
}

// UpdateJobJSON is UpdateJob with the job given as JSON.
func (c *Client) UpdateJobJSON(ctx context.Context, raw []byte) (api.Result, error) {
	if err := checkRaw(raw); err != nil {
		return api.Result{}, err
	}
	return c.write(ctx, http.MethodPut, "/api/job/update", raw, "application/json")
}

// DeregisterJob removes a job and kills its tasks.
func (c *Client) DeregisterJob(ctx context.Context, name string) (api.Result, error) {
	return c.write(ctx, http.MethodDelete, "/api/job/"+seg(name)+"/deregister", nil, "")
}

// TriggerJob runs a TRANSIENT job once now. The name goes as a JSON string
// with Content-Type application/json: the server refuses any other type
// for a body (a browser could send text/plain from another site).
func (c *Client) TriggerJob(ctx context.Context, name string) (api.Result, error) {
	return c.writeJSON(ctx, http.MethodPost, "/api/job/trigger", name)
}

// TriggerJobWith runs a TRANSIENT job once now, with the trigger's own job
// parameter if it has one.
func (c *Client) TriggerJobWith(ctx context.Context, tr model.Trigger) (api.Result, error) {
	return c.writeJSON(ctx, http.MethodPost, "/api/job/trigger", tr)
}

// Job reads one job.
func (c *Client) Job(ctx context.Context, name string) (model.Job, error) {
	var job model.Job
	err := c.get(ctx, "/api/job/jobs/"+seg(name), &job)
	return job, err
}

// Jobs lists every job.
func (c *Client) Jobs(ctx context.Context) ([]model.Job, error) {
	var jobs []model.Job
	err := c.get(ctx, "/api/job/jobs", &jobs)
	return jobs, err
}

// JobDisabled says whether a job is disabled.
func (c *Client) JobDisabled(ctx context.Context, name string) (bool, error) {
	var d bool
	err := c.get(ctx, "/api/job/"+seg(name)+"/disable", &d)
	return d, err
}

// DisableJob disables a job: it is not launched until enabled.
func (c *Client) DisableJob(ctx context.Context, name string) (api.Result, error) {
	return c.write(ctx, http.MethodPost, "/api/job/"+seg(name)+"/disable", nil, "")
}

// EnableJob enables a job again.
func (c *Client) EnableJob(ctx context.Context, name string) (api.Result, error) {
	return c.write(ctx, http.MethodPost, "/api/job/"+seg(name)+"/enable", nil, "")
}

// RunningTasks lists the running tasks.
func (c *Client) RunningTasks(ctx context.Context) ([]model.TaskRecord, error) {
	var tasks []model.TaskRecord
	err := c.get(ctx, "/api/job/tasks/running", &tasks)
	return tasks, err
}

// ReadyTasks lists the ready queue.
func (c *Client) ReadyTasks(ctx context.Context) ([]model.ReadyEntry, error) {
	var ready []model.ReadyEntry
	err := c.get(ctx, "/api/job/tasks/ready", &ready)
	return ready, err
}

// Executions lists a job's last runs, the latest first (limit 0: the
// server's default; at most model.MaxExecutionsLimit).
func (c *Client) Executions(ctx context.Context, job string, limit int) ([]model.Execution, error) {
	path := "/api/job/" + seg(job) + "/executions"
	if limit != 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	exs := []model.Execution{}
	err := c.get(ctx, path, &exs)
	return exs, err
}

// FailoverTasks lists the failover queue.
func (c *Client) FailoverTasks(ctx context.Context) ([]model.TaskRecord, error) {
	var tasks []model.TaskRecord
	err := c.get(ctx, "/api/job/tasks/failover", &tasks)
	return tasks, err
}

// Quarantined lists the stored configurations the scheduler refuses to
// schedule because they fail validation.
func (c *Client) Quarantined(ctx context.Context) ([]model.QuarantinedConfig, error) {
	var q []model.QuarantinedConfig
	err := c.get(ctx, "/api/quarantine", &q)
	return q, err
}

// Workers lists the processes that run tasks, with what is placed on them.
func (c *Client) Workers(ctx context.Context) ([]model.WorkerView, error) {
	var w []model.WorkerView
	err := c.get(ctx, "/api/workers", &w)
	return w, err
}

// Reconcile asks the leader to reconcile its tasks with the executor:
// explicitly (the tasks it believes run) or implicitly (all). The server
// accepts one request per 10 s; sooner ones fail with 429.
func (c *Client) Reconcile(ctx context.Context, explicit bool) (api.Result, error) {
	kind := "implicit"
	if explicit {
		kind = "explicit"
	}
	return c.write(ctx, http.MethodPost, "/api/operate/reconcile/"+kind, nil, "")
}

// Status describes the process answering and the leader it follows.
func (c *Client) Status(ctx context.Context) (model.Status, error) {
	var st model.Status
	err := c.get(ctx, "/api/leader", &st)
	return st, err
}

// Health is the answer of /healthz.
func (c *Client) Health(ctx context.Context) (api.Health, error) {
	var h api.Health
	err := c.get(ctx, "/healthz", &h)
	return h, err
}
