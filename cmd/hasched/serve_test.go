package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A bad configuration is refused before anything is bound, created or
// started: the data directory is not made and the command returns at once.
func TestServeRefusesBadConfigurationWithoutStartingAnything(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"unknown coord scheme", []string{"--coord", "consul://h:8500/x"}, nil, []string{"--coord", `unsupported scheme "consul"`, "etcd://", "zk://"}},
		{"coord not a URL", []string{"--coord", "etcd-cluster-1"}, nil, []string{"--coord", "not a URL"}},
		{"coord without hosts", []string{"--coord", "etcd:///ns"}, nil, []string{"--coord", "no servers"}},
		{"coord from env", nil, map[string]string{"HASCHED_COORD": "redis://h:1"}, []string{"redis"}},
		{"listen without port", []string{"--listen", "8899"}, nil, []string{"--listen", "not host:port"}},
		{"listen port too big", []string{"--listen", ":99999"}, nil, []string{"--listen", "0 to 65535"}},
		{"listen port not a number", []string{"--listen", "localhost:http-alt"}, nil, []string{"--listen", "0 to 65535"}},
		{"advertise with scheme", []string{"--advertise", "http://10.0.0.1:8899"}, nil, []string{"--advertise", "without a scheme"}},
		{"advertise wildcard", []string{"--advertise", "0.0.0.0:8899"}, nil, []string{"--advertise", "not an address other processes can reach"}},
		{"advertise port 0", []string{"--advertise", "10.0.0.1:0"}, nil, []string{"--advertise", "port 0"}},
		{"unknown executor", []string{"--executor", "docker"}, nil, []string{`--executor "docker" is unknown`}},
		{"executor from env", nil, map[string]string{"HASCHED_EXECUTOR": "nomad"}, []string{"nomad"}},
		{"bad log level", []string{"--log-level", "loud"}, nil, []string{"--log-level", "loud"}},
		{"bad log-json env", nil, map[string]string{"HASCHED_LOG_JSON": "maybe"}, []string{"HASCHED_LOG_JSON", "--log-json"}},
		{"auth user alone", []string{"--auth-user", "root"}, nil, []string{"--auth-user and --auth-password"}},
		{"auth password from env alone", nil, map[string]string{"HASCHED_AUTH_PASSWORD": "pw"}, []string{"--auth-user and --auth-password"}},
		{"embedded unix socket", []string{"--embedded-client-url", "unix:///tmp/etcd.sock"}, nil, []string{"--embedded-client-url", "https://"}},
		{"embedded same ports", []string{"--embedded-client-url", "http://127.0.0.1:2379", "--embedded-peer-url", "http://127.0.0.1:2379"}, nil, []string{"same port"}},
		{"listen on etcd's port", []string{"--listen", ":2379"}, nil, []string{"--listen port 2379"}},
		{"empty data dir", []string{"--data-dir", ""}, nil, []string{"--data-dir is empty"}},
		{"stray argument", []string{"now"}, nil, []string{"takes no arguments"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			serveRefuses(t, c.env, c.args, c.want...)
		})
	}
}

// serveRefuses runs serve with args (and a fresh --data-dir) and env, and
// checks that it fails at once with want, creating and starting nothing.
func serveRefuses(t *testing.T, env map[string]string, args []string, want ...string) {
	t.Helper()
	dataDir := filepath.Join(t.TempDir(), "data")
	args = append([]string{"serve", "--data-dir", dataDir}, args...)
	start := time.Now()
	r := cli(t, env, "", args...).fails(t, want...)
	if time.Since(start) > 2*time.Second {
		t.Errorf("refusing took %v", time.Since(start))
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("the data directory was created (stat: %v)", err)
	}
	if strings.Contains(r.stderr, "started") {
		t.Errorf("something started: %s", r.stderr)
	}
}

func TestServeFlagWinsOverEnvironment(t *testing.T) {
	// The environment names a bad executor, the flag a good one; the
	// command then fails on the bad --coord from the flag, not on the
	// executor.
	dataDir := filepath.Join(t.TempDir(), "data")
	cli(t, map[string]string{"HASCHED_EXECUTOR": "docker"}, "", "serve", "--data-dir", dataDir, "--executor", "local", "--coord", "bogus://x").
		fails(t, "bogus")
}

func TestServeRefusesADataDirThatIsAFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cli(t, nil, "", "serve", "--data-dir", f).fails(t, "--data-dir", "not a directory")
}

func TestServeFailsWhenTheListenPortIsTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	cli(t, nil, "", "serve", "--data-dir", dataDir, "--listen", ln.Addr().String()).fails(t, "--listen", "address already in use")
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("the data directory was created although the port was taken")
	}
}

func TestServeConfigDefaults(t *testing.T) {
	cfg, err := serveFlags{coord: "embedded", dataDir: "d", listen: "127.0.0.1:8899", executor: "LOCAL", logLevel: "info",
		embeddedClientURL: "http://127.0.0.1:2379", embeddedPeerURL: "http://127.0.0.1:2380"}.validate()
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.embedded || cfg.etcdDir != filepath.Join("d", "etcd") || cfg.workDir != filepath.Join("d", "executor") || cfg.executor != "local" {
		t.Fatalf("cfg = %+v", cfg)
	}
	cfg, err = serveFlags{coord: "etcd://u:secret@h1:2379,h2:2379/ns", dataDir: "d", listen: "10.0.0.1:8899", executor: "local", logLevel: "debug", workDir: "w", authUser: "root", authPassword: "pw"}.validate()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.embedded || cfg.workDir != "w" || strings.Contains(cfg.coordDisplay, "secret") {
		t.Fatalf("cfg = %+v (the displayed URL must not carry the password)", cfg)
	}
	if _, err := (serveFlags{coord: "zk://h:2181/ns", dataDir: "d", listen: "127.0.0.1:1", executor: "local", logLevel: "info"}).validate(); err != nil {
		t.Fatalf("zk:// refused: %v", err)
	}
}

func TestAdvertiseDefaultsToTheBoundAddress(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4zero, Port: 41234}
	for _, c := range []struct {
		listenHost, advertise, want string
	}{
		{"", "", "127.0.0.1:41234"},
		{"0.0.0.0", "", "127.0.0.1:41234"},
		{"::", "", "127.0.0.1:41234"},
		{"10.1.2.3", "", "10.1.2.3:41234"},
		{"::1", "", "[::1]:41234"},
		{"", "sched-1.example:8899", "sched-1.example:8899"},
	} {
		cfg := serveConfig{listenHost: c.listenHost, advertise: c.advertise}
		if got := cfg.advertiseFor(bound); got != c.want {
			t.Errorf("listen host %q, advertise %q: got %q, want %q", c.listenHost, c.advertise, got, c.want)
		}
	}
}
