package mesosfake

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// Defaults of Config.
const (
	DefaultHeartbeatInterval       = 15 * time.Second // the real master's
	DefaultStatusUpdateRetry       = 10 * time.Second // the agent's first retry
	MaxStatusUpdateRetry           = 10 * time.Minute // the agent's cap
	DefaultRefuseSeconds           = 5.0              // mesos.Filters' default
	DefaultVersion                 = "1.11.0"
	DefaultZooKeeperSessionTimeout = 10 * time.Second
)

// Errors of the control API, matched with errors.Is.
var (
	ErrClosed         = errors.New("mesosfake: master is closed")
	ErrUnknownTask    = errors.New("mesosfake: no live task with this id")
	ErrTaskTerminal   = errors.New("mesosfake: task is already in a terminal state")
	ErrTaskNotStaging = errors.New("mesosfake: task is not in TASK_STAGING")
	ErrUnknownAgent   = errors.New("mesosfake: unknown agent")
	ErrAgentExists    = errors.New("mesosfake: agent id already in use")
	ErrAgentInactive  = errors.New("mesosfake: agent is unreachable or gone")
	ErrRegistered     = errors.New("mesosfake: already registered in ZooKeeper")
)

// Config configures a Master. The zero value is a leading master with the
// real master's defaults, on 127.0.0.1 and a free port, on the wall clock.
type Config struct {
	// ID is MasterInfo.id and the prefix of framework, agent and offer ids.
	// Default: a random UUID, as a real master.
	ID string
	// Addr is the listen address. Default "127.0.0.1:0". Masters advertise
	// 127.0.0.1 whatever this is.
	Addr string
	// Version is MasterInfo.version. Default DefaultVersion.
	Version string
	// HeartbeatInterval is SUBSCRIBED.heartbeat_interval_seconds and the
	// period of HEARTBEAT events. Default 15s.
	HeartbeatInterval time.Duration

	// Standby starts the master as a non-leader: every scheduler call and
	// /state answer 307 to LeaderURL (503 "No leader elected" if empty).
	// LeaderURL is ignored without Standby. SetLeader changes both at run
	// time.
	Standby   bool
	LeaderURL string

	// FailoverTimeout, if > 0, replaces every framework's
	// FrameworkInfo.failover_timeout when its stream ends, so that a
	// scheduler that asks for a week can be expired in a test. Frameworks()
	// still reports what the framework asked for.
	FailoverTimeout time.Duration

	// HoldStaging keeps launched tasks in TASK_STAGING until StartTask;
	// otherwise the simulated command executor reports TASK_STARTING and
	// TASK_RUNNING at once.
	HoldStaging bool
	// FinishAfter, if > 0, finishes (TASK_FINISHED) every task this long
	// after it reached TASK_RUNNING. Otherwise tasks run until FinishTask,
	// FailTask, a KILL, or the loss of their agent or framework.
	FinishAfter time.Duration
	// StatusUpdateRetry is the simulated agent's first retry interval for an
	// unacknowledged status update; it doubles up to MaxStatusUpdateRetry.
	// Default 10s; negative disables retries (updates are still resent when
	// the framework re-subscribes).
	StatusUpdateRetry time.Duration

	// ZooKeeperSessionTimeout is used by RegisterInZooKeeper. Default 10s.
	ZooKeeperSessionTimeout time.Duration

	// Clock drives every timer of the master. Default RealClock().
	Clock Clock
	// Logger receives the master's debug logs. Default: discard.
	Logger hclog.Logger
}

// Master is a fake Apache Mesos master speaking the v1 scheduler HTTP API.
// All methods are safe for concurrent use.
type Master struct {
	cfg      Config
	log      hclog.Logger
	clock    Clock
	ln       net.Listener
	srv      *http.Server
	url      string
	hostPort string
	info     *mesos.MasterInfo

	shutdown  chan struct{} // closed by Close: streaming handlers return
	serveDone chan struct{}

	hmu      sync.Mutex // guards hclosed and handlers.Add
	hclosed  bool
	handlers sync.WaitGroup

	mu                sync.Mutex
	closed            bool
	standby           bool
	leader            string // host:port of the leading master while standby
	heartbeatsStopped bool
	frameworks        map[string]*framework // subscribed at least once, not removed
	removed           map[string]*framework // torn down or failover timeout expired
	agents            map[string]*agent
	agentOrder        []*agent
	offers            map[string]*offer
	tasks             []*task           // every task ever launched, in launch order
	live              map[taskKey]*task // tasks the master still knows (not completed)
	launches          map[string]int    // launches per task id
	calls             []CallRecord      // every scheduler call received
	cursors           map[scheduler.Call_Type]int
	timers            map[*timer]struct{}
	changed           chan struct{} // closed and replaced on every state change
	nextFramework     int
	nextAgent         int
	nextOffer         int
	zk                *zkRegistration
}

// New starts a master on a loopback listener. Close it when done.
func New(cfg Config) (*Master, error) {
	if cfg.HeartbeatInterval < 0 || cfg.FailoverTimeout < 0 || cfg.FinishAfter < 0 || cfg.ZooKeeperSessionTimeout < 0 {
		return nil, errors.New("mesosfake: durations in Config must not be negative (except StatusUpdateRetry)")
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.StatusUpdateRetry == 0 {
		cfg.StatusUpdateRetry = DefaultStatusUpdateRetry
	}
	if cfg.ZooKeeperSessionTimeout == 0 {
		cfg.ZooKeeperSessionTimeout = DefaultZooKeeperSessionTimeout
	}
	if cfg.Version == "" {
		cfg.Version = DefaultVersion
	}
	if cfg.ID == "" {
		cfg.ID = newUUIDString()
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	var leader string
	if cfg.Standby && cfg.LeaderURL != "" {
		hp, err := leaderHostPort(cfg.LeaderURL)
		if err != nil {
			return nil, err
		}
		leader = hp
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("mesosfake: listen on %s: %w", cfg.Addr, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	hostPort := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	m := &Master{
		cfg:        cfg,
		log:        cfg.Logger,
		clock:      cfg.Clock,
		ln:         ln,
		url:        "http://" + hostPort,
		hostPort:   hostPort,
		shutdown:   make(chan struct{}),
		serveDone:  make(chan struct{}),
		standby:    cfg.Standby,
		leader:     leader,
		frameworks: map[string]*framework{},
		removed:    map[string]*framework{},
		agents:     map[string]*agent{},
		offers:     map[string]*offer{},
		live:       map[taskKey]*task{},
		launches:   map[string]int{},
		cursors:    map[scheduler.Call_Type]int{},
		timers:     map[*timer]struct{}{},
		changed:    make(chan struct{}),
	}
	m.info = m.masterInfo(port)

	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/scheduler", m.serveScheduler)
	mux.HandleFunc("/state", m.serveState)
	mux.HandleFunc("/master/state", m.serveState)
	mux.HandleFunc("/state.json", m.serveState)
	mux.HandleFunc("/redirect", m.serveRedirect)
	mux.HandleFunc("/master/redirect", m.serveRedirect)
	m.srv = &http.Server{
		Handler:           m.track(mux),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          m.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	go func() {
		defer close(m.serveDone)
		_ = m.srv.Serve(ln)
	}()
	m.log.Debug("master started", "url", m.url, "id", cfg.ID, "standby", cfg.Standby)
	return m, nil
}

// masterInfo is what SUBSCRIBED.master_info and the ZooKeeper znode carry.
func (m *Master) masterInfo(port int) *mesos.MasterInfo {
	host := "127.0.0.1"
	p := uint32(port)
	return &mesos.MasterInfo{
		ID: m.cfg.ID,
		// The real master stores the IPv4 address in network byte order
		// read as a host (little-endian) integer (MESOS-1201).
		IP:       binary.LittleEndian.Uint32(net.IPv4(127, 0, 0, 1).To4()),
		Port:     &p,
		PID:      strPtr("master@" + net.JoinHostPort(host, strconv.Itoa(port))),
		Hostname: strPtr(host),
		Version:  strPtr(m.cfg.Version),
		Address:  &mesos.Address{Hostname: strPtr(host), IP: strPtr(host), Port: int32(port)},
		Capabilities: []mesos.MasterInfo_Capability{
			{Type: mesos.MasterInfo_Capability_AGENT_UPDATE},
			{Type: mesos.MasterInfo_Capability_AGENT_DRAINING},
		},
	}
}

// URL is the master's base URL, http://127.0.0.1:port; the scheduler API is
// at URL()+"/api/v1/scheduler".
func (m *Master) URL() string { return m.url }

// SchedulerURL is URL()+"/api/v1/scheduler", the endpoint a mesos-go
// httpcli.Client is pointed at.
func (m *Master) SchedulerURL() string { return m.url + "/api/v1/scheduler" }

// MasterInfo returns a copy of what the master advertises.
func (m *Master) MasterInfo() mesos.MasterInfo { return *cloneMsg(m.info) }

// Close ends every subscription stream, stops every timer, removes the
// ZooKeeper registration, shuts the HTTP server, and waits for all of its
// goroutines. It is idempotent.
func (m *Master) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		<-m.serveDone
		return nil
	}
	m.closed = true
	for tm := range m.timers {
		tm.t.Stop()
	}
	m.timers = map[*timer]struct{}{}
	for _, fw := range m.frameworks {
		if fw.stream != nil {
			fw.stream.close()
			fw.stream = nil
		}
	}
	m.notifyLocked()
	m.mu.Unlock()

	zkErr := m.Unregister()
	m.hmu.Lock()
	m.hclosed = true
	m.hmu.Unlock()
	close(m.shutdown)
	err := m.srv.Close()
	<-m.serveDone
	m.handlers.Wait()
	m.log.Debug("master closed", "url", m.url)
	if zkErr != nil {
		return zkErr
	}
	return err
}

// track counts the handlers in flight so that Close can wait for them.
func (m *Master) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.hmu.Lock()
		if m.hclosed {
			m.hmu.Unlock()
			http.Error(w, "master is shutting down", http.StatusServiceUnavailable)
			return
		}
		m.handlers.Add(1)
		m.hmu.Unlock()
		defer m.handlers.Done()
		h.ServeHTTP(w, r)
	})
}

// timer is a clock timer the master owns: Close stops them all, and a
// callback that lost a race with Stop or Close does nothing.
type timer struct{ t Timer }

// afterLocked runs f with m.mu held once d has passed on the master's clock.
func (m *Master) afterLocked(d time.Duration, f func()) *timer {
	tm := &timer{}
	m.timers[tm] = struct{}{}
	tm.t = m.clock.AfterFunc(d, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, ok := m.timers[tm]; !ok || m.closed {
			return
		}
		delete(m.timers, tm)
		f()
		m.notifyLocked()
	})
	return tm
}

func (m *Master) stopTimerLocked(tm *timer) {
	if tm == nil {
		return
	}
	if _, ok := m.timers[tm]; ok {
		delete(m.timers, tm)
		tm.t.Stop()
	}
}

// notifyLocked wakes WaitUntil and WaitCall.
func (m *Master) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// WaitUntil blocks until cond returns true or ctx ends. cond is evaluated
// now and after every change of the master's state (a call handled, a
// timer fired, a control method applied); it may call the master's
// observation methods but must not block.
func (m *Master) WaitUntil(ctx context.Context, cond func() bool) error {
	for {
		m.mu.Lock()
		ch := m.changed
		m.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func leaderHostPort(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("mesosfake: leader URL %q: want http://host:port", raw)
	}
	return u.Host, nil
}

// newUUID returns 16 random bytes shaped as a version 4 UUID, the form of the
// agent's status update uuids and the master's stream ids.
func newUUID() []byte {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return b
}

func uuidString(b []byte) string {
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func newUUIDString() string { return uuidString(newUUID()) }

func strPtr(s string) *string { return &s }
