package etcd

import (
	"testing"

	"github.com/hasched/hasched/coord/coordtest"
)

func TestConformance(t *testing.T) {
	coordtest.Run(t, &harness{endpoints: endpoints(t), tls: clientTLS(t), raw: rawClient(t)})
}
