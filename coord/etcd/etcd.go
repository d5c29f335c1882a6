// Package etcd is the etcd backend of coord.Coordinator.
//
// A Coordinator is one etcd lease kept alive by a concurrency.Session; every
// ephemeral node and candidacy is a key attached to that lease, so they all
// go when the session ends. Nodes are keys under "/<namespace>/n/<depth>",
// with the depth encoded in three digits, so the direct children of a node
// are exactly one key range and Children costs O(children):
//
//	/a       → /<ns>/n/001/a
//	/a/b     → /<ns>/n/002/a/b
//	children of /a: the range with prefix /<ns>/n/002/a/
//
// Sequential counters live beside them under "/<ns>/s<parent>".
//
// Import it for its side effect to make coord.Open understand etcd:// URLs.
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hasched/hasched/coord"
)

// Defaults for the zero values of Config.
const (
	DefaultNamespace   = "hasched"
	DefaultSessionTTL  = 10 * time.Second
	DefaultDialTimeout = 5 * time.Second
)

// Config configures New.
type Config struct {
	// Endpoints are the cluster's client URLs or host:port pairs.
	Endpoints []string
	// Namespace is the root every key is kept under; one segment of
	// letters, digits, '.', '_' and '-' (DefaultNamespace if empty).
	Namespace string
	// SessionTTL is the session lease's TTL: how long the cluster keeps the
	// session after it last heard from this client. etcd counts whole
	// seconds, so it is rounded up; at least 1s (DefaultSessionTTL if
	// zero). A server raises TTLs below its minimum (about 2s with the
	// default heartbeat settings). A session that cannot renew its lease
	// counts itself lost max(500ms, TTL/4) before the cluster could expire
	// it, so it stops leading before another candidate can win.
	SessionTTL time.Duration
	// DialTimeout bounds how long New waits for the cluster to answer
	// (DefaultDialTimeout if zero).
	DialTimeout time.Duration
	// Logger receives the session's events (null if nil).
	Logger hclog.Logger
	// TLS, if set, is used for every connection.
	TLS *tls.Config
	// Username and Password authenticate with etcd's auth, if set.
	Username, Password string
}

// withDefaults fills in defaults and validates; errors name the field.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Endpoints) == 0 {
		return cfg, errors.New("etcd: Config.Endpoints is empty")
	}
	for i, ep := range cfg.Endpoints {
		if ep == "" {
			return cfg, fmt.Errorf("etcd: Config.Endpoints[%d] is empty", i)
		}
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if err := coord.ValidateNamespace(cfg.Namespace); err != nil {
		return cfg, fmt.Errorf("etcd: Config.Namespace: %w", err)
	}
	switch {
	case cfg.SessionTTL == 0:
		cfg.SessionTTL = DefaultSessionTTL
	case cfg.SessionTTL < time.Second:
		return cfg, fmt.Errorf("etcd: Config.SessionTTL %v is below etcd's granularity of 1s", cfg.SessionTTL)
	}
	switch {
	case cfg.DialTimeout == 0:
		cfg.DialTimeout = DefaultDialTimeout
	case cfg.DialTimeout < 0:
		return cfg, fmt.Errorf("etcd: Config.DialTimeout %v is negative", cfg.DialTimeout)
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return cfg, errors.New("etcd: Config.Username and Config.Password must be set together")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return cfg, nil
}

// Coordinator is a coord.Coordinator on one etcd session.
type Coordinator struct {
	cli     *clientv3.Client
	session *concurrency.Session
	keys    keyspace
	log     hclog.Logger
	ttl     time.Duration // the TTL the cluster granted
	// seqs lets a Sequential create name its node without reading the
	// counter first.
	seqs hints[int64]
	// parents lets a quick batch pin a parent with one compare.
	parents hints[int64]
	// lastSent is when the last renewal that was answered was sent
	// (UnixNano): see renew and SafeUntil.
	lastSent atomic.Int64

	// ctx ends when the session does, for whatever reason: the lease
	// expired or was revoked, concurrency.Session could not keep it alive,
	// renew judged it possibly expired, or Close. Everything that lives with
	// the session (Done, every Lost, every campaign and watch) hangs off it,
	// so there is one code path for "the session ended"; its cause says why.
	ctx context.Context
	end context.CancelCauseFunc

	mu        sync.Mutex
	closed    bool
	campaigns map[string]struct{} // elections this session campaigns in or leads

	closeOnce sync.Once
	closeErr  error
	// wg counts every goroutine the Coordinator starts; Close waits for it.
	wg sync.WaitGroup
}

var _ coord.Coordinator = (*Coordinator)(nil)

// New connects to the cluster and opens a session: it grants the session's
// lease and keeps it alive until Close or until the cluster lets it expire.
// It fails within cfg.DialTimeout (or when ctx ends) if the cluster does not
// answer.
func New(ctx context.Context, cfg Config) (*Coordinator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("namespace", cfg.Namespace)
	ttlSeconds := int64(math.Ceil(cfg.SessionTTL.Seconds()))

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		// gRPC pings a connection that has been quiet this long and drops
		// it if the ping is not answered in time, so a connection that died
		// silently (a partition, a paused member) is replaced rather than
		// holding its requests until TCP gives up minutes later. gRPC does
		// not ping more often than every 10s whatever is asked.
		DialKeepAliveTime:    dialKeepAliveTime,
		DialKeepAliveTimeout: dialKeepAliveTimeout,
		TLS:                  cfg.TLS,
		Username:             cfg.Username,
		Password:             cfg.Password,
		// The client warns about every retried request, which is routine
		// here (cancelled campaigns, a member restarting); only its errors
		// are worth an operator's attention.
		Logger: zap.New(newHclogCore(log.Named("etcd-client"), zapcore.ErrorLevel)),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: connect to %v: %w", cfg.Endpoints, err)
	}
	// clientv3.New does not wait for a connection, so the grant is what
	// proves the cluster answers; bound it so a dead endpoint fails within
	// DialTimeout instead of hanging.
	gctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	// The cluster cannot have granted the lease before the request was
	// sent, so it cannot expire before sent + TTL.
	sent := time.Now()
	lease, err := cli.Grant(gctx, ttlSeconds)
	cancel()
	if err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("etcd: grant a %ds session lease on %v: %w", ttlSeconds, cfg.Endpoints, err)
	}
	if lease.TTL != ttlSeconds {
		log.Warn("the cluster changed the session TTL", "requested_seconds", ttlSeconds, "granted_seconds", lease.TTL)
	}
	// WithLease makes NewSession skip its own grant, which would use the
	// client's context and so could block forever.
	session, err := concurrency.NewSession(cli, concurrency.WithLease(lease.ID), concurrency.WithTTL(int(lease.TTL)))
	if err != nil {
		_, _ = cli.Revoke(context.Background(), lease.ID)
		_ = cli.Close()
		return nil, fmt.Errorf("etcd: keep the session lease alive: %w", err)
	}
	c := &Coordinator{
		cli:       cli,
		session:   session,
		keys:      keyspace{root: "/" + cfg.Namespace},
		log:       log.With("lease", fmt.Sprintf("%x", lease.ID)),
		ttl:       time.Duration(lease.TTL) * time.Second,
		campaigns: map[string]struct{}{},
		seqs:      hints[int64]{limit: maxSeqHints},
		parents:   hints[int64]{limit: maxParentHints},
	}
	c.ctx, c.end = context.WithCancelCause(session.Ctx())
	c.lastSent.Store(sent.UnixNano())
	c.wg.Add(2)
	go c.monitor()
	go c.renew(sent)
	c.log.Debug("session opened", "endpoints", cfg.Endpoints, "ttl", c.ttl)
	return c, nil
}

// Timing of the session's own account of its lease.
const (
	dialKeepAliveTime    = 10 * time.Second // gRPC's minimum
	dialKeepAliveTimeout = 2 * time.Second
	// minRenewalGuard is the least margin by which the session counts
	// itself lost before the cluster can expire its lease.
	minRenewalGuard = 500 * time.Millisecond
)

var (
	errRenewalOverdue = errors.New("no keep-alive was answered in time: the cluster may expire the lease at any moment")
	errLeaseGone      = errors.New("the cluster no longer knows the lease: it expired or was revoked")
)

// renewalGuard is how long before the cluster could expire a lease of the
// given TTL the session counts itself lost.
func renewalGuard(ttl time.Duration) time.Duration { return max(minRenewalGuard, ttl/4) }

// renew keeps the session's own account of when the cluster may expire its
// lease, and ends the session before that moment comes.
//
// concurrency.Session alone is too late: the cluster expires the lease TTL
// after it last renewed it, but the client's lessor counts the TTL from when
// the renewal's response arrived and looks only every 500ms, so a leader cut
// off from the cluster learned that it lost its term up to a second after
// another candidate had won and written. As Curator explains for ZooKeeper
// (Tech Note 14, CURATOR-460), a client that may have lost its session must
// stop acting as leader before the cluster can elect another.
//
// So renew renews the lease itself, with KeepAliveOnce every TTL/6, and
// remembers when the last request that was answered was SENT: the cluster
// renewed no earlier, so it expires the lease no earlier than that + TTL.
// Once now reaches that − renewalGuard the session ends (Done and every
// Lost close, calls fail with ErrSessionLost) and monitor stops the
// keep-alive and revokes the lease. Each KeepAliveOnce is a stream of its
// own, which the client balances over the endpoints, so one member that
// stopped answering does not hold every renewal.
func (c *Coordinator) renew(last time.Time) {
	defer c.wg.Done()
	id := c.session.Lease()
	window := c.ttl - renewalGuard(c.ttl)
	interval := c.ttl / 6
	for {
		deadline := last.Add(window)
		if !time.Now().Before(deadline) {
			c.end(fmt.Errorf("%w (last renewal sent %v ago, TTL %v)", errRenewalOverdue, time.Since(last).Round(time.Millisecond), c.ttl))
			return
		}
		sent := time.Now()
		ctx, cancel := context.WithDeadline(c.ctx, earlier(deadline, sent.Add(interval)))
		_, err := c.cli.KeepAliveOnce(ctx, id)
		cancel()
		switch {
		case c.ctx.Err() != nil:
			return
		case err == nil:
			last = sent
			c.lastSent.Store(sent.UnixNano())
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			c.end(errLeaseGone)
			return
		}
		// Wait for the next renewal, or for the deadline, whichever is
		// first; a renewal that timed out is retried at once.
		t := time.NewTimer(time.Until(earlier(last.Add(window), sent.Add(interval))))
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// monitor reports the end of the session and, unless Close ends it, stops
// keeping the lease alive and revokes it: once the session has counted
// itself lost the lease must not be renewed again. It ends with the
// session, so also on Close.
func (c *Coordinator) monitor() {
	defer c.wg.Done()
	<-c.ctx.Done()
	if c.isClosed() {
		return
	}
	reason := context.Cause(c.ctx)
	if errors.Is(reason, context.Canceled) {
		reason = errors.New("the lease expired, was revoked, or could not be kept alive")
	}
	c.log.Warn("session lost", "reason", reason)
	c.session.Orphan()
	// Bounded by the TTL, after which the lease has expired anyway, and cut
	// short by Close, which closes the client.
	ctx, cancel := context.WithTimeout(context.Background(), c.ttl)
	defer cancel()
	if _, err := c.cli.Revoke(ctx, c.session.Lease()); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) && !c.isClosed() {
		c.log.Debug("could not revoke the lost session's lease; it expires after its TTL", "error", err)
	}
}

// SafeUntil is when renew would count the session lost if no renewal were
// answered before: the last answered renewal's send time plus the TTL less
// renewalGuard. The cluster expires the lease no earlier than that send
// time plus the TTL, so this is renewalGuard early. Zero once the session
// has ended.
func (c *Coordinator) SafeUntil() time.Time {
	if c.ctx.Err() != nil {
		return time.Time{}
	}
	return time.Unix(0, c.lastSent.Load()).Add(c.ttl - renewalGuard(c.ttl))
}

// Lease is the session's lease; revoking it ends the session.
func (c *Coordinator) Lease() clientv3.LeaseID { return c.session.Lease() }

// Client is the raw etcd client the session uses.
func (c *Coordinator) Client() *clientv3.Client { return c.cli }

// Done is closed when the session has ended: its lease expired or was
// revoked, it could not be kept alive, or Close was called.
//
// It is the Coordinator's own channel, not concurrency.Session's: it also
// closes when renew judges that the cluster may be about to expire the
// lease, before the cluster can elect another leader.
func (c *Coordinator) Done() <-chan struct{} { return c.ctx.Done() }

// Close ends the session: it revokes the lease, so ephemeral nodes and
// candidacies go at once, closes the client and waits for every goroutine
// the Coordinator started. It is idempotent.
func (c *Coordinator) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		// session.Close stops the keep-alive, which cancels the session's
		// context and so stops every leadership and campaign, then revokes
		// the lease with the TTL as timeout: after that long the lease has
		// expired anyway.
		if err := c.session.Close(); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			c.log.Warn("could not revoke the session lease; it expires after its TTL", "ttl", c.ttl, "error", err)
		}
		// Close the client before waiting: a withdrawal concurrency.Election
		// makes with the client's context ends only then.
		c.closeErr = c.cli.Close()
		c.wg.Wait()
		c.log.Debug("session closed")
	})
	return c.closeErr
}

// spawn runs f in a goroutine that Close waits for, unless Close has begun:
// the check and the Add under one lock keep every Add before Close's Wait.
func (c *Coordinator) spawn(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

func (c *Coordinator) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// state is ErrClosed after Close, ErrSessionLost once the session has
// ended, nil while it is usable.
func (c *Coordinator) state() error {
	if c.isClosed() {
		return coord.ErrClosed
	}
	select {
	case <-c.ctx.Done():
		if c.isClosed() {
			return coord.ErrClosed
		}
		return coord.ErrSessionLost
	default:
		return nil
	}
}

// fail wraps an error of a request to etcd with the operation and path, and
// with the session's state when that explains it: a request fails once the
// client is closed or the lease is gone, and the caller should see why.
func (c *Coordinator) fail(op, path string, err error) error {
	if errors.Is(err, rpctypes.ErrLeaseNotFound) && !errors.Is(err, coord.ErrSessionLost) {
		err = fmt.Errorf("%w: %w", coord.ErrSessionLost, err)
	} else if st := c.state(); st != nil && !errors.Is(err, st) {
		err = fmt.Errorf("%w: %w", st, err)
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}
