package zk

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/coordtest"
	"github.com/hasched/hasched/internal/netproxy"
	"github.com/hasched/hasched/internal/wait"
	"github.com/hasched/hasched/internal/zktest"
)

// These tests need a ZooKeeper ensemble named by HASCHED_ZK_TEST_SERVERS
// ("127.0.0.1:2181", or a comma-separated list) with a minimum session
// timeout of at most 2s (tickTime <= 1000). HASCHED_ZK_TEST_LOG sets a log
// level (trace, debug, ...) for the coordinators' logs.
const testSessionTimeout = 2 * time.Second

// uniqueNS is a namespace of its own for one test run.
func uniqueNS(t *testing.T, prefix string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

func testLogger() hclog.Logger {
	level := os.Getenv("HASCHED_ZK_TEST_LOG")
	if level == "" {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: "zk", Level: hclog.LevelFromString(level), Output: os.Stderr})
}

// harness opens every coordinator through proxies of its own, so that one
// session can be cut off without the others.
type harness struct {
	servers []string
	log     hclog.Logger
	// digest, if set, is every coordinator's Config.Digest.
	digest string
	// tls, if set, is every coordinator's Config.TLS.
	tls *tls.Config

	mu      sync.Mutex
	proxies map[coord.Coordinator][]*netproxy.Proxy
	all     []*netproxy.Proxy
}

func newHarness(t *testing.T) *harness {
	h := &harness{servers: zktest.Servers(t), log: testLogger(), proxies: map[coord.Coordinator][]*netproxy.Proxy{}}
	// After the scenarios' own cleanups, which close the coordinators.
	t.Cleanup(h.close)
	return h
}

func (h *harness) SessionTimeout() time.Duration { return testSessionTimeout }

func (h *harness) Open(ctx context.Context, ns string) (coord.Coordinator, error) {
	c, _, err := h.open(ctx, ns)
	return c, err
}

func (h *harness) open(ctx context.Context, ns string) (*Coordinator, []*netproxy.Proxy, error) {
	return h.openWith(ctx, ns, func(*Config) {})
}

func (h *harness) openWith(ctx context.Context, ns string, tweak func(*Config)) (*Coordinator, []*netproxy.Proxy, error) {
	var ps []*netproxy.Proxy
	var addrs []string
	for _, s := range h.servers {
		p, err := netproxy.New(s)
		if err != nil {
			for _, p := range ps {
				_ = p.Close()
			}
			return nil, nil, err
		}
		ps = append(ps, p)
		addrs = append(addrs, p.Addr())
	}
	h.mu.Lock()
	h.all = append(h.all, ps...)
	h.mu.Unlock()
	cfg := Config{Servers: addrs, Namespace: ns, SessionTimeout: testSessionTimeout, Logger: h.log, Digest: h.digest, TLS: h.tls}
	tweak(&cfg)
	c, err := New(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	h.mu.Lock()
	h.proxies[c] = ps
	h.mu.Unlock()
	return c, ps, nil
}

// serverTest begins a test on the servers: a harness, a context that ends
// with the test (after a minute at most) and a namespace of its own.
func serverTest(t *testing.T) (*harness, context.Context, string) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return h, ctx, uniqueNS(t, "test")
}

// openTest opens a coordinator on ns that closes when the test ends (before
// its context ends and the harness's proxies close), or fails the test.
func (h *harness) openTest(t *testing.T, ctx context.Context, ns string) (*Coordinator, []*netproxy.Proxy) {
	t.Helper()
	c, ps, err := h.open(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, ps
}

// ExpireSession cuts c off for longer than the session timeout: the server
// expires a session it has not heard from for that long.
func (h *harness) ExpireSession(ctx context.Context, c coord.Coordinator) error {
	h.mu.Lock()
	ps := h.proxies[c]
	h.mu.Unlock()
	if ps == nil {
		return fmt.Errorf("ExpireSession: %v was not opened by this harness", c)
	}
	for _, p := range ps {
		p.Blackhole()
	}
	defer func() {
		for _, p := range ps {
			p.Heal()
		}
	}()
	t := time.NewTimer(testSessionTimeout + time.Second)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *harness) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.all {
		_ = p.Close()
	}
}

func TestConformance(t *testing.T) {
	coordtest.Run(t, newHarness(t))
}

// The Mirror scenarios every backend passes (coordtest.RunMirror).
func TestMirrorConformance(t *testing.T) {
	coordtest.RunMirror(t, newHarness(t))
}

func TestOpenByURL(t *testing.T) {
	servers := zktest.Servers(t)
	ctx := context.Background()
	c, err := coord.Open(ctx, "zk://"+strings.Join(servers, ",")+"/"+uniqueNS(t, "url")+"?session-timeout=2s&connect-timeout=5s")
	if err != nil {
		t.Fatalf("coord.Open: %v", err)
	}
	defer c.Close()
	zc := c.(*Coordinator)
	if zc.SessionID() == 0 || zc.SessionID() != zc.Conn().SessionID() {
		t.Fatalf("SessionID %#x, the connection's %#x", zc.SessionID(), zc.Conn().SessionID())
	}
	if _, err := c.Children(ctx, "/"); err != nil {
		t.Fatalf("Children(/) of a fresh namespace: %v", err)
	}
}

// A broken connection the client re-establishes within the session timeout
// keeps the session, its ephemeral nodes and its leaderships.
func TestDroppedConnectionKeepsTheSession(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, ps := h.openTest(t, ctx, ns)
	other, _ := h.openTest(t, ctx, ns)
	if _, err := c.Create(ctx, "/eph", nil, coord.Ephemeral()); err != nil {
		t.Fatal(err)
	}
	l, err := c.Campaign(ctx, "/el", []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		for _, p := range ps {
			p.DropConnections()
		}
		// A call made while the connection is down waits for it.
		if _, err := c.Get(ctx, "/eph"); err != nil {
			t.Fatalf("Get across a dropped connection: %v", err)
		}
		time.Sleep(testSessionTimeout)
	}
	select {
	case <-c.Done():
		t.Fatal("the session ended after dropped connections")
	case <-l.Lost():
		t.Fatal("leadership lost after dropped connections")
	default:
	}
	if _, err := other.Get(ctx, "/eph"); err != nil {
		t.Fatalf("the ephemeral node, seen from another session: %v", err)
	}
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
}

// While cut off, every call returns when its context ends; the session is
// given up after the session timeout and calls then fail with ErrSessionLost.
func TestCutOffClientHonoursContextsThenLosesTheSession(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, ps := h.openTest(t, ctx, ns)
	if _, err := c.Create(ctx, "/a", nil); err != nil {
		t.Fatal(err)
	}
	l, err := c.Campaign(ctx, "/el", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		p.Blackhole()
	}
	defer func() {
		for _, p := range ps {
			p.Heal()
		}
	}()
	start := time.Now()
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = c.Get(short, "/a")
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get while cut off: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Get with a 200ms context took %v", d)
	}
	select {
	case <-c.Done():
	case <-time.After(2 * testSessionTimeout):
		t.Fatalf("Done not closed %v after the client was cut off", 2*testSessionTimeout)
	}
	lostAfter := time.Since(start)
	if lostAfter > testSessionTimeout+500*time.Millisecond {
		t.Errorf("session given up %v after the cut, want about the session timeout %v", lostAfter, testSessionTimeout)
	}
	select {
	case <-l.Lost():
	default:
		t.Fatal("Lost not closed with Done")
	}
	_, err = c.Get(ctx, "/a")
	wantIs(t, "Get after the session was given up", err, coord.ErrSessionLost)
	closeStart := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(closeStart); d > 3*time.Second {
		t.Fatalf("Close of a cut-off coordinator took %v", d)
	}
	_, err = c.Get(ctx, "/a")
	wantIs(t, "Get after Close", err, coord.ErrClosed)
}

// A campaign behind many candidates wakes only when its own predecessor
// goes, and withdrawing a middle candidate does not elect its successor.
func TestMiddleCandidateLeavingElectsNobody(t *testing.T) {
	h, ctx, ns := serverTest(t)
	var cs []*Coordinator
	for range 3 {
		c, _ := h.openTest(t, ctx, ns)
		cs = append(cs, c)
	}
	l0, err := cs[0].Campaign(ctx, "/el", []byte("0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx1, cancel1 := context.WithCancel(ctx)
	r1 := make(chan error, 1)
	go func() { _, err := cs[1].Campaign(ctx1, "/el", []byte("1")); r1 <- err }()
	waitChildren(t, ctx, cs[0], "/el", 2)
	r2 := make(chan coord.Leadership, 1)
	go func() {
		l, err := cs[2].Campaign(ctx, "/el", []byte("2"))
		if err != nil {
			t.Errorf("third candidate: %v", err)
		}
		r2 <- l
	}()
	waitChildren(t, ctx, cs[0], "/el", 3)
	cancel1()
	if err := <-r1; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled campaign: %v", err)
	}
	waitChildren(t, ctx, cs[0], "/el", 2)
	select {
	case <-r2:
		t.Fatal("the third candidate leads while the first does")
	case <-time.After(500 * time.Millisecond):
	}
	if v, err := cs[1].Leader(ctx, "/el"); err != nil || string(v) != "0" {
		t.Fatalf("Leader = %q, %v", v, err)
	}
	if err := l0.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-r2:
		if l == nil || l.Token() <= l0.Token() {
			t.Fatalf("third candidate's leadership %v", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the third candidate did not lead after the first resigned")
	}
}

func waitChildren(t *testing.T, ctx context.Context, c coord.Coordinator, path string, n int) {
	t.Helper()
	wait.Poll{Timeout: 10 * time.Second, Interval: 20 * time.Millisecond}.NoError(t, "Children("+path+")", func() error {
		names, err := c.Children(ctx, path)
		if err == nil && len(names) != n {
			err = fmt.Errorf("%q, want %d", names, n)
		}
		return err
	})
}

// When the server reports the expiry, go-zookeeper goes on to open a new
// session by itself; the Coordinator ends instead, and nothing it was asked
// to do is done on the new session.
func TestServerReportedExpiryEndsTheSessionAndNothingRunsOnANewOne(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, ps, err := h.openWith(ctx, ns, func(cfg *Config) { cfg.noLossTimer = true })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	witness, _ := h.openTest(t, ctx, ns)
	if _, err := c.Create(ctx, "/eph", nil, coord.Ephemeral()); err != nil {
		t.Fatal(err)
	}
	l, err := c.Campaign(ctx, "/el", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		p.Blackhole()
	}
	// A write asked for once the client knows it is disconnected waits for
	// the connection. (One sent before may have reached the server: it fails
	// at once with its outcome unknown.)
	wait.Poll{Timeout: 5 * time.Second, Interval: 10 * time.Millisecond}.Until(t, "the client notices it is cut off", func() bool {
		return c.Conn().State() != zk.StateHasSession
	})
	during := make(chan error, 1)
	go func() {
		_, err := c.Create(ctx, "/during", nil)
		during <- err
	}()
	time.Sleep(testSessionTimeout + time.Second)
	select {
	case <-c.Done():
		t.Fatal("Done closed without the loss timer before the server could say anything")
	default:
	}
	for _, p := range ps {
		p.Heal()
		// Break the handshake whose bytes the blackhole swallowed.
		p.DropConnections()
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the server reported the expiry")
	}
	select {
	case <-l.Lost():
	case <-time.After(time.Second):
		t.Fatal("Lost not closed")
	}
	select {
	case err := <-during:
		wantIs(t, "the write asked for during the outage", err, coord.ErrSessionLost)
	case <-time.After(5 * time.Second):
		t.Fatal("the write asked for during the outage did not return")
	}
	_, err = c.Get(ctx, "/eph")
	wantIs(t, "Get after the expiry", err, coord.ErrSessionLost)
	time.Sleep(time.Second) // time for go-zookeeper to try a new session
	if _, err := witness.Get(ctx, "/during"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("the write asked for during the outage: %v, want it never applied", err)
	}
	if _, err := witness.Get(ctx, "/eph"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("the expired session's ephemeral: %v, want it gone", err)
	}
}

// Close ends every goroutine of the Coordinator and of go-zookeeper, even
// with requests abandoned by their callers and the server unreachable.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	servers := zktest.Servers(t)
	p, err := netproxy.New(servers[0])
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	before := goleak.IgnoreCurrent()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := New(ctx, Config{Servers: []string{p.Addr()}, Namespace: uniqueNS(t, "test"), SessionTimeout: testSessionTimeout, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, "/a/b", []byte("x"), coord.Ephemeral()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Campaign(ctx, "/el", nil); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	defer p.Heal()
	for range 5 {
		short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
		if _, err := c.Get(short, "/a/b"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get while cut off: %v", err)
		}
		cancelShort()
	}
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
	goleak.VerifyNone(t, before)
}
