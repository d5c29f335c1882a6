// Package coordtest is the one conformance suite every coord backend passes
// (gocloud.dev's drivertest pattern): a backend's test builds a Harness on a
// real cluster and calls Run. Scenarios are named for the behaviour they
// prove and are written once, here, for all backends.
package coordtest

import (
	"context"
	"time"

	"github.com/hasched/hasched/coord"
)

// Harness is what a backend provides to be tested: sessions on one cluster
// and the means to hurt them.
type Harness interface {
	// Open opens a new session in namespace ns (ns is a valid namespace the
	// suite makes unique per scenario). The suite closes what it opens.
	Open(ctx context.Context, ns string) (coord.Coordinator, error)
	// ExpireSession makes the cluster end c's session the way it ends a
	// session whose client went silent (etcd: revoke its lease; ZooKeeper:
	// cut the client off for longer than the session timeout). It returns
	// once the server has ended the session; it may return before c has
	// noticed.
	ExpireSession(ctx context.Context, c coord.Coordinator) error
	// SessionTimeout is the session timeout (etcd: lease TTL) that Open
	// configures.
	SessionTimeout() time.Duration
}
