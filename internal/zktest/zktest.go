// Package zktest names the ZooKeeper ensemble that tests run against.
package zktest

import (
	"os"
	"strings"
	"testing"
)

// EnvServers is the variable that names the ensemble: "127.0.0.1:2181", or
// a comma-separated list. integration/with-zookeeper.sh sets it.
const EnvServers = "HASCHED_ZK_TEST_SERVERS"

// Servers returns the ensemble's addresses, or skips the test if
// EnvServers is not set.
func Servers(t testing.TB) []string {
	t.Helper()
	s := os.Getenv(EnvServers)
	if s == "" {
		t.Skip(EnvServers + " not set: make test runs this against a ZooKeeper container (make zk-server-tests)")
	}
	return strings.Split(s, ",")
}
