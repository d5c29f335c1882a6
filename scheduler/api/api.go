// Package api is hasched's REST API: Elastic-Job-Cloud's paths and JSON
// (/api/app, /api/job/…, /api/operate/…) on a Service, so its
// users' scripts keep working.
//
// Every process serves the API. Writes are served by the leader; a
// standby's Service refuses them with model.ErrNotLeader and the API
// forwards them, body unchanged, to the leader's advertised address,
// marking the request with HeaderForwarded so that it is forwarded at most
// once. Reads of configurations (apps, jobs, their disable flags) are
// forwarded by a standby too, as the leader answers them from memory; if
// that fails they are served locally, from the store, as are the other
// reads (forward.go).
package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/scheduler/model"
)

// Defaults for the zero values of Config.
const (
	// DefaultPort is Elastic-Job-Cloud's http_port.
	DefaultPort              = 8899
	DefaultMaxBodyBytes      = 64 << 10
	DefaultRequestTimeout    = 30 * time.Second
	DefaultReconcileInterval = 10 * time.Second
	// DefaultForwardTimeout bounds one forwarded request, response included,
	// when Config.HTTPClient is nil.
	DefaultForwardTimeout = 30 * time.Second
	// DefaultTokenTTL is how long a token from POST /api/login is good
	// for; DefaultMaxTokens how many are kept (the least recently used
	// go first).
	DefaultTokenTTL  = 8 * time.Hour
	DefaultMaxTokens = 1000
	// DefaultAuthFailureLimit failed authentications per client IP within
	// DefaultAuthFailureWindow get that IP refused (429) until the window
	// ends; DefaultMaxTrackedClients bounds the IPs counted.
	DefaultAuthFailureLimit  = 10
	DefaultAuthFailureWindow = time.Minute
	DefaultMaxTrackedClients = 10000
	// DefaultAuditSize is how many audit entries GET /api/audit keeps.
	DefaultAuditSize = 1000
)

// Upper bounds of the configurable numbers, so that no setting can make
// the process keep unbounded state.
const (
	maxTokenTTL       = 7 * 24 * time.Hour
	maxMaxTokens      = 100000
	maxTrackedClients = 1000000
	maxAuditSize      = 100000
)

// Headers the API sets or reads.
const (
	// HeaderForwarded marks a request a standby forwarded to the leader. A
	// process that is not the leader refuses such a request with 503
	// instead of forwarding it again, so a leader change in mid-flight
	// cannot make requests go round in circles.
	HeaderForwarded = "X-Hasched-Forwarded"
	// HeaderLeader names, on a forwarded request's response, the leader
	// address that answered it.
	HeaderLeader = "X-Hasched-Leader"
	// HeaderRequestedWith, sent by a script in a browser (the console),
	// drops the Basic challenge from a 401, as Spring Security does for
	// the same header.
	HeaderRequestedWith = "X-Requested-With"
)

// Config configures New.
type Config struct {
	// Service is the scheduler the API serves; required.
	Service Service
	// Logger receives the access log (debug) and errors (null if nil).
	Logger hclog.Logger
	// AuthUser and AuthPassword, if set (both or neither), are the admin
	// account: every write needs it (HTTP Basic, or a token from POST
	// /api/login), as does GET /api/audit.
	AuthUser, AuthPassword string
	// ReadOnlyUser and ReadOnlyPassword, if set (both or neither, and only
	// with the admin account), are an account that may read but not write
	// (403).
	ReadOnlyUser, ReadOnlyPassword string
	// AuthReads makes reads need an account too (/healthz and /readyz stay
	// open).
	AuthReads bool
	// TokenTTL is the lifetime of a login token (DefaultTokenTTL if zero);
	// MaxTokens how many are kept (DefaultMaxTokens if zero).
	TokenTTL  time.Duration
	MaxTokens int
	// AuthFailureLimit, AuthFailureWindow and MaxTrackedClients configure
	// the limit on failed authentications per client IP (the defaults if
	// zero).
	AuthFailureLimit  int
	AuthFailureWindow time.Duration
	MaxTrackedClients int
	// AuditSize is how many audit entries are kept (DefaultAuditSize if
	// zero).
	AuditSize int
	// ForwardHTTPS makes a standby forward writes to the leader over
	// https (every process serving the API over TLS). ForwardTLS, if set,
	// configures the default forwarding client's TLS (root CAs, a client
	// certificate).
	ForwardHTTPS bool
	ForwardTLS   *tls.Config
	// InsecureForwarding allows a standby to send the admin credentials
	// over plain http to a leader on another host. Without it such a
	// forward is refused (503, ErrInsecureForward).
	InsecureForwarding bool
	// MaxBodyBytes caps a request body (DefaultMaxBodyBytes if zero).
	MaxBodyBytes int64
	// RequestTimeout bounds the work done for one request, forwarding
	// included (DefaultRequestTimeout if zero).
	RequestTimeout time.Duration
	// ReconcileInterval is the least time between two accepted
	// reconciliation requests, explicit or implicit, as in
	// Elastic-Job-Cloud (DefaultReconcileInterval if zero).
	ReconcileInterval time.Duration
	// History, if set, serves GET /api/job/{job}/executions from run
	// history; without it that route answers 501 (ErrHistoryOff).
	History History
	// HTTPClient forwards writes to the leader. If nil, a client with
	// connect, header and overall timeouts is used. It should not follow
	// redirects, so that the leader's answer is relayed as it is.
	HTTPClient *http.Client
	// Metrics, if set, serves GET /metrics (Prometheus' exposition
	// formats): this process's metrics, with a read's access rules.
	Metrics http.Handler
	// Logs serves GET /api/tasks/{id}/log (logs.go); nil answers 501.
	Logs TaskLogs
	// LogStreamMax bounds one log answer, followed or not
	// (DefaultLogStreamMax if zero, at most a day).
	LogStreamMax time.Duration
	// StreamsDone, once closed, ends the log answers in flight: close it
	// when the server shuts down (http.Server.RegisterOnShutdown), which
	// otherwise waits for them.
	StreamsDone <-chan struct{}
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Service == nil {
		return cfg, errors.New("api: Config.Service is nil")
	}
	if (cfg.AuthUser == "") != (cfg.AuthPassword == "") {
		return cfg, errors.New("api: Config.AuthUser and Config.AuthPassword must be set together")
	}
	if (cfg.ReadOnlyUser == "") != (cfg.ReadOnlyPassword == "") {
		return cfg, errors.New("api: Config.ReadOnlyUser and Config.ReadOnlyPassword must be set together")
	}
	if cfg.ReadOnlyUser != "" && cfg.AuthUser == "" {
		return cfg, errors.New("api: a read-only account needs the admin account (Config.AuthUser) too")
	}
	if cfg.ReadOnlyUser != "" && cfg.ReadOnlyUser == cfg.AuthUser {
		return cfg, errors.New("api: the read-only and the admin account have the same user name")
	}
	if cfg.AuthReads && cfg.AuthUser == "" {
		return cfg, errors.New("api: Config.AuthReads needs Config.AuthUser")
	}
	var err error
	if cfg.TokenTTL, err = bounded("TokenTTL", cfg.TokenTTL, DefaultTokenTTL, maxTokenTTL); err != nil {
		return cfg, err
	}
	if cfg.AuthFailureWindow, err = bounded("AuthFailureWindow", cfg.AuthFailureWindow, DefaultAuthFailureWindow, time.Hour); err != nil {
		return cfg, err
	}
	if cfg.MaxTokens, err = bounded("MaxTokens", cfg.MaxTokens, DefaultMaxTokens, maxMaxTokens); err != nil {
		return cfg, err
	}
	if cfg.AuthFailureLimit, err = bounded("AuthFailureLimit", cfg.AuthFailureLimit, DefaultAuthFailureLimit, 1000); err != nil {
		return cfg, err
	}
	if cfg.MaxTrackedClients, err = bounded("MaxTrackedClients", cfg.MaxTrackedClients, DefaultMaxTrackedClients, maxTrackedClients); err != nil {
		return cfg, err
	}
	if cfg.LogStreamMax, err = bounded("LogStreamMax", cfg.LogStreamMax, DefaultLogStreamMax, maxLogStreamMax); err != nil {
		return cfg, err
	}
	if cfg.AuditSize, err = bounded("AuditSize", cfg.AuditSize, DefaultAuditSize, maxAuditSize); err != nil {
		return cfg, err
	}
	switch {
	case cfg.MaxBodyBytes == 0:
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	case cfg.MaxBodyBytes < 0:
		return cfg, fmt.Errorf("api: Config.MaxBodyBytes %d is negative", cfg.MaxBodyBytes)
	}
	switch {
	case cfg.RequestTimeout == 0:
		cfg.RequestTimeout = DefaultRequestTimeout
	case cfg.RequestTimeout < 0:
		return cfg, fmt.Errorf("api: Config.RequestTimeout %v is negative", cfg.RequestTimeout)
	}
	switch {
	case cfg.ReconcileInterval == 0:
		cfg.ReconcileInterval = DefaultReconcileInterval
	case cfg.ReconcileInterval < 0:
		return cfg, fmt.Errorf("api: Config.ReconcileInterval %v is negative", cfg.ReconcileInterval)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = defaultForwardClient(cfg.ForwardTLS)
	}
	return cfg, nil
}

// bounded applies a default to a zero setting and refuses a negative one or
// one above max.
func bounded[T int | time.Duration](name string, v, def, max T) (T, error) {
	switch {
	case v == 0:
		return def, nil
	case v < 0:
		return v, fmt.Errorf("api: Config.%s %v is negative", name, v)
	case v > max:
		return v, fmt.Errorf("api: Config.%s %v is above the limit of %v", name, v, max)
	}
	return v, nil
}

// defaultForwardClient is a client for forwarding: bounded connect,
// handshake, header and overall times, and redirects relayed, not followed.
func defaultForwardClient(tlsConfig *tls.Config) *http.Client {
	if tlsConfig != nil {
		tlsConfig = tlsConfig.Clone()
	}
	return &http.Client{
		Timeout: DefaultForwardTimeout,
		Transport: &http.Transport{
			Proxy:                 nil, // the leader is a peer, never behind the environment's proxy
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: DefaultForwardTimeout,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
			TLSClientConfig:       tlsConfig,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// server is the http.Handler New returns.
type server struct {
	svc     Service
	log     hclog.Logger
	cfg     Config
	routes  []route
	forward *http.Client

	// now is the clock of the reconciliation limit (time.Now; tests set it).
	now func() time.Time
	// readHeaderWait is forwardRead's (the constant; tests shorten it).
	readHeaderWait time.Duration
	// reconcileMu guards lastReconcile, the time of the last reconciliation
	// this process accepted (or is carrying out).
	reconcileMu   sync.Mutex
	lastReconcile time.Time

	tokens   *tokenStore
	limiter  *failureLimiter
	auditLog *auditRing
}

// New returns the API's handler. It serves Elastic-Job-Cloud's paths under
// /api, /healthz, /readyz and, with Config.Metrics, /metrics; anything else
// is 404.
func New(cfg Config) (http.Handler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &server{
		svc:     cfg.Service,
		log:     cfg.Logger,
		cfg:     cfg,
		forward: cfg.HTTPClient,
		now:     time.Now,

		readHeaderWait: readHeaderWait,
	}
	now := func() time.Time { return s.now() } // tests replace s.now
	s.tokens = newTokenStore(cfg.TokenTTL, cfg.MaxTokens, now)
	s.limiter = newFailureLimiter(cfg.AuthFailureLimit, cfg.AuthFailureWindow, cfg.MaxTrackedClients, now)
	s.auditLog = newAuditRing(cfg.AuditSize)
	s.routes = s.routeTable()
	return s, nil
}

// ServeHTTP routes one request, recovers a panic into a 500 and writes the
// access log and, for writes, the audit log.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &recorder{ResponseWriter: w}
	c := &call{ctx: r.Context(), r: r}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			if !rw.wrote {
				writeJSON(rw, http.StatusInternalServerError, ErrorBody{Error: "internal server error"})
			}
		}
		if c.audited {
			s.audit(c, rw.statusCode())
		}
		s.log.Debug("request",
			"method", r.Method, "path", redactText(r.URL.Path), "status", rw.statusCode(),
			"bytes", rw.bytes, "duration", time.Since(start), "remote", r.RemoteAddr,
			"user", c.who.name(), "forwarded", r.Header.Get(HeaderForwarded) != "")
	}()
	s.serve(rw, c)
}

func (s *server) serve(w http.ResponseWriter, c *call) {
	r := c.r
	rt, params, allow := s.match(r.Method, r.URL)
	switch {
	case rt == nil && len(allow) == 0:
		writeJSON(w, http.StatusNotFound, ErrorBody{Error: fmt.Sprintf("no such endpoint: %s %s", r.Method, redactText(r.URL.Path))})
		return
	case rt == nil:
		w.Header().Set("Allow", joinMethods(allow))
		writeJSON(w, http.StatusMethodNotAllowed, ErrorBody{Error: fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, redactText(r.URL.Path), joinMethods(allow))})
		return
	}
	c.params, c.audited = params, rt.write
	if err := s.admit(c, rt); err != nil {
		s.writeError(w, r, err)
		return
	}
	timeout := s.cfg.RequestTimeout
	if rt.stream != nil {
		timeout = s.cfg.LogStreamMax
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	c.ctx = ctx
	if rt.stream != nil {
		rt.stream(w, c)
		return
	}
	if rt.raw != nil {
		rt.raw.ServeHTTP(w, r.WithContext(ctx))
		return
	}
	if rt.write {
		body, err := readBody(w, r, s.cfg.MaxBodyBytes)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		c.body = body
	}
	if rt.leaderRead && s.forwardRead(w, c) {
		return
	}
	res, err := rt.handle(c)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, res)
	case rt.write && !rt.local && errors.Is(err, model.ErrNotLeader):
		s.forwardToLeader(w, c)
	default:
		s.writeError(w, r, err)
	}
}

// admit runs the checks a request passes before its handler runs: a write
// must come from no other site's page and declare its body as JSON, and
// the caller must have the access the route needs.
func (s *server) admit(c *call, rt *route) error {
	if rt.write {
		if err := checkOrigin(c.r); err != nil {
			return err
		}
	}
	if err := s.authorize(c, rt.access); err != nil {
		return err
	}
	if rt.write {
		return checkContentType(c.r)
	}
	return nil
}

// call is one request as a handler sees it.
type call struct {
	ctx    context.Context
	r      *http.Request
	params map[string]string
	// body is the whole request body of a write (nil for reads).
	body []byte
	// who the request acts for, once authorized.
	who principal
	// audited: the request is a write, recorded in the audit log; app and
	// job name what it was about, as far as the handler got; forwardedTo
	// the leader it was forwarded to, if it was.
	audited     bool
	app, job    string
	forwardedTo string
}

// recorder remembers the status and size of a response for the access log.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (w *recorder) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *recorder) statusCode() int {
	if !w.wrote {
		return http.StatusOK
	}
	return w.status
}
