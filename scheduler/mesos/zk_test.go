package mesos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/hasched/hasched/integration/mesosfake"
	"github.com/hasched/hasched/internal/zktest"
	"github.com/hasched/hasched/scheduler/executor"
)

// zkRoot is a path of the test's own, removed when it ends.
func zkRoot(t *testing.T, servers []string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	root := "/hasched-mesos-test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		conn, events, err := zk.Connect(servers, 5*time.Second, zk.WithLogInfo(false), zk.WithLogger(zkLogger{testLogger("zk-cleanup")}))
		if err != nil {
			return
		}
		defer func() {
			conn.Close()
			for range events {
			}
		}()
		var del func(string)
		del = func(p string) {
			children, _, err := conn.Children(p)
			if err != nil {
				return
			}
			for _, c := range children {
				del(p + "/" + c)
			}
			_ = conn.Delete(p, -1)
		}
		del(root)
	})
	return root
}

// Masters registered in ZooKeeper: the one with the lowest sequence leads;
// when it goes, the executor subscribes to the next.
func TestZooKeeperMasterDetection(t *testing.T) {
	servers := zktest.Servers(t)
	path := zkRoot(t, servers) + "/mesos"
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	m1 := newMaster(t, mesosfake.Config{})
	m2 := newMaster(t, mesosfake.Config{Standby: true, LeaderURL: m1.URL()})
	addAgent(t, m1, 2, 1024)
	addAgent(t, m2, 2, 1024)

	// Before any master is registered: no leader, not subscribed.
	cfg := testConfig("zk://" + strings.Join(servers, ",") + path)
	cfg.ZooKeeperTimeout = 4 * time.Second
	h := openExecutor(t, cfg, newMemState(), 1)
	time.Sleep(200 * time.Millisecond)
	if d := h.ex.Describe(); d["connected"] != "no" {
		t.Fatalf("connected with no master registered: %v", d)
	}

	if _, err := m1.RegisterInZooKeeper(ctx, servers, path); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.RegisterInZooKeeper(ctx, servers, path); err != nil {
		t.Fatal(err)
	}
	id := h.waitConnected()
	if fw, ok := m1.Framework(id); !ok || !fw.Connected {
		t.Fatal("not subscribed to the first master")
	}
	tk := task("job", fire, 0, 1, 0, 1, 128)
	launch(t, h, tk)
	h.waitState(tk.ID, executor.StateRunning)

	// m2 takes over and m1's node goes: detection moves the executor to
	// m2 while m1 still answers, then m1 goes.
	if err := m2.SetLeader(m2.URL()); err != nil {
		t.Fatal(err)
	}
	if err := m1.Unregister(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, m2, "subscribed to the new leader", func() bool { fw, ok := m2.Framework(id); return ok && fw.Connected })
	eventually(t, "Describe names the new leader", func() bool {
		d := h.ex.Describe()
		return d["connected"] == "yes" && d["master"] == m2.URL()
	})
	if fw, _ := m1.Framework(id); fw.Connected {
		t.Error("still subscribed at the old leader")
	}
	if err := m1.Close(); err != nil {
		t.Fatal(err)
	}
	tk2 := task("job", fire, 0, 1, 1, 1, 128)
	launch(t, h, tk2)
	h.waitState(tk2.ID, executor.StateRunning)
	if r, _ := m2.Task(tk2.ID); r.FrameworkID != id {
		t.Errorf("task at the new leader: %+v", r)
	}
}

// With ZooKeeper out of reach the executor waits, and closes at once.
func TestZooKeeperUnreachable(t *testing.T) {
	cfg := testConfig("zk://127.0.0.1:1/mesos")
	cfg.ZooKeeperTimeout = time.Second
	h := openExecutor(t, cfg, newMemState(), 1)
	if err := h.ex.Reconcile(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if d := h.ex.Describe(); d["connected"] != "no" || d["masters"] != "zk://127.0.0.1:1/mesos" {
		t.Errorf("Describe = %v", d)
	}
	start := time.Now()
	h.close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v", d)
	}
}
