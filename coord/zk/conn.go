package zk

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"
)

// errShutDown is what the dialer answers once the Coordinator has cut its
// connections.
var errShutDown = errors.New("zk: the coordinator has shut its connections")

// dialer makes the TCP connections go-zookeeper uses and keeps hold of them,
// so that the Coordinator can cut them (go-zookeeper itself can be stuck for
// ten receive timeouts in a handshake nobody answers) and refuse new ones
// once the session is over. It also records when bytes last arrived: the
// loss timer counts from then.
type dialer struct {
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
	shut  bool
	heard atomic.Int64 // UnixNano of the last read that returned bytes
	// tls, if set, wraps every connection; the handshake is bounded by the
	// dial timeout go-zookeeper gives.
	tls *tls.Config
}

func (d *dialer) dial(network, address string, timeout time.Duration) (net.Conn, error) {
	d.mu.Lock()
	shut := d.shut
	d.mu.Unlock()
	if shut {
		return nil, errShutDown
	}
	nc, err := net.DialTimeout(network, address, timeout)
	if err != nil {
		return nil, err
	}
	if d.tls != nil {
		if nc, err = handshake(nc, address, timeout, d.tls); err != nil {
			return nil, err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.shut {
		_ = nc.Close()
		return nil, errShutDown
	}
	tc := &trackedConn{Conn: nc, d: d}
	d.conns[tc] = struct{}{}
	d.heard.Store(time.Now().UnixNano())
	return tc, nil
}

// handshake runs the TLS client handshake on nc within timeout. Without a
// ServerName in cfg, the server's certificate must name the host dialled.
func handshake(nc net.Conn, address string, timeout time.Duration, cfg *tls.Config) (net.Conn, error) {
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			_ = nc.Close()
			return nil, err
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(nc, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("zk: TLS handshake with %s: %w", address, err)
	}
	return tc, nil
}

// shutdown closes every connection and refuses new ones.
func (d *dialer) shutdown() {
	d.mu.Lock()
	d.shut = true
	conns := d.conns
	d.conns = map[*trackedConn]struct{}{}
	d.mu.Unlock()
	for tc := range conns {
		_ = tc.Conn.Close()
	}
}

// lastHeard is when bytes last arrived from ZooKeeper.
func (d *dialer) lastHeard() time.Time { return time.Unix(0, d.heard.Load()) }

type trackedConn struct {
	net.Conn
	d *dialer
}

func (t *trackedConn) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if n > 0 {
		t.d.heard.Store(time.Now().UnixNano())
	}
	return n, err
}

func (t *trackedConn) Close() error {
	t.d.mu.Lock()
	delete(t.d.conns, t)
	t.d.mu.Unlock()
	return t.Conn.Close()
}

// hostProvider is go-zookeeper's DNSHostProvider, except that after a
// connection breaks the first attempt to reconnect goes out at once.
// go-zookeeper pauses a second whenever it has been through the whole server
// list, which with a single server is before every reconnection, and a second
// is a large part of a short session timeout.
type hostProvider struct {
	*zk.DNSHostProvider
	fresh atomic.Bool // connected since the last Next
}

func (h *hostProvider) Connected() {
	h.DNSHostProvider.Connected()
	h.fresh.Store(true)
}

func (h *hostProvider) Next() (string, bool) {
	server, retryStart := h.DNSHostProvider.Next()
	if h.fresh.Swap(false) {
		retryStart = false
	}
	return server, retryStart
}

// authenticatedFormat is go-zookeeper's log line (v1.0.4) reporting a session
// and the timeout the server granted, which it does not expose otherwise.
const authenticatedFormat = "authenticated: id=%d, timeout=%d"

// clientLogger passes go-zookeeper's log to hclog at debug level, and picks
// the granted session timeout out of it.
type clientLogger struct {
	c   *Coordinator
	log hclog.Logger
}

func (l clientLogger) Printf(format string, args ...any) {
	if format == authenticatedFormat && len(args) == 2 {
		if ms, ok := args[1].(int32); ok {
			l.c.negotiated(time.Duration(ms) * time.Millisecond)
		}
	}
	l.log.Debug(fmt.Sprintf(format, args...))
}
