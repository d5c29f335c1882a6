package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/network"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/coordtest"
	"github.com/hasched/hasched/coord/etcd"
	"github.com/hasched/hasched/coord/zk"
	"github.com/hasched/hasched/internal/netproxy"
)

// Three-member clusters for the fault scenarios: an etcd cluster and a
// ZooKeeper ensemble, each on a Docker network of its own, whose members the
// tests kill, stop, pause and restart. Every session reaches the members
// through proxies of its own (see clientNet), so one client can be cut off
// and a member can come back on another host port.

const (
	clusterSize = 3
	// Session timeouts of the fault harnesses, as in the conformance suite.
	clusterEtcdTTL       = 5 * time.Second
	clusterZKSession     = 4 * time.Second
	clusterMemberTimeout = 2 * time.Second // one question to one member
	clusterStopTimeout   = 10 * time.Second
)

// memberState is what the harness last did to a member.
type memberState int

const (
	memberUp memberState = iota
	memberPaused
	memberDown
)

func (s memberState) String() string {
	return [...]string{"up", "paused", "down"}[s]
}

type member struct {
	name  string
	ctr   testcontainers.Container
	state memberState
	addr  string // host:port of its client port; stale while it is down
}

// clusterBackend is what differs between etcd and ZooKeeper.
type clusterBackend interface {
	// open opens a session that reaches the cluster at addrs.
	open(ctx context.Context, ns string, addrs []string) (coord.Coordinator, error)
	// role asks the member at addr whether it serves clients, and whether
	// it leads the cluster.
	role(ctx context.Context, addr string) (leader bool, err error)
	// expire makes the cluster end c's session.
	expire(ctx context.Context, cl *cluster, c coord.Coordinator) error
	// membersMoved tells the backend the members' current addresses.
	membersMoved(addrs []string)
}

// cluster is a coordtest.FaultHarness on containers.
type cluster struct {
	port           string // the members' client port, "2379/tcp"
	backend        clusterBackend
	docker         *testcontainers.DockerClient
	sessionTimeout time.Duration
	log            hclog.Logger

	mu      sync.Mutex
	members []*member
	clients map[coord.Coordinator]*clientNet
	nets    []*clientNet
}

var _ coordtest.FaultHarness = (*cluster)(nil)

// newNetwork makes a Docker network that is removed when the test ends,
// after the containers on it (cleanups run last-registered first).
func newNetwork(t testing.TB) *testcontainers.DockerNetwork {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nw, err := network.New(ctx, network.WithLabels(testLabel))
	if err != nil {
		t.Fatalf("create a Docker network: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := nw.Remove(ctx); err != nil {
			t.Errorf("remove the Docker network %s: %v", nw.Name, err)
		}
	})
	return nw
}

// startMembers starts one container per member at once (a member of a new
// cluster does not serve before the others are up, so none can be waited
// for alone) and removes them all when the test ends.
func startMembers(t testing.TB, image string, names []string, opts func(i int) []testcontainers.ContainerCustomizer) []*member {
	t.Helper()
	members := make([]*member, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			o := append([]testcontainers.ContainerCustomizer{
				testcontainers.WithLogger(tclog.TestLogger(t)),
				testcontainers.WithLabels(testLabel),
			}, opts(i)...)
			c, err := testcontainers.Run(ctx, image, o...)
			if c != nil {
				members[i] = &member{name: name, ctr: c}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, m := range members {
		if m != nil {
			t.Cleanup(func() { removeMember(t, m) })
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start %s from %s (build it with `make images`, or set %s/%s): %v", names[i], image, etcdImageEnv, zkImageEnv, err)
		}
	}
	return members
}

func removeMember(t testing.TB, m *member) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A paused container stops only once thawed; ignore the error of one
	// that is not paused.
	if cli, err := testcontainers.NewDockerClientWithOpts(ctx); err == nil {
		_, _ = cli.ContainerUnpause(ctx, m.ctr.GetContainerID(), client.ContainerUnpauseOptions{})
		_ = cli.Close()
	}
	if err := m.ctr.Terminate(ctx, testcontainers.StopTimeout(time.Second)); err != nil {
		t.Errorf("remove container %s: %v", m.name, err)
	}
}

// newCluster wraps started members; it returns once every member serves
// clients and the cluster has a leader.
func newCluster(t testing.TB, port string, members []*member, sessionTimeout time.Duration, backend func(addrs []string) (clusterBackend, error)) *cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	docker, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		t.Fatalf("connect to Docker: %v", err)
	}
	t.Cleanup(func() { _ = docker.Close() })
	var addrs []string
	for _, m := range members {
		if m.addr, err = mappedAddr(ctx, m.ctr, port); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		addrs = append(addrs, m.addr)
	}
	b, err := backend(addrs)
	if err != nil {
		t.Fatal(err)
	}
	cl := &cluster{
		port:           port,
		backend:        b,
		docker:         docker,
		sessionTimeout: sessionTimeout,
		log:            clusterLogger(),
		members:        members,
		clients:        map[coord.Coordinator]*clientNet{},
	}
	t.Cleanup(cl.closeNets)
	start := time.Now()
	if err := cl.waitHealthy(ctx); err != nil {
		t.Fatalf("the cluster did not form: %v", err)
	}
	t.Logf("cluster of %d members formed in %v (after the containers started)", len(members), time.Since(start).Round(time.Millisecond))
	return cl
}

// clusterLogger is the sessions' logger: silent unless HASCHED_FAULTS_LOG
// names a level.
func clusterLogger() hclog.Logger {
	level := os.Getenv("HASCHED_FAULTS_LOG")
	if level == "" {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: "faults", Level: hclog.LevelFromString(level), Output: os.Stderr})
}

func mappedAddr(ctx context.Context, c testcontainers.Container, port string) (string, error) {
	host, err := c.Host(ctx)
	if err != nil {
		return "", err
	}
	p, err := c.MappedPort(ctx, port)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, p.Port()), nil
}

func (cl *cluster) SessionTimeout() time.Duration { return cl.sessionTimeout }

func (cl *cluster) Members() int { return len(cl.members) }

func (cl *cluster) Open(ctx context.Context, ns string) (coord.Coordinator, error) {
	return cl.open(ctx, ns, -1)
}

func (cl *cluster) OpenOn(ctx context.Context, ns string, m int) (coord.Coordinator, error) {
	if err := cl.check(m); err != nil {
		return nil, err
	}
	return cl.open(ctx, ns, m)
}

func (cl *cluster) open(ctx context.Context, ns string, sticky int) (coord.Coordinator, error) {
	cn, err := cl.newClientNet(sticky)
	if err != nil {
		return nil, err
	}
	c, err := cl.backend.open(ctx, ns, cn.addrs())
	if err != nil {
		cn.close()
		return nil, err
	}
	cl.mu.Lock()
	cl.clients[c] = cn
	cl.mu.Unlock()
	return c, nil
}

func (cl *cluster) ExpireSession(ctx context.Context, c coord.Coordinator) error {
	return cl.backend.expire(ctx, cl, c)
}

func (cl *cluster) check(m int) error {
	if m < 0 || m >= len(cl.members) {
		return fmt.Errorf("no member %d in a cluster of %d", m, len(cl.members))
	}
	return nil
}

// Leader polls the members that are up until one says it leads.
func (cl *cluster) Leader(ctx context.Context) (int, error) {
	for {
		for m, addr := range cl.upMembers() {
			rctx, cancel := context.WithTimeout(ctx, clusterMemberTimeout)
			leader, err := cl.backend.role(rctx, addr)
			cancel()
			if err == nil && leader {
				return m, nil
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("no member leads the cluster: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// upMembers maps the members that are up to their addresses.
func (cl *cluster) upMembers() map[int]string {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	up := map[int]string{}
	for i, m := range cl.members {
		if m.state == memberUp {
			up[i] = m.addr
		}
	}
	return up
}

// takeDown marks member m as st, which must follow up, and lets every
// client that talked to m alone reach the other members from now on.
func (cl *cluster) takeDown(m int, st memberState) error {
	if err := cl.check(m); err != nil {
		return err
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if s := cl.members[m].state; s != memberUp {
		return fmt.Errorf("member %d is %v", m, s)
	}
	cl.members[m].state = st
	for _, cn := range cl.nets {
		if cn.sticky == m {
			cn.sticky = -1
		}
	}
	return nil
}

func (cl *cluster) Kill(ctx context.Context, m int) error {
	if err := cl.takeDown(m, memberDown); err != nil {
		return err
	}
	id := cl.members[m].ctr.GetContainerID()
	if _, err := cl.docker.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		return fmt.Errorf("kill member %d: %w", m, err)
	}
	// The kill is asynchronous: wait until the container has exited, so
	// that a Start right after it does start it.
	for {
		st, err := cl.members[m].ctr.State(ctx)
		if err != nil {
			return fmt.Errorf("member %d after the kill: %w", m, err)
		}
		if !st.Running {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("member %d still runs after SIGKILL: %w", m, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (cl *cluster) Stop(ctx context.Context, m int) error {
	if err := cl.takeDown(m, memberDown); err != nil {
		return err
	}
	timeout := clusterStopTimeout
	if err := cl.members[m].ctr.Stop(ctx, &timeout); err != nil {
		return fmt.Errorf("stop member %d: %w", m, err)
	}
	return nil
}

func (cl *cluster) Pause(ctx context.Context, m int) error {
	if err := cl.takeDown(m, memberPaused); err != nil {
		return err
	}
	if _, err := cl.docker.ContainerPause(ctx, cl.members[m].ctr.GetContainerID(), client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("pause member %d: %w", m, err)
	}
	return nil
}

func (cl *cluster) Unpause(ctx context.Context, m int) error {
	if err := cl.check(m); err != nil {
		return err
	}
	cl.mu.Lock()
	st := cl.members[m].state
	cl.mu.Unlock()
	if st != memberPaused {
		return fmt.Errorf("member %d is %v, not paused", m, st)
	}
	if _, err := cl.docker.ContainerUnpause(ctx, cl.members[m].ctr.GetContainerID(), client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("unpause member %d: %w", m, err)
	}
	cl.mu.Lock()
	cl.members[m].state = memberUp
	cl.mu.Unlock()
	return nil
}

func (cl *cluster) Start(ctx context.Context, m int) error {
	if err := cl.check(m); err != nil {
		return err
	}
	if err := cl.startContainer(ctx, m); err != nil {
		return err
	}
	return cl.waitServing(ctx, m)
}

// startContainer starts member m's stopped container and points every
// client's proxy for m at the host port it has now.
func (cl *cluster) startContainer(ctx context.Context, m int) error {
	cl.mu.Lock()
	mb := cl.members[m]
	st := mb.state
	cl.mu.Unlock()
	if st != memberDown {
		return fmt.Errorf("member %d is %v, not down", m, st)
	}
	if err := mb.ctr.Start(ctx); err != nil {
		return fmt.Errorf("start member %d: %w", m, err)
	}
	addr, err := mappedAddr(ctx, mb.ctr, cl.port)
	if err != nil {
		return fmt.Errorf("member %d's address after its start: %w", m, err)
	}
	moved, addrs, stale, err := cl.moved(m, addr)
	for _, p := range stale {
		_ = p.Close()
	}
	if moved {
		cl.backend.membersMoved(addrs)
	}
	return err
}

// moved records that member m is up at addr and, if that is a new address,
// points every client's proxy for m there. It returns the members'
// addresses and the replaced proxies, for the caller to close.
func (cl *cluster) moved(m int, addr string) (moved bool, addrs []string, stale []*netproxy.Proxy, err error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	mb := cl.members[m]
	moved = addr != mb.addr
	mb.addr = addr
	mb.state = memberUp
	if moved {
		for _, cn := range cl.nets {
			old, perr := cn.repoint(m, addr)
			if perr != nil {
				err = perr
				continue
			}
			stale = append(stale, old)
		}
	}
	for _, x := range cl.members {
		addrs = append(addrs, x.addr)
	}
	return moved, addrs, stale, err
}

// waitServing waits until member m serves clients.
func (cl *cluster) waitServing(ctx context.Context, m int) error {
	var err error
	for {
		cl.mu.Lock()
		addr := cl.members[m].addr
		cl.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, clusterMemberTimeout)
		_, err = cl.backend.role(rctx, addr)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("member %d does not serve clients: %w (last: %v)", m, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitHealthy waits until every member serves clients and exactly one
// leads.
func (cl *cluster) waitHealthy(ctx context.Context) error {
	var last error
	for {
		cl.mu.Lock()
		addrs := make([]string, len(cl.members))
		for i, m := range cl.members {
			addrs[i] = m.addr
		}
		cl.mu.Unlock()
		leaders := 0
		last = nil
		for i, addr := range addrs {
			rctx, cancel := context.WithTimeout(ctx, clusterMemberTimeout)
			leader, err := cl.backend.role(rctx, addr)
			cancel()
			if err != nil {
				last = fmt.Errorf("member %d: %w", i, err)
				break
			}
			if leader {
				leaders++
			}
		}
		if last == nil && leaders != 1 {
			last = fmt.Errorf("%d members say they lead", leaders)
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (cl *cluster) RestartCluster(ctx context.Context, down time.Duration) error {
	for m := range cl.members {
		cl.mu.Lock()
		st := cl.members[m].state
		cl.mu.Unlock()
		if st == memberPaused {
			if err := cl.Unpause(ctx, m); err != nil {
				return err
			}
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(cl.members))
	for m := range cl.members {
		cl.mu.Lock()
		st := cl.members[m].state
		cl.mu.Unlock()
		if st == memberDown {
			continue
		}
		wg.Go(func() { errs[m] = cl.Stop(ctx, m) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(down):
	}
	for m := range cl.members {
		wg.Go(func() { errs[m] = cl.startContainer(ctx, m) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return cl.waitHealthy(ctx)
}

func (cl *cluster) Recover(ctx context.Context) error {
	cl.mu.Lock()
	states := make([]memberState, len(cl.members))
	for i, m := range cl.members {
		states[i] = m.state
	}
	nets := append([]*clientNet(nil), cl.nets...)
	cl.mu.Unlock()
	for m, st := range states {
		var err error
		switch st {
		case memberPaused:
			err = cl.Unpause(ctx, m)
		case memberDown:
			err = cl.startContainer(ctx, m)
		}
		if err != nil {
			return err
		}
	}
	for _, cn := range nets {
		cn.setCut(false)
	}
	return cl.waitHealthy(ctx)
}

func (cl *cluster) clientNet(c coord.Coordinator) (*clientNet, error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cn, ok := cl.clients[c]
	if !ok {
		return nil, fmt.Errorf("session %p was not opened by this harness", c)
	}
	return cn, nil
}

func (cl *cluster) Partition(c coord.Coordinator) error {
	cn, err := cl.clientNet(c)
	if err != nil {
		return err
	}
	cn.setCut(true)
	return nil
}

func (cl *cluster) Heal(c coord.Coordinator) error {
	cn, err := cl.clientNet(c)
	if err != nil {
		return err
	}
	cn.setCut(false)
	return nil
}

func (cl *cluster) DropConnections(c coord.Coordinator) error {
	cn, err := cl.clientNet(c)
	if err != nil {
		return err
	}
	cl.mu.Lock()
	inner := append([]*netproxy.Proxy(nil), cn.inner...)
	cl.mu.Unlock()
	for _, p := range inner {
		p.DropConnections()
	}
	return nil
}

func (cl *cluster) closeNets() {
	cl.mu.Lock()
	nets := slices.Clone(cl.nets)
	cl.mu.Unlock()
	for _, cn := range nets {
		cn.close()
	}
}

// clientNet is one session's way to the members. The client is given one
// fixed address per member (a front); each connection a front accepts goes
// through a netproxy.Proxy of this client's to a member: its own member, or
// the sticky member while that one is up. The proxies are what Partition
// blackholes and DropConnections resets; when a member comes back on
// another host port, its proxy is replaced by one to the new port (a
// netproxy.Proxy's target is fixed), while the front's address stays.
// Fields but fronts are guarded by the cluster's mutex.
type clientNet struct {
	cl     *cluster
	fronts []*front
	inner  []*netproxy.Proxy
	sticky int // the member every connection goes to while it is up; -1 if none
	cut    bool
}

func (cl *cluster) newClientNet(sticky int) (*clientNet, error) {
	cn := &clientNet{cl: cl, sticky: sticky}
	cl.mu.Lock()
	for _, m := range cl.members {
		p, err := netproxy.New(m.addr)
		if err != nil {
			cl.mu.Unlock()
			cn.close()
			return nil, err
		}
		cn.inner = append(cn.inner, p)
	}
	cl.nets = append(cl.nets, cn)
	cl.mu.Unlock()
	for j := range cl.members {
		f, err := newFront(func() (string, bool) { return cn.route(j) })
		if err != nil {
			cn.close()
			return nil, err
		}
		cn.fronts = append(cn.fronts, f)
	}
	return cn, nil
}

// route says where a connection to front j goes now: the proxy's address
// of the member it reaches, or false if that member is down.
func (cn *clientNet) route(j int) (string, bool) {
	cn.cl.mu.Lock()
	defer cn.cl.mu.Unlock()
	m := j
	if cn.sticky >= 0 {
		m = cn.sticky
	}
	if cn.inner == nil || cn.cl.members[m].state == memberDown {
		return "", false
	}
	return cn.inner[m].Addr(), true
}

// repoint replaces the proxy to member m by one to addr and returns the old
// one, to be closed outside the cluster's mutex, which the caller holds.
func (cn *clientNet) repoint(m int, addr string) (*netproxy.Proxy, error) {
	p, err := netproxy.New(addr)
	if err != nil {
		return nil, err
	}
	if cn.cut {
		p.Blackhole()
	}
	old := cn.inner[m]
	cn.inner[m] = p
	return old, nil
}

func (cn *clientNet) addrs() []string {
	out := make([]string, len(cn.fronts))
	for i, f := range cn.fronts {
		out[i] = f.addr()
	}
	return out
}

func (cn *clientNet) setCut(cut bool) {
	cn.cl.mu.Lock()
	defer cn.cl.mu.Unlock()
	cn.cut = cut
	for _, p := range cn.inner {
		if cut {
			p.Blackhole()
		} else {
			p.Heal()
		}
	}
}

// close closes the client's fronts and proxies and forgets it.
func (cn *clientNet) close() {
	for _, f := range cn.fronts {
		_ = f.close()
	}
	cn.cl.mu.Lock()
	inner := cn.inner
	cn.inner = nil
	cn.cl.nets = slices.DeleteFunc(cn.cl.nets, func(x *clientNet) bool { return x == cn })
	cn.cl.mu.Unlock()
	for _, p := range inner {
		_ = p.Close()
	}
}

// front listens on a loopback port for good and forwards each connection
// it accepts to the address route gives at that moment; it closes the
// connection at once, as a stopped server's port refuses it, when route
// gives none.
type front struct {
	ln    net.Listener
	route func() (string, bool)

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newFront(route func() (string, bool)) (*front, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &front{ln: ln, route: route, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

func (f *front) addr() string { return f.ln.Addr().String() }

func (f *front) close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	err := f.ln.Close()
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	return err
}

func (f *front) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		_ = c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *front) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	_ = c.Close()
}

func (f *front) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !f.track(c) {
			return
		}
		f.wg.Add(1)
		go f.serve(c)
	}
}

func (f *front) serve(c net.Conn) {
	defer f.wg.Done()
	defer f.untrack(c)
	addr, ok := f.route()
	if !ok {
		return
	}
	up, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return
	}
	if !f.track(up) {
		return
	}
	defer f.untrack(up)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	_ = c.Close()
	_ = up.Close()
	<-done
}

// randomToken is a fresh hex string, for cluster tokens.
func randomToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newEtcdCluster starts a 3-member etcd cluster: static bootstrap by
// --initial-cluster on a network of its own, members named etcd0..2 (their
// network aliases), a fresh cluster token per test.
func newEtcdCluster(t testing.TB) *cluster {
	t.Helper()
	nw := newNetwork(t)
	names := make([]string, clusterSize)
	var initial []string
	for i := range names {
		names[i] = fmt.Sprintf("etcd%d", i)
		initial = append(initial, fmt.Sprintf("%s=http://%s:2380", names[i], names[i]))
	}
	token := "hasched-" + randomToken()
	members := startMembers(t, imageFromEnv(etcdImageEnv, defaultEtcdImage), names, func(i int) []testcontainers.ContainerCustomizer {
		name := names[i]
		return []testcontainers.ContainerCustomizer{
			network.WithNetwork([]string{name}, nw),
			testcontainers.WithCmd("etcd",
				"--name", name,
				"--data-dir", "/var/lib/etcd/data",
				"--listen-client-urls", "http://0.0.0.0:2379",
				"--advertise-client-urls", "http://"+name+":2379",
				"--listen-peer-urls", "http://0.0.0.0:2380",
				"--initial-advertise-peer-urls", "http://"+name+":2380",
				"--initial-cluster", strings.Join(initial, ","),
				"--initial-cluster-token", token,
				"--initial-cluster-state", "new"),
			testcontainers.WithExposedPorts("2379/tcp"),
		}
	})
	var eb *etcdClusterBackend
	cl := newCluster(t, "2379/tcp", members, clusterEtcdTTL, func(addrs []string) (clusterBackend, error) {
		admin, err := clientv3.New(clientv3.Config{Endpoints: addrs, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { _ = admin.Close() })
		eb = &etcdClusterBackend{admin: admin}
		return eb, nil
	})
	eb.log = cl.log
	return cl
}

// etcdClusterBackend asks members through a client of its own that talks
// to them directly, not through any session's proxies.
type etcdClusterBackend struct {
	admin *clientv3.Client
	log   hclog.Logger
}

func (b *etcdClusterBackend) open(ctx context.Context, ns string, addrs []string) (coord.Coordinator, error) {
	return etcd.New(ctx, etcd.Config{Endpoints: addrs, Namespace: ns, SessionTTL: clusterEtcdTTL, Logger: b.log})
}

// role reads the member's maintenance Status: it serves clients if it
// knows a leader, and leads if that leader is itself.
func (b *etcdClusterBackend) role(ctx context.Context, addr string) (bool, error) {
	st, err := b.admin.Status(ctx, addr)
	if err != nil {
		return false, err
	}
	if st.Leader == 0 {
		return false, errors.New("the member knows no leader")
	}
	return st.Leader == st.Header.MemberId, nil
}

func (b *etcdClusterBackend) expire(ctx context.Context, _ *cluster, c coord.Coordinator) error {
	ec, ok := c.(*etcd.Coordinator)
	if !ok {
		return fmt.Errorf("not an etcd coordinator: %T", c)
	}
	_, err := b.admin.Revoke(ctx, ec.Lease())
	return err
}

func (b *etcdClusterBackend) membersMoved(addrs []string) { b.admin.SetEndpoints(addrs...) }

// newZKCluster starts a 3-server ZooKeeper ensemble on a network of its own
// (servers zk1..3), with a 500 ms tick so that short session timeouts are
// granted.
func newZKCluster(t testing.TB) *cluster {
	t.Helper()
	nw := newNetwork(t)
	names := make([]string, clusterSize)
	var servers []string
	for i := range names {
		names[i] = fmt.Sprintf("zk%d", i+1)
		servers = append(servers, fmt.Sprintf("server.%d=%s:2888:3888;2181", i+1, names[i]))
	}
	members := startMembers(t, imageFromEnv(zkImageEnv, defaultZKImage), names, func(i int) []testcontainers.ContainerCustomizer {
		return []testcontainers.ContainerCustomizer{
			network.WithNetwork([]string{names[i]}, nw),
			testcontainers.WithEnv(map[string]string{
				"ZOO_MY_ID":                  fmt.Sprint(i + 1),
				"ZOO_SERVERS":                strings.Join(servers, " "),
				"ZOO_TICK_TIME":              fmt.Sprint(zkTickTime.Milliseconds()),
				"ZOO_STANDALONE_ENABLED":     "false",
				"ZOO_4LW_COMMANDS_WHITELIST": "srvr,ruok,mntr,stat",
				"ZOO_ADMINSERVER_ENABLED":    "false",
				// With a 500 ms tick the default limits (5 and 2 ticks)
				// drop followers that a loaded test machine slows down.
				"ZOO_INIT_LIMIT": "10",
				"ZOO_SYNC_LIMIT": "5",
				// A restarted server may come back on another address.
				"ZOO_CFG_EXTRA": "quorumListenOnAllIPs=true",
			}),
			testcontainers.WithExposedPorts("2181/tcp"),
		}
	})
	b := &zkClusterBackend{}
	cl := newCluster(t, "2181/tcp", members, clusterZKSession, func([]string) (clusterBackend, error) { return b, nil })
	b.log = cl.log
	return cl
}

type zkClusterBackend struct {
	log hclog.Logger
}

func (b *zkClusterBackend) open(ctx context.Context, ns string, addrs []string) (coord.Coordinator, error) {
	return zk.New(ctx, zk.Config{Servers: addrs, Namespace: ns, SessionTimeout: clusterZKSession, Logger: b.log})
}

// role sends the srvr four-letter command: a server that serves clients
// answers with its Mode, leader or follower.
func (b *zkClusterBackend) role(ctx context.Context, addr string) (bool, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("srvr")); err != nil {
		return false, err
	}
	var out []string
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		line := sc.Text()
		out = append(out, line)
		if mode, ok := strings.CutPrefix(line, "Mode: "); ok {
			switch mode {
			case "leader":
				return true, nil
			case "follower":
				return false, nil
			}
			return false, fmt.Errorf("mode %s", mode)
		}
	}
	return false, fmt.Errorf("srvr answered %q", strings.Join(out, " / "))
}

// expire cuts the session off for longer than its timeout: the server
// expires a session it has not heard from for that long.
func (b *zkClusterBackend) expire(ctx context.Context, cl *cluster, c coord.Coordinator) error {
	if err := cl.Partition(c); err != nil {
		return err
	}
	defer func() { _ = cl.Heal(c) }()
	t := time.NewTimer(clusterZKSession + 2*zkTickTime + 500*time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (b *zkClusterBackend) membersMoved([]string) {}
