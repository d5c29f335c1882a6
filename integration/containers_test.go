package integration

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Images default to the ones `make images` builds; users who can pull the
// official images point these variables at them (same contract: `etcd` on
// PATH; ZooKeeper configured by ZOO_* variables).
const (
	etcdImageEnv     = "HASCHED_ETCD_IMAGE"
	zkImageEnv       = "HASCHED_ZK_IMAGE"
	defaultEtcdImage = "hasched/etcd:3.6.16"
	defaultZKImage   = "hasched/zookeeper:3.8"
)

// testLabel marks every container these tests start, so that leftovers of a
// killed test run can be found (`make clean-containers`).
var testLabel = map[string]string{"dev.hasched.test": "integration"}

func TestMain(m *testing.M) {
	// No registry is reachable on the project's machines: the Ryuk reaper
	// image cannot be pulled, so tests remove their containers themselves;
	// and testcontainers must not guess the Docker host from the default
	// gateway. A user's own settings win.
	for k, v := range map[string]string{
		"TESTCONTAINERS_RYUK_DISABLED": "true",
		"TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1",
	} {
		if _, set := os.LookupEnv(k); !set {
			_ = os.Setenv(k, v)
		}
	}
	os.Exit(m.Run())
}

func imageFromEnv(env, def string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}

// startContainer runs one container and removes it when the test ends,
// whether it passed or not.
func startContainer(t testing.TB, image string, opts ...testcontainers.ContainerCustomizer) testcontainers.Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts = append([]testcontainers.ContainerCustomizer{
		testcontainers.WithLogger(tclog.TestLogger(t)),
		testcontainers.WithLabels(testLabel),
	}, opts...)
	c, err := testcontainers.Run(ctx, image, opts...)
	if c != nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := c.Terminate(ctx); err != nil {
				t.Errorf("remove container of %s: %v", image, err)
			}
		})
	}
	if err != nil {
		t.Fatalf("start %s (build it with `make images`, or set %s/%s): %v", image, etcdImageEnv, zkImageEnv, err)
	}
	return c
}

func hostPort(t testing.TB, c testcontainers.Container, port string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	host, err := c.Host(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.MappedPort(ctx, port)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s:%s", host, p.Port())
}

// startEtcd runs a single-member etcd and returns its client address.
func startEtcd(t testing.TB) string {
	t.Helper()
	c := startContainer(t, imageFromEnv(etcdImageEnv, defaultEtcdImage),
		testcontainers.WithCmd("etcd",
			"--name", "etcd0",
			"--data-dir", "/var/lib/etcd/data",
			"--listen-client-urls", "http://0.0.0.0:2379",
			"--advertise-client-urls", "http://127.0.0.1:2379"),
		testcontainers.WithExposedPorts("2379/tcp"),
		testcontainers.WithWaitStrategyAndDeadline(time.Minute, wait.ForLog("ready to serve client requests")),
	)
	return hostPort(t, c, "2379/tcp")
}

// zkTickTime is ZooKeeper's tick in the test containers. Session timeouts are
// bounded below by two ticks, so a short tick lets session-expiry scenarios
// run in seconds.
const zkTickTime = 500 * time.Millisecond

// startZooKeeper runs a standalone ZooKeeper and returns its client address.
func startZooKeeper(t testing.TB) string {
	t.Helper()
	c := startContainer(t, imageFromEnv(zkImageEnv, defaultZKImage),
		testcontainers.WithEnv(map[string]string{
			"ZOO_TICK_TIME":              fmt.Sprint(zkTickTime.Milliseconds()),
			"ZOO_4LW_COMMANDS_WHITELIST": "srvr,ruok,mntr,stat",
			"ZOO_ADMINSERVER_ENABLED":    "false",
		}),
		testcontainers.WithExposedPorts("2181/tcp"),
		testcontainers.WithWaitStrategyAndDeadline(2*time.Minute, wait.ForLog("ZooKeeper audit is disabled.")),
	)
	return hostPort(t, c, "2181/tcp")
}
