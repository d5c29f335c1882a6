package mesosfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"
)

// zkRegistration is this master's contender znode and the session that owns it.
type zkRegistration struct {
	conn   *zk.Conn
	events <-chan zk.Event
	node   string
}

// RegisterInZooKeeper makes this master a leading contender the way a real
// one does (src/master/contender/zookeeper.cpp): it opens a ZooKeeper session
// to servers, creates the missing parents of path, and creates the ephemeral
// sequential znode <path>/json.info_<seq> holding JSON(MasterInfo) — id, ip,
// port, pid, hostname 127.0.0.1, version, address{hostname, ip, port}.
// Detectors take the lowest sequence as the leader. It returns the znode's
// path. The znode lives until Unregister or Close.
func (m *Master) RegisterInZooKeeper(ctx context.Context, servers []string, zpath string) (string, error) {
	if !strings.HasPrefix(zpath, "/") || (len(zpath) > 1 && strings.HasSuffix(zpath, "/")) {
		return "", fmt.Errorf("mesosfake: ZooKeeper path %q must be absolute, without a trailing slash", zpath)
	}
	data, err := json.Marshal(m.info)
	if err != nil {
		return "", fmt.Errorf("mesosfake: encode MasterInfo: %w", err)
	}
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return "", ErrClosed
	case m.zk != nil:
		m.mu.Unlock()
		return "", ErrRegistered
	}
	m.zk = &zkRegistration{} // claims the slot while connecting
	m.mu.Unlock()

	reg, err := m.registerZK(ctx, servers, zpath, data)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.zk = nil
		return "", err
	}
	if m.closed { // Close ran while we connected
		m.zk = nil
		reg.close()
		return "", ErrClosed
	}
	m.zk = reg
	m.log.Debug("registered in ZooKeeper", "znode", reg.node)
	return reg.node, nil
}

func (m *Master) registerZK(ctx context.Context, servers []string, zpath string, data []byte) (*zkRegistration, error) {
	conn, events, err := zk.Connect(servers, m.cfg.ZooKeeperSessionTimeout,
		zk.WithLogger(zkLogger{m.log.Named("zk")}), zk.WithLogInfo(false))
	if err != nil {
		return nil, fmt.Errorf("mesosfake: connect to ZooKeeper %v: %w", servers, err)
	}
	reg := &zkRegistration{conn: conn, events: events}
	fail := func(err error) (*zkRegistration, error) {
		reg.close()
		return nil, err
	}
	for conn.State() != zk.StateHasSession {
		select {
		case _, ok := <-events:
			if !ok {
				return fail(fmt.Errorf("mesosfake: ZooKeeper connection closed before a session was established"))
			}
		case <-ctx.Done():
			return fail(fmt.Errorf("mesosfake: wait for a ZooKeeper session: %w", ctx.Err()))
		}
	}
	acl := zk.WorldACL(zk.PermAll)
	parent := ""
	for _, part := range strings.Split(strings.Trim(zpath, "/"), "/") {
		if part == "" {
			continue
		}
		parent += "/" + part
		if _, err := conn.Create(parent, nil, zk.FlagPersistent, acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fail(fmt.Errorf("mesosfake: create %s: %w", parent, err))
		}
	}
	node, err := conn.Create(path.Join(zpath, "json.info_"), data, zk.FlagEphemeralSequential, acl)
	if err != nil {
		return fail(fmt.Errorf("mesosfake: create %s/json.info_: %w", zpath, err))
	}
	reg.node = node
	return reg, nil
}

// close deletes the znode (the session's end would too) and ends the
// session, waiting for go-zookeeper's goroutines.
func (r *zkRegistration) close() error {
	var err error
	if r.node != "" {
		if e := r.conn.Delete(r.node, -1); e != nil && !errors.Is(e, zk.ErrNoNode) {
			err = fmt.Errorf("mesosfake: delete %s: %w", r.node, e)
		}
	}
	r.conn.Close()
	for range r.events { // closed when the connection's loop has returned
	}
	return err
}

// Unregister removes the ZooKeeper registration made by RegisterInZooKeeper
// and ends its session, so detectors see this master go. Without a
// registration it does nothing.
func (m *Master) Unregister() error {
	m.mu.Lock()
	reg := m.zk
	if reg == nil || reg.conn == nil {
		m.mu.Unlock()
		return nil
	}
	m.zk = nil
	m.mu.Unlock()
	return reg.close()
}

// zkLogger routes go-zookeeper's logs to hclog.
type zkLogger struct{ l hclog.Logger }

func (z zkLogger) Printf(format string, args ...any) { z.l.Debug(fmt.Sprintf(format, args...)) }
