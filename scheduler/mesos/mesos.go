// Package mesos runs hasched's tasks on Apache Mesos as a framework on the
// v1 HTTP scheduler API, through mesos-go v0.0.11 (httpcli, httpsched and
// the controller loop).
//
// One Executor serves one leadership term. It subscribes with the framework
// id the scheduler keeps in its store (executor.Term.State, key
// "framework_id"; the first term stores the id Mesos assigns), a failover
// timeout (a week by default) and checkpointing, so that the tasks outlive
// the scheduler: Close ends the subscription but never tears the framework
// down, and the next leader subscribes with the same id and adopts them
// through reconciliation.
//
// Tasks are Mesos command tasks. Launch queues them; they are placed on
// offers by cpus and mem, with the app's own overhead counted once per app
// and agent, and all shards of one run are placed together or not at all.
// Offers are never held: what is not used is declined with a refuse filter,
// and offers are suppressed while nothing waits and revived when work comes.
//
// The master is found from a list of http(s) URLs (tried in turn, following
// the leader's 307 redirects) or from ZooKeeper (zk://host:2181/mesos: the
// json.info_ node with the lowest sequence number is the leader). A heartbeat
// watchdog drops a subscription that has been silent for several heartbeat
// intervals, and the controller subscribes again.
package mesos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"

	"github.com/hasched/hasched/internal/defaults"
	"github.com/hasched/hasched/scheduler/executor"
)

// Errors, for errors.Is.
var (
	// ErrInvalidConfig wraps every Config validation failure.
	ErrInvalidConfig = errors.New("mesos: invalid config")
	// ErrClosed is returned by every call made after Close.
	ErrClosed = fmt.Errorf("mesos: %w", executor.ErrClosed)
	// ErrInvalidTask is returned by Launch, which then queues nothing, when
	// a task of the batch cannot be run at all.
	ErrInvalidTask = fmt.Errorf("mesos: %w", executor.ErrInvalidTask)
	// ErrNotSubscribed: the call needs a subscription to the master and
	// there is none at the moment.
	ErrNotSubscribed = errors.New("mesos: not subscribed to a master")
	// ErrNoLeader: master detection knows of no leading master.
	ErrNoLeader = errors.New("mesos: no leading master known")
)

// FrameworkIDKey is the executor.StateStore key of the framework id.
const FrameworkIDKey = "framework_id"

// Defaults of Config's zero values.
const (
	DefaultFailoverTimeout        = 7 * 24 * time.Hour
	DefaultRole                   = "*"
	DefaultName                   = "hasched"
	DefaultRefuseSeconds          = 5 * time.Second
	DefaultHeartbeatTimeoutFactor = 5
	DefaultDialTimeout            = 5 * time.Second
	DefaultResponseHeaderTimeout  = 15 * time.Second
	DefaultCallTimeout            = 10 * time.Second
	DefaultZooKeeperTimeout       = 10 * time.Second
	DefaultMinResubscribeWait     = time.Second
	DefaultMaxResubscribeWait     = 15 * time.Second
	DefaultFailedOverWait         = 30 * time.Second

	// defaultHeartbeatInterval is assumed until SUBSCRIBED names one
	// (Mesos sends 15s).
	defaultHeartbeatInterval = 15 * time.Second
	// statusBuffer is the capacity of the Statuses channel; the queue
	// behind it is unbounded.
	statusBuffer = 1024
	// maxTerminalKept bounds the ended tasks an Executor remembers (to
	// answer a repeated Launch with their end instead of a second run).
	maxTerminalKept = 10000
)

// Config configures the executors of a Factory. Zero values take the
// defaults above.
type Config struct {
	// Masters is one or more http(s)://host:port URLs of Mesos masters
	// (tried in order; a standby's redirect to the leader is followed), or
	// exactly one zk://host:2181[,host:2181…]/path URL of the ZooKeeper
	// ensemble the masters elect their leader on (zk://user:pass@… for
	// digest auth). Required. ParseMasters splits a flag's value.
	Masters []string
	// FailoverTimeout is how long Mesos keeps the framework and its tasks
	// while no scheduler is subscribed; default a week.
	FailoverTimeout time.Duration
	// Role is the framework's role; default "*".
	Role string
	// User runs the tasks on the agents; default the current user.
	User string
	// Name is the framework's name; default "hasched".
	Name string
	// Hostname and WebUIURL are shown by Mesos for the framework
	// (optional).
	Hostname string
	WebUIURL string
	// RefuseSeconds is the refuse filter of declined offers (and of the
	// unused rest of accepted ones); default 5s.
	RefuseSeconds time.Duration
	// HeartbeatTimeoutFactor: a subscription silent for this many heartbeat
	// intervals is dropped and made anew; default 5.
	HeartbeatTimeoutFactor float64
	// Logger default: a null logger.
	Logger hclog.Logger
	// DialTimeout bounds connecting to a master; ResponseHeaderTimeout the
	// wait for a response's headers (the SUBSCRIBE stream's included: the
	// master answers at once). CallTimeout bounds each call other than
	// SUBSCRIBE. No timeout ever bounds the SUBSCRIBE stream itself.
	DialTimeout           time.Duration
	ResponseHeaderTimeout time.Duration
	CallTimeout           time.Duration
	// ZooKeeperTimeout is the session timeout of master detection.
	ZooKeeperTimeout time.Duration
	// MinResubscribeWait and MaxResubscribeWait bound the back-off between
	// subscription attempts.
	MinResubscribeWait time.Duration
	MaxResubscribeWait time.Duration
	// FailedOverWait is how long an executor waits before subscribing
	// again after another scheduler took the framework over ("Framework
	// failed over": a newer leader, most likely, whose subscription must
	// not be stolen back at once).
	FailedOverWait time.Duration
}

// withDefaults validates cfg and fills in the defaults.
func (cfg Config) withDefaults() (Config, masterSource, error) {
	src, err := parseMasterSource(cfg.Masters)
	if err != nil {
		return cfg, src, err
	}
	if cfg.FailoverTimeout < 0 {
		return cfg, src, fmt.Errorf("%w: FailoverTimeout is negative (%v)", ErrInvalidConfig, cfg.FailoverTimeout)
	}
	if cfg.FailoverTimeout == 0 {
		cfg.FailoverTimeout = DefaultFailoverTimeout
	}
	if cfg.FailoverTimeout < time.Second {
		return cfg, src, fmt.Errorf("%w: FailoverTimeout %v is below a second: Mesos would kill the tasks as soon as a scheduler disconnects", ErrInvalidConfig, cfg.FailoverTimeout)
	}
	if cfg.Role == "" {
		cfg.Role = DefaultRole
	}
	if err := validRole(cfg.Role); err != nil {
		return cfg, src, err
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.User == "" {
		u, err := currentUser()
		if err != nil {
			return cfg, src, fmt.Errorf("%w: no User and the current user is unknown: %v", ErrInvalidConfig, err)
		}
		cfg.User = u
	}
	if cfg.HeartbeatTimeoutFactor < 0 {
		return cfg, src, fmt.Errorf("%w: HeartbeatTimeoutFactor is negative (%v)", ErrInvalidConfig, cfg.HeartbeatTimeoutFactor)
	}
	if cfg.HeartbeatTimeoutFactor == 0 {
		cfg.HeartbeatTimeoutFactor = DefaultHeartbeatTimeoutFactor
	}
	if cfg.HeartbeatTimeoutFactor < 1.5 {
		return cfg, src, fmt.Errorf("%w: HeartbeatTimeoutFactor %v would drop healthy subscriptions; use at least 1.5", ErrInvalidConfig, cfg.HeartbeatTimeoutFactor)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if err := defaults.Durations(ErrInvalidConfig, []defaults.Duration{
		{Name: "RefuseSeconds", V: &cfg.RefuseSeconds, Default: DefaultRefuseSeconds},
		{Name: "DialTimeout", V: &cfg.DialTimeout, Default: DefaultDialTimeout},
		{Name: "ResponseHeaderTimeout", V: &cfg.ResponseHeaderTimeout, Default: DefaultResponseHeaderTimeout},
		{Name: "CallTimeout", V: &cfg.CallTimeout, Default: DefaultCallTimeout},
		{Name: "ZooKeeperTimeout", V: &cfg.ZooKeeperTimeout, Default: DefaultZooKeeperTimeout},
		{Name: "MinResubscribeWait", V: &cfg.MinResubscribeWait, Default: DefaultMinResubscribeWait},
		{Name: "MaxResubscribeWait", V: &cfg.MaxResubscribeWait, Default: DefaultMaxResubscribeWait},
		{Name: "FailedOverWait", V: &cfg.FailedOverWait, Default: DefaultFailedOverWait},
	}...); err != nil {
		return cfg, src, err
	}
	if cfg.MaxResubscribeWait < cfg.MinResubscribeWait {
		return cfg, src, fmt.Errorf("%w: MaxResubscribeWait %v is below MinResubscribeWait %v", ErrInvalidConfig, cfg.MaxResubscribeWait, cfg.MinResubscribeWait)
	}
	return cfg, src, nil
}

// Validate checks cfg as NewFactory does, without starting anything.
func (cfg Config) Validate() error {
	_, _, err := cfg.withDefaults()
	return err
}

// validRole checks a role name as Mesos does (roles.cpp), loosely.
func validRole(role string) error {
	if role == "*" {
		return nil
	}
	if role == "." || role == ".." || strings.HasPrefix(role, "-") || strings.HasPrefix(role, "/") || strings.HasSuffix(role, "/") {
		return fmt.Errorf("%w: role %q is not a valid Mesos role", ErrInvalidConfig, role)
	}
	for _, r := range role {
		if r <= ' ' || r == 0x7f || r == '\\' {
			return fmt.Errorf("%w: role %q is not a valid Mesos role", ErrInvalidConfig, role)
		}
	}
	return nil
}

func currentUser() (string, error) {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username, nil
	}
	if u := os.Getenv("USER"); u != "" {
		return u, nil
	}
	return "", errors.New("user.Current failed and $USER is empty")
}

// NewFactory checks cfg once (so that a bad configuration fails at start-up,
// not at the first term) and returns a Factory opening one Executor per
// term.
func NewFactory(cfg Config) (executor.Factory, error) {
	cfg, src, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, term executor.Term) (executor.Executor, error) {
		return open(ctx, cfg, src, term)
	}, nil
}

// Executor is the Mesos framework of one term; it implements
// executor.Executor and executor.Describer.
type Executor struct {
	cfg  Config
	src  masterSource
	log  hclog.Logger
	term executor.Term

	out   chan executor.Status
	queue *executor.StatusQueue

	// ctx is cancelled by Close: it ends the controller loop, the
	// subscription and every call in flight.
	ctx    context.Context
	cancel context.CancelFunc

	ep     *endpoints
	caller calls.Caller
	http   *http.Client // master /state look-ups (not the stream)
	zk     *zkDetector  // nil with http masters

	// offerMu serialises offer handling with the calls that change what
	// the executor wants from Mesos (Launch, Kill): so SUPPRESS and REVIVE
	// follow the last change, and a task is never both queued and placed.
	offerMu sync.Mutex

	// mu guards the fields below.
	mu             sync.Mutex
	frameworkID    string
	storedID       string // the id in the term's state store
	connected      bool
	everSubscribed bool
	subscribedAt   time.Time
	master         string        // base URL of the master subscribed to
	sub            *subscription // the current subscription's stream
	lastEvent      time.Time
	lastHeartbeat  time.Time
	heartbeat      time.Duration // the master's heartbeat interval
	failedOverAt   time.Time     // another scheduler took the framework over
	resetBackoff   bool          // subscribed: the next attempt waits the least
	suppressed     bool
	reviveWanted   bool
	lastDecline    time.Time
	lastRevive     time.Time
	// pending are the tasks waiting for offers, in launch order.
	pending []executor.Task
	// tasks are the tasks this executor placed or heard of.
	tasks    map[string]*taskState
	terminal []string // ended task ids, oldest first (bounded)
	// agents maps agent ids to host names (offers, /state).
	agents      map[string]string
	agentLookup time.Time // last /state look-up
	// requests made while not subscribed, sent on SUBSCRIBED.
	wantImplicit  bool
	wantReconcile map[string]bool
	wantKill      map[string]bool

	calls     executor.Gate  // Launch, Kill and Reconcile calls in flight
	wg        sync.WaitGroup // controller loop, tokens, watchdogs, detector
	done      chan struct{}  // closed by Close after wg: ends the drainer
	drained   chan struct{}
	closeOnce sync.Once
}

var (
	_ executor.Executor  = (*Executor)(nil)
	_ executor.Describer = (*Executor)(nil)
)

// taskState is what an executor knows of one task.
type taskState struct {
	task    executor.Task // zero but ID if only heard of
	agentID string
	last    executor.Status
	ended   bool
}

// open starts the executor of one term: it loads the framework id and
// starts master detection and the controller loop, which subscribes in the
// background.
func open(ctx context.Context, cfg Config, src masterSource, term executor.Term) (*Executor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if term.State == nil {
		return nil, fmt.Errorf("%w: the term has no state store for the framework id", ErrInvalidConfig)
	}
	id, err := loadFrameworkID(ctx, term.State)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.Named("mesos").With("term", term.Token)
	e := &Executor{
		cfg:           cfg,
		src:           src,
		log:           log,
		term:          term,
		out:           make(chan executor.Status, statusBuffer),
		queue:         executor.NewStatusQueue(),
		frameworkID:   id,
		storedID:      id,
		heartbeat:     defaultHeartbeatInterval,
		tasks:         map[string]*taskState{},
		agents:        map[string]string{},
		wantReconcile: map[string]bool{},
		wantKill:      map[string]bool{},
		done:          make(chan struct{}),
		drained:       make(chan struct{}),
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	transport := newTransport(cfg)
	e.ep = newEndpoints(src, transport, log)
	e.http = &http.Client{Transport: transport, Timeout: cfg.CallTimeout}
	e.ep.onChange = e.leaderChanged
	e.caller = e.newCaller()

	go func() {
		defer close(e.drained)
		e.queue.Drain(e.out, e.done)
	}()
	if src.zk != nil {
		d, err := startZKDetector(*src.zk, cfg.ZooKeeperTimeout, log, e.ep.setDetected)
		if err != nil {
			e.cancel()
			close(e.done)
			<-e.drained
			return nil, err
		}
		e.zk = d
	}
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		e.run()
	}()
	go func() {
		defer e.wg.Done()
		e.reviver()
	}()
	if id == "" {
		log.Info("registering a new Mesos framework", "masters", src.display, "name", cfg.Name, "user", cfg.User, "role", cfg.Role)
	} else {
		log.Info("subscribing to Mesos with the stored framework id", "masters", src.display, "framework_id", id)
	}
	return e, nil
}

// loadFrameworkID reads the stored framework id ("" if none).
func loadFrameworkID(ctx context.Context, st executor.StateStore) (string, error) {
	b, err := st.Load(ctx, FrameworkIDKey)
	if errors.Is(err, executor.ErrNoState) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("mesos: load the framework id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Statuses delivers every status update; it is closed by Close.
func (e *Executor) Statuses() <-chan executor.Status { return e.out }

// Close ends the term: it stops the controller loop (the subscription
// ends; the framework and its tasks stay, for the next leader), master
// detection and every goroutine of the executor, and closes Statuses.
// In-flight Launch, Kill and Reconcile calls are cancelled and waited for.
func (e *Executor) Close() error {
	e.closeOnce.Do(func() {
		e.calls.Shut()
		e.cancel()
		e.calls.Wait()
		e.wg.Wait()
		if e.zk != nil {
			e.zk.close()
		}
		close(e.done)
		<-e.drained
		e.ep.transport.CloseIdleConnections()
		e.log.Info("closed; the framework and its tasks stay for the next leader")
	})
	return nil
}

// begin registers a call; the returned func ends it.
func (e *Executor) begin() (func(), error) { return e.calls.Enter(ErrClosed) }

// opContext is ctx, cancelled by Close too.
func (e *Executor) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(e.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// Describe says which master the executor uses, under which framework id,
// whether it is subscribed and when it last heard a heartbeat.
func (e *Executor) Describe() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := map[string]string{
		"masters":      e.src.display,
		"framework_id": e.frameworkID,
		"connected":    "no",
		"role":         e.cfg.Role,
		"queued_tasks": fmt.Sprint(len(e.pending)),
	}
	if e.connected {
		d["connected"] = "yes"
	}
	master := e.master
	if master == "" {
		master = e.ep.current()
	}
	d["master"] = master
	if e.lastHeartbeat.IsZero() {
		d["last_heartbeat"] = "never"
	} else {
		d["last_heartbeat"] = e.lastHeartbeat.UTC().Format(time.RFC3339)
	}
	if e.connected {
		d["subscribed_at"] = e.subscribedAt.UTC().Format(time.RFC3339)
		if e.suppressed {
			d["offers"] = "suppressed"
		} else {
			d["offers"] = "wanted"
		}
	}
	if !e.failedOverAt.IsZero() && !e.connected {
		d["failed_over_at"] = e.failedOverAt.UTC().Format(time.RFC3339)
	}
	return d
}

// emit queues a status; it never blocks.
func (e *Executor) emit(st executor.Status) {
	if st.Time.IsZero() {
		st.Time = time.Now()
	}
	e.queue.Push(st)
}

// remember records a status of a task; e.mu is held.
func (e *Executor) remember(st executor.Status, agentID string) *taskState {
	ts := e.tasks[st.TaskID]
	if ts == nil {
		ts = &taskState{task: executor.Task{ID: st.TaskID}}
		e.tasks[st.TaskID] = ts
	}
	if agentID != "" {
		ts.agentID = agentID
	}
	ts.last = st
	if st.State.Terminal() && !ts.ended {
		ts.ended = true
		e.terminal = append(e.terminal, st.TaskID)
		for len(e.terminal) > maxTerminalKept {
			old := e.terminal[0]
			e.terminal = e.terminal[1:]
			if t := e.tasks[old]; t != nil && t.ended {
				delete(e.tasks, old)
			}
		}
	} else if !st.State.Terminal() && ts.ended {
		// Back from the dead (an unreachable agent returned).
		ts.ended = false
	}
	return ts
}

func ptr[T any](v T) *T { return &v }
