// Package zk is the ZooKeeper backend of coord.Coordinator, built on
// github.com/go-zookeeper/zk. Import it for its side effect to make coord.Open
// accept
//
//	zk://host1:2181,host2:2181/namespace?session-timeout=6s&connect-timeout=5s
//
// A Coordinator is one ZooKeeper session. go-zookeeper replaces an expired
// session with a new one by itself; a Coordinator never uses that one: it
// cuts the connection the moment the new session appears, before any request
// goes out on it, and ends (Done, Lost, ErrSessionLost). A client cut off from
// the ensemble never hears that its session expired, so a Coordinator also
// ends once it has heard nothing from ZooKeeper for the session timeout
// (Curator's TN14, measured from the last bytes received rather than from
// the moment the disconnection was noticed, which go-zookeeper does only after
// two thirds of the timeout).
package zk

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
)

// Defaults and limits of Config.
const (
	DefaultNamespace      = "hasched"
	DefaultSessionTimeout = 10 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	// MinSessionTimeout is the shortest session timeout accepted. ZooKeeper
	// servers grant at least two ticks (4 s with the default tickTime).
	MinSessionTimeout = time.Second
)

// Config configures New.
type Config struct {
	// Servers are the ensemble's client addresses, host:port (port 2181 when
	// omitted).
	Servers []string
	// Namespace is the node every path lives under; default "hasched". Paths
	// given to and returned by the Coordinator do not include it.
	Namespace string
	// SessionTimeout is the session timeout asked of the server (which grants
	// it within its minSessionTimeout..maxSessionTimeout); default 10s, at
	// least MinSessionTimeout.
	SessionTimeout time.Duration
	// ConnectTimeout bounds how long New waits for the first session;
	// default 10s.
	ConnectTimeout time.Duration
	// Logger receives the Coordinator's log and, at debug level,
	// go-zookeeper's; default discards.
	Logger hclog.Logger
	// Digest, "user:password", authenticates the session with ZooKeeper's
	// digest scheme, and every node the Coordinator makes gets the ACL
	// digest:user:<hash>:cdrwa, so only sessions with the same identity can
	// read, change or list hasched's nodes (ZooKeeper's world:anyone:cdrwa
	// otherwise, which lets every client of the ensemble in). A namespace
	// made before with another ACL is converted on New (see
	// secureNamespace). The server must not run with
	// zookeeper.skipACL=yes, which turns ACLs off.
	Digest string
	// TLS, if set, wraps every connection: for servers with a
	// secureClientPort.
	TLS *tls.Config

	// noLossTimer turns the client-side loss timer off, for tests that need
	// the server's word on an expiry.
	noLossTimer bool
}

// withDefaults fills in defaults and validates cfg.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Servers) == 0 {
		return cfg, errors.New("zk: Config.Servers is empty")
	}
	for i, s := range cfg.Servers {
		if strings.TrimSpace(s) == "" {
			return cfg, fmt.Errorf("zk: Config.Servers[%d] is empty", i)
		}
	}
	cfg.Servers = append([]string(nil), cfg.Servers...)
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if err := coord.ValidateNamespace(cfg.Namespace); err != nil {
		return cfg, fmt.Errorf("zk: Config.Namespace: %w", err)
	}
	switch {
	case cfg.SessionTimeout == 0:
		cfg.SessionTimeout = DefaultSessionTimeout
	case cfg.SessionTimeout < MinSessionTimeout:
		return cfg, fmt.Errorf("zk: Config.SessionTimeout %v is shorter than %v", cfg.SessionTimeout, MinSessionTimeout)
	}
	switch {
	case cfg.ConnectTimeout == 0:
		cfg.ConnectTimeout = DefaultConnectTimeout
	case cfg.ConnectTimeout < 0:
		return cfg, fmt.Errorf("zk: Config.ConnectTimeout %v is negative", cfg.ConnectTimeout)
	}
	if cfg.Digest != "" {
		if user, pw, ok := strings.Cut(cfg.Digest, ":"); !ok || user == "" || pw == "" {
			return cfg, fmt.Errorf("%w: zk: Config.Digest is not user:password", coord.ErrCredentials)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return cfg, nil
}

// ErrNotAuthorized is returned by New when ZooKeeper refuses the session
// the namespace's node: it belongs to another identity, or the session has
// none and the namespace is protected by a digest.
var ErrNotAuthorized = errors.New("zk: not authorized for the namespace")

// aclFor is the ACL of every node the Coordinator makes.
func aclFor(digest string) []zk.ACL {
	if digest == "" {
		// No identity: the namespace, not ZooKeeper's ACLs, separates
		// users, and any client of the ensemble can read and write.
		return zk.WorldACL(zk.PermAll)
	}
	user, pw, _ := strings.Cut(digest, ":")
	return zk.DigestACL(zk.PermAll, user, pw)
}

// Coordinator is a coord.Coordinator on one ZooKeeper session. Its methods are
// safe for concurrent use.
type Coordinator struct {
	cfg    Config
	log    hclog.Logger
	root   string // "/" + namespace
	acl    []zk.ACL
	conn   *zk.Conn
	events <-chan zk.Event // go-zookeeper closes it once its goroutines have ended
	net    *dialer

	session atomic.Int64  // the first session's ID; 0 until New has it
	timeout atomic.Int64  // the session timeout the loss timer uses, in ns
	granted atomic.Int64  // the session timeout the server last granted, in ns
	changed chan struct{} // a session event arrived (New waits on it)

	done     chan struct{} // closed when the session has ended
	connDone chan struct{} // closed when go-zookeeper's goroutines have ended
	stopConn sync.Once

	mu          sync.Mutex
	over        bool // the session has ended (done is closed)
	closed      bool // Close was called
	lossTimer   *time.Timer
	timerGen    uint64
	down        bool            // disconnected since the session was established or last reconnected
	reconnect   chan struct{}   // closed and replaced shortly after every reconnection
	campaigns   map[string]bool // elections with a campaign or leadership under way
	leaderships map[*Leadership]struct{}
	// mirrors are the open Mirrors, which onEvent passes watch events to;
	// replaced whole (under mu) when one opens or closes, so that onEvent
	// reads it without a lock.
	mirrors atomic.Pointer[[]*Mirror]
	// wg counts every goroutine the Coordinator starts: one per request in
	// flight, leadership watchers, withdrawals. Each ends at the latest when
	// the connection is closed, which fails every pending request.
	wg sync.WaitGroup
}

var _ coord.Coordinator = (*Coordinator)(nil)

// New connects to the ensemble, waits for a session (at most
// cfg.ConnectTimeout, and not beyond ctx) and makes the namespace's node if it
// is missing.
func New(ctx context.Context, cfg Config) (*Coordinator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg:         cfg,
		log:         cfg.Logger.With("namespace", cfg.Namespace),
		root:        "/" + cfg.Namespace,
		acl:         aclFor(cfg.Digest),
		net:         &dialer{conns: map[*trackedConn]struct{}{}, tls: cfg.TLS},
		changed:     make(chan struct{}, 1),
		done:        make(chan struct{}),
		connDone:    make(chan struct{}),
		campaigns:   map[string]bool{},
		leaderships: map[*Leadership]struct{}{},
		reconnect:   make(chan struct{}),
	}
	c.timeout.Store(int64(cfg.SessionTimeout))
	conn, events, err := zk.Connect(cfg.Servers, cfg.SessionTimeout,
		zk.WithEventCallback(c.onEvent),
		zk.WithLogger(clientLogger{c: c, log: cfg.Logger.Named("go-zookeeper")}),
		zk.WithDialer(c.net.dial),
		zk.WithHostProvider(&hostProvider{DNSHostProvider: zk.NewDNSHostProvider()}),
	)
	if err != nil {
		return nil, fmt.Errorf("zk: connect to %s: %w", strings.Join(cfg.Servers, ","), err)
	}
	c.conn, c.events = conn, events

	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := c.awaitSession(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	if cfg.Digest != "" {
		// go-zookeeper sends the credentials again on every reconnection,
		// before any other request.
		_, err := call(ctx, c, true, func(conn *zk.Conn) (struct{}, error) {
			return struct{}{}, conn.AddAuth("digest", []byte(cfg.Digest))
		})
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("%w: zk: digest authentication: %w", ErrNotAuthorized, c.mapErr(err))
		}
	}
	if err := c.makeNode(ctx, c.root); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("zk: make the namespace node %s: %w", c.root, c.mapErr(err))
	}
	if err := c.secureNamespace(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	c.log.Debug("session established", "session", hexID(c.session.Load()), "servers", strings.Join(cfg.Servers, ","))
	return c, nil
}

// awaitSession waits for go-zookeeper's first session and records its ID.
func (c *Coordinator) awaitSession(ctx context.Context) error {
	for {
		if c.conn.State() == zk.StateHasSession {
			if id := c.conn.SessionID(); id != 0 {
				c.session.Store(id)
				// Events before the ID was recorded were not acted on: a
				// disconnection in between must still start the loss timer.
				if c.conn.State() != zk.StateHasSession {
					c.disconnected()
				}
				return nil
			}
		}
		select {
		case <-c.changed:
		case <-ctx.Done():
			return fmt.Errorf("zk: no session with %s within %v: %w", strings.Join(c.cfg.Servers, ","), c.cfg.ConnectTimeout, ctx.Err())
		}
	}
}

// SessionID is the ID of the Coordinator's session.
func (c *Coordinator) SessionID() int64 { return c.session.Load() }

// Conn is the underlying go-zookeeper connection, for benchmarks and
// diagnostics. Paths on it are absolute: the namespace is not applied.
func (c *Coordinator) Conn() *zk.Conn { return c.conn }

// Done is closed when the session has ended.
func (c *Coordinator) Done() <-chan struct{} { return c.done }

// Close ends the session: the server removes its ephemeral nodes at once,
// every leadership is lost. It waits for every goroutine of the Coordinator
// and of go-zookeeper to end. It is idempotent and returns nil.
func (c *Coordinator) Close() error {
	c.end(true, "closed")
	c.shutdownConn()
	<-c.connDone
	c.wg.Wait()
	return nil
}

// lose ends the session because it was lost.
func (c *Coordinator) lose(reason string) { c.end(false, reason) }

// end ends the session, once: Done and every Lost are closed. A session that
// was lost has its connection cut at once, before anything more can be sent
// on whatever session go-zookeeper opens next.
func (c *Coordinator) end(closing bool, reason string) {
	c.mu.Lock()
	if closing {
		c.closed = true
	}
	if c.over {
		c.mu.Unlock()
		return
	}
	c.over = true
	if c.lossTimer != nil {
		c.lossTimer.Stop()
		c.lossTimer = nil
	}
	ls := make([]*Leadership, 0, len(c.leaderships))
	for l := range c.leaderships {
		ls = append(ls, l)
	}
	c.mu.Unlock()

	if closing {
		c.log.Debug("closing the session", "session", hexID(c.session.Load()))
	} else {
		c.net.shutdown()
		c.log.Warn("session lost", "session", hexID(c.session.Load()), "reason", reason)
		c.shutdownConn()
	}
	close(c.done)
	for _, l := range ls {
		l.lose(reason)
	}
}

// shutdownConn closes the go-zookeeper connection in a goroutine of its own
// (it can block for a second or more, and lose may run inside go-zookeeper's
// event callback) and closes connDone when all of go-zookeeper's goroutines
// have ended.
func (c *Coordinator) shutdownConn() {
	c.stopConn.Do(func() {
		go func() {
			defer close(c.connDone)
			// Close asks the server to end the session, which removes its
			// ephemeral nodes now rather than after the timeout; cutting the
			// connections afterwards ends a dial or handshake go-zookeeper
			// may be stuck in (it waits up to ten receive timeouts).
			c.conn.Close()
			c.net.shutdown()
			for range c.events {
			}
		}()
	})
}

// endErr is the error every call fails with once the session has ended, or
// nil while it lives.
func (c *Coordinator) endErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return coord.ErrClosed
	case c.over:
		return coord.ErrSessionLost
	}
	return nil
}

// spawn runs f in a goroutine of the Coordinator, unless the session has
// ended.
func (c *Coordinator) spawn(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.over {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// onEvent is go-zookeeper's event callback. It runs on go-zookeeper's
// goroutines and must not block.
func (c *Coordinator) onEvent(ev zk.Event) {
	if ms := c.mirrors.Load(); ms != nil {
		for _, m := range *ms {
			m.offer(ev)
		}
	}
	if ev.Type != zk.EventSession {
		return
	}
	select {
	case c.changed <- struct{}{}:
	default:
	}
	orig := c.session.Load()
	if orig == 0 {
		return // New is still waiting for the first session
	}
	switch ev.State {
	case zk.StateHasSession:
		// go-zookeeper records the session ID before it reports the state,
		// and starts sending only after this callback returns: cutting the
		// connection here keeps every request off a new session.
		if id := c.conn.SessionID(); id != orig {
			c.lose(fmt.Sprintf("go-zookeeper opened another session %s", hexID(id)))
			return
		}
		c.reconnected()
	case zk.StateExpired:
		c.lose("the server expired the session")
	case zk.StateDisconnected, zk.StateConnecting, zk.StateConnected:
		c.disconnected()
	}
}

// disconnected starts the loss timer unless it runs: the session is given up
// once nothing has been heard from ZooKeeper for the session timeout, by
// which time the server has expired it, or is about to.
func (c *Coordinator) disconnected() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = true
	if c.over || c.lossTimer != nil || c.cfg.noLossTimer {
		return
	}
	timeout := time.Duration(c.timeout.Load())
	left := max(time.Until(c.net.lastHeard().Add(timeout)), 0)
	c.timerGen++
	gen := c.timerGen
	c.lossTimer = time.AfterFunc(left, func() {
		c.mu.Lock()
		current := c.lossTimer != nil && c.timerGen == gen
		c.mu.Unlock()
		if current {
			c.lose(fmt.Sprintf("nothing heard from ZooKeeper for the session timeout (%v)", timeout))
		}
	})
	c.log.Debug("disconnected from ZooKeeper", "session", hexID(c.session.Load()), "lost_in", left)
}

// reconnectSettle is how long after a reconnection those waiting on
// nextReconnect are woken. go-zookeeper reports the new connection, then
// reads its last zxid to set the watches again without synchronizing with
// the receive loop that updates it on every answer (go-zookeeper/zk#35,
// samuel/go-zookeeper#260): a request sent the moment the connection is
// back races with that read, and the race detector says so. Once the
// SetWatches request has gone out first, every answer after it is ordered
// after the read. (A request queued while the connection was down still
// goes out before it; that race is go-zookeeper's to fix.)
const reconnectSettle = 20 * time.Millisecond

// reconnected stops the loss timer and, shortly after, wakes whoever waits
// on a watch: go-zookeeper sets the watches again on the new connection, but
// does not report it when that fails, so watchers look again for themselves
// (as Curator's LeaderLatch re-lists on RECONNECTED).
func (c *Coordinator) reconnected() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lossTimer != nil {
		c.lossTimer.Stop()
		c.lossTimer = nil
		c.log.Debug("reconnected to ZooKeeper", "session", hexID(c.session.Load()))
	}
	// The report of the session New waited for is no reconnection.
	if c.down {
		c.down = false
		time.AfterFunc(reconnectSettle, c.wakeWatchers)
	}
}

// wakeWatchers closes the channel nextReconnect handed out: whoever took it,
// before the reconnection or since, looks again.
func (c *Coordinator) wakeWatchers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.reconnect)
	c.reconnect = make(chan struct{})
}

// nextReconnect is closed shortly after the next reconnection within the
// session.
func (c *Coordinator) nextReconnect() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reconnect
}

// SafeUntil is what was last heard from ZooKeeper plus the session timeout,
// less a quarter of it (at least half a second): the server expires a
// session a timeout after it last heard from the client, and the client
// hears an answer only after the server heard its request. The margin
// covers what the server sends unasked (watch events), which does not prove
// that it heard the client. Zero once the session has ended.
func (c *Coordinator) SafeUntil() time.Time {
	c.mu.Lock()
	over := c.over
	c.mu.Unlock()
	if over {
		return time.Time{}
	}
	timeout := time.Duration(c.timeout.Load())
	return c.net.lastHeard().Add(timeout - max(500*time.Millisecond, timeout/4))
}

// negotiated notes the session timeout the server granted. A shorter one
// than asked for shortens the loss timer: the server expires the session by
// its own figure.
func (c *Coordinator) negotiated(t time.Duration) {
	if t <= 0 || c.granted.Swap(int64(t)) == int64(t) || t == c.cfg.SessionTimeout {
		return
	}
	if t < c.cfg.SessionTimeout {
		c.timeout.Store(int64(t))
	}
	c.log.Warn("the server granted another session timeout than configured", "configured", c.cfg.SessionTimeout, "granted", t)
}

// verify fails with ErrSessionLost when the connection no longer carries the
// Coordinator's session; a call's result counts only if it passes.
func (c *Coordinator) verify() error {
	if err := c.endErr(); err != nil {
		return err
	}
	if id := c.conn.SessionID(); id != c.session.Load() {
		c.lose(fmt.Sprintf("the connection is on another session %s", hexID(id)))
		return coord.ErrSessionLost
	}
	return nil
}

// Retry back-off while the connection is down.
const (
	retryMin = 10 * time.Millisecond
	retryMax = 500 * time.Millisecond
)

// sleep waits d; it fails early when ctx or the session ends.
func (c *Coordinator) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.endErr()
	}
}

type result[T any] struct {
	v   T
	err error
}

// do runs f, one go-zookeeper request, in a goroutine of the Coordinator and
// waits for it, for ctx or for the end of the session, whichever comes first:
// go-zookeeper's calls take no context and wait while the connection is down.
// An abandoned request ends at the latest when the connection is closed.
func do[T any](ctx context.Context, c *Coordinator, f func(*zk.Conn) (T, error)) (T, error) {
	var zero T
	if err := c.endErr(); err != nil {
		return zero, err
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	ch := make(chan result[T], 1)
	if !c.spawn(func() {
		v, err := f(c.conn)
		ch <- result[T]{v, err}
	}) {
		return zero, c.endErr()
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return zero, r.err
		}
		if err := c.verify(); err != nil {
			return zero, err
		}
		return r.v, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-c.done:
		return zero, c.endErr()
	}
}

// call is do, repeated while the connection is down. A request go-zookeeper
// never sent (ErrNoServer) is always repeated; one whose connection broke
// before the answer came may have been applied, and is repeated only when
// idempotent: otherwise its outcome is unknown and call says so.
func call[T any](ctx context.Context, c *Coordinator, idempotent bool, f func(*zk.Conn) (T, error)) (T, error) {
	wait := retryMin
	for {
		v, err := do(ctx, c, f)
		switch {
		case err == nil:
			return v, nil
		case errors.Is(err, zk.ErrNoServer):
		case isConnErr(err) && idempotent:
		case isConnErr(err):
			if e := c.endErr(); e != nil {
				return v, e
			}
			return v, fmt.Errorf("%w: the connection to ZooKeeper broke before the answer came; the request may or may not have been applied", err)
		default:
			return v, err
		}
		if err := c.sleep(ctx, wait); err != nil {
			return v, err
		}
		wait = min(2*wait, retryMax)
	}
}

// isConnErr tells whether err is go-zookeeper's report of a broken
// connection or session rather than ZooKeeper's answer to the request. A
// request whose write failed comes back with the network's error itself.
func isConnErr(err error) bool {
	for _, e := range []error{zk.ErrNoServer, zk.ErrConnectionClosed, zk.ErrClosing, zk.ErrSessionExpired, zk.ErrSessionMoved, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// mapErr turns ZooKeeper's errors into coord's.
func mapErr(err error) error {
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return coord.ErrNotFound
	case errors.Is(err, zk.ErrNodeExists):
		return coord.ErrExists
	case errors.Is(err, zk.ErrBadVersion):
		return coord.ErrVersionConflict
	case errors.Is(err, zk.ErrNotEmpty):
		return coord.ErrNotEmpty
	case errors.Is(err, zk.ErrNoChildrenForEphemerals):
		return coord.ErrEphemeralParent
	case errors.Is(err, zk.ErrSessionExpired):
		return coord.ErrSessionLost
	case errors.Is(err, zk.ErrInvalidPath):
		return coord.ErrInvalidPath
	}
	return err
}

// mapErr is mapErr for a live Coordinator: a broken connection after the
// session ended is the end of the session.
func (c *Coordinator) mapErr(err error) error {
	if errors.Is(err, zk.ErrSessionExpired) {
		c.lose("the server expired the session")
	}
	if isConnErr(err) {
		if e := c.endErr(); e != nil {
			return e
		}
	}
	return mapErr(err)
}

// fail wraps err with the operation and path, in coord's terms.
func (c *Coordinator) fail(op, path string, err error) error {
	return fmt.Errorf("%s %s: %w", op, path, c.mapErr(err))
}

func hexID(id int64) string { return fmt.Sprintf("%#x", id) }
