package etcd

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hasched/hasched/coord"
)

// A process that stopped uncleanly leaves its session's lease on its
// embedded member, and with it its leadership, for the lease's TTL. The
// restarted process ends those sessions at once.
func TestEndPreviousSessionsFreesTheElectionAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	start := func() *Embedded {
		t.Helper()
		e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: dir, ClientURL: "https://127.0.0.1:0", PeerURL: "https://127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}

	first := start()
	// The earlier incarnation: a candidate key on a lease with a long TTL
	// (without EndPreviousSessions the election would stay held for the
	// whole test), and a client that goes without revoking it, as a
	// killed process's does.
	cli, err := clientv3.New(clientv3.Config{Endpoints: first.Endpoints(), TLS: first.ClientTLS(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := cli.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	prefix := keyspace{root: "/" + DefaultNamespace}.electionPrefix("/ha/election")
	if _, err := cli.Put(ctx, fmt.Sprintf("%s/%x", prefix, lease.ID), "old", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second := start()
	defer second.Close()
	c, err := New(ctx, Config{Endpoints: second.Endpoints(), TLS: second.ClientTLS(), SessionTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v, err := c.Leader(ctx, "/ha/election"); err != nil || string(v) != "old" {
		t.Fatalf("before: Leader = %q, %v; want the old incarnation still leading", v, err)
	}
	// c's own lease is on the member now too; a real restart calls
	// EndPreviousSessions before it opens any session, so here c's session
	// ends as well, which the count shows.
	n, err := second.EndPreviousSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("EndPreviousSessions ended %d sessions, want 2 (the old one and c's)", n)
	}
	fresh, err := New(ctx, Config{Endpoints: second.Endpoints(), TLS: second.ClientTLS(), SessionTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, err := fresh.Leader(ctx, "/ha/election"); !errors.Is(err, coord.ErrNoLeader) {
		t.Fatalf("after: Leader = %v, want ErrNoLeader", err)
	}
	lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
	defer lcancel()
	if _, err := fresh.Campaign(lctx, "/ha/election", []byte("new")); err != nil {
		t.Fatalf("the restarted process cannot lead at once: %v", err)
	}
}
