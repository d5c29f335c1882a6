// Package alert sends the scheduler's failures, timeouts, misfires and
// leadership changes to webhooks.
//
// The operator defines the receivers (URL, secret, format, which events,
// whether global) in a file of the process's own (LoadFile); a job names
// the non-global receivers it wants (model.Job.AlertReceivers) and nothing
// else, so that a user of the REST API can neither make the scheduler post
// to an address of their choosing nor read a receiver's key.
//
// A Notifier is an events.Sink. Emit never blocks: it hands the event to a
// bounded queue and returns; one goroutine turns events into deliveries on
// one bounded queue per receiver, and each receiver's own workers post
// them. A receiver that hangs or fails fills only its own queue: its
// deliveries are dropped (counted, logged at most every DropLogInterval),
// the other receivers and the scheduler go on.
//
// # What a receiver gets
//
// A POST with Content-Type application/json, and:
//
//	X-Hasched-Event:     failure | timeout | misfire | leadership
//	X-Hasched-Delivery:  an id, the same on every attempt of one delivery
//	X-Hasched-Timestamp: the attempt's time, Unix seconds
//	X-Hasched-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//
// The signature is sent when the receiver has a secret. A receiver
// verifies it by computing the HMAC over the timestamp header, a '.', and
// the raw body as received, comparing in constant time (hmac.Equal), and
// refusing a timestamp more than a few minutes from its own clock, so that
// a captured request cannot be replayed later; it may also remember
// delivery ids to drop a retry of a delivery it already took. Any 2xx
// accepts a delivery; a network error, a 5xx, 408 or 429 is retried with
// exponential back-off and jitter (a Retry-After is honoured up to
// MaxRetryAfter), up to the receiver's maxAttempts; any other status gives
// it up at once. Redirects are followed only to the same scheme and host.
// A receiver written in Go can call Verify.
//
// # Which runs alert
//
// An Ended event alerts (failure, or timeout when its state is TIMED_OUT)
// when the scheduler gives the run up or moves it to failover — when the
// job's retries are spent. A run that is retried alerts only receivers
// with Retries set, so that a job with retries pages once, not once per
// attempt. A run that ended as it should (Outcome done: finished, or
// killed as asked) never alerts.
package alert

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/internal/defaults"
	"github.com/hasched/hasched/scheduler/events"
)

// Bounds and defaults of a Config.
const (
	DefaultQueueSize = 256
	MaxQueueSize     = 10_000
	DefaultWorkers   = 2
	MaxWorkers       = 16
	// DefaultBackoff is the wait before the second attempt; it doubles
	// per attempt up to DefaultMaxBackoff.
	DefaultBackoff    = time.Second
	DefaultMaxBackoff = 30 * time.Second
	MaxBackoff        = 10 * time.Minute
	// DefaultMaxRetryAfter is the longest Retry-After honoured; a longer
	// one waits this long.
	DefaultMaxRetryAfter = time.Minute
	// DropLogInterval is how often, at most, dropped deliveries and
	// unknown receiver names are logged.
	DropLogInterval = 10 * time.Second
)

// Config configures a Notifier.
type Config struct {
	// Receivers are the operator's (LoadFile); New validates them.
	Receivers []Receiver
	// JobReceivers returns the receiver names a job's configuration gives
	// (model.Job.AlertReceivers), nil for an unknown job. It is called on
	// the Notifier's own goroutine, concurrently with the scheduler, so
	// it must be safe for that; it may take a read lock, and should not
	// do I/O (while it runs, events queue up and then drop, and Close
	// cannot return). Nil: only global receivers alert.
	JobReceivers func(job string) []string
	// Scheduler names this process in payloads (its advertised address).
	Scheduler string
	Logger    hclog.Logger
	// QueueSize bounds the events waiting to be routed and, per receiver,
	// the deliveries waiting to be posted (DefaultQueueSize if zero).
	QueueSize int
	// Workers is the number of concurrent posts per receiver
	// (DefaultWorkers if zero).
	Workers int
	// Backoff and MaxBackoff shape the waits between attempts; the
	// defaults if zero.
	Backoff, MaxBackoff time.Duration
	// MaxRetryAfter caps a receiver's Retry-After (the default if zero).
	MaxRetryAfter time.Duration
	// Transport, if set, replaces http.DefaultTransport's clone (tests).
	Transport http.RoundTripper
}

// Notifier is an events.Sink that posts alerts to webhooks. Its
// goroutines (one router, Workers per receiver) run until Close.
type Notifier struct {
	cfg       Config
	log       hclog.Logger
	receivers map[string]*receiver
	// global are the global receivers, in the file's order.
	global []*receiver
	// wanted: the classes some receiver takes; Emit drops others at once.
	wanted map[Class]bool
	client *http.Client

	in     chan events.Event
	mu     sync.RWMutex // Emit (read) against Close (write)
	closed bool
	ctx    context.Context // cancelled when Close gives up waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup

	dropped   atomic.Uint64 // events or deliveries without room
	delivered atomic.Uint64
	failed    atomic.Uint64 // deliveries given up

	// Owned by the router goroutine.
	unknownLogged map[string]time.Time
	// dropLogMu guards lastDropLog, written by Emit's callers and the
	// router.
	dropLogMu   sync.Mutex
	lastDropLog time.Time
}

// receiver is one Receiver with its queue.
type receiver struct {
	Receiver
	queue chan delivery
}

// delivery is one alert to one receiver: the body is fixed, the
// timestamp and signature are made per attempt.
type delivery struct {
	id    string
	class Class
	body  []byte
	job   string
}

// New validates cfg and starts the Notifier's goroutines.
func New(cfg Config) (*Notifier, error) {
	cfg.Receivers = append([]Receiver(nil), cfg.Receivers...)
	if err := checkReceivers(cfg.Receivers); err != nil {
		return nil, err
	}
	if cfg.QueueSize < 0 || cfg.QueueSize > MaxQueueSize {
		return nil, fmt.Errorf("%w: QueueSize %d is outside [0, %d]", ErrInvalidConfig, cfg.QueueSize, MaxQueueSize)
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.Workers < 0 || cfg.Workers > MaxWorkers {
		return nil, fmt.Errorf("%w: Workers %d is outside [0, %d]", ErrInvalidConfig, cfg.Workers, MaxWorkers)
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if err := defaults.Durations(ErrInvalidConfig,
		defaults.Duration{Name: "Backoff", V: &cfg.Backoff, Default: DefaultBackoff, Max: MaxBackoff},
		defaults.Duration{Name: "MaxBackoff", V: &cfg.MaxBackoff, Default: DefaultMaxBackoff, Max: MaxBackoff},
		defaults.Duration{Name: "MaxRetryAfter", V: &cfg.MaxRetryAfter, Default: DefaultMaxRetryAfter, Max: MaxBackoff},
	); err != nil {
		return nil, err
	}
	if cfg.MaxBackoff < cfg.Backoff {
		return nil, fmt.Errorf("%w: MaxBackoff %v is below Backoff %v", ErrInvalidConfig, cfg.MaxBackoff, cfg.Backoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	transport := cfg.Transport
	if transport == nil {
		transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{
		cfg:           cfg,
		log:           cfg.Logger.Named("alert"),
		receivers:     make(map[string]*receiver, len(cfg.Receivers)),
		wanted:        map[Class]bool{},
		client:        &http.Client{Transport: transport, CheckRedirect: sameOrigin},
		in:            make(chan events.Event, cfg.QueueSize),
		ctx:           ctx,
		cancel:        cancel,
		unknownLogged: map[string]time.Time{},
	}
	for _, r := range cfg.Receivers {
		rc := &receiver{Receiver: r, queue: make(chan delivery, cfg.QueueSize)}
		n.receivers[r.Name] = rc
		if r.Global {
			n.global = append(n.global, rc)
		}
		for _, c := range r.Events {
			n.wanted[c] = true
		}
	}
	n.wg.Add(1)
	go n.route()
	for _, rc := range n.receivers {
		for range cfg.Workers {
			n.wg.Add(1)
			go n.post(rc)
		}
	}
	return n, nil
}

// Emit implements events.Sink: it takes the event if some receiver could
// want it and there is room, and returns at once either way.
func (n *Notifier) Emit(ev events.Event) {
	c, _, ok := classify(ev)
	if !ok || !n.wanted[c] {
		return
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return
	}
	select {
	case n.in <- ev:
	default:
		n.drop("", c)
	}
}

// Dropped is how many events and deliveries found their queue full.
func (n *Notifier) Dropped() uint64 { return n.dropped.Load() }

// Delivered is how many deliveries a receiver accepted.
func (n *Notifier) Delivered() uint64 { return n.delivered.Load() }

// Failed is how many deliveries were given up.
func (n *Notifier) Failed() uint64 { return n.failed.Load() }

// Close stops taking events and waits for the deliveries already taken,
// until ctx ends; then it abandons the rest (in-flight requests are
// cancelled) and waits only for the goroutines to return, which they do
// at once. It returns ctx's error if deliveries were abandoned.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.in)
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		n.cancel()
		<-done
	}
	n.cancel()
	return err
}

// route turns events into deliveries, one per receiver that wants it, and
// closes the receivers' queues when the Notifier closes.
func (n *Notifier) route() {
	defer n.wg.Done()
	defer func() {
		for _, rc := range n.receivers {
			close(rc.queue)
		}
	}()
	for ev := range n.in {
		if n.ctx.Err() != nil {
			continue // Close gave up: drain without work
		}
		c, retryOnly, _ := classify(ev)
		p := payload(c, ev, n.cfg.Scheduler)
		var bodies [2][]byte // by format: json, slack
		for _, rc := range n.route1(c, ev.Job) {
			if retryOnly && !rc.Retries {
				continue
			}
			i := 0
			if rc.Format == Slack {
				i = 1
			}
			if bodies[i] == nil {
				bodies[i] = encode(rc.Format, p)
			}
			d := delivery{id: newID(), class: c, body: bodies[i], job: ev.Job}
			select {
			case rc.queue <- d:
			default:
				n.drop(rc.Name, c)
			}
		}
	}
}

// route1 is the receivers that take class c of job: the global ones and
// those the job names, each once.
func (n *Notifier) route1(c Class, job string) []*receiver {
	var out []*receiver
	for _, rc := range n.global {
		if rc.wants(c) {
			out = append(out, rc)
		}
	}
	if job == "" || n.cfg.JobReceivers == nil {
		return out
	}
	for _, name := range n.cfg.JobReceivers(job) {
		rc, ok := n.receivers[name]
		switch {
		case !ok:
			n.unknownReceiver(job, name)
		case rc.Global || !rc.wants(c):
			// Global ones are in already.
		default:
			out = append(out, rc)
		}
	}
	return out
}

// unknownReceiver logs a job's receiver name that this process's alerts
// file lacks, once per DropLogInterval per name: the job is valid (another
// process may know the name), but its author expects alerts that do not
// come.
func (n *Notifier) unknownReceiver(job, name string) {
	now := time.Now()
	if last, ok := n.unknownLogged[name]; ok && now.Sub(last) < DropLogInterval {
		return
	}
	if len(n.unknownLogged) >= MaxReceivers*16 {
		clear(n.unknownLogged) // bounded: names come from users
	}
	n.unknownLogged[name] = now
	n.log.Warn("a job names an alert receiver this process does not define; its alerts go only to the global receivers",
		"job", job, "receiver", name)
}

func (n *Notifier) drop(receiver string, c Class) {
	total := n.dropped.Add(1)
	n.dropLogMu.Lock()
	now := time.Now()
	due := now.Sub(n.lastDropLog) >= DropLogInterval
	if due {
		n.lastDropLog = now
	}
	n.dropLogMu.Unlock()
	if !due {
		return
	}
	// Logged outside the lock: Emit's callers must not queue behind a
	// slow log output.
	if receiver == "" {
		n.log.Warn("alert queue full: dropping alerts", "event", c, "dropped_total", total)
	} else {
		n.log.Warn("alert receiver's queue full (is it slow or down?): dropping alerts", "receiver", receiver, "event", c, "dropped_total", total)
	}
}

// post delivers rc's queue until it is closed.
func (n *Notifier) post(rc *receiver) {
	defer n.wg.Done()
	for d := range rc.queue {
		if n.ctx.Err() != nil {
			n.failed.Add(1)
			continue
		}
		err := n.deliver(n.ctx, rc, d)
		if err == nil {
			n.delivered.Add(1)
			continue
		}
		n.failed.Add(1)
		if !errors.Is(err, context.Canceled) {
			n.log.Warn("alert not delivered", "receiver", rc.Name, "event", d.class, "job", d.job, "delivery", d.id, "error", err)
		}
	}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return hex.EncodeToString(b[:])
}
