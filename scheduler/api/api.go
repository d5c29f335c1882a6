// Package api is hasched's REST API: Elastic-Job-Cloud's paths and JSON
// (/api/app, /api/job/…, /api/operate/…) on a Service, so its
// users' scripts keep working.
//
// Every process serves the API. Reads are answered locally from the store.
// Writes are served by the leader; a standby's Service refuses them with
// model.ErrNotLeader and the API forwards them, body and credentials
// unchanged, to the leader's advertised address, marking the request with
// HeaderForwarded so that it is forwarded at most once.
package api

import (
	"context"
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
)

// Config configures New.
type Config struct {
	// Service is the scheduler the API serves; required.
	Service Service
	// Logger receives the access log (debug) and errors (null if nil).
	Logger hclog.Logger
	// AuthUser and AuthPassword, if set (both or neither), are the HTTP
	// Basic credentials every request but a GET or HEAD must carry.
	AuthUser, AuthPassword string
	// MaxBodyBytes caps a request body (DefaultMaxBodyBytes if zero).
	MaxBodyBytes int64
	// RequestTimeout bounds the work done for one request, forwarding
	// included (DefaultRequestTimeout if zero).
	RequestTimeout time.Duration
	// ReconcileInterval is the least time between two accepted
	// reconciliation requests, explicit or implicit, as in
	// Elastic-Job-Cloud (DefaultReconcileInterval if zero).
	ReconcileInterval time.Duration
	// HTTPClient forwards writes to the leader. If nil, a client with
	// connect, header and overall timeouts is used. It should not follow
	// redirects, so that the leader's answer is relayed as it is.
	HTTPClient *http.Client
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Service == nil {
		return cfg, errors.New("api: Config.Service is nil")
	}
	if (cfg.AuthUser == "") != (cfg.AuthPassword == "") {
		return cfg, errors.New("api: Config.AuthUser and Config.AuthPassword must be set together")
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
		cfg.HTTPClient = defaultForwardClient()
	}
	return cfg, nil
}

// defaultForwardClient is a client for forwarding: bounded connect,
// handshake, header and overall times, and redirects relayed, not followed.
func defaultForwardClient() *http.Client {
	return &http.Client{
		Timeout: DefaultForwardTimeout,
		Transport: &http.Transport{
			Proxy:                 nil, // the leader is a peer, never behind the environment's proxy
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: DefaultForwardTimeout,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
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
	// reconcileMu guards lastReconcile, the time of the last reconciliation
	// this process accepted (or is carrying out).
	reconcileMu   sync.Mutex
	lastReconcile time.Time
}

// New returns the API's handler. It serves Elastic-Job-Cloud's paths under
// /api and /healthz; anything else is 404.
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
	}
	s.routes = s.routeTable()
	return s, nil
}

// ServeHTTP routes one request, recovers a panic into a 500 and writes the
// access log.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &recorder{ResponseWriter: w}
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
		s.log.Debug("request",
			"method", r.Method, "path", r.URL.Path, "status", rw.statusCode(),
			"bytes", rw.bytes, "duration", time.Since(start), "remote", r.RemoteAddr,
			"forwarded", r.Header.Get(HeaderForwarded) != "")
	}()
	s.serve(rw, r)
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	rt, params, allow := s.match(r.Method, r.URL)
	switch {
	case rt == nil && len(allow) == 0:
		writeJSON(w, http.StatusNotFound, ErrorBody{Error: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
		return
	case rt == nil:
		w.Header().Set("Allow", joinMethods(allow))
		writeJSON(w, http.StatusMethodNotAllowed, ErrorBody{Error: fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, joinMethods(allow))})
		return
	}
	if rt.write && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="hasched", charset="UTF-8"`)
		writeJSON(w, http.StatusUnauthorized, ErrorBody{Error: "writes need valid credentials (HTTP Basic auth)"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	c := &call{ctx: ctx, r: r, params: params}
	if rt.write {
		body, err := readBody(w, r, s.cfg.MaxBodyBytes)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		c.body = body
	}
	res, err := rt.handle(c)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, res)
	case rt.write && errors.Is(err, model.ErrNotLeader):
		s.forwardToLeader(w, c)
	default:
		s.writeError(w, r, err)
	}
}

// call is one request as a handler sees it.
type call struct {
	ctx    context.Context
	r      *http.Request
	params map[string]string
	// body is the whole request body of a write (nil for reads).
	body []byte
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
