package mesosfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/hasched/hasched/internal/zktest"
)

// zkConn opens a session of the test's own, closed (and drained) at cleanup.
func zkConn(t *testing.T, servers []string) *zk.Conn {
	t.Helper()
	conn, events, err := zk.Connect(servers, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		for range events {
		}
	})
	deadline := time.After(waitTimeout)
	for conn.State() != zk.StateHasSession {
		select {
		case <-events:
		case <-deadline:
			t.Fatalf("no ZooKeeper session with %v", servers)
		}
	}
	return conn
}

// TestRegisterInZooKeeper checks the znode a real master's contender makes:
// <path>/json.info_<10 digits>, ephemeral, holding JSON(MasterInfo) with
// address.ip/port; and that Unregister and Close remove it.
func TestRegisterInZooKeeper(t *testing.T) {
	servers := zktest.Servers(t)
	checkLeaks(t)
	conn := zkConn(t, servers)
	root := fmt.Sprintf("/mesosfake-test-%d", time.Now().UnixNano())
	t.Cleanup(func() { deleteTree(t, conn, root) })
	zpath := root + "/mesos"

	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	node, err := m.RegisterInZooKeeper(ctx, servers, zpath)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(zpath) + `/json\.info_\d{10}$`).MatchString(node) {
		t.Fatalf("znode %q, want %s/json.info_<10 digits>", node, zpath)
	}
	data, stat, err := conn.Get(node)
	if err != nil {
		t.Fatal(err)
	}
	if stat.EphemeralOwner == 0 {
		t.Error("the znode is not ephemeral")
	}
	var raw struct {
		ID       string `json:"id"`
		PID      string `json:"pid"`
		Hostname string `json:"hostname"`
		Port     int    `json:"port"`
		Address  struct {
			Hostname string `json:"hostname"`
			IP       string `json:"ip"`
			Port     int    `json:"port"`
		} `json:"address"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("znode data %q: %v", data, err)
	}
	wantPort := m.MasterInfo().Address.Port
	if raw.ID != m.MasterInfo().ID || raw.Address.IP != "127.0.0.1" || raw.Address.Port != int(wantPort) ||
		raw.Hostname != "127.0.0.1" || raw.Port != int(wantPort) || !strings.HasPrefix(raw.PID, "master@127.0.0.1:") {
		t.Errorf("znode data %s, want the master's id and 127.0.0.1:%d", data, wantPort)
	}
	var info mesos.MasterInfo
	if err := json.Unmarshal(data, &info); err != nil || "http://127.0.0.1:"+fmt.Sprint(info.GetAddress().GetPort()) != m.URL() {
		t.Errorf("znode data as mesos.MasterInfo: %v, %v; want the address of %s", info, err, m.URL())
	}

	if _, err := m.RegisterInZooKeeper(ctx, servers, zpath); !errors.Is(err, ErrRegistered) {
		t.Errorf("second registration: %v, want ErrRegistered", err)
	}
	if err := m.Unregister(); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := conn.Exists(node); err != nil || ok {
		t.Errorf("after Unregister the znode exists: %v, %v", ok, err)
	}

	node, err = m.RegisterInZooKeeper(ctx, servers, zpath)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := conn.Exists(node); err != nil || ok {
		t.Errorf("after Close the znode exists: %v, %v", ok, err)
	}
}

func deleteTree(t *testing.T, conn *zk.Conn, p string) {
	children, _, err := conn.Children(p)
	if errors.Is(err, zk.ErrNoNode) {
		return
	}
	for _, c := range children {
		deleteTree(t, conn, p+"/"+c)
	}
	if err := conn.Delete(p, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
		t.Errorf("delete %s: %v", p, err)
	}
}
