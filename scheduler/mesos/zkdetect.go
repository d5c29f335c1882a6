package mesos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"
)

// masterNodePrefix names the znodes Mesos masters create to elect their
// leader: ephemeral and sequential, holding the master's MasterInfo as JSON
// (src/master/contender/zookeeper.cpp). The lowest sequence number leads.
const masterNodePrefix = "json.info_"

// zkRetryWait is the pause after a failed ZooKeeper read.
const zkRetryWait = time.Second

// zkDetector watches the masters' election in ZooKeeper and reports each
// new leader's scheduler endpoint.
type zkDetector struct {
	src    zkSource
	conn   *zk.Conn
	events <-chan zk.Event // closed when the connection's goroutines end
	log    hclog.Logger
	report func(endpoint string)

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startZKDetector(src zkSource, sessionTimeout time.Duration, log hclog.Logger, report func(string)) (*zkDetector, error) {
	log = log.Named("zk-detector")
	conn, events, err := zk.Connect(src.servers, sessionTimeout, zk.WithLogger(zkLogger{log.Named("go-zookeeper")}), zk.WithLogInfo(false))
	if err != nil {
		return nil, fmt.Errorf("mesos: connect to ZooKeeper %s: %w", strings.Join(src.servers, ","), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &zkDetector{src: src, conn: conn, events: events, log: log, report: report, cancel: cancel}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.run(ctx)
	}()
	return d, nil
}

func (d *zkDetector) close() {
	d.cancel()
	d.conn.Close() // ends the requests run may wait for
	d.wg.Wait()
	for range d.events { // the session events nobody reads; closed last
	}
}

// run follows the election until ctx ends.
func (d *zkDetector) run(ctx context.Context) {
	if d.src.auth != "" {
		// In here, not in startZKDetector: it waits for a connection.
		// go-zookeeper sends it again on every reconnection.
		if err := d.conn.AddAuth("digest", []byte(d.src.auth)); err != nil && ctx.Err() == nil {
			d.log.Warn("ZooKeeper digest authentication failed", "error", err)
		}
	}
	last := "\x00"
	for ctx.Err() == nil {
		endpoint, watch, err := d.leader()
		if err != nil {
			d.log.Warn("cannot read the Mesos masters from ZooKeeper", "path", d.src.path, "error", err)
			if !sleep(ctx, zkRetryWait) {
				return
			}
			continue
		}
		if endpoint != last {
			if endpoint == "" {
				d.log.Warn("no Mesos master is leading", "path", d.src.path)
			} else {
				d.log.Info("leading Mesos master detected", "master", baseURL(endpoint))
			}
			last = endpoint
			d.report(endpoint)
		}
		select {
		case <-ctx.Done():
			return
		case <-watch:
		}
	}
}

// leader reads the election: the leader's endpoint ("" if no master is
// there) and a channel that fires when that may have changed.
func (d *zkDetector) leader() (string, <-chan zk.Event, error) {
	children, _, watch, err := d.conn.ChildrenW(d.src.path)
	if errors.Is(err, zk.ErrNoNode) {
		ok, _, ewatch, err := d.conn.ExistsW(d.src.path)
		if err != nil {
			return "", nil, err
		}
		if ok {
			return d.leader() // created meanwhile
		}
		return "", ewatch, nil
	}
	if err != nil {
		return "", nil, err
	}
	for _, node := range leaderOrder(children) {
		data, _, err := d.conn.Get(d.src.path + "/" + node)
		if errors.Is(err, zk.ErrNoNode) {
			continue // gone meanwhile; the watch fires too
		}
		if err != nil {
			return "", nil, err
		}
		endpoint, err := masterEndpoint(data)
		if err != nil {
			d.log.Warn("unreadable master info in ZooKeeper", "node", node, "error", err)
			continue
		}
		return endpoint, watch, nil
	}
	return "", watch, nil
}

// leaderOrder lists the masters' nodes, the leader first.
func leaderOrder(children []string) []string {
	type node struct {
		name string
		seq  uint64
	}
	var nodes []node
	for _, c := range children {
		if !strings.HasPrefix(c, masterNodePrefix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimPrefix(c, masterNodePrefix), 10, 64)
		if err != nil {
			continue
		}
		nodes = append(nodes, node{c, seq})
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].seq < nodes[j].seq })
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.name
	}
	return out
}

// masterInfoJSON is the part of JSON(MasterInfo) detection needs.
type masterInfoJSON struct {
	Hostname string `json:"hostname"`
	IP       uint32 `json:"ip"` // network byte order, as Mesos writes it
	Port     uint32 `json:"port"`
	Address  *struct {
		Hostname string `json:"hostname"`
		IP       string `json:"ip"`
		Port     int32  `json:"port"`
	} `json:"address"`
}

// masterEndpoint makes the scheduler endpoint of a master's info:
// address.ip and address.port, else the host name, else the packed ip.
func masterEndpoint(data []byte) (string, error) {
	var mi masterInfoJSON
	if err := json.Unmarshal(data, &mi); err != nil {
		return "", err
	}
	var host string
	port := int(mi.Port)
	if a := mi.Address; a != nil {
		host = a.IP
		if host == "" {
			host = a.Hostname
		}
		if a.Port > 0 {
			port = int(a.Port)
		}
	}
	if host == "" {
		host = mi.Hostname
	}
	if host == "" && mi.IP != 0 {
		// Packed in network byte order and read as a little-endian uint32.
		host = net.IPv4(byte(mi.IP), byte(mi.IP>>8), byte(mi.IP>>16), byte(mi.IP>>24)).String()
	}
	if host == "" {
		return "", errors.New("no address, hostname or ip")
	}
	if port <= 0 || port > 65535 {
		port = 5050
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + schedulerPath, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// zkLogger sends go-zookeeper's log to hclog at debug level: it reports
// every reconnection attempt, which the detector's own warnings summarise.
type zkLogger struct{ log hclog.Logger }

func (l zkLogger) Printf(format string, args ...any) {
	l.log.Debug(strings.TrimSpace(fmt.Sprintf(format, args...)))
}
